/*
 * A C program on libsqlite3 with a known list of statements, for the query
 * hook (tests/integ/test_query_sqlite.py; tests/integ/sqlite_app.py is
 * the same list through python3's sqlite3 module):
 *
 *   exec   CREATE TABLE users ...; CREATE TABLE orders ...   (2 statements)
 *   20 x   INSERT INTO users(name, city) VALUES (?, ?)     autocommit: a
 *                                                           write storm
 *   exec   BEGIN
 *   20 x   INSERT INTO users(name, city) VALUES (?, ?)     in a transaction
 *   40 x   INSERT INTO orders(user_id, amount) VALUES (?, ?)
 *   exec   COMMIT
 *   1 x    SELECT id FROM users                            40 rows
 *   40 x   SELECT amount FROM orders WHERE user_id = ?     N+1, full scans
 *   2 x    SELECT name FROM users WHERE id = 7             a duplicate
 *   1 x    SELECT count(*) FROM users WHERE city = 'paris_zq9'  full scan
 *
 *   sqlite_app DBFILE
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>

static sqlite3 *db;

static void die(const char *what)
{
	fprintf(stderr, "sqlite_app: %s: %s\n", what, sqlite3_errmsg(db));
	exit(1);
}

static sqlite3_stmt *prep(const char *sql)
{
	sqlite3_stmt *s;
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK)
		die(sql);
	return s;
}

static void exec(const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
		die(err ? err : sql);
}

static void insert_users(sqlite3_stmt *ins, int from, int n)
{
	char name[32];
	for (int i = from; i < from + n; i++) {
		snprintf(name, sizeof(name), "bound_secret_%d", i);
		sqlite3_bind_text(ins, 1, name, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(ins, 2, i % 2 ? "paris_zq9" : "rome", -1,
				  SQLITE_STATIC);
		if (sqlite3_step(ins) != SQLITE_DONE)
			die("insert");
		sqlite3_reset(ins);
	}
}

static long rows(sqlite3_stmt *s)
{
	long n = 0;
	int rc;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		n++;
	if (rc != SQLITE_DONE)
		die("step");
	return n;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: sqlite_app DBFILE\n");
		return 2;
	}
	if (sqlite3_open(argv[1], &db) != SQLITE_OK)
		die("open");
	exec("CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, city TEXT);"
	     " CREATE TABLE orders(id INTEGER PRIMARY KEY, user_id INT,"
	     " amount INT);");
	sqlite3_stmt *ins = prep("INSERT INTO users(name, city) VALUES (?, ?)");
	/* a NULL statement is SQLite's misuse, under kprof too (no query) */
	if (sqlite3_step(NULL) != SQLITE_MISUSE || sqlite3_reset(NULL) != SQLITE_OK)
		die("step or reset of NULL");
	insert_users(ins, 1, 20); /* autocommit: one commit each */
	exec("BEGIN");
	insert_users(ins, 21, 20);
	sqlite3_finalize(ins);
	ins = prep("INSERT INTO orders(user_id, amount) VALUES (?, ?)");
	for (int i = 1; i <= 40; i++) {
		sqlite3_bind_int(ins, 1, i);
		sqlite3_bind_int(ins, 2, 100 + i);
		if (sqlite3_step(ins) != SQLITE_DONE)
			die("insert orders");
		sqlite3_reset(ins);
	}
	sqlite3_finalize(ins);
	exec("COMMIT");

	/* N+1: one query for the ids, then one per id */
	sqlite3_stmt *ids = prep("SELECT id FROM users");
	sqlite3_stmt *one = prep("SELECT amount FROM orders WHERE user_id = ?");
	long n = 0, total = 0;
	while (sqlite3_step(ids) == SQLITE_ROW) {
		n++;
		sqlite3_bind_int(one, 1, sqlite3_column_int(ids, 0));
		total += rows(one);
		sqlite3_reset(one);
	}
	sqlite3_finalize(ids);
	sqlite3_finalize(one);

	/* a duplicate: the same query with the same value, twice */
	for (int k = 0; k < 2; k++) {
		sqlite3_stmt *s = prep("SELECT name FROM users WHERE id = 7");
		rows(s);
		sqlite3_finalize(s);
	}
	sqlite3_stmt *s = prep("SELECT count(*) FROM users WHERE city = 'paris_zq9'");
	rows(s);
	sqlite3_finalize(s);
	sqlite3_close(db);
	printf("users=%ld order_rows=%ld\n", n, total);
	return 0;
}
