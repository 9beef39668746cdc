/*
 * JIT maps (tools/analyze/perfmap.c): perf's "START SIZE NAME" lines, the
 * later of two overlapping lines winning, and lines that must be skipped.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze.h"
#include "harness.h"

/* A map file holding text; the caller unlinks path. */
static struct kp_perfmap *load_text(const char *text, char *path, size_t n)
{
	snprintf(path, n, "/tmp/t_perfmap.%d.map", (int)getpid());
	FILE *f = fopen(path, "w");
	if (!f)
		return NULL;
	fputs(text, f);
	fclose(f);
	return kp_perfmap_load(path);
}

static int is(const char *got, const char *want)
{
	if (!got || !want)
		return got == want;
	return !strcmp(got, want);
}

TEST(lines_and_overlaps)
{
	char path[64];
	struct kp_perfmap *m = load_text(
		"7f0000001000 100 JS:*old a.js:1:1\n"
		"7f0000001000 40 JS:*hot a.js:2:3\n"  /* later: wins */
		"0x7f0000002000 0x20 LazyCompile:~f\r\n"
		"1000 10 Builtin:A\n"
		"1000 10 Builtin:B\n",                  /* same range: B */
		path, sizeof(path));
	REQUIRE(m != NULL);
	CHECK(is(kp_perfmap_find(m, 0x7f0000001000), "JS:*hot a.js:2:3"));
	CHECK(is(kp_perfmap_find(m, 0x7f000000103f), "JS:*hot a.js:2:3"));
	CHECK(is(kp_perfmap_find(m, 0x7f0000001040), "JS:*old a.js:1:1"));
	CHECK(is(kp_perfmap_find(m, 0x7f00000010ff), "JS:*old a.js:1:1"));
	CHECK(is(kp_perfmap_find(m, 0x7f0000001100), NULL)); /* [lo, hi) */
	CHECK(is(kp_perfmap_find(m, 0x7f0000000fff), NULL));
	CHECK(is(kp_perfmap_find(m, 0x7f000000201f), "LazyCompile:~f"));
	CHECK(is(kp_perfmap_find(m, 0x7f0000002020), NULL));
	CHECK(is(kp_perfmap_find(m, 0x1008), "Builtin:B"));
	CHECK(is(kp_perfmap_find(m, 0), NULL));
	CHECK(is(kp_perfmap_find(m, UINT64_MAX), NULL));
	kp_perfmap_free(m);
	unlink(path);
}

TEST(bad_lines_skipped)
{
	char path[64];
	static char text[8192];
	char longname[KP_PERFMAP_NAME_MAX + 100];
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	snprintf(text, sizeof(text),
		 "\n"
		 "zz 10 not hex\n"
		 "5000 0 empty range\n"
		 "5000 10\n"                        /* no name */
		 "5000 10 \n"                       /* empty name */
		 "-5000 10 negative\n"
		 "ffffffffffffff00 1000 wraps\n"
		 "99999999999999999999 10 too big\n"
		 "6000 10 ok\n"
		 "7000 10 %s\n"
		 "8000 10 after the long one",     /* no newline at the end */
		 longname);
	struct kp_perfmap *m = load_text(text, path, sizeof(path));
	REQUIRE(m != NULL);
	CHECK(is(kp_perfmap_find(m, 0x5000), NULL));
	CHECK(is(kp_perfmap_find(m, 0xffffffffffffff10), NULL));
	CHECK(is(kp_perfmap_find(m, 0x6008), "ok"));
	const char *l = kp_perfmap_find(m, 0x7000);
	REQUIRE(l != NULL);
	CHECK_EQ_U(strlen(l), KP_PERFMAP_NAME_MAX);
	CHECK(is(kp_perfmap_find(m, 0x800f), "after the long one"));
	kp_perfmap_free(m);
	unlink(path);

	/* nothing usable, or no file: no map */
	CHECK(load_text("garbage\n0 0 x\n", path, sizeof(path)) == NULL);
	unlink(path);
	CHECK(kp_perfmap_load(path) == NULL);
	CHECK(kp_perfmap_find(NULL, 0x1000) == NULL);
	kp_perfmap_free(NULL);
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(lines_and_overlaps), T(bad_lines_skipped));
}
