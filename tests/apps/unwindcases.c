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
 * recursion at varying depths (each depth is its own stack); then main and
 * three threads at once allocate and free through two call paths that
 * share their outer frames (path_x, path_y -> shared's recursion at
 * changing depths -> leaf_a or leaf_b), by each allocation function in
 * turn (an allocation hook's stack starts at the hook's own frame).
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

static __attribute__((noinline)) void *alloc_by(int how, size_t n)
{
	void *p = NULL;
	switch (how % 6) {
	case 0: p = malloc(n); break;
	case 1: p = calloc(1, n); break;
	case 2: p = realloc(NULL, n); break;
	case 3: if (posix_memalign(&p, 64, n) != 0) p = NULL; break;
	case 4: p = aligned_alloc(64, (n + 63) & ~(size_t)63); break;
	default: p = realloc(malloc(n), 2 * n); break;
	}
	return p;
}

static __attribute__((noinline)) void leaf_a(int how, size_t n)
{
	free(alloc_by(how, n));
	sink++;
}

static __attribute__((noinline)) void leaf_b(int how, size_t n)
{
	void *p = alloc_by(how, n + 8);
	sink--;
	free(p);
}

static __attribute__((noinline)) void shared(int d, int how, size_t n)
{
	if (d > 0) {
		shared(d - 1, how, n);
		sink += d; /* no tail call */
		return;
	}
	if (how & 1)
		leaf_a(how, n);
	else
		leaf_b(how, n);
}

static __attribute__((noinline)) void path_x(int d, int how, size_t n)
{
	shared(d, how, n);
	sink++;
}

static __attribute__((noinline)) void path_y(int d, int how, size_t n)
{
	shared(d, how, n);
	sink--;
}

static void *paths(void *arg)
{
	long k = (long)arg;
	for (int i = 0; i < 1200; i++) {
		int d = (int)((i * 7 + k) % 13);
		if (i % 3)
			path_x(d, i, 16 + (size_t)(i % 50));
		else
			path_y(d, i / 3, 24);
	}
	return NULL;
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
	pthread_t pt[3];
	for (long k = 0; k < 3; k++)
		if (pthread_create(&pt[k], NULL, paths, (void *)(k + 1)) != 0)
			return 1;
	paths((void *)0);
	for (int k = 0; k < 3; k++)
		if (pthread_join(pt[k], NULL) != 0)
			return 1;
	char buf[80];
	int k = snprintf(buf, sizeof(buf), "leaked_blocks=%d leaked_bytes=%d\n",
			 3 + 2 + 5, 3 * 222 + 2 * 111 + 5 * 333);
	return write(1, buf, (size_t)k) == k ? 0 : 1;
}
