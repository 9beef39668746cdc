/*
 * Allocation-heavy benchmark: THREADS threads, each making ITERS rounds of
 * allocations from many call sites at varied stack depths (a recursive
 * descent through one of 16 paths picks the depth and one of 64 leaf sites:
 * ~16 k unique stacks), freeing blocks at random from a window of live ones,
 * like a real program's churn. Each block is filled and an older one read,
 * as a program uses its memory.
 *   alloc_bench [threads=2] [iters=1500000]
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 4096
static long iters = 1500000;

struct ctx { void *live[WINDOW]; uint64_t rng; long sum; };

static uint64_t next(struct ctx *c)
{
	c->rng ^= c->rng << 13; c->rng ^= c->rng >> 7; c->rng ^= c->rng << 17;
	return c->rng;
}

#define SITE(n) static __attribute__((noinline)) void *site##n(size_t sz) { return malloc(sz + n); }
#define S8(a) SITE(a##0) SITE(a##1) SITE(a##2) SITE(a##3) SITE(a##4) SITE(a##5) SITE(a##6) SITE(a##7)
S8(1) S8(2) S8(3) S8(4) S8(5) S8(6) S8(7) S8(8)
#define P8(a) site##a##0, site##a##1, site##a##2, site##a##3, site##a##4, site##a##5, site##a##6, site##a##7
static void *(*const sites[64])(size_t) = { P8(1), P8(2), P8(3), P8(4), P8(5), P8(6), P8(7), P8(8) };

static __attribute__((noinline)) void *descend(struct ctx *c, int depth, unsigned site, size_t sz);

#define PATH(n) static __attribute__((noinline)) void *path##n(struct ctx *c, int d, unsigned s, size_t z) \
	{ void *p = descend(c, d, s, z); c->sum += n; return p; }
PATH(0) PATH(1) PATH(2) PATH(3) PATH(4) PATH(5) PATH(6) PATH(7)
PATH(8) PATH(9) PATH(10) PATH(11) PATH(12) PATH(13) PATH(14) PATH(15)
static void *(*const paths[16])(struct ctx *, int, unsigned, size_t) = {
	path0, path1, path2, path3, path4, path5, path6, path7,
	path8, path9, path10, path11, path12, path13, path14, path15 };

static __attribute__((noinline)) void *descend(struct ctx *c, int depth, unsigned site, size_t sz)
{
	if (depth == 0)
		return sites[site](sz);
	void *p = depth == 8 ? paths[(site * 7 + sz) % 16](c, depth - 1, site, sz)
			     : descend(c, depth - 1, site, sz);
	c->sum += depth; /* defeats tail calls */
	return p;
}

static void *worker(void *arg)
{
	struct ctx *c = arg;
	for (long i = 0; i < iters; i++) {
		uint64_t r = next(c);
		unsigned slot = r % WINDOW;
		unsigned char *old = c->live[(slot + 1) % WINDOW];
		if (old)
			c->sum += old[0] + old[7];
		free(c->live[slot]);
		size_t sz = 16 + (r >> 32) % 480;
		unsigned char *p = descend(c, (int)((r >> 12) % 16), (unsigned)(r >> 20) % 64, sz);
		memset(p, (int)r, sz);
		c->live[slot] = p;
	}
	for (int i = 0; i < WINDOW; i++)
		free(c->live[i]);
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 2;
	if (argc > 2)
		iters = atol(argv[2]);
	pthread_t t[64];
	struct ctx *cs = calloc((size_t)threads, sizeof(*cs));
	for (int i = 0; i < threads && i < 64; i++) {
		cs[i].rng = 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1);
		pthread_create(&t[i], NULL, worker, &cs[i]);
	}
	long sum = 0;
	for (int i = 0; i < threads && i < 64; i++) {
		pthread_join(t[i], NULL);
		sum += cs[i].sum;
	}
	free(cs);
	printf("alloc_bench: %d threads x %ld allocations (%ld)\n", threads, iters, sum & 1);
	return 0;
}
