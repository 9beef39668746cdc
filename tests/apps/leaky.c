/*
 * A program with known leaks (tests/integ/test_leaky.py):
 *   - leak_thousand(), called by leaky_thread() in each of 3 threads, leaks
 *     23 blocks of 1000 bytes: 69 blocks, 69000 bytes, one stack;
 *   - leak_small(), called by main, leaks 7 blocks of 333 bytes;
 * everything else it allocates is freed (a loop of 10000 malloc/free, calloc,
 * realloc chains in main and in the threads). It counts its own calls and
 * prints them on stdout:
 *   allocs=A frees=F reallocs=R bytes=B leaked_bytes=L leaked_blocks=N
 *   temporary=T
 * counting like valgrind: realloc(p, n) of a live p returning q is one alloc
 * and one free (and one realloc); realloc(NULL, n) one alloc. T counts the
 * blocks a thread frees or reallocs before it allocates or frees anything
 * else (kprof-analyze's temporary allocations): each thread keeps the
 * block it allocated last. Nothing in between allocates behind the app's
 * back (pthread_create's calloc comes before any app allocation).
 *
 * No stdio: printf would allocate stdout's buffer (a 4096-byte block that is
 * never freed, made by libc, not by us). Output goes through snprintf into a
 * stack buffer and write(2); snprintf of %ld does not allocate.
 *
 * The 3 threads are alive at the same time (a barrier), so glibc gives each
 * its own stack and its own DTV: pthread_create -> _dl_allocate_tls calls
 * calloc once per new thread stack, and the DTV of a cached stack stays
 * allocated at exit. Those 3 blocks are libc's, not counted here; the test
 * accounts for them (see test_leaky.py).
 *
 * Exit status 0. With argument "quiet" it prints nothing.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NTHREADS 3

static long n_alloc, n_free, n_realloc, n_bytes, n_temp;
static __thread void *last_alloc; /* if nothing was freed since */
static void *thread_leaks[NTHREADS][23];
static void *main_leaks[7];
static pthread_barrier_t barrier;

static void count(long *c, long v) { __atomic_fetch_add(c, v, __ATOMIC_RELAXED); }

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p)
		abort();
	count(&n_alloc, 1);
	count(&n_bytes, (long)n);
	memset(p, 0xab, n);
	last_alloc = p;
	return p;
}

/* p is about to be freed (or realloc'ed) */
static void freeing(void *p)
{
	if (p && p == last_alloc)
		count(&n_temp, 1);
	last_alloc = NULL;
}

static void xfree(void *p)
{
	count(&n_free, 1);
	freeing(p);
	free(p);
}

static void *xrealloc(void *p, size_t n)
{
	freeing(p);
	void *q = realloc(p, n);
	if (!q)
		abort();
	last_alloc = q;
	count(&n_alloc, 1);
	count(&n_bytes, (long)n);
	if (p) {
		count(&n_free, 1);
		count(&n_realloc, 1);
	}
	return q;
}

static void *xcalloc(size_t a, size_t b)
{
	void *p = calloc(a, b);
	if (!p)
		abort();
	count(&n_alloc, 1);
	count(&n_bytes, (long)(a * b));
	last_alloc = p;
	return p;
}

__attribute__((noinline)) void leak_thousand(int idx)
{
	for (int i = 0; i < 23; i++)
		thread_leaks[idx][i] = xmalloc(1000);
}

__attribute__((noinline)) void leak_small(void)
{
	for (int i = 0; i < 7; i++)
		main_leaks[i] = xmalloc(333);
}

/* Churn that is all freed again. */
__attribute__((noinline)) static void churn(int rounds)
{
	void *keep[16] = { 0 };
	for (int i = 0; i < rounds; i++) {
		int k = i % 16;
		if (keep[k])
			xfree(keep[k]);
		keep[k] = xmalloc((size_t)(16 + (i * 37) % 2000));
	}
	for (int k = 0; k < 16; k++)
		if (keep[k])
			xfree(keep[k]);
	void *p = NULL;
	for (int i = 1; i <= 20; i++)
		p = xrealloc(p, (size_t)i * 100);
	xfree(p);
	for (int i = 0; i < 10; i++)
		xfree(xcalloc((size_t)i + 1, 24));
}

void *leaky_thread(void *arg)
{
	int idx = (int)(long)arg;
	pthread_barrier_wait(&barrier); /* all 3 threads exist now */
	churn(500);
	leak_thousand(idx);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t t[NTHREADS];
	pthread_barrier_init(&barrier, NULL, NTHREADS);
	for (long i = 0; i < NTHREADS; i++)
		if (pthread_create(&t[i], NULL, leaky_thread, (void *)i) != 0)
			return 2;
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(t[i], NULL);
	pthread_barrier_destroy(&barrier);

	leak_small();

	/* ~10000 malloc/free pairs */
	for (int i = 0; i < 10000; i++)
		xfree(xmalloc((size_t)(1 + i % 512)));
	churn(1000);

	if (argc > 1 && strcmp(argv[1], "quiet") == 0)
		return 0;
	char buf[256];
	int n = snprintf(buf, sizeof(buf),
			 "allocs=%ld frees=%ld reallocs=%ld bytes=%ld "
			 "leaked_bytes=%d leaked_blocks=%d temporary=%ld\n",
			 n_alloc, n_free, n_realloc, n_bytes,
			 NTHREADS * 23 * 1000 + 7 * 333, NTHREADS * 23 + 7,
			 n_temp);
	if (write(1, buf, (size_t)n) != n)
		return 3;
	return 0;
}
