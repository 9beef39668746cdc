/* SPDX-License-Identifier: MIT */
/*
 * Where fds come from and where they go, for the I/O profiler: the open
 * family (with the LFS and _FORTIFY_SOURCE names), close, close_range, the
 * dup family, fcntl(F_DUPFD*, F_SETFL), socket, accept, accept4,
 * memfd_create (pipe and pipe2 are in hook_creds.c and call
 * kp_io_pipe()). Each success fills the fd table (fdtab.c) and records
 * FD_OPEN/FD_CLOSE with the call's duration; a failed open is recorded
 * too (fd -1, its errno, the path asked), so ENOENT storms show. Also
 * fcntl's record locks, as lock waits (KP_IO_OP_LOCK).
 */
#include "iohook.h"

#include <fcntl.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Record an fd that appeared (fd < 0: the call failed with errno; its
 * path, if relative, is of dirfd's directory). */
static void opened_at(int fd, uint8_t how, int dirfd, const char *path,
		      int flags, uint64_t t0, int src)
{
	int saved = errno;
	kp_tls.busy = 1;
	kp_fd_opened(fd, how, dirfd, path, flags, t0, fd < 0 ? saved : 0, src,
		     kp_io_stack());
	kp_busy_leave();
	errno = saved;
}

static void opened(int fd, uint8_t how, const char *path, int flags,
		   uint64_t t0, int src)
{
	opened_at(fd, how, AT_FDCWD, path, flags, t0, src);
}

static int needs_mode(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

static int do_open(const char *path, int flags, mode_t mode)
{
	IO_REAL(open);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.open(path, flags, mode);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.open(path, flags, mode);
	opened(fd, KP_FDH_OPEN, path, flags, t0, -1);
	return fd;
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	IO_REAL(openat);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.openat(dirfd, path, flags, mode);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.openat(dirfd, path, flags, mode);
	opened_at(fd, KP_FDH_OPENAT, dirfd, path, flags, t0, -1);
	return fd;
}

#define MODE_ARG(flags, mode)                                 \
	do {                                                  \
		if (needs_mode(flags)) {                      \
			va_list ap;                           \
			va_start(ap, flags);                  \
			mode = (mode_t)va_arg(ap, int);       \
			va_end(ap);                           \
		}                                             \
	} while (0)

KP_EXPORT int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	MODE_ARG(flags, mode);
	return do_open(path, flags, mode);
}

KP_EXPORT int open64(const char *path, int flags, ...)
{
	mode_t mode = 0;
	MODE_ARG(flags, mode);
	return do_open(path, flags, mode);
}

KP_EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	MODE_ARG(flags, mode);
	return do_openat(dirfd, path, flags, mode);
}

KP_EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	MODE_ARG(flags, mode);
	return do_openat(dirfd, path, flags, mode);
}

int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* The _FORTIFY_SOURCE forms: no mode, the real one checks the flags. */
static int do_open_2(const char *path, int flags)
{
	IO_REAL(open_2);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.open_2(path, flags);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.open_2(path, flags);
	opened(fd, KP_FDH_OPEN, path, flags, t0, -1);
	return fd;
}

KP_EXPORT int __open_2(const char *path, int flags)
{
	return do_open_2(path, flags);
}

KP_EXPORT int __open64_2(const char *path, int flags)
{
	return do_open_2(path, flags);
}

static int do_openat_2(int dirfd, const char *path, int flags)
{
	IO_REAL(openat_2);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.openat_2(dirfd, path, flags);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.openat_2(dirfd, path, flags);
	opened_at(fd, KP_FDH_OPENAT, dirfd, path, flags, t0, -1);
	return fd;
}

KP_EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return do_openat_2(dirfd, path, flags);
}

KP_EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	return do_openat_2(dirfd, path, flags);
}

static int do_creat(const char *path, mode_t mode)
{
	IO_REAL(creat);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.creat(path, mode);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.creat(path, mode);
	opened(fd, KP_FDH_OPEN, path, O_CREAT | O_WRONLY | O_TRUNC, t0, -1);
	return fd;
}

KP_EXPORT int creat(const char *path, mode_t mode)
{
	return do_creat(path, mode);
}

KP_EXPORT int creat64(const char *path, mode_t mode)
{
	return do_creat(path, mode);
}

/* ---- close ------------------------------------------------------------------ */

KP_EXPORT int close(int fd)
{
	IO_REAL(close);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t)) {
		int rc = kp_io_real.close(fd);
		if (rc == 0 && !t->writer && !t->busy)
			kp_fd_forget(fd); /* I/O recording off, or early */
		return rc;
	}
	uint64_t t0 = kp_ticks();
	int rc = kp_io_real.close(fd);
	int saved = errno;
	t->busy = 1;
	kp_fd_closed(fd, KP_FDCH_CLOSE, t0, rc ? saved : 0, kp_io_stack());
	kp_busy_leave();
	errno = saved;
	return rc;
}

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* One FD_CLOSE per fd of the range that kprof knew (others were never
 * used for I/O: nothing refers to them). */
KP_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
	IO_REAL_OR(close_range, -1);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.close_range(first, last, flags);
	uint64_t t0 = kp_ticks();
	int rc = kp_io_real.close_range(first, last, flags);
	if (rc == 0 && !(flags & CLOSE_RANGE_CLOEXEC)) {
		int saved = errno;
		t->busy = 1;
		uint32_t stack = kp_io_stack();
		unsigned hi = last < KP_FDTAB_MAX - 1 ? last : KP_FDTAB_MAX - 1;
		for (unsigned fd = first; fd <= hi; fd++)
			if (kp_fd_known(&kp_fdtab[fd]))
				kp_fd_closed((int)fd, KP_FDCH_CLOSE_RANGE, t0,
					     0, stack);
		kp_busy_leave();
		errno = saved;
	}
	return rc;
}

/* ---- dup ------------------------------------------------------------------- */

/* dup2/dup3 onto an open fd close it silently: its FD_OPEN replaces it. */
KP_EXPORT int dup(int old)
{
	IO_REAL(dup);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.dup(old);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.dup(old);
	opened(fd, KP_FDH_DUP, "", 0, t0, old);
	return fd;
}

KP_EXPORT int dup2(int old, int new)
{
	IO_REAL(dup2);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.dup2(old, new);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.dup2(old, new);
	opened(fd, KP_FDH_DUP, "", 0, t0, old);
	return fd;
}

KP_EXPORT int dup3(int old, int new, int fl)
{
	IO_REAL_OR(dup3, -1);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.dup3(old, new, fl);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.dup3(old, new, fl);
	opened(fd, KP_FDH_DUP, "", 0, t0, old);
	return fd;
}

/*
 * POSIX record locks (SQLite's unix VFS locks its files so): a blocking
 * one (F_SETLKW, F_OFD_SETLKW) is a lock wait, timed and recorded always;
 * a non-blocking one (F_SETLK, F_OFD_SETLK) is recorded only when
 * refused (EAGAIN, EACCES: the lock is held elsewhere), with duration 0
 * (it did not wait; the caller's retry sleeps are the wait), so the many
 * granted ones of a database cost no event and no clock read.
 * req = the lock type, off = l_start.
 */
static void lock_record(int fd, const struct flock *fl, int rc, uint64_t t0)
{
	int ok = fl && (rc == 0 || errno != EFAULT);
	kp_io_record(KP_IO_OP_LOCK, fd, ok ? (uint64_t)fl->l_type : 0, rc,
		     ok ? (int64_t)fl->l_start : KP_IO_NO_OFF, t0);
}

/* fcntl: the argument is an int or a pointer; glibc reads it as a
 * pointer-sized value and so does this. */
static int do_fcntl(int fd, int cmd, void *arg)
{
	IO_REAL(fcntl);
	struct kp_tls *t = &kp_tls;
	if (cmd == F_SETLK || cmd == F_OFD_SETLK) {
		int rc = kp_io_real.fcntl(fd, cmd, arg);
		if (KP_UNLIKELY(rc < 0) && (errno == EAGAIN || errno == EACCES) &&
		    kp_io_want(t))
			lock_record(fd, arg, rc, kp_ticks());
		return rc;
	}
	if ((cmd == F_SETLKW || cmd == F_OFD_SETLKW) && kp_io_want(t)) {
		uint64_t t0 = kp_ticks();
		int rc = kp_io_real.fcntl(fd, cmd, arg);
		lock_record(fd, arg, rc, t0);
		return rc;
	}
	int dupfd = cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC;
	if (!(dupfd || cmd == F_SETFL) || !kp_io_want(t))
		return kp_io_real.fcntl(fd, cmd, arg);
	uint64_t t0 = kp_ticks();
	int rc = kp_io_real.fcntl(fd, cmd, arg);
	if (dupfd) {
		opened(rc, KP_FDH_DUP, "", 0, t0, fd);
	} else if (rc == 0 && fd >= 0 && fd < KP_FDTAB_MAX) {
		/* O_APPEND may have changed */
		kp_fdtab[fd].append = ((long)arg & O_APPEND) != 0;
	}
	return rc;
}

KP_EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return do_fcntl(fd, cmd, arg);
}

KP_EXPORT int fcntl64(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	return do_fcntl(fd, cmd, arg);
}

/* ---- sockets, memfd, pipes ------------------------------------------------ */

KP_EXPORT int socket(int domain, int type, int proto)
{
	IO_REAL(socket);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.socket(domain, type, proto);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.socket(domain, type, proto);
	opened(fd, KP_FDH_SOCKET, "", type, t0, -1);
	return fd;
}

KP_EXPORT int accept(int s, struct sockaddr *addr, socklen_t *len)
{
	IO_REAL(accept);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.accept(s, addr, len);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.accept(s, addr, len);
	opened(fd, KP_FDH_ACCEPT, "", 0, t0, s);
	return fd;
}

KP_EXPORT int accept4(int s, struct sockaddr *addr, socklen_t *len, int fl)
{
	IO_REAL_OR(accept4, -1);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.accept4(s, addr, len, fl);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.accept4(s, addr, len, fl);
	opened(fd, KP_FDH_ACCEPT, "", fl, t0, s);
	return fd;
}

KP_EXPORT int memfd_create(const char *name, unsigned fl)
{
	IO_REAL_OR(memfd_create, -1);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.memfd_create(name, fl);
	uint64_t t0 = kp_ticks();
	int fd = kp_io_real.memfd_create(name, fl);
	opened(fd, KP_FDH_MEMFD, name, (int)fl, t0, -1);
	return fd;
}

void kp_io_pipe(const int fds[2], int rc, int flags, uint64_t t0,
		const void *caller)
{
	if (KP_UNLIKELY(atomic_load_explicit(&kp.run, memory_order_relaxed) ==
			KP_ST_UNINIT) &&
	    !kp_init_slow(caller))
		return; /* the hook's caller decides (kp_ready) */
	if (!kp_io_want(&kp_tls))
		return;
	if (rc != 0) {
		opened(-1, KP_FDH_PIPE, "", flags, t0, -1);
		return;
	}
	opened(fds[0], KP_FDH_PIPE, "", flags, t0, -1);
	opened(fds[1], KP_FDH_PIPE, "", flags, t0, fds[0]);
}
