/* Unit tests of the report's numbers: nice ticks, quantiles, bootstrap, text cleaning. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "common/util.h"
#include "report/chart.h"
#include "report/data.h"
#include "report/stats.h"
#include "rand.h"

static void ticks(double lo, double hi, int want, double elo, double ehi, double estep)
{
	double tlo, thi, step;
	kvr_nice_ticks(lo, hi, want, &tlo, &thi, &step);
	if (fabs(tlo - elo) > 1e-9 || fabs(thi - ehi) > 1e-9 || fabs(step - estep) > 1e-12)
		fail_msg("ticks(%g, %g, %d) = [%g, %g] step %g, expected [%g, %g] step %g", lo, hi,
			 want, tlo, thi, step, elo, ehi, estep);
}

static void test_nice_ticks(void **state)
{
	(void)state;
	ticks(0, 1, 6, 0, 1, 0.2);
	ticks(0, 104.3, 6, 0, 120, 20);
	ticks(512, 4096, 8, 500, 4500, 500);
	ticks(0.0123, 0.0191, 6, 0.012, 0.02, 0.001);
	ticks(-3, 7, 6, -4, 8, 2);
	/* Degenerate ranges still give a usable axis. */
	ticks(5, 5, 6, 4.4, 5.6, 0.2);
	ticks(0, 0, 6, -1, 1, 0.5);
	ticks(NAN, 3, 6, 0, 1, 0.2);
}

static void test_tick_label(void **state)
{
	char b[32];
	(void)state;
	kvr_tick_label(b, sizeof(b), 0.4, 0.2);
	assert_string_equal(b, "0.4");
	kvr_tick_label(b, sizeof(b), 1000, 1000);
	assert_string_equal(b, "1000");
	kvr_tick_label(b, sizeof(b), 0.014, 0.002);
	assert_string_equal(b, "0.014");
	kvr_tick_label(b, sizeof(b), -1e-17, 0.5);
	assert_string_equal(b, "0.0");
	kvr_tick_label(b, sizeof(b), 25, 5);
	assert_string_equal(b, "25");
}

static void test_quantiles(void **state)
{
	double v[] = { 5, 1, 4, 2, 3 }, one[] = { 7 };
	(void)state;
	assert_true(fabs(kvb_mean(v, 5) - 3) < 1e-12);
	assert_true(fabs(kvb_stddev(v, 5) - sqrt(2.5)) < 1e-12);
	assert_true(isnan(kvb_stddev(one, 1)));
	assert_true(isnan(kvb_mean(v, 0)));
	assert_true(fabs(kvr_quantile(v, 5, 0.5) - 3) < 1e-12);
	assert_true(fabs(kvr_quantile(v, 5, 0.99) - 4.96) < 1e-12);
	assert_true(fabs(kvr_quantile(v, 5, 0) - 1) < 1e-12);
	assert_true(fabs(kvr_quantile(one, 1, 0.99) - 7) < 1e-12);
}

static void test_stat_of(void **state)
{
	struct kvb_rand rng;
	(void)state;
	kvb_rand_seed(&rng, 9);
	/* The selection-based statistics agree with the sorted quantiles. */
	for (size_t n = 1; n < 300; n += 7) {
		double *a = malloc(n * sizeof(*a)), *b = malloc(n * sizeof(*b));
		for (size_t i = 0; i < n; i++)
			a[i] = b[i] = (double)kvb_rand_below(&rng, 50);   /* many ties */
		assert_true(fabs(kvr_stat_of(KVR_P50, a, n) - kvr_quantile(b, n, 0.5)) < 1e-12);
		for (size_t i = 0; i < n; i++)
			a[i] = b[i] = (double)kvb_rand_below(&rng, 1000) / 7;
		assert_true(fabs(kvr_stat_of(KVR_P99, a, n) - kvr_quantile(b, n, 0.99)) < 1e-12);
		assert_true(fabs(kvr_stat_of(KVR_P90, a, n) - kvr_quantile(b, n, 0.90)) < 1e-12);
		free(a);
		free(b);
	}
}

static void test_bootstrap(void **state)
{
	double a[200], b[200], lo, hi, lo2, hi2;
	struct kvb_rand rng;
	(void)state;
	kvb_rand_seed(&rng, 42);
	for (int i = 0; i < 200; i++) {
		a[i] = 1.0 + (double)kvb_rand_below(&rng, 1000) / 10000.0;   /* ~1.05 */
		b[i] = a[i] + 0.5;
	}
	assert_int_equal(kvr_bootstrap(a, 200, b, 200, KVR_MEAN, false, 500, 0.95, 7, &lo, &hi), 0);
	assert_true(lo > 0.45 && lo < 0.5 && hi > 0.5 && hi < 0.55);
	/* Seeded: the same interval again. */
	kvr_bootstrap(a, 200, b, 200, KVR_MEAN, false, 500, 0.95, 7, &lo2, &hi2);
	assert_true(lo == lo2 && hi == hi2);
	/* Same samples: the interval holds zero. */
	kvr_bootstrap(a, 200, a, 200, KVR_P50, false, 500, 0.95, 7, &lo, &hi);
	assert_true(lo < 0 && hi > 0);
	/* Ratio of means b / a is about 1.48. */
	kvr_bootstrap(b, 200, a, 200, KVR_MEAN, true, 500, 0.95, 7, &lo, &hi);
	assert_true(lo > 1.4 && hi < 1.55 && lo < hi);
	assert_int_equal(kvr_bootstrap(a, 0, b, 200, KVR_MEAN, false, 500, 0.95, 7, &lo, &hi), -1);
	assert_true(isnan(lo) && isnan(hi));
}

static void test_wilson(void **state)
{
	double lo, hi;
	(void)state;
	kvr_wilson(0.6, 20, &lo, &hi);
	assert_true(fabs(lo - 0.3866) < 1e-3 && fabs(hi - 0.7812) < 1e-3);
	kvr_wilson(1.0, 10, &lo, &hi);
	assert_true(hi > 0.9999 && hi <= 1.0 && lo > 0.6);
	kvr_wilson(0.5, NAN, &lo, &hi);
	assert_true(isnan(lo));
}

static void test_text_clean(void **state)
{
	char *s;
	(void)state;
	s = kvr_text_clean("caf\xc3\xa9 \xff ok\tx\n", 100, false);
	assert_string_equal(s, "caf\xc3\xa9 ? ok x ");
	free(s);
	s = kvr_text_clean("a\nb", 100, true);
	assert_string_equal(s, "a\nb");
	free(s);
	/* Overlong encodings, surrogates, truncated sequences. */
	s = kvr_text_clean("\xc0\xaf|\xed\xa0\x80|\xe2\x82", 100, false);
	assert_string_equal(s, "??|???|??");
	free(s);
	s = kvr_text_clean("abcdefgh", 3, false);
	assert_string_equal(s, "abc\xe2\x80\xa6");
	free(s);
	s = kvr_text_clean("\xf0\x9f\x98\x80", 100, false);
	assert_string_equal(s, "\xf0\x9f\x98\x80");
	free(s);
}

static void test_chart_data(void **state)
{
	struct kvr_chart c;
	struct kvr_series *s;
	(void)state;
	kvr_chart_init(&c, KVR_CHART_XY, "x", "t", "x", "y");
	assert_false(kvr_chart_has_data(&c));
	s = kvr_chart_add_series(&c, "s", 2, 0, 0);
	s->x[0] = NAN;
	s->y[0] = 1;
	s->x[1] = 1;
	s->y[1] = NAN;
	assert_false(kvr_chart_has_data(&c));
	s->x[1] = 2;
	s->y[1] = 3;
	assert_true(kvr_chart_has_data(&c));
	kvr_chart_release(&c);
	kvr_chart_init(&c, KVR_CHART_BARS, "b", "t", "x", "y");
	s = kvr_chart_add_series(&c, "s", 1, 0, 0);
	s->y[0] = 1;
	assert_false(kvr_chart_has_data(&c));   /* no category for it */
	kvr_chart_add_cat(&c, "c");
	assert_true(kvr_chart_has_data(&c));
	kvr_chart_release(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nice_ticks),
		cmocka_unit_test(test_tick_label),
		cmocka_unit_test(test_quantiles),
		cmocka_unit_test(test_stat_of),
		cmocka_unit_test(test_bootstrap),
		cmocka_unit_test(test_wilson),
		cmocka_unit_test(test_text_clean),
		cmocka_unit_test(test_chart_data),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
