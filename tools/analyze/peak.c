/* SPDX-License-Identifier: MIT */
/*
 * Live bytes at the heap peak, per allocation stack (flame/export
 * --what live). Only runs when asked: it keeps its own pointer map.
 *
 * Per process it tracks live bytes and blocks per stack and the heap total.
 * Each time the total reaches a new maximum the state IS the peak state,
 * so it clears a journal; every later change is appended to the journal.
 * At the end of the trace the journal is undone in reverse, which leaves
 * the live bytes per stack at the (last) peak. The journal is capped
 * (KP_PEAK_JOURNAL_MAX entries); past the cap the result is the state at
 * the end of the trace and a warning says so. Processes are added up, each
 * at its own peak.
 */
#include <stdlib.h>

#include "cpu.h"

#define KP_PEAK_JOURNAL_MAX (64u << 20)

struct pblk {
	uint64_t ptr, size;
	uint32_t local;
};

struct jent {
	uint32_t local;
	int32_t dblocks;
	int64_t dbytes;
};

struct plive {
	int64_t bytes, blocks;
};

struct peak_state {
	int on;
	/* the current trace */
	struct pblk *map;
	size_t cap, n;
	struct plive *live; /* by local stack index */
	size_t nlive;
	uint64_t total, peak;
	struct jent *j;
	size_t nj, jcap;
	int overflow;
	struct kp_early early; /* frees stamped before their ALLOC */
	/* all traces: gstack -> bytes, blocks */
	struct kp_idmap gids;
	struct kp_wstack *out;
	size_t nout;
};

static void *peak_init(struct kp_analysis *an, unsigned slot)
{
	(void)slot;
	struct peak_state *s = xcalloc(1, sizeof(*s));
	s->on = an->opts->what && !strcmp(an->opts->what, "live") &&
		an->opts->command && (!strcmp(an->opts->command, "flame") ||
				      !strcmp(an->opts->command, "export"));
	kp_idmap_init(&s->gids);
	return s;
}

static size_t home(const struct peak_state *s, uint64_t ptr)
{
	return kp_mix64(ptr, 0x9e37) & (s->cap - 1);
}

static void put(struct peak_state *s, const struct pblk *b);

static void grow(struct peak_state *s)
{
	struct pblk *old = s->map;
	size_t oc = s->cap;
	s->cap = oc ? 2 * oc : 1024;
	s->map = xcalloc(s->cap, sizeof(*s->map));
	s->n = 0;
	for (size_t i = 0; i < oc; i++)
		if (old[i].ptr)
			put(s, &old[i]);
	free(old);
}

static void put(struct peak_state *s, const struct pblk *b)
{
	if ((s->n + 1) * 2 > s->cap)
		grow(s);
	size_t i = home(s, b->ptr);
	while (s->map[i].ptr && s->map[i].ptr != b->ptr)
		i = (i + 1) & (s->cap - 1);
	if (!s->map[i].ptr)
		s->n++;
	s->map[i] = *b;
}

/* Remove ptr; @return 1 with *out filled when it was there. */
static int take(struct peak_state *s, uint64_t ptr, struct pblk *out)
{
	if (!s->cap)
		return 0;
	size_t mask = s->cap - 1, i = home(s, ptr);
	while (s->map[i].ptr && s->map[i].ptr != ptr)
		i = (i + 1) & mask;
	if (!s->map[i].ptr)
		return 0;
	*out = s->map[i];
	s->map[i].ptr = 0;
	s->n--;
	/* re-place the rest of the run (no tombstones) */
	for (size_t j = (i + 1) & mask; s->map[j].ptr; j = (j + 1) & mask) {
		struct pblk b = s->map[j];
		s->map[j].ptr = 0;
		s->n--;
		put(s, &b);
	}
	return 1;
}

static void change(struct peak_state *s, uint32_t local, int64_t dbytes,
		   int32_t dblocks)
{
	if (local >= s->nlive) {
		size_t n = s->nlive ? s->nlive : 64;
		while (n <= local)
			n *= 2;
		s->live = xrealloc_array(s->live, n, sizeof(*s->live));
		memset(s->live + s->nlive, 0,
		       (n - s->nlive) * sizeof(*s->live));
		s->nlive = n;
	}
	s->live[local].bytes += dbytes;
	s->live[local].blocks += dblocks;
	s->total = dbytes < 0 ? kp_sat_sub(s->total, (uint64_t)-dbytes)
			      : kp_sat_add(s->total, (uint64_t)dbytes);
	if (s->total > s->peak) {
		s->peak = s->total;
		s->nj = 0;
		return;
	}
	if (s->overflow)
		return;
	if (s->nj == KP_PEAK_JOURNAL_MAX) {
		s->overflow = 1;
		return;
	}
	if (s->nj == s->jcap) {
		s->jcap = s->jcap ? 2 * s->jcap : 4096;
		s->j = xrealloc_array(s->j, s->jcap, sizeof(*s->j));
	}
	s->j[s->nj++] = (struct jent){ local, dblocks, dbytes };
}

static void peak_begin(void *st, struct kp_trace *t)
{
	(void)t;
	struct peak_state *s = st;
	s->n = s->nj = 0;
	s->total = s->peak = 0;
	s->overflow = 0;
	memset(&s->early, 0, sizeof(s->early));
	if (s->cap)
		memset(s->map, 0, s->cap * sizeof(*s->map));
	if (s->nlive)
		memset(s->live, 0, s->nlive * sizeof(*s->live));
}

static void peak_events(void *st, struct kp_trace *t, const struct kp_batch *b)
{
	struct peak_state *s = st;
	if (!s->on)
		return;
	for (size_t i = 0; i < b->n; i++) {
		const struct kp_event *e = &b->ev[i];
		struct pblk blk;
		switch (e->type) {
		case KP_REC_ALLOC:
		case KP_EV_REALLOC_ALLOC:
			if (!e->ptr)
				break;
			if (take(s, e->ptr, &blk)) /* a free was lost */
				change(s, blk.local, -(int64_t)blk.size, -1);
			blk.ptr = e->ptr;
			blk.size = e->size;
			blk.local = e->stack ? kp_trace_stack(t, e->stack) + 1
					     : 0;
			put(s, &blk);
			change(s, blk.local, (int64_t)blk.size, 1);
			/* freed already, by an early FREE (memory.c) */
			if (kp_early_take(&s->early, e->ptr, e->ts, e->tid) &&
			    take(s, e->ptr, &blk))
				change(s, blk.local, -(int64_t)blk.size, -1);
			break;
		case KP_REC_FREE:
		case KP_EV_REALLOC_FREE:
			if (take(s, e->ptr, &blk))
				change(s, blk.local, -(int64_t)blk.size, -1);
			else if (e->ptr)
				kp_early_add(&s->early, e->ptr, e->ts, e->tid);
			break;
		default:
			break;
		}
	}
}

static void peak_end(void *st, struct kp_trace *t)
{
	struct peak_state *s = st;
	if (!s->on)
		return;
	if (s->overflow)
		warning("%s: too many events after the heap peak; --what live "
			"shows the bytes in use at the end instead",
			t->proc->file);
	else
		for (size_t i = s->nj; i-- > 0;) {
			s->live[s->j[i].local].bytes -= s->j[i].dbytes;
			s->live[s->j[i].local].blocks -= s->j[i].dblocks;
		}
	for (size_t l = 0; l < s->nlive; l++) {
		if (s->live[l].bytes <= 0)
			continue;
		uint32_t g = l ? kp_trace_canon_stack(t, (uint32_t)(l - 1)) : 0;
		if (g == UINT32_MAX)
			g = 0;
		uint32_t k = kp_idmap_get(&s->gids, g);
		if (k == UINT32_MAX) {
			s->out = xrealloc_array(s->out, s->nout + 1,
						sizeof(*s->out));
			k = (uint32_t)s->nout++;
			s->out[k] = (struct kp_wstack){ g, 0, 0, 0 };
			kp_idmap_put(&s->gids, g, k);
		}
		s->out[k].value += (uint64_t)s->live[l].bytes;
		s->out[k].count += s->live[l].blocks > 0 ?
			(uint64_t)s->live[l].blocks : 0;
	}
}

static void peak_free(void *st, struct kp_analysis *an)
{
	(void)an;
	struct peak_state *s = st;
	free(s->map);
	free(s->live);
	free(s->j);
	free(s->out);
	kp_idmap_free(&s->gids);
	free(s);
}

const struct kp_pass kp_pass_peak = {
	.name = "peak",
	.xInit = peak_init,
	.xBeginTrace = peak_begin,
	.xEvents = peak_events,
	.xEndTrace = peak_end,
	.xFree = peak_free,
};

size_t kp_peak_stacks(const struct kp_analysis *an,
		      const struct kp_wstack **out)
{
	struct peak_state *s = kp_pass_state(an, &kp_pass_peak);
	*out = s ? s->out : NULL;
	return s && s->on ? s->nout : 0;
}
