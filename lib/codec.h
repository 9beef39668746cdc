/* SPDX-License-Identifier: MIT */
/*
 * Record codec: struct kp_rec <-> the msgpack records of record.h, with the
 * per-frame delta state. The only code besides record.h that knows the
 * wire layout. Internal to lib/ (kpz_write.c and kpz_read.c use it; tests
 * may too). Neither side allocates: the encoder writes through a msgpack
 * packer whose callback the caller owns, the decoder reads a buffer the
 * caller owns.
 */
#ifndef KP_CODEC_H
#define KP_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "compat.h"
#include "evblock.h"
#include "mpk.h"
#include "record.h"

/*
 * Largest encoding of one record, THREAD prefix included, within the limits
 * of record.h (MODULE with a max path and a max build id is the largest).
 * The writer keeps this much room free after a frame's fill mark.
 */
#define KP_ENC_MAX_REC (2 * KP_MAX_STR_LEN + 256)

/* Whether the type is an extension record with a layout (record.h). */
static inline int kp_rec_is_ext(unsigned type)
{
	return type >= KP_REC_EXT_MIN && type <= KP_REC_TYPE_MAX &&
	       kp_ext_layout(type).nv > 0;
}

/* Whether the record type carries a dts field (so rec->ts is its own). */
static inline int kp_rec_has_ts(unsigned type)
{
	if (type >= KP_REC_EXT_MIN)
		return kp_rec_is_ext(type);
	switch (type) {
	case KP_REC_ALLOC:
	case KP_REC_FREE:
	case KP_REC_REALLOC:
	case KP_REC_MODULE:
	case KP_REC_UNMODULE:
	case KP_REC_THREAD_START:
	case KP_REC_THREAD_NAME:
	case KP_REC_THREAD_END:
	case KP_REC_END:
	case KP_REC_FORK:
	case KP_REC_EXEC:
		return 1;
	default:
		return 0;
	}
}

/*
 * Whether a record type is a per-thread event: it carries no tid, it
 * belongs to cur_tid, and the encoder emits a THREAD record before it when
 * rec->tid is not cur_tid.
 */
static inline int kp_rec_is_event(unsigned type)
{
	return type == KP_REC_ALLOC || type == KP_REC_FREE ||
	       type == KP_REC_REALLOC || kp_rec_is_ext(type);
}

/* ---- encoder ------------------------------------------------------------ */

struct kp_enc {
	msgpack_packer pk; /* writes into the caller's buffer */
	uint64_t last_ts;  /* delta state of record.h, reset per frame */
	uint64_t last_ptr;
	uint32_t cur_tid;
	uint8_t no_stacks; /* write EVENTS_NS blocks: no stack fields */
};

void kp_enc_init(struct kp_enc *e, void *data, msgpack_packer_write write);

/*
 * EVENTS blocks (record.h): kp_enc_block_open() writes the header of a
 * block for thread tid (KP_ENC_BLOCK_HDR bytes, its length left open) and
 * makes tid the current thread; kp_enc_block_event() appends one ALLOC,
 * FREE or REALLOC of that thread (at most KP_ENC_MAX_EVENT bytes) and
 * returns its size; kp_enc_block_close() patches the header once the body
 * is body_len bytes. A block holds at least one event.
 */
#define KP_ENC_BLOCK_HDR 12
#define KP_ENC_MAX_EVENT 96
/*
 * An extension record (checked with kp_enc_check first), and the THREAD
 * record before it when its tid is not the current one, written straight
 * into out (room for KP_ENC_MAX_REC bytes): the bytes kp_enc_rec would
 * produce. @return the number of bytes written.
 */
size_t kp_enc_ext_direct(struct kp_enc *e, const struct kp_rec *r,
			 uint8_t *out);
size_t kp_enc_block_open(struct kp_enc *e, uint32_t tid, uint8_t *out);
size_t kp_enc_block_event(struct kp_enc *e, const struct kp_rec *r,
			  uint8_t *out);
void kp_enc_block_close(uint8_t *hdr, size_t body_len);

/* ---- the event fast path ------------------------------------------------ */

/*
 * One ALLOC, FREE or REALLOC of the open block's thread (kp_blk_put(),
 * evblock.h, with e's delta state), written at out, which has room for
 * KP_ENC_MAX_EVENT bytes; stack is left out when e->no_stacks (the caller
 * sees that it is 0). kp_enc_block_event() on plain values, inline for
 * the preload writer's loop over a ring.
 * @return the end of the bytes written.
 */
static KP_ALWAYS_INLINE uint8_t *kp_enc_mem(struct kp_enc *e, uint8_t *out,
					    unsigned type, unsigned kind,
					    uint64_t ts, uint64_t a, uint64_t b,
					    uint64_t c, uint64_t d,
					    uint32_t stack)
{
	return kp_blk_put(out, &e->last_ts, &e->last_ptr, e->no_stacks, type,
			  kind, ts, a, b, c, d, stack);
}

/*
 * Check a record against the limits before anything is encoded, so a
 * failing record leaves no partial bytes behind.
 * @return 0, KP_ELIMIT (string, bin or stack too long), -EINVAL (a type
 *         the encoder does not know, a FRAME, NULL data with a length).
 */
int kp_enc_check(const struct kp_rec *r);

/* Emit a FRAME record and reset the delta state. @return 0 or <0. */
int kp_enc_frame(struct kp_enc *e, uint64_t base_ts, uint64_t seq);

/*
 * Emit one record (checked with kp_enc_check first), preceded by a THREAD
 * record if it is an event of a thread other than cur_tid. A THREAD record
 * passed in is emitted only if it changes cur_tid.
 * @return 0, or -1 if the packer's callback failed.
 */
int kp_enc_rec(struct kp_enc *e, const struct kp_rec *r);

/* ---- decoder ------------------------------------------------------------ */

/* The kinds of EVENTS block (record.h): EVENTS, EVENTS2, EVENTS_NS. */
enum { KP_BLK_FORM_3, KP_BLK_FORM_2, KP_BLK_FORM_NS };

struct kp_dec {
	struct kp_mpk c;   /* over the decompressed frame */
	const uint8_t *blk, *blk_end; /* the rest of an EVENTS block */
	uint8_t blk_form;  /* KP_BLK_FORM_*: which kind of block */
	uint64_t last_ts;  /* delta state, as in the encoder */
	uint64_t last_ptr;
	uint32_t cur_tid;
	uint64_t *pcs;     /* KP_MAX_STACK_DEPTH slots for STACK records */
};

/* Start decoding one frame's content; pcs must outlive the records. */
void kp_dec_init(struct kp_dec *d, const void *buf, size_t n, uint64_t *pcs);

/*
 * Decode the next record into *r, skipping records of unknown types and
 * elements past the known ones. ts and tid come out absolute; a record type
 * without a ts of its own gets the current last_ts, a FRAME its base_ts.
 * FRAME and THREAD records are returned too (they update the state first).
 * @return 1, 0 at the end of the buffer, KP_ECORRUPT or KP_ELIMIT.
 */
int kp_dec_next(struct kp_dec *d, struct kp_rec *r);

/*
 * The bulk path: while the open EVENTS block has events left, decode up to
 * max of them into out, exactly the records kp_dec_next() would return one
 * by one. Stops before an event that does not decode (kp_dec_next() then
 * returns the error). @return how many; 0 when no block is open or it is
 * done.
 */
size_t kp_dec_mem(struct kp_dec *d, struct kp_mem_rec *out, size_t max);

/*
 * One event of an EVENTS (no_stacks: EVENTS_NS) block at p, p < end, with
 * the delta state in *last_ts and *last_ptr (updated), into *m (all but
 * tid): for a writer that takes encoded events apart (preload/writer.c).
 * @return the end of the event, NULL when it does not decode.
 */
const uint8_t *kp_blk_get(const uint8_t *p, const uint8_t *end,
			  uint64_t *last_ts, uint64_t *last_ptr,
			  struct kp_mem_rec *m, int no_stacks);

#endif
