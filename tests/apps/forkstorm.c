/*
 * fork() while other threads allocate (tests/integ/test_forkstorm.py):
 * 3 threads churn malloc/free at full speed (from many stack depths, so
 * new stacks are interned while forks happen) while main forks FORKS
 * children; each child allocates (pausing 3 ms halfway), leaks one
 * 99-byte block from child_leak() and exits with _exit(0) or by
 * returning from a second fork-free path (exit(0)). kprof's locks (writer, modules, stacks, shared
 * ring, arena) must all be safe around fork: no child may hang.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FORKS 40

static atomic_int stop;

__attribute__((noinline)) static void *deep(int d, size_t n)
{
	if (d == 0)
		return malloc(n);
	void *p = deep(d - 1, n);
	__asm__ volatile("" ::: "memory");
	return p;
}

static void *churn(void *arg)
{
	unsigned x = (unsigned)(long)arg * 2654435761u;
	while (!atomic_load(&stop)) {
		x = x * 1103515245u + 12345u;
		free(deep((int)(x >> 28), 16 + (x >> 20) % 512));
	}
	return NULL;
}

__attribute__((noinline)) static void *child_leak(void)
{
	return malloc(99);
}

int main(void)
{
	pthread_t t[3];
	for (long i = 0; i < 3; i++)
		pthread_create(&t[i], NULL, churn, (void *)(i + 1));
	int ok = 0;
	for (int i = 0; i < FORKS; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			/* a pause between the halves: every child's heap
			 * spans several 1 ms slices of its timeline
			 * (test_html.py charts the highest 12) */
			for (int k = 0; k < 1000; k++) {
				free(malloc(32));
				if (k == 500)
					nanosleep(&(struct timespec){ 0, 3000000 },
						  NULL);
			}
			child_leak();
			if (i % 2)
				_exit(0);
			exit(0);
		}
		int st;
		if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
		    WEXITSTATUS(st) == 0)
			ok++;
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	printf("children_ok=%d\n", ok);
	return ok == FORKS ? 0 : 1;
}
