/* SPDX-License-Identifier: MIT */
/*
 * A log-linear histogram of non-negative integers (latencies in ns, sizes),
 * in the manner of HdrHistogram: values below 2^KP_HIST_SUB are counted
 * exactly; above, every power of two is split into 2^KP_HIST_SUB equal
 * buckets. A quantile is reported as the middle of its bucket, clamped to
 * the exact min and max, so its relative error is at most
 * KP_HIST_REL_ERROR. Merging (threads, processes) adds counts bucket by
 * bucket, so a merged histogram is exactly the histogram of all values.
 * Memory grows with the largest value seen: at most ~58 KiB.
 */
#ifndef KP_HIST_H
#define KP_HIST_H

#include <stdint.h>

#define KP_HIST_SUB 7
/* Half a bucket's width over its lower bound: 2^-(SUB+1) = 0.39 %. */
#define KP_HIST_REL_ERROR (1.0 / (double)(2u << KP_HIST_SUB))

struct kp_hist {
	uint64_t count;
	uint64_t sum;      /* saturating */
	uint64_t min, max; /* exact; min = UINT64_MAX while empty */
	uint64_t *b;       /* counts per bucket, nb of them */
	uint32_t nb;
};

void kp_hist_init(struct kp_hist *h);
void kp_hist_free(struct kp_hist *h);
void kp_hist_add(struct kp_hist *h, uint64_t v);
void kp_hist_add_n(struct kp_hist *h, uint64_t v, uint64_t n);
/* into += from (exact). */
void kp_hist_merge(struct kp_hist *into, const struct kp_hist *from);
/* The q-quantile (0 <= q <= 1) by nearest rank: the value of rank
 * ceil(q * count), within KP_HIST_REL_ERROR. 0 when empty. */
uint64_t kp_hist_quantile(const struct kp_hist *h, double q);

/* Bucket arithmetic, exposed for tests. */
uint32_t kp_hist_bucket(uint64_t v);
uint64_t kp_hist_bucket_lo(uint32_t i);
uint64_t kp_hist_bucket_hi(uint32_t i); /* inclusive */

#endif
