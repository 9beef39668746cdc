/*
 * "minidb": a stand-in for a database client library kprof knows nothing
 * about, for the example query plugin (kpq_minidb_plugin.c) and
 * tests/apps/minidb_app.c. A query returns one row per comma in its text
 * plus one, and allocates a result buffer the caller frees.
 */
#include <stdlib.h>
#include <string.h>

struct minidb {
	int queries;
};

struct minidb *minidb_open(void);
int minidb_query(struct minidb *db, const char *sql, char **result);
void minidb_close(struct minidb *db);

struct minidb *minidb_open(void)
{
	return calloc(1, sizeof(struct minidb));
}

int minidb_query(struct minidb *db, const char *sql, char **result)
{
	int rows = 1;
	for (const char *p = sql; *p; p++)
		rows += *p == ',';
	*result = malloc(64 * (size_t)rows);
	if (*result)
		memset(*result, 'r', 64 * (size_t)rows);
	db->queries++;
	return rows;
}

void minidb_close(struct minidb *db)
{
	free(db);
}
