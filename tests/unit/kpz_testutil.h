/* SPDX-License-Identifier: MIT */
/*
 * Helpers shared by the lib/ unit tests: an in-memory sink (optionally
 * failing on its Nth write), an in-memory source (optionally returning
 * short reads), record comparison, and whole-trace write/read loops.
 * Test code: uses libc malloc freely and aborts on its own OOM.
 */
#ifndef KP_TESTUTIL_H
#define KP_TESTUTIL_H

#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "kpz.h"

/* How many CPUs this process may run on. */
static inline int t_cpus(void)
{
	cpu_set_t set;

	return sched_getaffinity(0, sizeof(set), &set) ? 1 : CPU_COUNT(&set);
}

struct membuf {
	uint8_t *p;
	size_t len, cap;
	int writes;   /* xWrite calls so far */
	int fail_at;  /* fail the fail_at-th call (1-based); 0 never */
	int fail_err; /* with this code */
};

static inline int membuf_write(void *ctx, const void *buf, size_t n)
{
	struct membuf *b = ctx;
	b->writes++;
	if (b->fail_at && b->writes >= b->fail_at)
		return b->fail_err ? b->fail_err : -ENOSPC;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (!b->p)
			abort();
		b->cap = cap;
	}
	memcpy(b->p + b->len, buf, n);
	b->len += n;
	return 0;
}

static inline void membuf_free(struct membuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

struct memsrc {
	const uint8_t *p;
	size_t len, pos;
	size_t chunk; /* at most this many bytes per read; 0 no limit */
	int fail_at_pos; /* return -EIO once pos reaches this; 0 never */
};

static inline long memsrc_read(void *ctx, void *buf, size_t n)
{
	struct memsrc *s = ctx;
	if (s->fail_at_pos && s->pos >= (size_t)s->fail_at_pos)
		return -EIO;
	size_t k = s->len - s->pos;
	if (k > n)
		k = n;
	if (s->chunk && k > s->chunk)
		k = s->chunk;
	if (k == 0)
		return 0; /* s->p may be NULL for an empty input */
	memcpy(buf, s->p + s->pos, k);
	s->pos += k;
	return (long)k;
}

/* Whether a decoded record matches what was written (fields it carries). */
static inline int rec_same(const struct kp_rec *a, const struct kp_rec *b)
{
	if (a->type != b->type)
		return 0;
	switch (a->type) {
	case KP_REC_ALLOC:
		return a->ts == b->ts && a->tid == b->tid &&
		       a->kind == b->kind && a->u.alloc.ptr == b->u.alloc.ptr &&
		       a->u.alloc.size == b->u.alloc.size &&
		       a->u.alloc.align == b->u.alloc.align &&
		       a->u.alloc.stack == b->u.alloc.stack;
	case KP_REC_FREE:
		return a->ts == b->ts && a->tid == b->tid &&
		       a->u.free.ptr == b->u.free.ptr;
	case KP_REC_REALLOC:
		return a->ts == b->ts && a->tid == b->tid &&
		       a->u.realloc.old_ptr == b->u.realloc.old_ptr &&
		       a->u.realloc.new_ptr == b->u.realloc.new_ptr &&
		       a->u.realloc.size == b->u.realloc.size &&
		       a->u.realloc.dur == b->u.realloc.dur &&
		       a->u.realloc.stack == b->u.realloc.stack;
	case KP_REC_STACK:
		return a->u.stack.id == b->u.stack.id &&
		       a->u.stack.depth == b->u.stack.depth &&
		       (a->u.stack.depth == 0 ||
			memcmp(a->u.stack.pcs, b->u.stack.pcs,
			       a->u.stack.depth * sizeof(uint64_t)) == 0);
	case KP_REC_MODULE:
		if (a->u.module.build_id_len != b->u.module.build_id_len ||
		    (a->u.module.build_id_len &&
		     memcmp(a->u.module.build_id, b->u.module.build_id,
			    a->u.module.build_id_len)))
			return 0;
		if (a->u.module.lo != b->u.module.lo ||
		    a->u.module.hi != b->u.module.hi)
			return 0;
		/* fall through */
	case KP_REC_UNMODULE:
		return a->ts == b->ts && a->u.module.bias == b->u.module.bias &&
		       a->u.module.path_len == b->u.module.path_len &&
		       (a->u.module.path_len == 0 ||
			memcmp(a->u.module.path, b->u.module.path,
			       a->u.module.path_len) == 0);
	case KP_REC_THREAD_START:
	case KP_REC_THREAD_NAME:
		return a->ts == b->ts && a->tid == b->tid &&
		       a->u.thread.name_len == b->u.thread.name_len &&
		       (a->u.thread.name_len == 0 ||
			memcmp(a->u.thread.name, b->u.thread.name,
			       a->u.thread.name_len) == 0);
	case KP_REC_THREAD_END:
		return a->ts == b->ts && a->tid == b->tid;
	case KP_REC_LOST:
		return a->u.lost.what == b->u.lost.what &&
		       a->u.lost.count == b->u.lost.count;
	case KP_REC_END:
		return a->ts == b->ts && a->kind == b->kind &&
		       a->u.end.status == b->u.end.status;
	case KP_REC_FORK:
		return a->ts == b->ts && a->u.end.status == b->u.end.status;
	case KP_REC_IO:
	case KP_REC_FD_OPEN:
	case KP_REC_QUERY:
	case KP_REC_CPU_SAMPLE:
	case KP_REC_SNAPSHOT: {
			struct kp_ext_layout l = kp_ext_layout(a->type);
			return a->ts == b->ts && a->tid == b->tid &&
			       a->kind == b->kind &&
			       a->u.ext.stack == b->u.ext.stack &&
			       !memcmp(a->u.ext.v, b->u.ext.v,
				       l.nv * sizeof(int64_t)) &&
			       a->u.ext.str_len == b->u.ext.str_len &&
			       (a->u.ext.str_len == 0 ||
				memcmp(a->u.ext.str, b->u.ext.str,
				       a->u.ext.str_len) == 0);
	}
	case KP_REC_JIT_CODE:
		return a->u.jit.lo == b->u.jit.lo &&
		       a->u.jit.size == b->u.jit.size &&
		       a->u.jit.name_len == b->u.jit.name_len &&
		       (a->u.jit.name_len == 0 ||
			memcmp(a->u.jit.name, b->u.jit.name,
			       a->u.jit.name_len) == 0);
	case KP_REC_QUERY_TEXT:
		return a->u.qtext.id == b->u.qtext.id &&
		       a->u.qtext.len == b->u.qtext.len &&
		       (a->u.qtext.len == 0 ||
			memcmp(a->u.qtext.text, b->u.qtext.text,
			       a->u.qtext.len) == 0);
	case KP_REC_EXEC:
		return a->ts == b->ts && a->u.exec.path_len == b->u.exec.path_len &&
		       (a->u.exec.path_len == 0 ||
			memcmp(a->u.exec.path, b->u.exec.path,
			       a->u.exec.path_len) == 0);
	case KP_REC_FRAME:
		return a->u.frame.base_ts == b->u.frame.base_ts &&
		       a->u.frame.seq == b->u.frame.seq;
	case KP_REC_THREAD:
		return a->tid == b->tid;
	default:
		return 0;
	}
}

static inline void test_header(struct kp_header *h)
{
	memset(h, 0, sizeof(*h));
	h->pid = 1234;
	h->ppid = 1;
	h->exe = "/usr/bin/test";
	h->clock = "clock_gettime";
	h->kprof_version = "0.1.0";
}

/*
 * Write recs as a trace with the given frame cap into *out, the writer
 * allocating through a.
 * @return 0 or the first error.
 */
static inline int write_trace_alloc(const struct kp_allocator *a,
				    struct membuf *out,
				    const struct kp_rec *recs, size_t n,
				    size_t frame_cap)
{
	struct kp_writer *w;
	struct kp_sink sink = { membuf_write, out, NULL };
	struct kp_header h;
	int ret = kp_writer_create(&w, a, &sink, 3, frame_cap);
	if (ret < 0)
		return ret;
	test_header(&h);
	ret = kp_writer_header(w, &h);
	for (size_t i = 0; ret == 0 && i < n; i++)
		ret = kp_writer_add(w, &recs[i]);
	if (ret == 0)
		ret = kp_writer_flush(w);
	kp_writer_free(w);
	return ret;
}

/* write_trace_alloc with libc's allocator. */
static inline int write_trace(struct membuf *out, const struct kp_rec *recs,
			      size_t n, size_t frame_cap)
{
	return write_trace_alloc(&kp_allocator_libc, out, recs, n, frame_cap);
}

/*
 * Read a trace from memory, comparing every record but FRAME/THREAD with
 * want[] in order. *nread gets how many matched before the first mismatch,
 * error or end. @return the last kp_reader_next()/open result (0 clean end).
 */
static inline int read_compare(const uint8_t *p, size_t len, size_t chunk,
			       const struct kp_rec *want, size_t nwant,
			       size_t *nread, int *mismatch)
{
	struct memsrc src = { p, len, 0, chunk, 0 };
	struct kp_source s = { memsrc_read, &src };
	struct kp_reader *r;
	struct kp_rec rec;
	int ret;

	*nread = 0;
	*mismatch = 0;
	ret = kp_reader_open(&r, &kp_allocator_libc, &s);
	if (ret < 0)
		return ret;
	while ((ret = kp_reader_next(r, &rec)) == 1) {
		if (rec.type == KP_REC_FRAME || rec.type == KP_REC_THREAD)
			continue;
		if (*nread >= nwant || !rec_same(&rec, &want[*nread])) {
			if (!*mismatch)
				printf("#   mismatch at record %zu (type %u)\n",
				       *nread, rec.type);
			*mismatch = 1;
			break;
		}
		(*nread)++;
	}
	kp_reader_free(r);
	return ret;
}

/*
 * Fill out[] (room for at least 64) with every record type at edge values:
 * zero, max, negative deltas, pointers going down, empty and max-length
 * strings, empty and max-depth stacks, tids changing. @return the count.
 */
static inline size_t edge_records(struct kp_rec *out)
{
	static uint64_t pcs[KP_MAX_STACK_DEPTH];
	static char big[KP_MAX_STR_LEN];
	static uint8_t bid[KP_MAX_STR_LEN];
	struct kp_rec *r = out;
	const uint64_t M = UINT64_MAX;

	for (size_t i = 0; i < KP_MAX_STACK_DEPTH; i++)
		pcs[i] = i == 0 ? 0 : i == 1 ? M : 0x400000 + i * 0x1234567;
	memset(big, 'x', sizeof(big));
	for (size_t i = 0; i < sizeof(bid); i++)
		bid[i] = (uint8_t)(i * 7);
	memset(out, 0, 64 * sizeof(*out));

#define NEXT(t) (r->type = (t), r++)
	r->u.stack.id = 1; r->u.stack.depth = 0; NEXT(KP_REC_STACK);
	r->u.stack.id = 2; r->u.stack.depth = 1; r->u.stack.pcs = pcs + 1;
	NEXT(KP_REC_STACK);
	r->u.stack.id = UINT32_MAX; r->u.stack.depth = KP_MAX_STACK_DEPTH;
	r->u.stack.pcs = pcs; NEXT(KP_REC_STACK);
	/* all zero */
	NEXT(KP_REC_ALLOC);
	NEXT(KP_REC_FREE);
	/* all max */
	r->ts = M; r->tid = UINT32_MAX; r->kind = KP_ALLOC_KIND_MAX;
	r->u.alloc.ptr = M; r->u.alloc.size = M; r->u.alloc.align = M;
	r->u.alloc.stack = UINT32_MAX; NEXT(KP_REC_ALLOC);
	/* time and pointer going down (negative deltas), tid back to 0 */
	r->ts = 5; r->u.alloc.ptr = 0x10; r->u.alloc.size = 1;
	r->u.alloc.stack = 2; NEXT(KP_REC_ALLOC);
	r->ts = 6; r->tid = 77; r->kind = KP_ALLOC_CALLOC;
	r->u.alloc.ptr = 0x7fffffff0000; r->u.alloc.size = 100;
	NEXT(KP_REC_ALLOC);
	r->ts = 7; r->tid = 77; r->u.alloc.ptr = 0x1000; r->u.alloc.align = 64;
	r->u.alloc.size = 64; NEXT(KP_REC_ALLOC);
	r->ts = 3; r->tid = 77; r->u.free.ptr = M; NEXT(KP_REC_FREE);
	r->ts = M - 1; r->tid = 78; r->u.free.ptr = 0; NEXT(KP_REC_FREE);
	r->ts = 1000; r->tid = 78; r->u.realloc.old_ptr = 0x5000;
	r->u.realloc.new_ptr = 0x4000; r->u.realloc.size = 10;
	r->u.realloc.dur = 0; NEXT(KP_REC_REALLOC);
	r->ts = 2000; r->tid = 78; r->u.realloc.old_ptr = 0;
	r->u.realloc.new_ptr = M; r->u.realloc.size = M; r->u.realloc.dur = M;
	r->u.realloc.stack = UINT32_MAX; NEXT(KP_REC_REALLOC);
	/* extension records, same thread: every value width, strings */
	r->ts = 2001; r->tid = 78; r->kind = 7; r->u.ext.stack = 3;
	r->u.ext.v[KP_IO_FD] = -1; r->u.ext.v[KP_IO_REQ] = 4096;
	r->u.ext.v[KP_IO_RET] = INT64_MIN; r->u.ext.v[KP_IO_OFF] = INT64_MAX;
	r->u.ext.v[KP_IO_DUR] = 123456789;
	NEXT(KP_REC_IO);
	r->ts = 2002; r->tid = 78; r->kind = 255; r->u.ext.stack = UINT32_MAX;
	r->u.ext.str = big; r->u.ext.str_len = KP_MAX_STR_LEN;
	r->u.ext.v[KP_FDO_FD] = -1; r->u.ext.v[KP_FDO_SRC] = 1;
	NEXT(KP_REC_FD_OPEN);
	r->ts = 2003; r->tid = 78; r->u.ext.str = "";  NEXT(KP_REC_FD_OPEN);
	r->ts = 2004; r->tid = 78; r->u.ext.str = "select ?"; r->u.ext.str_len = 8;
	r->u.ext.v[KP_Q_CTX] = 1; r->u.ext.v[KP_Q_PREPARE_DUR] = 5;
	NEXT(KP_REC_QUERY);
	/* query texts (2.1): empty, max id and length; a QUERY naming one */
	r->u.qtext.id = 1; r->u.qtext.text = ""; NEXT(KP_REC_QUERY_TEXT);
	r->u.qtext.id = UINT32_MAX; r->u.qtext.text = big;
	r->u.qtext.len = KP_MAX_STR_LEN; NEXT(KP_REC_QUERY_TEXT);
	r->ts = 2004; r->tid = 78; r->u.ext.str = "";
	r->u.ext.v[KP_Q_CTX] = 2; r->u.ext.v[KP_Q_TEXT_ID] = UINT32_MAX;
	NEXT(KP_REC_QUERY);
	/* JIT code (3.1): an empty name; the widest range, the longest name */
	r->u.jit.lo = 0x7f0000001000; r->u.jit.size = 0x40; r->u.jit.name = "";
	NEXT(KP_REC_JIT_CODE);
	r->u.jit.lo = M; r->u.jit.size = M; r->u.jit.name = big;
	r->u.jit.name_len = KP_MAX_STR_LEN; NEXT(KP_REC_JIT_CODE);
	r->ts = 2005; r->tid = 78; r->u.ext.v[KP_CPU_WEIGHT] = 10000000;
	r->u.ext.stack = 2; NEXT(KP_REC_CPU_SAMPLE);
	/* resource snapshots (3.1): values not read (-1), the largest */
	r->ts = 2006; r->tid = 78; r->u.ext.v[KP_SNAP_RSS] = -1;
	r->u.ext.v[KP_SNAP_VM] = -1; r->u.ext.v[KP_SNAP_MAXRSS] = 4096;
	NEXT(KP_REC_SNAPSHOT);
	r->ts = 2007; r->tid = 78; r->u.ext.v[KP_SNAP_RSS] = INT64_MAX;
	r->u.ext.v[KP_SNAP_CPU_NS] = INT64_MAX; NEXT(KP_REC_SNAPSHOT);
	r->ts = 10; r->u.module.bias = 0; r->u.module.lo = 0;
	r->u.module.hi = 0; r->u.module.path = ""; NEXT(KP_REC_MODULE);
	r->ts = 11; r->u.module.bias = M; r->u.module.lo = M - 4096;
	r->u.module.hi = M; r->u.module.path = big;
	r->u.module.path_len = KP_MAX_STR_LEN; r->u.module.build_id = bid;
	r->u.module.build_id_len = KP_MAX_STR_LEN; NEXT(KP_REC_MODULE);
	r->ts = 12; r->u.module.bias = 0x7f0000000000;
	r->u.module.path = "/lib/x.so"; r->u.module.path_len = 9;
	r->u.module.build_id = bid; r->u.module.build_id_len = 20;
	r->u.module.lo = 0x7f0000001000; r->u.module.hi = 0x7f0000009000;
	NEXT(KP_REC_MODULE);
	r->ts = 13; r->u.module.bias = 0x7f0000000000;
	r->u.module.path = "/lib/x.so"; r->u.module.path_len = 9;
	NEXT(KP_REC_UNMODULE);
	r->ts = 14; NEXT(KP_REC_UNMODULE);
	r->ts = 15; r->tid = 0; NEXT(KP_REC_THREAD_START);
	r->ts = 16; r->tid = UINT32_MAX; r->u.thread.name = big;
	r->u.thread.name_len = KP_MAX_STR_LEN; NEXT(KP_REC_THREAD_START);
	r->ts = 17; r->tid = 99; r->u.thread.name = "worker";
	r->u.thread.name_len = 6; NEXT(KP_REC_THREAD_START);
	r->ts = 17; r->tid = 99; r->u.thread.name = "io-thd-1";
	r->u.thread.name_len = 8; NEXT(KP_REC_THREAD_NAME);
	r->ts = 17; r->tid = 98; r->u.thread.name = "";
	r->u.thread.name_len = 0; NEXT(KP_REC_THREAD_NAME);
	r->ts = 18; r->tid = 99; NEXT(KP_REC_THREAD_END);
	r->u.lost.what = KP_REC_ALLOC; r->u.lost.count = M; NEXT(KP_REC_LOST);
	r->u.lost.what = 0; r->u.lost.count = 0; NEXT(KP_REC_LOST);
	r->ts = 19; r->u.end.status = 12345; NEXT(KP_REC_FORK);
	r->ts = 20; r->u.end.status = INT64_MIN; NEXT(KP_REC_FORK);
	r->ts = 21; r->u.exec.path = ""; NEXT(KP_REC_EXEC);
	r->ts = 22; r->u.exec.path = big; r->u.exec.path_len = KP_MAX_STR_LEN;
	NEXT(KP_REC_EXEC);
	r->ts = 23; r->kind = KP_END_ABORT; r->u.end.status = -1;
	NEXT(KP_REC_END);
	r->ts = M; r->kind = 255; r->u.end.status = INT64_MAX;
	NEXT(KP_REC_END);
	r->ts = 0; NEXT(KP_REC_END);
#undef NEXT
	return (size_t)(r - out);
}

#endif
