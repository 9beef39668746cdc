/*
 * A multi-thread allocation storm with exact counts
 * (tests/integ/test_config.py: small rings, wait and drop policies).
 *   storm [threads=4] [iters=50000]
 * Each thread mallocs and frees through a window of 64 live blocks; at the
 * end every block is freed but 10 per thread leaked from storm_leak().
 * Prints "allocs=A frees=F leaked_blocks=L leaked_bytes=B" (malloc/free only;
 * the threads' DTVs are libc's calloc, see leaky.c: the threads run at the
 * same time, one calloc each).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static long iters = 50000;
static int nthreads = 4;
static pthread_barrier_t barrier;

__attribute__((noinline)) void storm_leak(void **keep)
{
	for (int i = 0; i < 10; i++)
		keep[i] = malloc(48);
}

static void *worker(void *arg)
{
	void **keep = arg;
	void *win[64] = { 0 };
	pthread_barrier_wait(&barrier);
	for (long i = 0; i < iters; i++) {
		int k = (int)(i % 64);
		free(win[k]);
		win[k] = malloc(32 + (size_t)(i % 200));
	}
	for (int k = 0; k < 64; k++)
		free(win[k]);
	storm_leak(keep);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		nthreads = atoi(argv[1]);
	if (argc > 2)
		iters = atol(argv[2]);
	if (nthreads < 1 || nthreads > 64)
		return 2;
	static void *keep[64][10];
	pthread_t t[64];
	pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
	for (int i = 0; i < nthreads; i++)
		pthread_create(&t[i], NULL, worker, keep[i]);
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	/* iters + 10 mallocs per thread; iters frees of a block (the loop's
	 * first 64 frees are free(NULL), which does not count, and the final
	 * loop frees the 64 (or iters) blocks still in the window) */
	long allocs = (long)nthreads * (iters + 10);
	long frees = (long)nthreads * iters;
	char buf[200];
	int n = snprintf(buf, sizeof(buf),
			 "allocs=%ld frees=%ld leaked_blocks=%d leaked_bytes=%d\n",
			 allocs, frees, nthreads * 10, nthreads * 480);
	return write(1, buf, (size_t)n) == n ? 0 : 3;
}
