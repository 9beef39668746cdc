/*
 * The log-linear histogram (tools/analyze/hist.c): buckets tile the
 * integers, quantiles stay within the documented relative error against
 * exact quantiles of random data, and merging is exact.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "harness.h"
#include "hist.h"

TEST(buckets_tile_the_integers)
{
	/* consecutive buckets: hi(i) + 1 == lo(i + 1), up to 2^64 - 1 */
	uint32_t last = kp_hist_bucket(UINT64_MAX);
	int ok = 1;
	for (uint32_t i = 0; i < last && ok; i++)
		ok = kp_hist_bucket_hi(i) + 1 == kp_hist_bucket_lo(i + 1) &&
		     kp_hist_bucket(kp_hist_bucket_lo(i)) == i &&
		     kp_hist_bucket(kp_hist_bucket_hi(i)) == i;
	CHECK(ok);
	CHECK(kp_hist_bucket_hi(last) == UINT64_MAX);
	/* a bucket's half width over its lower bound is the error bound */
	double worst = 0;
	for (uint32_t i = 1; i <= last; i++) {
		double lo = (double)kp_hist_bucket_lo(i);
		double w = (double)(kp_hist_bucket_hi(i) - kp_hist_bucket_lo(i));
		if (w / 2 / lo > worst)
			worst = w / 2 / lo;
	}
	CHECK(worst <= KP_HIST_REL_ERROR);
	CHECK(KP_HIST_REL_ERROR <= 0.01);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

TEST(quantiles_within_error)
{
	enum { N = 100000 };
	static uint64_t v[N];
	struct kp_hist h, a, b;
	uint64_t s = 88172645463325252ull;
	kp_hist_init(&h);
	kp_hist_init(&a);
	kp_hist_init(&b);
	for (int i = 0; i < N; i++) {
		/* log-uniform from 1 ns to ~10 s, like latencies */
		double x = exp((double)(rnd(&s) % 1000000) / 1e6 * 23.0);
		v[i] = (uint64_t)x;
		kp_hist_add(&h, v[i]);
		kp_hist_add(i % 3 ? &a : &b, v[i]);
	}
	qsort(v, N, sizeof(v[0]), cmp_u64);
	const double qs[] = { 0.5, 0.9, 0.99, 0.999 };
	double worst = 0;
	for (size_t k = 0; k < sizeof(qs) / sizeof(qs[0]); k++) {
		uint64_t exact = v[(size_t)ceil(qs[k] * N) - 1];
		double err = fabs((double)kp_hist_quantile(&h, qs[k]) -
				  (double)exact) / (double)exact;
		if (err > worst)
			worst = err;
	}
	printf("# worst relative error of p50..p99.9: %.4f%%\n", worst * 100);
	CHECK(worst <= KP_HIST_REL_ERROR);
	CHECK(kp_hist_quantile(&h, 0) == v[0]);
	CHECK(kp_hist_quantile(&h, 1) == v[N - 1]);
	/* merge is exact: same buckets, same answers */
	kp_hist_merge(&a, &b);
	CHECK(a.count == h.count && a.sum == h.sum && a.min == h.min &&
	      a.max == h.max);
	int same = a.nb == h.nb;
	for (uint32_t i = 0; same && i < a.nb; i++)
		same = a.b[i] == h.b[i];
	CHECK(same);
	kp_hist_free(&h);
	kp_hist_free(&a);
	kp_hist_free(&b);
}

TEST(small_and_edge_values)
{
	struct kp_hist h;
	kp_hist_init(&h);
	CHECK(kp_hist_quantile(&h, 0.5) == 0);
	for (uint64_t i = 1; i <= 100; i++)
		kp_hist_add(&h, i); /* exact below 2^SUB */
	CHECK(kp_hist_quantile(&h, 0.5) == 50);
	CHECK(kp_hist_quantile(&h, 0.99) == 99);
	CHECK(kp_hist_quantile(&h, 0.999) == 100);
	kp_hist_add(&h, UINT64_MAX);
	CHECK(h.sum == UINT64_MAX && h.max == UINT64_MAX);
	CHECK(kp_hist_quantile(&h, 1) == UINT64_MAX);
	kp_hist_free(&h);
}

int main(int argc, char **argv)
{
	return RUN_TESTS(argc, argv, T(buckets_tile_the_integers),
			 T(quantiles_within_error), T(small_and_edge_values));
}
