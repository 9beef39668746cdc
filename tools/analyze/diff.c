/* SPDX-License-Identifier: MIT */
/*
 * kprof-analyze diff --base BASE.kpz... NEW.kpz...: what changed between
 * two runs (heaptrack_print --diff's and pprof -diff_base's job): the heap
 * totals side by side, then the allocation sites whose calls and bytes
 * changed the most, and the leaks that grew or shrank; the query
 * fingerprints of both, matched by text; their files, matched by path or
 * else by base name; and the functions of their CPU samples, by name;
 * each by change in time. The two sets of traces are analysed apart; a
 * site of one is the same as a site of the other when its symbolized
 * frames are (function, file and line where debug information names
 * them, else module and offset, with the executable's base name), so two
 * runs' addresses need not agree, and two builds' need not either where
 * they have debug information. Last, the findings of the advice (advise.c)
 * that one run has and the other has not, by code and subject (struct
 * kp_advice.key): with --fail-on, the new ones of that severity or above
 * make the exit status 4, a regression gate for CI.
 */
#include "analyze.h"
#include "cpu.h"
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
	len = (size_t)snprintf(k, cap, "%s\n", kp_base_name(exe));
	for (size_t i = 0; i < n; i++) {
		char line[1200];
		int m;
		if (f[i]->function && f[i]->file)
			m = snprintf(line, sizeof(line), "%s %s:%d\n",
				     f[i]->function, f[i]->file, f[i]->line);
		else if (f[i]->function)
			m = snprintf(line, sizeof(line), "%s %s\n",
				     f[i]->function, kp_base_name(f[i]->module));
		else
			m = snprintf(line, sizeof(line), "%s+0x%" PRIx64 "\n",
				     kp_base_name(f[i]->module), f[i]->offset);
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

/* The larger change of time (t[0] before, t[1] after) first, then of
 * calls; 0 if both are the same. */
static int cmp_time_calls(const uint64_t xt[2], const uint64_t xc[2],
			  const uint64_t yt[2], const uint64_t yc[2])
{
	uint64_t a = mag(delta(xt[0], xt[1])), b = mag(delta(yt[0], yt[1]));
	if (a != b)
		return a < b ? 1 : -1;
	a = mag(delta(xc[0], xc[1]));
	b = mag(delta(yc[0], yc[1]));
	return a != b ? (a < b ? 1 : -1) : 0;
}

/* The largest change of total time first, then of calls, then by text. */
static int by_time_change(const void *a, const void *b)
{
	const struct dquery *x = a, *y = b;
	const uint64_t xt[2] = { x->q[0].total_ns, x->q[1].total_ns },
		       xc[2] = { x->q[0].calls, x->q[1].calls },
		       yt[2] = { y->q[0].total_ns, y->q[1].total_ns },
		       yc[2] = { y->q[0].calls, y->q[1].calls };
	int c = cmp_time_calls(xt, xc, yt, yc);
	return c ? c : by_text(a, b);
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

/* An item's line up to its own numbers: "  1. +4.6 ms in all, +30 calls
 * (new): 12 -> 42 calls, 1.7 ms -> 6.3 ms" (t: time, c: calls, before
 * and after; in0, in1: whether each run has it). */
static void text_head(FILE *out, size_t i, const uint64_t t[2],
		      const uint64_t c[2], int in0, int in1)
{
	char a[40], b[32], x[32], y[32], u[32], v[32];
	int64_t dc = delta(c[0], c[1]);
	fprintf(out, "%3zu. %s in all, %s call%s%s: %s -> %s calls, %s -> %s",
		i + 1, fmt_dns(a, sizeof(a), delta(t[0], t[1])),
		fmt_delta(b, sizeof(b), dc), mag(dc) == 1 ? "" : "s",
		!in0 ? " (new)" : !in1 ? " (gone)" : "",
		kp_fmt_count(x, sizeof(x), c[0]),
		kp_fmt_count(y, sizeof(y), c[1]),
		kp_fmt_ns(u, sizeof(u), t[0]), kp_fmt_ns(v, sizeof(v), t[1]));
}

static void text_queries(const struct dquery *v, size_t n, size_t top,
			 FILE *out)
{
	char g[32], h[32];
	fprintf(out, "QUERIES, the largest change in total time first (%zu "
		"fingerprint%s)\n", n, n == 1 ? "" : "s");
	for (size_t i = 0; i < n && i < top; i++) {
		const struct kp_query_fp *q = v[i].q;
		const uint64_t t[2] = { q[0].total_ns, q[1].total_ns },
			       c[2] = { q[0].calls, q[1].calls };
		text_head(out, i, t, c, q[0].calls != 0, q[1].calls != 0);
		fprintf(out, ", p95 %s -> %s\n",
			kp_fmt_ns(g, sizeof(g), q[0].p95_ns),
			kp_fmt_ns(h, sizeof(h), q[1].p95_ns));
		char text[512], shown[600];
		size_t len = v[i].len < sizeof(text) - 1 ? v[i].len
							  : sizeof(text) - 1;
		memcpy(text, v[i].text, len);
		text[len] = '\0';
		fprintf(out, "       %s\n",
			kp_disp(shown, sizeof(shown), text, 72));
	}
	if (n > top)
		fprintf(out, "     ... %zu more (--top N)\n", n - top);
}

/* ---- I/O --------------------------------------------------------------- */

/* A file of either side; f[0] base, f[1] new; base_path set when the two
 * paths differ (matched by base name). */
struct dfile {
	const char *path, *base_path;
	int side;
	struct kp_io_file f[2];
};

static int by_path(const void *a, const void *b)
{
	const struct dfile *x = a, *y = b;
	int c = strcmp(x->path, y->path);
	return c ? c : x->side - y->side;
}

static int by_base_name(const void *a, const void *b)
{
	const struct dfile *x = a, *y = b;
	int c = strcmp(kp_base_name(x->path), kp_base_name(y->path));
	return c ? c : x->side - y->side;
}

static int by_io_change(const void *a, const void *b)
{
	const struct dfile *x = a, *y = b;
	const uint64_t xt[2] = { x->f[0].total_ns, x->f[1].total_ns },
		       xc[2] = { x->f[0].calls, x->f[1].calls },
		       yt[2] = { y->f[0].total_ns, y->f[1].total_ns },
		       yc[2] = { y->f[0].calls, y->f[1].calls };
	int c = cmp_time_calls(xt, xc, yt, yc);
	return c ? c : strcmp(x->path, y->path);
}

/* Pair, in v[0..n) sorted by cmp, each entry of side 0 with the entry of
 * side 1 right after it that cmp finds the same but for the side, when
 * no other entry is the same too; the pair becomes the first entry (its
 * path the new one's, base_path the old one's if it differs) and the
 * second one's path is cleared. */
static void pair_up(struct dfile *v, size_t n,
		    int (*same)(const struct dfile *, const struct dfile *))
{
	unsigned char *pair = xcalloc(n + 1, 1);
	for (size_t i = 0; i + 1 < n; i++)
		pair[i] = v[i].side == 0 && v[i + 1].side == 1 &&
			  same(&v[i], &v[i + 1]) &&
			  !(i > 0 && same(&v[i - 1], &v[i])) &&
			  !(i + 2 < n && same(&v[i + 1], &v[i + 2]));
	for (size_t i = 0; i + 1 < n; i++) {
		if (!pair[i])
			continue;
		if (strcmp(v[i].path, v[i + 1].path))
			v[i].base_path = v[i].path;
		v[i].path = v[i + 1].path;
		v[i].f[1] = v[i + 1].f[1];
		v[i + 1].path = NULL;
	}
	free(pair);
}

static int same_path(const struct dfile *x, const struct dfile *y)
{
	return !strcmp(x->path, y->path);
}

static int same_base_name(const struct dfile *x, const struct dfile *y)
{
	return !strcmp(kp_base_name(x->path), kp_base_name(y->path));
}

/* Keep the entries whose path is set; @return how many. */
static size_t compact(struct dfile *v, size_t n)
{
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (v[i].path)
			v[m++] = v[i];
	return m;
}

/* Every file of both sides, matched by path, then the rest by base name
 * where that pairs one file of each side; ranked. */
static struct dfile *match_files(struct kp_analysis *an[2], size_t *nout)
{
	size_t n0 = kp_io_files(an[0]), n1 = kp_io_files(an[1]), n = 0;
	struct dfile *v = xcalloc(n0 + n1 + 1, sizeof(*v));
	for (int side = 0; side < 2; side++)
		for (size_t r = 0; r < (side ? n1 : n0); r++) {
			struct dfile *d = &v[n++];
			kp_io_file(an[side], r, &d->f[side]);
			d->path = d->f[side].path;
			d->side = side;
		}
	if (n)
		qsort(v, n, sizeof(*v), by_path);
	pair_up(v, n, same_path);
	n = compact(v, n);
	/* the unmatched ones first, then by base name */
	size_t u = 0;
	for (size_t i = 0; i < n; i++)
		if (!v[i].f[0].path || !v[i].f[1].path) {
			struct dfile t = v[u];
			v[u++] = v[i];
			v[i] = t;
		}
	if (u)
		qsort(v, u, sizeof(*v), by_base_name);
	pair_up(v, u, same_base_name);
	n = compact(v, n);
	if (n)
		qsort(v, n, sizeof(*v), by_io_change);
	*nout = n;
	return v;
}

static void text_files(const struct dfile *v, size_t n, size_t top,
		       FILE *out)
{
	char e[32], f[32];
	fprintf(out, "I/O BY FILE, the largest change in time first (%zu "
		"file%s)\n", n, n == 1 ? "" : "s");
	for (size_t i = 0; i < n && i < top; i++) {
		const struct kp_io_file *x = v[i].f;
		const uint64_t t[2] = { x[0].total_ns, x[1].total_ns },
			       c[2] = { x[0].calls, x[1].calls };
		text_head(out, i, t, c, x[0].path != NULL, x[1].path != NULL);
		fprintf(out, ", %s -> %s syncs\n",
			kp_fmt_count(e, sizeof(e), x[0].syncs),
			kp_fmt_count(f, sizeof(f), x[1].syncs));
		char shown[600];
		fprintf(out, "       %s\n", kp_disp(shown, sizeof(shown),
						     v[i].path, 72));
		if (v[i].base_path)
			fprintf(out, "       (was %s)\n",
				kp_disp(shown, sizeof(shown), v[i].base_path,
					66));
	}
	if (n > top)
		fprintf(out, "     ... %zu more (--top N)\n", n - top);
}

/* ---- CPU --------------------------------------------------------------- */

/* A function of either side's CPU samples, by name; [0] base, [1] new. */
struct dfunc {
	const char *name;
	int side;
	uint64_t self[2], total[2];
};

static int by_name(const void *a, const void *b)
{
	const struct dfunc *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : x->side - y->side;
}

/* The largest change of self time first, then of total time. */
static int by_self_change(const void *a, const void *b)
{
	const struct dfunc *x = a, *y = b;
	int c = cmp_time_calls(x->self, x->total, y->self, y->total);
	return c ? c : strcmp(x->name, y->name);
}

/* Every function of both sides' samples, one entry a name, ranked. */
static struct dfunc *match_funcs(struct kp_analysis *an[2], size_t *nout)
{
	size_t n0 = kp_cpu_funcs(an[0]), n1 = kp_cpu_funcs(an[1]), n = 0;
	struct dfunc *v = xcalloc(n0 + n1 + 1, sizeof(*v));
	for (int side = 0; side < 2; side++)
		for (size_t r = 0; r < (side ? n1 : n0); r++) {
			struct dfunc *d = &v[n++];
			d->name = kp_cpu_func(an[side], r, &d->self[side],
					      &d->total[side]);
			d->side = side;
		}
	if (n)
		qsort(v, n, sizeof(*v), by_name);
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		if (m && !strcmp(v[m - 1].name, v[i].name)) {
			v[m - 1].self[1] = v[i].self[1]; /* one name a side */
			v[m - 1].total[1] = v[i].total[1];
		} else {
			v[m++] = v[i];
		}
	}
	if (m)
		qsort(v, m, sizeof(*v), by_self_change);
	*nout = m;
	return v;
}

static void text_funcs(const struct dfunc *v, size_t n, size_t top,
		       FILE *out)
{
	char a[40], b[40], c[32], d[32], e[32], f[32], shown[600];
	fprintf(out, "CPU BY FUNCTION, the largest change in self time first "
		"(%zu function%s)\n", n, n == 1 ? "" : "s");
	for (size_t i = 0; i < n && i < top; i++) {
		const struct dfunc *x = &v[i];
		fprintf(out, "%3zu. %s self, %s total: %s -> %s self, %s -> %s "
			"total\n       %s\n", i + 1,
			fmt_dns(a, sizeof(a), delta(x->self[0], x->self[1])),
			fmt_dns(b, sizeof(b), delta(x->total[0], x->total[1])),
			kp_fmt_ns(c, sizeof(c), x->self[0]),
			kp_fmt_ns(d, sizeof(d), x->self[1]),
			kp_fmt_ns(e, sizeof(e), x->total[0]),
			kp_fmt_ns(f, sizeof(f), x->total[1]),
			kp_disp(shown, sizeof(shown), x->name, 72));
	}
	if (n > top)
		fprintf(out, "     ... %zu more (--top N)\n", n - top);
}

/* ---- advice ---------------------------------------------------------------- */

/* A finding of one side that the other has not. */
struct dadv {
	const struct kp_advice *a;
	int side; /* 0 base (gone), 1 new */
};

static int adv_cmp(const struct kp_advice *x, const struct kp_advice *y)
{
	int c = strcmp(x->code, y->code);
	return c ? c : strcmp(x->key, y->key);
}

static int by_code_key(const void *a, const void *b)
{
	const struct kp_advice *const *x = a, *const *y = b;
	return adv_cmp(*x, *y);
}

/* The findings of one side only, new ones first, each in its rank;
 * *both: how many the two share. */
static struct dadv *match_advice(struct kp_analysis *an[2], size_t *nout,
				 size_t *both)
{
	const struct kp_advice *v[2];
	size_t n[2];
	const struct kp_advice **p[2];
	for (int s = 0; s < 2; s++) {
		n[s] = kp_advice_get(an[s], &v[s]);
		p[s] = xmalloc((n[s] + 1) * sizeof(*p[s]));
		for (size_t i = 0; i < n[s]; i++)
			p[s][i] = &v[s][i];
		qsort(p[s], n[s], sizeof(*p[s]), by_code_key);
	}
	/* a merge; equal (code, key) pair up one to one */
	char *only[2] = { xcalloc(n[0] + 1, 1), xcalloc(n[1] + 1, 1) };
	size_t i = 0, k = 0;
	*both = 0;
	while (i < n[0] || k < n[1]) {
		int c = i == n[0] ? 1 : k == n[1] ? -1 : adv_cmp(p[0][i], p[1][k]);
		if (c == 0) {
			i++, k++, (*both)++;
		} else if (c < 0) {
			only[0][p[0][i++] - v[0]] = 1;
		} else {
			only[1][p[1][k++] - v[1]] = 1;
		}
	}
	struct dadv *d = xmalloc((n[0] + n[1] + 1) * sizeof(*d));
	size_t m = 0;
	for (int s = 1; s >= 0; s--)
		for (size_t r = 0; r < n[s]; r++)
			if (only[s][r])
				d[m++] = (struct dadv){ &v[s][r], s };
	for (int s = 0; s < 2; s++) {
		free(p[s]);
		free(only[s]);
	}
	*nout = m;
	return d;
}

static void text_advice(const struct dadv *d, size_t n, size_t both,
			size_t top, FILE *out)
{
	size_t nn = 0;
	for (size_t i = 0; i < n; i++)
		nn += d[i].side;
	fprintf(out, "ADVICE THAT CHANGED: %zu new, %zu gone, %zu in both\n",
		nn, n - nn, both);
	size_t shown = n < 2 * top ? n : 2 * top;
	for (size_t i = 0; i < shown; i++)
		fprintf(out, "  %s [%s] %s %s\n", d[i].side ? "new " : "gone",
			kp_severity_name(d[i].a->sev), d[i].a->code,
			d[i].a->title);
	if (shown < n)
		fprintf(out, "  ... %zu more (--top N)\n", n - shown);
}

static void json_advice(struct kp_json *j, const struct dadv *d, size_t n,
			size_t both)
{
	kp_json_key(j, "advice");
	kp_json_begin_object(j);
	kp_json_key(j, "both");
	kp_json_u64(j, both);
	for (int s = 1; s >= 0; s--) {
		kp_json_key(j, s ? "new" : "gone");
		kp_json_begin_array(j);
		for (size_t i = 0; i < n; i++) {
			if (d[i].side != s)
				continue;
			kp_json_begin_flat_object(j);
			kp_json_key(j, "code");
			kp_json_str(j, d[i].a->code);
			kp_json_key(j, "severity");
			kp_json_str(j, kp_severity_name(d[i].a->sev));
			kp_json_key(j, "title");
			kp_json_str(j, d[i].a->title);
			kp_json_key(j, "key");
			kp_json_str(j, d[i].a->key);
			kp_json_end_object(j);
		}
		kp_json_end_array(j);
	}
	kp_json_end_object(j);
}

/* What diff compares: memory sites, query fingerprints, files, advice. */
struct dall {
	struct dsite *v;
	size_t n;
	struct dquery *q;
	size_t nq;
	struct dfile *f;
	size_t nf;
	struct dfunc *c;
	size_t nc;
	struct dadv *a;
	size_t na, both;
};

static void text_report(struct kp_analysis *an[2], struct dall *x,
			size_t top, FILE *out)
{
	struct dsite *v = x->v;
	size_t n = x->n;
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
	if (x->nq) {
		fputc('\n', out);
		text_queries(x->q, x->nq, top, out);
	}
	if (x->nf) {
		fputc('\n', out);
		text_files(x->f, x->nf, top, out);
	}
	if (x->nc) {
		fputc('\n', out);
		text_funcs(x->c, x->nc, top, out);
	}
	fputc('\n', out);
	text_advice(x->a, x->na, x->both, top, out);
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

/* section: {list: [ ... ]}, around the items the caller writes. */
static void json_list_begin(struct kp_json *j, const char *section,
			    const char *list)
{
	kp_json_key(j, section);
	kp_json_begin_object(j);
	kp_json_key(j, list);
	kp_json_begin_array(j);
}

static void json_list_end(struct kp_json *j)
{
	kp_json_end_array(j);
	kp_json_end_object(j);
}

static void json_queries(struct kp_json *j, const struct dquery *q, size_t n)
{
	static const char *const keys[] = { "calls", "total_ns", "rows",
					    "errors", "p95_ns" };
	json_list_begin(j, "queries", "fingerprints");
	for (size_t i = 0; i < n; i++) {
		kp_json_begin_object(j);
		kp_json_key(j, "fingerprint");
		kp_json_strn(j, q[i].text, q[i].len);
		for (int side = 0; side < 2; side++) {
			const struct kp_query_fp *f = &q[i].q[side];
			const uint64_t vals[] = { f->calls, f->total_ns, f->rows,
						  f->errors, f->p95_ns };
			json_u64s(j, side ? "new" : "base", keys, vals, 5);
		}
		kp_json_end_object(j);
	}
	json_list_end(j);
}

static void json_files(struct kp_json *j, const struct dfile *v, size_t n)
{
	static const char *const keys[] = { "calls", "bytes_read",
					    "bytes_written", "syncs",
					    "total_ns" };
	json_list_begin(j, "io", "files");
	for (size_t i = 0; i < n; i++) {
		kp_json_begin_object(j);
		kp_json_key(j, "path");
		kp_json_str(j, v[i].path);
		kp_json_key(j, "base_path");
		kp_json_str(j, v[i].base_path ? v[i].base_path : v[i].path);
		for (int side = 0; side < 2; side++) {
			const struct kp_io_file *f = &v[i].f[side];
			const uint64_t vals[] = { f->calls, f->bytes_read,
						  f->bytes_written, f->syncs,
						  f->total_ns };
			json_u64s(j, side ? "new" : "base", keys, vals, 5);
		}
		kp_json_end_object(j);
	}
	json_list_end(j);
}

static void json_funcs(struct kp_json *j, const struct dfunc *v, size_t n)
{
	static const char *const keys[] = { "self_ns", "total_ns" };
	json_list_begin(j, "cpu", "functions");
	for (size_t i = 0; i < n; i++) {
		kp_json_begin_object(j);
		kp_json_key(j, "function");
		kp_json_str(j, v[i].name);
		for (int side = 0; side < 2; side++) {
			const uint64_t vals[] = { v[i].self[side],
						  v[i].total[side] };
			json_u64s(j, side ? "new" : "base", keys, vals, 2);
		}
		kp_json_end_object(j);
	}
	json_list_end(j);
}

/* Every site that changed (calls, bytes or leaks), the most bytes first. */
static void json_report(struct kp_analysis *an[2], struct dall *x, FILE *out)
{
	struct dsite *v = x->v;
	size_t n = x->n;
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
	json_queries(&j, x->q, x->nq);
	json_files(&j, x->f, x->nf);
	json_funcs(&j, x->c, x->nc);
	json_advice(&j, x->a, x->na, x->both);
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
		struct dall x;
		x.v = match_sites(an, &x.n);
		x.q = match_queries(an, &x.nq);
		x.f = match_files(an, &x.nf);
		x.c = match_funcs(an, &x.nc);
		x.a = match_advice(an, &x.na, &x.both);
		if (opts->format == KP_FMT_JSON)
			json_report(an, &x, out);
		else
			text_report(an, &x, opts->top, out);
		/* --fail-on: the new findings decide */
		size_t failing = 0;
		for (size_t i = 0; opts->fail_on >= 0 && i < x.na; i++)
			failing += x.a[i].side &&
				   (int)x.a[i].a->sev >= opts->fail_on;
		if (failing) {
			fprintf(stderr, "%s: %zu new finding%s of severity %s or "
				"above (--fail-on)\n", KP_PROG, failing,
				failing == 1 ? "" : "s",
				kp_severity_name((enum kp_severity)opts->fail_on));
			ret = 4;
		}
		free(x.a);
		for (size_t i = 0; i < x.n; i++)
			free(x.v[i].key);
		free(x.v);
		free(x.q);
		free(x.f);
		free(x.c);
	}
	kp_analysis_free(an[0]);
	kp_analysis_free(an[1]);
	return ret;
}
