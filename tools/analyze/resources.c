/* SPDX-License-Identifier: MIT */
/*
 * The resources pass: each process's resident memory over time, from the
 * SNAPSHOT records the recorder's writer takes as it flushes
 * (preload/snapshot.c): the peak and when, the size at the end, the
 * kernel's high-water mark (which catches a peak between two snapshots),
 * page faults and CPU time; set against the heap peak, the part of the
 * process's memory that malloc does not explain (mmap, thread stacks, the
 * allocator's free lists and fragmentation). And what recording cost the
 * process (traces of format 3.2 on): the writer thread's CPU time, and the
 * app threads' waits for room in a full ring.
 *
 * Text: an "rss" line and a "kprof" line in each process block. JSON:
 * "resources" in each process object (kprof-analyze(1)).
 */
#include <stdlib.h>

#include "analyze.h"
#include "json.h"

struct res_proc {
	uint64_t samples;
	uint64_t peak, peak_ns;   /* the largest rss sampled, and when */
	uint64_t maxrss;          /* the kernel's high-water mark, last seen */
	uint64_t maxrss_first;    /* ... at the first sample */
	uint64_t end_rss, end_ns; /* the last sample */
	uint64_t vm_peak;
	uint64_t minflt, majflt, cpu_ns;
	uint64_t writer_cpu_ns, ring_waits, ring_wait_ns; /* 0: not recorded */
	uint64_t cg_usage, cg_limit; /* its memory cgroup then; 0: not known */
};

struct res_state {
	unsigned slot;
	struct res_proc *cur;
};

static void *res_init(struct kp_analysis *an, unsigned slot)
{
	(void)an;
	struct res_state *s = xcalloc(1, sizeof(*s));
	s->slot = slot;
	return s;
}

static void res_begin_trace(void *state, struct kp_trace *t)
{
	struct res_state *s = state;
	s->cur = xcalloc(1, sizeof(*s->cur));
	t->proc->pass_data[s->slot] = s->cur;
}

/* Negative values (-1: not read) count as absent. */
static uint64_t val(const struct kp_rec *r, unsigned i)
{
	return r->u.ext.v[i] > 0 ? (uint64_t)r->u.ext.v[i] : 0;
}

static void res_events(void *state, struct kp_trace *t,
		       const struct kp_batch *b)
{
	struct res_state *s = state;
	struct res_proc *p = s->cur;
	(void)t;
	for (size_t i = 0; i < b->nxev; i++) {
		const struct kp_event *e = &b->ev[b->xev[i]];
		if (e->type != KP_REC_SNAPSHOT)
			continue;
		const struct kp_rec *r = kp_batch_rec(b, e);
		uint64_t rss = val(r, KP_SNAP_RSS), vm = val(r, KP_SNAP_VM);
		if (!p->samples++)
			p->maxrss_first = val(r, KP_SNAP_MAXRSS);
		if (rss > p->peak) {
			p->peak = rss;
			p->peak_ns = e->ts;
		}
		if (vm > p->vm_peak)
			p->vm_peak = vm;
		if (val(r, KP_SNAP_MAXRSS) > p->maxrss)
			p->maxrss = val(r, KP_SNAP_MAXRSS);
		if (e->ts >= p->end_ns) {
			p->end_ns = e->ts;
			p->end_rss = rss;
			p->minflt = val(r, KP_SNAP_MINFLT);
			p->majflt = val(r, KP_SNAP_MAJFLT);
			p->cpu_ns = val(r, KP_SNAP_CPU_NS);
			p->writer_cpu_ns = val(r, KP_SNAP_WRITER_CPU_NS);
			p->ring_waits = val(r, KP_SNAP_RING_WAITS);
			p->ring_wait_ns = val(r, KP_SNAP_RING_WAIT_NS);
			p->cg_usage = val(r, KP_SNAP_CG_USAGE);
			p->cg_limit = val(r, KP_SNAP_CG_LIMIT);
		}
	}
}

static void res_end_trace(void *state, struct kp_trace *t)
{
	struct res_state *s = state;
	(void)t;
	s->cur = NULL;
}

/*
 * The kernel's high-water mark where it says more than the samples: a peak
 * between two of them. Only if it grew while this trace ran: the mark
 * carries over an exec, and a forked child starts with its parent's.
 */
static uint64_t rss_max(const struct res_proc *r)
{
	return r->maxrss > r->peak && r->maxrss > r->maxrss_first ? r->maxrss
								   : r->peak;
}

/*
 * What recording cost: the writer's share of the process's CPU time (the
 * hooks' own cost, inside the app's threads, cannot be told apart), and
 * the time app threads spent waiting for room in a full ring, with a hint
 * when that is 1 % of the run or more (threads summed). Nothing for a
 * trace without these values (before 3.2).
 */
static void kprof_text(const struct res_proc *r, const struct kp_proc *p,
		       FILE *out)
{
	char a[32], b[32], c[32];
	if (!r->writer_cpu_ns && !r->ring_waits)
		return;
	fprintf(out, "  kprof    writer thread %s CPU",
		kp_fmt_ns(a, sizeof(a), r->writer_cpu_ns));
	if (r->cpu_ns >= r->writer_cpu_ns && r->cpu_ns)
		fprintf(out, " (%.1f %% of the process's %s)",
			100.0 * (double)r->writer_cpu_ns / (double)r->cpu_ns,
			kp_fmt_ns(b, sizeof(b), r->cpu_ns));
	if (!r->ring_waits) {
		fputs("; no waits for a full ring\n", out);
		return;
	}
	fprintf(out, "; threads waited for a full ring %s time%s, %s in all",
		kp_fmt_count(c, sizeof(c), r->ring_waits),
		r->ring_waits == 1 ? "" : "s",
		kp_fmt_ns(a, sizeof(a), r->ring_wait_ns));
	if (p->duration_ns && r->ring_wait_ns * 100 >= p->duration_ns)
		fputs(" (the writer fell behind: a larger "
		      "KOTOBA_PROFILE_BUFFER_KB absorbs bursts)", out);
	fputc('\n', out);
}

static void res_proc_text(void *state, struct kp_analysis *an,
			  const struct kp_proc *p, FILE *out)
{
	struct res_state *s = state;
	const struct res_proc *r = p->pass_data[s->slot];
	if (!r || !r->samples)
		return;
	char a[32], b[32], c[32];
	const struct kp_mem_totals *m = kp_mem_proc_totals(an, p);
	fprintf(out, "  rss      peak %s at %s",
		kp_fmt_bytes(a, sizeof(a), r->peak),
		kp_fmt_ns(b, sizeof(b), r->peak_ns));
	if (m && m->alloc_calls)
		fprintf(out, " (heap peak %s)",
			kp_fmt_bytes(c, sizeof(c), m->peak_bytes));
	fprintf(out, ", at the end %s", kp_fmt_bytes(a, sizeof(a), r->end_rss));
	/* the kernel saw more between two snapshots */
	if (rss_max(r) > r->peak)
		fprintf(out, "; high-water mark %s",
			kp_fmt_bytes(b, sizeof(b), rss_max(r)));
	if (r->majflt)
		fprintf(out, "; %s major page faults",
			kp_fmt_count(c, sizeof(c), r->majflt));
	fputc('\n', out);
	kprof_text(r, p, out);
}

static void jkey(struct kp_json *j, const char *k, uint64_t v)
{
	kp_json_key(j, k);
	kp_json_u64(j, v);
}

static void res_proc_json(void *state, struct kp_analysis *an,
			  const struct kp_proc *p, struct kp_json *j)
{
	struct res_state *s = state;
	const struct res_proc *r = p->pass_data[s->slot];
	(void)an;
	if (!r)
		return;
	kp_json_key(j, "resources");
	kp_json_begin_object(j);
	jkey(j, "samples", r->samples);
	jkey(j, "rss_peak_bytes", r->peak);
	jkey(j, "rss_peak_ns", r->peak_ns);
	jkey(j, "rss_max_bytes", rss_max(r));
	jkey(j, "rss_end_bytes", r->end_rss);
	jkey(j, "vm_peak_bytes", r->vm_peak);
	jkey(j, "minor_faults", r->minflt);
	jkey(j, "major_faults", r->majflt);
	jkey(j, "cpu_ns", r->cpu_ns);
	jkey(j, "kprof_writer_cpu_ns", r->writer_cpu_ns);
	jkey(j, "kprof_ring_waits", r->ring_waits);
	jkey(j, "kprof_ring_wait_ns", r->ring_wait_ns);
	kp_json_end_object(j);
}

uint64_t kp_rss_peak(const struct kp_analysis *an, const struct kp_proc *p)
{
	const struct res_state *s = kp_pass_state(an, &kp_pass_resources);
	const struct res_proc *r = s ? p->pass_data[s->slot] : NULL;
	return r ? rss_max(r) : 0;
}

int kp_cgroup_last(const struct kp_analysis *an, const struct kp_proc *p,
		   uint64_t *usage, uint64_t *limit, uint64_t *at)
{
	const struct res_state *s = kp_pass_state(an, &kp_pass_resources);
	const struct res_proc *r = s ? p->pass_data[s->slot] : NULL;
	if (!r || !r->samples || !r->cg_limit)
		return 0;
	*usage = r->cg_usage;
	*limit = r->cg_limit;
	*at = r->end_ns;
	return 1;
}

static void res_free(void *state, struct kp_analysis *an)
{
	struct res_state *s = state;
	for (size_t i = 0; i < an->nprocs; i++) {
		free(an->procs[i]->pass_data[s->slot]);
		an->procs[i]->pass_data[s->slot] = NULL;
	}
	free(s);
}

const struct kp_pass kp_pass_resources = {
	.name = "resources",
	.xInit = res_init,
	.xBeginTrace = res_begin_trace,
	.xEvents = res_events,
	.xEndTrace = res_end_trace,
	.xProcText = res_proc_text,
	.xProcJson = res_proc_json,
	.xFree = res_free,
};
