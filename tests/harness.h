/* SPDX-License-Identifier: MIT */
/*
 * A tiny test harness (after redis' testhelp.h and jemalloc's test.h).
 *
 *   TEST(name) { CHECK(x == 1); REQUIRE(p != NULL); ... }
 *   int main(int argc, char **argv) { return RUN_TESTS(argc, argv, name, ...); }
 *
 * CHECK records a failure and continues; REQUIRE stops the test. Each test
 * prints a TAP line ("ok N - name" / "not ok N - name"); tests/run.sh counts
 * them. `./t_foo name` runs only that test.
 */
#ifndef KP_HARNESS_H
#define KP_HARNESS_H

#include <stdio.h>
#include <string.h>

struct kp_test {
	const char *name;
	void (*fn)(int *failed);
};

#define TEST(name) static void test_##name(int *kp_failed_)
#define T(name) { #name, test_##name }

#define CHECK(c)                                                        \
	do {                                                            \
		if (!(c)) {                                             \
			printf("#   %s:%d: CHECK(%s) failed\n", __FILE__, \
			       __LINE__, #c);                           \
			*kp_failed_ = 1;                                \
		}                                                       \
	} while (0)

#define REQUIRE(c)                                                        \
	do {                                                              \
		if (!(c)) {                                               \
			printf("#   %s:%d: REQUIRE(%s) failed\n", __FILE__, \
			       __LINE__, #c);                             \
			*kp_failed_ = 1;                                  \
			return;                                           \
		}                                                         \
	} while (0)

#define CHECK_EQ_U(a, b)                                                   \
	do {                                                               \
		unsigned long long a_ = (a), b_ = (b);                     \
		if (a_ != b_) {                                            \
			printf("#   %s:%d: %s == %s failed: %llu != %llu\n", \
			       __FILE__, __LINE__, #a, #b, a_, b_);        \
			*kp_failed_ = 1;                                   \
		}                                                          \
	} while (0)

static inline int kp_run_tests(int argc, char **argv, const struct kp_test *t,
			       int n)
{
	int pass = 0, fail = 0, num = 0;
	for (int i = 0; i < n; i++) {
		if (argc > 1 && strcmp(argv[1], t[i].name) != 0)
			continue;
		int failed = 0;
		t[i].fn(&failed);
		num++;
		printf("%sok %d - %s\n", failed ? "not " : "", num, t[i].name);
		fflush(stdout);
		if (failed)
			fail++;
		else
			pass++;
	}
	printf("# %s: %d passed, %d failed\n", argv[0], pass, fail);
	return fail ? 1 : 0;
}

#define RUN_TESTS(argc, argv, ...)                                       \
	kp_run_tests(argc, argv, (const struct kp_test[]){ __VA_ARGS__ }, \
		     (int)(sizeof((const struct kp_test[]){ __VA_ARGS__ }) / \
			   sizeof(struct kp_test)))

#endif
