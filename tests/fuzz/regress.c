/* SPDX-License-Identifier: MIT */
/*
 * Replays fuzz inputs through LLVMFuzzerTestOneInput without libFuzzer, so
 * the corpus (and every crash once added to it) runs in ordinary sanitizer
 * builds: `regress DIR|FILE...`. Prints one TAP line per directory.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		fprintf(stderr, "regress: cannot open '%s'\n", path);
		return -1;
	}
	size_t cap = 1 << 16, len = 0;
	uint8_t *buf = malloc(cap);
	size_t n;
	while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
		len += n;
		if (len == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
		}
	}
	fclose(f);
	if (!buf)
		return -1;
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	return 0;
}

static int run_path(const char *path, int *count)
{
	struct stat st;
	if (stat(path, &st) < 0) {
		fprintf(stderr, "regress: cannot stat '%s'\n", path);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return run_file(path);
	}
	DIR *d = opendir(path);
	if (!d)
		return -1;
	struct dirent *e;
	int ret = 0;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char p[4096];
		snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
		if (run_path(p, count) < 0)
			ret = -1;
	}
	closedir(d);
	return ret;
}

int main(int argc, char **argv)
{
	int fail = 0;
	for (int i = 1; i < argc; i++) {
		int count = 0;
		int ret = run_path(argv[i], &count);
		printf("%sok %d - regress %s (%d inputs)\n", ret < 0 ? "not " : "",
		       i, argv[i], count);
		fail |= ret < 0;
	}
	if (argc < 2) {
		fprintf(stderr, "usage: regress DIR|FILE...\n");
		return 2;
	}
	return fail;
}
