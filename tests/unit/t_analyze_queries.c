/* SPDX-License-Identifier: MIT */
/*
 * kprof-analyze's queries pass on synthetic traces built in memory: the
 * documented rules at their thresholds (tools/analyze/queries.c, man
 * kprof-analyze(1)): N+1 at 5 not 4, duplicate runs, an enclosing cursor
 * does not break a run but a span does, allocations attributed to the
 * query open on their thread only, write storms at 10 with the saving
 * measured against in-transaction writes, and the index advice parser.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze.h"
#include "err.h"
#include "harness.h"
#include "kpz.h"
#include "kpz_testutil.h"

struct tb {
	struct membuf m; /* the trace as written (kpz_testutil.h) */
	struct kp_writer *w;
	uint64_t ts;
	uint64_t ctx;
	uint64_t begin_ts[256]; /* by ctx */
};

static void tb_begin(struct tb *b)
{
	struct kp_sink sink = { membuf_write, &b->m, NULL };
	struct kp_header h;
	memset(b, 0, sizeof(*b));
	memset(&h, 0, sizeof(h));
	h.pid = 42;
	h.exe = "/app";
	h.clock = "clock_gettime";
	if (kp_writer_create(&b->w, &kp_allocator_libc, &sink, 1, 1 << 20) ||
	    kp_writer_header(b->w, &h))
		abort();
	b->ts = 1000;
}

static void tb_add(struct tb *b, const struct kp_rec *r)
{
	if (kp_writer_add(b->w, r))
		abort();
}

static uint64_t q_begin(struct tb *b, uint32_t tid)
{
	struct kp_rec r = { .type = KP_REC_QUERY_BEGIN, .tid = tid };
	r.ts = b->ts += 10;
	r.u.ext.v[KP_QB_CTX] = (int64_t)++b->ctx;
	tb_add(b, &r);
	b->begin_ts[b->ctx % 256] = r.ts;
	return b->ctx;
}

/* A query ends dur after its QUERY_BEGIN ctx (after now with ctx 0, or
 * dur after the last record when that is later: a QUERY's ts - dur is
 * its begin, as the hooks write it). */
static void q_end(struct tb *b, uint32_t tid, uint64_t ctx, const char *fp,
		  uint64_t dur, int64_t valhash, int64_t flags,
		  int64_t fullscan)
{
	struct kp_rec r = { .type = KP_REC_QUERY, .tid = tid,
			    .kind = KP_QSRC_SQLITE };
	if (ctx && b->begin_ts[ctx % 256] + dur <= b->ts)
		dur = b->ts + dur - b->begin_ts[ctx % 256];
	b->ts = ctx ? b->begin_ts[ctx % 256] + dur : b->ts + dur;
	r.ts = b->ts;
	r.u.ext.v[KP_Q_CTX] = (int64_t)ctx;
	r.u.ext.v[KP_Q_DUR] = (int64_t)dur;
	r.u.ext.v[KP_Q_ROWS] = 1;
	r.u.ext.v[KP_Q_FULLSCAN] = fullscan;
	r.u.ext.v[KP_Q_VALHASH] = valhash;
	r.u.ext.v[KP_Q_FLAGS] = flags;
	r.u.ext.str = fp;
	r.u.ext.str_len = (uint32_t)strlen(fp);
	tb_add(b, &r);
}

/* A QUERY_TEXT record (format 2.1): text id is text. */
static void q_text(struct tb *b, uint32_t id, const char *text)
{
	struct kp_rec r = { .type = KP_REC_QUERY_TEXT };
	r.u.qtext.id = id;
	r.u.qtext.text = text;
	r.u.qtext.len = (uint32_t)strlen(text);
	tb_add(b, &r);
}

/* A query whose QUERY names its text by id, as the recorder writes it
 * (str empty). */
static void q_id(struct tb *b, uint32_t tid, uint32_t text_id, uint64_t dur,
		 int64_t valhash)
{
	uint64_t ctx = q_begin(b, tid);
	struct kp_rec r = { .type = KP_REC_QUERY, .tid = tid,
			    .kind = KP_QSRC_SQLITE };
	b->ts = b->begin_ts[ctx % 256] + dur;
	r.ts = b->ts;
	r.u.ext.v[KP_Q_CTX] = (int64_t)ctx;
	r.u.ext.v[KP_Q_DUR] = (int64_t)dur;
	r.u.ext.v[KP_Q_ROWS] = 1;
	r.u.ext.v[KP_Q_VALHASH] = valhash;
	r.u.ext.v[KP_Q_TEXT_ID] = text_id;
	r.u.ext.str = "";
	tb_add(b, &r);
}

static void q(struct tb *b, uint32_t tid, const char *fp, uint64_t dur,
	      int64_t valhash, int64_t flags)
{
	q_end(b, tid, q_begin(b, tid), fp, dur, valhash, flags, 0);
}

static void alloc(struct tb *b, uint32_t tid, uint64_t size)
{
	struct kp_rec r = { .type = KP_REC_ALLOC, .tid = tid };
	r.ts = b->ts += 5;
	r.u.alloc.ptr = 0x10000 + b->ts;
	r.u.alloc.size = size;
	tb_add(b, &r);
}

static void span(struct tb *b, uint32_t tid, int end, int64_t id)
{
	struct kp_rec r = { .type = KP_REC_SPAN, .tid = tid };
	r.kind = (uint8_t)end;
	r.ts = b->ts += 5;
	r.u.ext.v[KP_SPAN_ID] = id;
	r.u.ext.str = end ? NULL : "request";
	r.u.ext.str_len = end ? 0 : 7;
	tb_add(b, &r);
}

static struct kp_opts opts = { .format = KP_FMT_JSON, .top = 10,
			       .no_symbols = 1, .slow_ms = -1 };

/* Finish the traces, analyze them together, return the JSON report
 * (malloc'ed). */
static char *report_n(struct tb *bs, size_t nb)
{
	struct kp_analysis *an = kp_analysis_new(&opts);
	for (size_t i = 0; i < nb; i++) {
		struct tb *b = &bs[i];
		struct kp_rec e = { .type = KP_REC_END, .ts = b->ts + 10 };
		tb_add(b, &e);
		if (kp_writer_flush(b->w))
			abort();
		kp_writer_free(b->w);
		struct memsrc s = { .p = b->m.p, .len = b->m.len };
		struct kp_source src = { memsrc_read, &s };
		if (kp_analysis_add(an, "q.kpz", &src) < 0)
			printf("#   analysis failed\n");
		membuf_free(&b->m);
	}
	kp_analysis_finish(an);
	char *out = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&out, &n);
	kp_report_json(an, f);
	fclose(f);
	kp_analysis_free(an);
	return out;
}

static char *report(struct tb *b)
{
	return report_n(b, 1);
}

/* Run a python assertion over the report's "queries" object q. */
static int check(const char *doc, const char *assertion)
{
	char path[] = "/tmp/t_analyze_queries_XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return 0;
	size_t n = strlen(doc);
	int ok = write(fd, doc, n) == (ssize_t)n;
	close(fd);
	char cmd[8192];
	snprintf(cmd, sizeof(cmd),
		 "/usr/bin/python3 -c 'import json,sys; "
		 "q = json.load(open(sys.argv[1]))[\"queries\"]; "
		 "ok = %s; print(\"#   \" + json.dumps(q)[:3000]) if not ok "
		 "else None; sys.exit(0 if ok else 1)' %s",
		 assertion, path);
	ok = ok && system(cmd) == 0;
	unlink(path);
	return ok;
}

#define SEL "select * from t where id = ?"

TEST(n_plus_one_threshold)
{
	struct tb b;
	tb_begin(&b);
	for (int i = 0; i < 4; i++) /* 4: not yet */
		q(&b, 1, SEL, 100, 100 + i, 0);
	q(&b, 1, "select 1", 10, 7, 0);
	for (int i = 0; i < 5; i++) /* 5: an N+1; slowest 500 */
		q(&b, 1, SEL, i == 2 ? 500 : 100, 200 + i, 0);
	char *doc = report(&b);
	CHECK(check(doc, "[(n[\"fingerprint\"], n[\"runs\"], n[\"queries\"], "
		    "n[\"total_ns\"], n[\"saving_ns\"], n[\"distinct_values\"]) "
		    "for n in q[\"n_plus_one\"]] == [(\"" SEL "\", 1, 5, 900, "
		    "400, 5)]"));
	free(doc);
}

TEST(duplicates)
{
	struct tb b;
	tb_begin(&b);
	for (int i = 0; i < 5; i++) /* one value five times: a duplicate run */
		q(&b, 1, SEL, 100, 77, 0);
	q(&b, 1, "select 1", 10, 7, 0);
	q(&b, 1, SEL, 100, 78, 0);
	q(&b, 1, SEL, 100, 77, 0); /* again, later */
	char *doc = report(&b);
	CHECK(check(doc, "q[\"n_plus_one\"] == [] and [(d[\"fingerprint\"], "
		    "d[\"calls\"], d[\"duplicate_calls\"], d[\"distinct_values\"], "
		    "d[\"duplicate_runs\"]) for d in q[\"duplicates\"]] == "
		    "[(\"" SEL "\", 7, 5, 2, 1)]"));
	free(doc);
}

TEST(cursor_does_not_break_a_run_a_span_does)
{
	struct tb b;
	tb_begin(&b);
	/* a cursor open around the loop, ending before the last lookup */
	uint64_t cur = q_begin(&b, 1);
	for (int i = 0; i < 4; i++)
		q(&b, 1, SEL, 100, 300 + i, 0);
	q_end(&b, 1, cur, "select id from t", 50, 1, 0, 0);
	q(&b, 1, SEL, 100, 304, 0);
	q(&b, 1, "select 1", 10, 7, 0);
	/* 3 + 3 in two spans: no N+1 */
	span(&b, 1, 0, 1);
	for (int i = 0; i < 3; i++)
		q(&b, 1, "select b from u where k = ?", 100, 400 + i, 0);
	span(&b, 1, 1, 1);
	span(&b, 1, 0, 2);
	for (int i = 0; i < 3; i++)
		q(&b, 1, "select b from u where k = ?", 100, 500 + i, 0);
	span(&b, 1, 1, 2);
	char *doc = report(&b);
	CHECK(check(doc, "[(n[\"fingerprint\"], n[\"queries\"]) for n in "
		    "q[\"n_plus_one\"]] == [(\"" SEL "\", 5)]"));
	free(doc);
}

TEST(attribution)
{
	struct tb b;
	tb_begin(&b);
	alloc(&b, 1, 1000); /* before: not the query's */
	uint64_t c = q_begin(&b, 1);
	alloc(&b, 1, 100);
	alloc(&b, 2, 5000); /* another thread */
	uint64_t inner = q_begin(&b, 1);
	alloc(&b, 1, 30);
	q_end(&b, 1, inner, "select 2", 10, 1, 0, 0);
	alloc(&b, 1, 50);
	q_end(&b, 1, c, "select 1", 100, 1, 0, 0);
	alloc(&b, 1, 7000); /* after */
	char *doc = report(&b);
	/* the outer query includes what ran inside the inner one */
	CHECK(check(doc, "{f[\"fingerprint\"]: (f[\"alloc_calls\"], "
		    "f[\"alloc_bytes\"]) for f in q[\"fingerprints\"]} == "
		    "{\"select ?\": (4, 210)}"));
	free(doc);
}

static void sample(struct tb *b, uint32_t tid, uint64_t ts, uint64_t weight)
{
	struct kp_rec r = { .type = KP_REC_CPU_SAMPLE, .tid = tid };
	r.ts = b->ts = ts;
	r.u.ext.v[KP_CPU_WEIGHT] = (int64_t)weight;
	tb_add(b, &r);
}

/* A query from start to end with no QUERY_BEGIN (nothing else recorded
 * during it, or a nested one's begin already written: ctx) */
static void q_span(struct tb *b, uint32_t tid, uint64_t ctx, const char *fp,
		   uint64_t start, uint64_t end)
{
	struct kp_rec r = { .type = KP_REC_QUERY, .tid = tid,
			    .kind = KP_QSRC_SQLITE };
	r.ts = b->ts = end;
	r.u.ext.v[KP_Q_CTX] = (int64_t)ctx;
	r.u.ext.v[KP_Q_DUR] = (int64_t)(end - start);
	r.u.ext.v[KP_Q_ROWS] = 1;
	r.u.ext.v[KP_Q_VALHASH] = 1;
	r.u.ext.str = fp;
	r.u.ext.str_len = (uint32_t)strlen(fp);
	tb_add(b, &r);
}

/* CPU samples go to the query whose run they fall in, on their thread:
 * with no QUERY_BEGIN, past the 1,024 a thread keeps (merged, then split
 * in proportion), and an enclosing query takes a nested one's too. */
TEST(cpu_samples)
{
	struct tb b;
	tb_begin(&b);
	uint64_t t0 = b.ts;
	/* 3,000 samples of 1,000 ns on thread 1, as many on thread 2 */
	for (uint64_t k = 1; k <= 3000; k++) {
		sample(&b, 1, t0 + 1000 * k, 1000);
		sample(&b, 2, t0 + 1000 * k + 1, 7);
	}
	/* thread 1's query took the last 500 */
	q_span(&b, 1, 0, "select a from t", t0 + 1000 * 2500 + 500,
	       t0 + 1000 * 3000 + 500);
	/* an outer query with its begin, 10 samples, 4 of them in a nested
	 * query without one */
	uint64_t outer = q_begin(&b, 1);
	uint64_t t1 = b.ts;
	for (uint64_t k = 1; k <= 10; k++)
		sample(&b, 1, t1 + 100 * k, 50);
	q_span(&b, 1, 0, "select b from t", t1 + 250, t1 + 650);
	q_end(&b, 1, outer, "select c from t", 1100, 1, 0, 0); /* at t1 + 1100 */
	char *doc = report(&b);
	CHECK(check(doc, "q[\"cpu_sampled\"] and "
		    "{f[\"fingerprint\"][7]: (f[\"cpu_samples\"], f[\"cpu_ns\"]) "
		    "for f in q[\"fingerprints\"]} in ("
		    "{\"a\": (n, n * 1000), \"b\": (4, 200), \"c\": (10, 500)} "
		    "for n in range(498, 503))"));
	free(doc);
}

TEST(write_storms)
{
	struct tb b;
	const char *ins = "insert into t values(?+)";
	int64_t ac = KP_QF_AUTOCOMMIT | KP_QF_WRITE;
	tb_begin(&b);
	for (int i = 0; i < 9; i++) /* 9: not a storm */
		q(&b, 1, ins, 1000, 10 + i, ac);
	q(&b, 1, "begin", 10, 1, KP_QF_AUTOCOMMIT);
	for (int i = 0; i < 4; i++) /* in a transaction: 100 each */
		q(&b, 1, ins, 100, 20 + i, KP_QF_WRITE);
	q(&b, 1, "commit", 10, 1, 0);
	for (int i = 0; i < 10; i++) { /* 10 with reads between: a storm */
		q(&b, 1, ins, 1000, 30 + i, ac);
		q(&b, 1, "select v from t where id = ?", 10, 40 + i,
		  KP_QF_AUTOCOMMIT);
	}
	q(&b, 1, "begin", 10, 1, KP_QF_AUTOCOMMIT);
	q(&b, 1, ins, 100, 99, KP_QF_WRITE); /* ends it */
	char *doc = report(&b);
	CHECK(check(doc, "[(s[\"fingerprint\"], s[\"storms\"], s[\"statements\"], "
		    "s[\"total_ns\"], s[\"saving_ns\"], s[\"saving_measured\"]) for "
		    "s in q[\"write_storms\"]] == [(\"insert into t values(?+)\", "
		    "1, 10, 10000, 9000, True)]"));
	free(doc);
}

TEST(index_advice)
{
	static const char *const fps[] = {
		"select * from t as x where x.a = ? and b > ? order by c",
		"select a from t2 where a = ? order by b, c desc",
		"update t3 set v = ? where k in(?+)",
		"select count(*) from t4",
		"select * from sqlite_master where name = ?",
		"delete from t5 where a between ? and ? and b = ?",
		"select * from t6 where a = ? limit ?",
		"select * from t7 where a = ?",
	};
	struct tb b;
	tb_begin(&b);
	for (size_t i = 0; i < sizeof(fps) / sizeof(fps[0]); i++)
		q_end(&b, 1, 0, fps[i], 1000 - i, 1, 0, i == 7 ? 0 : 10);
	char *doc = report(&b);
	/* t7 did no full scan: no advice */
	CHECK(check(doc, "[a[\"statement\"] for a in q[\"index_advice\"]] == ["
		    "\"CREATE INDEX kp_t_a_b ON t(a, b);\", "
		    "\"CREATE INDEX kp_t2_a_b_c ON t2(a, b, c);\", "
		    "\"CREATE INDEX kp_t3_k ON t3(k);\", "
		    "\"CREATE INDEX kp_t5_b_a ON t5(b, a);\", "
		    "\"CREATE INDEX kp_t6_a ON t6(a);\"] and all("
		    "a[\"verified\"] is None for a in q[\"index_advice\"])"));
	free(doc);
}

/*
 * QUERY records that name their text (QUERY_TEXT, 2.1) get it, per
 * trace: the same id in two traces may be two texts; an id defined twice
 * keeps its first text; an id never defined is a query without text; a
 * QUERY with its text inline (2.0) still counts.
 */
TEST(interned_texts)
{
	struct tb b[2];
	tb_begin(&b[0]);
	q_text(&b[0], 1, SEL);
	q_text(&b[0], 2, "select 1");
	q_text(&b[0], 2, "select 2 from redefined");
	for (int i = 0; i < 5; i++) /* an N+1 by id */
		q_id(&b[0], 1, 1, 100, 200 + i);
	q_id(&b[0], 1, 2, 10, 7);
	q_id(&b[0], 1, 9, 10, 7); /* never defined */
	q(&b[0], 1, "select 3", 10, 7, 0); /* inline: select ? */
	tb_begin(&b[1]);
	q_text(&b[1], 1, "select b from u where k = ?");
	q_id(&b[1], 1, 1, 100, 1);
	q_id(&b[1], 1, 1, 100, 2);
	char *doc = report_n(b, 2);
	CHECK(check(doc, "{f[\"fingerprint\"]: f[\"calls\"] for f in "
		    "q[\"fingerprints\"]} == {\"" SEL "\": 5, \"select ?\": 2, "
		    "\"\": 1, \"select b from u where k = ?\": 2} and "
		    "[(n[\"fingerprint\"], n[\"queries\"]) for n in "
		    "q[\"n_plus_one\"]] == [(\"" SEL "\", 5)]"));
	free(doc);
}

/*
 * A frame of more events, extension records and text than a read-ahead
 * chunk holds (8,192 events, 2,048 records, 1 MiB of strings; the frame
 * takes 3 MiB of query text here): the frame goes over in pieces, each
 * query with its text, and each allocation still counted to the query open
 * on its thread. Two threads take turns, a query each, so the frame is
 * 6,000 runs (the heap merge); one thread's frame is one run, which a lent
 * order stage gives out where it lies.
 */
/* The trace of frame_across_chunks() on nthreads threads, analyzed with
 * kp_ra_lend = lend. */
static void across_chunks(int *kp_failed_, uint32_t nthreads, int lend)
{
	enum { N = 3000, LEN = 1000 };
	static char text[2][LEN + 64];
	struct kp_sink sink;
	struct kp_header h;
	struct tb b;
	uint64_t bytes = 0;

	for (int t = 0; t < 2; t++) {
		int n = snprintf(text[t], sizeof(text[t]),
				 "select a from t%d where b = 1 and c = '", t);
		memset(text[t] + n, 'x', LEN);
		strcpy(text[t] + n + LEN, "'");
	}
	/* tb_begin(), with frames of up to 16 MiB */
	memset(&b, 0, sizeof(b));
	memset(&h, 0, sizeof(h));
	sink = (struct kp_sink){ membuf_write, &b.m, NULL };
	h.pid = 42;
	h.exe = "/app";
	h.clock = "clock_gettime";
	if (kp_writer_create(&b.w, &kp_allocator_libc, &sink, 1, 16u << 20) ||
	    kp_writer_header(b.w, &h))
		abort();
	b.ts = 1000;
	for (int i = 0; i < N; i++) {
		uint32_t tid = 1 + (uint32_t)i % nthreads;
		uint64_t c = q_begin(&b, tid);
		for (int k = 1; k <= 3; k++) {
			alloc(&b, tid, (uint64_t)(i % 7 + k));
			bytes += (uint64_t)(i % 7 + k);
		}
		q_end(&b, tid, c, text[i & 1], 50, i, 0, 0);
	}
	uint64_t lent = kp_ra_lent;
	kp_ra_lend = lend;
	char *doc = report(&b);
	kp_ra_lend = -1;
	if (lend >= 0 && t_cpus() > 1)
		CHECK_EQ_U(kp_ra_lent > lent, (uint64_t)lend);
	char want[512];
	snprintf(want, sizeof(want),
		 "sorted((f[\"calls\"], f[\"alloc_calls\"]) for f in "
		 "q[\"fingerprints\"]) == [(%d, %d), (%d, %d)] and "
		 "sum(f[\"alloc_bytes\"] for f in q[\"fingerprints\"]) == %llu",
		 N / 2, 3 * N / 2, N / 2, 3 * N / 2, (unsigned long long)bytes);
	CHECK(check(doc, want));
	free(doc);
}

TEST(frame_across_chunks)
{
	/* the frame ordered by the read-ahead thread, by the driver's (lent
	 * to it), and by whichever is idle */
	if (t_cpus() < 2)
		printf("# one CPU: frames are not lent to the driver here\n");
	for (int lend = -1; lend <= 1; lend++) {
		across_chunks(kp_failed_, 2, lend);
		across_chunks(kp_failed_, 1, lend); /* one run: no copy */
	}
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(n_plus_one_threshold), T(duplicates),
			 T(cursor_does_not_break_a_run_a_span_does),
			 T(attribution), T(cpu_samples), T(write_storms),
			 T(index_advice),
			 T(interned_texts), T(frame_across_chunks));
}
