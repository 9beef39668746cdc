/* SPDX-License-Identifier: MIT */
/*
 * Suppressions: findings of the advice the user has ruled out (a leak in
 * a library they cannot fix, a duplicate query they accept), so that
 * --fail-on guards what is left, as valgrind's suppression files do for
 * its errors.
 *
 * A rule is CODE or CODE:PATTERN, both shell globs (fnmatch): CODE
 * against the finding's code (MEM01, IO*, *), PATTERN against its key
 * (struct kp_advice) and each frame of its stack, all of it: the
 * function, the module's path and file name, the source file's path and
 * file name. A rule is given with --suppress or as a line of a
 * --suppressions file ('#' starts a comment). A CODE that names no code
 * kprof has is an error, not a rule that silently never matches.
 *
 * What is suppressed is left out of the advice (and so of --fail-on and
 * of diff's findings), never silently: the reports count it, and JSON
 * lists each one with the rule that took it.
 */
#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>

#include "analyze.h"

/* Every code a finding may have (advise.c, io.c, queries.c). */
static const char *const codes[] = {
	"MEM01", "MEM02", "MEM03",
	"IO01", "IO02", "IO03", "IO04", "IO05", "IO06", "IO07", "IO08",
	"IO09", "IO10",
	"Q01", "Q02", "Q03", "Q04", "Q05", "Q06",
	"CPU01", "CPU02",
};

int kp_suppress_add(struct kp_suppress *s, const char *text, const char *from)
{
	const char *colon = strchr(text, ':');
	size_t cl = colon ? (size_t)(colon - text) : strlen(text);
	if (!cl)
		return error("%s: '%s' has no code (CODE or CODE:PATTERN)",
			     from, text);
	if (colon && !colon[1])
		return error("%s: '%s' has an empty pattern", from, text);
	char *code = xstrndup(text, cl);
	int known = 0;
	for (size_t i = 0; i < sizeof(codes) / sizeof(*codes) && !known; i++)
		known = fnmatch(code, codes[i], 0) == 0;
	if (!known) {
		error("%s: '%s' names no advice code (MEM01..MEM03, "
		      "IO01..IO10, Q01..Q06, CPU01, CPU02)", from, code);
		free(code);
		return -1;
	}
	s->v = xrealloc_array(s->v, s->n + 1, sizeof(*s->v));
	struct kp_suppress_rule *r = &s->v[s->n++];
	r->text = xstrdup(text);
	r->code = code;
	r->pattern = colon ? xstrdup(colon + 1) : NULL;
	r->from = xstrdup(from);
	return 0;
}

int kp_suppress_load(struct kp_suppress *s, const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		char msg[128];
		return error("cannot read suppressions '%s': %s", path,
			     kp_lower_first(msg, sizeof(msg), strerror(errno)));
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int rc = 0;
	for (unsigned no = 1; rc == 0 && (len = getline(&line, &cap, f)) >= 0;
	     no++) {
		char *p = line, *hash = strchr(line, '#');
		if (hash)
			*hash = '\0';
		while (*p == ' ' || *p == '\t')
			p++;
		char *e = p + strlen(p);
		while (e > p && (e[-1] == ' ' || e[-1] == '\t' ||
				 e[-1] == '\n' || e[-1] == '\r'))
			*--e = '\0';
		if (!*p)
			continue;
		char from[256];
		snprintf(from, sizeof(from), "%s:%u", path, no);
		rc = kp_suppress_add(s, p, from);
	}
	if (rc == 0 && ferror(f))
		rc = error("cannot read suppressions '%s'", path);
	free(line);
	fclose(f);
	return rc;
}

/* A path or its file name matches pat. */
static int path_matches(const char *pat, const char *path)
{
	if (!path || !*path)
		return 0;
	const char *base = strrchr(path, '/');
	return fnmatch(pat, path, 0) == 0 ||
	       (base && fnmatch(pat, base + 1, 0) == 0);
}

/* Does pat match x's key or a frame of its stack? */
static int finding_matches(const char *pat, struct kp_analysis *an,
			   const struct kp_advice *x)
{
	if (fnmatch(pat, x->key, 0) == 0)
		return 1;
	if (!x->gstack)
		return 0;
	const struct kp_symframe *f[KP_MAX_STACK_DEPTH];
	size_t n = kp_symbolize_frames(kp_analysis_symbols(an), x->gstack, 0,
				       f, KP_MAX_STACK_DEPTH);
	for (size_t i = 0; i < n; i++)
		if ((f[i]->function && fnmatch(pat, f[i]->function, 0) == 0) ||
		    path_matches(pat, f[i]->module) ||
		    path_matches(pat, f[i]->file))
			return 1;
	return 0;
}

ssize_t kp_suppress_match(const struct kp_suppress *s, struct kp_analysis *an,
			  const struct kp_advice *x)
{
	for (size_t i = 0; i < s->n; i++) {
		const struct kp_suppress_rule *r = &s->v[i];
		if (fnmatch(r->code, x->code, 0) == 0 &&
		    (!r->pattern || finding_matches(r->pattern, an, x)))
			return (ssize_t)i;
	}
	return -1;
}
