/* SPDX-License-Identifier: MIT */
/*
 * The syscall layer of the I/O profiler: read, write and their p/v/v2
 * forms, lseek, the sync calls, the size calls, copy_file_range and
 * sendfile, their LFS "64" names and the _FORTIFY_SOURCE __*_chk entry
 * points (which glibc does not route through the plain names).
 *
 * Each call of the app is timed with kp_ticks() around the real call and
 * recorded after it (kp_io_record: op, fd, bytes asked, bytes returned,
 * offset, duration, errno, stack). The real call's return value is
 * returned as is and errno is left as it set it. Calls kprof makes itself
 * (busy) and the writer thread's (which uses raw syscalls anyway) pass
 * straight through, so kprof's own I/O never shows as the app's.
 */
#include "iohook.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <limits.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <unistd.h>

/* glibc declares the fortify entry points only under _FORTIFY_SOURCE */
ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
		       struct sockaddr *addr, socklen_t *alen);

struct kp_io_real kp_io_real;
_Atomic unsigned kp_io_direct;

/* Is fn glibc's own definition? (in the object that defines
 * gnu_get_libc_version, which nothing interposes). _dl_find_object where
 * glibc has it (2.35): a lookup in a sorted table, where dladdr scans
 * libc's symbols (~0.3 ms of start-up for the six). */
static int in_libc(void *fn)
{
	if (!fn)
		return 0;
#ifdef DLFO_STRUCT_HAS_EH_DBASE
	struct dl_find_object a, b;
	return _dl_find_object(fn, &a) == 0 &&
	       _dl_find_object((void *)gnu_get_libc_version, &b) == 0 &&
	       a.dlfo_link_map == b.dlfo_link_map;
#else
	Dl_info a, b;
	return dladdr(fn, &a) && dladdr((void *)gnu_get_libc_version, &b) &&
	       a.dli_fbase == b.dli_fbase;
#endif
}

/* The direct path's functions whose next definition is glibc's. */
static void direct_fill(const struct kp_io_real *r)
{
#if defined(__x86_64__)
	unsigned bits = 0;
	if (in_libc((void *)r->read))
		bits |= KP_IO_D_READ;
	if (in_libc((void *)r->write))
		bits |= KP_IO_D_WRITE;
	if (in_libc((void *)r->pread))
		bits |= KP_IO_D_PREAD;
	if (in_libc((void *)r->pwrite))
		bits |= KP_IO_D_PWRITE;
	if (in_libc((void *)r->readv))
		bits |= KP_IO_D_READV;
	if (in_libc((void *)r->writev))
		bits |= KP_IO_D_WRITEV;
	atomic_fetch_or(&kp_io_direct, bits);
#else
	(void)r;
#endif
}

void kp_io_direct_off(void)
{
	atomic_fetch_or(&kp_io_direct, KP_IO_D_NEVER);
}

/* A thread may be cancelled: glibc's calls from now on (the switch to
 * asynchronous cancellation is what lets a cancel reach a thread blocked
 * in read). Set before the real call, so a thread cancelling itself sees
 * it at its next call. */
KP_EXPORT int pthread_cancel(pthread_t th)
{
	IO_REAL(pthread_cancel);
	kp_io_direct_off();
	if (KP_UNLIKELY(!kp_io_real.pthread_cancel))
		return ENOSYS;
	return kp_io_real.pthread_cancel(th);
}

#define NEXT(field, name) r.field = dlsym(RTLD_NEXT, name)

/* Called by kp_real_resolve() while it resolves (kp_resolving set, so
 * what dlsym allocates comes from the boot pool, as for the others). */
void kp_io_real_fill(void)
{
	struct kp_io_real r;
	NEXT(read, "read");
	NEXT(write, "write");
	NEXT(pread, "pread64");
	NEXT(pwrite, "pwrite64");
	NEXT(readv, "readv");
	NEXT(writev, "writev");
	NEXT(preadv, "preadv64");
	NEXT(pwritev, "pwritev64");
	NEXT(preadv2, "preadv64v2");
	NEXT(pwritev2, "pwritev64v2");
	NEXT(lseek, "lseek64");
	NEXT(fsync, "fsync");
	NEXT(fdatasync, "fdatasync");
	NEXT(sync_file_range, "sync_file_range");
	NEXT(msync, "msync");
	NEXT(ftruncate, "ftruncate64");
	NEXT(fallocate, "fallocate64");
	NEXT(posix_fallocate, "posix_fallocate64");
	NEXT(copy_file_range, "copy_file_range");
	NEXT(sendfile, "sendfile64");
	NEXT(send, "send");
	NEXT(sendto, "sendto");
	NEXT(sendmsg, "sendmsg");
	NEXT(recv, "recv");
	NEXT(recvfrom, "recvfrom");
	NEXT(recvmsg, "recvmsg");
	NEXT(recv_chk, "__recv_chk");
	NEXT(recvfrom_chk, "__recvfrom_chk");
	NEXT(read_chk, "__read_chk");
	NEXT(pread_chk, "__pread64_chk");
	NEXT(open, "open64");
	NEXT(openat, "openat64");
	NEXT(creat, "creat64");
	NEXT(open_2, "__open64_2");
	NEXT(openat_2, "__openat64_2");
	NEXT(close, "close");
	NEXT(close_range, "close_range");
	NEXT(dup, "dup");
	NEXT(dup2, "dup2");
	NEXT(dup3, "dup3");
	NEXT(fcntl, "fcntl64");
	if (!r.fcntl)
		NEXT(fcntl, "fcntl");
	NEXT(socket, "socket");
	NEXT(accept, "accept");
	NEXT(accept4, "accept4");
	NEXT(memfd_create, "memfd_create");
	NEXT(fopen, "fopen64");
	NEXT(fdopen, "fdopen");
	NEXT(freopen, "freopen64");
	NEXT(fclose, "fclose");
	NEXT(fflush, "fflush");
	NEXT(fread, "fread");
	NEXT(fwrite, "fwrite");
	NEXT(fgets, "fgets");
	NEXT(fputs, "fputs");
	NEXT(getline, "getline");
	NEXT(getdelim, "getdelim");
	NEXT(vfprintf, "vfprintf");
	NEXT(vfprintf_chk, "__vfprintf_chk");
	NEXT(fread_chk, "__fread_chk");
	NEXT(fgets_chk, "__fgets_chk");
	NEXT(pthread_cancel, "pthread_cancel");
	direct_fill(&r);
	kp_io_real = r;
}

void kp_io_resolve(void)
{
	kp_real_resolve();
}

/* Time `call` (of type T) and record it as op on fd. */
#define TIMED(T, op, fd, req, off, call)                                  \
	do {                                                              \
		struct kp_tls *t_ = &kp_tls;                              \
		if (!kp_io_want(t_))                                      \
			return call;                                      \
		uint64_t t0_ = kp_ticks();                                \
		T r_ = call;                                              \
		kp_io_record(op, fd, (uint64_t)(req), (int64_t)r_, off, t0_); \
		return r_;                                                \
	} while (0)

/* The call a recorded call makes: the direct system call nr (see
 * kp_io_direct) where the caller may, else `call`. */
#define DIRECT(t, bit, nr, a, b, c, d, call)                              \
	(kp_io_go_direct(t, bit) ?                                        \
		 (ssize_t)kp_io_syscall(nr, (long)(a), (long)(b), (long)(c), \
					(long)(d)) :                      \
		 (call))

/* TIMED with the direct path of function bit (system call nr). */
#define TIMED_D(op, fd, req, off, bit, nr, a, b, c, d, call)              \
	do {                                                              \
		struct kp_tls *t_ = &kp_tls;                              \
		if (!kp_io_want(t_))                                      \
			return call;                                      \
		uint64_t t0_ = kp_ticks();                                \
		ssize_t r_ = DIRECT(t_, bit, nr, a, b, c, d, call);       \
		kp_io_record(op, fd, (uint64_t)(req), (int64_t)r_, off, t0_); \
		return r_;                                                \
	} while (0)

#define TRACK KP_IO_OFF_TRACK
#define NOOFF KP_IO_NO_OFF

/* ---- read and write ------------------------------------------------------ */

/* kprof's own read/write through these (libunwind probes memory with
 * a pipe): not the app's, but in /proc/self/io, so counted apart. */
static inline void self_bytes(const struct kp_tls *t, _Atomic uint64_t *c,
			      ssize_t r)
{
	if ((t->busy || t->writer) && r > 0)
		atomic_fetch_add_explicit(c, (uint64_t)r,
					  memory_order_relaxed);
}

KP_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
	IO_REAL(read);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t)) {
		ssize_t r = kp_io_real.read(fd, buf, n);
		self_bytes(t, &kp_self_rchar, r);
		return r;
	}
	uint64_t t0 = kp_ticks();
	ssize_t r = DIRECT(t, KP_IO_D_READ, SYS_read, fd, buf, n, 0,
			   kp_io_real.read(fd, buf, n));
	kp_io_record(KP_IO_OP_READ, fd, n, r, TRACK, t0);
	return r;
}

KP_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
	IO_REAL(read_chk);
	TIMED(ssize_t, KP_IO_OP_READ, fd, n, TRACK,
	      kp_io_real.read_chk(fd, buf, n, buflen));
}

KP_EXPORT ssize_t write(int fd, const void *buf, size_t n)
{
	IO_REAL(write);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t)) {
		ssize_t r = kp_io_real.write(fd, buf, n);
		self_bytes(t, &kp_self_wchar, r);
		return r;
	}
	uint64_t t0 = kp_ticks();
	ssize_t r = DIRECT(t, KP_IO_D_WRITE, SYS_write, fd, buf, n, 0,
			   kp_io_real.write(fd, buf, n));
	kp_io_record(KP_IO_OP_WRITE, fd, n, r, TRACK, t0);
	return r;
}

#define PREAD_BODY(fd, buf, n, off)                                   \
	IO_REAL(pread);                                               \
	TIMED_D(KP_IO_OP_PREAD, fd, n, off, KP_IO_D_PREAD,            \
		SYS_pread64, fd, buf, n, off,                         \
		kp_io_real.pread(fd, buf, n, off))

KP_EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	PREAD_BODY(fd, buf, n, off);
}

KP_EXPORT ssize_t pread64(int fd, void *buf, size_t n, off_t off)
{
	PREAD_BODY(fd, buf, n, off);
}

#define PREAD_CHK_BODY(fd, buf, n, off, buflen)                       \
	IO_REAL(pread_chk);                                           \
	TIMED(ssize_t, KP_IO_OP_PREAD, fd, n, off,                    \
	      kp_io_real.pread_chk(fd, buf, n, off, buflen))

KP_EXPORT ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off,
			      size_t buflen)
{
	PREAD_CHK_BODY(fd, buf, n, off, buflen);
}

KP_EXPORT ssize_t __pread64_chk(int fd, void *buf, size_t n, off_t off,
				size_t buflen)
{
	PREAD_CHK_BODY(fd, buf, n, off, buflen);
}

#define PWRITE_BODY(fd, buf, n, off)                                  \
	IO_REAL(pwrite);                                              \
	TIMED_D(KP_IO_OP_PWRITE, fd, n, off, KP_IO_D_PWRITE,          \
		SYS_pwrite64, fd, buf, n, off,                        \
		kp_io_real.pwrite(fd, buf, n, off))

KP_EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off)
{
	PWRITE_BODY(fd, buf, n, off);
}

KP_EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off)
{
	PWRITE_BODY(fd, buf, n, off);
}

/* ---- vectors ---------------------------------------------------------------- */

/* Bytes asked by an iovec; read after the call, and only if the call did
 * not reject it (EFAULT/EINVAL: it may not be readable). */
static uint64_t iov_bytes(const struct iovec *iov, int cnt, ssize_t r)
{
	if (r < 0 && (errno == EFAULT || errno == EINVAL))
		return 0;
	if (!iov || cnt <= 0 || cnt > IOV_MAX)
		return 0;
	uint64_t s = 0;
	for (int i = 0; i < cnt; i++)
		s += iov[i].iov_len;
	return s;
}

#define TIMED_V(op, fd, iov, cnt, off, call)                              \
	TIMED_VD(op, fd, iov, cnt, off, 0, 0, call)

/* TIMED_V with the direct path of function bit (0: none), system call nr
 * (fd, iov, cnt). */
#define TIMED_VD(op, fd, iov, cnt, off, bit, nr, call)                    \
	do {                                                              \
		struct kp_tls *t_ = &kp_tls;                              \
		if (!kp_io_want(t_))                                      \
			return call;                                      \
		uint64_t t0_ = kp_ticks();                                \
		ssize_t r_ = DIRECT(t_, bit, nr, fd, iov, cnt, 0, call);  \
		kp_io_record(op, fd, iov_bytes(iov, cnt, r_), r_, off, t0_); \
		return r_;                                                \
	} while (0)

KP_EXPORT ssize_t readv(int fd, const struct iovec *iov, int cnt)
{
	IO_REAL(readv);
	TIMED_VD(KP_IO_OP_READV, fd, iov, cnt, TRACK, KP_IO_D_READV,
		 SYS_readv, kp_io_real.readv(fd, iov, cnt));
}

KP_EXPORT ssize_t writev(int fd, const struct iovec *iov, int cnt)
{
	IO_REAL(writev);
	TIMED_VD(KP_IO_OP_WRITEV, fd, iov, cnt, TRACK, KP_IO_D_WRITEV,
		 SYS_writev, kp_io_real.writev(fd, iov, cnt));
}

#define PREADV_BODY(fd, iov, cnt, off)                                \
	IO_REAL(preadv);                                              \
	TIMED_V(KP_IO_OP_PREADV, fd, iov, cnt, off,                   \
		kp_io_real.preadv(fd, iov, cnt, off))
#define PWRITEV_BODY(fd, iov, cnt, off)                               \
	IO_REAL(pwritev);                                             \
	TIMED_V(KP_IO_OP_PWRITEV, fd, iov, cnt, off,                  \
		kp_io_real.pwritev(fd, iov, cnt, off))

KP_EXPORT ssize_t preadv(int fd, const struct iovec *iov, int cnt, off_t off)
{
	PREADV_BODY(fd, iov, cnt, off);
}

KP_EXPORT ssize_t preadv64(int fd, const struct iovec *iov, int cnt,
			   off_t off)
{
	PREADV_BODY(fd, iov, cnt, off);
}

KP_EXPORT ssize_t pwritev(int fd, const struct iovec *iov, int cnt,
			  off_t off)
{
	PWRITEV_BODY(fd, iov, cnt, off);
}

KP_EXPORT ssize_t pwritev64(int fd, const struct iovec *iov, int cnt,
			    off_t off)
{
	PWRITEV_BODY(fd, iov, cnt, off);
}

/* offset -1: the current offset (tracked), like readv/writev */
#define PREADV2_BODY(fd, iov, cnt, off, fl)                           \
	IO_REAL_OR(preadv2, -1);                                             \
	TIMED_V(off == -1 ? KP_IO_OP_READV : KP_IO_OP_PREADV, fd, iov, \
		cnt, off == -1 ? TRACK : off,                         \
		kp_io_real.preadv2(fd, iov, cnt, off, fl))
#define PWRITEV2_BODY(fd, iov, cnt, off, fl)                          \
	IO_REAL_OR(pwritev2, -1);                                            \
	TIMED_V(off == -1 ? KP_IO_OP_WRITEV : KP_IO_OP_PWRITEV, fd,   \
		iov, cnt, off == -1 ? TRACK : off,                    \
		kp_io_real.pwritev2(fd, iov, cnt, off, fl))

KP_EXPORT ssize_t preadv2(int fd, const struct iovec *iov, int cnt,
			  off_t off, int fl)
{
	PREADV2_BODY(fd, iov, cnt, off, fl);
}

KP_EXPORT ssize_t preadv64v2(int fd, const struct iovec *iov, int cnt,
			     off_t off, int fl)
{
	PREADV2_BODY(fd, iov, cnt, off, fl);
}

KP_EXPORT ssize_t pwritev2(int fd, const struct iovec *iov, int cnt,
			   off_t off, int fl)
{
	PWRITEV2_BODY(fd, iov, cnt, off, fl);
}

KP_EXPORT ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt,
			      off_t off, int fl)
{
	PWRITEV2_BODY(fd, iov, cnt, off, fl);
}

/* ---- lseek: req = the offset asked, ret = the new offset ------------------ */

static off_t do_lseek(int fd, off_t off, int whence)
{
	IO_REAL(lseek);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.lseek(fd, off, whence);
	uint64_t t0 = kp_ticks();
	off_t r = kp_io_real.lseek(fd, off, whence);
	kp_io_record(KP_IO_OP_LSEEK, fd, (uint64_t)off, r,
		     r >= 0 ? r : NOOFF, t0);
	return r;
}

KP_EXPORT off_t lseek(int fd, off_t off, int whence)
{
	return do_lseek(fd, off, whence);
}

KP_EXPORT off_t lseek64(int fd, off_t off, int whence)
{
	return do_lseek(fd, off, whence);
}

/* ---- sync ------------------------------------------------------------------ */

KP_EXPORT int fsync(int fd)
{
	IO_REAL(fsync);
	TIMED(int, KP_IO_OP_FSYNC, fd, 0, NOOFF, kp_io_real.fsync(fd));
}

KP_EXPORT int fdatasync(int fd)
{
	IO_REAL(fdatasync);
	TIMED(int, KP_IO_OP_FDATASYNC, fd, 0, NOOFF,
	      kp_io_real.fdatasync(fd));
}

KP_EXPORT int sync_file_range(int fd, off_t off, off_t n, unsigned fl)
{
	IO_REAL_OR(sync_file_range, -1);
	TIMED(int, KP_IO_OP_SYNC_FILE_RANGE, fd, n, off,
	      kp_io_real.sync_file_range(fd, off, n, fl));
}

KP_EXPORT int msync(void *addr, size_t len, int fl)
{
	IO_REAL(msync);
	TIMED(int, KP_IO_OP_MSYNC, -1, len, NOOFF,
	      kp_io_real.msync(addr, len, fl));
}

/* ---- size ------------------------------------------------------------------ */

#define FTRUNCATE_BODY(fd, len)                                       \
	IO_REAL(ftruncate);                                           \
	TIMED(int, KP_IO_OP_FTRUNCATE, fd, len, NOOFF,                \
	      kp_io_real.ftruncate(fd, len))

KP_EXPORT int ftruncate(int fd, off_t len)
{
	FTRUNCATE_BODY(fd, len);
}

KP_EXPORT int ftruncate64(int fd, off_t len)
{
	FTRUNCATE_BODY(fd, len);
}

#define FALLOCATE_BODY(fd, mode, off, len)                            \
	IO_REAL_OR(fallocate, -1);                                           \
	TIMED(int, KP_IO_OP_FALLOCATE, fd, len, off,                  \
	      kp_io_real.fallocate(fd, mode, off, len))

KP_EXPORT int fallocate(int fd, int mode, off_t off, off_t len)
{
	FALLOCATE_BODY(fd, mode, off, len);
}

KP_EXPORT int fallocate64(int fd, int mode, off_t off, off_t len)
{
	FALLOCATE_BODY(fd, mode, off, len);
}

/* posix_fallocate returns the error number and leaves errno alone: it is
 * recorded as ret -1 with that error. */
static int do_posix_fallocate(int fd, off_t off, off_t len)
{
	IO_REAL(posix_fallocate);
	struct kp_tls *t = &kp_tls;
	if (!kp_io_want(t))
		return kp_io_real.posix_fallocate(fd, off, len);
	uint64_t t0 = kp_ticks();
	int rc = kp_io_real.posix_fallocate(fd, off, len);
	int saved = errno;
	if (rc)
		errno = rc;
	kp_io_record(KP_IO_OP_FALLOCATE, fd, (uint64_t)len, rc ? -1 : 0, off,
		     t0);
	errno = saved;
	return rc;
}

KP_EXPORT int posix_fallocate(int fd, off_t off, off_t len)
{
	return do_posix_fallocate(fd, off, len);
}

KP_EXPORT int posix_fallocate64(int fd, off_t off, off_t len)
{
	return do_posix_fallocate(fd, off, len);
}

/* ---- sockets: send and receive ------------------------------------------- */

/* The bytes a msghdr's iovecs ask for. */
static uint64_t msg_bytes(const struct msghdr *m)
{
	uint64_t n = 0;
	if (m && m->msg_iov)
		for (size_t i = 0; i < m->msg_iovlen; i++)
			n += m->msg_iov[i].iov_len;
	return n;
}

KP_EXPORT ssize_t send(int fd, const void *buf, size_t n, int fl)
{
	IO_REAL(send);
	TIMED(ssize_t, KP_IO_OP_SEND, fd, n, NOOFF,
	      kp_io_real.send(fd, buf, n, fl));
}

KP_EXPORT ssize_t sendto(int fd, const void *buf, size_t n, int fl,
			 const struct sockaddr *to, socklen_t tolen)
{
	IO_REAL(sendto);
	TIMED(ssize_t, KP_IO_OP_SEND, fd, n, NOOFF,
	      kp_io_real.sendto(fd, buf, n, fl, to, tolen));
}

KP_EXPORT ssize_t sendmsg(int fd, const struct msghdr *m, int fl)
{
	IO_REAL(sendmsg);
	TIMED(ssize_t, KP_IO_OP_SENDMSG, fd, msg_bytes(m), NOOFF,
	      kp_io_real.sendmsg(fd, m, fl));
}

KP_EXPORT ssize_t recv(int fd, void *buf, size_t n, int fl)
{
	IO_REAL(recv);
	TIMED(ssize_t, KP_IO_OP_RECV, fd, n, NOOFF,
	      kp_io_real.recv(fd, buf, n, fl));
}

KP_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen,
			     int fl)
{
	IO_REAL_OR(recv_chk, -1);
	TIMED(ssize_t, KP_IO_OP_RECV, fd, n, NOOFF,
	      kp_io_real.recv_chk(fd, buf, n, buflen, fl));
}

KP_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int fl,
			   struct sockaddr *from, socklen_t *fromlen)
{
	IO_REAL(recvfrom);
	TIMED(ssize_t, KP_IO_OP_RECV, fd, n, NOOFF,
	      kp_io_real.recvfrom(fd, buf, n, fl, from, fromlen));
}

KP_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen,
				 int fl, struct sockaddr *from,
				 socklen_t *fromlen)
{
	IO_REAL_OR(recvfrom_chk, -1);
	TIMED(ssize_t, KP_IO_OP_RECV, fd, n, NOOFF,
	      kp_io_real.recvfrom_chk(fd, buf, n, buflen, fl, from, fromlen));
}

KP_EXPORT ssize_t recvmsg(int fd, struct msghdr *m, int fl)
{
	IO_REAL(recvmsg);
	TIMED(ssize_t, KP_IO_OP_RECVMSG, fd, msg_bytes(m), NOOFF,
	      kp_io_real.recvmsg(fd, m, fl));
}

/* ---- in-kernel copies: recorded on the output fd --------------------------- */

KP_EXPORT ssize_t copy_file_range(int in, off_t *in_off, int out,
				  off_t *out_off, size_t n, unsigned fl)
{
	IO_REAL_OR(copy_file_range, -1);
	int64_t off = out_off ? *out_off : NOOFF;
	TIMED(ssize_t, KP_IO_OP_COPY_FILE_RANGE, out, n, off,
	      kp_io_real.copy_file_range(in, in_off, out, out_off, n, fl));
}

#define SENDFILE_BODY(out, in, off, n)                                \
	IO_REAL(sendfile);                                            \
	TIMED(ssize_t, KP_IO_OP_SENDFILE, out, n, NOOFF,              \
	      kp_io_real.sendfile(out, in, off, n))

KP_EXPORT ssize_t sendfile(int out, int in, off_t *off, size_t n)
{
	SENDFILE_BODY(out, in, off, n);
}

KP_EXPORT ssize_t sendfile64(int out, int in, off_t *off, size_t n)
{
	SENDFILE_BODY(out, in, off, n);
}
