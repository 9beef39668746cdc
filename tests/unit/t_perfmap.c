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
#include "perfmap_line.h"

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

/* The one line parser of the recorder and the analyzer. */
TEST(line_parser)
{
	const struct {
		const char *s;
		int ok;
		uint64_t lo, size;
		const char *name;
	} cases[] = {
		{ "7f00AB 1F JS:*f a.js:1:2", 1, 0x7f00ab, 0x1f, "JS:*f a.js:1:2" },
		{ "0X10 0x2 n\r", 1, 0x10, 2, "n" },
		{ "fffffffffffffff0 f last", 1, 0xfffffffffffffff0ull, 0xf, "last" },
		{ "fffffffffffffff0 10 wraps", 0, 0, 0, NULL },
		{ "10000000000000000 1 65 bits", 0, 0, 0, NULL },
		{ "0x 1 no digits", 0, 0, 0, NULL },
		{ "10  1 two spaces", 0, 0, 0, NULL },
		{ "10\t1 tab", 0, 0, 0, NULL },
		{ "10 0 empty", 0, 0, 0, NULL },
		{ "10 1 ", 0, 0, 0, NULL },
		{ "10 1 \r", 0, 0, 0, NULL },
		{ "10 1", 0, 0, 0, NULL },
		{ "", 0, 0, 0, NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t lo = 0, size = 0;
		const char *name = NULL;
		size_t len = 0;
		int ok = kp_perfmap_line(cases[i].s, strlen(cases[i].s), &lo,
					 &size, &name, &len);
		int good = ok == cases[i].ok;
		if (good && ok)
			good = lo == cases[i].lo && size == cases[i].size &&
			       len == strlen(cases[i].name) &&
			       !memcmp(name, cases[i].name, len);
		if (!good)
			printf("#   case %zu: '%s'\n", i, cases[i].s);
		CHECK(good);
	}
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(lines_and_overlaps), T(bad_lines_skipped),
			 T(line_parser));
}
