/* SPDX-License-Identifier: MIT */
/*
 * kprof.h — the public API of libkprof.so, the one installed header.
 *
 * An app may call these whether or not it runs under kprof: they are
 * declared weak, so when libkprof.so is not preloaded the symbols are NULL
 * and the kprof_*_if_loaded() wrappers below do nothing. Link nothing.
 * Strings passed in are copied; none is kept after the call returns.
 */
#ifndef KPROF_H
#define KPROF_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KPROF_API_VERSION 1

/* "0.1.0": the version of the loaded libkprof.so. */
extern const char *kprof_version(void) __attribute__((weak));

/* Write every event recorded so far to the trace now (normally the
 * writer does this every KOTOBA_PROFILE_FLUSH_MS). @return 0, or -1 when
 * not recording. */
extern int kprof_flush(void) __attribute__((weak));

/*
 * Spans: a named stretch of a thread's work (a request, a job, a phase).
 * Events of the thread between begin and end belong to the span; spans
 * nest. @return the span's id (never 0 when recording), 0 when not
 * recording. kprof_span_end(0) does nothing.
 */
extern uint64_t kprof_span_begin(const char *name) __attribute__((weak));
extern void kprof_span_end(uint64_t id) __attribute__((weak));

/* Custom events, on the same clock as everything else. */
enum kprof_event_kind {
	KPROF_COUNTER = 0,  /* value is added to the named counter */
	KPROF_GAUGE = 1,    /* value is the named gauge's new level */
	KPROF_DURATION = 2, /* value is a duration in ns (ended now) */
};
extern void kprof_record_event(const char *name, int kind, int64_t value)
	__attribute__((weak));

/*
 * Queries: a database call of the app's own client code (the SQLite and
 * libpq hooks record theirs without help). text is the statement; kprof
 * fingerprints it at once (literals become ?, see kprof(7)) unless
 * KOTOBA_PROFILE_QUERY_TEXT=full, and keeps nothing of the string. The
 * thread's allocations and I/O until the end belong to the query.
 * @return a context for kprof_query_end (never 0 when recording), 0 when
 * not recording. kprof_query_end(0, ...) does nothing; rows = rows
 * returned or changed, status 0 = success, else your error code.
 */
extern uint64_t kprof_query_begin(const char *text) __attribute__((weak));
extern void kprof_query_end(uint64_t ctx, int64_t rows, int64_t status)
	__attribute__((weak));

/*
 * Query plugins (KOTOBA_PROFILE_QUERY_PLUGIN=/path/plugin.so): a shared
 * object that teaches kprof a client library it does not know. At
 * start-up kprof dlopen()s it and calls its
 *
 *     const struct kprof_query_plugin *kprof_query_plugin_init(
 *             const struct kprof_plugin_host *host);
 *
 * The plugin keeps host, installs its hooks with host->hook() (which
 * redirects every loaded module's calls of a function to the plugin's
 * wrapper and gives back the real function) and, in its wrappers,
 * reports each query with host->query_begin / query_end. It returns its
 * description, or NULL to decline (nothing is recorded from it then).
 * Versioning: abi_version is KPROF_PLUGIN_ABI_VERSION; structs only grow,
 * size says how much of one the other side knows.
 */
#define KPROF_PLUGIN_ABI_VERSION 1

struct kprof_plugin_host {
	uint32_t abi_version;   /* KPROF_PLUGIN_ABI_VERSION of libkprof.so */
	uint32_t size;          /* sizeof(struct kprof_plugin_host) there */
	/* a query starts on this thread: text is fingerprinted at once;
	 * conn identifies the connection (any value, 0 = unknown);
	 * @return the ctx for query_end, 0 when not recording */
	uint64_t (*query_begin)(const char *text, size_t len, uint64_t conn);
	/* it ended: rows returned or changed, status 0 = success */
	void (*query_end)(uint64_t ctx, int64_t rows, int64_t status);
	/* redirect calls of symbol (in every module loaded now, but the
	 * plugin and libkprof.so) to replacement; *real gets the function
	 * they called. @return the number of call sites redirected, -1 on
	 * error (unsupported platform, symbol not found) */
	int (*hook)(const char *symbol, void *replacement, void **real);
	/* one line on stderr, prefixed "kprof: plugin: " */
	void (*log)(const char *msg);
};

struct kprof_query_plugin {
	uint32_t abi_version;   /* KPROF_PLUGIN_ABI_VERSION it was built for */
	uint32_t size;          /* sizeof(struct kprof_query_plugin) */
	const char *name;       /* for messages and the trace ("mydb") */
	/* called at exit (may be NULL) */
	void (*fini)(void);
};

typedef const struct kprof_query_plugin *(*kprof_query_plugin_init_fn)(
	const struct kprof_plugin_host *host);

static inline int kprof_loaded(void)
{
	return kprof_version != NULL;
}

static inline int kprof_flush_if_loaded(void)
{
	return kprof_flush ? kprof_flush() : -1;
}

static inline uint64_t kprof_span_begin_if_loaded(const char *name)
{
	return kprof_span_begin ? kprof_span_begin(name) : 0;
}

static inline void kprof_span_end_if_loaded(uint64_t id)
{
	if (kprof_span_end)
		kprof_span_end(id);
}

static inline void kprof_record_event_if_loaded(const char *name, int kind,
						int64_t value)
{
	if (kprof_record_event)
		kprof_record_event(name, kind, value);
}

static inline uint64_t kprof_query_begin_if_loaded(const char *text)
{
	return kprof_query_begin ? kprof_query_begin(text) : 0;
}

static inline void kprof_query_end_if_loaded(uint64_t ctx, int64_t rows,
					     int64_t status)
{
	if (kprof_query_end)
		kprof_query_end(ctx, rows, status);
}

#ifdef __cplusplus
}
#endif

#endif
