/*
 * A timeout by siglongjmp (tests/integ/test_sighook.py): an interval timer
 * sends SIGALRM every 50 us while main loops over malloc, free and a
 * 1-byte write() to /dev/null; the handler siglongjmps back to the loop's
 * top unless main is inside malloc or free (write is async-signal-safe,
 * so leaving it by a jump is allowed, and old code times out reads and
 * connects this way). Then the timer stops and main leaks 1000 blocks of
 * 48 bytes from leak_after_jumps().
 *   sigjump [iters=2000000]
 * Prints "allocs=A frees=F jumps=J" (malloc/free calls of its own).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

static sigjmp_buf env;
static volatile sig_atomic_t armed, in_malloc;
static volatile long jumps;

static void on_alarm(int sig)
{
	(void)sig;
	if (armed && !in_malloc) {
		jumps++;
		siglongjmp(env, 1);
	}
}

static __attribute__((noinline)) void leak_after_jumps(void **keep, int n)
{
	for (int i = 0; i < n; i++)
		keep[i] = malloc(48);
}

int main(int argc, char **argv)
{
	static long iters, i, allocs, frees;
	static void *slot[16];
	static void *leaks[1000];
	static int fd;
	iters = argc > 1 ? atol(argv[1]) : 2000000;
	fd = open("/dev/null", O_WRONLY);
	if (fd < 0)
		return 2;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = { { 0, 50 }, { 0, 50 } };
	setitimer(ITIMER_REAL, &it, NULL);
	sigsetjmp(env, 1);
	armed = 1;
	for (; i < iters; i++) {
		unsigned k = (unsigned)i % 16;
		in_malloc = 1;
		if (slot[k]) {
			free(slot[k]);
			frees++;
		}
		slot[k] = malloc(32);
		allocs++;
		in_malloc = 0;
		if (write(fd, "x", 1) != 1)
			return 3;
	}
	armed = 0;
	struct itimerval off = { { 0, 0 }, { 0, 0 } };
	setitimer(ITIMER_REAL, &off, NULL);
	for (unsigned k = 0; k < 16; k++)
		if (slot[k]) {
			free(slot[k]);
			frees++;
		}
	leak_after_jumps(leaks, 1000);
	printf("allocs=%ld frees=%ld jumps=%ld\n", allocs + 1000, frees, jumps);
	return 0;
}
