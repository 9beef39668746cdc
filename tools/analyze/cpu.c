/* SPDX-License-Identifier: MIT */
/*
 * The CPU pass: CPU_SAMPLE records (weight = thread CPU ns since the
 * thread's previous sample) summed per thread and per canonical stack;
 * I/O records (KP_IO_DUR) summed per stack for I/O flame graphs.
 *
 *   self share of f  = CPU of the samples whose innermost frame is in f
 *   total share of f = CPU of the samples with f anywhere on the stack
 *                      (counted once per sample, however often f recurs)
 *
 * `kprof-analyze cpu` prints the whole report; the summary gets a short
 * section when there are samples; JSON gets a top-level "cpu" object.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "cpu.h"
#include "json.h"

struct cpu_thread {
	int64_t pid;
	uint32_t tid;
	uint64_t samples, ns;
	char *name; /* the trace's last name for it, or NULL */
};

/* Per trace: weights by the trace's stack id. */
struct acc {
	uint32_t id;
	uint64_t value, count;
};

struct cpu_func {
	char *name;
	uint64_t self, total;
	uint64_t mark; /* last sample stack that counted it (total) */
};

struct cpu_state {
	unsigned slot;
	/* the current trace */
	struct kp_idmap tids; /* tid -> index in threads */
	struct kp_idmap cpu_ids, io_ids; /* stack id -> index in acc */
	struct acc *cpu_acc, *io_acc;
	size_t ncpu_acc, nio_acc;
	size_t trace_first_thread;
	/* all traces */
	struct cpu_thread *threads;
	size_t nthreads, threads_cap;
	uint64_t samples, ns;
	uint64_t kprof_ns; /* of ns: samples whose innermost frame is kprof's */
	uint64_t period_ns;
	int sampling;      /* a trace's header says "cpu" "1" */
	struct kp_idmap cpu_g, io_g; /* gstack -> index */
	struct kp_wstack *cpu, *io;
	size_t ncpu, nio;
	/* xFinish */
	struct cpu_func *funcs;
	size_t nfuncs;
	struct kp_idmap func_ids;
	uint32_t *by_self, *by_total;
};

static struct cpu_state *state_of(const struct kp_analysis *an)
{
	return kp_pass_state(an, &kp_pass_cpu);
}

static void *cpu_init(struct kp_analysis *an, unsigned slot)
{
	(void)an;
	struct cpu_state *s = xcalloc(1, sizeof(*s));
	s->slot = slot;
	kp_idmap_init(&s->cpu_g);
	kp_idmap_init(&s->io_g);
	kp_idmap_init(&s->func_ids);
	return s;
}

static void cpu_begin_trace(void *st, struct kp_trace *t)
{
	struct cpu_state *s = st;
	kp_idmap_init(&s->tids);
	kp_idmap_init(&s->cpu_ids);
	kp_idmap_init(&s->io_ids);
	s->ncpu_acc = s->nio_acc = 0;
	s->trace_first_thread = s->nthreads;
	if (!t->hdr)
		return;
	const char *cpu = kp_header_config(t->hdr, "cpu");
	if (cpu && !strcmp(cpu, "1"))
		s->sampling = 1;
	/* the period from the first trace that gives one */
	const char *hz = kp_header_config(t->hdr, "cpu_hz");
	if (!s->period_ns && hz && atol(hz) > 0)
		s->period_ns = 1000000000u / (uint64_t)atol(hz);
}

static void acc_add(struct kp_idmap *m, struct acc **a, size_t *n,
		    uint32_t id, uint64_t v)
{
	uint32_t i = kp_idmap_get(m, id);
	if (i == UINT32_MAX) {
		if ((*n & (*n - 1)) == 0 || *n == 0)
			*a = xrealloc_array(*a, *n ? 2 * *n : 16, sizeof(**a));
		i = (uint32_t)(*n)++;
		(*a)[i].id = id;
		(*a)[i].value = 0;
		(*a)[i].count = 0;
		kp_idmap_put(m, id, i);
	}
	(*a)[i].value = kp_sat_add((*a)[i].value, v);
	(*a)[i].count++;
}

static void cpu_events(void *st, struct kp_trace *t, const struct kp_batch *b)
{
	struct cpu_state *s = st;
	if (!b->nx)
		return; /* allocations only */
	for (size_t i = 0; i < b->nxev; i++) {
		const struct kp_event *e = &b->ev[b->xev[i]];
		if (e->type == KP_REC_IO) {
			const struct kp_rec *r = kp_batch_rec(b, e);
			int64_t d = r->u.ext.v[KP_IO_DUR];
			acc_add(&s->io_ids, &s->io_acc, &s->nio_acc, e->stack,
				d > 0 ? (uint64_t)d : 0);
			continue;
		}
		if (e->type != KP_REC_CPU_SAMPLE)
			continue;
		const struct kp_rec *r = kp_batch_rec(b, e);
		int64_t w = r->u.ext.v[KP_CPU_WEIGHT];
		uint64_t ns = w > 0 ? (uint64_t)w : 0;
		acc_add(&s->cpu_ids, &s->cpu_acc, &s->ncpu_acc, e->stack, ns);
		uint32_t ti = kp_idmap_get(&s->tids, e->tid);
		if (ti == UINT32_MAX) {
			if (s->nthreads == s->threads_cap) {
				s->threads_cap = s->threads_cap ?
					2 * s->threads_cap : 16;
				s->threads = xrealloc_array(s->threads,
					s->threads_cap, sizeof(*s->threads));
			}
			ti = (uint32_t)s->nthreads++;
			s->threads[ti] = (struct cpu_thread){
				t->proc->pid, e->tid, 0, 0, NULL };
			kp_idmap_put(&s->tids, e->tid, ti);
		}
		s->threads[ti].samples++;
		s->threads[ti].ns = kp_sat_add(s->threads[ti].ns, ns);
		s->samples++;
		s->ns = kp_sat_add(s->ns, ns);
	}
}

static void merge(struct kp_trace *t, struct kp_idmap *gm,
		  struct kp_wstack **out, size_t *n, const struct acc *a,
		  size_t na)
{
	for (size_t i = 0; i < na; i++) {
		uint32_t g = 0;
		if (a[i].id) {
			uint32_t local = kp_trace_stack(t, a[i].id);
			g = kp_trace_canon_stack(t, local);
			if (g == UINT32_MAX)
				g = 0;
		}
		uint32_t k = kp_idmap_get(gm, g);
		if (k == UINT32_MAX) {
			if ((*n & (*n - 1)) == 0 || *n == 0)
				*out = xrealloc_array(*out, *n ? 2 * *n : 16,
						      sizeof(**out));
			k = (uint32_t)(*n)++;
			(*out)[k] = (struct kp_wstack){ g, 0, 0, 0 };
			kp_idmap_put(gm, g, k);
		}
		(*out)[k].value = kp_sat_add((*out)[k].value, a[i].value);
		(*out)[k].count = kp_sat_add((*out)[k].count, a[i].count);
	}
}

static void cpu_end_trace(void *st, struct kp_trace *t)
{
	struct cpu_state *s = st;
	for (size_t i = s->trace_first_thread; i < s->nthreads; i++) {
		const char *name = kp_trace_thread_name(t, s->threads[i].tid);
		if (name)
			s->threads[i].name = xstrdup(name);
	}
	merge(t, &s->cpu_g, &s->cpu, &s->ncpu, s->cpu_acc, s->ncpu_acc);
	merge(t, &s->io_g, &s->io, &s->nio, s->io_acc, s->nio_acc);
	kp_idmap_free(&s->tids);
	kp_idmap_free(&s->cpu_ids);
	kp_idmap_free(&s->io_ids);
	free(s->cpu_acc);
	free(s->io_acc);
	s->cpu_acc = s->io_acc = NULL;
	s->ncpu_acc = s->nio_acc = 0;
}

const char *kp_frame_name(struct kp_analysis *an, const struct kp_frame *f,
			  int leaf, char *buf, size_t n)
{
	(void)leaf;
	const struct kp_symframe *sf = kp_symbolize(kp_analysis_symbols(an),
						    f, 1);
	if (sf && sf->function)
		return sf->function;
	const char *mod = sf && sf->module && sf->module[0] ? sf->module : "?";
	const char *slash = strrchr(mod, '/');
	snprintf(buf, n, "%s+0x%" PRIx64, slash ? slash + 1 : mod, f->offset);
	return buf;
}

static uint32_t func_of(struct cpu_state *s, const char *name)
{
	uint64_t h = kp_hash_bytes(name, strlen(name), 0x5eed);
	if (h == KP_IDMAP_EMPTY)
		h--;
	/* linear probing over hash + k on a (rare) 64-bit collision */
	for (uint64_t k = h;; k = k + 1 == KP_IDMAP_EMPTY ? 0 : k + 1) {
		uint32_t i = kp_idmap_get(&s->func_ids, k);
		if (i == UINT32_MAX) {
			if ((s->nfuncs & (s->nfuncs - 1)) == 0 || !s->nfuncs)
				s->funcs = xrealloc_array(s->funcs,
					s->nfuncs ? 2 * s->nfuncs : 16,
					sizeof(*s->funcs));
			i = (uint32_t)s->nfuncs++;
			s->funcs[i] = (struct cpu_func){ xstrdup(name), 0, 0,
							 UINT64_MAX };
			kp_idmap_put(&s->func_ids, k, i);
			return i;
		}
		if (!strcmp(s->funcs[i].name, name))
			return i;
	}
}

static const struct cpu_state *sort_state;

static int by_value(const void *a, const void *b)
{
	const struct kp_wstack *x = a, *y = b;
	if (x->value != y->value)
		return x->value > y->value ? -1 : 1;
	return x->gstack < y->gstack ? -1 : x->gstack > y->gstack;
}

static int by_self(const void *a, const void *b)
{
	const struct cpu_func *x = &sort_state->funcs[*(const uint32_t *)a];
	const struct cpu_func *y = &sort_state->funcs[*(const uint32_t *)b];
	if (x->self != y->self)
		return x->self > y->self ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int by_total(const void *a, const void *b)
{
	const struct cpu_func *x = &sort_state->funcs[*(const uint32_t *)a];
	const struct cpu_func *y = &sort_state->funcs[*(const uint32_t *)b];
	if (x->total != y->total)
		return x->total > y->total ? -1 : 1;
	return strcmp(x->name, y->name);
}

static int by_thread(const void *a, const void *b)
{
	const struct cpu_thread *x = a, *y = b;
	if (x->ns != y->ns)
		return x->ns > y->ns ? -1 : 1;
	return x->tid < y->tid ? -1 : x->tid > y->tid;
}

static void cpu_finish(void *st, struct kp_analysis *an)
{
	struct cpu_state *s = st;
	if (s->ncpu > 1)
		qsort(s->cpu, s->ncpu, sizeof(*s->cpu), by_value);
	if (s->nio > 1)
		qsort(s->io, s->nio, sizeof(*s->io), by_value);
	if (s->nthreads > 1)
		qsort(s->threads, s->nthreads, sizeof(*s->threads),
		      by_thread);
	if (!s->ncpu)
		return;
	char buf[256];
	for (size_t i = 0; i < s->ncpu; i++) {
		const struct kp_wstack *w = &s->cpu[i];
		const struct kp_gstack *g = &an->gstacks[w->gstack];
		if (!g->depth) {
			uint32_t f = func_of(s, "(no stack)");
			s->funcs[f].self += w->value;
			s->funcs[f].total += w->value;
			continue;
		}
		const struct kp_frame *leaf = kp_gframe(an, g, 0);
		if (leaf->module && an->modules[leaf->module].self)
			s->kprof_ns = kp_sat_add(s->kprof_ns, w->value);
		for (uint32_t d = 0; d < g->depth; d++) {
			const char *name = kp_frame_name(an,
				kp_gframe(an, g, d), d == 0, buf,
				sizeof(buf));
			uint32_t f = func_of(s, name);
			if (d == 0)
				s->funcs[f].self += w->value;
			if (s->funcs[f].mark != i) {
				s->funcs[f].mark = i;
				s->funcs[f].total += w->value;
			}
		}
	}
	s->by_self = xrealloc_array(NULL, s->nfuncs, sizeof(uint32_t));
	s->by_total = xrealloc_array(NULL, s->nfuncs, sizeof(uint32_t));
	for (size_t i = 0; i < s->nfuncs; i++)
		s->by_self[i] = s->by_total[i] = (uint32_t)i;
	sort_state = s;
	qsort(s->by_self, s->nfuncs, sizeof(uint32_t), by_self);
	qsort(s->by_total, s->nfuncs, sizeof(uint32_t), by_total);
	sort_state = NULL;
}

static double share(uint64_t part, uint64_t whole)
{
	return whole ? (double)part / (double)whole : 0.0;
}

static void fmt_ms(char *buf, size_t n, uint64_t ns)
{
	snprintf(buf, n, "%.1f ms", (double)ns / 1e6);
}

static void cpu_report_text(void *st, struct kp_analysis *an, FILE *out)
{
	struct cpu_state *s = st;
	int full = kp_command_is(an, "cpu");
	if (!full && !s->samples)
		return;
	if (!full && !kp_command_is(an, "summary"))
		return;
	char a[32], b[32];
	fprintf(out, "CPU\n");
	if (!s->samples) {
		if (s->sampling)
			fprintf(out, "  no CPU samples, though sampling was on "
				"(a run shorter than a sample period, or "
				"timers kprof could not set: its warnings say)"
				"\n\n");
		else
			fprintf(out, "  no CPU samples (run with "
				"KOTOBA_PROFILE_CPU=1)\n\n");
		return;
	}
	fmt_ms(a, sizeof(a), s->ns);
	fprintf(out, "  %s of CPU in %s sample%s\n", a,
		kp_fmt_count(b, sizeof(b), s->samples),
		s->samples == 1 ? "" : "s");
	/* what the profile itself cost the program's threads: its hooks
	 * (the writer thread is not sampled; the summary's "kprof" line) */
	if (s->kprof_ns)
		fprintf(out, "  %.1f %% of it in kprof's own code (its hooks, "
			"run by the program's threads)\n",
			100 * share(s->kprof_ns, s->ns));
	fputc('\n', out);
	unsigned top = an->opts->top;
	fprintf(out, "  threads\n");
	for (size_t i = 0; i < s->nthreads && (full || i < top); i++) {
		fmt_ms(a, sizeof(a), s->threads[i].ns);
		char nm[64];
		kp_disp(nm, sizeof(nm), s->threads[i].name ?
			s->threads[i].name : "", 15);
		fprintf(out, "    pid %" PRId64 " tid %u  %-15s %12s  %5.1f %%  "
			"%" PRIu64 " sample%s\n", s->threads[i].pid,
			s->threads[i].tid, nm, a,
			100 * share(s->threads[i].ns, s->ns),
			s->threads[i].samples,
			s->threads[i].samples == 1 ? "" : "s");
	}
	fprintf(out, "\n  hot functions (self)            self   total\n");
	for (size_t i = 0; i < s->nfuncs && i < top; i++) {
		const struct cpu_func *f = &s->funcs[s->by_self[i]];
		if (!f->self)
			break;
		fprintf(out, "    %6.1f %%  %6.1f %%  %s\n",
			100 * share(f->self, s->ns),
			100 * share(f->total, s->ns), f->name);
	}
	if (!full) {
		fputc('\n', out);
		return;
	}
	fprintf(out, "\n  hot functions (total)\n");
	for (size_t i = 0; i < s->nfuncs && i < top; i++) {
		const struct cpu_func *f = &s->funcs[s->by_total[i]];
		fprintf(out, "    %6.1f %%  %6.1f %%  %s\n",
			100 * share(f->total, s->ns),
			100 * share(f->self, s->ns), f->name);
	}
	fprintf(out, "\n  hottest stacks\n");
	for (size_t i = 0; i < s->ncpu && i < top; i++) {
		fmt_ms(a, sizeof(a), s->cpu[i].value);
		fprintf(out, "  #%zu  %5.1f %%  %s  %" PRIu64 " sample%s\n",
			i + 1, 100 * share(s->cpu[i].value, s->ns), a,
			s->cpu[i].count, s->cpu[i].count == 1 ? "" : "s");
		kp_text_sample_stack(an, out, s->cpu[i].gstack, 16, "        ");
	}
	fputc('\n', out);
}

static void json_share(struct kp_json *j, const char *key, double v)
{
	kp_json_key(j, key);
	kp_json_f64(j, v);
}

static void cpu_report_json(void *st, struct kp_analysis *an,
			    struct kp_json *j)
{
	struct cpu_state *s = st;
	kp_json_key(j, "cpu");
	kp_json_begin_object(j);
	kp_json_key(j, "samples");
	kp_json_u64(j, s->samples);
	kp_json_key(j, "cpu_ns");
	kp_json_u64(j, s->ns);
	kp_json_key(j, "kprof_ns");
	kp_json_u64(j, s->kprof_ns);
	kp_json_key(j, "period_ns");
	kp_json_u64(j, s->period_ns);
	kp_json_key(j, "threads");
	kp_json_begin_array(j);
	for (size_t i = 0; i < s->nthreads; i++) {
		kp_json_begin_object(j);
		kp_json_key(j, "pid");
		kp_json_i64(j, s->threads[i].pid);
		kp_json_key(j, "tid");
		kp_json_u64(j, s->threads[i].tid);
		kp_json_key(j, "name");
		kp_json_str(j, s->threads[i].name);
		kp_json_key(j, "samples");
		kp_json_u64(j, s->threads[i].samples);
		kp_json_key(j, "cpu_ns");
		kp_json_u64(j, s->threads[i].ns);
		json_share(j, "share", share(s->threads[i].ns, s->ns));
		kp_json_end_object(j);
	}
	kp_json_end_array(j);
	kp_json_key(j, "functions");
	kp_json_begin_array(j);
	for (size_t i = 0; i < s->nfuncs; i++) {
		const struct cpu_func *f = &s->funcs[s->by_self[i]];
		kp_json_begin_object(j);
		kp_json_key(j, "function");
		kp_json_str(j, f->name);
		kp_json_key(j, "self_ns");
		kp_json_u64(j, f->self);
		kp_json_key(j, "total_ns");
		kp_json_u64(j, f->total);
		json_share(j, "self_share", share(f->self, s->ns));
		json_share(j, "total_share", share(f->total, s->ns));
		kp_json_end_object(j);
	}
	kp_json_end_array(j);
	kp_json_key(j, "stacks");
	kp_json_begin_array(j);
	for (size_t i = 0; i < s->ncpu && i < an->opts->top; i++) {
		kp_json_begin_object(j);
		kp_json_key(j, "cpu_ns");
		kp_json_u64(j, s->cpu[i].value);
		kp_json_key(j, "samples");
		kp_json_u64(j, s->cpu[i].count);
		json_share(j, "share", share(s->cpu[i].value, s->ns));
		kp_json_key(j, "stack");
		kp_json_sample_stack(an, j, s->cpu[i].gstack);
		kp_json_end_object(j);
	}
	kp_json_end_array(j);
	kp_json_end_object(j);
}

static void cpu_free(void *st, struct kp_analysis *an)
{
	(void)an;
	struct cpu_state *s = st;
	for (size_t i = 0; i < s->nfuncs; i++)
		free(s->funcs[i].name);
	free(s->funcs);
	for (size_t i = 0; i < s->nthreads; i++)
		free(s->threads[i].name);
	free(s->by_self);
	free(s->by_total);
	free(s->threads);
	free(s->cpu);
	free(s->io);
	free(s->cpu_acc);
	free(s->io_acc);
	kp_idmap_free(&s->cpu_g);
	kp_idmap_free(&s->io_g);
	kp_idmap_free(&s->func_ids);
	free(s);
}

size_t kp_cpu_funcs(const struct kp_analysis *an)
{
	struct cpu_state *s = state_of(an);
	return s && s->by_self ? s->nfuncs : 0;
}

const char *kp_cpu_func(const struct kp_analysis *an, size_t r,
			uint64_t *self_ns, uint64_t *total_ns)
{
	struct cpu_state *s = state_of(an);
	const struct cpu_func *f = &s->funcs[s->by_self[r]];
	*self_ns = f->self;
	*total_ns = f->total;
	return f->name;
}

size_t kp_cpu_stacks(const struct kp_analysis *an,
		     const struct kp_wstack **out)
{
	struct cpu_state *s = state_of(an);
	*out = s ? s->cpu : NULL;
	return s ? s->ncpu : 0;
}

size_t kp_io_stacks(const struct kp_analysis *an,
		    const struct kp_wstack **out)
{
	struct cpu_state *s = state_of(an);
	*out = s ? s->io : NULL;
	return s ? s->nio : 0;
}

uint64_t kp_cpu_period_ns(const struct kp_analysis *an)
{
	struct cpu_state *s = state_of(an);
	return s ? s->period_ns : 0;
}

size_t kp_what_stacks(struct kp_analysis *an, enum kp_what what,
		      struct kp_wstack **out)
{
	const struct kp_wstack *src = NULL;
	size_t n = 0;
	if (what == KP_WHAT_CPU || what == KP_WHAT_IO) {
		n = what == KP_WHAT_CPU ? kp_cpu_stacks(an, &src)
					: kp_io_stacks(an, &src);
		*out = xrealloc_array(NULL, n ? n : 1, sizeof(**out));
		if (n)
			memcpy(*out, src, n * sizeof(**out));
		return n;
	}
	if (what == KP_WHAT_LIVE) {
		n = kp_peak_stacks(an, &src);
		*out = xrealloc_array(NULL, n ? n : 1, sizeof(**out));
		for (size_t i = 0; i < n; i++) {
			(*out)[i] = src[i];
			(*out)[i].skip = kp_alloc_skip(an, src[i].gstack);
		}
		if (n > 1)
			qsort(*out, n, sizeof(**out), by_value);
		return n;
	}
	const struct kp_site *const *sites;
	if (what == KP_WHAT_LOST) {
		/* the bytes a leak scan found definitely or indirectly lost,
		 * per leak group (ranked by bytes already) */
		size_t nl = kp_mem_leaks(an, &sites);
		*out = xrealloc_array(NULL, nl ? nl : 1, sizeof(**out));
		for (size_t i = 0; i < nl; i++) {
			const struct kp_reach *r = kp_site_reach(sites[i]);
			uint64_t v = r ? kp_sat_add(r->bytes[KP_LEAK_DEFINITE],
						    r->bytes[KP_LEAK_INDIRECT])
				       : 0;
			if (v)
				(*out)[n++] = (struct kp_wstack){
					sites[i]->gstack,
					kp_alloc_skip(an, sites[i]->gstack), v,
					kp_sat_add(
						r->blocks[KP_LEAK_DEFINITE],
						r->blocks[KP_LEAK_INDIRECT]) };
		}
		if (n > 1)
			qsort(*out, n, sizeof(**out), by_value);
		return n;
	}
	/* alloc: bytes per site; temporary: temporary allocations per site
	 * (those with some, most first) */
	int temp = what == KP_WHAT_TEMP;
	size_t ns = temp ? kp_mem_top_temporary(an, &sites)
			 : kp_mem_top_bytes(an, &sites);
	*out = xrealloc_array(NULL, ns ? ns : 1, sizeof(**out));
	for (size_t i = 0; i < ns; i++) {
		uint64_t v = temp ? sites[i]->temporary : sites[i]->bytes;
		if (v)
			(*out)[n++] = (struct kp_wstack){
				sites[i]->gstack,
				kp_alloc_skip(an, sites[i]->gstack),
				v, sites[i]->allocs };
	}
	return n;
}

uint32_t kp_alloc_skip(struct kp_analysis *an, uint32_t gstack)
{
	const struct kp_symframe *f[1];
	size_t first = 0;
	if (!kp_symbolize_stack(kp_analysis_symbols(an), gstack, f, 1, &first))
		return 0;
	return (uint32_t)first;
}

const struct kp_pass kp_pass_cpu = {
	.name = "cpu",
	.command = "cpu",
	.xInit = cpu_init,
	.xBeginTrace = cpu_begin_trace,
	.xEvents = cpu_events,
	.xEndTrace = cpu_end_trace,
	.xFinish = cpu_finish,
	.xReportText = cpu_report_text,
	.xReportJson = cpu_report_json,
	.xFree = cpu_free,
};
