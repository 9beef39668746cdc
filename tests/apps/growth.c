/*
 * A heap that keeps growing, or does not (tests/integ/test_growth.py):
 *
 *   growth MS MODE
 *
 * runs MS milliseconds; every 20 ms it allocates 100 blocks of 1 KiB and
 * frees them again (churn, whose blocks come and go) and, in the modes
 * that grow, cache_put adds 64 entries of 256 bytes to a cache that
 * never drops one (800 KiB a second):
 *   grow   the cache is freed before exit (a clean shutdown)
 *   keep   the cache is left for exit (a server killed, a leak)
 *   flat   no cache: a table of 1 MiB allocated at start and the churn
 * and prints the entries it cached.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct entry {
	struct entry *next;
	char data[248];
};

static struct entry *cache;
static long cached;

static __attribute__((noinline)) void cache_put(int i)
{
	struct entry *e = malloc(sizeof(*e));
	if (!e)
		exit(1);
	memset(e->data, i, sizeof(e->data));
	e->next = cache;
	cache = e;
	cached++;
}

static __attribute__((noinline)) void churn(void)
{
	void *b[100];
	for (int i = 0; i < 100; i++) {
		b[i] = malloc(1024);
		if (!b[i])
			exit(1);
		memset(b[i], i, 1024);
	}
	for (int i = 0; i < 100; i++)
		free(b[i]);
}

static long long mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv)
{
	long ms = argc > 1 ? atol(argv[1]) : 6000;
	const char *mode = argc > 2 ? argv[2] : "grow";
	int grow = strcmp(mode, "flat") != 0;
	char *table = grow ? NULL : calloc(1, 1 << 20);
	long long end = mono_ms() + ms;

	while (mono_ms() < end) {
		churn();
		for (int i = 0; grow && i < 64; i++)
			cache_put(i);
		struct timespec ts = { 0, 20 * 1000000 };
		nanosleep(&ts, NULL);
	}
	printf("%ld\n", cached);
	if (!strcmp(mode, "grow"))
		while (cache) {
			struct entry *e = cache;
			cache = e->next;
			free(e);
		}
	free(table);
	return 0;
}
