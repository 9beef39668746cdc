/* SPDX-License-Identifier: MIT */
/*
 * Record decoder: msgpack records of record.h -> struct kp_rec, undoing
 * the delta coding. This is the analyzer's inner loop (tens of millions of
 * records a second) and it reads untrusted bytes, so it decodes in place
 * with the kp_mpk cursor: no allocation, every length checked before use.
 *
 * Compatibility rules (record.h): unknown record types are skipped whole,
 * elements past the known ones are skipped, missing trailing elements that
 * have a documented default take it; any other missing element, or a
 * wrong type, is KP_ECORRUPT.
 */
#include <string.h>

#include "codec.h"

void kp_dec_init(struct kp_dec *d, const void *buf, size_t n, uint64_t *pcs)
{
	kp_mpk_init(&d->c, buf, n);
	d->blk = d->blk_end = NULL;
	d->last_ts = 0;
	d->last_ptr = 0;
	d->cur_tid = 0;
	d->pcs = pcs;
}

/* Return on error; every reader below yields 0 or a negative code. */
#define TRY(x)                          \
	do {                            \
		int try_ret_ = (x);     \
		if (try_ret_ < 0)       \
			return try_ret_; \
	} while (0)

static KP_ALWAYS_INLINE int get_u32(struct kp_mpk *c, uint32_t *v)
{
	uint64_t u;
	TRY(kp_mpk_u64(c, &u));
	if (u > UINT32_MAX)
		return KP_ECORRUPT;
	*v = (uint32_t)u;
	return 0;
}

static KP_ALWAYS_INLINE int get_dts(struct kp_dec *d, uint64_t *ts)
{
	int64_t v;
	TRY(kp_mpk_i64(&d->c, &v));
	d->last_ts += (uint64_t)v;
	*ts = d->last_ts;
	return 0;
}

static KP_ALWAYS_INLINE int get_dptr(struct kp_dec *d, uint64_t *ptr)
{
	int64_t v;
	TRY(kp_mpk_i64(&d->c, &v));
	d->last_ptr += (uint64_t)v;
	*ptr = d->last_ptr;
	return 0;
}

/* A str field, limited to KP_MAX_STR_LEN. */
static int get_str(struct kp_mpk *c, const char **s, uint32_t *n)
{
	TRY(kp_mpk_str(c, s, n));
	return *n > KP_MAX_STR_LEN ? KP_ELIMIT : 0;
}

static int get_bin(struct kp_mpk *c, const uint8_t **s, uint32_t *n)
{
	TRY(kp_mpk_bin(c, s, n));
	return *n > KP_MAX_STR_LEN ? KP_ELIMIT : 0;
}

static int get_stack(struct kp_dec *d, struct kp_rec *r)
{
	uint32_t n;
	TRY(get_u32(&d->c, &r->u.stack.id));
	TRY(kp_mpk_array(&d->c, &n));
	if (n > KP_MAX_STACK_DEPTH)
		return KP_ELIMIT;
	for (uint32_t i = 0; i < n; i++)
		TRY(kp_mpk_u64(&d->c, &d->pcs[i]));
	r->u.stack.depth = n;
	r->u.stack.pcs = d->pcs;
	return 0;
}

/*
 * An extension record (record.h): [dts, kind, stack, str|nil, v...] after
 * the type. The str element is nil or a string whatever the layout says, so
 * a type may gain a string in a later version; values past the known ones
 * are left to the caller to skip, missing ones stay 0.
 */
static int dec_ext(struct kp_dec *d, struct kp_rec *r, uint32_t rem)
{
	struct kp_mpk *c = &d->c;
	struct kp_ext_layout l = kp_ext_layout(r->type);
	uint64_t u;

	if (rem < 4)
		return KP_ECORRUPT;
	TRY(get_dts(d, &r->ts));
	TRY(kp_mpk_u64(c, &u));
	if (u > UINT8_MAX)
		return KP_ECORRUPT;
	r->kind = (uint8_t)u;
	TRY(get_u32(c, &r->u.ext.stack));
	if (c->p < c->end && *c->p == 0xc0) {
		c->p++;
	} else {
		TRY(get_str(c, &r->u.ext.str, &r->u.ext.str_len));
		if (!r->u.ext.str)
			r->u.ext.str = "";
	}
	uint32_t nv = rem - 4 < l.nv ? rem - 4 : l.nv;
	for (uint32_t i = 0; i < nv; i++)
		TRY(kp_mpk_i64(c, &r->u.ext.v[i]));
	r->tid = d->cur_tid;
	return (int)(4 + nv);
}

/* ---- EVENTS blocks ------------------------------------------------------ */

/*
 * The most bytes one event of a block takes: the tag, a dts and five
 * values of at most 10 bytes each. With that much left, an event decodes
 * without a bounds check (blk_event's "room" case).
 */
#define BLK_EVENT_MAX (1 + 6 * 10)

/* An unsigned LEB128 of at most 10 bytes that fits 64 bits, else NULL.
 * room: the caller knows 10 bytes are readable at p. */
static KP_ALWAYS_INLINE const uint8_t *get_varint_at(const uint8_t *p,
						     const uint8_t *end,
						     uint64_t *v, int room)
{
	if (KP_LIKELY((room || p < end) && *p < 0x80)) {
		*v = *p;
		return p + 1;
	}
	if (KP_LIKELY(room || end - p >= 10)) {
		/* All ten bytes readable: no bounds checks, and a branch
		 * per length that predicts on its own. */
		uint64_t x = p[0] & 0x7f, b;
#define KP_VARINT_BYTE(i)                                  \
		b = p[i];                                  \
		x |= (b & 0x7f) << (7 * (i));              \
		if (!(b & 0x80)) {                         \
			*v = x;                            \
			return p + (i) + 1;                \
		}
		KP_VARINT_BYTE(1)
		KP_VARINT_BYTE(2)
		KP_VARINT_BYTE(3)
		KP_VARINT_BYTE(4)
		KP_VARINT_BYTE(5)
		KP_VARINT_BYTE(6)
		KP_VARINT_BYTE(7)
		KP_VARINT_BYTE(8)
#undef KP_VARINT_BYTE
		if (p[9] > 1)
			return NULL; /* more than 64 bits */
		*v = x | (uint64_t)p[9] << 63;
		return p + 10;
	}
	uint64_t x = 0;
	for (unsigned sh = 0; sh < 70; sh += 7) {
		if (p == end)
			return NULL;
		uint8_t b = *p++;
		if (sh == 63 && b > 1)
			return NULL; /* more than 64 bits */
		x |= (uint64_t)(b & 0x7f) << sh;
		if (!(b & 0x80)) {
			*v = x;
			return p;
		}
	}
	return NULL;
}

#define get_varint(p, end, v) get_varint_at(p, end, v, room)

static KP_ALWAYS_INLINE int64_t unzigzag(uint64_t v)
{
	return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

/* A pointer delta (record.h): ×16 when the tag says so. */
static KP_ALWAYS_INLINE const uint8_t *blk_dptr(const uint8_t *p,
					       const uint8_t *end,
					       int p16, uint64_t *d, int room)
{
	uint64_t v;
	p = get_varint(p, end, &v);
	if (p)
		*d = p16 ? (uint64_t)unzigzag(v) * 16 : (uint64_t)unzigzag(v);
	return p;
}

#define NEXT(x)                  \
	do {                     \
		if (!(p = (x)))  \
			return NULL; \
	} while (0)

/*
 * Decode the event at p (p < end) of an open block into *m (all but tid),
 * with the block's delta state in *last_ts and *last_ptr, which change
 * only if the event decodes. Inline into both users, so the bulk loop
 * keeps the state in registers; room (a constant) says that
 * BLK_EVENT_MAX bytes are readable at p. @return the end of the event, or
 * NULL.
 */
static KP_ALWAYS_INLINE const uint8_t *blk_event(const uint8_t *p,
						 const uint8_t *end,
						 uint64_t *last_ts,
						 uint64_t *last_ptr,
						 struct kp_mem_rec *m, int room,
						 int form)
{
	uint8_t tag = *p++;
	unsigned type = tag & 3;
	int p16 = (tag & KP_BLK_PTR16) != 0;
	uint64_t dts = tag >> 3, a, b, size, stack, u, ptr;

	if (form != KP_BLK_FORM_2) { /* the rest of zigzag(dts) follows */
		NEXT(get_varint(p, end, &u));
		if (u >> 59)
			return NULL; /* more than 64 bits */
		dts = (uint64_t)unzigzag(u << 5 | dts);
	} else if (dts == KP_BLK_DTS_ESC) {
		NEXT(get_varint(p, end, &u));
		dts = (uint64_t)unzigzag(u);
	}
	m->kind = 0;
	m->ts = *last_ts + dts;
	NEXT(blk_dptr(p, end, p16, &a, room));
	switch (type) {
	case KP_BLK_ALLOC:
	case KP_BLK_ALLOC_X:
		NEXT(get_varint(p, end, &size));
		stack = 0;
		if (form != KP_BLK_FORM_NS)
			NEXT(get_varint(p, end, &stack));
		if (stack > UINT32_MAX)
			return NULL;
		m->type = KP_REC_ALLOC;
		m->a = ptr = *last_ptr + a;
		m->b = size;
		m->c = 0;
		m->stack = (uint32_t)stack;
		if (type == KP_BLK_ALLOC_X) {
			NEXT(get_varint(p, end, &u));
			if (u > UINT8_MAX)
				return NULL;
			m->kind = (uint8_t)u;
			NEXT(get_varint(p, end, &m->c));
		}
		break;
	case KP_BLK_FREE:
		m->type = KP_REC_FREE;
		m->a = ptr = *last_ptr + a;
		break;
	default: /* KP_BLK_REALLOC */
		NEXT(blk_dptr(p, end, p16, &b, room));
		NEXT(get_varint(p, end, &size));
		stack = 0;
		if (form != KP_BLK_FORM_NS)
			NEXT(get_varint(p, end, &stack));
		if (stack > UINT32_MAX)
			return NULL;
		m->type = KP_REC_REALLOC;
		m->a = *last_ptr + a;
		m->b = ptr = m->a + b;
		m->c = size;
		m->stack = (uint32_t)stack;
		NEXT(get_varint(p, end, &m->d));
		break;
	}
	*last_ptr = ptr;
	*last_ts = m->ts;
	return p;
}
#undef NEXT
#undef get_varint

/* Decode the next event of the open block into *r. @return 1 or <0. */
static int dec_block_event(struct kp_dec *d, struct kp_rec *r)
{
	struct kp_mem_rec m = { 0 };
	const uint8_t *p = blk_event(d->blk, d->blk_end, &d->last_ts,
				     &d->last_ptr, &m, 0, d->blk_form);

	if (!p)
		return KP_ECORRUPT;
	d->blk = p;
	r->type = m.type;
	r->kind = m.kind;
	r->pad = 0;
	r->tid = d->cur_tid;
	r->ts = m.ts;
	switch (m.type) {
	case KP_REC_ALLOC:
		r->u.alloc.ptr = m.a;
		r->u.alloc.size = m.b;
		r->u.alloc.align = m.c;
		r->u.alloc.stack = m.stack;
		break;
	case KP_REC_FREE:
		r->u.free.ptr = m.a;
		break;
	default:
		r->u.realloc.old_ptr = m.a;
		r->u.realloc.new_ptr = m.b;
		r->u.realloc.size = m.c;
		r->u.realloc.dur = m.d;
		r->u.realloc.stack = m.stack;
		break;
	}
	return 1;
}

/* kp_dec_mem for a block of the given KP_BLK_FORM_*, a constant. */
static KP_ALWAYS_INLINE size_t dec_mem(struct kp_dec *d,
				       struct kp_mem_rec *out, size_t max,
				       int form)
{
	const uint8_t *p = d->blk, *end = d->blk_end;
	uint64_t ts = d->last_ts, ptr = d->last_ptr;
	uint32_t tid = d->cur_tid;
	size_t n = 0;

	/* the bulk of a block: no bounds checks while an event surely fits */
	while (n < max && end - p >= BLK_EVENT_MAX) {
		/* Ask for out's lines some records ahead, for writing: the
		 * analyzer's read-ahead thread decodes into chunks the
		 * analysis last read on the other core, so each line's first
		 * store waited for it to come over, one at a time (68 % of
		 * this loop's samples on two stores); alloc_bench's traces
		 * were analysed at 26.4 / 37.7 M events/s (stacks on / off)
		 * with this against 21.0 / 30.6 without (medians of 11
		 * alternating runs, the read-ahead then spinning before its
		 * sleeps; 4 or 16 ahead did as well as 8). */
		if (KP_LIKELY(n + 8 < max))
			__builtin_prefetch(&out[n + 8], 1);
		const uint8_t *q = blk_event(p, end, &ts, &ptr, &out[n], 1,
					     form);
		if (!q)
			goto out; /* kp_dec_next() reports it */
		out[n++].tid = tid;
		p = q;
	}
	while (n < max && p < end) {
		const uint8_t *q = blk_event(p, end, &ts, &ptr, &out[n], 0,
					     form);
		if (!q)
			break;
		out[n++].tid = tid;
		p = q;
	}
out:
	d->blk = p;
	d->last_ts = ts;
	d->last_ptr = ptr;
	return n;
}

size_t kp_dec_mem(struct kp_dec *d, struct kp_mem_rec *out, size_t max)
{
	switch (d->blk_form) {
	case KP_BLK_FORM_NS:
		return dec_mem(d, out, max, KP_BLK_FORM_NS);
	case KP_BLK_FORM_2:
		return dec_mem(d, out, max, KP_BLK_FORM_2);
	default:
		return dec_mem(d, out, max, KP_BLK_FORM_3);
	}
}

/* [17, tid, bin], format 2's [15, tid, bin] or [19, tid, bin] without
 * stacks (form): open the block (its events come from kp_dec_next). */
static int dec_block(struct kp_dec *d, uint32_t rem, int form)
{
	const uint8_t *body;
	uint32_t n;

	if (rem < 2)
		return KP_ECORRUPT;
	TRY(get_u32(&d->c, &d->cur_tid));
	TRY(kp_mpk_bin(&d->c, &body, &n));
	d->blk = body;
	d->blk_end = body + n;
	d->blk_form = (uint8_t)form;
	return 2;
}

/*
 * Decode the elements after the type. rem is how many there are; returns
 * how many were consumed (the caller skips the rest) or <0. need is the
 * number of elements without a default.
 */
static int dec_body(struct kp_dec *d, struct kp_rec *r, uint32_t rem)
{
	struct kp_mpk *c = &d->c;
	uint64_t u;
	uint32_t need;

	switch (r->type) {
	case KP_REC_ALLOC:
		need = 4;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_dts(d, &r->ts));
		TRY(get_dptr(d, &r->u.alloc.ptr));
		TRY(kp_mpk_u64(c, &r->u.alloc.size));
		TRY(get_u32(c, &r->u.alloc.stack));
		r->tid = d->cur_tid;
		if (rem > 4) {
			TRY(kp_mpk_u64(c, &u));
			if (u > UINT8_MAX)
				return KP_ECORRUPT;
			r->kind = (uint8_t)u;
			need++;
		}
		if (rem > 5) {
			TRY(kp_mpk_u64(c, &r->u.alloc.align));
			need++;
		}
		return (int)need;
	case KP_REC_FREE:
		need = 2;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_dts(d, &r->ts));
		TRY(get_dptr(d, &r->u.free.ptr));
		r->tid = d->cur_tid;
		return (int)need;
	case KP_REC_REALLOC:
		need = 6;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_dts(d, &r->ts));
		TRY(get_dptr(d, &r->u.realloc.old_ptr));
		TRY(get_dptr(d, &r->u.realloc.new_ptr));
		TRY(kp_mpk_u64(c, &r->u.realloc.size));
		TRY(get_u32(c, &r->u.realloc.stack));
		TRY(kp_mpk_u64(c, &r->u.realloc.dur));
		r->tid = d->cur_tid;
		return (int)need;
	case KP_REC_FRAME:
		need = 2;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(kp_mpk_u64(c, &r->u.frame.base_ts));
		TRY(kp_mpk_u64(c, &r->u.frame.seq));
		/* A FRAME starts the delta state over, wherever it sits. */
		d->last_ts = r->u.frame.base_ts;
		d->last_ptr = 0;
		d->cur_tid = 0;
		r->ts = d->last_ts;
		return (int)need;
	case KP_REC_THREAD:
		need = 1;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_u32(c, &d->cur_tid));
		r->tid = d->cur_tid;
		r->ts = d->last_ts;
		return (int)need;
	case KP_REC_STACK:
		need = 2;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_stack(d, r));
		r->ts = d->last_ts;
		return (int)need;
	case KP_REC_MODULE:
		need = 6;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_dts(d, &r->ts));
		TRY(kp_mpk_u64(c, &r->u.module.bias));
		TRY(kp_mpk_u64(c, &r->u.module.lo));
		TRY(kp_mpk_u64(c, &r->u.module.hi));
		TRY(get_str(c, &r->u.module.path, &r->u.module.path_len));
		TRY(get_bin(c, &r->u.module.build_id,
			    &r->u.module.build_id_len));
		return (int)need;
	case KP_REC_UNMODULE:
		need = 3;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_dts(d, &r->ts));
		TRY(kp_mpk_u64(c, &r->u.module.bias));
		TRY(get_str(c, &r->u.module.path, &r->u.module.path_len));
		return (int)need;
	case KP_REC_THREAD_START:
	case KP_REC_THREAD_NAME:
		need = 3;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_dts(d, &r->ts));
		TRY(get_u32(c, &r->tid));
		TRY(get_str(c, &r->u.thread.name, &r->u.thread.name_len));
		return (int)need;
	case KP_REC_THREAD_END:
		need = 2;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_dts(d, &r->ts));
		TRY(get_u32(c, &r->tid));
		return (int)need;
	case KP_REC_LOST:
		need = 2;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_u32(c, &r->u.lost.what));
		TRY(kp_mpk_u64(c, &r->u.lost.count));
		r->ts = d->last_ts;
		return (int)need;
	case KP_REC_END:
		need = 3;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_dts(d, &r->ts));
		TRY(kp_mpk_u64(c, &u));
		if (u > UINT8_MAX)
			return KP_ECORRUPT;
		r->kind = (uint8_t)u;
		TRY(kp_mpk_i64(c, &r->u.end.status));
		return (int)need;
	case KP_REC_FORK:
		need = 2;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_dts(d, &r->ts));
		TRY(kp_mpk_i64(c, &r->u.end.status));
		return (int)need;
	case KP_REC_EXEC:
		need = 2;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_dts(d, &r->ts));
		TRY(get_str(c, &r->u.exec.path, &r->u.exec.path_len));
		return (int)need;
	case KP_REC_QUERY_TEXT:
		need = 2;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(get_u32(c, &r->u.qtext.id));
		TRY(get_str(c, &r->u.qtext.text, &r->u.qtext.len));
		if (!r->u.qtext.text)
			r->u.qtext.text = "";
		r->ts = d->last_ts;
		return (int)need;
	case KP_REC_JIT_CODE:
		need = 3;
		if (rem < need)
			return KP_ECORRUPT;
		TRY(kp_mpk_u64(c, &r->u.jit.lo));
		TRY(kp_mpk_u64(c, &r->u.jit.size));
		TRY(get_str(c, &r->u.jit.name, &r->u.jit.name_len));
		if (!r->u.jit.name)
			r->u.jit.name = "";
		r->ts = d->last_ts;
		return (int)need;
	default:
		if (kp_rec_is_ext(r->type))
			return dec_ext(d, r, rem);
		return 0; /* unknown: the caller skips every element */
	}
}

static inline int known_type(uint64_t t)
{
	return (t >= KP_REC_FRAME && t <= KP_REC_THREAD_NAME) ||
	       kp_rec_is_ext(t);
}

/*
 * The fast path for the common records, ALLOC with its five elements and
 * FREE with its three, when the buffer holds the longest encoding they can
 * have: no bounds checks and no type dispatch. It decodes into locals and
 * commits only a record that is well formed and plain; anything else (an
 * error included) is left to the general path, which then does exactly
 * what it always does.
 */
#define FAST_ALLOC_MAX (2 + 4 * 9)

/* An integer with 9 bytes readable at p: the next p, or NULL if p holds
 * no integer. *neg is set for a negative value. */
static KP_ALWAYS_INLINE const uint8_t *fast_int(const uint8_t *p,
						uint64_t *v, int *neg)
{
	uint8_t b = *p;

	if (KP_LIKELY(b < 0x80)) {
		*v = b;
		*neg = 0;
		return p + 1;
	}
	if (b >= 0xe0) {
		*v = (uint64_t)(int64_t)(int8_t)b;
		*neg = 1;
		return p + 1;
	}
	unsigned k = (unsigned)b - 0xcc; /* uint8..64, int8..64 */
	if (k >= 8)
		return NULL;
	unsigned w = 1u << (k & 3);
	unsigned sh = 64 - 8 * w;
	uint64_t raw = kp_mpk_be64(p + 1);
	if (k < 4) {
		*v = raw >> sh;
		*neg = 0;
	} else {
		int64_t sv = (int64_t)raw >> sh;
		*v = (uint64_t)sv;
		*neg = sv < 0;
	}
	return p + 1 + w;
}

/*
 * The fast path sets every field its record type has instead of clearing
 * the whole struct kp_rec (whose union is sized for extension records).
 */
static KP_ALWAYS_INLINE void clear_head(struct kp_rec *r)
{
	r->kind = 0;
	r->pad = 0;
}

/* @return 1 with *r decoded, or 0: take the general path. */
static KP_ALWAYS_INLINE int dec_fast(struct kp_dec *d, struct kp_rec *r)
{
	const uint8_t *p = d->c.p;
	uint64_t dts, dptr, size, stack;
	int neg;

	if (KP_UNLIKELY(d->c.end - p < FAST_ALLOC_MAX))
		return 0;
	if (p[0] == 0x95 && p[1] == KP_REC_ALLOC) {
		p += 2;
		if (!(p = fast_int(p, &dts, &neg)) ||
		    !(p = fast_int(p, &dptr, &neg)) ||
		    !(p = fast_int(p, &size, &neg)) || neg ||
		    !(p = fast_int(p, &stack, &neg)) || neg ||
		    stack > UINT32_MAX)
			return 0;
		clear_head(r);
		r->type = KP_REC_ALLOC;
		r->u.alloc.align = 0;
		d->last_ts += dts;
		d->last_ptr += dptr;
		r->ts = d->last_ts;
		r->u.alloc.ptr = d->last_ptr;
		r->u.alloc.size = size;
		r->u.alloc.stack = (uint32_t)stack;
		r->tid = d->cur_tid;
		d->c.p = p;
		return 1;
	}
	if (p[0] == 0x93 && p[1] == KP_REC_FREE) {
		p += 2;
		if (!(p = fast_int(p, &dts, &neg)) ||
		    !(p = fast_int(p, &dptr, &neg)))
			return 0;
		clear_head(r);
		r->type = KP_REC_FREE;
		d->last_ts += dts;
		d->last_ptr += dptr;
		r->ts = d->last_ts;
		r->u.free.ptr = d->last_ptr;
		r->tid = d->cur_tid;
		d->c.p = p;
		return 1;
	}
	return 0;
}

/* Everything but the fast path, out of line so that stays a leaf. */
static __attribute__((noinline)) int dec_next_slow(struct kp_dec *d,
						   struct kp_rec *r)
{
	for (;;) {
		struct kp_mpk *c = &d->c;
		uint32_t n;
		uint64_t type;

		if (c->p == c->end)
			return 0;
		TRY(kp_mpk_array(c, &n));
		if (n == 0)
			return KP_ECORRUPT; /* a record has at least a type */
		TRY(kp_mpk_u64(c, &type));
		n--;
		if (!known_type(type)) {
			TRY(kp_mpk_skip(c, n));
			continue;
		}
		if (type == KP_REC_EVENTS || type == KP_REC_EVENTS2 ||
		    type == KP_REC_EVENTS_NS) {
			int used = dec_block(d, n,
					     type == KP_REC_EVENTS2 ?
						     KP_BLK_FORM_2 :
					     type == KP_REC_EVENTS_NS ?
						     KP_BLK_FORM_NS :
						     KP_BLK_FORM_3);
			if (used < 0)
				return used;
			if ((uint32_t)used < n)
				TRY(kp_mpk_skip(c, n - (uint32_t)used));
			if (d->blk < d->blk_end)
				return kp_dec_next(d, r);
			continue; /* an empty block */
		}
		memset(r, 0, sizeof(*r));
		r->type = (uint8_t)type;
		int used = dec_body(d, r, n);
		if (used < 0)
			return used;
		if ((uint32_t)used < n)
			TRY(kp_mpk_skip(c, n - (uint32_t)used));
		return 1;
	}
}

int kp_dec_next(struct kp_dec *d, struct kp_rec *r)
{
	if (KP_LIKELY(d->blk < d->blk_end)) {
		int ret = dec_block_event(d, r);
		if (KP_UNLIKELY(ret < 0))
			d->blk = d->blk_end = NULL; /* the block is lost */
		return ret;
	}
	if (KP_LIKELY(dec_fast(d, r)))
		return 1;
	return dec_next_slow(d, r);
}

const uint8_t *kp_blk_get(const uint8_t *p, const uint8_t *end,
			  uint64_t *last_ts, uint64_t *last_ptr,
			  struct kp_mem_rec *m, int no_stacks)
{
	if (p >= end)
		return NULL;
	return no_stacks ? blk_event(p, end, last_ts, last_ptr, m, 0,
				     KP_BLK_FORM_NS) :
			   blk_event(p, end, last_ts, last_ptr, m, 0,
				     KP_BLK_FORM_3);
}
