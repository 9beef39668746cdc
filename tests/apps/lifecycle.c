/*
 * Process lifecycle under kprof (tests/integ/test_lifecycle.py). One mode
 * per run, argv[1]:
 *
 *   fork        no live block at the fork; then the child leaks 3 x 200
 *               bytes from leak_in_child() and exit(0)s; the parent waits,
 *               leaks 5 x 100 from leak_in_parent(), prints
 *               "parent=PID child=PID" and exits 0.
 *   forkfree    7 blocks of 30 bytes allocated, then fork; the child
 *               frees them (blocks its trace never saw allocated) and
 *               exit(0)s; the parent waits, frees its copies, prints
 *               "parent=PID child=PID" and exits 0.
 *   forkexec    fork; the child leaks 2 x 64 (leak_before_exec), then
 *               execv(argv[2], argv[2..]) (e.g. this app in mode "leak4",
 *               or /bin/true); the parent waits and prints
 *               "parent=PID child=PID child_status=N".
 *   leak4       leaks 4 x 50 from leak_after_exec(), exit 0.
 *   writeexec N PROG  N writes of a byte to /dev/null, then execv(PROG)
 *               (more events than one of the writer's cycles takes)
 *   mainexit    main leaks 5 x 100 (leak_in_parent), starts 2 threads and
 *               calls pthread_exit; each thread naps 50 ms, makes 1000
 *               malloc/free pairs, leaks 2 x 300 (leak_in_thread) and
 *               printf()s a line; the last one to end makes glibc call
 *               exit(0), which flushes stdout (a pipe: fully buffered).
 *               The one mode that uses stdio: its buffer is a block too.
 *   vforkexec PROG ARGS  leaks 5 x 100 (leak_in_parent); vfork, the child
 *               execv(PROG, PROG ARGS); vfork again, the child execv of a
 *               missing file, then _exit(127) (both children run on the
 *               parent's memory, and so on kprof's state, until then);
 *               posix_spawn(PROG, PROG ARGS); waits for each, leaks 6 x 33
 *               (leak_after_spawn) and prints "parent=PID child=PID
 *               failed=PID spawned=PID child_status=N failed_status=N
 *               spawned_status=N".
 *   threadexit  two threads allocate and free in a loop forever; once both
 *               have started (counted explicitly), a third thread calls
 *               exit(42) while they run; main waits in pthread_join.
 *   exit N      exit(N) from main.
 *   _exit       leaks 2 x 77 from leak_before_exit(), then _exit(7).
 *   assert      leaks 3 x 55 from leak_before_abort(), then fails an
 *               assert (glibc prints the message and aborts)
 *   abort       leaks 3 x 55 from leak_before_abort(), then abort()
 *               (core dumps off: RLIMIT_CORE 0).
 *   sleep       allocates N=2000 blocks (1000 freed, 1000 kept), prints
 *               "allocs=2000 frees=1000 ready", then sleeps 60 s (the test
 *               SIGKILLs it).
 *   sleeplate   the same after a 300 ms nap (kprof's writer is set up by
 *               then: without stacks, the allocations go into a run,
 *               which the sleep leaves open).
 *   closefrom   allocates, records the fds it sees >= 3 (kprof's trace),
 *               close_range(3, ~0U, 0), opens its own files app0..app2
 *               (which get fds 3..5), dup2s app0 onto every old fd number
 *               (so the trace's old number now names the app's file),
 *               writes known lines to them while allocating more (with
 *               pauses so kprof's writer runs in between), prints
 *               "allocs=A frees=F oldfds=N". Files stay open until exit.
 *   earlysig PATH  allocates 10 blocks, waits (up to 10 s) until the file
 *               PATH (kprof's trace) is not empty, then dies of SIGPIPE,
 *               as `seq | head -1`'s writer does, long before the first
 *               flush interval (the test sets a long one).
 *   segv        leaks 5 x 100 (leak_in_parent), then writes through a
 *               null pointer (core dumps off)
 *   sigdfl      what the app sees of the signals it left alone: prints
 *               "term=T int=I int2=J usr1=U got=G" (T: sigaction's answer
 *               for SIGTERM is SIG_DFL; I, J: signal(SIGINT, SIG_DFL)
 *               answers SIG_DFL, twice; U: after a handler of its own for
 *               SIGUSR1 ran (G times), SIG_DFL set again reads back as
 *               SIG_DFL), leaks 5 x 100 (leak_in_parent) and raises
 *               SIGUSR1, which kills it.
 *   forkkill [MS]  naps MS ms (default 50: kprof's clock is calibrated
 *               by then; 0: it is not), leaks 5 x 100 (leak_in_parent),
 *               forks; the child SIGKILLs itself at once, as gdb's probes
 *               of ptrace are killed; the parent waits and prints
 *               "parent=PID child=PID child_signal=N".
 *   killnow     leaks 5 x 100 (leak_in_parent) and SIGKILLs itself, long
 *               before kprof's first flush
 *   killyoung   keeps 1000 blocks of 16 bytes, naps 100 ms, keeps 1000
 *               more, naps 400 ms and SIGKILLs itself
 *   daemon PATH leaks 5 x 100 (leak_in_parent), daemon(0, 0); the daemon
 *               leaks 3 x 200 (leak_in_child), writes "parent=PID
 *               child=PID cwd=C null=N sid=S" to PATH (C: 1 if its
 *               directory is /, N: how many of fds 0..2 are /dev/null, S:
 *               1 if it leads its session) and exit(0)s.
 * No stdio (see leaky.c): snprintf + write.
 */
#undef NDEBUG
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void *sink[64];

static void say(const char *fmt, long a, long b, long c)
{
	char buf[256];
	int n = snprintf(buf, sizeof(buf), fmt, a, b, c);
	(void)!write(1, buf, (size_t)n);
}

static void nap_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0)
		;
}

__attribute__((noinline)) void leak_in_child(void)
{
	for (int i = 0; i < 3; i++)
		sink[i] = malloc(200);
}

__attribute__((noinline)) void leak_in_parent(void)
{
	for (int i = 0; i < 5; i++)
		sink[10 + i] = malloc(100);
}

__attribute__((noinline)) void leak_before_exec(void)
{
	for (int i = 0; i < 2; i++)
		sink[20 + i] = malloc(64);
}

__attribute__((noinline)) void leak_after_exec(void)
{
	for (int i = 0; i < 4; i++)
		sink[30 + i] = malloc(50);
}

__attribute__((noinline)) void leak_after_spawn(void)
{
	for (int i = 0; i < 6; i++)
		sink[56 + i] = malloc(33);
}

__attribute__((noinline)) void leak_in_thread(int k)
{
	for (int i = 0; i < 2; i++)
		sink[62 - 2 * k + i] = malloc(300);
}

__attribute__((noinline)) void leak_before_exit(void)
{
	for (int i = 0; i < 2; i++)
		sink[40 + i] = malloc(77);
}

__attribute__((noinline)) void leak_before_abort(void)
{
	for (int i = 0; i < 3; i++)
		sink[50 + i] = malloc(55);
}

static int mode_daemon(const char *path)
{
	pid_t parent = getpid();
	leak_in_parent();
	if (daemon(0, 0) != 0)
		return 2;
	leak_in_child();
	char cwd[16], buf[256], tmp[4096];
	int null = 0;
	struct stat st;
	for (int fd = 0; fd < 3; fd++)
		null += fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) &&
			st.st_rdev == makedev(1, 3);
	int n = snprintf(buf, sizeof(buf),
			 "parent=%ld child=%ld cwd=%d null=%d sid=%d\n",
			 (long)parent, (long)getpid(),
			 getcwd(cwd, sizeof(cwd)) && !strcmp(cwd, "/"), null,
			 getsid(0) == getpid());
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, buf, (size_t)n) != n || close(fd) != 0 ||
	    rename(tmp, path) != 0)
		return 3;
	exit(0);
}

static int mode_fork(void)
{
	for (int i = 0; i < 100; i++)
		free(malloc((size_t)i + 1));
	pid_t c = fork();
	if (c < 0)
		return 2;
	if (c == 0) {
		for (int i = 0; i < 10; i++)
			free(malloc(1000));
		leak_in_child();
		exit(0);
	}
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 3;
	leak_in_parent();
	say("parent=%ld child=%ld%.0ld\n", (long)getpid(), (long)c, 0);
	return 0;
}

static int mode_forkfree(void)
{
	void *b[7];
	for (int i = 0; i < 7; i++)
		b[i] = malloc(30);
	pid_t c = fork();
	if (c < 0)
		return 2;
	for (int i = 0; i < 7; i++)
		free(b[i]); /* the parent's, and in the child its copies */
	if (c == 0)
		exit(0);
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 3;
	say("parent=%ld child=%ld%.0ld\n", (long)getpid(), (long)c, 0);
	return 0;
}

static int mode_forkexec(char **argv)
{
	pid_t c = fork();
	if (c < 0)
		return 2;
	if (c == 0) {
		leak_before_exec();
		execv(argv[2], argv + 2);
		_exit(127);
	}
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st))
		return 3;
	say("parent=%ld child=%ld child_status=%ld\n", (long)getpid(), (long)c,
	    WEXITSTATUS(st));
	return 0;
}

/* The exit status of child c, or -1. */
static long status_of(pid_t c)
{
	int st;
	if (c <= 0 || waitpid(c, &st, 0) != c || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

static int mode_vforkexec(char **argv)
{
	leak_in_parent();
	pid_t c = vfork();
	if (c == 0) {
		execv(argv[2], argv + 2);
		_exit(127);
	}
	long cs = status_of(c);
	pid_t f = vfork();
	if (f == 0) {
		char *bad[] = { "/nonexistent-kprof-test/x", NULL };
		execv(bad[0], bad);
		_exit(127);
	}
	long fs = status_of(f);
	pid_t s;
	if (posix_spawn(&s, argv[2], NULL, NULL, argv + 2, environ))
		return 2;
	long ss = status_of(s);
	leak_after_spawn();
	say("parent=%ld child=%ld failed=%ld ", (long)getpid(), (long)c,
	    (long)f);
	say("spawned=%ld child_status=%ld failed_status=%ld ", (long)s, cs,
	    fs);
	say("spawned_status=%ld\n", ss, 0, 0);
	return 0;
}

static void *mainexit_worker(void *arg)
{
	int k = (int)(long)arg;
	nap_ms(50);
	for (int i = 0; i < 1000; i++)
		free(malloc(16 + (size_t)i % 100));
	leak_in_thread(k);
	printf("thread %d done\n", k);
	return NULL;
}

static int mode_mainexit(void)
{
	leak_in_parent();
	pthread_t t;
	for (long k = 0; k < 2; k++)
		if (pthread_create(&t, NULL, mainexit_worker, (void *)k) != 0)
			return 2;
	printf("main leaves first\n");
	pthread_exit(NULL);
}

static int started;

static void *spinner(void *arg)
{
	(void)arg;
	__atomic_fetch_add(&started, 1, __ATOMIC_SEQ_CST);
	for (unsigned i = 0;; i++)
		free(malloc(16 + i % 100));
	return NULL;
}

static void *exiter(void *arg)
{
	(void)arg;
	while (__atomic_load_n(&started, __ATOMIC_SEQ_CST) < 2)
		sched_yield();
	for (int i = 0; i < 1000; i++)
		free(malloc(64));
	exit(42);
}

static int mode_threadexit(void)
{
	pthread_t a, b, e;
	pthread_create(&a, NULL, spinner, NULL);
	pthread_create(&b, NULL, spinner, NULL);
	pthread_create(&e, NULL, exiter, NULL);
	pthread_join(e, NULL); /* never returns: exiter calls exit(42) */
	return 1;
}

static int mode_sleep(int late)
{
	if (late)
		nap_ms(300);
	for (int i = 0; i < 2000; i++) {
		void *p = malloc(100 + (size_t)i % 50);
		if (i % 2)
			free(p);
		else if (i / 2 < 64)
			sink[i / 2] = p; /* the rest leak: unreachable */
	}
	say("allocs=%ld frees=%ld ready%.0ld\n", 2000, 1000, 0);
	nap_ms(60000);
	return 0;
}

static int mode_closefrom(void)
{
	long allocs = 0, frees = 0;
	for (int i = 0; i < 500; i++) {
		free(malloc(100));
		allocs++, frees++;
	}
	/* kprof's fds (and nothing else: stdin/out/err are 0..2) */
	int old[64], nold = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 2;
	allocs++; /* opendir mallocs its DIR */
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] != '.' && fd >= 3 && fd != dirfd(d) && nold < 64)
			old[nold++] = fd;
	}
	closedir(d);
	frees++;
	nap_ms(150); /* let the writer run: the trace has frames already */
	syscall(436 /* close_range */, 3, ~0U, 0);

	int fds[3];
	char name[16];
	for (int i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "app%d", i);
		fds[i] = open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fds[i] != 3 + i)
			return 4;
	}
	for (int i = 0; i < nold; i++)
		if (old[i] > 5 && dup2(fds[0], old[i]) != old[i])
			return 5;
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 3; i++) {
			char line[64];
			int n = snprintf(line, sizeof(line), "file %d line %d\n", i, round);
			if (write(fds[i], line, (size_t)n) != n)
				return 6;
		}
		for (int i = 0; i < 1000; i++) {
			free(malloc(200));
			allocs++, frees++;
		}
		nap_ms(120); /* > FLUSH_MS: the writer flushes between rounds */
	}
	say("allocs=%ld frees=%ld oldfds=%ld\n", allocs, frees, nold);
	return 0;
}

static int mode_earlysig(const char *path)
{
	for (int i = 0; i < 10; i++)
		sink[30 + i] = malloc(32);
	struct stat st;
	for (int i = 0; i < 1000; i++) {
		if (stat(path, &st) == 0 && st.st_size > 0)
			break;
		nap_ms(10);
	}
	signal(SIGPIPE, SIG_DFL);
	raise(SIGPIPE);
	return 1;
}

static volatile int usr1_got;

static void on_usr1(int sig)
{
	(void)sig;
	usr1_got++;
}

static int mode_sigdfl(void)
{
	struct sigaction a, mine, dfl, back;
	long term = sigaction(SIGTERM, NULL, &a) == 0 &&
		    a.sa_handler == SIG_DFL && !(a.sa_flags & SA_SIGINFO);
	long int1 = signal(SIGINT, SIG_DFL) == SIG_DFL;
	long int2 = signal(SIGINT, SIG_DFL) == SIG_DFL;
	memset(&mine, 0, sizeof(mine));
	mine.sa_handler = on_usr1;
	sigaction(SIGUSR1, &mine, NULL);
	raise(SIGUSR1);
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGUSR1, &dfl, &back);
	long usr1 = back.sa_handler == on_usr1 &&
		    sigaction(SIGUSR1, NULL, &a) == 0 && a.sa_handler == SIG_DFL;
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "term=%ld int=%ld int2=%ld usr1=%ld "
			 "got=%d\n", term, int1, int2, usr1, usr1_got);
	(void)!write(1, buf, (size_t)n);
	leak_in_parent();
	raise(SIGUSR1);
	return 1;
}

static int mode_forkkill(long nap)
{
	nap_ms(nap);
	leak_in_parent();
	pid_t pid = fork();
	if (pid < 0)
		return 2;
	if (pid == 0) {
		kill(getpid(), SIGKILL);
		_exit(3); /* not reached */
	}
	int st = 0;
	if (waitpid(pid, &st, 0) != pid)
		return 4;
	say("parent=%ld child=%ld child_signal=%ld\n", (long)getpid(),
	    (long)pid, WIFSIGNALED(st) ? (long)WTERMSIG(st) : -1L);
	return 0;
}

int main(int argc, char **argv)
{
	const char *m = argc > 1 ? argv[1] : "";
	if (!strcmp(m, "daemon") && argc > 2)
		return mode_daemon(argv[2]);
	if (!strcmp(m, "fork"))
		return mode_fork();
	if (!strcmp(m, "forkfree"))
		return mode_forkfree();
	if (!strcmp(m, "forkexec") && argc > 2)
		return mode_forkexec(argv);
	if (!strcmp(m, "mainexit"))
		return mode_mainexit();
	if (!strcmp(m, "vforkexec") && argc > 2)
		return mode_vforkexec(argv);
	if (!strcmp(m, "writeexec") && argc > 3) {
		int fd = open("/dev/null", O_WRONLY);
		for (int i = atoi(argv[2]); i > 0; i--)
			if (write(fd, "x", 1) != 1)
				return 2;
		execv(argv[3], argv + 3);
		return 3;
	}
	if (!strcmp(m, "leak4")) {
		leak_after_exec();
		return 0;
	}
	if (!strcmp(m, "threadexit"))
		return mode_threadexit();
	if (!strcmp(m, "exit") && argc > 2)
		exit(atoi(argv[2]));
	if (!strcmp(m, "_exit")) {
		leak_before_exit();
		_exit(7);
	}
	if (!strcmp(m, "assert")) {
		struct rlimit no = { 0, 0 };
		setrlimit(RLIMIT_CORE, &no);
		leak_before_abort();
		assert(argc == 42);
	}
	if (!strcmp(m, "abort")) {
		struct rlimit rl = { 0, 0 };
		setrlimit(RLIMIT_CORE, &rl);
		leak_before_abort();
		abort();
	}
	if (!strcmp(m, "sleep") || !strcmp(m, "sleeplate"))
		return mode_sleep(!strcmp(m, "sleeplate"));
	if (!strcmp(m, "closefrom"))
		return mode_closefrom();
	if (!strcmp(m, "forkkill"))
		return mode_forkkill(argc > 2 ? atol(argv[2]) : 50);
	if (!strcmp(m, "killyoung")) {
		static void *keep[2000];
		for (int i = 0; i < 2000; i++) {
			if (i == 1000)
				nap_ms(100);
			keep[i] = malloc(16);
		}
		nap_ms(400);
		kill(getpid(), SIGKILL);
	}
	if (!strcmp(m, "killnow")) {
		leak_in_parent();
		kill(getpid(), SIGKILL);
	}
	if (!strcmp(m, "earlysig") && argc > 2)
		return mode_earlysig(argv[2]);
	if (!strcmp(m, "segv")) {
		struct rlimit no = { 0, 0 };
		setrlimit(RLIMIT_CORE, &no);
		leak_in_parent();
		*(volatile int *)sink[63] = 1; /* sink[63] is NULL */
	}
	if (!strcmp(m, "sigdfl"))
		return mode_sigdfl();
	say("usage: lifecycle MODE%.0ld%.0ld%.0ld\n", 0, 0, 0);
	return 64;
}
