/*
 * Allocations from dlopen'ed code (tests/integ/test_dlopen.py). Built with
 * RUNPATH $ORIGIN/plugins and loading its plugins by bare name, which only
 * works when glibc sees this program as dlopen's caller: a profiler that
 * wrapped dlopen would make the load fail. Plugin A leaks 3 x 555 bytes,
 * is closed (the leaked blocks stay: they are heap memory); plugin B is
 * loaded next (possibly at A's old address) and leaks 2 x 777 bytes.
 */
#include <dlfcn.h>
#include <stdio.h>

static int call(const char *lib, const char *fn, int close_after)
{
	void *h = dlopen(lib, RTLD_NOW);
	if (!h) {
		fprintf(stderr, "dlopen %s: %s\n", lib, dlerror());
		return 1;
	}
	void (*f)(void) = (void (*)(void))dlsym(h, fn);
	if (!f) {
		fprintf(stderr, "dlsym %s: %s\n", fn, dlerror());
		return 1;
	}
	f();
	if (close_after)
		dlclose(h);
	return 0;
}

int main(void)
{
	if (call("libkpplug_a.so", "plugin_a_leak", 1) ||
	    call("libkpplug_b.so", "plugin_b_leak", 0))
		return 1;
	printf("ok\n");
	return 0;
}
