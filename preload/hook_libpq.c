/* SPDX-License-Identifier: MIT */
/*
 * The libpq query hook. Synchronous calls (PQexec, PQexecParams,
 * PQexecPrepared) are one query each, timed around the call. PQprepare is
 * not a query: its time is charged as prepare time to the first
 * PQexecPrepared / PQsendQueryPrepared of that statement name, whose text
 * it provides. The asynchronous calls (PQsendQuery, PQsendQueryParams,
 * PQsendQueryPrepared) open a query in a per-connection FIFO; PQgetResult
 * adds each result's rows and status to the oldest open query, and the
 * NULL that ends its results closes it (pipeline mode: one NULL per
 * query; PGRES_PIPELINE_SYNC results belong to no query).
 *
 * Rows: PQntuples for results with tuples, else PQcmdTuples. Status: 0 for
 * PGRES_COMMAND_OK / TUPLES_OK / SINGLE_TUPLE / COPY_*, else the SQLSTATE
 * (PG_DIAG_SQLSTATE) packed into an integer (KP_QF_SQLSTATE), or -1
 * without one. Autocommit = PQtransactionStatus() was PQTRANS_IDLE when
 * the query was sent. The value hash covers the literals in the text and
 * the parameter values.
 *
 * libpq itself implements PQexec with PQsendQuery + PQgetResult: calls
 * made inside a hooked call pass straight through (in_pq).
 */
#include "state.h"
#include "fingerprint.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;
typedef unsigned int Oid;

enum { PGRES_EMPTY_QUERY = 0, PGRES_COMMAND_OK, PGRES_TUPLES_OK,
       PGRES_COPY_OUT, PGRES_COPY_IN, PGRES_BAD_RESPONSE,
       PGRES_NONFATAL_ERROR, PGRES_FATAL_ERROR, PGRES_COPY_BOTH,
       PGRES_SINGLE_TUPLE, PGRES_PIPELINE_SYNC, PGRES_PIPELINE_ABORTED };
#define PQTRANS_IDLE 0
#define PG_DIAG_SQLSTATE 'C'

static struct {
	PGresult *(*exec)(PGconn *, const char *);
	PGresult *(*exec_params)(PGconn *, const char *, int, const Oid *,
				 const char *const *, const int *, const int *,
				 int);
	PGresult *(*prepare)(PGconn *, const char *, const char *, int,
			     const Oid *);
	PGresult *(*exec_prepared)(PGconn *, const char *, int,
				   const char *const *, const int *,
				   const int *, int);
	int (*send_query)(PGconn *, const char *);
	int (*send_query_params)(PGconn *, const char *, int, const Oid *,
				 const char *const *, const int *, const int *,
				 int);
	int (*send_prepare)(PGconn *, const char *, const char *, int,
			    const Oid *);
	int (*send_query_prepared)(PGconn *, const char *, int,
				   const char *const *, const int *,
				   const int *, int);
	PGresult *(*get_result)(PGconn *);
	void (*finish)(PGconn *);
	int (*result_status)(const PGresult *);
	int (*ntuples)(const PGresult *);
	char *(*cmd_tuples)(PGresult *);
	char *(*error_field)(const PGresult *, int);
	int (*transaction_status)(const PGconn *);
} pq;
static _Atomic int pq_done;

static int pq_resolve(void)
{
	if (KP_LIKELY(atomic_load_explicit(&pq_done, memory_order_acquire)))
		return 1;
	int saved = errno;
	uint8_t busy = kp_tls.busy;
	kp_tls.busy = 1;
	void *h = dlopen("libpq.so.5", RTLD_LAZY | RTLD_NOLOAD);
#define R(f, n)                                            \
	do {                                               \
		*(void **)&pq.f = dlsym(RTLD_NEXT, n);     \
		if (!pq.f && h)                            \
			*(void **)&pq.f = dlsym(h, n);     \
	} while (0)
	R(exec, "PQexec");
	R(exec_params, "PQexecParams");
	R(prepare, "PQprepare");
	R(exec_prepared, "PQexecPrepared");
	R(send_query, "PQsendQuery");
	R(send_query_params, "PQsendQueryParams");
	R(send_prepare, "PQsendPrepare");
	R(send_query_prepared, "PQsendQueryPrepared");
	R(get_result, "PQgetResult");
	R(finish, "PQfinish");
	R(result_status, "PQresultStatus");
	R(ntuples, "PQntuples");
	R(cmd_tuples, "PQcmdTuples");
	R(error_field, "PQresultErrorField");
	R(transaction_status, "PQtransactionStatus");
#undef R
	if (h)
		dlclose(h);
	int ok = pq.exec && pq.get_result && pq.result_status && pq.ntuples &&
		 pq.cmd_tuples && pq.error_field && pq.transaction_status;
	if (ok)
		atomic_store_explicit(&pq_done, 1, memory_order_release);
	kp_busy_restore(busy);
	errno = saved;
	return ok;
}

/* ---- per-connection state: prepared statements, in-flight queries ---- */

struct pq_prep { /* a prepared statement's name and fingerprint */
	struct pq_prep *next;
	uint64_t name_hash, lit_hash, prep_ticks;
	char *text;
	size_t len;
};

#define PQ_FIFO 64 /* queries in flight per connection (pipeline) */
struct pq_pending {
	uint64_t ctx, tsc0, valhash, prep_ticks;
	uint32_t stack; /* where it was sent (kp_query_stack) */
	int64_t flags, rows, status;
	char *text;
	size_t len;
};

struct pq_conn {
	PGconn *conn; /* NULL: free */
	struct pq_prep *preps;
	struct pq_pending q[PQ_FIFO];
	unsigned head, n;
};

#define PQ_CONNS 256
static struct pq_conn *conns;
static _Atomic int conns_lock;
static __thread unsigned in_pq;

/* Caller holds conns_lock. */
static struct pq_conn *conn_get(PGconn *c, int create)
{
	if (!conns) {
		if (!create)
			return NULL;
		conns = kp_arena_alloc(sizeof(*conns) * PQ_CONNS);
		if (!conns)
			return NULL;
		memset(conns, 0, sizeof(*conns) * PQ_CONNS);
	}
	struct pq_conn *free_slot = NULL;
	for (size_t i = 0; i < PQ_CONNS; i++) {
		if (conns[i].conn == c)
			return &conns[i];
		if (!conns[i].conn && !free_slot)
			free_slot = &conns[i];
	}
	if (!create || !free_slot)
		return NULL;
	memset(free_slot, 0, sizeof(*free_slot));
	free_slot->conn = c;
	return free_slot;
}

static int want(void)
{
	return !in_pq && kp_query_want(KP_QHOOK_LIBPQ);
}

static uint64_t params_hash(uint64_t h, int n, const char *const *vals,
			    const int *lens, const int *fmts)
{
	static const char nul = 0, null_mark[] = "\1NULL";
	for (int i = 0; vals && i < n; i++) {
		if (!vals[i]) {
			h = kp_fnv1a(h, null_mark, sizeof(null_mark));
			continue;
		}
		size_t l = fmts && fmts[i] && lens ? (size_t)(lens[i] > 0 ? lens[i] : 0) :
			strlen(vals[i]);
		h = kp_fnv1a(h, vals[i], l);
		h = kp_fnv1a(h, &nul, 1);
	}
	return h;
}

/* Rows and status of one result into *rows / *status / *flags. */
static void result_info(const PGresult *r, int64_t *rows, int64_t *status,
			int64_t *flags)
{
	if (!r) {
		*status = -1;
		return;
	}
	int st = pq.result_status(r);
	if (st == PGRES_TUPLES_OK || st == PGRES_SINGLE_TUPLE) {
		*rows += pq.ntuples(r);
	} else if (st == PGRES_COMMAND_OK) {
		const char *t = pq.cmd_tuples((PGresult *)r);
		if (t && *t)
			*rows += strtoll(t, NULL, 10);
	}
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ||
	    st == PGRES_SINGLE_TUPLE || st == PGRES_COPY_OUT ||
	    st == PGRES_COPY_IN || st == PGRES_COPY_BOTH ||
	    st == PGRES_EMPTY_QUERY || st == PGRES_PIPELINE_SYNC)
		return;
	const char *s = pq.error_field(r, PG_DIAG_SQLSTATE);
	if (s && strlen(s) == 5) {
		int64_t v = 0;
		for (int i = 0; i < 5; i++)
			v = v << 8 | (unsigned char)s[i];
		*status = v;
		*flags |= KP_QF_SQLSTATE;
	} else if (!*status) {
		*status = -1;
	}
}

/* Start a query: its fingerprint into a private copy. Caller is busy. */
static void begin(struct pq_pending *p, PGconn *c, const char *text,
		  uint64_t vh_params, int has_params)
{
	char buf[KP_MAX_STR_LEN + 1];
	uint64_t vh;
	memset(p, 0, sizeof(*p));
	size_t len = text ? strlen(text) : 0;
	p->len = kp_query_text(text, len, buf, sizeof(buf), &vh, &p->flags);
	p->text = kp_arena_alloc(p->len + 1);
	if (p->text)
		memcpy(p->text, buf, p->len + 1);
	else
		p->len = 0;
	p->valhash = has_params ? vh_params ^ vh : vh;
	if (!p->valhash)
		p->valhash = 1;
	if (pq.transaction_status(c) == PQTRANS_IDLE)
		p->flags |= KP_QF_AUTOCOMMIT;
	p->stack = kp_query_stack(NULL);
	p->tsc0 = kp_ticks();
	p->ctx = kp_query_open(p->tsc0);
}

static void finish(struct pq_pending *p, PGconn *c)
{
	int64_t v[KP_Q_NV] = { 0 };
	v[KP_Q_CTX] = (int64_t)p->ctx;
	v[KP_Q_ROWS] = p->rows;
	v[KP_Q_STATUS] = p->status;
	v[KP_Q_PREPARE_DUR] = (int64_t)p->prep_ticks;
	v[KP_Q_VALHASH] = (int64_t)p->valhash;
	v[KP_Q_FLAGS] = p->flags;
	v[KP_Q_CONN] = (int64_t)(uintptr_t)c;
	kp_query_close(KP_QSRC_LIBPQ, p->tsc0, 0, p->text ? p->text : "",
		       p->len, 1, v, p->stack);
	kp_arena_free(p->text);
	p->text = NULL;
}

/* The text of prepared statement name on c (or NULL); takes its pending
 * prepare time. Caller holds conns_lock. */
static struct pq_prep *prep_find(struct pq_conn *pc, const char *name)
{
	uint64_t h = kp_fnv1a(KP_FP_NO_VALUES, name ? name : "",
			      name ? strlen(name) : 0);
	for (struct pq_prep *p = pc ? pc->preps : NULL; p; p = p->next)
		if (p->name_hash == h)
			return p;
	return NULL;
}

/* A query of a prepared statement: begin it with the statement's text. */
static void begin_prepared(struct pq_pending *p, PGconn *c, const char *name,
			   uint64_t vh)
{
	char text[KP_MAX_STR_LEN + 1] = "";
	uint64_t prep_ticks = 0;
	kp_spin_lock(&conns_lock);
	struct pq_prep *pp = prep_find(conn_get(c, 0), name);
	if (pp) {
		memcpy(text, pp->text, pp->len + 1);
		prep_ticks = pp->prep_ticks;
		pp->prep_ticks = 0;
	}
	kp_spin_unlock(&conns_lock);
	/* the text is a fingerprint already: fingerprinting is idempotent */
	begin(p, c, text, vh, 1);
	p->prep_ticks = prep_ticks;
}

#define PQ_ENTER(fn, fail, ...)                                   \
	do {                                                      \
		if (KP_UNLIKELY(!pq_resolve()) || !pq.fn)         \
			return fail;                              \
		if (!want())                                      \
			return pq.fn(__VA_ARGS__);                \
	} while (0)

#define BUSY_IN()                  \
	int saved_ = errno;        \
	kp_tls.busy = 1
#define BUSY_AGAIN()               \
	saved_ = errno;            \
	kp_tls.busy = 1
#define BUSY_OUT()                 \
	kp_busy_leave();           \
	errno = saved_

/* ---- synchronous calls -------------------------------------------------------- */

PGresult *PQexec(PGconn *, const char *);
PGresult *PQexecParams(PGconn *, const char *, int, const Oid *,
		       const char *const *, const int *, const int *, int);
PGresult *PQprepare(PGconn *, const char *, const char *, int, const Oid *);
PGresult *PQexecPrepared(PGconn *, const char *, int, const char *const *,
			 const int *, const int *, int);
int PQsendQuery(PGconn *, const char *);
int PQsendQueryParams(PGconn *, const char *, int, const Oid *,
		      const char *const *, const int *, const int *, int);
int PQsendQueryPrepared(PGconn *, const char *, int, const char *const *,
			const int *, const int *, int);
int PQsendPrepare(PGconn *, const char *, const char *, int, const Oid *);
PGresult *PQgetResult(PGconn *);
void PQfinish(PGconn *);

static PGresult *sync_end(struct pq_pending *p, PGconn *c, PGresult *r)
{
	BUSY_IN();
	result_info(r, &p->rows, &p->status, &p->flags);
	finish(p, c);
	BUSY_OUT();
	return r;
}

KP_EXPORT PGresult *PQexec(PGconn *c, const char *q)
{
	PQ_ENTER(exec, NULL, c, q);
	struct pq_pending p;
	BUSY_IN();
	begin(&p, c, q, 0, 0);
	BUSY_OUT();
	in_pq++;
	PGresult *r = pq.exec(c, q);
	in_pq--;
	return sync_end(&p, c, r);
}

KP_EXPORT PGresult *PQexecParams(PGconn *c, const char *q, int n,
				 const Oid *types, const char *const *vals,
				 const int *lens, const int *fmts, int rfmt)
{
	PQ_ENTER(exec_params, NULL, c, q, n, types, vals, lens, fmts, rfmt);
	struct pq_pending p;
	BUSY_IN();
	begin(&p, c, q, params_hash(KP_FP_NO_VALUES, n, vals, lens, fmts), 1);
	BUSY_OUT();
	in_pq++;
	PGresult *r = pq.exec_params(c, q, n, types, vals, lens, fmts, rfmt);
	in_pq--;
	return sync_end(&p, c, r);
}

/* Remember name -> fingerprint for c, with the prepare time. */
static void remember_prep(PGconn *c, const char *name, const char *q,
			  uint64_t ticks)
{
	char buf[KP_MAX_STR_LEN + 1];
	uint64_t vh;
	int64_t flags = 0;
	size_t len = kp_query_text(q, q ? strlen(q) : 0, buf, sizeof(buf),
				   &vh, &flags);
	struct pq_prep *np = kp_arena_alloc(sizeof(*np));
	char *text = kp_arena_alloc(len + 1);
	if (!np || !text) {
		kp_arena_free(np);
		kp_arena_free(text);
		return;
	}
	memcpy(text, buf, len + 1);
	kp_spin_lock(&conns_lock);
	struct pq_conn *pc = conn_get(c, 1);
	struct pq_prep *old = pc ? prep_find(pc, name) : NULL;
	if (old) { /* re-prepared under the same name */
		kp_arena_free(old->text);
		old->text = text;
		old->len = len;
		old->lit_hash = vh;
		old->prep_ticks = ticks;
		kp_arena_free(np);
	} else if (pc) {
		np->name_hash = kp_fnv1a(KP_FP_NO_VALUES, name ? name : "",
					 name ? strlen(name) : 0);
		np->text = text;
		np->len = len;
		np->lit_hash = vh;
		np->prep_ticks = ticks;
		np->next = pc->preps;
		pc->preps = np;
	} else {
		kp_arena_free(np);
		kp_arena_free(text);
	}
	kp_spin_unlock(&conns_lock);
}

KP_EXPORT PGresult *PQprepare(PGconn *c, const char *name, const char *q,
			      int n, const Oid *types)
{
	PQ_ENTER(prepare, NULL, c, name, q, n, types);
	uint64_t t0 = kp_ticks();
	in_pq++;
	PGresult *r = pq.prepare(c, name, q, n, types);
	in_pq--;
	uint64_t t1 = kp_ticks();
	if (r && pq.result_status(r) == PGRES_COMMAND_OK) {
		BUSY_IN();
		remember_prep(c, name, q, t1 - t0);
		BUSY_OUT();
	}
	return r;
}

KP_EXPORT PGresult *PQexecPrepared(PGconn *c, const char *name, int n,
				   const char *const *vals, const int *lens,
				   const int *fmts, int rfmt)
{
	PQ_ENTER(exec_prepared, NULL, c, name, n, vals, lens, fmts, rfmt);
	struct pq_pending p;
	BUSY_IN();
	begin_prepared(&p, c, name, params_hash(KP_FP_NO_VALUES, n, vals, lens,
						fmts));
	BUSY_OUT();
	in_pq++;
	PGresult *r = pq.exec_prepared(c, name, n, vals, lens, fmts, rfmt);
	in_pq--;
	return sync_end(&p, c, r);
}

/* ---- asynchronous calls ------------------------------------------------------- */

/* Queue p (begun) on c's FIFO; a full FIFO drops it (its QUERY_BEGIN
 * stays unmatched, which the analyzer tolerates). Caller is busy. */
static void enqueue(PGconn *c, struct pq_pending *p)
{
	kp_spin_lock(&conns_lock);
	struct pq_conn *pc = conn_get(c, 1);
	if (pc && pc->n < PQ_FIFO) {
		pc->q[(pc->head + pc->n) % PQ_FIFO] = *p;
		pc->n++;
		p = NULL;
	}
	kp_spin_unlock(&conns_lock);
	if (p)
		kp_arena_free(p->text);
}

KP_EXPORT int PQsendQuery(PGconn *c, const char *q)
{
	PQ_ENTER(send_query, 0, c, q);
	struct pq_pending p;
	BUSY_IN();
	begin(&p, c, q, 0, 0);
	BUSY_OUT();
	in_pq++;
	int ok = pq.send_query(c, q);
	in_pq--;
	BUSY_AGAIN();
	if (ok)
		enqueue(c, &p);
	else
		finish(&p, c); /* could not even be sent: a failed query */
	BUSY_OUT();
	return ok;
}

KP_EXPORT int PQsendQueryParams(PGconn *c, const char *q, int n,
				const Oid *types, const char *const *vals,
				const int *lens, const int *fmts, int rfmt)
{
	PQ_ENTER(send_query_params, 0, c, q, n, types, vals, lens, fmts, rfmt);
	struct pq_pending p;
	BUSY_IN();
	begin(&p, c, q, params_hash(KP_FP_NO_VALUES, n, vals, lens, fmts), 1);
	BUSY_OUT();
	in_pq++;
	int ok = pq.send_query_params(c, q, n, types, vals, lens, fmts, rfmt);
	in_pq--;
	BUSY_AGAIN();
	if (ok) {
		enqueue(c, &p);
	} else {
		p.status = -1;
		finish(&p, c);
	}
	BUSY_OUT();
	return ok;
}

KP_EXPORT int PQsendQueryPrepared(PGconn *c, const char *name, int n,
				  const char *const *vals, const int *lens,
				  const int *fmts, int rfmt)
{
	PQ_ENTER(send_query_prepared, 0, c, name, n, vals, lens, fmts, rfmt);
	struct pq_pending p;
	BUSY_IN();
	begin_prepared(&p, c, name, params_hash(KP_FP_NO_VALUES, n, vals, lens,
						fmts));
	BUSY_OUT();
	in_pq++;
	int ok = pq.send_query_prepared(c, name, n, vals, lens, fmts, rfmt);
	in_pq--;
	BUSY_AGAIN();
	if (ok) {
		enqueue(c, &p);
	} else {
		p.status = -1;
		finish(&p, c);
	}
	BUSY_OUT();
	return ok;
}

/* Not a query either (its result is consumed by PQgetResult like one's:
 * the FIFO does not hold it, so that result goes to no query). */
KP_EXPORT int PQsendPrepare(PGconn *c, const char *name, const char *q,
			    int n, const Oid *types)
{
	PQ_ENTER(send_prepare, 0, c, name, q, n, types);
	in_pq++;
	int ok = pq.send_prepare(c, name, q, n, types);
	in_pq--;
	if (ok) {
		BUSY_IN();
		remember_prep(c, name, q, 0);
		BUSY_OUT();
	}
	return ok;
}

KP_EXPORT PGresult *PQgetResult(PGconn *c)
{
	PQ_ENTER(get_result, NULL, c);
	in_pq++;
	PGresult *r = pq.get_result(c);
	in_pq--;
	BUSY_IN();
	struct pq_pending done;
	int have = 0;
	kp_spin_lock(&conns_lock);
	struct pq_conn *pc = conn_get(c, 0);
	if (pc && pc->n) {
		struct pq_pending *p = &pc->q[pc->head];
		if (r) {
			if (pq.result_status(r) != PGRES_PIPELINE_SYNC)
				result_info(r, &p->rows, &p->status, &p->flags);
		} else {
			done = *p;
			have = 1;
			pc->head = (pc->head + 1) % PQ_FIFO;
			pc->n--;
		}
	}
	kp_spin_unlock(&conns_lock);
	if (have)
		finish(&done, c);
	BUSY_OUT();
	return r;
}

KP_EXPORT void PQfinish(PGconn *c)
{
	if (KP_UNLIKELY(!pq_resolve()) || !pq.finish)
		return;
	if (c && conns && !kp_tls.busy && !kp_tls.writer) {
		BUSY_IN();
		kp_spin_lock(&conns_lock);
		struct pq_conn *pc = conn_get(c, 0);
		if (pc) {
			for (unsigned i = 0; i < pc->n; i++) /* never completed */
				kp_arena_free(pc->q[(pc->head + i) % PQ_FIFO].text);
			for (struct pq_prep *p = pc->preps, *nx; p; p = nx) {
				nx = p->next;
				kp_arena_free(p->text);
				kp_arena_free(p);
			}
			memset(pc, 0, sizeof(*pc));
		}
		kp_spin_unlock(&conns_lock);
		BUSY_OUT();
	}
	pq.finish(c);
}
