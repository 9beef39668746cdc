/* SPDX-License-Identifier: MIT */
/*
 * lib/ never calls malloc directly: every allocation goes through a
 * struct kp_allocator supplied by the caller. The preload passes its private
 * jemalloc arena, the analyzer and the tests pass libc (kp_allocator_libc).
 */
#ifndef KP_ALLOC_H
#define KP_ALLOC_H

#include <stddef.h>

struct kp_allocator {
	void *(*xMalloc)(void *ctx, size_t n);  /* NULL on failure */
	void (*xFree)(void *ctx, void *p);       /* p may be NULL */
	void *ctx;                               /* passed to both */
};

/* The libc allocator, for tools and tests. */
extern const struct kp_allocator kp_allocator_libc;

static inline void *kp_malloc(const struct kp_allocator *a, size_t n)
{
	return a->xMalloc(a->ctx, n);
}

static inline void kp_free(const struct kp_allocator *a, void *p)
{
	if (p)
		a->xFree(a->ctx, p);
}

#endif
