/* SPDX-License-Identifier: MIT */
/*
 * kprof-analyze diff --base BASE.kpz... NEW.kpz...: what changed in the
 * heap between two runs (heaptrack_print --diff's, pprof -diff_base's
 * job): the totals side by side, then the allocation sites whose calls
 * and bytes changed the most, and the leaks that grew or shrank; and the
 * query fingerprints of both, matched by text, by change in time. The two
 * sets of traces are analysed apart; a site of one is the same as a site
 * of the other when its symbolized frames are (function, file and line
 * where debug information names them, else module and offset, with the
 * executable's base name), so two runs' addresses need not agree, and
 * two builds' need not either where they have debug information.
 */
#include "analyze.h"
#include "json.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* One site's numbers on one side. */
struct dstat {
	uint64_t calls, bytes, leaked_bytes, leaked_blocks;
};

/* A site of either side, by key; s[0] base, s[1] new. */
struct dsite {
	char *key;
	int side;                   /* while sorting: whose entry this is */
	struct dstat s[2];
	struct kp_analysis *an;     /* where its stack is: new's if any */
	uint32_t gstack;
};

static const char *base_name(const char *p)
{
	const char *s = strrchr(p, '/');
	return s && s[1] ? s + 1 : p;
}

/* The site's key: the executable's base name, then one line a frame. */
static char *site_key(struct kp_analysis *an, const struct kp_site *s)
{
	const struct kp_symframe *f[KP_MAX_STACK_DEPTH];
	size_t first;
	size_t n = kp_symbolize_stack(kp_analysis_symbols(an), s->gstack, f,
				      KP_MAX_STACK_DEPTH, &first);
	size_t cap = 256, len = 0;
	char *k = xmalloc(cap);
	const char *exe = s->exe < an->nexes ? an->exes[s->exe] : "";
	len = (size_t)snprintf(k, cap, "%s\n", base_name(exe));
	for (size_t i = 0; i < n; i++) {
		char line[1200];
		int m;
		if (f[i]->function && f[i]->file)
			m = snprintf(line, sizeof(line), "%s %s:%d\n",
				     f[i]->function, f[i]->file, f[i]->line);
		else if (f[i]->function)
			m = snprintf(line, sizeof(line), "%s %s\n",
				     f[i]->function, base_name(f[i]->module));
		else
			m = snprintf(line, sizeof(line), "%s+0x%" PRIx64 "\n",
				     base_name(f[i]->module), f[i]->offset);
		size_t ml = m < 0 ? 0 : (size_t)m >= sizeof(line) ?
			sizeof(line) - 1 : (size_t)m;
		if (len + ml + 1 > cap) {
			while (len + ml + 1 > cap)
				cap *= 2;
			k = xrealloc(k, cap);
		}
		memcpy(k + len, line, ml);
		len += ml;
		k[len] = '\0';
	}
	return k;
}

static int by_key(const void *a, const void *b)
{
	const struct dsite *x = a, *y = b;
	int c = strcmp(x->key, y->key);
	return c ? c : x->side - y->side;
}

/* Every site of both sides, one entry a key, summed (two stacks of one
 * side may symbolize alike). */
static struct dsite *match_sites(struct kp_analysis *an[2], size_t *nout)
{
	size_t n = 0, cap = 0;
	struct dsite *v = NULL;
	for (int side = 0; side < 2; side++) {
		const struct kp_site *const *sites;
		size_t ns = kp_mem_top_calls(an[side], &sites); /* all of them */
		for (size_t i = 0; i < ns; i++) {
			if (n == cap) {
				cap = cap ? 2 * cap : 256;
				v = xrealloc_array(v, cap, sizeof(*v));
			}
			const struct kp_site *s = sites[i];
			struct dsite *d = &v[n++];
			memset(d, 0, sizeof(*d));
			d->key = site_key(an[side], s);
			d->side = side;
			d->s[side] = (struct dstat){ s->allocs, s->bytes,
						     s->leaked_bytes,
						     s->leaked_blocks };
			d->an = an[side];
			d->gstack = s->gstack;
		}
	}
	if (n)
		qsort(v, n, sizeof(*v), by_key);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m && !strcmp(v[m - 1].key, v[i].key)) {
			struct dsite *d = &v[m - 1];
			for (int k = 0; k < 2; k++) {
				d->s[k].calls += v[i].s[k].calls;
				d->s[k].bytes += v[i].s[k].bytes;
				d->s[k].leaked_bytes += v[i].s[k].leaked_bytes;
				d->s[k].leaked_blocks +=
					v[i].s[k].leaked_blocks;
			}
			if (v[i].side == 1 && d->side == 0) {
				d->an = v[i].an; /* print new's stack */
				d->gstack = v[i].gstack;
				d->side = 1;
			}
			free(v[i].key);
		} else {
			v[m++] = v[i];
		}
	}
	*nout = m;
	return v;
}

static int64_t delta(uint64_t a, uint64_t b)
{
	return (int64_t)(b - a);
}

static uint64_t mag(int64_t d)
{
	return d < 0 ? (uint64_t)-d : (uint64_t)d;
}

/* Field off of a dstat (all are uint64_t). */
static uint64_t field(const struct dstat *s, size_t off)
{
	uint64_t v;
	memcpy(&v, (const char *)s + off, sizeof(v));
	return v;
}

static int64_t change(const struct dsite *d, size_t off)
{
	return delta(field(&d->s[0], off), field(&d->s[1], off));
}

/* What a ranking ranks: the largest change of field bytes first, then of
 * field count, then the key; its section's title and count's unit. */
struct ranking {
	size_t bytes, count;
	const char *title, *unit;
};

static const struct ranking sites_rank = {
	offsetof(struct dstat, bytes), offsetof(struct dstat, calls),
	"ALLOCATION SITES THAT CHANGED, the most bytes allocated first", "call"
}, leaks_rank = {
	offsetof(struct dstat, leaked_bytes),
	offsetof(struct dstat, leaked_blocks),
	"LEAKS THAT CHANGED, the most bytes first", "block"
};

static const struct ranking *cur_rank; /* qsort has no context */

static int by_change(const void *a, const void *b)
{
	const struct dsite *x = a, *y = b;
	size_t off[2] = { cur_rank->bytes, cur_rank->count };
	for (int i = 0; i < 2; i++) {
		uint64_t xd = mag(change(x, off[i])), yd = mag(change(y, off[i]));
		if (xd != yd)
			return xd < yd ? 1 : -1;
	}
	return strcmp(x->key, y->key);
}

/* Sort v by rk; @return how many sites changed in rk's two fields (they
 * come first). */
static size_t rank_by(struct dsite *v, size_t n, const struct ranking *rk)
{
	cur_rank = rk;
	if (n) /* v may be NULL */
		qsort(v, n, sizeof(*v), by_change);
	size_t k = 0;
	while (k < n && (change(&v[k], rk->bytes) || change(&v[k], rk->count)))
		k++;
	return k;
}

/* "+1,234" / "-1,234" / "0" */
static const char *fmt_delta(char *buf, size_t n, int64_t d)
{
	char c[28]; /* "18,446,744,073,709,551,615" */
	kp_fmt_count(c, sizeof(c), mag(d));
	snprintf(buf, n, "%s%s", d > 0 ? "+" : d < 0 ? "-" : "", c);
	return buf;
}

static const char *change_of(const struct dstat *s)
{
	return !s[0].calls ? " (new site)" : !s[1].calls ? " (gone)" : "";
}

static void text_total(FILE *out, const char *what, uint64_t a, uint64_t b)
{
	char x[32], y[32], d[32];
	fprintf(out, "  %-22s %16s %16s %16s\n", what,
		kp_fmt_count(x, sizeof(x), a), kp_fmt_count(y, sizeof(y), b),
		fmt_delta(d, sizeof(d), delta(a, b)));
}

/* One ranking's section: the top sites that changed, with stacks. */
static void text_changes(struct dsite *v, size_t n, size_t top,
			 const struct ranking *rk, FILE *out)
{
	char a[32], b[32], c[32], d[32], e[32], f[32];
	size_t changed = rank_by(v, n, rk);
	fprintf(out, "%s (%zu of %zu sites)\n", rk->title, changed, n);
	for (size_t i = 0; i < changed && i < top; i++) {
		const struct dstat *s = v[i].s;
		int64_t dn = change(&v[i], rk->count);
		fprintf(out, "%3zu. %s bytes in %s %s%s%s: %s -> %s bytes, "
			"%s -> %s %ss\n", i + 1,
			fmt_delta(a, sizeof(a), change(&v[i], rk->bytes)),
			fmt_delta(b, sizeof(b), dn), rk->unit,
			mag(dn) == 1 ? "" : "s", change_of(s),
			kp_fmt_count(c, sizeof(c), field(&s[0], rk->bytes)),
			kp_fmt_count(d, sizeof(d), field(&s[1], rk->bytes)),
			kp_fmt_count(e, sizeof(e), field(&s[0], rk->count)),
			kp_fmt_count(f, sizeof(f), field(&s[1], rk->count)),
			rk->unit);
		kp_text_stack(v[i].an, out, v[i].gstack, 5, "       ");
	}
	if (changed > top)
		fprintf(out, "     ... %zu more (--top N)\n", changed - top);
}

/* ---- queries ---------------------------------------------------------- */

/* A query fingerprint of either side, by its text; q[0] base, q[1] new. */
struct dquery {
	const char *text;
	size_t len;
	int side;
	struct kp_query_fp q[2];
};

static int by_text(const void *a, const void *b)
{
	const struct dquery *x = a, *y = b;
	int c = memcmp(x->text, y->text, x->len < y->len ? x->len : y->len);
	if (c)
		return c;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return x->side - y->side;
}

/* The largest change of total time first, then of calls, then by text. */
static int by_time_change(const void *a, const void *b)
{
	const struct dquery *x = a, *y = b;
	uint64_t xt = mag(delta(x->q[0].total_ns, x->q[1].total_ns));
	uint64_t yt = mag(delta(y->q[0].total_ns, y->q[1].total_ns));
	if (xt != yt)
		return xt < yt ? 1 : -1;
	uint64_t xc = mag(delta(x->q[0].calls, x->q[1].calls));
	uint64_t yc = mag(delta(y->q[0].calls, y->q[1].calls));
	if (xc != yc)
		return xc < yc ? 1 : -1;
	return by_text(a, b);
}

/* Every fingerprint of both sides, one entry a text, ranked. */
static struct dquery *match_queries(struct kp_analysis *an[2], size_t *nout)
{
	size_t n0 = kp_query_fps(an[0]), n1 = kp_query_fps(an[1]), n = 0;
	struct dquery *v = xcalloc(n0 + n1 + 1, sizeof(*v));
	for (int side = 0; side < 2; side++)
		for (size_t r = 0; r < (side ? n1 : n0); r++) {
			struct dquery *d = &v[n++];
			kp_query_fp(an[side], r, &d->q[side]);
			d->text = d->q[side].text;
			d->len = d->q[side].len;
			d->side = side;
		}
	if (n)
		qsort(v, n, sizeof(*v), by_text);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m && v[m - 1].len == v[i].len &&
		    !memcmp(v[m - 1].text, v[i].text, v[i].len))
			v[m - 1].q[1] = v[i].q[1]; /* one text a side */
		else
			v[m++] = v[i];
	}
	if (m)
		qsort(v, m, sizeof(*v), by_time_change);
	*nout = m;
	return v;
}

/* "+12.3 ms" / "-8500 ns" */
static const char *fmt_dns(char *buf, size_t n, int64_t d)
{
	char c[32];
	kp_fmt_ns(c, sizeof(c), mag(d));
	snprintf(buf, n, "%s%s", d > 0 ? "+" : d < 0 ? "-" : "", c);
	return buf;
}

static void text_queries(const struct dquery *v, size_t n, size_t top,
			 FILE *out)
{
	char a[40], b[32], c[32], d[32], e[32], f[32], g[32], h[32];
	fprintf(out, "QUERIES, the largest change in total time first (%zu "
		"fingerprint%s)\n", n, n == 1 ? "" : "s");
	for (size_t i = 0; i < n && i < top; i++) {
		const struct kp_query_fp *q = v[i].q;
		int64_t dc = delta(q[0].calls, q[1].calls);
		fprintf(out, "%3zu. %s in all, %s call%s%s: %s -> %s calls, %s "
			"-> %s, p95 %s -> %s\n", i + 1,
			fmt_dns(a, sizeof(a), delta(q[0].total_ns, q[1].total_ns)),
			fmt_delta(b, sizeof(b), dc), mag(dc) == 1 ? "" : "s",
			!q[0].calls ? " (new)" : !q[1].calls ? " (gone)" : "",
			kp_fmt_count(c, sizeof(c), q[0].calls),
			kp_fmt_count(d, sizeof(d), q[1].calls),
			kp_fmt_ns(e, sizeof(e), q[0].total_ns),
			kp_fmt_ns(f, sizeof(f), q[1].total_ns),
			kp_fmt_ns(g, sizeof(g), q[0].p95_ns),
			kp_fmt_ns(h, sizeof(h), q[1].p95_ns));
		char t[512], shown[600];
		size_t len = v[i].len < sizeof(t) - 1 ? v[i].len : sizeof(t) - 1;
		memcpy(t, v[i].text, len);
		t[len] = '\0';
		fprintf(out, "       %s\n", kp_disp(shown, sizeof(shown), t, 72));
	}
	if (n > top)
		fprintf(out, "     ... %zu more (--top N)\n", n - top);
}

static void text_report(struct kp_analysis *an[2], struct dsite *v, size_t n,
			const struct dquery *q, size_t nq, size_t top,
			FILE *out)
{
	const struct kp_mem_totals *m[2] = { kp_mem_totals(an[0]),
					     kp_mem_totals(an[1]) };

	fprintf(out, "kprof-analyze diff: base %zu process%s, new %zu "
		"process%s\n\n", an[0]->nprocs, an[0]->nprocs == 1 ? "" : "es",
		an[1]->nprocs, an[1]->nprocs == 1 ? "" : "es");
	fprintf(out, "HEAP SUMMARY %27s %16s %16s\n", "base", "new", "change");
	text_total(out, "allocation calls", m[0]->alloc_calls,
		   m[1]->alloc_calls);
	text_total(out, "free calls", m[0]->free_calls, m[1]->free_calls);
	text_total(out, "bytes allocated", m[0]->bytes_allocated,
		   m[1]->bytes_allocated);
	text_total(out, "peak heap (bytes)", m[0]->peak_bytes,
		   m[1]->peak_bytes);
	text_total(out, "in use at exit (bytes)", m[0]->live_bytes,
		   m[1]->live_bytes);
	text_total(out, "in use at exit (blocks)", m[0]->live_blocks,
		   m[1]->live_blocks);
	fputc('\n', out);
	text_changes(v, n, top, &sites_rank, out);
	fputc('\n', out);
	text_changes(v, n, top, &leaks_rank, out);
	if (nq) {
		fputc('\n', out);
		text_queries(q, nq, top, out);
	}
}

/* name: {keys[i]: vals[i], ...}, on one line. */
static void json_u64s(struct kp_json *j, const char *name,
		      const char *const *keys, const uint64_t *vals, size_t n)
{
	kp_json_key(j, name);
	kp_json_begin_flat_object(j);
	for (size_t i = 0; i < n; i++) {
		kp_json_key(j, keys[i]);
		kp_json_u64(j, vals[i]);
	}
	kp_json_end_object(j);
}

static void json_stat(struct kp_json *j, const char *name,
		      const struct dstat *s)
{
	static const char *const keys[] = { "calls", "bytes", "leaked_bytes",
					    "leaked_blocks" };
	const uint64_t vals[] = { s->calls, s->bytes, s->leaked_bytes,
				  s->leaked_blocks };
	json_u64s(j, name, keys, vals, 4);
}

static void json_totals(struct kp_json *j, const char *name,
			const struct kp_mem_totals *m)
{
	static const char *const keys[] = {
		"alloc_calls", "free_calls", "bytes_allocated", "peak_bytes",
		"in_use_at_exit_bytes", "in_use_at_exit_blocks" };
	const uint64_t vals[] = { m->alloc_calls, m->free_calls,
				  m->bytes_allocated, m->peak_bytes,
				  m->live_bytes, m->live_blocks };
	json_u64s(j, name, keys, vals, 6);
}

/* Every site that changed (calls, bytes or leaks), the most bytes first. */
static void json_report(struct kp_analysis *an[2], struct dsite *v, size_t n,
			const struct dquery *q, size_t nq, FILE *out)
{
	struct kp_json j;
	kp_json_init(&j, out, 1);
	kp_json_begin_object(&j);
	kp_json_key(&j, "schema");
	kp_json_str(&j, "kprof-diff/1");
	for (int side = 0; side < 2; side++) {
		kp_json_key(&j, side ? "new_files" : "base_files");
		kp_json_begin_array(&j);
		for (size_t i = 0; i < an[side]->nprocs; i++)
			kp_json_str(&j, an[side]->procs[i]->file);
		kp_json_end_array(&j);
	}
	kp_json_key(&j, "memory");
	kp_json_begin_object(&j);
	json_totals(&j, "base", kp_mem_totals(an[0]));
	json_totals(&j, "new", kp_mem_totals(an[1]));
	rank_by(v, n, &sites_rank);
	kp_json_key(&j, "sites");
	kp_json_begin_array(&j);
	for (size_t i = 0; i < n; i++) {
		const struct dstat *s = v[i].s;
		if (!memcmp(&s[0], &s[1], sizeof(s[0])))
			continue;
		kp_json_begin_object(&j);
		json_stat(&j, "base", &s[0]);
		json_stat(&j, "new", &s[1]);
		kp_json_key(&j, "stack");
		kp_json_stack(v[i].an, &j, v[i].gstack);
		kp_json_end_object(&j);
	}
	kp_json_end_array(&j);
	kp_json_end_object(&j);
	kp_json_key(&j, "queries");
	kp_json_begin_object(&j);
	kp_json_key(&j, "fingerprints");
	kp_json_begin_array(&j);
	for (size_t i = 0; i < nq; i++) {
		kp_json_begin_object(&j);
		kp_json_key(&j, "fingerprint");
		kp_json_strn(&j, q[i].text, q[i].len);
		for (int side = 0; side < 2; side++) {
			const struct kp_query_fp *f = &q[i].q[side];
			static const char *const keys[] = {
				"calls", "total_ns", "rows", "errors", "p95_ns" };
			const uint64_t vals[] = { f->calls, f->total_ns, f->rows,
						  f->errors, f->p95_ns };
			json_u64s(&j, side ? "new" : "base", keys, vals, 5);
		}
		kp_json_end_object(&j);
	}
	kp_json_end_array(&j);
	kp_json_end_object(&j);
	kp_json_end_object(&j);
	kp_json_end(&j);
}

int kp_diff_command(const struct kp_opts *opts, char *const *files,
		    size_t nfiles, FILE *out)
{
	char *const *base = opts->base;
	size_t nbase = opts->nbase;
	struct kp_analysis *an[2] = { kp_analysis_new(opts),
				      kp_analysis_new(opts) };
	int ret = 0;
	for (size_t i = 0; i < nbase && !ret; i++)
		if (kp_analysis_add_file(an[0], base[i]) < 0)
			ret = 3;
	for (size_t i = 0; i < nfiles && !ret; i++)
		if (kp_analysis_add_file(an[1], files[i]) < 0)
			ret = 3;
	if (!ret) {
		kp_analysis_finish(an[0]);
		kp_analysis_finish(an[1]);
		size_t n, nq;
		struct dsite *v = match_sites(an, &n);
		struct dquery *q = match_queries(an, &nq);
		if (opts->format == KP_FMT_JSON)
			json_report(an, v, n, q, nq, out);
		else
			text_report(an, v, n, q, nq, opts->top, out);
		for (size_t i = 0; i < n; i++)
			free(v[i].key);
		free(v);
		free(q);
	}
	kp_analysis_free(an[0]);
	kp_analysis_free(an[1]);
	return ret;
}
