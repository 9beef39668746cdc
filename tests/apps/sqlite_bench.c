/*
 * The query hook's cost (tests/bench/bench.py): a loop of indexed point
 * selects on an in-memory SQLite table, one prepared statement (bind,
 * step to the row, step to DONE, reset), timed inside the program so the
 * start-up and the trace's writing at exit are not counted.
 *
 *   sqlite_bench QUERIES     prints "queries=N ns_per_query=X"
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200000;
	sqlite3 *db;
	sqlite3_stmt *s;
	if (sqlite3_open(":memory:", &db) != SQLITE_OK)
		return 1;
	sqlite3_exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
		     "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
		     "FROM c WHERE i < 10000) INSERT INTO t SELECT i, 'value-' "
		     "|| i FROM c;", NULL, NULL, NULL);
	sqlite3_prepare_v2(db, "SELECT v FROM t WHERE id = ?", -1, &s, NULL);
	long found = 0;
	double t0 = now();
	for (long i = 0; i < n; i++) {
		sqlite3_bind_int64(s, 1, 1 + i % 10000);
		if (sqlite3_step(s) == SQLITE_ROW)
			found++;
		sqlite3_step(s); /* DONE */
		sqlite3_reset(s);
	}
	double t1 = now();
	sqlite3_finalize(s);
	sqlite3_close(db);
	if (found != n)
		return 1;
	printf("queries=%ld ns_per_query=%.1f\n", n, (t1 - t0) / (double)n);
	return 0;
}
