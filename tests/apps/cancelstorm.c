/*
 * Threads cancelled while they allocate (tests/integ/test_cancel.py):
 * ROUNDS rounds of PER_ROUND threads. Each leaks one 48-byte block from
 * leak_one(), then loops: malloc a block into one of 8 slots (freeing the
 * one there), write 1 byte to /dev/null (a cancellation point, where
 * kprof's hook waits in the real write). Main lets them run 0.2 to 2 ms,
 * cancels them all, and joins them; each thread's cleanup handler frees
 * its slots. So every block but the leaked ones is freed, whichever
 * instruction a thread was at, kprof's hooks included.
 *   cancelstorm [rounds=150]
 * Prints "threads=T cancelled=C allocs=A frees=F" (its own calls).
 *   cancelstorm exit
 * A thread that main has cancelled, its cancellation still pending (it
 * met no cancellation point yet), calls exit(7): the process ends with
 * status 7, whatever exit handlers (kprof's) wait for on the way.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PER_ROUND 6
#define SLOTS 8

struct worker {
	pthread_t th;
	void *slot[SLOTS];
	long idx, allocs, frees;
};

static int devnull;
static void *leaked[100000];

__attribute__((noinline)) static void *leak_one(void)
{
	return malloc(48);
}

static void cleanup(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < SLOTS; i++)
		if (w->slot[i]) {
			free(w->slot[i]);
			w->slot[i] = NULL;
			w->frees++;
		}
}

static void *work(void *arg)
{
	struct worker *w = arg;
	leaked[w->idx] = leak_one();
	w->allocs++;
	pthread_cleanup_push(cleanup, w);
	for (unsigned i = 0;; i++) {
		unsigned s = i % SLOTS;
		if (w->slot[s]) {
			free(w->slot[s]);
			w->slot[s] = NULL;
			w->frees++;
		}
		w->slot[s] = malloc(16 + i % 100);
		w->allocs++;
		if (write(devnull, "c", 1) != 1)
			break;
	}
	pthread_cleanup_pop(1);
	return NULL;
}

static atomic_int cancel_sent;

static void *exiter(void *arg)
{
	(void)arg;
	void *p = malloc(100);
	while (!atomic_load(&cancel_sent))
		; /* no cancellation point */
	free(p);
	exit(7);
}

static int cancel_then_exit(void)
{
	pthread_t th;
	if (pthread_create(&th, NULL, exiter, NULL) != 0)
		return 3;
	pthread_cancel(th);
	atomic_store(&cancel_sent, 1);
	pthread_join(th, NULL); /* exit(7) ends the process first */
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "exit"))
		return cancel_then_exit();
	int rounds = argc > 1 ? atoi(argv[1]) : 150;
	if (rounds < 1 || rounds * PER_ROUND > 100000)
		return 2;
	devnull = open("/dev/null", O_WRONLY);
	if (devnull < 0)
		return 2;
	static struct worker w[PER_ROUND];
	long allocs = 0, frees = 0, cancelled = 0, n = 0;
	unsigned seed = 1;
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < PER_ROUND; i++) {
			w[i] = (struct worker){ .idx = n++ };
			if (pthread_create(&w[i].th, NULL, work, &w[i]) != 0)
				return 3;
		}
		seed = seed * 1103515245 + 12345;
		usleep(200 + (seed >> 16) % 1800);
		for (int i = 0; i < PER_ROUND; i++)
			pthread_cancel(w[i].th);
		for (int i = 0; i < PER_ROUND; i++) {
			void *res;
			pthread_join(w[i].th, &res);
			cancelled += res == PTHREAD_CANCELED;
			allocs += w[i].allocs;
			frees += w[i].frees;
		}
	}
	printf("threads=%ld cancelled=%ld allocs=%ld frees=%ld\n", n, cancelled,
	       allocs, frees);
	return 0;
}
