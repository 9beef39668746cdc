/* SPDX-License-Identifier: MIT */
/*
 * One event of an EVENTS block (record.h, "Event blocks"): the encoder of
 * ALLOC, FREE and REALLOC, with the block's delta state held by the
 * caller. Shared by the writer's encoder (codec.h) and the preload's
 * producers, which encode their memory events into runs of their ring
 * (state.h). Header-only; needs nothing but record.h.
 */
#ifndef KP_EVBLOCK_H
#define KP_EVBLOCK_H

#include <stdint.h>

#include "compat.h"
#include "record.h"

/* The most bytes kp_blk_put() writes: the tag, a dts of at most 9 bytes
 * (zigzag >> 5) and five values of at most 10. */
#define KP_BLK_EVENT_MAX (1 + 9 + 5 * 10)

/* Unsigned LEB128; the one- and two-byte values (nearly every one of a
 * busy thread's events) without the loop. */
static KP_ALWAYS_INLINE uint8_t *kp_put_varint(uint8_t *p, uint64_t v)
{
	if (KP_LIKELY(v < 0x80)) {
		p[0] = (uint8_t)v;
		return p + 1;
	}
	if (KP_LIKELY(v < 0x4000)) {
		p[0] = (uint8_t)(v | 0x80);
		p[1] = (uint8_t)(v >> 7);
		return p + 2;
	}
	while (v >= 0x80) {
		*p++ = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8_t)v;
	return p;
}

static KP_ALWAYS_INLINE uint64_t kp_zigzag(int64_t v)
{
	return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

/* A pointer delta: divided by 16 when the event's PTR16 bit is set (the
 * caller sets it when d is a multiple of 16: a shift divides exactly). */
static KP_ALWAYS_INLINE uint8_t *kp_put_dptr(uint8_t *p, uint64_t d,
					     int ptr16)
{
	int64_t v = (int64_t)d;
	return kp_put_varint(p, kp_zigzag(ptr16 ? v >> 4 : v));
}

/*
 * One ALLOC, FREE or REALLOC at ts (ns), its values those of struct
 * kp_rec (ALLOC: a ptr, b size, c align; FREE: a ptr; REALLOC: a old_ptr,
 * b new_ptr, c size, d dur), written at out (room for KP_BLK_EVENT_MAX
 * bytes), its deltas from *last_ts and *last_ptr, which it updates; the
 * stack is left out when no_stacks (an EVENTS_NS block).
 * @return the end of the bytes written.
 */
static KP_ALWAYS_INLINE uint8_t *kp_blk_put(uint8_t *out, uint64_t *last_ts,
					    uint64_t *last_ptr, int no_stacks,
					    unsigned type, unsigned kind,
					    uint64_t ts, uint64_t a, uint64_t b,
					    uint64_t c, uint64_t d,
					    uint32_t stack)
{
	uint64_t zdts = kp_zigzag((int64_t)(ts - *last_ts));
	unsigned tag = (unsigned)(zdts & 31) << 3;
	uint8_t *p = kp_put_varint(out + 1, zdts >> 5);

	*last_ts = ts;
	if (type == KP_REC_FREE) {
		uint64_t dp = a - *last_ptr;
		int p16 = (dp & 15) == 0;
		*last_ptr = a;
		tag |= KP_BLK_FREE | (p16 ? KP_BLK_PTR16 : 0);
		p = kp_put_dptr(p, dp, p16);
	} else if (type == KP_REC_ALLOC) {
		uint64_t dp = a - *last_ptr;
		int p16 = (dp & 15) == 0;
		int x = kind || c;
		*last_ptr = a;
		tag |= (x ? KP_BLK_ALLOC_X : KP_BLK_ALLOC) |
		       (p16 ? KP_BLK_PTR16 : 0);
		p = kp_put_dptr(p, dp, p16);
		p = kp_put_varint(p, b);
		if (!no_stacks)
			p = kp_put_varint(p, stack);
		if (x) {
			p = kp_put_varint(p, kind);
			p = kp_put_varint(p, c);
		}
	} else { /* KP_REC_REALLOC */
		uint64_t d1 = a - *last_ptr;
		uint64_t d2 = b - a;
		int p16 = ((d1 | d2) & 15) == 0;
		*last_ptr = b;
		tag |= KP_BLK_REALLOC | (p16 ? KP_BLK_PTR16 : 0);
		p = kp_put_dptr(p, d1, p16);
		p = kp_put_dptr(p, d2, p16);
		p = kp_put_varint(p, c);
		if (!no_stacks)
			p = kp_put_varint(p, stack);
		p = kp_put_varint(p, d);
	}
	out[0] = (uint8_t)tag;
	return p;
}

#endif
