/*
 * Resident memory that rises and falls (tests/integ/test_resources.py):
 *
 *   rsswave HOLD_MS
 *
 * touches 64 MiB (one malloc, written through: glibc maps it on its own),
 * holds it HOLD_MS, frees it (unmapped), sleeps HOLD_MS, and prints the
 * CLOCK_MONOTONIC ns when the memory was touched, when free was called
 * (freed) and when it had returned (gone: the first call of free binds
 * the symbol, some us), and the kernel's VmHWM (/proc/self/status) in kB.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) != 0)
		;
}

int main(int argc, char **argv)
{
	long hold = argc > 1 ? atol(argv[1]) : 300;
	size_t n = 64u << 20;
	char *p = malloc(n);
	if (!p)
		return 1;
	memset(p, 1, n);
	long long touched = mono_ns();
	sleep_ms(hold);
	long long freed = mono_ns();
	free(p);
	long long gone = mono_ns();
	sleep_ms(hold);

	long hwm = -1;
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &hwm) == 1)
			break;
	if (f)
		fclose(f);
	printf("touched %lld freed %lld gone %lld hwm_kb %ld\n", touched, freed,
	       gone, hwm);
	return 0;
}
