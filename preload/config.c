/* SPDX-License-Identifier: MIT */
/*
 * KOTOBA_PROFILE_* environment variables, read once at initialisation.
 * A bad value gets one warning line naming the variable and the default
 * used, and the app runs on. man/kprof.7 documents every variable; keep the
 * two in step.
 */
#include "state.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEF_OUTPUT "kprof.%p.kpz"
#define DEF_DEPTH 64
#define DEF_BUFFER_KB 1024
#define DEF_FLUSH_MS 100
#define DEF_ZSTD 1
#define DEF_CPU_HZ 100
#define DEF_SNAP_MS 100
#define DEF_MAX_SNAPS 100000

/* 1 or 0 for a boolean's words, else -1. */
static int bool_value(const char *v)
{
	static const char *const yes[] = { "1", "on", "yes", "true" };
	static const char *const no[] = { "0", "off", "no", "false" };
	for (size_t i = 0; i < KP_ARRAY_SIZE(yes); i++) {
		if (strcasecmp(v, yes[i]) == 0)
			return 1;
		if (strcasecmp(v, no[i]) == 0)
			return 0;
	}
	return -1;
}

static int parse_bool(const char *name, int def)
{
	const char *v = getenv(name);
	if (!v)
		return def;
	int b = bool_value(v);
	if (b >= 0)
		return b;
	kp_warn("%s='%s' is not one of 1/0/on/off/yes/no/true/false; "
		"using the default %s", name, v, def ? "1" : "0");
	return def;
}

static long parse_int(const char *name, long def, long lo, long hi)
{
	const char *v = getenv(name);
	if (!v)
		return def;
	char *end;
	long x = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || x < lo || x > hi) {
		kp_warn("%s='%s' is not an integer in %ld..%ld; "
			"using the default %ld", name, v, lo, hi, def);
		return def;
	}
	return x;
}

/* KOTOBA_PROFILE_QUERY* (query.c owns the parsing of the hook list). */
static void kp_config_load_query(struct kp_config *c)
{
	c->query = parse_bool("KOTOBA_PROFILE_QUERY", 1);
	c->slow_query_ms = (unsigned)parse_int("KOTOBA_PROFILE_SLOW_QUERY_MS",
					       100, 0, 3600000);
	c->query_hooks = kp_query_hooks_parse(getenv("KOTOBA_PROFILE_QUERY_HOOKS"));
	const char *t = getenv("KOTOBA_PROFILE_QUERY_TEXT");
	c->query_text_full = t && strcmp(t, "full") == 0;
	if (t && !c->query_text_full && strcmp(t, "fingerprint") != 0)
		kp_warn("KOTOBA_PROFILE_QUERY_TEXT='%s' is not fingerprint or "
			"full; using the default fingerprint", t);
	const char *pl = getenv("KOTOBA_PROFILE_QUERY_PLUGIN");
	if (pl && strlen(pl) >= sizeof(c->query_plugin)) {
		kp_warn("KOTOBA_PROFILE_QUERY_PLUGIN is too long; loading none");
		pl = NULL;
	}
	snprintf(c->query_plugin, sizeof(c->query_plugin), "%s", pl ? pl : "");
	/* auto, api, or offset=N (for tests: an offset to try, which the
	 * hook checks like one it found; hook_sqlite.c) */
	c->sqlite_counters = KP_SQC_AUTO;
	const char *sc = getenv("KOTOBA_PROFILE_SQLITE_COUNTERS");
	char *end;
	if (!sc || strcmp(sc, "auto") == 0)
		;
	else if (strcmp(sc, "api") == 0)
		c->sqlite_counters = KP_SQC_API;
	else if (strncmp(sc, "offset=", 7) == 0 && sc[7] &&
		 (c->sqlite_counters = strtol(sc + 7, &end, 10), *end == '\0') &&
		 c->sqlite_counters >= 0 && c->sqlite_counters <= 4096)
		;
	else {
		kp_warn("KOTOBA_PROFILE_SQLITE_COUNTERS='%s' is not auto, api or "
			"offset=N (N in 0..4096); using the default auto", sc);
		c->sqlite_counters = KP_SQC_AUTO;
	}
}

void kp_config_load(struct kp_config *c)
{
	c->memory = parse_bool("KOTOBA_PROFILE_MEMORY", 1);
	c->stack_depth = (int)parse_int("KOTOBA_PROFILE_STACK_DEPTH", DEF_DEPTH,
					0, KP_MAX_STACK_DEPTH);
	c->buffer_kb = (unsigned)parse_int("KOTOBA_PROFILE_BUFFER_KB",
					   DEF_BUFFER_KB, 16, 1 << 20);
	c->flush_ms = (unsigned)parse_int("KOTOBA_PROFILE_FLUSH_MS",
					  DEF_FLUSH_MS, 1, 60000);
	c->zstd_level = (int)parse_int("KOTOBA_PROFILE_ZSTD_LEVEL", DEF_ZSTD,
				       1, 19);
	c->zstd_raw = c->stack_depth == 0 &&
		      !getenv("KOTOBA_PROFILE_ZSTD_LEVEL");
	c->io = parse_bool("KOTOBA_PROFILE_IO", 1);
	c->io_stacks = parse_bool("KOTOBA_PROFILE_IO_STACKS", 1);
	c->io_capture = c->io_stacks && c->stack_depth > 0;
	c->leak_scan = parse_bool("KOTOBA_PROFILE_LEAK_SCAN", 0);
	c->snap_ms = (unsigned)parse_int("KOTOBA_SAMPLING_INTERVAL_MS",
					 DEF_SNAP_MS, 1, 3600000);
	c->max_snaps = (unsigned long)parse_int("KOTOBA_MAX_SNAPSHOTS",
						DEF_MAX_SNAPS, 1, 100000000);
	c->cpu = parse_bool("KOTOBA_PROFILE_CPU", 0);
	c->cpu_hz = (unsigned)parse_int("KOTOBA_PROFILE_CPU_HZ", DEF_CPU_HZ,
					1, 10000);
	/* DESIGN's invariant 1: no signal handler unless CPU sampling,
	 * which takes one anyway, is on; or unless asked for */
	const char *sg = getenv("KOTOBA_PROFILE_SIGNALS");
	c->signals = c->cpu;
	if (sg && strcmp(sg, "auto") != 0) {
		if (bool_value(sg) >= 0)
			c->signals = bool_value(sg);
		else
			kp_warn("KOTOBA_PROFILE_SIGNALS='%s' is not auto or one of "
				"1/0/on/off/yes/no/true/false; using the default "
				"auto", sg);
	}

	c->overflow = KP_OVERFLOW_WAIT;
	const char *o = getenv("KOTOBA_PROFILE_OVERFLOW");
	if (o && strcmp(o, "drop") == 0)
		c->overflow = KP_OVERFLOW_DROP;
	else if (o && strcmp(o, "wait") != 0)
		kp_warn("KOTOBA_PROFILE_OVERFLOW='%s' is not wait or drop; "
			"using the default wait", o);

	c->unwind = KP_UNWIND_FAST;
	const char *u = getenv("KOTOBA_PROFILE_UNWIND");
	if (u && strcmp(u, "libunwind") == 0)
		c->unwind = KP_UNWIND_LIBUNWIND;
	else if (u && strcmp(u, "verify") == 0)
		c->unwind = KP_UNWIND_VERIFY;
	else if (u && strcmp(u, "fast") != 0)
		kp_warn("KOTOBA_PROFILE_UNWIND='%s' is not fast, libunwind or "
			"verify; using the default fast", u);

	c->python = parse_bool("KOTOBA_PROFILE_PYTHON", 1);
	c->deepbind = parse_bool("KOTOBA_PROFILE_DEEPBIND", 1);

	kp_config_load_query(c);

	const char *out = getenv("KOTOBA_PROFILE_OUTPUT");
	if (out && (*out == '\0' || strlen(out) >= sizeof(c->output) - 32)) {
		kp_warn("KOTOBA_PROFILE_OUTPUT is empty or too long; "
			"using the default %s", DEF_OUTPUT);
		out = NULL;
	}
	snprintf(c->output, sizeof(c->output), "%s", out ? out : DEF_OUTPUT);

	const char *pr = getenv("KOTOBA_PROFILE_PROGRAMS");
	if (pr && (*pr == '\0' || strlen(pr) >= sizeof(c->programs))) {
		kp_warn("KOTOBA_PROFILE_PROGRAMS is empty or too long; "
			"using the default: every program");
		pr = NULL;
	}
	snprintf(c->programs, sizeof(c->programs), "%s", pr ? pr : "");
}

/*
 * Is this process's program one of KOTOBA_PROFILE_PROGRAMS (a comma list
 * of fnmatch(3) patterns; "" = every program)? A pattern with a '/' is
 * matched against the executable's path, any other against the
 * executable's file name and against argv[0]'s last component (python3
 * runs the file python3.11: "python3" names it by argv[0]).
 */
int kp_config_program_wanted(const struct kp_config *c)
{
	if (!c->programs[0])
		return 1;
	char exe[1024], list[sizeof(c->programs)], *save = NULL;
	kp_self_exe(exe, sizeof(exe));
	const char *base = kp_base_name(exe);
	const char *arg0 = program_invocation_short_name;
	snprintf(list, sizeof(list), "%s", c->programs);
	for (char *p = strtok_r(list, ",", &save); p;
	     p = strtok_r(NULL, ",", &save)) {
		if (strchr(p, '/')) {
			if (exe[0] && fnmatch(p, exe, 0) == 0)
				return 1;
		} else if ((base[0] && fnmatch(p, base, 0) == 0) ||
			   (arg0 && arg0[0] && fnmatch(p, arg0, 0) == 0)) {
			return 1;
		}
	}
	return 0;
}

const char *kp_unwind_mode_name(int mode)
{
	return mode == KP_UNWIND_LIBUNWIND ? "libunwind"
	       : mode == KP_UNWIND_VERIFY  ? "verify"
					   : "fast";
}

unsigned kp_config_pairs(const struct kp_config *c, const char **keys,
			 const char **vals, char *scratch, size_t scratch_len)
{
	unsigned n = 0;
	size_t off = 0;
#define PAIR(k, fmt, v)                                                    \
	do {                                                               \
		int w = snprintf(scratch + off, scratch_len - off, fmt, v); \
		if (w < 0 || (size_t)w >= scratch_len - off)               \
			break;                                             \
		keys[n] = k;                                               \
		vals[n++] = scratch + off;                                 \
		off += (size_t)w + 1;                                      \
	} while (0)
	PAIR("memory", "%d", c->memory);
	PAIR("output", "%s", c->output);
	PAIR("stack_depth", "%d", c->stack_depth);
	PAIR("buffer_kb", "%u", c->buffer_kb);
	PAIR("overflow", "%s", c->overflow == KP_OVERFLOW_DROP ? "drop" : "wait");
	PAIR("flush_ms", "%u", c->flush_ms);
	PAIR("zstd_level", "%d", c->zstd_level);
	PAIR("zstd_literals", "%s", c->zstd_raw ? "raw" : "compressed");
	PAIR("io", "%d", c->io);
	PAIR("io_stacks", "%d", c->io_stacks);
	PAIR("leak_scan", "%d", c->leak_scan);
	PAIR("query", "%d", c->query);
	PAIR("query_hooks", "%s", kp_query_hooks_name(c->query_hooks));
	PAIR("query_plugin", "%s", c->query_plugin);
	PAIR("slow_query_ms", "%u", c->slow_query_ms);
	PAIR("query_text", "%s", c->query_text_full ? "full" : "fingerprint");
	if (c->sqlite_counters >= 0)
		PAIR("sqlite_counters", "offset=%ld", c->sqlite_counters);
	else
		PAIR("sqlite_counters", "%s",
		     c->sqlite_counters == KP_SQC_API ? "api" : "auto");
	PAIR("sampling_interval_ms", "%u", c->snap_ms);
	PAIR("max_snapshots", "%lu", c->max_snaps);
	PAIR("cpu", "%d", c->cpu);
	PAIR("cpu_hz", "%u", c->cpu_hz);
	PAIR("signals", "%d", c->signals);
	PAIR("unwind", "%s", kp_unwind_mode_name(c->unwind));
	PAIR("python", "%d", c->python);
	PAIR("deepbind", "%d", c->deepbind);
	if (c->programs[0])
		PAIR("programs", "%s", c->programs);
	if (c->malloc_owner[0])
		PAIR("malloc_owner", "%s", c->malloc_owner);
#undef PAIR
	return n;
}
