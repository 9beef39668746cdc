/*
 * Signal handlers that run inside kprof's hooks (tests/integ/test_sighook.py):
 * WORKERS threads loop over malloc, free and a 1-byte write() to
 * /dev/null, while a signaller thread sends each of them SIGUSR1 with
 * pthread_kill as fast as it can. The handler writes 1 byte to /dev/null
 * (async-signal-safe, so it may interrupt anything, kprof's malloc hook
 * included), and, when the worker it interrupts is not inside malloc or
 * free (its own flag says so), mallocs a block that the worker frees
 * later. A profiler that lets a call made inside its hook pass through
 * unrecorded loses these events. Each worker goes on past ITERS until
 * it has had 2,000 signals.
 *   sighook [workers=2] [iters=200000]
 * Prints "allocs=A frees=F writes=W signals=S" (the app's own counts:
 * malloc/free calls and write() calls of the workers and their handlers;
 * every block is freed).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAXW 8
#define KEEP 64
#define MINSIG 2000

struct worker {
	pthread_t th;
	long iters;
	volatile sig_atomic_t in_malloc; /* the worker is in malloc or free */
	volatile sig_atomic_t done;      /* its handler allocates no more */
	void *volatile kept[KEEP];       /* the handler's blocks */
	volatile sig_atomic_t nkept;
	long allocs, frees, writes;      /* the worker's own */
	volatile long sig_allocs, sig_writes, signals; /* its handler's */
};

static struct worker workers[MAXW];
static __thread struct worker *self;
static int devnull;
static atomic_int running, sending;

static void on_usr1(int sig)
{
	(void)sig;
	struct worker *w = self;
	if (!w)
		return;
	int saved = errno;
	w->signals++;
	if (write(devnull, "s", 1) == 1)
		w->sig_writes++;
	if (!w->in_malloc && !w->done && w->nkept < KEEP) {
		void *p = malloc(24 + (size_t)w->nkept);
		if (p) {
			w->kept[w->nkept] = p;
			w->nkept = w->nkept + 1;
			w->sig_allocs++;
		}
	}
	errno = saved;
}

/* Frees the handler's blocks (with SIGUSR1 blocked: the handler appends). */
static void drain(struct worker *w)
{
	sigset_t s, old;
	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &s, &old);
	w->in_malloc = 1;
	for (int i = 0; i < w->nkept; i++) {
		free(w->kept[i]);
		w->frees++;
	}
	w->nkept = 0;
	w->in_malloc = 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	self = w;
	void *slot[16] = {0};
	while (!atomic_load(&sending))
		sched_yield();
	/* iters, and on until 2,000 signals came (the signaller may get
	 * little of 2 cores) */
	for (long i = 0; i < w->iters || w->signals < MINSIG; i++) {
		unsigned k = (unsigned)i % 16;
		w->in_malloc = 1;
		if (slot[k]) {
			free(slot[k]);
			w->frees++;
		}
		slot[k] = malloc(16 + (size_t)(i % 200));
		w->allocs++;
		w->in_malloc = 0;
		if (i % 4 == 0 && write(devnull, "w", 1) == 1)
			w->writes++;
		if (w->nkept >= KEEP / 2)
			drain(w);
	}
	w->in_malloc = 1;
	for (unsigned k = 0; k < 16; k++)
		if (slot[k]) {
			free(slot[k]);
			w->frees++;
		}
	w->in_malloc = 0;
	w->done = 1;
	drain(w);
	return NULL;
}

static void *signaller(void *arg)
{
	int n = *(int *)arg;
	atomic_store(&sending, 1);
	while (atomic_load(&running))
		for (int i = 0; i < n; i++) {
			pthread_kill(workers[i].th, SIGUSR1);
			for (volatile int d = 0; d < 200; d++)
				;
		}
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 2;
	long iters = argc > 2 ? atol(argv[2]) : 200000;
	if (n < 1 || n > MAXW)
		return 2;
	devnull = open("/dev/null", O_WRONLY);
	if (devnull < 0)
		return 2;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	atomic_store(&running, 1);
	for (int i = 0; i < n; i++) {
		workers[i].iters = iters;
		pthread_create(&workers[i].th, NULL, work, &workers[i]);
	}
	pthread_t sig;
	pthread_create(&sig, NULL, signaller, &n);
	for (int i = 0; i < n; i++)
		pthread_join(workers[i].th, NULL);
	atomic_store(&running, 0);
	pthread_join(sig, NULL);
	long allocs = 0, frees = 0, writes = 0, signals = 0;
	for (int i = 0; i < n; i++) {
		struct worker *w = &workers[i];
		allocs += w->allocs + w->sig_allocs;
		frees += w->frees;
		writes += w->writes + w->sig_writes;
		signals += w->signals;
	}
	printf("allocs=%ld frees=%ld writes=%ld signals=%ld\n", allocs, frees,
	       writes, signals);
	return 0;
}
