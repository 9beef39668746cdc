/*
 * sqlite3_exec of four statements (tests/integ/test_query_sqlite.py)
 * through tests/apps/sqlplug/sqlexec.c, which, as Firefox's SQLite
 * does, prepares them unseen and steps them through the global
 * sqlite3_step; then one prepared statement run twice the usual way.
 * Prints "ok rows=R" (R: the rows exec's SELECT gave its callback).
 */
#include <sqlite3.h>
#include <stdio.h>

static int rows(void *arg, int n, char **v, char **names)
{
	(void)n;
	(void)v;
	(void)names;
	++*(int *)arg;
	return 0;
}

int main(void)
{
	sqlite3 *db;
	if (sqlite3_open(":memory:", &db) != SQLITE_OK)
		return 1;
	int got = 0;
	char *err = NULL;
	if (sqlite3_exec(db,
			 "CREATE TABLE t(x); INSERT INTO t VALUES (1); "
			 "INSERT INTO t VALUES (2); SELECT x FROM t",
			 rows, &got, &err) != SQLITE_OK) {
		fprintf(stderr, "exec: %s\n", err ? err : "?");
		return 1;
	}
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t WHERE x > ?", -1,
			       &s, NULL) != SQLITE_OK)
		return 1;
	for (int i = 0; i < 2; i++) {
		sqlite3_bind_int(s, 1, i);
		while (sqlite3_step(s) == SQLITE_ROW)
			;
		sqlite3_reset(s);
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	printf("ok rows=%d\n", got);
	return 0;
}
