/* SPDX-License-Identifier: MIT */
/*
 * kprof-analyze: options, dispatch and exit codes.
 *
 *   0  report written
 *   1  the report could not be written (output file, out of memory)
 *   2  usage error
 *   3  a trace is unreadable, not a trace, corrupt or from a newer kprof
 *      (one line on stderr names the file and the problem; a truncated
 *      trace is not an error: it is reported as truncated)
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "analyze.h"
#include "cpu.h"

#ifndef KP_VERSION
#define KP_VERSION "unknown"
#endif

static const char usage_text[] =
	"usage: kprof-analyze [options] [COMMAND] TRACE...\n"
	"\n"
	"Report heap, I/O, queries and CPU from kprof traces (kprof.<pid>.kpz),\n"
	"with advice ranked by what a fix may save.\n"
	"Give several traces to merge a process with its fork/exec children.\n"
	"\n"
	"commands:\n"
	"  summary            processes, heap summary, top allocation sites,\n"
	"                     largest leaks (default)\n"
	"  memory             the summary's memory part only (heap, sites,\n"
	"                     leaks), without I/O, queries or CPU\n"
	"  leaks              every leak group with its full stack\n"
	"  io                 I/O per file and operation: latency quantiles,\n"
	"                     patterns, stacks, findings\n"
	"  dump               every record as a JSON line (debugging)\n"
	"  queries            query profile by fingerprint, slow queries, N+1,\n"
	"                     duplicates, index advice, autocommit write storms\n"
	"  cpu                CPU time: threads, hot functions, hottest stacks\n"
	"  advise             every finding (memory, I/O, queries, CPU), the\n"
	"                     most at stake first, with evidence, what to do\n"
	"                     and where\n"
	"  flame              flame graph (SVG) or, with --folded, folded\n"
	"                     stacks of --what cpu|alloc|live|temporary|lost|io\n"
	"                     (default cpu)\n"
	"  export             --pprof FILE (gzipped profile.proto: cpu with\n"
	"                     --what cpu, heap with --what alloc|live) and/or\n"
	"                     --chrome FILE (Chrome trace / Perfetto JSON)\n"
	"  diff               the traces given with --base against the others:\n"
	"                     heap totals, changed sites and leaks, queries,\n"
	"                     files, CPU by function\n"
	"\n"
	"options:\n"
	"  --format FMT       text (default), json (schema kprof-report/1) or\n"
	"                     html (one page that draws the JSON report, with\n"
	"                     the heap over time and flame graphs)\n"
	"  --top N            rows in each ranking (default 10)\n"
	"  -o, --output FILE  write the report to FILE instead of stdout\n"
	"  --no-symbols       do not read debug info; show module+offset\n"
	"  --perf-map-dir DIR where JIT code maps perf-PID.map are (default\n"
	"                     /tmp): names for code in no module\n"
	"  --stats            print throughput and peak RSS on stderr\n"
	"  --sqlite-db FILE   verify index advice with EXPLAIN QUERY PLAN on a\n"
	"                     copy of this SQLite database (needs sqlite3)\n"
	"  --pg-dsn DSN       index advice for libpq queries from the generic\n"
	"                     plans of this PostgreSQL server (needs psql)\n"
	"  --base FILE        diff: a trace of the run to compare with (once\n"
	"                     for each of its traces)\n"
	"  --slow-ms MS       slow query threshold (default: the trace's\n"
	"                     KOTOBA_PROFILE_SLOW_QUERY_MS, else 100)\n"
	"  --order-by KEY     rank query fingerprints by total (default),\n"
	"                     calls, mean, p95, p99, max or rows\n"
	"  --n-plus-one-min K the shortest run of one fingerprint that is an\n"
	"                     N+1 (default 5)\n"
	"  --storm-min N      the fewest autocommit writes in a row that make\n"
	"                     a write storm (default 10)\n"
	"  --advice-min CODE=V  an advice rule's threshold: MEM01=SIZE (a leak\n"
	"                     group of its own; default 64K), MEM02=N (a\n"
	"                     site's temporary allocations; 10000), MEM03=SIZE\n"
	"                     (heap growth; 1M), CPU01=PCT (CPU in the\n"
	"                     allocator; 10), CPU02=PCT (one function; 25)\n"
	"  --leak-kinds LIST  list (and advise on) only the leak groups a leak\n"
	"                     scan found blocks of these kinds in: definite,\n"
	"                     indirect, possible, reachable, all (default)\n"
	"  --fail-on SEV      exit 4 when the advice has a finding of severity\n"
	"                     SEV (info, warn or high) or above (for CI)\n"
	"  --suppress RULE    leave out of the advice the findings of RULE:\n"
	"                     CODE or CODE:PATTERN (globs; the pattern\n"
	"                     matches the finding's key or a frame's\n"
	"                     function, module or file), e.g. MEM01:*libfoo*\n"
	"  --suppressions FILE  a rule a line ('#' comments)\n"
	"  -h, --help         show this help\n"
	"  --version          show the version\n"
	"\n"
	"exit status: 0 ok, 1 cannot write the report, 2 usage error,\n"
	"3 unreadable or corrupt trace, 4 a finding at --fail-on's severity\n"
	"\n"
	"examples:\n"
	"  LD_PRELOAD=libkprof.so ./app && kprof-analyze kprof.*.kpz\n"
	"  kprof-analyze leaks kprof.1234.kpz\n"
	"  kprof-analyze diff --base before.kpz after.kpz\n"
	"  kprof-analyze --format json -o report.json kprof.1234.kpz\n";

static void usage_error(const char *fmt, ...) KP_PRINTF(1, 2)
	__attribute__((noreturn));

static void usage_error(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", KP_PROG);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\ntry 'kprof-analyze --help' for more information\n");
	exit(2);
}

static int parse_format(const char *s, enum kp_format *f)
{
	if (!strcmp(s, "text"))
		*f = KP_FMT_TEXT;
	else if (!strcmp(s, "json"))
		*f = KP_FMT_JSON;
	else if (!strcmp(s, "html"))
		*f = KP_FMT_HTML;
	else
		return -1;
	return 0;
}

static double clock_s(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum { OPT_FORMAT = 256, OPT_TOP, OPT_STATS, OPT_VERSION, OPT_NOSYM,
       OPT_SQLITE_DB, OPT_PERF_MAP_DIR, OPT_SLOW_MS, OPT_WHAT, OPT_FOLDED, OPT_PPROF,
       OPT_CHROME, OPT_IOMIN, OPT_PG_DSN, OPT_BASE, OPT_FAIL_ON,
       OPT_NPLUS1_MIN, OPT_STORM_MIN, OPT_ORDER_BY, OPT_SUPPRESS,
       OPT_SUPPRESSIONS, OPT_ADVICE_MIN, OPT_LEAK_KINDS };

static const struct option longopts[] = {
	{ "format", required_argument, NULL, OPT_FORMAT },
	{ "top", required_argument, NULL, OPT_TOP },
	{ "output", required_argument, NULL, 'o' },
	{ "stats", no_argument, NULL, OPT_STATS },
	{ "no-symbols", no_argument, NULL, OPT_NOSYM },
	{ "sqlite-db", required_argument, NULL, OPT_SQLITE_DB },
	{ "pg-dsn", required_argument, NULL, OPT_PG_DSN },
	{ "slow-ms", required_argument, NULL, OPT_SLOW_MS },
	{ "n-plus-one-min", required_argument, NULL, OPT_NPLUS1_MIN },
	{ "storm-min", required_argument, NULL, OPT_STORM_MIN },
	{ "order-by", required_argument, NULL, OPT_ORDER_BY },
	{ "perf-map-dir", required_argument, NULL, OPT_PERF_MAP_DIR },
	{ "what", required_argument, NULL, OPT_WHAT },
	{ "folded", no_argument, NULL, OPT_FOLDED },
	{ "pprof", required_argument, NULL, OPT_PPROF },
	{ "chrome", required_argument, NULL, OPT_CHROME },
	{ "io-min-us", required_argument, NULL, OPT_IOMIN },
	{ "base", required_argument, NULL, OPT_BASE },
	{ "fail-on", required_argument, NULL, OPT_FAIL_ON },
	{ "suppress", required_argument, NULL, OPT_SUPPRESS },
	{ "suppressions", required_argument, NULL, OPT_SUPPRESSIONS },
	{ "advice-min", required_argument, NULL, OPT_ADVICE_MIN },
	{ "leak-kinds", required_argument, NULL, OPT_LEAK_KINDS },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ NULL, 0, NULL, 0 },
};

/* The whole number s begins with, in *n: what follows it, or NULL when
 * s begins with none (or a sign, or one too large). */
static const char *number(const char *s, unsigned long long *n)
{
	char *end;
	errno = 0;
	*n = strtoull(s, &end, 10);
	return errno || end == s || s[0] == '-' ? NULL : end;
}

/* The count arg of option opt, from min to max, or a usage error. */
static unsigned count_opt(const char *opt, const char *arg, unsigned min,
			  unsigned max)
{
	unsigned long long n;
	const char *end = number(arg, &n);
	if (!end || *end || n < min || n > max)
		usage_error("%s wants a number from %u to %u, not '%s'", opt,
			    min, max, arg);
	return (unsigned)n;
}

/* A size: a whole number of bytes, or of KiB, MiB or GiB with a suffix
 * K, M or G (k, m, g; "KiB" and "KB" alike). @return 0, or -1. */
static int parse_size(const char *s, uint64_t *out)
{
	unsigned long long n;
	const char *end = number(s, &n);
	if (!end)
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	}
	if (shift) {
		end++;
		if (*end == 'i')
			end++;
		if (*end == 'B')
			end++;
	} else if (*end == 'B') {
		end++;
	}
	if (*end || n > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)n << shift;
	return 0;
}

/* --leak-kinds LIST: valgrind's names of the leak scan's classes. */
static unsigned leak_kinds_opt(const char *arg)
{
	static const struct {
		const char *name;
		unsigned bits;
	} kinds[] = {
		{ "definite", 1u << KP_LEAK_DEFINITE },
		{ "indirect", 1u << KP_LEAK_INDIRECT },
		{ "possible", 1u << KP_LEAK_POSSIBLE },
		{ "reachable", 1u << KP_LEAK_REACHABLE },
		{ "all", (2u << KP_LEAK_CLASS_MAX) - 1 },
	};
	unsigned bits = 0;
	for (const char *p = arg; *p;) {
		size_t n = strcspn(p, ",");
		size_t k = 0;
		while (k < sizeof(kinds) / sizeof(kinds[0]) &&
		       (strlen(kinds[k].name) != n ||
			strncmp(kinds[k].name, p, n) != 0))
			k++;
		if (k == sizeof(kinds) / sizeof(kinds[0]))
			usage_error("--leak-kinds wants a list of definite, "
				    "indirect, possible, reachable or all, not "
				    "'%s'", arg);
		bits |= kinds[k].bits;
		p += n + (p[n] == ',');
	}
	if (!bits)
		usage_error("--leak-kinds wants a list of definite, indirect, "
			    "possible, reachable or all, not '%s'", arg);
	return bits;
}

/* --advice-min CODE=V (advise.c's rules). */
static void advice_min_opt(struct kp_advice_min *m, const char *arg)
{
	const char *eq = strchr(arg, '=');
	size_t n = eq ? (size_t)(eq - arg) : 0;
	const char *v = eq ? eq + 1 : "";
	int ok = 0;
	if (n == 5 && (!strncasecmp(arg, "MEM01", 5) ||
		       !strncasecmp(arg, "MEM03", 5))) {
		uint64_t size = 0;
		ok = parse_size(v, &size) == 0 && size > 0;
		if (ok && arg[4] == '1')
			m->leak = size;
		else if (ok)
			m->growth = size;
	} else if (n == 5 && !strncasecmp(arg, "MEM02", 5)) {
		unsigned long long c;
		const char *end = number(v, &c);
		ok = end && !*end && c > 0;
		if (ok)
			m->temporary = c;
	} else if (n == 5 && (!strncasecmp(arg, "CPU01", 5) ||
			      !strncasecmp(arg, "CPU02", 5))) {
		char *end;
		errno = 0;
		double pct = strtod(v, &end);
		if (*end == '%')
			end++;
		ok = !errno && end != v && !*end && pct > 0 && pct <= 100;
		if (ok && arg[4] == '1')
			m->alloc_cpu = pct / 100;
		else if (ok)
			m->hot = pct / 100;
	}
	if (!ok)
		usage_error("--advice-min wants MEM01=SIZE, MEM02=COUNT, "
			    "MEM03=SIZE, CPU01=PERCENT or CPU02=PERCENT (a "
			    "SIZE in bytes, or with K, M or G), not '%s'", arg);
}

/* --n-plus-one-min, --storm-min: a run of at least 2 queries, as long as
 * any that fits in a trace's counters. */
#define RUN_MIN_MAX 1000000000u

/* Parse options. Before the command, stop at the first non-option ("+"),
 * which may be the command; after it, let getopt move the traces last so
 * options may come anywhere. */
static void parse_options(int argc, char **argv, struct kp_opts *opts,
			  const char *optstring)
{
	int c;

	while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
		switch (c) {
		case OPT_FORMAT:
			if (parse_format(optarg, &opts->format) < 0)
				usage_error("unknown format '%s' (text, json, html)",
					    optarg);
			break;
		case OPT_TOP:
			opts->top = count_opt("--top", optarg, 1, 1000000);
			break;
		case 'o':
			opts->output = optarg;
			break;
		case OPT_STATS:
			opts->stats = 1;
			break;
		case OPT_NOSYM:
			opts->no_symbols = 1;
			break;
		case OPT_SQLITE_DB:
			opts->sqlite_db = optarg;
			break;
		case OPT_PERF_MAP_DIR:
			opts->perf_map_dir = optarg;
			break;
		case OPT_PG_DSN:
			opts->pg_dsn = optarg;
			break;
		case OPT_FAIL_ON:
			opts->fail_on = kp_severity_parse(optarg);
			if (opts->fail_on < 0)
				usage_error("--fail-on wants info, warn or high, "
					    "not '%s'", optarg);
			break;
		case OPT_SUPPRESS:
			if (kp_suppress_add(&opts->suppress, optarg,
					    "--suppress") < 0)
				exit(2);
			break;
		case OPT_ADVICE_MIN:
			advice_min_opt(&opts->advice_min, optarg);
			break;
		case OPT_LEAK_KINDS:
			opts->leak_kinds = leak_kinds_opt(optarg);
			break;
		case OPT_SUPPRESSIONS:
			if (kp_suppress_load(&opts->suppress, optarg) < 0)
				exit(2);
			break;
		case OPT_SLOW_MS: {
			char *end;
			errno = 0;
			long ms = strtol(optarg, &end, 10);
			if (errno || *end || end == optarg || ms < 0 ||
			    ms > 3600000)
				usage_error("--slow-ms wants a number from 0 to "
					    "3600000, not '%s'", optarg);
			opts->slow_ms = ms;
			break;
		}
		case OPT_NPLUS1_MIN:
			opts->nplus1_min = count_opt("--n-plus-one-min",
						     optarg, 2, RUN_MIN_MAX);
			break;
		case OPT_STORM_MIN:
			opts->storm_min = count_opt("--storm-min", optarg, 2,
						    RUN_MIN_MAX);
			break;
		case OPT_ORDER_BY:
			if (kp_query_order_field(optarg) == NULL)
				usage_error("--order-by wants total, calls, mean, "
					    "p95, p99, max or rows, not '%s'",
					    optarg);
			opts->order_by = optarg;
			break;
		case OPT_WHAT:
			if (strcmp(optarg, "cpu") && strcmp(optarg, "alloc") &&
			    strcmp(optarg, "live") && strcmp(optarg, "io") &&
			    strcmp(optarg, "temporary") &&
			    strcmp(optarg, "lost"))
				usage_error("--what wants cpu, alloc, live, "
					    "temporary, lost or io, not '%s'",
					    optarg);
			opts->what = optarg;
			break;
		case OPT_FOLDED:
			opts->folded = 1;
			break;
		case OPT_PPROF:
			opts->pprof = optarg;
			break;
		case OPT_CHROME:
			opts->chrome = optarg;
			break;
		case OPT_IOMIN: {
			unsigned long long us;
			const char *end = number(optarg, &us);
			if (!end || *end || us > 3600000000ull)
				usage_error("--io-min-us wants a number of "
					    "microseconds, not '%s'", optarg);
			opts->chrome_min_ns = us * 1000;
			opts->chrome_min_set = 1;
			break;
		}
		case OPT_BASE:
			opts->base = xrealloc_array(opts->base, opts->nbase + 1,
						    sizeof(*opts->base));
			opts->base[opts->nbase++] = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			exit(0);
		case OPT_VERSION:
			printf("kprof-analyze %s\n", KP_VERSION);
			exit(0);
		case ':':
			usage_error("option '%s' needs an argument",
				    argv[optind - 1]);
			break;
		default:
			usage_error("unknown option '%s'", argv[optind - 1]);
		}
	}
}

/*
 * This process's peak resident size in KiB: VmHWM of /proc/self/status.
 * Not getrusage's ru_maxrss, which Linux keeps across execve: run from a
 * big parent (a script holding a large report), it would report the
 * parent's peak.
 */
static long peak_rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* summary, memory, leaks, dump, flame, export, diff, or a pass's command. */
static int is_command(const char *s)
{
	size_t n;
	const struct kp_pass *const *passes = kp_pass_list(&n);

	if (!strcmp(s, "summary") || !strcmp(s, "leaks") || !strcmp(s, "dump") ||
	    !strcmp(s, "memory") ||
	    !strcmp(s, "flame") || !strcmp(s, "export") || !strcmp(s, "diff"))
		return 1;
	for (size_t i = 0; i < n; i++)
		if (passes[i]->command && !strcmp(s, passes[i]->command))
			return 1;
	return 0;
}

/* kprof-analyze diff --base FILE... TRACE... (diff.c). */
static int diff(struct kp_opts *opts, size_t n, char **files)
{
	FILE *out = opts->output ? fopen(opts->output, "w") : stdout;
	int ret;

	if (!out) {
		error("cannot open '%s': %s", opts->output, strerror(errno));
		free(opts->base);
		return 1;
	}
	ret = kp_diff_command(opts, files, n, out);
	if ((out == stdout ? fflush(out) : fclose(out)) != 0 && ret != 3) {
		error("cannot write the report to '%s'",
		      opts->output ? opts->output : "stdout");
		ret = 1;
	}
	free(opts->base);
	return ret;
}

/* kprof-analyze dump TRACE...: records as JSON lines (dump.c). */
static int dump(const struct kp_opts *opts, int n, char **files)
{
	FILE *out = opts->output ? fopen(opts->output, "w") : stdout;
	int ret = 0;

	if (!out) {
		error("cannot open '%s': %s", opts->output, strerror(errno));
		return 1;
	}
	for (int i = 0; i < n && !ret; i++)
		if (kp_dump_file(files[i], out) < 0)
			ret = 3;
	if ((out == stdout ? fflush(out) : fclose(out)) != 0 && !ret) {
		error("cannot write the dump");
		ret = 1;
	}
	return ret;
}

int main(int argc, char **argv)
{
	/* static: what it holds (--suppress rules) lives until exit */
	static struct kp_opts opts = { .format = KP_FMT_TEXT, .top = 10,
				.command = "summary", .slow_ms = -1,
				.fail_on = -1 };
	const char *env = getenv("KOTOBA_REPORT_FORMAT");

	if (env && *env && parse_format(env, &opts.format) < 0)
		warning("KOTOBA_REPORT_FORMAT: unknown format '%s', using text",
			env);
	kp_debug_cache_init(getenv("KOTOBA_REPORT_CACHE"), 0);
	opterr = 0;
	parse_options(argc, argv, &opts, "+ho:");
	if (optind < argc && is_command(argv[optind]))
		opts.command = argv[optind++];
	/*
	 * Options may also follow the command, between and after the traces:
	 * rescan the rest with argument permutation. argv[optind - 1] (the
	 * command or the program name) plays the program name, and optind = 0
	 * makes getopt start afresh.
	 */
	char **rest = argv + optind - 1;
	int nrest = argc - optind + 1;
	optind = 0;
	parse_options(nrest, rest, &opts, "ho:");
	argv = rest;
	argc = nrest;
	if (optind >= argc)
		usage_error("no trace given");

	if (opts.fail_on >= 0 && !strcmp(opts.command, "dump"))
		usage_error("--fail-on is for the commands that analyze");
	if (!strcmp(opts.command, "dump"))
		return dump(&opts, argc - optind, argv + optind);
	if (!strcmp(opts.command, "diff") && opts.format == KP_FMT_HTML)
		usage_error("diff writes text or json, not html");
	if (!strcmp(opts.command, "diff") && !opts.nbase)
		usage_error("diff wants the traces to compare with: --base FILE");
	/* where a flame graph goes without -o */
	const char *fl = getenv("KOTOBA_FLAME_GRAPH_OUTPUT");
	if (!strcmp(opts.command, "flame") && !opts.output && fl && *fl)
		opts.output = fl;
	if (strcmp(opts.command, "diff") && opts.nbase)
		usage_error("--base is for diff");

	double t0 = clock_s(CLOCK_MONOTONIC);
	double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	if (!strcmp(opts.command, "diff"))
		return diff(&opts, (size_t)(argc - optind), argv + optind);
	struct kp_analysis *an = kp_analysis_new(&opts);
	for (int i = optind; i < argc; i++) {
		if (kp_analysis_add_file(an, argv[i]) < 0) {
			kp_analysis_free(an);
			return 3;
		}
	}
	kp_analysis_finish(an);
	if (!strcmp(opts.command, "export")) {
		int rc = kp_export_command(an);
		if (!rc && opts.fail_on >= 0 &&
		    kp_advice_at_least(an, (enum kp_severity)opts.fail_on))
			rc = 4;
		kp_analysis_free(an);
		return rc;
	}

	FILE *out = stdout;
	int bad_cmd = 0;
	if (opts.output) {
		out = fopen(opts.output, "w");
		if (!out) {
			char msg[128];
			snprintf(msg, sizeof(msg), "%s", strerror(errno));
			if (msg[0] >= 'A' && msg[0] <= 'Z')
				msg[0] = (char)(msg[0] - 'A' + 'a');
			error("cannot open '%s': %s", opts.output, msg);
			kp_analysis_free(an);
			return 1;
		}
	}
	if (!strcmp(opts.command, "flame"))
		bad_cmd = kp_flame_command(an, out);
	else if (opts.format == KP_FMT_JSON)
		kp_report_json(an, out);
	else if (opts.format == KP_FMT_HTML)
		kp_report_html(an, out);
	else
		kp_report_text(an, out);
	int bad = ferror(out) || bad_cmd;
	if (out != stdout)
		bad |= fclose(out) != 0;
	else
		bad |= fflush(out) != 0;
	if (bad)
		error("cannot write the report to '%s'",
		      opts.output ? opts.output : "stdout");

	if (opts.stats) {
		/* CPU time too: on a shared machine wall time is the load's. */
		double dt = clock_s(CLOCK_MONOTONIC) - t0;
		double ct = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
		fprintf(stderr, "%s: %llu events in %.2f s (%.1f M events/s), "
			"%.2f CPU s (%.1f M events per CPU s), "
			"peak RSS %ld MB\n", KP_PROG,
			(unsigned long long)an->records, dt,
			dt > 0 ? (double)an->records / dt / 1e6 : 0.0, ct,
			ct > 0 ? (double)an->records / ct / 1e6 : 0.0,
			peak_rss_kb() / 1024);
	}
	/* --fail-on: the report is written either way; CI reads the status */
	size_t failing = opts.fail_on >= 0 ?
		kp_advice_at_least(an, (enum kp_severity)opts.fail_on) : 0;
	if (failing && !bad)
		fprintf(stderr, "%s: %zu finding%s of severity %s or above "
			"(--fail-on)\n", KP_PROG, failing,
			failing == 1 ? "" : "s",
			kp_severity_name((enum kp_severity)opts.fail_on));
	kp_analysis_free(an);
	return bad ? 1 : failing ? 4 : 0;
}
