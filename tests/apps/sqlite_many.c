/*
 * More live SQLite statements than the query hook has slots for
 * (tests/integ/test_query_sqlite.py): N statements prepared and kept,
 * then each run once (even ones: to SQLITE_DONE; odd ones: one row, then
 * reset), the odd ones run again to SQLITE_DONE, and all finalized, the
 * last one after a row (a run cut by finalize). Runs: N + N / 2 + 1.
 * The hook records the runs of the statements it has slots for and
 * counts the others as lost QUERY events.
 *
 *   sqlite_many N     prints "runs R"
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 10000, runs = 0;
	sqlite3 *db;
	sqlite3_stmt **s = calloc((size_t)n, sizeof(*s));
	if (!s || sqlite3_open(":memory:", &db) != SQLITE_OK)
		return 1;
	for (long i = 0; i < n; i++) {
		char sql[64];
		snprintf(sql, sizeof(sql), "SELECT %ld", i);
		if (sqlite3_prepare_v2(db, sql, -1, &s[i], NULL) != SQLITE_OK)
			return 1;
	}
	for (long i = 0; i < n; i++, runs++) {
		if (sqlite3_step(s[i]) != SQLITE_ROW)
			return 1;
		if (i % 2 == 0 && sqlite3_step(s[i]) != SQLITE_DONE)
			return 1;
		if (i % 2)
			sqlite3_reset(s[i]);
	}
	for (long i = 1; i < n; i += 2, runs++)
		if (sqlite3_step(s[i]) != SQLITE_ROW ||
		    sqlite3_step(s[i]) != SQLITE_DONE)
			return 1;
	sqlite3_reset(s[n - 1]);
	if (sqlite3_step(s[n - 1]) != SQLITE_ROW) /* cut by its finalize */
		return 1;
	runs++;
	for (long i = 0; i < n; i++)
		sqlite3_finalize(s[i]);
	sqlite3_close(db);
	free(s);
	printf("runs %ld\n", runs);
	return 0;
}
