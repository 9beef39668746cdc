/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the .kpz container (lib/kpz_write.c, lib/kpz_read.c):
 * header and record round trips through real zstd frames, truncation at
 * every byte, corruption at every byte of a frame, hostile prefixes and
 * frames crafted by hand, failing sinks, sources and allocators; plus the
 * size per event and the decode rate on a realistic synthetic stream
 * (printed as TAP comments, not asserted on time).
 */
#define ZSTD_STATIC_LINKING_ONLY
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include <msgpack.h>
#include <zstd.h>

#include "codec.h"
#include "compat.h"
#include "harness.h"
#include "kpz_testutil.h"
#include "workload.h"

/* ---- crafting traces by hand -------------------------------------------- */

static int pk_write(void *data, const char *buf, size_t n)
{
	return membuf_write(data, buf, n);
}

static void put_prefix(struct membuf *b, uint16_t major, uint16_t minor,
		       uint32_t hlen)
{
	uint8_t p[KP_PREFIX_LEN];
	memcpy(p, KP_MAGIC, KP_MAGIC_LEN);
	p[8] = (uint8_t)major;
	p[9] = (uint8_t)(major >> 8);
	p[10] = (uint8_t)minor;
	p[11] = (uint8_t)(minor >> 8);
	for (int i = 0; i < 4; i++)
		p[12 + i] = (uint8_t)(hlen >> (8 * i));
	membuf_write(b, p, sizeof(p));
}

/* Prefix + the given header map bytes. */
static void put_header(struct membuf *b, const struct membuf *map)
{
	put_prefix(b, KP_FORMAT_MAJOR, KP_FORMAT_MINOR, (uint32_t)map->len);
	membuf_write(b, map->p, map->len);
}

static void put_min_header(struct membuf *b)
{
	static const uint8_t empty_map = 0x80;
	struct membuf m = { 0 };
	membuf_write(&m, &empty_map, 1);
	put_header(b, &m);
	membuf_free(&m);
}

/* Compress content as one frame the way the writer does, append it. */
static void put_frame(struct membuf *b, const void *content, size_t n)
{
	ZSTD_CCtx *z = ZSTD_createCCtx();
	ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
	ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, 1);
	size_t cap = ZSTD_compressBound(n);
	void *out = malloc(cap);
	size_t k = ZSTD_compress2(z, out, cap, content, n);
	if (ZSTD_isError(k))
		abort();
	membuf_write(b, out, k);
	free(out);
	ZSTD_freeCCtx(z);
}

static struct kp_reader *open_mem(const struct membuf *b, struct memsrc *src,
				  int *ret)
{
	struct kp_reader *r;
	memset(src, 0, sizeof(*src));
	src->p = b->p;
	src->len = b->len;
	struct kp_source s = { memsrc_read, src };
	*ret = kp_reader_open(&r, &kp_allocator_libc, &s);
	return r;
}

/* ---- header ------------------------------------------------------------- */

TEST(header_roundtrip)
{
	const char *argv[] = { "prog", "", "--flag=1" };
	const char *ck[] = { "KOTOBA_PROFILE_MEMORY", "KOTOBA_PROFILE_IO" };
	const char *cv[] = { "1", "" };
	struct kp_header h = { 0 };
	h.pid = 4321;
	h.ppid = -1;
	h.exe = "/usr/bin/prog";
	h.argv = argv;
	h.argc = 3;
	h.start_wall_ns = UINT64_MAX;
	h.start_mono_ns = 123456789;
	h.clock = "tsc";
	h.tsc_hz = 2.5e9;
	h.hostname = NULL; /* left out: reads as "" */
	h.kprof_version = "0.1.0";
	h.config_keys = ck;
	h.config_vals = cv;
	h.nconfig = 2;
	h.forked = 1;
	h.pgid = 4300;

	struct membuf b = { 0 };
	struct kp_sink sink = { membuf_write, &b, NULL };
	struct kp_writer *w;
	REQUIRE(kp_writer_create(&w, &kp_allocator_libc, &sink, 3, 0) == 0);
	CHECK(kp_writer_header(w, &h) == 0);
	CHECK(kp_writer_header(w, &h) == -EINVAL); /* only once */
	CHECK(kp_writer_bytes_out(w) == b.len);
	kp_writer_free(w);

	struct memsrc src;
	int ret;
	struct kp_reader *r = open_mem(&b, &src, &ret);
	REQUIRE(ret == 0);
	const struct kp_header *g = kp_reader_header(r);
	CHECK(g->major == KP_FORMAT_MAJOR && g->minor == KP_FORMAT_MINOR);
	CHECK(g->pid == 4321 && g->ppid == -1);
	CHECK(strcmp(g->exe, "/usr/bin/prog") == 0);
	REQUIRE(g->argc == 3);
	CHECK(strcmp(g->argv[0], "prog") == 0 && strcmp(g->argv[1], "") == 0 &&
	      strcmp(g->argv[2], "--flag=1") == 0 && g->argv[3] == NULL);
	CHECK(g->start_wall_ns == UINT64_MAX && g->start_mono_ns == 123456789);
	CHECK(strcmp(g->clock, "tsc") == 0 && g->tsc_hz == 2.5e9);
	CHECK(g->hostname && g->hostname[0] == '\0');
	CHECK(strcmp(g->kprof_version, "0.1.0") == 0);
	CHECK(g->forked == 1);
	CHECK(g->pgid == 4300);
	REQUIRE(g->nconfig == 2);
	CHECK(strcmp(g->config_keys[1], "KOTOBA_PROFILE_IO") == 0 &&
	      strcmp(g->config_vals[0], "1") == 0 &&
	      strcmp(g->config_vals[1], "") == 0);
	CHECK(strcmp(kp_header_config(g, "KOTOBA_PROFILE_IO"), "") == 0);
	CHECK(kp_header_config(g, "KOTOBA_PROFILE") == NULL);
	CHECK(kp_header_config(g, "") == NULL);
	struct kp_rec rec;
	CHECK(kp_reader_next(r, &rec) == 0); /* no frames: clean end */
	CHECK(kp_reader_next(r, &rec) == 0);
	kp_reader_free(r);
	membuf_free(&b);
}

TEST(header_config_lookup)
{
	const char *k[] = { "cpu", "memory", "cpu" };
	const char *v[] = { "1", "0", "0" };
	struct kp_header h = { 0 };
	CHECK(kp_header_config(&h, "cpu") == NULL); /* no config at all */
	h.config_keys = k;
	h.config_vals = v;
	h.nconfig = 3;
	CHECK(strcmp(kp_header_config(&h, "cpu"), "1") == 0); /* the first */
	CHECK(strcmp(kp_header_config(&h, "memory"), "0") == 0);
	CHECK(kp_header_config(&h, "mem") == NULL);
	h.nconfig = 1; /* only the first pair counts */
	CHECK(kp_header_config(&h, "memory") == NULL);
}

TEST(header_unknown_keys_and_defaults)
{
	struct membuf m = { 0 };
	msgpack_packer pk;
	msgpack_packer_init(&pk, &m, pk_write);
	msgpack_pack_map(&pk, 7);
	msgpack_pack_str(&pk, 6);
	msgpack_pack_str_body(&pk, "future", 6);
	msgpack_pack_array(&pk, 2); /* nested value of a key we skip */
	msgpack_pack_map(&pk, 1);
	msgpack_pack_nil(&pk);
	msgpack_pack_ext(&pk, 1, 5);
	msgpack_pack_ext_body(&pk, "x", 1);
	msgpack_pack_double(&pk, 1.0);
	msgpack_pack_int(&pk, 42); /* a non-string key */
	msgpack_pack_str(&pk, 1);
	msgpack_pack_str_body(&pk, "v", 1);
	msgpack_pack_str(&pk, 3);
	msgpack_pack_str_body(&pk, "pid", 3);
	msgpack_pack_int(&pk, 77);
	msgpack_pack_str(&pk, 3);
	msgpack_pack_str_body(&pk, "exe", 3);
	msgpack_pack_nil(&pk); /* nil is "missing" */
	msgpack_pack_str(&pk, 6);
	msgpack_pack_str_body(&pk, "tsc_hz", 6);
	msgpack_pack_int(&pk, 1000); /* an int where a float is expected */
	msgpack_pack_str(&pk, 3);
	msgpack_pack_str_body(&pk, "pid", 3); /* duplicate: last wins */
	msgpack_pack_int(&pk, 78);
	msgpack_pack_str(&pk, 4);
	msgpack_pack_str_body(&pk, "argv", 4);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_str(&pk, 1);
	msgpack_pack_str_body(&pk, "a", 1);
	static const uint8_t trailing[] = { 0xc1, 0xc1 }; /* future bytes */
	membuf_write(&m, trailing, sizeof(trailing));

	struct membuf b = { 0 };
	put_header(&b, &m);
	struct memsrc src;
	int ret;
	struct kp_reader *r = open_mem(&b, &src, &ret);
	REQUIRE(ret == 0);
	const struct kp_header *g = kp_reader_header(r);
	CHECK(g->pid == 78 && g->ppid == 0 && g->tsc_hz == 1000.0);
	CHECK(g->exe && g->exe[0] == '\0' && g->clock[0] == '\0');
	CHECK(g->argc == 1 && strcmp(g->argv[0], "a") == 0);
	CHECK(g->nconfig == 0 && g->config_keys && g->config_keys[0] == NULL);
	CHECK(g->forked == 0); /* missing: not forked */
	kp_reader_free(r);
	membuf_free(&b);
	membuf_free(&m);
}

TEST(header_limits)
{
	/* Writer refuses what a reader would refuse. */
	static char big[KP_MAX_STR_LEN + 2];
	memset(big, 'e', KP_MAX_STR_LEN + 1);
	struct membuf b = { 0 };
	struct kp_sink sink = { membuf_write, &b, NULL };
	struct kp_writer *w;
	struct kp_header h = { 0 };
	REQUIRE(kp_writer_create(&w, &kp_allocator_libc, &sink, 3, 0) == 0);
	h.exe = big;
	CHECK(kp_writer_header(w, &h) == KP_ELIMIT);
	h.exe = NULL;
	h.argc = KP_MAX_ARGV + 1;
	h.argv = (const char *const *)calloc(h.argc, sizeof(char *));
	CHECK(kp_writer_header(w, &h) == KP_ELIMIT);
	free((void *)h.argv);
	CHECK(b.len == 0);
	struct kp_rec rec = { .type = KP_REC_FREE };
	CHECK(kp_writer_add(w, &rec) == -EINVAL); /* no header yet */
	kp_writer_free(w);

	/* Reader: oversize strings and arrays in a crafted header. */
	for (int which = 0; which < 3; which++) {
		struct membuf m = { 0 };
		msgpack_packer pk;
		msgpack_packer_init(&pk, &m, pk_write);
		msgpack_pack_map(&pk, 1);
		if (which == 0) {
			msgpack_pack_str(&pk, 8);
			msgpack_pack_str_body(&pk, "hostname", 8);
			msgpack_pack_str(&pk, KP_MAX_STR_LEN + 1);
			msgpack_pack_str_body(&pk, big, KP_MAX_STR_LEN + 1);
		} else if (which == 1) {
			msgpack_pack_str(&pk, 4);
			msgpack_pack_str_body(&pk, "argv", 4);
			msgpack_pack_array(&pk, KP_MAX_ARGV + 1);
			for (int i = 0; i <= KP_MAX_ARGV; i++)
				msgpack_pack_str(&pk, 0);
		} else {
			msgpack_pack_str(&pk, 6);
			msgpack_pack_str_body(&pk, "config", 6);
			msgpack_pack_map(&pk, KP_MAX_ARGV + 1);
			for (int i = 0; i <= KP_MAX_ARGV; i++) {
				msgpack_pack_str(&pk, 0);
				msgpack_pack_str(&pk, 0);
			}
		}
		struct membuf t = { 0 };
		put_header(&t, &m);
		struct memsrc src;
		int ret;
		struct kp_reader *r = open_mem(&t, &src, &ret);
		CHECK(ret == KP_ELIMIT && r == NULL);
		membuf_free(&t);
		membuf_free(&m);
	}
	membuf_free(&b);
}

TEST(bad_prefixes)
{
	struct membuf b = { 0 };
	struct memsrc src;
	int ret;
	struct kp_reader *r;

	uint8_t empty = 0;
	b.p = &empty;
	r = open_mem(&b, &src, &ret); /* empty input */
	CHECK(ret == KP_EFORMAT && r == NULL);
	b.p = NULL;

	membuf_write(&b, "KPROF", 5); /* a prefix of the magic */
	r = open_mem(&b, &src, &ret);
	CHECK(ret == KP_ETRUNC);
	membuf_free(&b);

	membuf_write(&b, "GIF89a..........", 16);
	r = open_mem(&b, &src, &ret);
	CHECK(ret == KP_EFORMAT);
	membuf_free(&b);
	membuf_write(&b, "KPROFTRX", 8);
	r = open_mem(&b, &src, &ret);
	CHECK(ret == KP_EFORMAT);
	membuf_free(&b);

	put_prefix(&b, KP_FORMAT_MAJOR + 1, 0, 1);
	membuf_write(&b, "\x80", 1);
	r = open_mem(&b, &src, &ret);
	CHECK(ret == KP_EVERSION);
	membuf_free(&b);
	/* 0 was never written; the oldest major still read is */
	put_prefix(&b, 0, 0, 1);
	membuf_write(&b, "\x80", 1);
	r = open_mem(&b, &src, &ret);
	CHECK(ret == KP_EVERSION);
	membuf_free(&b);
	kp_reader_free(r);
	put_prefix(&b, KP_FORMAT_MAJOR_MIN, 0, 1);
	membuf_write(&b, "\x80", 1);
	r = open_mem(&b, &src, &ret);
	CHECK(ret == 0);
	kp_reader_free(r);
	membuf_free(&b);

	put_prefix(&b, KP_FORMAT_MAJOR, 999, 1); /* any minor is fine */
	membuf_write(&b, "\x80", 1);
	r = open_mem(&b, &src, &ret);
	CHECK(ret == 0 && kp_reader_header(r)->minor == 999);
	kp_reader_free(r);
	membuf_free(&b);

	put_prefix(&b, KP_FORMAT_MAJOR, 0, KP_MAX_HEADER_LEN + 1);
	r = open_mem(&b, &src, &ret);
	CHECK(ret == KP_ELIMIT);
	membuf_free(&b);

	put_prefix(&b, KP_FORMAT_MAJOR, 0, 100); /* header cut short */
	membuf_write(&b, "\x80", 1);
	r = open_mem(&b, &src, &ret);
	CHECK(ret == KP_ETRUNC);
	membuf_free(&b);

	put_prefix(&b, KP_FORMAT_MAJOR, 0, 1); /* header not a map */
	membuf_write(&b, "\x91", 1);
	r = open_mem(&b, &src, &ret);
	CHECK(ret == KP_ECORRUPT);
	membuf_free(&b);
}

/* ---- records through frames --------------------------------------------- */

TEST(records_roundtrip)
{
	struct kp_rec recs[64];
	size_t n = edge_records(recs);
	/* Frame caps from "one record per frame" to "all in one". */
	const size_t caps[] = { 1, 100, 5000, 0 };
	for (size_t ci = 0; ci < KP_ARRAY_SIZE(caps); ci++) {
		struct membuf b = { 0 };
		REQUIRE(write_trace(&b, recs, n, caps[ci]) == 0);
		size_t got;
		int mism;
		int ret = read_compare(b.p, b.len, 0, recs, n, &got, &mism);
		CHECK(ret == 0 && !mism);
		CHECK_EQ_U(got, n);
		/* The same through a source that returns 1..7 bytes a read. */
		ret = read_compare(b.p, b.len, 7, recs, n, &got, &mism);
		CHECK(ret == 0 && !mism && got == n);
		membuf_free(&b);
	}
}

/* A sink's xWritev: the pieces in order, as one call. */
static int membuf_writev(void *ctx, struct iovec *iov, int n)
{
	struct membuf *b = ctx;
	int writes = b->writes;
	for (int i = 0; i < n; i++)
		if (membuf_write(b, iov[i].iov_base, iov[i].iov_len) < 0)
			return -ENOSPC;
	b->writes = writes + 1;
	return 0;
}

/* A writer into b (through xWritev too if vec) of zstd level 1 and
 * 4 KiB frames, its header written. */
static int membuf_writer(struct membuf *b, int vec, struct kp_writer **w)
{
	struct kp_sink sink = { membuf_write, b, vec ? membuf_writev : NULL };
	struct kp_header h;
	test_header(&h);
	if (kp_writer_create(w, &kp_allocator_libc, &sink, 1, 4096) != 0)
		return -1;
	return kp_writer_header(*w, &h);
}

/* n ALLOCs of thread 7, one size, 64 bytes apart, stack id `stack`:
 * events zstd makes far smaller. */
static void alike_recs(struct kp_rec *recs, size_t n, uint32_t stack)
{
	for (size_t i = 0; i < n; i++) {
		struct kp_rec *r = &recs[i];
		memset(r, 0, sizeof(*r));
		r->type = KP_REC_ALLOC;
		r->tid = 7;
		r->ts = 1000 + i * 10;
		r->u.alloc.ptr = 0x10000 + 64 * i;
		r->u.alloc.size = 48;
		r->u.alloc.stack = stack;
	}
}

TEST(frames_and_counters)
{
	struct workload *wl = malloc(sizeof(*wl));
	REQUIRE(wl);
	wl_init(wl, 7);
	struct membuf b = { 0 };
	struct kp_writer *w;
	REQUIRE(membuf_writer(&b, 0, &w) == 0);
	const size_t n = 200000;
	struct kp_rec rec;
	uint64_t *ts = malloc(n * sizeof(*ts));
	for (size_t i = 0; i < n; i++) {
		wl_next(wl, &rec);
		ts[i] = rec.ts;
		REQUIRE(kp_writer_add(w, &rec) == 0);
	}
	REQUIRE(kp_writer_flush(w) == 0);
	CHECK(kp_writer_flush(w) == 0); /* nothing open: no-op */
	CHECK(kp_writer_records(w) == n);
	CHECK(kp_writer_bytes_out(w) == b.len);
	kp_writer_free(w);

	struct memsrc src;
	int ret;
	struct kp_reader *r = open_mem(&b, &src, &ret);
	REQUIRE(ret == 0);
	uint64_t frames = 0, recs = 0, threads = 0;
	int seq_ok = 1, ts_ok = 1;
	while ((ret = kp_reader_next(r, &rec)) == 1) {
		if (rec.type == KP_REC_FRAME) {
			seq_ok &= rec.u.frame.seq == frames;
			frames++;
		} else if (rec.type == KP_REC_THREAD) {
			threads++;
		} else {
			if (rec.type != KP_REC_STACK)
				ts_ok &= rec.ts == ts[recs];
			recs++;
		}
	}
	CHECK(ret == 0 && seq_ok && ts_ok);
	CHECK_EQ_U(recs, n);
	CHECK(frames > 100);
	CHECK_EQ_U(kp_reader_frames(r), frames);
	CHECK_EQ_U(kp_reader_bytes_in(r), b.len);
	printf("# %llu frames, %llu THREAD records\n",
	       (unsigned long long)frames, (unsigned long long)threads);
	kp_reader_free(r);
	membuf_free(&b);
	free(ts);
	free(wl);
}

static int is_mem_rec(const struct kp_rec *r)
{
	return r->type == KP_REC_ALLOC || r->type == KP_REC_FREE ||
	       r->type == KP_REC_REALLOC;
}

/* Write recs with kp_writer_add() only (bulk 0), or with each run of
 * events of one thread through kp_writer_events_open/kp_enc_mem/close,
 * runs also cut every cut events (bulk 1); with the writer's options
 * opts (kp_writer_options); through a sink with xWritev if vec (else
 * xWrite only, as write_recs). */
static int write_recs_v(struct membuf *b, const struct kp_rec *recs, size_t n,
			int bulk, size_t cut, unsigned opts, int vec)
{
	struct kp_writer *w;
	if (membuf_writer(b, vec, &w) != 0 || kp_writer_options(w, opts) != 0)
		return -1;
	for (size_t i = 0; i < n;) {
		const struct kp_rec *r = &recs[i];
		if (!bulk || !is_mem_rec(r)) {
			if (kp_writer_add(w, r) != 0)
				return -1;
			i++;
			continue;
		}
		struct kp_evbuf eb;
		size_t k = 0;
		if (kp_writer_events_open(w, r->tid, r->ts, &eb) != 0)
			return -1;
		do {
			r = &recs[i];
			uint64_t a = r->u.alloc.ptr, bb = r->u.alloc.size,
				 c = r->u.alloc.align, d = 0;
			uint32_t st = r->u.alloc.stack;
			if (r->type == KP_REC_FREE) {
				a = r->u.free.ptr;
				bb = c = st = 0;
			} else if (r->type == KP_REC_REALLOC) {
				a = r->u.realloc.old_ptr;
				bb = r->u.realloc.new_ptr;
				c = r->u.realloc.size;
				d = r->u.realloc.dur;
				st = r->u.realloc.stack;
			}
			eb.p = kp_enc_mem(eb.enc, eb.p, r->type, r->kind, r->ts,
					  a, bb, c, d, st);
			k++;
			i++;
		} while (i < n && eb.p < eb.end && k % cut && is_mem_rec(&recs[i]) &&
			 recs[i].tid == recs[i - 1].tid);
		if (kp_writer_events_close(w, &eb, k, recs[i - 1].ts) != 0)
			return -1;
	}
	if (kp_writer_flush(w) != 0)
		return -1;
	int ok = kp_writer_records(w) == n;
	kp_writer_free(w);
	return ok ? 0 : -1;
}

static int write_recs(struct membuf *b, const struct kp_rec *recs, size_t n,
		      int bulk, size_t cut, unsigned opts)
{
	return write_recs_v(b, recs, n, bulk, cut, opts, 0);
}

/* The writer thread's bulk path writes the bytes of kp_writer_add(). */
TEST(events_bulk_same_bytes)
{
	struct workload *wl = malloc(sizeof(*wl));
	REQUIRE(wl);
	wl_init(wl, 11);
	const size_t n = 50000;
	struct kp_rec *recs = calloc(n, sizeof(*recs));
	REQUIRE(recs);
	for (size_t i = 0; i < n; i++) {
		wl_next(wl, &recs[i]);
		struct kp_rec *r = &recs[i];
		if (r->type == KP_REC_ALLOC && i % 37 == 0) {
			r->kind = 2; /* calloc, aligned: the ALLOC_X form */
			r->u.alloc.align = 64;
		} else if (r->type == KP_REC_FREE && i % 53 == 0) {
			uint64_t p = r->u.free.ptr;
			r->type = KP_REC_REALLOC;
			r->u.realloc.old_ptr = p;
			r->u.realloc.new_ptr = i % 2 ? p : p + 4096 + i;
			r->u.realloc.size = 100 + i;
			r->u.realloc.stack = (uint32_t)(i % 7);
			r->u.realloc.dur = 1000 + i;
		}
	}
	struct membuf one = { 0 };
	REQUIRE(write_recs(&one, recs, n, 0, 0, 0) == 0);
	for (size_t cut = 1; cut <= 1000; cut *= 10) {
		struct membuf bulk = { 0 };
		REQUIRE(write_recs(&bulk, recs, n, 1, cut, 0) == 0);
		CHECK_EQ_U(bulk.len, one.len);
		CHECK(bulk.len == one.len && !memcmp(bulk.p, one.p, one.len));
		membuf_free(&bulk);
	}
	membuf_free(&one);
	free(recs);
	free(wl);
}

/* n memory events of the workload without stacks (some FREEs made
 * REALLOCs), as a program recorded with KOTOBA_PROFILE_STACK_DEPTH=0. */
static struct kp_rec *stackless_recs(size_t n)
{
	struct workload *wl = malloc(sizeof(*wl));
	struct kp_rec *recs = calloc(n, sizeof(*recs));
	if (!wl || !recs)
		abort();
	wl_init(wl, 17);
	size_t m = 0;
	while (m < n) {
		wl_next(wl, &recs[m]);
		struct kp_rec *r = &recs[m];
		if (!is_mem_rec(r))
			continue; /* STACK records: none without stacks */
		if (r->type == KP_REC_ALLOC)
			r->u.alloc.stack = 0;
		if (r->type == KP_REC_FREE && m % 41 == 0) {
			uint64_t p = r->u.free.ptr;
			r->type = KP_REC_REALLOC;
			r->u.realloc.old_ptr = p;
			r->u.realloc.new_ptr = p + 64 * (m % 3);
			r->u.realloc.size = 100 + m;
			r->u.realloc.dur = 500 + m;
		}
		m++;
	}
	free(wl);
	return recs;
}

/*
 * A writer told that events have no stacks (KP_WRITER_NO_STACKS) writes
 * them in EVENTS_NS blocks that read back as the same records, by either
 * path, and refuses an event with a stack; with raw literals
 * (KP_WRITER_RAW_LITERALS) the trace reads the same and is larger (the
 * option took effect); the options change between events too.
 */
TEST(no_stacks_and_raw_literals)
{
	const size_t n = 30000;
	struct kp_rec *recs = stackless_recs(n);
	size_t got;
	int mism;
	struct membuf with = { 0 }, ns = { 0 }, raw = { 0 };
	REQUIRE(write_recs(&with, recs, n, 0, 0, 0) == 0);
	REQUIRE(write_recs(&ns, recs, n, 0, 0, KP_WRITER_NO_STACKS) == 0);
	CHECK(read_compare(ns.p, ns.len, 0, recs, n, &got, &mism) == 0);
	CHECK(!mism && got == n);
	/* the same bytes through the bulk path */
	struct membuf bulk = { 0 };
	REQUIRE(write_recs(&bulk, recs, n, 1, 100, KP_WRITER_NO_STACKS) == 0);
	CHECK(bulk.len == ns.len && !memcmp(bulk.p, ns.p, ns.len));
	REQUIRE(write_recs(&raw, recs, n, 1, 1000,
			   KP_WRITER_NO_STACKS | KP_WRITER_RAW_LITERALS) == 0);
	CHECK(read_compare(raw.p, raw.len, 0, recs, n, &got, &mism) == 0);
	CHECK(!mism && got == n);
	printf("# %zu events: %zu bytes with stack fields, %zu without, %zu "
	       "without and raw literals\n", n, with.len, ns.len, raw.len);
	CHECK(ns.len < with.len);
	CHECK(raw.len > ns.len);

	/* an event with a stack has no place in such a writer; back to
	 * stacks mid-frame, the next event opens an EVENTS block, so both
	 * read back as written */
	struct membuf sw = { 0 };
	struct kp_sink sink = { membuf_write, &sw, NULL };
	struct kp_writer *w;
	struct kp_header h;
	test_header(&h);
	REQUIRE(kp_writer_create(&w, &kp_allocator_libc, &sink, 1, 0) == 0);
	REQUIRE(kp_writer_header(w, &h) == 0);
	REQUIRE(kp_writer_options(w, KP_WRITER_NO_STACKS) == 0);
	struct kp_rec two[2] = { recs[0], recs[0] };
	two[0].type = KP_REC_ALLOC;
	two[0].u.alloc.ptr = 0x1000;
	two[0].u.alloc.size = 8;
	two[0].u.alloc.align = 0;
	two[0].u.alloc.stack = 3;
	CHECK(kp_writer_add(w, &two[0]) == -EINVAL);
	two[0].u.alloc.stack = 0;
	CHECK(kp_writer_add(w, &two[0]) == 0);
	REQUIRE(kp_writer_options(w, 0) == 0);
	two[1] = two[0];
	two[1].u.alloc.ptr = 0x2000;
	two[1].u.alloc.stack = 3;
	CHECK(kp_writer_add(w, &two[1]) == 0);
	CHECK(kp_writer_flush(w) == 0);
	kp_writer_free(w);
	CHECK(read_compare(sw.p, sw.len, 0, two, 2, &got, &mism) == 0);
	CHECK(!mism && got == 2);
	membuf_free(&sw);

	membuf_free(&with);
	membuf_free(&ns);
	membuf_free(&raw);
	membuf_free(&bulk);
	free(recs);
}

/*
 * The zstd frames of a trace (after its prefix and header): each must
 * decode with libzstd itself, which checks its content size and its
 * checksum, to what it says; *stored counts those written by
 * KP_WRITER_STORE_INCOMPRESSIBLE (a 4-byte content size for under 64 KiB,
 * which zstd never writes: it takes the smallest field). order[i] is 'S'
 * or 'z' for frame i (room for cap).
 * @return the frames, or -1 if one does not decode.
 */
static long zstd_frames(const uint8_t *p, size_t len, size_t *stored,
			char *order, size_t cap)
{
	uint32_t hlen;
	memcpy(&hlen, p + 12, 4);
	size_t off = KP_PREFIX_LEN + hlen;
	long frames = 0;
	*stored = 0;
	static uint8_t out[1 << 20];
	while (off < len) {
		size_t fs = ZSTD_findFrameCompressedSize(p + off, len - off);
		unsigned long long cs =
			ZSTD_getFrameContentSize(p + off, len - off);
		if (ZSTD_isError(fs) || cs > sizeof(out))
			return -1;
		size_t d = ZSTD_decompress(out, sizeof(out), p + off, fs);
		if (ZSTD_isError(d) || d != cs) {
			printf("#   frame at %zu: %s\n", off,
			       ZSTD_isError(d) ? ZSTD_getErrorName(d) : "size");
			return -1;
		}
		int st = p[off + 4] == 0xA4 && cs < 65536 + 256;
		*stored += (size_t)st;
		if ((size_t)frames < cap)
			order[frames] = st ? 'S' : 'z';
		frames++;
		off += fs;
	}
	return frames;
}

/*
 * KP_WRITER_STORE_INCOMPRESSIBLE: the events of a program that allocates
 * in no pattern, without stacks and with raw literals, which zstd cannot
 * make smaller: after the first frame each run of 15 is stored as zstd
 * frames of raw blocks, then one is tried again; the trace reads back
 * the same records; the frames decode with libzstd (so their checksum,
 * kprof's own XXH64, is right, over frames of 35 lengths); the
 * bytes are the same through the sink's xWritev (no copy) and through
 * xWrite; a changed byte in a stored frame is found by the reader; the
 * events of a trace zstd compresses are never stored.
 */
TEST(stored_frames)
{
	const size_t n = 30000;
	struct kp_rec *recs = stackless_recs(n);
	const unsigned opt = KP_WRITER_NO_STACKS | KP_WRITER_RAW_LITERALS |
			     KP_WRITER_STORE_INCOMPRESSIBLE;
	struct membuf vec = { 0 }, copy = { 0 }, plain = { 0 };
	REQUIRE(write_recs_v(&vec, recs, n, 1, 700, opt, 1) == 0);
	REQUIRE(write_recs_v(&copy, recs, n, 1, 700, opt, 0) == 0);
	REQUIRE(write_recs(&plain, recs, n, 1, 700,
			   KP_WRITER_NO_STACKS | KP_WRITER_RAW_LITERALS) == 0);
	CHECK(vec.len == copy.len && !memcmp(vec.p, copy.p, vec.len));
	size_t got;
	int mism;
	CHECK(read_compare(vec.p, vec.len, 0, recs, n, &got, &mism) == 0);
	CHECK(!mism && got == n);
	CHECK(read_compare(vec.p, vec.len, 1000, recs, n, &got, &mism) == 0);
	CHECK(!mism && got == n);

	size_t stored, stored_plain;
	char order[256];
	long frames = zstd_frames(vec.p, vec.len, &stored, order,
				  sizeof(order));
	long frames_plain = zstd_frames(plain.p, plain.len, &stored_plain,
					order + 128, 0);
	printf("# %ld frames, %zu stored, %zu bytes (%zu compressing each)\n",
	       frames, stored, vec.len, plain.len);
	REQUIRE(frames > 32 && frames < 128); /* z at 0, 16 and 32 */
	CHECK(frames_plain == frames && stored_plain == 0);
	/* z, then 15 S and a z again, ... */
	for (long i = 0; i < frames; i++)
		CHECK(order[i] == (i % 16 == 0 ? 'z' : 'S'));
	CHECK(stored == (size_t)(frames - (frames + 15) / 16));
	/* stored frames store: within 1 % of what zstd made of them */
	CHECK(vec.len < plain.len + plain.len / 100);

	/* one byte of a stored frame's content changed (frame 1 starts
	 * where the first ends): the checksum finds it */
	uint32_t hlen;
	memcpy(&hlen, vec.p + 12, 4);
	size_t f1 = KP_PREFIX_LEN + hlen +
		    ZSTD_findFrameCompressedSize(vec.p + KP_PREFIX_LEN + hlen,
						 vec.len);
	REQUIRE(vec.p[f1 + 4] == 0xA4);
	vec.p[f1 + 9 + 3 + 100] ^= 0x20;
	int ret = read_compare(vec.p, vec.len, 0, recs, n, &got, &mism);
	printf("# with a byte changed: %d after %zu records\n", ret, got);
	CHECK(ret == KP_ECORRUPT);

	/* alike events (one size, pointers 64 bytes apart): compressed */
	alike_recs(recs, n, 0);
	struct membuf alike = { 0 };
	REQUIRE(write_recs_v(&alike, recs, n, 1, 700, opt, 1) == 0);
	CHECK(read_compare(alike.p, alike.len, 0, recs, n, &got, &mism) == 0);
	CHECK(!mism && got == n);
	CHECK(zstd_frames(alike.p, alike.len, &stored, order, 0) > 0);
	CHECK(stored == 0);

	membuf_free(&vec);
	membuf_free(&copy);
	membuf_free(&plain);
	membuf_free(&alike);
	free(recs);
}

/*
 * KP_WRITER_STORE_SMALL: a frame of under KP_STORE_SMALL bytes is stored,
 * a larger one compressed as before (its events alike, which zstd makes
 * far smaller); without the option the small frame is compressed too;
 * both traces read back every record.
 */
TEST(store_small_frames)
{
	const size_t n = 3000, small = 20;
	struct kp_rec *recs = calloc(n, sizeof(*recs));
	REQUIRE(recs);
	alike_recs(recs, n, 1);
	for (int opt = 0; opt < 2; opt++) {
		struct membuf b = { 0 };
		struct kp_writer *w;
		REQUIRE(membuf_writer(&b, 0, &w) == 0);
		REQUIRE(kp_writer_options(w, opt ? KP_WRITER_STORE_SMALL : 0) == 0);
		for (size_t i = 0; i < n; i++) {
			REQUIRE(kp_writer_add(w, &recs[i]) == 0);
			if (i + 1 == small)
				REQUIRE(kp_writer_flush(w) == 0);
		}
		REQUIRE(kp_writer_flush(w) == 0);
		kp_writer_free(w);
		size_t stored, got;
		int mism;
		char order[64];
		long frames = zstd_frames(b.p, b.len, &stored, order, sizeof(order));
		printf("# STORE_SMALL %s: %ld frames, %zu stored, %zu bytes\n",
		       opt ? "on" : "off", frames, stored, b.len);
		REQUIRE(frames >= 3 && frames < 64);
		CHECK(order[0] == (opt ? 'S' : 'z'));
		for (long i = 1; i < frames - 1; i++)
			CHECK(order[i] == 'z'); /* full frames: 4 KiB */
		CHECK(stored == (size_t)opt + (opt && order[frames - 1] == 'S'));
		CHECK(read_compare(b.p, b.len, 0, recs, n, &got, &mism) == 0);
		CHECK(!mism && got == n);
		membuf_free(&b);
	}
	free(recs);
}

/* A small multi-frame trace; ends[] gets each frame's end offset. */
struct small_trace {
	struct membuf b;
	struct kp_rec recs[400];
	size_t n;
	size_t ends[64];   /* byte offset where frame i ends */
	size_t upto[64];   /* records (not FRAME/THREAD) in frames 0..i */
	size_t nframes;
	size_t hdr_end;
};

static void make_small_trace(struct small_trace *t, size_t nrec,
			     size_t frame_cap)
{
	struct workload *wl = malloc(sizeof(*wl));
	wl_init(wl, 99);
	memset(t, 0, sizeof(*t));
	/* The event stream, with STACK pcs copied out of the generator. */
	static uint64_t pcs[400][KP_MAX_STACK_DEPTH];
	for (size_t i = 0; i < nrec; i++) {
		wl_next(wl, &t->recs[i]);
		if (t->recs[i].type == KP_REC_STACK) {
			memcpy(pcs[i], t->recs[i].u.stack.pcs,
			       t->recs[i].u.stack.depth * sizeof(uint64_t));
			t->recs[i].u.stack.pcs = pcs[i];
		}
	}
	t->n = nrec;
	free(wl);

	/* Each frame is one sink write: note where each one ends. */
	struct kp_sink sink = { membuf_write, &t->b, NULL };
	struct kp_writer *w;
	struct kp_header h;
	test_header(&h);
	kp_writer_create(&w, &kp_allocator_libc, &sink, 3, frame_cap);
	kp_writer_header(w, &h);
	t->hdr_end = t->b.len;
	size_t frames_seen = 0;
	for (size_t i = 0; i < nrec; i++) {
		kp_writer_add(w, &t->recs[i]);
		while (t->b.writes - 1 > (int)frames_seen) {
			t->ends[frames_seen] = t->b.len;
			t->upto[frames_seen] = i + 1;
			frames_seen++;
		}
	}
	kp_writer_flush(w);
	if (t->b.writes - 1 > (int)frames_seen) {
		t->ends[frames_seen] = t->b.len;
		t->upto[frames_seen] = nrec;
		frames_seen++;
	}
	t->nframes = frames_seen;
	kp_writer_free(w);
}

TEST(truncation_every_offset)
{
	struct small_trace *t = malloc(sizeof(*t));
	REQUIRE(t);
	make_small_trace(t, 300, 400);
	REQUIRE(t->nframes >= 4);
	printf("# %zu frames, %zu bytes\n", t->nframes, t->b.len);
	int failures = 0;
	for (size_t cut = 0; cut <= t->b.len; cut++) {
		size_t got;
		int mism;
		int ret = read_compare(t->b.p, cut, cut % 3 ? 0 : 5, t->recs,
				       t->n, &got, &mism);
		size_t want = 0, k = 0;
		int boundary = cut == t->hdr_end;
		while (k < t->nframes && t->ends[k] <= cut) {
			want = t->upto[k];
			boundary = t->ends[k] == cut;
			k++;
		}
		int want_ret;
		if (cut == 0)
			want_ret = KP_EFORMAT;
		else if (cut < t->hdr_end)
			want_ret = KP_ETRUNC;
		else
			want_ret = boundary ? 0 : KP_ETRUNC;
		if (ret != want_ret || mism || got != want) {
			if (failures++ < 5)
				printf("#   cut %zu: ret %d (want %d), %zu records "
				       "(want %zu)\n",
				       cut, ret, want_ret, got, want);
		}
	}
	CHECK(failures == 0);
	/* After ETRUNC the reader keeps saying so. */
	struct membuf cutb = t->b;
	cutb.len = t->ends[1] + 10;
	struct memsrc src;
	int ret;
	struct kp_reader *r = open_mem(&cutb, &src, &ret);
	REQUIRE(ret == 0);
	struct kp_rec rec;
	while ((ret = kp_reader_next(r, &rec)) == 1)
		;
	CHECK(ret == KP_ETRUNC);
	CHECK(kp_reader_next(r, &rec) == KP_ETRUNC);
	CHECK(kp_reader_next(r, &rec) == KP_ETRUNC);
	kp_reader_free(r);
	membuf_free(&t->b);
	free(t);
}

/*
 * Read everything, calling again after errors (at most 20 of them).
 * got[] gets the records (not FRAME/THREAD); returns the error count.
 */
static uint64_t pcs_store[400][KP_MAX_STACK_DEPTH];

static int read_through_errors(const uint8_t *p, size_t len,
			       struct kp_rec *got, size_t max, size_t *n,
			       int *last)
{
	struct memsrc src = { p, len, 0, 0, 0 };
	struct kp_source s = { memsrc_read, &src };
	struct kp_reader *r;
	struct kp_rec rec;
	int errors = 0, ret;
	*n = 0;
	ret = kp_reader_open(&r, &kp_allocator_libc, &s);
	if (ret < 0) {
		*last = ret;
		return 1;
	}
	for (;;) {
		ret = kp_reader_next(r, &rec);
		if (ret == 1) {
			if (rec.type == KP_REC_FRAME ||
			    rec.type == KP_REC_THREAD || *n >= max)
				continue;
			/* pcs live only until the next record: keep a copy */
			if (rec.type == KP_REC_STACK) {
				memcpy(pcs_store[*n], rec.u.stack.pcs,
				       rec.u.stack.depth * sizeof(uint64_t));
				rec.u.stack.pcs = pcs_store[*n];
			}
			got[(*n)++] = rec;
			continue;
		}
		if (ret == 0 || ++errors > 20)
			break;
	}
	*last = ret;
	kp_reader_free(r);
	return errors;
}

TEST(corrupt_byte_resyncs)
{
	struct small_trace *t = malloc(sizeof(*t));
	REQUIRE(t);
	make_small_trace(t, 120, 600);
	REQUIRE(t->nframes >= 3);
	/* Frame 1 (the second) gets every byte flipped in turn. */
	size_t lo = t->ends[0], hi = t->ends[1];
	size_t f0 = t->upto[0], f1 = t->upto[1], all = t->n;
	size_t tail = all - f1; /* records after the damaged frame */
	struct kp_rec *got = malloc(400 * sizeof(*got));
	REQUIRE(all <= 400);
	int failures = 0;
	for (size_t off = lo; off < hi; off++) {
		uint8_t *p = malloc(t->b.len);
		memcpy(p, t->b.p, t->b.len);
		p[off] ^= 0x5a;
		size_t n;
		int last;
		int errors = read_through_errors(p, t->b.len, got, 400, &n,
						 &last);
		/*
		 * Some bits of a zstd frame do not change its output (unused
		 * bits of an entropy table): then nothing may be lost.
		 */
		int ok = (errors >= 1 || n == all) && last == 0 &&
			 n >= f0 + tail &&
			 n <= all;
		/* Frames before are whole, frames after are whole. */
		for (size_t i = 0; ok && i < f0; i++)
			ok = rec_same(&got[i], &t->recs[i]);
		for (size_t i = 0; ok && i < tail; i++)
			ok = rec_same(&got[n - tail + i], &t->recs[f1 + i]);
		/* Anything from the damaged frame is genuine. */
		for (size_t i = f0; ok && i < n - tail; i++)
			ok = rec_same(&got[i], &t->recs[i]);
		if (!ok && failures++ < 5)
			printf("#   flip at %zu (frame bytes %zu..%zu): %d "
			       "errors, last %d, %zu records (%zu+%zu+%zu)\n",
			       off, lo, hi, errors, last, n, f0, f1 - f0, tail);
		free(p);
	}
	CHECK(failures == 0);
	free(got);
	membuf_free(&t->b);
	free(t);
}

TEST(crafted_frames)
{
	struct membuf c = { 0 };
	msgpack_packer pk;
	msgpack_packer_init(&pk, &c, pk_write);

	/* 1: a frame whose first record is not a FRAME. */
	struct membuf b = { 0 };
	put_min_header(&b);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int(&pk, KP_REC_FREE);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_int(&pk, 2);
	put_frame(&b, c.p, c.len);
	/* 2: a good frame with an unknown record and extra fields. */
	c.len = 0;
	msgpack_pack_array(&pk, 4);
	msgpack_pack_int(&pk, KP_REC_FRAME);
	msgpack_pack_int(&pk, 100);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_str(&pk, 2);      /* extra trailing element */
	msgpack_pack_str_body(&pk, "hi", 2);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int(&pk, 120);    /* unknown type */
	msgpack_pack_map(&pk, 1);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_array(&pk, 0);
	msgpack_pack_nil(&pk);
	msgpack_pack_array(&pk, 4);
	msgpack_pack_int(&pk, KP_REC_FREE);
	msgpack_pack_int(&pk, 5);
	msgpack_pack_int(&pk, 0x100);
	msgpack_pack_double(&pk, 0.5); /* extra trailing element */
	put_frame(&b, c.p, c.len);
	/* 3: an empty frame; 4: a skippable frame; 5: a bad record. */
	put_frame(&b, "", 0);
	static const uint8_t skip[] = { 0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0,
					'a', 'b', 'c' };
	membuf_write(&b, skip, sizeof(skip));
	c.len = 0;
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int(&pk, KP_REC_FRAME);
	msgpack_pack_int(&pk, 0);
	msgpack_pack_int(&pk, 2);
	msgpack_pack_array(&pk, 2); /* FREE missing dptr */
	msgpack_pack_int(&pk, KP_REC_FREE);
	msgpack_pack_int(&pk, 5);
	put_frame(&b, c.p, c.len);
	/* 6: a frame whose content size is unknown. */
	{
		ZSTD_CCtx *z = ZSTD_createCCtx();
		ZSTD_CCtx_setParameter(z, ZSTD_c_contentSizeFlag, 0);
		uint8_t out[256];
		ZSTD_outBuffer ob = { out, sizeof(out), 0 };
		ZSTD_inBuffer ib = { c.p, c.len, 0 };
		ZSTD_compressStream2(z, &ob, &ib, ZSTD_e_end);
		membuf_write(&b, out, ob.pos);
		ZSTD_freeCCtx(z);
	}
	/* 7: a good frame with a FREE and a stack. */
	c.len = 0;
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int(&pk, KP_REC_FRAME);
	msgpack_pack_int(&pk, 1000);
	msgpack_pack_int(&pk, 3);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int(&pk, KP_REC_FREE);
	msgpack_pack_int(&pk, -1);
	msgpack_pack_int(&pk, 0x200);
	put_frame(&b, c.p, c.len);

	struct memsrc src;
	int ret;
	struct kp_reader *r = open_mem(&b, &src, &ret);
	REQUIRE(ret == 0);
	struct kp_rec rec;
	CHECK(kp_reader_next(r, &rec) == KP_ECORRUPT); /* 1 */
	CHECK(kp_reader_next(r, &rec) == 1 && rec.type == KP_REC_FRAME &&
	      rec.u.frame.base_ts == 100 && rec.u.frame.seq == 1);
	CHECK(kp_reader_next(r, &rec) == 1 && rec.type == KP_REC_FREE &&
	      rec.ts == 105 && rec.u.free.ptr == 0x100);
	CHECK(kp_reader_next(r, &rec) == KP_ECORRUPT); /* 3 */
	CHECK(kp_reader_next(r, &rec) == 1 && rec.type == KP_REC_FRAME &&
	      rec.u.frame.seq == 2); /* skippable skipped */
	CHECK(kp_reader_next(r, &rec) == KP_ECORRUPT); /* 5 */
	CHECK(kp_reader_next(r, &rec) == KP_ECORRUPT); /* 6 */
	CHECK(kp_reader_next(r, &rec) == 1 && rec.type == KP_REC_FRAME &&
	      rec.u.frame.seq == 3);
	CHECK(kp_reader_next(r, &rec) == 1 && rec.type == KP_REC_FREE &&
	      rec.ts == 999 && rec.u.free.ptr == 0x200);
	CHECK(kp_reader_next(r, &rec) == 0);
	kp_reader_free(r);

	/* Garbage after the last frame: ECORRUPT, then it sticks. */
	membuf_write(&b, "garbage!", 8);
	r = open_mem(&b, &src, &ret);
	REQUIRE(ret == 0);
	int errors = 0;
	for (int i = 0; i < 20; i++) {
		ret = kp_reader_next(r, &rec);
		if (ret < 0)
			errors++;
		if (ret == 0)
			break;
	}
	CHECK(ret == KP_ECORRUPT && errors > 4);
	kp_reader_free(r);
	membuf_free(&b);
	membuf_free(&c);
}

/* A frame header claiming far more content than its blocks can hold. */
TEST(lying_content_size)
{
	struct membuf b = { 0 };
	put_min_header(&b);
	size_t start = b.len;
	static const uint8_t one[3] = { 0x91, 0x01, 0x00 };
	put_frame(&b, one, sizeof(one));
	/* Single-segment frame with a 1-byte size: rewrite to an 8-byte
	 * size field by hand (FHD 0xe4: single segment, FCS 8 bytes, cksum). */
	uint8_t fr[64];
	size_t fl = b.len - start;
	REQUIRE(fl < sizeof(fr));
	memcpy(fr, b.p + start, fl);
	b.len = start;
	uint8_t out[64];
	memcpy(out, fr, 4);
	out[4] = 0xe4;
	uint64_t big = KP_MAX_FRAME_CONTENT; /* within the limit, yet a lie */
	for (int i = 0; i < 8; i++)
		out[5 + i] = (uint8_t)(big >> (8 * i));
	/* original FHD at fr[4] has a 1-byte FCS at fr[5]; blocks follow */
	memcpy(out + 13, fr + 6, fl - 6);
	membuf_write(&b, out, 13 + fl - 6);
	struct memsrc src;
	int ret;
	struct kp_reader *r = open_mem(&b, &src, &ret);
	REQUIRE(ret == 0);
	struct kp_rec rec;
	ret = kp_reader_next(r, &rec);
	CHECK(ret == KP_ECORRUPT);
	kp_reader_free(r);
	membuf_free(&b);
}

/* ---- failures of the sink, the source and the allocator ----------------- */

TEST(failing_sink)
{
	struct kp_rec recs[64];
	size_t n = edge_records(recs);
	/* How many writes does a clean run take? */
	struct membuf ok = { 0 };
	REQUIRE(write_trace(&ok, recs, n, 200) == 0);
	int total = ok.writes;
	membuf_free(&ok);
	REQUIRE(total > 3);
	for (int fail_at = 1; fail_at <= total; fail_at++) {
		struct membuf b = { 0 };
		b.fail_at = fail_at;
		b.fail_err = fail_at % 2 ? -ENOSPC : -EIO;
		struct kp_sink sink = { membuf_write, &b, NULL };
		struct kp_writer *w;
		struct kp_header h;
		test_header(&h);
		REQUIRE(kp_writer_create(&w, &kp_allocator_libc, &sink, 3,
					 200) == 0);
		int ret = kp_writer_header(w, &h);
		for (size_t i = 0; ret == 0 && i < n; i++)
			ret = kp_writer_add(w, &recs[i]);
		if (ret == 0)
			ret = kp_writer_flush(w);
		CHECK(ret == b.fail_err);
		/* The error sticks. */
		CHECK(kp_writer_add(w, &recs[0]) == b.fail_err);
		CHECK(kp_writer_flush(w) == b.fail_err);
		/* What was written is a readable prefix of the trace. */
		size_t got;
		int mism;
		ret = read_compare(b.p, b.len, 0, recs, n, &got, &mism);
		CHECK(!mism && (ret == 0 || ret == KP_ETRUNC ||
				(fail_at == 1 && ret == KP_EFORMAT)));
		kp_writer_free(w);
		membuf_free(&b);
	}
}

TEST(failing_source)
{
	struct kp_rec recs[64];
	size_t n = edge_records(recs);
	struct membuf b = { 0 };
	REQUIRE(write_trace(&b, recs, n, 100) == 0);
	for (size_t at = 1; at < b.len; at += 97) {
		struct memsrc src = { b.p, b.len, 0, 13, (int)at };
		struct kp_source s = { memsrc_read, &src };
		struct kp_reader *r;
		int ret = kp_reader_open(&r, &kp_allocator_libc, &s);
		if (ret < 0) {
			CHECK(ret == -EIO);
			continue;
		}
		struct kp_rec rec;
		while ((ret = kp_reader_next(r, &rec)) == 1)
			;
		CHECK(ret == -EIO);
		CHECK(kp_reader_next(r, &rec) == -EIO);
		kp_reader_free(r);
	}
	membuf_free(&b);
}

/* An allocator that fails its Nth call; counts what is outstanding. */
struct failing_alloc {
	int calls, fail_at, live;
};

static void *fa_malloc(void *ctx, size_t n)
{
	struct failing_alloc *f = ctx;
	if (++f->calls == f->fail_at)
		return NULL;
	f->live++;
	return malloc(n);
}

static void fa_free(void *ctx, void *p)
{
	struct failing_alloc *f = ctx;
	f->live--;
	free(p);
}

TEST(failing_allocator)
{
	struct kp_rec recs[64];
	size_t n = edge_records(recs);
	struct membuf ok = { 0 };
	REQUIRE(write_trace(&ok, recs, n, 300) == 0);
	int saw_enomem_w = 0, saw_enomem_r = 0, saw_ok = 0;
	for (int fail_at = 1; fail_at < 40; fail_at++) {
		struct failing_alloc f = { 0, fail_at, 0 };
		struct kp_allocator a = { fa_malloc, fa_free, &f };
		struct membuf b = { 0 };
		int ret = write_trace_alloc(&a, &b, recs, n, 300);
		CHECK(ret == 0 || ret == KP_ENOMEM);
		saw_enomem_w |= ret == KP_ENOMEM;
		CHECK(f.live == 0); /* nothing leaked */
		membuf_free(&b);

		struct failing_alloc g = { 0, fail_at, 0 };
		struct kp_allocator ra = { fa_malloc, fa_free, &g };
		struct memsrc src = { ok.p, ok.len, 0, 0, 0 };
		struct kp_source s = { memsrc_read, &src };
		struct kp_reader *r;
		ret = kp_reader_open(&r, &ra, &s);
		if (ret == 0) {
			struct kp_rec rec;
			while ((ret = kp_reader_next(r, &rec)) == 1)
				;
			kp_reader_free(r);
		}
		CHECK(ret == 0 || ret == KP_ENOMEM);
		saw_enomem_r |= ret == KP_ENOMEM;
		saw_ok |= ret == 0;
		CHECK(g.live == 0);
	}
	CHECK(saw_enomem_w && saw_enomem_r && saw_ok);
	membuf_free(&ok);
}

/* ---- size and speed ----------------------------------------------------- */

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + t.tv_nsec / 1e9;
}

/* Write the synthetic workload: n records at the given level. */
static uint64_t write_workload(struct membuf *b, size_t n, int level,
			       uint64_t *events, uint64_t *stack_bytes)
{
	struct workload *wl = malloc(sizeof(*wl));
	wl_init(wl, 12345);
	struct kp_sink sink = { membuf_write, b, NULL };
	struct kp_writer *w;
	struct kp_header h;
	test_header(&h);
	kp_writer_create(&w, &kp_allocator_libc, &sink, level, 0);
	kp_writer_header(w, &h);
	struct kp_rec rec;
	*stack_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		wl_next(wl, &rec);
		if (rec.type == KP_REC_STACK)
			*stack_bytes += 2 + 9 * rec.u.stack.depth;
		kp_writer_add(w, &rec);
	}
	kp_writer_flush(w);
	uint64_t out = kp_writer_bytes_out(w);
	kp_writer_free(w);
	*events = wl->events;
	free(wl);
	return out;
}

/* KP_TEST_QUICK=1 (sanitizer builds): small streams, numbers not checked. */
static int quick(void)
{
	const char *q = getenv("KP_TEST_QUICK");
	return q && *q && *q != '0';
}

TEST(bytes_per_event)
{
	struct membuf b = { 0 };
	uint64_t events, stack_raw;
	size_t n = quick() ? 100000 : 2000000;
	double t0 = now_s();
	uint64_t bytes = write_workload(&b, n, 3, &events, &stack_raw);
	double t1 = now_s();
	printf("# bytes per event: %.2f (%llu bytes, %llu ALLOC+FREE events, "
	       "zstd level 3, 1 MiB frames)\n",
	       (double)bytes / (double)events, (unsigned long long)bytes,
	       (unsigned long long)events);
	printf("# write rate: %.1f M records/s\n", n / 1e6 / (t1 - t0));
	if (!quick())
		CHECK((double)bytes / (double)events <= 6.0);
	membuf_free(&b);
}

TEST(decode_rate)
{
	struct membuf b = { 0 };
	uint64_t events, stack_raw;
	const size_t n = quick() ? 100000 : 4000000;
	write_workload(&b, n, 3, &events, &stack_raw);
	double best = 0;
	for (int rep = 0; rep < 3; rep++) {
		struct memsrc src = { b.p, b.len, 0, 0, 0 };
		struct kp_source s = { memsrc_read, &src };
		struct kp_reader *r;
		REQUIRE(kp_reader_open(&r, &kp_allocator_libc, &s) == 0);
		struct kp_rec rec;
		uint64_t count = 0, sum = 0;
		double t0 = now_s();
		int ret;
		while ((ret = kp_reader_next(r, &rec)) == 1) {
			count++;
			sum += rec.u.alloc.ptr; /* keep the loop honest */
		}
		double dt = now_s() - t0;
		CHECK(ret == 0 && count >= n);
		if (count / dt > best)
			best = count / dt;
		kp_reader_free(r);
		if (sum == 42)
			printf("# \n");
	}
	printf("# decode rate: %.1f M records/s\n", best / 1e6);
	membuf_free(&b);
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(header_roundtrip), T(header_config_lookup),
			 T(header_unknown_keys_and_defaults), T(header_limits),
			 T(bad_prefixes), T(records_roundtrip),
			 T(frames_and_counters), T(events_bulk_same_bytes),
			 T(no_stacks_and_raw_literals), T(stored_frames),
			 T(store_small_frames),
			 T(truncation_every_offset),
			 T(corrupt_byte_resyncs), T(crafted_frames),
			 T(lying_content_size), T(failing_sink),
			 T(failing_source), T(failing_allocator),
			 T(bytes_per_event), T(decode_rate));
}
