/* SPDX-License-Identifier: MIT */
/*
 * The libc allocator behind struct kp_allocator, for the analyzer and the
 * tests. The only place in lib/ allowed to call malloc/free; the preload
 * must never use it (it passes its private arena instead).
 */
#include <stdlib.h>

#include "alloc.h"

static void *libc_malloc(void *ctx, size_t n)
{
	(void)ctx;
	/* malloc(0) may return NULL, which callers would take for failure. */
	return malloc(n ? n : 1);
}

static void libc_free(void *ctx, void *p)
{
	(void)ctx;
	free(p);
}

const struct kp_allocator kp_allocator_libc = {
	.xMalloc = libc_malloc,
	.xFree = libc_free,
	.ctx = NULL,
};
