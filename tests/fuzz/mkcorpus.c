/* SPDX-License-Identifier: MIT */
/*
 * Writes the seed corpus of fuzz_reader into a directory: valid traces
 * made by the writer, cut and damaged copies, hand-crafted oddities and
 * garbage. Run by `make fuzz-corpus` (the seeds are committed; rerun only
 * when the format changes). Test code: libc malloc, stdio.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#include "../unit/kpz_testutil.h"
#include "../unit/workload.h"

static const char *dir;

static void save(const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		fprintf(stderr, "mkcorpus: cannot write '%s'\n", path);
		exit(1);
	}
}

static void workload_trace(struct membuf *b, size_t n, size_t cap,
			   uint64_t seed)
{
	struct workload *wl = malloc(sizeof(*wl));
	struct kp_rec *recs = malloc(n * sizeof(*recs));
	static uint64_t pcs[4096][KP_MAX_STACK_DEPTH];
	wl_init(wl, seed);
	for (size_t i = 0; i < n; i++) {
		wl_next(wl, &recs[i]);
		if (recs[i].type == KP_REC_STACK && i < 4096) {
			memcpy(pcs[i], recs[i].u.stack.pcs,
			       recs[i].u.stack.depth * 8);
			recs[i].u.stack.pcs = pcs[i];
		}
	}
	write_trace(b, recs, n, cap);
	free(recs);
	free(wl);
}

/* The memory events of a workload without stacks, written as kprof
 * writes a process recorded without them: EVENTS_NS blocks, raw zstd
 * literals (kp_writer_options), and more (extra, e.g. frames stored). */
static void nostacks_trace(struct membuf *b, size_t n, uint64_t seed,
			   unsigned extra)
{
	struct workload *wl = malloc(sizeof(*wl));
	struct kp_sink sink = { membuf_write, b, NULL };
	struct kp_writer *w;
	struct kp_header h;
	struct kp_rec r;
	wl_init(wl, seed);
	test_header(&h);
	if (kp_writer_create(&w, &kp_allocator_libc, &sink, 1, 512) != 0 ||
	    kp_writer_header(w, &h) != 0 ||
	    kp_writer_options(w, KP_WRITER_NO_STACKS |
					 KP_WRITER_RAW_LITERALS | extra) != 0)
		exit(1);
	for (size_t i = 0; i < n;) {
		wl_next(wl, &r);
		if (r.type == KP_REC_ALLOC)
			r.u.alloc.stack = 0;
		else if (r.type != KP_REC_FREE)
			continue;
		if (kp_writer_add(w, &r) != 0)
			exit(1);
		i++;
	}
	if (kp_writer_flush(w) != 0)
		exit(1);
	kp_writer_free(w);
	free(wl);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: mkcorpus DIR\n");
		return 2;
	}
	dir = argv[1];

	struct kp_rec recs[64];
	size_t n = edge_records(recs);
	struct membuf edge = { 0 }, one = { 0 }, wl = { 0 }, wl1 = { 0 };
	write_trace(&edge, recs, n, 300);
	save("edge.kpz", edge.p, edge.len);
	write_trace(&one, recs, 3, 0);
	save("small.kpz", one.p, one.len);
	workload_trace(&wl, 400, 512, 1);
	save("workload-frames.kpz", wl.p, wl.len);
	workload_trace(&wl1, 3000, 0, 2);
	save("workload-1frame.kpz", wl1.p, wl1.len);
	struct membuf ns = { 0 };
	nostacks_trace(&ns, 400, 3, 0);
	save("workload-nostacks.kpz", ns.p, ns.len);
	/* frames stored (zstd raw blocks) after the first; one with a byte
	 * of its content changed, which its checksum finds */
	struct membuf st = { 0 };
	nostacks_trace(&st, 400, 4, KP_WRITER_STORE_INCOMPRESSIBLE);
	save("workload-stored.kpz", st.p, st.len);
	st.p[st.len - 40] ^= 0x08;
	save("flip-stored.kpz", st.p, st.len);

	/* Header only, and the header cut short. */
	struct membuf h = { 0 };
	write_trace(&h, recs, 0, 0);
	save("header-only.kpz", h.p, h.len);
	save("cut-header.kpz", h.p, h.len / 2);
	save("cut-prefix.kpz", h.p, 11);

	/* Cut inside frames, at a frame end + 2 bytes. */
	save("cut-mid.kpz", wl.p, wl.len * 2 / 3);
	save("cut-last.kpz", wl.p, wl.len - 3);
	save("cut-edge.kpz", edge.p, edge.len / 2 + 7);

	/* Damaged bytes in the middle of a frame, in a frame header. */
	uint8_t *d = malloc(wl.len);
	memcpy(d, wl.p, wl.len);
	d[wl.len / 2] ^= 0x40;
	save("flip-mid.kpz", d, wl.len);
	memcpy(d, wl.p, wl.len);
	d[h.len + 4] ^= 0x80; /* first frame's descriptor byte */
	save("flip-fhd.kpz", d, wl.len);
	memcpy(d, wl.p, wl.len);
	d[h.len] = 0; /* first frame's magic */
	save("bad-magic.kpz", d, wl.len);
	free(d);

	/* A newer major; garbage with and without our magic. */
	uint8_t *g = malloc(one.len);
	memcpy(g, one.p, one.len);
	g[8] = KP_FORMAT_MAJOR + 1;
	save("major-newer.kpz", g, one.len);
	free(g);
	uint8_t junk[300];
	uint64_t x = 88172645463325252ull;
	for (size_t i = 0; i < sizeof(junk); i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		junk[i] = (uint8_t)x;
	}
	save("garbage.bin", junk, sizeof(junk));
	memcpy(junk, one.p, h.len); /* valid header, junk after */
	save("header-then-garbage.kpz", junk, sizeof(junk));
	save("empty.bin", junk, 0);

	/* Two traces back to back: the second prefix is garbage to us. */
	struct membuf two = { 0 };
	membuf_write(&two, one.p, one.len);
	membuf_write(&two, one.p, one.len);
	save("concat.kpz", two.p, two.len);

	/* Raw frame contents for fuzz_reader's 0xff mode. */
	const struct membuf *srcs[] = { &edge, &wl };
	for (int k = 0; k < 2; k++) {
		const uint8_t *f = srcs[k]->p + h.len;
		size_t left = srcs[k]->len - h.len;
		for (int j = 0; j < 2 && left; j++) {
			size_t fs = ZSTD_findFrameCompressedSize(f, left);
			unsigned long long cs = ZSTD_getFrameContentSize(f, fs);
			uint8_t *c = malloc(cs + 1);
			c[0] = 0xff;
			ZSTD_decompress(c + 1, cs, f, fs);
			char name[64];
			snprintf(name, sizeof(name), "content-%d-%d.bin", k, j);
			save(name, c, cs + 1);
			free(c);
			f += fs;
			left -= fs;
		}
	}

	membuf_free(&edge);
	membuf_free(&one);
	membuf_free(&wl);
	membuf_free(&wl1);
	membuf_free(&h);
	membuf_free(&two);
	membuf_free(&st);
	return 0;
}
