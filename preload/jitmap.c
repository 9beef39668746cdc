/* SPDX-License-Identifier: MIT */
/*
 * The JIT's perf map, copied into the trace as the process ends or execs.
 *
 * A JIT that supports perf (node --perf-basic-prof, python3.12 -X perf,
 * java -XX:+DumpPerfMapAtExit as it exits) names the code it emits in
 * /tmp/perf-<pid>.map; the analyzer names frames in no module from it.
 * Copied into the trace as JIT_CODE records (lib/record.h), the names
 * survive /tmp being cleaned, a pid being reused, and analysis on another
 * machine.
 *
 * The file is read with raw system calls (kprof's reads are not the app's
 * I/O), only if it is a regular file owned by this process's effective
 * user and not reached through a symbolic link (/tmp is anyone's; perf
 * checks the owner too), and only its first KP_JITMAP_MAX_BYTES. Lines are
 * parsed with the analyzer's parser (lib/perfmap_line.c); lines that are
 * not map lines, and the rest of a line longer than the buffer, are
 * skipped. Runs in a cycle (writer.c), under its lock, at the end of the
 * trace and at each exec.
 */
#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kpz.h"
#include "perfmap_line.h"

#define KP_JITMAP_MAX_BYTES (256u << 20)

static char buf[64 << 10]; /* a cycle's: under the writer's cycle lock */

static void add_line(struct kp_writer *kw, const char *s, size_t n,
		     uint64_t ts, uint32_t tid)
{
	struct kp_rec r;
	const char *name;
	size_t len;
	memset(&r, 0, sizeof(r));
	if (!kp_perfmap_line(s, n, &r.u.jit.lo, &r.u.jit.size, &name, &len))
		return;
	r.type = KP_REC_JIT_CODE;
	r.ts = ts;
	r.tid = tid;
	r.u.jit.name = name;
	r.u.jit.name_len = (uint32_t)len;
	kp_writer_add(kw, &r);
}

void kp_jitmap_write(struct kp_writer *kw, uint64_t ts, uint32_t tid,
		     int final)
{
	/* Copied so far, of this pid's map: an exec that fails (of a file
	 * that is there but cannot run: a PATH search may meet several)
	 * flushes again, and only what the map gained since is copied
	 * then. A map now shorter was rewritten: copied again from its
	 * start. */
	static long done_pid;
	static uint64_t done;
	int saved = errno;
	long pid = syscall(SYS_getpid);
	char path[64];
	if (pid != done_pid) {
		done_pid = pid;
		done = 0;
	}
	snprintf(path, sizeof(path), "/tmp/perf-%ld.map", pid);
	long fd = syscall(SYS_openat, AT_FDCWD, path,
			  O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		errno = saved;
		return;
	}
	struct stat st;
	if (syscall(SYS_fstat, fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    st.st_uid != (uid_t)syscall(SYS_geteuid))
		goto out;
	if ((uint64_t)st.st_size < done)
		done = 0;

	uint64_t at = done;   /* file offset of buf[0] */
	uint64_t skip_from = 0;
	size_t have = 0;
	int skipping = 0;     /* in a line longer than buf (from skip_from):
			       * up to its newline */
	while (at + have - done < KP_JITMAP_MAX_BYTES) {
		long got = syscall(SYS_pread64, fd, buf + have,
				   sizeof(buf) - have, (off_t)(at + have));
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			/* the end: its last line without a newline is whole
			 * only when the process is (a JIT may be writing it) */
			if (got == 0 && final && have && !skipping) {
				add_line(kw, buf, have, ts, tid);
				at += have;
				have = 0;
			}
			break;
		}
		size_t from = have, start = 0;
		have += (size_t)got;
		for (size_t i = from; i < have; i++) {
			if (buf[i] != '\n')
				continue;
			if (!skipping)
				add_line(kw, buf + start, i - start, ts, tid);
			skipping = 0;
			start = i + 1;
		}
		memmove(buf, buf + start, have - start);
		have -= start;
		at += start;
		if (have == sizeof(buf)) {
			if (!skipping)
				skip_from = at;
			skipping = 1;
			at += have;
			have = 0;
		}
	}
	/* up to the last whole line; a long line not yet ended is looked
	 * at again next time */
	done = skipping ? skip_from : at;
out:
	syscall(SYS_close, fd);
	errno = saved;
}
