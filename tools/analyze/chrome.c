/* SPDX-License-Identifier: MIT */
/*
 * Chrome trace / Perfetto JSON export of the timeline
 * (kprof-analyze export --chrome FILE): per process and thread,
 *   - spans (SPAN begin/end) as B/E events, named by the span's name,
 *   - queries (QUERY, with its duration) as complete X events, the text as
 *     the name (cut to 200 bytes) and rows/status as args,
 *   - I/O calls (KP_REC_IO) of at least --io-min-us (default 100 us) as X
 *     events "io:<op>" with fd, requested and returned bytes,
 *   - the resident size (SNAPSHOT) as a counter "rss" per process, and
 *     the heap in use as a counter "heap" (the memory pass's slices: the
 *     most in use in each),
 *   - thread names (THREAD_START) and process names (exe) as metadata.
 * Times are microseconds (with ns fractions) since the earliest traced
 * process started, so the processes of a fork/exec tree line up.
 * This pass keeps events only when --chrome was given.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>

#include "cpu.h"
#include "io.h"
#include "json.h"

struct tev {
	uint64_t wall_ns;  /* start (absolute, CLOCK_REALTIME based) */
	uint64_t dur_ns;
	int64_t pid;
	uint32_t tid;
	char ph;           /* 'B', 'E', 'X', 'M', 'C' */
	uint8_t cat;       /* 0 span, 1 query, 2 io, 3 thread name, 4 process
			    * name, 5 rss */
	char *name;
	int64_t a, b, c;   /* args */
};

struct tl_state {
	struct kp_analysis *an;
	int on;
	uint64_t min_ns;
	struct tev *ev;
	size_t n, cap;
	uint64_t wall0;    /* this trace's start_wall_ns */
};

static void *tl_init(struct kp_analysis *an, unsigned slot)
{
	(void)slot;
	struct tl_state *s = xcalloc(1, sizeof(*s));
	s->an = an;
	s->on = an->opts->chrome != NULL;
	s->min_ns = an->opts->chrome_min_set ? an->opts->chrome_min_ns
					     : 100000;
	return s;
}

static struct tev *push(struct tl_state *s)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 256;
		s->ev = xrealloc_array(s->ev, s->cap, sizeof(*s->ev));
	}
	struct tev *e = &s->ev[s->n++];
	memset(e, 0, sizeof(*e));
	return e;
}

static void tl_begin(void *st, struct kp_trace *t)
{
	struct tl_state *s = st;
	s->wall0 = t->hdr ? t->hdr->start_wall_ns : 0;
	if (!s->on)
		return;
	struct tev *e = push(s);
	e->ph = 'M';
	e->cat = 4; /* process name */
	e->pid = t->proc->pid;
	e->wall_ns = s->wall0;
	e->name = xstrdup(t->hdr && t->hdr->exe ? t->hdr->exe : "");
}

static void tl_record(void *st, struct kp_trace *t, const struct kp_rec *r)
{
	struct tl_state *s = st;
	if (!s->on || (r->type != KP_REC_THREAD_START &&
			r->type != KP_REC_THREAD_NAME))
		return;
	struct tev *e = push(s);
	e->ph = 'M';
	e->cat = 3;
	e->pid = t->proc->pid;
	e->tid = r->tid;
	e->wall_ns = s->wall0 + r->ts;
	e->name = xstrndup(r->u.thread.name ? r->u.thread.name : "",
			   r->u.thread.name_len);
}

static void tl_events(void *st, struct kp_trace *t, const struct kp_batch *b)
{
	struct tl_state *s = st;
	if (!s->on || !b->nx)
		return; /* off, or allocations only */
	for (size_t i = 0; i < b->nxev; i++) {
		const struct kp_event *ev = &b->ev[b->xev[i]];
		if (ev->type != KP_REC_SPAN && ev->type != KP_REC_QUERY &&
		    ev->type != KP_REC_IO && ev->type != KP_REC_SNAPSHOT)
			continue;
		const struct kp_rec *r = kp_batch_rec(b, ev);
		if (ev->type == KP_REC_SNAPSHOT) {
			if (r->u.ext.v[KP_SNAP_RSS] < 0)
				continue; /* not read */
			struct tev *e = push(s);
			e->pid = t->proc->pid;
			e->ph = 'C';
			e->cat = 5;
			e->wall_ns = s->wall0 + ev->ts;
			e->a = r->u.ext.v[KP_SNAP_RSS];
			e->name = xstrdup("rss");
			continue;
		}
		int64_t dur = ev->type == KP_REC_SPAN ? r->u.ext.v[KP_SPAN_DUR] :
			      ev->type == KP_REC_QUERY ? r->u.ext.v[KP_Q_DUR] :
							 r->u.ext.v[KP_IO_DUR];
		if (dur < 0)
			dur = 0;
		if (ev->type == KP_REC_IO && (uint64_t)dur < s->min_ns)
			continue;
		struct tev *e = push(s);
		e->pid = t->proc->pid;
		e->tid = ev->tid;
		if (ev->type == KP_REC_SPAN) {
			e->ph = r->kind == 0 ? 'B' : 'E';
			e->cat = 0;
			e->wall_ns = s->wall0 + ev->ts;
			e->a = r->u.ext.v[KP_SPAN_ID];
			e->name = xstrndup(r->u.ext.str ? r->u.ext.str : "",
					   r->u.ext.str_len < 200 ?
						   r->u.ext.str_len : 200);
			continue;
		}
		e->ph = 'X';
		e->dur_ns = (uint64_t)dur;
		e->wall_ns = s->wall0 + kp_sat_sub(ev->ts, (uint64_t)dur);
		if (ev->type == KP_REC_QUERY) {
			e->cat = 1;
			e->a = r->u.ext.v[KP_Q_ROWS];
			e->b = r->u.ext.v[KP_Q_STATUS];
			e->name = xstrndup(r->u.ext.str ? r->u.ext.str : "",
					   r->u.ext.str_len < 200 ?
						   r->u.ext.str_len : 200);
		} else {
			char nm[40];
			const char *op = kp_io_op_name(r->kind);
			if (op)
				snprintf(nm, sizeof(nm), "io:%s", op);
			else
				snprintf(nm, sizeof(nm), "io:%u", r->kind);
			e->cat = 2;
			e->a = r->u.ext.v[KP_IO_FD];
			e->b = r->u.ext.v[KP_IO_REQ];
			e->c = r->u.ext.v[KP_IO_RET];
			e->name = xstrdup(nm);
		}
	}
}

/* The heap over time, from the memory pass (before this one in order, so
 * done with the trace). */
static void tl_end(void *st, struct kp_trace *t)
{
	struct tl_state *s = st;
	const struct kp_mem_totals *m = s->on ? kp_mem_proc_totals(s->an,
								    t->proc)
					      : NULL;
	for (uint32_t i = 0; m && i < m->nslices; i++) {
		struct tev *e = push(s);
		e->pid = t->proc->pid;
		e->ph = 'C';
		e->cat = 5;
		e->wall_ns = s->wall0 + (uint64_t)i * m->slice_ns;
		e->a = (int64_t)m->heap[i];
		e->name = xstrdup("heap");
	}
}

static void tl_free(void *st, struct kp_analysis *an)
{
	(void)an;
	struct tl_state *s = st;
	for (size_t i = 0; i < s->n; i++)
		free(s->ev[i].name);
	free(s->ev);
	free(s);
}

const struct kp_pass kp_pass_timeline = {
	.name = "timeline",
	.xInit = tl_init,
	.xBeginTrace = tl_begin,
	.xRecord = tl_record,
	.xEvents = tl_events,
	.xEndTrace = tl_end,
	.xFree = tl_free,
};

static struct tl_state *tl_of(const struct kp_analysis *an)
{
	return kp_pass_state(an, &kp_pass_timeline);
}

int kp_chrome_export(struct kp_analysis *an, const char *path)
{
	struct tl_state *s = tl_of(an);
	FILE *f = fopen(path, "w");
	if (!f) {
		error("cannot open '%s': %s", path, strerror(errno));
		return 1;
	}
	uint64_t t0 = UINT64_MAX;
	for (size_t i = 0; s && i < s->n; i++)
		if (s->ev[i].wall_ns < t0)
			t0 = s->ev[i].wall_ns;
	static const char *const cats[] = { "span", "query", "io",
					    "__metadata", "__metadata",
					    "memory" };
	struct kp_json j;
	kp_json_init(&j, f, 0);
	kp_json_begin_object(&j);
	kp_json_key(&j, "displayTimeUnit");
	kp_json_str(&j, "ns");
	kp_json_key(&j, "traceEvents");
	kp_json_begin_array(&j);
	for (size_t i = 0; s && i < s->n; i++) {
		const struct tev *e = &s->ev[i];
		kp_json_begin_object(&j);
		if (e->ph == 'M') {
			kp_json_key(&j, "name");
			kp_json_str(&j, e->cat == 3 ? "thread_name"
						    : "process_name");
			kp_json_key(&j, "ph");
			kp_json_str(&j, "M");
			kp_json_key(&j, "pid");
			kp_json_i64(&j, e->pid);
			kp_json_key(&j, "tid");
			kp_json_u64(&j, e->cat == 3 ? e->tid : 0);
			kp_json_key(&j, "args");
			kp_json_begin_object(&j);
			kp_json_key(&j, "name");
			kp_json_str(&j, e->name);
			kp_json_end_object(&j);
			kp_json_end_object(&j);
			continue;
		}
		kp_json_key(&j, "name");
		kp_json_str(&j, e->name);
		kp_json_key(&j, "cat");
		kp_json_str(&j, cats[e->cat]);
		kp_json_key(&j, "ph");
		char ph[2] = { e->ph, 0 };
		kp_json_str(&j, ph);
		kp_json_key(&j, "ts");
		kp_json_f64(&j, (double)(e->wall_ns - t0) / 1e3);
		if (e->ph == 'X') {
			kp_json_key(&j, "dur");
			kp_json_f64(&j, (double)e->dur_ns / 1e3);
		}
		kp_json_key(&j, "pid");
		kp_json_i64(&j, e->pid);
		kp_json_key(&j, "tid");
		kp_json_u64(&j, e->tid);
		kp_json_key(&j, "args");
		kp_json_begin_object(&j);
		if (e->cat == 0) {
			kp_json_key(&j, "id");
			kp_json_i64(&j, e->a);
		} else if (e->cat == 1) {
			kp_json_key(&j, "rows");
			kp_json_i64(&j, e->a);
			kp_json_key(&j, "status");
			kp_json_i64(&j, e->b);
		} else if (e->cat == 2) {
			kp_json_key(&j, "fd");
			kp_json_i64(&j, e->a);
			kp_json_key(&j, "requested");
			kp_json_i64(&j, e->b);
			kp_json_key(&j, "returned");
			kp_json_i64(&j, e->c);
		} else if (e->cat == 5) {
			kp_json_key(&j, "bytes");
			kp_json_i64(&j, e->a);
		}
		kp_json_end_object(&j);
		kp_json_end_object(&j);
	}
	kp_json_end_array(&j);
	kp_json_end_object(&j);
	kp_json_end(&j);
	int bad = ferror(f);
	bad |= fclose(f) != 0;
	if (bad)
		error("cannot write '%s'", path);
	return bad ? 1 : 0;
}
