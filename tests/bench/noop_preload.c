/*
 * Two allocator interposers for the benchmark, from this one file:
 *
 *   noop_preload.so   forwards malloc/free/calloc/realloc to the next
 *                     definition and records nothing: what merely
 *                     interposing costs, before kprof does any work.
 *   stamp_preload.so  (-DBENCH_STAMP) also writes each call as a 32-byte
 *                     event (timestamp, type, pointer, size) into a
 *                     per-thread buffer that nothing reads, and does
 *                     nothing else (no consumer, no reentrancy guard, no
 *                     encoding): the floor of any recorder that stamps
 *                     every allocation event, issue 2's "recording 32-byte
 *                     events without stacks" measured on the machine at
 *                     hand. The stamp is rdtsc on x86, as kprof's is,
 *                     whose cost differs most between CPUs.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#endif

static void *(*r_malloc)(size_t);
static void (*r_free)(void *);
static void *(*r_calloc)(size_t, size_t);
static void *(*r_realloc)(void *, size_t);
static char boot[4096];
static size_t boot_used;
static int resolving;

#ifdef BENCH_STAMP
struct event {
	uint64_t ts, type, ptr, size;
};

/* 1 MiB a thread, kprof's default ring size; overwritten round after
 * round */
#define NEV 32768
static __thread struct event buf[NEV]
	__attribute__((tls_model("initial-exec")));
static __thread unsigned head __attribute__((tls_model("initial-exec")));

static inline uint64_t stamp(void)
{
#if defined(__x86_64__) || defined(__i386__)
	return __rdtsc();
#else
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
#endif
}

static inline void record(uint64_t type, void *p, size_t n)
{
	struct event *e = &buf[head++ & (NEV - 1)];
	e->ts = stamp();
	e->type = type;
	e->ptr = (uintptr_t)p;
	e->size = n;
	/* nothing reads the stores: this keeps the compiler from dropping
	 * them */
	__asm__ volatile("" : : "r"(e) : "memory");
}
#else
#define record(type, p, n) ((void)0)
#endif

static void resolve(void)
{
	resolving = 1;
	r_malloc = dlsym(RTLD_NEXT, "malloc");
	r_free = dlsym(RTLD_NEXT, "free");
	r_calloc = dlsym(RTLD_NEXT, "calloc");
	r_realloc = dlsym(RTLD_NEXT, "realloc");
	resolving = 0;
}

void *malloc(size_t n)
{
	if (!r_malloc)
		resolve();
	void *p = r_malloc(n);
	record(1, p, n);
	return p;
}

void *calloc(size_t a, size_t b)
{
	if (resolving) { /* dlsym's own calloc */
		void *p = boot + boot_used;
		boot_used += (a * b + 15) & ~(size_t)15;
		return p;
	}
	if (!r_calloc)
		resolve();
	void *p = r_calloc(a, b);
	record(1, p, a * b);
	return p;
}

void free(void *p)
{
	if ((char *)p >= boot && (char *)p < boot + sizeof(boot))
		return;
	if (!r_free)
		resolve();
	record(2, p, 0);
	r_free(p);
}

void *realloc(void *p, size_t n)
{
	if (!r_realloc)
		resolve();
	void *q = r_realloc(p, n);
	record(3, q, n);
	return q;
}
