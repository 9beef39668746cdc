/* SPDX-License-Identifier: MIT */
/*
 * Queries: the pieces every query hook shares (QUERY_BEGIN / QUERY
 * records, fingerprinting at record time, the hook list) and the public
 * kprof_query_begin/end API of kprof.h.
 *
 * A query is two records on its thread: QUERY_BEGIN(ctx) when it starts
 * and QUERY(ctx, ...) when it ends; the thread's allocations and I/O
 * between the two belong to it (the analyzer's attribution). The text is
 * fingerprinted here (lib/fingerprint.h) before it reaches the ring, so
 * literal values from the app never reach the trace unless
 * KOTOBA_PROFILE_QUERY_TEXT=full asks for them.
 */
#include "state.h"
#include "fingerprint.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

/* kprof.h declares these weak for the app's sake; here they are strong. */
uint64_t kprof_query_begin(const char *text);
void kprof_query_end(uint64_t ctx, int64_t rows, int64_t status);

static _Atomic uint64_t query_seq;

unsigned kp_query_hooks_parse(const char *s)
{
	unsigned h = 0;
	if (!s || !*s || strcmp(s, "all") == 0)
		return KP_QHOOK_SQLITE | KP_QHOOK_LIBPQ;
	if (strcmp(s, "none") == 0)
		return 0;
	const char *p = s;
	while (*p) {
		size_t n = strcspn(p, ",");
		if (n == 6 && strncmp(p, "sqlite", 6) == 0)
			h |= KP_QHOOK_SQLITE;
		else if (n == 5 && strncmp(p, "libpq", 5) == 0)
			h |= KP_QHOOK_LIBPQ;
		else {
			kp_warn("KOTOBA_PROFILE_QUERY_HOOKS='%s' is not all, "
				"none or a list of sqlite,libpq; using the "
				"default all", s);
			return KP_QHOOK_SQLITE | KP_QHOOK_LIBPQ;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return h;
}

const char *kp_query_hooks_name(unsigned hooks)
{
	switch (hooks & (KP_QHOOK_SQLITE | KP_QHOOK_LIBPQ)) {
	case KP_QHOOK_SQLITE | KP_QHOOK_LIBPQ:
		return "all";
	case KP_QHOOK_SQLITE:
		return "sqlite";
	case KP_QHOOK_LIBPQ:
		return "libpq";
	default:
		return "none";
	}
}

/*
 * QUERY_BEGIN records are deferred: one is written only when the thread
 * records something else before the query ends (an allocation, an I/O
 * call, a nested query's end: kp_ring_push*() call kp_query_flush()
 * first), since only then does the analyzer need it to attribute that
 * event. A query during which nothing else happened costs one record, not
 * two. The deferred record keeps its own time, and as nothing of the
 * thread came between, the thread's records stay in time order.
 */
__thread struct kp_qtls kp_qt;

static void push_begin(uint64_t ctx, uint64_t tsc)
{
	int64_t v[KP_QB_NV] = { [KP_QB_CTX] = (int64_t)ctx };
	/* one slot, straight into the ring when it has room (kp_query_flush
	 * has emptied the deferred list: nothing to write first) */
	kp_ring_push_vals(tsc, KP_REC_QUERY_BEGIN, 0, 0, v, KP_QB_NV);
}

void kp_query_flush(void)
{
	unsigned n = kp_qt.npending;
	kp_qt.npending = 0; /* first: the pushes below come back here */
	if (!kp_recording())
		return;
	for (unsigned i = 0; i < n; i++)
		push_begin(kp_qt.pending[i].ctx, kp_qt.pending[i].tsc);
}

/*
 * Query contexts are unique in the process: each thread takes them from
 * the counter in blocks of KP_Q_CTX_BLOCK, so opening a query costs no
 * locked instruction (one per KP_Q_CTX_BLOCK queries of a thread).
 */
/* (kp_qt.ctx_next, kp_qt.ctx_end) */

uint64_t kp_query_open_slow(uint64_t tsc)
{
	if (kp_qt.ctx_next == kp_qt.ctx_end) {
		kp_qt.ctx_next = atomic_fetch_add_explicit(&query_seq,
							  KP_Q_CTX_BLOCK,
							  memory_order_relaxed) +
				1;
		kp_qt.ctx_end = kp_qt.ctx_next + KP_Q_CTX_BLOCK;
	}
	uint64_t ctx = kp_qt.ctx_next++;
	if (kp_qt.npending < KP_Q_PENDING) {
		kp_qt.pending[kp_qt.npending].ctx = ctx;
		kp_qt.pending[kp_qt.npending].tsc = tsc;
		kp_qt.npending++;
	} else if (kp_recording()) {
		int saved = errno; /* a full ring may wait (nanosleep) */
		uint8_t busy = kp_tls.busy;
		kp_tls.busy = 1; /* the pushes are kprof's: its caller's
				  * need not set it (hook_sqlite.c) */
		kp_query_flush();
		push_begin(ctx, tsc);
		kp_busy_restore(busy);
		errno = saved;
	}
	return ctx;
}

int kp_query_drop_pending(uint64_t ctx)
{
	unsigned n = kp_qt.npending;
	for (unsigned i = n; i-- > 0;) {
		if (kp_qt.pending[i].ctx != ctx)
			continue;
		for (unsigned k = i + 1; k < n; k++)
			kp_qt.pending[k - 1] = kp_qt.pending[k];
		kp_qt.npending = (uint8_t)(n - 1);
		return 1;
	}
	return 0;
}

size_t kp_query_text(const char *text, size_t len, char *out, size_t cap,
		     uint64_t *valhash, int64_t *flags)
{
	struct kp_fp fp;
	if (!text)
		len = 0;
	/* the fingerprint first: its value hash is wanted either way */
	kp_fingerprint(text, len, out, cap, &fp);
	*valhash = fp.value_hash;
	if (kp.cfg.query_text_full) {
		size_t n = len < cap - 1 ? len : cap - 1;
		if (n < len)
			*flags |= KP_QF_CUT;
		memcpy(out, text, n); /* the text as given is what is stored */
		out[n] = '\0';
		*flags |= KP_QF_TEXT_FULL;
		return n;
	}
	if (fp.truncated)
		*flags |= KP_QF_CUT;
	return fp.len;
}

/* kp_query_close of a text without an id: fingerprinted unless fp,
 * interned (inline when the table is full), pushed. Out of line: the
 * interned path needs no buffer. */
static __attribute__((noinline)) void close_text(uint64_t now, uint8_t source,
						 uint32_t stack,
						 const char *text, size_t len,
						 int fp, int64_t *v)
{
	char buf[KP_MAX_STR_LEN + 1];
	if (!fp) {
		uint64_t vh;
		len = kp_query_text(text, len, buf, sizeof(buf), &vh,
				    &v[KP_Q_FLAGS]);
		text = buf;
		if (!v[KP_Q_VALHASH])
			v[KP_Q_VALHASH] = (int64_t)vh;
	}
	uint32_t id = kp_qtext_intern(text, len,
				      kp_fnv1a(KP_FP_NO_VALUES, text, len));
	v[KP_Q_TEXT_ID] = id;
	if (id)
		kp_ring_push_vals(now, KP_REC_QUERY, source, stack, v, KP_Q_NV);
	else
		kp_ring_push_ext(now, KP_REC_QUERY, source, stack, v, text,
				 len);
}

void kp_query_close(uint8_t source, uint64_t tsc0, uint32_t text_id,
		    const char *text, size_t len, int fp, int64_t *v,
		    uint32_t stack)
{
	uint64_t now = kp_ticks();
	if (text_id || !text) {
		/* the text is the QUERY_TEXT record's (or there is none) */
		kp_query_close_id_at(source, tsc0, now, text_id, v, stack);
		return;
	}
	if (kp_query_end_at(now, tsc0, v))
		close_text(now, source, stack, text, len, fp, v);
}

void kp_query_push_unpacked(uint8_t source, uint64_t now, uint32_t stack,
			    const int64_t *w, uint64_t ctx)
{
	int64_t v[KP_Q_NV];
	kp_qc_unpack(v, w);
	v[KP_Q_CTX] = (int64_t)ctx;
	kp_ring_push_vals(now, KP_REC_QUERY, source, stack, v, KP_Q_NV);
}

/* ---- the public API --------------------------------------------------------- */

/*
 * Open API queries of this thread, innermost last: the fingerprint is
 * taken at begin (the app's string is not kept) and written at end.
 */
#define API_DEPTH 8
struct api_query {
	uint64_t ctx, tsc0, valhash, conn;
	int64_t flags;
	uint32_t stack; /* where it began */
	uint8_t source;
	char *text; /* private arena */
	size_t len;
};
static __thread struct api_query open_q[API_DEPTH];
static __thread unsigned n_open_q;

static uint64_t api_begin(uint8_t source, const char *text, size_t tl,
			  uint64_t conn)
{
	if (!kp_ready() || kp_tls.busy || kp_tls.writer || !kp.cfg.query)
		return 0;
	int saved = errno;
	kp_tls.busy = 1;
	uint32_t stack = n_open_q < API_DEPTH ? kp_query_stack(NULL) : 0;
	uint64_t tsc0 = kp_ticks();
	uint64_t ctx = 0;
	if (n_open_q < API_DEPTH) {
		char buf[KP_MAX_STR_LEN + 1];
		struct api_query *q = &open_q[n_open_q];
		q->flags = 0;
		q->source = source;
		q->conn = conn;
		q->len = kp_query_text(text, tl, buf, sizeof(buf), &q->valhash,
				       &q->flags);
		q->text = kp_arena_alloc(q->len + 1);
		if (q->text) {
			memcpy(q->text, buf, q->len + 1);
			ctx = kp_query_open(tsc0);
			q->ctx = ctx;
			q->tsc0 = tsc0;
			q->stack = stack;
			n_open_q++;
		}
	}
	kp_busy_leave();
	errno = saved;
	return ctx;
}

static void api_end(uint64_t ctx, int64_t rows, int64_t status)
{
	if (!ctx || kp_tls.busy || kp_tls.writer || !kp_recording())
		return;
	for (unsigned i = n_open_q; i-- > 0;) {
		struct api_query *q = &open_q[i];
		if (q->ctx != ctx)
			continue;
		int saved = errno;
		kp_tls.busy = 1;
		int64_t v[KP_Q_NV] = { 0 };
		v[KP_Q_CTX] = (int64_t)ctx;
		v[KP_Q_ROWS] = rows;
		v[KP_Q_STATUS] = status;
		v[KP_Q_VALHASH] = (int64_t)q->valhash;
		v[KP_Q_FLAGS] = q->flags;
		v[KP_Q_CONN] = (int64_t)q->conn;
		kp_query_close(q->source, q->tsc0, 0, q->text, q->len, 1, v,
			       q->stack);
		kp_arena_free(q->text);
		/* queries left open inside end with it (their text freed) */
		for (unsigned k = i + 1; k < n_open_q; k++)
			kp_arena_free(open_q[k].text);
		n_open_q = i;
		kp_busy_leave();
		errno = saved;
		return;
	}
}

KP_EXPORT uint64_t kprof_query_begin(const char *text)
{
	return api_begin(KP_QSRC_API, text,
			 text ? strnlen(text, 1u << 20) : 0, 0);
}

KP_EXPORT void kprof_query_end(uint64_t ctx, int64_t rows, int64_t status)
{
	api_end(ctx, rows, status);
}

/* ---- plugins ------------------------------------------------------------------ */

/*
 * The plugin ABI of kprof.h, repeated here (api.c's rule: kprof.h's weak
 * declarations must not meet the strong definitions). Keep in step.
 */
#define PLUGIN_ABI_VERSION 1
struct plugin_host {
	uint32_t abi_version, size;
	uint64_t (*query_begin)(const char *text, size_t len, uint64_t conn);
	void (*query_end)(uint64_t ctx, int64_t rows, int64_t status);
	int (*hook)(const char *symbol, void *replacement, void **real);
	void (*log)(const char *msg);
};
struct query_plugin {
	uint32_t abi_version, size;
	const char *name;
	void (*fini)(void);
};

static uint64_t plugin_query_begin(const char *text, size_t len,
				   uint64_t conn)
{
	return api_begin(KP_QSRC_PLUGIN, text, text ? len : 0, conn);
}

static void plugin_log(const char *msg)
{
	kp_warn("plugin: %s", msg ? msg : "");
}

static const struct plugin_host host = {
	.abi_version = PLUGIN_ABI_VERSION,
	.size = sizeof(struct plugin_host),
	.query_begin = plugin_query_begin,
	.query_end = api_end,
	.hook = kp_got_hook,
	.log = plugin_log,
};

void kp_query_plugin_load(void)
{
	const char *path = kp.cfg.query_plugin;
	if (!path[0] || !kp.cfg.query)
		return;
	uint8_t busy = kp_tls.busy;
	kp_tls.busy = 1; /* the plugin's loading is kprof's, not the app's */
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		kp_warn("KOTOBA_PROFILE_QUERY_PLUGIN: cannot load %s: %s", path,
			dlerror());
		goto out;
	}
	const struct query_plugin *(*init)(const struct plugin_host *);
	*(void **)&init = dlsym(h, "kprof_query_plugin_init");
	if (!init) {
		kp_warn("KOTOBA_PROFILE_QUERY_PLUGIN: %s has no "
			"kprof_query_plugin_init", path);
		dlclose(h);
		goto out;
	}
	const struct query_plugin *pl = init(&host);
	if (!pl || pl->abi_version != PLUGIN_ABI_VERSION ||
	    pl->size < sizeof(struct query_plugin))
		kp_warn("KOTOBA_PROFILE_QUERY_PLUGIN: %s declined or has ABI "
			"version %u (want %u); it records nothing", path,
			pl ? pl->abi_version : 0, PLUGIN_ABI_VERSION);
	/* kept loaded: its wrappers are in the app's call paths now */
out:
	kp_busy_restore(busy);
}

__attribute__((constructor)) static void kp_query_ctor(void)
{
	if (kp_ready())
		kp_query_plugin_load();
}
