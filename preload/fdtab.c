/* SPDX-License-Identifier: MIT */
/*
 * The fd table of the I/O profiler, the I/O record itself and the
 * blind-spot summary at exit.
 *
 * kp_fdtab is indexed by fd (up to KP_FDTAB_MAX; it lives in .bss, so only
 * the pages of fds in use are ever touched). Each entry says what the fd is
 * (its kind, from fstat) and tracks its file offset for read/write: set by
 * an open (0), by lseek (its result), advanced by each read or write by
 * what it returned. No locks: an entry's state moves UNKNOWN -> RESOLVING
 * -> KNOWN with a compare-and-swap, so one thread resolves an fd the app
 * got without kprof seeing it (inherited, opened by libc internally or by
 * a raw syscall): readlink /proc/self/fd/N, fstat and lseek(SEEK_CUR), all
 * raw syscalls, recorded as FD_OPEN with how = LAZY.
 *
 * Paths are not kept here: FD_OPEN carries them (from /proc/self/fd, so
 * every name of a file reads the same), and the analyzer maps fds to paths.
 *
 * Limits: dup'ed fds share one offset in the kernel but each entry here
 * tracks its own (copied at dup time); an O_APPEND write has no known
 * offset (recorded as KP_IO_NO_OFF) until the next lseek.
 */
#include "iohook.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

struct kp_fdent kp_fdtab[KP_FDTAB_MAX];
uint32_t kp_fd_gen;
_Atomic uint64_t kp_io_seen_read, kp_io_seen_write;
_Atomic uint64_t kp_self_wchar, kp_self_rchar;

static uint8_t kind_of(const struct stat *st, const char *link)
{
	switch (st->st_mode & S_IFMT) {
	case S_IFREG:
		return KP_FDK_FILE;
	case S_IFIFO:
		return KP_FDK_PIPE;
	case S_IFSOCK:
		return KP_FDK_SOCKET;
	case S_IFDIR:
		return KP_FDK_DIR;
	case S_IFBLK:
		return KP_FDK_DEVICE;
	case S_IFCHR: {
		unsigned ma = major(st->st_rdev);
		/* tty 4, console/ptmx 5, Unix98 ptys 136..143 */
		if (ma == 4 || ma == 5 || (ma >= 136 && ma <= 143))
			return KP_FDK_TTY;
		return KP_FDK_DEVICE;
	}
	default:
		if (link && strncmp(link, "anon_inode:", 11) == 0)
			return KP_FDK_ANON;
		return KP_FDK_UNKNOWN;
	}
}

/* readlink /proc/self/fd/N into buf (NUL-terminated); length or 0. */
static size_t fd_path(int fd, char *buf, size_t cap)
{
	char p[40] = "/proc/self/fd/";
	size_t n = 14;
	char d[12];
	int k = 0;
	unsigned u = (unsigned)fd;
	do {
		d[k++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	while (k)
		p[n++] = d[--k];
	p[n] = '\0';
	return kp_readlink(p, buf, cap);
}

/* Fill the entry of fd from the kernel; the path into buf. */
static void fill(struct kp_fdent *e, int fd, char *buf, size_t cap,
		 size_t *len, int fresh_open, int flags)
{
	struct stat st;
	*len = fd_path(fd, buf, cap);
	if (syscall(SYS_fstat, fd, &st) != 0)
		memset(&st, 0, sizeof(st));
	e->kind = kind_of(&st, buf);
	e->append = (flags & O_APPEND) != 0;
	int64_t off = KP_IO_NO_OFF;
	if (e->kind == KP_FDK_FILE || e->kind == KP_FDK_DEVICE) {
		if (fresh_open)
			off = 0;
		else {
			long o = syscall(SYS_lseek, fd, 0L, SEEK_CUR);
			off = o < 0 ? KP_IO_NO_OFF : o;
		}
	}
	atomic_store_explicit(&e->off, off, memory_order_relaxed);
}

static void push_open(int fd, uint8_t how, uint8_t kind, int flags,
		      uint64_t t0, uint64_t t1, int err, int src,
		      uint32_t stack, const char *path, size_t len)
{
	int64_t v[KP_FDO_NV] = { 0 };
	v[KP_FDO_FD] = fd;
	v[KP_FDO_FDKIND] = kind;
	v[KP_FDO_FLAGS] = flags;
	v[KP_FDO_DUR] = (int64_t)(t1 - t0);
	v[KP_FDO_ERR] = err;
	v[KP_FDO_SRC] = src;
	kp_ring_push_ext(t1, KP_REC_FD_OPEN, how, stack, v, path, len);
}

static struct kp_fdent *get(int fd, uint64_t t0, int *fresh)
{
	*fresh = 0;
	if (fd < 0 || fd >= KP_FDTAB_MAX)
		return NULL;
	struct kp_fdent *e = &kp_fdtab[fd];
	uint8_t s = atomic_load_explicit(&e->state, memory_order_acquire);
	if (KP_LIKELY(s == KP_FDS_KNOWN && e->gen == kp_fd_gen))
		return e;
	if (s == KP_FDS_RESOLVING)
		return NULL; /* another thread is at it: kind unknown now */
	/* UNKNOWN, or KNOWN by the parent before a fork */
	if (!atomic_compare_exchange_strong(&e->state, &s, KP_FDS_RESOLVING))
		return NULL;
	char buf[KP_MAX_STR_LEN];
	size_t len;
	long fl = syscall(SYS_fcntl, fd, F_GETFL);
	fill(e, fd, buf, sizeof(buf), &len, 0, fl < 0 ? 0 : (int)fl);
	if (fl < 0) { /* not open: nothing to resolve */
		atomic_store_explicit(&e->state, KP_FDS_UNKNOWN,
				      memory_order_release);
		return NULL;
	}
	/* at the start of the call that found it, so it comes first */
	push_open(fd, KP_FDH_LAZY, e->kind, (int)fl, t0, t0, 0, -1, 0, buf,
		  len);
	e->gen = kp_fd_gen;
	atomic_store_explicit(&e->state, KP_FDS_KNOWN, memory_order_release);
	*fresh = 1;
	return e;
}

struct kp_fdent *kp_fd_get(int fd, uint64_t t0)
{
	int fresh;
	return get(fd, t0, &fresh);
}

/*
 * A failed open's path as asked, made absolute when it was relative: put
 * after the working directory's path, or openat's directory's, as a
 * successful open's is read from /proc (without a leading "./"). As asked
 * when that directory has no path to give.
 */
static size_t failed_path(int dirfd, const char *path, char *buf, size_t cap)
{
	size_t n = 0;
	if (path[0] != '/') {
		while (path[0] == '.' && path[1] == '/')
			path += 2;
		if (dirfd == AT_FDCWD) {
			long r = syscall(SYS_getcwd, buf, cap);
			n = r > 1 ? (size_t)r - 1 : 0; /* r counts the NUL */
		} else {
			n = fd_path(dirfd, buf, cap);
		}
		/* not "(unreachable)/...", nor a pipe's name */
		if (n && buf[0] != '/')
			n = 0;
		if (n && buf[n - 1] != '/' && n + 1 < cap)
			buf[n++] = '/';
	}
	size_t len = strnlen(path, cap - 1 - n);
	memcpy(buf + n, path, len);
	return n + len;
}

void kp_fd_opened(int fd, uint8_t how, int dirfd, const char *path,
		  int flags, uint64_t t0, int err, int src, uint32_t stack)
{
	uint64_t t1 = kp_ticks();
	char buf[KP_MAX_STR_LEN];
	size_t len = 0;
	uint8_t kind = KP_FDK_UNKNOWN;
	if (fd >= 0 && fd < KP_FDTAB_MAX) {
		struct kp_fdent *e = &kp_fdtab[fd];
		atomic_store_explicit(&e->state, KP_FDS_RESOLVING,
				      memory_order_relaxed);
		int fresh = how == KP_FDH_OPEN || how == KP_FDH_OPENAT ||
			    how == KP_FDH_FOPEN || how == KP_FDH_MEMFD;
		if (how == KP_FDH_DUP || how == KP_FDH_FDOPEN) {
			long fl = syscall(SYS_fcntl, fd, F_GETFL);
			flags = fl < 0 ? 0 : (int)fl;
		}
		fill(e, fd, buf, sizeof(buf), &len, fresh, flags);
		if (src >= 0 && src < KP_FDTAB_MAX && how == KP_FDH_DUP &&
		    kp_fd_known(&kp_fdtab[src]))
			atomic_store(&e->off, atomic_load(&kp_fdtab[src].off));
		kind = e->kind;
		e->gen = kp_fd_gen;
		atomic_store_explicit(&e->state, KP_FDS_KNOWN,
				      memory_order_release);
	} else if (fd >= 0) {
		len = fd_path(fd, buf, sizeof(buf));
	} else if (path) {
		len = failed_path(dirfd, path, buf, sizeof(buf));
	}
	push_open(fd, how, kind, flags, t0, t1, err, src, stack, buf, len);
}

void kp_fd_forget(int fd)
{
	if (fd >= 0 && fd < KP_FDTAB_MAX)
		atomic_store_explicit(&kp_fdtab[fd].state, KP_FDS_UNKNOWN,
				      memory_order_release);
}

void kp_fd_closed(int fd, uint8_t how, uint64_t t0, int err, uint32_t stack)
{
	uint64_t t1 = kp_ticks();
	if (!err)
		kp_fd_forget(fd);
	int64_t v[KP_FDC_NV] = { 0 };
	v[KP_FDC_FD] = fd;
	v[KP_FDC_DUR] = (int64_t)(t1 - t0);
	v[KP_FDC_ERR] = err;
	kp_ring_push_ext(t1, KP_REC_FD_CLOSE, how, stack, v, NULL, 0);
}

uint64_t kp_io_read_ops, kp_io_write_ops;

static void io_ops_init(void)
{
	uint64_t rd = 0, wr = 0;
	for (unsigned op = 0; op <= KP_IO_OP_MAX; op++) {
		char dir = kp_io_op_dir(op);
		if (dir == 'r' || op == KP_IO_OP_COPY_FILE_RANGE ||
		    op == KP_IO_OP_SENDFILE)
			rd |= 1ull << op;
		if (dir == 'w')
			wr |= 1ull << op;
	}
	kp_io_read_ops = rd;
	kp_io_write_ops = wr;
}

void kp_io_count(uint8_t op, uint64_t n)
{
	struct kp_ring *r = kp_tls.ring;
	if (r) {
		kp_io_ring_count(r, op, n);
		return;
	}
	/* no ring of its own (yet, or any more): the shared counters */
	uint64_t b = op < 64 ? 1ull << op : 0;
	if (b & kp_io_read_ops)
		atomic_fetch_add_explicit(&kp_io_seen_read, n,
					  memory_order_relaxed);
	if (b & kp_io_write_ops)
		atomic_fetch_add_explicit(&kp_io_seen_write, n,
					  memory_order_relaxed);
}

/* The event of kp_io_record through kp_ring_push_ext (the ring looks
 * full: it waits for the writer, or drops). */
void kp_io_push_ext(uint8_t op, uint32_t stack, int fd, uint64_t req,
		    int64_t ret, int64_t off, uint64_t t0, uint64_t t1)
{
	int saved = errno;
	int64_t v[KP_IO_NV];
	v[KP_IO_FD] = fd;
	v[KP_IO_REQ] = (int64_t)req;
	v[KP_IO_RET] = ret;
	v[KP_IO_OFF] = off;
	v[KP_IO_DUR] = (int64_t)(t1 - t0);
	kp_ring_push_ext(t1, KP_REC_IO, op, stack, v, NULL, 0);
	errno = saved;
}

/* kp_io_record when the fd is not known yet, or the thread has no ring or
 * has deferred QUERY_BEGINs: anything may happen here, so errno is
 * saved. */
void kp_io_record_slow(uint8_t op, int fd, uint64_t req, int64_t r,
		       int64_t ret, int64_t off, uint64_t t0, uint64_t t1)
{
	int saved = errno;
	struct kp_tls *t = &kp_tls;
	t->busy = 1;
	int fresh = 0;
	struct kp_fdent *e = NULL;
	if ((unsigned)fd < KP_FDTAB_MAX) {
		e = &kp_fdtab[fd];
		if (!kp_fd_known(e))
			e = get(fd, t0, &fresh);
	}
	off = kp_io_offset(e, fresh, op, r, off);
	if (r > 0)
		kp_io_count(op, (uint64_t)r);
	uint32_t stack = kp_io_stack();
	struct kp_ring *ring = t->ring;
	if (!ring || kp_qt.npending ||
	    !kp_ring_try_push_head(ring, t1, KP_REC_IO, op, stack,
				   KP_IO_NV * 8, (uint64_t)(int64_t)fd, req,
				   (uint64_t)ret, (uint64_t)off, t1 - t0))
		kp_io_push_ext(op, stack, fd, req, ret, off, t0, t1);
	kp_busy_leave();
	errno = saved;
}

/* ---- /proc/self/io -------------------------------------------------------- */

struct procio {
	int64_t rchar, wchar, read_bytes, write_bytes;
};

static struct procio io0;

static int64_t field(const char *s, const char *key)
{
	const char *p = strstr(s, key);
	if (!p)
		return -1;
	p += strlen(key);
	while (*p == ' ')
		p++;
	int64_t v = 0;
	while (*p >= '0' && *p <= '9')
		v = v * 10 + (*p++ - '0');
	return v;
}

static void read_procio(struct procio *o)
{
	char buf[512];
	if (kp_read_small("/proc/self/io", buf, sizeof(buf)) < 0) {
		o->rchar = o->wchar = o->read_bytes = o->write_bytes = -1;
		return;
	}
	o->rchar = field(buf, "rchar:");
	o->wchar = field(buf, "wchar:");
	o->read_bytes = field(buf, "\nread_bytes:");
	o->write_bytes = field(buf, "\nwrite_bytes:");
}

void kp_io_init(void)
{
	io_ops_init();
	int saved = errno;
	read_procio(&io0);
	errno = saved;
}

void kp_io_after_fork_child(void)
{
	kp_fd_gen++; /* the child's trace must say again what each fd is */
	atomic_store(&kp_io_seen_read, 0);
	atomic_store(&kp_io_seen_write, 0);
	atomic_store(&kp_self_wchar, 0);
	atomic_store(&kp_self_rchar, 0);
	kp_io_init();
}

static int64_t delta(int64_t now, int64_t then)
{
	return now < 0 || then < 0 ? -1 : now - then;
}

void kp_io_finish(void)
{
	if (!kp_recording() || !kp.cfg.io)
		return;
	int saved = errno;
	uint8_t busy = kp_tls.busy;
	kp_tls.busy = 1;
	struct procio now;
	read_procio(&now);
	int64_t v[KP_IOS_NV];
	v[KP_IOS_RCHAR] = delta(now.rchar, io0.rchar);
	v[KP_IOS_WCHAR] = delta(now.wchar, io0.wchar);
	v[KP_IOS_READ_BYTES] = delta(now.read_bytes, io0.read_bytes);
	v[KP_IOS_WRITE_BYTES] = delta(now.write_bytes, io0.write_bytes);
	uint64_t seen_r = atomic_load(&kp_io_seen_read);
	uint64_t seen_w = atomic_load(&kp_io_seen_write);
	for (struct kp_ring *r = atomic_load(&kp.rings); r; r = r->next) {
		seen_r += atomic_load_explicit(&r->io_seen_read,
					       memory_order_relaxed);
		seen_w += atomic_load_explicit(&r->io_seen_write,
					       memory_order_relaxed);
	}
	v[KP_IOS_SEEN_READ] = (int64_t)seen_r;
	v[KP_IOS_SEEN_WRITE] = (int64_t)seen_w;
	v[KP_IOS_SELF_WRITE] = (int64_t)atomic_load(&kp_self_wchar);
	v[KP_IOS_SELF_READ] = (int64_t)atomic_load(&kp_self_rchar);
	kp_ring_push_ext(0, KP_REC_IO_SUMMARY, 0, 0, v, NULL, 0);
	kp_busy_restore(busy);
	errno = saved;
}
