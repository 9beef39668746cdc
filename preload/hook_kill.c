/* SPDX-License-Identifier: MIT */
/*
 * Signals the program sends to other processes: kill, killpg, sigqueue,
 * tgkill and pidfd_send_signal, each recorded as a KILL event (the
 * target, the signal, the caller's stack) when it succeeded. A process
 * killed by SIGKILL, or by a signal kprof does not take
 * (KOTOBA_PROFILE_SIGNALS off), leaves a trace without its END; with its
 * killer traced too, kprof-analyze says who killed it, with what and
 * when (a pool that SIGKILLs a slow worker, timeout(1), a browser that
 * kills a child slow to go). Not recorded: a signal 0 (a probe), a call
 * that failed, a signal to this process itself (its trace's END says
 * how it ended), raw system calls.
 *
 * A SIGKILL to the caller's own process group kills the caller too, at
 * once (timeout -s KILL ends so): the KILL is recorded and the trace
 * ended (killed by SIGKILL) before the call, or both would be lost with
 * the events still in the rings.
 *
 * A signal to a process group (kill(0), kill(-pgid), killpg) names no
 * process: the analyzer finds its victims by the group each process was
 * in then, from its trace's header (the group at start) and the PGID
 * records of setpgid, setpgrp and setsid calls that succeeded, made by
 * the process itself or by its parent (a shell puts a job's processes in
 * their group from both sides).
 */
#include "state.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The real function, or fail with ENOSYS (none: not in this libc). */
#define REAL_OR_FAIL(name)                                                 \
	do {                                                                \
		kp_real_resolve();                                          \
		if (!kp_real.name) {                                        \
			errno = ENOSYS;                                     \
			return -1;                                          \
		}                                                           \
	} while (0)

/* Record a KILL: how, the target (pid, or minus a group's id), sig.
 * Keeps errno. */
static void sent(int how, int64_t target, int sig)
{
	if (sig == 0 || target == (int64_t)kp.pid || !kp_enter())
		return; /* (itself: its END says it) */
	int saved = errno;
	int64_t v[KP_KILL_NV] = { [KP_KILL_TARGET] = target,
				  [KP_KILL_SIG] = sig };
	kp_ring_push_ext(0, KP_REC_KILL, (uint8_t)how, kp_stack_capture(), v,
			 NULL, 0);
	kp_busy_leave();
	errno = saved;
}

/* The process group kill's pid argument names: -pgid (0 = the caller's
 * own group, -1 = every process it may signal, recorded as -1). */
static int64_t group_of(pid_t pid)
{
	return pid == 0 ? -(int64_t)getpgrp() : (int64_t)pid;
}

/* A SIGKILL to group (minus its id): if it is the caller's own, record
 * it and end the trace now (see the top). @return 1 if so. */
static int own_group_killed(int how, int64_t group, int sig)
{
	if (sig != SIGKILL || group != -(int64_t)getpgrp())
		return 0;
	sent(how, group, sig);
	if (kp_ready() && !kp_tls.busy && !kp_tls.writer) {
		int saved = errno;
		kp_finish_signal(SIGKILL);
		errno = saved;
	}
	return 1;
}

KP_EXPORT int kill(pid_t pid, int sig)
{
	REAL_OR_FAIL(kill);
	if (own_group_killed(KP_KILL_KILL, group_of(pid), sig))
		return kp_real.kill(pid, sig);
	int rc = kp_real.kill(pid, sig);
	if (rc == 0)
		sent(KP_KILL_KILL, group_of(pid), sig);
	return rc;
}

KP_EXPORT int killpg(pid_t pgrp, int sig)
{
	REAL_OR_FAIL(killpg);
	int64_t group = pgrp == 0 ? -(int64_t)getpgrp() : -(int64_t)pgrp;
	if (own_group_killed(KP_KILL_KILLPG, group, sig))
		return kp_real.killpg(pgrp, sig);
	int rc = kp_real.killpg(pgrp, sig);
	if (rc == 0)
		sent(KP_KILL_KILLPG, group, sig);
	return rc;
}

KP_EXPORT int sigqueue(pid_t pid, int sig, const union sigval value)
{
	REAL_OR_FAIL(sigqueue);
	int rc = kp_real.sigqueue(pid, sig, value);
	if (rc == 0)
		sent(KP_KILL_SIGQUEUE, group_of(pid), sig);
	return rc;
}

KP_EXPORT int tgkill(pid_t tgid, pid_t tid, int sig)
{
	REAL_OR_FAIL(tgkill);
	int rc = kp_real.tgkill(tgid, tid, sig);
	if (rc == 0)
		sent(KP_KILL_TGKILL, tgid, sig);
	return rc;
}

/* The pid a pidfd refers to (its fdinfo's "Pid:"), 0 if not known. */
static int64_t pidfd_pid(int pidfd)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pidfd);
	if (kp_read_small(path, buf, sizeof(buf)) < 0)
		return 0;
	const char *p = strstr(buf, "\nPid:");
	return p ? strtoll(p + 5, NULL, 10) : 0;
}

int pidfd_send_signal(int pidfd, int sig, siginfo_t *info,
		      unsigned int flags); /* <sys/pidfd.h>, glibc 2.36 */
KP_EXPORT int pidfd_send_signal(int pidfd, int sig, siginfo_t *info,
				unsigned int flags)
{
	REAL_OR_FAIL(pidfd_send_signal);
	int rc = kp_real.pidfd_send_signal(pidfd, sig, info, flags);
	if (rc == 0 && sig != 0 && kp_enter()) {
		int saved = errno;
		int64_t pid = pidfd_pid(pidfd);
		kp_busy_leave();
		errno = saved;
		if (pid > 0)
			sent(KP_KILL_PIDFD, pid, sig);
	}
	return rc;
}

/* Record a PGID: process pid (this one: 0) moved to group pgid (0: its
 * own). The pid is read from the kernel: a vfork child's call, recorded
 * in its parent's trace, is the child's. Keeps errno. */
static void moved(int how, pid_t pid, pid_t pgid)
{
	if (!kp_enter())
		return;
	int saved = errno;
	int64_t who = pid ? (int64_t)pid : (int64_t)syscall(SYS_getpid);
	int64_t v[KP_PGID_NV] = { [KP_PGID_PID] = who,
				  [KP_PGID_GROUP] = pgid ? (int64_t)pgid : who };
	kp_ring_push_ext(0, KP_REC_PGID, (uint8_t)how, 0, v, NULL, 0);
	kp_busy_leave();
	errno = saved;
}

KP_EXPORT int setpgid(pid_t pid, pid_t pgid)
{
	REAL_OR_FAIL(setpgid);
	int rc = kp_real.setpgid(pid, pgid);
	if (rc == 0)
		moved(KP_PGID_SETPGID, pid, pgid);
	return rc;
}

KP_EXPORT int setpgrp(void)
{
	REAL_OR_FAIL(setpgrp);
	int rc = kp_real.setpgrp();
	if (rc == 0)
		moved(KP_PGID_SETPGID, 0, 0);
	return rc;
}

KP_EXPORT pid_t setsid(void)
{
	REAL_OR_FAIL(setsid);
	pid_t sid = kp_real.setsid();
	if (sid > 0)
		moved(KP_PGID_SETSID, 0, 0);
	return sid;
}
