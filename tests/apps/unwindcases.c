/*
 * Allocations whose stacks reach the edges of kprof's unwinders
 * (tests/integ/test_unwind.py), each leaking a known number of blocks from a
 * named function:
 *   - leak_deep(): 120 frames of recursion, deeper than the default
 *     KOTOBA_PROFILE_STACK_DEPTH (64): 3 blocks of 222 bytes;
 *   - on_signal(): a signal handler (through the kernel's signal frame,
 *     which kprof's fast unwinder leaves to libunwind): 2 blocks of 111;
 *   - leak_in_thread(): from a second thread: 5 blocks of 333;
 * and a loop of 2000 malloc/free pairs from main through leak_deep's
 * recursion at varying depths (each depth is its own stack).
 * Output: leaked_blocks=N leaked_bytes=B (no stdio: see leaky.c).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void *keep[16];
static int nkeep;
static volatile long sink;

static void on_signal(int sig)
{
	(void)sig;
	keep[nkeep++] = malloc(111);
}

static __attribute__((noinline)) void deep(int d, size_t n, int leak)
{
	if (d == 0) {
		void *p = malloc(n);
		if (leak)
			keep[nkeep++] = p;
		else
			free(p);
		return;
	}
	deep(d - 1, n, leak);
	sink += d; /* no tail call */
}

static __attribute__((noinline)) void leak_deep(void)
{
	for (int i = 0; i < 3; i++)
		deep(120, 222, 1);
}

static __attribute__((noinline)) void leak_in_handler(void)
{
	signal(SIGUSR1, on_signal);
	raise(SIGUSR1);
	raise(SIGUSR1);
}

static void *leak_in_thread(void *arg)
{
	(void)arg;
	for (int i = 0; i < 5; i++)
		keep[10 + i] = malloc(333);
	return NULL;
}

int main(void)
{
	for (int i = 0; i < 2000; i++)
		deep(i % 40, 16 + (size_t)(i % 7), 0);
	leak_deep();
	leak_in_handler();
	pthread_t t;
	if (pthread_create(&t, NULL, leak_in_thread, NULL) != 0 ||
	    pthread_join(t, NULL) != 0)
		return 1;
	char buf[80];
	int k = snprintf(buf, sizeof(buf), "leaked_blocks=%d leaked_bytes=%d\n",
			 3 + 2 + 5, 3 * 222 + 2 * 111 + 5 * 333);
	return write(1, buf, (size_t)k) == k ? 0 : 1;
}
