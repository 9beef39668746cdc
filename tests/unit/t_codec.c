/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the msgpack cursor (lib/mpk.c) and the record codec
 * (lib/codec_enc.c, lib/codec_dec.c), without the zstd container: every
 * msgpack format, hostile lengths, every record type at edge values, the
 * compatibility rules, and a cross-check against msgpack-c's own unpacker.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "codec.h"
#include "err.h"
#include "harness.h"
#include "kpz_testutil.h"
#include "mpk.h"

/* A growable buffer fed by msgpack-c's packer (test code: libc realloc). */
struct pbuf {
	uint8_t *p;
	size_t len, cap;
};

static int pbuf_write(void *data, const char *buf, size_t n)
{
	struct pbuf *b = data;
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			abort();
	}
	memcpy(b->p + b->len, buf, n);
	b->len += n;
	return 0;
}

/* ---- the cursor --------------------------------------------------------- */

TEST(mpk_integers)
{
	static const int64_t sv[] = { 0, 1, 127, 128, 255, 256, 65535, 65536,
				      INT32_MAX, (int64_t)UINT32_MAX,
				      (int64_t)UINT32_MAX + 1, INT64_MAX, -1,
				      -32, -33, -128, -129, -32768, -32769,
				      INT32_MIN, (int64_t)INT32_MIN - 1,
				      INT64_MIN };
	struct pbuf b = { 0 };
	msgpack_packer pk;
	msgpack_packer_init(&pk, &b, pbuf_write);
	for (size_t i = 0; i < KP_ARRAY_SIZE(sv); i++)
		msgpack_pack_int64(&pk, sv[i]);
	msgpack_pack_uint64(&pk, UINT64_MAX);
	/* Non-minimal forms are still valid msgpack. */
	msgpack_pack_fix_int8(&pk, 5);
	msgpack_pack_fix_int64(&pk, -5);
	msgpack_pack_fix_uint32(&pk, 7);
	msgpack_pack_fix_uint64(&pk, 1ull << 40);

	struct kp_mpk c;
	kp_mpk_init(&c, b.p, b.len);
	for (size_t i = 0; i < KP_ARRAY_SIZE(sv); i++) {
		int64_t v;
		struct kp_mpk t = c;
		CHECK(kp_mpk_peek(&c) == (sv[i] < 0 ? KP_MPK_INT : KP_MPK_UINT));
		REQUIRE(kp_mpk_i64(&c, &v) == 0);
		CHECK(v == sv[i]);
		uint64_t u;
		if (sv[i] >= 0) {
			CHECK(kp_mpk_u64(&t, &u) == 0);
			CHECK(u == (uint64_t)sv[i]);
		} else {
			CHECK(kp_mpk_u64(&t, &u) == KP_ECORRUPT);
		}
	}
	uint64_t u;
	int64_t v;
	struct kp_mpk t = c;
	REQUIRE(kp_mpk_u64(&c, &u) == 0);
	CHECK(u == UINT64_MAX);
	CHECK(kp_mpk_i64(&t, &v) == 0 && v == -1); /* wraps */
	CHECK(kp_mpk_u64(&c, &u) == 0 && u == 5);
	CHECK(kp_mpk_i64(&c, &v) == 0 && v == -5);
	CHECK(kp_mpk_u64(&c, &u) == 0 && u == 7);
	CHECK(kp_mpk_u64(&c, &u) == 0 && u == 1ull << 40);
	CHECK(kp_mpk_left(&c) == 0);
	CHECK(kp_mpk_u64(&c, &u) == KP_ECORRUPT);
	CHECK(kp_mpk_i64(&c, &v) == KP_ECORRUPT);
	free(b.p);
}

/* One of everything, packed by msgpack-c; returns the object count. */
static size_t pack_everything(struct pbuf *b, char *big, size_t bign)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, b, pbuf_write);
	size_t n = 0;
	msgpack_pack_nil(&pk), n++;
	msgpack_pack_true(&pk), n++;
	msgpack_pack_false(&pk), n++;
	msgpack_pack_float(&pk, 1.5f), n++;
	msgpack_pack_double(&pk, -2.25), n++;
	const size_t slens[] = { 0, 31, 32, 255, 256, 65535, 65536 };
	for (size_t i = 0; i < KP_ARRAY_SIZE(slens); i++) {
		if (slens[i] > bign)
			continue;
		msgpack_pack_str(&pk, slens[i]);
		msgpack_pack_str_body(&pk, big, slens[i]), n++;
		msgpack_pack_bin(&pk, slens[i]);
		msgpack_pack_bin_body(&pk, big, slens[i]), n++;
	}
	const size_t elens[] = { 1, 2, 4, 8, 16, 0, 3, 255, 256, 65536 };
	for (size_t i = 0; i < KP_ARRAY_SIZE(elens); i++) {
		msgpack_pack_ext(&pk, elens[i], (int8_t)(i - 3));
		msgpack_pack_ext_body(&pk, big, elens[i]), n++;
	}
	const uint32_t alens[] = { 0, 15, 16, 65536 };
	for (size_t i = 0; i < KP_ARRAY_SIZE(alens); i++) {
		msgpack_pack_array(&pk, alens[i]);
		for (uint32_t j = 0; j < alens[i]; j++)
			msgpack_pack_int(&pk, (int)j - 100);
		n++;
		msgpack_pack_map(&pk, alens[i]);
		for (uint32_t j = 0; j < alens[i]; j++) {
			msgpack_pack_int(&pk, (int)j);
			msgpack_pack_array(&pk, 1);
			msgpack_pack_nil(&pk);
		}
		n++;
	}
	return n;
}

TEST(mpk_every_format)
{
	size_t bign = 70000;
	char *big = malloc(bign);
	REQUIRE(big);
	for (size_t i = 0; i < bign; i++)
		big[i] = (char)('a' + i % 26);
	struct pbuf b = { 0 };
	size_t n = pack_everything(&b, big, bign);

	struct kp_mpk c;
	kp_mpk_init(&c, b.p, b.len);
	int bv;
	double d;
	const char *s;
	const uint8_t *bin;
	uint32_t len;
	int8_t et;
	CHECK(kp_mpk_peek(&c) == KP_MPK_NIL && kp_mpk_nil(&c) == 0);
	CHECK(kp_mpk_peek(&c) == KP_MPK_BOOL);
	CHECK(kp_mpk_bool(&c, &bv) == 0 && bv == 1);
	CHECK(kp_mpk_bool(&c, &bv) == 0 && bv == 0);
	CHECK(kp_mpk_peek(&c) == KP_MPK_FLOAT);
	CHECK(kp_mpk_double(&c, &d) == 0 && d == 1.5);
	CHECK(kp_mpk_double(&c, &d) == 0 && d == -2.25);
	const size_t slens[] = { 0, 31, 32, 255, 256, 65535, 65536 };
	for (size_t i = 0; i < KP_ARRAY_SIZE(slens); i++) {
		CHECK(kp_mpk_peek(&c) == KP_MPK_STR);
		REQUIRE(kp_mpk_str(&c, &s, &len) == 0);
		CHECK(len == slens[i] && (len == 0 || memcmp(s, big, len) == 0));
		CHECK(kp_mpk_peek(&c) == KP_MPK_BIN);
		REQUIRE(kp_mpk_bin(&c, &bin, &len) == 0);
		CHECK(len == slens[i] &&
		      (len == 0 || memcmp(bin, big, len) == 0));
	}
	const size_t elens[] = { 1, 2, 4, 8, 16, 0, 3, 255, 256, 65536 };
	for (size_t i = 0; i < KP_ARRAY_SIZE(elens); i++) {
		CHECK(kp_mpk_peek(&c) == KP_MPK_EXT);
		REQUIRE(kp_mpk_ext(&c, &et, &bin, &len) == 0);
		CHECK(len == elens[i] && et == (int8_t)(i - 3));
		CHECK(len == 0 || memcmp(bin, big, len) == 0);
	}
	const uint32_t alens[] = { 0, 15, 16, 65536 };
	for (size_t i = 0; i < KP_ARRAY_SIZE(alens); i++) {
		CHECK(kp_mpk_peek(&c) == KP_MPK_ARRAY);
		REQUIRE(kp_mpk_array(&c, &len) == 0);
		CHECK(len == alens[i]);
		for (uint32_t j = 0; j < len; j++) {
			int64_t v;
			REQUIRE(kp_mpk_i64(&c, &v) == 0);
			CHECK(v == (int64_t)j - 100);
		}
		CHECK(kp_mpk_peek(&c) == KP_MPK_MAP);
		REQUIRE(kp_mpk_map(&c, &len) == 0);
		CHECK(len == alens[i]);
		REQUIRE(kp_mpk_skip(&c, 2 * (uint64_t)len) == 0);
	}
	CHECK(kp_mpk_left(&c) == 0);
	CHECK(kp_mpk_peek(&c) == KP_MPK_NONE);

	/* Generic skip over the lot, and over every truncation of it. */
	kp_mpk_init(&c, b.p, b.len);
	CHECK(kp_mpk_skip(&c, n) == 0 && kp_mpk_left(&c) == 0);
	kp_mpk_init(&c, b.p, b.len);
	CHECK(kp_mpk_skip(&c, n + 1) == KP_ECORRUPT);
	for (size_t cut = 0; cut < b.len; cut += 1 + cut / 64) {
		kp_mpk_init(&c, b.p, cut);
		if (kp_mpk_skip(&c, n) != KP_ECORRUPT) {
			printf("#   skip of %zu bytes did not fail\n", cut);
			CHECK(0);
			break;
		}
	}
	free(b.p);
	free(big);
}

TEST(mpk_hostile)
{
	/* Counts far beyond the bytes present. */
	static const uint8_t arr32[] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2 };
	static const uint8_t map32[] = { 0xdf, 0xff, 0xff, 0xff, 0xff, 1, 2 };
	static const uint8_t str32[] = { 0xdb, 0xff, 0xff, 0xff, 0xff, 'a' };
	static const uint8_t bin32[] = { 0xc6, 0x80, 0, 0, 0, 'a' };
	static const uint8_t ext32[] = { 0xc9, 0, 0, 0, 9, 1, 'a' };
	static const uint8_t fixext16[] = { 0xd8, 1, 'a', 'b' };
	static const uint8_t never[] = { 0xc1 };
	static const uint8_t shortint[] = { 0xcf, 1, 2, 3 };
	const struct {
		const uint8_t *p;
		size_t n;
	} bad[] = {
		{ arr32, sizeof(arr32) },	{ map32, sizeof(map32) },
		{ str32, sizeof(str32) },	{ bin32, sizeof(bin32) },
		{ ext32, sizeof(ext32) },	{ fixext16, sizeof(fixext16) },
		{ never, sizeof(never) },	{ shortint, sizeof(shortint) },
	};
	for (size_t i = 0; i < KP_ARRAY_SIZE(bad); i++) {
		struct kp_mpk c;
		kp_mpk_init(&c, bad[i].p, bad[i].n);
		CHECK(kp_mpk_skip(&c, 1) == KP_ECORRUPT);
	}
	struct kp_mpk c;
	const char *s;
	const uint8_t *b;
	uint32_t n;
	int8_t t;
	kp_mpk_init(&c, str32, sizeof(str32));
	CHECK(kp_mpk_str(&c, &s, &n) == KP_ECORRUPT);
	kp_mpk_init(&c, bin32, sizeof(bin32));
	CHECK(kp_mpk_bin(&c, &b, &n) == KP_ECORRUPT);
	kp_mpk_init(&c, ext32, sizeof(ext32));
	CHECK(kp_mpk_ext(&c, &t, &b, &n) == KP_ECORRUPT);
	kp_mpk_init(&c, fixext16, sizeof(fixext16));
	CHECK(kp_mpk_ext(&c, &t, &b, &n) == KP_ECORRUPT);

	/* Nesting: at the limit is fine, one deeper is KP_ELIMIT. */
	uint8_t deep[KP_MPK_MAX_DEPTH + 2];
	memset(deep, 0x91, sizeof(deep));
	deep[KP_MPK_MAX_DEPTH] = 0x01; /* 32 arrays around an int */
	kp_mpk_init(&c, deep, KP_MPK_MAX_DEPTH + 1);
	CHECK(kp_mpk_skip(&c, 1) == 0 && kp_mpk_left(&c) == 0);
	memset(deep, 0x91, sizeof(deep));
	deep[KP_MPK_MAX_DEPTH + 1] = 0x01;
	kp_mpk_init(&c, deep, sizeof(deep));
	CHECK(kp_mpk_skip(&c, 1) == KP_ELIMIT);
	/* Very deep hostile nesting costs no stack. */
	size_t big = 1 << 20;
	uint8_t *p = malloc(big);
	REQUIRE(p);
	memset(p, 0x91, big);
	kp_mpk_init(&c, p, big);
	CHECK(kp_mpk_skip(&c, 1) == KP_ELIMIT);
	free(p);
}

/* ---- the codec ---------------------------------------------------------- */

struct encbuf {
	struct pbuf b;
	struct kp_enc e;
};

static void enc_all(struct encbuf *eb, const struct kp_rec *recs, size_t n,
		    uint64_t base)
{
	memset(eb, 0, sizeof(*eb));
	kp_enc_init(&eb->e, &eb->b, pbuf_write);
	kp_enc_frame(&eb->e, base, 0);
	for (size_t i = 0; i < n; i++)
		if (kp_enc_check(&recs[i]) < 0 || kp_enc_rec(&eb->e, &recs[i]) < 0)
			printf("#   encode of record %zu failed\n", i);
}

TEST(roundtrip_every_type)
{
	struct kp_rec recs[64];
	size_t n = edge_records(recs);
	uint64_t pcs[KP_MAX_STACK_DEPTH];
	const uint64_t bases[] = { 0, 12345, UINT64_MAX };

	for (size_t bi = 0; bi < KP_ARRAY_SIZE(bases); bi++) {
		struct encbuf eb;
		enc_all(&eb, recs, n, bases[bi]);
		struct kp_dec d;
		struct kp_rec r;
		kp_dec_init(&d, eb.b.p, eb.b.len, pcs);
		REQUIRE(kp_dec_next(&d, &r) == 1);
		CHECK(r.type == KP_REC_FRAME && r.u.frame.base_ts == bases[bi]);
		size_t got = 0, threads = 0;
		int ret;
		while ((ret = kp_dec_next(&d, &r)) == 1) {
			if (r.type == KP_REC_THREAD) {
				threads++;
				continue;
			}
			if (got >= n || !rec_same(&r, &recs[got])) {
				printf("#   record %zu differs\n", got);
				CHECK(0);
				break;
			}
			got++;
		}
		CHECK(ret == 0);
		CHECK_EQ_U(got, n);
		/* tid 0 -> max -> 0 -> 77 -> 78 -> 0 (events only) */
		CHECK_EQ_U(threads, 4);
		free(eb.b.p);
	}
}

TEST(encoder_sizes)
{
	/* A typical event: every field one byte after the array header. */
	struct kp_rec r = { .type = KP_REC_ALLOC, .ts = 100 };
	r.u.alloc.ptr = 0x60;
	r.u.alloc.size = 48;
	r.u.alloc.stack = 7;
	struct encbuf eb;
	enc_all(&eb, &r, 1, 0);
	/* FRAME [1,0,0] = 4 bytes; ALLOC [3,100,96,48,7] = 6 bytes. */
	CHECK_EQ_U(eb.b.len, 4 + 6);
	free(eb.b.p);
	/* Defaults are left out: kind only -> 6 elements, align -> 7. */
	r.kind = 1;
	enc_all(&eb, &r, 1, 0);
	CHECK_EQ_U(eb.b.len, 4 + 7);
	CHECK(eb.b.p[4] == 0x96);
	free(eb.b.p);
	r.kind = 0;
	r.u.alloc.align = 16;
	enc_all(&eb, &r, 1, 0);
	CHECK(eb.b.p[4] == 0x97);
	free(eb.b.p);
}

TEST(encoder_limits)
{
	static uint64_t pcs[KP_MAX_STACK_DEPTH + 1];
	static char big[KP_MAX_STR_LEN + 1];
	struct kp_rec r = { .type = KP_REC_STACK };
	r.u.stack.depth = KP_MAX_STACK_DEPTH + 1;
	r.u.stack.pcs = pcs;
	CHECK(kp_enc_check(&r) == KP_ELIMIT);
	r.u.stack.depth = 3;
	r.u.stack.pcs = NULL;
	CHECK(kp_enc_check(&r) == -EINVAL);
	memset(&r, 0, sizeof(r));
	r.type = KP_REC_MODULE;
	r.u.module.path = big;
	r.u.module.path_len = KP_MAX_STR_LEN + 1;
	CHECK(kp_enc_check(&r) == KP_ELIMIT);
	r.u.module.path_len = 1;
	r.u.module.build_id = (const uint8_t *)big;
	r.u.module.build_id_len = KP_MAX_STR_LEN + 1;
	CHECK(kp_enc_check(&r) == KP_ELIMIT);
	memset(&r, 0, sizeof(r));
	r.type = KP_REC_THREAD_START;
	r.u.thread.name = big;
	r.u.thread.name_len = KP_MAX_STR_LEN + 1;
	CHECK(kp_enc_check(&r) == KP_ELIMIT);
	r.type = KP_REC_EXEC;
	r.u.exec.path = big;
	r.u.exec.path_len = KP_MAX_STR_LEN + 1;
	CHECK(kp_enc_check(&r) == KP_ELIMIT);
	memset(&r, 0, sizeof(r));
	r.type = KP_REC_QUERY_TEXT;
	r.u.qtext.id = 1;
	r.u.qtext.text = big;
	r.u.qtext.len = KP_MAX_STR_LEN + 1;
	CHECK(kp_enc_check(&r) == KP_ELIMIT);
	r.u.qtext.len = KP_MAX_STR_LEN;
	CHECK(kp_enc_check(&r) == 0);
	r.u.qtext.text = NULL;
	r.u.qtext.len = 3;
	CHECK(kp_enc_check(&r) == -EINVAL);
	memset(&r, 0, sizeof(r));
	r.type = KP_REC_FRAME;
	CHECK(kp_enc_check(&r) == -EINVAL);
	r.type = 60; /* an extension type with no layout */
	CHECK(kp_enc_check(&r) == -EINVAL);
	r.type = KP_REC_QUERY;
	r.u.ext.str = big;
	r.u.ext.str_len = KP_MAX_STR_LEN + 1;
	CHECK(kp_enc_check(&r) == KP_ELIMIT);
	r.u.ext.str = NULL;
	r.u.ext.str_len = 3;
	CHECK(kp_enc_check(&r) == -EINVAL);
}

/* Decode a hand-packed frame body; *out gets up to max records. */
static int dec_buf(const struct pbuf *b, struct kp_rec *out, size_t max,
		   size_t *n)
{
	static uint64_t pcs[KP_MAX_STACK_DEPTH];
	struct kp_dec d;
	int ret;
	kp_dec_init(&d, b->p, b->len, pcs);
	*n = 0;
	while (*n < max && (ret = kp_dec_next(&d, &out[*n])) == 1)
		(*n)++;
	return *n == max ? 1 : ret;
}

TEST(unknown_types_and_extra_fields)
{
	struct pbuf b = { 0 };
	msgpack_packer pk;
	msgpack_packer_init(&pk, &b, pbuf_write);
	/* [1, 1000, 0] FRAME */
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_int(&pk, 1000);
	msgpack_pack_int(&pk, 0);
	/* [99, {"a": [1, 2.5, nil]}, bin, ext] unknown type */
	msgpack_pack_array(&pk, 4);
	msgpack_pack_int(&pk, 99);
	msgpack_pack_map(&pk, 1);
	msgpack_pack_str(&pk, 1);
	msgpack_pack_str_body(&pk, "a", 1);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_double(&pk, 2.5);
	msgpack_pack_nil(&pk);
	msgpack_pack_bin(&pk, 2);
	msgpack_pack_bin_body(&pk, "xy", 2);
	msgpack_pack_ext(&pk, 4, 3);
	msgpack_pack_ext_body(&pk, "abcd", 4);
	/* an extension type with no layout, and no elements */
	msgpack_pack_array(&pk, 1);
	msgpack_pack_int(&pk, 60);
	/* an extension record from a newer minor: a string where this
	 * version has nil, two values more than this version knows */
	msgpack_pack_array(&pk, 5 + KP_IO_NV + 2);
	msgpack_pack_int(&pk, KP_REC_IO);
	msgpack_pack_int(&pk, 7);  /* dts */
	msgpack_pack_int(&pk, 3);  /* kind */
	msgpack_pack_int(&pk, 9);  /* stack */
	msgpack_pack_str(&pk, 2);
	msgpack_pack_str_body(&pk, "hi", 2);
	for (int i = 0; i < KP_IO_NV + 2; i++)
		msgpack_pack_int(&pk, -100 - i);
	/* ... and one from an older minor: values missing */
	msgpack_pack_array(&pk, 6);
	msgpack_pack_int(&pk, KP_REC_QUERY);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_int(&pk, 0);
	msgpack_pack_int(&pk, 0);
	msgpack_pack_nil(&pk);
	msgpack_pack_int(&pk, 42);
	/* ALLOC with 3 extra trailing elements of odd types */
	msgpack_pack_array(&pk, 10);
	msgpack_pack_int(&pk, KP_REC_ALLOC);
	msgpack_pack_int(&pk, 5);      /* dts */
	msgpack_pack_int(&pk, 0x1000); /* dptr */
	msgpack_pack_int(&pk, 32);     /* size */
	msgpack_pack_int(&pk, 4);      /* stack */
	msgpack_pack_int(&pk, 1);      /* kind */
	msgpack_pack_int(&pk, 0);      /* align */
	msgpack_pack_str(&pk, 3);
	msgpack_pack_str_body(&pk, "new", 3);
	msgpack_pack_map(&pk, 0);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_array(&pk, 0);
	/* FREE with one extra */
	msgpack_pack_array(&pk, 4);
	msgpack_pack_int(&pk, KP_REC_FREE);
	msgpack_pack_int(&pk, -2);
	msgpack_pack_int(&pk, -0x10);
	msgpack_pack_true(&pk);
	/* ALLOC with the optional fields missing */
	msgpack_pack_array(&pk, 5);
	msgpack_pack_int(&pk, KP_REC_ALLOC);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_int(&pk, 0x20);
	msgpack_pack_int(&pk, 8);
	msgpack_pack_int(&pk, 0);

	struct kp_rec r[8];
	size_t n;
	CHECK(dec_buf(&b, r, 8, &n) == 0);
	REQUIRE(n == 6);
	CHECK(r[0].type == KP_REC_FRAME && r[0].u.frame.base_ts == 1000);
	CHECK(r[1].type == KP_REC_IO && r[1].ts == 1007 && r[1].kind == 3 &&
	      r[1].u.ext.stack == 9 && r[1].u.ext.str_len == 2 &&
	      r[1].u.ext.v[0] == -100 &&
	      r[1].u.ext.v[KP_IO_NV - 1] == -100 - (KP_IO_NV - 1) &&
	      r[1].u.ext.v[KP_IO_NV] == 0);
	CHECK(r[2].type == KP_REC_QUERY && r[2].ts == 1008 &&
	      r[2].u.ext.str == NULL && r[2].u.ext.v[0] == 42 &&
	      r[2].u.ext.v[1] == 0);
	memmove(&r[1], &r[3], 3 * sizeof(r[0]));
	CHECK(r[1].type == KP_REC_ALLOC && r[1].ts == 1005 + 8 &&
	      r[1].u.alloc.ptr == 0x1000 && r[1].u.alloc.size == 32 &&
	      r[1].u.alloc.stack == 4 && r[1].kind == 1 &&
	      r[1].u.alloc.align == 0);
	CHECK(r[2].type == KP_REC_FREE && r[2].ts == 1003 + 8 &&
	      r[2].u.free.ptr == 0xff0);
	CHECK(r[3].type == KP_REC_ALLOC && r[3].ts == 1004 + 8 &&
	      r[3].u.alloc.ptr == 0x1010 && r[3].kind == 0 &&
	      r[3].u.alloc.align == 0);
	free(b.p);
}

/* Pack [type, args...] of small ints. */
static void pack_ints(struct pbuf *b, size_t n, const int64_t *v)
{
	msgpack_packer pk;
	msgpack_packer_init(&pk, b, pbuf_write);
	msgpack_pack_array(&pk, n);
	for (size_t i = 0; i < n; i++)
		msgpack_pack_int64(&pk, v[i]);
}

TEST(malformed_records)
{
	const struct {
		size_t n;
		int64_t v[8];
		int want;
	} cases[] = {
		{ 4, { KP_REC_ALLOC, 1, 2, 3 }, KP_ECORRUPT }, /* too short */
		{ 2, { KP_REC_FREE, 1 }, KP_ECORRUPT },
		{ 6, { KP_REC_REALLOC, 1, 2, 3, 4, 5 }, KP_ECORRUPT },
		{ 5, { KP_REC_ALLOC, 1, 2, -3, 4 }, KP_ECORRUPT }, /* size<0 */
		{ 5, { KP_REC_ALLOC, 1, 2, 3, (int64_t)UINT32_MAX + 1 },
		  KP_ECORRUPT }, /* stack id > u32 */
		{ 6, { KP_REC_ALLOC, 1, 2, 3, 4, 256 }, KP_ECORRUPT }, /* kind */
		{ 2, { KP_REC_THREAD, -1 }, KP_ECORRUPT },
		{ 1, { -3 }, KP_ECORRUPT }, /* negative type */
		{ 0, { 0 }, KP_ECORRUPT },  /* empty array */
		{ 3, { KP_REC_STACK, 1, 2 }, KP_ECORRUPT }, /* pcs not array */
		{ 2, { KP_REC_QUERY_TEXT, 1 }, KP_ECORRUPT }, /* no text */
		{ 3, { KP_REC_QUERY_TEXT, 1, 2 }, KP_ECORRUPT }, /* not a str */
		{ 3, { KP_REC_QUERY_TEXT, -1, 2 }, KP_ECORRUPT }, /* id < 0 */
		{ 3, { KP_REC_QUERY_TEXT, (int64_t)UINT32_MAX + 1, 2 },
		  KP_ECORRUPT }, /* id > u32 */
		{ 3, { KP_REC_JIT_CODE, 1, 2 }, KP_ECORRUPT }, /* no name */
		{ 4, { KP_REC_JIT_CODE, 1, 2, 3 }, KP_ECORRUPT }, /* not a str */
		{ 4, { KP_REC_JIT_CODE, -1, 2, 3 }, KP_ECORRUPT }, /* lo < 0 */
	};
	for (size_t i = 0; i < KP_ARRAY_SIZE(cases); i++) {
		struct pbuf b = { 0 };
		struct kp_rec r[2];
		size_t n;
		pack_ints(&b, cases[i].n, cases[i].v);
		int ret = dec_buf(&b, r, 2, &n);
		if (ret != cases[i].want) {
			printf("#   case %zu: got %d\n", i, ret);
			CHECK(0);
		}
		free(b.p);
	}
	/* A record that is not an array, a type that is a string. */
	static const uint8_t notarr[] = { 0x03 };
	static const uint8_t strtype[] = { 0x91, 0xa1, 'x' };
	struct kp_dec d;
	struct kp_rec r;
	uint64_t pcs[KP_MAX_STACK_DEPTH];
	kp_dec_init(&d, notarr, sizeof(notarr), pcs);
	CHECK(kp_dec_next(&d, &r) == KP_ECORRUPT);
	kp_dec_init(&d, strtype, sizeof(strtype), pcs);
	CHECK(kp_dec_next(&d, &r) == KP_ECORRUPT);
}

TEST(decoder_limits)
{
	struct pbuf b = { 0 };
	msgpack_packer pk;
	msgpack_packer_init(&pk, &b, pbuf_write);
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int(&pk, KP_REC_STACK);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_array(&pk, KP_MAX_STACK_DEPTH + 1);
	for (int i = 0; i <= KP_MAX_STACK_DEPTH; i++)
		msgpack_pack_int(&pk, i);
	struct kp_rec r[2];
	size_t n;
	CHECK(dec_buf(&b, r, 2, &n) == KP_ELIMIT);
	b.len = 0;

	static char big[KP_MAX_STR_LEN + 1];
	memset(big, 'p', sizeof(big));
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int(&pk, KP_REC_EXEC);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_str(&pk, sizeof(big));
	msgpack_pack_str_body(&pk, big, sizeof(big));
	CHECK(dec_buf(&b, r, 2, &n) == KP_ELIMIT);
	b.len = 0;
	msgpack_pack_array(&pk, 7);
	msgpack_pack_int(&pk, KP_REC_MODULE);
	for (int i = 0; i < 4; i++)
		msgpack_pack_int(&pk, i);
	msgpack_pack_str(&pk, 1);
	msgpack_pack_str_body(&pk, "/", 1);
	msgpack_pack_bin(&pk, sizeof(big));
	msgpack_pack_bin_body(&pk, big, sizeof(big));
	CHECK(dec_buf(&b, r, 2, &n) == KP_ELIMIT);
	b.len = 0;
	msgpack_pack_array(&pk, 3);
	msgpack_pack_int(&pk, KP_REC_QUERY_TEXT);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_str(&pk, sizeof(big));
	msgpack_pack_str_body(&pk, big, sizeof(big));
	CHECK(dec_buf(&b, r, 2, &n) == KP_ELIMIT);
	free(b.p);
}

/*
 * The wire really is msgpack: msgpack-c's own unpacker, run over an
 * encoded frame, sees arrays whose elements, undone by hand, give the
 * same values as kp_dec_next.
 */
TEST(cross_check_msgpack_c)
{
	struct kp_rec recs[64];
	size_t n = edge_records(recs);
	struct encbuf eb;
	enc_all(&eb, recs, n, 500);

	uint64_t pcs[KP_MAX_STACK_DEPTH];
	struct kp_dec d;
	kp_dec_init(&d, eb.b.p, eb.b.len, pcs);
	msgpack_unpacked up;
	msgpack_unpacked_init(&up);
	size_t off = 0, count = 0;
	uint64_t last_ts = 0, last_ptr = 0;
	uint32_t cur_tid = 0;
	int bad = 0;
	for (;;) {
		msgpack_unpack_return ur = msgpack_unpack_next(
			&up, (const char *)eb.b.p, eb.b.len, &off);
		if (ur != MSGPACK_UNPACK_SUCCESS)
			break;
		struct kp_rec r;
		REQUIRE(kp_dec_next(&d, &r) == 1);
		count++;
		msgpack_object o = up.data;
		REQUIRE(o.type == MSGPACK_OBJECT_ARRAY && o.via.array.size >= 1);
		msgpack_object *e = o.via.array.ptr;
		REQUIRE(e[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER);
		CHECK(e[0].via.u64 == r.type);
		/* Values as int64 whatever format msgpack-c reports. */
#define I(k) ((uint64_t)e[k].via.i64)
#define U(k) (e[k].via.u64)
		switch (r.type) {
		case KP_REC_FRAME:
			last_ts = U(1);
			last_ptr = 0;
			cur_tid = 0;
			bad |= r.u.frame.base_ts != U(1) || r.u.frame.seq != U(2);
			break;
		case KP_REC_THREAD:
			cur_tid = (uint32_t)U(1);
			bad |= r.tid != cur_tid;
			break;
		case KP_REC_ALLOC:
			last_ts += I(1);
			last_ptr += I(2);
			bad |= r.ts != last_ts || r.u.alloc.ptr != last_ptr ||
			       r.u.alloc.size != U(3) ||
			       r.u.alloc.stack != U(4) || r.tid != cur_tid;
			bad |= o.via.array.size > 5 && r.kind != U(5);
			bad |= o.via.array.size > 6 && r.u.alloc.align != U(6);
			break;
		case KP_REC_FREE:
			last_ts += I(1);
			last_ptr += I(2);
			bad |= r.ts != last_ts || r.u.free.ptr != last_ptr;
			break;
		case KP_REC_REALLOC:
			last_ts += I(1);
			last_ptr += I(2);
			bad |= r.u.realloc.old_ptr != last_ptr;
			last_ptr += I(3);
			bad |= r.ts != last_ts || r.u.realloc.new_ptr != last_ptr ||
			       r.u.realloc.size != U(4) ||
			       r.u.realloc.stack != U(5) ||
			       r.u.realloc.dur != U(6);
			break;
		case KP_REC_STACK:
			bad |= r.u.stack.id != U(1);
			REQUIRE(e[2].type == MSGPACK_OBJECT_ARRAY);
			bad |= r.u.stack.depth != e[2].via.array.size;
			for (uint32_t i = 0; i < r.u.stack.depth; i++)
				bad |= r.u.stack.pcs[i] !=
				       e[2].via.array.ptr[i].via.u64;
			break;
		case KP_REC_MODULE:
			last_ts += I(1);
			bad |= r.ts != last_ts || r.u.module.bias != U(2) ||
			       r.u.module.lo != U(3) || r.u.module.hi != U(4);
			REQUIRE(e[5].type == MSGPACK_OBJECT_STR);
			REQUIRE(e[6].type == MSGPACK_OBJECT_BIN);
			bad |= r.u.module.path_len != e[5].via.str.size ||
			       r.u.module.build_id_len != e[6].via.bin.size;
			bad |= r.u.module.path_len &&
			       memcmp(r.u.module.path, e[5].via.str.ptr,
				      r.u.module.path_len);
			break;
		case KP_REC_UNMODULE:
			last_ts += I(1);
			bad |= r.ts != last_ts || r.u.module.bias != U(2);
			REQUIRE(e[3].type == MSGPACK_OBJECT_STR);
			bad |= r.u.module.path_len != e[3].via.str.size;
			break;
		case KP_REC_THREAD_START:
		case KP_REC_THREAD_NAME:
			last_ts += I(1);
			bad |= r.ts != last_ts || r.tid != U(2);
			REQUIRE(e[3].type == MSGPACK_OBJECT_STR);
			bad |= r.u.thread.name_len != e[3].via.str.size;
			break;
		case KP_REC_THREAD_END:
			last_ts += I(1);
			bad |= r.ts != last_ts || r.tid != U(2);
			break;
		case KP_REC_LOST:
			bad |= r.u.lost.what != U(1) || r.u.lost.count != U(2);
			break;
		case KP_REC_END:
			last_ts += I(1);
			bad |= r.ts != last_ts || r.kind != U(2) ||
			       (uint64_t)r.u.end.status != I(3);
			break;
		case KP_REC_FORK:
			last_ts += I(1);
			bad |= r.ts != last_ts ||
			       (uint64_t)r.u.end.status != I(2);
			break;
		case KP_REC_IO:
		case KP_REC_FD_OPEN:
		case KP_REC_QUERY:
		case KP_REC_CPU_SAMPLE:
		case KP_REC_SNAPSHOT: {
			struct kp_ext_layout l = kp_ext_layout(r.type);
			last_ts += I(1);
			bad |= o.via.array.size != 5u + l.nv;
			bad |= r.ts != last_ts || r.kind != U(2) ||
			       r.u.ext.stack != U(3) || r.tid != cur_tid;
			bad |= l.has_str ? e[4].type != MSGPACK_OBJECT_STR ||
						   e[4].via.str.size !=
							   r.u.ext.str_len
					 : e[4].type != MSGPACK_OBJECT_NIL;
			for (unsigned i = 0; i < l.nv; i++)
				bad |= (uint64_t)r.u.ext.v[i] != I(5 + i);
			break;
		}
		case KP_REC_QUERY_TEXT:
			REQUIRE(e[2].type == MSGPACK_OBJECT_STR);
			bad |= r.u.qtext.id != U(1) ||
			       r.u.qtext.len != e[2].via.str.size;
			bad |= r.u.qtext.len &&
			       memcmp(r.u.qtext.text, e[2].via.str.ptr,
				      r.u.qtext.len);
			break;
		case KP_REC_JIT_CODE:
			REQUIRE(e[3].type == MSGPACK_OBJECT_STR);
			bad |= r.u.jit.lo != U(1) || r.u.jit.size != U(2) ||
			       r.u.jit.name_len != e[3].via.str.size;
			bad |= r.u.jit.name_len &&
			       memcmp(r.u.jit.name, e[3].via.str.ptr,
				      r.u.jit.name_len);
			break;
		case KP_REC_EXEC:
			last_ts += I(1);
			REQUIRE(e[2].type == MSGPACK_OBJECT_STR);
			bad |= r.ts != last_ts ||
			       r.u.exec.path_len != e[2].via.str.size;
			break;
		default:
			bad = 1;
		}
#undef I
#undef U
		if (bad) {
			printf("#   record %zu (type %u) differs\n", count,
			       r.type);
			CHECK(0);
			break;
		}
	}
	struct kp_rec r;
	CHECK(off == eb.b.len);
	CHECK(kp_dec_next(&d, &r) == 0);
	CHECK(count > n); /* all of them, plus FRAME and THREADs */
	msgpack_unpacked_destroy(&up);
	free(eb.b.p);
}

/*
 * kp_dec_next() by way of the bulk path, as the analyzer reads: the events
 * of a block from kp_dec_mem(), max at a time (a small max crosses batch
 * boundaries), everything else and the errors from kp_dec_next().
 */
struct bulk {
	struct kp_dec *d;
	struct kp_mem_rec m[8];
	size_t n, i, max;
};

static int bulk_next(struct bulk *b, struct kp_rec *r)
{
	if (b->i == b->n) {
		b->n = kp_dec_mem(b->d, b->m, b->max);
		b->i = 0;
		if (b->n > b->max)
			return -1000; /* no error code: the test fails */
	}
	if (b->i == b->n)
		return kp_dec_next(b->d, r);
	const struct kp_mem_rec *m = &b->m[b->i++];
	memset(r, 0, sizeof(*r));
	r->type = m->type;
	r->kind = m->kind;
	r->tid = m->tid;
	r->ts = m->ts;
	switch (m->type) {
	case KP_REC_ALLOC:
		r->u.alloc.ptr = m->a;
		r->u.alloc.size = m->b;
		r->u.alloc.align = m->c;
		r->u.alloc.stack = m->stack;
		break;
	case KP_REC_FREE:
		r->u.free.ptr = m->a;
		break;
	case KP_REC_REALLOC:
		r->u.realloc.old_ptr = m->a;
		r->u.realloc.new_ptr = m->b;
		r->u.realloc.size = m->c;
		r->u.realloc.dur = m->d;
		r->u.realloc.stack = m->stack;
		break;
	default:
		return -1001; /* the bulk path gives memory events only */
	}
	return 1;
}

/*
 * EVENTS blocks (the writer's path for ALLOC/FREE/REALLOC) decode to
 * exactly the records the msgpack records of kp_enc_rec decode to, for
 * every boundary of the varint and msgpack integer formats, positive and
 * negative deltas, aligned and unaligned pointers, tid changes; and every
 * event fits KP_ENC_MAX_EVENT.
 */
TEST(event_blocks_match_records)
{
	static const uint64_t vals[] = {
		0, 1, 15, 16, 30, 31, 32, 33, 127, 128, 255, 256, 2047, 2048,
		65535, 65536, 4294967295ull, 4294967296ull, UINT64_MAX / 2,
		UINT64_MAX - 15, UINT64_MAX - 1, UINT64_MAX, 0x7f0000001000ull,
		0x55555555a2a0ull, 0x55555555a2a8ull,
	};
	static uint64_t pcs[KP_MAX_STACK_DEPTH];
	size_t nv = sizeof(vals) / sizeof(vals[0]);
	struct encbuf slow;
	struct kp_enc fast;
	uint8_t *fbuf = malloc(1 << 20);
	size_t flen = 0, nrec = 0, blk = 0;
	uint32_t blk_tid = 0;
	int have_blk = 0;
	REQUIRE(fbuf);
	memset(&slow, 0, sizeof(slow));
	kp_enc_init(&slow.e, &slow.b, pbuf_write);
	kp_enc_frame(&slow.e, 1000, 0);
	fast = slow.e;
	memcpy(fbuf, slow.b.p, slow.b.len); /* the FRAME record */
	flen = slow.b.len;
	for (size_t i = 0; i < nv; i++) {
		for (size_t j = 0; j < nv; j++) {
			struct kp_rec r;
			memset(&r, 0, sizeof(r));
			r.type = (uint8_t)(KP_REC_ALLOC + (i + j) % 3);
			/* runs of a few events per thread */
			r.tid = (uint32_t)(vals[(i * 7 + j / 4) % nv]);
			r.ts = (j % 5) ? 1000 + i * 100 + j : vals[i] ^ vals[j];
			r.kind = (uint8_t)((i + j) % 9);
			r.u.alloc.ptr = vals[j];
			r.u.alloc.size = vals[i];
			r.u.alloc.align = (i % 3) ? 0 : vals[j];
			r.u.alloc.stack = (uint32_t)vals[(i + j) % nv];
			if (r.type == KP_REC_FREE) {
				memset(&r.u, 0, sizeof(r.u));
				r.u.free.ptr = vals[j];
				r.kind = 0;
			} else if (r.type == KP_REC_REALLOC) {
				memset(&r.u, 0, sizeof(r.u));
				r.u.realloc.old_ptr = vals[i];
				r.u.realloc.new_ptr = vals[j];
				r.u.realloc.size = vals[(i + 3) % nv];
				r.u.realloc.dur = vals[(j + 5) % nv];
				r.u.realloc.stack = (uint32_t)vals[i];
				r.kind = 0;
			}
			REQUIRE(kp_enc_rec(&slow.e, &r) == 0);
			if (!have_blk || r.tid != blk_tid) {
				if (have_blk)
					kp_enc_block_close(fbuf + blk, flen - blk -
							   KP_ENC_BLOCK_HDR);
				blk = flen;
				blk_tid = r.tid;
				have_blk = 1;
				flen += kp_enc_block_open(&fast, r.tid,
							  fbuf + flen);
			}
			size_t n = kp_enc_block_event(&fast, &r, fbuf + flen);
			CHECK(n <= KP_ENC_MAX_EVENT);
			flen += n;
			nrec++;
		}
	}
	kp_enc_block_close(fbuf + blk, flen - blk - KP_ENC_BLOCK_HDR);
	printf("# %zu events: %zu bytes in blocks, %zu as records\n", nrec,
	       flen, slow.b.len);
	struct kp_dec da, db;
	struct kp_rec ra, rb;
	size_t got = 0;
	int ret_a, ret_b;
	kp_dec_init(&da, slow.b.p, slow.b.len, pcs);
	kp_dec_init(&db, fbuf, flen, pcs);
	for (;;) {
		do
			ret_a = kp_dec_next(&da, &ra);
		while (ret_a == 1 && ra.type == KP_REC_THREAD);
		ret_b = kp_dec_next(&db, &rb);
		if (ret_a != 1 || ret_b != 1)
			break;
		if (!rec_same(&ra, &rb) || ra.tid != rb.tid) {
			printf("#   event %zu differs\n", got);
			CHECK(0);
			break;
		}
		got++;
	}
	CHECK(ret_a == 0 && ret_b == 0);
	CHECK_EQ_U(got, nrec + 1); /* and the FRAME */

	/* The bulk path gives the same records, at every batch size. */
	for (size_t max = 1; max <= 8; max += 3) {
		struct kp_dec dc;
		struct bulk bk = { .d = &dc, .max = max };
		kp_dec_init(&da, slow.b.p, slow.b.len, pcs);
		kp_dec_init(&dc, fbuf, flen, pcs);
		got = 0;
		for (;;) {
			do
				ret_a = kp_dec_next(&da, &ra);
			while (ret_a == 1 && ra.type == KP_REC_THREAD);
			ret_b = bulk_next(&bk, &rb);
			if (ret_a != 1 || ret_b != 1)
				break;
			if (!rec_same(&ra, &rb) || ra.tid != rb.tid) {
				printf("#   bulk %zu: event %zu differs\n", max,
				       got);
				CHECK(0);
				break;
			}
			got++;
		}
		CHECK(ret_a == 0 && ret_b == 0);
		CHECK_EQ_U(got, nrec + 1);
	}
	free(fbuf);
	free(slow.b.p);
}

/*
 * kp_enc_ext_direct (the writer's path for extension records) emits the
 * bytes of the packer path: every integer format boundary, negative values,
 * strings at every str format boundary, NULL strings, types with and
 * without a string, tid changes.
 */
TEST(ext_direct_matches_packer)
{
	static const int64_t vals[] = {
		0, 1, 127, 128, 255, 256, 65535, 65536, 4294967295ll,
		4294967296ll, INT64_MAX, -1, -32, -33, -128, -129, -32768,
		-32769, -2147483648ll, -2147483649ll, INT64_MIN,
	};
	static const uint32_t lens[] = { 0, 1, 31, 32, 255, 256, 4096 };
	static const uint8_t types[] = { KP_REC_IO, KP_REC_FD_OPEN,
					 KP_REC_QUERY, KP_REC_SPAN,
					 KP_REC_CUSTOM, KP_REC_CPU_SAMPLE,
					 KP_REC_KILL, KP_REC_PGID,
					 KP_REC_LEAK, KP_REC_LEAK_SCAN };
	static char text[4096];
	size_t nv = sizeof(vals) / sizeof(vals[0]);
	struct encbuf slow;
	struct kp_enc fast;
	uint8_t *fbuf = malloc(4 << 20);
	size_t flen = 0, frame_len;
	REQUIRE(fbuf);
	memset(text, 'q', sizeof(text));
	memset(&slow, 0, sizeof(slow));
	kp_enc_init(&slow.e, &slow.b, pbuf_write);
	kp_enc_frame(&slow.e, 1000, 0);
	frame_len = slow.b.len;
	fast = slow.e;
	for (size_t i = 0; i < nv * 8; i++) {
		struct kp_rec r;
		memset(&r, 0, sizeof(r));
		r.type = types[i % sizeof(types)];
		r.tid = (uint32_t)(i / 5) * 977u;
		r.ts = (uint64_t)vals[(i * 3) % nv];
		r.kind = (uint8_t)(i * 37);
		r.u.ext.stack = (uint32_t)vals[(i * 7) % nv];
		for (unsigned k = 0; k < KP_EXT_MAX_V; k++)
			r.u.ext.v[k] = vals[(i + k * 5) % nv];
		if (i % 9 != 4) {
			r.u.ext.str = text;
			r.u.ext.str_len = lens[i % (sizeof(lens) / sizeof(lens[0]))];
		}
		REQUIRE(kp_enc_check(&r) == 0);
		REQUIRE(kp_enc_rec(&slow.e, &r) == 0);
		size_t n = kp_enc_ext_direct(&fast, &r, fbuf + flen);
		CHECK(n <= KP_ENC_MAX_REC);
		flen += n;
	}
	CHECK_EQ_U(flen, slow.b.len - frame_len);
	CHECK(flen == slow.b.len - frame_len &&
	      memcmp(fbuf, slow.b.p + frame_len, flen) == 0);
	free(fbuf);
	free(slow.b.p);
}

/* Hostile blocks, of format 3 (EVENTS), 4 (EVENTS_NS) and 2 (EVENTS2):
 * cut varints, values over 64 bits, stacks over 32 bits are KP_ECORRUPT;
 * an empty block is nothing. */
TEST(event_blocks_hostile)
{
	static uint64_t pcs[KP_MAX_STACK_DEPTH];
	static const struct {
		const char *name;
		uint8_t type;
		uint8_t body[16];
		size_t n;
		int events; /* decoded before the error, or all */
		int ret;
	} cases[] = {
#define E2 KP_REC_EVENTS2
#define E3 KP_REC_EVENTS
#define NS KP_REC_EVENTS_NS
		{ "empty", E3, { 0 }, 0, 0, 0 },
		/* EVENTS_NS: no stack fields (the same bytes are short of
		 * one in EVENTS) */
		{ "ns alloc", NS, { 0x04 | (6 << 3), 0x00, 0x02, 0x05 }, 4, 1,
		  0 },
		{ "v3 alloc, no stack", E3, { 0x04 | (6 << 3), 0x00, 0x02,
					      0x05 }, 4, 0, KP_ECORRUPT },
		{ "ns alloc_x", NS, { 0x03, 0x00, 0x02, 0x05, 0x02, 0x40 }, 6,
		  1, 0 },
		{ "ns realloc", NS, { 0x02 | 4, 0x00, 0x02, 0x00, 0x05, 0x07 },
		  6, 1, 0 },
		{ "ns realloc, no dur", NS, { 0x02 | 4, 0x00, 0x02, 0x00,
					      0x05 }, 5, 0, KP_ECORRUPT },
		{ "ns no size", NS, { 0x00, 0x00, 0x02 }, 3, 0, KP_ECORRUPT },
		{ "ns free", NS, { 0x01 | 4 | (6 << 3), 0x00, 0x02 }, 3, 1, 0 },
		{ "v3 free", E3, { 0x01 | 4 | (6 << 3), 0x00, 0x02 }, 3, 1, 0 },
		{ "v3 no dts_hi", E3, { 0x01 }, 1, 0, KP_ECORRUPT },
		{ "v3 cut dts_hi", E3, { 0x01, 0x80 }, 2, 0, KP_ECORRUPT },
		{ "v3 cut ptr", E3, { 0x00, 0x00, 0x81 }, 3, 0, KP_ECORRUPT },
		{ "v3 no size", E3, { 0x00, 0x00, 0x02 }, 3, 0, KP_ECORRUPT },
		/* zigzag(dts) of 64 bits: the largest dts_hi, and one more */
		{ "v3 64-bit dts", E3, { 0x01 | (31 << 3), 0xff, 0xff, 0xff,
					 0xff, 0xff, 0xff, 0xff, 0xff, 0x07,
					 0x00 }, 11, 1, 0 },
		{ "v3 65-bit dts", E3, { 0x01 | (31 << 3), 0x80, 0x80, 0x80,
					 0x80, 0x80, 0x80, 0x80, 0x80, 0x08,
					 0x00 }, 11, 0, KP_ECORRUPT },
		{ "v3 ok then cut", E3, { 0x01, 0x00, 0x00, 0x01 }, 4, 1,
		  KP_ECORRUPT },
		{ "v3 65-bit dts, room", E3, { 0x01, 0x00, 0x00, 0x01 | (31 << 3),
					       0x80, 0x80, 0x80, 0x80, 0x80,
					       0x80, 0x80, 0x80, 0x08, 0x00,
					       0x00, 0x00 }, 16, 1,
		  KP_ECORRUPT },
		{ "empty", E2, { 0 }, 0, 0, 0 },
		{ "free", E2, { 0x01 | 4 | (3 << 3), 0x02 }, 2, 1, 0 },
		{ "cut dts", E2, { 0x01 | (31 << 3), 0x80 }, 2, 0, KP_ECORRUPT },
		{ "cut ptr", E2, { 0x00, 0x81 }, 2, 0, KP_ECORRUPT },
		{ "no size", E2, { 0x00, 0x02 }, 2, 0, KP_ECORRUPT },
		{ "65 bits", E2, { 0x01 | (31 << 3), 0xff, 0xff, 0xff, 0xff, 0xff,
			       0xff, 0xff, 0xff, 0xff, 0x02, 0x00 }, 12, 0,
		  KP_ECORRUPT },
		{ "11 bytes", E2, { 0x01 | (31 << 3), 0x80, 0x80, 0x80, 0x80,
				0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 },
		  12, 0, KP_ECORRUPT },
		{ "stack > u32", E2, { 0x00, 0x00, 0x01, 0x80, 0x80, 0x80, 0x80,
				   0x10 }, 8, 0, KP_ECORRUPT },
		{ "kind > u8", E2, { 0x03, 0x00, 0x01, 0x01, 0x80, 0x02, 0x00 }, 7,
		  0, KP_ECORRUPT },
		{ "ok then cut", E2, { 0x01, 0x00, 0x00 }, 3, 1, KP_ECORRUPT },
		/* ten bytes and more left: varints read without bounds */
		{ "65 bits, room", E2, { 0x01, 0x00, 0x01 | (31 << 3), 0xff, 0xff,
				     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
				     0x02, 0x00, 0x00, 0x00 }, 16, 1,
		  KP_ECORRUPT },
		{ "11 bytes, room", E2, { 0x01 | (31 << 3), 0x80, 0x80, 0x80, 0x80,
				      0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
				      0x00, 0x00, 0x00, 0x00, 0x00 }, 16, 0,
		  KP_ECORRUPT },
		{ "64 bits, room", E2, { 0x01 | (31 << 3), 0xff, 0xff, 0xff, 0xff,
				     0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x00,
				     0x01, 0x00 }, 14, 2, 0 },
#undef E2
#undef E3
#undef NS
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct pbuf b = { 0 };
		msgpack_packer pk;
		msgpack_packer_init(&pk, &b, pbuf_write);
		msgpack_pack_array(&pk, 3);
		msgpack_pack_int(&pk, cases[k].type);
		msgpack_pack_int(&pk, 5);
		msgpack_pack_bin(&pk, cases[k].n);
		msgpack_pack_bin_body(&pk, cases[k].body, cases[k].n);
		struct kp_dec d;
		struct kp_rec r;
		int ret, events = 0;
		kp_dec_init(&d, b.p, b.len, pcs);
		while ((ret = kp_dec_next(&d, &r)) == 1)
			events += r.tid == 5;
		if (ret != cases[k].ret || events != cases[k].events) {
			printf("#   %s: ret %d, %d events\n", cases[k].name,
			       ret, events);
			CHECK(0);
		}
		/* the same through the bulk path */
		struct bulk bk = { .d = &d, .max = 2 };
		events = 0;
		kp_dec_init(&d, b.p, b.len, pcs);
		while ((ret = bulk_next(&bk, &r)) == 1)
			events += r.tid == 5;
		if (ret != cases[k].ret || events != cases[k].events) {
			printf("#   %s, bulk: ret %d, %d events\n",
			       cases[k].name, ret, events);
			CHECK(0);
		}
		free(b.p);
	}
}

/*
 * The example of kprof-trace(5): an ALLOC (malloc, 64 bytes), an ALLOC
 * (calloc, 32 bytes) and a FREE of the first block, thread 4242, 1000,
 * 1300 and 1500 ns into a frame based at 0. The encoder writes exactly the
 * bytes the page shows for format 3 (and, without stacks, for format 4's
 * EVENTS_NS), and those and format 2's bytes of the same events (the
 * page's example before format 3) decode to them.
 */
TEST(event_blocks_golden)
{
	static const uint8_t v3[] = {
		0x84, 0x3e, 0xd4, 0xe4, 0xaa, 0xd5, 0xaa, 0xd5, 0x02, 0x40,
		0x01, 0xc7, 0x12, 0x0a, 0x20, 0x01, 0x01, 0x00, 0x85, 0x0c,
		0x09,
	};
	static const uint8_t v2[] = {
		0xfc, 0xd0, 0x0f, 0xd4, 0xe4, 0xaa, 0xd5, 0xaa, 0xd5, 0x02,
		0x40, 0x01, 0xff, 0xd8, 0x04, 0x0a, 0x20, 0x01, 0x01, 0x00,
		0xfd, 0x90, 0x03, 0x09,
	};
	/* EVENTS_NS (format 4): v3 without the two stack bytes */
	static const uint8_t ns[] = {
		0x84, 0x3e, 0xd4, 0xe4, 0xaa, 0xd5, 0xaa, 0xd5, 0x02, 0x40,
		0xc7, 0x12, 0x0a, 0x20, 0x01, 0x00, 0x85, 0x0c, 0x09,
	};
	static const struct {
		uint8_t type, kind;
		uint64_t ts, ptr, size;
	} want[] = {
		{ KP_REC_ALLOC, KP_ALLOC_MALLOC, 1000, 0x5555555592a0, 64 },
		{ KP_REC_ALLOC, KP_ALLOC_CALLOC, 1300, 0x5555555592f0, 32 },
		{ KP_REC_FREE, 0, 1500, 0x5555555592a0, 0 },
	};
	static uint64_t pcs[KP_MAX_STACK_DEPTH];
	struct encbuf eb;
	uint8_t out[KP_ENC_BLOCK_HDR + 3 * KP_ENC_MAX_EVENT];

	for (int nostk = 0; nostk < 2; nostk++) {
		memset(&eb, 0, sizeof(eb));
		kp_enc_init(&eb.e, &eb.b, pbuf_write);
		REQUIRE(kp_enc_frame(&eb.e, 0, 0) == 0);
		eb.e.no_stacks = (uint8_t)nostk;
		size_t n = kp_enc_block_open(&eb.e, 4242, out);
		for (size_t i = 0; i < 3; i++) {
			struct kp_rec r;
			memset(&r, 0, sizeof(r));
			r.type = want[i].type;
			r.kind = want[i].kind;
			r.tid = 4242;
			r.ts = want[i].ts;
			if (r.type == KP_REC_ALLOC) {
				r.u.alloc.ptr = want[i].ptr;
				r.u.alloc.size = want[i].size;
				r.u.alloc.stack = nostk ? 0 : 1;
			} else {
				r.u.free.ptr = want[i].ptr;
			}
			n += kp_enc_block_event(&eb.e, &r, out + n);
		}
		const uint8_t *gold = nostk ? ns : v3;
		size_t glen = nostk ? sizeof(ns) : sizeof(v3);
		CHECK(out[1] == (nostk ? KP_REC_EVENTS_NS : KP_REC_EVENTS));
		CHECK(n - KP_ENC_BLOCK_HDR == glen);
		CHECK(memcmp(out + KP_ENC_BLOCK_HDR, gold, glen) == 0);
		free(eb.b.p);
	}

	/* each form decodes to the events: 0 format 3, 1 format 2, 2 the
	 * stackless blocks of format 4 (stack 0) */
	for (int f = 0; f < 3; f++) {
		static const uint8_t types[] = { KP_REC_EVENTS, KP_REC_EVENTS2,
						 KP_REC_EVENTS_NS };
		const uint8_t *body = f == 0 ? v3 : f == 1 ? v2 : ns;
		size_t blen = f == 0 ? sizeof(v3) : f == 1 ? sizeof(v2) :
							     sizeof(ns);
		struct pbuf b = { 0 };
		msgpack_packer pk;
		msgpack_packer_init(&pk, &b, pbuf_write);
		msgpack_pack_array(&pk, 3);
		msgpack_pack_int(&pk, KP_REC_FRAME);
		msgpack_pack_int(&pk, 0);
		msgpack_pack_int(&pk, 0);
		msgpack_pack_array(&pk, 3);
		msgpack_pack_int(&pk, types[f]);
		msgpack_pack_int(&pk, 4242);
		msgpack_pack_bin(&pk, blen);
		msgpack_pack_bin_body(&pk, body, blen);
		struct kp_dec d;
		struct kp_rec r;
		size_t i = 0;
		kp_dec_init(&d, b.p, b.len, pcs);
		REQUIRE(kp_dec_next(&d, &r) == 1 && r.type == KP_REC_FRAME);
		while (kp_dec_next(&d, &r) == 1) {
			REQUIRE(i < 3);
			CHECK(r.type == want[i].type && r.tid == 4242 &&
			      r.ts == want[i].ts);
			if (r.type == KP_REC_ALLOC)
				CHECK(r.kind == want[i].kind &&
				      r.u.alloc.ptr == want[i].ptr &&
				      r.u.alloc.size == want[i].size &&
				      r.u.alloc.stack == (f == 2 ? 0 : 1) &&
				      r.u.alloc.align == 0);
			else
				CHECK(r.u.free.ptr == want[i].ptr);
			i++;
		}
		CHECK(i == 3);
		free(b.p);
	}
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(event_blocks_match_records),
			 T(event_blocks_hostile), T(event_blocks_golden), T(ext_direct_matches_packer),
			 T(mpk_integers), T(mpk_every_format),
			 T(mpk_hostile), T(roundtrip_every_type),
			 T(encoder_sizes), T(encoder_limits),
			 T(unknown_types_and_extra_fields), T(malformed_records),
			 T(decoder_limits), T(cross_check_msgpack_c));
}
