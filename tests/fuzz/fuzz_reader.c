/* SPDX-License-Identifier: MIT */
/*
 * This fuzz target feeds arbitrary bytes to the trace reader (kp_reader_open
 * then kp_reader_next, or kp_reader_mem and kp_reader_next, until the end,
 * calling again after errors a bounded number of times) to ensure a hostile trace never crashes it, hangs it or
 * makes it allocate without bound (DESIGN.md, invariant 7).
 *
 * Checksums make most mutations of compressed bytes die at the frame
 * check, so an input starting with 0xff is taken as the *content* of one
 * frame instead: it is wrapped in a minimal header and a valid zstd frame
 * here, which lets the fuzzer reach the record decoder directly.
 *
 * Built with -fsanitize=fuzzer by `make fuzz`; tests/fuzz/regress.c replays
 * the corpus through the same function without libFuzzer (`make asan`).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "err.h"
#include "kpz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Memory is bounded by the largest legal frame: the compressed window,
 * the decompressed frame and zstd's context. Going far beyond it is a bug
 * we want reported as a crash.
 */
#define MEM_LIMIT ((size_t)160 << 20)

struct fuzz_mem {
	size_t live;
};

struct hdr {
	size_t n;
};

static void *fz_malloc(void *ctx, size_t n)
{
	struct fuzz_mem *m = ctx;
	if (n > MEM_LIMIT || m->live + n > MEM_LIMIT)
		__builtin_trap();
	struct hdr *h = malloc(sizeof(struct hdr) + 16 + n);
	if (!h)
		return NULL;
	h->n = n;
	m->live += n;
	return (char *)h + sizeof(struct hdr) + 16;
}

static void fz_free(void *ctx, void *p)
{
	struct fuzz_mem *m = ctx;
	struct hdr *h = (struct hdr *)((char *)p - 16 - sizeof(struct hdr));
	m->live -= h->n;
	free(h);
}

struct src {
	const uint8_t *p;
	size_t len, pos, chunk;
};

static long src_read(void *ctx, void *buf, size_t n)
{
	struct src *s = ctx;
	size_t k = s->len - s->pos;
	if (k > n)
		k = n;
	if (s->chunk && k > s->chunk)
		k = s->chunk;
	if (k == 0)
		return 0;
	memcpy(buf, s->p + s->pos, k);
	s->pos += k;
	return (long)k;
}

/* Read every byte a record points at, so the sanitizers check them. */
static unsigned touch(const struct kp_rec *r)
{
	unsigned sum = 0;
	const uint8_t *p = NULL;
	size_t n = 0;
	switch (r->type) {
	case KP_REC_STACK:
		for (uint32_t i = 0; i < r->u.stack.depth; i++)
			sum += (unsigned)r->u.stack.pcs[i];
		break;
	case KP_REC_MODULE:
		for (uint32_t i = 0; i < r->u.module.build_id_len; i++)
			sum += r->u.module.build_id[i];
		/* fall through */
	case KP_REC_UNMODULE:
		p = (const uint8_t *)r->u.module.path;
		n = r->u.module.path_len;
		break;
	case KP_REC_THREAD_START:
	case KP_REC_THREAD_NAME:
		p = (const uint8_t *)r->u.thread.name;
		n = r->u.thread.name_len;
		break;
	case KP_REC_EXEC:
		p = (const uint8_t *)r->u.exec.path;
		n = r->u.exec.path_len;
		break;
	default:
		break;
	}
	for (size_t i = 0; i < n; i++)
		sum += p[i];
	return sum;
}

static unsigned touch_header(const struct kp_header *h)
{
	unsigned sum = (unsigned)(strlen(h->exe) + strlen(h->clock) +
				  strlen(h->hostname) +
				  strlen(h->kprof_version));
	for (uint32_t i = 0; i < h->argc; i++)
		sum += (unsigned)strlen(h->argv[i]);
	if (h->argv[h->argc])
		__builtin_trap();
	for (uint32_t i = 0; i < h->nconfig; i++)
		sum += (unsigned)(strlen(h->config_keys[i]) +
				  strlen(h->config_vals[i]));
	return sum;
}

static int read_all(const uint8_t *data, size_t size)
{
	struct fuzz_mem mem = { 0 };
	struct kp_allocator a = { fz_malloc, fz_free, &mem };
	/* Odd-sized inputs also read in small chunks: exercises refills. */
	struct src s = { data, size, 0, size & 1 ? 1 + size % 61 : 0 };
	struct kp_source src = { src_read, &s };
	struct kp_reader *r;
	volatile unsigned sink = 0;

	if (kp_reader_open(&r, &a, &src) < 0) {
		if (mem.live)
			__builtin_trap(); /* a failed open leaked */
		return 0;
	}
	sink += touch_header(kp_reader_header(r));
	int errors = 0;
	/* Half the inputs go through the bulk path too, as the analyzer
	 * reads: memory events from kp_reader_mem(), the rest one by one. */
	int bulk = (size & 2) != 0;
	for (;;) {
		struct kp_rec rec;
		struct kp_mem_rec mem[5];
		size_t k = bulk ? kp_reader_mem(r, mem, 5) : 0;
		if (k > 5)
			__builtin_trap();
		for (size_t i = 0; i < k; i++)
			sink += (unsigned)(mem[i].ts + mem[i].a + mem[i].type);
		if (k)
			continue;
		int ret = kp_reader_next(r, &rec);
		if (ret == 1) {
			sink += touch(&rec);
			continue;
		}
		if (ret == 0 || ++errors > 64)
			break;
	}
	kp_reader_free(r);
	if (mem.live)
		__builtin_trap(); /* the reader leaked */
	(void)sink;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || data[0] != 0xff)
		return read_all(data, size);

	/* prefix: magic, major 1, minor 0, header_len 1; header: {} */
	static const uint8_t head[17] = { 'K', 'P', 'R', 'O', 'F', 'T', 'R',
					  'C', 1, 0, 0, 0, 1, 0, 0, 0, 0x80 };
	size_t cap = sizeof(head) + ZSTD_compressBound(size);
	uint8_t *buf = malloc(cap);
	if (!buf)
		return 0;
	memcpy(buf, head, sizeof(head));
	ZSTD_CCtx *z = ZSTD_createCCtx();
	size_t n = 0;
	if (z && !ZSTD_isError(ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag,
							1))) {
		n = ZSTD_compress2(z, buf + sizeof(head), cap - sizeof(head),
				   data + 1, size - 1);
		if (ZSTD_isError(n))
			n = 0;
	}
	ZSTD_freeCCtx(z);
	read_all(buf, sizeof(head) + n);
	free(buf);
	return 0;
}
