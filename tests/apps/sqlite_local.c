/*
 * SQLite libraries that are in no global scope: each plugin of
 * tests/apps/sqlplug/ is loaded with RTLD_LOCAL and brings its own
 * (SQLCipher's libsqlcipher.so.0, or libsqlite3.so.0), as Python's
 * extension modules do. Without kprof, each plugin's calls bind to its
 * own SQLite; under kprof they go through kprof's hook first, which must
 * hand each to the same library (tests/integ/test_query_sqlite.py).
 *
 *   sqlite_local N PLUGIN...    PLUGIN: cipher or plain
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: sqlite_local N cipher|plain...\n");
		return 2;
	}
	int n = atoi(argv[1]), bad = 0;
	for (int i = 2; i < argc; i++) {
		char lib[64], out[128];
		snprintf(lib, sizeof(lib), "libsqlplug_%s.so", argv[i]);
		void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
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
	}
	return bad;
}
