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
 */
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "json.h"

/*
 * A pointer can be live more than once in the merged stream: thread A frees
 * p and thread B gets p back from malloc, but A's FREE lands in a later frame
 * than B's ALLOC. So the map is a multiset (linear probing keeps duplicates
 * of a key in one probe run). The number of incarnations per pointer is
 * capped: past the cap the oldest is presumed freed by an event we never got
 * (counted in evicted), which keeps a hostile trace from building one huge
 * probe run.
 */
#define KP_MAX_INCARNATIONS 8

struct blk {
	uint64_t ptr;   /* 0 = empty slot (ALLOC of NULL is never stored) */
	uint64_t size;
	uint64_t ts;    /* allocation time */
	uint32_t site;  /* local stack index */
	uint32_t pad;
};

struct ptrmap {
	struct blk *slots;
	size_t cap, n;  /* cap is a power of two */
	uint64_t seed;
};

/* Counters per local stack of the current trace. */
struct msite {
	uint64_t allocs, bytes, frees;
	uint64_t leaked_blocks, leaked_bytes;
	uint64_t min_leak_ts;
};

struct mem_state {
	unsigned slot;
	/* the current trace */
	struct ptrmap map;
	struct msite *msites;
	size_t nmsites;
	uint32_t last_id, last_local; /* cache: consecutive allocs share stacks */
	int have_last;
	struct kp_mem_totals cur;
	/* all traces */
	struct kp_mem_totals total;
	struct kp_site *sites;
	size_t nsites, sites_cap;
	struct kp_idmap site_ids;   /* exe << 32 | gstack -> index */
	const struct kp_site **leaks, **top_calls, **top_bytes;
	size_t nleaks, ntop_calls, ntop_bytes;
};

/* ---- pointer map --------------------------------------------------------- */

static size_t pm_home(const struct ptrmap *m, uint64_t ptr)
{
	return kp_mix64(ptr, m->seed) & (m->cap - 1);
}

static void pm_place(struct ptrmap *m, const struct blk *b)
{
	size_t mask = m->cap - 1, i = pm_home(m, b->ptr);

	while (m->slots[i].ptr)
		i = (i + 1) & mask;
	m->slots[i] = *b;
	m->n++;
}

static void pm_grow(struct ptrmap *m)
{
	struct ptrmap old = *m;

	m->cap = old.cap ? old.cap * 2 : 1024;
	m->slots = xcalloc(m->cap, sizeof(*m->slots));
	m->n = 0;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].ptr)
			pm_place(m, &old.slots[i]);
	free(old.slots);
}

/* Remove slot i, shifting later members of the run back (no tombstones). */
static void pm_delete(struct ptrmap *m, size_t i)
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

/* ---- helpers -------------------------------------------------------------- */

static struct mem_state *mem_state_of(const struct kp_analysis *an)
{
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i] == &kp_pass_memory)
			return an->pass_state[i];
	return NULL;
}

static uint32_t mem_site(struct mem_state *ms, struct kp_trace *t,
			 uint32_t id)
{
	if (!ms->have_last || ms->last_id != id) {
		ms->last_local = kp_trace_stack(t, id);
		ms->last_id = id;
		ms->have_last = 1;
	}
	uint32_t local = ms->last_local;
	if (local >= ms->nmsites) {
		size_t n = t->stacks_cap > local ? t->stacks_cap : local + 1;
		ms->msites = xrealloc_array(ms->msites, n, sizeof(*ms->msites));
		memset(ms->msites + ms->nmsites, 0,
		       (n - ms->nmsites) * sizeof(*ms->msites));
		ms->nmsites = n;
	}
	return local;
}

static void mem_live_add(struct mem_state *ms, uint64_t size, uint64_t ts)
{
	ms->cur.live_bytes = kp_sat_add(ms->cur.live_bytes, size);
	ms->cur.live_blocks++;
	if (ms->cur.live_bytes > ms->cur.peak_bytes) {
		ms->cur.peak_bytes = ms->cur.live_bytes;
		ms->cur.peak_time_ns = ts;
	}
}

static void mem_live_sub(struct mem_state *ms, uint64_t size)
{
	ms->cur.live_bytes = kp_sat_sub(ms->cur.live_bytes, size);
	if (ms->cur.live_blocks)
		ms->cur.live_blocks--;
}

static void mem_alloc(struct mem_state *ms, struct kp_trace *t, uint64_t ts,
		      uint64_t ptr, uint64_t size, uint32_t stack)
{
	struct ptrmap *m = &ms->map;
	uint32_t local = mem_site(ms, t, stack);
	struct msite *s = &ms->msites[local];

	ms->cur.alloc_calls++;
	ms->cur.bytes_allocated = kp_sat_add(ms->cur.bytes_allocated, size);
	s->allocs++;
	s->bytes = kp_sat_add(s->bytes, size);
	if (!ptr)
		return; /* a failed allocation holds nothing */

	if ((m->n + 1) * 8 > m->cap * 5)
		pm_grow(m);
	/* Count the incarnations of ptr already live; evict the oldest
	 * when at the cap. */
	size_t mask = m->cap - 1, count = 0, oldest = SIZE_MAX;
	for (size_t i = pm_home(m, ptr); m->slots[i].ptr; i = (i + 1) & mask) {
		if (m->slots[i].ptr != ptr)
			continue;
		count++;
		if (oldest == SIZE_MAX || m->slots[i].ts < m->slots[oldest].ts)
			oldest = i;
	}
	if (count >= KP_MAX_INCARNATIONS) {
		mem_live_sub(ms, m->slots[oldest].size);
		ms->cur.evicted++;
		pm_delete(m, oldest);
	}
	struct blk b = { .ptr = ptr, .size = size, .ts = ts, .site = local };
	pm_place(m, &b);
	mem_live_add(ms, size, ts);
}

/*
 * Free ptr at ts: the newest live incarnation allocated at or before ts
 * (the one this free can have seen), else the oldest one.
 */
static void mem_free(struct mem_state *ms, uint64_t ts, uint64_t ptr)
{
	struct ptrmap *m = &ms->map;

	ms->cur.free_calls++;
	if (!m->cap || !ptr) {
		if (ptr)
			ms->cur.unmatched_frees++;
		return;
	}
	size_t mask = m->cap - 1, best = SIZE_MAX, oldest = SIZE_MAX;
	for (size_t i = pm_home(m, ptr); m->slots[i].ptr; i = (i + 1) & mask) {
		const struct blk *b = &m->slots[i];
		if (b->ptr != ptr)
			continue;
		if (b->ts <= ts && (best == SIZE_MAX || b->ts >= m->slots[best].ts))
			best = i;
		if (oldest == SIZE_MAX || b->ts < m->slots[oldest].ts)
			oldest = i;
	}
	if (best == SIZE_MAX)
		best = oldest;
	if (best == SIZE_MAX) {
		/* Allocated before kprof started, or the ALLOC was lost. */
		ms->cur.unmatched_frees++;
		return;
	}
	const struct blk *b = &m->slots[best];
	if (b->site < ms->nmsites)
		ms->msites[b->site].frees++;
	ms->cur.bytes_freed = kp_sat_add(ms->cur.bytes_freed, b->size);
	mem_live_sub(ms, b->size);
	pm_delete(m, best);
}

/* ---- pass hooks ------------------------------------------------------------ */

static void *mem_init(struct kp_analysis *an, unsigned slot)
{
	struct mem_state *ms = xcalloc(1, sizeof(*ms));

	(void)an;
	ms->slot = slot;
	ms->total.peak_pid = -1;
	kp_idmap_init(&ms->site_ids);
	return ms;
}

static void mem_begin_trace(void *state, struct kp_trace *t)
{
	struct mem_state *ms = state;

	(void)t;
	memset(&ms->cur, 0, sizeof(ms->cur));
	ms->map.seed = kp_random_seed();
	ms->have_last = 0;
	ms->nmsites = 0;
}

static void mem_event(void *state, struct kp_trace *t,
		      const struct kp_rec *rec)
{
	struct mem_state *ms = state;

	switch (rec->type) {
	case KP_REC_ALLOC:
		mem_alloc(ms, t, rec->ts, rec->u.alloc.ptr, rec->u.alloc.size,
			  rec->u.alloc.stack);
		break;
	case KP_EV_REALLOC_ALLOC:
		ms->cur.realloc_calls++;
		mem_alloc(ms, t, rec->ts, rec->u.alloc.ptr, rec->u.alloc.size,
			  rec->u.alloc.stack);
		break;
	case KP_REC_FREE:
		if (!rec->u.free.ptr)
			break; /* free(NULL) is no call (valgrind agrees) */
		mem_free(ms, rec->ts, rec->u.free.ptr);
		break;
	case KP_EV_REALLOC_FREE:
		mem_free(ms, rec->ts, rec->u.free.ptr);
		break;
	default:
		break;
	}
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
	const struct kp_frame *f = &an->frames[gs->off + gs->depth - 1];
	if (f->module >= an->nmodules)
		return 0;
	const char *path = an->modules[f->module].path;
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	return !strncmp(base, "ld-linux", 8) || !strncmp(base, "ld.so", 5) ||
	       !strncmp(base, "ld-musl", 7);
}

static void mem_end_trace(void *state, struct kp_trace *t)
{
	struct mem_state *ms = state;
	struct kp_proc *p = t->proc;
	struct kp_mem_totals *pt = xcalloc(1, sizeof(*pt));

	/* Whatever is still in the map was in use when the trace ended. */
	for (size_t i = 0; i < ms->map.cap; i++) {
		const struct blk *b = &ms->map.slots[i];
		if (!b->ptr || b->site >= ms->nmsites)
			continue;
		struct msite *s = &ms->msites[b->site];
		if (!s->leaked_blocks || b->ts < s->min_leak_ts)
			s->min_leak_ts = b->ts;
		s->leaked_blocks++;
		s->leaked_bytes = kp_sat_add(s->leaked_bytes, b->size);
	}
	free(ms->map.slots);
	memset(&ms->map, 0, sizeof(ms->map));

	/* "Start-up" is the first tenth of the run. */
	uint64_t startup = p->duration_ns / 10;
	for (size_t i = 0; i < ms->nmsites && i < t->nstacks; i++) {
		const struct msite *m = &ms->msites[i];
		if (!m->allocs && !m->frees && !m->leaked_blocks)
			continue;
		uint32_t g = kp_trace_canon_stack(t, (uint32_t)i);
		struct kp_site *s = site_get(ms, p->exe_id, g);
		s->allocs = kp_sat_add(s->allocs, m->allocs);
		s->bytes = kp_sat_add(s->bytes, m->bytes);
		s->frees = kp_sat_add(s->frees, m->frees);
		if (m->allocs)
			s->nprocs++;
		if (m->leaked_blocks) {
			s->leaked_blocks = kp_sat_add(s->leaked_blocks,
						      m->leaked_blocks);
			s->leaked_bytes = kp_sat_add(s->leaked_bytes,
						     m->leaked_bytes);
			site_add_pid(s, p->pid);
			if ((m->min_leak_ts > startup &&
			     !stack_before_main(t->an, g)) ||
			    m->leaked_blocks != m->allocs)
				s->all_startup = 0;
		}
	}
	free(ms->msites);
	ms->msites = NULL;
	ms->nmsites = 0;
	ms->have_last = 0;

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
 * Evidence from the site's own history:
 *   - allocated once per process, early, never freed: a singleton or a
 *     cache that lives as long as the process (low);
 *   - the site never frees anything, more than once: high;
 *   - the site frees nearly everything (>= 95 %): the survivors are probably
 *     just the last ones in flight (low);
 *   - otherwise some are freed and some not: medium.
 */
static void site_confidence(struct kp_site *s)
{
	unsigned long long allocs = s->allocs, frees = s->frees;

	if (s->all_startup && s->allocs <= s->npids &&
	    s->leaked_blocks == s->allocs) {
		s->conf = KP_CONF_LOW;
		snprintf(s->reason, sizeof(s->reason), "allocated once at "
			 "start-up (likely a singleton/cache)");
	} else if (frees == 0 && allocs <= 1) {
		s->conf = KP_CONF_MEDIUM;
		snprintf(s->reason, sizeof(s->reason),
			 "allocated once and never freed");
	} else if (frees == 0) {
		s->conf = KP_CONF_HIGH;
		snprintf(s->reason, sizeof(s->reason),
			 "this site never frees (0 of %llu blocks freed)",
			 allocs);
	} else if ((unsigned __int128)frees * 100 >=
		   (unsigned __int128)allocs * 95) {
		unsigned pct = (unsigned)((unsigned __int128)frees * 100 /
					  (allocs ? allocs : 1));
		if (pct > 99)
			pct = 99;
		s->conf = KP_CONF_LOW;
		snprintf(s->reason, sizeof(s->reason),
			 "%u%% of this site's blocks were freed; these are "
			 "the last few", pct);
	} else {
		s->conf = KP_CONF_MEDIUM;
		snprintf(s->reason, sizeof(s->reason),
			 "%llu of %llu blocks from this site were freed",
			 frees, allocs);
	}
}

static void mem_finish(void *state, struct kp_analysis *an)
{
	struct mem_state *ms = state;
	size_t n = ms->nsites;

	(void)an;
	ms->leaks = xrealloc_array(NULL, n, sizeof(*ms->leaks));
	ms->top_calls = xrealloc_array(NULL, n, sizeof(*ms->top_calls));
	ms->top_bytes = xrealloc_array(NULL, n, sizeof(*ms->top_bytes));
	ms->nleaks = ms->ntop_calls = ms->ntop_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		struct kp_site *s = &ms->sites[i];
		if (s->leaked_blocks) {
			site_confidence(s);
			ms->leaks[ms->nleaks++] = s;
		}
		if (s->allocs) {
			ms->top_calls[ms->ntop_calls++] = s;
			ms->top_bytes[ms->ntop_bytes++] = s;
		}
	}
	qsort(ms->leaks, ms->nleaks, sizeof(*ms->leaks), cmp_leak);
	qsort(ms->top_calls, ms->ntop_calls, sizeof(*ms->top_calls),
	      cmp_calls);
	qsort(ms->top_bytes, ms->ntop_bytes, sizeof(*ms->top_bytes),
	      cmp_bytes);
}

static void mem_free_state(void *state, struct kp_analysis *an)
{
	struct mem_state *ms = state;

	for (size_t i = 0; i < an->nprocs; i++) {
		free(an->procs[i]->pass_data[ms->slot]);
		an->procs[i]->pass_data[ms->slot] = NULL;
	}
	for (size_t i = 0; i < ms->nsites; i++)
		free(ms->sites[i].pids);
	free(ms->sites);
	free(ms->map.slots);
	free(ms->msites);
	free(ms->leaks);
	free(ms->top_calls);
	free(ms->top_bytes);
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

const char *kp_confidence_name(enum kp_confidence c)
{
	switch (c) {
	case KP_CONF_HIGH: return "high";
	case KP_CONF_MEDIUM: return "medium";
	case KP_CONF_LOW: return "low";
	}
	return "low";
}

/* The renderers live in report_text.c and report_json.c. */
static void mem_report_text(void *state, struct kp_analysis *an, FILE *out)
{
	(void)state;
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
	.xInit = mem_init,
	.xBeginTrace = mem_begin_trace,
	.xEvent = mem_event,
	.xEndTrace = mem_end_trace,
	.xFinish = mem_finish,
	.xProcText = mem_proc_text,
	.xProcJson = mem_proc_json,
	.xReportText = mem_report_text,
	.xReportJson = mem_report_json,
	.xFree = mem_free_state,
};
