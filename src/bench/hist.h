/*
 * hist.h: a log-linear histogram of non-negative integer values (ns).
 *
 * Like HdrHistogram: values below 2^KVB_HIST_SUB_BITS are counted exactly;
 * above, each power of two is split into 2^KVB_HIST_SUB_BITS equal buckets,
 * so a bucket is at most 1/128 of its values wide and a quantile read from
 * it is within 0.4% of the exact one. Fixed memory (~40 KiB), no allocation
 * after init. Values at or above 2^KVB_HIST_MAX_BITS ns (~4.9 h) land in the
 * last bucket; min and max are exact. Mean and standard deviation are exact
 * (Welford's running sums), not read from buckets.
 */
#ifndef KVB_HIST_H
#define KVB_HIST_H

#include "common/compat.h"

#define KVB_HIST_SUB_BITS 7
#define KVB_HIST_MAX_BITS 44
#define KVB_HIST_NBUCKETS ((KVB_HIST_MAX_BITS - KVB_HIST_SUB_BITS + 1) << KVB_HIST_SUB_BITS)

struct kvb_hist {
	uint64_t n;
	uint64_t min, max;
	double mean, m2;     /* Welford */
	uint64_t *counts;    /* KVB_HIST_NBUCKETS, owned */
};

void kvb_hist_init(struct kvb_hist *h);
void kvb_hist_release(struct kvb_hist *h);
void kvb_hist_record(struct kvb_hist *h, uint64_t v);
/* Adds every value of src to dst. */
void kvb_hist_merge(struct kvb_hist *dst, const struct kvb_hist *src);
/* q in [0, 1]: the value at rank ceil(q * n) (0 when empty). */
uint64_t kvb_hist_quantile(const struct kvb_hist *h, double q);
double kvb_hist_mean(const struct kvb_hist *h);
/* Population standard deviation. */
double kvb_hist_std(const struct kvb_hist *h);

/* Bucket of v and the range [lo, hi] of values it holds (exposed for tests). */
size_t kvb_hist_bucket(uint64_t v);
void kvb_hist_bucket_range(size_t b, uint64_t *lo, uint64_t *hi);

#endif
