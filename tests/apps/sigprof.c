/* SPDX-License-Identifier: MIT */
/*
 * An app with a CPU profiler of its own, as gperftools' is: an ITIMER_PROF of
 * 1 ms whose SIGPROF handler (SA_SIGINFO) reads the pc the program was at
 * (tests/integ/test_cpu.py). Under kprof's CPU sampling both timers tick
 * together: the kernel delivers the two signals at once, one handler's
 * context being the other's entry.
 *
 *   sigprof compute MS  computes in main's own code for MS ms of CPU
 *   sigprof alloc MS    mallocs and frees (kprof's hooks, under kprof)
 *
 * Prints "signals N main M": the handler's calls, and how many found the
 * pc in this program's text.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <ucontext.h>

extern char __executable_start, etext;
static volatile long nsig, nmain;

static void on_prof(int sig, siginfo_t *si, void *ucv)
{
	(void)sig;
	(void)si;
	const ucontext_t *uc = ucv;
	unsigned long pc = (unsigned long)uc->uc_mcontext.gregs[REG_RIP];
	nsig++;
	nmain += pc >= (unsigned long)&__executable_start &&
		 pc < (unsigned long)&etext;
}

static double cpu_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	int alloc = !strcmp(argv[1], "alloc");
	double until = cpu_ms() + atof(argv[2]);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_prof;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGPROF, &sa, NULL);
	struct itimerval it = { { 0, 1000 }, { 0, 1000 } };
	setitimer(ITIMER_PROF, &it, NULL);
	volatile double s = 0;
	static void *keep[64];
	while (cpu_ms() < until) {
		for (long i = 0; i < 200000; i++) {
			if (alloc) {
				free(keep[i & 63]);
				keep[i & 63] = malloc((size_t)(i & 255) + 1);
			} else {
				s += (double)i * 0.5;
			}
		}
	}
	struct itimerval off;
	memset(&off, 0, sizeof(off));
	setitimer(ITIMER_PROF, &off, NULL);
	printf("signals %ld main %ld\n", nsig, nmain);
	return 0;
}
