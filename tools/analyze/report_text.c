/* SPDX-License-Identifier: MIT */
/*
 * The terminal report: under 80 columns, in the spirit of valgrind's HEAP
 * SUMMARY and heaptrack_print. Every string from the trace is sanitised
 * (control bytes become '?') so a hostile trace cannot drive the terminal.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyze.h"

#define KP_WIDTH 79

const char *kp_fmt_count(char *buf, size_t n, uint64_t v)
{
	char tmp[32];
	int len = snprintf(tmp, sizeof(tmp), "%" PRIu64, v);
	size_t k = 0;

	for (int i = 0; i < len && k + 2 < n; i++) {
		if (i && (len - i) % 3 == 0)
			buf[k++] = ',';
		buf[k++] = tmp[i];
	}
	buf[k] = '\0';
	return buf;
}

const char *kp_fmt_bytes(char *buf, size_t n, uint64_t v)
{
	static const char *const unit[] = { "KiB", "MiB", "GiB", "TiB", "PiB",
					    "EiB" };
	if (v < 1024) {
		snprintf(buf, n, "%" PRIu64 " B", v);
		return buf;
	}
	double d = (double)v / 1024;
	size_t u = 0;
	while (d >= 1024 && u + 1 < KP_ARRAY_SIZE(unit)) {
		d /= 1024;
		u++;
	}
	snprintf(buf, n, "%.1f %s", d, unit[u]);
	return buf;
}

const char *kp_fmt_ns(char *buf, size_t n, uint64_t ns)
{
	if (ns < 10000)
		snprintf(buf, n, "%llu ns", (unsigned long long)ns);
	else if (ns < 10000000)
		snprintf(buf, n, "%.1f us", (double)ns / 1e3);
	else if (ns < 10000000000ull)
		snprintf(buf, n, "%.1f ms", (double)ns / 1e6);
	else
		snprintf(buf, n, "%.2f s", (double)ns / 1e9);
	return buf;
}

static const char *fmt_ms(char *buf, size_t n, uint64_t ns)
{
	if (ns < 10000000000ULL)
		snprintf(buf, n, "%.1f ms", (double)ns / 1e6);
	else
		snprintf(buf, n, "%.2f s", (double)ns / 1e9);
	return buf;
}

const char *kp_rec_type_name(unsigned type, char *buf, size_t n)
{
	static const char *const names[] = {
		[KP_REC_FRAME] = "frame", [KP_REC_THREAD] = "thread",
		[KP_REC_ALLOC] = "alloc", [KP_REC_FREE] = "free",
		[KP_REC_REALLOC] = "realloc", [KP_REC_STACK] = "stack",
		[KP_REC_MODULE] = "module", [KP_REC_UNMODULE] = "unmodule",
		[KP_REC_THREAD_START] = "thread_start",
		[KP_REC_THREAD_NAME] = "thread_name",
		[KP_REC_THREAD_END] = "thread_end", [KP_REC_LOST] = "lost",
		[KP_REC_END] = "end", [KP_REC_FORK] = "fork",
		[KP_REC_EXEC] = "exec", [KP_REC_IO] = "io",
		[KP_REC_FD_OPEN] = "fd_open", [KP_REC_FD_CLOSE] = "fd_close",
		[KP_REC_QUERY] = "query", [KP_REC_SPAN] = "span",
		[KP_REC_CUSTOM] = "custom", [KP_REC_CPU_SAMPLE] = "cpu_sample",
		[KP_REC_SNAPSHOT] = "snapshot", [KP_REC_IO_SUMMARY] = "io_summary",
		[KP_REC_QUERY_BEGIN] = "query_begin",
		[KP_REC_QUERY_TEXT] = "query_text",
		[KP_REC_JIT_CODE] = "jit_code", [KP_REC_KILL] = "kill",
		[KP_REC_PGID] = "pgid", [KP_REC_LEAK] = "leak",
		[KP_REC_LEAK_SCAN] = "leak_scan",
	};

	if (type < KP_ARRAY_SIZE(names) && names[type])
		return names[type];
	snprintf(buf, n, "type_%u", type);
	return buf;
}

/* Copy s into buf for display: control bytes -> '?', at most max columns
 * (approximate for UTF-8), with "..." when cut. */
const char *kp_disp(char *buf, size_t n, const char *s, size_t max)
{
	size_t k = 0, len = strlen(s);

	if (max + 1 > n)
		max = n - 1;
	for (size_t i = 0; i < len && k < max; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[k++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	if (len > max && max >= 3)
		memcpy(buf + max - 3, "...", 3);
	buf[k] = '\0';
	return buf;
}

/*
 * Shorten a long C++ name for an 80-column line: template arguments become
 * "<...>", then, if still too long, the parameter list "(...)". The JSON
 * report keeps the full name.
 */
static void shorten_name(char *dst, size_t n, const char *src, size_t max)
{
	static const char *const open = "<(";
	static const char *const close = ">)";

	snprintf(dst, n, "%s", src);
	for (int pass = 0; pass < 2 && strlen(dst) > max; pass++) {
		char tmp[512];
		size_t k = 0;
		int depth = 0;
		for (const char *p = dst; *p && k + 5 < sizeof(tmp); p++) {
			/* "operator<", "operator<<", "operator()" are names,
			 * not brackets. */
			if (!depth && p - dst >= 8 && !strncmp(p - 8, "operator", 8)) {
				tmp[k++] = *p;
				continue;
			}
			if (*p == open[pass]) {
				if (depth++ == 0) {
					memcpy(tmp + k, pass ? "(...)" : "<...>", 5);
					k += 5;
				}
				continue;
			}
			if (*p == close[pass] && depth > 0) {
				depth--;
				continue;
			}
			if (!depth)
				tmp[k++] = *p;
		}
		tmp[k] = '\0';
		if (depth) /* unbalanced: leave the name alone */
			break;
		snprintf(dst, n, "%s", tmp);
	}
}

const char *kp_base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s && s[1] ? s + 1 : path;
}

struct kp_symbols *kp_analysis_symbols(struct kp_analysis *an)
{
	if (!an->sym)
		an->sym = kp_symbols_new(an, !an->opts->no_symbols);
	return an->sym;
}

static void text_stack(struct kp_analysis *an, FILE *out, uint32_t gstack,
		       size_t max_frames, const char *indent, int trim)
{
	const struct kp_symframe *f[KP_MAX_STACK_DEPTH];
	size_t first = 0;
	size_t max = max_frames < KP_MAX_STACK_DEPTH ? max_frames :
						       KP_MAX_STACK_DEPTH;
	size_t n = trim ? kp_symbolize_stack(kp_analysis_symbols(an), gstack,
					     f, max, &first) :
			  kp_symbolize_frames(kp_analysis_symbols(an), gstack,
					      0, f, max);
	size_t depth = gstack < an->ngstacks ? an->gstacks[gstack].depth : 0;
	size_t avail = KP_WIDTH - strlen(indent) - 3;
	char line[512], b[512];

	if (!n) {
		fprintf(out, "%s(no stack recorded)\n", indent);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		const char *mod = f[i]->module[0] ? kp_base_name(f[i]->module)
						  : "?";
		char fn[512], where[300];
		if (f[i]->file)
			snprintf(where, sizeof(where), "%s:%d",
				 kp_base_name(f[i]->file), f[i]->line);
		else
			snprintf(where, sizeof(where), "%s+0x%" PRIx64, mod,
				 f[i]->offset);
		if (f[i]->function) {
			size_t room = avail > strlen(where) + 3 ?
				avail - strlen(where) - 3 : 20;
			shorten_name(fn, sizeof(fn), f[i]->function, room);
			snprintf(line, sizeof(line), "%s (%s)", fn, where);
		} else {
			snprintf(line, sizeof(line), "%s", where);
		}
		fprintf(out, "%s%s %s\n", indent, i ? "by" : "at",
			kp_disp(b, sizeof(b), line, avail));
	}
	/* Frames trimmed from the top are allocator wrappers; say how many
	 * remain below the ones shown. */
	if (first + n < depth)
		fprintf(out, "%s... %zu more frame%s\n", indent,
			depth - first - n, depth - first - n == 1 ? "" : "s");
}

void kp_text_stack(struct kp_analysis *an, FILE *out, uint32_t gstack,
		   size_t max_frames, const char *indent)
{
	text_stack(an, out, gstack, max_frames, indent, 1);
}

void kp_text_sample_stack(struct kp_analysis *an, FILE *out, uint32_t gstack,
			  size_t max_frames, const char *indent)
{
	text_stack(an, out, gstack, max_frames, indent, 0);
}

const char *kp_sig_str(char *buf, size_t n, int64_t sig)
{
	const char *name = sig > 0 && sig < 65 ? sigabbrev_np((int)sig) : NULL;
	if (name)
		snprintf(buf, n, "SIG%s", name);
	else
		snprintf(buf, n, "signal %" PRId64, sig);
	return buf;
}

static void text_end_reason(const struct kp_proc *p, char *buf, size_t n)
{
	char sb[32];
	if (!p->ended && p->killer) {
		snprintf(buf, n, "TRUNCATED: no END record: killed by %s from "
			 "pid %" PRId64 " (below)",
			 kp_sig_str(sb, sizeof(sb), p->killed_by->sig),
			 p->killer->pid);
		return;
	}
	if (!p->ended) {
		snprintf(buf, n, "TRUNCATED: no END record (killed, crashed, "
			 "or a raw exit_group, as Go programs end?)");
		return;
	}
	switch (p->end_reason) {
	case KP_END_EXIT:
		snprintf(buf, n, "exit(%" PRId64 ")", p->exit_status);
		break;
	case KP_END__EXIT:
		snprintf(buf, n, "_exit(%" PRId64 ")", p->exit_status);
		break;
	case KP_END_EXEC:
		snprintf(buf, n, "exec");
		break;
	case KP_END_ABORT:
		snprintf(buf, n, "abort()");
		break;
	case KP_END_SIGNAL:
		snprintf(buf, n, "killed by %s (%" PRId64 ")",
			 kp_sig_str(sb, sizeof(sb), p->exit_status - 128),
			 p->exit_status);
		break;
	default:
		snprintf(buf, n, "end reason %d, status %" PRId64,
			 p->end_reason, p->exit_status);
	}
	if (p->truncated)
		snprintf(buf + strlen(buf), n - strlen(buf),
			 ", but the file is TRUNCATED");
}

static void text_process(struct kp_analysis *an, const struct kp_proc *p,
			 FILE *out)
{
	char b[256], c[64], argv[1024];
	size_t k = 0;

	argv[0] = '\0';
	for (uint32_t i = 0; i < p->argc && k + 2 < sizeof(argv); i++)
		k += (size_t)snprintf(argv + k, sizeof(argv) - k, "%s%s",
				      i ? " " : "", p->argv[i]);
	fprintf(out, "process %" PRId64, p->pid);
	if (p->ppid > 0)
		fprintf(out, " (%s %" PRId64 ")",
			p->forked ? "forked from" : "parent", p->ppid);
	fprintf(out, "  %s\n", kp_disp(b, sizeof(b), p->exe[0] ? p->exe : "?",
				    50));
	if (p->argc)
		fprintf(out, "  argv     %s\n", kp_disp(b, sizeof(b), argv, 68));
	fprintf(out, "  trace    %s\n", kp_disp(b, sizeof(b), p->file, 68));
	time_t secs = (time_t)(p->start_wall_ns / 1000000000ULL);
	struct tm tm;
	char when[64] = "?";
	if (p->start_wall_ns && localtime_r(&secs, &tm))
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(out, "  started  %s, ran %s, %s thread%s\n", when,
		fmt_ms(c, sizeof(c), p->duration_ns),
		kp_fmt_count(b, sizeof(b), p->threads),
		p->threads == 1 ? "" : "s");
	text_end_reason(p, b, sizeof(b));
	fprintf(out, "  ended    %s\n", b);
	if (p->exec_path)
		fprintf(out, "  exec     %s\n",
			kp_disp(b, sizeof(b), p->exec_path, 68));
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xProcText)
			an->passes[i]->xProcText(an->pass_state[i], an, p, out);
}

static void text_warnings(struct kp_analysis *an, FILE *out)
{
	char b[64], c[64];

	if (an->lost_total) {
		fprintf(out, "WARNING: %s events were lost (",
			kp_fmt_count(b, sizeof(b), an->lost_total));
		int first = 1;
		for (unsigned w = 0; w <= KP_REC_TYPE_MAX; w++) {
			if (!an->lost[w])
				continue;
			char tn[16];
			fprintf(out, "%s%s %s", first ? "" : ", ",
				kp_rec_type_name(w, tn, sizeof(tn)),
				kp_fmt_count(c, sizeof(c), an->lost[w]));
			first = 0;
		}
		/* A lost FREE leaves its block live to the end: in use,
		 * the peak and the leaks then count too much, not too
		 * little. */
		if (an->lost[KP_REC_FREE] || an->lost[KP_REC_REALLOC])
			fprintf(out, ");\n         counts and totals are lower "
				"bounds; a block whose free was lost stays\n"
				"         in use, so in use, peak and leaks may "
				"be too high\n");
		else
			fprintf(out, ");\n         the figures below are lower "
				"bounds\n");
	}
	size_t ncut = 0;
	for (size_t i = 0; i < an->nprocs; i++)
		ncut += an->procs[i]->truncated != 0;
	if (ncut > 3) { /* one line for them all (a pool's killed workers) */
		size_t nkilled = 0;
		fprintf(out, "WARNING: %zu traces are TRUNCATED (pids", ncut);
		for (size_t i = 0, k = 0; i < an->nprocs; i++) {
			const struct kp_proc *p = an->procs[i];
			nkilled += p->truncated && !p->ended && p->killer;
			if (p->truncated && k < 8)
				fprintf(out, "%s %" PRId64, k++ ? "," : "",
					p->pid);
		}
		fprintf(out, "%s); figures cover what was\n         recorded "
			"and \"in use at exit\" means in use when each "
			"stops", ncut > 8 ? ", ..." : "");
		if (nkilled)
			fprintf(out, ";\n         %zu of them killed by another "
				"traced process (each one's \"killer\")",
				nkilled);
		fputc('\n', out);
	}
	for (size_t i = 0; i < an->nprocs && ncut <= 3; i++) {
		const struct kp_proc *p = an->procs[i];
		if (!p->truncated)
			continue;
		char why[64] = "no END record";
		if (p->ended)
			snprintf(why, sizeof(why), "the file ends inside a frame");
		else if (p->killer)
			snprintf(why, sizeof(why), "no END record: killed by pid "
				 "%" PRId64, p->killer->pid);
		fprintf(out, "WARNING: trace of pid %" PRId64 " is TRUNCATED "
			"(%s); figures cover what was\n         recorded and "
			"\"in use at exit\" means in use when it stops\n",
			p->pid, why);
	}
	if (an->lost_total || an->truncated)
		fputc('\n', out);
}

/* More processes than this (a build, a shell script) get a table of the
 * --top busiest instead of a block each. */
#define PROC_BLOCKS 12

static uint64_t proc_allocs(const struct kp_analysis *an,
			    const struct kp_proc *p)
{
	const struct kp_mem_totals *m = kp_mem_proc_totals(an, p);
	return m ? m->alloc_calls : 0;
}

static const struct kp_analysis *sort_an;

static int cmp_proc(const void *a, const void *b)
{
	const struct kp_proc *x = *(const struct kp_proc *const *)a;
	const struct kp_proc *y = *(const struct kp_proc *const *)b;
	uint64_t ax = proc_allocs(sort_an, x), ay = proc_allocs(sort_an, y);
	if (ax != ay)
		return ax > ay ? -1 : 1;
	return x->pid < y->pid ? -1 : x->pid > y->pid;
}

static void text_process_table(struct kp_analysis *an, FILE *out)
{
	const struct kp_proc **ps = xrealloc_array(NULL, an->nprocs,
						   sizeof(*ps));
	size_t show = an->nprocs < an->opts->top ? an->nprocs : an->opts->top;
	for (size_t i = 0; i < an->nprocs; i++)
		ps[i] = an->procs[i];
	sort_an = an;
	qsort(ps, an->nprocs, sizeof(*ps), cmp_proc);
	fprintf(out, "PROCESSES, the %zu with the most allocation calls "
		"(--top N)\n", show);
	fprintf(out, "      pid   parent  %-10s  %-11s  %11s  %10s  %10s  %s\n",
		"ran", "ended", "allocs", "at exit", "rss peak", "program");
	for (size_t i = 0; i < show; i++) {
		const struct kp_proc *p = ps[i];
		const struct kp_mem_totals *m = kp_mem_proc_totals(an, p);
		char a[32], b[32], c[32], r[32], e[128], x[256];
		const char *exe = p->exe[0] ? p->exe : "?";
		const char *base = strrchr(exe, '/');
		text_end_reason(p, e, sizeof(e));
		int64_t sig = p->exit_status - 128;
		if (!p->ended && p->killer) { /* SIGKILL: "KILL<4282" */
			const char *sn = kp_sig_str(x, sizeof(x),
						    p->killed_by->sig);
			if (!strncmp(sn, "SIG", 3))
				sn += 3;
			snprintf(e, sizeof(e), "%.6s<%" PRId64, sn,
				 p->killer->pid);
		} else if (!p->ended) {
			snprintf(e, sizeof(e), "KILLED?");
		} else if (p->end_reason == KP_END_SIGNAL && !p->truncated &&
			   sig > 0 && sig < 65 && sigabbrev_np((int)sig)) {
			snprintf(e, sizeof(e), "SIG%s", sigabbrev_np((int)sig));
		} else if (p->truncated || strlen(e) > 11) {
			snprintf(e, sizeof(e), "%s", p->truncated ? "cut" : "?");
		}
		fprintf(out, "  %7" PRId64 "  %7" PRId64 "  %-10s  %-11s  %11s"
			"  %10s  %10s  %s\n", p->pid, p->ppid,
			fmt_ms(a, sizeof(a), p->duration_ns), e,
			kp_fmt_count(b, sizeof(b), m ? m->alloc_calls : 0),
			kp_fmt_bytes(c, sizeof(c), m ? m->live_bytes : 0),
			kp_fmt_bytes(r, sizeof(r), kp_rss_peak(an, p)),
			kp_disp(x, sizeof(x), base ? base + 1 : exe, 30));
	}
	if (an->nprocs > show)
		fprintf(out, "  ... %zu more; each in full: --format json\n",
			an->nprocs - show);
	fputc('\n', out);
	free(ps);
}

void kp_report_text(struct kp_analysis *an, FILE *out)
{
	fprintf(out, "kprof-analyze %s: %zu process%s\n\n",
		an->opts->command,
		an->nprocs, an->nprocs == 1 ? "" : "es");
	if (an->nprocs > PROC_BLOCKS)
		text_process_table(an, out);
	else
		for (size_t i = 0; i < an->nprocs; i++) {
			text_process(an, an->procs[i], out);
			fputc('\n', out);
		}
	text_warnings(an, out);
	for (size_t i = 0; i < an->npasses; i++)
		if (an->passes[i]->xReportText)
			an->passes[i]->xReportText(an->pass_state[i], an, out);
}

/* ---- the memory pass's sections ------------------------------------------------ */

/* Why p's trace has no allocations (p->mem_off). */
static const char *mem_off_why(const struct kp_proc *p, char *buf, size_t n)
{
	char d[512];
	if (p->malloc_owner && !strcmp(p->malloc_owner, p->exe))
		snprintf(buf, n, "the program has a malloc of its own");
	else if (p->malloc_owner)
		snprintf(buf, n, "the program's malloc was the one in %s, "
			 "ahead of libkprof.so",
			 kp_disp(d, sizeof(d), p->malloc_owner, 200));
	else
		snprintf(buf, n, "KOTOBA_PROFILE_MEMORY=0");
	return buf;
}

void kp_mem_proc_text(struct kp_analysis *an, const struct kp_proc *p,
		      FILE *out)
{
	const struct kp_mem_totals *m = kp_mem_proc_totals(an, p);
	char a[32], f[32], b[32], c[32], why[640];

	if (!m)
		return;
	if (p->mem_off) {
		fprintf(out, "  memory   not recorded (%s)\n",
			mem_off_why(p, why, sizeof(why)));
		return;
	}
	fprintf(out, "  memory   %s allocs, %s frees, %s in use at exit "
		"(%s block%s)\n",
		kp_fmt_count(a, sizeof(a), m->alloc_calls),
		kp_fmt_count(f, sizeof(f), m->free_calls),
		kp_fmt_bytes(b, sizeof(b), m->live_bytes),
		kp_fmt_count(c, sizeof(c), m->live_blocks),
		m->live_blocks == 1 ? "" : "s");
}

/* A ranking of sites: title, then for each of the first top a line that
 * row() prints (its rank and figures) and the site's stack. */
static void text_ranked(struct kp_analysis *an, FILE *out, const char *title,
			const struct kp_site *const *s, size_t n, size_t top,
			void (*row)(FILE *out, size_t rank,
				    const struct kp_site *s))
{
	if (!n)
		return;
	fprintf(out, "%s\n", title);
	for (size_t i = 0; i < n && i < top; i++) {
		row(out, i + 1, s[i]);
		kp_text_stack(an, out, s[i]->gstack, 5, "       ");
	}
	if (n > top)
		fprintf(out, "     ... %zu more site%s (--top N)\n", n - top,
			n - top == 1 ? "" : "s");
	fputc('\n', out);
}

static void row_calls(FILE *out, size_t rank, const struct kp_site *s)
{
	char a[32], b[32], c[32];
	fprintf(out, "%3zu. %s call%s, %s bytes (%s)\n", rank,
		kp_fmt_count(a, sizeof(a), s->allocs),
		s->allocs == 1 ? "" : "s",
		kp_fmt_count(b, sizeof(b), s->bytes),
		kp_fmt_bytes(c, sizeof(c), s->bytes));
}

/* By the most held at one time (heaptrack's peak consumers): what to
 * shrink to lower the peak. */
static void row_peak(FILE *out, size_t rank, const struct kp_site *s)
{
	char a[32], b[32], c[32];
	fprintf(out, "%3zu. %s bytes (%s) at once, of %s call%s\n", rank,
		kp_fmt_count(a, sizeof(a), s->peak_bytes),
		kp_fmt_bytes(b, sizeof(b), s->peak_bytes),
		kp_fmt_count(c, sizeof(c), s->allocs),
		s->allocs == 1 ? "" : "s");
}

/* By temporary allocations: each a candidate for a stack buffer or a
 * reused one. */
static void row_temporary(FILE *out, size_t rank, const struct kp_site *s)
{
	char a[32], b[32];
	fprintf(out, "%3zu. %s temporary of %s call%s\n", rank,
		kp_fmt_count(a, sizeof(a), s->temporary),
		kp_fmt_count(b, sizeof(b), s->allocs),
		s->allocs == 1 ? "" : "s");
}

/*
 * The heap of the process with the peak over its run: at most HEAP_ROWS
 * rows, each the most in use during its share of the run, with a bar
 * scaled to the largest.
 */
#define HEAP_ROWS 12
#define HEAP_BAR 40

static void heap_over_time(struct kp_analysis *an, FILE *out)
{
	const struct kp_mem_totals *m = kp_mem_totals(an), *pm = NULL;
	for (size_t i = 0; i < an->nprocs; i++) {
		const struct kp_mem_totals *x =
			kp_mem_proc_totals(an, an->procs[i]);
		if (x && an->procs[i]->pid == m->peak_pid &&
		    x->peak_bytes == m->peak_bytes)
			pm = x;
	}
	if (!pm || pm->nslices < 2 || !pm->peak_bytes)
		return;
	uint32_t per = (pm->nslices + HEAP_ROWS - 1) / HEAP_ROWS;
	uint64_t top = 0;
	for (uint32_t i = 0; i < pm->nslices; i++)
		if (pm->heap[i] > top)
			top = pm->heap[i];
	fprintf(out, "HEAP OVER TIME");
	if (an->nprocs > 1)
		fprintf(out, " (pid %" PRId64 ")", m->peak_pid);
	char iv[32];
	fprintf(out, ", the most in use in each %s\n",
		fmt_ms(iv, sizeof(iv), per * pm->slice_ns));
	for (uint32_t r = 0; r * per < pm->nslices; r++) {
		uint64_t v = 0;
		for (uint32_t i = r * per; i < (r + 1) * per && i < pm->nslices;
		     i++)
			if (pm->heap[i] > v)
				v = pm->heap[i];
		char a[32], b[32], bar[HEAP_BAR + 1];
		size_t w = top ? (size_t)((double)v / (double)top * HEAP_BAR +
					  0.5) : 0;
		memset(bar, '#', w);
		bar[w] = 0;
		fprintf(out, "  %10s  %11s  %s\n",
			fmt_ms(a, sizeof(a), (uint64_t)r * per * pm->slice_ns),
			kp_fmt_bytes(b, sizeof(b), v), bar);
	}
	fputc('\n', out);
}

/* Allocation calls by power-of-two size class, with a bar scaled to the
 * class with the most; the smallest and largest classes used bound it. */
static void size_classes(const struct kp_mem_totals *m, FILE *out)
{
	unsigned lo = KP_SIZE_CLASSES, hi = 0;
	uint64_t top = 0;
	for (unsigned c = 0; c < KP_SIZE_CLASSES; c++) {
		if (!m->size_calls[c])
			continue;
		lo = c < lo ? c : lo;
		hi = c;
		top = m->size_calls[c] > top ? m->size_calls[c] : top;
	}
	if (!top)
		return;
	fprintf(out, "ALLOCATION SIZES, calls by size class [n, 2n)\n");
	for (unsigned c = lo; c <= hi; c++) {
		char a[32], b[32], bar[HEAP_BAR + 1];
		size_t w = (size_t)((double)m->size_calls[c] / (double)top *
				    HEAP_BAR + 0.5);
		if (m->size_calls[c] && !w)
			w = 1; /* a class in use shows */
		memset(bar, '#', w);
		bar[w] = 0;
		fprintf(out, "  %10s  %11s  %5.1f %%  %s\n",
			kp_fmt_bytes(a, sizeof(a),
				     c ? (uint64_t)1 << (c - 1) : 0),
			kp_fmt_count(b, sizeof(b), m->size_calls[c]),
			100.0 * (double)m->size_calls[c] /
				(double)(m->alloc_calls ? m->alloc_calls : 1),
			bar);
	}
	fputc('\n', out);
}

/* The classes of a leak scan, valgrind's, in its order. */
static const struct {
	int c;
	const char *name;
} leak_classes[] = {
	{ KP_LEAK_DEFINITE, "definitely lost" },
	{ KP_LEAK_INDIRECT, "indirectly lost" },
	{ KP_LEAK_POSSIBLE, "possibly lost" },
	{ KP_LEAK_REACHABLE, "still reachable" },
};

/* What the leak scans at exit found, as valgrind's LEAK SUMMARY; where
 * one did not run, why (the first such process's reason). */
static void text_scan(struct kp_analysis *an, const struct kp_leak_scan *sc,
		      FILE *out)
{
	char a[32], b[32];

	if (sc->status < 0)
		return;
	if (sc->scanned) {
		fprintf(out, "  leak scan at exit");
		if (an->nprocs > 1)
			fprintf(out, " (%" PRIu64 " of %zu processes)",
				sc->scanned, an->nprocs);
		fprintf(out, ":\n");
		for (size_t i = 0; i < KP_ARRAY_SIZE(leak_classes); i++) {
			int c = leak_classes[i].c;
			fprintf(out, "    %15s: %s in %s block%s\n",
				leak_classes[i].name,
				kp_fmt_bytes(a, sizeof(a), sc->reach.bytes[c]),
				kp_fmt_count(b, sizeof(b), sc->reach.blocks[c]),
				sc->reach.blocks[c] == 1 ? "" : "s");
		}
		if (sc->after_blocks)
			fprintf(out, "    allocated after the scan (not seen "
				"by it): %s in %s block%s\n",
				kp_fmt_bytes(a, sizeof(a), sc->after_bytes),
				kp_fmt_count(b, sizeof(b), sc->after_blocks),
				sc->after_blocks == 1 ? "" : "s");
	}
	if (!sc->not_scanned)
		return;
	const struct kp_proc *p = NULL;
	int st = -1;
	for (size_t i = 0; i < an->nprocs && st <= KP_LS_DONE; i++) {
		const struct kp_mem_totals *pm =
			kp_mem_proc_totals(an, an->procs[i]);
		if (pm && pm->scan.status != KP_LS_DONE &&
		    (!p || pm->scan.status > KP_LS_DONE)) {
			p = an->procs[i];
			st = pm->scan.status;
		}
	}
	if (an->nprocs == 1 || !p)
		fprintf(out, "  leak scan at exit: not run (%s)\n",
			kp_leak_scan_why(st));
	else
		fprintf(out, "  leak scan at exit: not run in %" PRIu64 " of "
			"%zu processes (the first, pid %" PRId64 ":\n    %s)\n",
			sc->not_scanned, an->nprocs, p->pid,
			kp_leak_scan_why(st));
}

/* A leak group's blocks by class, "7 definitely lost, 2 still reachable" */
static const char *reach_note(char *buf, size_t n, const struct kp_reach *r)
{
	char a[32];
	size_t k = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < KP_ARRAY_SIZE(leak_classes) && k < n; i++) {
		uint64_t v = r->blocks[leak_classes[i].c];
		if (v)
			k += (size_t)snprintf(buf + k, n - k, "%s%s %s",
					      k ? ", " : "",
					      kp_fmt_count(a, sizeof(a), v),
					      leak_classes[i].name);
	}
	return buf;
}

void kp_mem_report_text(struct kp_analysis *an, FILE *out)
{
	const struct kp_mem_totals *m = kp_mem_totals(an);
	const struct kp_site *const *s;
	char a[32], b[32], c[32], d[32];
	size_t top = an->opts->top;
	int leaks_cmd = kp_command_is(an, "leaks");

	if (!m)
		return;
	fprintf(out, "HEAP SUMMARY\n");
	size_t off = 0;
	const struct kp_proc *first_off = NULL;
	for (size_t i = 0; i < an->nprocs; i++)
		if (an->procs[i]->mem_off && !off++)
			first_off = an->procs[i];
	if (off) {
		char why[640];
		mem_off_why(first_off, why, sizeof(why));
		if (off == an->nprocs) {
			fprintf(out, "  not recorded (%s)\n\n", why);
			return;
		}
		fprintf(out, "  not recorded in %zu of %zu processes (pid %"
			PRId64 ": %s)\n", off, an->nprocs, first_off->pid, why);
	}
	fprintf(out, "  allocation calls  %s", kp_fmt_count(a, sizeof(a),
							  m->alloc_calls));
	if (m->realloc_calls)
		fprintf(out, " (%s of them realloc)",
			kp_fmt_count(b, sizeof(b), m->realloc_calls));
	fprintf(out, "\n  free calls        %s\n",
		kp_fmt_count(a, sizeof(a), m->free_calls));
	fprintf(out, "  bytes allocated   %s (%s)\n",
		kp_fmt_count(a, sizeof(a), m->bytes_allocated),
		kp_fmt_bytes(b, sizeof(b), m->bytes_allocated));
	fprintf(out, "  peak heap         %s bytes (%s) at %s",
		kp_fmt_count(a, sizeof(a), m->peak_bytes),
		kp_fmt_bytes(b, sizeof(b), m->peak_bytes),
		fmt_ms(c, sizeof(c), m->peak_time_ns));
	if (an->nprocs > 1)
		fprintf(out, " in pid %" PRId64, m->peak_pid);
	fprintf(out, "\n  in use at exit    %s bytes in %s block%s\n",
		kp_fmt_count(a, sizeof(a), m->live_bytes),
		kp_fmt_count(d, sizeof(d), m->live_blocks),
		m->live_blocks == 1 ? "" : "s");
	if (m->temporary)
		fprintf(out, "  temporary         %s (%.1f %% of allocation "
			"calls, freed at once)\n",
			kp_fmt_count(a, sizeof(a), m->temporary),
			100.0 * (double)m->temporary /
				(double)(m->alloc_calls ? m->alloc_calls : 1));
	if (m->unmatched_frees) {
		/* a forked child's heap began as its parent's: say how many
		 * of those frees are such children's */
		uint64_t fk = 0, nfk = 0;
		for (size_t i = 0; i < an->nprocs; i++) {
			const struct kp_proc *p = an->procs[i];
			const struct kp_mem_totals *pm =
				kp_mem_proc_totals(an, p);
			if (p->forked && pm && pm->unmatched_frees) {
				fk += pm->unmatched_frees;
				nfk++;
			}
		}
		fprintf(out, "  unmatched frees   %s (of blocks allocated "
			"before the trace started",
			kp_fmt_count(a, sizeof(a), m->unmatched_frees));
		if (fk)
			fprintf(out, "; %s in %s forked child%s, of blocks "
				"%s parent allocated",
				fk == m->unmatched_frees
					? "all"
					: kp_fmt_count(b, sizeof(b), fk),
				kp_fmt_count(c, sizeof(c), nfk),
				nfk == 1 ? "" : "ren", nfk == 1 ? "its" : "their");
		fprintf(out, ")\n");
	}
	if (m->reordered_frees)
		fprintf(out, "  reordered frees   %s (stamped up to 1 us before "
			"the other thread's allocation they free; paired)\n",
			kp_fmt_count(a, sizeof(a), m->reordered_frees));
	if (m->evicted)
		fprintf(out, "  inconsistent      %s blocks were allocated "
			"again before being freed\n",
			kp_fmt_count(a, sizeof(a), m->evicted));
	fputc('\n', out);
	if (!leaks_cmd) {
		heap_over_time(an, out);
		size_classes(m, out);
	}

	if (!leaks_cmd) {
		size_t n = kp_mem_top_calls(an, &s);
		text_ranked(an, out, "MOST CALLS TO ALLOCATION FUNCTIONS", s,
			    n, top, row_calls);
		n = kp_mem_top_bytes(an, &s);
		text_ranked(an, out, "MOST BYTES ALLOCATED", s, n, top,
			    row_calls);
		n = kp_mem_top_peak(an, &s);
		text_ranked(an, out, "PEAK MEMORY CONSUMERS (the most each "
			    "site held at once)", s, n, top, row_peak);
		n = kp_mem_top_temporary(an, &s);
		text_ranked(an, out, "MOST TEMPORARY ALLOCATIONS (freed before "
			    "their thread's next call)", s, n, top,
			    row_temporary);
	}

	size_t nl = kp_mem_leaks(an, &s);
	if (!nl) {
		fprintf(out, "LEAKS\n  none: every block was freed\n");
		return;
	}
	fprintf(out, "LEAKS: %s bytes in %s blocks, %zu group%s, largest "
		"first\n", kp_fmt_count(a, sizeof(a), m->live_bytes),
		kp_fmt_count(b, sizeof(b), m->live_blocks), nl,
		nl == 1 ? "" : "s");
	text_scan(an, &m->scan, out);
	if (an->opts->leak_kinds) {
		fprintf(out, "  listed (--leak-kinds): the groups with");
		const char *sep = " ";
		for (unsigned k = 0; k <= KP_LEAK_CLASS_MAX; k++)
			if (an->opts->leak_kinds >> k & 1) {
				fprintf(out, "%s%s", sep, kp_leak_kind_name(k));
				sep = ", ";
			}
		fprintf(out, " blocks, and any no scan saw\n");
	}
	size_t show = leaks_cmd ? nl : (nl < top ? nl : top);
	for (size_t i = 0; i < show; i++) {
		const struct kp_reach *r = kp_site_reach(s[i]);
		char note[160];
		fprintf(out, "%3zu. %s bytes in %s block%s  [confidence: %s]\n",
			i + 1, kp_fmt_count(a, sizeof(a), s[i]->leaked_bytes),
			kp_fmt_count(b, sizeof(b), s[i]->leaked_blocks),
			s[i]->leaked_blocks == 1 ? "" : "s",
			kp_confidence_name(s[i]->conf));
		fprintf(out, "     %s\n", s[i]->reason);
		if (r)
			fprintf(out, "     leak scan: %s\n",
				reach_note(note, sizeof(note), r));
		if (an->nexes > 1 && s[i]->exe < an->nexes) {
			char e[128];
			fprintf(out, "     in %s\n",
				kp_disp(e, sizeof(e), an->exes[s[i]->exe], 70));
		}
		kp_text_stack(an, out, s[i]->gstack, leaks_cmd ? 64 : 5,
			      "       ");
	}
	if (show < nl)
		fprintf(out, "     ... %zu more group%s (kprof-analyze leaks)\n",
			nl - show, nl - show == 1 ? "" : "s");
}
