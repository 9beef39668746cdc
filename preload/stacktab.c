/* SPDX-License-Identifier: MIT */
/*
 * Stack capture and interning. The app thread unwinds with libunwind
 * (unw_backtrace, per-thread cache), drops kprof's own frames, and looks the
 * pc array up in one process-wide table so each unique stack gets a small
 * dense id and is written to the trace once.
 *
 * Lookups take no lock: a slot holds (hash tag << 32 | id) and is published
 * with release order after the stack's pcs are stored. Inserts (rare: one
 * per unique stack) take a spin lock and re-probe. The table and the pc
 * store are mmapped with MAP_NORESERVE and never move; when either is full
 * new stacks get id 0 and are counted (kp_stacktab_dropped).
 */
#include "state.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>

#define TAB_BITS 20
#define TAB_SLOTS (1u << TAB_BITS)
#define MAX_STACKS (TAB_SLOTS / 4 * 3)
#define STORE_WORDS ((size_t)64 << 20) /* 512 MiB of address space */

static _Atomic uint64_t *slots;  /* tag << 32 | id, 0 = empty */
static uint64_t *offsets;        /* id -> word offset in store */
static uint64_t *store;          /* per stack: depth, then pcs */
static size_t store_used;        /* words, under lock */
static _Atomic uint32_t count;   /* ids 1..count are published */
static _Atomic int lock;
static _Atomic uint64_t dropped; /* stacks not interned (table full) */

static void *map_noreserve(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

int kp_stacktab_init(void)
{
	slots = map_noreserve(TAB_SLOTS * sizeof(*slots));
	offsets = map_noreserve((MAX_STACKS + 1) * sizeof(*offsets));
	store = map_noreserve(STORE_WORDS * sizeof(*store));
	if (!slots || !offsets || !store)
		return -1;
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
	unw_set_cache_size(unw_local_addr_space, 1024, 0);
	/* Warm libunwind up here, outside any hook: its first use takes
	 * locks and initialises lazily. */
	void *warm[4];
	unw_backtrace(warm, 4);
	return 0;
}

void kp_stacktab_lock(void)
{
	while (atomic_exchange_explicit(&lock, 1, memory_order_acquire))
		sched_yield();
}

void kp_stacktab_unlock(void)
{
	atomic_store_explicit(&lock, 0, memory_order_release);
}

static uint64_t hash_pcs(const uint64_t *pcs, uint32_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
	for (uint32_t i = 0; i < n; i++) {
		h ^= pcs[i];
		h *= 0xff51afd7ed558ccdull;
		h ^= h >> 29;
	}
	return h;
}

static int same(uint32_t id, const uint64_t *pcs, uint32_t n)
{
	const uint64_t *s = store + offsets[id];
	return s[0] == n && memcmp(s + 1, pcs, n * sizeof(*pcs)) == 0;
}

/* Probe for pcs. @return its id, or 0 with *slot at the empty slot. */
static uint32_t probe(uint64_t h, const uint64_t *pcs, uint32_t n,
		      uint32_t *slot)
{
	uint64_t tag = (h >> 32) | 1;
	uint32_t i = (uint32_t)h & (TAB_SLOTS - 1);
	for (;;) {
		uint64_t v = atomic_load_explicit(&slots[i],
						  memory_order_acquire);
		if (!v) {
			*slot = i;
			return 0;
		}
		if ((v >> 32) == tag && same((uint32_t)v, pcs, n))
			return (uint32_t)v;
		i = (i + 1) & (TAB_SLOTS - 1);
	}
}

static uint32_t intern(const uint64_t *pcs, uint32_t n, int *fresh)
{
	uint64_t h = hash_pcs(pcs, n);
	uint32_t slot, id = probe(h, pcs, n, &slot);
	if (KP_LIKELY(id))
		return id;
	kp_stacktab_lock();
	id = probe(h, pcs, n, &slot); /* someone may have won the race */
	if (!id) {
		uint32_t next = atomic_load_explicit(&count,
						     memory_order_relaxed) + 1;
		if (next > MAX_STACKS || store_used + n + 1 > STORE_WORDS) {
			atomic_fetch_add(&dropped, 1);
		} else {
			uint64_t *s = store + store_used;
			s[0] = n;
			memcpy(s + 1, pcs, n * sizeof(*pcs));
			offsets[next] = store_used;
			store_used += n + 1;
			id = next;
			*fresh = 1;
			atomic_store_explicit(&count, next,
					      memory_order_release);
			atomic_store_explicit(&slots[slot],
					      ((h >> 32) | 1) << 32 | id,
					      memory_order_release);
		}
	}
	kp_stacktab_unlock();
	return id;
}

uint32_t kp_stack_capture(void)
{
	int depth = kp.cfg.stack_depth;
	if (depth <= 0)
		return 0;
	void *buf[KP_MAX_STACK_DEPTH + 16];
	int n = unw_backtrace(buf, depth + 16);
	int i = 0;
	while (i < n && (uintptr_t)buf[i] >= kp.self_lo &&
	       (uintptr_t)buf[i] < kp.self_hi)
		i++;
	n -= i;
	if (n <= 0)
		return 0;
	if (n > depth)
		n = depth;
	int fresh = 0;
	const uint64_t *pcs = (const uint64_t *)(buf + i);
	uint32_t id = intern(pcs, (uint32_t)n, &fresh);
	/* A new stack through code no module covers: something was dlopened
	 * since the last scan. Rescan before the event is published so the
	 * writer sees the module no later than the stack. */
	if (fresh && !kp_modules_cover(pcs, (uint32_t)n))
		kp_modules_scan();
	return id;
}

uint32_t kp_stacktab_count(void)
{
	return atomic_load_explicit(&count, memory_order_acquire);
}

const uint64_t *kp_stacktab_get(uint32_t id, uint32_t *depth)
{
	const uint64_t *s = store + offsets[id];
	*depth = (uint32_t)s[0];
	return s + 1;
}

uint64_t kp_stacktab_dropped(void)
{
	return atomic_load(&dropped);
}
