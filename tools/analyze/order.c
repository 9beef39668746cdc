/* SPDX-License-Identifier: MIT */
/*
 * Time order: the stage between a trace's reader and the passes. It runs
 * on the read-ahead thread or the driver's, whichever has the time
 * (readahead.c), so it touches nothing of the analysis: what it takes in
 * is the reader's results, what it gives out is the events of each frame
 * in time order, and a count of the records it took, which the driver
 * (load.c) adds up as it would have. An instance is used by one thread at
 * a time.
 *
 * Events are buffered for one frame only, then merged by timestamp:
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
 * kp_order_take() copies the events out in that order, as many as the
 * caller has room for, so a frame may go out in several pieces: the merge
 * is resumable, KP_MERGE_CHUNK events at a time. kp_order_whole() gives a
 * frame of one run out where it lies instead, which the thread that
 * filled the stage can use (readahead.c's lent stages).
 */
#include <stdlib.h>
#include <string.h>

#include "analyze.h"

/*
 * Flush early if a (hostile) frame somehow holds more events than a real
 * one can (a memory batch that would pass it starts the next part): order
 * is then restored within each part only.
 */
#define KP_MAX_FRAME_EVENTS (16u << 20)

/* Up to this many runs, the merge finds the next event by a linear scan. */
#define KP_MERGE_SCAN_MAX 8

/* The merge works this many events ahead of the copy out. */
#define KP_MERGE_CHUNK 512

struct kp_order {
	struct kp_event *ev;
	size_t nev, ev_cap;
	/* runs: found as events are buffered; run r is
	 * ev[run_start[r], run_start[r + 1]), sorted, one thread */
	size_t *run_start;
	size_t nruns, runs_cap;
	uint64_t run_ts;        /* ts and tid of the last event buffered */
	uint32_t run_tid;
	size_t *run_pos, *run_end, *heap; /* the merge's (below) */
	/* the flushed frame: out_pos of its out_n events taken; nr runs
	 * left to merge (run r's next event is run_pos[r], its end
	 * run_end[r]; with more than KP_MERGE_SCAN_MAX, heap[0, nr) orders
	 * them); the indexes merged and not taken yet, idx[idx_pos, idx_n) */
	size_t out_pos, out_n;
	size_t nr;
	int by_heap;            /* the frame had more than KP_MERGE_SCAN_MAX */
	uint32_t idx[KP_MERGE_CHUNK];
	size_t idx_pos, idx_n;
	/* extension events of the frame (records.h type >= 32): the event's
	 * ptr indexes xrecs; their strings are copied to xstr (xstr_off[i]
	 * is where xrecs[i]'s starts) */
	struct kp_rec *xrecs;
	uint32_t *xpos;         /* where each one is in ev */
	size_t *xstr_off;
	size_t nx, x_cap;
	char *xstr;
	size_t xstr_n, xstr_cap;
	int whole;              /* kp_order_whole() gave the frame out */
};

struct kp_order *kp_order_new(void)
{
	return xcalloc(1, sizeof(struct kp_order));
}

void kp_order_free(struct kp_order *o)
{
	if (!o)
		return;
	free(o->ev);
	free(o->run_start);
	free(o->run_pos);
	free(o->run_end);
	free(o->heap);
	free(o->xrecs);
	free(o->xpos);
	free(o->xstr_off);
	free(o->xstr);
	free(o);
}

/* The frame is out: its buffers start over (an unusually large frame's
 * given back). */
static void frame_done(struct kp_order *o)
{
	o->nev = 0;
	o->out_pos = o->out_n = 0;
	o->nx = 0;
	o->xstr_n = 0;
	o->whole = 0;
	if (o->ev_cap > (1u << 20)) {
		free(o->ev);
		o->ev = NULL;
		o->ev_cap = 0;
	}
}

/* ---- buffering ----------------------------------------------------------------- */

static void add_run(struct kp_order *o, size_t i)
{
	if (o->nruns >= o->runs_cap) {
		o->runs_cap = o->runs_cap ? o->runs_cap * 2 : 64;
		o->run_start = xrealloc_array(o->run_start, o->runs_cap + 1,
					      sizeof(size_t));
		o->run_pos = xrealloc_array(o->run_pos, o->runs_cap,
					    sizeof(size_t));
		o->run_end = xrealloc_array(o->run_end, o->runs_cap,
					    sizeof(size_t));
		o->heap = xrealloc_array(o->heap, o->runs_cap, sizeof(size_t));
	}
	o->run_start[o->nruns++] = i;
}

static void ev_room(struct kp_order *o, size_t n)
{
	while (o->nev + n > o->ev_cap) {
		o->ev_cap = o->ev_cap ? o->ev_cap * 2 : 4096;
		o->ev = xrealloc_array(o->ev, o->ev_cap, sizeof(*o->ev));
	}
}

/*
 * A slot for the next event of thread tid at ts. A run ends where the
 * thread changes or time goes backwards, so even a hostile frame only
 * produces more runs.
 */
static KP_ALWAYS_INLINE struct kp_event *ev_push(struct kp_order *o,
						 uint64_t ts, uint32_t tid)
{
	if (KP_UNLIKELY(o->nev >= o->ev_cap))
		ev_room(o, 1);
	if (KP_UNLIKELY(tid != o->run_tid || ts < o->run_ts || !o->nev))
		add_run(o, o->nev);
	o->run_ts = ts;
	o->run_tid = tid;
	return &o->ev[o->nev++];
}

/* An extension event: the record itself is kept, its string copied. */
static void order_ext(struct kp_order *o, const struct kp_rec *rec)
{
	if (o->nx >= o->x_cap) {
		o->x_cap = o->x_cap ? o->x_cap * 2 : 256;
		o->xrecs = xrealloc_array(o->xrecs, o->x_cap,
					  sizeof(*o->xrecs));
		o->xstr_off = xrealloc_array(o->xstr_off, o->x_cap,
					     sizeof(*o->xstr_off));
		o->xpos = xrealloc_array(o->xpos, o->x_cap,
					 sizeof(*o->xpos));
	}
	struct kp_rec *x = &o->xrecs[o->nx];
	*x = *rec;
	if (rec->u.ext.str) {
		size_t n = rec->u.ext.str_len;
		if (o->xstr_n + n + 1 > o->xstr_cap) {
			while (o->xstr_n + n + 1 > o->xstr_cap)
				o->xstr_cap = o->xstr_cap ? o->xstr_cap * 2
							  : 4096;
			o->xstr = xrealloc(o->xstr, o->xstr_cap);
		}
		memcpy(o->xstr + o->xstr_n, rec->u.ext.str, n);
		o->xstr[o->xstr_n + n] = '\0';
		o->xstr_off[o->nx] = o->xstr_n;
		o->xstr_n += n + 1;
	}
	struct kp_event *e = ev_push(o, rec->ts, rec->tid);
	o->xpos[o->nx] = (uint32_t)(e - o->ev);
	*e = (struct kp_event){ .ts = rec->ts,
				.ptr = o->nx++,
				.stack = rec->u.ext.stack,
				.tid = rec->tid,
				.type = rec->type,
				.kind = rec->kind };
}

/* ALLOC, FREE, REALLOC from a whole record. @return the latest ts. */
static uint64_t order_event(struct kp_order *o, const struct kp_rec *rec)
{
	struct kp_event *e = ev_push(o, rec->ts, rec->tid);

	e->ts = rec->ts;
	e->tid = rec->tid;
	switch (rec->type) {
	case KP_REC_ALLOC:
		e->ptr = rec->u.alloc.ptr;
		e->size = rec->u.alloc.size;
		e->stack = rec->u.alloc.stack;
		e->type = KP_REC_ALLOC;
		e->kind = rec->kind;
		return rec->ts;
	case KP_REC_FREE:
		e->ptr = rec->u.free.ptr;
		e->size = 0;
		e->stack = 0;
		e->type = KP_REC_FREE;
		e->kind = 0;
		return rec->ts;
	default: { /* KP_REC_REALLOC */
		/* The free of old happened at ts, the allocation of new at
		 * ts + dur: order them as two events. */
		uint64_t done = kp_sat_add(rec->ts, rec->u.realloc.dur);
		*e = (struct kp_event){ .ts = rec->ts,
					.ptr = rec->u.realloc.old_ptr,
					.tid = rec->tid,
					.type = KP_EV_REALLOC_FREE };
		e = ev_push(o, done, rec->tid);
		*e = (struct kp_event){ .ts = done,
					.ptr = rec->u.realloc.new_ptr,
					.size = rec->u.realloc.size,
					.stack = rec->u.realloc.stack,
					.tid = rec->tid,
					.type = KP_EV_REALLOC_ALLOC,
					.kind = KP_ALLOC_REALLOC };
		return done > rec->ts ? done : rec->ts;
	}
	}
}

int kp_order_rec(struct kp_order *o, const struct kp_rec *rec,
		 struct kp_order_count *count)
{
	uint64_t last = rec->ts;

	if (KP_UNLIKELY(o->out_pos < o->out_n))
		abort(); /* the caller takes a frame's events before more */
	if (KP_UNLIKELY(o->whole))
		frame_done(o);
	switch (rec->type) {
	case KP_REC_ALLOC:
	case KP_REC_FREE:
	case KP_REC_REALLOC:
		last = order_event(o, rec);
		break;
	case KP_REC_FRAME:
		kp_order_flush(o);
		return 0;
	default:
		/* the decoder returns only the extension types it knows */
		if (rec->type < KP_REC_EXT_MIN)
			return 0;
		order_ext(o, rec);
		break;
	}
	*count = (struct kp_order_count){ .records = 1, .last_ts = last,
					  .tid = rec->tid };
	if (KP_UNLIKELY(o->nev >= KP_MAX_FRAME_EVENTS))
		kp_order_flush(o);
	return 1;
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
		/* field by field: the struct's padding need not be written */
		e[0].ts = m->ts;
		e[0].ptr = m->a;
		e[0].size = alloc ? m->b : 0;
		e[0].stack = alloc ? m->stack : 0;
		e[0].tid = tid;
		e[0].type = m->type;
		e[0].kind = alloc ? m->kind : 0;
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

/*
 * A run of ALLOC, FREE and REALLOC records from the reader's bulk path,
 * all of one EVENTS block, so of one thread. Per record only what depends
 * on it: room, the thread and its runs are settled once for the batch.
 */
int kp_order_mem(struct kp_order *o, const struct kp_mem_rec *m, size_t n,
		 struct kp_order_count *count)
{
	uint32_t tid = m[0].tid;

	if (KP_UNLIKELY(o->out_pos < o->out_n))
		abort(); /* the caller takes a frame's events before more */
	if (KP_UNLIKELY(o->whole))
		frame_done(o);
	if (KP_UNLIKELY(o->nev + 2 * n > KP_MAX_FRAME_EVENTS && o->nev)) {
		kp_order_flush(o);
		return 0;
	}
	ev_room(o, 2 * n);
	if (tid != o->run_tid || !o->nev) {
		add_run(o, o->nev);
		o->run_tid = tid;
		o->run_ts = m[0].ts;
	}
	struct kp_event *ev = o->ev;
	size_t k = o->nev;
	uint64_t run_ts = o->run_ts, last = 0;
	for (size_t i = 0; i < n; i++, m++) {
		if (KP_LIKELY(m->type != KP_REC_REALLOC)) {
			uint64_t ts = m->ts;
			mem_events(&ev[k], m, tid);
			if (KP_UNLIKELY(ts < run_ts))
				add_run(o, k); /* time went backwards */
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
				add_run(o, k + j); /* time went backwards */
			run_ts = ts;
			if (ts > last)
				last = ts;
		}
		k += c;
	}
	o->nev = k;
	o->run_ts = run_ts;
	*count = (struct kp_order_count){ .records = n, .last_ts = last,
					  .tid = tid };
	return 1;
}

/* ---- merging ------------------------------------------------------------------- */

/* Heap order on the current head of each run: (ts, buffer index). */
static int run_less(const struct kp_order *o, size_t a, size_t b)
{
	const struct kp_event *x = &o->ev[o->run_pos[a]];
	const struct kp_event *y = &o->ev[o->run_pos[b]];

	if (x->ts != y->ts)
		return x->ts < y->ts;
	return o->run_pos[a] < o->run_pos[b];
}

static void heap_down(struct kp_order *o, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, m = i;
		if (l < n && run_less(o, o->heap[l], o->heap[m]))
			m = l;
		if (l + 1 < n && run_less(o, o->heap[l + 1], o->heap[m]))
			m = l + 1;
		if (m == i)
			return;
		size_t tmp = o->heap[i];
		o->heap[i] = o->heap[m];
		o->heap[m] = tmp;
		i = m;
	}
}

/* Many runs: a binary heap of run heads (nr of them left). */
static size_t merge_heap(struct kp_order *o, uint32_t *idx)
{
	size_t k = 0;

	while (o->nr && k < KP_MERGE_CHUNK) {
		size_t r = o->heap[0];
		idx[k++] = (uint32_t)o->run_pos[r];
		if (++o->run_pos[r] == o->run_start[r + 1])
			o->heap[0] = o->heap[--o->nr];
		heap_down(o, o->nr, 0);
	}
	return k;
}

/*
 * A few runs: scan the heads for the least (ts, run). Runs lie in buffer
 * order, so the first least head also has the least buffer index: ties
 * keep file order. The last run left goes over as it is.
 */
static size_t merge_scan(struct kp_order *o, uint32_t *idx)
{
	const struct kp_event *ev = o->ev;
	size_t *pos = o->run_pos, *end = o->run_end;
	size_t nr = o->nr, k = 0;

	while (nr > 1 && k < KP_MERGE_CHUNK) {
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
		idx[k++] = (uint32_t)pos[m]++;
		if (pos[m] == end[m]) {
			/* Drop run m, keeping the others in buffer order. */
			for (size_t r = m; r + 1 < nr; r++) {
				pos[r] = pos[r + 1];
				end[r] = end[r + 1];
			}
			nr--;
		}
	}
	while (nr == 1 && k < KP_MERGE_CHUNK && pos[0] < end[0])
		idx[k++] = (uint32_t)pos[0]++;
	o->nr = nr;
	return k;
}

/*
 * Two runs, the usual frame of a two-thread program: the scan with both
 * heads in registers and no branch on which one is taken (a coin toss
 * when the threads' events interleave). Same ties.
 */
static size_t merge_two(struct kp_order *o, uint32_t *idx)
{
	const struct kp_event *ev = o->ev;
	size_t a = o->run_pos[0], a_end = o->run_end[0];
	size_t b = o->run_pos[1], b_end = o->run_end[1];
	size_t k = 0;

	while (a < a_end && b < b_end && k < KP_MERGE_CHUNK) {
		size_t take_b = ev[b].ts < ev[a].ts;
		idx[k++] = (uint32_t)(take_b ? b : a);
		b += take_b;
		a += take_b ^ 1;
	}
	o->run_pos[0] = a;
	o->run_pos[1] = b;
	if (a == a_end || b == b_end) {
		/* one run left: merge_scan() goes on with it */
		o->nr = 1;
		if (a == a_end) {
			o->run_pos[0] = b;
			o->run_end[0] = b_end;
		}
	}
	return k;
}

/* The next indexes of the frame's time order, in o->idx. */
static void merge_more(struct kp_order *o)
{
	size_t k;

	if (o->by_heap)
		k = merge_heap(o, o->idx);
	else if (o->nr == 2)
		k = merge_two(o, o->idx);
	else
		k = merge_scan(o, o->idx);
	o->idx_pos = 0;
	o->idx_n = k;
}

void kp_order_flush(struct kp_order *o)
{
	if (o->whole)
		frame_done(o);
	size_t n = o->nev;

	if (!n)
		return;
	o->run_start[o->nruns] = n;
	o->nr = o->nruns;
	for (size_t r = 0; r < o->nr; r++) {
		o->run_pos[r] = o->run_start[r];
		o->run_end[r] = o->run_start[r + 1];
		o->heap[r] = r;
	}
	o->by_heap = o->nr > KP_MERGE_SCAN_MAX;
	if (o->by_heap)
		for (size_t i = o->nr / 2; i-- > 0;)
			heap_down(o, o->nr, i);
	o->idx_pos = o->idx_n = 0;
	o->out_pos = 0;
	o->out_n = n;
	o->nruns = 0;
}

int kp_order_pending(const struct kp_order *o)
{
	return o->out_pos < o->out_n;
}

int kp_order_empty(const struct kp_order *o)
{
	return o->whole || (!o->nev && o->out_pos == o->out_n);
}

int kp_order_whole(struct kp_order *o, struct kp_batch *b)
{
	if (o->out_pos || o->out_pos == o->out_n || o->nr != 1 ||
	    o->by_heap || o->idx_n)
		return 0;
	for (size_t i = 0; i < o->nx; i++)
		if (o->xrecs[i].u.ext.str)
			o->xrecs[i].u.ext.str = o->xstr + o->xstr_off[i];
	*b = (struct kp_batch){ .ev = o->ev, .n = o->nev,
				.recs = o->xrecs, .nx = o->nx,
				.xev = o->xpos, .nxev = o->nx };
	o->out_pos = o->out_n;
	o->whole = 1;
	return 1;
}

/* ---- taking the events out ---------------------------------------------------- */

/* Copy n bytes of src into s's bytes, NUL-terminated, 8-aligned. */
static const char *sink_own(struct kp_order_sink *s, const char *src,
			    size_t n)
{
	char *p = (char *)s->bytes + s->nbytes;
	memcpy(p, src, n);
	p[n] = '\0';
	s->nbytes += (n + 1 + 7) & ~(size_t)7;
	return p;
}

/* Extension event e to s as its n-th event from base, with its record.
 * @return 0 if s has no room for the record. */
static int take_ext(struct kp_order *o, struct kp_order_sink *s,
		    const struct kp_event *e, size_t base)
{
	if (s->nrecs >= s->recs_cap || s->nxev >= s->xev_cap ||
	    s->bytes_cap - s->nbytes < KP_MAX_STR_LEN + 8)
		return 0;
	struct kp_rec *r = &s->recs[s->nrecs];
	*r = o->xrecs[e->ptr];
	if (r->u.ext.str)
		r->u.ext.str = sink_own(s, o->xstr + o->xstr_off[e->ptr],
					r->u.ext.str_len);
	struct kp_event *d = &s->ev[s->n];
	*d = *e;
	d->ptr = s->nrecs++;
	s->xev[s->nxev++] = (uint32_t)(s->n - base);
	s->n++;
	return 1;
}

int kp_order_take(struct kp_order *o, struct kp_order_sink *s)
{
	const struct kp_event *ev = o->ev;
	size_t base = s->n;

	if (o->out_pos == o->out_n)
		return 1; /* nothing flushed */
	if (o->nr == 1 && !o->by_heap && !o->nx && o->idx_pos == o->idx_n) {
		/* one run left, allocation events only: a copy */
		size_t from = o->run_pos[0], n = o->run_end[0] - from;
		if (n > s->ev_cap - s->n)
			n = s->ev_cap - s->n;
		memcpy(s->ev + s->n, ev + from, n * sizeof(*ev));
		s->n += n;
		o->run_pos[0] += n;
		o->out_pos += n;
	}
	while (o->out_pos < o->out_n && s->n < s->ev_cap) {
		if (o->idx_pos == o->idx_n)
			merge_more(o);
		size_t i = o->idx_pos, end = o->idx_n;
		if (end - i > s->ev_cap - s->n)
			end = i + (s->ev_cap - s->n);
		struct kp_event *dst = s->ev + s->n;
		if (!o->nx) {
			/* allocation events only; the stores fetch their
			 * lines for writing ahead, since the other thread
			 * read them last (readahead.c) */
			for (size_t k = 0; k < end - i; k++) {
				__builtin_prefetch(&dst[k + 8], 1);
				dst[k] = ev[o->idx[i + k]];
			}
			s->n += end - i;
		} else {
			for (size_t k = i; k < end; k++, i++) {
				const struct kp_event *e = &ev[o->idx[k]];
				if (e->type < KP_REC_EXT_MIN ||
				    e->type > KP_REC_TYPE_MAX)
					s->ev[s->n++] = *e;
				else if (!take_ext(o, s, e, base))
					break;
			}
			end = i;
		}
		o->out_pos += end - o->idx_pos;
		o->idx_pos = end;
		if (o->idx_pos < o->idx_n)
			break; /* s is full */
	}
	if (o->out_pos < o->out_n)
		return 0;
	frame_done(o);
	return 1;
}
