/* SPDX-License-Identifier: MIT */
/*
 * A cursor over msgpack bytes: the reader's decoder. msgpack-c's unpacker
 * allocates a zone per object, far too slow for tens of millions of records
 * a second; this reads values in place instead.
 *
 * Every function checks every byte it reads against the end of the buffer
 * and returns 0 or KP_ECORRUPT (wrong type, or the object runs past the
 * end); on error the cursor position is unspecified. Nothing here
 * allocates, recurses or loops more than the input is long.
 *
 * Integers and array headers, most of the decoder's work, are inline; the
 * rest is in mpk.c.
 */
#ifndef KP_MPK_H
#define KP_MPK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "compat.h"
#include "err.h"

/* Deepest array/map nesting kp_mpk_skip() follows; deeper is KP_ELIMIT. */
#define KP_MPK_MAX_DEPTH 32

struct kp_mpk {
	const uint8_t *p;   /* next byte to read */
	const uint8_t *end; /* one past the last readable byte */
};

/* What the next object is, without consuming it (kp_mpk_peek). */
enum kp_mpk_type {
	KP_MPK_NONE = 0, /* end of input, or the never-used byte 0xc1 */
	KP_MPK_NIL,
	KP_MPK_BOOL,
	KP_MPK_UINT, /* any integer format holding a value >= 0 */
	KP_MPK_INT,  /* any integer format holding a value < 0 */
	KP_MPK_FLOAT,
	KP_MPK_STR,
	KP_MPK_BIN,
	KP_MPK_ARRAY,
	KP_MPK_MAP,
	KP_MPK_EXT,
};

static inline void kp_mpk_init(struct kp_mpk *c, const void *buf, size_t n)
{
	static const uint8_t none[1];
	c->p = buf ? buf : none; /* NULL + 0 is undefined behaviour */
	c->end = c->p + (buf ? n : 0);
}

static inline size_t kp_mpk_left(const struct kp_mpk *c)
{
	return (size_t)(c->end - c->p);
}

enum kp_mpk_type kp_mpk_peek(const struct kp_mpk *c);

/* Slow path of kp_mpk_array(); call that instead. */
int kp_mpk_array_slow(struct kp_mpk *c, uint32_t *n);

static inline uint16_t kp_mpk_be16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof(v));
	return __builtin_bswap16(v);
}

static inline uint32_t kp_mpk_be32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return __builtin_bswap32(v);
}

static inline uint64_t kp_mpk_be64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return __builtin_bswap64(v);
}

/* Any integer format; the out-of-line part of kp_mpk_int(). */
int kp_mpk_int_slow(struct kp_mpk *c, uint64_t *v, int *neg);

/*
 * Any integer format, as two's complement in *v; *neg set when the value
 * is negative. Most of the decoder's work, so the usual cases are inline:
 * fixints, and the 1..8-byte forms when 9 bytes are left (one unaligned
 * 8-byte load, shifted down to the width). A branchless variant (table +
 * conditional moves) measured slower: the tags are well enough predicted.
 */
static KP_ALWAYS_INLINE int kp_mpk_int(struct kp_mpk *c, uint64_t *v,
				       int *neg)
{
	const uint8_t *p = c->p;
	if (KP_LIKELY(p < c->end)) {
		uint8_t b = *p;
		if (KP_LIKELY(b < 0x80)) {
			*v = b;
			*neg = 0;
			c->p = p + 1;
			return 0;
		}
		if (b >= 0xe0) {
			*v = (uint64_t)(int64_t)(int8_t)b;
			*neg = 1;
			c->p = p + 1;
			return 0;
		}
		/* 0xcc..0xcf uint8..64, 0xd0..0xd3 int8..64 */
		unsigned k = (unsigned)b - 0xcc;
		if (k < 8 && c->end - p >= 9) {
			unsigned w = 1u << (k & 3);
			unsigned sh = 64 - 8 * w;
			uint64_t raw = kp_mpk_be64(p + 1);
			if (k < 4) {
				*v = raw >> sh;
				*neg = 0;
			} else {
				int64_t s = (int64_t)raw >> sh;
				*v = (uint64_t)s;
				*neg = s < 0;
			}
			c->p = p + 1 + w;
			return 0;
		}
	}
	return kp_mpk_int_slow(c, v, neg);
}

/*
 * An integer that must not be negative (any int or uint format).
 * @return 0, or KP_ECORRUPT for a negative value or a non-integer.
 */
static KP_ALWAYS_INLINE int kp_mpk_u64(struct kp_mpk *c, uint64_t *v)
{
	int neg;
	int ret = kp_mpk_int(c, v, &neg);
	if (KP_UNLIKELY(ret < 0))
		return ret;
	return neg ? KP_ECORRUPT : 0;
}

/*
 * Any integer as int64. A uint64 above INT64_MAX wraps to a negative value:
 * the delta fields are defined to wrap, and a writer may emit them either way.
 */
static KP_ALWAYS_INLINE int kp_mpk_i64(struct kp_mpk *c, int64_t *v)
{
	uint64_t u;
	int neg;
	int ret = kp_mpk_int(c, &u, &neg);
	*v = (int64_t)u;
	return ret;
}

/* An array header; *n elements follow (not checked against what is left). */
static KP_ALWAYS_INLINE int kp_mpk_array(struct kp_mpk *c, uint32_t *n)
{
	if (KP_LIKELY(c->p < c->end && (*c->p & 0xf0) == 0x90)) {
		*n = *c->p++ & 0x0f;
		return 0;
	}
	return kp_mpk_array_slow(c, n);
}

int kp_mpk_map(struct kp_mpk *c, uint32_t *n);
int kp_mpk_nil(struct kp_mpk *c);
int kp_mpk_bool(struct kp_mpk *c, int *v);
/* float32, float64, or any integer (converted). */
int kp_mpk_double(struct kp_mpk *c, double *v);

/*
 * A str (fixstr, str8/16/32): *s points into the buffer (not NUL-terminated)
 * and the whole body is known to be inside it. @return 0, KP_ECORRUPT.
 */
int kp_mpk_str(struct kp_mpk *c, const char **s, uint32_t *n);
/* A bin (bin8/16/32), as kp_mpk_str. */
int kp_mpk_bin(struct kp_mpk *c, const uint8_t **s, uint32_t *n);
/* An ext (fixext1..16, ext8/16/32): its type and data. */
int kp_mpk_ext(struct kp_mpk *c, int8_t *type, const uint8_t **s,
	       uint32_t *n);

/*
 * Skip count whole objects of any type, arrays and maps included.
 * Iterative with an explicit stack, so hostile nesting costs no C stack.
 * @return 0, KP_ECORRUPT (runs past the end or 0xc1), KP_ELIMIT (nested
 *         deeper than KP_MPK_MAX_DEPTH).
 */
int kp_mpk_skip(struct kp_mpk *c, uint64_t count);

#endif
