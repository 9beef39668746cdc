/* SPDX-License-Identifier: MIT */
/*
 * A synthetic but realistic stream of allocation events, for measuring the
 * trace size per event and the decode rate. It imitates what the preload
 * would record from a real program:
 *   - 2 threads, each with its own heap region (glibc gives each thread an
 *     arena), events drained by the writer thread in per-thread batches of
 *     64..512 (one ring at a time), so the tid changes every batch;
 *   - a malloc that reuses memory: 16-byte-granular size classes with LIFO
 *     free lists (tcache-like), falling back to a bump pointer;
 *   - ~1000 distinct call stacks, picked with a Zipf-like skew; each call
 *     site mostly asks for one size (sizes 16..512); a STACK record the
 *     first time a stack is used;
 *   - frees: half of them the most recent allocation (temporaries), half a
 *     random live block; a live set of a few thousand blocks per thread;
 *   - timestamps 50..200 ns apart within a thread.
 * Deterministic (own PRNG) so sizes are comparable between runs.
 */
#ifndef KP_WORKLOAD_H
#define KP_WORKLOAD_H

#include <stdint.h>
#include <string.h>

#include "record.h"

#define WL_STACKS 1000
#define WL_THREADS 2
#define WL_CLASSES 34
#define WL_FREECAP 64
#define WL_LIVE_TARGET 4000
#define WL_LIVE_MAX 16384
#define WL_POOL 3000 /* distinct function addresses stacks are made of */

struct wl_thread {
	uint32_t tid;
	uint64_t ts;
	uint64_t top; /* bump pointer of this thread's heap */
	uint64_t freel[WL_CLASSES][WL_FREECAP];
	int nfree[WL_CLASSES];
	uint64_t live[WL_LIVE_MAX];
	int nlive;
};

struct workload {
	uint64_t rng;
	struct wl_thread th[WL_THREADS];
	uint32_t cdf[WL_STACKS]; /* Zipf-ish, scaled to 2^32 */
	uint32_t size[WL_STACKS];
	uint8_t depth[WL_STACKS];
	uint8_t seen[WL_STACKS];
	uint64_t pool[WL_POOL];
	uint64_t pcs[KP_MAX_STACK_DEPTH];
	int cur;     /* thread of the current batch */
	int left;    /* events left in the batch */
	struct kp_rec pending; /* event held back behind its STACK record */
	int has_pending;
	uint64_t events;       /* ALLOC + FREE produced */
};

static inline uint64_t wl_rand(struct workload *w)
{
	/* xorshift64* */
	uint64_t x = w->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	w->rng = x;
	return x * 0x2545F4914F6CDD1Dull;
}

static inline uint32_t wl_below(struct workload *w, uint32_t n)
{
	return (uint32_t)((wl_rand(w) >> 32) * n >> 32);
}

static inline void wl_init(struct workload *w, uint64_t seed)
{
	memset(w, 0, sizeof(*w));
	w->rng = seed | 1;
	double tot = 0, acc = 0;
	for (int i = 0; i < WL_STACKS; i++)
		tot += 1.0 / (i + 1);
	for (int i = 0; i < WL_STACKS; i++) {
		acc += 1.0 / (i + 1);
		w->cdf[i] = (uint32_t)(acc / tot * 4294967295.0);
		/* Mostly small power-of-two-ish requests, some anything. */
		static const uint32_t common[] = { 16, 24, 32, 40, 48, 64,
						   80, 96, 128, 256, 512 };
		w->size[i] = wl_below(w, 4) ? common[wl_below(w, 11)] :
					      16 + wl_below(w, 497);
		w->depth[i] = (uint8_t)(8 + wl_below(w, 23));
	}
	for (int i = 0; i < WL_POOL; i++)
		w->pool[i] = 0x555555554000ull + 0x1000 + wl_below(w, 0x200000);
	for (int t = 0; t < WL_THREADS; t++) {
		w->th[t].tid = 4242 + (uint32_t)t;
		w->th[t].top = t == 0 ? 0x55555555a000ull :
					0x7ffff0000b10ull - 0x2000000ull * t;
		w->th[t].ts = 1000000;
	}
	w->cur = 0;
}

static inline int wl_pick_stack(struct workload *w)
{
	uint32_t x = (uint32_t)(wl_rand(w) >> 32);
	int lo = 0, hi = WL_STACKS - 1;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		if (w->cdf[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Fill *r with the STACK record of stack s (ids are s + 1). */
static inline void wl_stack_rec(struct workload *w, int s, struct kp_rec *r)
{
	uint64_t h = (uint64_t)s * 0x9E3779B97F4A7C15ull;
	memset(r, 0, sizeof(*r));
	r->type = KP_REC_STACK;
	r->u.stack.id = (uint32_t)s + 1;
	r->u.stack.depth = w->depth[s];
	/* Outer frames shared between stacks (main, a few dispatchers). */
	for (int i = 0; i < w->depth[s]; i++) {
		int outer = w->depth[s] - 1 - i;
		uint64_t k = outer < 4 ? (uint64_t)outer :
					 (h >> (i % 32)) + (uint64_t)i * 31;
		w->pcs[i] = w->pool[k % WL_POOL] + (h >> 40) % 64;
	}
	r->u.stack.pcs = w->pcs;
}

/* The next record: ALLOC, FREE or (before a new stack's first use) STACK. */
static inline void wl_next(struct workload *w, struct kp_rec *r)
{
	if (w->has_pending) {
		*r = w->pending;
		w->has_pending = 0;
		return;
	}
	if (w->left == 0) {
		w->cur = (int)wl_below(w, WL_THREADS);
		w->left = 64 + (int)wl_below(w, 449);
	}
	w->left--;
	struct wl_thread *t = &w->th[w->cur];
	t->ts += 50 + wl_below(w, 151);
	memset(r, 0, sizeof(*r));
	r->tid = t->tid;
	r->ts = t->ts;
	w->events++;

	int alloc_p = 50 + (WL_LIVE_TARGET - t->nlive) * 50 / WL_LIVE_TARGET;
	if (t->nlive == 0 || (t->nlive < WL_LIVE_MAX &&
			      (int)wl_below(w, 100) < alloc_p)) {
		int s = wl_pick_stack(w);
		uint32_t size = wl_below(w, 5) ? w->size[s] :
						 16 + wl_below(w, 497);
		uint64_t chunk = (size + 8 + 15) & ~15ull;
		if (chunk < 32)
			chunk = 32;
		int cls = (int)(chunk / 16);
		uint64_t p;
		if (t->nfree[cls])
			p = t->freel[cls][--t->nfree[cls]];
		else {
			p = t->top + 16;
			t->top += chunk;
		}
		t->live[t->nlive++] = p | (uint64_t)cls << 56;
		r->type = KP_REC_ALLOC;
		r->u.alloc.ptr = p;
		r->u.alloc.size = size;
		r->u.alloc.stack = (uint32_t)s + 1;
		if (!w->seen[s]) {
			w->seen[s] = 1;
			w->pending = *r;
			w->has_pending = 1;
			wl_stack_rec(w, s, r);
		}
		return;
	}
	int i = wl_below(w, 2) ? t->nlive - 1 : (int)wl_below(w, (uint32_t)t->nlive);
	uint64_t v = t->live[i];
	t->live[i] = t->live[--t->nlive];
	uint64_t p = v & ((1ull << 56) - 1);
	int cls = (int)(v >> 56);
	if (t->nfree[cls] < WL_FREECAP)
		t->freel[cls][t->nfree[cls]++] = p;
	r->type = KP_REC_FREE;
	r->u.free.ptr = p;
}

#endif
