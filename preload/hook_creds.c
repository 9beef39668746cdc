/* SPDX-License-Identifier: MIT */
/*
 * Keeping kprof's writer thread in step with the app's per-thread security
 * state, and kprof's own fds out of the app's way.
 *
 * glibc applies setuid/setgid & co. to every thread of the process (a
 * signal broadcast) and aborts the process if the call succeeds in one
 * thread and fails in another. Capabilities, keep-caps and securebits are
 * per-thread, so a program that sets them on its own thread before
 * dropping privileges (setpriv, daemons using libcap-ng) would leave the
 * writer thread without them: its setresgid fails and glibc aborts. So
 * capset() and the per-thread prctl() options are repeated on the writer
 * thread after they succeed on the caller's.
 *
 * Entering a user namespace (unshare, setns) needs a single-threaded
 * process, as does joining a mount namespace, and kprof's writer thread
 * made every process two-threaded: `unshare --user` failed with EINVAL.
 * When the caller is the app's only thread, the writer stops for the call
 * (the events wait in their rings) and starts again after it.
 *
 * A sandbox that closes every fd it does not know and then chroots
 * would leave kprof without its trace: chroot() reopens it first
 * (writer.c, kp_writer_keep_open).
 *
 * libunwind opens a pipe (to probe memory) on first use and again if it
 * finds it closed. pipe()/pipe2() called from inside kprof move both ends
 * above the app's fds, like the trace fd; the app's own calls are untouched.
 */
#include "state.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

struct mirror {
	int is_prctl;
	int option;
	unsigned long a[4];
	const void *hdr, *data;
};

static void run_mirror(void *arg)
{
	const struct mirror *m = arg;
	if (m->is_prctl)
		syscall(SYS_prctl, m->option, m->a[0], m->a[1], m->a[2],
			m->a[3]);
	else
		syscall(SYS_capset, m->hdr, m->data);
}

static int per_thread_option(int option)
{
	switch (option) {
	case PR_SET_KEEPCAPS:
	case PR_SET_SECUREBITS:
	case PR_CAPBSET_DROP:
	case PR_CAP_AMBIENT:
	case PR_SET_NO_NEW_PRIVS:
		return 1;
	default:
		return 0;
	}
}

KP_EXPORT int prctl(int option, ...)
{
	va_list ap;
	unsigned long a[4];
	va_start(ap, option);
	for (int i = 0; i < 4; i++)
		a[i] = va_arg(ap, unsigned long);
	va_end(ap);
	kp_real_resolve();
	int rc = kp_real.prctl(option, a[0], a[1], a[2], a[3]);
	if (rc == 0 && option == PR_SET_NAME && a[0])
		kp_thread_named(pthread_self(), (const char *)a[0]);
	if (rc >= 0 && per_thread_option(option) && !kp_tls.busy &&
	    !(option == PR_CAP_AMBIENT && a[0] == PR_CAP_AMBIENT_IS_SET)) {
		int saved = errno;
		struct mirror m = { .is_prctl = 1, .option = option };
		for (int i = 0; i < 4; i++)
			m.a[i] = a[i];
		kp_writer_call(run_mirror, &m);
		errno = saved;
	}
	return rc;
}

/* The header's pid is 0 or the caller's tid: the writer applies the same
 * sets to itself, so it passes pid 0. (glibc declares capset in no public
 * header; the types are the kernel's opaque header and data structs.) */
int capset(void *hdr, const void *data);
KP_EXPORT int capset(void *hdr, const void *data)
{
	kp_real_resolve();
	int rc = kp_real.capset(hdr, data);
	if (rc == 0 && !kp_tls.busy) {
		int saved = errno;
		struct {
			uint32_t version;
			int pid;
		} h;
		__builtin_memcpy(&h, hdr, sizeof(h));
		if (h.pid == 0 || h.pid == (int)kp_gettid()) {
			h.pid = 0;
			struct mirror m = { .hdr = &h, .data = data };
			kp_writer_call(run_mirror, &m);
		}
		errno = saved;
	}
	return rc;
}

static void move_high(int fds[2])
{
	for (int i = 0; i < 2; i++)
		fds[i] = kp_high_fd(fds[i]);
}

KP_EXPORT int pipe(int fds[2])
{
	kp_real_resolve();
	uint64_t t0 = kp_ticks();
	int rc = kp_real.pipe(fds);
	if (rc == 0 && kp_tls.busy) {
		int saved = errno;
		move_high(fds);
		errno = saved;
	}
	kp_io_pipe(fds, rc, 0, t0, __builtin_return_address(0));
	return rc;
}

KP_EXPORT int pipe2(int fds[2], int flags)
{
	kp_real_resolve();
	uint64_t t0 = kp_ticks();
	int rc = kp_real.pipe2(fds, flags);
	if (rc == 0 && kp_tls.busy) {
		int saved = errno;
		move_high(fds);
		errno = saved;
	}
	kp_io_pipe(fds, rc, flags, t0, __builtin_return_address(0));
	return rc;
}

/* Flags of unshare that fail in a process of more than one thread. */
#define KP_ONE_THREAD_NS \
	(CLONE_NEWUSER | CLONE_THREAD | CLONE_SIGHAND | CLONE_VM)

/* After the call kp_writer_step_out parked the writer for (if it did):
 * start it again, the call's rc and errno kept. */
static int step_back(int parked, int rc)
{
	if (parked) {
		int saved = errno;
		kp_writer_unpark();
		errno = saved;
	}
	return rc;
}

KP_EXPORT int unshare(int flags)
{
	kp_real_resolve();
	int parked = (flags & KP_ONE_THREAD_NS) && kp_writer_step_out();
	return step_back(parked, kp_real.unshare(flags));
}

/* The trace's fd kept open across it (kp_writer_keep_open). */
KP_EXPORT int chroot(const char *path)
{
	kp_writer_keep_open();
	return (int)syscall(SYS_chroot, path);
}

/* nstype 0 lets the fd say which namespace: it may be a user or mount
 * one. */
KP_EXPORT int setns(int fd, int nstype)
{
	kp_real_resolve();
	int parked = (nstype == 0 || (nstype & (CLONE_NEWUSER | CLONE_NEWNS))) &&
		     kp_writer_step_out();
	return step_back(parked, kp_real.setns(fd, nstype));
}
