/*
 * Two processes on one SQLite database file, for the lock-wait share of
 * the slow-query split (tests/integ/test_query_sqlite_lock.py). The parent
 * makes the database, forks, opens its own connection with a busy timeout
 * and prepares
 *
 *   SELECT count(*) FROM t
 *
 * Then the child runs BEGIN EXCLUSIVE; INSERT ...; and, in mode "hold",
 * says so while it holds the lock, sleeps HOLD_MS and commits; in mode
 * "free" it commits first and says so then. The parent steps its SELECT
 * once it has heard from the child: in "hold" mode SQLite finds the
 * database locked and its default busy handler sleeps and retries until
 * the child commits (about HOLD_MS); in "free" mode nothing waits.
 *
 *   sqlite_lock DBFILE hold|free HOLD_MS     prints "count=N"
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(sqlite3 *db, const char *what)
{
	fprintf(stderr, "sqlite_lock: %s: %s\n", what,
		db ? sqlite3_errmsg(db) : "failed");
	exit(1);
}

static void exec(sqlite3 *db, const char *sql)
{
	if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
		die(db, sql);
}

static void child(const char *path, int go, int said, int hold, long ms)
{
	sqlite3 *db;
	char c;
	if (read(go, &c, 1) != 1)
		_exit(1);
	if (sqlite3_open(path, &db) != SQLITE_OK)
		die(db, "child open");
	exec(db, "BEGIN EXCLUSIVE");
	exec(db, "INSERT INTO t(v) VALUES (42)");
	if (hold) {
		if (write(said, "h", 1) != 1)
			_exit(1);
		struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
		nanosleep(&ts, NULL);
	}
	exec(db, "COMMIT");
	if (!hold && write(said, "f", 1) != 1)
		_exit(1);
	sqlite3_close(db);
	exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 4 || (strcmp(argv[2], "hold") && strcmp(argv[2], "free"))) {
		fprintf(stderr, "usage: sqlite_lock DBFILE hold|free HOLD_MS\n");
		return 2;
	}
	const char *path = argv[1];
	int hold = !strcmp(argv[2], "hold");
	long ms = atol(argv[3]);
	sqlite3 *db;
	if (sqlite3_open(path, &db) != SQLITE_OK)
		die(db, "open");
	exec(db, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INT);"
		 " INSERT INTO t(v) VALUES (1), (2), (3)");
	sqlite3_close(db); /* no connection is carried over the fork */

	int go[2], said[2];
	if (pipe(go) || pipe(said))
		die(NULL, "pipe");
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		die(NULL, "fork");
	if (pid == 0) {
		close(go[1]);
		close(said[0]);
		child(path, go[0], said[1], hold, ms);
	}
	close(go[0]);
	close(said[1]);

	if (sqlite3_open(path, &db) != SQLITE_OK)
		die(db, "open");
	sqlite3_busy_timeout(db, 60000);
	sqlite3_stmt *s;
	/* prepared now: the schema is read before the child locks */
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &s, NULL) !=
	    SQLITE_OK)
		die(db, "prepare");
	char c;
	if (write(go[1], "g", 1) != 1 || read(said[0], &c, 1) != 1)
		die(NULL, "pipe");
	if (sqlite3_step(s) != SQLITE_ROW)
		die(db, "step");
	int n = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	int st;
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		die(NULL, "child");
	printf("count=%d\n", n);
	return 0;
}
