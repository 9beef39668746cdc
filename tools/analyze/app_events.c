/* SPDX-License-Identifier: MIT */
/*
 * The application's own events (kprof.h): spans and custom events, by name
 * across every process. Command "app"; a section of the summary when the
 * traces hold any.
 *
 *   spans      per name: how many ended, their durations (total, p50, p90,
 *              p99, max from a log-linear histogram), how many were still
 *              open when the trace ended
 *   counters   per name: events and the sum of their values
 *   gauges     per name: events, min, max and the last value set
 *   durations  per name: events and the same quantiles as spans
 *
 * A span end names its span by id only, so the begin's name is looked up
 * in a per-trace map of open spans (ids are per process).
 */
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "hist.h"
#include "json.h"

enum app_kind { APP_SPAN, APP_COUNTER, APP_GAUGE, APP_DURATION, APP_KINDS };

static const char *const kind_key[APP_KINDS] = {
	"spans", "counters", "gauges", "durations",
};

struct app_series {
	char *name;
	uint64_t hash;
	uint32_t next;        /* hash chain */
	enum app_kind kind;
	uint64_t events;
	int64_t sum, min, max, last;
	uint64_t unclosed;    /* spans: begun, never ended */
	struct kp_hist hist;  /* spans, durations */
};

struct app_state {
	struct app_series *s;
	size_t n, cap;
	struct kp_idmap ids;  /* hash of (kind, name) -> first series */
	/* per trace: open span id -> slot in opens[]; free slots are
	 * chained through .series (UINT32_MAX ends the chain) */
	struct kp_idmap open;
	struct open_span {
		uint64_t ts;      /* begin */
		uint32_t series;  /* or the next free slot */
	} *opens;
	uint32_t nopens, opens_cap, free_slot;
};

static void *app_init(struct kp_analysis *an, unsigned slot)
{
	struct app_state *st = xcalloc(1, sizeof(*st));

	(void)an;
	(void)slot;
	kp_idmap_init(&st->ids);
	kp_idmap_init(&st->open);
	return st;
}

static uint32_t series_get(struct app_state *st, struct kp_analysis *an,
			   enum app_kind kind, const char *name, size_t len)
{
	uint64_t h = kp_hash_bytes(name, len, an->seed ^ (uint64_t)kind);
	if (h == KP_IDMAP_EMPTY)
		h--;
	uint32_t first = kp_idmap_get(&st->ids, h);
	for (uint32_t i = first; i != UINT32_MAX; i = st->s[i].next)
		if (st->s[i].kind == kind && strlen(st->s[i].name) == len &&
		    !memcmp(st->s[i].name, name, len))
			return i;
	if (st->n >= st->cap) {
		st->cap = st->cap ? 2 * st->cap : 16;
		st->s = xrealloc_array(st->s, st->cap, sizeof(*st->s));
	}
	struct app_series *s = &st->s[st->n];
	memset(s, 0, sizeof(*s));
	s->name = xstrndup(name, len);
	s->hash = h;
	s->kind = kind;
	s->min = INT64_MAX;
	s->max = INT64_MIN;
	kp_hist_init(&s->hist);
	if (first == UINT32_MAX) {
		s->next = UINT32_MAX;
		kp_idmap_put(&st->ids, h, (uint32_t)st->n);
	} else {
		/* the map keeps the first; chain the new one behind it */
		s->next = st->s[first].next;
		st->s[first].next = (uint32_t)st->n;
	}
	return (uint32_t)st->n++;
}

static void app_begin_trace(void *state, struct kp_trace *t)
{
	struct app_state *st = state;

	(void)t;
	kp_idmap_free(&st->open);
	kp_idmap_init(&st->open);
	st->nopens = 0;
	st->free_slot = UINT32_MAX;
}

static uint32_t open_slot(struct app_state *st)
{
	uint32_t i = st->free_slot;
	if (i != UINT32_MAX) {
		st->free_slot = st->opens[i].series;
		return i;
	}
	if (st->nopens >= st->opens_cap) {
		st->opens_cap = st->opens_cap ? 2 * st->opens_cap : 64;
		st->opens = xrealloc_array(st->opens, st->opens_cap,
					   sizeof(*st->opens));
	}
	return st->nopens++;
}

static void app_value(struct app_series *s, int64_t v)
{
	s->events++;
	s->sum = (int64_t)((uint64_t)s->sum + (uint64_t)v); /* wraps */
	if (v < s->min)
		s->min = v;
	if (v > s->max)
		s->max = v;
	s->last = v;
	if ((s->kind == APP_DURATION || s->kind == APP_SPAN) && v >= 0)
		kp_hist_add(&s->hist, (uint64_t)v);
}

static void app_events(void *state, struct kp_trace *t,
		       const struct kp_batch *b)
{
	struct app_state *st = state;

	if (!b->nx)
		return; /* allocations only */
	for (size_t i = 0; i < b->nxev; i++) {
		const struct kp_event *e = &b->ev[b->xev[i]];
		if (e->type != KP_REC_SPAN && e->type != KP_REC_CUSTOM)
			continue;
		const struct kp_rec *r = kp_batch_rec(b, e);
		const char *name = r->u.ext.str ? r->u.ext.str : "";
		size_t len = r->u.ext.str ? r->u.ext.str_len : 0;
		if (e->type == KP_REC_CUSTOM) {
			if (e->kind > 2)
				continue; /* a kind of a newer version */
			enum app_kind k = e->kind == 0 ? APP_COUNTER :
					  e->kind == 1 ? APP_GAUGE :
							 APP_DURATION;
			uint32_t si = series_get(st, t->an, k, name, len);
			app_value(&st->s[si], r->u.ext.v[KP_CUSTOM_VALUE]);
			continue;
		}
		uint64_t id = (uint64_t)r->u.ext.v[KP_SPAN_ID];
		if (id == KP_IDMAP_EMPTY)
			continue;
		if (e->kind == 0) { /* begin */
			uint32_t si = series_get(st, t->an, APP_SPAN, name,
						 len);
			if (kp_idmap_get(&st->open, id) != UINT32_MAX)
				continue; /* a repeated id: keep the first */
			uint32_t slot = open_slot(st);
			st->opens[slot].ts = e->ts;
			st->opens[slot].series = si;
			kp_idmap_put(&st->open, id, slot);
			st->s[si].unclosed++;
			continue;
		}
		uint32_t slot = kp_idmap_get(&st->open, id);
		if (slot == UINT32_MAX)
			continue; /* its begin was lost, or a second end */
		kp_idmap_del(&st->open, id);
		struct open_span *o = &st->opens[slot];
		uint32_t si = o->series;
		st->s[si].unclosed--;
		/* the time between the records: the same as the end's dur
		 * (within a ns of rounding) when the recorder knew it */
		app_value(&st->s[si], (int64_t)kp_sat_sub(e->ts, o->ts));
		o->series = st->free_slot;
		st->free_slot = slot;
	}
}

static int cmp_series(const void *a, const void *b)
{
	const struct app_series *x = a, *y = b;
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	/* the most time (spans, durations) or events first, then by name */
	uint64_t kx = x->hist.count ? x->hist.sum : x->events;
	uint64_t ky = y->hist.count ? y->hist.sum : y->events;
	if (kx != ky)
		return kx > ky ? -1 : 1;
	return strcmp(x->name, y->name);
}

static void app_finish(void *state, struct kp_analysis *an)
{
	struct app_state *st = state;

	(void)an;
	if (st->n)
		qsort(st->s, st->n, sizeof(*st->s), cmp_series);
}

static void text_quantiles(FILE *out, const struct kp_hist *h)
{
	char a[32], b[32], c[32], d[32], e[32];

	fprintf(out, " %10s %10s %10s %10s %10s",
		kp_fmt_ns(a, sizeof(a), h->sum),
		kp_fmt_ns(b, sizeof(b), kp_hist_quantile(h, 0.5)),
		kp_fmt_ns(c, sizeof(c), kp_hist_quantile(h, 0.9)),
		kp_fmt_ns(d, sizeof(d), kp_hist_quantile(h, 0.99)),
		kp_fmt_ns(e, sizeof(e), h->max));
}

static void app_report_text(void *state, struct kp_analysis *an, FILE *out)
{
	struct app_state *st = state;
	char a[32];
	size_t shown[APP_KINDS] = { 0 };

	if (!st->n)
		return;
	fprintf(out, "application events (kprof.h spans and custom events)\n");
	for (size_t i = 0; i < st->n; i++) {
		const struct app_series *s = &st->s[i];
		if (shown[s->kind]++ >= an->opts->top && !kp_command_is(an, "app"))
			continue;
		if (shown[s->kind] == 1) {
			if (s->kind == APP_SPAN || s->kind == APP_DURATION)
				fprintf(out, "  %-10s %10s %10s %10s %10s %10s "
					"%10s  name\n", kind_key[s->kind],
					"count", "total", "p50", "p90", "p99",
					"max");
			else if (s->kind == APP_COUNTER)
				fprintf(out, "  %-10s %10s %21s  name\n",
					kind_key[s->kind], "events", "sum");
			else
				fprintf(out, "  %-10s %10s %21s %21s %21s  "
					"name\n", kind_key[s->kind], "events",
					"min", "max", "last");
		}
		fprintf(out, "  %-10s %10s", "",
			kp_fmt_count(a, sizeof(a), s->events));
		if (s->kind == APP_SPAN || s->kind == APP_DURATION)
			text_quantiles(out, &s->hist);
		else if (s->kind == APP_COUNTER)
			fprintf(out, " %21lld", (long long)s->sum);
		else
			fprintf(out, " %21lld %21lld %21lld", (long long)s->min,
				(long long)s->max, (long long)s->last);
		char nm[128];
		fprintf(out, "  %s", kp_disp(nm, sizeof(nm), s->name, 60));
		if (s->unclosed)
			fprintf(out, " (%llu still open at the end)",
				(unsigned long long)s->unclosed);
		fputc('\n', out);
	}
	fprintf(out, "  (quantiles within %.2f %%)\n\n",
		KP_HIST_REL_ERROR * 100);
}

static void app_report_json(void *state, struct kp_analysis *an,
			    struct kp_json *j)
{
	struct app_state *st = state;

	(void)an;
	kp_json_key(j, "app");
	kp_json_begin_object(j);
	for (int k = 0; k < APP_KINDS; k++) {
		kp_json_key(j, kind_key[k]);
		kp_json_begin_array(j);
		for (size_t i = 0; i < st->n; i++) {
			const struct app_series *s = &st->s[i];
			if ((int)s->kind != k)
				continue;
			kp_json_begin_object(j);
			kp_json_key(j, "name");
			kp_json_str(j, s->name);
			kp_json_key(j, "events");
			kp_json_u64(j, s->events);
			if (k == APP_SPAN || k == APP_DURATION) {
				static const struct {
					const char *key;
					double q;
				} qs[] = { { "p50_ns", 0.5 }, { "p90_ns", 0.9 },
					   { "p99_ns", 0.99 } };
				kp_json_key(j, "total_ns");
				kp_json_u64(j, s->hist.sum);
				for (size_t q = 0; q < KP_ARRAY_SIZE(qs); q++) {
					kp_json_key(j, qs[q].key);
					kp_json_u64(j, kp_hist_quantile(
							       &s->hist, qs[q].q));
				}
				kp_json_key(j, "max_ns");
				kp_json_u64(j, s->hist.max);
			} else if (k == APP_COUNTER) {
				kp_json_key(j, "sum");
				kp_json_i64(j, s->sum);
			} else {
				kp_json_key(j, "min");
				kp_json_i64(j, s->events ? s->min : 0);
				kp_json_key(j, "max");
				kp_json_i64(j, s->events ? s->max : 0);
				kp_json_key(j, "last");
				kp_json_i64(j, s->last);
			}
			if (k == APP_SPAN) {
				kp_json_key(j, "unclosed");
				kp_json_u64(j, s->unclosed);
			}
			kp_json_end_object(j);
		}
		kp_json_end_array(j);
	}
	kp_json_end_object(j);
}

static void app_free(void *state, struct kp_analysis *an)
{
	struct app_state *st = state;

	(void)an;
	for (size_t i = 0; i < st->n; i++) {
		free(st->s[i].name);
		kp_hist_free(&st->s[i].hist);
	}
	free(st->s);
	kp_idmap_free(&st->ids);
	kp_idmap_free(&st->open);
	free(st->opens);
	free(st);
}

const struct kp_pass kp_pass_app = {
	.name = "app",
	.command = "app",
	.xInit = app_init,
	.xBeginTrace = app_begin_trace,
	.xEvents = app_events,
	.xFinish = app_finish,
	.xReportText = app_report_text,
	.xReportJson = app_report_json,
	.xFree = app_free,
};
