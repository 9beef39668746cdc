/*
 * oomhog [MB [MS]]: grow the heap a MiB at a time, every byte of it
 * touched, from grow(), MS milliseconds apart (default 2), forever, or up
 * to MB MiB and then sleep (tests/integ/test_oom.py): in a memory cgroup
 * with a smaller limit, the kernel's OOM killer ends it.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void *volatile keep;

__attribute__((noinline)) static void grow(void)
{
	char *p = malloc(1 << 20);
	if (!p)
		exit(3);
	memset(p, 1, 1 << 20);
	keep = p;
}

int main(int argc, char **argv)
{
	long mb = argc > 1 ? atol(argv[1]) : 0;
	long ms = argc > 2 ? atol(argv[2]) : 2;
	for (long i = 0; !mb || i < mb; i++) {
		grow();
		usleep((useconds_t)ms * 1000);
	}
	for (;;)
		pause();
}
