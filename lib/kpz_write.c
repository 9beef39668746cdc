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
#include <sys/uio.h>

#include <msgpack.h>
#include <zstd.h>
#include <zstd_errors.h>

#include "codec.h"
#include "err.h"
#include "kpz.h"

#define DEFAULT_FRAME_CAP (1u << 20)
#define DEFAULT_LEVEL 1

/* What a stored frame adds to n bytes of content (emit_stored). */
#define STORE_BLOCK (128u << 10) /* zstd's largest block */
#define STORE_OVERHEAD(n) (9 + 3 * ((n) / STORE_BLOCK + 1) + 4)

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
	int store;              /* KP_WRITER_STORE_INCOMPRESSIBLE */
	int store_small;        /* KP_WRITER_STORE_SMALL */
	unsigned store_left;    /* frames still to store without trying */
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
	if (w->zcap < w->cap + STORE_OVERHEAD(w->cap))
		w->zcap = w->cap + STORE_OVERHEAD(w->cap);
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
	n += h->forked != 0;
	n += h->pgid != 0;

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
	if (h->forked && (pack_key(pk, "forked") < 0 ||
			  msgpack_pack_int64(pk, 1) < 0))
		return -1;
	if (h->pgid && (pack_key(pk, "pgid") < 0 ||
			msgpack_pack_int64(pk, h->pgid) < 0))
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

/*
 * XXH64 (seed 0), the hash whose low 32 bits end a zstd frame as its
 * content checksum (RFC 8878, 3.1.1). libzstd keeps its copy private.
 */
#define XXH_P1 0x9E3779B185EBCA87ull
#define XXH_P2 0xC2B2AE3D27D4EB4Full
#define XXH_P3 0x165667B19E3779F9ull
#define XXH_P4 0x85EBCA77C2B2AE63ull
#define XXH_P5 0x27D4EB2F165667C5ull

static uint64_t rotl64(uint64_t x, int r)
{
	return (x << r) | (x >> (64 - r));
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8); /* little-endian hosts only, as the format */
	return v;
}

static uint64_t xxh_round(uint64_t acc, uint64_t in)
{
	return rotl64(acc + in * XXH_P2, 31) * XXH_P1;
}

static uint64_t xxh_merge(uint64_t h, uint64_t v)
{
	return (h ^ xxh_round(0, v)) * XXH_P1 + XXH_P4;
}

static uint64_t xxh64(const uint8_t *p, size_t n)
{
	const uint8_t *end = p + n;
	uint64_t h;
	if (n >= 32) {
		uint64_t v[4] = { XXH_P1 + XXH_P2, XXH_P2, 0, -XXH_P1 };
		do {
			for (int i = 0; i < 4; i++)
				v[i] = xxh_round(v[i], rd64(p + 8 * i));
			p += 32;
		} while ((size_t)(end - p) >= 32);
		h = rotl64(v[0], 1) + rotl64(v[1], 7) + rotl64(v[2], 12) +
		    rotl64(v[3], 18);
		for (int i = 0; i < 4; i++)
			h = xxh_merge(h, v[i]);
	} else {
		h = XXH_P5;
	}
	h += n;
	for (; end - p >= 8; p += 8)
		h = rotl64(h ^ xxh_round(0, rd64(p)), 27) * XXH_P1 + XXH_P4;
	if (end - p >= 4) {
		uint32_t k;
		memcpy(&k, p, 4);
		h = rotl64(h ^ (uint64_t)k * XXH_P1, 23) * XXH_P2 + XXH_P3;
		p += 4;
	}
	for (; p < end; p++)
		h = rotl64(h ^ *p * XXH_P5, 11) * XXH_P1;
	h ^= h >> 33;
	h *= XXH_P2;
	h ^= h >> 29;
	h *= XXH_P3;
	return h ^ (h >> 32);
}

/*
 * The open frame's n bytes as one zstd frame of raw (stored) blocks, as
 * zstd writes data it cannot compress, without searching it first: the
 * 4-byte magic, a descriptor (single segment, a 4-byte content size, a
 * checksum), then blocks of at most 128 KiB, each a 3-byte header (last
 * flag, type 0 = raw, size) and its bytes, then the checksum (RFC 8878).
 * Any zstd decoder reads it. With the sink's xWritev the blocks' bytes
 * go from buf as they are, the headers from zbuf; else all is copied
 * into zbuf first. 0 < n <= cap.
 */
static int emit_stored(struct kp_writer *w, size_t n)
{
	struct iovec iov[2 * (KP_MAX_FRAME_CONTENT / 2 / STORE_BLOCK + 2) + 2];
	int v = 0, direct = w->sink.xWritev != NULL;
	uint8_t *f = w->zbuf, *p = f + 9;
	put_le32(f, ZSTD_MAGICNUMBER);
	f[4] = 2u << 6 | 1u << 5 | 1u << 2; /* FCS 4 bytes, single, checksum */
	put_le32(f + 5, (uint32_t)n);
	iov[v++] = (struct iovec){ f, 9 };
	size_t off = 0;
	do {
		size_t k = n - off < STORE_BLOCK ? n - off : STORE_BLOCK;
		uint32_t bh = (uint32_t)k << 3 | (off + k == n);
		p[0] = (uint8_t)bh;
		p[1] = (uint8_t)(bh >> 8);
		p[2] = (uint8_t)(bh >> 16);
		if (direct) { /* the headers side by side in zbuf */
			iov[v++] = (struct iovec){ p, 3 };
			iov[v++] = (struct iovec){ w->buf + off, k };
			p += 3;
		} else {
			memcpy(p + 3, w->buf + off, k);
			p += 3 + k;
		}
		off += k;
	} while (off < n);
	put_le32(p, (uint32_t)xxh64(w->buf, n));
	p += 4;
	if (!direct)
		return emit(w, f, (size_t)(p - f));
	iov[v++] = (struct iovec){ p - 4, 4 };
	int ret = w->sink.xWritev(w->sink.ctx, iov, v);
	if (ret < 0) {
		w->err = ret;
		return ret;
	}
	w->bytes_out += (size_t)(p - f) + n;
	return 0;
}

/*
 * How many frames in a row are stored, untried, after one that zstd could
 * not make at least 1/16 smaller; then the next is tried again. A trace's
 * events stay alike for long stretches: the events of a program that
 * allocates in no repeating pattern, without stacks and with raw literals,
 * came out of zstd 0.02 % larger than they went in.
 */
#define STORE_RUN 15

int kp_writer_flush(struct kp_writer *w)
{
	if (w->err)
		return w->err;
	if (!w->open)
		return 0;
	block_close(w);
	size_t n = w->len, z;
	/* The frame is dropped either way: a retry would fail the same. */
	w->open = 0;
	w->len = 0;
	if (w->store_small && n < KP_STORE_SMALL)
		return emit_stored(w, n);
	if (w->store && w->store_left) {
		w->store_left--;
		return emit_stored(w, n);
	}
	z = ZSTD_compress2(w->cctx, w->zbuf, w->zcap, w->buf, n);
	if (ZSTD_isError(z))
		return ZSTD_getErrorCode(z) == ZSTD_error_memory_allocation ?
			       KP_ENOMEM : -EINVAL;
	if (w->store && z > n - n / 16)
		w->store_left = STORE_RUN;
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
	w->store = (flags & KP_WRITER_STORE_INCOMPRESSIBLE) != 0;
	w->store_small = (flags & KP_WRITER_STORE_SMALL) != 0;
	w->store_left = 0;
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
