/*
 * sqlite3_exec as a SQLite build whose internal calls bind within the
 * library has it (tests/apps/sqlite_exec.c, tests/integ/test_query_sqlite.py):
 * Firefox's libmozsqlite3 prepares exec's statements without a call
 * through its PLT, then steps each through it (sqlite3_step@plt), where
 * an interposer sees a statement it never saw prepared. Linked before
 * libsqlite3, this definition is the one the app's calls (and kprof's,
 * through RTLD_NEXT) reach: it prepares and finalizes with libsqlite3's
 * own definitions (dlsym on its handle, which no interposer is in) and
 * steps with the global sqlite3_step, as SQLite's legacy.c does, rows
 * to the callback.
 */
#include <dlfcn.h>
#include <sqlite3.h>
#include <stdlib.h>

int sqlite3_exec(sqlite3 *db, const char *sql,
		 int (*cb)(void *, int, char **, char **), void *arg,
		 char **err)
{
	static int (*prepare)(sqlite3 *, const char *, int, sqlite3_stmt **,
			      const char **);
	static int (*finalize)(sqlite3_stmt *);
	if (!prepare) {
		void *h = dlopen("libsqlite3.so.0", RTLD_NOW | RTLD_NOLOAD);
		if (!h)
			return SQLITE_ERROR;
		*(void **)&prepare = dlsym(h, "sqlite3_prepare_v2");
		*(void **)&finalize = dlsym(h, "sqlite3_finalize");
		if (!prepare || !finalize)
			return SQLITE_ERROR;
	}
	if (err)
		*err = NULL;
	int rc = SQLITE_OK;
	while (rc == SQLITE_OK && sql && *sql) {
		sqlite3_stmt *st = NULL;
		const char *tail = NULL;
		rc = prepare(db, sql, -1, &st, &tail);
		if (rc != SQLITE_OK || !st) {
			sql = tail;
			continue;
		}
		int n = sqlite3_column_count(st);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			char *vals[16];
			for (int i = 0; i < n && i < 16; i++)
				vals[i] = (char *)sqlite3_column_text(st, i);
			if (cb && cb(arg, n < 16 ? n : 16, vals, NULL)) {
				rc = SQLITE_ABORT;
				break;
			}
		}
		int frc = finalize(st);
		rc = rc == SQLITE_DONE ? frc : rc;
		sql = tail;
	}
	if (rc != SQLITE_OK && err)
		*err = sqlite3_mprintf("%s", sqlite3_errmsg(db));
	return rc;
}
