/* Arrival generators: mean rate within 2%, Poisson CV within 5%, gamma CV, seeds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "arrival.h"
#include "common/util.h"

static void moments(enum kvb_arrival k, double rate, double b, uint64_t seed, double *mean,
		    double *cv)
{
	struct kvb_arrival_gen g;
	double s = 0, sq = 0, m;
	int n = 100000;

	kvb_arrival_init(&g, k, rate, b, seed);
	for (int i = 0; i < n; i++) {
		double x = kvb_arrival_next(&g);
		assert_true(x >= 0);
		s += x;
		sq += x * x;
	}
	m = s / n;
	*mean = m;
	*cv = sqrt(sq / n - m * m) / m;
}

static void test_rates(void **state)
{
	double mean, cv;
	(void)state;
	moments(KVB_ARRIVAL_CONSTANT, 250, 1, 1, &mean, &cv);
	assert_true(fabs(1 / mean - 250) / 250 < 1e-9);
	assert_true(isnan(cv) || cv < 1e-3); /* cancellation: the gaps are all equal */
	for (uint64_t seed = 1; seed <= 3; seed++) {
		moments(KVB_ARRIVAL_POISSON, 100, 1, seed, &mean, &cv);
		assert_true(fabs(1 / mean - 100) / 100 < 0.02);
		assert_true(fabs(cv - 1) < 0.05);
	}
	moments(KVB_ARRIVAL_GAMMA, 40, 1, 9, &mean, &cv);
	assert_true(fabs(1 / mean - 40) / 40 < 0.02);
	assert_true(fabs(cv - 1) < 0.05);
	/* gamma shape B: CV = 1/sqrt(B) */
	moments(KVB_ARRIVAL_GAMMA, 40, 0.25, 9, &mean, &cv);
	assert_true(fabs(1 / mean - 40) / 40 < 0.02);
	assert_true(fabs(cv - 2) / 2 < 0.05);
	moments(KVB_ARRIVAL_GAMMA, 1000, 4, 5, &mean, &cv);
	assert_true(fabs(1 / mean - 1000) / 1000 < 0.02);
	assert_true(fabs(cv - 0.5) / 0.5 < 0.05);
}

static void test_seeds_and_names(void **state)
{
	struct kvb_arrival_gen a, b, c;
	enum kvb_arrival k;
	int same = 0;
	(void)state;
	kvb_arrival_init(&a, KVB_ARRIVAL_POISSON, 10, 1, 7);
	kvb_arrival_init(&b, KVB_ARRIVAL_POISSON, 10, 1, 7);
	kvb_arrival_init(&c, KVB_ARRIVAL_POISSON, 10, 1, 8);
	for (int i = 0; i < 100; i++) {
		double x = kvb_arrival_next(&a);
		assert_true(x == kvb_arrival_next(&b));
		same += x == kvb_arrival_next(&c);
	}
	assert_true(same < 100);
	assert_int_equal(kvb_arrival_parse("gamma", &k), 0);
	assert_int_equal(k, KVB_ARRIVAL_GAMMA);
	assert_int_equal(kvb_arrival_parse("uniform", &k), -1);
	assert_string_equal(kvb_arrival_name(KVB_ARRIVAL_POISSON), "poisson");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rates),
		cmocka_unit_test(test_seeds_and_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
