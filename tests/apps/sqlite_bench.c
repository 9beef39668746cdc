/*
 * The query hook's cost (tests/bench/bench.py): a loop of indexed point
 * selects, one prepared statement (bind, step to the row, step to DONE,
 * reset), timed inside the program so the start-up and the trace's
 * writing at exit are not counted. Without DBFILE: by rowid on a 10,000-row
 * in-memory table (~0.4 us a query); with DBFILE: through a secondary
 * index on a 200,000-row table in that file (created if missing, then
 * read whole into SQLite's page cache), in random order, each in
 * autocommit (SQLite takes and drops its file lock and checks the file
 * for changes per query); with "txn" too, the same loop inside one read
 * transaction (BEGIN ... COMMIT around it, not timed), so each select
 * is the lookup alone (0.9 to 1.2 us on the 2-core machines here, where
 * python3's sqlite3 module takes 2 to 2.6 us for the same select:
 * tests/bench/sqlite_points.py).
 *
 *   sqlite_bench QUERIES [DBFILE [txn]]  prints "queries=N ns_per_query=X
 *   cpu_ns_per_query=Y": X of wall time, Y of this thread's CPU time (which
 *   a loaded machine's other processes move less; kprof's writer thread
 *   is not in it)
 *
 *   sqlite_bench QUERIES DBFILE txn ab  the same loop in blocks of 1,000
 *   queries that alternate between calling sqlite3_step and sqlite3_reset
 *   as the program does (through kprof's hook when it is preloaded) and
 *   calling libsqlite3's own definitions (dlsym on its handle: never
 *   hooked); prints "pairs=P hook_ns=H direct_ns=D added_ns=A added_cpu_ns=C":
 *   medians over the pairs of blocks of ns per query, A and C the median of
 *   each pair's difference (wall, this thread's CPU). Blocks a few ms apart
 *   share the machine's state, so the difference is the hook's cost with
 *   little of the noise that separate runs have; without kprof it is ~0.
 */
#include <dlfcn.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "abpairs.h"

struct ab_ctx {
	sqlite3_stmt *s;
	int (*step)(sqlite3_stmt *), (*reset)(sqlite3_stmt *);
	long i, rows, found;
};

static void ab_block(void *arg, int direct, long n)
{
	struct ab_ctx *x = arg;
	for (long j = 0; j < n; j++, x->i++) {
		sqlite3_bind_int64(x->s, 1, (x->i * 7919) % x->rows);
		if (direct) {
			x->found += x->step(x->s) == SQLITE_ROW;
			x->step(x->s);
			x->reset(x->s);
		} else {
			x->found += sqlite3_step(x->s) == SQLITE_ROW;
			sqlite3_step(x->s);
			sqlite3_reset(x->s);
		}
	}
}

/* QUERIES lookups in blocks of 1,000 alternating hooked/direct calls. */
static int ab(sqlite3_stmt *s, long n, long rows)
{
	void *h = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_NOLOAD);
	struct ab_ctx x = { s, NULL, NULL, 0, rows, 0 };
	if (h) {
		x.step = (int (*)(sqlite3_stmt *))dlsym(h, "sqlite3_step");
		x.reset = (int (*)(sqlite3_stmt *))dlsym(h, "sqlite3_reset");
	}
	if (!x.step || !x.reset || ab_pairs(ab_block, &x, n / 2000, 1000))
		return 1;
	return x.found == x.i ? 0 : 1;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200000;
	sqlite3 *db;
	sqlite3_stmt *s;
	const char *file = argc > 2 ? argv[2] : NULL;
	int txn = file && argc > 3 && strcmp(argv[3], "txn") == 0;
	long rows = file ? 200000 : 10000;
	char sql[512];
	if (sqlite3_open(file ? file : ":memory:", &db) != SQLITE_OK)
		return 1;
	snprintf(sql, sizeof(sql),
		 "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, k INT, "
		 "v TEXT); CREATE INDEX IF NOT EXISTS t_k ON t(k);"
		 "INSERT INTO t SELECT * FROM (WITH RECURSIVE c(i) AS (SELECT 1 "
		 "UNION ALL SELECT i + 1 FROM c WHERE i < %ld) SELECT i, "
		 "(i * 7919) %% %ld, 'value-' || i FROM c) "
		 "WHERE (SELECT count(*) FROM t) = 0;", rows, rows);
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return 1;
	/* all of it in SQLite's page cache: CPU-bound lookups, no reads */
	sqlite3_exec(db, "PRAGMA cache_size = -131072; SELECT sum(length(v)) "
		     "FROM t; SELECT count(*) FROM t WHERE k >= 0;", NULL, NULL,
		     NULL);
	sqlite3_prepare_v2(db, file ? "SELECT v FROM t WHERE k = ?" :
			   "SELECT v FROM t WHERE id = ?", -1, &s, NULL);
	long found = 0;
	if (txn && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return 1;
	if (txn && argc > 4 && strcmp(argv[4], "ab") == 0) {
		int rc = ab(s, n, rows);
		sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
		sqlite3_finalize(s);
		sqlite3_close(db);
		return rc;
	}
	double t0 = ab_now(CLOCK_MONOTONIC);
	double c0 = ab_now(CLOCK_THREAD_CPUTIME_ID);
	for (long i = 0; i < n; i++) {
		/* k = (i * 7919) % rows is a permutation: every k once */
		sqlite3_bind_int64(s, 1, file ? (i * 7919) % rows : 1 + i % rows);
		if (sqlite3_step(s) == SQLITE_ROW)
			found++;
		sqlite3_step(s); /* DONE */
		sqlite3_reset(s);
	}
	double t1 = ab_now(CLOCK_MONOTONIC);
	double c1 = ab_now(CLOCK_THREAD_CPUTIME_ID);
	if (txn && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
		return 1;
	sqlite3_finalize(s);
	sqlite3_close(db);
	if (found != n)
		return 1;
	printf("queries=%ld ns_per_query=%.1f cpu_ns_per_query=%.1f\n", n,
	       (t1 - t0) / (double)n, (c1 - c0) / (double)n);
	return 0;
}
