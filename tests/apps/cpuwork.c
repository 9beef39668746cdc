/* SPDX-License-Identifier: MIT */
/*
 * CPU sampling test program (tests/integ/test_cpu.py).
 *
 *   cpuwork split UNITS      60/30/10 % of UNITS work units in hot_a,
 *                            hot_b, hot_c; hot_a in a thread started after
 *                            a delay, hot_b + hot_c in a second one; prints
 *                            "tid TID cpu_ns N" per worker (its own
 *                            CLOCK_THREAD_CPUTIME_ID at its end), and
 *                            "tid TID hot_b_cpu_ns N" (the second one's
 *                            clock between hot_b and hot_c); each
 *                            allocates once first, then the first names
 *                            itself hot-a and main names the second
 *                            hot-bc (pthread_setname_np)
 *   cpuwork late N UNITS     N threads created one after the other, each
 *                            spinning UNITS in late_worker
 *   cpuwork blocking ROUNDS  a child writes to a pipe with pauses; the
 *                            parent does blocking reads and nanosleeps while
 *                            burning CPU in between; checks every byte and
 *                            counts EINTR from read (must be 0: SA_RESTART)
 *                            and from nanosleep (retried)
 *   cpuwork handler SIG|auto installs its own handler for kprof's signal
 *                            (auto: the highest free real-time signal at
 *                            that point), raises it, checks it ran
 *   cpuwork reset exec       a forked child sets every signal that is not
 *                            ignored to SIG_DFL, as git's run-command does
 *                            before exec, then execs "cpuwork clock 300";
 *                            the parent waits and prints "child N" (its
 *                            exit status, or -signal)
 *   cpuwork reset vexec      the same from a vfork child (python's
 *                            subprocess), which shares kprof's memory;
 *                            the parent then burns CPU
 *   cpuwork reset stay       sets kprof's signal (SIGRTMAX) to SIG_DFL,
 *                            burns CPU (a timer still firing would kill
 *                            the process: SIGRTMAX's default action) and
 *                            prints "alive"
 *   cpuwork clock MS         calls clock_gettime(CLOCK_MONOTONIC) for MS
 *                            ms: most of the time in the kernel's vDSO,
 *                            which has no file to symbolize from
 *   cpuwork temp N           N malloc(64)/free pairs in temp_loop, each
 *                            block freed at once (temporary allocations),
 *                            then N / 200 units of work in hot_a
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

/* The same work inline, so the time is self time of the caller. */
#define UNIT_INLINE(x)                                                  \
	for (int k_ = 0; k_ < 20000; k_++)                              \
		x = x * 6364136223846793005ul + 1442695040888963407ul

/* One work unit: a fixed amount of integer work. */
static __attribute__((noinline)) unsigned long unit(unsigned long x)
{
	for (int i = 0; i < 20000; i++)
		x = x * 6364136223846793005ul + 1442695040888963407ul;
	return x;
}

__attribute__((noinline)) void hot_a(long n)
{
	unsigned long x = 1;
	for (long i = 0; i < n; i++)
		UNIT_INLINE(x);
	sink = x;
}

__attribute__((noinline)) void hot_b(long n)
{
	unsigned long x = 2;
	for (long i = 0; i < n; i++)
		UNIT_INLINE(x);
	sink = x;
}

__attribute__((noinline)) void hot_c(long n)
{
	unsigned long x = 3;
	for (long i = 0; i < n; i++)
		UNIT_INLINE(x);
	sink = x;
}

static unsigned long long thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ull +
	       (unsigned long long)ts.tv_nsec;
}

static long units;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void report(void)
{
	pthread_mutex_lock(&out_lock);
	printf("tid %ld cpu_ns %llu\n", (long)syscall(SYS_gettid),
	       thread_cpu_ns());
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
}

static void *worker_a(void *arg)
{
	(void)arg;
	free(malloc(64)); /* an event first: kprof has the inherited name */
	pthread_setname_np(pthread_self(), "hot-a");
	hot_a(units * 60 / 100);
	report();
	return NULL;
}

static void *worker_bc(void *arg)
{
	(void)arg;
	free(malloc(64));
	hot_b(units * 30 / 100);
	unsigned long long b_ns = thread_cpu_ns();
	hot_c(units * 10 / 100);
	report();
	pthread_mutex_lock(&out_lock);
	printf("tid %ld hot_b_cpu_ns %llu\n", (long)syscall(SYS_gettid), b_ns);
	fflush(stdout);
	pthread_mutex_unlock(&out_lock);
	return NULL;
}

__attribute__((noinline)) void late_worker(long n)
{
	unsigned long x = 4;
	for (long i = 0; i < n; i++)
		UNIT_INLINE(x);
	sink = x;
}

static void *late_main(void *arg)
{
	late_worker((long)arg);
	report();
	return NULL;
}

static int split(long n)
{
	pthread_t a, b;
	units = n;
	if (pthread_create(&b, NULL, worker_bc, NULL))
		return 1;
	struct timespec d = { 0, 20000000 };
	nanosleep(&d, NULL);
	pthread_setname_np(b, "hot-bc"); /* another thread's name */
	if (pthread_create(&a, NULL, worker_a, NULL))
		return 1;
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	return 0;
}

static int late(int nthreads, long n)
{
	for (int i = 0; i < nthreads; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, late_main, (void *)n))
			return 1;
		pthread_join(t, NULL);
	}
	return 0;
}

__attribute__((noinline)) void burn(long n)
{
	unsigned long x = 5;
	for (long i = 0; i < n; i++)
		x ^= unit(x);
	sink = x;
}

static int blocking(int rounds)
{
	int p[2];
	if (pipe(p))
		return 1;
	pid_t pid = fork();
	if (pid == 0) {
		close(p[0]);
		for (int i = 0; i < rounds; i++) {
			struct timespec d = { 0, 3000000 };
			nanosleep(&d, NULL);
			unsigned char buf[64];
			for (int k = 0; k < 64; k++)
				buf[k] = (unsigned char)(i + k);
			if (write(p[1], buf, 64) != 64)
				_exit(1);
		}
		_exit(0);
	}
	close(p[1]);
	long got = 0, eintr = 0, sleep_eintr = 0;
	for (int i = 0; i < rounds; i++) {
		unsigned char buf[64];
		size_t have = 0;
		while (have < 64) {
			ssize_t k = read(p[0], buf + have, 64 - have);
			if (k < 0 && errno == EINTR) {
				eintr++;
				continue;
			}
			if (k <= 0) {
				fprintf(stderr, "read: %ld %s\n", (long)k,
					strerror(errno));
				return 1;
			}
			have += (size_t)k;
		}
		for (int k = 0; k < 64; k++)
			if (buf[k] != (unsigned char)(i + k)) {
				fprintf(stderr, "bad byte\n");
				return 1;
			}
		got += 64;
		burn(50);
		/* nanosleep is never restarted after a handler: EINTR is
		 * possible with any signal, so it is retried with the time
		 * left, as a correct program does; read must never see it */
		struct timespec d = { 0, 1000000 };
		while (nanosleep(&d, &d) != 0) {
			if (errno != EINTR) {
				fprintf(stderr, "nanosleep: %s\n",
					strerror(errno));
				return 1;
			}
			sleep_eintr++;
		}
	}
	printf("bytes %ld eintr %ld sleep_eintr %ld\n", got, eintr,
	       sleep_eintr);
	return 0;
}

static volatile sig_atomic_t handled;

static void on_sig(int sig)
{
	(void)sig;
	handled++;
}

static int handler(const char *which)
{
	int sig = 0;
	if (!strcmp(which, "auto")) {
		for (int s = SIGRTMAX; s >= SIGRTMIN && !sig; s--) {
			struct sigaction old;
			sigaction(s, NULL, &old);
			if (old.sa_handler == SIG_DFL &&
			    !(old.sa_flags & SA_SIGINFO))
				sig = s;
		}
	} else if (!strcmp(which, "max")) {
		sig = SIGRTMAX;
	} else {
		sig = atoi(which);
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sig;
	sigemptyset(&sa.sa_mask);
	if (sigaction(sig, &sa, NULL))
		return 1;
	burn(2000); /* CPU time, so a kprof timer would fire */
	raise(sig);
	printf("sig %d handled %d\n", sig, (int)handled);
	return handled == 1 ? 0 : 1;
}

static int reset(const char *how, const char *self)
{
	if (!strcmp(how, "stay")) {
		signal(SIGRTMAX, SIG_DFL);
		burn(2000);
		printf("alive\n");
		return 0;
	}
	burn(200);
	int v = !strcmp(how, "vexec");
	pid_t pid = v ? vfork() : fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		struct sigaction dfl, old;
		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		for (int sig = 1; sig < NSIG; sig++)
			if (sigaction(sig, NULL, &old) == 0 &&
			    old.sa_handler != SIG_IGN)
				sigaction(sig, &dfl, NULL);
		execl(self, self, "clock", "300", (char *)NULL);
		_exit(127);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	if (v)
		burn(2000);
	printf("child %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st));
	return 0;
}

static int clock_loop(long ms)
{
	struct timespec t0, t;
	long calls = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		clock_gettime(CLOCK_MONOTONIC, &t);
		calls++;
	} while ((t.tv_sec - t0.tv_sec) * 1000 +
		 (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
	printf("calls %ld\n", calls);
	return 0;
}

static void *volatile temp_sink;

static __attribute__((noinline)) void temp_loop(long n)
{
	for (long i = 0; i < n; i++) {
		void *p = malloc(64);
		temp_sink = p;
		free(p);
	}
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "temp")) {
		temp_loop(atol(argv[2]));
		hot_a(atol(argv[2]) / 200);
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "split"))
		return split(atol(argv[2]));
	if (argc >= 4 && !strcmp(argv[1], "late"))
		return late(atoi(argv[2]), atol(argv[3]));
	if (argc >= 3 && !strcmp(argv[1], "blocking"))
		return blocking(atoi(argv[2]));
	if (argc >= 3 && !strcmp(argv[1], "handler"))
		return handler(argv[2]);
	if (argc >= 3 && !strcmp(argv[1], "reset"))
		return reset(argv[2], argv[0]);
	if (argc >= 3 && !strcmp(argv[1], "clock"))
		return clock_loop(atol(argv[2]));
	fprintf(stderr, "usage: cpuwork split|late|blocking|handler|reset|clock "
		"...\n");
	return 2;
}
