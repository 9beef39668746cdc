/*
 * SQLite libraries that are in no global scope: each plugin of
 * tests/apps/sqlplug/ is loaded with RTLD_LOCAL and brings its own
 * (SQLCipher's libsqlcipher.so.0, or libsqlite3.so.0), as Python's
 * extension modules do. Without kprof, each plugin's calls bind to its
 * own SQLite; under kprof they go through kprof's hook first, which must
 * hand each to the same library (tests/integ/test_query_sqlite.py).
 *
 *   sqlite_local N PLUGIN...    PLUGIN: cipher or plain
 *
 * With --deep now|lazy|bare before N, each plugin is loaded with
 * RTLD_DEEPBIND instead (as PHP loads its extensions: then its calls bind
 * to its own dependencies first, libc's malloc among them): by its path
 * next to this program, with RTLD_NOW or with PHP's RTLD_LAZY |
 * RTLD_GLOBAL, or by its bare name (RUNPATH), and it also runs
 * plug_extra(7, PLUGIN.out) (tests/integ/test_deepbind.py).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* --deep: the flags, and the plugins' directory (or "" for bare names). */
static int deep_mode(const char *how, int *flags, char *dir, size_t cap)
{
	*dir = 0;
	if (!strcmp(how, "bare")) {
		*flags = RTLD_NOW | RTLD_DEEPBIND;
		return 0;
	}
	if (!strcmp(how, "now"))
		*flags = RTLD_NOW | RTLD_DEEPBIND;
	else if (!strcmp(how, "lazy"))
		*flags = RTLD_LAZY | RTLD_GLOBAL | RTLD_DEEPBIND;
	else
		return -1;
	ssize_t n = readlink("/proc/self/exe", dir, cap - 1);
	if (n <= 0)
		return -1;
	dir[n] = 0;
	char *slash = strrchr(dir, '/');
	if (!slash)
		return -1;
	strcpy(slash + 1, "plugins/");
	return 0;
}

int main(int argc, char **argv)
{
	int flags = RTLD_NOW | RTLD_LOCAL, deep = 0, a = 1;
	char dir[4096] = "";
	if (argc > 2 && !strcmp(argv[1], "--deep")) {
		if (deep_mode(argv[2], &flags, dir, sizeof(dir) - 64) != 0)
			argc = 0; /* usage */
		deep = 1;
		a = 3;
	}
	if (argc < a + 2) {
		fprintf(stderr, "usage: sqlite_local [--deep now|lazy|bare] N "
				"cipher|plain...\n");
		return 2;
	}
	int n = atoi(argv[a]), bad = 0;
	for (int i = a + 1; i < argc; i++) {
		char lib[4200], out[128];
		snprintf(lib, sizeof(lib), "%slibsqlplug_%s.so", dir, argv[i]);
		void *h = dlopen(lib, flags);
		if (!h) {
			fprintf(stderr, "sqlite_local: %s\n", dlerror());
			return 1;
		}
		int (*run)(const char *, int, char *, size_t) =
			(int (*)(const char *, int, char *, size_t))dlsym(
				h, "plug_run");
		if (!run || run(argv[i], n, out, sizeof(out)) != n)
			bad = 1;
		puts(run ? out : "no plug_run");
		if (deep) {
			int (*extra)(int, const char *) =
				(int (*)(int, const char *))dlsym(h,
								  "plug_extra");
			snprintf(out, sizeof(out), "%s.out", argv[i]);
			if (!extra || extra(7, out) != 0)
				bad = 1;
		}
	}
	return bad;
}
