/* SPDX-License-Identifier: MIT */
/*
 * The functions kprof wraps, resolved with dlsym(RTLD_NEXT) so that calls go
 * to whatever the app would have called without kprof (libc's malloc, or
 * the app's own jemalloc/tcmalloc), and raw syscalls for kprof's own I/O so
 * it never re-enters an interposer. dlsym may call calloc: while it runs,
 * kp_resolving sends allocations to the bootstrap pool (boot.c).
 */
#include "state.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct kp_real kp_real;
_Atomic int kp_resolving;

static void *next(const char *name)
{
	return dlsym(RTLD_NEXT, name);
}

void kp_real_resolve(void)
{
	static _Atomic int done;
	if (atomic_load_explicit(&done, memory_order_acquire))
		return;
	int saved = errno;
	atomic_store(&kp_resolving, 1);
	struct kp_real r;
	r.malloc = next("malloc");
	r.free = next("free");
	r.calloc = next("calloc");
	r.realloc = next("realloc");
	r.posix_memalign = next("posix_memalign");
	r.aligned_alloc = next("aligned_alloc");
	r.memalign = next("memalign");
	r.valloc = next("valloc");
	r.pvalloc = next("pvalloc");
	r.malloc_usable_size = next("malloc_usable_size");
	r._exit = next("_exit");
	r._Exit = next("_Exit");
	r.abort = next("abort");
	r.assert_fail = next("__assert_fail");
	r.assert_perror_fail = next("__assert_perror_fail");
	r.assert_bsd = next("__assert");
	r.execve = next("execve");
	r.execv = next("execv");
	r.execvp = next("execvp");
	r.execvpe = next("execvpe");
	r.fexecve = next("fexecve");
	r.pipe = next("pipe");
	r.pipe2 = next("pipe2");
	r.capset = next("capset");
	r.unshare = next("unshare");
	r.setns = next("setns");
	r.prctl = next("prctl");
	r.pthread_setname_np = next("pthread_setname_np");
	r.pthread_create = next("pthread_create");
	r.sigaction = next("sigaction");
	r.signal = next("signal");
	r.usleep = next("usleep");
	r.sleep = next("sleep");
	r.nanosleep = next("nanosleep");
	r.clock_nanosleep = next("clock_nanosleep");
	r.dlclose = (int (*)(void *))next("dlclose");
	r.clone = (int (*)(int (*)(void *), void *, int, void *, ...))
		next("clone");
	r.stat = next("stat");
	r.lstat = next("lstat");
	r.fstatat = next("fstatat");
	r.statx = next("statx");
	r.kill = next("kill");
	r.killpg = next("killpg");
	r.sigqueue = next("sigqueue");
	r.tgkill = next("tgkill");
	r.pidfd_send_signal = next("pidfd_send_signal");
	r.setpgid = next("setpgid");
	r.setpgrp = next("setpgrp");
	r.setsid = next("setsid");
	if (!r.malloc || !r.free || !r.calloc || !r.realloc) {
		/* Without these the app cannot run at all: say why once. */
		static const char msg[] =
			"kprof: cannot resolve the real allocator; aborting\n";
		kp_sys_write(2, msg, sizeof(msg) - 1);
		syscall(SYS_exit_group, 127);
	}
	kp_io_real_fill();
	kp_real = r;
	atomic_store(&kp_resolving, 0);
	atomic_store_explicit(&done, 1, memory_order_release);
	errno = saved;
}

pid_t kp_gettid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

size_t kp_readlink(const char *path, char *buf, size_t size)
{
	long k = syscall(SYS_readlinkat, AT_FDCWD, path, buf, size - 1);
	if (k < 0)
		k = 0;
	buf[k] = '\0';
	return (size_t)k;
}

long kp_read_small(const char *path, char *buf, size_t size)
{
	long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	long n = syscall(SYS_read, fd, buf, size - 1);
	syscall(SYS_close, fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	return n;
}

long kp_sys_write(int fd, const void *buf, size_t n)
{
	long r = syscall(SYS_write, fd, buf, n);
	if (r > 0)
		atomic_fetch_add_explicit(&kp_self_wchar, (uint64_t)r,
					  memory_order_relaxed);
	return r;
}

int kp_file_id(long fd, struct kp_file_id *id)
{
	struct stat st;
	if (fd < 0 || syscall(SYS_fstat, fd, &st) != 0)
		return -1;
	id->dev = (uint64_t)st.st_dev;
	id->ino = (uint64_t)st.st_ino;
	return 0;
}

int kp_fd_is(long fd, const struct kp_file_id *id)
{
	struct kp_file_id now;
	return kp_file_id(fd, &now) == 0 && now.dev == id->dev &&
	       now.ino == id->ino;
}
