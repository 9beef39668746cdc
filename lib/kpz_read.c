/* SPDX-License-Identifier: MIT */
/*
 * The .kpz reader: prefix and header, then zstd frames one at a time,
 * each decompressed whole into a reused buffer and decoded record by
 * record (codec_dec.c).
 *
 * Every trace is untrusted input (DESIGN.md, invariant 7): a hostile file
 * must get an error code, never a crash, a hang or unbounded memory. So
 * every length is checked against the limits of record.h before anything
 * is allocated or read, the buffers only grow to the size of the largest
 * frame (bounded by KP_MAX_FRAME_CONTENT and its compressed bound), and
 * each error either moves the input forward or sticks. lib/ does no I/O of
 * its own: bytes come from the caller's source, memory from its allocator.
 */
#define ZSTD_STATIC_LINKING_ONLY
#include <errno.h>
#include <string.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "codec.h"
#include "err.h"
#include "kpz.h"

#define IN_INIT (128u << 10)
/* The largest compressed frame a writer can produce, plus slack. */
#define IN_MAX (ZSTD_COMPRESSBOUND(KP_MAX_FRAME_CONTENT) + (64u << 10))
#define OUT_MIN (64u << 10)

static const uint8_t zstd_magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };

struct kp_reader {
	struct kp_allocator a;  /* a copy of the caller's */
	struct kp_source src;
	uint8_t *in;            /* input window: in[in_pos, in_len) unread */
	size_t in_cap, in_pos, in_len;
	int eof;                /* the source returned 0 */
	ZSTD_DCtx *dctx;        /* allocates through a */
	uint8_t *out;           /* the current frame, decompressed */
	size_t out_cap;
	struct kp_dec dec;      /* cursor over out */
	int in_frame;           /* dec has records left to return */
	int err;                /* sticky: every later call returns it */
	int resync;             /* the frame at in_pos is bad: scan past it */
	int resync_err;         /* ... and the error that made it bad */
	uint64_t frames;
	uint64_t bytes_in;
	struct kp_header hdr;   /* strings point into hdr_mem */
	void *hdr_mem;
	uint64_t pcs[KP_MAX_STACK_DEPTH]; /* STACK records decode here */
};

static const char *const empty_argv[1] = { NULL };

static void *zstd_alloc(void *opaque, size_t n)
{
	return kp_malloc(opaque, n);
}

static void zstd_free(void *opaque, void *p)
{
	kp_free(opaque, p);
}

static inline size_t avail(const struct kp_reader *r)
{
	return r->in_len - r->in_pos;
}

static inline void consume(struct kp_reader *r, size_t n)
{
	r->in_pos += n;
	r->bytes_in += n;
}

static inline uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/*
 * Read more input: move the unread bytes to the front, grow the window if
 * it is full (up to IN_MAX), then read until it is full or the source ends.
 * Filling the whole window rather than "some bytes" keeps the frame search
 * linear even with a source that returns one byte at a time.
 * @return 1 if bytes were added, 0 at end of input, KP_ELIMIT if the window
 *         is full at IN_MAX, KP_ENOMEM, or <0 from the source.
 */
static int fill(struct kp_reader *r)
{
	size_t have = avail(r);

	if (r->eof)
		return 0;
	if (r->in_pos) {
		memmove(r->in, r->in + r->in_pos, have);
		r->in_pos = 0;
		r->in_len = have;
	}
	if (have == r->in_cap) {
		if (r->in_cap >= IN_MAX)
			return KP_ELIMIT;
		size_t cap = r->in_cap * 2 > IN_MAX ? IN_MAX : r->in_cap * 2;
		uint8_t *p = kp_malloc(&r->a, cap);
		if (!p)
			return KP_ENOMEM;
		memcpy(p, r->in, have);
		kp_free(&r->a, r->in);
		r->in = p;
		r->in_cap = cap;
	}
	size_t before = r->in_len;
	while (r->in_len < r->in_cap) {
		size_t want = r->in_cap - r->in_len;
		long n = r->src.xRead(r->src.ctx, r->in + r->in_len, want);
		if (n < 0)
			return n < INT32_MIN ? KP_EIO : (int)n;
		if (n == 0) {
			r->eof = 1;
			break;
		}
		if ((size_t)n > want)
			return KP_EIO; /* a source that overran our buffer */
		r->in_len += (size_t)n;
	}
	return r->in_len > before;
}

/* @return 0 once n bytes are buffered, 1 if the input ends first, or <0. */
static int ensure(struct kp_reader *r, size_t n)
{
	while (avail(r) < n) {
		int ret = fill(r);
		if (ret < 0)
			return ret;
		if (ret == 0)
			return 1;
	}
	return 0;
}

/* ---- header ------------------------------------------------------------- */

/*
 * The header is parsed twice: once to measure the memory its copies need,
 * once to fill one block of exactly that size. So duplicated keys or huge
 * arrays cost at most what the (bounded) header holds, never more.
 */
struct arena {
	char *base; /* NULL while measuring */
	size_t used, cap;
};

static void *take(struct arena *ar, size_t n, size_t align)
{
	size_t off = (ar->used + align - 1) & ~(align - 1);
	if (ar->base && (off > ar->cap || n > ar->cap - off))
		return NULL;
	ar->used = off + n;
	return ar->base ? ar->base + off : NULL;
}

static int get_str(struct kp_mpk *c, struct arena *ar, const char **out)
{
	const char *s;
	uint32_t n;
	int ret = kp_mpk_str(c, &s, &n);
	if (ret < 0)
		return ret;
	if (n > KP_MAX_STR_LEN)
		return KP_ELIMIT;
	char *p = take(ar, (size_t)n + 1, 1);
	if (ar->base && !p)
		return KP_ECORRUPT;
	if (p) {
		memcpy(p, s, n);
		p[n] = '\0';
		*out = p;
	}
	return 0;
}

static int get_str_array(struct kp_mpk *c, struct arena *ar, uint32_t n,
			 const char ***out)
{
	const char **v = take(ar, ((size_t)n + 1) * sizeof(*v), sizeof(*v));
	if (ar->base && !v)
		return KP_ECORRUPT;
	for (uint32_t i = 0; i < n; i++) {
		const char *s = "";
		int ret = get_str(c, ar, &s);
		if (ret < 0)
			return ret;
		if (v)
			v[i] = s;
	}
	if (v) {
		v[n] = NULL;
		*out = v;
	}
	return 0;
}

static int key_is(const char *k, uint32_t n, const char *want)
{
	return strlen(want) == n && memcmp(k, want, n) == 0;
}

static int parse_header(struct kp_header *h, const uint8_t *buf, size_t len,
			struct arena *ar)
{
	struct kp_mpk c;
	uint32_t n;
	int ret;

	kp_mpk_init(&c, buf, len);
	ret = kp_mpk_map(&c, &n);
	if (ret < 0)
		return ret;
	for (uint32_t i = 0; i < n; i++) {
		const char *k;
		uint32_t kn;
		if (kp_mpk_peek(&c) != KP_MPK_STR) {
			/* Keys are strings; anything else is from the future. */
			ret = kp_mpk_skip(&c, 2);
			if (ret < 0)
				return ret;
			continue;
		}
		ret = kp_mpk_str(&c, &k, &kn);
		if (ret < 0)
			return ret;
		if (kp_mpk_peek(&c) == KP_MPK_NIL) { /* nil reads as missing */
			ret = kp_mpk_nil(&c);
		} else if (key_is(k, kn, "pid")) {
			ret = kp_mpk_i64(&c, &h->pid);
		} else if (key_is(k, kn, "ppid")) {
			ret = kp_mpk_i64(&c, &h->ppid);
		} else if (key_is(k, kn, "pgid")) {
			ret = kp_mpk_i64(&c, &h->pgid);
		} else if (key_is(k, kn, "start_wall_ns")) {
			ret = kp_mpk_u64(&c, &h->start_wall_ns);
		} else if (key_is(k, kn, "start_mono_ns")) {
			ret = kp_mpk_u64(&c, &h->start_mono_ns);
		} else if (key_is(k, kn, "tsc_hz")) {
			ret = kp_mpk_double(&c, &h->tsc_hz);
		} else if (key_is(k, kn, "forked")) {
			int64_t v = 0;
			ret = kp_mpk_i64(&c, &v);
			h->forked = v != 0;
		} else if (key_is(k, kn, "exe")) {
			ret = get_str(&c, ar, &h->exe);
		} else if (key_is(k, kn, "clock")) {
			ret = get_str(&c, ar, &h->clock);
		} else if (key_is(k, kn, "hostname")) {
			ret = get_str(&c, ar, &h->hostname);
		} else if (key_is(k, kn, "kprof_version")) {
			ret = get_str(&c, ar, &h->kprof_version);
		} else if (key_is(k, kn, "argv")) {
			const char **v = NULL;
			uint32_t an;
			ret = kp_mpk_array(&c, &an);
			if (ret == 0 && an > KP_MAX_ARGV)
				ret = KP_ELIMIT;
			if (ret == 0)
				ret = get_str_array(&c, ar, an, &v);
			if (ret == 0 && v) {
				h->argv = v;
				h->argc = an;
			}
		} else if (key_is(k, kn, "config")) {
			const char **kv = NULL, **vv = NULL;
			uint32_t cn;
			ret = kp_mpk_map(&c, &cn);
			if (ret == 0 && cn > KP_MAX_ARGV)
				ret = KP_ELIMIT;
			if (ret < 0)
				return ret;
			kv = take(ar, ((size_t)cn + 1) * sizeof(*kv),
				  sizeof(*kv));
			vv = take(ar, ((size_t)cn + 1) * sizeof(*vv),
				  sizeof(*vv));
			if (ar->base && (!kv || !vv))
				return KP_ECORRUPT;
			for (uint32_t j = 0; j < cn && ret == 0; j++) {
				const char *ks = "", *vs = "";
				ret = get_str(&c, ar, &ks);
				if (ret == 0)
					ret = get_str(&c, ar, &vs);
				if (kv) {
					kv[j] = ks;
					vv[j] = vs;
				}
			}
			if (ret == 0 && kv) {
				kv[cn] = vv[cn] = NULL;
				h->config_keys = kv;
				h->config_vals = vv;
				h->nconfig = cn;
			}
		} else {
			ret = kp_mpk_skip(&c, 1);
		}
		if (ret < 0)
			return ret;
	}
	/* Bytes after the map, inside header_len, are left for the future. */
	return 0;
}

const char *kp_header_config(const struct kp_header *h, const char *key)
{
	for (uint32_t i = 0; h->config_keys && i < h->nconfig; i++)
		if (h->config_keys[i] && h->config_vals[i] &&
		    !strcmp(h->config_keys[i], key))
			return h->config_vals[i];
	return NULL;
}

static void header_defaults(struct kp_header *h, uint16_t major,
			    uint16_t minor)
{
	memset(h, 0, sizeof(*h));
	h->major = major;
	h->minor = minor;
	h->exe = h->clock = h->hostname = h->kprof_version = "";
	h->argv = empty_argv;
	h->config_keys = h->config_vals = empty_argv;
}

static int read_header(struct kp_reader *r)
{
	int ret = ensure(r, KP_PREFIX_LEN);
	if (ret < 0)
		return ret;
	const uint8_t *p = r->in + r->in_pos;
	size_t have = avail(r);
	if (ret > 0) {
		/* Short: a prefix of the magic is a truncated trace. */
		if (have == 0 ||
		    memcmp(p, KP_MAGIC, have < KP_MAGIC_LEN ? have :
				     KP_MAGIC_LEN) != 0)
			return KP_EFORMAT;
		return KP_ETRUNC;
	}
	if (memcmp(p, KP_MAGIC, KP_MAGIC_LEN) != 0)
		return KP_EFORMAT;
	uint16_t major = le16(p + 8), minor = le16(p + 10);
	uint32_t hlen = le32(p + 12);
	/* 0 was never written, > KP_FORMAT_MAJOR is newer */
	if (major < KP_FORMAT_MAJOR_MIN || major > KP_FORMAT_MAJOR)
		return KP_EVERSION;
	if (hlen > KP_MAX_HEADER_LEN)
		return KP_ELIMIT;
	ret = ensure(r, KP_PREFIX_LEN + (size_t)hlen);
	if (ret < 0)
		return ret;
	if (ret > 0)
		return KP_ETRUNC;
	p = r->in + r->in_pos + KP_PREFIX_LEN;

	struct kp_header h;
	struct arena ar = { NULL, 0, 0 };
	header_defaults(&h, major, minor);
	ret = parse_header(&h, p, hlen, &ar);
	if (ret < 0)
		return ret;
	ar.cap = ar.used;
	ar.used = 0;
	ar.base = kp_malloc(&r->a, ar.cap ? ar.cap : 1);
	if (!ar.base)
		return KP_ENOMEM;
	r->hdr_mem = ar.base;
	header_defaults(&h, major, minor);
	ret = parse_header(&h, p, hlen, &ar);
	if (ret < 0)
		return ret;
	r->hdr = h;
	consume(r, KP_PREFIX_LEN + (size_t)hlen);
	return 0;
}

int kp_reader_open(struct kp_reader **out, const struct kp_allocator *a,
		   const struct kp_source *src)
{
	struct kp_reader *r;
	int ret;

	*out = NULL;
	if (!a || !src || !src->xRead)
		return -EINVAL;
	r = kp_malloc(a, sizeof(*r));
	if (!r)
		return KP_ENOMEM;
	memset(r, 0, sizeof(*r));
	r->a = *a;
	r->src = *src;
	r->in_cap = IN_INIT;
	r->in = kp_malloc(&r->a, r->in_cap);
	ZSTD_customMem mem = { zstd_alloc, zstd_free, &r->a };
	r->dctx = ZSTD_createDCtx_advanced(mem);
	if (!r->in || !r->dctx) {
		kp_reader_free(r);
		return KP_ENOMEM;
	}
	ret = read_header(r);
	if (ret < 0) {
		kp_reader_free(r);
		return ret;
	}
	*out = r;
	return 0;
}

void kp_reader_free(struct kp_reader *r)
{
	if (!r)
		return;
	struct kp_allocator a = r->a;
	ZSTD_freeDCtx(r->dctx);
	kp_free(&a, r->in);
	kp_free(&a, r->out);
	kp_free(&a, r->hdr_mem);
	kp_free(&a, r);
}

const struct kp_header *kp_reader_header(const struct kp_reader *r)
{
	return &r->hdr;
}

/* ---- frames ------------------------------------------------------------- */

/* An error after which nothing more can be read. */
static int stick(struct kp_reader *r, int err)
{
	r->err = err;
	return err;
}

/* The frame at in_pos is bad: report err, skip past it on the next call. */
static int bad_frame(struct kp_reader *r, int err)
{
	r->resync = 1;
	r->resync_err = err;
	return err;
}

/* Offset of the next zstd magic in the buffered input after from, or -1. */
static long find_magic(const struct kp_reader *r, size_t from)
{
	if (from >= r->in_len)
		return -1;
	const uint8_t *p = memmem(r->in + from, r->in_len - from, zstd_magic,
				  sizeof(zstd_magic));
	return p ? (long)(p - r->in) : -1;
}

/*
 * The input ended inside the frame at in_pos. If another frame starts
 * later in what is buffered, the frame was corrupt (a damaged block size
 * pointing past the end), not the last one cut short.
 */
static int ended_in_frame(struct kp_reader *r)
{
	if (find_magic(r, r->in_pos + 1) >= 0)
		return bad_frame(r, KP_ECORRUPT);
	return stick(r, KP_ETRUNC);
}

/*
 * Skip the bad frame at in_pos: drop at least one byte, then everything up
 * to the next zstd magic number. Checksums catch a magic that is really
 * part of some compressed block. @return 0 at a candidate frame, or the
 * error that made the frame bad if the input ends first (it then sticks).
 */
static int resync(struct kp_reader *r)
{
	int err = r->resync_err;
	r->resync = 0;
	if (avail(r))
		consume(r, 1);
	for (;;) {
		long at = find_magic(r, r->in_pos);
		if (at >= 0) {
			consume(r, (size_t)at - r->in_pos);
			return 0;
		}
		/* Keep a possible partial magic at the end. */
		if (avail(r) > sizeof(zstd_magic) - 1)
			consume(r, avail(r) - (sizeof(zstd_magic) - 1));
		int ret = fill(r);
		if (ret < 0)
			return stick(r, ret);
		if (ret == 0)
			return stick(r, err);
	}
}

/* Drop n bytes of input (a skippable frame) without buffering them. */
static int discard(struct kp_reader *r, uint64_t n)
{
	while (n) {
		if (!avail(r)) {
			int ret = fill(r);
			if (ret < 0)
				return stick(r, ret);
			if (ret == 0)
				return stick(r, KP_ETRUNC);
		}
		size_t k = avail(r) < n ? avail(r) : (size_t)n;
		consume(r, k);
		n -= k;
	}
	return 0;
}

/*
 * Find, check and decompress the next frame, and decode its first record,
 * which must be its FRAME. @return 1 with *rec the FRAME, 0 at a clean end
 * of input, or <0.
 */
static __attribute__((noinline)) int load_frame(struct kp_reader *r,
						   struct kp_rec *rec)
{
	for (;;) {
		int ret;

		if (r->err)
			return r->err;
		if (r->resync) {
			ret = resync(r);
			if (ret < 0)
				return ret;
		}
		ret = ensure(r, 4);
		if (ret < 0)
			return stick(r, ret);
		if (ret > 0)
			return avail(r) ? ended_in_frame(r) : 0;

		const uint8_t *p = r->in + r->in_pos;
		uint32_t magic = le32(p);
		if ((magic & ZSTD_MAGIC_SKIPPABLE_MASK) ==
		    ZSTD_MAGIC_SKIPPABLE_START) {
			/* Room for future side data (an index, say). */
			ret = ensure(r, 8);
			if (ret < 0)
				return stick(r, ret);
			if (ret > 0)
				return stick(r, KP_ETRUNC);
			ret = discard(r, 8 + (uint64_t)le32(r->in + r->in_pos + 4));
			if (ret < 0)
				return ret;
			continue;
		}
		if (magic != ZSTD_MAGICNUMBER)
			return bad_frame(r, KP_ECORRUPT);

		ret = ensure(r, ZSTD_FRAMEHEADERSIZE_MAX);
		if (ret < 0)
			return stick(r, ret);
		p = r->in + r->in_pos;
		size_t hs = ZSTD_frameHeaderSize(p, avail(r));
		if (ZSTD_isError(hs)) {
			if (ret > 0 && ZSTD_getErrorCode(hs) ==
					       ZSTD_error_srcSize_wrong)
				return ended_in_frame(r);
			return bad_frame(r, KP_ECORRUPT);
		}
		if (hs > avail(r))
			return ended_in_frame(r);
		unsigned long long csize = ZSTD_getFrameContentSize(p, avail(r));
		if (csize == ZSTD_CONTENTSIZE_UNKNOWN ||
		    csize == ZSTD_CONTENTSIZE_ERROR)
			return bad_frame(r, KP_ECORRUPT);
		if (csize > KP_MAX_FRAME_CONTENT)
			return bad_frame(r, KP_ELIMIT);

		size_t fs;
		for (;;) {
			p = r->in + r->in_pos;
			fs = ZSTD_findFrameCompressedSize(p, avail(r));
			if (!ZSTD_isError(fs))
				break;
			if (ZSTD_getErrorCode(fs) != ZSTD_error_srcSize_wrong)
				return bad_frame(r, KP_ECORRUPT);
			ret = fill(r);
			if (ret == KP_ELIMIT)
				return bad_frame(r, KP_ELIMIT);
			if (ret < 0)
				return stick(r, ret);
			if (ret == 0)
				return ended_in_frame(r);
		}
		/*
		 * Every block (3-byte header, at least 1 byte of body unless
		 * empty) yields at most ZSTD_BLOCKSIZE_MAX bytes: a content
		 * size beyond that is a lie, refused before allocating for it.
		 */
		if (csize > (unsigned long long)(fs / 3 + 1) * ZSTD_BLOCKSIZE_MAX)
			return bad_frame(r, KP_ECORRUPT);
		if (csize > r->out_cap || !r->out) {
			size_t cap = r->out_cap * 2;
			if (cap > KP_MAX_FRAME_CONTENT)
				cap = KP_MAX_FRAME_CONTENT;
			if (cap < csize)
				cap = (size_t)csize;
			if (cap < OUT_MIN)
				cap = OUT_MIN;
			kp_free(&r->a, r->out);
			r->out_cap = 0;
			r->out = kp_malloc(&r->a, cap);
			if (!r->out)
				return stick(r, KP_ENOMEM);
			r->out_cap = cap;
		}
		size_t d = ZSTD_decompressDCtx(r->dctx, r->out, (size_t)csize, p,
					       fs);
		if (ZSTD_isError(d) || d != csize) {
			if (ZSTD_isError(d) && ZSTD_getErrorCode(d) ==
						       ZSTD_error_memory_allocation)
				return stick(r, KP_ENOMEM);
			return bad_frame(r, KP_ECORRUPT);
		}
		consume(r, fs);
		r->frames++;

		kp_dec_init(&r->dec, r->out, d, r->pcs);
		ret = kp_dec_next(&r->dec, rec);
		if (ret == 1 && rec->type == KP_REC_FRAME) {
			r->in_frame = 1;
			return 1;
		}
		/* The frame is consumed: the next call reads the one after. */
		return ret < 0 ? ret : KP_ECORRUPT;
	}
}

int kp_reader_next(struct kp_reader *r, struct kp_rec *rec)
{
	if (KP_LIKELY(r->in_frame)) {
		int ret = kp_dec_next(&r->dec, rec);
		if (KP_LIKELY(ret == 1))
			return 1;
		r->in_frame = 0;
		if (ret < 0)
			return ret; /* the rest of this frame is dropped */
	}
	return load_frame(r, rec);
}

size_t kp_reader_mem(struct kp_reader *r, struct kp_mem_rec *out, size_t max)
{
	return r->in_frame ? kp_dec_mem(&r->dec, out, max) : 0;
}

uint64_t kp_reader_frames(const struct kp_reader *r)
{
	return r->frames;
}

uint64_t kp_reader_bytes_in(const struct kp_reader *r)
{
	return r->bytes_in;
}
