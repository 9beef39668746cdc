/*
 * Statements whose runs differ in every value a QUERY carries, for the
 * query hook's record of them (tests/integ/test_query_sqlite.py, "every
 * run as SQLite counts it"): rows from none to 70,000, SQLite's four
 * statement counters from 0 to past 65,535, a sort, an automatic index,
 * a failing run, runs in and out of a transaction. After each run the
 * program prints what SQLite itself reports of it, one line a run:
 *
 *   ROWS STATUS AUTOCOMMIT FULLSCAN SORT AUTOINDEX VMSTEP
 *
 * (the four counters read with sqlite3_stmt_status and reset). Under
 * kprof the hook has read and reset them at the run's end, so the
 * counters print 0 there: a run without kprof gives the values a trace
 * must hold.
 *
 *   sqlite_counters
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

static sqlite3 *db;

static void die(const char *what)
{
	fprintf(stderr, "sqlite_counters: %s: %s\n", what, sqlite3_errmsg(db));
	exit(1);
}

/* Run s to its end once; print its line. */
static void run(sqlite3_stmt *s)
{
	int autocommit = sqlite3_get_autocommit(db) != 0;
	long rows = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		rows++;
	if (!sqlite3_stmt_readonly(s))
		rows += sqlite3_changes(db);
	printf("%ld %d %d %d %d %d %d\n", rows, rc == SQLITE_DONE ? 0 : rc,
	       autocommit,
	       sqlite3_stmt_status(s, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1),
	       sqlite3_stmt_status(s, SQLITE_STMTSTATUS_SORT, 1),
	       sqlite3_stmt_status(s, SQLITE_STMTSTATUS_AUTOINDEX, 1),
	       sqlite3_stmt_status(s, SQLITE_STMTSTATUS_VM_STEP, 1));
	sqlite3_reset(s);
}

/* Prepare sql, run it n times, finalize it. */
static void runs(const char *sql, int n)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		die(sql);
	for (int i = 0; i < n; i++)
		run(s);
	sqlite3_finalize(s);
}

int main(void)
{
	if (sqlite3_open(":memory:", &db) != SQLITE_OK)
		die("open");
	runs("CREATE TABLE t(a INTEGER, b INTEGER)", 1);
	runs("CREATE TABLE u(a INTEGER, b INTEGER UNIQUE)", 1);
	/* 70,000 rows changed, more than 65,535 VM steps */
	runs("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
	     "WHERE x < 70000) INSERT INTO t SELECT x, x % 97 FROM c", 1);
	runs("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
	     "WHERE x < 300) INSERT INTO u SELECT x % 50, x FROM c", 1);
	runs("BEGIN", 1);
	/* a full scan of 70,000 rows: past 65,535 steps */
	runs("SELECT a FROM t WHERE b = 5", 3);
	/* small ones: a sort, an index search, none at all */
	runs("SELECT a FROM u WHERE a < 10 ORDER BY a DESC", 5);
	runs("SELECT a FROM u WHERE b = 7", 5);
	runs("SELECT 1", 5);
	runs("COMMIT", 1);
	/* an automatic index: u joined with itself on an unindexed column */
	runs("SELECT count(*) FROM u AS x JOIN u AS y ON x.a = y.a", 4);
	/* a failing run: b is UNIQUE */
	runs("INSERT INTO u(a, b) VALUES (1, 7)", 2);
	runs("SELECT a, b FROM t", 2); /* 70,000 rows returned */
	sqlite3_close(db);
	return 0;
}
