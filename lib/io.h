/* SPDX-License-Identifier: MIT */
/*
 * The kinds of the I/O extension records (record.h: KP_REC_IO, FD_OPEN,
 * FD_CLOSE): which operation, what kind of fd, how an fd appeared or went
 * away. Shared by the preload (which records them) and the analyzer.
 *
 * Two layers. The syscall layer (read, pwrite, fsync, ...) is what the app
 * asked the kernel for through libc's exported wrappers. The stdio layer
 * (fread, fwrite, fprintf, ...) is the app's buffered I/O: glibc's stdio
 * calls its own internal read/write, never the interposable ones, so the
 * bytes under a FILE appear once, as stdio events, and the syscalls it
 * makes underneath are not recorded. A FILE the app builds on its own
 * read/write (fopencookie) would be counted twice: totals add up the
 * syscall layer and the stdio layer separately (kp_io_op_layer()).
 *
 * Values are wire values: append only, never renumber.
 */
#ifndef KP_IO_H
#define KP_IO_H

enum kp_io_op {
	/* syscall layer */
	KP_IO_OP_READ = 0,
	KP_IO_OP_WRITE = 1,
	KP_IO_OP_PREAD = 2,
	KP_IO_OP_PWRITE = 3,
	KP_IO_OP_READV = 4,
	KP_IO_OP_WRITEV = 5,
	KP_IO_OP_PREADV = 6,
	KP_IO_OP_PWRITEV = 7,
	KP_IO_OP_LSEEK = 8,
	KP_IO_OP_FSYNC = 9,
	KP_IO_OP_FDATASYNC = 10,
	KP_IO_OP_SYNC_FILE_RANGE = 11,
	KP_IO_OP_MSYNC = 12,       /* fd -1: a mapping, not an fd */
	KP_IO_OP_FTRUNCATE = 13,
	KP_IO_OP_FALLOCATE = 14,   /* and posix_fallocate */
	KP_IO_OP_COPY_FILE_RANGE = 15, /* fd = out, req/ret bytes, off = out off */
	KP_IO_OP_SENDFILE = 16,    /* fd = out */
	/* waits (kp_io_op_is_wait): not I/O, recorded for the time a query
	 * spends waiting for a database lock */
	KP_IO_OP_LOCK = 17,        /* fcntl F_SETLKW / F_OFD_SETLKW, and a
				    * refused F_SETLK / F_OFD_SETLK (dur 0,
				    * it did not wait); req = lock
				    * type (F_RDLCK, F_WRLCK, F_UNLCK), off =
				    * l_start (as given, relative to l_whence) */
	KP_IO_OP_SLEEP = 18,       /* usleep, nanosleep, clock_nanosleep, sleep
				    * inside a database call (a busy handler's
				    * retry wait); fd -1, req = ns asked */
	/* syscall layer again: sockets */
	KP_IO_OP_SEND = 19,        /* send, sendto */
	KP_IO_OP_RECV = 20,        /* recv, recvfrom (and their __*_chk) */
	KP_IO_OP_SENDMSG = 21,     /* req = the bytes of its iovecs */
	KP_IO_OP_RECVMSG = 22,
	/* stdio layer */
	KP_IO_OP_FREAD = 32,
	KP_IO_OP_FWRITE = 33,
	KP_IO_OP_FGETS = 34,
	KP_IO_OP_FPUTS = 35,
	KP_IO_OP_GETDELIM = 36,    /* getline, getdelim */
	KP_IO_OP_FPRINTF = 37,     /* fprintf, vfprintf, __fprintf_chk */
	KP_IO_OP_FFLUSH = 38,
	KP_IO_OP_MAX = 38
};

/* What an fd is (FD_OPEN.fdkind), from fstat and /proc/self/fd. */
enum kp_fd_kind {
	KP_FDK_UNKNOWN = 0,
	KP_FDK_FILE = 1,   /* regular file */
	KP_FDK_PIPE = 2,   /* pipe or FIFO */
	KP_FDK_SOCKET = 3,
	KP_FDK_TTY = 4,    /* a terminal (pty or console) */
	KP_FDK_DEVICE = 5, /* other character or block device */
	KP_FDK_DIR = 6,
	KP_FDK_ANON = 7,   /* anon_inode: eventfd, epoll, timerfd, ... */
	KP_FDK_MAX = 7
};

/* How an fd appeared (FD_OPEN.kind). */
enum kp_fd_how {
	KP_FDH_OPEN = 0,   /* open, open64, __open_2, creat, ... */
	KP_FDH_OPENAT = 1,
	KP_FDH_DUP = 2,    /* dup, dup2, dup3, fcntl(F_DUPFD*): src = old fd */
	KP_FDH_PIPE = 3,
	KP_FDH_SOCKET = 4,
	KP_FDH_ACCEPT = 5,
	KP_FDH_MEMFD = 6,
	KP_FDH_LAZY = 7,   /* first seen in an I/O call: resolved then */
	KP_FDH_FOPEN = 8,  /* fopen, freopen (dur = the whole fopen) */
	KP_FDH_FDOPEN = 9, /* a FILE on an existing fd: no new fd */
	KP_FDH_MAX = 9
};

/* How an fd went away (FD_CLOSE.kind). */
enum kp_fd_close_how {
	KP_FDCH_CLOSE = 0,
	KP_FDCH_CLOSE_RANGE = 1, /* one record per known fd in the range */
	KP_FDCH_FCLOSE = 2,
	KP_FDCH_MAX = 2
};

/* KP_IO_OFF when there is no offset (pipes, sockets, stdio, unknown). */
#define KP_IO_NO_OFF (-1)

static inline const char *kp_io_op_name(unsigned op)
{
	static const char *const sys[] = {
		"read", "write", "pread", "pwrite", "readv", "writev",
		"preadv", "pwritev", "lseek", "fsync", "fdatasync",
		"sync_file_range", "msync", "ftruncate", "fallocate",
		"copy_file_range", "sendfile", "lock", "sleep", "send",
		"recv", "sendmsg", "recvmsg",
	};
	static const char *const std[] = {
		"fread", "fwrite", "fgets", "fputs", "getdelim", "fprintf",
		"fflush",
	};
	if (op < sizeof(sys) / sizeof(sys[0]))
		return sys[op];
	if (op >= KP_IO_OP_FREAD && op - KP_IO_OP_FREAD < sizeof(std) /
						   sizeof(std[0]))
		return std[op - KP_IO_OP_FREAD];
	return NULL;
}

/* A wait for a lock (lock, or sleep: a busy handler's retry), not I/O. */
static inline int kp_io_op_is_wait(unsigned op)
{
	return op == KP_IO_OP_LOCK || op == KP_IO_OP_SLEEP;
}

/* 1 = stdio layer, 0 = syscall layer. */
static inline int kp_io_op_layer(unsigned op)
{
	return op >= KP_IO_OP_FREAD;
}

/* Direction of an op: 'r' reads data, 'w' writes data, 's' syncs, 0 other. */
static inline char kp_io_op_dir(unsigned op)
{
	switch (op) {
	case KP_IO_OP_READ: case KP_IO_OP_PREAD: case KP_IO_OP_READV:
	case KP_IO_OP_PREADV: case KP_IO_OP_FREAD: case KP_IO_OP_FGETS:
	case KP_IO_OP_GETDELIM: case KP_IO_OP_RECV: case KP_IO_OP_RECVMSG:
		return 'r';
	case KP_IO_OP_WRITE: case KP_IO_OP_PWRITE: case KP_IO_OP_WRITEV:
	case KP_IO_OP_PWRITEV: case KP_IO_OP_FWRITE: case KP_IO_OP_FPUTS:
	case KP_IO_OP_FPRINTF: case KP_IO_OP_COPY_FILE_RANGE:
	case KP_IO_OP_SENDFILE: case KP_IO_OP_SEND: case KP_IO_OP_SENDMSG:
		return 'w';
	case KP_IO_OP_FSYNC: case KP_IO_OP_FDATASYNC:
	case KP_IO_OP_SYNC_FILE_RANGE: case KP_IO_OP_MSYNC:
		return 's';
	default:
		return 0;
	}
}

static inline const char *kp_fd_kind_name(unsigned k)
{
	static const char *const n[] = { "unknown", "file", "pipe", "socket",
					 "tty", "device", "dir", "anon" };
	return k <= KP_FDK_MAX ? n[k] : "unknown";
}

#endif
