/* SPDX-License-Identifier: MIT */
/*
 * A hook's cost measured inside one process (sqlite_bench ab, io_known
 * smallab): blocks of calls that alternate between going through kprof's
 * hook and going around it (the library's own definition, the raw system
 * call), a pair of blocks a few ms long at a time, which of the two goes
 * first alternating too. Blocks so close share the machine's state (its
 * speed, the other tenants' load), so the median of each pair's difference
 * is the hook's cost with little of the noise that separate runs carry;
 * without kprof preloaded it is about 0.
 */
#ifndef KP_ABPAIRS_H
#define KP_ABPAIRS_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double ab_now(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int ab_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double ab_median(double *v, long n)
{
	qsort(v, (size_t)n, sizeof(*v), ab_cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * pairs x 2 blocks of block calls: block(ctx, direct, block) makes them,
 * through the hook (direct 0) or around it (1). Prints "pairs=P hook_ns=H
 * direct_ns=D added_ns=A added_cpu_ns=C": medians of ns per call, A and C
 * the medians of the pairs' differences, of wall time and of this
 * thread's CPU time. @return 0, or 1 if out of memory.
 */
static int ab_pairs(void (*block)(void *ctx, int direct, long n), void *ctx,
		    long pairs, long n)
{
	double *v = malloc(sizeof(double) * (size_t)pairs * 6);
	if (!v || pairs < 1)
		return 1;
	double *w[2] = { v, v + pairs }, *c[2] = { v + 2 * pairs,
						    v + 3 * pairs };
	double *dw = v + 4 * pairs, *dc = v + 5 * pairs;
	for (long p = 0; p < pairs; p++) {
		for (int o = 0; o < 2; o++) {
			int direct = (int)((p + o) & 1);
			double t0 = ab_now(CLOCK_MONOTONIC);
			double c0 = ab_now(CLOCK_THREAD_CPUTIME_ID);
			block(ctx, direct, n);
			w[direct][p] = (ab_now(CLOCK_MONOTONIC) - t0) / n;
			c[direct][p] =
				(ab_now(CLOCK_THREAD_CPUTIME_ID) - c0) / n;
		}
		dw[p] = w[0][p] - w[1][p];
		dc[p] = c[0][p] - c[1][p];
	}
	printf("pairs=%ld hook_ns=%.1f direct_ns=%.1f added_ns=%.1f "
	       "added_cpu_ns=%.1f\n", pairs, ab_median(w[0], pairs),
	       ab_median(w[1], pairs), ab_median(dw, pairs),
	       ab_median(dc, pairs));
	free(v);
	return 0;
}

#endif
