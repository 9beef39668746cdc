/*
 * What a program sees of its own signal handlers (tests/integ/test_sighook.py
 * runs it with and without kprof and compares every line): kprof puts a
 * dispatcher of its own in front of them (preload/signals.c), and none of
 * that may show. Queries through sigaction and signal, the arguments a
 * handler gets (siginfo, ucontext, a sigqueue value), SA_RESETHAND,
 * SA_NODEFER, SA_ONSTACK, SIG_IGN, and real-time signals sent to a thread
 * that allocates and writes all the while (some land in kprof's hooks and
 * are delivered again): none merged, none lost, each with its value.
 *   sigapi [rt_signals=20000]
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t got1, got2, gotinfo, depth, maxdepth, onalt;
static volatile int info_code, info_value, info_uc;
static char *alt_lo;

static void h1(int sig) { (void)sig; got1++; }
static void h2(int sig) { (void)sig; got2++; }

static void h3(int sig, siginfo_t *si, void *uc)
{
	gotinfo++;
	info_code = si->si_signo == sig ? si->si_code : -999;
	info_value = si->si_value.sival_int;
	info_uc = uc != NULL;
}

static void nodefer(int sig)
{
	depth++;
	if (depth > maxdepth)
		maxdepth = depth;
	if (depth < 3)
		raise(sig); /* comes in at once: SA_NODEFER */
	depth--;
}

static void on_alt(int sig)
{
	char here;
	(void)sig;
	onalt = &here >= alt_lo && &here < alt_lo + SIGSTKSZ * 4;
}

static const char *name(void *h)
{
	return h == (void *)SIG_DFL   ? "SIG_DFL"
	       : h == (void *)SIG_IGN ? "SIG_IGN"
	       : h == (void *)h1      ? "h1"
	       : h == (void *)h2      ? "h2"
	       : h == (void *)h3      ? "h3"
	       : h == (void *)nodefer ? "nodefer"
				      : "other";
}

static void show(const char *what, int sig)
{
	struct sigaction o;
	memset(&o, 0, sizeof o);
	sigaction(sig, NULL, &o);
	printf("%s: %s flags=%#x mask_usr2=%d\n", what,
	       name((void *)o.sa_handler), (unsigned)o.sa_flags,
	       sigismember(&o.sa_mask, SIGUSR2));
}

/* A plain handler for sig, with flags and an empty mask. */
static void install(int sig, void (*h)(int), int flags)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = h;
	sa.sa_flags = flags;
	sigaction(sig, &sa, NULL);
}

/* ---- real-time signals to a busy thread --------------------------------- */

static atomic_int rt_stop, rt_ready;
static volatile long rt_got, rt_sum, rt_bad;

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_code != SI_QUEUE || si->si_pid != getpid())
		rt_bad++;
	rt_got++;
	rt_sum += si->si_value.sival_int;
}

static void *churn(void *arg)
{
	int fd = *(int *)arg;
	void *keep[8] = {0};
	atomic_store(&rt_ready, 1);
	for (unsigned i = 0; !atomic_load(&rt_stop); i++) {
		free(keep[i % 8]);
		keep[i % 8] = malloc(32 + i % 64);
		if (i % 4 == 0 && write(fd, "x", 1) != 1)
			rt_bad++;
	}
	for (int i = 0; i < 8; i++)
		free(keep[i]);
	return NULL;
}

int main(int argc, char **argv)
{
	long nrt = argc > 1 ? atol(argv[1]) : 20000;
	struct sigaction sa, old;
	setvbuf(stdout, NULL, _IOLBF, 0);

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = h1;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	sigaction(SIGUSR1, &sa, &old);
	printf("first: old %s\n", name((void *)old.sa_handler));
	show("h1 installed", SIGUSR1);
	raise(SIGUSR1);
	printf("h1 ran %d\n", (int)got1);

	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = h3;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	memset(&old, 0, sizeof old);
	sigaction(SIGUSR1, &sa, &old);
	printf("h3 replaces: old %s flags=%#x\n", name((void *)old.sa_handler),
	       (unsigned)old.sa_flags);
	show("h3 installed", SIGUSR1);
	raise(SIGUSR1);
	printf("h3 ran %d: code=%d uc=%d\n", (int)gotinfo, info_code, info_uc);
	sigqueue(getpid(), SIGUSR1, (union sigval){ .sival_int = 4242 });
	printf("h3 ran %d: code=%d value=%d\n", (int)gotinfo, info_code,
	       info_value);

	printf("signal: old %s\n", name((void *)signal(SIGUSR2, h1)));
	printf("signal: old %s\n", name((void *)signal(SIGUSR2, h2)));
	show("signal h2", SIGUSR2);
	raise(SIGUSR2);
	printf("h2 ran %d, h1 %d\n", (int)got2, (int)got1);
	printf("signal: old %s\n", name((void *)signal(SIGUSR2, SIG_IGN)));
	raise(SIGUSR2);
	printf("ignored: h2 ran %d\n", (int)got2);
	show("ignored", SIGUSR2);

	install(SIGHUP, h2, SA_RESETHAND);
	show("resethand", SIGHUP);
	raise(SIGHUP);
	printf("resethand: h2 ran %d\n", (int)got2);
	show("after one", SIGHUP);

	install(SIGURG, nodefer, SA_NODEFER);
	raise(SIGURG);
	printf("nodefer: depth %d\n", (int)maxdepth);

	stack_t ss;
	alt_lo = malloc(SIGSTKSZ * 4);
	ss.ss_sp = alt_lo;
	ss.ss_size = SIGSTKSZ * 4;
	ss.ss_flags = 0;
	sigaltstack(&ss, NULL);
	install(SIGWINCH, on_alt, SA_ONSTACK);
	raise(SIGWINCH);
	printf("onstack: %d\n", (int)onalt);
	ss.ss_flags = SS_DISABLE;
	sigaltstack(&ss, NULL);
	free(alt_lo);

	/* real-time signals queue: every one sent must come, with its value */
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_rt;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGRTMIN + 1, &sa, NULL);
	int fd = open("/dev/null", O_WRONLY);
	pthread_t th;
	pthread_create(&th, NULL, churn, &fd);
	while (!atomic_load(&rt_ready))
		;
	long sum = 0;
	for (long i = 0; i < nrt; i++) {
		int v = (int)(i % 1000);
		while (pthread_sigqueue(th, SIGRTMIN + 1,
					(union sigval){ .sival_int = v }) != 0)
			usleep(100); /* the queue is full: let it drain */
		sum += v;
	}
	for (int w = 0; rt_got < nrt && w < 10000; w++)
		usleep(1000); /* 10 s at most: a lost one shows in the count */
	atomic_store(&rt_stop, 1);
	pthread_join(th, NULL);
	printf("rt: sent %ld got %ld sum %s bad %ld\n", nrt, (long)rt_got,
	       rt_sum == sum ? "ok" : "wrong", (long)rt_bad);
	return 0;
}
