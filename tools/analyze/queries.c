/* SPDX-License-Identifier: MIT */
/*
 * The queries pass (kprof-analyze queries): QUERY_BEGIN / QUERY records
 * grouped by fingerprint (lib/fingerprint.h), with what the trace shows
 * happened while each query ran, and the findings built on them.
 *
 *   profile    per fingerprint: calls, total/mean, p50/p95/p99/max (the
 *              log-linear histogram of hist.h), share of all query time,
 *              rows, SQLite's full-scan/sort/auto-index/VM-step counters,
 *              prepare time, errors, the thread's allocations and I/O
 *              between QUERY_BEGIN and QUERY (ALLOC events; IO events:
 *              bytes = the call's positive return, fsyncs per
 *              query_io_is_fsync()), the CPU samples of the thread that
 *              fall within its runs (struct qsbuf), and its call sites.
 *              Ranked by total time (pt-query-digest's profile).
 *   slow       fingerprints with executions over the slow threshold
 *              (--slow-ms, else the trace's KOTOBA_PROFILE_SLOW_QUERY_MS,
 *              else 100 ms): the worst sample, its stack, and its time
 *              split into file I/O, fsync, lock wait (IO records of the
 *              wait ops, kp_io_op_is_wait: blocking or refused fcntl
 *              locks, a busy handler's sleeps), CPU (the samples) and
 *              the rest.
 *   N+1        on one thread, under one parent (the same innermost open
 *              span, or none), a run of >= K (--n-plus-one-min, else
 *              NPLUS1_MIN = 5) consecutive
 *              executions of one fingerprint (a query that began before
 *              the run, such as the cursor it loops over, does not break
 *              it) whose values differ
 *              (>= 2 distinct value hashes, or values unknown) is an N+1;
 *              reported per (fingerprint, call site of the run's first
 *              query) with runs, queries, the longest run, the time, and
 *              the saving if batched = run time - its slowest query (one
 *              batched query assumed to cost about one of them). A run of
 *              one value is a duplicate run instead.
 *   duplicates reads (select/with) executed again with the same values
 *              (same fingerprint, same value hash), anywhere in the trace.
 *   index      fingerprints SQLite ran with full-scan steps or an automatic
 *              index: the WHERE equality columns (=, in), then one range
 *              column (<, >, <=, >=, between, like), else the ORDER BY
 *              columns, of the FROM/UPDATE table, as CREATE INDEX; with
 *              --sqlite-db FILE checked with EXPLAIN QUERY PLAN (sqlite3
 *              CLI) on a copy of FILE: used or not. libpq queries carry
 *              no scan counters: with --pg-dsn DSN, those whose generic
 *              plan on that server (psql) scans a table of at least
 *              PG_MIN_ROWS rows sequentially get the same advice.
 *   storms     on one thread, >= N (--storm-min, else STORM_MIN = 10)
 *              writes (INSERT/UPDATE/
 *              DELETE/REPLACE, or flagged as writes) in autocommit mode in
 *              a row (autocommit reads may come between, a statement in an
 *              explicit transaction ends the storm): each paid its own
 *              commit. The saving measured = storm time - n x the mean
 *              time of the same fingerprint inside explicit transactions
 *              (when the trace has those), else (n-1)/n of its fsync time
 *              (when I/O records show fsyncs), else not measured.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "analyze.h"
#include "fingerprint.h"
#include "hist.h"
#include "io.h"
#include "json.h"

#define NDECADES 9       /* a fingerprint's time distribution */
#define NPLUS1_MIN 5
#define STORM_MIN 10
#define MAX_OPEN 32      /* nested open queries tracked per thread */
#define MAX_SPANS 64
#define RUN_VALS 8       /* distinct values remembered per run */
#define MAX_VALS 65536   /* distinct values remembered per fingerprint */
#define MAX_VALS_TOTAL (4u << 20) /* ... and over all of them */
#define DEFAULT_SLOW_MS 100
/* Fingerprints kept (each holds a histogram of up to ~30 KiB for realistic
 * durations); queries of further ones are counted in fingerprints_dropped. */
#define MAX_FPS 50000
/* Threads with query state per trace (a hostile trace may name many). */
#define MAX_QTHREADS 65536
/* CPU samples kept per thread until its queries end (older ones merged
 * in pairs when there are more), and the threads they are kept for, per
 * trace: 128 MiB at most */
#define SAMPLES_KEPT 1024
#define SAMPLE_THREADS 4096

/*
 * I/O attribution by the IO record's operation (lib/io.h): fsync,
 * fdatasync, sync_file_range and msync are syncs; the calls that move data
 * count their positive return as bytes (not lseek, whose return is an
 * offset, nor ftruncate or fallocate).
 */
static int query_io_is_fsync(unsigned kind)
{
	return kind == KP_IO_OP_FSYNC || kind == KP_IO_OP_FDATASYNC ||
	       kind == KP_IO_OP_SYNC_FILE_RANGE || kind == KP_IO_OP_MSYNC;
}

static int query_io_moves_data(unsigned kind)
{
	switch (kind) {
	case KP_IO_OP_LSEEK:
	case KP_IO_OP_FTRUNCATE:
	case KP_IO_OP_FALLOCATE:
	case KP_IO_OP_FFLUSH:
		return 0;
	default:
		return 1;
	}
}

struct acc { /* what ran on the thread while a query was open */
	uint64_t alloc_calls, alloc_bytes;
	uint64_t io_calls, io_bytes, io_ns;
	uint64_t fsyncs, fsync_ns;
	uint64_t lock_waits, lock_ns; /* kp_io_op_is_wait(): lock, sleep */
	uint64_t cpu_samples, cpu_ns; /* CPU_SAMPLE records: their weight */
};

static void acc_add(struct acc *a, const struct acc *b)
{
	a->alloc_calls = kp_sat_add(a->alloc_calls, b->alloc_calls);
	a->alloc_bytes = kp_sat_add(a->alloc_bytes, b->alloc_bytes);
	a->io_calls = kp_sat_add(a->io_calls, b->io_calls);
	a->io_bytes = kp_sat_add(a->io_bytes, b->io_bytes);
	a->io_ns = kp_sat_add(a->io_ns, b->io_ns);
	a->fsyncs = kp_sat_add(a->fsyncs, b->fsyncs);
	a->fsync_ns = kp_sat_add(a->fsync_ns, b->fsync_ns);
	a->lock_waits = kp_sat_add(a->lock_waits, b->lock_waits);
	a->lock_ns = kp_sat_add(a->lock_ns, b->lock_ns);
	a->cpu_samples = kp_sat_add(a->cpu_samples, b->cpu_samples);
	a->cpu_ns = kp_sat_add(a->cpu_ns, b->cpu_ns);
}

struct worst {
	uint64_t ns, ts, rows;
	int64_t status, pid;
	uint32_t tid, stack; /* stack: trace id (pending) or gstack (kept) */
	unsigned source;
	struct acc acc;
	int set;
};

struct qfp {
	char *text;
	size_t len;
	uint64_t hash;
	uint32_t next;          /* hash chain */
	unsigned sources;       /* bit per enum kp_query_source */
	uint64_t calls, total_ns, rows, errors;
	uint64_t full_scan, full_scan_calls, sort, autoindex, vmstep;
	uint64_t prepare_ns;
	struct acc acc;
	uint64_t writes, txn_writes, txn_write_ns;
	uint64_t slow_calls;
	struct kp_hist hist;
	uint64_t decade[NDECADES]; /* calls by decade of time (decade_of) */
	struct worst worst, tworst; /* overall (gstack), this trace (id) */
	/* duplicates */
	struct kp_idmap vals;
	uint64_t dup_calls, dup_runs;
	int is_read, is_write;
	/* the text fingerprints to itself (what the recorder stores by
	 * default): a query with this very text needs no fingerprinting */
	int self;
};

/*
 * pt-query-digest's "Query_time distribution", counted exactly (the
 * histogram's buckets do not end at powers of ten): calls under 1 us, of
 * [1, 10) us, [10, 100) us, ..., [1, 10) s, and of 10 s or more.
 */
static const char *const decade_name[NDECADES] = {
	"<1us", "1us", "10us", "100us", "1ms", "10ms", "100ms", "1s", "10s+",
};

static unsigned decade_of(uint64_t ns)
{
	unsigned d = 0;
	for (uint64_t lim = 1000; d < NDECADES - 1 && ns >= lim; lim *= 10)
		d++;
	return d;
}

/* (fingerprint, stack) counters: call sites and N+1 groups. */
struct qsite {
	uint32_t fp, stack;     /* trace stack id, then gstack */
	uint64_t calls, ns;
	/* N+1 groups only */
	uint64_t runs, max_run, saving_ns, distinct;
};

struct qsites {
	struct qsite *v;
	size_t n, cap;
	struct kp_idmap ids;    /* fp << 32 | stack -> index */
};

struct qopen {
	uint64_t ctx, ts;
	struct acc acc;
};

struct qthr {
	uint32_t tid;
	struct qopen open[MAX_OPEN];
	unsigned nopen;         /* may exceed MAX_OPEN: deeper untracked */
	uint64_t spans[MAX_SPANS];
	unsigned nspans;
	/* the current run of one fingerprint (N+1, duplicate runs) */
	uint32_t run_fp, run_stack;
	uint64_t run_parent, run_n, run_ns, run_max;
	uint64_t run_t0;        /* start of the run's first query */
	uint64_t run_vals[RUN_VALS];
	unsigned run_nvals;
	/* the current autocommit write storm */
	uint32_t storm_fp;
	uint64_t storm_n, storm_ns, storm_fsyncs, storm_fsync_ns;
};

struct qstorm { /* storms, grouped by the fingerprint of their first write */
	uint32_t fp;
	uint64_t storms, statements, total_ns, fsyncs, fsync_ns;
};

struct qadvice {
	uint32_t fp;
	char *table, *columns, *statement;
	int verified;           /* -1 not checked, 0 not used, 1 used */
	char *plan_before, *plan_after;
	int server_plan;        /* evidence: 0 SQLite's counters, 1 the
				 * PostgreSQL server's plan (--pg-dsn) */
	int64_t table_rows;     /* the server's estimate (server_plan) */
};

/*
 * A thread's CPU samples since its last query ended. A QUERY_BEGIN is
 * written only when something else is recorded during the query
 * (preload/query.c), and a CPU sample is not such a thing, so samples are
 * kept per thread and given to a query when it ends: those within [its
 * start, its end]. A thread that runs long without ending a query fills
 * its SAMPLES_KEPT entries; then neighbours merge in pairs (an entry spans
 * [lo, hi] and weighs its samples' sum), so the time resolution of old
 * samples halves instead of samples being lost, and a query that takes
 * part of an entry takes that part of its weight.
 */
struct qsamp {
	uint64_t lo, hi, ns, n;
};

struct qsbuf {
	struct qsamp *v;        /* in time order */
	uint32_t n, cap;
};

struct qstate {
	unsigned slot;
	struct kp_analysis *an;
	struct qfp *fps;
	size_t nfps, fps_cap;
	struct kp_idmap fp_ids; /* hash -> first index */
	uint64_t calls, total_ns, dropped_fps, dropped_threads;
	int cpu_sampled;        /* a trace has CPU samples */
	uint64_t nvals;         /* values remembered, all fingerprints */
	uint64_t slow_ns;       /* threshold in use */
	uint32_t nplus1_min;    /* an N+1's shortest run */
	uint32_t storm_min;     /* a write storm's fewest writes */
	int slow_set;           /* from --slow-ms or a trace header */
	struct qsites sites, nplus1;         /* global: by gstack */
	struct qsites tsites, tnplus1;       /* this trace: by stack id */
	struct qstorm *storms;
	size_t nstorms, storms_cap;
	/* this trace */
	struct kp_trace *t;
	struct qthr *thr;
	size_t nthr, thr_cap;
	struct kp_idmap tids;
	struct qsbuf *sbufs;    /* CPU samples by thread (sbuf_ids) */
	size_t nsbufs, sbufs_cap;
	struct kp_idmap sbuf_ids;
	uint32_t *text_fp;      /* QUERY text_id -> fingerprint + 1 */
	size_t text_fp_cap;
	uint32_t last_tid, last_thr; /* thr_find() cache, valid if nthr */
	/* results */
	uint32_t *rank;         /* fingerprints by --order-by (total time) */
	int order;              /* --order-by: enum qorder */
	struct qadvice *advice;
	size_t nadvice;
};

/* --order-by's keys, the JSON fields they rank by. */
enum qorder { QO_TOTAL, QO_CALLS, QO_MEAN, QO_P95, QO_P99, QO_MAX, QO_ROWS };
static const char *const order_keys[][2] = {
	{ "total", "total_ns" }, { "calls", "calls" }, { "mean", "mean_ns" },
	{ "p95", "p95_ns" },     { "p99", "p99_ns" },  { "max", "max_ns" },
	{ "rows", "rows" },
};

static int order_of(const char *key)
{
	for (size_t i = 0; i < KP_ARRAY_SIZE(order_keys); i++)
		if (!strcmp(key, order_keys[i][0]))
			return (int)i;
	return -1;
}

const char *kp_query_order_field(const char *key)
{
	int o = order_of(key);
	return o < 0 ? NULL : order_keys[o][1];
}

/* f's value of the field of --order-by's key o: the JSON's, and what
 * the fingerprints are ranked by. */
static uint64_t fp_value(const struct qfp *f, int o)
{
	switch (o) {
	case QO_CALLS:
		return f->calls;
	case QO_MEAN:
		return f->calls ? f->total_ns / f->calls : 0;
	case QO_P95:
		return kp_hist_quantile(&f->hist, 0.95);
	case QO_P99:
		return kp_hist_quantile(&f->hist, 0.99);
	case QO_MAX:
		return f->hist.count ? f->hist.max : 0;
	case QO_ROWS:
		return f->rows;
	default:
		return f->total_ns;
	}
}

/* ---- tables ---------------------------------------------------------------- */

/*
 * The fingerprint of a query text that is known to be its own fingerprint
 * (struct qfp.self), or UINT32_MAX. Fingerprinting is a function of the
 * text, so the same text gets the same fingerprint without redoing it.
 */
static uint32_t fp_known(const struct qstate *qs, const char *s, size_t n)
{
	uint64_t h = kp_fnv1a(KP_FP_NO_VALUES, s, n);
	uint64_t key = h == KP_IDMAP_EMPTY ? h - 1 : h;
	uint32_t i = kp_idmap_get(&qs->fp_ids, key);
	for (uint32_t k = i; k != UINT32_MAX; k = qs->fps[k].next)
		if (qs->fps[k].self && qs->fps[k].len == n &&
		    memcmp(qs->fps[k].text, s, n) == 0)
			return k;
	return UINT32_MAX;
}

static uint32_t fp_intern(struct qstate *qs, const char *s, size_t n)
{
	uint64_t h = kp_fnv1a(KP_FP_NO_VALUES, s, n);
	uint64_t key = h == KP_IDMAP_EMPTY ? h - 1 : h;
	uint32_t i = kp_idmap_get(&qs->fp_ids, key);
	for (uint32_t k = i; k != UINT32_MAX; k = qs->fps[k].next)
		if (qs->fps[k].len == n && memcmp(qs->fps[k].text, s, n) == 0)
			return k;
	if (qs->nfps >= MAX_FPS)
		return UINT32_MAX;
	if (qs->nfps == qs->fps_cap) {
		qs->fps_cap = qs->fps_cap ? qs->fps_cap * 2 : 64;
		qs->fps = xrealloc_array(qs->fps, qs->fps_cap, sizeof(*qs->fps));
	}
	struct qfp *f = &qs->fps[qs->nfps];
	memset(f, 0, sizeof(*f));
	f->text = xstrndup(s, n);
	f->len = n;
	f->hash = h;
	kp_hist_init(&f->hist);
	kp_idmap_init(&f->vals);
	f->is_read = !strncmp(s, "select", 6) || !strncmp(s, "with", 4);
	f->is_write = !strncmp(s, "insert", 6) || !strncmp(s, "update", 6) ||
		      !strncmp(s, "delete", 6) || !strncmp(s, "replace", 7);
	if (i == UINT32_MAX) {
		f->next = UINT32_MAX;
		kp_idmap_put(&qs->fp_ids, key, (uint32_t)qs->nfps);
	} else {
		/* chain behind the first: the map keeps the first index */
		f->next = qs->fps[i].next;
		qs->fps[i].next = (uint32_t)qs->nfps;
	}
	return (uint32_t)qs->nfps++;
}

static struct qsite *site_get(struct qsites *s, uint32_t fp, uint32_t stack)
{
	uint64_t key = (uint64_t)fp << 32 | stack;
	uint32_t i = kp_idmap_get(&s->ids, key);
	if (i != UINT32_MAX)
		return &s->v[i];
	if (s->n == s->cap) {
		s->cap = s->cap ? s->cap * 2 : 64;
		s->v = xrealloc_array(s->v, s->cap, sizeof(*s->v));
	}
	struct qsite *q = &s->v[s->n];
	memset(q, 0, sizeof(*q));
	q->fp = fp;
	q->stack = stack;
	kp_idmap_put(&s->ids, key, (uint32_t)s->n++);
	return q;
}

static void sites_free(struct qsites *s)
{
	free(s->v);
	kp_idmap_free(&s->ids);
	memset(s, 0, sizeof(*s));
	kp_idmap_init(&s->ids);
}

/* The query state of thread tid; NULL if it has none (and !create) or
 * there are too many threads. */
static __attribute__((noinline)) struct qthr *thr_find_slow(struct qstate *qs,
							   uint32_t tid,
							   int create)
{
	uint32_t i = kp_idmap_get(&qs->tids, tid);
	if (i != UINT32_MAX) {
		qs->last_tid = tid;
		qs->last_thr = i;
		return &qs->thr[i];
	}
	if (!create || qs->nthr >= MAX_QTHREADS)
		return NULL;
	if (qs->nthr == qs->thr_cap) {
		qs->thr_cap = qs->thr_cap ? qs->thr_cap * 2 : 8;
		qs->thr = xrealloc_array(qs->thr, qs->thr_cap, sizeof(*qs->thr));
	}
	struct qthr *t = &qs->thr[qs->nthr];
	memset(t, 0, sizeof(*t));
	t->tid = tid;
	t->run_fp = UINT32_MAX;
	t->storm_fp = UINT32_MAX;
	qs->last_tid = tid;
	qs->last_thr = (uint32_t)qs->nthr;
	kp_idmap_put(&qs->tids, tid, (uint32_t)qs->nthr++);
	return t;
}

/* The thread's state; the last one found is remembered (allocations come
 * in runs of one thread). create: make it if it is new. */
static KP_ALWAYS_INLINE struct qthr *thr_find(struct qstate *qs, uint32_t tid,
					      int create)
{
	if (KP_LIKELY(qs->nthr && tid == qs->last_tid))
		return &qs->thr[qs->last_thr];
	return thr_find_slow(qs, tid, create);
}

/* ---- runs: N+1 and storms ----------------------------------------------------- */

static void run_end(struct qstate *qs, struct qthr *t)
{
	if (t->run_fp != UINT32_MAX && t->run_n >= qs->nplus1_min) {
		if (t->run_nvals == 1) {
			qs->fps[t->run_fp].dup_runs++;
		} else {
			struct qsite *g = site_get(&qs->tnplus1, t->run_fp,
						   t->run_stack);
			g->runs++;
			g->calls += t->run_n;
			g->ns = kp_sat_add(g->ns, t->run_ns);
			g->saving_ns = kp_sat_add(g->saving_ns,
						  t->run_ns - t->run_max);
			if (t->run_n > g->max_run)
				g->max_run = t->run_n;
			if (t->run_nvals > g->distinct)
				g->distinct = t->run_nvals;
		}
	}
	t->run_fp = UINT32_MAX;
	t->run_n = 0;
}

static void storm_end(struct qstate *qs, struct qthr *t)
{
	if (t->storm_n >= qs->storm_min && t->storm_fp != UINT32_MAX) {
		struct qstorm *s = NULL;
		for (size_t i = 0; i < qs->nstorms; i++)
			if (qs->storms[i].fp == t->storm_fp)
				s = &qs->storms[i];
		if (!s) {
			if (qs->nstorms == qs->storms_cap) {
				qs->storms_cap = qs->storms_cap ? qs->storms_cap * 2 : 8;
				qs->storms = xrealloc_array(qs->storms, qs->storms_cap,
							    sizeof(*qs->storms));
			}
			s = &qs->storms[qs->nstorms++];
			memset(s, 0, sizeof(*s));
			s->fp = t->storm_fp;
		}
		s->storms++;
		s->statements += t->storm_n;
		s->total_ns = kp_sat_add(s->total_ns, t->storm_ns);
		s->fsyncs += t->storm_fsyncs;
		s->fsync_ns = kp_sat_add(s->fsync_ns, t->storm_fsync_ns);
	}
	t->storm_fp = UINT32_MAX;
	t->storm_n = t->storm_ns = t->storm_fsyncs = t->storm_fsync_ns = 0;
}

/* ---- events ------------------------------------------------------------------- */

/* ---- CPU samples ---------------------------------------------------------------- */

static struct qsbuf *sbuf_of(struct qstate *qs, uint32_t tid, int create)
{
	uint32_t i = kp_idmap_get(&qs->sbuf_ids, tid);
	if (i != UINT32_MAX)
		return &qs->sbufs[i];
	if (!create || qs->nsbufs >= SAMPLE_THREADS)
		return NULL;
	if (qs->nsbufs == qs->sbufs_cap) {
		qs->sbufs_cap = qs->sbufs_cap ? 2 * qs->sbufs_cap : 8;
		qs->sbufs = xrealloc_array(qs->sbufs, qs->sbufs_cap,
					   sizeof(*qs->sbufs));
	}
	struct qsbuf *g = &qs->sbufs[qs->nsbufs];
	memset(g, 0, sizeof(*g));
	kp_idmap_put(&qs->sbuf_ids, tid, (uint32_t)qs->nsbufs++);
	return g;
}

/* A sample at ts weighing ns. */
static void sbuf_add(struct qsbuf *g, uint64_t ts, uint64_t ns)
{
	if (g->n == g->cap && g->cap < SAMPLES_KEPT) {
		g->cap = g->cap ? 2 * g->cap : 16;
		g->v = xrealloc_array(g->v, g->cap, sizeof(*g->v));
	} else if (g->n == g->cap) {
		/* full: merge neighbours, halving the resolution */
		uint32_t k = 0;
		for (uint32_t i = 0; i + 1 < g->n; i += 2, k++) {
			g->v[k].lo = g->v[i].lo;
			g->v[k].hi = g->v[i + 1].hi;
			g->v[k].ns = kp_sat_add(g->v[i].ns, g->v[i + 1].ns);
			g->v[k].n = g->v[i].n + g->v[i + 1].n;
		}
		if (g->n & 1)
			g->v[k++] = g->v[g->n - 1];
		g->n = k;
	}
	g->v[g->n++] = (struct qsamp){ ts, ts, ns, 1 };
}

/* The samples in [from, to] into a's CPU (the overlapping part of a merged
 * entry's weight); then the ones before keep_from are dropped (no query
 * still open can take them). */
static void sbuf_take(struct qsbuf *g, uint64_t from, uint64_t to,
		      uint64_t keep_from, struct acc *a)
{
	for (uint32_t k = 0; k < g->n; k++) {
		const struct qsamp *x = &g->v[k];
		if (x->hi < from || x->lo > to)
			continue;
		if (x->lo >= from && x->hi <= to) {
			a->cpu_samples += x->n;
			a->cpu_ns = kp_sat_add(a->cpu_ns, x->ns);
			continue;
		}
		double part = (double)((x->hi < to ? x->hi : to) -
				       (x->lo > from ? x->lo : from)) /
			      (double)(x->hi - x->lo);
		a->cpu_samples += (uint64_t)(part * (double)x->n + 0.5);
		a->cpu_ns = kp_sat_add(a->cpu_ns,
				       (uint64_t)(part * (double)x->ns));
	}
	uint32_t drop = 0;
	while (drop < g->n && g->v[drop].hi < keep_from)
		drop++;
	if (drop)
		memmove(g->v, g->v + drop, (g->n - drop) * sizeof(*g->v));
	g->n -= drop;
}

static void sbufs_free(struct qstate *qs)
{
	for (size_t i = 0; i < qs->nsbufs; i++)
		free(qs->sbufs[i].v);
	free(qs->sbufs);
	qs->sbufs = NULL;
	qs->nsbufs = qs->sbufs_cap = 0;
	kp_idmap_free(&qs->sbuf_ids);
	kp_idmap_init(&qs->sbuf_ids);
}

static void on_query(struct qstate *qs, struct qthr *t, const struct kp_event *e,
		     const struct kp_rec *r)
{
	char buf[KP_MAX_STR_LEN + 1];
	struct kp_fp fr;
	const int64_t *v = r->u.ext.v;
	uint64_t ctx = (uint64_t)v[KP_Q_CTX];
	uint64_t dur = v[KP_Q_DUR] > 0 ? (uint64_t)v[KP_Q_DUR] : 0;
	int64_t flags = v[KP_Q_FLAGS];
	struct acc acc = { 0 };

	/* close its open entry (and any left open inside it) */
	if (ctx) {
		unsigned n = t->nopen < MAX_OPEN ? t->nopen : MAX_OPEN;
		for (unsigned i = n; i-- > 0;) {
			if (t->open[i].ctx != ctx)
				continue;
			for (unsigned k = i; k < n; k++)
				acc_add(&acc, &t->open[k].acc);
			t->nopen = i;
			if (i > 0) /* the enclosing query ran it */
				acc_add(&t->open[i - 1].acc, &acc);
			break;
		}
	}
	/* its CPU: the samples of its run (an enclosing query takes them
	 * again when it ends, from sbufs, not from acc) */
	struct qsbuf *g = sbuf_of(qs, e->tid, 0);
	if (g)
		sbuf_take(g, kp_sat_sub(e->ts, dur), e->ts,
			  t->nopen ? t->open[0].ts : e->ts, &acc);

	/* the fingerprint again: a full text (QUERY_TEXT=full) gets one, a
	 * fingerprint stays as it is (looked up, not fingerprinted again);
	 * once per text of the trace when the text is a QUERY_TEXT's */
	const char *sql = r->u.ext.str ? r->u.ext.str : "";
	size_t sql_len = r->u.ext.str ? r->u.ext.str_len : 0;
	int64_t text_id = v[KP_Q_TEXT_ID];
	int by_id = r->u.ext.str && text_id > 0 && text_id < KP_MAX_QTEXTS;
	uint32_t id;
	if (by_id && (size_t)text_id < qs->text_fp_cap &&
	    qs->text_fp[text_id]) {
		id = qs->text_fp[text_id] - 1;
	} else {
		id = fp_known(qs, sql, sql_len);
		if (id == UINT32_MAX) {
			kp_fingerprint(sql, sql_len, buf, sizeof(buf), &fr);
			id = fp_intern(qs, buf, fr.len);
			if (id == UINT32_MAX) {
				qs->dropped_fps++;
				return;
			}
			if (fr.len == sql_len && memcmp(buf, sql, sql_len) == 0)
				qs->fps[id].self = 1;
		}
		if (by_id) {
			if ((size_t)text_id >= qs->text_fp_cap) {
				size_t cap = qs->text_fp_cap ? qs->text_fp_cap
							     : 64;
				while (cap <= (size_t)text_id)
					cap *= 2;
				qs->text_fp = xrealloc_array(qs->text_fp, cap,
							     sizeof(uint32_t));
				memset(qs->text_fp + qs->text_fp_cap, 0,
				       (cap - qs->text_fp_cap) *
					       sizeof(uint32_t));
				qs->text_fp_cap = cap;
			}
			qs->text_fp[text_id] = id + 1;
		}
	}
	struct qfp *f = &qs->fps[id];
	unsigned src = e->kind <= KP_QSRC_MAX ? e->kind : KP_QSRC_API;
	f->sources |= 1u << src;
	f->calls++;
	f->total_ns = kp_sat_add(f->total_ns, dur);
	qs->calls++;
	qs->total_ns = kp_sat_add(qs->total_ns, dur);
	kp_hist_add(&f->hist, dur);
	f->decade[decade_of(dur)]++;
	if (v[KP_Q_ROWS] > 0)
		f->rows = kp_sat_add(f->rows, (uint64_t)v[KP_Q_ROWS]);
	if (v[KP_Q_STATUS] != 0)
		f->errors++;
	if (v[KP_Q_FULLSCAN] > 0) {
		f->full_scan = kp_sat_add(f->full_scan, (uint64_t)v[KP_Q_FULLSCAN]);
		f->full_scan_calls++;
	}
	if (v[KP_Q_SORT] > 0)
		f->sort = kp_sat_add(f->sort, (uint64_t)v[KP_Q_SORT]);
	if (v[KP_Q_AUTOINDEX] > 0)
		f->autoindex = kp_sat_add(f->autoindex, (uint64_t)v[KP_Q_AUTOINDEX]);
	if (v[KP_Q_VMSTEP] > 0)
		f->vmstep = kp_sat_add(f->vmstep, (uint64_t)v[KP_Q_VMSTEP]);
	if (v[KP_Q_PREPARE_DUR] > 0)
		f->prepare_ns = kp_sat_add(f->prepare_ns,
					   (uint64_t)v[KP_Q_PREPARE_DUR]);
	acc_add(&f->acc, &acc);
	/* a write: SQLite says it may change the database and it is DML;
	 * other sources by the fingerprint's verb */
	int write = src == KP_QSRC_SQLITE ?
		(flags & KP_QF_WRITE) && f->is_write :
		f->is_write || ((flags & KP_QF_WRITE) && !f->is_read);
	if (write) {
		f->writes++;
		if (!(flags & KP_QF_AUTOCOMMIT)) {
			f->txn_writes++;
			f->txn_write_ns = kp_sat_add(f->txn_write_ns, dur);
		}
	}
	if (dur >= qs->slow_ns)
		f->slow_calls++;
	if (!f->tworst.set || dur > f->tworst.ns) {
		struct worst *w = &f->tworst;
		w->set = 1;
		w->ns = dur;
		w->ts = e->ts;
		w->rows = v[KP_Q_ROWS] > 0 ? (uint64_t)v[KP_Q_ROWS] : 0;
		w->status = v[KP_Q_STATUS];
		w->tid = e->tid;
		w->stack = e->stack;
		w->source = src;
		w->acc = acc;
	}
	/* call sites (resolved at the end of the trace) */
	struct qsite *s = site_get(&qs->tsites, id, e->stack);
	s->calls++;
	s->ns = kp_sat_add(s->ns, dur);

	/* duplicates: reads seen again with the same values */
	uint64_t vh = (uint64_t)v[KP_Q_VALHASH];
	if (vh && f->is_read) {
		uint64_t key = vh == KP_IDMAP_EMPTY ? vh - 1 : vh;
		if (kp_idmap_get(&f->vals, key) != UINT32_MAX) {
			f->dup_calls++;
		} else if (f->vals.n < MAX_VALS && qs->nvals < MAX_VALS_TOTAL) {
			kp_idmap_put(&f->vals, key, 1);
			qs->nvals++;
		}
	}

	/* N+1 runs: every query of the thread, nested in another's window or
	 * not (a loop over a cursor runs its queries inside the cursor's
	 * run; the engines' own internal statements are not recorded) */
	uint64_t parent = t->nspans ? t->spans[(t->nspans < MAX_SPANS ?
						t->nspans : MAX_SPANS) - 1] : 0;
	uint64_t qbegin = kp_sat_sub(e->ts, dur);
	if (t->run_fp != UINT32_MAX && t->run_fp != id && qbegin < t->run_t0)
		goto storm; /* it enclosed the run (a cursor looped over) */
	if (t->run_fp != id || t->run_parent != parent) {
		run_end(qs, t);
		t->run_t0 = qbegin;
		t->run_fp = id;
		t->run_stack = e->stack;
		t->run_parent = parent;
		t->run_ns = t->run_max = 0;
		t->run_nvals = 0;
	}
	t->run_n++;
	t->run_ns = kp_sat_add(t->run_ns, dur);
	if (dur > t->run_max)
		t->run_max = dur;
	if (vh && t->run_nvals <= RUN_VALS) {
		unsigned k, n = t->run_nvals < RUN_VALS ? t->run_nvals : RUN_VALS;
		for (k = 0; k < n && t->run_vals[k] != vh; k++)
			;
		if (k == n && n < RUN_VALS)
			t->run_vals[t->run_nvals++] = vh;
		else if (k == n)
			t->run_nvals = RUN_VALS + 1; /* more than we keep */
	}
storm:
	/* autocommit write storms */
	if (write && (flags & KP_QF_AUTOCOMMIT)) {
		if (t->storm_fp == UINT32_MAX)
			t->storm_fp = id;
		t->storm_n++;
		t->storm_ns = kp_sat_add(t->storm_ns, dur);
		t->storm_fsyncs += acc.fsyncs;
		t->storm_fsync_ns = kp_sat_add(t->storm_fsync_ns, acc.fsync_ns);
	} else if (!(flags & KP_QF_AUTOCOMMIT)) {
		storm_end(qs, t);
	}
}

static void q_events(void *state, struct kp_trace *tr, const struct kp_batch *b)
{
	struct qstate *qs = state;
	(void)tr;
	if (!b->nx && !qs->nthr)
		return; /* allocations, and no query has run yet */
	for (size_t i = 0; i < b->n; i++) {
		const struct kp_event *e = &b->ev[i];
		struct qthr *t;
		switch (e->type) {
		case KP_REC_ALLOC:
		case KP_EV_REALLOC_ALLOC:
			if (!qs->nthr)
				break;
			t = thr_find(qs, e->tid, 0);
			if (t && t->nopen && t->nopen <= MAX_OPEN) {
				struct acc *a = &t->open[t->nopen - 1].acc;
				a->alloc_calls++;
				a->alloc_bytes = kp_sat_add(a->alloc_bytes, e->size);
			}
			break;
		case KP_REC_IO: {
			if (!qs->nthr)
				break;
			t = thr_find(qs, e->tid, 0);
			if (!t || !t->nopen || t->nopen > MAX_OPEN)
				break;
			const struct kp_rec *r = kp_batch_rec(b, e);
			struct acc *a = &t->open[t->nopen - 1].acc;
			uint64_t d = r->u.ext.v[KP_IO_DUR] > 0 ?
				(uint64_t)r->u.ext.v[KP_IO_DUR] : 0;
			if (kp_io_op_is_wait(e->kind)) {
				a->lock_waits++;
				a->lock_ns = kp_sat_add(a->lock_ns, d);
			} else if (query_io_is_fsync(e->kind)) {
				a->fsyncs++;
				a->fsync_ns = kp_sat_add(a->fsync_ns, d);
			} else {
				a->io_calls++;
				a->io_ns = kp_sat_add(a->io_ns, d);
				if (r->u.ext.v[KP_IO_RET] > 0 &&
				    query_io_moves_data(e->kind))
					a->io_bytes = kp_sat_add(a->io_bytes,
						(uint64_t)r->u.ext.v[KP_IO_RET]);
			}
			break;
		}
		case KP_REC_CPU_SAMPLE: {
			qs->cpu_sampled = 1;
			struct qsbuf *g = sbuf_of(qs, e->tid, 1);
			if (g) {
				int64_t w = kp_batch_rec(b, e)->u.ext.v[KP_CPU_WEIGHT];
				sbuf_add(g, e->ts, w > 0 ? (uint64_t)w : 0);
			}
			break;
		}
		case KP_REC_SPAN: {
			t = thr_find(qs, e->tid, 1);
			if (!t)
				break;
			const struct kp_rec *r = kp_batch_rec(b, e);
			uint64_t id = (uint64_t)r->u.ext.v[KP_SPAN_ID];
			if (e->kind == 0) {
				if (t->nspans < MAX_SPANS)
					t->spans[t->nspans] = id;
				t->nspans++;
			} else {
				unsigned n = t->nspans < MAX_SPANS ? t->nspans : MAX_SPANS;
				for (unsigned k = n; k-- > 0;)
					if (t->spans[k] == id) {
						t->nspans = k;
						break;
					}
			}
			break;
		}
		case KP_REC_QUERY_BEGIN: {
			t = thr_find(qs, e->tid, 1);
			if (!t)
				break;
			const struct kp_rec *r = kp_batch_rec(b, e);
			if (t->nopen < MAX_OPEN) {
				struct qopen *o = &t->open[t->nopen];
				memset(o, 0, sizeof(*o));
				o->ctx = (uint64_t)r->u.ext.v[KP_QB_CTX];
				o->ts = e->ts;
			}
			t->nopen++;
			break;
		}
		case KP_REC_QUERY:
			t = thr_find(qs, e->tid, 1);
			if (t)
				on_query(qs, t, e, kp_batch_rec(b, e));
			else
				qs->dropped_threads++;
			break;
		default:
			break;
		}
	}
}

/* ---- traces ------------------------------------------------------------------- */

static void *q_init(struct kp_analysis *an, unsigned slot)
{
	struct qstate *qs = xcalloc(1, sizeof(*qs));
	qs->slot = slot;
	qs->an = an;
	kp_idmap_init(&qs->fp_ids);
	kp_idmap_init(&qs->sites.ids);
	kp_idmap_init(&qs->nplus1.ids);
	kp_idmap_init(&qs->tsites.ids);
	kp_idmap_init(&qs->tnplus1.ids);
	kp_idmap_init(&qs->tids);
	kp_idmap_init(&qs->sbuf_ids);
	qs->slow_ns = (uint64_t)DEFAULT_SLOW_MS * 1000000;
	qs->nplus1_min = an->opts->nplus1_min ? an->opts->nplus1_min : NPLUS1_MIN;
	qs->storm_min = an->opts->storm_min ? an->opts->storm_min : STORM_MIN;
	qs->order = an->opts->order_by ? order_of(an->opts->order_by) : QO_TOTAL;
	if (qs->order < 0)
		qs->order = QO_TOTAL;
	if (an->opts->slow_ms >= 0) {
		qs->slow_ns = (uint64_t)an->opts->slow_ms * 1000000;
		qs->slow_set = 1;
	}
	return qs;
}

static void q_begin_trace(void *state, struct kp_trace *t)
{
	struct qstate *qs = state;
	qs->t = t;
	qs->nthr = 0;
	kp_idmap_free(&qs->tids);
	kp_idmap_init(&qs->tids);
	if (qs->text_fp) /* text ids are the trace's own */
		memset(qs->text_fp, 0, qs->text_fp_cap * sizeof(uint32_t));
	/* the recording's KOTOBA_PROFILE_SLOW_QUERY_MS, unless --slow-ms */
	const char *v = !qs->slow_set && t->hdr ?
		kp_header_config(t->hdr, "slow_query_ms") : NULL;
	if (v) {
		char *end;
		unsigned long ms = strtoul(v, &end, 10);
		if (*v && !*end && ms <= 3600000) {
			qs->slow_ns = (uint64_t)ms * 1000000;
			qs->slow_set = 1;
		}
	}
}

static uint32_t canon(struct kp_trace *t, uint32_t id)
{
	return id ? kp_trace_canon_stack(t, kp_trace_stack(t, id)) : 0;
}

static void merge_sites(struct kp_trace *t, struct qsites *from,
			struct qsites *into)
{
	for (size_t i = 0; i < from->n; i++) {
		const struct qsite *s = &from->v[i];
		struct qsite *g = site_get(into, s->fp, canon(t, s->stack));
		g->calls += s->calls;
		g->ns = kp_sat_add(g->ns, s->ns);
		g->runs += s->runs;
		g->saving_ns = kp_sat_add(g->saving_ns, s->saving_ns);
		if (s->max_run > g->max_run)
			g->max_run = s->max_run;
		if (s->distinct > g->distinct)
			g->distinct = s->distinct;
	}
	sites_free(from);
}

static void q_end_trace(void *state, struct kp_trace *t)
{
	struct qstate *qs = state;
	for (size_t i = 0; i < qs->nthr; i++) {
		run_end(qs, &qs->thr[i]);
		storm_end(qs, &qs->thr[i]);
	}
	merge_sites(t, &qs->tsites, &qs->sites);
	merge_sites(t, &qs->tnplus1, &qs->nplus1);
	sbufs_free(qs);
	for (size_t i = 0; i < qs->nfps; i++) {
		struct qfp *f = &qs->fps[i];
		if (!f->tworst.set)
			continue;
		if (!f->worst.set || f->tworst.ns > f->worst.ns) {
			f->worst = f->tworst;
			f->worst.stack = canon(t, f->tworst.stack);
			f->worst.pid = t->proc->pid;
		}
		f->tworst.set = 0;
	}
	qs->t = NULL;
}

/* ---- index advice ------------------------------------------------------------- */

/* The fingerprint as tokens: words, "?", punctuation (canonical spacing
 * lets a simple split do). */
#define MAX_TOK 512
struct toks {
	char buf[KP_MAX_STR_LEN + 1];
	const char *v[MAX_TOK];
	size_t n;
};

static void tokenize(const char *s, struct toks *t)
{
	size_t o = 0;
	t->n = 0;
	for (size_t i = 0; s[i] && t->n < MAX_TOK && o + 4 < sizeof(t->buf);) {
		unsigned char c = (unsigned char)s[i];
		if (c == ' ') {
			i++;
			continue;
		}
		t->v[t->n++] = t->buf + o;
		if ((c >= 'a' && c <= 'z') || c == '_' || (c >= '0' && c <= '9') ||
		    c >= 0x80 || c == '`' || c == '[' || c == '.') {
			while (s[i] && o + 2 < sizeof(t->buf)) {
				c = (unsigned char)s[i];
				if (!((c >= 'a' && c <= 'z') || c == '_' || c == '$' ||
				      (c >= '0' && c <= '9') || c >= 0x80 ||
				      c == '`' || c == '[' || c == ']' || c == '.'))
					break;
				t->buf[o++] = s[i++];
			}
		} else if (strchr("<>=!", c)) {
			while (s[i] && strchr("<>=!", s[i]) && o + 2 < sizeof(t->buf))
				t->buf[o++] = s[i++];
		} else {
			t->buf[o++] = s[i++];
		}
		t->buf[o++] = '\0';
	}
}

static int is(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

static int clause_end(const char *w)
{
	static const char *const e[] = { "order", "group", "limit", "having",
		"union", "returning", ";", ")", "window", NULL };
	for (int i = 0; e[i]; i++)
		if (is(w, e[i]))
			return 1;
	return 0;
}

static int is_keyword(const char *w)
{
	static const char *const k[] = { "where", "join", "inner", "left",
		"right", "cross", "natural", "on", "order", "group", "limit",
		"set", "as", "indexed", "not", "using", "outer", "full", NULL };
	for (int i = 0; k[i]; i++)
		if (is(w, k[i]))
			return 1;
	return 0;
}

/* col, or qual.col where qual is the table or its alias; else NULL. */
static const char *column_of(const char *w, const char *table,
			     const char *alias)
{
	const char *dot = strrchr(w, '.');
	if (!((w[0] >= 'a' && w[0] <= 'z') || w[0] == '_' || w[0] == '`' ||
	      w[0] == '['))
		return NULL;
	if (!dot)
		return is_keyword(w) ? NULL : w;
	size_t q = (size_t)(dot - w);
	if ((strlen(table) == q && !strncmp(w, table, q)) ||
	    (alias && strlen(alias) == q && !strncmp(w, alias, q)))
		return dot + 1;
	return NULL;
}

static void add_col(char cols[][128], size_t *n, const char *c)
{
	for (size_t i = 0; i < *n; i++)
		if (is(cols[i], c))
			return;
	if (*n < 8 && strlen(c) < 128)
		snprintf(cols[(*n)++], 128, "%s", c);
}

/* Columns for an index from a fingerprint, into table/cols. @return n. */
static size_t advise(const char *fp, char *table, size_t tcap,
		     char cols[][128])
{
	static struct toks tk;
	tokenize(fp, &tk);
	size_t i = 0, n = tk.n;
	const char *tab = NULL, *alias = NULL;
	for (; i < n; i++) {
		if (is(tk.v[i], "from") || is(tk.v[i], "update")) {
			if (i + 1 < n && !is(tk.v[i + 1], "(")) {
				tab = tk.v[i + 1];
				if (i + 2 < n && !is_keyword(tk.v[i + 2]) &&
				    tk.v[i + 2][0] >= 'a' && tk.v[i + 2][0] <= 'z')
					alias = tk.v[i + 2];
				else if (i + 3 < n && is(tk.v[i + 2], "as"))
					alias = tk.v[i + 3];
			}
			break;
		}
	}
	if (!tab || !strncmp(tab, "sqlite_", 7) || strchr(tab, '('))
		return 0;
	snprintf(table, tcap, "%s", tab);
	char eq[8][128], rng[8][128], ord[8][128];
	size_t neq = 0, nrng = 0, nord = 0;
	for (; i < n && !is(tk.v[i], "where"); i++)
		;
	int depth = 0;
	for (i++; i < n; i++) {
		const char *w = tk.v[i];
		if (is(w, "("))
			depth++;
		if (is(w, ")")) {
			if (depth == 0)
				break;
			depth--;
		}
		if (depth == 0 && clause_end(w))
			break;
		if (i + 1 >= n)
			break;
		const char *c = column_of(w, tab, alias);
		const char *op = tk.v[i + 1];
		const char *val = i + 2 < n ? tk.v[i + 2] : "";
		if (!c)
			continue;
		if ((is(op, "=") || is(op, "==") || is(op, "is")) && is(val, "?"))
			add_col(eq, &neq, c);
		else if (is(op, "in") && is(val, "(") && i + 3 < n &&
			 is(tk.v[i + 3], "?"))
			add_col(eq, &neq, c);
		else if ((is(op, "<") || is(op, ">") || is(op, "<=") ||
			  is(op, ">=") || is(op, "between") || is(op, "like") ||
			  is(op, "glob")) && is(val, "?"))
			add_col(rng, &nrng, c);
	}
	for (; i < n; i++)
		if (is(tk.v[i], "order") && i + 1 < n && is(tk.v[i + 1], "by"))
			break;
	i += 2;
	while (i < n) {
		const char *c = column_of(tk.v[i], tab, alias);
		if (!c)
			break;
		add_col(ord, &nord, c);
		if (i + 1 < n && (is(tk.v[i + 1], "asc") || is(tk.v[i + 1], "desc")))
			i++;
		if (i + 1 >= n || !is(tk.v[i + 1], ","))
			break;
		i += 2;
	}
	size_t k = 0;
	for (size_t a = 0; a < neq; a++)
		add_col(cols, &k, eq[a]);
	if (nrng)
		add_col(cols, &k, rng[0]);
	else
		for (size_t a = 0; a < nord; a++)
			add_col(cols, &k, ord[a]);
	return k;
}

/* Run argv (found in PATH) with no stdin or stderr; its stdout
 * (malloc'ed), or NULL if it could not run or did not exit 0. */
static char *run_capture(const char *const *argv)
{
	int p[2];
	if (pipe(p) < 0)
		return NULL;
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return NULL;
	}
	if (pid == 0) {
		dup2(p[1], 1);
		int dn = open("/dev/null", O_RDWR);
		if (dn >= 0) {
			dup2(dn, 0);
			dup2(dn, 2);
		}
		close(p[0]);
		close(p[1]);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	size_t n = 0, cap = 4096;
	char *out = xmalloc(cap);
	for (;;) {
		if (n + 1024 > cap)
			out = xrealloc(out, cap *= 2);
		ssize_t r = read(p[0], out + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		n += (size_t)r;
		if (n > (1u << 20))
			break;
	}
	close(p[0]);
	int st;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	out[n] = '\0';
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		free(out);
		return NULL;
	}
	return out;
}

/* Run the sqlite3 CLI on db with SQL arguments. */
static char *sqlite_cli(const char *db, const char *sql1, const char *sql2)
{
	const char *argv[] = { "sqlite3", "-batch", db, sql1, sql2, NULL };
	return run_capture(argv);
}

static int copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY | O_CLOEXEC);
	if (in < 0)
		return -1;
	int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (out < 0) {
		close(in);
		return -1;
	}
	char buf[65536];
	ssize_t r;
	int ret = 0;
	while ((r = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)r) != r) {
			ret = -1;
			break;
		}
	if (r < 0)
		ret = -1;
	close(in);
	if (close(out) < 0)
		ret = -1;
	return ret;
}

/* The fingerprint as SQL EXPLAIN QUERY PLAN accepts: in(?+) -> in(?). */
static char *as_sql(const char *fp)
{
	size_t n = strlen(fp);
	char *s = xmalloc(n + 1);
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		if (fp[i] == '?' && fp[i + 1] == '+') {
			s[o++] = '?';
			i++;
			continue;
		}
		s[o++] = fp[i];
	}
	s[o] = '\0';
	return s;
}

static void verify_advice(struct qstate *qs, struct qadvice *a)
{
	const char *db = qs->an->opts->sqlite_db;
	char dir[] = "/tmp/kprof-eqp-XXXXXX";
	if (!mkdtemp(dir)) {
		warning("--sqlite-db: cannot make a temporary directory");
		return;
	}
	char copy[sizeof(dir) + 16], wal_from[4200], wal_to[sizeof(dir) + 24];
	snprintf(copy, sizeof(copy), "%s/copy.db", dir);
	snprintf(wal_to, sizeof(wal_to), "%s/copy.db-wal", dir);
	snprintf(wal_from, sizeof(wal_from), "%s-wal", db);
	if (copy_file(db, copy) < 0) {
		warning("--sqlite-db: cannot copy '%s'", db);
	} else {
		struct stat st;
		if (stat(wal_from, &st) == 0)
			copy_file(wal_from, wal_to);
		char *sql = as_sql(qs->fps[a->fp].text);
		size_t n = strlen(sql) + 32;
		char *eqp = xmalloc(n);
		snprintf(eqp, n, "EXPLAIN QUERY PLAN %s", sql);
		a->plan_before = sqlite_cli(copy, eqp, NULL);
		a->plan_after = sqlite_cli(copy, a->statement, eqp);
		if (!a->plan_before || !a->plan_after) {
			warning("--sqlite-db: sqlite3 could not plan '%s' on a "
				"copy of '%s'", sql, db);
		} else {
			char name[300];
			const char *ix = strstr(a->statement, "INDEX ");
			size_t k = 0;
			for (ix = ix ? ix + 6 : ""; ix[k] && ix[k] != ' ' &&
			     k < sizeof(name) - 1; k++)
				name[k] = ix[k];
			name[k] = '\0';
			char want[320];
			snprintf(want, sizeof(want), "INDEX %s", name);
			a->verified = strstr(a->plan_after, want) != NULL;
		}
		free(eqp);
		free(sql);
	}
	unlink(copy);
	unlink(wal_to);
	rmdir(dir);
}

/*
 * libpq queries (--pg-dsn): the PostgreSQL server's generic plan of the
 * fingerprint, planned in a psql session of its own (PREPARE with the
 * values as parameters, EXPLAIN EXECUTE with NULLs under
 * plan_cache_mode = force_generic_plan: nothing is executed), and the
 * table's row estimate. @return the plan (malloc'ed) when it scans table
 * sequentially and the table has at least PG_MIN_ROWS rows, else NULL.
 */
#define PG_MIN_ROWS 1000
static char *pg_plan(struct qstate *qs, const char *fp, const char *table,
		     int64_t *rows)
{
	for (const char *c = table; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
		      *c == '_' || *c == '.'))
			return NULL;
	char *sql = as_sql(fp);
	size_t n = strlen(sql), np = 0;
	for (size_t k = 0; k < n; k++)
		np += sql[k] == '?';
	if (np > 100) {
		free(sql);
		return NULL;
	}
	size_t pl = n + np * 4 + 32, o;
	char *prep = xmalloc(pl);
	o = (size_t)snprintf(prep, pl, "PREPARE kp_q AS ");
	for (size_t k = 0, a = 0; k < n; k++) {
		if (sql[k] == '?')
			o += (size_t)snprintf(prep + o, pl - o, "$%zu", ++a);
		else
			prep[o++] = sql[k];
	}
	prep[o] = '\0';
	size_t el = np * 6 + 32;
	char *exec = xmalloc(el);
	o = (size_t)snprintf(exec, el, "EXPLAIN EXECUTE kp_q");
	for (size_t a = 0; a < np; a++)
		o += (size_t)snprintf(exec + o, el - o, "%sNULL", a ? ", " : "(");
	if (np)
		snprintf(exec + o, el - o, ")");
	char rel[400];
	snprintf(rel, sizeof(rel), "SELECT reltuples::bigint FROM pg_class "
		 "WHERE oid = to_regclass('%s')", table);
	const char *argv[] = { "psql", "-X", "-q", "-A", "-t", "-v",
		"ON_ERROR_STOP=1", "-d", qs->an->opts->pg_dsn, "-c",
		"SET plan_cache_mode = force_generic_plan", "-c", prep, "-c",
		exec, "-c", rel, NULL };
	char *out = run_capture(argv);
	if (!out)
		warning("--pg-dsn: psql could not plan '%s'", sql);
	free(prep);
	free(exec);
	free(sql);
	if (!out)
		return NULL;
	/* the last line is the row estimate, the lines before it the plan */
	size_t len = strlen(out);
	while (len && out[len - 1] == '\n')
		out[--len] = '\0';
	char *last = strrchr(out, '\n');
	char *end;
	long long est = strtoll(last ? last + 1 : out, &end, 10);
	if (!last || end == (last ? last + 1 : out) || *end) {
		free(out);
		return NULL;
	}
	*last = '\0';
	*rows = est;
	char want[300];
	snprintf(want, sizeof(want), "Seq Scan on %s", table);
	size_t wl = strlen(want);
	for (char *h = strstr(out, want); h; h = strstr(h + 1, want))
		if (h[wl] == ' ' || h[wl] == '\n' || h[wl] == '\0')
			return est >= PG_MIN_ROWS ? out : (free(out), NULL);
	free(out);
	return NULL;
}

static void build_advice(struct qstate *qs)
{
	for (size_t r = 0; r < qs->nfps; r++) {
		uint32_t i = qs->rank[r];
		const struct qfp *f = &qs->fps[i];
		/* evidence of a full scan: SQLite's counters, else for a
		 * libpq query the server's plan (--pg-dsn) */
		int pg = 0;
		if (!f->full_scan_calls && !f->autoindex) {
			if (!qs->an->opts->pg_dsn ||
			    !(f->sources & (1u << KP_QSRC_LIBPQ)) ||
			    !(f->is_read || !strncmp(f->text, "update", 6) ||
			      !strncmp(f->text, "delete", 6)))
				continue;
			pg = 1;
		}
		char table[256], cols[8][128];
		size_t nc = advise(f->text, table, sizeof(table), cols);
		if (!nc)
			continue;
		char *plan = NULL;
		int64_t trows = 0;
		if (pg && !(plan = pg_plan(qs, f->text, table, &trows)))
			continue;
		char list[1100] = "", name[1400];
		size_t o = 0;
		int w = snprintf(name, sizeof(name), "kp_%s", table);
		size_t no = w > 0 ? (size_t)w : 0;
		for (size_t k = 0; k < nc; k++) {
			o += (size_t)snprintf(list + o, sizeof(list) - o, "%s%s",
					      k ? ", " : "", cols[k]);
			no += (size_t)snprintf(name + no, sizeof(name) - no,
					       "_%s", cols[k]);
			if (o >= sizeof(list) || no >= sizeof(name))
				break;
		}
		if (o >= sizeof(list) || no >= sizeof(name))
			continue;
		for (char *c = name; *c; c++)
			if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')))
				*c = '_';
		qs->advice = xrealloc_array(qs->advice, qs->nadvice + 1,
					    sizeof(*qs->advice));
		struct qadvice *a = &qs->advice[qs->nadvice++];
		memset(a, 0, sizeof(*a));
		a->fp = i;
		a->verified = -1;
		a->table = xstrdup(table);
		a->columns = xstrdup(list);
		size_t sl = strlen(name) + strlen(table) + strlen(list) + 32;
		a->statement = xmalloc(sl);
		snprintf(a->statement, sl, "CREATE INDEX %s ON %s(%s);", name,
			 table, list);
		a->server_plan = pg;
		a->table_rows = trows;
		a->plan_before = plan;
		if (!pg && qs->an->opts->sqlite_db)
			verify_advice(qs, a);
	}
}

/* ---- finish ------------------------------------------------------------------- */

static struct qstate *sort_ctx;

/* The --order-by key's value of each fingerprint, while q_finish sorts. */
static const uint64_t *sort_keys;

/* By the key's value, then by total time, calls and text. */
static int by_order(const void *a, const void *b)
{
	uint32_t i = *(const uint32_t *)a, k = *(const uint32_t *)b;
	const struct qfp *x = &sort_ctx->fps[i];
	const struct qfp *y = &sort_ctx->fps[k];
	if (sort_keys[i] != sort_keys[k])
		return sort_keys[i] > sort_keys[k] ? -1 : 1;
	if (x->total_ns != y->total_ns)
		return x->total_ns > y->total_ns ? -1 : 1;
	if (x->calls != y->calls)
		return x->calls > y->calls ? -1 : 1;
	return strcmp(x->text, y->text);
}

static int site_cmp(const void *a, const void *b)
{
	const struct qsite *x = a, *y = b;
	if (x->ns != y->ns)
		return x->ns > y->ns ? -1 : 1;
	if (x->calls != y->calls)
		return x->calls > y->calls ? -1 : 1;
	if (x->fp != y->fp)
		return x->fp < y->fp ? -1 : 1;
	return x->stack < y->stack ? -1 : x->stack > y->stack;
}

static void q_finish(void *state, struct kp_analysis *an)
{
	struct qstate *qs = state;
	(void)an;
	qs->rank = xmalloc((qs->nfps + 1) * sizeof(*qs->rank));
	for (size_t i = 0; i < qs->nfps; i++)
		qs->rank[i] = (uint32_t)i;
	sort_ctx = qs;
	if (qs->nfps > 1) {
		/* the key's values first: a quantile is a walk of buckets */
		uint64_t *keys = xmalloc(qs->nfps * sizeof(*keys));
		for (size_t i = 0; i < qs->nfps; i++)
			keys[i] = fp_value(&qs->fps[i], qs->order);
		sort_keys = keys;
		qsort(qs->rank, qs->nfps, sizeof(*qs->rank), by_order);
		sort_keys = NULL;
		free(keys);
	}
	if (qs->sites.n > 1)
		qsort(qs->sites.v, qs->sites.n, sizeof(*qs->sites.v), site_cmp);
	if (qs->nplus1.n > 1)
		qsort(qs->nplus1.v, qs->nplus1.n, sizeof(*qs->nplus1.v),
		      site_cmp);
	build_advice(qs);
}

/* The saving of batching a storm, and whether it was measured. */
static uint64_t storm_saving(const struct qstate *qs, const struct qstorm *s,
			     int *measured)
{
	const struct qfp *f = &qs->fps[s->fp];
	*measured = 1;
	if (f->txn_writes) {
		uint64_t mean = f->txn_write_ns / f->txn_writes;
		return kp_sat_sub(s->total_ns, kp_sat_mul(s->statements, mean));
	}
	if (s->fsyncs && s->statements)
		return s->fsync_ns / s->statements * (s->statements - 1);
	*measured = 0;
	return 0;
}

static const char *source_name(unsigned bits)
{
	static const char *const n[] = { "api", "sqlite", "libpq", "plugin" };
	for (unsigned i = 0; i <= KP_QSRC_MAX; i++)
		if (bits & (1u << i))
			return n[i];
	return "api";
}

/* A slow query's time in I/O, fsync and lock waits. */
static uint64_t worst_waits(const struct worst *w)
{
	return kp_sat_add(kp_sat_add(w->acc.io_ns, w->acc.fsync_ns),
			  w->acc.lock_ns);
}

/* Its CPU time as the samples that landed in it estimate it, at most the
 * time the waits leave. */
static uint64_t worst_cpu(const struct worst *w)
{
	uint64_t room = kp_sat_sub(w->ns, worst_waits(w));
	return w->acc.cpu_ns < room ? w->acc.cpu_ns : room;
}

/* The rest of a slow query's time: what the trace does not explain. */
static uint64_t worst_rest(const struct worst *w)
{
	return kp_sat_sub(kp_sat_sub(w->ns, worst_waits(w)), worst_cpu(w));
}

/* ---- JSON --------------------------------------------------------------------- */

static void json_fp(struct qstate *qs, struct kp_json *j, uint32_t i)
{
	const struct qfp *f = &qs->fps[i];
	char id[24];
	snprintf(id, sizeof(id), "0x%016" PRIx64, f->hash);
	kp_json_key(j, "fingerprint");
	kp_json_strn(j, f->text, f->len);
	kp_json_key(j, "id");
	kp_json_str(j, id);
}

static void q_report_json(void *state, struct kp_analysis *an,
			  struct kp_json *j)
{
	struct qstate *qs = state;
	kp_json_key(j, "queries");
	kp_json_begin_object(j);
	kp_json_key(j, "calls");
	kp_json_u64(j, qs->calls);
	kp_json_key(j, "total_ns");
	kp_json_u64(j, qs->total_ns);
	kp_json_key(j, "slow_threshold_ns");
	kp_json_u64(j, qs->slow_ns);
	kp_json_key(j, "n_plus_one_min");
	kp_json_u64(j, qs->nplus1_min);
	kp_json_key(j, "storm_min");
	kp_json_u64(j, qs->storm_min);
	kp_json_key(j, "order_by");
	kp_json_str(j, order_keys[qs->order][1]);
	kp_json_key(j, "queries_dropped");    /* over the analyzer's limits */
	kp_json_u64(j, qs->dropped_fps + qs->dropped_threads);
	kp_json_key(j, "cpu_sampled");
	kp_json_bool(j, qs->cpu_sampled);
	kp_json_key(j, "fingerprints");
	kp_json_begin_array(j);
	for (size_t r = 0; r < qs->nfps; r++) {
		uint32_t i = qs->rank[r];
		const struct qfp *f = &qs->fps[i];
		kp_json_begin_object(j);
		json_fp(qs, j, i);
		kp_json_key(j, "source");
		kp_json_str(j, source_name(f->sources));
		kp_json_key(j, "calls");
		kp_json_u64(j, f->calls);
		kp_json_key(j, "total_ns");
		kp_json_u64(j, f->total_ns);
		kp_json_key(j, "mean_ns");
		kp_json_u64(j, fp_value(f, QO_MEAN));
		kp_json_key(j, "p50_ns");
		kp_json_u64(j, kp_hist_quantile(&f->hist, 0.50));
		kp_json_key(j, "p95_ns");
		kp_json_u64(j, fp_value(f, QO_P95));
		kp_json_key(j, "p99_ns");
		kp_json_u64(j, fp_value(f, QO_P99));
		kp_json_key(j, "max_ns");
		kp_json_u64(j, fp_value(f, QO_MAX));
		kp_json_key(j, "distribution");
		kp_json_begin_array(j);
		for (unsigned d = 0; d < NDECADES; d++)
			kp_json_u64(j, f->decade[d]);
		kp_json_end_array(j);
		kp_json_key(j, "share_ppm");
		kp_json_u64(j, qs->total_ns ? (uint64_t)((double)f->total_ns * 1e6 /
							 (double)qs->total_ns) : 0);
		kp_json_key(j, "rows");
		kp_json_u64(j, f->rows);
		kp_json_key(j, "errors");
		kp_json_u64(j, f->errors);
		kp_json_key(j, "full_scan");
		kp_json_u64(j, f->full_scan);
		kp_json_key(j, "full_scan_calls");
		kp_json_u64(j, f->full_scan_calls);
		kp_json_key(j, "sort");
		kp_json_u64(j, f->sort);
		kp_json_key(j, "autoindex");
		kp_json_u64(j, f->autoindex);
		kp_json_key(j, "vm_steps");
		kp_json_u64(j, f->vmstep);
		kp_json_key(j, "prepare_ns");
		kp_json_u64(j, f->prepare_ns);
		kp_json_key(j, "alloc_calls");
		kp_json_u64(j, f->acc.alloc_calls);
		kp_json_key(j, "alloc_bytes");
		kp_json_u64(j, f->acc.alloc_bytes);
		kp_json_key(j, "io_calls");
		kp_json_u64(j, f->acc.io_calls);
		kp_json_key(j, "io_bytes");
		kp_json_u64(j, f->acc.io_bytes);
		kp_json_key(j, "fsyncs");
		kp_json_u64(j, f->acc.fsyncs);
		kp_json_key(j, "fsync_ns");
		kp_json_u64(j, f->acc.fsync_ns);
		kp_json_key(j, "lock_waits");
		kp_json_u64(j, f->acc.lock_waits);
		kp_json_key(j, "lock_wait_ns");
		kp_json_u64(j, f->acc.lock_ns);
		kp_json_key(j, "cpu_samples");
		kp_json_u64(j, f->acc.cpu_samples);
		kp_json_key(j, "cpu_ns");
		kp_json_u64(j, f->acc.cpu_ns);
		kp_json_key(j, "slow_calls");
		kp_json_u64(j, f->slow_calls);
		kp_json_key(j, "call_sites");
		kp_json_begin_array(j);
		unsigned shown = 0;
		for (size_t k = 0; k < qs->sites.n && shown < 5; k++) {
			const struct qsite *s = &qs->sites.v[k];
			if (s->fp != i)
				continue;
			shown++;
			kp_json_begin_object(j);
			kp_json_key(j, "calls");
			kp_json_u64(j, s->calls);
			kp_json_key(j, "total_ns");
			kp_json_u64(j, s->ns);
			kp_json_key(j, "stack");
			kp_json_stack(an, j, s->stack);
			kp_json_end_object(j);
		}
		kp_json_end_array(j);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);

	kp_json_key(j, "slow");
	kp_json_begin_array(j);
	for (size_t r = 0; r < qs->nfps; r++) {
		uint32_t i = qs->rank[r];
		const struct qfp *f = &qs->fps[i];
		if (!f->slow_calls)
			continue;
		const struct worst *w = &f->worst;
		kp_json_begin_object(j);
		json_fp(qs, j, i);
		kp_json_key(j, "slow_calls");
		kp_json_u64(j, f->slow_calls);
		kp_json_key(j, "calls");
		kp_json_u64(j, f->calls);
		kp_json_key(j, "worst");
		kp_json_begin_object(j);
		kp_json_key(j, "dur_ns");
		kp_json_u64(j, w->ns);
		kp_json_key(j, "pid");
		kp_json_i64(j, w->pid);
		kp_json_key(j, "tid");
		kp_json_u64(j, w->tid);
		kp_json_key(j, "ts");
		kp_json_u64(j, w->ts);
		kp_json_key(j, "rows");
		kp_json_u64(j, w->rows);
		kp_json_key(j, "status");
		kp_json_i64(j, w->status);
		kp_json_key(j, "io_ns");
		kp_json_u64(j, w->acc.io_ns);
		kp_json_key(j, "fsync_ns");
		kp_json_u64(j, w->acc.fsync_ns);
		kp_json_key(j, "lock_ns");
		kp_json_u64(j, w->acc.lock_ns);
		kp_json_key(j, "cpu_ns");
		kp_json_u64(j, worst_cpu(w));
		kp_json_key(j, "rest_ns");
		kp_json_u64(j, worst_rest(w));
		kp_json_key(j, "alloc_bytes");
		kp_json_u64(j, w->acc.alloc_bytes);
		kp_json_key(j, "stack");
		kp_json_stack(an, j, w->stack);
		kp_json_end_object(j);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);

	kp_json_key(j, "n_plus_one");
	kp_json_begin_array(j);
	for (size_t k = 0; k < qs->nplus1.n; k++) {
		const struct qsite *s = &qs->nplus1.v[k];
		kp_json_begin_object(j);
		json_fp(qs, j, s->fp);
		kp_json_key(j, "runs");
		kp_json_u64(j, s->runs);
		kp_json_key(j, "queries");
		kp_json_u64(j, s->calls);
		kp_json_key(j, "max_run");
		kp_json_u64(j, s->max_run);
		kp_json_key(j, "distinct_values");
		if (s->distinct > RUN_VALS)
			kp_json_str(j, "many");
		else
			kp_json_u64(j, s->distinct);
		kp_json_key(j, "total_ns");
		kp_json_u64(j, s->ns);
		kp_json_key(j, "saving_ns");
		kp_json_u64(j, s->saving_ns);
		kp_json_key(j, "stack");
		kp_json_stack(an, j, s->stack);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);

	kp_json_key(j, "duplicates");
	kp_json_begin_array(j);
	for (size_t r = 0; r < qs->nfps; r++) {
		uint32_t i = qs->rank[r];
		const struct qfp *f = &qs->fps[i];
		if (!f->dup_calls && !f->dup_runs)
			continue;
		kp_json_begin_object(j);
		json_fp(qs, j, i);
		kp_json_key(j, "calls");
		kp_json_u64(j, f->calls);
		kp_json_key(j, "duplicate_calls");
		kp_json_u64(j, f->dup_calls);
		kp_json_key(j, "distinct_values");
		kp_json_u64(j, f->vals.n);
		kp_json_key(j, "duplicate_runs");
		kp_json_u64(j, f->dup_runs);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);

	kp_json_key(j, "index_advice");
	kp_json_begin_array(j);
	for (size_t k = 0; k < qs->nadvice; k++) {
		const struct qadvice *a = &qs->advice[k];
		const struct qfp *f = &qs->fps[a->fp];
		kp_json_begin_object(j);
		json_fp(qs, j, a->fp);
		kp_json_key(j, "table");
		kp_json_str(j, a->table);
		kp_json_key(j, "columns");
		kp_json_str(j, a->columns);
		kp_json_key(j, "statement");
		kp_json_str(j, a->statement);
		kp_json_key(j, "full_scan_calls");
		kp_json_u64(j, f->full_scan_calls);
		kp_json_key(j, "full_scan");
		kp_json_u64(j, f->full_scan);
		kp_json_key(j, "total_ns");
		kp_json_u64(j, f->total_ns);
		kp_json_key(j, "evidence");
		kp_json_str(j, a->server_plan ? "server_plan" : "full_scan");
		kp_json_key(j, "table_rows");
		if (a->server_plan)
			kp_json_i64(j, a->table_rows);
		else
			kp_json_null(j);
		kp_json_key(j, "verified");
		if (a->verified < 0)
			kp_json_null(j);
		else
			kp_json_bool(j, a->verified);
		kp_json_key(j, "plan_before");
		kp_json_str(j, a->plan_before);
		kp_json_key(j, "plan_after");
		kp_json_str(j, a->plan_after);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);

	kp_json_key(j, "write_storms");
	kp_json_begin_array(j);
	for (size_t k = 0; k < qs->nstorms; k++) {
		const struct qstorm *s = &qs->storms[k];
		int measured;
		uint64_t saving = storm_saving(qs, s, &measured);
		kp_json_begin_object(j);
		json_fp(qs, j, s->fp);
		kp_json_key(j, "storms");
		kp_json_u64(j, s->storms);
		kp_json_key(j, "statements");
		kp_json_u64(j, s->statements);
		kp_json_key(j, "total_ns");
		kp_json_u64(j, s->total_ns);
		kp_json_key(j, "fsyncs");
		kp_json_u64(j, s->fsyncs);
		kp_json_key(j, "saving_ns");
		kp_json_u64(j, saving);
		kp_json_key(j, "saving_measured");
		kp_json_bool(j, measured);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);
	kp_json_end_object(j);
}

/* ---- text --------------------------------------------------------------------- */

static const char *fmt_ns(char *b, size_t n, uint64_t ns)
{
	if (ns < 10000)
		snprintf(b, n, "%" PRIu64 "ns", ns);
	else if (ns < 10000000)
		snprintf(b, n, "%.1fus", (double)ns / 1e3);
	else if (ns < 10000000000ull)
		snprintf(b, n, "%.1fms", (double)ns / 1e6);
	else
		snprintf(b, n, "%.2fs", (double)ns / 1e9);
	return b;
}

static void text_fp(FILE *out, const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n <= max)
		fprintf(out, "%s", s);
	else
		fprintf(out, "%.*s...", (int)max, s);
}

static void q_report_text(void *state, struct kp_analysis *an, FILE *out)
{
	struct qstate *qs = state;
	int full = kp_command_is(an, "queries");
	char a[32], b[32], c[32], d[32], e[32], g[32];
	if (!qs->calls && !full)
		return;
	unsigned top = an->opts->top;
	if (!full && top > 5)
		top = 5;
	fprintf(out, "queries: %s calls, %zu fingerprints, %s in queries%s%s\n",
		kp_fmt_count(a, sizeof(a), qs->calls), qs->nfps,
		fmt_ns(b, sizeof(b), qs->total_ns),
		qs->order == QO_TOTAL ? "" : ", ranked by ",
		qs->order == QO_TOTAL ? "" : order_keys[qs->order][0]);
	if (qs->nfps)
		fprintf(out, "  rank  total      share  calls      p50      p95      "
			"p99      max      fingerprint\n");
	for (size_t r = 0; r < qs->nfps && r < top; r++) {
		const struct qfp *f = &qs->fps[qs->rank[r]];
		fprintf(out, "  %4zu  %-9s %5.1f%%  %-9s  %-7s  %-7s  %-7s  %-7s  ",
			r + 1, fmt_ns(a, sizeof(a), f->total_ns),
			qs->total_ns ? 100.0 * (double)f->total_ns /
				(double)qs->total_ns : 0.0,
			kp_fmt_count(b, sizeof(b), f->calls),
			fmt_ns(c, sizeof(c), kp_hist_quantile(&f->hist, 0.5)),
			fmt_ns(d, sizeof(d), kp_hist_quantile(&f->hist, 0.95)),
			fmt_ns(e, sizeof(e), kp_hist_quantile(&f->hist, 0.99)),
			fmt_ns(g, sizeof(g), f->hist.max));
		text_fp(out, f->text, full ? 400 : 60);
		fputc('\n', out);
		if (full) {
			/* the distribution's decades from the first to the
			 * last that has calls */
			unsigned lo = 0, hi = NDECADES - 1;
			while (lo < hi && !f->decade[lo])
				lo++;
			while (hi > lo && !f->decade[hi])
				hi--;
			fputs("        time", out);
			for (unsigned k = lo; k <= hi; k++)
				fprintf(out, "%s %s %" PRIu64, k > lo ? "," : "",
					decade_name[k], f->decade[k]);
			fputc('\n', out);
		}
		if (full && (f->rows || f->full_scan || f->acc.alloc_calls ||
			     f->acc.io_calls || f->errors ||
			     f->acc.lock_waits)) {
			fprintf(out, "        rows %" PRIu64 ", full-scan steps %"
				PRIu64 " in %" PRIu64 " calls, sorts %" PRIu64
				", errors %" PRIu64 ", allocations %" PRIu64
				" (%" PRIu64 " bytes), I/O %" PRIu64 " bytes, "
				"fsyncs %" PRIu64, f->rows, f->full_scan,
				f->full_scan_calls, f->sort, f->errors,
				f->acc.alloc_calls, f->acc.alloc_bytes,
				f->acc.io_bytes, f->acc.fsyncs);
			if (f->acc.lock_waits)
				fprintf(out, ", lock waits %" PRIu64 " (%s)",
					f->acc.lock_waits,
					fmt_ns(a, sizeof(a), f->acc.lock_ns));
			if (qs->cpu_sampled)
				fprintf(out, ", on CPU %s (%" PRIu64 " sample%s)",
					fmt_ns(a, sizeof(a), f->acc.cpu_ns),
					f->acc.cpu_samples,
					f->acc.cpu_samples == 1 ? "" : "s");
			fputc('\n', out);
		}
	}
	if (qs->nfps > top)
		fprintf(out, "  (%zu more; kprof-analyze queries --top N)\n",
			qs->nfps - top);
	if (qs->dropped_fps + qs->dropped_threads)
		fprintf(out, "  WARNING: %" PRIu64 " queries not counted (over "
			"%u fingerprints or %u threads)\n",
			qs->dropped_fps + qs->dropped_threads, MAX_FPS,
			MAX_QTHREADS);
	size_t nslow = 0;
	for (size_t r = 0; r < qs->nfps; r++)
		nslow += qs->fps[r].slow_calls != 0;
	fprintf(out, "  findings: %zu slow (>= %s), %zu N+1 (runs of >= %u), "
		"%zu index advice, %zu write storm%s (>= %u writes)\n", nslow,
		fmt_ns(a, sizeof(a), qs->slow_ns), qs->nplus1.n, qs->nplus1_min,
		qs->nadvice, qs->nstorms, qs->nstorms == 1 ? "" : "s",
		qs->storm_min);
	if (!full) {
		fputc('\n', out);
		return;
	}
	for (size_t r = 0; r < qs->nfps; r++) {
		const struct qfp *f = &qs->fps[qs->rank[r]];
		if (!f->slow_calls)
			continue;
		const struct worst *w = &f->worst;
		fprintf(out, "\nSLOW  %" PRIu64 " of %" PRIu64 " calls >= %s: ",
			f->slow_calls, f->calls, fmt_ns(a, sizeof(a), qs->slow_ns));
		text_fp(out, f->text, 200);
		fprintf(out, "\n  worst %s (pid %" PRId64 " tid %u): file I/O %s, "
			"fsync %s, lock wait %s, %s%s%srest %s\n",
			fmt_ns(a, sizeof(a), w->ns), w->pid, w->tid,
			fmt_ns(b, sizeof(b), w->acc.io_ns),
			fmt_ns(c, sizeof(c), w->acc.fsync_ns),
			fmt_ns(e, sizeof(e), w->acc.lock_ns),
			qs->cpu_sampled ? "on CPU (sampled) " : "",
			qs->cpu_sampled ? fmt_ns(g, sizeof(g), worst_cpu(w)) : "",
			qs->cpu_sampled ? ", " : "",
			fmt_ns(d, sizeof(d), worst_rest(w)));
		kp_text_stack(an, out, w->stack, 8, "    ");
	}
	for (size_t k = 0; k < qs->nplus1.n; k++) {
		const struct qsite *s = &qs->nplus1.v[k];
		const struct qfp *f = &qs->fps[s->fp];
		fprintf(out, "\nN+1  %" PRIu64 " queries in %" PRIu64 " run%s "
			"(longest %" PRIu64 "), %s; batched (%s) "
			"would save about %s: ", s->calls, s->runs,
			s->runs == 1 ? "" : "s", s->max_run,
			fmt_ns(a, sizeof(a), s->ns),
			f->is_write ? "one statement for the rows" :
				      "IN list / JOIN",
			fmt_ns(b, sizeof(b), s->saving_ns));
		text_fp(out, f->text, 200);
		fputc('\n', out);
		kp_text_stack(an, out, s->stack, 8, "    ");
	}
	for (size_t r = 0; r < qs->nfps; r++) {
		const struct qfp *f = &qs->fps[qs->rank[r]];
		if (!f->dup_calls && !f->dup_runs)
			continue;
		fprintf(out, "\nDUPLICATE  %" PRIu64 " of %" PRIu64 " calls repeat "
			"earlier values (cache or hoist them): ", f->dup_calls,
			f->calls);
		text_fp(out, f->text, 200);
		fputc('\n', out);
	}
	for (size_t k = 0; k < qs->nadvice; k++) {
		const struct qadvice *ad = &qs->advice[k];
		if (ad->server_plan) {
			fprintf(out, "\nINDEX  %s\n  the server plans a sequential "
				"scan of %s (%" PRId64 " rows) for %" PRIu64
				" calls of: ", ad->statement, ad->table,
				ad->table_rows, qs->fps[ad->fp].calls);
			text_fp(out, qs->fps[ad->fp].text, 200);
			fprintf(out, "\n  not verified (kprof creates no index "
				"on a server)\n");
			continue;
		}
		fprintf(out, "\nINDEX  %s\n  for %" PRIu64 " full-scan calls of: ",
			ad->statement, qs->fps[ad->fp].full_scan_calls);
		text_fp(out, qs->fps[ad->fp].text, 200);
		fprintf(out, "\n  %s\n", ad->verified < 0 ?
			"not verified (give --sqlite-db FILE)" :
			ad->verified ? "verified: EXPLAIN QUERY PLAN uses it" :
			"verified: EXPLAIN QUERY PLAN does NOT use it");
	}
	for (size_t k = 0; k < qs->nstorms; k++) {
		const struct qstorm *s = &qs->storms[k];
		int measured;
		uint64_t saving = storm_saving(qs, s, &measured);
		fprintf(out, "\nWRITE STORM  %" PRIu64 " autocommit writes in %"
			PRIu64 " storm%s, %s; one transaction (BEGIN ... COMMIT) "
			"would save %s%s: ", s->statements, s->storms,
			s->storms == 1 ? "" : "s", fmt_ns(a, sizeof(a), s->total_ns),
			measured ? "" : "an unmeasured amount",
			measured ? fmt_ns(b, sizeof(b), saving) : "");
		text_fp(out, qs->fps[s->fp].text, 200);
		fputc('\n', out);
	}
	fputc('\n', out);
}

/* ---- advice (advise.c) ---------------------------------------------------------- */

/* Where each fingerprint is called from the most (by time): a gstack, or
 * 0; by fingerprint index (the caller frees it). */
static uint32_t *fp_sites(const struct qstate *qs)
{
	uint32_t *top = xcalloc(qs->nfps + 1, sizeof(*top));
	/* sites are sorted by time, the most first (q_finish) */
	for (size_t k = qs->sites.n; k-- > 0;)
		if (qs->sites.v[k].fp < qs->nfps)
			top[qs->sites.v[k].fp] = qs->sites.v[k].stack;
	return top;
}

/* f's text into a title after what: "what: the text"; the text is the
 * key */
static void fp_title(struct kp_advice *a, const char *what,
		     const struct qfp *f)
{
	char t[200];
	snprintf(a->title, sizeof(a->title), "%s: %s", what,
		 kp_disp(t, sizeof(t), f->text, 150));
	snprintf(a->key, sizeof(a->key), "%.*s", (int)f->len, f->text);
}

/* Fingerprints that sync: the commits' fsyncs, with the query and the
 * call site they came from (Q06; a storm's fingerprint has Q04). */
static void advise_fsyncs(struct qstate *qs, struct kp_analysis *an,
			  struct kp_advice_list *l, const uint32_t *site)
{
	uint64_t all = kp_io_sync_ns(an);
	char a[32], b[32];
	char *storm = xcalloc(qs->nfps + 1, 1);
	for (size_t k = 0; k < qs->nstorms; k++)
		if (qs->storms[k].fp < qs->nfps)
			storm[qs->storms[k].fp] = 1;
	for (size_t r = 0; r < qs->nfps; r++) {
		const struct qfp *f = &qs->fps[qs->rank[r]];
		if (!f->acc.fsyncs || storm[qs->rank[r]])
			continue;
		struct kp_advice *x = kp_advice_add(l, "queries", "Q06",
			f->acc.fsyncs >= 10 ? KP_SEV_WARN : KP_SEV_INFO);
		fp_title(x, "fsyncs inside a query", f);
		snprintf(x->evidence, sizeof(x->evidence),
			 "%" PRIu64 " fsyncs took %s (%.1f %% of the time in "
			 "fsync) in %" PRIu64 " call%s of %s; the query wrote "
			 "%" PRIu64 " bytes of file I/O", f->acc.fsyncs,
			 kp_fmt_ns(a, sizeof(a), f->acc.fsync_ns),
			 all ? 100.0 * (double)f->acc.fsync_ns / (double)all : 0.0,
			 f->calls, f->calls == 1 ? "" : "s",
			 kp_fmt_ns(b, sizeof(b), f->total_ns), f->acc.io_bytes);
		x->action = "each commit waits for its journal and database "
			"file to reach the disk: commit less often (more "
			"statements a transaction); SQLite: PRAGMA "
			"journal_mode=WAL with synchronous=NORMAL syncs at "
			"checkpoints only; PostgreSQL: synchronous_commit=off "
			"where losing the last commits in a crash is acceptable";
		x->time_ns = f->acc.fsync_ns;
		x->gstack = site[qs->rank[r]];
	}
	free(storm);
}

void kp_query_advise(struct kp_analysis *an, struct kp_advice_list *l)
{
	struct qstate *qs = kp_pass_state(an, &kp_pass_queries);
	char a[32], b[32], c[32], d[32], e[32], g[32];
	if (!qs || !qs->rank)
		return;
	uint32_t *site = fp_sites(qs);
	for (size_t k = 0; k < qs->nplus1.n; k++) {
		const struct qsite *s = &qs->nplus1.v[k];
		const struct qfp *f = &qs->fps[s->fp];
		struct kp_advice *x = kp_advice_add(l, "queries", "Q01",
						    KP_SEV_WARN);
		fp_title(x, f->is_write ? "N+1 writes, one a row" :
			 "N+1 queries", f);
		snprintf(x->evidence, sizeof(x->evidence),
			 "%" PRIu64 " queries in %" PRIu64 " run%s of one "
			 "query after another (the longest %" PRIu64 "), %s",
			 s->calls, s->runs, s->runs == 1 ? "" : "s", s->max_run,
			 kp_fmt_ns(a, sizeof(a), s->ns));
		x->action = f->is_write ?
			"write the rows with one statement (a multi-row INSERT "
			"... VALUES (...), (...), an UPDATE or DELETE with an "
			"IN list), or at least in one transaction" :
			"fetch the rows of the loop in one query (an IN list "
			"or a JOIN) instead of one query per row";
		x->time_ns = s->saving_ns;
		x->gstack = s->stack;
	}
	for (size_t r = 0; r < qs->nfps; r++) {
		const struct qfp *f = &qs->fps[qs->rank[r]];
		if (!f->dup_calls || !f->calls)
			continue;
		struct kp_advice *x = kp_advice_add(l, "queries", "Q02",
			f->dup_calls >= 100 ? KP_SEV_WARN : KP_SEV_INFO);
		fp_title(x, "duplicate queries", f);
		snprintf(x->evidence, sizeof(x->evidence),
			 "%" PRIu64 " of %" PRIu64 " calls repeat the values "
			 "of an earlier call in a row on their thread",
			 f->dup_calls, f->calls);
		x->action = "keep the result of the first call (a cache, or "
			"the query hoisted out of the loop)";
		x->time_ns = kp_sat_mul(f->total_ns / f->calls, f->dup_calls);
		x->gstack = site[qs->rank[r]];
	}
	for (size_t k = 0; k < qs->nadvice; k++) {
		const struct qadvice *ad = &qs->advice[k];
		const struct qfp *f = &qs->fps[ad->fp];
		struct kp_advice *x = kp_advice_add(l, "queries", "Q03",
			ad->verified == 0 ? KP_SEV_INFO : KP_SEV_WARN);
		fp_title(x, "full table scans", f);
		uint64_t scans = ad->server_plan ? f->calls : f->full_scan_calls;
		snprintf(x->evidence, sizeof(x->evidence),
			 "%" PRIu64 " of %" PRIu64 " calls %s, %s in all; %s",
			 scans, f->calls, ad->server_plan ?
			 "are planned as a sequential scan by the server" :
			 "scanned a table (SQLite's full-scan counter)",
			 kp_fmt_ns(a, sizeof(a), f->total_ns),
			 ad->server_plan ? "not verified (kprof creates no "
			 "index on a server)" : ad->verified < 0 ?
			 "not verified (give --sqlite-db FILE)" :
			 ad->verified ? "verified: EXPLAIN QUERY PLAN uses it" :
			 "verified: EXPLAIN QUERY PLAN does NOT use it");
		x->action = ad->statement;
		x->time_ns = f->calls ? kp_sat_mul(f->total_ns / f->calls, scans) : 0;
		x->gstack = site[ad->fp];
	}
	for (size_t k = 0; k < qs->nstorms; k++) {
		const struct qstorm *s = &qs->storms[k];
		int measured;
		uint64_t saving = storm_saving(qs, s, &measured);
		struct kp_advice *x = kp_advice_add(l, "queries", "Q04",
			s->statements >= 100 ? KP_SEV_HIGH : KP_SEV_WARN);
		fp_title(x, "autocommit write storm", &qs->fps[s->fp]);
		snprintf(x->evidence, sizeof(x->evidence),
			 "%" PRIu64 " writes in %" PRIu64 " storm%s, each its "
			 "own transaction, took %s; their %" PRIu64 " fsyncs "
			 "took %s",
			 s->statements, s->storms, s->storms == 1 ? "" : "s",
			 kp_fmt_ns(a, sizeof(a), s->total_ns), s->fsyncs,
			 kp_fmt_ns(b, sizeof(b), s->fsync_ns));
		x->action = "put the writes in one transaction (BEGIN ... "
			"COMMIT): one commit, one set of fsyncs";
		x->time_ns = measured ? saving : 0;
		x->gstack = site[s->fp];
	}
	for (size_t r = 0; r < qs->nfps; r++) {
		const struct qfp *f = &qs->fps[qs->rank[r]];
		if (!f->slow_calls)
			continue;
		const struct worst *w = &f->worst;
		struct kp_advice *x = kp_advice_add(l, "queries", "Q05",
						    KP_SEV_WARN);
		fp_title(x, "slow query", f);
		int k = snprintf(x->evidence, sizeof(x->evidence),
			 "%" PRIu64 " of %" PRIu64 " calls took %s or more; "
			 "the worst %s: file I/O %s, fsync %s, lock wait %s, ",
			 f->slow_calls, f->calls,
			 kp_fmt_ns(a, sizeof(a), qs->slow_ns),
			 kp_fmt_ns(b, sizeof(b), w->ns),
			 kp_fmt_ns(c, sizeof(c), w->acc.io_ns),
			 kp_fmt_ns(d, sizeof(d), w->acc.fsync_ns),
			 kp_fmt_ns(e, sizeof(e), w->acc.lock_ns));
		if (k > 0 && (size_t)k < sizeof(x->evidence))
			snprintf(x->evidence + k, sizeof(x->evidence) - k,
				 "%s%s%sthe rest %s",
				 qs->cpu_sampled ? "on CPU (sampled) " : "",
				 qs->cpu_sampled ? kp_fmt_ns(a, sizeof(a),
							     worst_cpu(w)) : "",
				 qs->cpu_sampled ? ", " : "",
				 kp_fmt_ns(g, sizeof(g), worst_rest(w)));
		x->action = "the split says where the worst call's time went: "
			"file I/O and fsync are the database's reads and "
			"commits, a lock wait another connection's "
			"transaction, CPU the query's own work (its plan: "
			"EXPLAIN), the rest what the trace does not see "
			"(a client's wait for its server, page faults, the "
			"run queue)";
		x->time_ns = w->ns;
		x->gstack = w->stack;
	}
	advise_fsyncs(qs, an, l, site);
	free(site);
}

static void q_free(void *state, struct kp_analysis *an)
{
	struct qstate *qs = state;
	(void)an;
	for (size_t i = 0; i < qs->nfps; i++) {
		free(qs->fps[i].text);
		kp_hist_free(&qs->fps[i].hist);
		kp_idmap_free(&qs->fps[i].vals);
	}
	free(qs->fps);
	free(qs->text_fp);
	kp_idmap_free(&qs->fp_ids);
	sites_free(&qs->sites);
	sites_free(&qs->nplus1);
	sites_free(&qs->tsites);
	sites_free(&qs->tnplus1);
	free(qs->storms);
	free(qs->thr);
	kp_idmap_free(&qs->tids);
	sbufs_free(qs);
	kp_idmap_free(&qs->sbuf_ids);
	free(qs->rank);
	for (size_t k = 0; k < qs->nadvice; k++) {
		free(qs->advice[k].table);
		free(qs->advice[k].columns);
		free(qs->advice[k].statement);
		free(qs->advice[k].plan_before);
		free(qs->advice[k].plan_after);
	}
	free(qs->advice);
	free(qs);
}

size_t kp_query_fps(const struct kp_analysis *an)
{
	const struct qstate *qs = kp_pass_state(an, &kp_pass_queries);
	return qs && qs->rank ? qs->nfps : 0;
}

void kp_query_fp(const struct kp_analysis *an, size_t r,
		 struct kp_query_fp *out)
{
	const struct qstate *qs = kp_pass_state(an, &kp_pass_queries);
	const struct qfp *f = &qs->fps[qs->rank[r]];
	out->text = f->text;
	out->len = f->len;
	out->calls = f->calls;
	out->total_ns = f->total_ns;
	out->rows = f->rows;
	out->errors = f->errors;
	out->p95_ns = kp_hist_quantile(&f->hist, 0.95);
}

const struct kp_pass kp_pass_queries = {
	.name = "queries",
	.command = "queries",
	.xInit = q_init,
	.xBeginTrace = q_begin_trace,
	.xEvents = q_events,
	.xEndTrace = q_end_trace,
	.xFinish = q_finish,
	.xReportText = q_report_text,
	.xReportJson = q_report_json,
	.xFree = q_free,
};
