/* SPDX-License-Identifier: MIT */
/*
 * The memory cgroup the process runs in: how much memory the cgroup holds
 * and the most it may, for the resource snapshots (snapshot.c). A process
 * the kernel's OOM killer ends in a container leaves a trace without its
 * END and no killer; these tell the analyzer how near the limit it was
 * (tools/analyze/kills.c).
 *
 * Found once (at the first snapshot; a fork child keeps its parent's,
 * an exec looks again) from /proc/self/cgroup:
 *   - cgroup v1's memory controller (its line names "memory"), mounted at
 *     /sys/fs/cgroup/memory: memory.usage_in_bytes, and memory.stat's
 *     hierarchical_memory_limit (the least of the limits on the way up);
 *   - else cgroup v2 (the "0::" line), at /sys/fs/cgroup (or
 *     /sys/fs/cgroup/unified): memory.current, and memory.max of the
 *     cgroup and of each one above it (the least).
 * A path that is not there (a cgroup namespace shows the process its own
 * cgroup as "/") falls back to the mount's root. No limit ("max", or v1's
 * 2^63 - 4096) reads as -1.
 */
#include "state.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static struct {
	int state; /* 0 not looked for yet, 1 found, -1 none */
	int v1;
	char usage[600], limit[600]; /* v1: limit is memory.stat */
	int64_t above;               /* v2: least memory.max above, or -1 */
} cg;

/* A small file of /sys or /proc, counted as kprof's own reading. */
static long read_file(const char *path, char *buf, size_t size)
{
	long n = kp_read_small(path, buf, size);
	if (n > 0)
		atomic_fetch_add_explicit(&kp_self_rchar, (uint64_t)n,
					  memory_order_relaxed);
	return n;
}

static int64_t number(const char *p)
{
	if (*p < '0' || *p > '9')
		return -1; /* "max" */
	uint64_t v = 0;
	while (*p >= '0' && *p <= '9' && v < (1ull << 62))
		v = v * 10 + (uint64_t)(*p++ - '0');
	return v >= (1ull << 62) ? -1 : (int64_t)v;
}

static int exists(const char *path)
{
	return syscall(SYS_faccessat, AT_FDCWD, path, F_OK, 0) == 0;
}

/* dir/rel/name into out; 0 if it exists. */
static int join(char *out, size_t n, const char *dir, const char *rel,
		const char *name)
{
	int w = snprintf(out, n, "%s%s/%s", dir, rel, name);
	return w > 0 && (size_t)w < n && exists(out) ? 0 : -1;
}

static void find(void)
{
	char buf[4096], v2[512] = "";
	cg.state = -1;
	cg.above = -1;
	if (read_file("/proc/self/cgroup", buf, sizeof(buf)) < 0)
		return;
	for (char *line = buf; *line;) {
		char *eol = strchr(line, '\n');
		if (eol)
			*eol = 0;
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : 0;
		if (c2) {
			*c2 = 0;
			const char *path = c2 + 1;
			const char *rel = strcmp(path, "/") ? path : "";
			/* v1: a controller list naming "memory" */
			const char *m = strstr(c1 + 1, "memory");
			if (m && (m[6] == 0 || m[6] == ',') &&
			    (m == c1 + 1 || m[-1] == ',')) {
				const char *root = "/sys/fs/cgroup/memory";
				cg.v1 = 1;
				if (join(cg.usage, sizeof(cg.usage), root, rel,
					 "memory.usage_in_bytes") != 0)
					join(cg.usage, sizeof(cg.usage), root,
					     "", "memory.usage_in_bytes");
				if (join(cg.limit, sizeof(cg.limit), root, rel,
					 "memory.stat") != 0)
					join(cg.limit, sizeof(cg.limit), root,
					     "", "memory.stat");
				cg.state = exists(cg.usage) ? 1 : -1;
				return;
			}
			if (!strcmp(c1 + 1, "") && line[0] == '0')
				snprintf(v2, sizeof(v2), "%s", rel);
		}
		line = eol ? eol + 1 : line + strlen(line);
	}
	/* v2: the cgroup's files, or the mount's root's */
	static const char *const roots[] = { "/sys/fs/cgroup",
					     "/sys/fs/cgroup/unified" };
	for (unsigned r = 0; r < 2; r++) {
		const char *rel = v2;
		if (join(cg.usage, sizeof(cg.usage), roots[r], rel,
			 "memory.current") != 0) {
			rel = "";
			if (join(cg.usage, sizeof(cg.usage), roots[r], rel,
				 "memory.current") != 0)
				continue;
		}
		join(cg.limit, sizeof(cg.limit), roots[r], rel, "memory.max");
		/* the limits above it, once: they seldom change */
		char up[512], path[600], num[64];
		snprintf(up, sizeof(up), "%s", rel);
		for (char *s = strrchr(up, '/'); s; s = strrchr(up, '/')) {
			*s = 0;
			if (join(path, sizeof(path), roots[r], up,
				 "memory.max") != 0 ||
			    read_file(path, num, sizeof(num)) < 0)
				continue;
			int64_t l = number(num);
			if (l >= 0 && (cg.above < 0 || l < cg.above))
				cg.above = l;
		}
		cg.state = 1;
		return;
	}
}

void kp_cgroup_memory(int64_t *usage, int64_t *limit)
{
	char buf[4096];
	*usage = *limit = -1;
	if (!cg.state)
		find();
	if (cg.state < 0)
		return;
	if (read_file(cg.usage, buf, sizeof(buf)) > 0)
		*usage = number(buf);
	if (cg.limit[0] && read_file(cg.limit, buf, sizeof(buf)) > 0) {
		if (!cg.v1) {
			*limit = number(buf);
		} else {
			const char *h = strstr(buf, "\nhierarchical_memory_limit ");
			if (h)
				*limit = number(h + 27);
		}
	}
	if (cg.above >= 0 && (*limit < 0 || cg.above < *limit))
		*limit = cg.above;
}
