/* SPDX-License-Identifier: MIT */
/*
 * Read-ahead: a trace's reader (read, zstd, decode) and the order stage
 * (order.c: each frame's events merged into time order) on a thread of
 * their own, working ahead of the passes. On an allocation-heavy trace
 * they are some half of the work, so with a second core free the pass
 * runs up to about twice as fast; it stays one streaming pass.
 *
 * The results go over in chunks, RA_CHUNKS of them in flight, so memory
 * stays bounded whatever the trace's size. A chunk holds, in the order
 * they were produced, the events of a frame in time order (a frame may
 * take several chunks) with the records of its extension events, the
 * counts of the records the order stage took, the other records of
 * kp_reader_next() (copied with everything they point at, since the
 * reader reuses its frame buffer) and, at the end, the reader's last
 * return code.
 *
 * Which thread does the ordering is balanced frame by frame: when the
 * consumer is idle (it has used up every full chunk) the producer lends
 * it an order stage, either a flushed frame to take the events of, or,
 * at a frame's start, one to fill from the raw results (memory batches
 * and records) that follow up to the FRAME. On a trace of queries, whose
 * records cost the most to decode and buffer, the producer alone was the
 * bottleneck; on alloc_bench's the consumer is, and nothing is lent.
 * Either way the same code runs on the same results in the same order,
 * so the driver sees exactly what it would have seen doing all of it
 * itself: its output is the same as reading inline, which is what
 * happens, one chunk at a time on demand, if the process may run on one
 * CPU only or the thread cannot be started.
 *
 * The two threads share only the chunks, the count of full ones and the
 * flag saying an order stage is lent, under one mutex: a chunk is the
 * producer's until the count says it is full and the consumer's until it
 * gives it back, a lent stage the consumer's until it clears the flag
 * (the mutex orders each hand-over). Nothing else of the analysis is
 * touched by the producer: the reader, the query texts and the order
 * stage it fills are used by it alone between kp_ra_start() and
 * kp_ra_end(), and the reader's header was read before.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "err.h"

/* A hand-over costs two lock round trips and often a wake-up: a trace of
 * deep, varied stacks (g++'s, 79,000 STACK records of up to 64 frames and
 * 64,000 I/O records among 4.5 M events) filled chunks of 256 records and
 * 64 KiB after a few hundred events, and the hand-overs took 14 % of the
 * analysis; with 2,048 records and 1 MiB per chunk the analysis ran 5 to
 * 7 % faster on that trace and on alloc_bench's. 8 chunks in flight ran
 * alloc_bench's traces 7 % faster than 4 when the driver ordered all the
 * frames (16 did no better), and about as fast as 4 now (within 8 %
 * either way). A short spin before a sleep gained a little then, and lost
 * a third with another job on one of the two cores: it is not done. */
#define RA_CHUNKS 8
#define RA_EV 8192      /* events per chunk */
#define RA_RECS 2048    /* records per chunk (extension events' too) */
#define RA_COUNTS 1024  /* counts per chunk */
#define RA_MEM 4096     /* raw memory records per chunk */
#define RA_ITEMS (RA_EV + RA_RECS + RA_COUNTS + RA_MEM)
#define RA_BYTES (1u << 20) /* what the records point at */
#define RA_SCRATCH 512  /* memory records decoded at a time */

/* The most bytes one record points at: a MODULE's path and build id (a
 * STACK's pcs take less), each rounded up for alignment. */
#define RA_REC_BYTES_MAX (2 * (KP_MAX_STR_LEN + 8))

/* The order stages: the producer's own (0) and those it may lend. With 4
 * to lend, the producer ran out of them on the trace of tests/apps'
 * sqlite_bench (frames of ~1,100 events: a chunk holds several) and
 * ordered the next frames itself: 0.81 times the speed of d9624a4 (where
 * the driver ordered every frame), against 0.93 with 16 (medians of 7
 * alternating runs; alloc_bench's traces ran as fast with either). */
#define RA_ORDERS 17

/* It lends one while the consumer has no more than this many full chunks
 * waiting. Against d9624a4, in separate runs: 0 lent too rarely
 * (sqlite_bench 0.79 times its speed, against 0.92 with 1); lending
 * whenever a stage was free gave alloc_bench's trace (stacks on) 1.02
 * times its speed, against 1.35 with 1. */
#define RA_LEND_FULL 1

/* What a chunk hands over, in order: a record (recs[off]), a count
 * (counts[off]), n events at ev[off] whose extension events are
 * xev[xoff, xoff + nx), order stage off lent (RA_LEND: to fill from the
 * raw results that follow, up to its frame's FRAME), or a raw memory
 * batch (RA_MEM_BATCH: n records at mem[off]). */
enum { RA_LEND = KP_RA_EVENTS + 1, RA_MEM_BATCH };
struct ra_item {
	uint32_t kind; /* KP_RA_RECORD, KP_RA_COUNT, KP_RA_EVENTS */
	uint32_t off, n, xoff, nx;
};

struct ra_chunk {
	struct kp_event ev[RA_EV];
	struct kp_rec recs[RA_RECS];
	uint32_t xev[RA_RECS];
	struct kp_mem_rec mem[RA_MEM];
	struct kp_order_count counts[RA_COUNTS];
	struct ra_item items[RA_ITEMS];
	_Alignas(8) unsigned char bytes[RA_BYTES];
	size_t nev, nrecs, nxev, ncounts, nmem, nitems, nbytes;
	int end;            /* the reader's last call is in this chunk */
	int rc;             /* its return (0, or an error) */
	uint64_t frames;    /* kp_reader_frames() then */
};

/* Each side writes its own part of this for every record or item, so the
 * parts lie a cache line apart: sharing one, they cost the query-heavy
 * trace of sqlite_bench a third of its speed. */
struct kp_ra {
	/* set at the start */
	struct kp_reader *r;
	struct ra_chunk *chunks;
	struct kp_order *orders[RA_ORDERS];
	struct ra_chunk *sink; /* the consumer's, for a lent stage's events */
	int threaded;
	pthread_t thread;
	/* the producer's own */
	_Alignas(64) size_t wr; /* the chunk it fills next */
	int raw;            /* it passes raw results to a lent stage */
	struct kp_qtexts qtexts;
	struct kp_mem_rec scratch[RA_SCRATCH];
	size_t nscratch;    /* a batch the frame had no room for */
	struct kp_rec rec;  /* a record held until the events before it go */
	int held;
	int ended, end_rc;  /* the reader returned end_rc, after end_frames */
	uint64_t end_frames;
	/* the consumer's own */
	_Alignas(64) size_t rd; /* chunk being read (index) */
	size_t pos;         /* next item in it */
	int have;           /* chunk rd is the consumer's */
	size_t co;          /* a lent order stage (0: none), taken into sink */
	int co_raw;         /* filled from raw results up to a FRAME */
	int co_whole;       /* co_batch: all of its frame, where it lies */
	struct kp_batch co_batch;
	size_t sink_pos;
	/* shared, under lock */
	_Alignas(64) pthread_mutex_t lock;
	pthread_cond_t cond; /* a chunk filled or given back, or stop */
	size_t full;        /* chunks filled and not given back yet */
	int stop;
	int lent[RA_ORDERS]; /* order stage i is the consumer's */
};

/* Copy n bytes of src into the chunk; NULL stays NULL. */
static const void *own(struct ra_chunk *c, const void *src, size_t n)
{
	if (!src)
		return NULL;
	unsigned char *p = c->bytes + c->nbytes;
	if (n)
		memcpy(p, src, n);
	c->nbytes += (n + 7) & ~(size_t)7;
	return p;
}

/* Make rec independent of the reader's buffers. */
static void own_rec(struct ra_chunk *c, struct kp_rec *rec)
{
	if (rec->type >= KP_REC_EXT_MIN) {
		rec->u.ext.str = own(c, rec->u.ext.str, rec->u.ext.str_len);
		return;
	}
	switch (rec->type) {
	case KP_REC_STACK:
		rec->u.stack.pcs = own(c, rec->u.stack.pcs,
				       rec->u.stack.pcs ?
				       rec->u.stack.depth * sizeof(uint64_t) :
				       0);
		break;
	case KP_REC_MODULE:
	case KP_REC_UNMODULE:
		rec->u.module.path = own(c, rec->u.module.path,
					 rec->u.module.path_len);
		rec->u.module.build_id = own(c, rec->u.module.build_id,
					     rec->u.module.build_id_len);
		break;
	case KP_REC_THREAD_START:
	case KP_REC_THREAD_NAME:
		rec->u.thread.name = own(c, rec->u.thread.name,
					 rec->u.thread.name_len);
		break;
	case KP_REC_EXEC:
		rec->u.exec.path = own(c, rec->u.exec.path,
				       rec->u.exec.path_len);
		break;
	case KP_REC_QUERY_TEXT:
		rec->u.qtext.text = own(c, rec->u.qtext.text,
					rec->u.qtext.len);
		break;
	case KP_REC_JIT_CODE:
		rec->u.jit.name = own(c, rec->u.jit.name, rec->u.jit.name_len);
		break;
	default:
		break;
	}
}

/* The order stage's events that chunk c has room for, as one item.
 * @return 1 if none are left. */
static int ra_events(struct kp_order *o, struct ra_chunk *c)
{
	struct kp_order_sink s = {
		.ev = c->ev, .n = c->nev, .ev_cap = RA_EV,
		.recs = c->recs, .nrecs = c->nrecs, .recs_cap = RA_RECS,
		.xev = c->xev, .nxev = c->nxev, .xev_cap = RA_RECS,
		.bytes = c->bytes, .nbytes = c->nbytes, .bytes_cap = RA_BYTES,
	};
	int all = kp_order_take(o, &s);
	if (s.n > c->nev)
		c->items[c->nitems++] = (struct ra_item){
			KP_RA_EVENTS, (uint32_t)c->nev, (uint32_t)(s.n - c->nev),
			(uint32_t)c->nxev, (uint32_t)(s.nxev - c->nxev) };
	c->nev = s.n;
	c->nrecs = s.nrecs;
	c->nxev = s.nxev;
	c->nbytes = s.nbytes;
	return all;
}

/* Records the order stage took: one more count, or added to the last
 * item's if it is one of the same thread. */
static void count_add(struct kp_order_count *sum,
		      const struct kp_order_count *k)
{
	sum->records += k->records;
	if (k->last_ts > sum->last_ts)
		sum->last_ts = k->last_ts;
}

static void ra_count(struct ra_chunk *c, const struct kp_order_count *k)
{
	if (c->nitems && c->items[c->nitems - 1].kind == KP_RA_COUNT &&
	    c->counts[c->ncounts - 1].tid == k->tid) {
		count_add(&c->counts[c->ncounts - 1], k);
		return;
	}
	c->counts[c->ncounts] = *k;
	c->items[c->nitems++] = (struct ra_item){
		KP_RA_COUNT, (uint32_t)c->ncounts++, 0, 0, 0 };
}

/* Room in c for whatever comes next: a record, a count, a batch's. */
static int ra_room(const struct ra_chunk *c)
{
	return c->nrecs < RA_RECS && c->ncounts < RA_COUNTS &&
	       c->nitems + 2 < RA_ITEMS &&
	       RA_BYTES - c->nbytes >= RA_REC_BYTES_MAX;
}

int kp_ra_lend = -1;
uint64_t kp_ra_lent;

/*
 * At a frame's start, lend an order stage to the consumer if it has
 * little to do (few full chunks waiting) and one is free: it fills it
 * from the raw results that follow, up to the frame's FRAME, and takes
 * its events itself.
 */
static void ra_lend(struct kp_ra *ra, struct ra_chunk *c)
{
	size_t i = 0;

	if (!ra->threaded || c->nitems >= RA_ITEMS || !kp_ra_lend)
		return;
	pthread_mutex_lock(&ra->lock);
	if (ra->full <= RA_LEND_FULL || kp_ra_lend > 0)
		for (i = RA_ORDERS - 1; i > 0 && ra->lent[i]; i--)
			;
	ra->lent[i] = i > 0;
	kp_ra_lent += i > 0;
	pthread_mutex_unlock(&ra->lock);
	if (!i)
		return;
	c->items[c->nitems++] = (struct ra_item){
		RA_LEND, (uint32_t)i, 0, 0, 0 };
	ra->raw = 1;
}

/* A QUERY that names its text by id. */
static int text_id(const struct kp_rec *rec)
{
	return rec->type == KP_REC_QUERY && rec->u.ext.v[KP_Q_TEXT_ID] > 0 &&
	       rec->u.ext.v[KP_Q_TEXT_ID] <= UINT32_MAX;
}

/*
 * Query texts, before the order stage sees the records: a QUERY_TEXT
 * defines one, and a QUERY that names its text by id carries the text
 * (the table's own copy, kept to the end and never changed).
 */
static void ra_qtext(struct kp_ra *ra, struct kp_rec *rec)
{
	if (rec->type == KP_REC_QUERY_TEXT) {
		kp_qtexts_define(&ra->qtexts, rec->u.qtext.id,
				 rec->u.qtext.text, rec->u.qtext.len);
	} else if (text_id(rec)) {
		rec->u.ext.str = kp_qtexts_get(
			&ra->qtexts, (uint32_t)rec->u.ext.v[KP_Q_TEXT_ID],
			&rec->u.ext.str_len);
		if (!rec->u.ext.str)
			rec->u.ext.str_len = 0; /* not defined: no text */
	}
}

/* The reader's next record into *rec. @return 1, or 0 at the end. */
static int ra_next_rec(struct kp_ra *ra, struct kp_rec *rec)
{
	int rc = kp_reader_next(ra->r, rec);

	if (rc == 1) {
		ra_qtext(ra, rec);
		return 1;
	}
	ra->ended = 1;
	ra->end_rc = rc;
	ra->end_frames = kp_reader_frames(ra->r);
	return 0;
}

/* The record in slot c->recs[c->nrecs] into c as one. */
static void ra_put_rec(struct ra_chunk *c)
{
	struct kp_rec *rec = &c->recs[c->nrecs];

	if (!text_id(rec))
		own_rec(c, rec); /* a QUERY's text from the table is not */
	c->items[c->nitems++] = (struct ra_item){
		KP_RA_RECORD, (uint32_t)c->nrecs++, 0, 0, 0 };
}

/*
 * Read records into order stage o, counting them in c, until one is held
 * (it goes out as a record), the frame is flushed, the reader ends or c
 * has no room for another count.
 */
static void ra_read(struct kp_ra *ra, struct kp_order *o, struct ra_chunk *c)
{
	struct kp_order_count k;

	while (c->ncounts < RA_COUNTS && c->nitems + 2 < RA_ITEMS) {
		size_t n = ra->nscratch;
		ra->nscratch = 0;
		if (!n)
			n = kp_reader_mem(ra->r, ra->scratch, RA_SCRATCH);
		if (n) {
			if (!kp_order_mem(o, ra->scratch, n, &k)) {
				ra->nscratch = n; /* after the frame's events */
				return;
			}
			ra_count(c, &k);
			continue;
		}
		if (!ra_next_rec(ra, &ra->rec)) {
			kp_order_flush(o); /* no FRAME at the end */
			return;
		}
		if (!kp_order_rec(o, &ra->rec, &k)) {
			ra->held = 1;
			return;
		}
		ra_count(c, &k);
		if (kp_order_pending(o))
			return; /* flushed: the frame was too large */
	}
}

/*
 * Raw results into c for the lent stage, until the FRAME that ends its
 * frame (or the reader's end; the consumer then flushes it) or c is full.
 */
static void ra_pass(struct kp_ra *ra, struct ra_chunk *c)
{
	while (ra_room(c) && c->nmem + RA_SCRATCH <= RA_MEM) {
		struct kp_mem_rec *m = &c->mem[c->nmem];
		size_t n = ra->nscratch;
		ra->nscratch = 0;
		if (n)
			memcpy(m, ra->scratch, n * sizeof(*m));
		else
			n = kp_reader_mem(ra->r, m, RA_SCRATCH);
		if (n) {
			c->items[c->nitems++] = (struct ra_item){
				RA_MEM_BATCH, (uint32_t)c->nmem, (uint32_t)n,
				0, 0 };
			c->nmem += n;
			continue;
		}
		struct kp_rec *rec = &c->recs[c->nrecs];
		if (!ra_next_rec(ra, rec)) {
			ra->raw = 0;
			return;
		}
		ra_put_rec(c);
		if (rec->type == KP_REC_FRAME) {
			ra->raw = 0;
			return;
		}
	}
}

/* Fill chunk c with the next results. */
static void ra_fill(struct kp_ra *ra, struct ra_chunk *c)
{
	c->nev = c->nrecs = c->nxev = c->ncounts = c->nmem = 0;
	c->nitems = c->nbytes = 0;
	c->end = 0;
	struct kp_order *o = ra->orders[0];

	for (;;) {
		if (!ra_events(o, c))
			return; /* full of events */
		if (!ra_room(c))
			return;
		if (ra->held) {
			/* a record after the events before it */
			ra->held = 0;
			c->recs[c->nrecs] = ra->rec;
			ra_put_rec(c);
			continue;
		}
		if (ra->ended) {
			c->end = 1;
			c->rc = ra->end_rc;
			c->frames = ra->end_frames;
			return;
		}
		if (!ra->raw && kp_order_empty(o))
			ra_lend(ra, c);
		if (!ra->raw) {
			ra_read(ra, o, c);
		} else if (c->nmem + RA_SCRATCH <= RA_MEM) {
			ra_pass(ra, c);
		} else {
			return;
		}
	}
}

static void *ra_main(void *arg)
{
	struct kp_ra *ra = arg;

	for (;;) {
		pthread_mutex_lock(&ra->lock);
		while (ra->full == RA_CHUNKS && !ra->stop)
			pthread_cond_wait(&ra->cond, &ra->lock);
		int stop = ra->stop;
		pthread_mutex_unlock(&ra->lock);
		if (stop)
			break;
		struct ra_chunk *c = &ra->chunks[ra->wr];
		ra_fill(ra, c);
		int end = c->end; /* c is the consumer's once counted */
		ra->wr = (ra->wr + 1) % RA_CHUNKS;
		pthread_mutex_lock(&ra->lock);
		ra->full++;
		pthread_cond_broadcast(&ra->cond);
		pthread_mutex_unlock(&ra->lock);
		if (end)
			break;
	}
	return NULL;
}

/* Whether this process may run on more than one CPU. */
static int several_cpus(void)
{
	cpu_set_t set;

	return sched_getaffinity(0, sizeof(set), &set) != 0 ||
	       CPU_COUNT(&set) > 1;
}

struct kp_ra *kp_ra_start(struct kp_reader *r)
{
	struct kp_ra *ra;

	if (posix_memalign((void **)&ra, _Alignof(struct kp_ra), sizeof(*ra)))
		die(1, "out of memory (allocating %zu bytes)", sizeof(*ra));
	memset(ra, 0, sizeof(*ra));

	ra->r = r;
	for (size_t i = 0; i < RA_ORDERS; i++)
		ra->orders[i] = kp_order_new();
	ra->chunks = xmalloc(RA_CHUNKS * sizeof(*ra->chunks));
	pthread_mutex_init(&ra->lock, NULL);
	pthread_cond_init(&ra->cond, NULL);
	/* On one CPU the thread would only add its hand-overs (~3 %). */
	ra->threaded = several_cpus(); /* set before the thread reads it */
	if (ra->threaded) {
		ra->sink = xmalloc(sizeof(*ra->sink));
		if (pthread_create(&ra->thread, NULL, ra_main, ra)) {
			ra->threaded = 0;
			free(ra->sink);
			ra->sink = NULL;
		}
	}
	return ra;
}

/* The consumer's next chunk, waiting for the producer (or filling it). */
static struct ra_chunk *ra_take(struct kp_ra *ra)
{
	struct ra_chunk *c = &ra->chunks[ra->rd];

	if (!ra->threaded) {
		ra_fill(ra, c);
	} else {
		pthread_mutex_lock(&ra->lock);
		while (!ra->full)
			pthread_cond_wait(&ra->cond, &ra->lock);
		pthread_mutex_unlock(&ra->lock);
	}
	ra->have = 1;
	ra->pos = 0;
	return c;
}

/* Give the consumer's chunk back to the producer. */
static void ra_give(struct kp_ra *ra)
{
	ra->have = 0;
	if (ra->threaded) {
		pthread_mutex_lock(&ra->lock);
		ra->full--;
		pthread_cond_broadcast(&ra->cond);
		pthread_mutex_unlock(&ra->lock);
		ra->rd = (ra->rd + 1) % RA_CHUNKS;
	}
}

/* Item it of chunk c to *out. @return its kind. */
static int ra_out(const struct ra_chunk *c, struct ra_item it,
		  struct kp_ra_out *out)
{
	switch (it.kind) {
	case KP_RA_EVENTS:
		out->batch = (struct kp_batch){
			.ev = &c->ev[it.off], .n = it.n,
			.recs = c->recs, .nx = it.nx,
			.xev = &c->xev[it.xoff], .nxev = it.nx };
		break;
	case KP_RA_COUNT:
		out->count = c->counts[it.off];
		break;
	default:
		out->rec = &c->recs[it.off];
		break;
	}
	return (int)it.kind;
}

/*
 * The consumer's lent order stage: its next events into the sink, or if
 * none are left and no more are to come, the stage back to the producer.
 * @return 1 if that left nothing to do.
 */
static int ra_lent(struct kp_ra *ra)
{
	struct ra_chunk *s = ra->sink;
	struct kp_order *o = ra->orders[ra->co];

	if (kp_order_pending(o)) {
		s->nev = s->nrecs = s->nxev = s->nitems = s->nbytes = 0;
		ra->sink_pos = 0;
		ra->co_whole = kp_order_whole(o, &ra->co_batch);
		if (!ra->co_whole)
			ra_events(o, s);
		return 0;
	}
	if (ra->co_raw)
		return 1;
	pthread_mutex_lock(&ra->lock);
	ra->lent[ra->co] = 0;
	pthread_mutex_unlock(&ra->lock);
	ra->co = 0;
	return 1;
}

/*
 * Raw items of chunk c into the lent stage, from item ra->pos on: the
 * memory batches and event records of one thread that come next, as one
 * count, else the record there. @return what goes out, or 0 if the stage
 * flushed its frame first: its events go out, then the item again.
 */
static int ra_raw(struct kp_ra *ra, struct ra_chunk *c, struct kp_ra_out *out)
{
	struct kp_order *o = ra->orders[ra->co];
	struct kp_order_count k, sum = { 0 };
	const struct kp_rec *rec = NULL;

	for (; ra->pos < c->nitems; ra->pos++) {
		struct ra_item it = c->items[ra->pos];
		int took;
		if (it.kind == RA_MEM_BATCH) {
			const struct kp_mem_rec *m = &c->mem[it.off];
			if (sum.records && m->tid != sum.tid)
				break;
			took = kp_order_mem(o, m, it.n, &k);
		} else if (it.kind == KP_RA_RECORD) {
			rec = &c->recs[it.off];
			if (sum.records && rec->tid != sum.tid)
				break;
			took = kp_order_rec(o, rec, &k);
		} else {
			break;
		}
		if (!took)
			break;
		rec = NULL;
		sum.tid = k.tid;
		count_add(&sum, &k);
		if (kp_order_pending(o)) {
			ra->pos++;
			break; /* flushed: the frame was too large */
		}
	}
	if (sum.records) {
		out->count = sum;
		return KP_RA_COUNT;
	}
	if (!rec || kp_order_pending(o))
		return 0; /* a FRAME, or a batch: the frame's events first */
	if (rec->type == KP_REC_FRAME)
		ra->co_raw = 0; /* the stage's frame is whole */
	ra->pos++;
	out->rec = rec;
	return KP_RA_RECORD;
}

int kp_ra_next(struct kp_ra *ra, struct kp_ra_out *out, uint64_t *frames)
{
	for (;;) {
		if (ra->co) {
			struct ra_chunk *s = ra->sink;
			if (ra->co_whole) {
				ra->co_whole = 0;
				out->batch = ra->co_batch;
				return KP_RA_EVENTS;
			}
			if (ra->sink_pos < s->nitems)
				return ra_out(s, s->items[ra->sink_pos++], out);
			if (!ra_lent(ra))
				continue;
		}
		struct ra_chunk *c = ra->have ? &ra->chunks[ra->rd]
					      : ra_take(ra);
		if (ra->pos < c->nitems) {
			struct ra_item it = c->items[ra->pos];
			if (it.kind == RA_LEND) {
				ra->co = it.off;
				ra->co_raw = 1;
				ra->sink_pos = ra->sink->nitems = 0;
				ra->pos++;
				continue;
			}
			if (ra->co_raw && (it.kind == RA_MEM_BATCH ||
					   it.kind == KP_RA_RECORD)) {
				int kind = ra_raw(ra, c, out);
				if (kind)
					return kind;
				continue;
			}
			ra->pos++;
			return ra_out(c, it, out);
		}
		if (c->end) {
			if (ra->co_raw) {
				/* the lent stage's frame had no FRAME */
				kp_order_flush(ra->orders[ra->co]);
				ra->co_raw = 0;
				continue;
			}
			*frames = c->frames;
			return c->rc; /* and stays so: the chunk is kept */
		}
		ra_give(ra);
	}
}

void kp_ra_end(struct kp_ra *ra)
{
	if (!ra)
		return;
	if (ra->threaded) {
		pthread_mutex_lock(&ra->lock);
		ra->stop = 1;
		pthread_cond_broadcast(&ra->cond);
		pthread_mutex_unlock(&ra->lock);
		pthread_join(ra->thread, NULL);
	}
	pthread_mutex_destroy(&ra->lock);
	pthread_cond_destroy(&ra->cond);
	for (size_t i = 0; i < RA_ORDERS; i++)
		kp_order_free(ra->orders[i]);
	kp_qtexts_free(&ra->qtexts);
	free(ra->sink);
	free(ra->chunks);
	free(ra);
}
