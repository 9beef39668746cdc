/*
 * A plugin with SQLite of its own: built twice (Makefile), against
 * libsqlcipher.so.0 (SQLCipher, SQLite 3.15 renamed) and against
 * libsqlite3.so.0, each loaded by tests/apps/sqlite_local.c with
 * RTLD_LOCAL, so its SQLite is in no scope but its own. plug_run opens a
 * database in memory, inserts n rows one prepared INSERT at a time,
 * counts them, and says which SQLite did it. plug_extra leaks n blocks
 * of 333 bytes and writes 4 KiB to a file with one fsync: the allocations
 * and I/O of the plugin's own code (tests/integ/test_deepbind.py).
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *plug_kept[64];

int plug_extra(int n, const char *path)
{
	static char buf[4096];
	for (int i = 0; i < n && i < 64; i++)
		plug_kept[i] = malloc(333); /* leaked */
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	memset(buf, 'x', sizeof(buf));
	int ok = write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf) &&
		 fsync(fd) == 0;
	return close(fd) == 0 && ok ? 0 : -1;
}

int plug_run(const char *tag, int n, char *out, size_t cap)
{
	sqlite3 *db;
	sqlite3_stmt *ins, *cnt;
	int rows = -1;
	if (sqlite3_open(":memory:", &db) != SQLITE_OK)
		return -1;
	if (sqlite3_exec(db, "CREATE TABLE t(a INTEGER)", NULL, NULL, NULL) !=
		    SQLITE_OK ||
	    sqlite3_prepare_v2(db, "INSERT INTO t(a) VALUES (?)", -1, &ins,
			       NULL) != SQLITE_OK)
		goto out;
	for (int i = 0; i < n; i++) {
		sqlite3_bind_int(ins, 1, i);
		if (sqlite3_step(ins) != SQLITE_DONE)
			goto out;
		sqlite3_reset(ins);
	}
	sqlite3_finalize(ins);
	if (sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &cnt, NULL) !=
	    SQLITE_OK)
		goto out;
	if (sqlite3_step(cnt) == SQLITE_ROW)
		rows = sqlite3_column_int(cnt, 0);
	sqlite3_finalize(cnt);
out:
	snprintf(out, cap, "%s %s rows=%d", tag, sqlite3_libversion(), rows);
	sqlite3_close(db);
	return rows;
}
