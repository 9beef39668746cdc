/*
 * Blocks from kprof's bootstrap pool handed to the app (tests/integ/
 * test_bootpool.py). Run with LD_PRELOAD="dlsym_alloc.so libkprof.so": the
 * wrapper's dlsym allocates a 48-byte block for every symbol kprof
 * resolves; those come from kprof's bootstrap pool. The app then frees
 * some, reallocs others (grow and shrink, contents kept), asks their usable
 * size, and exits 0 when every check held. Prints "blocks=N boot=M",
 * M being the blocks that lie inside libkprof.so's image (its pool is a
 * static array there).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
	int (*get)(void ***) =
		(int (*)(void ***))dlsym(RTLD_DEFAULT, "dlsym_alloc_blocks");
	if (!get) {
		fprintf(stderr, "dlsym_alloc.so is not preloaded\n");
		return 2;
	}
	void **b;
	int n = get(&b);
	int bad = 0, boot = 0;
	for (int i = 0; i < n; i++) {
		Dl_info info;
		if (dladdr(b[i], &info) && info.dli_fname &&
		    strstr(info.dli_fname, "libkprof"))
			boot++;
	}
	for (int i = 0; i < n; i++) {
		char name[48];
		memcpy(name, b[i], sizeof(name));
		if (malloc_usable_size(b[i]) < 48)
			bad |= 1;
		switch (i % 3) {
		case 0:
			free(b[i]);
			break;
		case 1: {
			char *q = realloc(b[i], 4096); /* grow */
			if (!q || memcmp(q, name, sizeof(name)) != 0)
				bad |= 2;
			free(q);
			break;
		}
		default: {
			char *q = realloc(b[i], 8); /* shrink */
			if (!q || memcmp(q, name, 8) != 0)
				bad |= 4;
			q = realloc(q, 0);
			free(q);
			break;
		}
		}
	}
	printf("blocks=%d boot=%d\n", n, boot);
	return bad ? 10 + bad : 0;
}
