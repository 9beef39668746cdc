/* SPDX-License-Identifier: MIT */
/*
 * python3.11's location table (PyCodeObject.co_linetable, the format of
 * Python's Objects/locations.md): the line of a bytecode offset, as
 * PyCode_Addr2Line gives it, from the table's bytes. A cursor remembers
 * where its last lookup ended, so lookups at growing offsets of one code
 * object (a module's imports run top down) read its table once, where
 * PyCode_Addr2Line reads it from the start each time. Self-contained
 * (pystack.c, and tests/unit/t_pyoffsets.c, which checks it against
 * PyCode_Addr2Line on every instruction of some of the standard library).
 */
#ifndef KP_PYLINES_H
#define KP_PYLINES_H

#include <stddef.h>
#include <stdint.h>

struct kp_pylines {
	const uint8_t *tab, *pos, *end; /* the table, its next entry, its end */
	int first;       /* co_firstlineno */
	int line;        /* the line computed up to pos */
	int start, stop; /* [start, stop): the bytes the entry before pos
			  * covers */
	int cur;         /* that entry's line, -1 for none */
};

static inline void kp_pylines_init(struct kp_pylines *c, const uint8_t *tab,
				   size_t len, int first)
{
	c->tab = c->pos = tab;
	c->end = tab + len;
	c->first = c->line = first;
	c->start = -1;
	c->stop = 0;
	c->cur = -1;
}

/* An unsigned varint of 6-bit groups (bit 6: more), at *p. */
static inline unsigned kp_pylines_varint(const uint8_t **p,
					 const uint8_t *end)
{
	unsigned v = 0, shift = 0;
	uint8_t b;
	do {
		if (*p >= end || shift > 24)
			return v;
		b = *(*p)++;
		v |= (unsigned)(b & 63) << shift;
		shift += 6;
	} while (b & 64);
	return v;
}

/* The line of byte offset addr, or -1 where the table has none for it. */
static inline int kp_pylines_at(struct kp_pylines *c, int addr)
{
	if (addr < 0)
		return c->first;
	if (addr < c->start) /* behind the cursor: from the start */
		kp_pylines_init(c, c->tab, (size_t)(c->end - c->tab), c->first);
	while (c->stop <= addr) {
		if (c->pos >= c->end)
			return -1;
		uint8_t b = *c->pos;
		int code = (b >> 3) & 15, delta = 0;
		const uint8_t *p = c->pos + 1;
		if (code == 13 || code == 14) { /* no columns; long form */
			unsigned u = kp_pylines_varint(&p, c->end);
			delta = (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
		} else if (code >= 10 && code <= 12) { /* one-line forms */
			delta = code - 10;
		}
		c->line += delta;
		c->cur = code == 15 ? -1 : c->line;
		c->start = c->stop;
		c->stop += ((b & 7) + 1) * 2; /* code units of 2 bytes */
		do
			c->pos++;
		while (c->pos < c->end && !(*c->pos & 128));
	}
	return c->cur;
}

#endif
