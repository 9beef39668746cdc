/* SPDX-License-Identifier: MIT */
/*
 * The analysis driver: one streaming pass over each trace.
 *
 * Metadata records go to the passes as they are decoded. Events are
 * buffered for one frame only, then merged by timestamp and handed over:
 * inside a frame each thread's batch is sorted but the batches interleave,
 * and the writer cuts frames at a common time watermark, so a frame is the
 * unit within which order has to be restored. A frame decompresses to at
 * most KP_MAX_FRAME_CONTENT bytes, which bounds the buffer.
 *
 * The merge is a k-way merge of the sorted runs noted as events are
 * buffered (a run ends where the thread changes or time goes backwards, so
 * even a hostile frame only produces more runs), with the buffer index as
 * tie-break: equal timestamps keep file order. A frame of one run needs no
 * merge; a few runs are merged by scanning their heads, many with a heap.
 * The passes get the merged order in batches (struct kp_batch): indexes
 * into the buffer, so no event is copied twice.
 *
 * The reading itself (zstd, decoding) runs ahead on a thread of its own
 * (readahead.c); everything here sees its results in file order.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyze.h"
#include "err.h"

/* The passes, in report order. Add a new analysis here. */
static const struct kp_pass *const kp_passes[] = {
	&kp_pass_memory,
	&kp_pass_resources,
	&kp_pass_app,
	&kp_pass_io,
	&kp_pass_queries,
	&kp_pass_cpu,
	&kp_pass_timeline,
	&kp_pass_peak,
};

const struct kp_pass *const *kp_pass_list(size_t *n)
{
	*n = KP_ARRAY_SIZE(kp_passes);
	return kp_passes;
}

void *kp_pass_state(const struct kp_analysis *an, const struct kp_pass *pass)
{
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i] == pass)
			return an->pass_state[i];
	return NULL;
}

/*
 * Flush early if a (hostile) frame somehow holds more events than a real
 * one can: order is then restored within each chunk only.
 */
#define KP_MAX_FRAME_EVENTS (16u << 20)

/* Up to this many runs, the merge finds the next event by a linear scan. */
#define KP_MERGE_SCAN_MAX 8

/*
 * The merge hands events over in batches of this many, so the events it
 * has just compared are still in cache when the passes read them.
 */
#define KP_MERGE_CHUNK 512

struct kp_load {
	struct kp_analysis *an;
	struct kp_trace *t;
	struct kp_event *ev;
	size_t nev, ev_cap;
	uint32_t last_tid;      /* note_tid() cache */
	int have_tid;
	/* runs: found as events are buffered; run r is
	 * ev[run_start[r], run_start[r + 1]), sorted, one thread */
	size_t *run_start;
	size_t nruns, runs_cap;
	uint64_t run_ts;        /* ts and tid of the last event buffered */
	uint32_t run_tid;
	/* merge scratch */
	size_t *run_pos, *run_end;
	size_t *heap;           /* run indexes */
	uint32_t order[KP_MERGE_CHUNK];
	/* extension events of the frame (records.h type >= 32): the event's
	 * ptr indexes xrecs; their strings are copied to xstr (xstr_off[i]
	 * is where xrecs[i]'s starts) and pointed at when the frame is
	 * delivered, since the frame buffer is gone by then */
	struct kp_rec *xrecs;
	size_t *xstr_off;
	uint32_t *xev;          /* struct kp_batch.xev, x_cap of them */
	uint32_t *xpos;         /* where each extension event is in ev */
	size_t nx, x_cap;
	char *xstr;
	size_t xstr_n, xstr_cap;
	/* the passes that take events */
	void (*xEvents[KP_MAX_PASSES])(void *, struct kp_trace *,
				       const struct kp_batch *);
	void *ev_state[KP_MAX_PASSES];
	size_t nev_passes;
};

/* ---- analysis lifetime ------------------------------------------------------ */

struct kp_analysis *kp_analysis_new(const struct kp_opts *opts)
{
	struct kp_analysis *an = xcalloc(1, sizeof(*an));

	an->opts = opts;
	an->seed = kp_random_seed();
	kp_idmap_init(&an->exe_ids);
	kp_idmap_init(&an->module_ids);
	kp_idmap_init(&an->gstack_ids);
	kp_idmap_init(&an->frame_ids);
	/* Module 0 is "no module" and stack 0 the empty stack; neither is in
	 * a hash table, so no record can alias them. */
	an->modules_cap = 16;
	an->modules = xcalloc(an->modules_cap, sizeof(*an->modules));
	an->modules[0].path = xstrdup("");
	an->modules[0].next = UINT32_MAX;
	an->modules[0].sym_failed = 1;
	an->nmodules = 1;
	an->gstacks_cap = 16;
	an->gstacks = xcalloc(an->gstacks_cap, sizeof(*an->gstacks));
	an->gstacks[0].next = UINT32_MAX;
	an->ngstacks = 1;

	an->passes = kp_passes;
	an->npasses = KP_ARRAY_SIZE(kp_passes);
	for (size_t i = 0; i < an->npasses; i++)
		an->pass_state[i] = an->passes[i]->xInit ?
			an->passes[i]->xInit(an, (unsigned)i) : NULL;
	return an;
}

static void proc_free(struct kp_proc *p)
{
	free(p->file);
	free(p->exe);
	for (uint32_t i = 0; i < p->argc; i++)
		free(p->argv[i]);
	free(p->argv);
	free(p->exec_path);
	free(p);
}

void kp_analysis_free(struct kp_analysis *an)
{
	if (!an)
		return;
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xFree)
			an->passes[i]->xFree(an->pass_state[i], an);
	if (an->sym)
		kp_symbols_free(an->sym);
	kp_debug_ahead_end();
	for (size_t i = 0; i < an->nprocs; i++)
		proc_free(an->procs[i]);
	free(an->procs);
	for (size_t i = 0; i < an->nexes; i++)
		free(an->exes[i]);
	free(an->exes);
	free(an->exe_next);
	for (size_t i = 0; i < an->nmodules; i++) {
		free(an->modules[i].path);
		free(an->modules[i].build_id);
		kp_perfmap_free(an->modules[i].jit);
	}
	free(an->modules);
	free(an->gstacks);
	free(an->frames);
	free(an->fids);
	kp_idmap_free(&an->frame_ids);
	kp_idmap_free(&an->exe_ids);
	kp_idmap_free(&an->module_ids);
	kp_idmap_free(&an->gstack_ids);
	free(an);
}

void kp_analysis_finish(struct kp_analysis *an)
{
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xFinish)
			an->passes[i]->xFinish(an->pass_state[i], an);
}

/* ---- event ordering ---------------------------------------------------------- */

static void add_run(struct kp_load *L, size_t i)
{
	if (L->nruns >= L->runs_cap) {
		L->runs_cap = L->runs_cap ? L->runs_cap * 2 : 64;
		L->run_start = xrealloc_array(L->run_start, L->runs_cap + 1,
					      sizeof(size_t));
		L->run_pos = xrealloc_array(L->run_pos, L->runs_cap,
					    sizeof(size_t));
		L->run_end = xrealloc_array(L->run_end, L->runs_cap,
					    sizeof(size_t));
		L->heap = xrealloc_array(L->heap, L->runs_cap, sizeof(size_t));
	}
	L->run_start[L->nruns++] = i;
}

/*
 * A slot for the next event of thread tid at ts. A run ends where the
 * thread changes or time goes backwards, so even a hostile frame only
 * produces more runs.
 */
static KP_ALWAYS_INLINE struct kp_event *ev_push(struct kp_load *L,
						 uint64_t ts, uint32_t tid)
{
	if (KP_UNLIKELY(L->nev >= L->ev_cap)) {
		L->ev_cap = L->ev_cap ? L->ev_cap * 2 : 4096;
		L->ev = xrealloc_array(L->ev, L->ev_cap, sizeof(*L->ev));
	}
	if (KP_UNLIKELY(tid != L->run_tid || ts < L->run_ts || !L->nev))
		add_run(L, L->nev);
	L->run_ts = ts;
	L->run_tid = tid;
	return &L->ev[L->nev++];
}

static void deliver(struct kp_load *L, const struct kp_event *ev,
		    const uint32_t *order, size_t n)
{
	struct kp_batch b = { .ev = ev, .order = order, .n = n,
			      .recs = L->xrecs, .nx = L->nx, .xev = L->xev };

	/* The extension events among these (at most the frame's nx): the
	 * whole frame in buffer order has them listed as they came. */
	if (L->nx && !order && ev == L->ev && n == L->nev) {
		b.xev = L->xpos;
		b.nxev = L->nx;
	} else if (L->nx) {
		uint32_t *xev = L->xev;
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			uint32_t j = order ? order[i] : (uint32_t)i;
			unsigned type = ev[j].type;
			if (type >= KP_REC_EXT_MIN && type <= KP_REC_TYPE_MAX)
				xev[k++] = j;
		}
		b.nxev = k;
	}

	for (size_t i = 0; i < L->nev_passes; i++)
		L->xEvents[i](L->ev_state[i], L->t, &b);
}

/* Heap order on the current head of each run: (ts, buffer index). */
static int run_less(const struct kp_load *L, size_t a, size_t b)
{
	const struct kp_event *x = &L->ev[L->run_pos[a]];
	const struct kp_event *y = &L->ev[L->run_pos[b]];

	if (x->ts != y->ts)
		return x->ts < y->ts;
	return L->run_pos[a] < L->run_pos[b];
}

static void heap_down(struct kp_load *L, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < n && run_less(L, L->heap[l], L->heap[m]))
			m = l;
		if (l + 1 < n && run_less(L, L->heap[l + 1], L->heap[m]))
			m = l + 1;
		if (m == i)
			return;
		size_t tmp = L->heap[i];
		L->heap[i] = L->heap[m];
		L->heap[m] = tmp;
		i = m;
	}
}

/* Many runs: a binary heap of run heads. */
static void merge_heap(struct kp_load *L)
{
	size_t hn = L->nruns, k = 0;

	for (size_t r = 0; r < hn; r++) {
		L->run_pos[r] = L->run_start[r];
		L->heap[r] = r;
	}
	for (size_t i = hn / 2; i-- > 0;)
		heap_down(L, hn, i);
	while (hn) {
		size_t r = L->heap[0];
		L->order[k++] = (uint32_t)L->run_pos[r];
		if (++L->run_pos[r] == L->run_start[r + 1])
			L->heap[0] = L->heap[--hn];
		heap_down(L, hn, 0);
		if (k == KP_MERGE_CHUNK) {
			deliver(L, L->ev, L->order, k);
			k = 0;
		}
	}
	if (k)
		deliver(L, L->ev, L->order, k);
}

/*
 * A few runs: scan the heads for the least (ts, run). Runs lie in buffer
 * order, so the first least head also has the least buffer index: ties
 * keep file order. The last run left goes over as it is.
 */
static void merge_scan(struct kp_load *L)
{
	const struct kp_event *ev = L->ev;
	size_t *pos = L->run_pos, *end = L->run_end;
	size_t nr = L->nruns, k = 0;

	for (size_t r = 0; r < nr; r++) {
		pos[r] = L->run_start[r];
		end[r] = L->run_start[r + 1];
	}
	while (nr > 1) {
		size_t m;
		if (nr == 2) {
			m = ev[pos[1]].ts < ev[pos[0]].ts;
		} else {
			uint64_t mts = ev[pos[0]].ts;
			m = 0;
			for (size_t r = 1; r < nr; r++) {
				if (ev[pos[r]].ts < mts) {
					m = r;
					mts = ev[pos[r]].ts;
				}
			}
		}
		L->order[k++] = (uint32_t)pos[m]++;
		if (pos[m] == end[m]) {
			/* Drop run m, keeping the others in buffer order. */
			for (size_t r = m; r + 1 < nr; r++) {
				pos[r] = pos[r + 1];
				end[r] = end[r + 1];
			}
			nr--;
		}
		if (k == KP_MERGE_CHUNK) {
			deliver(L, ev, L->order, k);
			k = 0;
		}
	}
	if (k)
		deliver(L, ev, L->order, k);
	deliver(L, ev + pos[0], NULL, end[0] - pos[0]);
}

/*
 * Two runs, the usual frame of a two-thread program: the scan with both
 * heads in registers and no branch on which one is taken (a coin toss
 * when the threads' events interleave). Same ties, same batches.
 */
static void merge_two(struct kp_load *L)
{
	const struct kp_event *ev = L->ev;
	size_t a = 0, a_end = L->run_start[1], b = a_end, b_end = L->nev;
	size_t k = 0;

	while (a < a_end && b < b_end) {
		size_t take_b = ev[b].ts < ev[a].ts;
		L->order[k++] = (uint32_t)(take_b ? b : a);
		b += take_b;
		a += take_b ^ 1;
		if (k == KP_MERGE_CHUNK) {
			deliver(L, ev, L->order, k);
			k = 0;
		}
	}
	if (k)
		deliver(L, ev, L->order, k);
	if (a < a_end)
		deliver(L, ev + a, NULL, a_end - a);
	else
		deliver(L, ev + b, NULL, b_end - b);
}

/* Hand the buffered events to the passes in time order. */
static void ev_flush(struct kp_load *L)
{
	size_t n = L->nev;

	if (!n)
		return;
	L->run_start[L->nruns] = n;
	L->an->events += n;
	for (size_t i = 0; i < L->nx; i++)
		if (L->xrecs[i].u.ext.str)
			L->xrecs[i].u.ext.str = L->xstr + L->xstr_off[i];
	if (L->nruns == 1)
		deliver(L, L->ev, NULL, n);
	else if (L->nruns == 2)
		merge_two(L);
	else if (L->nruns <= KP_MERGE_SCAN_MAX)
		merge_scan(L);
	else
		merge_heap(L);
	L->nev = 0;
	L->nruns = 0;
	L->nx = 0;
	L->xstr_n = 0;
	/* Give back the memory of an unusually large frame. */
	if (L->ev_cap > (1u << 20)) {
		free(L->ev);
		L->ev = NULL;
		L->ev_cap = 0;
	}
}

/* ---- records ------------------------------------------------------------------ */

static void note_tid_slow(struct kp_load *L, uint32_t tid)
{
	struct kp_trace *t = L->t;

	L->last_tid = tid;
	L->have_tid = 1;
	if (kp_idmap_get(&t->tids, tid) != UINT32_MAX)
		return;
	if (t->tids.n >= KP_MAX_TIDS)
		return;
	kp_idmap_put(&t->tids, tid, 1);
}

static KP_ALWAYS_INLINE void note_tid(struct kp_load *L, uint32_t tid)
{
	if (KP_UNLIKELY(tid != L->last_tid || !L->have_tid))
		note_tid_slow(L, tid);
}

/* An extension event: the record itself is kept for the passes (a
 * QUERY with its text, from its QUERY_TEXT when it names one). */
static void handle_ext(struct kp_load *L, const struct kp_rec *rec)
{
	struct kp_rec q;
	if (rec->type == KP_REC_QUERY && rec->u.ext.v[KP_Q_TEXT_ID] > 0 &&
	    rec->u.ext.v[KP_Q_TEXT_ID] <= UINT32_MAX) {
		q = *rec;
		q.u.ext.str = kp_qtexts_get(&L->t->qtexts,
					    (uint32_t)rec->u.ext.v[KP_Q_TEXT_ID],
					    &q.u.ext.str_len);
		if (!q.u.ext.str)
			q.u.ext.str_len = 0; /* not defined: no text */
		rec = &q;
	}
	if (L->nx >= L->x_cap) {
		L->x_cap = L->x_cap ? L->x_cap * 2 : 256;
		L->xrecs = xrealloc_array(L->xrecs, L->x_cap,
					  sizeof(*L->xrecs));
		L->xstr_off = xrealloc_array(L->xstr_off, L->x_cap,
					     sizeof(*L->xstr_off));
		L->xev = xrealloc_array(L->xev, L->x_cap, sizeof(*L->xev));
		L->xpos = xrealloc_array(L->xpos, L->x_cap, sizeof(*L->xpos));
	}
	struct kp_rec *x = &L->xrecs[L->nx];
	*x = *rec;
	if (rec->u.ext.str) {
		size_t n = rec->u.ext.str_len;
		if (L->xstr_n + n + 1 > L->xstr_cap) {
			while (L->xstr_n + n + 1 > L->xstr_cap)
				L->xstr_cap = L->xstr_cap ? L->xstr_cap * 2
							  : 4096;
			L->xstr = xrealloc(L->xstr, L->xstr_cap);
		}
		memcpy(L->xstr + L->xstr_n, rec->u.ext.str, n);
		L->xstr[L->xstr_n + n] = '\0';
		L->xstr_off[L->nx] = L->xstr_n;
		L->xstr_n += n + 1;
		x->u.ext.str = L->xstr; /* re-pointed in ev_flush */
	}
	struct kp_event *e = ev_push(L, rec->ts, rec->tid);
	L->xpos[L->nx] = (uint32_t)(L->nev - 1);
	*e = (struct kp_event){ .ts = rec->ts,
				.ptr = L->nx++,
				.stack = rec->u.ext.stack,
				.tid = rec->tid,
				.type = rec->type,
				.kind = rec->kind };
	note_tid(L, rec->tid);
	if (KP_UNLIKELY(L->nev >= KP_MAX_FRAME_EVENTS))
		ev_flush(L);
}

/* ALLOC, FREE, REALLOC: buffered for the frame's merge. */
static KP_ALWAYS_INLINE void handle_event(struct kp_load *L,
					  const struct kp_rec *rec)
{
	struct kp_trace *t = L->t;
	struct kp_event *e = ev_push(L, rec->ts, rec->tid);

	e->ts = rec->ts;
	e->tid = rec->tid;
	switch (rec->type) {
	case KP_REC_ALLOC:
		e->ptr = rec->u.alloc.ptr;
		e->size = rec->u.alloc.size;
		e->stack = rec->u.alloc.stack;
		e->type = KP_REC_ALLOC;
		e->kind = rec->kind;
		break;
	case KP_REC_FREE:
		e->ptr = rec->u.free.ptr;
		e->size = 0;
		e->stack = 0;
		e->type = KP_REC_FREE;
		e->kind = 0;
		break;
	default: { /* KP_REC_REALLOC */
		/* The free of old happened at ts, the allocation of new at
		 * ts + dur: order them as two events. */
		uint64_t done = kp_sat_add(rec->ts, rec->u.realloc.dur);
		*e = (struct kp_event){ .ts = rec->ts,
					.ptr = rec->u.realloc.old_ptr,
					.tid = rec->tid,
					.type = KP_EV_REALLOC_FREE };
		e = ev_push(L, done, rec->tid);
		*e = (struct kp_event){ .ts = done,
					.ptr = rec->u.realloc.new_ptr,
					.size = rec->u.realloc.size,
					.stack = rec->u.realloc.stack,
					.tid = rec->tid,
					.type = KP_EV_REALLOC_ALLOC,
					.kind = KP_ALLOC_REALLOC };
		if (done > t->last_ts)
			t->last_ts = done;
		break;
	}
	}
	note_tid(L, rec->tid);
	if (KP_UNLIKELY(L->nev >= KP_MAX_FRAME_EVENTS))
		ev_flush(L);
}

/*
 * The analyzer's events of memory record m of thread tid: e[0], and for a
 * REALLOC e[1] (its free at ts, its allocation at ts + dur: two events in
 * time order). @return how many (1 or 2).
 */
static KP_ALWAYS_INLINE unsigned mem_events(struct kp_event *e,
					    const struct kp_mem_rec *m,
					    uint32_t tid)
{
	if (KP_LIKELY(m->type != KP_REC_REALLOC)) {
		int alloc = m->type == KP_REC_ALLOC;
		e[0] = (struct kp_event){ .ts = m->ts,
					  .ptr = m->a,
					  .size = alloc ? m->b : 0,
					  .stack = alloc ? m->stack : 0,
					  .tid = tid,
					  .type = m->type,
					  .kind = alloc ? m->kind : 0 };
		return 1;
	}
	e[0] = (struct kp_event){ .ts = m->ts,
				  .ptr = m->a,
				  .tid = tid,
				  .type = KP_EV_REALLOC_FREE };
	e[1] = (struct kp_event){ .ts = kp_sat_add(m->ts, m->d),
				  .ptr = m->b,
				  .size = m->c,
				  .stack = m->stack,
				  .tid = tid,
				  .type = KP_EV_REALLOC_ALLOC,
				  .kind = KP_ALLOC_REALLOC };
	return 2;
}

/* One record of the bulk path: what handle_record() and handle_event() do
 * with it. */
static KP_ALWAYS_INLINE void handle_mem_one(struct kp_load *L,
					    const struct kp_mem_rec *m)
{
	struct kp_trace *t = L->t;
	struct kp_event two[2];
	unsigned n = mem_events(two, m, m->tid);

	for (unsigned i = 0; i < n; i++) {
		if (two[i].ts > t->last_ts)
			t->last_ts = two[i].ts;
		*ev_push(L, two[i].ts, m->tid) = two[i];
	}
	note_tid(L, m->tid);
	if (KP_UNLIKELY(L->nev >= KP_MAX_FRAME_EVENTS))
		ev_flush(L);
}

/*
 * A run of ALLOC, FREE and REALLOC records from the reader's bulk path,
 * all of one EVENTS block, so of one thread. The common case does per
 * record only what depends on it: room, the thread and its runs are
 * settled once for the batch.
 */
static void handle_mem(struct kp_load *L, const struct kp_mem_rec *m,
		       size_t n)
{
	struct kp_trace *t = L->t;
	uint32_t tid = m[0].tid;

	L->an->records += n;
	t->proc->records += n;
	if (KP_UNLIKELY(L->nev + 2 * n >= KP_MAX_FRAME_EVENTS)) {
		for (size_t i = 0; i < n; i++)
			handle_mem_one(L, &m[i]);
		return;
	}
	while (L->nev + 2 * n > L->ev_cap) {
		L->ev_cap = L->ev_cap ? L->ev_cap * 2 : 4096;
		L->ev = xrealloc_array(L->ev, L->ev_cap, sizeof(*L->ev));
	}
	note_tid(L, tid);
	if (tid != L->run_tid || !L->nev) {
		add_run(L, L->nev);
		L->run_tid = tid;
		L->run_ts = m[0].ts;
	}
	struct kp_event *ev = L->ev;
	size_t k = L->nev;
	uint64_t run_ts = L->run_ts, last = t->last_ts;
	for (size_t i = 0; i < n; i++, m++) {
		if (KP_LIKELY(m->type != KP_REC_REALLOC)) {
			/* mem_events() of one event, field by field: the
			 * struct's padding need not be written */
			struct kp_event *e = &ev[k];
			int alloc = m->type == KP_REC_ALLOC;
			uint64_t ts = m->ts;
			e->ts = ts;
			e->ptr = m->a;
			e->size = alloc ? m->b : 0;
			e->stack = alloc ? m->stack : 0;
			e->tid = tid;
			e->type = m->type;
			e->kind = alloc ? m->kind : 0;
			if (KP_UNLIKELY(ts < run_ts))
				add_run(L, k); /* time went backwards */
			run_ts = ts;
			if (ts > last)
				last = ts;
			k++;
			continue;
		}
		unsigned c = mem_events(&ev[k], m, tid);
		for (unsigned j = 0; j < c; j++) {
			uint64_t ts = ev[k + j].ts;
			if (KP_UNLIKELY(ts < run_ts))
				add_run(L, k + j); /* time went backwards */
			run_ts = ts;
			if (ts > last)
				last = ts;
		}
		k += c;
	}
	L->nev = k;
	L->run_ts = run_ts;
	t->last_ts = last;
}

static void handle_record(struct kp_load *L, const struct kp_rec *rec)
{
	struct kp_analysis *an = L->an;
	struct kp_trace *t = L->t;
	struct kp_proc *p = t->proc;

	an->records++;
	p->records++;
	if (rec->ts > t->last_ts && rec->type != KP_REC_FRAME)
		t->last_ts = rec->ts;

	if (KP_LIKELY(rec->type == KP_REC_ALLOC || rec->type == KP_REC_FREE ||
		      rec->type == KP_REC_REALLOC)) {
		handle_event(L, rec);
		return;
	}
	if (rec->type >= KP_REC_EXT_MIN) {
		/* the decoder returns only the extension types it knows */
		handle_ext(L, rec);
		return;
	}
	switch (rec->type) {
	case KP_REC_FRAME:
		ev_flush(L);
		p->frames++;
		break;
	case KP_REC_STACK:
		kp_trace_define_stack(t, rec->u.stack.id, rec->u.stack.pcs,
				      rec->u.stack.pcs ? rec->u.stack.depth : 0);
		break;
	case KP_REC_QUERY_TEXT:
		kp_qtexts_define(&t->qtexts, rec->u.qtext.id, rec->u.qtext.text,
				 rec->u.qtext.len);
		break;
	case KP_REC_MODULE:
		kp_trace_add_module(t, rec);
		break;
	case KP_REC_JIT_CODE:
		if (!t->jit_rec)
			t->jit_rec = kp_perfmap_new();
		kp_perfmap_add(t->jit_rec, rec->u.jit.lo, rec->u.jit.size,
			       rec->u.jit.name, rec->u.jit.name_len);
		break;
	case KP_REC_UNMODULE:
		kp_trace_unmap_module(t, rec);
		break;
	case KP_REC_THREAD_START:
		note_tid(L, rec->tid);
		break;
	case KP_REC_LOST:
		/* Cumulative per type: the latest count replaces the last. */
		if (rec->u.lost.what <= KP_REC_TYPE_MAX)
			p->lost[rec->u.lost.what] = rec->u.lost.count;
		break;
	case KP_REC_END:
		p->ended = 1;
		p->end_reason = rec->kind;
		p->exit_status = rec->u.end.status;
		break;
	case KP_REC_FORK:
		p->forks++;
		break;
	case KP_REC_EXEC:
		free(p->exec_path);
		p->exec_path = xstrndup(rec->u.exec.path ? rec->u.exec.path : "",
					rec->u.exec.path ? rec->u.exec.path_len
							 : 0);
		break;
	default:
		break;
	}
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xRecord)
			an->passes[i]->xRecord(an->pass_state[i], t, rec);
}

/* ---- one trace ------------------------------------------------------------------- */

static struct kp_proc *proc_new(struct kp_analysis *an, const char *name,
				const struct kp_header *h)
{
	struct kp_proc *p = xcalloc(1, sizeof(*p));

	p->file = xstrdup(name);
	p->pid = h->pid;
	p->ppid = h->ppid;
	p->forked = h->forked;
	p->exe = xstrdup(h->exe ? h->exe : "");
	p->argc = h->argv ? h->argc : 0;
	p->argv = xcalloc(p->argc ? p->argc : 1, sizeof(*p->argv));
	for (uint32_t i = 0; i < p->argc; i++)
		p->argv[i] = xstrdup(h->argv[i] ? h->argv[i] : "");
	p->start_wall_ns = h->start_wall_ns;
	p->exe_id = kp_exe_intern(an, p->exe);
	if (an->nprocs >= an->procs_cap) {
		an->procs_cap = an->procs_cap ? an->procs_cap * 2 : 8;
		an->procs = xrealloc_array(an->procs, an->procs_cap,
					   sizeof(*an->procs));
	}
	an->procs[an->nprocs++] = p;
	return p;
}

/* "Input/output error" -> "input/output error" (messages are lowercase). */
static const char *lower_first(char *buf, size_t n, const char *s)
{
	snprintf(buf, n, "%s", s);
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z'))
		buf[0] = (char)(buf[0] - 'A' + 'a');
	return buf;
}

static const char *trace_strerror(char *buf, size_t n, int rc)
{
	switch (rc) {
	case KP_EFORMAT:
		return "not a kprof trace";
	case KP_EVERSION:
		snprintf(buf, n, "trace format is newer than this kprof-analyze "
			 "(reads major versions %d to %d)", KP_FORMAT_MAJOR_MIN,
			 KP_FORMAT_MAJOR);
		return buf;
	case KP_ETRUNC:
		return "truncated trace header";
	case KP_ECORRUPT:
		return "corrupt trace";
	case KP_ELIMIT:
		return "corrupt trace (a length or count exceeds its limit)";
	default:
		if (rc < 0 && rc > -4096)
			return lower_first(buf, n, strerror(-rc));
		return kp_strerror(rc);
	}
}

int kp_analysis_add(struct kp_analysis *an, const char *name,
		    const struct kp_source *src)
{
	struct kp_reader *r = NULL;
	char ebuf[256];
	int rc, ret = 0;

	rc = kp_reader_open(&r, &kp_allocator_libc, src);
	if (rc < 0) {
		kp_reader_free(r);
		return error("%s: %s", name, trace_strerror(ebuf, sizeof(ebuf),
							   rc));
	}
	const struct kp_header *h = kp_reader_header(r);
	struct kp_trace t;
	memset(&t, 0, sizeof(t));
	t.an = an;
	t.hdr = h;
	t.proc = proc_new(an, name, h);
	kp_idmap_init(&t.stack_ids);
	kp_idmap_init(&t.tids);
	struct kp_load L = { .an = an, .t = &t };
	for (size_t i = 0; i < an->npasses; i++) {
		if (an->passes[i]->xEvents) {
			L.xEvents[L.nev_passes] = an->passes[i]->xEvents;
			L.ev_state[L.nev_passes++] = an->pass_state[i];
		}
	}

	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xBeginTrace)
			an->passes[i]->xBeginTrace(an->pass_state[i], &t);
	struct kp_ra *ra = kp_ra_start(r);
	for (;;) {
		const struct kp_mem_rec *m;
		const struct kp_rec *rec;
		size_t n;
		uint64_t frames;
		rc = kp_ra_next(ra, &m, &n, &rec, &frames);
		if (rc == 2) {
			handle_mem(&L, m, n);
			continue;
		}
		if (rc == 1) {
			handle_record(&L, rec);
			continue;
		}
		if (rc == 0)
			break;
		if (rc == KP_ETRUNC) {
			/* Killed mid-write: everything before the last whole
			 * frame is good. Not an error. */
			t.proc->truncated = 1;
			break;
		}
		ret = error("%s: %s (after %llu good frames)", name,
			    trace_strerror(ebuf, sizeof(ebuf), rc),
			    (unsigned long long)frames);
		break;
	}
	kp_ra_end(ra);
	ev_flush(&L);

	struct kp_proc *p = t.proc;
	if (!p->ended)
		p->truncated = 1;
	p->duration_ns = t.last_ts;
	p->threads = t.tids.n;
	for (unsigned w = 0; w <= KP_REC_TYPE_MAX; w++) {
		p->lost_total = kp_sat_add(p->lost_total, p->lost[w]);
		an->lost[w] = kp_sat_add(an->lost[w], p->lost[w]);
	}
	an->lost_total = kp_sat_add(an->lost_total, p->lost_total);
	if (p->truncated)
		an->truncated = 1;
	kp_trace_name_jit(&t);
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xEndTrace)
			an->passes[i]->xEndTrace(an->pass_state[i], &t);

	kp_trace_release(&t);
	free(L.ev);
	free(L.run_start);
	free(L.run_pos);
	free(L.run_end);
	free(L.heap);
	free(L.xrecs);
	free(L.xstr_off);
	free(L.xev);
	free(L.xpos);
	free(L.xstr);
	kp_reader_free(r);
	return ret;
}

/* ---- files ---------------------------------------------------------------------- */

long kp_fd_read(void *ctx, void *buf, size_t n)
{
	int fd = *(int *)ctx;

	for (;;) {
		ssize_t got = read(fd, buf, n);
		if (got >= 0)
			return (long)got;
		if (errno != EINTR)
			return -errno;
	}
}

int kp_analysis_add_file(struct kp_analysis *an, const char *path)
{
	char ebuf[256];
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return error("%s: %s", path,
			     lower_first(ebuf, sizeof(ebuf), strerror(errno)));
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		return error("%s: is a directory", path);
	}
	struct kp_source src = { .xRead = kp_fd_read, .ctx = &fd };
	int ret = kp_analysis_add(an, path, &src);
	close(fd);
	return ret;
}
