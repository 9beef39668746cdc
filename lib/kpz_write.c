/* SPDX-License-Identifier: MIT */
/*
 * The .kpz writer: the fixed prefix and header map, then records gathered
 * into frames, each compressed with zstd into one independent frame and
 * handed to the sink.
 *
 * It runs inside the preload's writer thread, under a malloc interposer:
 * every byte of memory comes from the caller's kp_allocator (zstd's context
 * included, through ZSTD_customMem), it never calls malloc/free or stdio,
 * and it does no I/O except through the sink. Buffers are allocated once,
 * at create time, sized by frame_cap.
 */
#define ZSTD_STATIC_LINKING_ONLY
#include <errno.h>
#include <string.h>

#include <msgpack.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "codec.h"
#include "err.h"
#include "kpz.h"

#define DEFAULT_FRAME_CAP (1u << 20)
#define DEFAULT_LEVEL 1

struct kp_writer {
	struct kp_allocator a;  /* a copy: the caller's may not outlive us */
	struct kp_sink sink;
	ZSTD_CCtx *cctx;        /* allocates through a */
	struct kp_enc enc;      /* packs into buf */
	uint8_t *buf;           /* the open frame's records */
	size_t len;             /* bytes used in buf */
	size_t cap;             /* frame_cap + KP_ENC_MAX_REC */
	size_t frame_cap;       /* close the frame once len reaches this */
	uint8_t *zbuf;          /* compressed frame */
	size_t zcap;            /* ZSTD_compressBound(cap) */
	int open;               /* a FRAME record is in buf */
	size_t blk;             /* offset of the open EVENTS block's header,
				 * SIZE_MAX when none is open */
	uint32_t blk_tid;
	int header_done;        /* kp_writer_header() succeeded */
	int err;                /* a sink failure, returned from then on */
	uint64_t seq;           /* next frame's sequence number */
	uint64_t last_ts;       /* latest ts seen, base of the next frame */
	uint64_t bytes_out;
	uint64_t records;
};

static void *zstd_alloc(void *opaque, size_t n)
{
	return kp_malloc(opaque, n);
}

static void zstd_free(void *opaque, void *p)
{
	kp_free(opaque, p);
}

/*
 * The packer's callback: append to the frame buffer. Room for a whole
 * record is reserved before encoding, so running out here is a bug in
 * KP_ENC_MAX_REC, reported as -1 rather than overrun.
 */
static int buf_write(void *data, const char *p, size_t n)
{
	struct kp_writer *w = data;
	if (n > w->cap - w->len)
		return -1;
	memcpy(w->buf + w->len, p, n);
	w->len += n;
	return 0;
}

int kp_writer_create(struct kp_writer **out, const struct kp_allocator *a,
		     const struct kp_sink *sink, int level, size_t frame_cap)
{
	struct kp_writer *w;

	*out = NULL;
	if (!a || !sink || !sink->xWrite)
		return -EINVAL;
	w = kp_malloc(a, sizeof(*w));
	if (!w)
		return KP_ENOMEM;
	memset(w, 0, sizeof(*w));
	w->a = *a;
	w->sink = *sink;

	if (frame_cap == 0)
		frame_cap = DEFAULT_FRAME_CAP;
	if (frame_cap > KP_MAX_FRAME_CONTENT / 2)
		frame_cap = KP_MAX_FRAME_CONTENT / 2;
	w->frame_cap = frame_cap;
	w->blk = SIZE_MAX;
	w->cap = frame_cap + KP_ENC_MAX_REC;
	w->zcap = ZSTD_compressBound(w->cap);
	w->buf = kp_malloc(&w->a, w->cap);
	w->zbuf = kp_malloc(&w->a, w->zcap);

	ZSTD_customMem mem = { zstd_alloc, zstd_free, &w->a };
	w->cctx = ZSTD_createCCtx_advanced(mem);
	if (!w->buf || !w->zbuf || !w->cctx) {
		kp_writer_free(w);
		return KP_ENOMEM;
	}

	/* Level 0 and below mean zstd's default; levels above 19 need far
	 * more memory than a profiler should take from its host. */
	if (level <= 0)
		level = DEFAULT_LEVEL;
	if (level > 19)
		level = 19;
	if (ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx,
						ZSTD_c_compressionLevel, level)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx,
						ZSTD_c_contentSizeFlag, 1)) ||
	    ZSTD_isError(ZSTD_CCtx_setParameter(w->cctx,
						ZSTD_c_checksumFlag, 1))) {
		kp_writer_free(w);
		return -EINVAL;
	}
	kp_enc_init(&w->enc, w, buf_write);
	*out = w;
	return 0;
}

void kp_writer_free(struct kp_writer *w)
{
	if (!w)
		return;
	struct kp_allocator a = w->a;
	ZSTD_freeCCtx(w->cctx);
	kp_free(&a, w->buf);
	kp_free(&a, w->zbuf);
	kp_free(&a, w);
}

/* Hand bytes to the sink; a failure sticks, since the file is now torn. */
static int emit(struct kp_writer *w, const void *p, size_t n)
{
	int ret = w->sink.xWrite(w->sink.ctx, p, n);
	if (ret < 0) {
		w->err = ret;
		return ret;
	}
	w->bytes_out += n;
	return 0;
}

/* ---- header ------------------------------------------------------------- */

/* The header is packed twice: once to measure, once into a buffer. */
struct hdr_buf {
	uint8_t *p; /* NULL while measuring */
	size_t len, cap;
};

static int hdr_write(void *data, const char *p, size_t n)
{
	struct hdr_buf *b = data;
	if (b->p) {
		if (n > b->cap - b->len)
			return -1;
		memcpy(b->p + b->len, p, n);
	}
	b->len += n;
	return 0;
}

static size_t slen(const char *s)
{
	return s ? strlen(s) : 0;
}

static int pack_key(msgpack_packer *pk, const char *k)
{
	size_t n = strlen(k);
	if (msgpack_pack_str(pk, n) < 0)
		return -1;
	return msgpack_pack_str_body(pk, k, n);
}

static int pack_s(msgpack_packer *pk, const char *s)
{
	size_t n = slen(s);
	if (msgpack_pack_str(pk, n) < 0)
		return -1;
	return n ? msgpack_pack_str_body(pk, s, n) : 0;
}

static int check_header(const struct kp_header *h)
{
	const char *strs[] = { h->exe, h->clock, h->hostname,
			       h->kprof_version };
	for (size_t i = 0; i < KP_ARRAY_SIZE(strs); i++)
		if (slen(strs[i]) > KP_MAX_STR_LEN)
			return KP_ELIMIT;
	if (h->argc > KP_MAX_ARGV || h->nconfig > KP_MAX_ARGV)
		return KP_ELIMIT;
	if ((h->argc && !h->argv) ||
	    (h->nconfig && (!h->config_keys || !h->config_vals)))
		return -EINVAL;
	for (uint32_t i = 0; i < h->argc; i++)
		if (slen(h->argv[i]) > KP_MAX_STR_LEN)
			return KP_ELIMIT;
	for (uint32_t i = 0; i < h->nconfig; i++)
		if (slen(h->config_keys[i]) > KP_MAX_STR_LEN ||
		    slen(h->config_vals[i]) > KP_MAX_STR_LEN)
			return KP_ELIMIT;
	return 0;
}

/* NULL strings are left out; the reader reads a missing key as "". */
static int pack_header(msgpack_packer *pk, const struct kp_header *h)
{
	const char *const skeys[] = { "exe", "clock", "hostname",
				      "kprof_version" };
	const char *const svals[] = { h->exe, h->clock, h->hostname,
				      h->kprof_version };
	size_t n = 7; /* pid ppid argv start_wall_ns start_mono_ns tsc_hz config */
	for (size_t i = 0; i < KP_ARRAY_SIZE(svals); i++)
		n += svals[i] != NULL;

	if (msgpack_pack_map(pk, n) < 0)
		return -1;
	if (pack_key(pk, "pid") < 0 || msgpack_pack_int64(pk, h->pid) < 0 ||
	    pack_key(pk, "ppid") < 0 || msgpack_pack_int64(pk, h->ppid) < 0 ||
	    pack_key(pk, "start_wall_ns") < 0 ||
	    msgpack_pack_uint64(pk, h->start_wall_ns) < 0 ||
	    pack_key(pk, "start_mono_ns") < 0 ||
	    msgpack_pack_uint64(pk, h->start_mono_ns) < 0 ||
	    pack_key(pk, "tsc_hz") < 0 || msgpack_pack_double(pk, h->tsc_hz) < 0)
		return -1;
	for (size_t i = 0; i < KP_ARRAY_SIZE(svals); i++)
		if (svals[i] && (pack_key(pk, skeys[i]) < 0 ||
				 pack_s(pk, svals[i]) < 0))
			return -1;
	if (pack_key(pk, "argv") < 0 || msgpack_pack_array(pk, h->argc) < 0)
		return -1;
	for (uint32_t i = 0; i < h->argc; i++)
		if (pack_s(pk, h->argv[i]) < 0)
			return -1;
	if (pack_key(pk, "config") < 0 || msgpack_pack_map(pk, h->nconfig) < 0)
		return -1;
	for (uint32_t i = 0; i < h->nconfig; i++)
		if (pack_s(pk, h->config_keys[i]) < 0 ||
		    pack_s(pk, h->config_vals[i]) < 0)
			return -1;
	return 0;
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	put_le16(p, (uint16_t)v);
	put_le16(p + 2, (uint16_t)(v >> 16));
}

int kp_writer_header(struct kp_writer *w, const struct kp_header *h)
{
	struct hdr_buf b = { NULL, 0, 0 };
	msgpack_packer pk;
	int ret;

	if (w->err)
		return w->err;
	if (w->header_done || !h)
		return -EINVAL;
	ret = check_header(h);
	if (ret < 0)
		return ret;

	msgpack_packer_init(&pk, &b, hdr_write);
	if (pack_header(&pk, h) < 0)
		return -EINVAL;
	if (b.len > KP_MAX_HEADER_LEN)
		return KP_ELIMIT;

	b.cap = KP_PREFIX_LEN + b.len;
	b.p = kp_malloc(&w->a, b.cap);
	if (!b.p)
		return KP_ENOMEM;
	memcpy(b.p, KP_MAGIC, KP_MAGIC_LEN);
	put_le16(b.p + 8, KP_FORMAT_MAJOR);
	put_le16(b.p + 10, KP_FORMAT_MINOR);
	put_le32(b.p + 12, (uint32_t)b.len);
	b.len = KP_PREFIX_LEN;
	if (pack_header(&pk, h) < 0 || b.len != b.cap) {
		ret = -EINVAL; /* h changed under us; nothing was written */
	} else {
		ret = emit(w, b.p, b.len);
		if (ret == 0)
			w->header_done = 1;
	}
	kp_free(&w->a, b.p);
	return ret;
}

/* ---- frames ------------------------------------------------------------- */

/* Close the open EVENTS block, if any: its length goes in its header. */
static void block_close(struct kp_writer *w)
{
	if (w->blk == SIZE_MAX)
		return;
	kp_enc_block_close(w->buf + w->blk,
			   w->len - w->blk - KP_ENC_BLOCK_HDR);
	w->blk = SIZE_MAX;
}

int kp_writer_flush(struct kp_writer *w)
{
	if (w->err)
		return w->err;
	if (!w->open)
		return 0;
	block_close(w);
	size_t z = ZSTD_compress2(w->cctx, w->zbuf, w->zcap, w->buf, w->len);
	/* The frame is dropped either way: a retry would fail the same. */
	w->open = 0;
	w->len = 0;
	if (ZSTD_isError(z))
		return ZSTD_getErrorCode(z) == ZSTD_error_memory_allocation ?
			       KP_ENOMEM : -EINVAL;
	return emit(w, w->zbuf, z);
}

int kp_writer_options(struct kp_writer *w, unsigned flags)
{
	int raw = (flags & KP_WRITER_RAW_LITERALS) != 0;
	if (ZSTD_isError(ZSTD_CCtx_setParameter(
		    w->cctx, ZSTD_c_literalCompressionMode,
		    raw ? ZSTD_ps_disable : ZSTD_ps_auto)))
		return -EINVAL;
	block_close(w); /* the next event opens a block of the new kind */
	w->enc.no_stacks = (flags & KP_WRITER_NO_STACKS) != 0;
	return 0;
}

static int has_stack(const struct kp_rec *rec)
{
	return (rec->type == KP_REC_ALLOC && rec->u.alloc.stack) ||
	       (rec->type == KP_REC_REALLOC && rec->u.realloc.stack);
}

/* Append an event to the open block of an open frame, whose buffer always
 * has KP_ENC_MAX_REC bytes free past frame_cap. */
static KP_ALWAYS_INLINE int block_add(struct kp_writer *w,
				      const struct kp_rec *rec)
{
	if (KP_UNLIKELY(w->enc.no_stacks) && has_stack(rec))
		return -EINVAL; /* nowhere to put it */
	w->len += kp_enc_block_event(&w->enc, rec, w->buf + w->len);
	w->records++;
	w->last_ts = rec->ts;
	if (w->len >= w->frame_cap)
		return kp_writer_flush(w);
	return 0;
}

int kp_writer_add(struct kp_writer *w, const struct kp_rec *rec)
{
	int ret;

	if (w->err)
		return w->err;
	if (!w->header_done)
		return -EINVAL;
	int is_event = rec->type == KP_REC_ALLOC || rec->type == KP_REC_FREE ||
		       rec->type == KP_REC_REALLOC;
	if (KP_LIKELY(w->open && is_event && w->blk != SIZE_MAX &&
		      rec->tid == w->blk_tid)) {
		/* The common case: the next event of the open block. */
		return block_add(w, rec);
	}
	if (!is_event) {
		ret = kp_enc_check(rec);
		if (ret < 0)
			return ret;
	}

	int has_ts = is_event || kp_rec_has_ts(rec->type);
	if (!w->open) {
		/* Base the frame on its first timestamp: first dts is 0. */
		uint64_t base = has_ts ? rec->ts : w->last_ts;
		if (kp_enc_frame(&w->enc, base, w->seq) < 0)
			return KP_ELIMIT;
		w->seq++;
		w->open = 1;
	}
	block_close(w);
	if (is_event) {
		/* A new block: another thread, or after another record. */
		w->blk = w->len;
		w->blk_tid = rec->tid;
		w->len += kp_enc_block_open(&w->enc, rec->tid, w->buf + w->len);
		return block_add(w, rec);
	}

	if (kp_rec_is_ext(rec->type)) {
		/* I/O, queries, ...: the common records after allocations */
		w->len += kp_enc_ext_direct(&w->enc, rec, w->buf + w->len);
		w->records++;
		w->last_ts = rec->ts;
		if (w->len >= w->frame_cap)
			return kp_writer_flush(w);
		return 0;
	}
	size_t mark = w->len;
	struct kp_enc saved = w->enc;
	if (kp_enc_rec(&w->enc, rec) < 0) {
		/* Cannot happen within KP_ENC_MAX_REC; undo, keep the frame. */
		w->len = mark;
		w->enc = saved;
		return KP_ELIMIT;
	}
	w->records++;
	if (has_ts)
		w->last_ts = rec->ts;
	if (w->len >= w->frame_cap)
		return kp_writer_flush(w);
	return 0;
}

_Static_assert(KP_ENC_MAX_REC >= KP_ENC_BLOCK_HDR + KP_ENC_MAX_EVENT,
	       "room past frame_cap for a block header and an event");

int kp_writer_events_open(struct kp_writer *w, uint32_t tid, uint64_t ts,
			  struct kp_evbuf *b)
{
	if (w->err)
		return w->err;
	if (!w->header_done)
		return -EINVAL;
	if (!w->open) {
		if (kp_enc_frame(&w->enc, ts, w->seq) < 0)
			return KP_ELIMIT;
		w->seq++;
		w->open = 1;
	}
	if (w->blk == SIZE_MAX || w->blk_tid != tid) {
		block_close(w);
		w->blk = w->len;
		w->blk_tid = tid;
		w->len += kp_enc_block_open(&w->enc, tid, w->buf + w->len);
	}
	/* len < frame_cap here (a full frame is emitted at once), and the
	 * buffer has KP_ENC_MAX_REC bytes past frame_cap: room for the block
	 * header and the event that crosses b->end. */
	b->enc = &w->enc;
	b->p = w->buf + w->len;
	b->end = w->buf + w->frame_cap;
	return 0;
}

int kp_writer_events_close(struct kp_writer *w, const struct kp_evbuf *b,
			   uint64_t n, uint64_t last_ts)
{
	w->len = (size_t)(b->p - w->buf);
	w->records += n;
	w->last_ts = last_ts;
	if (w->len >= w->frame_cap)
		return kp_writer_flush(w);
	return 0;
}

uint64_t kp_writer_bytes_out(const struct kp_writer *w)
{
	return w->bytes_out;
}

uint64_t kp_writer_records(const struct kp_writer *w)
{
	return w->records;
}
