/* SPDX-License-Identifier: MIT */
/*
 * The shared model of kprof-analyze: options, the analysis context, the
 * per-process record, the stack/module tables and the pass interface.
 *
 * Data flow: load.c reads one trace at a time in a single streaming pass.
 * Metadata records (STACK, MODULE, THREAD_*, LOST, END, ...) go to every pass
 * in file order as they arrive; event records (ALLOC, FREE, REALLOC and the
 * extensions) are collected per frame, merged by timestamp (order.c, on the
 * read-ahead thread of readahead.c) and then handed to every pass in time
 * order. After the last trace, each pass merges its per-process results
 * and renders them. Nothing here keeps events: memory is bounded by what is
 * live (blocks) and what is unique (stacks, modules, sites).
 *
 * No global mutable state: everything hangs off struct kp_analysis.
 */
#ifndef KP_ANALYZE_H
#define KP_ANALYZE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "compat.h"
#include "kpz.h"
#include "record.h"

/* ---- usage.c: git-style messages, allocation that dies on OOM ---------- */

#define KP_PROG "kprof-analyze"

/* Print "kprof-analyze: <msg>" on stderr. @return -1 (error). */
int error(const char *fmt, ...) KP_PRINTF(1, 2);
void warning(const char *fmt, ...) KP_PRINTF(1, 2);
/* Print the message and exit(status). Only main() and option parsing. */
void die(int status, const char *fmt, ...) KP_PRINTF(2, 3)
	__attribute__((noreturn));

/*
 * Allocation for the analyzer. Running out of memory is reported as one
 * line and exit status 1: every allocation is bounded by what the trace
 * holds live, so there is nothing sensible to fall back to.
 */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
void *xrealloc_array(void *p, size_t n, size_t size);
char *xstrndup(const char *s, size_t n);
char *xstrdup(const char *s);

/* Saturating arithmetic: hostile traces carry huge counts and sizes. */
static inline uint64_t kp_sat_add(uint64_t a, uint64_t b)
{
	uint64_t r;
	return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static inline uint64_t kp_sat_mul(uint64_t a, uint64_t b)
{
	uint64_t r;
	return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

/* Does s begin with p? */
static inline int kp_has_prefix(const char *s, const char *p)
{
	return !strncmp(s, p, strlen(p));
}

static inline uint64_t kp_sat_sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

/* A 64-bit mixer (splitmix64 finaliser) with a per-run seed. */
static inline uint64_t kp_mix64(uint64_t x, uint64_t seed)
{
	x ^= seed;
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

uint64_t kp_hash_bytes(const void *p, size_t n, uint64_t seed);

/* A random seed for the hash tables, so inputs cannot be built to collide. */
uint64_t kp_random_seed(void);

/* ---- options ----------------------------------------------------------- */

enum kp_format { KP_FMT_TEXT, KP_FMT_JSON, KP_FMT_HTML };

/* A suppression (suppress.c): the findings of the advice it leaves out. */
struct kp_suppress_rule {
	char *text;    /* as given: CODE or CODE:PATTERN */
	char *code;    /* a glob of advice codes */
	char *pattern; /* NULL, or a glob of the key and the stack's frames */
	char *from;    /* where it was given: "--suppress", or FILE:LINE */
};

struct kp_suppress {
	struct kp_suppress_rule *v;
	size_t n;
};

struct kp_opts {
	enum kp_format format; /* --format */
	/* "summary" (every pass's section), "leaks", "dump", or the command
	 * of a pass (struct kp_pass.command): that pass's report in full */
	const char *command;
	unsigned top;          /* --top N: rows per "top" table */
	const char *output;    /* -o FILE, NULL = stdout */
	int stats;             /* --stats: throughput on stderr */
	int no_symbols;        /* --no-symbols: module+offset only */
	const char *perf_map_dir; /* --perf-map-dir DIR: JIT maps (/tmp) */
	const char *sqlite_db; /* --sqlite-db FILE: verify index advice */
	const char *pg_dsn;    /* --pg-dsn DSN: plan libpq queries (psql) */
	long slow_ms;          /* --slow-ms MS: slow query threshold, -1 unset */
	const char *order_by;  /* --order-by KEY: queries' ranking (NULL:
				* total) */
	unsigned nplus1_min;   /* --n-plus-one-min K: an N+1's shortest run
				* (0: queries.c's default) */
	unsigned storm_min;    /* --storm-min N: a write storm's fewest
				* writes (0: the default) */
	const char *what;      /* flame --what cpu|alloc|live|io */
	int folded;            /* flame --folded: folded stacks, not SVG */
	const char *pprof;     /* export --pprof FILE */
	const char *chrome;    /* export --chrome FILE */
	uint64_t chrome_min_ns; /* export --io-min-us: I/O calls shown */
	int chrome_min_set;     /* ... given (else 100 us) */
	char **base;            /* diff --base FILE, each one given */
	size_t nbase;
	int fail_on;            /* --fail-on: enum kp_severity, -1 unset */
	/* --advice-min CODE=V: the advice rules' thresholds (0: the rule's
	 * default, advise.c) */
	struct kp_advice_min {
		uint64_t leak;      /* MEM01: a leak group's bytes */
		uint64_t temporary; /* MEM02: a site's temporary blocks */
		uint64_t growth;    /* MEM03: the heap's rise, bytes */
		double alloc_cpu;   /* CPU01: the allocator's CPU share */
		double hot;         /* CPU02: one function's CPU share */
	} advice_min;
	struct kp_suppress suppress; /* --suppress, --suppressions */
	/* --leak-kinds: the leak groups listed (and advised on) are those a
	 * leak scan found blocks of these classes in (bit 1 << enum
	 * kp_leak_class), and those no scan saw; 0: all */
	unsigned leak_kinds;
};

/* ---- small open-addressing map u64 -> u32 (stacks.c) ------------------- */

struct kp_idmap {
	uint64_t *keys;  /* KP_IDMAP_EMPTY marks a free slot */
	uint32_t *vals;
	size_t cap;      /* power of two, 0 before first insert */
	size_t n;
	uint64_t seed;
};

#define KP_IDMAP_EMPTY UINT64_MAX

void kp_idmap_init(struct kp_idmap *m);
void kp_idmap_free(struct kp_idmap *m);
/* @return the value of key, or UINT32_MAX if absent. */
uint32_t kp_idmap_get(const struct kp_idmap *m, uint64_t key);
/* Insert key (must be absent and != KP_IDMAP_EMPTY). */
void kp_idmap_put(struct kp_idmap *m, uint64_t key, uint32_t val);
/* Remove key. @return 1 if it was there. */
int kp_idmap_del(struct kp_idmap *m, uint64_t key);

/* ---- global tables: modules and canonical stacks (stacks.c) ------------- */

/*
 * A module file, interned by (path, build-id) across all traces, so a
 * library mapped at different addresses in different processes is one
 * module, and frames are comparable across processes as (module, offset).
 */
struct kp_module {
	char *path;           /* as recorded; "" when unknown */
	uint8_t *build_id;
	uint32_t build_id_len;
	uint32_t next;        /* next module with the same hash, or UINT32_MAX */
	uint64_t hash;
	void *sym;            /* symbols.c state, created lazily */
	int sym_failed;       /* symbols.c: file unusable, warned once */
	int ahead;            /* symbols.c: debug file asked for ahead */
	struct kp_perfmap *jit; /* a JIT's perf map (perfmap.c), else NULL */
	int self;             /* kprof's own library (libkprof.so*) */
};

/*
 * A frame independent of ASLR: module index (0 = the pc lies in no known
 * module) and offset = pc - load bias, i.e. the address addr2line takes.
 * address is the pc as first seen, kept for the report only.
 */
struct kp_frame {
	uint32_t module;
	uint32_t next;   /* kp_analysis.frames: hash chain */
	uint64_t offset;
	uint64_t address;
};

/* A canonical (cross-process) stack: its frames innermost first are
 * kp_analysis.frames[fids[off + d]], d < depth (kp_gframe). */
struct kp_gstack {
	uint64_t off;
	uint32_t depth;
	uint32_t next;   /* hash chain */
	uint64_t hash;
};

/* One symbolized frame, owned by the symbol cache. */
struct kp_symframe {
	const char *function; /* demangled, NULL if unknown */
	const char *file;     /* NULL if no line info */
	int line;             /* 0 if unknown */
	const char *module;   /* module path ("" unknown) */
	uint64_t offset, address;
};

struct kp_symbols; /* symbols.c */

/* ---- processes ---------------------------------------------------------- */

#define KP_MAX_PASSES 12

/* A signal a process sent another one (KILL record). */
struct kp_kill {
	uint64_t ts;     /* ns since its sender's start */
	int64_t target;  /* pid, or minus a process group's id */
	int sig, how;    /* how: enum kp_kill_how */
	uint32_t stack;  /* the sender's trace-local stack, then (at the
			  * trace's end) its canonical stack */
};

/* A process moved to a process group: a PGID record (kills.c). */
struct kp_pgid_move {
	uint64_t at;     /* CLOCK_MONOTONIC ns */
	int64_t pid;     /* the process moved */
	int64_t pgid;    /* its new group */
};

/* What one trace file says about its process (one exec image). */
struct kp_proc {
	char *file;             /* trace file name as given */
	int64_t pid, ppid;
	int forked;             /* the trace began in a fork child (header) */
	int mem_off;            /* allocations not recorded (header config) */
	char *malloc_owner;     /* why: the object whose malloc the app
				 * called, ahead of libkprof.so; or NULL */
	char *exe;
	char **argv;
	uint32_t argc;
	uint64_t start_wall_ns;
	uint64_t duration_ns;   /* END ts, else the last ts seen */
	uint64_t threads;       /* distinct thread ids seen */
	int truncated;          /* no END record, or the file ends in a frame */
	int ended;              /* END seen */
	int end_reason;         /* enum kp_end_reason, valid when ended */
	int64_t exit_status;
	uint64_t lost[KP_REC_TYPE_MAX + 1]; /* LOST count per record type */
	uint64_t lost_total;
	uint64_t records;       /* records decoded */
	uint64_t frames;
	uint64_t forks;         /* FORK records */
	char *exec_path;        /* EXEC record, NULL if none */
	uint32_t exe_id;        /* index of exe in kp_analysis.exes */
	uint64_t start_mono_ns; /* header: CLOCK_MONOTONIC at start */
	struct kp_kill *kills;  /* the signals it sent others (kills.c) */
	size_t nkills, kills_cap;
	int64_t pgid;           /* header: its process group at start (0:
				 * not known, a trace before 4.4) */
	struct kp_pgid_move *moves; /* its PGID records (kills.c) */
	size_t nmoves, moves_cap;
	/* who killed it (kills.c): the last signal another traced process
	 * sent it, when its trace has no END or ends by a signal */
	const struct kp_proc *killer; /* NULL: none known */
	const struct kp_kill *killed_by;
	void *pass_data[KP_MAX_PASSES]; /* per-process results of each pass */
};

/* ---- per-trace state (load.c, stacks.c) ---------------------------------- */

/* A module as mapped in one process. */
struct kp_tmodule {
	uint64_t bias, lo, hi;
	uint32_t gmod;   /* index in kp_analysis.modules */
	uint32_t seq;    /* order of appearance */
	int mapped;      /* 0 after an UNMODULE */
};

/* A STACK of one trace, by local (dense) index. */
struct kp_tstack {
	uint32_t id;      /* the trace's stack id */
	uint32_t depth;   /* 0 for id 0, undefined ids and dropped stacks */
	uint32_t gstack;  /* canonical stack, UINT32_MAX until resolved */
	int defined;
	int jit;          /* a frame lay in no module (kp_trace_name_jit) */
};

/* The query texts of one trace (qtexts.c): QUERY_TEXT id -> text. */
struct kp_qtexts {
	char **text;   /* by id, NULL = not defined */
	uint32_t *len;
	size_t cap;
	uint64_t bytes;
};

/* Define id as s[0..n) (ignored past the limits, or if defined). */
void kp_qtexts_define(struct kp_qtexts *q, uint32_t id, const char *s,
		      uint32_t n);
/* The text of id (NUL-terminated), or NULL when it was not defined. */
const char *kp_qtexts_get(const struct kp_qtexts *q, uint32_t id,
			  uint32_t *n);
void kp_qtexts_free(struct kp_qtexts *q);

struct kp_trace {
	struct kp_analysis *an;
	struct kp_proc *proc;
	const struct kp_header *hdr;
	/* stacks: trace id -> local index. Ids are dense from 1, so small
	 * ids use a direct array (local + 1, 0 = unseen); only ids past
	 * KP_STACK_DIRECT_MAX (a hostile trace) go through the hash map. */
	uint32_t *stack_direct;
	size_t stack_direct_cap;
	struct kp_idmap stack_ids;
	struct kp_tstack *stacks;
	size_t nstacks, stacks_cap;
	size_t npcs;              /* pcs defined (resolved as they come) */
	uint64_t stacks_dropped;  /* over the pcs budget */
	struct kp_prev_stack *prev; /* the last stack resolved (stacks.c) */
	/* modules */
	struct kp_tmodule *mods;
	size_t nmods, mods_cap;
	struct kp_tmodule *mods_sorted; /* built at resolve time */
	/* the JIT map of the process (perfmap.c), as a pseudo-module */
	struct kp_perfmap *jit_rec;     /* from its JIT_CODE records, if any */
	uint32_t jit_mod;               /* valid when jit_state == 1 */
	int jit_state;                  /* 0 not looked for, 1 found, -1 none */
	/* threads */
	struct kp_idmap tids;
	/* their names (THREAD_START, then THREAD_NAME): tid -> index */
	struct kp_idmap tname_ids;
	char **tnames;
	size_t ntnames;
	uint64_t last_ts;
};

/* Limits that keep a hostile trace from exhausting memory or time. */
#define KP_MAX_TRACE_PCS (64u << 20)   /* pcs defined per trace */
#define KP_MAX_TRACE_MODULES 65536
#define KP_MAX_TIDS (1u << 20)         /* distinct tids tracked per trace */
#define KP_MAX_THREAD_NAME 64          /* bytes of a thread's name kept */
#define KP_MAX_QTEXTS (1u << 20)       /* query text ids per trace */
#define KP_MAX_QTEXT_BYTES (256u << 20) /* their text per trace */

/* Stack ids below this use a direct array (16 M ids: 64 MB at most). */
#define KP_STACK_DIRECT_MAX (1u << 24)

/* Local index of stack id (creates an undefined placeholder if unknown). */
uint32_t kp_trace_stack(struct kp_trace *t, uint32_t id);
void kp_trace_define_stack(struct kp_trace *t, uint32_t id,
			   const uint64_t *pcs, uint32_t depth);
void kp_trace_add_module(struct kp_trace *t, const struct kp_rec *rec);
void kp_trace_unmap_module(struct kp_trace *t, const struct kp_rec *rec);
/* The canonical stack of a local stack (resolves modules on first use;
 * call only once all of the trace's MODULE records have been seen). */
uint32_t kp_trace_canon_stack(struct kp_trace *t, uint32_t local);
/* At the end of the trace, before the passes take its stacks: frames in
 * no module that the process's JIT map covers (stacks.c, perfmap.c) move
 * to the map's pseudo-module, so they are named. */
void kp_trace_name_jit(struct kp_trace *t);
void kp_trace_release(struct kp_trace *t);
/* Thread tid's name as the trace last gave it, or NULL. */
const char *kp_trace_thread_name(const struct kp_trace *t, uint32_t tid);

/* ---- JIT code: perf map files (perfmap.c) ---------------------------------- */

#define KP_PERFMAP_MAX (16u << 20)  /* entries read from one map file */

struct kp_perfmap;
/* The entries of a perf map file ("START SIZE NAME" lines, hex), or NULL
 * when it cannot be read or holds none. */
struct kp_perfmap *kp_perfmap_load(const char *path);
/* A map built entry by entry (a trace's JIT_CODE records): add each in
 * order (a later entry wins an overlap; empty ones are skipped), then
 * finish it (-1: it has no entry) before any lookup. */
struct kp_perfmap *kp_perfmap_new(void);
void kp_perfmap_add(struct kp_perfmap *m, uint64_t lo, uint64_t size,
		    const char *name, size_t len);
int kp_perfmap_finish(struct kp_perfmap *m);
/* The name of the code covering pc (the latest line), or NULL. */
const char *kp_perfmap_find(const struct kp_perfmap *m, uint64_t pc);
void kp_perfmap_free(struct kp_perfmap *m);

/* ---- the analysis context ----------------------------------------------- */

struct kp_pass;

struct kp_analysis {
	const struct kp_opts *opts;
	uint64_t seed;
	/* processes, one per trace file */
	struct kp_proc **procs;
	size_t nprocs, procs_cap;
	/* executables (distinct exe strings), for merging leaks */
	char **exes;
	size_t nexes, exes_cap;
	struct kp_idmap exe_ids; /* hash -> first index; collisions chained */
	uint32_t *exe_next;
	/* modules */
	struct kp_module *modules;   /* [0] = unknown */
	size_t nmodules, modules_cap;
	struct kp_idmap module_ids;  /* hash -> first index */
	/* canonical stacks */
	struct kp_gstack *gstacks;   /* [0] = empty stack */
	size_t ngstacks, gstacks_cap;
	/* the distinct frames, by (module, offset): stacks share them (a
	 * compiler's 79,000 stacks hold 3.1 M frames, far fewer distinct) */
	struct kp_frame *frames;
	size_t nframes, frames_cap;
	struct kp_idmap frame_ids;   /* hash -> first index */
	uint32_t *fids;              /* the stacks' frames, as indexes */
	size_t nfids, fids_cap;
	struct kp_idmap gstack_ids;  /* hash -> first index */
	/* passes */
	const struct kp_pass *const *passes;
	size_t npasses;
	void *pass_state[KP_MAX_PASSES];
	/* symbolizer (created at report time) */
	struct kp_symbols *sym;
	/* totals for --stats */
	uint64_t records, events;
	int truncated;           /* any trace truncated */
	uint64_t lost[KP_REC_TYPE_MAX + 1];
	uint64_t lost_total;
};

uint32_t kp_module_intern(struct kp_analysis *an, const char *path,
			  size_t path_len, const uint8_t *bid, size_t bid_len);
/* The canonical stack of frames f[0, depth), innermost first (their
 * addresses are kept only for frames not seen before). */
uint32_t kp_gstack_intern(struct kp_analysis *an, const struct kp_frame *f,
			  uint32_t depth);
uint32_t kp_exe_intern(struct kp_analysis *an, const char *exe);

/* Frame d (0 innermost) of canonical stack g. */
static inline const struct kp_frame *kp_gframe(const struct kp_analysis *an,
					       const struct kp_gstack *g,
					       uint32_t d)
{
	return &an->frames[an->fids[g->off + d]];
}

/* ---- passes -------------------------------------------------------------- */

struct kp_json; /* json.c */

/* Pseudo record types of the split REALLOC (above KP_REC_TYPE_MAX). */
#define KP_EV_REALLOC_FREE 200
#define KP_EV_REALLOC_ALLOC 201

/* An event as the passes see it. */
struct kp_event {
	uint64_t ts;     /* ns since start (absolute); for an extension
			  * event the end of the call (record.h) */
	uint64_t ptr;    /* the block allocated, or the pointer freed;
			  * extension events: see kp_batch_rec() */
	uint64_t size;   /* allocations only */
	uint32_t stack;  /* the trace's stack id (allocations, extensions) */
	uint32_t tid;
	uint8_t type;    /* KP_REC_ALLOC, KP_REC_FREE, KP_EV_REALLOC_*, or an
			  * extension type (>= KP_REC_EXT_MIN) */
	uint8_t kind;    /* allocations: enum kp_alloc_kind; extension kind */
};

/*
 * Events in time order: a frame's, or a part of them (a frame may come in
 * several batches). Valid during the call only.
 */
struct kp_batch {
	const struct kp_event *ev;
	size_t n;
	const struct kp_rec *recs; /* the extension events' records */
	size_t nx;                 /* how many: 0 = allocation events only */
	/* the extension events, in the same order: ev[xev[k]] for k < nxev
	 * (a pass that takes no allocation event walks these instead of
	 * all n) */
	const uint32_t *xev;
	size_t nxev;
};

/* The whole record of an extension event (type >= KP_REC_EXT_MIN): values
 * in u.ext.v, string (NUL-terminated here) in u.ext.str. */
static inline const struct kp_rec *kp_batch_rec(const struct kp_batch *b,
						const struct kp_event *e)
{
	return &b->recs[e->ptr];
}

/*
 * An analysis pass. load.c calls every pass in kp_passes[] for every trace;
 * a new analysis (I/O, queries, CPU) is a new file defining one of these
 * plus one line in kp_passes[] (load.c), without touching the others.
 *
 * Records arrive two ways:
 *   xRecord: every non-event record, in file order, as soon as decoded.
 *            Pointers inside rec are valid during the call only.
 *   xEvents: event records (ALLOC, FREE, REALLOC and the extension
 *            records: I/O, queries, spans, CPU samples) in batches of a
 *            frame or a part of one, merged by timestamp (stable): the
 *            i-th event in time order is b->ev[i]. A REALLOC arrives split in two: type
 *            KP_EV_REALLOC_FREE (ptr = old, at ts) and then
 *            KP_EV_REALLOC_ALLOC (new ptr, size, stack; at ts + dur, kind
 *            KP_ALLOC_REALLOC). Non-event records of the frame may have
 *            been passed to xRecord before its batch arrives.
 * Hooks may be NULL. state is the pass's own (from xInit); per-process
 * results go in proc->pass_data[slot].
 */
struct kp_pass {
	const char *name;
	/* kprof-analyze COMMAND that shows this pass's report in full (its
	 * xReportText checks kp_command_is()), or NULL */
	const char *command;
	void *(*xInit)(struct kp_analysis *an, unsigned slot);
	void (*xBeginTrace)(void *state, struct kp_trace *t);
	void (*xRecord)(void *state, struct kp_trace *t,
			const struct kp_rec *rec);
	void (*xEvents)(void *state, struct kp_trace *t,
			const struct kp_batch *b);
	/* The trace is over (END, EOF, truncation); all MODULE records are
	 * known, so this is where stacks get resolved. */
	void (*xEndTrace)(void *state, struct kp_trace *t);
	/* All traces read: merge and rank. */
	void (*xFinish)(void *state, struct kp_analysis *an);
	/* Lines inside a process block of the text report. */
	void (*xProcText)(void *state, struct kp_analysis *an,
			  const struct kp_proc *p, FILE *out);
	/* Keys inside the process object of the JSON report. */
	void (*xProcJson)(void *state, struct kp_analysis *an,
			  const struct kp_proc *p, struct kp_json *j);
	void (*xReportText)(void *state, struct kp_analysis *an, FILE *out);
	/* Keys at the top level of the JSON report. */
	void (*xReportJson)(void *state, struct kp_analysis *an,
			    struct kp_json *j);
	void (*xFree)(void *state, struct kp_analysis *an);
};

extern const struct kp_pass kp_pass_kills; /* kills.c */
extern const struct kp_pass kp_pass_memory;
extern const struct kp_pass kp_pass_app;
extern const struct kp_pass kp_pass_io; /* io.c */
extern const struct kp_pass kp_pass_queries; /* queries.c */
extern const struct kp_pass kp_pass_cpu; /* cpu.c */
extern const struct kp_pass kp_pass_timeline; /* chrome.c */
extern const struct kp_pass kp_pass_peak; /* peak.c */
extern const struct kp_pass kp_pass_resources; /* resources.c */
/* A process's largest resident size (resources.c), 0 without snapshots. */
uint64_t kp_rss_peak(const struct kp_analysis *an, const struct kp_proc *p);
/* A process's memory cgroup at its last snapshot (resources.c): the bytes
 * it held and its limit, and when (ns from the process's start). 0: no
 * snapshot, or no limit known. */
int kp_cgroup_last(const struct kp_analysis *an, const struct kp_proc *p,
		   uint64_t *usage, uint64_t *limit, uint64_t *at);

/* ---- load.c: the analysis driver ------------------------------------------ */

/* The passes, in report order. */
const struct kp_pass *const *kp_pass_list(size_t *n);
/* The state of pass in an (its xInit's result), or NULL if it is not run. */
void *kp_pass_state(const struct kp_analysis *an, const struct kp_pass *pass);

static inline int kp_command_is(const struct kp_analysis *an, const char *c)
{
	return an->opts->command && strcmp(an->opts->command, c) == 0;
}

/* Read callback of a struct kp_source over an fd (ctx: int *). */
long kp_fd_read(void *ctx, void *buf, size_t n);

/* dump.c: every record of a trace as JSON lines. @return 0 or -1. */
int kp_dump_file(const char *path, FILE *out);

struct kp_analysis *kp_analysis_new(const struct kp_opts *opts);
void kp_analysis_free(struct kp_analysis *an);

/*
 * Analyze one trace read from src; name is used in messages and the report.
 * A truncated trace is not an error (the process is marked truncated).
 * @return 0, or -1 after printing one line "kprof-analyze: NAME: what"
 *         (not a trace, corrupt, newer version, unreadable).
 */
int kp_analysis_add(struct kp_analysis *an, const char *name,
		    const struct kp_source *src);
/* Open path and kp_analysis_add() it. @return 0 or -1 (message printed). */
int kp_analysis_add_file(struct kp_analysis *an, const char *path);
/* After the last trace: let the passes merge. */
void kp_analysis_finish(struct kp_analysis *an);

/*
 * order.c: the events of each frame put in time order, on the read-ahead
 * thread or the driver's. What it takes, it counts (struct
 * kp_order_count), for the driver to add up; what it gives out,
 * kp_order_take() copies to a sink.
 */
struct kp_order;
struct kp_order_count {
	uint64_t records;  /* records taken */
	uint64_t last_ts;  /* the latest time among their events */
	uint32_t tid;      /* their thread */
};
struct kp_order_sink {
	struct kp_event *ev;   /* events, in time order */
	size_t n, ev_cap;
	struct kp_rec *recs;   /* an extension event's record: recs[ev.ptr] */
	size_t nrecs, recs_cap;
	uint32_t *xev;         /* where the extension events are in ev */
	size_t nxev, xev_cap;
	unsigned char *bytes;  /* the records' strings (8-aligned) */
	size_t nbytes, bytes_cap;
};
struct kp_order *kp_order_new(void);
void kp_order_free(struct kp_order *o);
/* A kp_reader_mem() batch of n records: @return 1 when taken (*count
 * says what), or 0 when it did not fit in the frame, which was flushed
 * instead: take its events, then give the batch again. */
int kp_order_mem(struct kp_order *o, const struct kp_mem_rec *m, size_t n,
		 struct kp_order_count *count);
/* A kp_reader_next() record: @return 1 when it was an event, taken (and
 * counted in *count), else 0: then it goes to the passes as a record, after
 * the events kp_order_take() has (a FRAME flushes its frame first). A QUERY
 * that names its text by id is to carry the text (kp_qtexts_get()). */
int kp_order_rec(struct kp_order *o, const struct kp_rec *rec,
		 struct kp_order_count *count);
/* The frame ends (the trace does): its events become the ones to take. */
void kp_order_flush(struct kp_order *o);
/* Whether flushed events are left to take. */
int kp_order_pending(const struct kp_order *o);
/* Whether it holds no event at all (between frames). */
int kp_order_empty(const struct kp_order *o);
/* When none of the flushed events was taken yet and they are in time
 * order as they lie (one thread's, say): all of them in *b, without a
 * copy, valid until the next call on o. @return 1, else 0 (take them). */
int kp_order_whole(struct kp_order *o, struct kp_batch *b);
/* Copy the flushed events, in time order, to s while they fit (the
 * records they name as well). @return 1 when none are left to take. */
int kp_order_take(struct kp_order *o, struct kp_order_sink *s);

/*
 * readahead.c: reader r's results, from a thread of its own that works
 * ahead (or inline if it cannot be started), with the order stage run
 * there or, when this thread is idle, here. r must not be used otherwise until kp_ra_end(). kp_ra_next()
 * fills *out and @return KP_RA_EVENTS (out->batch: events in time order),
 * KP_RA_COUNT (out->count: records that made them), KP_RA_RECORD
 * (out->rec, any other record), all valid until the next call; or the
 * reader's last return, 0 or an error, with kp_reader_frames() of that
 * moment in *frames (again at every call).
 */
enum { KP_RA_RECORD = 1, KP_RA_COUNT, KP_RA_EVENTS };
struct kp_ra_out {
	const struct kp_rec *rec;
	struct kp_order_count count;
	struct kp_batch batch;
};
struct kp_ra;
struct kp_ra *kp_ra_start(struct kp_reader *r);
int kp_ra_next(struct kp_ra *ra, struct kp_ra_out *out, uint64_t *frames);
void kp_ra_end(struct kp_ra *ra);
/* For tests: whether frames are lent to the consumer thread (-1: when it
 * is idle, the default; 0: never; 1: whenever an order stage is free),
 * and how many were. */
extern int kp_ra_lend;
extern uint64_t kp_ra_lent;

/* ---- results of the memory pass (memory.c), for reports and tests ------- */

#define KP_HEAP_SLICES 128 /* even */
/* Allocation size classes: 0 the size 0, c >= 1 sizes [2^(c-1), 2^c). */
#define KP_SIZE_CLASSES 65

/*
 * Frees stamped a little before the allocation they free. A thread that
 * gets a block from another frees it after loading the pointer, but the
 * CPU may read its clock for the FREE (rdtsc, which is not ordered with
 * loads) before that load completes: a FREE 0 to ~100 ns older than the
 * other thread's ALLOC of the block turns up (tests/apps/handoff.c, a few
 * in 100,000 blocks crossing threads; a fence before each stamp made
 * alloc_bench 1.77x where it is 1.50x). A FREE that finds no live block waits here;
 * an ALLOC of that pointer by another thread at most KP_EARLY_NS later is
 * the block it freed, and is freed at once. Direct-mapped: a later early
 * FREE whose pointer maps to the same slot replaces the one there.
 */
#define KP_EARLY_SLOTS 64 /* a power of two */
#define KP_EARLY_NS 1000
struct kp_early {
	struct {
		uint64_t ptr, ts;
		uint32_t tid;
	} e[KP_EARLY_SLOTS];
	uint64_t newest; /* the latest ts added */
	int any;         /* an entry may still be in time */
};

static inline unsigned kp_early_slot(uint64_t ptr)
{
	return (unsigned)((ptr * 0x9e3779b97f4a7c15ull) >> 58) &
	       (KP_EARLY_SLOTS - 1);
}

static inline void kp_early_add(struct kp_early *q, uint64_t ptr,
				uint64_t ts, uint32_t tid)
{
	unsigned i = kp_early_slot(ptr);
	q->e[i].ptr = ptr;
	q->e[i].ts = ts;
	q->e[i].tid = tid;
	if (!q->any || ts > q->newest)
		q->newest = ts;
	q->any = 1;
}

/* Is an ALLOC of ptr at ts by thread tid the block of an early FREE?
 * (Takes that FREE.) */
static KP_ALWAYS_INLINE int kp_early_take(struct kp_early *q, uint64_t ptr,
					  uint64_t ts, uint32_t tid)
{
	if (KP_LIKELY(!q->any))
		return 0;
	if (ts > q->newest + KP_EARLY_NS) {
		q->any = 0; /* every entry is out of time */
		return 0;
	}
	unsigned i = kp_early_slot(ptr);
	if (q->e[i].ptr != ptr || q->e[i].tid == tid || ts < q->e[i].ts ||
	    ts - q->e[i].ts > KP_EARLY_NS)
		return 0;
	q->e[i].ptr = 0;
	return 1;
}

/*
 * Blocks in use at the end of a trace by what the leak scan at its exit
 * (LEAK and LEAK_SCAN records) found them, indexed by enum
 * kp_leak_class: [KP_LEAK_REACHABLE] still reachable, then definitely,
 * indirectly and possibly lost.
 */
struct kp_reach {
	uint64_t blocks[KP_LEAK_CLASS_MAX + 1], bytes[KP_LEAK_CLASS_MAX + 1];
};

static inline uint64_t kp_reach_blocks(const struct kp_reach *r)
{
	uint64_t n = 0;
	for (unsigned c = 0; c <= KP_LEAK_CLASS_MAX; c++)
		n = kp_sat_add(n, r->blocks[c]);
	return n;
}

/* The leak scan of a process, or of all of them (kp_mem_totals()). */
struct kp_leak_scan {
	/* enum kp_leak_scan_status, -1: no LEAK_SCAN record (all of them:
	 * none had one; else the first one that did not run, if any) */
	int status;
	/* status DONE: the blocks in use at the end by class, and those
	 * allocated after the scan (in no class: it did not see them) */
	struct kp_reach reach;
	uint64_t after_blocks, after_bytes;
	uint64_t root_bytes, dur_ns;        /* its roots read, its time */
	uint64_t scanned, not_scanned;      /* all of them: processes */
};

/* The name of a scan's status in the JSON report ("done", "forked",
 * ...) and why it did not run, in words (memory.c). */
const char *kp_leak_scan_name(int status);
/* valgrind's name of a class (enum kp_leak_class): "definite", ... */
const char *kp_leak_kind_name(unsigned c);
const char *kp_leak_scan_why(int status);

struct kp_mem_totals {
	uint64_t alloc_calls, free_calls, realloc_calls;
	uint64_t bytes_allocated, bytes_freed;
	uint64_t peak_bytes, peak_time_ns;
	int64_t peak_pid;
	uint64_t live_bytes, live_blocks; /* in use at exit */
	uint64_t heap_at_snapshot; /* live_bytes at the last SNAPSHOT */
	uint64_t unmatched_frees;
	uint64_t reordered_frees; /* early FREEs paired (struct kp_early) */
	uint64_t evicted;    /* incarnations dropped over the per-pointer cap */
	/* blocks freed by the thread that allocated them before it
	 * allocated or freed anything else (heaptrack's "temporary
	 * allocations", per thread) */
	uint64_t temporary;
	/* a process's heap over time: heap[i] the most in use during
	 * [i * slice_ns, (i + 1) * slice_ns) of the trace's clock, nslices of
	 * them (the last up to the end); slice_ns doubles from 1 ms as the
	 * run grows, so there are at most KP_HEAP_SLICES (memory.c) */
	uint64_t slice_ns, slice_end, slice_max;
	uint32_t nslices;
	uint64_t heap[KP_HEAP_SLICES];
	/* and the least in use in each slice (the heap's floor) */
	uint64_t slice_min;
	uint64_t heap_min[KP_HEAP_SLICES];
	/* the times (ns of the trace, a power of two of 1 ms) between which
	 * the sites' growth was measured (kp_site.grew_bytes): the last such
	 * time before the end, and the one before; 0 and 0 in a run of less
	 * than 2 ms */
	uint64_t grow_from_ns, grow_to_ns;
	/* allocation calls and bytes by size class (KP_SIZE_CLASSES) */
	uint64_t size_calls[KP_SIZE_CLASSES], size_bytes[KP_SIZE_CLASSES];
	struct kp_leak_scan scan;
};

enum kp_confidence { KP_CONF_LOW, KP_CONF_MEDIUM, KP_CONF_HIGH };

/* An allocation site: one canonical stack in one executable. */
struct kp_site {
	uint32_t exe;            /* kp_analysis.exes index */
	uint32_t gstack;
	uint64_t allocs, bytes;  /* allocation calls and bytes from here */
	uint64_t frees;          /* blocks from here that were freed */
	uint64_t temporary;      /* of which temporary (kp_mem_totals) */
	uint64_t peak_bytes;     /* the most in use from here at one time, in
				  * one process (heaptrack's peak consumers) */
	uint64_t leaked_blocks, leaked_bytes;
	/* how much more was in use from here at grow_to_ns than at
	 * grow_from_ns (kp_mem_totals), in its processes together */
	uint64_t grew_bytes;
	int64_t *pids;           /* processes with leaks here */
	uint32_t npids, pids_cap;
	uint32_t nprocs;         /* processes that allocated here */
	int all_startup;         /* every leaked block came in the first 10 % */
	/* the leaked blocks by what the leak scans found them (in the
	 * traces whose scan ran) */
	struct kp_reach reach;
	enum kp_confidence conf; /* set by xFinish for leaks */
	char *reason;            /* why, for leaks (xFinish); else NULL */
};

const struct kp_mem_totals *kp_mem_totals(const struct kp_analysis *an);
const struct kp_mem_totals *kp_mem_proc_totals(const struct kp_analysis *an,
					       const struct kp_proc *p);
/* Sites ranked by xFinish: every leak group by bytes, in order; the
 * rankings below hold every site that has some of what they rank, the
 * first opts->top of them in order, the rest in no order (memory.c). */
size_t kp_mem_leaks(const struct kp_analysis *an,
		    const struct kp_site *const **out);
size_t kp_mem_top_calls(const struct kp_analysis *an,
			const struct kp_site *const **out);
size_t kp_mem_top_bytes(const struct kp_analysis *an,
			const struct kp_site *const **out);
/* Sites with temporary allocations, the most first. */
size_t kp_mem_top_temporary(const struct kp_analysis *an,
			    const struct kp_site *const **out);
/* Sites by the most they held in use at one time, the most first. */
size_t kp_mem_top_peak(const struct kp_analysis *an,
		       const struct kp_site *const **out);
const char *kp_confidence_name(enum kp_confidence c);

/* A leak group's blocks by class when a leak scan saw every one of them,
 * else NULL. */
static inline const struct kp_reach *kp_site_reach(const struct kp_site *s)
{
	return s->leaked_blocks &&
	       kp_reach_blocks(&s->reach) == s->leaked_blocks ? &s->reach
							      : NULL;
}

/* ---- symbols.c ------------------------------------------------------------ */

struct kp_symbols *kp_symbols_new(struct kp_analysis *an, int enabled);
void kp_symbols_free(struct kp_symbols *s);
/*
 * Symbolize frame (module, offset). ret_addr: the pc is a return address,
 * so look up pc - 1 (the call instruction) for function and line.
 * The result is cached and owned by s.
 */
const struct kp_symframe *kp_symbolize(struct kp_symbols *s,
				       const struct kp_frame *f, int ret_addr);
/*
 * Symbolize a canonical stack for display: fills out[] (up to max) and
 * returns the count, after trimming allocator wrapper frames from the top
 * (operator new, std::allocator, __libc_*, strdup, ...; at least one kept).
 * *first is the index in the stack of out[0].
 */
size_t kp_symbolize_stack(struct kp_symbols *s, uint32_t gstack,
			  const struct kp_symframe **out, size_t max,
			  size_t *first);
/* The same from frame skip on, nothing trimmed. */
size_t kp_symbolize_frames(struct kp_symbols *s, uint32_t gstack, size_t skip,
			   const struct kp_symframe **out, size_t max);
/* Is this function name an allocator wrapper (trimmed from the top)? */
int kp_is_alloc_wrapper(const char *fn);
/*
 * The ELF file open on fd with its zlib-compressed sections inflated
 * (debugfile.c), location lists left empty: a copy from the cache or made
 * there, else a memory file (fd is then closed); fd itself if there is
 * nothing to inflate or the file is not one this handles.
 */
int kp_debug_inflate(int fd);
/*
 * Where kp_debug_inflate() keeps its copies: setting is
 * KOTOBA_REPORT_CACHE's value (kprof-analyze(1)): a directory, "" or
 * "off" for none, NULL for the default ($XDG_CACHE_HOME/kprof, else
 * ~/.cache/kprof); max_bytes bounds the copies (0: the default, 512 MiB).
 * Until it is called there is no cache.
 */
void kp_debug_cache_init(const char *setting, uint64_t max_bytes);
/* Write all of buf to fd at off (pwrite). @return 0, or -1 on an error. */
int kp_write_at(int fd, const void *buf, uint64_t len, uint64_t off);
/*
 * Inflate the debug file at path (kp_debug_inflate()) on the thread that
 * works ahead, started on the first call; a path asked for before is
 * ignored.
 */
void kp_debug_ahead(const char *path);
/*
 * The memory file inflated ahead from path, waited for if the thread is at
 * it; -1 if the path was not asked for, is taken already, had nothing to
 * inflate or could not be opened, or the thread has not started on it
 * (the caller inflates it then, and the thread no longer will).
 */
int kp_debug_ahead_take(const char *path);
/* Wait until the thread has done every file queued (for tests). */
void kp_debug_ahead_wait(void);
/* Stop the thread; close and forget what was not taken. */
void kp_debug_ahead_end(void);
/* A stack goes through module: ask for its debug file ahead (unless
 * --no-symbols). Sets the module's ahead flag. */
void kp_symbols_ahead(struct kp_analysis *an, uint32_t module);

/* ---- reports ---------------------------------------------------------------- */

void kp_report_text(struct kp_analysis *an, FILE *out);
void kp_report_json(struct kp_analysis *an, FILE *out);
/* The same without indentation, each stack as {"@": [index, ...]} into
 * the frames that go to frames_out as a JSON array (the HTML page). */
void kp_report_json_page(struct kp_analysis *an, FILE *report_out,
			 FILE *frames_out);
/* report_html.c: the JSON report in a page that draws it. */
void kp_report_html(struct kp_analysis *an, FILE *out);

/* report_text.c helpers shared by passes */
void kp_text_stack(struct kp_analysis *an, FILE *out, uint32_t gstack,
		   size_t max_frames, const char *indent);
/* The same for a CPU sample's stack, whose innermost frame is where the
 * CPU was (in malloc, say), not a call: no frame trimmed. */
void kp_text_sample_stack(struct kp_analysis *an, FILE *out, uint32_t gstack,
			  size_t max_frames, const char *indent);
/* A duration: "8500 ns", "12.3 us", "456.7 ms", "17.89 s" into buf */
const char *kp_fmt_ns(char *buf, size_t n, uint64_t ns);
/* s for one line of text: control bytes -> '?', at most max columns,
 * "..." when cut */
const char *kp_disp(char *buf, size_t n, const char *s, size_t max);
/* s into buf, its first letter lowercase unless the word is all capitals:
 * "Input/output error" -> "input/output error" (messages are lowercase;
 * load.c) */
const char *kp_lower_first(char *buf, size_t n, const char *s);
/* "SIGKILL", or "signal N" for one without a name (report_text.c). */
const char *kp_sig_str(char *buf, size_t n, int64_t sig);
/* What follows the last '/' of path (path itself if none, or if it ends
 * in '/') */
const char *kp_base_name(const char *path);
/* "1,234,567" into buf */
const char *kp_fmt_count(char *buf, size_t n, uint64_t v);
/* "1.2 MiB" into buf */
const char *kp_fmt_bytes(char *buf, size_t n, uint64_t v);
/* "alloc", "free", ... or "type_N" written into buf. */
const char *kp_rec_type_name(unsigned type, char *buf, size_t n);
/* The symbolizer, created on first use. */
struct kp_symbols *kp_analysis_symbols(struct kp_analysis *an);

/* The memory pass's renderers (report_text.c, report_json.c). */
void kp_mem_report_text(struct kp_analysis *an, FILE *out);
void kp_mem_report_json(struct kp_analysis *an, struct kp_json *j);
void kp_mem_proc_text(struct kp_analysis *an, const struct kp_proc *p,
		      FILE *out);
void kp_mem_proc_json(struct kp_analysis *an, const struct kp_proc *p,
		      struct kp_json *j);

/* report_json.c: a JSON frame array for a canonical stack */
void kp_json_stack(struct kp_analysis *an, struct kp_json *j, uint32_t gstack);
/* The same for a CPU sample's stack (kp_text_sample_stack) */
void kp_json_sample_stack(struct kp_analysis *an, struct kp_json *j,
			  uint32_t gstack);

/* The query pass's fingerprints (queries.c), for diff: how many, and the
 * r-th as ranked (--order-by, total time by default; text owned by the
 * pass, not NUL-terminated). */
struct kp_query_fp {
	const char *text;
	size_t len;
	uint64_t calls, total_ns, rows, errors, p95_ns;
};
size_t kp_query_fps(const struct kp_analysis *an);
/* The JSON field fingerprints are ranked by for --order-by KEY ("total"
 * -> "total_ns"), NULL for a key it does not know. */
const char *kp_query_order_field(const char *key);
void kp_query_fp(const struct kp_analysis *an, size_t r,
		 struct kp_query_fp *out);

/* The I/O pass's files (io.c), for diff: how many, and the r-th by time
 * in I/O (path owned by the pass). */
struct kp_io_file {
	const char *path;
	uint64_t calls, bytes_read, bytes_written, syncs, total_ns;
};
size_t kp_io_files(const struct kp_analysis *an);
void kp_io_file(const struct kp_analysis *an, size_t r,
		struct kp_io_file *out);

/* ---- advise.c: every pass's findings, the most at stake first -------------- */

enum kp_severity { KP_SEV_INFO, KP_SEV_WARN, KP_SEV_HIGH };

/*
 * One piece of advice: what is wrong, the numbers that show it, what to
 * do, and where (a canonical stack). What is at stake is what the fix
 * may save, in time (threads summed) or in memory; 0 when the trace does
 * not measure it. The passes that know a finding's details add it
 * (kp_io_advise, kp_query_advise); advise.c ranks them all.
 */
struct kp_advice {
	const char *area;     /* "memory", "io", "queries", "cpu" */
	const char *code;     /* stable: MEM01, IO02, Q01, CPU01 ... */
	enum kp_severity sev;
	uint64_t time_ns;     /* time at stake */
	uint64_t bytes;       /* memory at stake */
	uint32_t gstack;      /* where, 0 = no stack */
	int sample_stack;     /* gstack is a CPU sample's (nothing trimmed) */
	char title[256];      /* one line: what and of what */
	char key[256];        /* its subject, the same in another run of the
			       * program (diff): a site's frames, a file's
			       * name, a fingerprint, a function */
	char evidence[512];   /* the numbers */
	const char *action;   /* what to do (a static string) */
	double share;         /* advise.c: time or memory at stake, as a share
			       * of the run or of the peak heap (the larger) */
	size_t seq;           /* the order it was added in */
};

struct kp_advice_list {
	struct kp_advice *v;
	size_t n, cap;
};

/* A new entry of l, its strings empty. */
struct kp_advice *kp_advice_add(struct kp_advice_list *l, const char *area,
				const char *code, enum kp_severity sev);
const char *kp_severity_name(enum kp_severity s);
/* The severity a name names ("info", "warn", "high"), else -1. */
int kp_severity_parse(const char *name);
/* The I/O pass's findings (io.c) and the query pass's (queries.c), the
 * ones that share the I/O pass's evidence included. */
void kp_io_advise(struct kp_analysis *an, struct kp_advice_list *l);
void kp_query_advise(struct kp_analysis *an, struct kp_advice_list *l);
/* Time in fsync and friends, all files (io.c). */
uint64_t kp_io_sync_ns(const struct kp_analysis *an);

extern const struct kp_pass kp_pass_advise; /* advise.c, last */
/* The advice, ranked (valid until the analysis is freed). */
size_t kp_advice_get(const struct kp_analysis *an,
		     const struct kp_advice **out);
/* Findings of severity sev or above, all passes (--fail-on). */
size_t kp_advice_at_least(const struct kp_analysis *an, enum kp_severity sev);

/* ---- suppress.c: findings the user ruled out -------------------------------- */

/* Add the rule text (CODE or CODE:PATTERN), given at from. @return 0, or
 * -1 after a one-line error (a code that names none of kprof's). */
int kp_suppress_add(struct kp_suppress *s, const char *text, const char *from);
/* Each line of the file at path a rule ('#' comments, blank lines).
 * @return 0, or -1 after a one-line error naming the file and line. */
int kp_suppress_load(struct kp_suppress *s, const char *path);
/* The index of the first rule that suppresses x, -1 for none. */
ssize_t kp_suppress_match(const struct kp_suppress *s, struct kp_analysis *an,
			  const struct kp_advice *x);

/* diff.c: the diff command, the traces of opts->base against files[];
 * @return the exit status (0, or 3: a trace unreadable) */
int kp_diff_command(const struct kp_opts *opts, char *const *files,
		    size_t nfiles, FILE *out);

#endif
