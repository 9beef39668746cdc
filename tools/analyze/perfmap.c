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
 * The map comes from the trace (its JIT_CODE records, copied from the
 * file as the process ended: preload/jitmap.c) or from the file itself.
 * Both are untrusted: lines that do not parse (lib/perfmap_line.c) and
 * empty entries are skipped, names are cut at KP_PERFMAP_NAME_MAX bytes,
 * and the entries at KP_PERFMAP_MAX.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "perfmap_line.h"

struct pm_ent {
	uint64_t lo, hi; /* [lo, hi) */
	uint32_t name;   /* offset in names */
	uint32_t seq;    /* line order: a later line wins */
};

struct kp_perfmap {
	struct pm_ent *e;
	size_t n, cap;
	char *names; /* NUL-terminated names, one after the other */
	size_t names_len, names_cap;
};

static int cmp_ent(const void *a, const void *b)
{
	const struct pm_ent *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

struct kp_perfmap *kp_perfmap_new(void)
{
	return xcalloc(1, sizeof(struct kp_perfmap));
}

void kp_perfmap_add(struct kp_perfmap *m, uint64_t lo, uint64_t size,
		    const char *name, size_t len)
{
	if (m->n >= KP_PERFMAP_MAX || !size || lo + size < lo || !len)
		return;
	if (len > KP_PERFMAP_NAME_MAX)
		len = KP_PERFMAP_NAME_MAX;
	if (m->names_len + len + 1 > m->names_cap) {
		m->names_cap = (m->names_cap ? m->names_cap : 4096) * 2 + len;
		m->names = xrealloc(m->names, m->names_cap);
	}
	memcpy(m->names + m->names_len, name, len);
	m->names[m->names_len + len] = 0;
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 256;
		m->e = xrealloc_array(m->e, m->cap, sizeof(*m->e));
	}
	m->e[m->n] = (struct pm_ent){ lo, lo + size, (uint32_t)m->names_len,
				      (uint32_t)m->n };
	m->n++;
	m->names_len += len + 1;
}

int kp_perfmap_finish(struct kp_perfmap *m)
{
	if (!m->n)
		return -1;
	qsort(m->e, m->n, sizeof(*m->e), cmp_ent);
	return 0;
}

struct kp_perfmap *kp_perfmap_load(const char *path)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return NULL;
	struct kp_perfmap *m = kp_perfmap_new();
	char *line = NULL;
	size_t line_cap = 0;
	ssize_t got;
	while ((got = getline(&line, &line_cap, f)) > 0 &&
	       m->n < KP_PERFMAP_MAX) {
		uint64_t lo, size;
		const char *name;
		size_t len, n = (size_t)got - (line[got - 1] == '\n');
		if (kp_perfmap_line(line, n, &lo, &size, &name, &len))
			kp_perfmap_add(m, lo, size, name, len);
	}
	free(line);
	fclose(f);
	if (kp_perfmap_finish(m) != 0) {
		kp_perfmap_free(m);
		return NULL;
	}
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
