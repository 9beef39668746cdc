/* SPDX-License-Identifier: MIT */
/*
 * Clocks. Events are stamped with the TSC when it is invariant (constant
 * rate, runs in every power state: ~11 ns here against ~30 ns for
 * clock_gettime), else with CLOCK_MONOTONIC. The writer converts ticks to
 * CLOCK_MONOTONIC nanoseconds with a factor it calibrates once.
 */
#include "state.h"

#include <time.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

uint64_t kp_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t kp_wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void kp_clock_pair(uint64_t *ticks, uint64_t *mono)
{
#if defined(__x86_64__) || defined(__i386__)
	uint64_t best = UINT64_MAX;
	for (int i = 0; i < 8; i++) {
		uint64_t a = __rdtsc();
		uint64_t m = kp_mono_ns();
		uint64_t b = __rdtsc();
		if (b - a < best) {
			best = b - a;
			*ticks = a + (b - a) / 2;
			*mono = m;
		}
	}
#else
	*mono = kp_mono_ns();
	*ticks = *mono;
#endif
}

int kp_tsc_usable(void)
{
#if defined(__x86_64__) || defined(__i386__)
	unsigned a, b, c, d;
	if (!__get_cpuid(0x80000000, &a, &b, &c, &d) || a < 0x80000007)
		return 0;
	__get_cpuid(0x80000007, &a, &b, &c, &d);
	return (d >> 8) & 1; /* invariant TSC */
#else
	return 0;
#endif
}
