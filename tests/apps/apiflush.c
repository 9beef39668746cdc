/*
 * The public API of preload/kprof.h (tests/integ/test_api.py). Prints
 * whether kprof is loaded and its version, leaks 5 blocks of 321 bytes
 * from api_leak(), calls kprof_flush_if_loaded() and, with argument
 * "kill", then SIGKILLs itself: with a flush interval of a minute, only
 * the explicit flush can have put those allocations on disk. "noflush"
 * is the control: it SIGKILLs itself without flushing. Both flush once
 * before the leak, so the writer's first cycle (at start, with the
 * header) is over before it and cannot take the leak to disk.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kprof.h"

static void *keep[5];

__attribute__((noinline)) static void api_leak(void)
{
	for (int i = 0; i < 5; i++)
		keep[i] = malloc(321);
}

int main(int argc, char **argv)
{
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "loaded=%d version=%s\n",
			 kprof_loaded(),
			 kprof_loaded() ? kprof_version() : "none");
	write(1, buf, (size_t)n);
	kprof_flush_if_loaded();
	api_leak();
	int noflush = argc > 1 && strcmp(argv[1], "noflush") == 0;
	int rc = noflush ? 1 : kprof_flush_if_loaded();
	n = snprintf(buf, sizeof(buf), "flush=%d\n", rc);
	write(1, buf, (size_t)n);
	if (argc > 1)
		raise(SIGKILL);
	return 0;
}
