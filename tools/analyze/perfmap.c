/* SPDX-License-Identifier: MIT */
/*
 * Names of just-in-time compiled code from perf's map files.
 *
 * A JIT (node --perf-basic-prof, python3.12 -X perf, a JVM with a perf
 * map agent, LuaJIT) writes one line per piece of code it emits to
 * /tmp/perf-<pid>.map: "START SIZE NAME", START and SIZE in hex, with or
 * without 0x. A pc of a stack that lies in no module of its process is
 * looked up in its process's map; where one covers it, the frame becomes
 * (pseudo-module "<dir>/perf-<pid>.map", offset = the pc) and symbolizes
 * as the map's name. Code freed and its memory reused gives overlapping
 * lines: the later line wins, as it describes the newer code.
 *
 * The file is untrusted: lines that do not parse are skipped, names are
 * cut at KP_PERFMAP_NAME_MAX bytes, and the entries at KP_PERFMAP_MAX.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"

struct pm_ent {
	uint64_t lo, hi; /* [lo, hi) */
	uint32_t name;   /* offset in names */
	uint32_t seq;    /* line order: a later line wins */
};

struct kp_perfmap {
	struct pm_ent *e;
	size_t n;
	char *names;
	size_t names_len;
};

/* "START SIZE NAME" in hex: 1 and the fields, or 0 for anything else. */
static int parse_line(char *s, uint64_t *lo, uint64_t *size, char **name)
{
	char *end;
	if (*s < '0' || *s > 'f')
		return 0;
	errno = 0;
	*lo = strtoull(s, &end, 16);
	if (errno || end == s || *end != ' ')
		return 0;
	s = end + 1;
	if (*s < '0' || *s > 'f')
		return 0;
	*size = strtoull(s, &end, 16);
	if (errno || end == s || *end != ' ' || !*size ||
	    *lo + *size < *lo)
		return 0;
	*name = end + 1;
	size_t n = strcspn(*name, "\r\n");
	(*name)[n > KP_PERFMAP_NAME_MAX ? KP_PERFMAP_NAME_MAX : n] = 0;
	return (*name)[0] != 0;
}

static int cmp_ent(const void *a, const void *b)
{
	const struct pm_ent *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

struct kp_perfmap *kp_perfmap_load(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	struct kp_perfmap *m = xcalloc(1, sizeof(*m));
	size_t cap = 0, names_cap = 0;
	char *line = NULL;
	size_t line_cap = 0;
	while (getline(&line, &line_cap, f) > 0 && m->n < KP_PERFMAP_MAX) {
		uint64_t lo, size;
		char *name;
		if (!parse_line(line, &lo, &size, &name))
			continue;
		size_t len = strlen(name) + 1;
		if (m->names_len + len > names_cap) {
			names_cap = (names_cap ? names_cap : 4096) * 2 + len;
			m->names = xrealloc(m->names, names_cap);
		}
		memcpy(m->names + m->names_len, name, len);
		if (m->n == cap) {
			cap = cap ? cap * 2 : 256;
			m->e = xrealloc_array(m->e, cap, sizeof(*m->e));
		}
		m->e[m->n] = (struct pm_ent){ lo, lo + size,
					      (uint32_t)m->names_len,
					      (uint32_t)m->n };
		m->n++;
		m->names_len += len;
	}
	free(line);
	fclose(f);
	if (!m->n) {
		kp_perfmap_free(m);
		return NULL;
	}
	qsort(m->e, m->n, sizeof(*m->e), cmp_ent);
	return m;
}

const char *kp_perfmap_find(const struct kp_perfmap *m, uint64_t pc)
{
	if (!m)
		return NULL;
	size_t lo = 0, hi = m->n; /* first entry with e.lo > pc */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (m->e[mid].lo <= pc)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* The covering entries start at or below pc; a few lines back is
	 * enough for a JIT's overlaps, and bounds a hostile file's. */
	const struct pm_ent *best = NULL;
	for (size_t i = lo, steps = 0; i-- > 0 && steps < 64; steps++) {
		const struct pm_ent *e = &m->e[i];
		if (pc < e->hi && (!best || e->seq > best->seq))
			best = e;
	}
	return best ? m->names + best->name : NULL;
}

void kp_perfmap_free(struct kp_perfmap *m)
{
	if (!m)
		return;
	free(m->e);
	free(m->names);
	free(m);
}
