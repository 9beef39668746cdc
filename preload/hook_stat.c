/* SPDX-License-Identifier: MIT */
/*
 * The app counting its own threads.
 *
 * Programs that sandbox themselves assert that they are single-threaded
 * before they fork or drop privileges, by the link count of their
 * /proc/self/task directory (2 + the threads): Chromium's zygote
 * (sandbox::ThreadHelpers, fstatat(proc, "self/task/")) and Firefox's
 * sandbox (stat("/proc/self/task")). kprof's writer thread made that
 * count one too many, and the zygote crashed at start (SIGTRAP): headless
 * Chromium under kprof died with "GPU process isn't usable".
 *
 * Python 3.12 and later read the count from /proc/self/stat (fopen, its
 * 20th field) after os.fork(), to warn that a fork in a process of more
 * than one thread may deadlock.
 *
 * So a stat of this process's task directory, or an fopen of its stat
 * file (hook_stdio.c), by the app's only thread makes the writer step
 * out first (lifecycle.c, kp_writer_step_out, as for unshare), and it
 * stays out: the app looks because it is about to rely on the answer.
 * While it is out, the app's thread writes the trace itself, at its
 * events, each flush interval (ring.c, kp_ring_parked), the end of the
 * run writes the rest, and a child forked then starts parked too
 * (writer.c); a thread the app starts brings the writer back. Other
 * stats pass with a look at the path's end.
 */
#include "state.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Does s[0..n) name this process: "self", "thread-self" is not (it is a
 * thread's), or its pid in decimal? */
static int names_self(const char *s, size_t n)
{
	if (n == 4 && !memcmp(s, "self", 4))
		return 1;
	char pid[24];
	int k = snprintf(pid, sizeof(pid), "%ld", (long)syscall(SYS_getpid));
	return k > 0 && (size_t)k == n && !memcmp(s, pid, n);
}

/*
 * Is path (relative to dirfd) this process's entry `leaf` ("/task",
 * "/stat"): /proc/self/LEAF or /proc/PID/LEAF, with or without a last
 * '/', or self/LEAF and PID/LEAF relative to a directory on procfs?
 */
static int own_proc_entry(int dirfd, const char *path, const char *leaf)
{
	if (!path)
		return 0;
	size_t n = strlen(path);
	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n < 9 || memcmp(path + n - 5, leaf, 5))
		return 0; /* the common case: one compare */
	n -= 5;
	size_t b = n;
	while (b && path[b - 1] != '/')
		b--;
	if (!names_self(path + b, n - b))
		return 0;
	if (b == 6 && !memcmp(path, "/proc/", 6))
		return 1;
	if (b || path[0] == '/')
		return 0;
	struct statfs fs; /* relative: is dirfd on procfs? */
	return dirfd != AT_FDCWD && fstatfs(dirfd, &fs) == 0 &&
	       fs.f_type == PROC_SUPER_MAGIC;
}

void kp_app_counts_threads(int dirfd, const char *path, const char *leaf)
{
	if (KP_UNLIKELY(own_proc_entry(dirfd, path, leaf)))
		kp_writer_step_out();
}

static void before(int dirfd, const char *path)
{
	kp_app_counts_threads(dirfd, path, "/task");
}

#define REAL(fn)                                        \
	do {                                            \
		if (KP_UNLIKELY(!kp_real.fn))           \
			kp_real_resolve();              \
		if (KP_UNLIKELY(!kp_real.fn)) {         \
			errno = ENOSYS;                 \
			return -1;                      \
		}                                       \
	} while (0)

KP_EXPORT int stat(const char *path, struct stat *st)
{
	REAL(stat);
	before(AT_FDCWD, path);
	return kp_real.stat(path, st);
}

KP_EXPORT int lstat(const char *path, struct stat *st)
{
	REAL(lstat);
	before(AT_FDCWD, path);
	return kp_real.lstat(path, st);
}

KP_EXPORT int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	REAL(fstatat);
	before(dirfd, path);
	return kp_real.fstatat(dirfd, path, st, flags);
}

KP_EXPORT int statx(int dirfd, const char *path, int flags, unsigned mask,
		    struct statx *st)
{
	REAL(statx);
	before(dirfd, path);
	return kp_real.statx(dirfd, path, flags, mask, st);
}

/* glibc's *64 names: the same calls (struct stat64 is struct stat on
 * x86-64). */
_Static_assert(sizeof(struct stat64) == sizeof(struct stat), "one layout");

KP_EXPORT int stat64(const char *path, struct stat64 *st)
{
	return stat(path, (struct stat *)st);
}

KP_EXPORT int lstat64(const char *path, struct stat64 *st)
{
	return lstat(path, (struct stat *)st);
}

KP_EXPORT int fstatat64(int dirfd, const char *path, struct stat64 *st,
			int flags)
{
	return fstatat(dirfd, path, (struct stat *)st, flags);
}
