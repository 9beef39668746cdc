/*
 * A no-op allocator interposer: forwards malloc/free/calloc/realloc to the
 * next definition and records nothing. The benchmark's floor: what merely
 * interposing costs, before kprof does any work.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>

static void *(*r_malloc)(size_t);
static void (*r_free)(void *);
static void *(*r_calloc)(size_t, size_t);
static void *(*r_realloc)(void *, size_t);
static char boot[4096];
static size_t boot_used;
static int resolving;

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
	return r_malloc(n);
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
	return r_calloc(a, b);
}

void free(void *p)
{
	if ((char *)p >= boot && (char *)p < boot + sizeof(boot))
		return;
	if (!r_free)
		resolve();
	r_free(p);
}

void *realloc(void *p, size_t n)
{
	if (!r_realloc)
		resolve();
	return r_realloc(p, n);
}
