/*
 * The example query plugin (KOTOBA_PROFILE_QUERY_PLUGIN): teaches kprof
 * the "minidb" client library (libkpminidb.c). kprof calls
 * kprof_query_plugin_init at start-up; the plugin redirects the app's
 * calls of minidb_query to its wrapper with host->hook and reports each
 * call as a query with host->query_begin / query_end.
 *
 *   cc -shared -fPIC -I/path/to/kprof/include kpq_minidb_plugin.c -o minidb.so
 *   KOTOBA_PROFILE_QUERY_PLUGIN=$PWD/minidb.so LD_PRELOAD=libkprof.so ./app
 */
#include <string.h>

#include "kprof.h"

struct minidb;
typedef int (*query_fn)(struct minidb *, const char *, char **);

static const struct kprof_plugin_host *host;
static query_fn real_query;

static int wrap_query(struct minidb *db, const char *sql, char **result)
{
	uint64_t ctx = host->query_begin(sql, strlen(sql), (uintptr_t)db);
	int rows = real_query(db, sql, result);
	host->query_end(ctx, rows, rows < 0 ? rows : 0);
	return rows;
}

static const struct kprof_query_plugin plugin = {
	.abi_version = KPROF_PLUGIN_ABI_VERSION,
	.size = sizeof(struct kprof_query_plugin),
	.name = "minidb",
};

const struct kprof_query_plugin *kprof_query_plugin_init(
	const struct kprof_plugin_host *h);

const struct kprof_query_plugin *kprof_query_plugin_init(
	const struct kprof_plugin_host *h)
{
	if (h->abi_version != KPROF_PLUGIN_ABI_VERSION ||
	    h->size < sizeof(struct kprof_plugin_host))
		return NULL;
	host = h;
	if (h->hook("minidb_query", (void *)wrap_query,
		    (void **)&real_query) <= 0) {
		h->log("minidb: minidb_query not found; nothing to record");
		return NULL;
	}
	return &plugin;
}
