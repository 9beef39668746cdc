/* SPDX-License-Identifier: MIT */
/*
 * The memory pass: allocation counts, peak heap, blocks in use at exit,
 * allocation sites and leaks with a confidence.
 *
 * Per trace it keeps the live blocks in a pointer map and counters per local
 * stack; at the end of the trace the blocks still live are the leaks, the
 * counters are folded into allocation sites keyed by (executable, canonical
 * stack), and the per-trace state is dropped. Memory is therefore bounded by
 * the live blocks of one process plus the unique sites of all of them.
 *
 * Counting follows valgrind, so the two can be compared: a realloc is one
 * allocation call and one free call; free(NULL) is not a call at all.
 *
 * So do the classes of a leak scan at the process's exit, when the
 * recorder made one (LEAK and LEAK_SCAN records): each block in use at
 * the end is definitely, indirectly or possibly lost as its LEAK record
 * says, else still reachable; a site's and a process's blocks are
 * counted by class, and a leak group's confidence starts from them.
 *
 * Temporary allocations follow heaptrack, per thread: a block is temporary
 * when the thread that allocated it frees it (or reallocs it) before
 * allocating or freeing anything else. Each thread's last allocation is
 * all that takes, kept in a small table indexed by thread id: two threads
 * whose ids are equal modulo its size share an entry and may miss some of
 * each other's (never count one that is not).
 */
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "json.h"

/*
 * A pointer can be live more than once in the merged stream: thread A frees
 * p and thread B gets p back from malloc, but A's FREE lands in a later frame
 * than B's ALLOC. That is rare, so the map is split in two:
 *   - the primary map holds one incarnation per pointer (unique keys, so a
 *     lookup stops at the first match: one probe in the common case), and
 *     counts in ndup how many more incarnations of it are live;
 *   - the duplicate map, a multiset (linear probing keeps duplicates of a
 *     key in one probe run), holds those extra incarnations. It is only
 *     looked at when ndup says there is something there.
 * The number of incarnations per pointer is capped: past the cap the oldest
 * is presumed freed by an event we never got (counted in evicted), which
 * keeps a hostile trace from building one huge probe run.
 */
#define KP_MAX_INCARNATIONS 8

struct blk {
	uint64_t ptr;   /* 0 = empty slot (ALLOC of NULL is never stored) */
	uint64_t size;
	uint64_t ts;    /* allocation time */
	uint32_t site;  /* local stack index */
	uint16_t ndup;  /* primary map: incarnations of ptr in the dup map */
	uint8_t leak;   /* enum kp_leak_class its LEAK record gave, else 0
			 * (the slot had room: no map of its own for them) */
};

/*
 * A pointer's home slot is the top bits of its hash, ptr times a random
 * odd number (multiply-shift: one multiplication, and a trace cannot aim
 * pointers at one slot without knowing the number). The whole hash can
 * be computed ahead: it stays valid when the map grows.
 */
struct ptrmap {
	struct blk *slots;
	size_t cap, n;  /* cap is a power of two */
	unsigned shift; /* 64 - log2(cap) */
	uint64_t mul;   /* odd */
};

/*
 * Counters per local stack of the current trace. Only these two change per
 * event, so they are all the per-event working set holds (16 bytes a
 * stack). The frees of a site are not counted as they happen: every block
 * allocated is freed, evicted or still live at the end, so frees = allocs -
 * unstored (failed allocations, evictions) - leaked.
 */
struct msite {
	uint64_t allocs, bytes;
	uint64_t live, peak; /* bytes from here in use now, and at most */
};

/* The rest, filled at the end of the trace. */
struct msite_end {
	uint64_t leaked_blocks, leaked_bytes;
	uint64_t min_leak_ts;
};

struct mem_state {
	unsigned slot;
	/* the current trace */
	struct ptrmap map;   /* one incarnation per pointer */
	struct ptrmap dups;  /* the others (a multiset) */
	struct msite *msites;
	uint64_t *unstored;  /* per local stack: failed allocs, evictions */
	uint64_t *temps;     /* per local stack: temporary allocations */
	size_t nmsites;
	uint32_t last_id, last_local; /* cache: consecutive allocs share stacks */
	int have_last;
	/* per thread: the pointer it allocated last if it has allocated or
	 * freed nothing since, else 0 (see the top of the file) */
	struct {
		uint32_t tid;
		uint64_t ptr;
	} tl[256];
	struct kp_mem_totals cur;
	struct kp_early early; /* frees stamped before their ALLOC */
	/* ts of the 2^k-th allocation of the trace, for "start-up" */
	uint64_t pow2_ts[64];
	/* the sites' bytes in use at the last two times 2^k ms of the
	 * trace that it reached (snap[1] the later), for their growth */
	struct {
		uint64_t ts;
		uint64_t *live; /* per local stack; n of them */
		size_t n, cap;
	} snap[2];
	uint64_t next_snap;
	uint64_t scan_ts;    /* when its LEAK_SCAN (cur.scan) was written */
	/* all traces */
	struct kp_mem_totals total;
	struct kp_site *sites;
	size_t nsites, sites_cap;
	struct kp_idmap site_ids;   /* exe << 32 | gstack -> index */
	const struct kp_site **leaks, **top_calls, **top_bytes, **top_temp;
	const struct kp_site **top_peak;
	size_t nleaks, ntop_calls, ntop_bytes, ntop_temp, ntop_peak;
};

/* ---- pointer maps ---------------------------------------------------------- */

static KP_ALWAYS_INLINE uint64_t pm_hash(const struct ptrmap *m, uint64_t ptr)
{
	return ptr * m->mul;
}

static KP_ALWAYS_INLINE size_t pm_home(const struct ptrmap *m, uint64_t ptr)
{
	return (size_t)(pm_hash(m, ptr) >> m->shift);
}

/* Put b in the first free slot of its probe run (no duplicate check). */
static void pm_place(struct ptrmap *m, const struct blk *b)
{
	size_t mask = m->cap - 1, i = pm_home(m, b->ptr);

	while (m->slots[i].ptr)
		i = (i + 1) & mask;
	m->slots[i] = *b;
	m->n++;
}

/*
 * Zeroed slots on a cache line boundary, so that none straddles two lines:
 * malloc's 16-byte alignment splits every other one, an access is then
 * two misses, and the prefetch of mem_run() fetches only the first.
 */
_Static_assert(64 % sizeof(struct blk) == 0, "a slot divides a cache line");

static struct blk *pm_alloc(size_t cap)
{
	size_t bytes;
	void *p;

	if (__builtin_mul_overflow(cap, sizeof(struct blk), &bytes) ||
	    posix_memalign(&p, 64, bytes))
		die(1, "out of memory (allocating %zu slots)", cap);
	memset(p, 0, bytes);
	return p;
}

static void pm_grow(struct ptrmap *m)
{
	struct ptrmap old = *m;

	m->cap = old.cap ? old.cap * 2 : 1024;
	m->shift = (unsigned)__builtin_clzll(m->cap) + 1;
	m->slots = pm_alloc(m->cap);
	m->n = 0;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].ptr)
			pm_place(m, &old.slots[i]);
	free(old.slots);
}

/* Keep the load at most 1/2: short probe runs. */
static KP_ALWAYS_INLINE void pm_reserve(struct ptrmap *m)
{
	if (KP_UNLIKELY((m->n + 1) * 2 > m->cap))
		pm_grow(m);
}

/* Remove slot i, shifting later members of the run back (no tombstones). */
static void pm_delete_shift(struct ptrmap *m, size_t i)
{
	size_t mask = m->cap - 1, j = i;

	for (;;) {
		j = (j + 1) & mask;
		if (!m->slots[j].ptr)
			break;
		size_t k = pm_home(m, m->slots[j].ptr);
		/* Move j into the hole i unless its home lies in (i, j]. */
		int stay = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (!stay) {
			m->slots[i] = m->slots[j];
			i = j;
		}
	}
	m->slots[i].ptr = 0;
	m->n--;
}

/* pm_delete_shift(), with the usual case inline: at a load of at most
 * 1/2 the slot after i is mostly free, and then nothing moves. */
static KP_ALWAYS_INLINE void pm_delete(struct ptrmap *m, size_t i)
{
	if (KP_LIKELY(!m->slots[(i + 1) & (m->cap - 1)].ptr)) {
		m->slots[i].ptr = 0;
		m->n--;
		return;
	}
	pm_delete_shift(m, i);
}

/*
 * Primary map: the slot of ptr, or (return 0) the free slot where it would
 * go. The map must have a free slot.
 */
static KP_ALWAYS_INLINE int pm_find(const struct ptrmap *m, uint64_t ptr,
				    uint64_t hash, size_t *slot)
{
	size_t mask = m->cap - 1, i = (size_t)(hash >> m->shift);

	for (;; i = (i + 1) & mask) {
		uint64_t p = m->slots[i].ptr;
		if (p == ptr) {
			*slot = i;
			return 1;
		}
		if (!p) {
			*slot = i;
			return 0;
		}
	}
}

/*
 * Among the incarnations of ptr (the primary slot pi and its duplicates),
 * pick the one a free at ts releases: the newest allocated at or before ts
 * (the one the free can have seen), else the oldest; or with ts ==
 * UINT64_MAX and oldest_only, just the oldest. @return the slot, in the
 * primary map if *in_dups comes back 0, else in the dup map.
 */
static size_t pick_incarnation(const struct mem_state *ms, size_t pi,
			       uint64_t ts, int oldest_only, int *in_dups)
{
	const struct ptrmap *m = &ms->map, *d = &ms->dups;
	const struct blk *pb = &m->slots[pi];
	uint64_t ptr = pb->ptr;
	size_t best = SIZE_MAX, oldest = SIZE_MAX;
	uint64_t best_ts = 0, oldest_ts = 0;
	int best_dup = 0, oldest_dup = 0;

	if (!oldest_only && pb->ts <= ts) {
		best = pi;
		best_ts = pb->ts;
	}
	oldest = pi;
	oldest_ts = pb->ts;
	if (d->cap) {
		size_t mask = d->cap - 1;
		for (size_t i = pm_home(d, ptr); d->slots[i].ptr;
		     i = (i + 1) & mask) {
			const struct blk *b = &d->slots[i];
			if (b->ptr != ptr)
				continue;
			if (!oldest_only && b->ts <= ts &&
			    (best == SIZE_MAX || b->ts >= best_ts)) {
				best = i;
				best_ts = b->ts;
				best_dup = 1;
			}
			if (b->ts < oldest_ts) {
				oldest = i;
				oldest_ts = b->ts;
				oldest_dup = 1;
			}
		}
	}
	if (best == SIZE_MAX) {
		*in_dups = oldest_dup;
		return oldest;
	}
	*in_dups = best_dup;
	return best;
}

/*
 * Remove the incarnation at (slot, in_dups) of the pointer whose primary
 * slot is pi. When the primary one goes and duplicates remain, one of them
 * moves up into the primary slot.
 */
static void remove_incarnation(struct mem_state *ms, size_t pi, size_t slot,
			       int in_dups)
{
	struct ptrmap *m = &ms->map, *d = &ms->dups;
	struct blk *pb = &m->slots[pi];

	if (in_dups) {
		pb->ndup--;
		pm_delete(d, slot);
		return;
	}
	if (!pb->ndup) {
		pm_delete(m, pi);
		return;
	}
	size_t mask = d->cap - 1, i = pm_home(d, pb->ptr);
	while (d->slots[i].ptr != pb->ptr)
		i = (i + 1) & mask;
	uint16_t ndup = pb->ndup - 1;
	*pb = d->slots[i];
	pb->ndup = ndup;
	pm_delete(d, i);
}

/* ---- helpers -------------------------------------------------------------- */

static struct mem_state *mem_state_of(const struct kp_analysis *an)
{
	return kp_pass_state(an, &kp_pass_memory);
}

static KP_ALWAYS_INLINE uint32_t mem_site(struct mem_state *ms, struct kp_trace *t,
			 uint32_t id)
{
	uint32_t local;
	/* kp_trace_stack(), with its common case inline; other ids once per
	 * run of allocations from them (an id's local never changes) */
	if (KP_LIKELY(id < t->stack_direct_cap) && t->stack_direct[id]) {
		local = t->stack_direct[id] - 1;
	} else {
		if (!ms->have_last || ms->last_id != id) {
			ms->last_local = kp_trace_stack(t, id);
			ms->last_id = id;
			ms->have_last = 1;
		}
		local = ms->last_local;
	}
	if (local >= ms->nmsites) {
		size_t n = t->stacks_cap > local ? t->stacks_cap : local + 1;
		ms->msites = xrealloc_array(ms->msites, n, sizeof(*ms->msites));
		memset(ms->msites + ms->nmsites, 0,
		       (n - ms->nmsites) * sizeof(*ms->msites));
		ms->unstored = xrealloc_array(ms->unstored, n,
					      sizeof(*ms->unstored));
		memset(ms->unstored + ms->nmsites, 0,
		       (n - ms->nmsites) * sizeof(*ms->unstored));
		ms->temps = xrealloc_array(ms->temps, n, sizeof(*ms->temps));
		memset(ms->temps + ms->nmsites, 0,
		       (n - ms->nmsites) * sizeof(*ms->temps));
		ms->nmsites = n;
	}
	return local;
}

/*
 * Close the heap-over-time slices that end at or before ts (the event at
 * ts has not changed live_bytes yet): each takes the most in use during
 * it, and the next starts at what is in use now. At KP_HEAP_SLICES, pairs
 * merge and the slices double in length, so the loop runs at most
 * KP_HEAP_SLICES times between doublings, and the doublings stop at 2^56
 * ns: a hostile timestamp costs little.
 */
static int heap_slices_merge(struct kp_mem_totals *c)
{
	if (c->slice_ns >= (uint64_t)1 << 56) {
		c->slice_end = UINT64_MAX; /* no more slices */
		return -1;
	}
	for (uint32_t i = 0; i < KP_HEAP_SLICES / 2; i++) {
		c->heap[i] = c->heap[2 * i] > c->heap[2 * i + 1]
				     ? c->heap[2 * i]
				     : c->heap[2 * i + 1];
		c->heap_min[i] = c->heap_min[2 * i] < c->heap_min[2 * i + 1]
					 ? c->heap_min[2 * i]
					 : c->heap_min[2 * i + 1];
	}
	c->nslices = KP_HEAP_SLICES / 2;
	c->slice_ns *= 2;
	c->slice_end = (c->nslices + 1) * c->slice_ns;
	return 0;
}

static __attribute__((noinline)) void heap_slices_close(
	struct kp_mem_totals *c, uint64_t ts)
{
	if (!c->slice_ns) {
		c->slice_ns = 1000000;
		c->slice_end = c->slice_ns;
		c->slice_max = c->slice_min = c->live_bytes;
	}
	while (ts >= c->slice_end) {
		if (c->nslices == KP_HEAP_SLICES) {
			if (heap_slices_merge(c) < 0)
				return;
			continue;
		}
		c->heap_min[c->nslices] = c->slice_min;
		c->heap[c->nslices++] = c->slice_max;
		c->slice_max = c->slice_min = c->live_bytes;
		c->slice_end = (c->nslices + 1) * c->slice_ns;
	}
}

static KP_ALWAYS_INLINE void heap_at(struct kp_mem_totals *c, uint64_t ts)
{
	if (KP_UNLIKELY(ts >= c->slice_end))
		heap_slices_close(c, ts);
}

/* The last, partial slice, at the end of the trace (ts). */
static void heap_slices_end(struct kp_mem_totals *c, uint64_t ts)
{
	heap_at(c, ts);
	if (c->nslices == KP_HEAP_SLICES && heap_slices_merge(c) < 0)
		return;
	c->heap_min[c->nslices] = c->slice_min;
	c->heap[c->nslices++] = c->slice_max;
}

static void mem_live_add(struct mem_state *ms, uint64_t size, uint64_t ts)
{
	heap_at(&ms->cur, ts);
	ms->cur.live_bytes = kp_sat_add(ms->cur.live_bytes, size);
	if (ms->cur.live_bytes > ms->cur.slice_max)
		ms->cur.slice_max = ms->cur.live_bytes;
	ms->cur.live_blocks++;
	if (ms->cur.live_bytes > ms->cur.peak_bytes) {
		ms->cur.peak_bytes = ms->cur.live_bytes;
		ms->cur.peak_time_ns = ts;
	}
}

static void mem_live_sub(struct mem_state *ms, uint64_t size, uint64_t ts)
{
	heap_at(&ms->cur, ts);
	ms->cur.live_bytes = kp_sat_sub(ms->cur.live_bytes, size);
	if (ms->cur.live_bytes < ms->cur.slice_min)
		ms->cur.slice_min = ms->cur.live_bytes;
	if (ms->cur.live_blocks)
		ms->cur.live_blocks--;
}

/* Block b of a site is no longer in use. */
static KP_ALWAYS_INLINE void site_live_sub(struct mem_state *ms,
					   const struct blk *b)
{
	if (KP_LIKELY(b->site < ms->nmsites))
		ms->msites[b->site].live =
			kp_sat_sub(ms->msites[b->site].live, b->size);
}

static KP_ALWAYS_INLINE void mem_alloc(struct mem_state *ms,
				       struct kp_trace *t, uint64_t ts,
				       uint64_t ptr, uint64_t hash,
				       uint64_t size, uint32_t stack)
{
	struct ptrmap *m = &ms->map;
	uint32_t local = mem_site(ms, t, stack);
	struct msite *s = &ms->msites[local];

	ms->cur.alloc_calls++;
	if (KP_UNLIKELY(!(ms->cur.alloc_calls & (ms->cur.alloc_calls - 1))))
		ms->pow2_ts[__builtin_ctzll(ms->cur.alloc_calls)] = ts;
	ms->cur.bytes_allocated = kp_sat_add(ms->cur.bytes_allocated, size);
	/* by size class; a hostile trace's sizes may wrap the byte count of
	 * a class around, which misleads no other figure */
	unsigned c = size ? 64 - (unsigned)__builtin_clzll(size) : 0;
	ms->cur.size_calls[c]++;
	ms->cur.size_bytes[c] += size;
	s->allocs++;
	s->bytes = kp_sat_add(s->bytes, size);
	if (KP_UNLIKELY(!ptr)) {
		ms->unstored[local]++; /* a failed allocation holds nothing */
		return;
	}
	s->live = kp_sat_add(s->live, size);
	if (s->live > s->peak)
		s->peak = s->live;

	struct blk b = { .ptr = ptr, .size = size, .ts = ts, .site = local };
	size_t i;
	pm_reserve(m);
	if (KP_LIKELY(!pm_find(m, ptr, hash, &i))) {
		m->slots[i] = b;
		m->n++;
		mem_live_add(ms, size, ts);
		return;
	}
	/* ptr is live already: another incarnation. */
	struct blk *pb = &m->slots[i];
	if (pb->ndup + 1 >= KP_MAX_INCARNATIONS) {
		/* At the cap: the oldest is presumed freed; the new one
		 * takes its slot (same pointer, so the same probe run). */
		int in_dups;
		size_t o = pick_incarnation(ms, i, UINT64_MAX, 1, &in_dups);
		struct blk *ob = in_dups ? &ms->dups.slots[o] : pb;
		mem_live_sub(ms, ob->size, ts);
		site_live_sub(ms, ob);
		ms->cur.evicted++;
		ms->unstored[ob->site]++;
		b.ndup = ob->ndup;
		*ob = b;
	} else {
		pm_reserve(&ms->dups);
		pm_place(&ms->dups, &b);
		pb->ndup++;
	}
	mem_live_add(ms, size, ts);
}

/*
 * Free ptr at ts (@return 0 when no block of ptr is live: an unmatched
 * free): the newest live incarnation allocated at or before ts
 * (the one this free can have seen), else the oldest one.
 */
static KP_ALWAYS_INLINE int mem_free(struct mem_state *ms, uint64_t ts,
				     uint64_t ptr, uint64_t hash, int temp)
{
	struct ptrmap *m = &ms->map;
	size_t i;

	ms->cur.free_calls++;
	if (!m->cap || !ptr || !pm_find(m, ptr, hash, &i)) {
		/* Allocated before kprof started, the ALLOC was lost, or it
		 * comes next, stamped a little later (struct kp_early). */
		if (ptr)
			ms->cur.unmatched_frees++;
		return 0;
	}
	const struct blk *b = &m->slots[i];
	size_t slot = i;
	int in_dups = 0;
	if (KP_UNLIKELY(b->ndup)) {
		slot = pick_incarnation(ms, i, ts, 0, &in_dups);
		if (in_dups)
			b = &ms->dups.slots[slot];
	}
	ms->cur.bytes_freed = kp_sat_add(ms->cur.bytes_freed, b->size);
	if (temp) {
		ms->cur.temporary++;
		if (b->site < ms->nmsites)
			ms->temps[b->site]++;
	}
	mem_live_sub(ms, b->size, ts);
	site_live_sub(ms, b);
	if (KP_LIKELY(!in_dups && !b->ndup))
		pm_delete(m, i); /* the only incarnation */
	else
		remove_incarnation(ms, i, slot, in_dups);
	return 1;
}

/* Thread tid's entry of ms->tl, taken over if another thread had it. */
static KP_ALWAYS_INLINE uint64_t *thread_last(struct mem_state *ms,
					      uint32_t tid)
{
	unsigned i = tid & (KP_ARRAY_SIZE(ms->tl) - 1);
	if (KP_UNLIKELY(ms->tl[i].tid != tid)) {
		ms->tl[i].tid = tid;
		ms->tl[i].ptr = 0;
	}
	return &ms->tl[i].ptr;
}

/* An ALLOC's block just stored: the one an early FREE by another thread
 * freed? Then free it now, a free counted (unmatched) already. */
static KP_ALWAYS_INLINE void mem_early(struct mem_state *ms,
				       const struct kp_event *e,
				       uint64_t hash)
{
	if (KP_LIKELY(!ms->early.any) || !e->ptr ||
	    !kp_early_take(&ms->early, e->ptr, e->ts, e->tid))
		return;
	ms->cur.free_calls--;
	ms->cur.unmatched_frees--;
	ms->cur.reordered_frees++;
	mem_free(ms, e->ts, e->ptr, hash, 0);
	*thread_last(ms, e->tid) = 0;
}

/* A FREE's event, or a REALLOC's free half: one that finds no live block
 * may be early (struct kp_early). */
static KP_ALWAYS_INLINE void mem_free_event(struct mem_state *ms,
					   const struct kp_event *e,
					   uint64_t hash)
{
	uint64_t *last = thread_last(ms, e->tid);
	if (KP_UNLIKELY(!mem_free(ms, e->ts, e->ptr, hash, *last == e->ptr)) &&
	    e->ptr)
		kp_early_add(&ms->early, e->ptr, e->ts, e->tid);
	*last = 0;
}

/* ---- pass hooks ------------------------------------------------------------ */

static void *mem_init(struct kp_analysis *an, unsigned slot)
{
	struct mem_state *ms = xcalloc(1, sizeof(*ms));

	(void)an;
	ms->slot = slot;
	ms->total.peak_pid = -1;
	ms->total.scan.status = -1;
	kp_idmap_init(&ms->site_ids);
	return ms;
}

static void mem_begin_trace(void *state, struct kp_trace *t)
{
	struct mem_state *ms = state;

	(void)t;
	memset(&ms->cur, 0, sizeof(ms->cur));
	ms->cur.scan.status = -1;
	memset(&ms->early, 0, sizeof(ms->early));
	memset(ms->pow2_ts, 0, sizeof(ms->pow2_ts));
	ms->map.mul = kp_random_seed() | 1;
	ms->dups.mul = ms->map.mul;
	ms->have_last = 0;
	ms->nmsites = 0;
	memset(ms->tl, 0, sizeof(ms->tl));
	for (int k = 0; k < 2; k++) {
		ms->snap[k].ts = 0;
		ms->snap[k].n = 0;
	}
	ms->next_snap = 1000000; /* 1 ms */
}

/*
 * The first event at or after next_snap: the sites' bytes in use then
 * (before the event) become the later snapshot, the later the earlier.
 * Each time 2^k ms the trace passed without an event had the same state.
 * The times stop doubling at 2^62 ns: a hostile timestamp costs little.
 */
static __attribute__((noinline)) void mem_snapshot(struct mem_state *ms,
						   uint64_t ts)
{
	while (ts >= ms->next_snap) {
		uint64_t *old = ms->snap[0].live;
		size_t old_cap = ms->snap[0].cap;
		ms->snap[0] = ms->snap[1];
		ms->snap[1].live = old;
		ms->snap[1].cap = old_cap;
		if (old_cap < ms->nmsites) {
			ms->snap[1].cap = ms->nmsites;
			ms->snap[1].live = xrealloc_array(old, ms->nmsites,
							  sizeof(*old));
		}
		for (size_t i = 0; i < ms->nmsites; i++)
			ms->snap[1].live[i] = ms->msites[i].live;
		ms->snap[1].n = ms->nmsites;
		ms->snap[1].ts = ms->next_snap;
		if (ms->next_snap >= (uint64_t)1 << 62) {
			ms->next_snap = UINT64_MAX;
			break;
		}
		ms->next_snap *= 2;
	}
}

/* Bytes from local stack i in use at snapshot k (0 if it came later). */
static uint64_t snap_live(const struct mem_state *ms, int k, size_t i)
{
	return i < ms->snap[k].n ? ms->snap[k].live[i] : 0;
}

/*
 * A LEAK record: the leak scan at exit found the block of ptr in use and
 * lost (its kind, the class). The class goes in the block's slot, of the
 * incarnation allocated last at or before the record; a record of a class
 * it does not know, or for a pointer that was not in use then (a hostile
 * trace), changes nothing, and a later one for the same block wins. So
 * what the scan found costs no memory beyond the blocks in use.
 */
static void mem_leak(struct mem_state *ms, const struct kp_event *e,
		     const struct kp_rec *r)
{
	uint64_t ptr = (uint64_t)r->u.ext.v[KP_LEAK_PTR];
	int in_dups = 0;
	size_t i;

	if (e->kind < KP_LEAK_DEFINITE || e->kind > KP_LEAK_CLASS_MAX || !ptr ||
	    !pm_find(&ms->map, ptr, pm_hash(&ms->map, ptr), &i))
		return;
	size_t slot = ms->map.slots[i].ndup
			      ? pick_incarnation(ms, i, e->ts, 0, &in_dups)
			      : i;
	struct blk *b = in_dups ? &ms->dups.slots[slot] : &ms->map.slots[slot];
	if (b->ts <= e->ts)
		b->leak = e->kind;
}

/* The LEAK_SCAN record: whether the scan ran, and when (the last one of
 * the trace counts: there is one, at its exit). */
static void mem_leak_scan(struct mem_state *ms, const struct kp_event *e,
			  const struct kp_rec *r)
{
	const int64_t *v = r->u.ext.v;

	ms->cur.scan.status = e->kind;
	ms->cur.scan.root_bytes = v[KP_LS_ROOT_BYTES] > 0
					  ? (uint64_t)v[KP_LS_ROOT_BYTES] : 0;
	ms->cur.scan.dur_ns = v[KP_LS_DUR] > 0 ? (uint64_t)v[KP_LS_DUR] : 0;
	ms->scan_ts = e->ts;
}

/* hash: pm_hash(&ms->map, e->ptr) */
static KP_ALWAYS_INLINE void mem_event(struct mem_state *ms,
				       struct kp_trace *t,
				       const struct kp_batch *bt,
				       const struct kp_event *e, uint64_t hash)
{
	if (KP_UNLIKELY(e->ts >= ms->next_snap))
		mem_snapshot(ms, e->ts);
	switch (e->type) {
	case KP_REC_ALLOC:
		mem_alloc(ms, t, e->ts, e->ptr, hash, e->size, e->stack);
		*thread_last(ms, e->tid) = e->ptr;
		mem_early(ms, e, hash);
		break;
	case KP_REC_FREE:
		if (e->ptr) /* free(NULL) is no call (valgrind agrees) */
			mem_free_event(ms, e, hash);
		break;
	case KP_EV_REALLOC_ALLOC:
		ms->cur.realloc_calls++;
		mem_alloc(ms, t, e->ts, e->ptr, hash, e->size, e->stack);
		*thread_last(ms, e->tid) = e->ptr;
		mem_early(ms, e, hash);
		break;
	case KP_EV_REALLOC_FREE:
		mem_free_event(ms, e, hash);
		break;
	case KP_REC_LEAK:
		mem_leak(ms, e, kp_batch_rec(bt, e));
		break;
	case KP_REC_LEAK_SCAN:
		mem_leak_scan(ms, e, kp_batch_rec(bt, e));
		break;
	case KP_REC_SNAPSHOT: /* (kills.c: the heap's growth after it) */
		ms->cur.heap_at_snapshot = ms->cur.live_bytes;
		break;
	default:
		break;
	}
}

/*
 * The map slots an event will touch are a random access each, usually a
 * cache miss; the batch says which pointers come next, so hash them and
 * fetch their slots (and an allocation's site counters) this many events
 * ahead, letting the misses overlap. A power of two.
 */
#define KP_PREFETCH_AHEAD 8

static KP_ALWAYS_INLINE uint64_t mem_prefetch(const struct mem_state *ms,
					      const struct kp_trace *t,
					      const struct kp_event *e)
{
	const struct ptrmap *m = &ms->map;
	uint64_t hash = pm_hash(m, e->ptr);

	__builtin_prefetch(&m->slots[hash >> m->shift]);
	if (e->stack < t->stack_direct_cap) {
		uint32_t local = t->stack_direct[e->stack] - 1;
		if (local < ms->nmsites)
			__builtin_prefetch(&ms->msites[local]);
	}
	return hash;
}

static void mem_events(void *state, struct kp_trace *t,
		       const struct kp_batch *b)
{
	struct mem_state *ms = state;
	const struct kp_event *ev = b->ev;
	size_t n = b->n;
	uint64_t hash[KP_PREFETCH_AHEAD];
	size_t i;

	if (!ms->map.cap)
		pm_grow(&ms->map);
	for (i = 0; i < n && i < KP_PREFETCH_AHEAD; i++)
		hash[i] = mem_prefetch(ms, t, &ev[i]);
	/* all but the last KP_PREFETCH_AHEAD: each fetches for a later one */
	for (i = 0; i + KP_PREFETCH_AHEAD < n; i++) {
		size_t slot = i & (KP_PREFETCH_AHEAD - 1);
		uint64_t h = hash[slot];
		hash[slot] = mem_prefetch(ms, t, &ev[i + KP_PREFETCH_AHEAD]);
		mem_event(ms, t, b, &ev[i], h);
	}
	for (; i < n; i++)
		mem_event(ms, t, b, &ev[i],
			  hash[i & (KP_PREFETCH_AHEAD - 1)]);
}

static struct kp_site *site_get(struct mem_state *ms, uint32_t exe,
				uint32_t gstack)
{
	uint64_t key = (uint64_t)exe << 32 | gstack;
	uint32_t idx = kp_idmap_get(&ms->site_ids, key);

	if (idx != UINT32_MAX)
		return &ms->sites[idx];
	if (ms->nsites >= ms->sites_cap) {
		ms->sites_cap = ms->sites_cap ? ms->sites_cap * 2 : 64;
		ms->sites = xrealloc_array(ms->sites, ms->sites_cap,
					   sizeof(*ms->sites));
	}
	struct kp_site *s = &ms->sites[ms->nsites];
	memset(s, 0, sizeof(*s));
	s->exe = exe;
	s->gstack = gstack;
	s->all_startup = 1;
	kp_idmap_put(&ms->site_ids, key, (uint32_t)ms->nsites++);
	return s;
}

#define KP_MAX_SITE_PIDS 64

static void site_add_pid(struct kp_site *s, int64_t pid)
{
	for (uint32_t i = 0; i < s->npids; i++)
		if (s->pids[i] == pid)
			return;
	if (s->npids >= KP_MAX_SITE_PIDS)
		return;
	if (s->npids >= s->pids_cap) {
		s->pids_cap = s->pids_cap ? s->pids_cap * 2 : 2;
		s->pids = xrealloc_array(s->pids, s->pids_cap,
					 sizeof(*s->pids));
	}
	s->pids[s->npids++] = pid;
}

/*
 * Was this stack's outermost frame in the dynamic loader? Then the block
 * was allocated before main (a library constructor, _dl_init): start-up by
 * definition, however short the run.
 */
static int stack_before_main(const struct kp_analysis *an, uint32_t g)
{
	if (g == 0 || g >= an->ngstacks)
		return 0;
	const struct kp_gstack *gs = &an->gstacks[g];
	const struct kp_frame *f = kp_gframe(an, gs, gs->depth - 1);
	if (f->module >= an->nmodules)
		return 0;
	const char *path = an->modules[f->module].path;
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	return !strncmp(base, "ld-linux", 8) || !strncmp(base, "ld.so", 5) ||
	       !strncmp(base, "ld-musl", 7);
}

static void reach_add(struct kp_reach *r, const struct kp_reach *x)
{
	for (unsigned c = 0; c <= KP_LEAK_CLASS_MAX; c++) {
		r->blocks[c] = kp_sat_add(r->blocks[c], x->blocks[c]);
		r->bytes[c] = kp_sat_add(r->bytes[c], x->bytes[c]);
	}
}

static void reach_block(struct kp_reach *r, const struct blk *b)
{
	r->blocks[b->leak]++;
	r->bytes[b->leak] = kp_sat_add(r->bytes[b->leak], b->size);
}

/* The scans of all traces so far: what ran, what did not and why. */
static void scan_total(struct kp_leak_scan *g, const struct kp_leak_scan *x)
{
	g->dur_ns = kp_sat_add(g->dur_ns, x->dur_ns); /* ran or not */
	if (x->status != KP_LS_DONE) {
		g->not_scanned++;
		if (x->status > KP_LS_DONE && g->status <= KP_LS_DONE)
			g->status = x->status; /* the first that did not run */
		return;
	}
	g->scanned++;
	if (g->status < 0)
		g->status = KP_LS_DONE;
	reach_add(&g->reach, &x->reach);
	g->after_blocks = kp_sat_add(g->after_blocks, x->after_blocks);
	g->after_bytes = kp_sat_add(g->after_bytes, x->after_bytes);
	g->root_bytes = kp_sat_add(g->root_bytes, x->root_bytes);
}

static void mem_end_trace(void *state, struct kp_trace *t)
{
	struct mem_state *ms = state;
	struct kp_proc *p = t->proc;
	struct kp_mem_totals *pt = xcalloc(1, sizeof(*pt));
	struct kp_leak_scan *sc = &ms->cur.scan;

	/* Whatever is still in the map was in use when the trace ended. When
	 * the leak scan at exit ran, each block is in the class its LEAK
	 * record gave, else reachable; or in none when it was allocated
	 * after the scan, which did not see it. */
	struct msite_end *ends = xcalloc(ms->nmsites ? ms->nmsites : 1,
					 sizeof(*ends));
	struct kp_reach *reach = NULL;
	if (sc->status == KP_LS_DONE)
		reach = xcalloc(ms->nmsites ? ms->nmsites : 1, sizeof(*reach));
	for (int k = 0; k < 2; k++) {
		struct ptrmap *m = k ? &ms->dups : &ms->map;
		for (size_t i = 0; i < m->cap; i++) {
			const struct blk *b = &m->slots[i];
			if (!b->ptr || b->site >= ms->nmsites)
				continue;
			struct msite_end *e = &ends[b->site];
			if (!e->leaked_blocks || b->ts < e->min_leak_ts)
				e->min_leak_ts = b->ts;
			e->leaked_blocks++;
			e->leaked_bytes = kp_sat_add(e->leaked_bytes, b->size);
			if (!reach)
				continue;
			if (!b->leak && b->ts > ms->scan_ts) {
				sc->after_blocks++;
				sc->after_bytes = kp_sat_add(sc->after_bytes,
							     b->size);
				continue;
			}
			reach_block(&reach[b->site], b);
			reach_block(&sc->reach, b);
		}
		free(m->slots);
		memset(m, 0, sizeof(*m));
	}

	/* "Start-up" is the first tenth of the process's allocations, in time
	 * order (deterministic, unlike a share of the run time): the time of
	 * its 2^k-th allocation for the largest 2^k <= a tenth of them. */
	uint64_t tenth = ms->cur.alloc_calls / 10;
	uint64_t startup = tenth ? ms->pow2_ts[63 - __builtin_clzll(tenth)]
				 : ms->pow2_ts[0];
	for (size_t i = 0; i < ms->nmsites && i < t->nstacks; i++) {
		const struct msite *m = &ms->msites[i];
		const struct msite_end *e = &ends[i];
		if (!m->allocs)
			continue; /* then nothing was freed or leaked either */
		uint64_t frees = m->allocs - ms->unstored[i] - e->leaked_blocks;
		uint32_t g = kp_trace_canon_stack(t, (uint32_t)i);
		struct kp_site *s = site_get(ms, p->exe_id, g);
		s->allocs = kp_sat_add(s->allocs, m->allocs);
		s->bytes = kp_sat_add(s->bytes, m->bytes);
		s->frees = kp_sat_add(s->frees, frees);
		s->temporary = kp_sat_add(s->temporary, ms->temps[i]);
		if (m->peak > s->peak_bytes) /* the largest of a process */
			s->peak_bytes = m->peak;
		s->nprocs++;
		if (ms->snap[0].ts && snap_live(ms, 1, i) > snap_live(ms, 0, i))
			s->grew_bytes = kp_sat_add(s->grew_bytes,
				snap_live(ms, 1, i) - snap_live(ms, 0, i));
		if (e->leaked_blocks) {
			s->leaked_blocks = kp_sat_add(s->leaked_blocks,
						      e->leaked_blocks);
			s->leaked_bytes = kp_sat_add(s->leaked_bytes,
						     e->leaked_bytes);
			site_add_pid(s, p->pid);
			if (reach)
				reach_add(&s->reach, &reach[i]);
			if ((e->min_leak_ts > startup &&
			     !stack_before_main(t->an, g)) ||
			    e->leaked_blocks != m->allocs)
				s->all_startup = 0;
		}
	}
	free(ends);
	free(reach);
	free(ms->msites);
	free(ms->unstored);
	free(ms->temps);
	ms->msites = NULL;
	ms->unstored = NULL;
	ms->temps = NULL;
	ms->nmsites = 0;
	ms->have_last = 0;

	heap_slices_end(&ms->cur, t->last_ts);
	if (ms->snap[0].ts) {
		ms->cur.grow_from_ns = ms->snap[0].ts;
		ms->cur.grow_to_ns = ms->snap[1].ts;
	}
	*pt = ms->cur;
	pt->peak_pid = p->pid;
	p->pass_data[ms->slot] = pt;

	struct kp_mem_totals *g = &ms->total;
	g->alloc_calls = kp_sat_add(g->alloc_calls, pt->alloc_calls);
	g->free_calls = kp_sat_add(g->free_calls, pt->free_calls);
	g->realloc_calls = kp_sat_add(g->realloc_calls, pt->realloc_calls);
	g->bytes_allocated = kp_sat_add(g->bytes_allocated,
					pt->bytes_allocated);
	g->bytes_freed = kp_sat_add(g->bytes_freed, pt->bytes_freed);
	g->live_bytes = kp_sat_add(g->live_bytes, pt->live_bytes);
	g->live_blocks = kp_sat_add(g->live_blocks, pt->live_blocks);
	g->unmatched_frees = kp_sat_add(g->unmatched_frees,
					pt->unmatched_frees);
	g->evicted = kp_sat_add(g->evicted, pt->evicted);
	g->reordered_frees = kp_sat_add(g->reordered_frees,
					pt->reordered_frees);
	g->temporary = kp_sat_add(g->temporary, pt->temporary);
	scan_total(&g->scan, &pt->scan);
	for (unsigned c = 0; c < KP_SIZE_CLASSES; c++) {
		g->size_calls[c] = kp_sat_add(g->size_calls[c],
					      pt->size_calls[c]);
		g->size_bytes[c] = kp_sat_add(g->size_bytes[c],
					      pt->size_bytes[c]);
	}
	if (g->peak_pid == -1 || pt->peak_bytes > g->peak_bytes) {
		g->peak_bytes = pt->peak_bytes;
		g->peak_time_ns = pt->peak_time_ns;
		g->peak_pid = p->pid;
	}
}

/* Deterministic orders: ties fall back to the order sites were created. */
static int cmp_leak(const void *a, const void *b)
{
	const struct kp_site *x = *(const struct kp_site *const *)a;
	const struct kp_site *y = *(const struct kp_site *const *)b;

	if (x->leaked_bytes != y->leaked_bytes)
		return x->leaked_bytes > y->leaked_bytes ? -1 : 1;
	if (x->leaked_blocks != y->leaked_blocks)
		return x->leaked_blocks > y->leaked_blocks ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int cmp_calls(const void *a, const void *b)
{
	const struct kp_site *x = *(const struct kp_site *const *)a;
	const struct kp_site *y = *(const struct kp_site *const *)b;

	if (x->allocs != y->allocs)
		return x->allocs > y->allocs ? -1 : 1;
	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int cmp_temp(const void *a, const void *b)
{
	const struct kp_site *x = *(const struct kp_site *const *)a;
	const struct kp_site *y = *(const struct kp_site *const *)b;

	if (x->temporary != y->temporary)
		return x->temporary > y->temporary ? -1 : 1;
	if (x->allocs != y->allocs)
		return x->allocs > y->allocs ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int cmp_peak(const void *a, const void *b)
{
	const struct kp_site *x = *(const struct kp_site *const *)a;
	const struct kp_site *y = *(const struct kp_site *const *)b;

	if (x->peak_bytes != y->peak_bytes)
		return x->peak_bytes > y->peak_bytes ? -1 : 1;
	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	return x < y ? -1 : x > y;
}

static int cmp_bytes(const void *a, const void *b)
{
	const struct kp_site *x = *(const struct kp_site *const *)a;
	const struct kp_site *y = *(const struct kp_site *const *)b;

	if (x->bytes != y->bytes)
		return x->bytes > y->bytes ? -1 : 1;
	if (x->allocs != y->allocs)
		return x->allocs > y->allocs ? -1 : 1;
	return x < y ? -1 : x > y;
}

/*
 * How sure are we that a group of blocks still live at exit is a leak?
 * Blocks the C runtime keeps by design are low (runtime_sites). Otherwise,
 * evidence from the site's own history:
 *   - allocated once per process, early, never freed: a singleton or a
 *     cache that lives as long as the process (low);
 *   - the site never frees anything, more than once: high;
 *   - the site frees nearly everything (>= 95 %): the survivors are probably
 *     just the last ones in flight (low);
 *   - otherwise some are freed and some not: medium.
 */
/*
 * Blocks the C runtime allocates and keeps for the life of the process by
 * design: not the program's leaks (valgrind calls them "still reachable"
 * or frees them in __libc_freeres; heaptrack suppresses similar ones).
 * Matched on the innermost frames after allocator wrappers are trimmed.
 */
static const struct {
	const char *fn, *why;
} runtime_sites[] = {
	{ "allocate_dtv", "glibc's per-thread TLS vector, kept with the "
			  "thread's cached stack" },
	{ "_dl_allocate_tls", "glibc's per-thread TLS block, kept with the "
			      "thread's cached stack" },
	{ "_IO_file_doallocate", "a stdio buffer, which glibc keeps until exit" },
	{ "_nl_load_locale_from_archive", "locale data loaded by setlocale" },
	{ "_nl_find_locale", "locale data loaded by setlocale" },
	{ "new_composite_name", "locale name kept by setlocale" },
	{ "__tzfile_read", "time zone data loaded by tzset" },
	{ "_dl_new_object", "the dynamic loader's record of a library" },
	{ "_dl_map_object", "the dynamic loader's record of a library" },
};

/* Is this leak group one of the runtime's own? Says why in r if so. */
static int runtime_site(struct kp_analysis *an, const struct kp_site *s,
			char *r, size_t n_r)
{
	const struct kp_symframe *f[4];
	size_t first;
	size_t n = kp_symbolize_stack(kp_analysis_symbols(an), s->gstack, f,
				      KP_ARRAY_SIZE(f), &first);

	for (size_t i = 0; i < n; i++) {
		if (!f[i]->function)
			continue;
		for (size_t k = 0; k < KP_ARRAY_SIZE(runtime_sites); k++)
			if (strcmp(f[i]->function, runtime_sites[k].fn) == 0) {
				snprintf(r, n_r, "C runtime: %s",
					 runtime_sites[k].why);
				return 1;
			}
	}
	return 0;
}

/*
 * A leak group's confidence, and why (kept for leak groups only: a
 * trace may have tens of thousands of sites). When a leak scan at exit
 * saw every block of the group, what it found comes first: a block no
 * pointer leads to is lost, whatever the site's history says; one
 * that only a pointer into its middle leads to may be; and blocks all
 * still reachable may be kept on purpose (a cache, a pool), so the
 * history can then say no more than medium. The C runtime's own blocks
 * stay low: they are kept by design, and glibc hides some of its
 * pointers from a scan (mangled, or in memory the scan does not read).
 */
static void site_confidence(struct kp_analysis *an, struct kp_site *s)
{
	unsigned long long allocs = s->allocs, frees = s->frees;
	const struct kp_reach *rc = kp_site_reach(s);
	unsigned long long lost = 0, pos = 0;
	char r[160];

	if (rc) {
		lost = kp_sat_add(rc->blocks[KP_LEAK_DEFINITE],
				  rc->blocks[KP_LEAK_INDIRECT]);
		pos = rc->blocks[KP_LEAK_POSSIBLE];
	}
	int runtime = runtime_site(an, s, r, sizeof(r));

	if (runtime) {
		s->conf = KP_CONF_LOW;
	} else if (lost) {
		s->conf = KP_CONF_HIGH;
		snprintf(r, sizeof(r), "%llu of %llu block%s unreachable at "
			 "exit (no pointer to %s was left)", lost,
			 (unsigned long long)s->leaked_blocks,
			 s->leaked_blocks == 1 ? "" : "s",
			 lost == 1 ? "it" : "them");
	} else if (pos) {
		s->conf = KP_CONF_MEDIUM;
		snprintf(r, sizeof(r), "only pointers into the middle of %llu "
			 "block%s were left at exit", pos, pos == 1 ? "" : "s");
	} else if (s->all_startup && s->allocs <= s->npids &&
	    s->leaked_blocks == s->allocs) {
		s->conf = KP_CONF_LOW;
		snprintf(r, sizeof(r), "allocated once at "
			 "start-up (likely a singleton/cache)");
	} else if (frees == 0 && allocs <= 1) {
		s->conf = KP_CONF_MEDIUM;
		snprintf(r, sizeof(r), "allocated once and never freed");
	} else if (frees == 0) {
		s->conf = KP_CONF_HIGH;
		snprintf(r, sizeof(r),
			 "this site never frees (0 of %llu blocks freed)",
			 allocs);
	} else if ((unsigned __int128)frees * 100 >=
		   (unsigned __int128)allocs * 95) {
		unsigned pct = (unsigned)((unsigned __int128)frees * 100 /
					  (allocs ? allocs : 1));
		if (pct > 99)
			pct = 99;
		s->conf = KP_CONF_LOW;
		snprintf(r, sizeof(r),
			 "%u%% of this site's blocks were freed; these are "
			 "the last few", pct);
	} else {
		s->conf = KP_CONF_MEDIUM;
		snprintf(r, sizeof(r),
			 "%llu of %llu blocks from this site were freed",
			 frees, allocs);
	}
	if (rc && !runtime && !lost && !pos) {
		if (s->conf == KP_CONF_HIGH)
			s->conf = KP_CONF_MEDIUM;
		size_t n = strlen(r);
		snprintf(r + n, sizeof(r) - n,
			 "; every block still reachable at exit");
	}
	free(s->reason);
	s->reason = xstrdup(r);
}

/* Sift a[i] down the heap a[0, n) whose root is its largest by cmp. */
static void heap_down(const struct kp_site **a, size_t n, size_t i,
		      int (*cmp)(const void *, const void *))
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < n && cmp(&a[l], &a[m]) > 0)
			m = l;
		if (l + 1 < n && cmp(&a[l + 1], &a[m]) > 0)
			m = l + 1;
		if (m == i)
			return;
		const struct kp_site *t = a[i];
		a[i] = a[m];
		a[m] = t;
		i = m;
	}
}

/*
 * Order a[0, n) so that its first k entries are the k first by cmp, in
 * order; the rest follow in an order of their own (the same every run).
 * The reports show the first --top sites of a ranking, and what reads
 * them all (flame graphs, pprof) does not need them in order: a trace of
 * 79,000 sites spent ~9 % of its analysis in full sorts of five rankings.
 * The k kept so far are a heap whose root is the last of them.
 */
static void rank(const struct kp_site **a, size_t n, size_t k,
		 int (*cmp)(const void *, const void *))
{
	if (n < 256 || k >= n / 8) {
		qsort(a, n, sizeof(*a), cmp);
		return;
	}
	if (!k)
		return;
	for (size_t i = k / 2; i-- > 0;)
		heap_down(a, k, i, cmp);
	for (size_t i = k; i < n; i++)
		if (cmp(&a[i], &a[0]) < 0) {
			const struct kp_site *t = a[0];
			a[0] = a[i];
			a[i] = t;
			heap_down(a, k, 0, cmp);
		}
	qsort(a, k, sizeof(*a), cmp);
}

const char *kp_leak_kind_name(unsigned c)
{
	static const char *const names[] = {
		[KP_LEAK_REACHABLE] = "reachable",
		[KP_LEAK_DEFINITE] = "definite",
		[KP_LEAK_INDIRECT] = "indirect",
		[KP_LEAK_POSSIBLE] = "possible",
	};
	return c <= KP_LEAK_CLASS_MAX ? names[c] : "unknown";
}

/* Is the leak group s of a kind --leak-kinds asks for (or not seen by a
 * scan, which cannot say)? */
static int leak_kind_shown(const struct kp_analysis *an,
			   const struct kp_site *s)
{
	unsigned want = an->opts->leak_kinds;
	const struct kp_reach *r = kp_site_reach(s);
	if (!want || !r)
		return 1;
	for (unsigned c = 0; c <= KP_LEAK_CLASS_MAX; c++)
		if ((want >> c & 1) && r->blocks[c])
			return 1;
	return 0;
}

static void mem_finish(void *state, struct kp_analysis *an)
{
	struct mem_state *ms = state;
	size_t n = ms->nsites;

	ms->leaks = xrealloc_array(NULL, n, sizeof(*ms->leaks));
	ms->top_calls = xrealloc_array(NULL, n, sizeof(*ms->top_calls));
	ms->top_bytes = xrealloc_array(NULL, n, sizeof(*ms->top_bytes));
	ms->top_temp = xrealloc_array(NULL, n, sizeof(*ms->top_temp));
	ms->top_peak = xrealloc_array(NULL, n, sizeof(*ms->top_peak));
	ms->nleaks = ms->ntop_calls = ms->ntop_bytes = ms->ntop_temp = 0;
	ms->ntop_peak = 0;
	for (size_t i = 0; i < n; i++) {
		struct kp_site *s = &ms->sites[i];
		if (s->leaked_blocks && leak_kind_shown(an, s)) {
			site_confidence(an, s);
			ms->leaks[ms->nleaks++] = s;
		}
		if (s->allocs) {
			ms->top_calls[ms->ntop_calls++] = s;
			ms->top_bytes[ms->ntop_bytes++] = s;
		}
		if (s->temporary)
			ms->top_temp[ms->ntop_temp++] = s;
		if (s->peak_bytes)
			ms->top_peak[ms->ntop_peak++] = s;
	}
	/* every leak group in order (the leaks command lists them all) */
	qsort(ms->leaks, ms->nleaks, sizeof(*ms->leaks), cmp_leak);
	size_t k = an->opts->top;
	rank(ms->top_calls, ms->ntop_calls, k, cmp_calls);
	rank(ms->top_bytes, ms->ntop_bytes, k, cmp_bytes);
	rank(ms->top_temp, ms->ntop_temp, k, cmp_temp);
	rank(ms->top_peak, ms->ntop_peak, k, cmp_peak);
}

static void mem_free_state(void *state, struct kp_analysis *an)
{
	struct mem_state *ms = state;

	for (size_t i = 0; i < an->nprocs; i++) {
		free(an->procs[i]->pass_data[ms->slot]);
		an->procs[i]->pass_data[ms->slot] = NULL;
	}
	for (size_t i = 0; i < ms->nsites; i++) {
		free(ms->sites[i].pids);
		free(ms->sites[i].reason);
	}
	free(ms->sites);
	free(ms->map.slots);
	free(ms->dups.slots);
	free(ms->msites);
	free(ms->unstored);
	free(ms->temps);
	free(ms->snap[0].live);
	free(ms->snap[1].live);
	free(ms->leaks);
	free(ms->top_calls);
	free(ms->top_bytes);
	free(ms->top_temp);
	free(ms->top_peak);
	kp_idmap_free(&ms->site_ids);
	free(ms);
}

/* ---- accessors --------------------------------------------------------------- */

const struct kp_mem_totals *kp_mem_totals(const struct kp_analysis *an)
{
	struct mem_state *ms = mem_state_of(an);
	return ms ? &ms->total : NULL;
}

const struct kp_mem_totals *kp_mem_proc_totals(const struct kp_analysis *an,
					       const struct kp_proc *p)
{
	struct mem_state *ms = mem_state_of(an);
	return ms ? p->pass_data[ms->slot] : NULL;
}

size_t kp_mem_leaks(const struct kp_analysis *an,
		    const struct kp_site *const **out)
{
	struct mem_state *ms = mem_state_of(an);
	*out = ms ? ms->leaks : NULL;
	return ms ? ms->nleaks : 0;
}

size_t kp_mem_top_calls(const struct kp_analysis *an,
			const struct kp_site *const **out)
{
	struct mem_state *ms = mem_state_of(an);
	*out = ms ? ms->top_calls : NULL;
	return ms ? ms->ntop_calls : 0;
}

size_t kp_mem_top_bytes(const struct kp_analysis *an,
			const struct kp_site *const **out)
{
	struct mem_state *ms = mem_state_of(an);
	*out = ms ? ms->top_bytes : NULL;
	return ms ? ms->ntop_bytes : 0;
}

size_t kp_mem_top_temporary(const struct kp_analysis *an,
			    const struct kp_site *const **out)
{
	struct mem_state *ms = mem_state_of(an);
	*out = ms ? ms->top_temp : NULL;
	return ms ? ms->ntop_temp : 0;
}

size_t kp_mem_top_peak(const struct kp_analysis *an,
		       const struct kp_site *const **out)
{
	struct mem_state *ms = mem_state_of(an);
	*out = ms ? ms->top_peak : NULL;
	return ms ? ms->ntop_peak : 0;
}

const char *kp_confidence_name(enum kp_confidence c)
{
	switch (c) {
	case KP_CONF_HIGH: return "high";
	case KP_CONF_MEDIUM: return "medium";
	case KP_CONF_LOW: return "low";
	}
	return "low";
}

/* A leak scan's status: its name in the JSON report, and in words why
 * it did not run (record.h); -1, no LEAK_SCAN record. */
static const struct {
	const char *name, *why;
} scan_status[] = {
	[KP_LS_DONE] = { "done", "it ran" },
	[KP_LS_FORKED] = { "forked", "a fork child whose ancestors' traces "
				     "were not read" },
	[KP_LS_LOST] = { "events_lost", "memory events were lost or not read "
					"back" },
	[KP_LS_NOMEM] = { "no_memory", "out of memory" },
	[KP_LS_NOREAD] = { "no_read", "its memory could not be read, or a "
					  "sandbox (seccomp) might forbid it" },
};

const char *kp_leak_scan_name(int status)
{
	if (status < 0)
		return "none";
	return (size_t)status < KP_ARRAY_SIZE(scan_status) ?
		       scan_status[status].name : "unknown";
}

const char *kp_leak_scan_why(int status)
{
	if (status < 0)
		return "no scan in its trace: an exec, a kill, or not asked "
		       "for";
	return (size_t)status < KP_ARRAY_SIZE(scan_status) ?
		       scan_status[status].why : "a status this kprof does "
						 "not know";
}

/* The renderers live in report_text.c and report_json.c. */
static void mem_report_text(void *state, struct kp_analysis *an, FILE *out)
{
	(void)state;
	/* Another pass's command (cpu, ...) shows that pass's report only. */
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i] != &kp_pass_memory &&
		    an->passes[i]->command &&
		    kp_command_is(an, an->passes[i]->command))
			return;
	kp_mem_report_text(an, out);
}

static void mem_report_json(void *state, struct kp_analysis *an,
			    struct kp_json *j)
{
	(void)state;
	kp_mem_report_json(an, j);
}

static void mem_proc_text(void *state, struct kp_analysis *an,
			  const struct kp_proc *p, FILE *out)
{
	(void)state;
	kp_mem_proc_text(an, p, out);
}

static void mem_proc_json(void *state, struct kp_analysis *an,
			  const struct kp_proc *p, struct kp_json *j)
{
	(void)state;
	kp_mem_proc_json(an, p, j);
}

const struct kp_pass kp_pass_memory = {
	.name = "memory",
	.command = "leaks",
	.xInit = mem_init,
	.xBeginTrace = mem_begin_trace,
	.xEvents = mem_events,
	.xEndTrace = mem_end_trace,
	.xFinish = mem_finish,
	.xProcText = mem_proc_text,
	.xProcJson = mem_proc_json,
	.xReportText = mem_report_text,
	.xReportJson = mem_report_json,
	.xFree = mem_free_state,
};
