/*
 * Test-only preload, placed before libkprof.so in LD_PRELOAD: wraps dlsym
 * so that every dlsym call (kprof's own symbol resolution included)
 * allocates, as older glibc's dlsym did with calloc. Allocations made while
 * kprof resolves its symbols come from kprof's bootstrap pool; the app
 * (tests/apps/bootpool.c) later frees and reallocs them through
 * dlsym_alloc_blocks().
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BLOCKS 64
static void *blocks[MAX_BLOCKS];
static int nblocks;

void *dlsym(void *handle, const char *name)
{
	static void *(*real)(void *, const char *);
	if (!real)
		real = (void *(*)(void *, const char *))dlvsym(RTLD_NEXT, "dlsym",
							       "GLIBC_2.34");
	if (nblocks < MAX_BLOCKS) {
		char *p = calloc(1, 48);
		if (p) {
			strncpy(p, name, 47);
			blocks[nblocks++] = p;
		}
	}
	/* A tail call (built with -O2): glibc resolves RTLD_NEXT from its
	 * return address, which must stay the original caller's. */
	return real(handle, name);
}

int dlsym_alloc_blocks(void ***out)
{
	*out = blocks;
	return nblocks;
}
