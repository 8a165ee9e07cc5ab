/* Histogram: quantiles within 1% of the exact ones, bucket geometry, merge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "arrival.h"
#include "common/util.h"
#include "hist.h"

static int cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void test_buckets(void **state)
{
	uint64_t lo, hi, prev_hi = 0;
	(void)state;
	/* contiguous, and never wider than 1/128 of their lower bound */
	for (size_t b = 0; b < KVB_HIST_NBUCKETS; b++) {
		kvb_hist_bucket_range(b, &lo, &hi);
		if (b)
			assert_int_equal(lo, prev_hi + 1);
		assert_true(hi >= lo);
		if (lo >= 128)
			assert_true((double)(hi - lo + 1) / (double)lo <= 1.0 / 128 + 1e-12);
		assert_int_equal(kvb_hist_bucket(lo), b);
		assert_int_equal(kvb_hist_bucket(hi), b);
		prev_hi = hi;
	}
	assert_int_equal(kvb_hist_bucket(UINT64_MAX), KVB_HIST_NBUCKETS - 1);
}

static void check_quantiles(const char *what, uint64_t *v, size_t n)
{
	struct kvb_hist h;
	double qs[] = { 0.5, 0.9, 0.99, 0.999, 0.1, 0.75 }, sum = 0, sq = 0, mean;

	kvb_hist_init(&h);
	for (size_t i = 0; i < n; i++) {
		kvb_hist_record(&h, v[i]);
		sum += (double)v[i];
	}
	qsort(v, n, sizeof(*v), cmp);
	for (size_t i = 0; i < KV_ARRAY_SIZE(qs); i++) {
		uint64_t exact = v[(size_t)ceil(qs[i] * (double)n) - 1];
		uint64_t got = kvb_hist_quantile(&h, qs[i]);
		double err = fabs((double)got - (double)exact) / (double)KV_MAX(exact, 1);
		if (err > 0.01)
			fail_msg("%s: q%.3f: got %llu, exact %llu (%.3f%%)", what, qs[i],
				 (unsigned long long)got, (unsigned long long)exact, err * 100);
	}
	mean = sum / (double)n;
	for (size_t i = 0; i < n; i++)
		sq += ((double)v[i] - mean) * ((double)v[i] - mean);
	assert_true(fabs(kvb_hist_mean(&h) - mean) <= 1e-9 * mean + 1e-9);
	assert_true(fabs(kvb_hist_std(&h) - sqrt(sq / (double)n)) <= 1e-6 * sqrt(sq / (double)n) + 1e-6);
	assert_int_equal(kvb_hist_quantile(&h, 0), v[0]);
	assert_int_equal(kvb_hist_quantile(&h, 1), v[n - 1]);
	kvb_hist_release(&h);
}

static void test_quantiles(void **state)
{
	size_t n = 200000;
	uint64_t *v = xmalloc(n * sizeof(*v));
	struct kvb_rand r;
	(void)state;
	kvb_rand_seed(&r, 42);
	/* log-normal latencies around 50 ms */
	for (size_t i = 0; i < n; i++) {
		double u1 = 1 - kvb_rand_unit(&r), u2 = kvb_rand_unit(&r);
		double z = sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
		v[i] = (uint64_t)(50e6 * exp(0.8 * z));
	}
	check_quantiles("lognormal", v, n);
	/* uniform over 1 us .. 10 s */
	for (size_t i = 0; i < n; i++)
		v[i] = 1000 + kvb_rand_below(&r, 10000000000ull);
	check_quantiles("uniform", v, n);
	/* small exact integers */
	for (size_t i = 0; i < n; i++)
		v[i] = kvb_rand_below(&r, 100);
	check_quantiles("small", v, n);
	free(v);
}

static void test_merge_and_empty(void **state)
{
	struct kvb_hist a, b, all;
	struct kvb_rand r;
	(void)state;
	kvb_hist_init(&a);
	kvb_hist_init(&b);
	kvb_hist_init(&all);
	assert_int_equal(kvb_hist_quantile(&a, 0.5), 0);
	assert_true(kvb_hist_mean(&a) == 0);
	kvb_rand_seed(&r, 1);
	for (int i = 0; i < 10000; i++) {
		uint64_t x = kvb_rand_below(&r, 1000000);
		kvb_hist_record(i % 3 ? &a : &b, x);
		kvb_hist_record(&all, x);
	}
	kvb_hist_merge(&a, &b);
	assert_int_equal(a.n, all.n);
	assert_int_equal(kvb_hist_quantile(&a, 0.99), kvb_hist_quantile(&all, 0.99));
	assert_true(fabs(kvb_hist_std(&a) - kvb_hist_std(&all)) < 1e-6 * kvb_hist_std(&all));
	assert_int_equal(a.min, all.min);
	assert_int_equal(a.max, all.max);
	kvb_hist_release(&a);
	kvb_hist_release(&b);
	kvb_hist_release(&all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buckets),
		cmocka_unit_test(test_quantiles),
		cmocka_unit_test(test_merge_and_empty),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
