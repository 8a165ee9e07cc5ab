/* stats.c: see stats.h. */
#include "report/stats.h"

#include <math.h>

#include "common/util.h"
#include "rand.h"
#include "common/banned.h"

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double kvr_quantile(double *v, size_t n, double q)
{
	double pos, frac;
	size_t i;

	if (n == 0)
		return NAN;
	qsort(v, n, sizeof(*v), dcmp);
	q = q < 0 ? 0 : q > 1 ? 1 : q;
	pos = q * (double)(n - 1);
	i = (size_t)pos;
	frac = pos - (double)i;
	if (i + 1 >= n)
		return v[n - 1];
	return v[i] + (v[i + 1] - v[i]) * frac;
}

/* The k-th smallest of v (0-based), partially reordering v (quickselect). */
static double select_k(double *v, size_t n, size_t k)
{
	size_t lo = 0, hi = n - 1;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2, i = lo, j = hi;
		double a = v[lo], b = v[mid], c = v[hi], pivot, t;
		/* median of three */
		pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
		while (i <= j) {
			while (v[i] < pivot)
				i++;
			while (v[j] > pivot)
				j--;
			if (i <= j) {
				t = v[i];
				v[i] = v[j];
				v[j] = t;
				i++;
				if (j == 0)
					break;
				j--;
			}
		}
		if (k <= j)
			hi = j;
		else if (k >= i)
			lo = i;
		else
			return v[k];
	}
	return v[k];
}

/* kvr_quantile() without the full sort. */
static double quantile_select(double *v, size_t n, double q)
{
	double pos = q * (double)(n - 1), frac, a, b;
	size_t i = (size_t)pos;

	if (n == 0)
		return NAN;
	frac = pos - (double)i;
	a = select_k(v, n, i);
	if (i + 1 >= n || frac == 0)
		return a;
	/* After the select, everything right of i is >= a: its minimum is order statistic i+1. */
	b = v[i + 1];
	for (size_t k = i + 2; k < n; k++)
		if (v[k] < b)
			b = v[k];
	return a + (b - a) * frac;
}

double kvr_stat_of(enum kvr_statistic st, double *v, size_t n)
{
	switch (st) {
	case KVR_MEAN:
		return kvb_mean(v, n);
	case KVR_P50:
		return quantile_select(v, n, 0.50);
	case KVR_P90:
		return quantile_select(v, n, 0.90);
	case KVR_P99:
		return quantile_select(v, n, 0.99);
	}
	return NAN;
}

static void resample(const double *src, size_t n, double *dst, struct kvb_rand *rng)
{
	for (size_t i = 0; i < n; i++)
		dst[i] = src[kvb_rand_below(rng, n)];
}

int kvr_bootstrap(const double *a, size_t na, const double *b, size_t nb, enum kvr_statistic st,
		  bool ratio, int rounds, double level, uint64_t seed, double *lo, double *hi)
{
	double *ra, *rb, *d;
	struct kvb_rand rng;
	int k = 0;

	*lo = *hi = NAN;
	if (na == 0 || nb == 0 || rounds < 2)
		return -1;
	kvb_rand_seed(&rng, seed);
	ra = xmalloc(na * sizeof(*ra));
	rb = xmalloc(nb * sizeof(*rb));
	d = xmalloc((size_t)rounds * sizeof(*d));
	for (int r = 0; r < rounds; r++) {
		double sa, sb, v;
		resample(a, na, ra, &rng);
		resample(b, nb, rb, &rng);
		sa = kvr_stat_of(st, ra, na);
		sb = kvr_stat_of(st, rb, nb);
		v = ratio ? (sb != 0 ? sa / sb : NAN) : sb - sa;
		if (isfinite(v))
			d[k++] = v;
	}
	if (k >= 2) {
		*lo = kvr_quantile(d, (size_t)k, (1 - level) / 2);
		*hi = kvr_quantile(d, (size_t)k, 1 - (1 - level) / 2);
	}
	free(ra);
	free(rb);
	free(d);
	return k >= 2 ? 0 : -1;
}

void kvr_wilson(double p, double n, double *lo, double *hi)
{
	const double z = 1.959964;
	double den, c, h;

	if (!(n > 0) || !isfinite(p)) {
		*lo = *hi = NAN;
		return;
	}
	den = 1 + z * z / n;
	c = (p + z * z / (2 * n)) / den;
	h = z * sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den;
	*lo = fmax(0, c - h);
	*hi = fmin(1, c + h);
}
