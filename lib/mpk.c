/* SPDX-License-Identifier: MIT */
/*
 * The msgpack cursor's out-of-line paths (see mpk.h): every format of the
 * spec, each length checked against the bytes left before it is used. Input
 * is untrusted: no allocation, no recursion, no read past c->end.
 */
#include <string.h>

#include "mpk.h"

#define be16 kp_mpk_be16
#define be32 kp_mpk_be32
#define be64 kp_mpk_be64

int kp_mpk_int_slow(struct kp_mpk *c, uint64_t *v, int *neg)
{
	size_t left = kp_mpk_left(c);
	if (left < 1)
		return KP_ECORRUPT;
	const uint8_t *p = c->p;
	uint8_t b = p[0];
	if (b < 0x80 || b >= 0xe0) {
		*v = (uint64_t)(int64_t)(b < 0x80 ? b : (int8_t)b);
		*neg = b >= 0xe0;
		c->p = p + 1;
		return 0;
	}
	unsigned k = (unsigned)b - 0xcc;
	if (k >= 8)
		return KP_ECORRUPT;
	size_t w = (size_t)1 << (k & 3);
	if (left - 1 < w)
		return KP_ECORRUPT;
	uint64_t u = 0;
	for (size_t i = 0; i < w; i++) /* short buffer: bytewise */
		u = u << 8 | p[1 + i];
	if (k >= 4 && w < 8 && (u >> (8 * w - 1)) & 1)
		u |= ~0ull << (8 * w); /* sign-extend */
	*v = u;
	*neg = k >= 4 && (int64_t)u < 0;
	c->p = p + 1 + w;
	return 0;
}

/* Shared by array and map: fix form in [fix, fix+15], then 16/32-bit forms. */
static int read_count(struct kp_mpk *c, uint8_t fix, uint8_t f16, uint8_t f32,
		      uint32_t *n)
{
	size_t left = kp_mpk_left(c);
	if (left < 1)
		return KP_ECORRUPT;
	uint8_t b = c->p[0];
	if ((b & 0xf0) == fix) {
		*n = b & 0x0f;
		c->p++;
		return 0;
	}
	if (b == f16) {
		if (left < 3)
			return KP_ECORRUPT;
		*n = be16(c->p + 1);
		c->p += 3;
		return 0;
	}
	if (b == f32) {
		if (left < 5)
			return KP_ECORRUPT;
		*n = be32(c->p + 1);
		c->p += 5;
		return 0;
	}
	return KP_ECORRUPT;
}

int kp_mpk_array_slow(struct kp_mpk *c, uint32_t *n)
{
	return read_count(c, 0x90, 0xdc, 0xdd, n);
}

int kp_mpk_map(struct kp_mpk *c, uint32_t *n)
{
	return read_count(c, 0x80, 0xde, 0xdf, n);
}

int kp_mpk_nil(struct kp_mpk *c)
{
	if (c->p >= c->end || *c->p != 0xc0)
		return KP_ECORRUPT;
	c->p++;
	return 0;
}

int kp_mpk_bool(struct kp_mpk *c, int *v)
{
	if (c->p >= c->end || (*c->p != 0xc2 && *c->p != 0xc3))
		return KP_ECORRUPT;
	*v = *c->p++ == 0xc3;
	return 0;
}

int kp_mpk_double(struct kp_mpk *c, double *v)
{
	size_t left = kp_mpk_left(c);
	if (left < 1)
		return KP_ECORRUPT;
	if (c->p[0] == 0xca) {
		if (left < 5)
			return KP_ECORRUPT;
		uint32_t u = be32(c->p + 1);
		float f;
		memcpy(&f, &u, sizeof(f));
		*v = f;
		c->p += 5;
		return 0;
	}
	if (c->p[0] == 0xcb) {
		if (left < 9)
			return KP_ECORRUPT;
		uint64_t u = be64(c->p + 1);
		memcpy(v, &u, sizeof(*v));
		c->p += 9;
		return 0;
	}
	uint64_t u;
	int neg;
	int ret = kp_mpk_int(c, &u, &neg);
	if (ret < 0)
		return ret;
	*v = neg ? (double)(int64_t)u : (double)u;
	return 0;
}

/*
 * Length of a str/bin/ext body whose header starts at c->p, and the header's
 * own size. @return 0 or KP_ECORRUPT if the header does not fit.
 */
static int body_len(const struct kp_mpk *c, size_t hdr_len, size_t w,
		    uint32_t *n)
{
	if (kp_mpk_left(c) < hdr_len)
		return KP_ECORRUPT;
	const uint8_t *q = c->p + 1;
	switch (w) {
	case 1: *n = q[0]; break;
	case 2: *n = be16(q); break;
	default: *n = be32(q); break;
	}
	return 0;
}

static int read_body(struct kp_mpk *c, size_t hdr_len, uint32_t n,
		     const uint8_t **s)
{
	if (kp_mpk_left(c) - hdr_len < n)
		return KP_ECORRUPT;
	*s = c->p + hdr_len;
	c->p += hdr_len + n;
	return 0;
}

int kp_mpk_str(struct kp_mpk *c, const char **s, uint32_t *n)
{
	if (c->p >= c->end)
		return KP_ECORRUPT;
	uint8_t b = c->p[0];
	size_t h;
	int ret = 0;
	if ((b & 0xe0) == 0xa0) {
		*n = b & 0x1f;
		h = 1;
	} else if (b == 0xd9) {
		h = 2;
		ret = body_len(c, h, 1, n);
	} else if (b == 0xda) {
		h = 3;
		ret = body_len(c, h, 2, n);
	} else if (b == 0xdb) {
		h = 5;
		ret = body_len(c, h, 4, n);
	} else {
		return KP_ECORRUPT;
	}
	if (ret < 0)
		return ret;
	const uint8_t *body;
	ret = read_body(c, h, *n, &body);
	if (ret == 0)
		*s = (const char *)body;
	return ret;
}

int kp_mpk_bin(struct kp_mpk *c, const uint8_t **s, uint32_t *n)
{
	if (c->p >= c->end)
		return KP_ECORRUPT;
	uint8_t b = c->p[0];
	size_t h;
	int ret;
	if (b == 0xc4) {
		h = 2;
		ret = body_len(c, h, 1, n);
	} else if (b == 0xc5) {
		h = 3;
		ret = body_len(c, h, 2, n);
	} else if (b == 0xc6) {
		h = 5;
		ret = body_len(c, h, 4, n);
	} else {
		return KP_ECORRUPT;
	}
	if (ret < 0)
		return ret;
	return read_body(c, h, *n, s);
}

int kp_mpk_ext(struct kp_mpk *c, int8_t *type, const uint8_t **s,
	       uint32_t *n)
{
	size_t left = kp_mpk_left(c);
	if (left < 1)
		return KP_ECORRUPT;
	uint8_t b = c->p[0];
	size_t h; /* header bytes before the type byte */
	int ret = 0;
	switch (b) {
	case 0xd4: *n = 1; h = 1; break;
	case 0xd5: *n = 2; h = 1; break;
	case 0xd6: *n = 4; h = 1; break;
	case 0xd7: *n = 8; h = 1; break;
	case 0xd8: *n = 16; h = 1; break;
	case 0xc7: h = 2; ret = body_len(c, h, 1, n); break;
	case 0xc8: h = 3; ret = body_len(c, h, 2, n); break;
	case 0xc9: h = 5; ret = body_len(c, h, 4, n); break;
	default:
		return KP_ECORRUPT;
	}
	if (ret < 0)
		return ret;
	if (left < h + 1)
		return KP_ECORRUPT;
	*type = (int8_t)c->p[h];
	return read_body(c, h + 1, *n, s);
}

enum kp_mpk_type kp_mpk_peek(const struct kp_mpk *c)
{
	if (c->p >= c->end)
		return KP_MPK_NONE;
	uint8_t b = c->p[0];
	if (b < 0x80)
		return KP_MPK_UINT;
	if (b < 0x90)
		return KP_MPK_MAP;
	if (b < 0xa0)
		return KP_MPK_ARRAY;
	if (b < 0xc0)
		return KP_MPK_STR;
	if (b >= 0xe0)
		return KP_MPK_INT;
	switch (b) {
	case 0xc0:
		return KP_MPK_NIL;
	case 0xc2: case 0xc3:
		return KP_MPK_BOOL;
	case 0xc4: case 0xc5: case 0xc6:
		return KP_MPK_BIN;
	case 0xc7: case 0xc8: case 0xc9:
	case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
		return KP_MPK_EXT;
	case 0xca: case 0xcb:
		return KP_MPK_FLOAT;
	case 0xcc: case 0xcd: case 0xce: case 0xcf:
		return KP_MPK_UINT;
	case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
		/* The sign needs the value; read it from a copy of the cursor. */
		struct kp_mpk t = *c;
		uint64_t v;
		int neg;
		if (kp_mpk_int(&t, &v, &neg) < 0)
			return KP_MPK_NONE;
		return neg ? KP_MPK_INT : KP_MPK_UINT;
	}
	case 0xd9: case 0xda: case 0xdb:
		return KP_MPK_STR;
	case 0xdc: case 0xdd:
		return KP_MPK_ARRAY;
	case 0xde: case 0xdf:
		return KP_MPK_MAP;
	default: /* 0xc1 */
		return KP_MPK_NONE;
	}
}

/*
 * Skip one object that is not an array or map, or read the header of one
 * that is (*children = elements to skip after it, 2 per map entry).
 */
static int skip_one(struct kp_mpk *c, uint64_t *children)
{
	size_t left = kp_mpk_left(c);
	if (left < 1)
		return KP_ECORRUPT;
	uint8_t b = c->p[0];
	uint64_t body = 0; /* bytes after the fixed-size header */
	size_t h = 1;      /* header size */
	uint32_t n;
	*children = 0;
	if (b < 0x80 || b >= 0xe0) {
		h = 1;
	} else if (b < 0x90) {
		*children = 2 * (uint64_t)(b & 0x0f);
	} else if (b < 0xa0) {
		*children = b & 0x0f;
	} else if (b < 0xc0) {
		body = b & 0x1f;
	} else {
		switch (b) {
		case 0xc0: case 0xc2: case 0xc3:
			break;
		case 0xcc: case 0xd0: h = 2; break;
		case 0xcd: case 0xd1: h = 3; break;
		case 0xce: case 0xd2: case 0xca: h = 5; break;
		case 0xcf: case 0xd3: case 0xcb: h = 9; break;
		case 0xd4: h = 2; body = 1; break;
		case 0xd5: h = 2; body = 2; break;
		case 0xd6: h = 2; body = 4; break;
		case 0xd7: h = 2; body = 8; break;
		case 0xd8: h = 2; body = 16; break;
		case 0xc4: case 0xd9:
			if (body_len(c, 2, 1, &n) < 0)
				return KP_ECORRUPT;
			h = 2;
			body = n;
			break;
		case 0xc5: case 0xda:
			if (body_len(c, 3, 2, &n) < 0)
				return KP_ECORRUPT;
			h = 3;
			body = n;
			break;
		case 0xc6: case 0xdb:
			if (body_len(c, 5, 4, &n) < 0)
				return KP_ECORRUPT;
			h = 5;
			body = n;
			break;
		case 0xc7: /* ext8: len, type, data */
			if (body_len(c, 2, 1, &n) < 0)
				return KP_ECORRUPT;
			h = 3;
			body = n;
			break;
		case 0xc8:
			if (body_len(c, 3, 2, &n) < 0)
				return KP_ECORRUPT;
			h = 4;
			body = n;
			break;
		case 0xc9:
			if (body_len(c, 5, 4, &n) < 0)
				return KP_ECORRUPT;
			h = 6;
			body = n;
			break;
		case 0xdc: case 0xdd:
			if (kp_mpk_array_slow(c, &n) < 0)
				return KP_ECORRUPT;
			*children = n;
			return 0;
		case 0xde: case 0xdf:
			if (kp_mpk_map(c, &n) < 0)
				return KP_ECORRUPT;
			*children = 2 * (uint64_t)n;
			return 0;
		default: /* 0xc1 is never used */
			return KP_ECORRUPT;
		}
	}
	if (left < h || left - h < body)
		return KP_ECORRUPT;
	c->p += h + body;
	return 0;
}

int kp_mpk_skip(struct kp_mpk *c, uint64_t count)
{
	/* left[d]: objects still to skip at nesting depth d. */
	uint64_t left[KP_MPK_MAX_DEPTH + 1];
	int d = 0;
	left[0] = count;
	for (;;) {
		while (left[d] == 0) {
			if (d == 0)
				return 0;
			d--;
		}
		/*
		 * Every object takes at least one byte, so a count larger than
		 * the bytes left can never be satisfied: fail now rather than
		 * walk to the end.
		 */
		if (left[d] > kp_mpk_left(c))
			return KP_ECORRUPT;
		left[d]--;
		uint64_t children;
		int ret = skip_one(c, &children);
		if (ret < 0)
			return ret;
		if (children) {
			if (d == KP_MPK_MAX_DEPTH)
				return KP_ELIMIT;
			left[++d] = children;
		}
	}
}
