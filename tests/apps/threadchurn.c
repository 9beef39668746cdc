/*
 * Thread churn (tests/integ/test_threadchurn.py): ROUNDS rounds of
 * PER_ROUND threads, each making ALLOCS malloc/free pairs and leaking one
 * block of 48 bytes from leak_one(), then exiting (so rings are closed,
 * drained and reused, and late frees of glibc's own thread data go to the
 * shared ring). Prints its own counts.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS 50
#define PER_ROUND 40
#define ALLOCS 200

static void *keep[ROUNDS * PER_ROUND];

__attribute__((noinline)) static void *leak_one(void)
{
	return malloc(48);
}

static void *worker(void *arg)
{
	long slot = (long)arg;
	for (int i = 0; i < ALLOCS; i++) {
		volatile char *p = malloc(16 + (size_t)(i % 64));
		p[0] = (char)i;
		free((void *)p);
	}
	keep[slot] = leak_one();
	return NULL;
}

int main(void)
{
	pthread_t t[PER_ROUND];
	for (int r = 0; r < ROUNDS; r++) {
		for (long i = 0; i < PER_ROUND; i++)
			if (pthread_create(&t[i], NULL, worker,
					   (void *)(r * PER_ROUND + i)) != 0)
				return 2;
		for (int i = 0; i < PER_ROUND; i++)
			pthread_join(t[i], NULL);
	}
	printf("threads=%d leaked=%d pairs=%d\n", ROUNDS * PER_ROUND,
	       ROUNDS * PER_ROUND, ROUNDS * PER_ROUND * ALLOCS);
	return 0;
}
