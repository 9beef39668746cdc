/* SPDX-License-Identifier: MIT */
/*
 * The SQLite query hook: one QUERY per statement execution (a "run"), from
 * its first sqlite3_step() after a prepare or reset to SQLITE_DONE, an
 * error, sqlite3_reset() or sqlite3_finalize(). The run carries the
 * fingerprint of sqlite3_sql() (taken once, at prepare), the rows stepped
 * plus the rows changed, the result code, the per-run full-scan / sort /
 * auto-index / VM-step counters (sqlite3_stmt_status with reset), the
 * prepare time (charged to the first run) and whether it ran in autocommit.
 *
 * libsqlite3 is found when first called, not at start-up: python3's sqlite3
 * module dlopen()s it (RTLD_LOCAL) long after kprof started, so RTLD_NEXT
 * may not see it; then the library is looked up by its soname with
 * RTLD_NOLOAD, or else in the scope of the first call's module. A module
 * with a SQLite of its own (another soname, RTLD_LOCAL) gets its calls
 * passed to that library, unrecorded (sq_callee). Nothing here touches
 * the app's trace/profile callbacks.
 *
 * sqlite3_exec() runs its statements through sqlite3_prepare_v2/step,
 * which land here through the PLT; if the library was built so that they
 * do not, the exec is recorded as one query of its whole text (KP_QF_EXEC).
 */
#include "state.h"
#include "fingerprint.h"

#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

typedef struct sqlite3 sqlite3;
typedef struct sqlite3_stmt sqlite3_stmt;

#define SQLITE_OK 0
#define SQLITE_MISUSE 21
#define SQLITE_ROW 100
#define SQLITE_DONE 101
#define SQLITE_STMTSTATUS_FULLSCAN_STEP 1
#define SQLITE_STMTSTATUS_SORT 2
#define SQLITE_STMTSTATUS_AUTOINDEX 3
#define SQLITE_STMTSTATUS_VM_STEP 4

struct sq_lib {
	int (*prepare)(sqlite3 *, const char *, int, sqlite3_stmt **,
		       const char **);
	int (*prepare_v2)(sqlite3 *, const char *, int, sqlite3_stmt **,
			  const char **);
	int (*prepare_v3)(sqlite3 *, const char *, int, unsigned,
			  sqlite3_stmt **, const char **);
	int (*prepare16)(sqlite3 *, const void *, int, sqlite3_stmt **,
			 const void **);
	int (*prepare16_v2)(sqlite3 *, const void *, int, sqlite3_stmt **,
			    const void **);
	int (*prepare16_v3)(sqlite3 *, const void *, int, unsigned,
			    sqlite3_stmt **, const void **);
	int (*step)(sqlite3_stmt *);
	int (*reset)(sqlite3_stmt *);
	int (*finalize)(sqlite3_stmt *);
	int (*exec)(sqlite3 *, const char *, int (*)(void *, int, char **,
						      char **),
		    void *, char **);
	const char *(*sql)(sqlite3_stmt *);
	int (*stmt_status)(sqlite3_stmt *, int, int);
	int (*stmt_busy)(sqlite3_stmt *); /* optional: untracked_end */
	sqlite3 *(*db_handle)(sqlite3_stmt *);
	int (*get_autocommit)(sqlite3 *);
	int (*stmt_readonly)(sqlite3_stmt *);
	int (*total_changes)(sqlite3 *);
	int (*bind_parameter_count)(sqlite3_stmt *);
	char *(*expanded_sql)(sqlite3_stmt *);
	void (*free)(void *);
};
/* The library the hook records: the one in the global scope, else the
 * one a call first came from (sq_resolve_from). */
static struct sq_lib sq;
static _Atomic int sq_done;
/* sq is not in the global scope: each caller's own scope decides which
 * SQLite its calls bind to, and another may bind to another library
 * (sq_callee) */
static _Atomic int sq_local;
/* a call bound to another library than sq was seen: every interposer
 * then asks sq_callee (sq_mode SQ_MULTI) */
static _Atomic int sq_multi;

/* L's functions from h's scope (RTLD_NEXT: the global one after kprof),
 * and from also's when not there. @return 1 when usable. */
static int lib_resolve(struct sq_lib *L, void *h, void *also)
{
#define R(f, n)                                       \
	do {                                          \
		*(void **)&L->f = dlsym(h, n);        \
		if (!L->f && also)                    \
			*(void **)&L->f = dlsym(also, n); \
	} while (0)
	R(prepare, "sqlite3_prepare");
	R(prepare_v2, "sqlite3_prepare_v2");
	R(prepare_v3, "sqlite3_prepare_v3");
	R(prepare16, "sqlite3_prepare16");
	R(prepare16_v2, "sqlite3_prepare16_v2");
	R(prepare16_v3, "sqlite3_prepare16_v3");
	R(step, "sqlite3_step");
	R(reset, "sqlite3_reset");
	R(finalize, "sqlite3_finalize");
	R(exec, "sqlite3_exec");
	R(sql, "sqlite3_sql");
	R(stmt_status, "sqlite3_stmt_status");
	R(stmt_busy, "sqlite3_stmt_busy");
	R(db_handle, "sqlite3_db_handle");
	R(get_autocommit, "sqlite3_get_autocommit");
	R(stmt_readonly, "sqlite3_stmt_readonly");
	R(total_changes, "sqlite3_total_changes");
	R(bind_parameter_count, "sqlite3_bind_parameter_count");
	R(expanded_sql, "sqlite3_expanded_sql");
	R(free, "sqlite3_free");
#undef R
	return L->step && L->reset && L->finalize && L->prepare_v2 &&
	       L->sql && L->stmt_status && L->db_handle && L->get_autocommit &&
	       L->stmt_readonly && L->total_changes &&
	       L->bind_parameter_count;
}

/* The loaded object whose code holds pc, opened for dlsym (dlclose it),
 * with its bounds; NULL for the program itself (whose scope is the
 * global one, kprof's hooks first) or none. */
static void *module_at(const void *pc, uintptr_t *lo, uintptr_t *hi)
{
	struct dl_find_object fo;
	if (!pc || _dl_find_object((void *)pc, &fo) != 0 || !fo.dlfo_link_map)
		return NULL;
	*lo = (uintptr_t)fo.dlfo_map_start;
	*hi = (uintptr_t)fo.dlfo_map_end;
	const char *name = fo.dlfo_link_map->l_name;
	if (!name || !name[0])
		return NULL;
	return dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
}

/*
 * Resolve libsqlite3 (once it is loaded), the library of the first call
 * from code at ra when none is in the global scope or has the soname
 * libsqlite3.so.0. @return 1 when usable.
 */
static int sq_resolve_from(const void *ra)
{
	if (KP_LIKELY(atomic_load_explicit(&sq_done, memory_order_acquire)))
		return 1;
	int saved = errno;
	uint8_t busy = kp_tls.busy;
	kp_tls.busy = 1; /* dlopen/dlsym allocate: not the app's */
	void *h = dlopen("libsqlite3.so.0", RTLD_LAZY | RTLD_NOLOAD);
	if (!h)
		h = dlopen("libsqlite3.so", RTLD_LAZY | RTLD_NOLOAD);
	int global = dlsym(RTLD_NEXT, "sqlite3_step") != NULL;
	int ok = lib_resolve(&sq, RTLD_NEXT, h);
	if (h)
		dlclose(h); /* it stays loaded: the app holds it */
	if (!ok && ra) {
		uintptr_t lo, hi;
		h = module_at(ra, &lo, &hi);
		if (h) {
			ok = lib_resolve(&sq, h, NULL);
			dlclose(h);
		}
	}
	if (ok) {
		atomic_store_explicit(&sq_local, !global, memory_order_relaxed);
		atomic_store_explicit(&sq_done, 1, memory_order_release);
	}
	kp_busy_restore(busy);
	errno = saved;
	return ok;
}

/* Runs of statements without a slot (their window was full at prepare,
 * or they were prepared where the hook does not look: before it was set
 * up, inside SQLite) or of another SQLite (sq_callee), which were not
 * recorded: the writer writes them as lost QUERY events
 * (kp_sqlite_lost_runs). */
static _Atomic uint64_t lost_runs;

/*
 * Another SQLite than sq. A call binds to the first definition in the
 * global scope, then in its caller's own (a module dlopen()ed with
 * RTLD_LOCAL and its dependencies: python3's extension modules, for one).
 * When sq is in the global scope every call binds to it; when it is not,
 * a module may bring a SQLite of its own (SQLCipher's, say, under
 * another soname), and its calls must go there, or SQLite would run
 * another library's statements. Such calls pass through unrecorded; each
 * run ended counts as a lost QUERY, as for a statement without a slot.
 * The modules seen are kept with the library their calls bind to.
 */
#define SQ_MODS 64
#define SQ_LIBS 8
static struct sq_mod {
	uintptr_t lo, hi;
	struct sq_lib *lib; /* NULL: sq */
} mods[SQ_MODS];
static _Atomic unsigned nmods;
static struct sq_lib libs[SQ_LIBS];
static unsigned nlibs;
static atomic_flag mods_lock = ATOMIC_FLAG_INIT;

KP_EXPORT int sqlite3_step(sqlite3_stmt *);
#define SQ_MULTI 3 /* sq_mode, below */
static _Atomic int sq_mode;

/* The library of module h (its own scope), other than sq: NULL for sq. */
static struct sq_lib *lib_of(void *h)
{
	void *step = dlsym(h, "sqlite3_step");
	if (!step || step == (void *)sqlite3_step || step == (void *)sq.step)
		return NULL;
	for (unsigned i = 0; i < nlibs; i++)
		if ((void *)libs[i].step == step)
			return &libs[i];
	if (nlibs == SQ_LIBS || !lib_resolve(&libs[nlibs], h, NULL))
		return NULL;
	return &libs[nlibs++];
}

/* The SQLite a call from ra binds to when it is not sq, else NULL. */
static __attribute__((noinline)) struct sq_lib *sq_callee(const void *ra)
{
	if (!atomic_load_explicit(&sq_local, memory_order_relaxed))
		return NULL;
	uintptr_t pc = (uintptr_t)ra;
	unsigned n = atomic_load_explicit(&nmods, memory_order_acquire);
	for (unsigned i = 0; i < n; i++)
		if (pc - mods[i].lo < mods[i].hi - mods[i].lo)
			return mods[i].lib;
	int saved = errno;
	uint8_t busy = kp_tls.busy;
	kp_tls.busy = 1;
	while (atomic_flag_test_and_set_explicit(&mods_lock,
						 memory_order_acquire))
		;
	struct sq_lib *lib = NULL;
	uintptr_t lo = 0, hi = 0;
	void *h = module_at(ra, &lo, &hi);
	if (h) {
		lib = lib_of(h);
		dlclose(h);
	}
	n = atomic_load_explicit(&nmods, memory_order_relaxed);
	if (hi > lo && n < SQ_MODS) {
		mods[n] = (struct sq_mod){ lo, hi, lib };
		atomic_store_explicit(&nmods, n + 1, memory_order_release);
	}
	if (lib) {
		atomic_store_explicit(&sq_multi, 1, memory_order_relaxed);
		atomic_store_explicit(&sq_mode, SQ_MULTI, memory_order_release);
	}
	atomic_flag_clear_explicit(&mods_lock, memory_order_release);
	kp_busy_restore(busy);
	errno = saved;
	return lib;
}

/* sq_callee once another library was seen, else NULL at once. */
static KP_ALWAYS_INLINE struct sq_lib *foreign(const void *ra)
{
	return atomic_load_explicit(&sq_multi, memory_order_relaxed) ?
		       sq_callee(ra) :
		       NULL;
}

/* A run of another library's statement s ended (rc) or was cut (rc 0,
 * by a reset or finalize while it ran): a lost QUERY while recording,
 * unless kprof or SQLite itself made the call. */
static void foreign_end(struct sq_lib *L, sqlite3_stmt *s, int rc)
{
	if (!s || rc == SQLITE_MISUSE || rc == SQLITE_ROW || !kp_recording() ||
	    kp_tls.in_sqlite || kp_tls.busy || kp_tls.writer)
		return;
	int busy = L->stmt_busy ? L->stmt_busy(s) : 0;
	if (rc ? !busy : busy)
		atomic_fetch_add_explicit(&lost_runs, 1, memory_order_relaxed);
}

/* ---- statements: a lock-free open-addressing table keyed by the stmt ---- */

/*
 * Threads that each run their own statements must not wait for one
 * another here: the table takes no lock. A slot's key is claimed with a
 * compare-and-swap (prepare) and given back as a tombstone (finalize);
 * keys never move, so a lookup is a probe of plain loads from the key's
 * home slot that stops at its key, an empty slot or SQ_PROBE slots.
 * A claim reuses the first free slot (empty or tombstone) of the window,
 * so tombstones do not pile up in it. The state of a slot is touched
 * only by the thread that holds its statement: SQLite hands a statement
 * from one thread to another only through the app's own synchronisation
 * (and its connection mutex), which orders those accesses.
 */
struct sq_stmt {
	sqlite3 *db;
	uint64_t conn;       /* KP_Q_CONN: conn_id(db) */
	uint32_t text_id;    /* the interned fingerprint (or full text) */
	uint32_t len;
	char *text;          /* ... or, when the table of texts is full
			      * (text_id 0), a copy in the private arena */
	uint8_t readonly, has_params, running, autocommit;
	uint8_t flags;       /* KP_QF_CUT / TEXT_FULL from the text, and
			      * KP_QF_WRITE unless readonly */
	uint64_t qc_text;    /* KP_QC_TEXT of its packed QUERYs (state.h);
			      * 0 when they cannot be packed, and until
			      * prep_ticks is charged (qc_text_of) */
	uint64_t fp_hash, lit_hash;
	uint64_t prep_ticks; /* prepare time not yet charged to a run */
	uint64_t tsc0, ctx;
	int64_t rows;
	int changes0;
	uint32_t stack;      /* the run's: where its first step was called */
	struct kp_unwind_memo *memo; /* its runs' last stack (private arena) */
};

#define SQ_BITS 13
#define SQ_SLOTS (1u << SQ_BITS) /* statements alive at once (at most; see
				  * SQ_PROBE) */
#define SQ_PROBE 64   /* a statement lives within this many slots of its
		      * home; one whose window is full goes unrecorded */
#define SQ_TOMB ((sqlite3_stmt *)1)
/* A slot: its key next to its state, 128 bytes: the lookup's hit is the
 * state's address, an index times 128 (the keys in an array of their
 * own took four instructions more to it, on every step and reset). */
struct sq_slot {
	_Alignas(64) _Atomic(sqlite3_stmt *) key; /* NULL empty, SQ_TOMB
						   * freed */
	struct sq_stmt st;
};
_Static_assert(sizeof(struct sq_slot) == 128, "a slot: two cache lines");
struct sq_tab {
	struct sq_slot s[SQ_SLOTS];
};

/* The key of the slot whose state is e. */
static KP_ALWAYS_INLINE _Atomic(sqlite3_stmt *) *slot_key(struct sq_stmt *e)
{
	return &((struct sq_slot *)((char *)e -
				    offsetof(struct sq_slot, st)))->key;
}
static struct sq_tab *_Atomic tab;

uint64_t kp_sqlite_lost_runs(void)
{
	return atomic_load_explicit(&lost_runs, memory_order_relaxed);
}

/*
 * A run of a statement without a slot is counted once, where its VM
 * stops: a step that left it stopped (done, or an error that halted it;
 * not a SQLITE_BUSY it can retry), or a reset or finalize of it still
 * running (stepped to a row). Without sqlite3_stmt_busy (older than
 * SQLite 3.7.10) only the steps that return done or an error count.
 */
static void lost_run(void);
static __attribute__((noinline)) void untracked_step_end(sqlite3_stmt *s,
							   int rc)
{
	/* a step of NULL (or, with SQLite's API armor, of a finalized
	 * statement) is the app's misuse: nothing ran */
	if (!s || rc == SQLITE_MISUSE)
		return;
	if (!sq.stmt_busy || !sq.stmt_busy(s))
		lost_run();
}

static size_t slot_of(const void *p)
{
	uint64_t x = (uintptr_t)p;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (size_t)x & (SQ_SLOTS - 1);
}

/* A statement's home slot: a multiplicative (Fibonacci) hash, whose top
 * bits mix every bit of the pointer; three instructions where slot_of
 * (kept for the connection ids, which it numbers) takes eight, on every
 * sqlite3_step and sqlite3_reset. */
static KP_ALWAYS_INLINE size_t stmt_slot(const void *p)
{
	return (size_t)(((uintptr_t)p * 0x9e3779b97f4a7c15ULL) >>
			(64 - SQ_BITS));
}

static KP_ALWAYS_INLINE struct sq_stmt *find_in(struct sq_tab *t,
						sqlite3_stmt *s)
{
	size_t i = stmt_slot(s);
	/* the first probe, peeled: it is nearly always the one */
	sqlite3_stmt *k = atomic_load_explicit(&t->s[i].key,
					       memory_order_acquire);
	if (KP_LIKELY(k == s))
		return &t->s[i].st;
	for (unsigned n = 1; n < SQ_PROBE && k; n++) {
		i = (i + 1) & (SQ_SLOTS - 1);
		k = atomic_load_explicit(&t->s[i].key, memory_order_acquire);
		if (k == s)
			return &t->s[i].st;
	}
	return NULL;
}

static KP_ALWAYS_INLINE struct sq_stmt *find(sqlite3_stmt *s)
{
	struct sq_tab *t = atomic_load_explicit(&tab, memory_order_acquire);
	return t ? find_in(t, s) : NULL;
}

static struct sq_tab *tab_get(void)
{
	struct sq_tab *t = atomic_load_explicit(&tab, memory_order_acquire);
	if (t)
		return t;
	struct sq_tab *n = kp_arena_alloc(sizeof(*n));
	if (!n)
		return NULL;
	memset(n, 0, sizeof(*n));
	if (atomic_compare_exchange_strong_explicit(&tab, &t, n,
						    memory_order_acq_rel,
						    memory_order_acquire))
		return n;
	kp_arena_free(n); /* another thread made it first: t is it */
	return t;
}

/*
 * The slot of a new statement s: its old one if s is still there (its
 * finalize was not seen), else the first free slot of its window,
 * claimed; the caller fills it. NULL when the window is full.
 */
static struct sq_stmt *insert(sqlite3_stmt *s)
{
	struct sq_tab *t = tab_get();
	if (!t)
		return NULL;
	struct sq_stmt *e = find(s);
	if (e)
		return e;
	size_t i = stmt_slot(s);
	for (unsigned n = 0; n < SQ_PROBE; n++, i = (i + 1) & (SQ_SLOTS - 1)) {
		sqlite3_stmt *k = atomic_load_explicit(&t->s[i].key,
						       memory_order_acquire);
		while (!k || k == SQ_TOMB) {
			if (atomic_compare_exchange_weak_explicit(
				    &t->s[i].key, &k, s, memory_order_acq_rel,
				    memory_order_acquire)) {
				e = &t->s[i].st;
				memset(e, 0, sizeof(*e));
				return e;
			}
		}
	}
	return NULL;
}

/*
 * Connection ids. A QUERY's conn is an opaque id (record.h: same id, same
 * connection); a small number takes one or two bytes of the trace where
 * the sqlite3 pointer took nine (a quarter of the record the writer
 * compresses per query). A connection's id is 1 + its slot here, claimed
 * with a compare-and-swap and never given back (a connection opened
 * later at the same address gets the same id, as its pointer was); when
 * every slot is taken, the id is the pointer.
 */
#define SQ_CONNS 256
static _Atomic(sqlite3 *) conns[SQ_CONNS];

static uint64_t conn_id(sqlite3 *db)
{
	size_t i = slot_of(db) & (SQ_CONNS - 1);
	for (unsigned n = 0; n < SQ_CONNS; n++, i = (i + 1) & (SQ_CONNS - 1)) {
		sqlite3 *k = atomic_load_explicit(&conns[i],
						  memory_order_relaxed);
		if (!k && atomic_compare_exchange_strong_explicit(
				  &conns[i], &k, db, memory_order_relaxed,
				  memory_order_relaxed))
			return i + 1;
		if (k == db)
			return i + 1;
	}
	return (uintptr_t)db;
}

/* Give e's slot back (the thread holds its statement). */
static void erase(struct sq_stmt *e)
{
	struct sq_slot *sl = (struct sq_slot *)((char *)e -
						offsetof(struct sq_slot, st));
	e->text = NULL;
	kp_arena_free(e->memo);
	e->memo = NULL;
	atomic_store_explicit(&sl->key, SQ_TOMB, memory_order_release);
}

/*
 * The hook's per-thread state, in one block (one TLS offset to load on
 * the recording path, not four); and kp_tls.in_sqlite: inside a real
 * prepare or step of this thread (0 or 1: only a call made outside one
 * sets it): SQLite's own statements (schema loading, ALTER, VACUUM run
 * nested sqlite3_exec()s) pass through; their work is part of the outer
 * query.
 * runs: runs recorded (for sqlite3_exec).
 * in_exec, exec_lost: inside the hook's sqlite3_exec, and the runs
 * without a slot that ended there (lost_run).
 * streak_fp, streak_n: the fingerprint of the thread's last runs and how
 * many in a row (value_hash).
 */
static __thread struct {
	unsigned runs;
	uint8_t in_exec;
	unsigned exec_lost;
	uint64_t streak_fp, streak_n;
	sqlite3_stmt *last;     /* the statement this thread looked up last
				 * (SQ_TOMB before any: never NULL, never a
				 * statement) */
	struct sq_stmt *last_e; /* ... and its state (see find_last) */
} sqt = { .last = SQ_TOMB };

/*
 * A run of a statement without a slot ended: one QUERY lost, but inside
 * sqlite3_exec, whose own QUERY covers the statements it runs when none
 * of them came through the hooks. A SQLite whose internal calls bind
 * within the library (Firefox's libmozsqlite3) prepares exec's
 * statements unseen and steps them through its PLT, here.
 */
static void lost_run(void)
{
	if (sqt.in_exec)
		sqt.exec_lost++;
	else
		atomic_fetch_add_explicit(&lost_runs, 1, memory_order_relaxed);
}

/*
 * The state of s when it is the statement this thread looked up last (a
 * loop steps, steps and resets one statement: three lookups a run), else
 * find(s), remembered. Exact: the remembered slot is s's only while its
 * key is s (a statement has one slot, and keys do not move; a finalize
 * makes it a tombstone). NULL is not looked up (an empty slot's key
 * would match it: SQLite's answer to it is SQLITE_MISUSE).
 */
static KP_ALWAYS_INLINE struct sq_stmt *find_last(sqlite3_stmt *s)
{
	if (KP_LIKELY(s == sqt.last)) {
		struct sq_stmt *e = sqt.last_e;
		if (KP_LIKELY(atomic_load_explicit(slot_key(e),
						   memory_order_acquire) == s)) {
			if (!e) /* never: last is set with a state */
				__builtin_unreachable();
			return e;
		}
	}
	if (KP_UNLIKELY(s == NULL))
		return NULL;
	struct sq_stmt *e = find(s);
	if (e) {
		sqt.last = s;
		sqt.last_e = e;
	}
	return e;
}

static KP_ALWAYS_INLINE int want(void)
{
	return !kp_tls.in_sqlite && kp_query_want(KP_QHOOK_SQLITE);
}

/*
 * UTF-16 text in the machine's byte order (what sqlite3_prepare16 takes:
 * SQLITE_UTF16NATIVE), n bytes, as UTF-8 into out[cap] (not terminated).
 * A lone surrogate becomes U+FFFD. @return the bytes written; *cut set
 * when out was too small.
 */
static size_t utf16_to_utf8(const void *z, size_t n, char *out, size_t cap,
			    int *cut)
{
	const uint16_t *u = z;
	size_t nu = n / 2, o = 0;
	for (size_t i = 0; i < nu; i++) {
		uint32_t c = u[i];
		if (c >= 0xd800 && c < 0xdc00 && i + 1 < nu &&
		    u[i + 1] >= 0xdc00 && u[i + 1] < 0xe000) {
			c = 0x10000 + ((c - 0xd800) << 10) + (u[i + 1] - 0xdc00);
			i++;
		} else if (c >= 0xd800 && c < 0xe000) {
			c = 0xfffd;
		}
		char b[4];
		size_t k;
		if (c < 0x80) {
			b[0] = (char)c;
			k = 1;
		} else if (c < 0x800) {
			b[0] = (char)(0xc0 | c >> 6);
			b[1] = (char)(0x80 | (c & 0x3f));
			k = 2;
		} else if (c < 0x10000) {
			b[0] = (char)(0xe0 | c >> 12);
			b[1] = (char)(0x80 | (c >> 6 & 0x3f));
			b[2] = (char)(0x80 | (c & 0x3f));
			k = 3;
		} else {
			b[0] = (char)(0xf0 | c >> 18);
			b[1] = (char)(0x80 | (c >> 12 & 0x3f));
			b[2] = (char)(0x80 | (c >> 6 & 0x3f));
			b[3] = (char)(0x80 | (c & 0x3f));
			k = 4;
		}
		if (o + k > cap) {
			*cut = 1;
			break;
		}
		memcpy(out + o, b, k);
		o += k;
	}
	return o;
}

/* Bytes of a UTF-16 text: up to *tail, else nbyte, else its 0x0000. */
static size_t utf16_len(const void *z, int nbyte, const void *const *tail)
{
	const uint16_t *u = z;
	size_t max = nbyte >= 0 ? (size_t)nbyte & ~(size_t)1 : SIZE_MAX;
	if (tail && *tail && (const char *)*tail >= (const char *)z)
		max = (size_t)((const char *)*tail - (const char *)z);
	size_t i = 0;
	while (i * 2 < max && u[i])
		i++;
	return i * 2;
}

/*
 * After a successful prepare: remember the statement's fingerprint. The
 * text is sqlite3_sql()'s (UTF-8 for every prepare but the legacy
 * sqlite3_prepare and sqlite3_prepare16, which keep none): else the
 * app's zsql up to the tail, converted when utf16.
 */
static void prepared(sqlite3 *db, sqlite3_stmt *s, const void *zsql,
		     int nbyte, const void *const *tail, int utf16,
		     uint64_t ticks)
{
	if (!s)
		return; /* only whitespace or a comment */
	const char *text = sq.sql(s);
	size_t len;
	int64_t flags = 0;
	char u8[KP_MAX_STR_LEN];
	if (text) {
		len = strlen(text);
	} else if (utf16) { /* legacy sqlite3_prepare16() */
		int cut = 0;
		len = utf16_to_utf8(zsql, utf16_len(zsql, nbyte, tail), u8,
				    sizeof(u8), &cut);
		text = u8;
		if (cut)
			flags |= KP_QF_CUT;
	} else { /* legacy sqlite3_prepare(): up to the tail */
		const char *z = zsql, *t = tail ? *tail : NULL;
		text = z;
		len = t && t >= z ? (size_t)(t - z) :
			nbyte >= 0 ? strnlen(z, (size_t)nbyte) : strlen(z);
	}
	char buf[KP_MAX_STR_LEN + 1];
	uint64_t lit;
	size_t n = kp_query_text(text, len, buf, sizeof(buf), &lit, &flags);
	uint64_t fph = kp_fnv1a(KP_FP_NO_VALUES, buf, n);
	/* the text's id, for every run; a copy only if it has none */
	uint32_t id = kp_qtext_intern(buf, n, fph);
	char *copy = NULL;
	if (!id) {
		copy = kp_arena_alloc(n + 1);
		if (!copy)
			return;
		memcpy(copy, buf, n + 1);
	}
	int ro = sq.stmt_readonly(s) != 0;
	int np = sq.bind_parameter_count(s) > 0;

	struct sq_stmt *e = insert(s);
	if (e) {
		if (e->text)
			kp_arena_free(e->text);
		e->db = db;
		e->conn = conn_id(db);
		e->text_id = id;
		e->text = copy;
		e->len = (uint32_t)n;
		/* the write flag with the text's: one OR less a run */
		e->flags = (uint8_t)(flags | (ro ? 0 : KP_QF_WRITE));
		e->qc_text = 0; /* its first run takes the prepare time */
		e->fp_hash = fph;
		e->lit_hash = lit;
		e->readonly = (uint8_t)ro;
		e->has_params = (uint8_t)np;
		e->prep_ticks = ticks;
		e->running = 0;
		return;
	}
	kp_arena_free(copy); /* no slot: its runs count as lost */
}

/*
 * The value hash of a run: for a statement with parameters, of its
 * expanded text (bound values inlined) — computed for the first
 * VH_SAMPLE runs of a streak of one fingerprint on a thread, which is
 * what N+1 and duplicate detection look at; 0 (unknown) after that, so a
 * long loop does not pay for it on every run.
 */
#define VH_SAMPLE 32

static uint64_t expanded_hash(sqlite3_stmt *s)
{
	if (!sq.expanded_sql || !sq.free)
		return 0;
	int saved = errno; /* it allocates: keep the app's */
	char *x = sq.expanded_sql(s);
	errno = saved;
	if (!x)
		return 0;
	char buf[KP_MAX_STR_LEN + 1];
	struct kp_fp fp;
	kp_fingerprint(x, strlen(x), buf, sizeof(buf), &fp);
	sq.free(x);
	errno = saved;
	return fp.value_hash ? fp.value_hash : 1;
}

static KP_ALWAYS_INLINE uint64_t value_hash(const struct sq_stmt *e,
					    sqlite3_stmt *s)
{
	if (KP_LIKELY(sqt.streak_fp == e->fp_hash)) {
		sqt.streak_n++;
	} else {
		sqt.streak_fp = e->fp_hash;
		sqt.streak_n = 1;
	}
	if (!e->has_params)
		return e->lit_hash;
	if (sqt.streak_n > VH_SAMPLE)
		return 0;
	return expanded_hash(s);
}

/*
 * The run's four counters. sqlite3_stmt_status(s, op, 1) returns
 * aCounter[op] of SQLite's Vdbe (the statement's struct: a u32 array,
 * indexed by op) and zeroes it; four calls took ~115 instructions of the
 * hook's ~460 on a point select. The array's place in the struct depends
 * on SQLite's version and build, so it is learned from the API on the
 * app's own statements, and read straight from the statement only once
 * the API has confirmed it, and then re-checked against the API now and
 * then; any disagreement sends every run back to the API for good, and a
 * run that checks reports the API's values: never a wrong counter.
 *
 * Learning (learn_counters), on a run whose VM_STEP count is not 0: a
 * copy of the struct up to its zSql field (the pointer sqlite3_sql()
 * returns, found by a scan of aligned words from the start: reads that
 * never leave the struct), the four API calls with reset, a second copy;
 * the word that held the VM_STEP count and now holds 0 is aCounter[4]
 * (the API writes nothing else), if the other three changed words, if
 * any, are where aCounter[1..3] go. Then CNT_CHECKS runs each compare the
 * words at that place with the API's values (before its reset; a run's
 * VM_STEP count is never 0) and find them 0 after it, before it is used;
 * then every CNT_RECHECK-th run of a thread does the same.
 */
enum { CNT_LEARN, CNT_CHECK, CNT_DIRECT, CNT_API };
#define CNT_CHECKS 16
#define CNT_RECHECK 256 /* a power of two: sqt.runs & (CNT_RECHECK - 1) */
#define CNT_TRIES 64    /* runs that may fail to teach it before giving up */
#define CNT_SCAN 1024   /* bytes scanned for zSql */
static _Atomic int cnt_mode;   /* CNT_*; CNT_API is for good */
static _Atomic long cnt_off;   /* bytes from the statement to aCounter[0] */
static _Atomic unsigned cnt_passed, cnt_tries;
static _Atomic int cnt_learning;

static void counters_api(sqlite3_stmt *s, int64_t *v)
{
	v[KP_Q_FULLSCAN] = sq.stmt_status(s, SQLITE_STMTSTATUS_FULLSCAN_STEP, 1);
	v[KP_Q_SORT] = sq.stmt_status(s, SQLITE_STMTSTATUS_SORT, 1);
	v[KP_Q_AUTOINDEX] = sq.stmt_status(s, SQLITE_STMTSTATUS_AUTOINDEX, 1);
	v[KP_Q_VMSTEP] = sq.stmt_status(s, SQLITE_STMTSTATUS_VM_STEP, 1);
}

static void counters_give_up(const char *why)
{
	atomic_store_explicit(&cnt_mode, CNT_API, memory_order_relaxed);
	if (kp.cfg.sqlite_counters >= 0)
		kp_warn("KOTOBA_PROFILE_SQLITE_COUNTERS=offset=%ld: %s; "
			"using sqlite3_stmt_status", kp.cfg.sqlite_counters,
			why);
}

/*
 * Bytes of s before its zSql field, 0 when not found. The scan reads the
 * statement through process_vm_readv (on this process; learning only, a
 * few runs), which stops at an unmapped page instead of faulting: where
 * zSql is not in the struct (a SQLite whose layout differs), the scan
 * goes past the allocation, maybe to the end of the heap.
 */
static size_t zsql_offset(sqlite3_stmt *s)
{
	const char *z = sq.sql(s);
	if (!z)
		return 0;
	uint64_t copy[CNT_SCAN / 8];
	struct iovec mine = { copy, sizeof(copy) },
		     theirs = { (void *)s, sizeof(copy) };
	int saved = errno;
	ssize_t got = process_vm_readv(getpid(), &mine, 1, &theirs, 1, 0);
	errno = saved;
	for (size_t i = 0; got > 0 && i < (size_t)got / 8; i++)
		if (copy[i] == (uintptr_t)z)
			return i * 8;
	return 0;
}

/* A run while learning: the API's values into v, and maybe the place. */
static void learn_counters(sqlite3_stmt *s, int64_t *v)
{
	uint32_t before[CNT_SCAN / 4], after[CNT_SCAN / 4];
	size_t zo = 0;
	if (kp.cfg.sqlite_counters == KP_SQC_API) {
		atomic_store_explicit(&cnt_mode, CNT_API, memory_order_relaxed);
		counters_api(s, v);
		return;
	}
	if (atomic_exchange_explicit(&cnt_learning, 1, memory_order_acquire)) {
		counters_api(s, v); /* another thread is at it */
		return;
	}
	zo = zsql_offset(s);
	if (zo)
		memcpy(before, s, zo);
	counters_api(s, v);
	long off = -1;
	if (zo && kp.cfg.sqlite_counters >= 0) {
		off = kp.cfg.sqlite_counters; /* a test's: checked as any */
		if (off % 4 || (size_t)off + 20 > zo) {
			counters_give_up("not a place inside the statement");
			goto out;
		}
	} else if (zo && v[KP_Q_VMSTEP]) {
		memcpy(after, s, zo);
		size_t nw = zo / 4;
		for (size_t j = 4; j < nw && off < 0; j++) {
			if (before[j] != (uint32_t)v[KP_Q_VMSTEP] || after[j])
				continue;
			/* aCounter[4] at j? then [1..3] below it, and no other
			 * word changed */
			size_t b = j - 4;
			int ok = 1;
			for (size_t k = 0; k < nw && ok; k++) {
				if (k > b && k <= j)
					ok = before[k] ==
						     (uint32_t)v[KP_Q_FULLSCAN +
								 (k - b - 1)] &&
					     !after[k];
				else
					ok = before[k] == after[k];
			}
			if (ok)
				off = (long)(b * 4);
		}
	}
	if (off >= 0) {
		atomic_store_explicit(&cnt_off, off, memory_order_relaxed);
		int m = CNT_LEARN;
		atomic_compare_exchange_strong_explicit(&cnt_mode, &m, CNT_CHECK,
							memory_order_release,
							memory_order_relaxed);
	} else if (atomic_fetch_add_explicit(&cnt_tries, 1,
					     memory_order_relaxed) >= CNT_TRIES) {
		counters_give_up("no place found");
	}
out:
	atomic_store_explicit(&cnt_learning, 0, memory_order_release);
}

/* The counters other than by the direct read: the API's, with a check of
 * the place when there is one. */
static __attribute__((noinline)) void counters_slow(sqlite3_stmt *s,
						    int64_t *v)
{
	int m = atomic_load_explicit(&cnt_mode, memory_order_acquire);
	if (m == CNT_LEARN) {
		learn_counters(s, v);
		return;
	}
	if (m == CNT_API) {
		counters_api(s, v);
		return;
	}
	const char *p = (const char *)s +
			atomic_load_explicit(&cnt_off, memory_order_relaxed);
	uint32_t d[4], z[4];
	memcpy(d, p + 4, 16);
	counters_api(s, v);
	memcpy(z, p + 4, 16);
	int ok = v[KP_Q_VMSTEP] != 0;
	for (int i = 0; i < 4; i++)
		ok &= d[i] == (uint32_t)v[KP_Q_FULLSCAN + i] && !z[i];
	if (!ok) {
		counters_give_up("the check against the API failed");
		return;
	}
	if (m == CNT_CHECK &&
	    atomic_fetch_add_explicit(&cnt_passed, 1, memory_order_relaxed) +
			    1 >= CNT_CHECKS) {
		int c = CNT_CHECK;
		atomic_compare_exchange_strong_explicit(&cnt_mode, &c,
							CNT_DIRECT,
							memory_order_relaxed,
							memory_order_relaxed);
	}
}

/* The run's counters, and reset, straight from the statement (see
 * above) as two words, aCounter[1..2] and [3..4]: @return 0, having read
 * nothing, when they are to come through counters_slow. */
static KP_ALWAYS_INLINE int counters_direct(sqlite3_stmt *s, uint64_t *w01,
					    uint64_t *w23)
{
	if (KP_LIKELY(atomic_load_explicit(&cnt_mode, memory_order_acquire) ==
		      CNT_DIRECT) &&
	    KP_LIKELY(sqt.runs & (CNT_RECHECK - 1))) {
		char *p = (char *)s +
			  atomic_load_explicit(&cnt_off, memory_order_relaxed);
		memcpy(w01, p + 4, 8); /* fullscan | sort << 32 */
		memcpy(w23, p + 12, 8); /* autoindex | vmstep << 32 */
		memset(p + 4, 0, 16);
		return 1;
	}
	return 0;
}

/* kp_ticks(), in the recording step's copy for a TSC clock (tsc, a
 * constant there: step_rec_tsc) without the test of kp.use_tsc. */
static KP_ALWAYS_INLINE uint64_t sq_ticks(int tsc)
{
#if defined(__x86_64__) || defined(__i386__)
	if (tsc)
		return __rdtsc();
#else
	(void)tsc;
#endif
	return kp_ticks();
}

/* KP_QC_TEXT of e's packed QUERYs, 0 when they cannot be packed. */
static uint64_t qc_text_of(const struct sq_stmt *e)
{
	if (!e->text_id || e->conn >= 1u << 16)
		return 0;
	return kp_qc_text(e->text_id, e->conn, e->flags);
}

/* The end of a run whose QUERY takes the whole form (end_run): its
 * values into v[], the counters from w01 and w23 when direct, else from
 * counters_slow. sqlite3_stmt_status returns each u32 as an int: so do
 * these. */
static __attribute__((noinline)) void end_run_whole(
	struct sq_stmt *e, sqlite3_stmt *s, uint64_t now, int64_t rows,
	int64_t status, uint64_t vh, int direct, uint64_t w01, uint64_t w23)
{
	uint64_t prep = e->prep_ticks;
	e->prep_ticks = 0;
	e->qc_text = qc_text_of(e); /* the next runs may be packed */
	int64_t v[KP_Q_NV];
	v[KP_Q_CTX] = (int64_t)e->ctx;
	v[KP_Q_ROWS] = rows;
	v[KP_Q_STATUS] = status;
	if (direct) {
		v[KP_Q_FULLSCAN] = (int32_t)(uint32_t)w01;
		v[KP_Q_SORT] = (int32_t)(uint32_t)(w01 >> 32);
		v[KP_Q_AUTOINDEX] = (int32_t)(uint32_t)w23;
		v[KP_Q_VMSTEP] = (int32_t)(uint32_t)(w23 >> 32);
	} else {
		counters_slow(s, v);
	}
	v[KP_Q_PREPARE_DUR] = (int64_t)prep;
	v[KP_Q_VALHASH] = (int64_t)vh;
	v[KP_Q_FLAGS] = e->flags | (e->autocommit ? KP_QF_AUTOCOMMIT : 0);
	v[KP_Q_CONN] = (int64_t)e->conn;
	if (KP_LIKELY(e->text_id)) {
		kp_query_close_id_at(KP_QSRC_SQLITE, e->tsc0, now, e->text_id,
				     v, e->stack);
	} else {
		int saved = errno;
		kp_query_close(KP_QSRC_SQLITE, e->tsc0, 0, e->text, e->len, 1,
			       v, e->stack);
		errno = saved;
	}
}

/* End the run of e (keeps errno): inline in sqlite3_step's recording
 * path, where nearly every run ends, out of line (end_run_out) for reset
 * and finalize; its stack is the one start_run took. A run without an
 * error or prepare time, whose counters are read straight and fit, takes
 * the packed QUERY (kp_query_close_packed), from values in registers; any
 * other, the whole one (end_run_whole). */
static KP_ALWAYS_INLINE void end_run(struct sq_stmt *e, sqlite3_stmt *s,
				     int rc, int tsc)
{
	int64_t rows = e->rows;
	if (!e->readonly)
		rows += sq.total_changes(e->db) - e->changes0;
	int64_t status = rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : rc;
	uint64_t w01 = 0, w23 = 0;
	int direct = counters_direct(s, &w01, &w23);
	uint64_t vh = value_hash(e, s);
	e->running = 0;
	uint64_t now = sq_ticks(tsc);
	/* qc_text is 0 while a prepare time waits (qc_text_of) */
	if (KP_LIKELY(direct) && KP_LIKELY(e->qc_text) &&
	    KP_LIKELY(!((uint64_t)status | (uint64_t)rows >> 32 |
			((w01 | w23) & 0xffff0000ffff0000u)))) {
		kp_query_close_packed(KP_QSRC_SQLITE, e->tsc0, now, e->ctx,
				      (uint64_t)rows, kp_qc_counters(w01, w23),
				      e->qc_text |
					      kp_qc_text(0, 0, e->autocommit),
				      vh, e->stack);
		return;
	}
	end_run_whole(e, s, now, rows, status, vh, direct, w01, w23);
}

static __attribute__((noinline)) void end_run_out(struct sq_stmt *e,
						  sqlite3_stmt *s, int rc)
{
	end_run(e, s, rc, 0);
}

/* ---- the interposers ---------------------------------------------------------- */

int sqlite3_prepare_v2(sqlite3 *, const char *, int, sqlite3_stmt **,
		       const char **);
int sqlite3_prepare_v3(sqlite3 *, const char *, int, unsigned,
		       sqlite3_stmt **, const char **);
int sqlite3_prepare(sqlite3 *, const char *, int, sqlite3_stmt **,
		    const char **);
int sqlite3_prepare16(sqlite3 *, const void *, int, sqlite3_stmt **,
		      const void **);
int sqlite3_prepare16_v2(sqlite3 *, const void *, int, sqlite3_stmt **,
			 const void **);
int sqlite3_prepare16_v3(sqlite3 *, const void *, int, unsigned,
			 sqlite3_stmt **, const void **);
int sqlite3_step(sqlite3_stmt *);
int sqlite3_reset(sqlite3_stmt *);
int sqlite3_finalize(sqlite3_stmt *);
int sqlite3_exec(sqlite3 *, const char *,
		 int (*)(void *, int, char **, char **), void *, char **);

#define SQ_ENTER(fn, ...)                                                \
	do {                                                             \
		const void *ra_ = __builtin_return_address(0);           \
		if (KP_UNLIKELY(!sq_resolve_from(ra_)) || !sq.fn)        \
			return SQLITE_MISUSE;                            \
		struct sq_lib *L_ = sq_callee(ra_);                      \
		if (KP_UNLIKELY(L_ != NULL))                             \
			return L_->fn ? L_->fn(__VA_ARGS__) : SQLITE_MISUSE; \
		if (!want())                                             \
			return sq.fn(__VA_ARGS__);                       \
	} while (0)

/* What every prepare does once the real one returned rc. */
static int after_prepare(int rc, sqlite3 *db, sqlite3_stmt **st,
			 const void *z, int n, const void *const *tail,
			 int utf16, uint64_t t0)
{
	uint64_t t1 = kp_ticks();
	if (rc == SQLITE_OK && st) {
		int saved = errno;
		kp_tls.busy = 1;
		prepared(db, *st, z, n, tail, utf16, t1 - t0);
		kp_busy_leave();
		errno = saved;
	}
	return rc;
}

#define PREPARE_BODY(fn, utf16, db, z, n, st, tail, ...)                    \
	do {                                                                 \
		SQ_ENTER(fn, __VA_ARGS__);                                   \
		uint64_t t0 = kp_ticks();                                    \
		kp_tls.in_sqlite = 1;                                        \
		int rc = sq.fn(__VA_ARGS__);                                 \
		kp_tls.in_sqlite = 0;                                        \
		return after_prepare(rc, db, st, z, n,                       \
				     (const void *const *)(tail), utf16, t0); \
	} while (0)

KP_EXPORT int sqlite3_prepare_v2(sqlite3 *db, const char *z, int n,
				 sqlite3_stmt **st, const char **tail)
{
	PREPARE_BODY(prepare_v2, 0, db, z, n, st, tail, db, z, n, st, tail);
}

KP_EXPORT int sqlite3_prepare_v3(sqlite3 *db, const char *z, int n,
				 unsigned flags, sqlite3_stmt **st,
				 const char **tail)
{
	PREPARE_BODY(prepare_v3, 0, db, z, n, st, tail, db, z, n, flags, st,
		     tail);
}

KP_EXPORT int sqlite3_prepare(sqlite3 *db, const char *z, int n,
			      sqlite3_stmt **st, const char **tail)
{
	PREPARE_BODY(prepare, 0, db, z, n, st, tail, db, z, n, st, tail);
}

KP_EXPORT int sqlite3_prepare16(sqlite3 *db, const void *z, int n,
				sqlite3_stmt **st, const void **tail)
{
	PREPARE_BODY(prepare16, 1, db, z, n, st, tail, db, z, n, st, tail);
}

KP_EXPORT int sqlite3_prepare16_v2(sqlite3 *db, const void *z, int n,
				   sqlite3_stmt **st, const void **tail)
{
	PREPARE_BODY(prepare16_v2, 1, db, z, n, st, tail, db, z, n, st, tail);
}

KP_EXPORT int sqlite3_prepare16_v3(sqlite3 *db, const void *z, int n,
				   unsigned flags, sqlite3_stmt **st,
				   const void **tail)
{
	PREPARE_BODY(prepare16_v3, 1, db, z, n, st, tail, db, z, n, flags, st,
		     tail);
}

/* The first step of a run of e (a prepare or reset before it). Its stack,
 * the query's call site, is taken here, before its clock starts: where
 * the app began it (a Python execute(), not the fetchone() whose step
 * ends it). It is remembered in e->memo (kp_stack_capture_memo_at): a
 * statement is mostly run from one place; inline in sqlite3_step's
 * recording path, no frames of its own add return addresses to the walk.
 * Keeps errno; allocates only from kprof's arena (busy). */
static KP_ALWAYS_INLINE void start_run(struct sq_stmt *e, int tsc)
{
	e->running = 1;
	e->rows = 0;
	e->autocommit = (uint8_t)(sq.get_autocommit(e->db) != 0);
	if (!e->readonly)
		e->changes0 = sq.total_changes(e->db);
	kp_tls.busy = 1;
	e->stack = kp_query_stack(&e->memo);
	kp_busy_leave();
	e->tsc0 = sq_ticks(tsc);
	e->ctx = kp_query_open(e->tsc0);
}

/* sqlite3_step when recording: out of line, so that the interposer
 * itself, when it passes the call through, jumps to SQLite's without
 * saving a register; in two copies, tsc 1 for a TSC clock (step_rec_tsc,
 * which reads it without a test) and 0 for any. */
static KP_ALWAYS_INLINE int step_rec_t(sqlite3_stmt *s, int tsc)
{
	struct kp_tls *t = &kp_tls;
	/* the slot stays this statement's until its finalize: one lookup,
	 * mostly the thread's last one again */
	struct sq_stmt *e = find_last(s);
	if (e && !e->running)
		start_run(e, tsc); /* kp_query_open sets busy if it pushes */

	/* in_sqlite (0 here) and db_call (a sleep now is the busy
	 * handler's: hook_wait.c) set with one store, restored with one */
	uint16_t was, on = 0x0101;
	memcpy(&was, &t->db_call, 2);
	memcpy(&t->db_call, &on, 2);
	int rc = sq.step(s); /* its allocations and I/O are the query's */
	memcpy(&t->db_call, &was, 2);

	if (e && e->running) {
		if (rc == SQLITE_ROW) {
			e->rows++;
		} else {
			/* the end of the run, inline: see end_run */
			t->busy = 1;
			sqt.runs++;
			end_run(e, s, rc, tsc);
			kp_busy_leave();
		}
	} else if (KP_UNLIKELY(!e) && rc != SQLITE_ROW) {
		untracked_step_end(s, rc);
	}
	return rc;
}

static __attribute__((noinline)) int step_rec(sqlite3_stmt *s)
{
	return step_rec_t(s, 0);
}

static __attribute__((noinline)) int step_rec_tsc(sqlite3_stmt *s)
{
	return step_rec_t(s, 1);
}

/* The copy sqlite3_step jumps to: step_rec until step_other has seen the
 * clock (either is right at any time). */
static int (*_Atomic sq_rec)(sqlite3_stmt *) = step_rec;

/*
 * What sqlite3_step does when its thread may record (not nested, not
 * busy, not the writer) and kprof runs: SQ_REC, record (libsqlite3
 * resolved, KOTOBA_PROFILE_QUERY and the sqlite hook on); SQ_OFF, pass
 * through (the query profiler or this hook off); all of it fixed once
 * known, so that sqlite3_step's common case is a load of this, the
 * thread's flags and the run state. 0 until the first sqlite3_step that
 * gets that far (step_other) knows it; SQ_MULTI for good once a call
 * bound to another SQLite was seen (sq_callee): every step then goes
 * through step_other.
 */
#define SQ_REC 1
#define SQ_OFF 2

/* sqlite3_step other than in sq_mode's common case: the first ones
 * (resolving), a nested one, the writer's, a busy thread's. */
static __attribute__((noinline)) int step_other(sqlite3_stmt *s,
						const void *ra)
{
	if (KP_UNLIKELY(!sq_resolve_from(ra)) || !sq.step)
		return SQLITE_MISUSE;
	struct sq_lib *L = foreign(ra);
	if (L) {
		int rc = L->step(s);
		foreign_end(L, s, rc);
		return rc;
	}
	if (kp_tls.in_sqlite || kp_tls.busy || kp_tls.writer || !kp_ready())
		return sq.step(s);
	int on = kp.cfg.query && (kp.cfg.query_hooks & KP_QHOOK_SQLITE);
	if (kp.use_tsc)
		atomic_store_explicit(&sq_rec, step_rec_tsc,
				      memory_order_relaxed);
	/* from 0 only: SQ_MULTI stays */
	int m = 0;
	atomic_compare_exchange_strong_explicit(&sq_mode, &m,
						on ? SQ_REC : SQ_OFF,
						memory_order_relaxed,
						memory_order_relaxed);
	return on ? atomic_load_explicit(&sq_rec, memory_order_relaxed)(s) :
		    sq.step(s);
}

KP_EXPORT int sqlite3_step(sqlite3_stmt *s)
{
	/* want()'s checks, the ones that never change first; every branch
	 * jumps, so this saves no register */
	int m = atomic_load_explicit(&sq_mode, memory_order_relaxed);
	if (KP_LIKELY(m == SQ_REC) && !kp_tls.in_sqlite && !kp_tls.busy &&
	    !kp_tls.writer && KP_LIKELY(kp_recording()))
		return atomic_load_explicit(&sq_rec, memory_order_relaxed)(s);
	if (m == SQ_OFF)
		return sq.step(s);
	return step_other(s, __builtin_return_address(0));
}

/* A run still open when the app resets or finalizes its statement. */
static __attribute__((noinline)) void end_open_run(struct sq_stmt *e, sqlite3_stmt *s, int forget)
{
	int saved = errno;
	kp_tls.busy = 1;
	if (e->running) {
		sqt.runs++;
		end_run_out(e, s, SQLITE_DONE);
	}
	if (forget) {
		kp_arena_free(e->text);
		erase(e);
	}
	kp_busy_leave();
	errno = saved;
}

/* sqlite3_reset of a statement whose run is still open. */
static __attribute__((noinline)) int reset_open(sqlite3_stmt *s,
						struct sq_stmt *e)
{
	if (want())
		end_open_run(e, s, 0);
	return sq.reset(s);
}

/* A reset or finalize of s, which has no slot (untracked_step_end): a
 * run still going ends here, where the hook would have recorded it. */
static __attribute__((noinline)) void untracked_cut(sqlite3_stmt *s)
{
	if (s && sq.stmt_busy &&
	    atomic_load_explicit(&sq_mode, memory_order_relaxed) == SQ_REC &&
	    !kp_tls.in_sqlite && !kp_tls.busy && !kp_tls.writer &&
	    sq.stmt_busy(s))
		lost_run();
}

/* sqlite3_reset of a statement without a slot: maybe another SQLite's
 * (sq_callee). */
static __attribute__((noinline)) int reset_noslot(sqlite3_stmt *s,
						  const void *ra)
{
	struct sq_lib *L = foreign(ra);
	if (L) {
		foreign_end(L, s, 0);
		return L->reset(s);
	}
	untracked_cut(s);
	return sq.reset(s);
}

/* sqlite3_reset before the table of statements exists, or of NULL. */
static __attribute__((noinline)) int reset_other(sqlite3_stmt *s,
						 const void *ra)
{
	if (KP_UNLIKELY(!sq_resolve_from(ra)) || !sq.reset)
		return SQLITE_MISUSE;
	struct sq_stmt *e = s ? find(s) : NULL;
	if (KP_UNLIKELY(e && e->running))
		return reset_open(s, e);
	if (!e)
		return reset_noslot(s, ra);
	return sq.reset(s);
}

KP_EXPORT int sqlite3_reset(sqlite3_stmt *s)
{
	/* The table exists only once libsqlite3 was resolved (a prepare
	 * made it): then sq.reset is known. Every path is a jump, so this
	 * one needs no frame. A run that stepped to its end has nothing
	 * left to do here. */
	if (KP_LIKELY(s == sqt.last)) { /* never NULL */
		/* the statement last stepped (the table exists) */
		struct sq_stmt *e = sqt.last_e;
		if (KP_LIKELY(atomic_load_explicit(slot_key(e),
						   memory_order_acquire) == s)) {
			if (KP_UNLIKELY(e->running))
				return reset_open(s, e);
			return sq.reset(s);
		}
	}
	struct sq_tab *t = atomic_load_explicit(&tab, memory_order_acquire);
	if (KP_UNLIKELY(t == NULL) || KP_UNLIKELY(s == NULL)) {
		/* the hook off: no table is made, no run is open; straight
		 * through (38 instructions a reset went to looking for the
		 * statement, in reset_other, before) */
		int (*real)(sqlite3_stmt *) = sq.reset;
		if (atomic_load_explicit(&sq_mode, memory_order_relaxed) ==
			    SQ_OFF &&
		    real)
			return real(s);
		return reset_other(s, __builtin_return_address(0));
	}
	struct sq_stmt *e = find_in(t, s);
	if (KP_UNLIKELY(e && e->running))
		return reset_open(s, e);
	if (KP_UNLIKELY(!e))
		return reset_noslot(s, __builtin_return_address(0));
	return sq.reset(s);
}

KP_EXPORT int sqlite3_finalize(sqlite3_stmt *s)
{
	const void *ra = __builtin_return_address(0);
	if (KP_UNLIKELY(!sq_resolve_from(ra)) || !sq.finalize)
		return SQLITE_MISUSE;
	struct sq_stmt *e = s ? find(s) : NULL;
	struct sq_lib *L = e ? NULL : foreign(ra);
	if (L) {
		foreign_end(L, s, 0);
		return L->finalize(s);
	}
	/* always forget the statement, even when not recording now: its
	 * address may come back for another one */
	if (s && !kp_tls.busy && !kp_tls.writer) {
		if (e)
			end_open_run(e, s, 1);
		else
			untracked_cut(s);
	}
	return sq.finalize(s);
}

/* The app's callback of a sqlite3_exec, run outside in_exec: its own
 * calls (a nested exec, a statement of its own) are the app's. */
struct exec_cb {
	int (*cb)(void *, int, char **, char **);
	void *arg;
};

static int exec_tramp(void *p, int n, char **v, char **names)
{
	const struct exec_cb *x = p;
	unsigned lost = sqt.exec_lost;
	sqt.in_exec = 0;
	int r = x->cb(x->arg, n, v, names);
	sqt.in_exec = 1;
	sqt.exec_lost = lost;
	return r;
}

KP_EXPORT int sqlite3_exec(sqlite3 *db, const char *sql,
			   int (*cb)(void *, int, char **, char **), void *arg,
			   char **err)
{
	SQ_ENTER(exec, db, sql, cb, arg, err);
	if (sqt.in_exec) /* SQLite's own, inside (its schema): the outer's */
		return sq.exec(db, sql, cb, arg, err);
	unsigned before = sqt.runs;
	struct exec_cb x = { cb, arg };
	sqt.in_exec = 1;
	sqt.exec_lost = 0;
	uint64_t t0 = kp_ticks();
	int rc = sq.exec(db, sql, cb ? exec_tramp : NULL, cb ? &x : arg, err);
	sqt.in_exec = 0;
	/* its statements did not come through the hooks above: its own
	 * QUERY covers them, and the runs it stepped unseen (lost_run) */
	int whole = sqt.runs == before && sql && !kp_tls.busy;
	if (!whole && sqt.exec_lost)
		atomic_fetch_add_explicit(&lost_runs, sqt.exec_lost,
					  memory_order_relaxed);
	if (whole) {
		int saved = errno;
		kp_tls.busy = 1;
		int64_t v[KP_Q_NV] = { 0 };
		v[KP_Q_STATUS] = rc;
		v[KP_Q_FLAGS] = KP_QF_EXEC;
		v[KP_Q_CONN] = (int64_t)conn_id(db);
		kp_query_close(KP_QSRC_SQLITE, t0, 0, sql, strlen(sql), 0, v,
			       kp_query_stack(NULL));
		kp_busy_leave();
		errno = saved;
	}
	return rc;
}
