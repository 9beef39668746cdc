/*
 * Two runs of one program for kprof-analyze diff (tests/integ/test_diff.py):
 *   diffapp N   grow_leak() leaks N blocks of 100 bytes; churn() makes 10 x N
 *               malloc(64)/free pairs; stable() leaks 3 blocks of 50 bytes
 *               whatever N; only_new() leaks 1 block of 77 bytes when
 *               N > 10, only_base() 2 blocks of 99 bytes otherwise.
 * No stdio (its buffer would be an allocation of its own); exit status 0.
 */
#include <stdlib.h>
#include <string.h>

static void *volatile sink;

static __attribute__((noinline)) void keep(size_t n)
{
	void *p = malloc(n);
	memset(p, 1, n);
	sink = p; /* never freed */
}

static __attribute__((noinline)) void grow_leak(int n)
{
	for (int i = 0; i < n; i++)
		keep(100);
}

static __attribute__((noinline)) void churn(int n)
{
	for (int i = 0; i < 10 * n; i++) {
		void *p = malloc(64);
		memset(p, 2, 64);
		sink = p;
		free(p);
	}
}

static __attribute__((noinline)) void stable(void)
{
	for (int i = 0; i < 3; i++)
		keep(50);
}

static __attribute__((noinline)) void only_new(void)
{
	keep(77);
}

static __attribute__((noinline)) void only_base(void)
{
	for (int i = 0; i < 2; i++)
		keep(99);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 5;
	grow_leak(n);
	churn(n);
	stable();
	if (n > 10)
		only_new();
	else
		only_base();
	return 0;
}
