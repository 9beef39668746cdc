/* SPDX-License-Identifier: MIT */
/*
 * The .kpz container: writing records into independent zstd frames, and
 * reading them back. lib/ does no I/O of its own: the writer emits through a
 * caller's sink, the reader pulls from a caller's source. Neither is
 * thread-safe; use one context per thread.
 */
#ifndef KP_KPZ_H
#define KP_KPZ_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "record.h"

/* Where the writer's bytes go. xWrite writes all n bytes or fails;
 * xWritev, if not NULL, all of n pieces (n <= 1024; it may change iov),
 * which spares the writer a copy of a stored frame
 * (KP_WRITER_STORE_INCOMPRESSIBLE). */
struct iovec;
struct kp_sink {
	int (*xWrite)(void *ctx, const void *buf, size_t n); /* 0 or <0 */
	void *ctx;
	int (*xWritev)(void *ctx, struct iovec *iov, int n);
};

/* Where the reader's bytes come from. xRead returns bytes read (0 = end of
 * input) or <0. It may return fewer than asked. */
struct kp_source {
	long (*xRead)(void *ctx, void *buf, size_t n);
	void *ctx;
};

/* ---- writer ------------------------------------------------------------ */

struct kp_writer;

/*
 * Create a writer. level is the zstd level (1..19; <= 0 means 3, above 19
 * is clamped); frame_cap the uncompressed size at which kp_writer_add()
 * closes a frame by itself (0 means 1 MiB; clamped to
 * KP_MAX_FRAME_CONTENT / 2). The zstd context is created with the given
 * allocator (ZSTD_customMem), so nothing touches malloc; all buffers are
 * allocated here, sized by frame_cap (about 2 x frame_cap plus zstd's
 * context). The allocator struct is copied.
 * A sink failure is sticky: once xWrite has failed, every later call
 * returns that error (the file is torn; nothing more should go to it).
 * @return 0, or KP_ENOMEM.
 */
int kp_writer_create(struct kp_writer **out, const struct kp_allocator *a,
		     const struct kp_sink *sink, int level, size_t frame_cap);
void kp_writer_free(struct kp_writer *w);

/*
 * How the records added from now on are written (flags, or'ed):
 * KP_WRITER_NO_STACKS, memory events without a stack (kprof's events of a
 * process recorded without stacks): their EVENTS_NS blocks leave the field
 * out, a byte an allocation, and an event with a stack is refused
 * (-EINVAL); KP_WRITER_RAW_LITERALS, zstd leaves the bytes it cannot
 * match without entropy coding: several times faster on such bytes (most
 * of a trace without stacks) and ~25 % larger for them;
 * KP_WRITER_STORE_INCOMPRESSIBLE, after a frame that zstd could not make
 * 1/16 smaller the next 15 are stored (zstd frames of raw blocks, which
 * any zstd decoder reads) without searching them, then one is tried
 * again; KP_WRITER_STORE_SMALL, a frame of under KP_STORE_SMALL bytes is
 * stored too (a short process's one frame, an idle one's resource
 * snapshots), so that such a process never builds zstd's workspace. 0
 * undoes all four.
 * @return 0, or -EINVAL if zstd refused the parameter.
 */
#define KP_WRITER_NO_STACKS 1u
#define KP_WRITER_RAW_LITERALS 2u
#define KP_WRITER_STORE_INCOMPRESSIBLE 4u
#define KP_WRITER_STORE_SMALL 8u
#define KP_STORE_SMALL 1024u
int kp_writer_options(struct kp_writer *w, unsigned flags);

/* Emit the fixed prefix and the header map. Call once, first. */
int kp_writer_header(struct kp_writer *w, const struct kp_header *h);

/*
 * Append one record to the current frame (opening it with a FRAME record
 * if none is open, and emitting THREAD records when rec->tid changes for
 * event records: ALLOC, FREE, REALLOC). Closes and emits the frame once it
 * reaches frame_cap. ts is ignored for types without a dts (STACK, LOST).
 * FRAME is the writer's own; THREAD is accepted (emitted if it changes
 * the current thread). A failing record leaves nothing behind.
 * @return 0 or <0 (sink failure, KP_ELIMIT for an oversized field,
 *         -EINVAL before kp_writer_header() or for a type with no layout).
 */
int kp_writer_add(struct kp_writer *w, const struct kp_rec *rec);

/*
 * The bulk path for a run of ALLOC, FREE and REALLOC events of one thread
 * (the preload writer's loop over a ring), the same bytes as one
 * kp_writer_add() per event: kp_writer_events_open() makes tid's EVENTS
 * block the open one (opening a frame based at ts, the first event's, and
 * a block as needed) and says where to write; the caller appends at least
 * one event with kp_enc_mem() (codec.h), stopping once b->p reaches b->end,
 * and then kp_writer_events_close() takes the n events written, the last
 * at last_ts, and emits the frame once it is full. Nothing else is added
 * in between.
 * @return 0 or <0, as kp_writer_add().
 */
struct kp_enc;
struct kp_evbuf {
	struct kp_enc *enc;
	uint8_t *p, *end;
};
int kp_writer_events_open(struct kp_writer *w, uint32_t tid, uint64_t ts,
			  struct kp_evbuf *b);
int kp_writer_events_close(struct kp_writer *w, const struct kp_evbuf *b,
			   uint64_t n, uint64_t last_ts);

/* Compress and emit the open frame, if any. @return 0 or <0. */
int kp_writer_flush(struct kp_writer *w);

/* Bytes emitted through the sink so far, and records added. */
uint64_t kp_writer_bytes_out(const struct kp_writer *w);
uint64_t kp_writer_records(const struct kp_writer *w);

/* ---- reader ------------------------------------------------------------ */

struct kp_reader;

/*
 * Read the prefix and header.
 * @return 0; KP_EFORMAT (no magic; also for an empty input), KP_EVERSION
 *         (major too new), KP_ETRUNC (input ends inside the header),
 *         KP_ECORRUPT/KP_ELIMIT (header does not decode), <0 from source.
 */
int kp_reader_open(struct kp_reader **out, const struct kp_allocator *a,
		   const struct kp_source *src);
void kp_reader_free(struct kp_reader *r);

/* The header; strings owned by the reader, NUL-terminated. */
const struct kp_header *kp_reader_header(const struct kp_reader *r);
/* The value of key in h's config (the first, should a hostile trace
 * repeat it), or NULL. */
const char *kp_header_config(const struct kp_header *h, const char *key);

/*
 * Decode the next record, crossing frame boundaries as needed. The FRAME
 * record opening each frame and the THREAD records are returned too
 * (FRAME: ts = base_ts; THREAD: tid = the new thread). Types without a
 * dts of their own (STACK, LOST) get ts = the time of the record before.
 * rec->u.stack.pcs is only valid until the next call; string and bin
 * pointers until the next frame is read (they point into its buffer).
 * @return 1 with *rec filled; 0 at a clean end of input;
 *         KP_ETRUNC when the input ends inside a frame (everything before
 *         that frame has been returned); KP_ECORRUPT/KP_ELIMIT when a
 *         frame fails its checksum or a record does not decode (the rest of
 *         that frame is dropped); <0 from the source. After an error the
 *         reader may be called again: it resynchronises at the next frame
 *         when it can, else returns the same error.
 */
int kp_reader_next(struct kp_reader *r, struct kp_rec *rec);

/*
 * The bulk path for the analyzer's inner loop: when the next records are
 * the ALLOC, FREE and REALLOC events of an EVENTS block, decode up to max
 * of them into out, the records kp_reader_next() would have returned one
 * by one (ts and tid absolute).
 * @return how many; 0 when the next record is anything else, an event that
 *         does not decode or the end of a frame: kp_reader_next() returns
 *         it (or the error, or moves to the next frame).
 */
size_t kp_reader_mem(struct kp_reader *r, struct kp_mem_rec *out, size_t max);

/* Frames decoded, and compressed bytes consumed, so far. */
uint64_t kp_reader_frames(const struct kp_reader *r);
uint64_t kp_reader_bytes_in(const struct kp_reader *r);

#endif
