/*
 * Threads on libsqlite3, each with its own connection (its own private
 * in-memory database, so no thread waits for a database lock and the
 * query hook's statement table is what they share), for
 * tests/integ/test_query_sqlite_mt.py. Each thread:
 *
 *   exec      CREATE TABLE t(id INTEGER PRIMARY KEY, v INT)   1
 *   prepared  INSERT INTO t(id, v) VALUES (?, ?)              ROWS runs
 *   prepared  SELECT v FROM t WHERE id = ?                    ROUNDS runs
 *   ROUNDS x  prepare, step, finalize SELECT count(*) FROM t WHERE v > ?
 *                                                             (statement churn)
 *   prepared  SELECT id FROM t ORDER BY id, stepped to its first row and
 *             left open: the main thread finalizes it after the join
 *             (a run ended by a finalize from another thread)   1 run, 1 row
 *
 * The main thread also resets and steps each thread's point select once
 * more before finalizing it (reset and step from another thread).
 *
 *   sqlite_mt THREADS ROUNDS     prints "ok SUM"
 */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

#define ROWS 50

struct job {
	int no, rounds;
	sqlite3 *db;
	sqlite3_stmt *sel, *open;
	long sum;
	int failed;
};

static int prep(struct job *j, const char *sql, sqlite3_stmt **s)
{
	if (sqlite3_prepare_v2(j->db, sql, -1, s, NULL) != SQLITE_OK) {
		fprintf(stderr, "sqlite_mt: %s: %s\n", sql, sqlite3_errmsg(j->db));
		j->failed = 1;
		return -1;
	}
	return 0;
}

static void *work(void *arg)
{
	struct job *j = arg;
	sqlite3_stmt *ins, *cnt;
	if (sqlite3_open(":memory:", &j->db) != SQLITE_OK ||
	    sqlite3_exec(j->db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INT)",
			 NULL, NULL, NULL) != SQLITE_OK) {
		j->failed = 1;
		return NULL;
	}
	if (prep(j, "INSERT INTO t(id, v) VALUES (?, ?)", &ins))
		return NULL;
	for (int i = 0; i < ROWS; i++) {
		sqlite3_bind_int(ins, 1, i);
		sqlite3_bind_int(ins, 2, i * j->no);
		if (sqlite3_step(ins) != SQLITE_DONE)
			j->failed = 1;
		sqlite3_reset(ins);
	}
	sqlite3_finalize(ins);
	if (prep(j, "SELECT v FROM t WHERE id = ?", &j->sel))
		return NULL;
	for (int r = 0; r < j->rounds; r++) {
		sqlite3_bind_int(j->sel, 1, r % ROWS);
		if (sqlite3_step(j->sel) == SQLITE_ROW)
			j->sum += sqlite3_column_int(j->sel, 0);
		if (sqlite3_step(j->sel) != SQLITE_DONE)
			j->failed = 1;
		sqlite3_reset(j->sel);
		/* churn: a statement born and finalized every round */
		if (prep(j, "SELECT count(*) FROM t WHERE v > ?", &cnt))
			return NULL;
		sqlite3_bind_int(cnt, 1, r);
		if (sqlite3_step(cnt) != SQLITE_ROW)
			j->failed = 1;
		sqlite3_finalize(cnt);
	}
	if (prep(j, "SELECT id FROM t ORDER BY id", &j->open))
		return NULL;
	if (sqlite3_step(j->open) != SQLITE_ROW)
		j->failed = 1;
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: sqlite_mt THREADS ROUNDS\n");
		return 2;
	}
	int n = atoi(argv[1]), rounds = atoi(argv[2]);
	if (n < 1 || n > 64 || rounds < 1)
		return 2;
	struct job jobs[64] = { 0 };
	pthread_t th[64];
	for (int i = 0; i < n; i++) {
		jobs[i].no = i + 1;
		jobs[i].rounds = rounds;
		if (pthread_create(&th[i], NULL, work, &jobs[i]))
			return 1;
	}
	long sum = 0;
	int failed = 0;
	for (int i = 0; i < n; i++) {
		pthread_join(th[i], NULL);
		struct job *j = &jobs[i];
		failed |= j->failed;
		if (j->failed)
			continue;
		/* from this thread: one more run of its point select, and the
		 * finalize of the statement it left in the middle of a run */
		sqlite3_reset(j->sel);
		sqlite3_bind_int(j->sel, 1, 0);
		while (sqlite3_step(j->sel) == SQLITE_ROW)
			;
		sqlite3_finalize(j->sel);
		sqlite3_finalize(j->open);
		sqlite3_close(j->db);
		sum += j->sum;
	}
	if (failed) {
		fprintf(stderr, "sqlite_mt: a thread failed\n");
		return 1;
	}
	printf("ok %ld\n", sum);
	return 0;
}
