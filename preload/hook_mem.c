/* SPDX-License-Identifier: MIT */
/*
 * The allocator interposers. Each forwards to the allocator the app would
 * have called (kp_real, resolved with RTLD_NEXT), returns exactly what it
 * returned with errno as it left it, and records an event:
 *   - allocations after the real call returned (the block exists),
 *   - frees before the real call (once freed, another thread may get the
 *     same address and record its allocation),
 *   - realloc with two times: the free half before, the allocation after.
 * Calls made while this thread is already inside kprof (busy), during
 * symbol resolution (boot pool), before initialisation or after the end
 * pass straight through. Runs on every allocation: no locks, no stdio, no
 * allocation from the app's heap.
 */
#include "state.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

static inline int want(const struct kp_tls *t)
{
	return !t->busy && kp_ready() && kp.cfg.memory;
}

/*
 * The interposers' first test: a call that surely passes straight
 * through (KOTOBA_PROFILE_MEMORY=0, or busy), decided without a call of
 * its own, so that an interposer whose real function is known is a leaf
 * that jumps to it, with no registers saved. It implies !want();
 * everything else takes the full path (*_slow), which decides as before.
 */
static KP_ALWAYS_INLINE int pass(void)
{
	return kp.mem_off || kp_tls.busy;
}

/* Record one event (fields as in writer.c's ev_to_rec), with the
 * caller's stack if asked. errno is kept by what may change it (the
 * capture's slow paths, a full ring's wait); the common path touches it
 * not at all. */
static KP_ALWAYS_INLINE void record(struct kp_tls *t, uint8_t type,
				     uint8_t kind, int with_stack, uint64_t tsc,
				     uint64_t a, uint64_t b, uint64_t c,
				     uint64_t d)
{
	t->busy = 1;
	uint32_t stack = 0;
	if (with_stack && kp.cfg.stack_depth > 0) /* from this frame */
		stack = kp_pystack_in(
			kp_stack_capture_at(__builtin_frame_address(0)));
	kp_ring_push_mem(type, kind, stack, tsc, a, b, c, d);
	kp_busy_leave();
}

static KP_ALWAYS_INLINE void record_alloc(struct kp_tls *t, int kind,
					   void *p, size_t n, size_t align)
{
	record(t, KP_REC_ALLOC, (uint8_t)kind, 1, 0, (uintptr_t)p, n, align,
	       0);
}

static KP_ALWAYS_INLINE void record_free(struct kp_tls *t, void *p,
					  uint64_t tsc)
{
	record(t, KP_REC_FREE, 0, 0, tsc, (uintptr_t)p, 0, 0, 0);
}

/* Before the real symbols are known: only the boot pool can answer. */
#define RESOLVE_OR_BOOT(fn, boot_expr)                  \
	do {                                            \
		if (KP_UNLIKELY(!kp_real.fn)) {         \
			if (atomic_load(&kp_resolving)) \
				return boot_expr;       \
			kp_real_resolve();              \
		}                                       \
	} while (0)

/* The busy paths with the leak scan asked for: what kprof's own calls
 * allocate from the app's allocator, noted (leakscan.c). */
static __attribute__((noinline)) void *busy_malloc(size_t n)
{
	void *p = kp_real.malloc(n);
	kp_side_note(p, n);
	return p;
}

static __attribute__((noinline)) void *busy_calloc(size_t nmemb, size_t size)
{
	void *p = kp_real.calloc(nmemb, size);
	kp_side_note(p, nmemb * size);
	return p;
}

static __attribute__((noinline)) void *busy_realloc(void *p, size_t n)
{
	void *q = kp_real.realloc(p, n);
	if (p && (q || n == 0))
		kp_side_forget(p);
	kp_side_note(q, n);
	return q;
}

static __attribute__((noinline)) void busy_free(void *p)
{
	kp_side_forget(p);
	kp_real.free(p);
}

static __attribute__((noinline)) void *malloc_slow(size_t n)
{
	RESOLVE_OR_BOOT(malloc, kp_boot_alloc(n, 16));
	struct kp_tls *t = &kp_tls;
	if (!want(t))
		return kp_real.malloc(n);
	void *p = kp_real.malloc(n);
	if (p)
		record_alloc(t, KP_ALLOC_MALLOC, p, n, 0);
	return p;
}

/*
 * KOTOBA_PROFILE_MEMORY=0: malloc and free (the calls a program makes
 * most) pass everything through, to these, set once at initialisation
 * (kp_mem_pass_all; NULL before, and with MEMORY=1): one load, a test and
 * the jump, where the checks of pass() took twice that (a point select
 * of SQLite makes three mallocs and three frees).
 */
static void *(*_Atomic pass_malloc)(size_t);
static void (*_Atomic pass_free)(void *);

void kp_mem_pass_all(void)
{
	atomic_store_explicit(&pass_malloc, kp_real.malloc,
			      memory_order_relaxed);
	atomic_store_explicit(&pass_free, kp_real.free, memory_order_relaxed);
}

KP_EXPORT void *malloc(size_t n)
{
	void *(*pm)(size_t) = atomic_load_explicit(&pass_malloc,
						   memory_order_relaxed);
	if (pm)
		return pm(n);
	void *(*real)(size_t) = kp_real.malloc;
	if (KP_LIKELY(real != NULL) && kp_tls.busy)
		return KP_UNLIKELY(kp_side_on) ? busy_malloc(n) : real(n);
	return malloc_slow(n);
}

static __attribute__((noinline)) void *calloc_slow(size_t nmemb, size_t size)
{
	size_t total;
	RESOLVE_OR_BOOT(calloc,
			__builtin_mul_overflow(nmemb, size, &total)
				? NULL
				: kp_boot_alloc(total, 16));
	struct kp_tls *t = &kp_tls;
	if (!want(t))
		return kp_real.calloc(nmemb, size);
	void *p = kp_real.calloc(nmemb, size);
	if (p)
		record_alloc(t, KP_ALLOC_CALLOC, p, nmemb * size, 0);
	return p;
}

KP_EXPORT void *calloc(size_t nmemb, size_t size)
{
	void *(*real)(size_t, size_t) = kp_real.calloc;
	if (KP_LIKELY(real != NULL) && pass())
		return KP_UNLIKELY(kp_side_on) && kp_tls.busy ?
			       busy_calloc(nmemb, size) :
			       real(nmemb, size);
	return calloc_slow(nmemb, size);
}

static __attribute__((noinline)) void free_slow(void *p)
{
	RESOLVE_OR_BOOT(free, (void)0);
	struct kp_tls *t = &kp_tls;
	if (want(t))
		record_free(t, p, 0);
	kp_real.free(p);
}

KP_EXPORT void free(void *p)
{
	if (KP_UNLIKELY(kp_boot_owns(p)))
		return; /* boot blocks are never reused */
	void (*pf)(void *) = atomic_load_explicit(&pass_free,
						  memory_order_relaxed);
	if (pf) {
		pf(p); /* free(NULL) is the real one's to ignore */
		return;
	}
	if (!p)
		return;
	void (*real)(void *) = kp_real.free;
	if (KP_LIKELY(real != NULL) && kp_tls.busy) {
		if (KP_UNLIKELY(kp_side_on))
			busy_free(p);
		else
			real(p);
		return;
	}
	free_slow(p);
}

/* Record what realloc_as's real call did: `n` is the new size in bytes. */
static void *do_realloc(void *p, size_t n, void *q, uint64_t t0, int kind)
{
	struct kp_tls *t = &kp_tls;
	if (!p) {
		if (q)
			record_alloc(t, kind, q, n, 0);
		return q;
	}
	if (!q) {
		/* realloc(p, 0) that freed p; any other NULL is a failure
		 * that left p alone. */
		if (n == 0)
			record_free(t, p, t0);
		return q;
	}
	record(t, KP_REC_REALLOC, (uint8_t)kind, 1, t0, (uintptr_t)p,
	       (uintptr_t)q, n, kp_ticks() - t0);
	return q;
}

static void *realloc_from_boot(void *p, size_t n)
{
	size_t old = kp_boot_size(p);
	void *q = malloc(n ? n : 1);
	if (q)
		memcpy(q, p, old < n ? old : n);
	return q;
}

/* realloc and reallocarray (after its overflow check): one call to the
 * real realloc, recorded once with the given kind. */
static __attribute__((noinline)) void *realloc_slow(void *p, size_t n,
						    int kind)
{
	RESOLVE_OR_BOOT(realloc, p ? NULL : kp_boot_alloc(n, 16));
	struct kp_tls *t = &kp_tls;
	if (!want(t))
		return kp_real.realloc(p, n);
	uint64_t t0 = kp_ticks();
	void *q = kp_real.realloc(p, n);
	int saved = errno;
	q = do_realloc(p, n, q, t0, kind);
	errno = saved;
	return q;
}

static KP_ALWAYS_INLINE void *realloc_as(void *p, size_t n, int kind)
{
	if (KP_UNLIKELY(p && kp_boot_owns(p)))
		return realloc_from_boot(p, n);
	void *(*real)(void *, size_t) = kp_real.realloc;
	if (KP_LIKELY(real != NULL) && pass())
		return KP_UNLIKELY(kp_side_on) && kp_tls.busy ?
			       busy_realloc(p, n) :
			       real(p, n);
	return realloc_slow(p, n, kind);
}

KP_EXPORT void *realloc(void *p, size_t n)
{
	return realloc_as(p, n, KP_ALLOC_REALLOC);
}

/*
 * glibc implements reallocarray as an overflow check and a call to realloc
 * through the PLT, which would reach our realloc too and count the call
 * twice. So do what glibc does here, on the real realloc, and record it
 * once (as REALLOCARRAY). For any allocator the two are the same call.
 */
KP_EXPORT void *reallocarray(void *p, size_t nmemb, size_t size)
{
	size_t n;
	if (__builtin_mul_overflow(nmemb, size, &n)) {
		errno = ENOMEM;
		return NULL;
	}
	return realloc_as(p, n, KP_ALLOC_REALLOCARRAY);
}

KP_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	RESOLVE_OR_BOOT(posix_memalign,
			(*out = kp_boot_alloc(n, align)) ? 0 : ENOMEM);
	struct kp_tls *t = &kp_tls;
	if (!want(t))
		return kp_real.posix_memalign(out, align, n);
	int rc = kp_real.posix_memalign(out, align, n);
	if (rc == 0)
		record_alloc(t, KP_ALLOC_POSIX_MEMALIGN, *out, n, align);
	return rc;
}

#define ALIGNED_HOOK(name, kind, params, args, size_expr, align_expr)    \
	KP_EXPORT void *name params                                       \
	{                                                                 \
		RESOLVE_OR_BOOT(name, kp_boot_alloc(size_expr, align_expr)); \
		struct kp_tls *t = &kp_tls;                               \
		if (!want(t))                                             \
			return kp_real.name args;                         \
		void *p = kp_real.name args;                              \
		if (p)                                                    \
			record_alloc(t, kind, p, size_expr, align_expr);  \
		return p;                                                 \
	}

ALIGNED_HOOK(aligned_alloc, KP_ALLOC_ALIGNED_ALLOC, (size_t align, size_t n),
	     (align, n), n, align)
ALIGNED_HOOK(memalign, KP_ALLOC_MEMALIGN, (size_t align, size_t n),
	     (align, n), n, align)
ALIGNED_HOOK(valloc, KP_ALLOC_VALLOC, (size_t n), (n), n, 4096)
ALIGNED_HOOK(pvalloc, KP_ALLOC_PVALLOC, (size_t n), (n), n, 4096)

KP_EXPORT size_t malloc_usable_size(void *p)
{
	if (p && kp_boot_owns(p))
		return kp_boot_size(p);
	RESOLVE_OR_BOOT(malloc_usable_size, 0);
	return kp_real.malloc_usable_size(p);
}
