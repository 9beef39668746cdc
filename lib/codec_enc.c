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

#include "codec.h"
#include "err.h"

void kp_enc_init(struct kp_enc *e, void *data, msgpack_packer_write write)
{
	msgpack_packer_init(&e->pk, data, write);
	e->last_ts = 0;
	e->last_ptr = 0;
	e->cur_tid = 0;
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
		return check_bytes(r->u.thread.name, r->u.thread.name_len,
				   KP_MAX_STR_LEN);
	case KP_REC_EXEC:
		return check_bytes(r->u.exec.path, r->u.exec.path_len,
				   KP_MAX_STR_LEN);
	default:
		/*
		 * FRAME belongs to the writer; the reserved types have no
		 * layout yet, so there is nothing to encode them as.
		 */
		return -EINVAL;
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
	default:
		return -1; /* kp_enc_check() refuses these */
	}
}
