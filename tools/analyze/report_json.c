/* SPDX-License-Identifier: MIT */
/*
 * The JSON report (--format json). This comment is the schema's reference
 * (man/kprof-analyze.1 copies it); change both together.
 *
 * Schema "kprof-report/1". Stability rules: keys are never removed or
 * renamed within /1 and their meaning never changes; new keys may be added
 * anywhere, so consumers must ignore keys they do not know. Integers are
 * exact (unsigned 64-bit unless noted; sizes and counts saturate at
 * 2^64-1). Times are nanoseconds. Strings come from the trace: valid UTF-8
 * is kept, any other byte is written as \u00XX (Latin-1).
 *
 * {
 *   "schema": "kprof-report/1",
 *   "command": str,                    the command given (summary, leaks,
 *                                      memory, io, ...)
 *   "trace": {
 *     "files": [str, ...],             trace files, in the order given
 *     "truncated": bool,               any trace truncated
 *     "events_lost": int,              sum of all LOST counts
 *     "events_lost_by_type": {"alloc": int, "free": int, ...},
 *                                      only types with a non-zero count;
 *                                      names are record types (alloc, free,
 *                                      realloc, stack, module, ..., or
 *                                      "type_N" for types without a name)
 *     "processes": [{                  one per trace file
 *       "pid": int, "ppid": int,       signed
 *       "forked": bool,                recording began in the child of a
 *                                      fork (traces of format 4.1 on): its
 *                                      heap started as its parent's
 *       "exe": str,                    /proc/self/exe at start
 *       "argv": [str, ...],
 *       "start_wall_ns": int,          CLOCK_REALTIME at start
 *       "duration_ns": int,            END time, else the last event seen
 *       "threads": int,                distinct threads seen
 *       "truncated": bool,             no END record or a cut frame
 *       "end_reason": "exit" | "_exit" | "exec" | "abort" | "signal"
 *                     | null,       signal: killed by one left to its
 *                                      default action (exit_status 128 +
 *                                      the signal)
 *                                      null when there is no END record
 *       "exit_status": int | null,     signed; null without END
 *       "file": str,                   its trace file
 *       "events_lost": int,
 *       "exec_path": str | null,       path of an EXEC record
 *       "killed_by": {pid, exe, signal, how, time_ns, stack} | null,
 *                                      its killer (kills.c)
 *       "memory": {
 *         "recorded": bool,            false when the recording took no
 *                                      allocations (KOTOBA_PROFILE_MEMORY=0,
 *                                      or malloc_owner): the figures are 0
 *         "malloc_owner": str | null,  the object whose malloc the program
 *                                      called, ahead of libkprof.so
 *         "alloc_calls": int,          ALLOC + REALLOC events
 *         "free_calls": int,           FREE (non-NULL) + REALLOC events
 *         "realloc_calls": int,
 *         "bytes_allocated": int,      ALLOC sizes + REALLOC new sizes
 *         "bytes_freed": int,          sizes of the blocks freed
 *         "peak_bytes": int,           max bytes live at any time
 *         "peak_time_ns": int,         when (ns since start)
 *         "unmatched_frees": int,
 *         "reordered_frees": int,
 *         "temporary_allocs": int,
 *         "in_use_at_exit": {"bytes": int, "blocks": int},
 *         "timeline": {...},
 *         "leak_scan": scan | null     its leak scan at exit; null: its
 *                                      trace has none
 *       }
 *     }, ...]
 *   },
 *   "memory": {                        all processes together
 *     "recorded": bool,                some process's allocations were
 *                                      recorded
 *     "alloc_calls", "free_calls", "realloc_calls", "bytes_allocated",
 *     "bytes_freed": int,              sums over processes
 *     "peak_bytes": int,               the largest per-process peak ...
 *     "peak_time_ns": int,             ... when, in that process's time
 *     "peak_pid": int | null,          ... and which process
 *     "in_use_at_exit": {"bytes": int, "blocks": int},
 *     "unmatched_frees": int,          frees of blocks never seen allocated
 *                                      (allocated before kprof started; in
 *                                      a forked child, by its parent)
 *     "reordered_frees": int,          frees stamped up to 1 us before the
 *                                      allocation they free, on another
 *                                      thread, and paired with it
 *     "temporary_allocs": int,         blocks freed (or realloc'ed) by the
 *                                      thread that allocated them before it
 *                                      allocated or freed anything else
 *     "sizes": [{"min": int, "calls": int, "bytes": int}, ...]
 *                                      allocation calls by size class
 *                                      [min, 2 min) (min 0: size 0), the
 *                                      classes with calls, smallest first
 *     "top_by_calls": [site, ...],     at most --top, most calls first
 *     "top_by_bytes": [site, ...],     at most --top, most bytes first
 *     "top_by_temporary": [site, ...], at most --top, sites with temporary
 *                                      allocations, the most first
 *     "top_by_peak": [site, ...],      at most --top, the most held at
 *                                      one time first (peak_bytes)
 *     "leaks": [leak, ...],            every group, most bytes first
 *     "leak_scan": scan | null         the leak scans at exit
 *                                      (KOTOBA_PROFILE_LEAK_SCAN), summed
 *                                      over the processes whose scan ran
 *                                      (duration_ns: over all); null when
 *                                      no trace has one; and
 *       "processes_scanned": int,      processes whose scan ran
 *       "processes_not_scanned": int   the others (no LEAK_SCAN record,
 *                                      or one of a scan that did not run)
 *     "leak_kinds": [str, ...] | null  --leak-kinds ("definite",
 *                                      "indirect", "possible",
 *                                      "reachable"): leaks lists the
 *                                      groups with blocks of these (and
 *                                      those no scan saw); null: all
 *   },
 *   "app": {                           kprof.h spans and custom events,
 *                                      by name over all processes
 *     "spans": [{"name": str, "events": int, "total_ns": int,
 *                "p50_ns": int, "p90_ns": int, "p99_ns": int,
 *                "max_ns": int, "unclosed": int}, ...],
 *     "counters": [{"name": str, "events": int, "sum": int}, ...],
 *     "gauges": [{"name": str, "events": int, "min": int, "max": int,
 *                 "last": int}, ...],
 *     "durations": [same keys as spans but "unclosed"]
 *   }                                  (most time or events first)
 * }
 * The io, queries and cpu passes add their objects (io.c, queries.c,
 * cpu.c), and advise.c the findings of all of them, ranked:
 *   "advice": [{"rank": int, "area": str, "code": str, "severity": str,
 *               "title": str, "key": str,  its subject (diff)
 *               "evidence": str, "action": str,
 *               "time_ns": int, "bytes": int,  at stake (0: not measured)
 *               "share": float,     the larger: of the run, of the peak heap
 *               "stack": [frame, ...] | null}, ...]
 *   "advice_min": {"MEM01": int, "MEM02": int, "MEM03": int,  the rules'
 *                  "CPU01": float, "CPU02": float},   thresholds in use
 *
 * site  = {"calls": int, "bytes": int, "frees": int,
 *          "temporary": int,               of the frees, temporary ones
 *          "peak_bytes": int,              the most in use from here at
 *                                          one time (in one process)
 *          "stack": [frame, ...]}
 * leak  = {"bytes": int, "blocks": int,   still live at the end
 *          "confidence": "high" | "medium" | "low",
 *          "reason": str,                  why, in words
 *          "site_allocs": int,             allocations from this stack
 *          "site_frees": int,              of which freed
 *          "pids": [int, ...],             processes with blocks live here
 *          "exe": str,
 *          "stack": [frame, ...],
 *          "reachability": reach | null}  what the leak scans found of
 *                                      these blocks; null unless they saw
 *                                      every one
 * scan  = {"status": "done" | "forked" | "events_lost" | "no_memory"
 *                    | "no_read" | "unknown",  whether it ran, or why
 *                                      not (of all processes: "done",
 *                                      or the first that did not run)
 *          reach's keys,               the blocks in use at exit by
 *                                      class (0s when it did not run)
 *          "after_scan": {"bytes": int, "blocks": int},  in use at exit,
 *                                      allocated after the scan: in none
 *          "root_bytes": int,          roots read (globals, stacks)
 *          "duration_ns": int}         the scan's time (also when it
 *                                      did not run)
 * reach = {"definitely_lost": {"bytes": int, "blocks": int},  valgrind's
 *          "indirectly_lost": {...},   classes: no pointer to the block
 *          "possibly_lost": {...},     is left; only pointers from lost
 *          "still_reachable": {...}}   blocks; only into its middle; a
 *                                      chain of pointers to its start
 * frame = {"function": str | null,         demangled
 *          "file": str | null, "line": int | null,
 *          "module": str,                  path of the ELF file ("" unknown)
 *          "offset": int,                  pc - load bias (for addr2line -e
 *                                          module); the pc if no module
 *          "address": int}                 pc in the first process seen
 * Stacks are innermost first, with allocator wrappers (malloc, operator
 * new, std::allocator, strdup, ...) trimmed from the top; at least one
 * frame is kept. Sites and leaks are grouped by (executable, stack), so
 * processes of one executable (fork children, repeated runs) merge.
 */
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "json.h"

static void json_frame(struct kp_json *j, const struct kp_symframe *f)
{
	/* one line a frame: a report of 20,000 leak groups with their stacks
	 * (g++'s) took 206 MB, half of it indentation */
	kp_json_begin_flat_object(j);
	kp_json_key(j, "function");
	kp_json_str(j, f->function);
	kp_json_key(j, "file");
	kp_json_str(j, f->file);
	kp_json_key(j, "line");
	if (f->file && f->line > 0)
		kp_json_u64(j, (uint64_t)f->line);
	else
		kp_json_null(j);
	kp_json_key(j, "module");
	kp_json_str(j, f->module);
	kp_json_key(j, "offset");
	kp_json_u64(j, f->offset);
	kp_json_key(j, "address");
	kp_json_u64(j, f->address);
	kp_json_end_object(j);
}

/*
 * The HTML page's frames, each once (kp_report_json_page): g++'s 6,900
 * leak groups have 225,000 frames and 4,100 different ones, and as
 * objects they were 34 of the report's 36 MB. A frame is known by its
 * kp_symframe (symbols.c keeps one a module and offset).
 */
struct kp_frame_ids {
	const struct kp_symframe **v; /* by index */
	size_t n, cap;
	uint32_t *slot;               /* open addressing: index + 1, 0 free */
	size_t mask;
};

static void ids_grow(struct kp_frame_ids *t)
{
	size_t size = t->mask ? (t->mask + 1) * 2 : 1024;
	free(t->slot);
	t->slot = xcalloc(size, sizeof(*t->slot));
	t->mask = size - 1;
	for (size_t i = 0; i < t->n; i++) {
		size_t h = ((uintptr_t)t->v[i] >> 4) * 0x9E3779B97F4A7C15ull;
		while (t->slot[h & t->mask])
			h++;
		t->slot[h & t->mask] = (uint32_t)i + 1;
	}
	t->cap = size / 2;
	t->v = xrealloc_array(t->v, t->cap, sizeof(*t->v));
}

static uint32_t frame_id(struct kp_frame_ids *t, const struct kp_symframe *f)
{
	if (t->n == t->cap)
		ids_grow(t);
	size_t h = ((uintptr_t)f >> 4) * 0x9E3779B97F4A7C15ull;
	for (;; h++) {
		uint32_t s = t->slot[h & t->mask];
		if (!s)
			break;
		if (t->v[s - 1] == f)
			return s - 1;
	}
	t->v[t->n] = f;
	t->slot[h & t->mask] = (uint32_t)++t->n;
	return (uint32_t)t->n - 1;
}

static void json_stack(struct kp_analysis *an, struct kp_json *j,
		       uint32_t gstack, int trim)
{
	const struct kp_symframe *f[KP_MAX_STACK_DEPTH];
	size_t first;
	size_t n = trim ? kp_symbolize_stack(kp_analysis_symbols(an), gstack,
					     f, KP_MAX_STACK_DEPTH, &first) :
			  kp_symbolize_frames(kp_analysis_symbols(an), gstack,
					      0, f, KP_MAX_STACK_DEPTH);

	if (j->frame_ids) {
		kp_json_begin_flat_object(j);
		kp_json_key(j, "@");
		kp_json_begin_array(j);
		for (size_t i = 0; i < n; i++)
			kp_json_u64(j, frame_id(j->frame_ids, f[i]));
		kp_json_end_array(j);
		kp_json_end_object(j);
		return;
	}
	kp_json_begin_array(j);
	for (size_t i = 0; i < n; i++)
		json_frame(j, f[i]);
	kp_json_end_array(j);
}

void kp_json_stack(struct kp_analysis *an, struct kp_json *j, uint32_t gstack)
{
	json_stack(an, j, gstack, 1);
}

void kp_json_sample_stack(struct kp_analysis *an, struct kp_json *j,
			  uint32_t gstack)
{
	json_stack(an, j, gstack, 0);
}

static const char *end_reason_name(const struct kp_proc *p)
{
	if (!p->ended)
		return NULL;
	switch (p->end_reason) {
	case KP_END_EXIT: return "exit";
	case KP_END__EXIT: return "_exit";
	case KP_END_EXEC: return "exec";
	case KP_END_ABORT: return "abort";
	case KP_END_SIGNAL: return "signal";
	default: return NULL;
	}
}

static void json_lost(struct kp_json *j, const uint64_t *lost)
{
	kp_json_begin_object(j);
	for (unsigned w = 0; w <= KP_REC_TYPE_MAX; w++) {
		char tn[16];
		if (!lost[w])
			continue;
		kp_json_key(j, kp_rec_type_name(w, tn, sizeof(tn)));
		kp_json_u64(j, lost[w]);
	}
	kp_json_end_object(j);
}

static void json_process(struct kp_analysis *an, const struct kp_proc *p,
			 struct kp_json *j)
{
	kp_json_begin_object(j);
	kp_json_key(j, "pid");
	kp_json_i64(j, p->pid);
	kp_json_key(j, "ppid");
	kp_json_i64(j, p->ppid);
	kp_json_key(j, "forked");
	kp_json_bool(j, p->forked);
	kp_json_key(j, "exe");
	kp_json_str(j, p->exe);
	kp_json_key(j, "argv");
	kp_json_begin_array(j);
	for (uint32_t i = 0; i < p->argc; i++)
		kp_json_str(j, p->argv[i]);
	kp_json_end_array(j);
	kp_json_key(j, "start_wall_ns");
	kp_json_u64(j, p->start_wall_ns);
	kp_json_key(j, "duration_ns");
	kp_json_u64(j, p->duration_ns);
	kp_json_key(j, "threads");
	kp_json_u64(j, p->threads);
	kp_json_key(j, "truncated");
	kp_json_bool(j, p->truncated);
	kp_json_key(j, "end_reason");
	kp_json_str(j, end_reason_name(p));
	kp_json_key(j, "exit_status");
	if (p->ended)
		kp_json_i64(j, p->exit_status);
	else
		kp_json_null(j);
	kp_json_key(j, "file");
	kp_json_str(j, p->file);
	kp_json_key(j, "events_lost");
	kp_json_u64(j, p->lost_total);
	kp_json_key(j, "exec_path");
	kp_json_str(j, p->exec_path);
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xProcJson)
			an->passes[i]->xProcJson(an->pass_state[i], an, p, j);
	kp_json_end_object(j);
}

static void report(struct kp_analysis *an, struct kp_json *j)
{
	kp_json_begin_object(j);
	kp_json_key(j, "schema");
	kp_json_str(j, "kprof-report/1");
	kp_json_key(j, "command");
	kp_json_str(j, an->opts->command);
	kp_json_key(j, "trace");
	kp_json_begin_object(j);
	kp_json_key(j, "files");
	kp_json_begin_array(j);
	for (size_t i = 0; i < an->nprocs; i++)
		kp_json_str(j, an->procs[i]->file);
	kp_json_end_array(j);
	kp_json_key(j, "truncated");
	kp_json_bool(j, an->truncated);
	kp_json_key(j, "events_lost");
	kp_json_u64(j, an->lost_total);
	kp_json_key(j, "events_lost_by_type");
	json_lost(j, an->lost);
	kp_json_key(j, "processes");
	kp_json_begin_array(j);
	for (size_t i = 0; i < an->nprocs; i++)
		json_process(an, an->procs[i], j);
	kp_json_end_array(j);
	kp_json_end_object(j);
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xReportJson)
			an->passes[i]->xReportJson(an->pass_state[i], an, j);
	kp_json_end_object(j);
	kp_json_end(j);
}

void kp_report_json(struct kp_analysis *an, FILE *out)
{
	struct kp_json j;

	kp_json_init(&j, out, 1);
	report(an, &j);
}

void kp_report_json_page(struct kp_analysis *an, FILE *report_out,
			 FILE *frames_out)
{
	struct kp_json j;
	struct kp_frame_ids ids = { 0 };

	kp_json_init(&j, report_out, 0);
	j.frame_ids = &ids;
	report(an, &j);
	kp_json_init(&j, frames_out, 0);
	kp_json_begin_array(&j);
	for (size_t i = 0; i < ids.n; i++)
		json_frame(&j, ids.v[i]);
	kp_json_end_array(&j);
	kp_json_end(&j);
	free(ids.v);
	free(ids.slot);
}

/* ---- the memory pass's objects ------------------------------------------------ */

/* "key": {"bytes": bytes, "blocks": blocks} */
static void json_bb(struct kp_json *j, const char *key, uint64_t bytes,
		    uint64_t blocks)
{
	kp_json_key(j, key);
	kp_json_begin_object(j);
	kp_json_key(j, "bytes");
	kp_json_u64(j, bytes);
	kp_json_key(j, "blocks");
	kp_json_u64(j, blocks);
	kp_json_end_object(j);
}

static void json_in_use(struct kp_json *j, const struct kp_mem_totals *m)
{
	json_bb(j, "in_use_at_exit", m->live_bytes, m->live_blocks);
}

/* The classes of a leak scan, valgrind's, in its order. */
static void json_reach(struct kp_json *j, const struct kp_reach *r)
{
	static const struct {
		int c;
		const char *key;
	} cl[] = {
		{ KP_LEAK_DEFINITE, "definitely_lost" },
		{ KP_LEAK_INDIRECT, "indirectly_lost" },
		{ KP_LEAK_POSSIBLE, "possibly_lost" },
		{ KP_LEAK_REACHABLE, "still_reachable" },
	};

	for (size_t i = 0; i < KP_ARRAY_SIZE(cl); i++)
		json_bb(j, cl[i].key, r->bytes[cl[i].c], r->blocks[cl[i].c]);
}

/* "leak_scan" of a process, or of all of them (all: with how many ran) */
static void json_scan(struct kp_json *j, const struct kp_leak_scan *sc,
		      int all)
{
	kp_json_key(j, "leak_scan");
	if (sc->status < 0) {
		kp_json_null(j);
		return;
	}
	kp_json_begin_object(j);
	kp_json_key(j, "status");
	kp_json_str(j, kp_leak_scan_name(sc->status));
	if (all) {
		kp_json_key(j, "processes_scanned");
		kp_json_u64(j, sc->scanned);
		kp_json_key(j, "processes_not_scanned");
		kp_json_u64(j, sc->not_scanned);
	}
	json_reach(j, &sc->reach);
	json_bb(j, "after_scan", sc->after_bytes, sc->after_blocks);
	kp_json_key(j, "root_bytes");
	kp_json_u64(j, sc->root_bytes);
	kp_json_key(j, "duration_ns");
	kp_json_u64(j, sc->dur_ns);
	kp_json_end_object(j);
}

static void json_counts(struct kp_json *j, const struct kp_mem_totals *m)
{
	kp_json_key(j, "alloc_calls");
	kp_json_u64(j, m->alloc_calls);
	kp_json_key(j, "free_calls");
	kp_json_u64(j, m->free_calls);
	kp_json_key(j, "realloc_calls");
	kp_json_u64(j, m->realloc_calls);
	kp_json_key(j, "bytes_allocated");
	kp_json_u64(j, m->bytes_allocated);
	kp_json_key(j, "bytes_freed");
	kp_json_u64(j, m->bytes_freed);
	kp_json_key(j, "peak_bytes");
	kp_json_u64(j, m->peak_bytes);
	kp_json_key(j, "peak_time_ns");
	kp_json_u64(j, m->peak_time_ns);
}

void kp_mem_proc_json(struct kp_analysis *an, const struct kp_proc *p,
		      struct kp_json *j)
{
	const struct kp_mem_totals *m = kp_mem_proc_totals(an, p);

	if (!m)
		return;
	kp_json_key(j, "memory");
	kp_json_begin_object(j);
	kp_json_key(j, "recorded");
	kp_json_bool(j, !p->mem_off);
	kp_json_key(j, "malloc_owner");
	kp_json_str(j, p->malloc_owner);
	json_counts(j, m);
	kp_json_key(j, "unmatched_frees");
	kp_json_u64(j, m->unmatched_frees);
	kp_json_key(j, "reordered_frees");
	kp_json_u64(j, m->reordered_frees);
	kp_json_key(j, "temporary_allocs");
	kp_json_u64(j, m->temporary);
	json_in_use(j, m);
	kp_json_key(j, "timeline");
	kp_json_begin_object(j);
	kp_json_key(j, "slice_ns");
	kp_json_u64(j, m->slice_ns);
	kp_json_key(j, "max_in_use");
	kp_json_begin_array(j);
	for (uint32_t i = 0; i < m->nslices; i++)
		kp_json_u64(j, m->heap[i]);
	kp_json_end_array(j);
	kp_json_key(j, "min_in_use");
	kp_json_begin_array(j);
	for (uint32_t i = 0; i < m->nslices; i++)
		kp_json_u64(j, m->heap_min[i]);
	kp_json_end_array(j);
	kp_json_end_object(j);
	json_scan(j, &m->scan, 0);
	kp_json_end_object(j);
}

static void json_sites(struct kp_analysis *an, struct kp_json *j,
		       const struct kp_site *const *s, size_t n)
{
	kp_json_begin_array(j);
	for (size_t i = 0; i < n; i++) {
		kp_json_begin_object(j);
		kp_json_key(j, "calls");
		kp_json_u64(j, s[i]->allocs);
		kp_json_key(j, "bytes");
		kp_json_u64(j, s[i]->bytes);
		kp_json_key(j, "frees");
		kp_json_u64(j, s[i]->frees);
		kp_json_key(j, "temporary");
		kp_json_u64(j, s[i]->temporary);
		kp_json_key(j, "peak_bytes");
		kp_json_u64(j, s[i]->peak_bytes);
		kp_json_key(j, "stack");
		kp_json_stack(an, j, s[i]->gstack);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);
}

void kp_mem_report_json(struct kp_analysis *an, struct kp_json *j)
{
	const struct kp_mem_totals *m = kp_mem_totals(an);
	const struct kp_site *const *s;
	size_t top = an->opts->top, n;

	if (!m)
		return;
	kp_json_key(j, "memory");
	kp_json_begin_object(j);
	int recorded = 0;
	for (size_t i = 0; i < an->nprocs; i++)
		recorded |= !an->procs[i]->mem_off;
	kp_json_key(j, "recorded");
	kp_json_bool(j, recorded);
	json_counts(j, m);
	kp_json_key(j, "peak_pid");
	if (an->nprocs)
		kp_json_i64(j, m->peak_pid);
	else
		kp_json_null(j);
	json_in_use(j, m);
	kp_json_key(j, "unmatched_frees");
	kp_json_u64(j, m->unmatched_frees);
	kp_json_key(j, "reordered_frees");
	kp_json_u64(j, m->reordered_frees);
	kp_json_key(j, "temporary_allocs");
	kp_json_u64(j, m->temporary);

	kp_json_key(j, "sizes");
	kp_json_begin_array(j);
	for (unsigned c = 0; c < KP_SIZE_CLASSES; c++) {
		if (!m->size_calls[c])
			continue;
		kp_json_begin_object(j);
		kp_json_key(j, "min");
		kp_json_u64(j, c ? (uint64_t)1 << (c - 1) : 0);
		kp_json_key(j, "calls");
		kp_json_u64(j, m->size_calls[c]);
		kp_json_key(j, "bytes");
		kp_json_u64(j, m->size_bytes[c]);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);

	n = kp_mem_top_calls(an, &s);
	kp_json_key(j, "top_by_calls");
	json_sites(an, j, s, n < top ? n : top);
	n = kp_mem_top_bytes(an, &s);
	kp_json_key(j, "top_by_bytes");
	json_sites(an, j, s, n < top ? n : top);
	n = kp_mem_top_temporary(an, &s);
	kp_json_key(j, "top_by_temporary");
	json_sites(an, j, s, n < top ? n : top);
	n = kp_mem_top_peak(an, &s);
	kp_json_key(j, "top_by_peak");
	json_sites(an, j, s, n < top ? n : top);

	n = kp_mem_leaks(an, &s);
	kp_json_key(j, "leaks");
	kp_json_begin_array(j);
	for (size_t i = 0; i < n; i++) {
		kp_json_begin_object(j);
		kp_json_key(j, "bytes");
		kp_json_u64(j, s[i]->leaked_bytes);
		kp_json_key(j, "blocks");
		kp_json_u64(j, s[i]->leaked_blocks);
		kp_json_key(j, "confidence");
		kp_json_str(j, kp_confidence_name(s[i]->conf));
		kp_json_key(j, "reason");
		kp_json_str(j, s[i]->reason);
		kp_json_key(j, "site_allocs");
		kp_json_u64(j, s[i]->allocs);
		kp_json_key(j, "site_frees");
		kp_json_u64(j, s[i]->frees);
		kp_json_key(j, "pids");
		kp_json_begin_array(j);
		for (uint32_t k = 0; k < s[i]->npids; k++)
			kp_json_i64(j, s[i]->pids[k]);
		kp_json_end_array(j);
		kp_json_key(j, "exe");
		kp_json_str(j, s[i]->exe < an->nexes ? an->exes[s[i]->exe]
						     : "");
		kp_json_key(j, "stack");
		kp_json_stack(an, j, s[i]->gstack);
		const struct kp_reach *r = kp_site_reach(s[i]);
		kp_json_key(j, "reachability");
		if (r) {
			kp_json_begin_object(j);
			json_reach(j, r);
			kp_json_end_object(j);
		} else {
			kp_json_null(j);
		}
		kp_json_end_object(j);
	}
	kp_json_end_array(j);
	json_scan(j, &m->scan, 1);
	kp_json_key(j, "leak_kinds");
	if (an->opts->leak_kinds) {
		kp_json_begin_array(j);
		for (unsigned c = 0; c <= KP_LEAK_CLASS_MAX; c++)
			if (an->opts->leak_kinds >> c & 1)
				kp_json_str(j, kp_leak_kind_name(c));
		kp_json_end_array(j);
	} else {
		kp_json_null(j);
	}
	kp_json_end_object(j);
}
