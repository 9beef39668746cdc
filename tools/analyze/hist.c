/* SPDX-License-Identifier: MIT */
/* The log-linear histogram of hist.h. */
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "hist.h"

#define SUB KP_HIST_SUB
#define HALF (1u << SUB)

uint32_t kp_hist_bucket(uint64_t v)
{
	if (v < HALF)
		return (uint32_t)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= SUB */
	return (uint32_t)((e - SUB + 1) * HALF +
			  ((v >> (e - SUB)) - HALF));
}

uint64_t kp_hist_bucket_lo(uint32_t i)
{
	if (i < HALF)
		return i;
	unsigned e = i / HALF + SUB - 1;
	return (uint64_t)(HALF + i % HALF) << (e - SUB);
}

uint64_t kp_hist_bucket_hi(uint32_t i)
{
	if (i < HALF)
		return i;
	unsigned e = i / HALF + SUB - 1;
	return kp_hist_bucket_lo(i) + ((1ull << (e - SUB)) - 1);
}

void kp_hist_init(struct kp_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

void kp_hist_free(struct kp_hist *h)
{
	free(h->b);
	kp_hist_init(h);
}

static void grow(struct kp_hist *h, uint32_t need)
{
	uint32_t nb = h->nb ? h->nb : HALF;
	while (nb < need)
		nb *= 2;
	h->b = xrealloc_array(h->b, nb, sizeof(*h->b));
	memset(h->b + h->nb, 0, (size_t)(nb - h->nb) * sizeof(*h->b));
	h->nb = nb;
}

void kp_hist_add_n(struct kp_hist *h, uint64_t v, uint64_t n)
{
	uint32_t i = kp_hist_bucket(v);

	if (!n)
		return;
	if (i >= h->nb)
		grow(h, i + 1);
	h->b[i] = kp_sat_add(h->b[i], n);
	h->count = kp_sat_add(h->count, n);
	uint64_t s;
	h->sum = __builtin_mul_overflow(v, n, &s) ? UINT64_MAX
						  : kp_sat_add(h->sum, s);
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void kp_hist_add(struct kp_hist *h, uint64_t v)
{
	kp_hist_add_n(h, v, 1);
}

void kp_hist_merge(struct kp_hist *into, const struct kp_hist *from)
{
	if (!from->count)
		return;
	if (from->nb > into->nb)
		grow(into, from->nb);
	for (uint32_t i = 0; i < from->nb; i++)
		into->b[i] = kp_sat_add(into->b[i], from->b[i]);
	into->count = kp_sat_add(into->count, from->count);
	into->sum = kp_sat_add(into->sum, from->sum);
	if (from->min < into->min)
		into->min = from->min;
	if (from->max > into->max)
		into->max = from->max;
}

uint64_t kp_hist_quantile(const struct kp_hist *h, double q)
{
	if (!h->count)
		return 0;
	if (q <= 0)
		return h->min;
	if (q >= 1)
		return h->max;
	double r = q * (double)h->count;
	uint64_t rank = (uint64_t)r;
	if ((double)rank < r)
		rank++;
	if (rank < 1)
		rank = 1;
	uint64_t seen = 0;
	for (uint32_t i = 0; i < h->nb; i++) {
		seen += h->b[i];
		if (seen < rank)
			continue;
		uint64_t lo = kp_hist_bucket_lo(i), hi = kp_hist_bucket_hi(i);
		uint64_t mid = lo + (hi - lo) / 2;
		if (mid < h->min)
			mid = h->min;
		if (mid > h->max)
			mid = h->max;
		return mid;
	}
	return h->max;
}
