/*
 * Blocks that cross threads (tests/integ/test_handoff.py): PRODUCERS
 * threads each malloc ITERS blocks and hand them to the main thread
 * through a single-producer queue of their own; main frees each one and
 * answers with a block of its own, which the producer frees. Freed blocks
 * go back to the arena they came from once a thread cache is full, so
 * addresses keep moving between threads both ways: a FREE recorded on one
 * thread and the next ALLOC of that address on another, a few hundred ns
 * apart. The analyzer pairs them by the events' order, so any event out
 * of order shows as an unmatched free or a wrong count in use.
 *   handoff [producers=2] [iters=100000] [realloc]
 * With "realloc", main first reallocs each block it gets to twice its
 * size (mostly a move: the old address is freed on main, and allocated
 * again on a producer soon after), then frees it.
 * Each producer also leaks 5 blocks of 40 bytes from handoff_leak().
 * Prints "allocs=A frees=F leaked_blocks=L leaked_bytes=B" (malloc/free
 * only: the producers' DTVs are libc's calloc, see storm.c).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define QLEN 64 /* a power of two */
#define MAXP 8

struct queue {
	_Atomic unsigned long head, tail; /* head: pushed, tail: taken */
	void *slot[QLEN];
};

struct producer {
	struct queue to_main, back; /* blocks to free, each on the other side */
	long iters;
	void *keep[5];
};

static void push(struct queue *q, void *p)
{
	unsigned long h = atomic_load_explicit(&q->head, memory_order_relaxed);
	while (h - atomic_load_explicit(&q->tail, memory_order_acquire) == QLEN)
		sched_yield();
	q->slot[h % QLEN] = p;
	atomic_store_explicit(&q->head, h + 1, memory_order_release);
}

/* The next block, or NULL when none waits. */
static void *take(struct queue *q)
{
	unsigned long t = atomic_load_explicit(&q->tail, memory_order_relaxed);
	if (t == atomic_load_explicit(&q->head, memory_order_acquire))
		return NULL;
	void *p = q->slot[t % QLEN];
	atomic_store_explicit(&q->tail, t + 1, memory_order_release);
	return p;
}

__attribute__((noinline)) void handoff_leak(void **keep)
{
	for (int i = 0; i < 5; i++)
		keep[i] = malloc(40);
}

static void *producer(void *arg)
{
	struct producer *pr = arg;
	long freed = 0;
	for (long i = 0; i < pr->iters; i++) {
		char *p = malloc(16 + (size_t)(i % 480));
		p[0] = (char)i;
		push(&pr->to_main, p);
		void *b;
		while ((b = take(&pr->back)) != NULL) {
			free(b);
			freed++;
		}
	}
	while (freed < pr->iters) { /* main answers every block */
		void *b = take(&pr->back);
		if (b) {
			free(b);
			freed++;
		} else {
			sched_yield();
		}
	}
	handoff_leak(pr->keep);
	return NULL;
}

int main(int argc, char **argv)
{
	int np = argc > 1 ? atoi(argv[1]) : 2;
	long iters = argc > 2 ? atol(argv[2]) : 100000;
	int re = argc > 3 && strcmp(argv[3], "realloc") == 0;
	if (np < 1 || np > MAXP || iters < 1)
		return 2;
	static struct producer pr[MAXP];
	pthread_t t[MAXP];
	for (int i = 0; i < np; i++) {
		pr[i].iters = iters;
		pthread_create(&t[i], NULL, producer, &pr[i]);
	}
	long left = (long)np * iters;
	while (left > 0) {
		int got = 0;
		for (int i = 0; i < np; i++) {
			char *p = take(&pr[i].to_main);
			if (!p)
				continue;
			got = 1;
			size_t n = 16 + (size_t)((unsigned char)p[0] % 200);
			if (re) {
				char *q = realloc(p, 2 * (n + 480));
				if (!q)
					return 4;
				p = q;
			}
			free(p);
			char *b = malloc(n); /* often the address just freed */
			b[0] = 1;
			push(&pr[i].back, b);
			left--;
		}
		if (!got)
			sched_yield();
	}
	for (int i = 0; i < np; i++)
		pthread_join(t[i], NULL);
	/* each block made crosses once and is freed once: 2 x iters
	 * mallocs and frees a producer, and its 5 leaked blocks (a realloc
	 * is neither: the analyzer counts it as an allocation call of its
	 * own, realloc_calls) */
	long allocs = (long)np * (2 * iters + 5);
	long frees = (long)np * 2 * iters;
	char buf[200];
	int n = snprintf(buf, sizeof(buf),
			 "allocs=%ld frees=%ld reallocs=%ld leaked_blocks=%d "
			 "leaked_bytes=%d\n",
			 allocs, frees, re ? (long)np * iters : 0L, np * 5,
			 np * 200);
	return write(1, buf, (size_t)n) == n ? 0 : 3;
}
