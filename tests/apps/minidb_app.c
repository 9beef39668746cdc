/*
 * An app on the "minidb" client library (tests/apps/plugins/libkpminidb.c),
 * linked with -z now -z relro (its GOT is read-only when the plugin hooks),
 * for the example query plugin, and a user of kprof.h's query API
 * (tests/integ/test_query_plugin.py):
 *
 *   6 x minidb_query   SELECT a, b FROM t WHERE id = <i>     N+1, 2 rows each
 *   1 x minidb_query   UPDATE t SET a = 'secret_plugin_zq'   1 row
 *   1 x kprof_query_begin/end  SELECT k FROM kv WHERE k = 4242  (the API),
 *       begun in start_lookup() and ended in main(): its call site is
 *       start_lookup's
 */
#include <stdio.h>
#include <stdlib.h>

#include "kprof.h"

struct minidb;
struct minidb *minidb_open(void);
int minidb_query(struct minidb *db, const char *sql, char **result);
void minidb_close(struct minidb *db);

static __attribute__((noinline)) uint64_t start_lookup(void)
{
	return kprof_query_begin_if_loaded("SELECT k FROM kv WHERE k = 4242");
}

int main(void)
{
	struct minidb *db = minidb_open();
	char sql[128], *res;
	int rows = 0;
	for (int i = 1; i <= 6; i++) {
		snprintf(sql, sizeof(sql), "SELECT a, b FROM t WHERE id = %d", i);
		rows += minidb_query(db, sql, &res);
		free(res);
	}
	rows += minidb_query(db, "UPDATE t SET a = 'secret_plugin_zq'", &res);
	free(res);
	minidb_close(db);
	uint64_t q = start_lookup();
	kprof_query_end_if_loaded(q, 3, 0);
	printf("rows=%d loaded=%d api_ctx=%d\n", rows, kprof_loaded(), q != 0);
	return 0;
}
