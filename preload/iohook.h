/* SPDX-License-Identifier: MIT */
/*
 * Shared by the I/O interposers (hook_io.c, hook_fd.c, hook_stdio.c) and
 * the fd table (fdtab.c). See lib/io.h for the two layers (syscall, stdio).
 *
 * Every interposer has the same shape: resolve the real function, and if
 * this call is the app's (not kprof's own: busy, writer thread), time the
 * real call with kp_ticks() and record one event after it, with errno as
 * the real call left it. Return values are never touched.
 */
#ifndef KP_IOHOOK_H
#define KP_IOHOOK_H

#include "state.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "io.h"

/* ---- the real functions (resolved once, lazily) ---- */
struct kp_io_real {
	ssize_t (*read)(int, void *, size_t);
	ssize_t (*write)(int, const void *, size_t);
	ssize_t (*pread)(int, void *, size_t, off_t);
	ssize_t (*pwrite)(int, const void *, size_t, off_t);
	ssize_t (*readv)(int, const struct iovec *, int);
	ssize_t (*writev)(int, const struct iovec *, int);
	ssize_t (*preadv)(int, const struct iovec *, int, off_t);
	ssize_t (*pwritev)(int, const struct iovec *, int, off_t);
	ssize_t (*preadv2)(int, const struct iovec *, int, off_t, int);
	ssize_t (*pwritev2)(int, const struct iovec *, int, off_t, int);
	off_t (*lseek)(int, off_t, int);
	int (*fsync)(int);
	int (*fdatasync)(int);
	int (*sync_file_range)(int, off_t, off_t, unsigned);
	int (*msync)(void *, size_t, int);
	int (*ftruncate)(int, off_t);
	int (*fallocate)(int, int, off_t, off_t);
	int (*posix_fallocate)(int, off_t, off_t);
	ssize_t (*copy_file_range)(int, off_t *, int, off_t *, size_t,
				   unsigned);
	ssize_t (*sendfile)(int, int, off_t *, size_t);
	ssize_t (*send)(int, const void *, size_t, int);
	ssize_t (*sendto)(int, const void *, size_t, int,
			  const struct sockaddr *, socklen_t);
	ssize_t (*sendmsg)(int, const struct msghdr *, int);
	ssize_t (*recv)(int, void *, size_t, int);
	ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *,
			    socklen_t *);
	ssize_t (*recvmsg)(int, struct msghdr *, int);
	ssize_t (*recv_chk)(int, void *, size_t, size_t, int);
	ssize_t (*recvfrom_chk)(int, void *, size_t, size_t, int,
				struct sockaddr *, socklen_t *);
	ssize_t (*read_chk)(int, void *, size_t, size_t);
	ssize_t (*pread_chk)(int, void *, size_t, off_t, size_t);
	/* fds */
	int (*open)(const char *, int, ...);
	int (*openat)(int, const char *, int, ...);
	int (*creat)(const char *, mode_t);
	int (*open_2)(const char *, int);
	int (*openat_2)(int, const char *, int);
	int (*close)(int);
	int (*close_range)(unsigned, unsigned, int);
	int (*dup)(int);
	int (*dup2)(int, int);
	int (*dup3)(int, int, int);
	int (*fcntl)(int, int, ...);
	int (*socket)(int, int, int);
	int (*accept)(int, void *, void *);
	int (*accept4)(int, void *, void *, int);
	int (*memfd_create)(const char *, unsigned);
	/* stdio */
	FILE *(*fopen)(const char *, const char *);
	FILE *(*fdopen)(int, const char *);
	FILE *(*freopen)(const char *, const char *, FILE *);
	int (*fclose)(FILE *);
	int (*fflush)(FILE *);
	size_t (*fread)(void *, size_t, size_t, FILE *);
	size_t (*fwrite)(const void *, size_t, size_t, FILE *);
	char *(*fgets)(char *, int, FILE *);
	int (*fputs)(const char *, FILE *);
	ssize_t (*getline)(char **, size_t *, FILE *);
	ssize_t (*getdelim)(char **, size_t *, int, FILE *);
	int (*vfprintf)(FILE *, const char *, va_list);
	int (*vfprintf_chk)(FILE *, int, const char *, va_list);
	size_t (*fread_chk)(void *, size_t, size_t, size_t, FILE *);
	char *(*fgets_chk)(char *, size_t, int, FILE *);
	/* the direct path's end (kp_io_direct) */
	int (*pthread_cancel)(pthread_t);
};

extern struct kp_io_real kp_io_real;
void kp_io_resolve(void);

#define IO_REAL(fn)                                        \
	do {                                               \
		if (KP_UNLIKELY(!kp_io_real.fn))           \
			kp_io_resolve();                   \
	} while (0)

/* For functions an older libc may lack: fail as the missing call would. */
#define IO_REAL_OR(fn, fail)                               \
	do {                                               \
		IO_REAL(fn);                               \
		if (KP_UNLIKELY(!kp_io_real.fn)) {         \
			errno = ENOSYS;                    \
			return fail;                       \
		}                                          \
	} while (0)

/* ---- the direct path (hook_io.c) ---- */

/*
 * In a single-threaded process glibc's read, write, pread64, pwrite64,
 * readv and writev are one system call. kprof's writer thread makes glibc
 * see a multi-threaded one, and from then on each of those calls also
 * switches the thread to asynchronous cancellation and back around its
 * system call (two locked instructions: ~40 ns of a 64-byte write(), a
 * third of what recording it costs). The switch only matters to a thread
 * that can be cancelled; so while the app has created no thread and
 * cancelled none (the pthread_create and pthread_cancel interposers clear
 * kp_io_direct for good), its initial thread's recorded calls make the
 * system call themselves, as glibc does without kprof: the same call, the
 * same result, errno set the same way. One bit per function (KP_IO_D_*),
 * set at resolve time where the next definition is glibc's own (not
 * another interposer's), on x86-64 only. What it cannot see: a thread
 * glibc starts itself (timer_create's SIGEV_THREAD, aio, mq_notify) that
 * cancels the initial thread while that one is blocked in such a call:
 * the cancel then waits for its next cancellation point.
 */
enum {
	KP_IO_D_READ = 1u << 0,
	KP_IO_D_WRITE = 1u << 1,
	KP_IO_D_PREAD = 1u << 2,
	KP_IO_D_PWRITE = 1u << 3,
	KP_IO_D_READV = 1u << 4,
	KP_IO_D_WRITEV = 1u << 5,
	KP_IO_D_NEVER = 1u << 30, /* set by kp_io_direct_off, never cleared */
};
extern _Atomic unsigned kp_io_direct;

/* May t, about to make a recorded call, use function bit's direct path? */
static KP_ALWAYS_INLINE int kp_io_go_direct(const struct kp_tls *t,
					    unsigned bit)
{
	return bit &&
	       (atomic_load_explicit(&kp_io_direct, memory_order_relaxed) &
		(bit | KP_IO_D_NEVER)) == bit &&
	       t->tid == (uint32_t)kp.pid;
}

#if defined(__x86_64__)
/* The system call nr with up to four arguments, and glibc's error
 * convention: -1 and errno for a result in [-4095, -1]. */
static KP_ALWAYS_INLINE long kp_io_syscall(long nr, long a, long b, long c,
					   long d)
{
	long r;
	register long r10 __asm__("r10") = d;
	__asm__ volatile("syscall"
			 : "=a"(r)
			 : "0"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	if (KP_UNLIKELY((unsigned long)r > -4096ul)) {
		errno = (int)-r;
		r = -1;
	}
	return r;
}
#else
static KP_ALWAYS_INLINE long kp_io_syscall(long nr, long a, long b, long c,
					   long d)
{
	(void)a; (void)b; (void)c; (void)d;
	errno = ENOSYS; /* never called: kp_io_direct stays 0 */
	return -1;
}
#endif

/* ---- the fd table (fdtab.c) ---- */

#define KP_FDTAB_MAX 65536 /* fds above are recorded with kind unknown */

enum { KP_FDS_UNKNOWN = 0, KP_FDS_RESOLVING = 1, KP_FDS_KNOWN = 2 };

struct kp_fdent {
	_Atomic uint8_t state; /* KP_FDS_* */
	uint8_t kind;          /* enum kp_fd_kind, valid when KNOWN */
	uint8_t append;        /* O_APPEND: offsets unknown */
	uint8_t pad;
	uint32_t gen;          /* kp_fd_gen when it became KNOWN */
	_Atomic int64_t off;   /* tracked offset, KP_IO_NO_OFF if none */
};

extern struct kp_fdent kp_fdtab[KP_FDTAB_MAX];
/* Bumped in a fork child: entries of an older generation are unknown
 * there (the child's trace has not said what they are). */
extern uint32_t kp_fd_gen;

/* Is the entry known in this process? */
static inline int kp_fd_known(const struct kp_fdent *e)
{
	return atomic_load_explicit(&e->state, memory_order_acquire) ==
		       KP_FDS_KNOWN && e->gen == kp_fd_gen;
}

/* The entry of fd, resolving it (FD_OPEN how=LAZY) if never seen; NULL for
 * fds out of the table. The caller is inside kprof (busy). */
struct kp_fdent *kp_fd_get(int fd, uint64_t t0);
/*
 * A new fd (open, dup, pipe, ...): fill its entry (fstat: kind; offset 0
 * for a fresh open, the file's offset otherwise) and record FD_OPEN with
 * path (NULL: read from /proc/self/fd; "": none). fd < 0: a failed call
 * (err = its errno), whose path, if relative, is of dirfd's directory
 * (AT_FDCWD: the working directory) and is recorded absolute. src: the fd
 * it was duplicated from, or -1.
 */
void kp_fd_opened(int fd, uint8_t how, int dirfd, const char *path,
		  int flags, uint64_t t0, int err, int src, uint32_t stack);
/* The fd went away: FD_CLOSE (fd < 0: nothing but the record). */
void kp_fd_closed(int fd, uint8_t how, uint64_t t0, int err,
		  uint32_t stack);
/* Forget an fd without a record (closed by kprof, close_range). */
void kp_fd_forget(int fd);

/* ---- recording (fdtab.c) ---- */

/* Byte counters of interposed I/O, for IO_SUMMARY: each thread counts on
 * its ring (struct kp_ring io_seen_*); these hold what threads without a
 * ring counted. */
extern _Atomic uint64_t kp_io_seen_read, kp_io_seen_write;
/* The ops whose bytes count as read / written, bit (1 << op) (from
 * kp_io_op_dir() at init: one test on the hot path, not a switch).
 * sendfile and copy_file_range count as both (the kernel adds them to
 * both rchar and wchar). */
extern uint64_t kp_io_read_ops, kp_io_write_ops;

/* Add n bytes of op to the seen counters (done by kp_io_record). */
void kp_io_count(uint8_t op, uint64_t n);

/* Is this call the app's, and is I/O recording on? */
static inline int kp_io_want(const struct kp_tls *t)
{
	return !t->busy && !t->writer && kp_ready() && kp.cfg.io;
}

static inline uint32_t kp_io_stack(void)
{
	return kp.cfg.io_capture ?
		kp_stack_capture_memo(kp_io_memo, &kp_tls.io_memo_mru) : 0;
}

#define KP_IO_OFF_TRACK INT64_MIN

/* kp_io_count on r, this thread's own ring: no locked instruction. */
static KP_ALWAYS_INLINE void kp_io_ring_count(struct kp_ring *r, uint8_t op,
					      uint64_t n)
{
	uint64_t b = op < 64 ? 1ull << op : 0;
	if (b & kp_io_read_ops)
		atomic_store_explicit(&r->io_seen_read,
				      atomic_load_explicit(&r->io_seen_read,
							   memory_order_relaxed) + n,
				      memory_order_relaxed);
	if (b & kp_io_write_ops)
		atomic_store_explicit(&r->io_seen_write,
				      atomic_load_explicit(&r->io_seen_write,
							   memory_order_relaxed) + n,
				      memory_order_relaxed);
}

/* The offset of a call of op on fd entry e (NULL: out of the table or not
 * resolvable now), and the tracking that goes with it. fresh: e was
 * resolved by this call, after the call moved the offset by r. */
static KP_ALWAYS_INLINE int64_t kp_io_offset(struct kp_fdent *e, int fresh,
					     uint8_t op, int64_t r,
					     int64_t off)
{
	if (e && e->kind != KP_FDK_FILE && e->kind != KP_FDK_DEVICE) {
		if (off == KP_IO_OFF_TRACK)
			off = KP_IO_NO_OFF;
	} else if (off == KP_IO_OFF_TRACK) {
		off = KP_IO_NO_OFF;
		if (e) {
			int64_t cur = atomic_load_explicit(
				&e->off, memory_order_relaxed);
			if (fresh && cur >= 0 && r > 0)
				cur -= r;
			if (KP_UNLIKELY(e->append) && kp_io_op_dir(op) == 'w') {
				atomic_store_explicit(&e->off, KP_IO_NO_OFF,
						      memory_order_relaxed);
			} else if (cur >= 0) {
				off = cur;
				if (r > 0)
					atomic_store_explicit(
						&e->off, cur + r,
						memory_order_relaxed);
			}
		}
	} else if (op == KP_IO_OP_LSEEK && e && r >= 0) {
		atomic_store_explicit(&e->off, r, memory_order_relaxed);
	}
	return off;
}

/* kp_io_record's other paths (fdtab.c); ret: r, or -errno if it failed. */
void kp_io_record_slow(uint8_t op, int fd, uint64_t req, int64_t r,
		       int64_t ret, int64_t off, uint64_t t0, uint64_t t1);
void kp_io_push_ext(uint8_t op, uint32_t stack, int fd, uint64_t req,
		    int64_t ret, int64_t off, uint64_t t0, uint64_t t1);

/*
 * Record one KP_REC_IO after the real call returned. r < 0: failed with
 * errno (read from errno here). off: the offset of the call, or
 * KP_IO_OFF_TRACK to take it from the fd table (and advance it by r).
 *
 * Inline in each interposer: the common case, a call on an fd known in
 * this process by a thread with its own ring, takes no call but the stack
 * capture (when wanted) and no locked instruction (the offset from the fd
 * table, the byte count on the ring, the event straight into the ring's
 * next slot). Nothing else on that path can change errno, so errno is
 * read only when the call failed, and saved only around the capture and
 * on the other paths (kp_io_record_slow).
 */
static KP_ALWAYS_INLINE void kp_io_record(uint8_t op, int fd, uint64_t req,
					  int64_t r, int64_t off, uint64_t t0)
{
	uint64_t t1 = kp_ticks();
	int64_t ret = KP_LIKELY(r >= 0) ? r : -(int64_t)errno;
	struct kp_tls *t = &kp_tls;
	struct kp_ring *ring = t->ring;
	struct kp_fdent *e = &kp_fdtab[(unsigned)fd % KP_FDTAB_MAX];
	if (KP_UNLIKELY((unsigned)fd >= KP_FDTAB_MAX || !ring ||
			kp_qt.npending || !kp_fd_known(e))) {
		kp_io_record_slow(op, fd, req, r, ret, off, t0, t1);
		return;
	}
	t->busy = 1;
	off = kp_io_offset(e, 0, op, r, off);
	if (r > 0)
		kp_io_ring_count(ring, op, (uint64_t)r);
	uint32_t stack = 0;
	if (kp.cfg.io_capture) {
		/* called from here, not through a helper: one frame fewer
		 * for libunwind to walk (and for kp_stack_capture to drop) */
		int *ep = &errno, saved = *ep;
		stack = kp_stack_capture_memo(kp_io_memo, &t->io_memo_mru);
		*ep = saved;
	}
	if (KP_UNLIKELY(!kp_ring_try_push_head(
		    ring, t1, KP_REC_IO, op, stack, KP_IO_NV * 8,
		    (uint64_t)(int64_t)fd, req, (uint64_t)ret, (uint64_t)off,
		    t1 - t0)))
		kp_io_push_ext(op, stack, fd, req, ret, off, t0, t1); /* full */
	kp_busy_leave();
}

#endif
