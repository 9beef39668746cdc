/* SPDX-License-Identifier: MIT */
/*
 * An app with an allocator of its own (tests/integ/test_invariants.py):
 * built four times, with glibc's malloc (ownalloc), linked with
 * libjemalloc (ownalloc_je, -DOWN_JEMALLOC), with libtcmalloc
 * (ownalloc_tc, -DOWN_TCMALLOC), and with jemalloc's static library
 * inside the program (ownalloc_inside), whose malloc LD_PRELOAD cannot
 * replace. It asks its allocator's own statistics
 * how many bytes it has handed out, before and after 100 x malloc(100000)
 * from own_alloc_site(), then frees 60 of them, and prints
 *   "allocator=NAME grew=G shrank=S usable_ok=U"
 * (G: the statistic rose by >= 10,000,000; S: it fell by >= 6,000,000 after
 * the frees; U: malloc_usable_size of each block >= 100000; blocks this
 * large skip jemalloc's thread cache, which would keep freed ones counted).
 * Under kprof the same allocator must answer, so the line is the same;
 * the 40 blocks left are in use at exit.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#if defined(OWN_JEMALLOC)
#include <jemalloc/jemalloc.h>
#define NAME "jemalloc"
static size_t allocated(void)
{
	uint64_t epoch = 1;
	size_t a = 0, n = sizeof(epoch);
	mallctl("epoch", &epoch, &n, &epoch, n);
	n = sizeof(a);
	if (mallctl("stats.allocated", &a, &n, NULL, 0) != 0)
		return 0;
	return a;
}
#elif defined(OWN_TCMALLOC)
#include <gperftools/malloc_extension_c.h>
#define NAME "tcmalloc"
static size_t allocated(void)
{
	size_t a = 0;
	MallocExtension_GetNumericProperty("generic.current_allocated_bytes",
					   &a);
	return a;
}
#else
#define NAME "glibc"
static size_t allocated(void)
{
	return mallinfo2().uordblks;
}
#endif

#define N 100
static void *blocks[N];

__attribute__((noinline)) void own_alloc_site(void)
{
	for (int i = 0; i < N; i++)
		blocks[i] = malloc(100000);
}

int main(void)
{
	size_t before = allocated();
	own_alloc_site();
	size_t after = allocated();
	int usable_ok = 1;
	for (int i = 0; i < N; i++)
		usable_ok &= blocks[i] && malloc_usable_size(blocks[i]) >= 100000;
	for (int i = 0; i < 60; i++)
		free(blocks[i]);
	size_t freed = allocated();
	printf("allocator=%s grew=%d shrank=%d usable_ok=%d\n", NAME,
	       after >= before + 10000000, after >= freed + 6000000, usable_ok);
	return 0;
}
