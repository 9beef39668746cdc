/* SPDX-License-Identifier: MIT */
/*
 * Resource snapshots: the process's resident and mapped memory, the
 * kernel's high-water mark of the former, page faults and CPU time,
 * kprof's own cost (its writer thread's CPU time, the app's waits for a
 * full ring), and its memory cgroup's use and limit, as SNAPSHOT records (lib/record.h) written by the writer's
 * cycles, every KOTOBA_SAMPLING_INTERVAL_MS (the writer wakes for them),
 * and by the last one.
 *
 * A trace holds at most KOTOBA_MAX_SNAPSHOTS (M) of them, and the last:
 * when half of M are written the interval doubles, again when half of
 * the rest are, and so on, so a long run is covered at a resolution that
 * falls as it grows (each such part covers as much time as the first
 * half did) until the M-th, about a day in at the defaults. The heap
 * kprof sees is what went through malloc; the resident size is what the
 * process cost the machine (mmap, thread stacks, the allocator's
 * fragmentation and retention, kprof itself): the analyzer sets one
 * against the other.
 *
 * Read with raw system calls (/proc/self/statm; kprof's reads are not the
 * app's I/O) and getrusage(2); runs in a cycle (writer.c), under its lock.
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpz.h"

/* "size resident ..." in pages: bytes mapped and resident, or -1. */
static void read_statm(int64_t *vm, int64_t *rss)
{
	char buf[128];
	*vm = *rss = -1;
	if (kp_read_small("/proc/self/statm", buf, sizeof(buf)) < 0)
		return;
	uint64_t v[2] = { 0, 0 };
	const char *p = buf;
	for (int k = 0; k < 2; k++) {
		if (*p < '0' || *p > '9')
			return;
		while (*p >= '0' && *p <= '9')
			v[k] = v[k] * 10 + (uint64_t)(*p++ - '0');
		if (*p++ != ' ')
			return;
	}
	int64_t page = (int64_t)sysconf(_SC_PAGESIZE);
	*vm = (int64_t)v[0] * page;
	*rss = (int64_t)v[1] * page;
}

static uint64_t last_ts, interval_ns, written, next_double;
static int any;
/*
 * Climbing towards its memory cgroup's limit (a hundredth of it more
 * than at the last snapshot, at a pace that reaches three quarters of it
 * by the next), the next snapshot comes NEAR_NS later, not at the
 * interval: the writer's cycle that writes it flushes the events too, so
 * a process the OOM killer ends has its last 10 ms of heap in its trace,
 * not its last 100 (the analyzer tells an OOM kill by how near the limit
 * it was). Hovering near the limit does not keep it: a JVM may sit there
 * for hours.
 */
#define NEAR_NS 10000000ull
static int64_t last_cg_usage;
static int near_limit;

void kp_snapshot_after_fork_child(void)
{
	any = 0;
	interval_ns = written = 0;
	near_limit = 0;
	last_cg_usage = 0;
}

uint64_t kp_snapshot_wait_ns(uint64_t ts)
{
	if (!any) /* the first comes with the first cycle */
		return UINT64_MAX;
	if (written >= kp.cfg.max_snaps)
		return UINT64_MAX;
	uint64_t due = last_ts + (near_limit && interval_ns > NEAR_NS ?
					  NEAR_NS : interval_ns);
	return due > ts ? due - ts : 0;
}

void kp_snapshot_write(struct kp_writer *kw, uint64_t ts, int final)
{
	if (!interval_ns) {
		interval_ns = (uint64_t)kp.cfg.snap_ms * 1000000;
		next_double = kp.cfg.max_snaps / 2;
	}
	uint64_t every = near_limit && interval_ns > NEAR_NS ? NEAR_NS :
							       interval_ns;
	if (!final && any &&
	    (ts - last_ts < every || written >= kp.cfg.max_snaps))
		return;
	int saved = errno;
	struct kp_rec r;
	struct rusage ru;
	memset(&r, 0, sizeof(r));
	r.type = KP_REC_SNAPSHOT;
	r.ts = ts;
	r.tid = (uint32_t)syscall(SYS_getpid);
	read_statm(&r.u.ext.v[KP_SNAP_VM], &r.u.ext.v[KP_SNAP_RSS]);
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		r.u.ext.v[KP_SNAP_MAXRSS] = (int64_t)ru.ru_maxrss * 1024;
		r.u.ext.v[KP_SNAP_MINFLT] = ru.ru_minflt;
		r.u.ext.v[KP_SNAP_MAJFLT] = ru.ru_majflt;
		r.u.ext.v[KP_SNAP_CPU_NS] =
			(int64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) *
				1000000000 +
			(int64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) *
				1000;
	}
	r.u.ext.v[KP_SNAP_WRITER_CPU_NS] = (int64_t)kp_writer_cpu_ns();
	r.u.ext.v[KP_SNAP_RING_WAITS] = (int64_t)atomic_load_explicit(
		&kp.ring_waits, memory_order_relaxed);
	r.u.ext.v[KP_SNAP_RING_WAIT_NS] = (int64_t)atomic_load_explicit(
		&kp.ring_wait_ns, memory_order_relaxed);
	int64_t use, lim;
	kp_cgroup_memory(&use, &lim);
	r.u.ext.v[KP_SNAP_CG_USAGE] = use;
	r.u.ext.v[KP_SNAP_CG_LIMIT] = lim;
	/* climbing, and at its pace past three quarters of the limit by
	 * the next snapshot at the interval */
	near_limit = 0;
	if (use >= 0 && lim > 0 && any && ts > last_ts &&
	    use > last_cg_usage + lim / 100) {
		double pace = (double)(use - last_cg_usage) /
			      (double)(ts - last_ts);
		near_limit = (double)use + pace * (double)interval_ns >=
			     (double)(lim - lim / 4);
	}
	last_cg_usage = use;
	kp_writer_add(kw, &r);
	last_ts = ts;
	any = 1;
	if (++written >= next_double && written < kp.cfg.max_snaps) {
		interval_ns *= 2;
		next_double += (kp.cfg.max_snaps - next_double + 1) / 2;
	}
	errno = saved;
}
