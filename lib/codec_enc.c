/* SPDX-License-Identifier: MIT */
/*
 * Record encoder: struct kp_rec -> msgpack, exactly the layouts of
 * record.h, delta-coding ts and pointers against the frame's state.
 * Runs on the preload's writer thread, inside a malloc interposer: it must
 * not allocate (msgpack_sbuffer would realloc through libc) and must not do
 * I/O; bytes go only to the packer's callback, which the caller owns.
 *
 * msgpack_pack_int64/uint64 choose the smallest format for each value, so
 * the usual event (small dts, size, stack id) packs into a few bytes.
 */
#include <errno.h>

#include <string.h>

#include "codec.h"
#include "err.h"

void kp_enc_init(struct kp_enc *e, void *data, msgpack_packer_write write)
{
	msgpack_packer_init(&e->pk, data, write);
	e->last_ts = 0;
	e->last_ptr = 0;
	e->cur_tid = 0;
	e->no_stacks = 0;
}

static int check_bytes(const void *p, uint32_t n, uint32_t max)
{
	if (n > max)
		return KP_ELIMIT;
	if (n && !p)
		return -EINVAL;
	return 0;
}

int kp_enc_check(const struct kp_rec *r)
{
	switch (r->type) {
	case KP_REC_THREAD:
	case KP_REC_ALLOC:
	case KP_REC_FREE:
	case KP_REC_REALLOC:
	case KP_REC_THREAD_END:
	case KP_REC_LOST:
	case KP_REC_END:
	case KP_REC_FORK:
		return 0;
	case KP_REC_STACK:
		if (r->u.stack.depth > KP_MAX_STACK_DEPTH)
			return KP_ELIMIT;
		if (r->u.stack.depth && !r->u.stack.pcs)
			return -EINVAL;
		return 0;
	case KP_REC_MODULE: {
		int ret = check_bytes(r->u.module.path, r->u.module.path_len,
				      KP_MAX_STR_LEN);
		if (ret == 0)
			ret = check_bytes(r->u.module.build_id,
					  r->u.module.build_id_len,
					  KP_MAX_STR_LEN);
		return ret;
	}
	case KP_REC_UNMODULE:
		return check_bytes(r->u.module.path, r->u.module.path_len,
				   KP_MAX_STR_LEN);
	case KP_REC_THREAD_START:
	case KP_REC_THREAD_NAME:
		return check_bytes(r->u.thread.name, r->u.thread.name_len,
				   KP_MAX_STR_LEN);
	case KP_REC_EXEC:
		return check_bytes(r->u.exec.path, r->u.exec.path_len,
				   KP_MAX_STR_LEN);
	case KP_REC_QUERY_TEXT:
		return check_bytes(r->u.qtext.text, r->u.qtext.len,
				   KP_MAX_STR_LEN);
	case KP_REC_JIT_CODE:
		return check_bytes(r->u.jit.name, r->u.jit.name_len,
				   KP_MAX_STR_LEN);
	default:
		/*
		 * FRAME belongs to the writer; the reserved types have no
		 * layout yet, so there is nothing to encode them as.
		 */
		if (!kp_rec_is_ext(r->type))
			return -EINVAL;
		return check_bytes(r->u.ext.str, r->u.ext.str_len,
				   KP_MAX_STR_LEN);
	}
}

/* Each helper returns the packer's 0/-1; chains stop at the first -1. */
static inline int pk_u(struct kp_enc *e, uint64_t v)
{
	return msgpack_pack_uint64(&e->pk, v);
}

static inline int pk_i(struct kp_enc *e, int64_t v)
{
	return msgpack_pack_int64(&e->pk, v);
}

static inline int pk_hdr(struct kp_enc *e, unsigned n, unsigned type)
{
	if (msgpack_pack_array(&e->pk, n) < 0)
		return -1;
	return msgpack_pack_uint8(&e->pk, (uint8_t)type);
}

static inline int pk_dts(struct kp_enc *e, uint64_t ts)
{
	int64_t d = (int64_t)(ts - e->last_ts); /* wraps, by definition */
	e->last_ts = ts;
	return pk_i(e, d);
}

static inline int pk_dptr(struct kp_enc *e, uint64_t ptr)
{
	int64_t d = (int64_t)(ptr - e->last_ptr);
	e->last_ptr = ptr;
	return pk_i(e, d);
}

static int pk_str(struct kp_enc *e, const char *s, uint32_t n)
{
	if (msgpack_pack_str(&e->pk, n) < 0)
		return -1;
	return n ? msgpack_pack_str_body(&e->pk, s, n) : 0;
}

static int pk_bin(struct kp_enc *e, const uint8_t *s, uint32_t n)
{
	if (msgpack_pack_bin(&e->pk, n) < 0)
		return -1;
	return n ? msgpack_pack_bin_body(&e->pk, s, n) : 0;
}

int kp_enc_frame(struct kp_enc *e, uint64_t base_ts, uint64_t seq)
{
	e->last_ts = base_ts;
	e->last_ptr = 0;
	e->cur_tid = 0;
	if (pk_hdr(e, 3, KP_REC_FRAME) < 0 || pk_u(e, base_ts) < 0 ||
	    pk_u(e, seq) < 0)
		return -1;
	return 0;
}

static int enc_thread(struct kp_enc *e, uint32_t tid)
{
	e->cur_tid = tid;
	if (pk_hdr(e, 2, KP_REC_THREAD) < 0 || pk_u(e, tid) < 0)
		return -1;
	return 0;
}

/*
 * The event fast path: ALLOC, FREE and REALLOC are nearly every record of
 * a trace, so they go into EVENTS blocks (record.h, "Event blocks"),
 * written straight into the caller's buffer.
 */
size_t kp_enc_block_event(struct kp_enc *e, const struct kp_rec *r,
			  uint8_t *out)
{
	uint8_t *p;
	switch (r->type) {
	case KP_REC_ALLOC:
		p = kp_enc_mem(e, out, KP_REC_ALLOC, r->kind, r->ts,
			       r->u.alloc.ptr, r->u.alloc.size,
			       r->u.alloc.align, 0, r->u.alloc.stack);
		break;
	case KP_REC_FREE:
		p = kp_enc_mem(e, out, KP_REC_FREE, r->kind, r->ts,
			       r->u.free.ptr, 0, 0, 0, 0);
		break;
	default: /* KP_REC_REALLOC */
		p = kp_enc_mem(e, out, KP_REC_REALLOC, r->kind, r->ts,
			       r->u.realloc.old_ptr, r->u.realloc.new_ptr,
			       r->u.realloc.size, r->u.realloc.dur,
			       r->u.realloc.stack);
		break;
	}
	return (size_t)(p - out);
}

size_t kp_enc_block_open(struct kp_enc *e, uint32_t tid, uint8_t *out)
{
	e->cur_tid = tid;
	out[0] = 0x93; /* fixarray 3 */
	out[1] = e->no_stacks ? KP_REC_EVENTS_NS : KP_REC_EVENTS;
	out[2] = 0xce; /* uint32 */
	out[3] = (uint8_t)(tid >> 24);
	out[4] = (uint8_t)(tid >> 16);
	out[5] = (uint8_t)(tid >> 8);
	out[6] = (uint8_t)tid;
	out[7] = 0xc6; /* bin32, length patched by kp_enc_block_close */
	memset(out + 8, 0, 4);
	return KP_ENC_BLOCK_HDR;
}

void kp_enc_block_close(uint8_t *hdr, size_t body_len)
{
	hdr[8] = (uint8_t)(body_len >> 24);
	hdr[9] = (uint8_t)(body_len >> 16);
	hdr[10] = (uint8_t)(body_len >> 8);
	hdr[11] = (uint8_t)body_len;
}

/*
 * Extension records straight into the caller's buffer, with the encodings
 * msgpack-c's packer would choose (the smallest format for each value), so
 * the bytes are those of enc_ext below: the packer's callback per value
 * cost the writer thread more than the rest of an I/O event.
 */
static inline uint8_t *mp_be(uint8_t *p, uint8_t tag, uint64_t v, int n)
{
	*p++ = tag;
	/* one byte-swapped store (n is a constant where this is inlined;
	 * little-endian host, as the reader's kp_mpk_be* assume) */
	switch (n) {
	case 1:
		*p = (uint8_t)v;
		break;
	case 2: {
		uint16_t x = __builtin_bswap16((uint16_t)v);
		memcpy(p, &x, 2);
		break;
	}
	case 4: {
		uint32_t x = __builtin_bswap32((uint32_t)v);
		memcpy(p, &x, 4);
		break;
	}
	default: {
		uint64_t x = __builtin_bswap64(v);
		memcpy(p, &x, 8);
		break;
	}
	}
	return p + n;
}

static inline uint8_t *mp_uint(uint8_t *p, uint64_t v)
{
	if (v < 128) {
		*p = (uint8_t)v;
		return p + 1;
	}
	if (v < 256)
		return mp_be(p, 0xcc, v, 1);
	if (v < 65536)
		return mp_be(p, 0xcd, v, 2);
	if (v < 4294967296ull)
		return mp_be(p, 0xce, v, 4);
	return mp_be(p, 0xcf, v, 8);
}

static inline uint8_t *mp_int(uint8_t *p, int64_t v)
{
	if (v >= 0)
		return mp_uint(p, (uint64_t)v);
	if (v >= -32) {
		*p = (uint8_t)v; /* negative fixint */
		return p + 1;
	}
	if (v >= -128)
		return mp_be(p, 0xd0, (uint64_t)v, 1);
	if (v >= -32768)
		return mp_be(p, 0xd1, (uint64_t)v, 2);
	if (v >= -2147483648ll)
		return mp_be(p, 0xd2, (uint64_t)v, 4);
	return mp_be(p, 0xd3, (uint64_t)v, 8);
}

size_t kp_enc_ext_direct(struct kp_enc *e, const struct kp_rec *r,
			 uint8_t *out)
{
	struct kp_ext_layout l = kp_ext_layout(r->type);
	uint8_t *p = out;

	if (r->tid != e->cur_tid) {
		e->cur_tid = r->tid;
		*p++ = 0x92; /* fixarray 2 */
		*p++ = KP_REC_THREAD;
		p = mp_uint(p, r->tid);
	}
	unsigned n = 5u + l.nv;
	if (n < 16)
		*p++ = (uint8_t)(0x90 | n); /* fixarray */
	else
		p = mp_be(p, 0xdc, n, 2); /* array 16 */
	*p++ = r->type;
	p = mp_int(p, (int64_t)(r->ts - e->last_ts));
	e->last_ts = r->ts;
	p = mp_uint(p, r->kind);
	p = mp_uint(p, r->u.ext.stack);
	if (l.has_str) {
		uint32_t len = r->u.ext.str ? r->u.ext.str_len : 0;
		if (len < 32)
			*p++ = (uint8_t)(0xa0 | len);
		else if (len < 256)
			p = mp_be(p, 0xd9, len, 1);
		else if (len < 65536)
			p = mp_be(p, 0xda, len, 2);
		else
			p = mp_be(p, 0xdb, len, 4);
		if (len)
			memcpy(p, r->u.ext.str, len);
		p += len;
	} else {
		*p++ = 0xc0; /* nil */
	}
	for (unsigned i = 0; i < l.nv; i++)
		p = mp_int(p, r->u.ext.v[i]);
	return (size_t)(p - out);
}

/* [type, dts, kind, stack, str|nil, v0 .. v(nv-1)] (record.h). */
static int enc_ext(struct kp_enc *e, const struct kp_rec *r)
{
	struct kp_ext_layout l = kp_ext_layout(r->type);

	if (pk_hdr(e, 5u + l.nv, r->type) < 0 || pk_dts(e, r->ts) < 0 ||
	    pk_u(e, r->kind) < 0 || pk_u(e, r->u.ext.stack) < 0)
		return -1;
	if (l.has_str && r->u.ext.str) {
		if (pk_str(e, r->u.ext.str, r->u.ext.str_len) < 0)
			return -1;
	} else if (l.has_str) {
		if (pk_str(e, "", 0) < 0)
			return -1;
	} else if (msgpack_pack_nil(&e->pk) < 0) {
		return -1;
	}
	for (unsigned i = 0; i < l.nv; i++)
		if (pk_i(e, r->u.ext.v[i]) < 0)
			return -1;
	return 0;
}

int kp_enc_rec(struct kp_enc *e, const struct kp_rec *r)
{
	if (kp_rec_is_event(r->type) && r->tid != e->cur_tid &&
	    enc_thread(e, r->tid) < 0)
		return -1;

	switch (r->type) {
	case KP_REC_THREAD:
		if (r->tid != e->cur_tid)
			return enc_thread(e, r->tid);
		return 0;
	case KP_REC_ALLOC: {
		/* Trailing fields equal to their defaults are left out. */
		unsigned n = r->u.alloc.align ? 7 : r->kind ? 6 : 5;
		if (pk_hdr(e, n, r->type) < 0 || pk_dts(e, r->ts) < 0 ||
		    pk_dptr(e, r->u.alloc.ptr) < 0 ||
		    pk_u(e, r->u.alloc.size) < 0 ||
		    pk_u(e, r->u.alloc.stack) < 0)
			return -1;
		if (n > 5 && pk_u(e, r->kind) < 0)
			return -1;
		if (n > 6 && pk_u(e, r->u.alloc.align) < 0)
			return -1;
		return 0;
	}
	case KP_REC_FREE:
		if (pk_hdr(e, 3, r->type) < 0 || pk_dts(e, r->ts) < 0 ||
		    pk_dptr(e, r->u.free.ptr) < 0)
			return -1;
		return 0;
	case KP_REC_REALLOC: {
		if (pk_hdr(e, 7, r->type) < 0 || pk_dts(e, r->ts) < 0 ||
		    pk_dptr(e, r->u.realloc.old_ptr) < 0)
			return -1;
		/* dptr_new is relative to old; new becomes last_ptr. */
		if (pk_dptr(e, r->u.realloc.new_ptr) < 0 ||
		    pk_u(e, r->u.realloc.size) < 0 ||
		    pk_u(e, r->u.realloc.stack) < 0 ||
		    pk_u(e, r->u.realloc.dur) < 0)
			return -1;
		return 0;
	}
	case KP_REC_STACK: {
		uint32_t depth = r->u.stack.depth;
		if (pk_hdr(e, 3, r->type) < 0 || pk_u(e, r->u.stack.id) < 0 ||
		    msgpack_pack_array(&e->pk, depth) < 0)
			return -1;
		for (uint32_t i = 0; i < depth; i++)
			if (pk_u(e, r->u.stack.pcs[i]) < 0)
				return -1;
		return 0;
	}
	case KP_REC_MODULE:
		if (pk_hdr(e, 7, r->type) < 0 || pk_dts(e, r->ts) < 0 ||
		    pk_u(e, r->u.module.bias) < 0 ||
		    pk_u(e, r->u.module.lo) < 0 ||
		    pk_u(e, r->u.module.hi) < 0 ||
		    pk_str(e, r->u.module.path, r->u.module.path_len) < 0 ||
		    pk_bin(e, r->u.module.build_id,
			   r->u.module.build_id_len) < 0)
			return -1;
		return 0;
	case KP_REC_UNMODULE:
		if (pk_hdr(e, 4, r->type) < 0 || pk_dts(e, r->ts) < 0 ||
		    pk_u(e, r->u.module.bias) < 0 ||
		    pk_str(e, r->u.module.path, r->u.module.path_len) < 0)
			return -1;
		return 0;
	case KP_REC_THREAD_START:
	case KP_REC_THREAD_NAME:
		if (pk_hdr(e, 4, r->type) < 0 || pk_dts(e, r->ts) < 0 ||
		    pk_u(e, r->tid) < 0 ||
		    pk_str(e, r->u.thread.name, r->u.thread.name_len) < 0)
			return -1;
		return 0;
	case KP_REC_THREAD_END:
		if (pk_hdr(e, 3, r->type) < 0 || pk_dts(e, r->ts) < 0 ||
		    pk_u(e, r->tid) < 0)
			return -1;
		return 0;
	case KP_REC_LOST:
		if (pk_hdr(e, 3, r->type) < 0 || pk_u(e, r->u.lost.what) < 0 ||
		    pk_u(e, r->u.lost.count) < 0)
			return -1;
		return 0;
	case KP_REC_END:
		if (pk_hdr(e, 4, r->type) < 0 || pk_dts(e, r->ts) < 0 ||
		    pk_u(e, r->kind) < 0 || pk_i(e, r->u.end.status) < 0)
			return -1;
		return 0;
	case KP_REC_FORK:
		if (pk_hdr(e, 3, r->type) < 0 || pk_dts(e, r->ts) < 0 ||
		    pk_i(e, r->u.end.status) < 0)
			return -1;
		return 0;
	case KP_REC_EXEC:
		if (pk_hdr(e, 3, r->type) < 0 || pk_dts(e, r->ts) < 0 ||
		    pk_str(e, r->u.exec.path, r->u.exec.path_len) < 0)
			return -1;
		return 0;
	case KP_REC_QUERY_TEXT:
		if (pk_hdr(e, 3, r->type) < 0 || pk_u(e, r->u.qtext.id) < 0 ||
		    pk_str(e, r->u.qtext.text, r->u.qtext.len) < 0)
			return -1;
		return 0;
	case KP_REC_JIT_CODE:
		if (pk_hdr(e, 4, r->type) < 0 || pk_u(e, r->u.jit.lo) < 0 ||
		    pk_u(e, r->u.jit.size) < 0 ||
		    pk_str(e, r->u.jit.name, r->u.jit.name_len) < 0)
			return -1;
		return 0;
	default:
		if (kp_rec_is_ext(r->type))
			return enc_ext(e, r);
		return -1; /* kp_enc_check() refuses these */
	}
}
