/*
 * realloc, aligned allocation, failure and errno semantics
 * (tests/integ/test_realloc.py). The app checks the C-level behaviour itself
 * and exits non-zero, naming the check on stderr, when one fails: kprof
 * must not change what the allocator returns, nor errno.
 *
 * It counts its calls like valgrind and prints them on stdout:
 *   allocs=A frees=F reallocs=R bytes=B leaked_bytes=L leaked_blocks=N
 * (realloc(p, n) of a live p returning q: one alloc, one free, one realloc;
 * realloc(NULL, n): one alloc; realloc(p, 0) that frees: one free; failed
 * calls and free(NULL): nothing.) It leaks one block of each aligned kind
 * from leak_aligned() (5 blocks) and one realloc'd block from
 * leak_realloced().
 *
 * Modes (argv[1]):
 *   (none)        everything above
 *   arrayoverflow reallocarray(p, 2, SIZE_MAX/2 + 1) (the product wraps to
 *                 0): NULL, ENOMEM, p intact; then p is freed. Prints the
 *                 same counters (1 alloc, 1 free).
 *   valgrind      as (none), not checking errno after failures (valgrind's
 *                 allocator does not set it), valloc for pvalloc
 * No stdio before the output (see leaky.c): snprintf + write.
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long n_alloc, n_free, n_realloc, n_bytes;
static void *leaked[8];
static volatile size_t huge = SIZE_MAX; /* volatile: no compile-time warnings */
/* Under valgrind (argv "valgrind") failed calls do not set errno: its
 * replacement allocators return NULL without ENOMEM. */
static int errno_ok = 1;
#define ENOMEM_OR_VG (errno == ENOMEM || !errno_ok)
/* valgrind aborts the program on pvalloc ("Program aborting because of call
 * to pvalloc"): in valgrind mode it is replaced by valloc of the same size,
 * so the counts stay the same. */
static void *my_pvalloc(size_t n) { return errno_ok ? pvalloc(n) : valloc(n); }

static void fail(const char *what)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), "reallocs: FAILED: %s (errno %d)\n",
			 what, errno);
	(void)!write(2, buf, (size_t)n);
	_exit(10);
}

#define CHECK(c) do { if (!(c)) fail(#c); } while (0)

static int aligned(void *p, size_t a) { return ((uintptr_t)p % a) == 0; }

static void print_counts(long lb, long lk)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf),
			 "allocs=%ld frees=%ld reallocs=%ld bytes=%ld "
			 "leaked_bytes=%ld leaked_blocks=%ld\n",
			 n_alloc, n_free, n_realloc, n_bytes, lb, lk);
	(void)!write(1, buf, (size_t)n);
}

__attribute__((noinline)) void check_errno_preserved(void)
{
	errno = 1234;
	void *p = malloc(100);
	CHECK(p && errno == 1234);
	n_alloc++, n_bytes += 100;
	free(p);
	CHECK(errno == 1234);
	n_free++;
	p = calloc(10, 10);
	CHECK(p && errno == 1234);
	n_alloc++, n_bytes += 100;
	p = realloc(p, 5000);
	CHECK(p && errno == 1234);
	n_alloc++, n_free++, n_realloc++, n_bytes += 5000;
	free(p);
	CHECK(errno == 1234);
	n_free++;
	free(NULL); /* not recorded */
	CHECK(errno == 1234);
}

__attribute__((noinline)) void realloc_semantics(void)
{
	/* realloc(NULL, n) is an allocation */
	char *p = realloc(NULL, 100);
	CHECK(p);
	n_alloc++, n_bytes += 100;
	memset(p, 'x', 100);
	/* grow (likely moves: a small block boxed in by another) */
	void *fence = malloc(32);
	CHECK(fence);
	n_alloc++, n_bytes += 32;
	char *q = realloc(p, 100000);
	CHECK(q && q[0] == 'x' && q[99] == 'x');
	n_alloc++, n_free++, n_realloc++, n_bytes += 100000;
	/* shrink */
	p = realloc(q, 10);
	CHECK(p && p[9] == 'x');
	n_alloc++, n_free++, n_realloc++, n_bytes += 10;
	/* failure: p intact, ENOMEM, nothing recorded */
	errno = 0;
	q = realloc(p, huge);
	CHECK(q == NULL && ENOMEM_OR_VG && p[0] == 'x');
	q = realloc(p, huge - 4096);
	CHECK(q == NULL && ENOMEM_OR_VG && p[9] == 'x');
	/* realloc(p, 0) frees p (glibc) */
	q = realloc(p, 0);
	CHECK(q == NULL);
	n_free++;
	free(fence);
	n_free++;
	/* realloc(NULL, 0): a minimal block */
	p = realloc(NULL, 0);
	CHECK(p != NULL);
	n_alloc++;
	free(p);
	n_free++;
	/* reallocarray: NULL start, grow, shrink, overflow of a NULL start */
	int *a = reallocarray(NULL, 10, sizeof(int));
	CHECK(a);
	n_alloc++, n_bytes += 10 * sizeof(int);
	a[0] = 42;
	int *b = reallocarray(a, 10000, sizeof(int));
	CHECK(b && b[0] == 42);
	n_alloc++, n_free++, n_realloc++, n_bytes += 10000 * sizeof(int);
	a = reallocarray(b, 5, sizeof(int));
	CHECK(a && a[0] == 42);
	n_alloc++, n_free++, n_realloc++, n_bytes += 5 * sizeof(int);
	errno = 0;
	b = reallocarray(a, huge / 2, 4); /* overflows: ENOMEM, a intact */
	CHECK(b == NULL && ENOMEM_OR_VG && a[0] == 42);
	errno = 0;
	b = reallocarray(NULL, huge / 2, 4);
	CHECK(b == NULL && ENOMEM_OR_VG);
	free(a);
	n_free++;
}

__attribute__((noinline)) void failures(void)
{
	errno = 0;
	void *p = calloc(huge / 2, 4);
	CHECK(p == NULL && ENOMEM_OR_VG);
	errno = 0;
	p = malloc(huge);
	CHECK(p == NULL && ENOMEM_OR_VG);
	errno = 0;
	p = aligned_alloc(64, huge - 128);
	CHECK(p == NULL && ENOMEM_OR_VG);
	p = NULL;
	int rc = posix_memalign(&p, 3, 64); /* not a power of two */
	CHECK(rc == EINVAL && p == NULL);
}

__attribute__((noinline)) void leak_aligned(void)
{
	void *p = NULL;
	CHECK(posix_memalign(&p, 64, 100) == 0 && aligned(p, 64));
	leaked[0] = p;
	leaked[1] = aligned_alloc(256, 512);
	CHECK(leaked[1] && aligned(leaked[1], 256));
	leaked[2] = memalign(4096, 100);
	CHECK(leaked[2] && aligned(leaked[2], 4096));
	leaked[3] = valloc(100);
	CHECK(leaked[3] && aligned(leaked[3], 4096));
	leaked[4] = my_pvalloc(100);
	CHECK(leaked[4] && aligned(leaked[4], 4096));
	n_alloc += 5;
	/* pvalloc rounds the size up to a page; kprof and valgrind record
	 * the size asked for. */
	n_bytes += 100 + 512 + 100 + 100 + 100;
}

__attribute__((noinline)) void free_aligned(void)
{
	void *p = NULL;
	CHECK(posix_memalign(&p, 32, 1000) == 0 && aligned(p, 32));
	void *q = aligned_alloc(128, 1024);
	CHECK(q && aligned(q, 128));
	void *r = memalign(64, 10);
	CHECK(r && aligned(r, 64));
	void *s = valloc(5000);
	CHECK(s && aligned(s, 4096));
	void *u = my_pvalloc(1);
	CHECK(u && aligned(u, 4096));
	n_alloc += 5;
	n_bytes += 1000 + 1024 + 10 + 5000 + 1;
	free(p), free(q), free(r), free(s), free(u);
	n_free += 5;
}

__attribute__((noinline)) void leak_realloced(void)
{
	char *p = malloc(10);
	CHECK(p);
	n_alloc++, n_bytes += 10;
	p = realloc(p, 777);
	CHECK(p);
	n_alloc++, n_free++, n_realloc++, n_bytes += 777;
	leaked[5] = p;
}

static int array_overflow(void)
{
	int *a = malloc(40);
	CHECK(a);
	n_alloc++, n_bytes += 40;
	a[0] = 7;
	errno = 0;
	/* 2 * (SIZE_MAX/2 + 1) wraps to 0 in size_t */
	int *b = reallocarray(a, 2, huge / 2 + 1);
	CHECK(b == NULL && ENOMEM_OR_VG && a[0] == 7);
	free(a);
	n_free++;
	print_counts(0, 0);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "valgrind") == 0)
		errno_ok = 0;
	if (argc > 1 && strcmp(argv[1], "arrayoverflow") == 0)
		return array_overflow();
	check_errno_preserved();
	realloc_semantics();
	failures();
	free_aligned();
	leak_aligned();
	leak_realloced();
	print_counts(100 + 512 + 100 + 100 + 100 + 777, 6);
	return 0;
}
