/* Log-linear histogram; see hist.h. */
#include "hist.h"

#include <math.h>

#include "common/util.h"
#include "common/banned.h"

#define SUB (1u << KVB_HIST_SUB_BITS)

void kvb_hist_init(struct kvb_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
	h->counts = xcalloc(KVB_HIST_NBUCKETS, sizeof(*h->counts));
}

void kvb_hist_release(struct kvb_hist *h)
{
	free(h->counts);
	h->counts = NULL;
}

size_t kvb_hist_bucket(uint64_t v)
{
	unsigned msb, e;

	if (v < SUB)
		return (size_t)v;
	msb = 63u - (unsigned)__builtin_clzll(v);
	e = msb - KVB_HIST_SUB_BITS + 1; /* >= 1 */
	if (msb >= KVB_HIST_MAX_BITS)
		return KVB_HIST_NBUCKETS - 1;
	/* v >> (e - 1) is in [SUB, 2 SUB): the top bits pick the bucket */
	return (size_t)e * SUB + (size_t)((v >> (e - 1)) - SUB);
}

void kvb_hist_bucket_range(size_t b, uint64_t *lo, uint64_t *hi)
{
	size_t e = b / SUB, off = b % SUB;

	if (e == 0) {
		*lo = *hi = off;
		return;
	}
	*lo = (uint64_t)(SUB + off) << (e - 1);
	*hi = *lo + ((uint64_t)1 << (e - 1)) - 1;
}

void kvb_hist_record(struct kvb_hist *h, uint64_t v)
{
	double d;

	h->counts[kvb_hist_bucket(v)]++;
	h->n++;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
	d = (double)v - h->mean;
	h->mean += d / (double)h->n;
	h->m2 += d * ((double)v - h->mean);
}

void kvb_hist_merge(struct kvb_hist *dst, const struct kvb_hist *src)
{
	double n, d;

	if (!src->n)
		return;
	for (size_t i = 0; i < KVB_HIST_NBUCKETS; i++)
		dst->counts[i] += src->counts[i];
	n = (double)dst->n + (double)src->n;
	d = src->mean - dst->mean;
	dst->m2 += src->m2 + d * d * (double)dst->n * (double)src->n / n;
	dst->mean += d * (double)src->n / n;
	dst->n += src->n;
	dst->min = KV_MIN(dst->min, src->min);
	dst->max = KV_MAX(dst->max, src->max);
}

uint64_t kvb_hist_quantile(const struct kvb_hist *h, double q)
{
	uint64_t rank, seen = 0, lo, hi, mid;

	if (!h->n)
		return 0;
	if (q <= 0)
		return h->min;
	if (q >= 1)
		return h->max;
	rank = (uint64_t)ceil(q * (double)h->n);
	if (rank < 1)
		rank = 1;
	for (size_t b = 0; b < KVB_HIST_NBUCKETS; b++) {
		seen += h->counts[b];
		if (seen < rank)
			continue;
		kvb_hist_bucket_range(b, &lo, &hi);
		mid = lo + (hi - lo) / 2;
		if (mid < h->min)
			mid = h->min;
		if (mid > h->max)
			mid = h->max;
		return mid;
	}
	return h->max;
}

double kvb_hist_mean(const struct kvb_hist *h)
{
	return h->n ? h->mean : 0;
}

double kvb_hist_std(const struct kvb_hist *h)
{
	return h->n ? sqrt(h->m2 / (double)h->n) : 0;
}
