/*
 * Blocks in use at exit, each reachable or not in a known way, for the leak
 * scan (KOTOBA_PROFILE_LEAK_SCAN, tests/integ/test_leakscan.py) and
 * valgrind's leak check to agree on:
 *   - keep_some():  3 blocks of 100 bytes a global array points to, and a
 *     block of 56 a global points to that points to one of 72: still
 *     reachable, 5 blocks, 428 bytes;
 *   - lose_plain(): 5 blocks of 40 bytes dropped: definitely lost, 200;
 *   - lose_tree():  a block of 64 pointing to two of 32, dropped: 1
 *     definitely lost (64), 2 indirectly lost (64);
 *   - lose_cycle(): two blocks of 48 pointing to each other, dropped: 1
 *     definitely lost, 1 indirectly lost (48 each);
 *   - keep_middle(): a block of 128 a global points into, 16 bytes past
 *     its start: possibly lost, 128;
 *   - lose_in_thread(), in a thread that is joined: 3 blocks of 24
 *     dropped: definitely lost, 72;
 *   - everything else is freed (a loop of malloc/free, a realloc chain).
 * In all: definitely lost 10 blocks, 384 bytes; indirectly lost 3, 112;
 * possibly lost 1, 128; still reachable 5, 428 (and libc's own blocks:
 * the joined thread's DTV, see test_leakscan.py).
 *
 * No stdio (its buffer would be one more block in use). Before it exits,
 * main wipes the stack below it, where the frames of the calls above left
 * their pointers (valgrind and kprof read a stack from its top down to
 * the live frames only, but the exit path's frames do not cover it all).
 *
 * With argument "exit", it ends with _exit(0) rather than a return. With
 * "running", a thread is still running when main returns, a block of 88
 * bytes in a local of its stack: one more block still reachable. With
 * "fork", main keeps one more block of 16 (a holder, still reachable) and
 * forks a child that puts a block of 120 of its own in the holder
 * (child_keep: still reachable, through a block only its parent's trace
 * has), loses 2 of 56 (child_lose: definitely lost) and exits; the parent
 * waits for it.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static void *kept[3];
static void **chain;
static char *middle;

/* Stores the compiler cannot drop: the pointers dropped are really
 * written into the blocks. */
static void *volatile sink;

NOINLINE static void keep_some(void)
{
	for (int i = 0; i < 3; i++)
		kept[i] = malloc(100);
	chain = malloc(56);
	chain[0] = malloc(72);
}

NOINLINE static void lose_plain(void)
{
	for (int i = 0; i < 5; i++) {
		sink = malloc(40);
		memset(sink, 0, 40);
	}
	sink = NULL;
}

NOINLINE static void lose_tree(void)
{
	void **root = malloc(64);
	memset(root, 0, 64);
	root[0] = malloc(32);
	root[1] = malloc(32);
	memset(root[0], 0, 32);
	memset(root[1], 0, 32);
	sink = root;
	sink = NULL;
}

NOINLINE static void lose_cycle(void)
{
	void **a = malloc(48), **b = malloc(48);
	memset(a, 0, 48);
	memset(b, 0, 48);
	a[0] = b;
	b[0] = a;
	sink = a;
	sink = NULL;
}

NOINLINE static void keep_middle(void)
{
	char *p = malloc(128);
	memset(p, 0, 128);
	middle = p + 16;
}

NOINLINE static void churn(void)
{
	for (int i = 0; i < 1000; i++) {
		void *p = malloc((size_t)(16 + i % 200));
		sink = p;
		free(p);
	}
	char *r = NULL;
	for (int i = 1; i <= 20; i++)
		r = realloc(r, (size_t)i * 100);
	free(r);
	sink = NULL;
}

NOINLINE static void *lose_in_thread(void *arg)
{
	for (int i = 0; i < 3; i++) {
		sink = malloc(24);
		memset(sink, 0, 24);
	}
	sink = NULL;
	return arg;
}

static sem_t ready;

NOINLINE static void *hold_on_stack(void *arg)
{
	void *volatile local = malloc(88); /* in memory, not a register */
	memset(local, 0, 88);
	sem_post(&ready);
	for (;;) {
		pause();
		sink = local;
	}
	return arg;
}

static void **holder;

NOINLINE static void child_keep(void)
{
	holder[0] = malloc(120);
	memset(holder[0], 0, 120);
}

NOINLINE static void child_lose(void)
{
	for (int i = 0; i < 2; i++) {
		sink = malloc(56);
		memset(sink, 0, 56);
	}
	sink = NULL;
}

/* Zero the stack below the caller's frame. */
NOINLINE static void wipe(void)
{
	volatile char pad[64 << 10];
	memset((char *)pad, 0, sizeof(pad));
}

int main(int argc, char **argv)
{
	pthread_t th;
	if (pthread_create(&th, NULL, lose_in_thread, NULL) != 0 ||
	    pthread_join(th, NULL) != 0)
		return 2;
	keep_some();
	lose_plain();
	lose_tree();
	lose_cycle();
	keep_middle();
	churn();
	wipe();
	if (argc > 1 && strcmp(argv[1], "running") == 0) {
		sem_init(&ready, 0, 0);
		if (pthread_create(&th, NULL, hold_on_stack, NULL) != 0)
			return 2;
		sem_wait(&ready);
	}
	if (argc > 1 && strcmp(argv[1], "fork") == 0) {
		holder = calloc(2, sizeof(void *));
		pid_t pid = fork();
		if (pid == 0) {
			child_lose();
			child_keep();
			wipe();
			exit(0);
		}
		int st;
		if (pid < 0 || waitpid(pid, &st, 0) != pid || st != 0)
			return 2;
	}
	if (argc > 1 && strcmp(argv[1], "exit") == 0)
		_exit(0);
	return 0;
}
