/* SPDX-License-Identifier: MIT */
/*
 * The advice: every pass's findings in one list, the most at stake first,
 * each with its evidence, what to do, and where (a stack).
 *
 * Heap, I/O, queries and CPU samples share one clock, so a finding of one
 * pass can carry the evidence of another: the fsyncs of the I/O pass that
 * ran inside a query (Q06), the CPU samples that fell in the allocator
 * (CPU01) with the allocation site that calls it the most.
 *
 * What is at stake is what a fix may save: time (threads summed, so it
 * is compared with the run's wall time and may pass 100 %) or memory
 * (compared with the peak heap). The list is ranked by the larger share;
 * info findings (normal behaviour worth knowing) come after the others.
 * Findings that measure nothing at stake keep their pass's order.
 *
 * `kprof-analyze advise` prints all of it; the summary ends with the
 * first few; JSON gets a top-level "advice" array.
 *
 * The memory and CPU findings are made here, from those passes' public
 * results; io.c and queries.c add their own (kp_io_advise,
 * kp_query_advise).
 */
#include <inttypes.h>
#include <stdlib.h>

#include "cpu.h"
#include "json.h"

#define SUMMARY_ROWS 5        /* advice lines in the summary */
#define TEMP_MIN 10000        /* MEM02: temporary allocations from a site */
#define ALLOC_CPU_MIN 0.10    /* CPU01: share of CPU in the allocator */
#define ALLOC_CPU_WARN 0.25
#define HOT_MIN 0.25          /* CPU02: share of CPU in one function */
#define GROW_MIN (1u << 20)   /* MEM03: the heap's rise, bytes */
#define CPU_SAMPLES_MIN 50    /* CPU01, CPU02: samples in the traces */
#define ALLOC_SAMPLES_MIN 10  /* CPU01: samples in the allocator */

/* The rules' thresholds in use: --advice-min's, else the defaults. The
 * leak's default is NOTABLE_LEAK (below), and a smaller group's share of
 * the peak heap, which a given threshold replaces. */
static struct kp_advice_min limits(const struct kp_analysis *an)
{
	struct kp_advice_min m = an->opts->advice_min;
	if (!m.temporary)
		m.temporary = TEMP_MIN;
	if (!m.growth)
		m.growth = GROW_MIN;
	if (m.alloc_cpu <= 0)
		m.alloc_cpu = ALLOC_CPU_MIN;
	if (m.hot <= 0)
		m.hot = HOT_MIN;
	return m;
}

struct advise_state {
	struct kp_advice_list l;
	/* what the user's rules (--suppress) took out of l, each with the
	 * index of its rule; the findings each rule took */
	struct kp_advice_list out;
	size_t *out_rule, *rule_hits;
	uint64_t run_ns;      /* the processes' run times, summed */
	uint64_t peak_bytes;  /* the peak heap */
	uint64_t cpu_ns, io_ns, query_ns;
};

struct kp_advice *kp_advice_add(struct kp_advice_list *l, const char *area,
				const char *code, enum kp_severity sev)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->v = xrealloc_array(l->v, l->cap, sizeof(*l->v));
	}
	struct kp_advice *a = &l->v[l->n++];
	memset(a, 0, sizeof(*a));
	a->seq = l->n - 1;
	a->area = area;
	a->code = code;
	a->sev = sev;
	a->action = "";
	return a;
}

const char *kp_severity_name(enum kp_severity s)
{
	return s == KP_SEV_HIGH ? "high" : s == KP_SEV_WARN ? "warn" : "info";
}

int kp_severity_parse(const char *name)
{
	for (int s = KP_SEV_INFO; s <= KP_SEV_HIGH; s++)
		if (!strcmp(name, kp_severity_name((enum kp_severity)s)))
			return s;
	return -1;
}

static void *advise_init(struct kp_analysis *an, unsigned slot)
{
	(void)an;
	(void)slot;
	return xcalloc(1, sizeof(struct advise_state));
}

/* Is this frame the allocator's? glibc's malloc and its internals,
 * operator new/delete, or an allocator library. kprof's own frames are
 * not (the CPU report counts them apart). */
static int frame_in_allocator(struct kp_analysis *an, const struct kp_frame *f)
{
	static const char *const internal[] = {
		"_int_malloc", "_int_free", "_int_realloc", "_int_memalign",
		"malloc_consolidate", "unlink_chunk", "sysmalloc", "systrim",
		"tcache_", "__malloc_", "cfree", "arena_get2", "heap_trim",
		"munmap_chunk", "mremap_chunk", "operator delete",
	};
	static const char *const libs[] = {
		"libjemalloc", "libtcmalloc", "libmimalloc",
	};
	if (f->module && an->modules[f->module].self)
		return 0;
	if (f->module) {
		const char *base = kp_base_name(an->modules[f->module].path);
		for (size_t i = 0; i < KP_ARRAY_SIZE(libs); i++)
			if (kp_has_prefix(base, libs[i]))
				return 1;
	}
	char buf[256];
	const char *fn = kp_frame_name(an, f, 1, buf, sizeof(buf));
	if (fn == buf)
		return 0; /* no name: module+offset */
	if (kp_is_alloc_wrapper(fn))
		return 1;
	for (size_t i = 0; i < KP_ARRAY_SIZE(internal); i++)
		if (kp_has_prefix(fn, internal[i]))
			return 1;
	return 0;
}

/* Is the innermost frame of a CPU sample's stack the allocator's? */
static int in_allocator(struct kp_analysis *an, uint32_t gstack)
{
	const struct kp_gstack *g = &an->gstacks[gstack];
	return g->depth && frame_in_allocator(an, kp_gframe(an, g, 0));
}

/* The functions of CALLERS frames of a stack from frame `from`, "f;g;h"
 * (module+offset where unnamed): where an allocation site and a CPU
 * sample in the allocator meet, the malloc and the free of a temporary
 * block being in one function. */
#define CALLERS 3
static void callers(struct kp_analysis *an, uint32_t gstack, uint32_t from,
		    char *buf, size_t n)
{
	const struct kp_gstack *g = &an->gstacks[gstack];
	char nb[256];
	size_t at = 0;
	buf[0] = '\0';
	for (uint32_t d = from; d < g->depth && d < from + CALLERS && at < n;
	     d++) {
		int w = snprintf(buf + at, n - at, "%s%s", d > from ? ";" : "",
				 kp_frame_name(an, kp_gframe(an, g, d), 0, nb,
					       sizeof(nb)));
		if (w < 0)
			break;
		at += (size_t)w;
	}
}

/* The CPU samples in the allocator, by the app's frames that called it
 * (past the allocator's and kprof's own): what the sites of MEM02 cost. */
struct alloc_cpu {
	char who[512];
	uint64_t ns, samples;
};

static struct alloc_cpu *allocator_callers(struct kp_analysis *an, size_t *nout)
{
	const struct kp_wstack *w;
	size_t n = kp_cpu_stacks(an, &w), m = 0, cap = 0;
	struct alloc_cpu *v = NULL;
	for (size_t i = 0; i < n; i++) {
		if (!in_allocator(an, w[i].gstack))
			continue;
		const struct kp_gstack *g = &an->gstacks[w[i].gstack];
		uint32_t d = 0;
		while (d < g->depth &&
		       (frame_in_allocator(an, kp_gframe(an, g, d)) ||
			an->modules[kp_gframe(an, g, d)->module].self))
			d++;
		if (d == g->depth)
			continue;
		if (m == cap) {
			cap = cap ? 2 * cap : 16;
			v = xrealloc_array(v, cap, sizeof(*v));
		}
		callers(an, w[i].gstack, d, v[m].who, sizeof(v[m].who));
		v[m].ns = w[i].value;
		v[m].samples = w[i].count;
		m++;
	}
	*nout = m;
	return v;
}

/* ---- memory ---------------------------------------------------------------- */

/* A frame as "fn (file:line)", "fn" or "module+0xoffset", after sep; its
 * function shown for a title (kp_disp, at most 100 columns) when disp.
 * @return what snprintf does. */
static int frame_text(const struct kp_symframe *f, const char *sep, int disp,
		      char *buf, size_t n)
{
	char d[160];
	const char *fn = f->function && disp ?
		kp_disp(d, sizeof(d), f->function, 100) : f->function;
	if (fn && f->file)
		return snprintf(buf, n, "%s%s (%s:%d)", sep, fn,
				kp_base_name(f->file), f->line);
	if (fn)
		return snprintf(buf, n, "%s%s", sep, fn);
	return snprintf(buf, n, "%s%s+0x%" PRIx64, sep,
			f->module[0] ? kp_base_name(f->module) : "?",
			f->offset);
}

/* " at fn (file:line)" of an allocation stack's first frame past the
 * allocator wrappers, into buf. */
static const char *site_name(struct kp_analysis *an, uint32_t gstack,
			     char *buf, size_t n)
{
	const struct kp_symframe *f;
	size_t first;
	buf[0] = '\0';
	if (kp_symbolize_stack(kp_analysis_symbols(an), gstack, &f, 1, &first))
		frame_text(f, " at ", 1, buf, n);
	return buf;
}

/* A site's key (struct kp_advice): its first frames past the allocator
 * wrappers, "fn (file:line) < caller (file:line) < ...". */
#define KEY_FRAMES 4
static void site_key(struct kp_analysis *an, uint32_t gstack, char *buf,
		     size_t n)
{
	const struct kp_symframe *f[KEY_FRAMES];
	size_t first, at = 0;
	size_t k = kp_symbolize_stack(kp_analysis_symbols(an), gstack, f,
				      KEY_FRAMES, &first);
	buf[0] = '\0';
	for (size_t i = 0; i < k && at < n; i++) {
		int w = frame_text(f[i], i ? " < " : "", 0, buf + at, n - at);
		if (w < 0)
			break;
		at += (size_t)w;
	}
}

/* MEM01: leaks the memory pass is sure of (high confidence), each group
 * that holds at least NOTABLE_LEAK bytes, or 10 % of the peak heap and
 * SMALL_LEAK bytes, or that a leak scan at exit found blocks of lost (no
 * pointer to them left: a bug at any size, as valgrind reports it); the
 * others of high or medium confidence (a short program's buffers left for
 * exit to free, blocks allocated once) as one finding, with the largest
 * one's stack. */
#define NOTABLE_LEAK (64u << 10)
#define SMALL_LEAK (4u << 10) /* never notable, whatever the peak */
#define BIG_LEAK (1u << 20)
static void advise_leaks(struct kp_analysis *an, struct kp_advice_list *l,
			 uint64_t peak)
{
	const struct kp_site *const *s;
	size_t n = kp_mem_leaks(an, &s);
	uint64_t other = 0, other_bytes = 0, other_blocks = 0;
	const struct kp_site *largest = NULL;
	char a[32], b[32], w[200];
	uint64_t given = an->opts->advice_min.leak;
	for (size_t i = 0; i < n; i++) {
		if (s[i]->conf == KP_CONF_LOW)
			continue;
		uint64_t bytes = s[i]->leaked_bytes;
		int tenth = kp_sat_mul(bytes, 10) >= peak;
		const struct kp_reach *rc = kp_site_reach(s[i]);
		int lost = rc && (rc->blocks[KP_LEAK_DEFINITE] ||
				  rc->blocks[KP_LEAK_INDIRECT]);
		int notable = given ? bytes >= given :
			bytes >= NOTABLE_LEAK || lost ||
			(tenth && bytes >= SMALL_LEAK);
		if (s[i]->conf != KP_CONF_HIGH || !notable) {
			other++;
			other_bytes = kp_sat_add(other_bytes, bytes);
			other_blocks = kp_sat_add(other_blocks,
						  s[i]->leaked_blocks);
			if (!largest) /* leaks are ranked by bytes */
				largest = s[i];
			continue;
		}
		int big = bytes >= BIG_LEAK || (tenth && bytes >= NOTABLE_LEAK);
		struct kp_advice *x = kp_advice_add(l, "memory", "MEM01",
			big ? KP_SEV_HIGH : KP_SEV_WARN);
		snprintf(x->title, sizeof(x->title), "leak: %s in %s block%s%s",
			 kp_fmt_bytes(a, sizeof(a), bytes),
			 kp_fmt_count(b, sizeof(b), s[i]->leaked_blocks),
			 s[i]->leaked_blocks == 1 ? "" : "s",
			 site_name(an, s[i]->gstack, w, sizeof(w)));
		snprintf(x->evidence, sizeof(x->evidence), "%" PRIu64 " bytes "
			 "in use at exit, of %" PRIu64 " allocation%s from this "
			 "site (%" PRIu64 " freed); %s", bytes, s[i]->allocs,
			 s[i]->allocs == 1 ? "" : "s", s[i]->frees,
			 s[i]->reason ? s[i]->reason : "");
		x->action = "free each block when its last user is done with "
			"it (kprof-analyze leaks shows every group's stack)";
		x->bytes = bytes;
		x->gstack = s[i]->gstack;
		site_key(an, s[i]->gstack, x->key, sizeof(x->key));
	}
	if (!other)
		return;
	struct kp_advice *x = kp_advice_add(l, "memory", "MEM01",
					    KP_SEV_INFO);
	snprintf(x->title, sizeof(x->title), "other leaks: %s in %s block%s "
		 "of %" PRIu64 " group%s, each small or allocated once",
		 kp_fmt_bytes(a, sizeof(a), other_bytes),
		 kp_fmt_count(b, sizeof(b), other_blocks),
		 other_blocks == 1 ? "" : "s", other, other == 1 ? "" : "s");
	char under[64];
	if (given)
		snprintf(under, sizeof(under), "%s",
			 kp_fmt_bytes(w, sizeof(w), given));
	else
		snprintf(under, sizeof(under), "%u KiB and 10 %% of the peak "
			 "heap", NOTABLE_LEAK >> 10);
	snprintf(x->evidence, sizeof(x->evidence), "groups under %s, or of "
		 "medium confidence; the largest: "
		 "%" PRIu64 " bytes in %" PRIu64 " block%s (stack below), %s",
		 under, largest->leaked_bytes,
		 largest->leaked_blocks, largest->leaked_blocks == 1 ? "" : "s",
		 largest->reason ? largest->reason : "");
	x->action = "what a program leaves for its exit to free costs "
		"nothing; in a long-running one, free each block when done "
		"with it (kprof-analyze leaks shows every group)";
	x->bytes = other_bytes;
	x->gstack = largest->gstack;
	snprintf(x->key, sizeof(x->key), "other leaks");
}

/*
 * MEM03: a process whose heap kept growing. Its floor (the least in use)
 * in each quarter of its run after the first (start-up) rose quarter by
 * quarter, by GROW_MIN bytes and a fifth of its peak at least, in a run of
 * GROW_RUN_NS or more: a short tool's heap grows while it works, a
 * long-running program's should level off. The last two slices are left
 * out (a clean exit frees everything there). The sites named are the
 * program's that grew most between the memory pass's two snapshots
 * (kp_mem_totals.grow_from_ns, grow_to_ns), each by an eighth of the
 * first's growth at least: a site whose blocks come and go has some in
 * use at a snapshot now and then (100 KiB of a loop's temporary blocks
 * beside a cache's 1.6 MiB), which is no growth.
 */
#define GROW_RUN_NS 5000000000ull
#define GROW_SITES 3
#define GROW_SITE_SHARE 8 /* a site named grew 1/8 of the first's */

static uint64_t heap_floor(const struct kp_mem_totals *m, uint32_t from,
			   uint32_t to)
{
	uint64_t f = UINT64_MAX;
	for (uint32_t i = from; i < to; i++)
		if (m->heap_min[i] < f)
			f = m->heap_min[i];
	return f;
}

static void advise_growth(struct kp_analysis *an, struct kp_advice_list *l)
{
	const struct kp_site *const *all;
	size_t nall = kp_mem_top_bytes(an, &all);
	char a[32], b[32], c[32], d[32], w[200];
	for (size_t i = 0; i < an->nprocs; i++) {
		const struct kp_proc *p = an->procs[i];
		const struct kp_mem_totals *m = kp_mem_proc_totals(an, p);
		if (!m || p->mem_off || p->duration_ns < GROW_RUN_NS ||
		    m->nslices < 10)
			continue;
		/* a clean exit's frees may straddle the last two slices */
		uint32_t n = m->nslices - 2, q = n / 4;
		uint64_t f2 = heap_floor(m, q, 2 * q),
			 f3 = heap_floor(m, 2 * q, 3 * q),
			 f4 = heap_floor(m, 3 * q, n);
		if (!(f2 < f3 && f3 < f4) || f4 - f2 < limits(an).growth ||
		    kp_sat_mul(f4 - f2, 5) < m->peak_bytes)
			continue;
		/* the program's sites that grew most */
		const struct kp_site *top[GROW_SITES] = { NULL };
		for (size_t k = 0; k < nall; k++) {
			const struct kp_site *x = all[k];
			if (x->exe != p->exe_id || !x->grew_bytes)
				continue;
			for (int r = 0; r < GROW_SITES; r++) {
				if (top[r] && top[r]->grew_bytes >= x->grew_bytes)
					continue;
				memmove(top + r + 1, top + r, (GROW_SITES - 1 - r) *
					sizeof(*top));
				top[r] = x;
				break;
			}
		}
		/* a rising floor is at each quarter's start: two quarters */
		uint64_t span = (uint64_t)(2 * q) * m->slice_ns;
		double per_min = span ? (double)(f4 - f2) * 60e9 / (double)span
				      : 0;
		struct kp_advice *x = kp_advice_add(l, "memory", "MEM03",
						    KP_SEV_WARN);
		snprintf(x->title, sizeof(x->title), "heap keeps growing: +%s "
			 "in the second half of the run (about %s a minute)%s",
			 kp_fmt_bytes(a, sizeof(a), f4 - f2),
			 kp_fmt_bytes(b, sizeof(b), (uint64_t)per_min),
			 top[0] ? site_name(an, top[0]->gstack, w, sizeof(w))
				: "");
		int k = snprintf(x->evidence, sizeof(x->evidence),
			 "process %" PRId64 ": the least in use in each quarter "
			 "of its %s run after the first: %s, %s, %s (peak %s)",
			 p->pid, kp_fmt_ns(a, sizeof(a), p->duration_ns),
			 kp_fmt_bytes(b, sizeof(b), f2),
			 kp_fmt_bytes(c, sizeof(c), f3),
			 kp_fmt_bytes(d, sizeof(d), f4),
			 kp_fmt_bytes(w, sizeof(w), m->peak_bytes));
		for (int r = 0; r < GROW_SITES && top[r] && k > 0 &&
		     (size_t)k < sizeof(x->evidence) &&
		     kp_sat_mul(top[r]->grew_bytes, GROW_SITE_SHARE) >=
			     top[0]->grew_bytes;
		     r++) {
			char where[200];
			const char *at = site_name(an, top[r]->gstack, where,
						   sizeof(where));
			k += snprintf(x->evidence + k, sizeof(x->evidence) -
				      (size_t)k, "%s%s +%s", r ? "," :
				      "; grew most:", *at ? at : " ?",
				      kp_fmt_bytes(a, sizeof(a),
						   top[r]->grew_bytes));
		}
		if (top[0] && k > 0 && (size_t)k < sizeof(x->evidence))
			snprintf(x->evidence + k, sizeof(x->evidence) -
				 (size_t)k, " (from %s to %s)",
				 kp_fmt_ns(a, sizeof(a), m->grow_from_ns),
				 kp_fmt_ns(b, sizeof(b), m->grow_to_ns));
		x->action = "find what keeps these blocks: a cache, queue, list "
			"or map that only grows, or objects still referenced "
			"after their last use; bound it, or drop what is done "
			"with (kprof-analyze memory: the sites at the heap peak)";
		x->bytes = f4 - f2;
		if (top[0]) {
			x->gstack = top[0]->gstack;
			site_key(an, top[0]->gstack, x->key, sizeof(x->key));
		} else {
			snprintf(x->key, sizeof(x->key), "heap growth: %s",
				 kp_base_name(p->exe ? p->exe : "?"));
		}
	}
}

/* MEM02: sites most of whose many blocks are freed at once (heaptrack's
 * temporary allocations): an allocator round trip for nothing kept. */
static void advise_temporary(struct kp_analysis *an, struct kp_advice_list *l)
{
	const struct kp_site *const *s;
	size_t n = kp_mem_top_temporary(an, &s), nc = 0;
	char a[32], b[32], w[200], who[512];
	struct alloc_cpu *c = NULL;
	for (size_t i = 0; i < n; i++) {
		if (s[i]->temporary < limits(an).temporary ||
		    s[i]->temporary * 2 < s[i]->allocs)
			continue;
		if (!c)
			c = allocator_callers(an, &nc);
		uint64_t ns = 0, samples = 0;
		callers(an, s[i]->gstack, kp_alloc_skip(an, s[i]->gstack), who,
			sizeof(who));
		for (size_t k = 0; k < nc; k++)
			if (!strcmp(c[k].who, who)) {
				ns = kp_sat_add(ns, c[k].ns);
				samples += c[k].samples;
			}
		struct kp_advice *x = kp_advice_add(l, "memory", "MEM02",
						    KP_SEV_INFO);
		snprintf(x->title, sizeof(x->title), "temporary allocations%s: "
			 "%s of %s calls", site_name(an, s[i]->gstack, w,
			 sizeof(w)), kp_fmt_count(a, sizeof(a),
			 s[i]->temporary), kp_fmt_count(b, sizeof(b),
			 s[i]->allocs));
		int k = snprintf(x->evidence, sizeof(x->evidence), "%" PRIu64
			 " of %" PRIu64 " blocks from this site were freed "
			 "before their thread allocated or freed anything else",
			 s[i]->temporary, s[i]->allocs);
		if (samples && k > 0 && (size_t)k < sizeof(x->evidence))
			snprintf(x->evidence + k, sizeof(x->evidence) - k,
				 "; %" PRIu64 " CPU sample%s, %s, in the "
				 "allocator called from its function", samples,
				 samples == 1 ? "" : "s",
				 kp_fmt_ns(a, sizeof(a), ns));
		x->action = "keep the object on the stack, or reuse one "
			"buffer across the calls";
		x->time_ns = ns;
		x->gstack = s[i]->gstack;
		site_key(an, s[i]->gstack, x->key, sizeof(x->key));
	}
	free(c);
}

/* ---- CPU ------------------------------------------------------------------- */

/* CPU01: the share of CPU time in the allocator, with the site that
 * calls it the most (the memory pass's), or the heaviest such sample.
 * CPU02: one function with a large share of the CPU (a hot spot). */
static void advise_cpu(struct kp_analysis *an, struct kp_advice_list *l,
		       uint64_t cpu_ns)
{
	const struct kp_wstack *w;
	size_t n = kp_cpu_stacks(an, &w);
	uint64_t alloc_ns = 0, samples = 0, all = 0;
	uint32_t heaviest = 0;
	char a[32], b[32];
	for (size_t i = 0; i < n; i++)
		all += w[i].count;
	/* a few samples say little: 2 at 100 Hz, one in malloc, is not
	 * half the CPU in the allocator */
	if (!cpu_ns || all < CPU_SAMPLES_MIN)
		return;
	for (size_t i = 0; i < n; i++) {
		if (!in_allocator(an, w[i].gstack))
			continue;
		if (!alloc_ns)
			heaviest = w[i].gstack; /* w is heaviest first */
		alloc_ns = kp_sat_add(alloc_ns, w[i].value);
		samples += w[i].count;
	}
	double share = (double)alloc_ns / (double)cpu_ns;
	struct kp_advice_min lim = limits(an);
	if (share >= lim.alloc_cpu && samples >= ALLOC_SAMPLES_MIN) {
		const struct kp_site *const *s;
		size_t ns = kp_mem_top_calls(an, &s);
		struct kp_advice *x = kp_advice_add(l, "cpu", "CPU01",
			share >= ALLOC_CPU_WARN ? KP_SEV_WARN : KP_SEV_INFO);
		snprintf(x->title, sizeof(x->title), "the allocator takes "
			 "%.1f %% of the CPU time", 100.0 * share);
		int k = snprintf(x->evidence, sizeof(x->evidence), "%" PRIu64
			 " of %" PRIu64 " CPU samples, %s of %s, stopped in "
			 "malloc, free or their internals", samples, all,
			 kp_fmt_ns(a, sizeof(a), alloc_ns),
			 kp_fmt_ns(b, sizeof(b), cpu_ns));
		if (ns && k > 0 && (size_t)k < sizeof(x->evidence))
			snprintf(x->evidence + k, sizeof(x->evidence) - k,
				 "; the site below makes the most allocation "
				 "calls: %" PRIu64 " of %" PRIu64, s[0]->allocs,
				 kp_mem_totals(an)->alloc_calls);
		x->action = "allocate less where the calls are many: reuse "
			"buffers and objects, reserve containers' capacity, "
			"keep small objects by value (the sites: kprof-analyze "
			"memory; the temporary ones: MEM02)";
		x->time_ns = alloc_ns;
		snprintf(x->key, sizeof(x->key), "the allocator");
		if (ns) {
			x->gstack = s[0]->gstack;
		} else {
			x->gstack = heaviest;
			x->sample_stack = 1;
		}
	}
	/* the hottest function but the allocator's and kprof's */
	for (size_t r = 0; r < kp_cpu_funcs(an); r++) {
		uint64_t self, total;
		const char *fn = kp_cpu_func(an, r, &self, &total);
		if ((double)self < lim.hot * (double)cpu_ns)
			break;
		uint32_t where = UINT32_MAX;
		char buf[256];
		for (size_t i = 0; i < n && where == UINT32_MAX; i++) {
			const struct kp_gstack *g = &an->gstacks[w[i].gstack];
			if (g->depth &&
			    !strcmp(kp_frame_name(an, kp_gframe(an, g, 0), 1,
						  buf, sizeof(buf)), fn))
				where = w[i].gstack;
		}
		if (where == UINT32_MAX || in_allocator(an, where) ||
		    an->modules[kp_gframe(an, &an->gstacks[where], 0)->module]
			    .self)
			continue;
		struct kp_advice *x = kp_advice_add(l, "cpu", "CPU02",
						    KP_SEV_INFO);
		char t[160];
		snprintf(x->title, sizeof(x->title), "hot spot: %s takes "
			 "%.1f %% of the CPU time", kp_disp(t, sizeof(t), fn,
			 120), 100.0 * (double)self / (double)cpu_ns);
		snprintf(x->evidence, sizeof(x->evidence), "%s of %s CPU in "
			 "the function itself, %s with what it calls",
			 kp_fmt_ns(a, sizeof(a), self),
			 kp_fmt_ns(b, sizeof(b), cpu_ns),
			 kp_fmt_ns(t, sizeof(t), total));
		x->action = "make it cheaper or call it less often (who calls "
			"it: kprof-analyze cpu; kprof-analyze flame draws the "
			"whole profile)";
		x->time_ns = self;
		x->gstack = where;
		x->sample_stack = 1;
		snprintf(x->key, sizeof(x->key), "%s", fn);
		break;
	}
}

/* ---- ranking ---------------------------------------------------------------- */

static int by_stake(const void *pa, const void *pb)
{
	const struct kp_advice *x = pa, *y = pb;
	int xi = x->sev == KP_SEV_INFO, yi = y->sev == KP_SEV_INFO;
	if (xi != yi)
		return xi - yi;
	if (x->share != y->share)
		return x->share > y->share ? -1 : 1;
	if (x->sev != y->sev)
		return x->sev > y->sev ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq; /* the passes' order */
}

/* The findings the user's rules match, from s->l to s->out. */
static void suppress(struct advise_state *s, struct kp_analysis *an)
{
	const struct kp_suppress *sup = &an->opts->suppress;
	if (!sup->n)
		return;
	s->rule_hits = xcalloc(sup->n, sizeof(*s->rule_hits));
	size_t kept = 0;
	for (size_t i = 0; i < s->l.n; i++) {
		const struct kp_advice *x = &s->l.v[i];
		ssize_t r = kp_suppress_match(sup, an, x);
		if (r < 0) {
			s->l.v[kept++] = *x;
			continue;
		}
		s->rule_hits[r]++;
		struct kp_advice *o = kp_advice_add(&s->out, x->area, x->code,
						    x->sev);
		*o = *x;
		s->out_rule = xrealloc_array(s->out_rule, s->out.n,
					     sizeof(*s->out_rule));
		s->out_rule[s->out.n - 1] = (size_t)r;
	}
	s->l.n = kept;
}

static void advise_finish(void *st, struct kp_analysis *an)
{
	struct advise_state *s = st;
	for (size_t i = 0; i < an->nprocs; i++)
		s->run_ns = kp_sat_add(s->run_ns, an->procs[i]->duration_ns);
	const struct kp_mem_totals *m = kp_mem_totals(an);
	s->peak_bytes = m ? m->peak_bytes : 0;
	const struct kp_wstack *w;
	size_t n = kp_cpu_stacks(an, &w);
	for (size_t i = 0; i < n; i++)
		s->cpu_ns = kp_sat_add(s->cpu_ns, w[i].value);
	for (size_t i = 0; i < kp_io_files(an); i++) {
		struct kp_io_file f;
		kp_io_file(an, i, &f);
		s->io_ns = kp_sat_add(s->io_ns, f.total_ns);
	}
	for (size_t i = 0; i < kp_query_fps(an); i++) {
		struct kp_query_fp f;
		kp_query_fp(an, i, &f);
		s->query_ns = kp_sat_add(s->query_ns, f.total_ns);
	}

	if (m) {
		advise_leaks(an, &s->l, s->peak_bytes);
		advise_growth(an, &s->l);
	}
	kp_io_advise(an, &s->l);
	kp_query_advise(an, &s->l);
	if (m)
		advise_temporary(an, &s->l);
	advise_cpu(an, &s->l, s->cpu_ns);
	suppress(s, an);

	for (size_t i = 0; i < s->l.n; i++) {
		struct kp_advice *x = &s->l.v[i];
		double t = s->run_ns ? (double)x->time_ns / (double)s->run_ns : 0;
		double b = s->peak_bytes ?
			(double)x->bytes / (double)s->peak_bytes : 0;
		x->share = t > b ? t : b;
	}
	if (s->l.n > 1)
		qsort(s->l.v, s->l.n, sizeof(*s->l.v), by_stake);
}

/* ---- reports ---------------------------------------------------------------- */

/* "9.8 ms (71.0 % of the run)" or "4.0 KiB (0.6 % of the peak heap)" */
static const char *stake(const struct advise_state *s,
			 const struct kp_advice *x, char *buf, size_t n)
{
	char a[32];
	if (x->time_ns)
		snprintf(buf, n, "%s (%.1f %% of the run)",
			 kp_fmt_ns(a, sizeof(a), x->time_ns),
			 s->run_ns ? 100.0 * (double)x->time_ns /
			 (double)s->run_ns : 0.0);
	else if (x->bytes)
		snprintf(buf, n, "%s (%.1f %% of the peak heap)",
			 kp_fmt_bytes(a, sizeof(a), x->bytes),
			 s->peak_bytes ? 100.0 * (double)x->bytes /
			 (double)s->peak_bytes : 0.0);
	else
		snprintf(buf, n, "not measured");
	return buf;
}

/* advise's last part: each rule with what it took (a rule that took
 * nothing may be stale), each finding taken. */
static void report_suppressed(const struct advise_state *s,
			      struct kp_analysis *an, FILE *out)
{
	const struct kp_suppress *sup = &an->opts->suppress;
	if (!sup->n)
		return;
	fprintf(out, "\nSUPPRESSED: %zu finding%s, by %zu rule%s\n", s->out.n,
		s->out.n == 1 ? "" : "s", sup->n, sup->n == 1 ? "" : "s");
	for (size_t i = 0; i < sup->n; i++) {
		size_t h = s->rule_hits[i];
		if (h)
			fprintf(out, "  %s (%s): %zu finding%s\n", sup->v[i].text,
				sup->v[i].from, h, h == 1 ? "" : "s");
		else
			fprintf(out, "  %s (%s): matched nothing\n",
				sup->v[i].text, sup->v[i].from);
	}
	for (size_t i = 0; i < s->out.n; i++) {
		const struct kp_advice *x = &s->out.v[i];
		fprintf(out, "  - [%s] %s %s (by %s)\n", kp_severity_name(x->sev),
			x->code, x->title, sup->v[s->out_rule[i]].text);
	}
}

static void advise_report_text(void *st, struct kp_analysis *an, FILE *out)
{
	struct advise_state *s = st;
	int full = kp_command_is(an, "advise");
	char a[32], b[32], c[32], d[32], e[64];
	if (!full && (!kp_command_is(an, "summary") || (!s->l.n && !s->out.n)))
		return;
	char sup[64] = "";
	if (s->out.n)
		snprintf(sup, sizeof(sup), " (%zu suppressed)", s->out.n);
	if (s->l.n)
		fprintf(out, "ADVICE: %zu finding%s, the most at stake first%s\n",
			s->l.n, s->l.n == 1 ? "" : "s", sup);
	else if (s->out.n)
		fprintf(out, "ADVICE: none left, %zu finding%s suppressed\n",
			s->out.n, s->out.n == 1 ? "" : "s");
	else
		fprintf(out, "ADVICE: none, no pass found anything to fix\n");
	/* the one clock: where the run's time went, as each pass saw it */
	fprintf(out, "  run %s", kp_fmt_ns(a, sizeof(a), s->run_ns));
	if (s->cpu_ns)
		fprintf(out, "; on CPU %s", kp_fmt_ns(b, sizeof(b), s->cpu_ns));
	if (s->io_ns)
		fprintf(out, "; in I/O calls %s", kp_fmt_ns(c, sizeof(c), s->io_ns));
	if (s->query_ns)
		fprintf(out, "; in queries %s", kp_fmt_ns(d, sizeof(d),
							 s->query_ns));
	fprintf(out, "%s\n", s->cpu_ns || s->io_ns || s->query_ns ?
		" (threads summed)" : "");
	/* thresholds the user gave (--advice-min) */
	const struct kp_advice_min *g = &an->opts->advice_min;
	if (g->leak || g->temporary || g->growth || g->alloc_cpu > 0 ||
	    g->hot > 0) {
		fprintf(out, "  thresholds given:");
		if (g->leak)
			fprintf(out, " MEM01 %s", kp_fmt_bytes(a, sizeof(a),
							       g->leak));
		if (g->temporary)
			fprintf(out, " MEM02 %" PRIu64, g->temporary);
		if (g->growth)
			fprintf(out, " MEM03 %s", kp_fmt_bytes(a, sizeof(a),
							       g->growth));
		if (g->alloc_cpu > 0)
			fprintf(out, " CPU01 %g %%", 100 * g->alloc_cpu);
		if (g->hot > 0)
			fprintf(out, " CPU02 %g %%", 100 * g->hot);
		fprintf(out, "\n");
	}
	size_t rows = full ? s->l.n : s->l.n < SUMMARY_ROWS ? s->l.n :
		SUMMARY_ROWS;
	for (size_t i = 0; i < rows; i++) {
		const struct kp_advice *x = &s->l.v[i];
		fprintf(out, "%s%3zu. [%s] %s %s\n", full ? "\n" : "", i + 1,
			kp_severity_name(x->sev), x->code, x->title);
		if (!full) {
			fprintf(out, "       at stake %s\n",
				stake(s, x, e, sizeof(e)));
			continue;
		}
		fprintf(out, "       at stake  %s\n", stake(s, x, e, sizeof(e)));
		fprintf(out, "       evidence  %s\n", x->evidence);
		fprintf(out, "       do        %s\n", x->action);
		if (!x->gstack)
			continue;
		if (x->sample_stack)
			kp_text_sample_stack(an, out, x->gstack, 8, "         ");
		else
			kp_text_stack(an, out, x->gstack, 8, "         ");
	}
	if (rows < s->l.n)
		fprintf(out, "  ... %zu more; each with its evidence and stack: "
			"kprof-analyze advise\n", s->l.n - rows);
	if (full)
		report_suppressed(s, an, out);
	fputc('\n', out);
}

/* A finding's code, severity, title and key (the advice's entries, and
 * advice_suppressed's). */
static void json_what(struct kp_json *j, const struct kp_advice *x)
{
	kp_json_key(j, "code");
	kp_json_str(j, x->code);
	kp_json_key(j, "severity");
	kp_json_str(j, kp_severity_name(x->sev));
	kp_json_key(j, "title");
	kp_json_str(j, x->title);
	kp_json_key(j, "key");
	kp_json_str(j, x->key);
}

static void advise_report_json(void *st, struct kp_analysis *an,
			       struct kp_json *j)
{
	struct advise_state *s = st;
	kp_json_key(j, "advice");
	kp_json_begin_array(j);
	for (size_t i = 0; i < s->l.n; i++) {
		const struct kp_advice *x = &s->l.v[i];
		kp_json_begin_object(j);
		kp_json_key(j, "rank");
		kp_json_u64(j, i + 1);
		kp_json_key(j, "area");
		kp_json_str(j, x->area);
		json_what(j, x);
		kp_json_key(j, "evidence");
		kp_json_str(j, x->evidence);
		kp_json_key(j, "action");
		kp_json_str(j, x->action);
		kp_json_key(j, "time_ns");
		kp_json_u64(j, x->time_ns);
		kp_json_key(j, "bytes");
		kp_json_u64(j, x->bytes);
		kp_json_key(j, "share");
		kp_json_f64(j, x->share);
		kp_json_key(j, "stack");
		if (!x->gstack)
			kp_json_null(j);
		else if (x->sample_stack)
			kp_json_sample_stack(an, j, x->gstack);
		else
			kp_json_stack(an, j, x->gstack);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);
	/* the thresholds the rules took (--advice-min, else the defaults;
	 * MEM01's default also takes a smaller group that is a tenth of the
	 * peak heap) */
	struct kp_advice_min lim = limits(an);
	kp_json_key(j, "advice_min");
	kp_json_begin_object(j);
	kp_json_key(j, "MEM01");
	kp_json_u64(j, lim.leak ? lim.leak : NOTABLE_LEAK);
	kp_json_key(j, "MEM02");
	kp_json_u64(j, lim.temporary);
	kp_json_key(j, "MEM03");
	kp_json_u64(j, lim.growth);
	kp_json_key(j, "CPU01");
	kp_json_f64(j, 100 * lim.alloc_cpu);
	kp_json_key(j, "CPU02");
	kp_json_f64(j, 100 * lim.hot);
	kp_json_end_object(j);
	/* what the user's rules took out (--suppress) */
	const struct kp_suppress *sup = &an->opts->suppress;
	kp_json_key(j, "advice_suppressed");
	kp_json_begin_object(j);
	kp_json_key(j, "rules");
	kp_json_begin_array(j);
	for (size_t i = 0; i < sup->n; i++) {
		kp_json_begin_object(j);
		kp_json_key(j, "rule");
		kp_json_str(j, sup->v[i].text);
		kp_json_key(j, "from");
		kp_json_str(j, sup->v[i].from);
		kp_json_key(j, "findings");
		kp_json_u64(j, s->rule_hits[i]);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);
	kp_json_key(j, "findings");
	kp_json_begin_array(j);
	for (size_t i = 0; i < s->out.n; i++) {
		const struct kp_advice *x = &s->out.v[i];
		kp_json_begin_object(j);
		json_what(j, x);
		kp_json_key(j, "rule");
		kp_json_str(j, sup->v[s->out_rule[i]].text);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);
	kp_json_end_object(j);
}

static void advise_free(void *st, struct kp_analysis *an)
{
	struct advise_state *s = st;
	(void)an;
	free(s->l.v);
	free(s->out.v);
	free(s->out_rule);
	free(s->rule_hits);
	free(s);
}

size_t kp_advice_get(const struct kp_analysis *an,
		     const struct kp_advice **out)
{
	const struct advise_state *s = kp_pass_state(an, &kp_pass_advise);
	*out = s ? s->l.v : NULL;
	return s ? s->l.n : 0;
}

size_t kp_advice_at_least(const struct kp_analysis *an, enum kp_severity sev)
{
	const struct advise_state *s = kp_pass_state(an, &kp_pass_advise);
	size_t n = 0;
	for (size_t i = 0; s && i < s->l.n; i++)
		n += s->l.v[i].sev >= sev;
	return n;
}

const struct kp_pass kp_pass_advise = {
	.name = "advise",
	.command = "advise",
	.xInit = advise_init,
	.xFinish = advise_finish,
	.xReportText = advise_report_text,
	.xReportJson = advise_report_json,
	.xFree = advise_free,
};
