/* SPDX-License-Identifier: MIT */
/*
 * Birth and death of a traced process: initialisation (lazily, on the first
 * interposed call, or in the constructor), fork, exec, exit, _exit, abort.
 *
 * Initialisation may run inside the first malloc of the process, before
 * libkprof's constructor: it does only what is safe there (resolve symbols,
 * read the environment, map rings, scan modules). The constructor creates
 * the trace file and starts the writer thread; until then events wait in
 * the rings (a ring that fills before the writer starts drops and counts).
 *
 * The trace ends with an END record written by the last thread out: an
 * on_exit handler after exit(), or the _exit/_Exit/abort wrappers. The
 * handler is registered by our constructor, which runs before
 * __libc_start_main registers the loader's fini, so exit() calls it last:
 * after the app's atexit handlers and every ELF destructor (frees made there
 * are recorded), and with the exit status. exec* wrappers flush first; the new image
 * starts a fresh trace. A setuid process (AT_SECURE) is never traced, nor
 * one whose program KOTOBA_PROFILE_PROGRAMS leaves out.
 */
#include "state.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

struct kp_state kp;
__thread struct kp_tls kp_tls __attribute__((tls_model("initial-exec")));

static int on_exit_registered;

extern char **environ;

static void init_clock(void)
{
	kp.use_tsc = kp_tsc_usable();
	if (kp.use_tsc) {
		kp_clock_pair(&kp.tsc0, &kp.mono0);
	} else {
		kp.mono0 = kp_mono_ns();
		kp.tsc0 = kp.mono0;
	}
	kp.wall0 = kp_wall_ns();
}

int kp_init_slow(const void *caller)
{
	int expect = KP_ST_UNINIT;
	if (!atomic_compare_exchange_strong(&kp.run, &expect, KP_ST_INIT))
		return atomic_load(&kp.run) == KP_ST_RUNNING;
	int saved = errno;
	uint8_t busy = kp_tls.busy;
	kp_tls.busy = 1;
	kp_real_resolve();
	if (getauxval(AT_SECURE)) {
		atomic_store(&kp.run, KP_ST_OFF);
		goto out;
	}
	if (!environ) {
		/* Too early: libc has not set up the environment yet. */
		atomic_store(&kp.run, KP_ST_UNINIT);
		goto out;
	}
	if (caller && kp_pc_in_libunwind(caller)) {
		/* libunwind's own I/O (the pipe it checks addresses with,
		 * made during its one-time set-up, under its lock) when
		 * another user of it, such as tcmalloc listed before
		 * libkprof.so in LD_PRELOAD, gets there first, inside its
		 * own locks: kprof's start sets libunwind up too, and would
		 * wait for that lock forever. It starts at a later call. */
		atomic_store(&kp.run, KP_ST_UNINIT);
		goto out;
	}
	kp.pid = (pid_t)syscall(SYS_getpid);
	kp.ppid = (pid_t)syscall(SYS_getppid);
	kp_warn_init();
	kp_config_load(&kp.cfg);
	if (!kp_config_program_wanted(&kp.cfg)) {
		/* Not a program KOTOBA_PROFILE_PROGRAMS names: loaded, it
		 * records nothing, makes no file and no thread; a program it
		 * execs decides for itself. */
		kp_mem_pass_all();
		atomic_store(&kp.run, KP_ST_OFF);
		goto out;
	}
	int owner = kp.cfg.memory ? kp_modules_malloc_owner(
					    kp.cfg.malloc_owner,
					    sizeof(kp.cfg.malloc_owner))
				  : 0;
	if (owner == 1)
		kp_warn("the program's malloc is the one in %s, which comes "
			"before libkprof.so (list libkprof.so first in "
			"LD_PRELOAD); allocations are not recorded",
			kp.cfg.malloc_owner);
	else if (owner == 2) /* rustc, with jemalloc linked in */
		kp_warn("the program has a malloc of its own (%s), which "
			"LD_PRELOAD cannot replace; allocations are not "
			"recorded", kp.cfg.malloc_owner);
	if (owner)
		kp.cfg.memory = 0;
	kp.mem_off = !kp.cfg.memory;
	if (kp.mem_off)
		kp_mem_pass_all();
	kp_side_on = kp.cfg.leak_scan && !kp.mem_off;
	init_clock();
	/* the group at start, read after the start's clock: a setpgid the
	 * header does not show comes after it, so its PGID record does */
	kp.pgid = (pid_t)syscall(SYS_getpgid, 0);
	if (kp_arena_init(&kp.alloc) != 0 || kp_stacktab_init() != 0 ||
	    kp_ring_init() != 0) {
		kp_warn("cannot set up recording; not profiling");
		atomic_store(&kp.run, KP_ST_OFF);
		goto out;
	}
	kp_modules_scan();
	kp_io_init();
	atomic_store(&kp.run, KP_ST_RUNNING);
out:
	kp_busy_restore(busy);
	errno = saved;
	return atomic_load(&kp.run) == KP_ST_RUNNING;
}

/* The app's threads as glibc counts them, without kprof's writer (see
 * "the app's last thread" below). */
static _Atomic long app_threads = 1;
static pthread_key_t app_key;
static int app_key_ok;

/* ---- fork ------------------------------------------------------------------ */

/*
 * The handlers may run more than once around one fork: a program that
 * runs the pthread_atfork handlers itself (Firefox's mozglue keeps them
 * and runs them around its own clone) and makes the child with clone()
 * or syscall(SYS_clone), which hook_clone.c wraps in them too. A second
 * prepare on a thread would take cycle_lock again, which that thread
 * holds (a deadlock). So each thread counts its prepares: the first takes
 * the locks, the parent handler that matches it releases them, and the
 * first child handler in a child does the child's work (the later ones,
 * its copy's count already 0, do nothing). Whether the first prepare
 * took the locks (kprof was recording) is kept too: the parent and child
 * handlers release what was taken even if recording stopped meanwhile.
 */
static __thread int fork_depth, fork_locked;

int kp_fork_nested(void)
{
	return fork_depth > 0;
}

void kp_fork_prepare(void)
{
	if (fork_depth++ || !kp_recording())
		return;
	fork_locked = 1;
	kp_tls.busy = 1;
	kp_leak_fork_prepare();
	kp_writer_fork_prepare();
	kp_modules_lock();
	kp_stacktab_lock();
	kp_qtext_lock();
	kp_pystack_lock();
	kp_spin_lock(&kp.shared_lock);
	kp_arena_lock();
}

void kp_fork_parent(void)
{
	if (!fork_depth || --fork_depth || !fork_locked)
		return;
	fork_locked = 0;
	kp_arena_unlock();
	kp_spin_unlock(&kp.shared_lock);
	kp_pystack_unlock();
	kp_qtext_unlock();
	kp_stacktab_unlock();
	kp_modules_unlock();
	kp_writer_fork_parent();
	kp_busy_leave();
}

void kp_fork_child(void)
{
	if (!fork_depth)
		return; /* done by an earlier child handler */
	fork_depth = 0;
	if (!fork_locked)
		return;
	fork_locked = 0;
	kp_arena_unlock();
	kp_pystack_unlock();
	kp_qtext_unlock();
	kp_stacktab_unlock();
	kp_modules_unlock();
	/* the parent is the process that forked, whose pid kp.pid still
	 * holds: getppid() names init (or a subreaper) when that parent
	 * has already exited, as a daemon's does right after the fork */
	kp.ppid = kp.pid;
	kp.pid = (pid_t)syscall(SYS_getpid);
	atomic_store(&app_threads, 1); /* the one that forked */
	init_clock(); /* the child's trace starts now */
	kp.pgid = (pid_t)syscall(SYS_getpgid, 0); /* (after: see init) */
	kp_ring_after_fork_child();
	kp_io_after_fork_child();
	kp_writer_after_fork_child();
	kp_unwind_after_fork_child();
	kp_cpu_after_fork_child();
	kp_busy_leave();
}

/* ---- the app's last thread ------------------------------------------------- */

/*
 * glibc ends a process when its count of threads falls to 0: the last
 * thread to exit (a main that called pthread_exit, then its workers) calls
 * exit(0). kprof's writer is one of those threads, so without this the
 * count stops at 1 and the process never ends. kprof keeps its own count
 * of the app's threads (main, and each one pthread_create makes) and a key
 * whose destructor runs as each of them exits, however it exits; the last
 * stops the writer (kp_writer_park) and glibc calls exit(0) on it, as it
 * would without kprof, with the app's fds and stdio as they were.
 */

/* Are the writer and `others` more threads all there is? (/proc/self/stat:
 * the threads, and the state of the leader, a zombie once main called
 * pthread_exit.) An unreadable file says no. */
static int threads_left(int others)
{
	char buf[1024];
	if (kp_read_small("/proc/self/stat", buf, sizeof(buf)) < 0)
		return 0;
	char *p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return 0;
	char state = p[2];
	/* after ") ": state (3rd field), then up to num_threads (20th) */
	long threads = -1;
	p += 2;
	for (int field = 3; field < 20 && p; field++) {
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (p)
		threads = strtol(p, NULL, 10);
	int leader = syscall(SYS_gettid) == kp.pid;
	return threads == 1 + others ||
	       (threads == 2 + others && state == 'Z' && !leader);
}

/* The writer's fallback, when a thread kprof did not count (made before
 * it started, or by a raw clone) was the app's last: no thread of the app
 * is left, so it is the writer that must let glibc end the process (by
 * returning; the app's fds are closed by then, so its unflushed stdio
 * output is lost, which is still better than a process that never ends).
 */
int kp_writer_alone(void)
{
	return atomic_load(&app_threads) <= 0 && syscall(SYS_getpid) == kp.pid &&
	       threads_left(0);
}

/* threads_left(others), looked at again for up to ~10 ms: a thread that
 * exited just before may still be there for a few microseconds (past its
 * destructors, or past the tid clear that ends pthread_join, on its way
 * out of the thread group). Keeps errno. */
static int await_threads_left(int others)
{
	int saved = errno, ok = 0;
	for (int i = 0; i < 20 && !(ok = threads_left(others)); i++) {
		struct timespec ts = { 0, 500000 };
		syscall(SYS_nanosleep, &ts, NULL);
	}
	errno = saved;
	return ok;
}

int kp_writer_step_out(void)
{
	/* a thread just joined may still be on its way out of the group */
	if (!kp_recording() || kp_tls.busy || syscall(SYS_getpid) != kp.pid ||
	    atomic_load(&app_threads) != 1 || !await_threads_left(1))
		return 0;
	kp_writer_park();
	/* the call (unshare, setns) counts the writer until it is gone */
	await_threads_left(0);
	return 1;
}

/* The key's destructor: this thread is exiting. */
static void app_thread_gone(void *arg)
{
	(void)arg;
	if (atomic_fetch_sub(&app_threads, 1) != 1 || !kp_recording() ||
	    syscall(SYS_getpid) != kp.pid)
		return;
	if (await_threads_left(1)) /* this one and the writer */
		kp_writer_park();
}

void kp_app_threads_add(int n)
{
	atomic_fetch_add(&app_threads, n);
	if (n > 0)
		kp_writer_unpark(); /* a thread made by the last one */
}

void kp_app_thread_start(void)
{
	if (app_key_ok)
		pthread_setspecific(app_key, (void *)1);
}

/* ---- start and finish ------------------------------------------------------ */

/* Write the last frame and END. Only the traced process itself (not a
 * vfork child sharing its memory) may do this. */
static void finish(int reason, int status)
{
	/* the program's registers, for the leak scan: a pointer it holds
	 * only in one is not lost */
	ucontext_t regs;
	int scan = kp.cfg.leak_scan &&
		   (reason == KP_END_EXIT || reason == KP_END__EXIT) &&
		   getcontext(&regs) == 0;
	if (syscall(SYS_getpid) != kp.pid)
		return;
	kp_cpu_at_exit();
	if (!kp_recording()) {
		kp_warn_flush(); /* the writer's, if it gave up */
		return;
	}
	int saved = errno;
	kp_io_finish();
	kp_tls.busy = 1;
	kp_unwind_report();
	atomic_store(&kp.run, KP_ST_OFF);
	if (scan)
		kp_leak_scan((uintptr_t)__builtin_frame_address(0),
			     (const uint64_t *)regs.uc_mcontext.gregs,
			     sizeof(regs.uc_mcontext.gregs) / 8);
	kp_writer_sync(1, reason, status);
	errno = saved;
}

static void on_exit_finish(int status, void *arg)
{
	(void)arg;
	finish(KP_END_EXIT, status);
}

__attribute__((constructor)) static void kp_ctor(void)
{
	if (!kp_ready())
		return;
	kp_tls.busy = 1;
	kp_pystack_init(); /* python3.11's frames, if this is python3.11 */
	pthread_atfork(kp_fork_prepare, kp_fork_parent, kp_fork_child);
	on_exit_registered = on_exit(on_exit_finish, NULL) == 0;
	app_key_ok = pthread_key_create(&app_key, app_thread_gone) == 0;
	kp_app_thread_start(); /* main */
	if (kp_writer_start() != 0) {
		atomic_store(&kp.run, KP_ST_OFF);
	} else {
		kp_cpu_start();
		if (kp.cfg.signals)
			kp_sig_fatal_install();
	}
	kp_busy_leave();
}

/* A fallback only: when the on_exit handler is registered it runs after
 * this destructor and finishes the trace with the exit status. */
__attribute__((destructor)) static void kp_dtor(void)
{
	if (!on_exit_registered)
		finish(KP_END_EXIT, 0);
}

KP_EXPORT void _exit(int status)
{
	kp_real_resolve();
	finish(KP_END__EXIT, status);
	kp_real._exit(status);
}

KP_EXPORT void _Exit(int status)
{
	kp_real_resolve();
	finish(KP_END__EXIT, status);
	kp_real._Exit(status);
}

/* The trace ends as the process will, of SIGABRT (abort, a failed
 * assert). */
static void finish_abort(void)
{
	kp_real_resolve();
	finish(KP_END_ABORT, 128 + SIGABRT);
}

/* A signal that kills the process by its default action is about to
 * (signals.c): the trace ends as the process will. SIGABRT is abort's,
 * raised inside libc (glibc's malloc checks). */
void kp_finish_signal(int sig)
{
	kp_real_resolve();
	finish(sig == SIGABRT ? KP_END_ABORT : KP_END_SIGNAL, 128 + sig);
}

KP_EXPORT void abort(void)
{
	finish_abort();
	kp_real.abort();
}

/*
 * A failed assert(3): glibc prints the message and calls abort inside
 * libc, where the abort wrapper above does not see it; the trace would
 * read as truncated. The program calls these through its PLT.
 */
KP_EXPORT void __assert_fail(const char *assertion, const char *file,
			     unsigned int line, const char *function)
{
	finish_abort();
	kp_real.assert_fail(assertion, file, line, function);
}

KP_EXPORT void __assert_perror_fail(int errnum, const char *file,
				    unsigned int line, const char *function)
{
	finish_abort();
	kp_real.assert_perror_fail(errnum, file, line, function);
}

KP_EXPORT void __assert(const char *assertion, const char *file, int line)
{
	finish_abort();
	kp_real.assert_bsd(assertion, file, line);
}

/*
 * daemon(3). glibc's forks and calls _exit inside libc, where no
 * interposer sees them: the parent's trace got no END (read as truncated,
 * "killed or crashed": tmux's server start, dnsmasq, ...). The same steps
 * through the calls kprof sees, as glibc 2.36 takes them: fork, the
 * parent _exit(0)s; setsid; chdir("/") unless nochdir; unless noclose,
 * /dev/null (if it is the null device) on 0, 1 and 2.
 */
KP_EXPORT int daemon(int nochdir, int noclose)
{
	kp_real_resolve();
	pid_t pid = fork();
	if (pid == -1)
		return -1;
	if (pid != 0) {
		finish(KP_END__EXIT, 0);
		kp_real._exit(0);
	}
	if (setsid() == -1)
		return -1;
	if (!nochdir)
		(void)chdir("/");
	if (noclose)
		return 0;
	struct stat st;
	int fd = open("/dev/null", O_RDWR);
	if (fd != -1 && fstat(fd, &st) == 0) {
		if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3)) {
			(void)dup2(fd, STDIN_FILENO);
			(void)dup2(fd, STDOUT_FILENO);
			(void)dup2(fd, STDERR_FILENO);
			if (fd > 2)
				(void)close(fd);
			return 0;
		}
		(void)close(fd);
		errno = ENODEV; /* no call failed */
		return -1;
	}
	int saved = errno; /* glibc's close here leaves errno alone */
	if (fd != -1)
		(void)close(fd);
	errno = saved;
	return -1;
}

/* ---- exec ------------------------------------------------------------------ */

/*
 * An exec of a path that does not exist fails: no need to end this trace
 * first. A PATH search that calls execve on each directory in turn
 * (python3's os.execvp, a shell's exec builtin) wrote an EXEC, an END and
 * a frame for every directory that lacks the program. Only a path with a
 * slash (glibc's execvp searches PATH inside, unseen) and only ENOENT or
 * ENOTDIR: they do not depend on the caller's IDs. A file that appears
 * between this check and the exec would leave the old image's trace
 * without its END (read as truncated).
 */
static int surely_missing(const char *path)
{
	if (!path || !strchr(path, '/'))
		return 0;
	int saved = errno;
	long rc = syscall(SYS_faccessat, AT_FDCWD, path, F_OK);
	int missing = rc < 0 && (errno == ENOENT || errno == ENOTDIR);
	errno = saved;
	return missing;
}

static void before_exec(const char *path)
{
	if (!kp_recording() || kp_tls.busy || syscall(SYS_getpid) != kp.pid ||
	    surely_missing(path))
		return;
	int saved = errno;
	kp_io_finish(); /* this image's I/O ends here if the exec succeeds */
	kp_tls.busy = 1;
	kp_writer_exec(path ? path : "");
	kp_busy_leave();
	errno = saved;
}

KP_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	kp_real_resolve();
	before_exec(path);
	return kp_real.execve(path, argv, envp);
}

KP_EXPORT int execv(const char *path, char *const argv[])
{
	kp_real_resolve();
	before_exec(path);
	return kp_real.execv(path, argv);
}

KP_EXPORT int execvp(const char *file, char *const argv[])
{
	kp_real_resolve();
	before_exec(file);
	return kp_real.execvp(file, argv);
}

KP_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	kp_real_resolve();
	before_exec(file);
	return kp_real.execvpe(file, argv, envp);
}

KP_EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	kp_real_resolve();
	before_exec("(fexecve)");
	return kp_real.fexecve(fd, argv, envp);
}

/* The execl* family: gather the variadic arguments into an argv. */
#define MAX_EXEC_ARGS 4096
#define GATHER_ARGS(first, ap, argv, n)                          \
	do {                                                     \
		argv[0] = (char *)(first);                       \
		n = 1;                                           \
		while (argv[n - 1] && n < MAX_EXEC_ARGS)         \
			argv[n++] = va_arg(ap, char *);          \
		if (argv[n - 1]) {                               \
			errno = E2BIG;                           \
			va_end(ap);                              \
			return -1;                               \
		}                                                \
	} while (0)

KP_EXPORT int execl(const char *path, const char *arg, ...)
{
	char *argv[MAX_EXEC_ARGS];
	int n;
	va_list ap;
	va_start(ap, arg);
	GATHER_ARGS(arg, ap, argv, n);
	va_end(ap);
	return execv(path, argv);
}

KP_EXPORT int execlp(const char *file, const char *arg, ...)
{
	char *argv[MAX_EXEC_ARGS];
	int n;
	va_list ap;
	va_start(ap, arg);
	GATHER_ARGS(arg, ap, argv, n);
	va_end(ap);
	return execvp(file, argv);
}

KP_EXPORT int execle(const char *path, const char *arg, ...)
{
	char *argv[MAX_EXEC_ARGS];
	int n;
	va_list ap;
	va_start(ap, arg);
	GATHER_ARGS(arg, ap, argv, n);
	char *const *envp = va_arg(ap, char *const *);
	va_end(ap);
	return execve(path, argv, envp);
}
