/* Statistics and text metrics of the checks against hand-computed and
 * published values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>

#include "common/util.h"
#include "checks/checks.h"

#define NEAR(a, b, eps) assert_true(fabs((a) - (b)) < (eps))

static void test_wilson_newcombe(void **state)
{
	double lo, hi;
	(void)state;
	/* Newcombe (1998), Statistics in Medicine 17:857, table I, method 3 */
	kvb_wilson(81, 263, 1.959963985, &lo, &hi);
	NEAR(lo, 0.2553, 5e-5);
	NEAR(hi, 0.3662, 5e-5);
	kvb_wilson(15, 148, 1.959963985, &lo, &hi);
	NEAR(lo, 0.0624, 5e-5);
	NEAR(hi, 0.1605, 5e-5);
	kvb_wilson(0, 10, 1.959963985, &lo, &hi);
	NEAR(lo, 0.0, 1e-12);
	NEAR(hi, 0.2775, 5e-5);
	kvb_wilson(10, 10, 1.959963985, &lo, &hi);
	NEAR(lo, 1 - 0.2775, 5e-5);
	NEAR(hi, 1.0, 1e-12);
	kvb_wilson(0, 0, 1.96, &lo, &hi);
	NEAR(lo, 0, 1e-12);
	NEAR(hi, 1, 1e-12);
}

static void test_mcnemar(void **state)
{
	(void)state;
	NEAR(kvb_mcnemar_exact(0, 0), 1.0, 1e-12);
	/* 2 * (1/2)^5 */
	NEAR(kvb_mcnemar_exact(0, 5), 0.0625, 1e-12);
	NEAR(kvb_mcnemar_exact(5, 0), 0.0625, 1e-12);
	/* 2 * (C(10,0)+C(10,1)+C(10,2)) / 2^10 = 112/1024 */
	NEAR(kvb_mcnemar_exact(2, 8), 0.109375, 1e-12);
	NEAR(kvb_mcnemar_exact(5, 5), 1.0, 1e-12);
	/* 2 * (1/2)^10 */
	NEAR(kvb_mcnemar_exact(10, 0), 0.001953125, 1e-12);
}

static void test_bootstrap(void **state)
{
	double x[50], y[50], m, lo, hi, m2, lo2, hi2;
	(void)state;
	for (int i = 0; i < 50; i++) {
		x[i] = i % 7;
		y[i] = x[i] + 0.5;
	}
	kvb_bootstrap_diff(x, y, 50, 2000, 1, 0.95, &m, &lo, &hi);
	NEAR(m, 0.5, 1e-12);
	NEAR(lo, 0.5, 1e-12);
	NEAR(hi, 0.5, 1e-12);
	/* differences of +1 and -1 in equal numbers: centred on 0, covers it */
	for (int i = 0; i < 50; i++)
		y[i] = x[i] + (i % 2 ? 1 : -1);
	kvb_bootstrap_diff(x, y, 50, 2000, 7, 0.95, &m, &lo, &hi);
	NEAR(m, 0.0, 1e-12);
	assert_true(lo < 0 && hi > 0);
	/* sd of the mean = 1/sqrt(50) = 0.1414: the 95% interval is about ±0.28 */
	assert_true(lo > -0.40 && lo < -0.18);
	assert_true(hi < 0.40 && hi > 0.18);
	/* seeded: the same seed gives the same interval */
	kvb_bootstrap_diff(x, y, 50, 2000, 7, 0.95, &m2, &lo2, &hi2);
	assert_true(lo == lo2 && hi == hi2);
}

static void test_f1(void **state)
{
	char buf[128];
	(void)state;
	kvb_squad_normalize("  The  Denver Broncos, (an) NFL team! ", buf, sizeof(buf));
	assert_string_equal(buf, "denver broncos nfl team");
	NEAR(kvb_f1("the Denver Broncos", "Denver Broncos"), 1.0, 1e-12);
	NEAR(kvb_f1("Broncos won", "Denver Broncos"), 0.5, 1e-12);
	NEAR(kvb_f1("Paris.", "paris"), 1.0, 1e-12);
	/* multiset overlap: x:1 y:1 → 2 common of 3 and 3 */
	NEAR(kvb_f1("x x y", "x y y"), 2.0 / 3.0, 1e-12);
	NEAR(kvb_f1("", ""), 1.0, 1e-12);
	NEAR(kvb_f1("the", ""), 1.0, 1e-12); /* both empty after normalisation */
	NEAR(kvb_f1("Bergen", ""), 0.0, 1e-12);
	NEAR(kvb_f1("Oslo", "Bergen"), 0.0, 1e-12);
	NEAR(kvb_best_over_lines(kvb_f1, "in Bergen", "Oslo\nBergen"), 2.0 * 0.5 * 1 / 1.5, 1e-12);
}

static void test_rouge_l(void **state)
{
	(void)state;
	/* Lin (2004) example: LCS 3 of 4 and 4 (no stemmer: killed != kill) */
	NEAR(kvb_rouge_l("police killed the gunman", "police kill the gunman"), 0.75, 1e-12);
	NEAR(kvb_rouge_l("the gunman kill police", "police kill the gunman"), 0.5, 1e-12);
	NEAR(kvb_rouge_l("Police, KILL the gunman!", "police kill the gunman"), 1.0, 1e-12);
	/* P = 2/2, R = 2/4: F = 2/3 */
	NEAR(kvb_rouge_l("a b", "a x b y"), 2.0 / 3.0, 1e-12);
	NEAR(kvb_rouge_l("", "a"), 0.0, 1e-12);
	NEAR(kvb_rouge_l("...", "a"), 0.0, 1e-12);
}

static void test_parse_generation(void **state)
{
	char *s;
	(void)state;
	s = kvb_parse_generation("\n\nParis is\nthe answer");
	assert_string_equal(s, "Paris is");
	free(s);
	s = kvb_parse_generation("yes, it is");
	assert_string_equal(s, "Yes");
	free(s);
	s = kvb_parse_generation("Norway"); /* CacheBlend's rule, mirrored */
	assert_string_equal(s, "No");
	free(s);
}

static struct kvb_out_rec rec(const char *text, const char *expected)
{
	struct kvb_out_rec r;
	memset(&r, 0, sizeof(r));
	r.text = (char *)text;
	r.expected = (char *)expected;
	r.key = (char *)"k";
	return r;
}

static void test_answer_correct(void **state)
{
	struct kvb_out_rec r;
	struct kvb_top_lp top[3] = { { (char *)" B", -1.2f }, { (char *)" C", -0.3f }, { (char *)"x", -0.1f } };
	struct kvb_tok_lp lp = { (char *)"x", -0.1f, top, 3 };
	(void)state;
	r = rec(" B. because", "B");
	assert_true(kvb_answer_correct(&r));
	r = rec("The answer is C", "B"); /* first A-D character: 'C'... of "The"? no: T,h,e then C */
	assert_false(kvb_answer_correct(&r));
	assert_int_equal(kvb_mcq_choice(&r), 'C');
	r = rec("xyz", "A");
	assert_false(kvb_answer_correct(&r)); /* no letter: wrong, not LMCache's guess "A" */
	r = rec("x", "C");
	r.lps = &lp;
	r.n_lps = 1;
	assert_int_equal(kvb_mcq_choice(&r), 'C'); /* best of A-D in the top list */
	assert_true(kvb_answer_correct(&r));
	r = rec("so 12 + 23 = 35 apples.\n#### 35", "35");
	assert_true(kvb_answer_correct(&r));
	r = rec("#### 34\nwait, 35", "35");
	assert_false(kvb_answer_correct(&r)); /* "####" wins over the last number */
	r = rec("That makes 2,500 pens.", "2500");
	assert_true(kvb_answer_correct(&r));
	r = rec("It costs $-3.50", "-3.5");
	assert_true(kvb_answer_correct(&r));
	r = rec("The Bergen!", "Oslo\nbergen");
	assert_true(kvb_answer_correct(&r));
}

static void test_accuracy_check(void **state)
{
	struct kvb_out_rec base[40], cand[40];
	struct kvb_pair pairs[40];
	struct kvb_acc_opts o = { 0.02, 0.05 };
	struct kvb_acc_result r;
	struct kvb_check c;
	(void)state;
	for (int i = 0; i < 40; i++) {
		base[i] = rec("A", "A");
		cand[i] = rec(i < 10 ? "B" : "A", "A");
		pairs[i].base = &base[i];
		pairs[i].cand = &cand[i];
	}
	assert_int_equal(kvb_check_accuracy(pairs, 40, &o, &r, &c), 0);
	assert_int_equal(r.b, 10);
	assert_int_equal(r.c, 0);
	NEAR(r.drop, 0.25, 1e-12);
	NEAR(r.p_value, 2.0 / 1024.0, 1e-12);
	assert_false(c.passed);
	assert_string_equal(c.name, "accuracy");
	/* one discordant pair in 40: a 2.5-point drop, far from significant */
	for (int i = 0; i < 40; i++)
		cand[i] = rec(i < 1 ? "B" : "A", "A");
	kvb_check_accuracy(pairs, 40, &o, &r, &c);
	assert_true(c.passed);
	assert_non_null(strstr(c.reason, "not significant"));
	/* no expected answers: not measured */
	for (int i = 0; i < 40; i++)
		base[i].expected = cand[i].expected = NULL;
	assert_int_equal(kvb_check_accuracy(pairs, 40, &o, &r, &c), 1);
}

static void test_quality_check(void **state)
{
	struct kvb_out_rec base[30], cand[30];
	struct kvb_pair pairs[30];
	struct kvb_quality_opts o = { 0.02, 3 };
	struct kvb_quality_result r;
	struct kvb_check c[2];
	(void)state;
	for (int i = 0; i < 30; i++) {
		base[i] = rec("Bergen", "Bergen\nBergen city");
		cand[i] = rec(i % 2 ? "Oslo" : "Bergen", "Bergen\nBergen city");
		pairs[i].base = &base[i];
		pairs[i].cand = &cand[i];
	}
	assert_int_equal(kvb_check_quality(pairs, 30, &o, &r, c), 0);
	NEAR(r.base_f1, 1.0, 1e-12);
	NEAR(r.cand_f1, 0.5, 1e-12);
	NEAR(r.f1_diff, -0.5, 1e-12);
	assert_true(r.f1_hi < 0);
	assert_false(c[0].passed);
	assert_false(c[1].passed);
	for (int i = 0; i < 30; i++)
		cand[i] = rec("Bergen", "Bergen");
	kvb_check_quality(pairs, 30, &o, &r, c);
	assert_true(c[0].passed && c[1].passed);
	NEAR(c[0].figure, 0.0, 1e-12);
}

static void test_ttft_checks(void **state)
{
	double cold[3] = { 1.0, 1.2, 0.8 }, warm[2] = { 0.2, 0.3 };
	struct kvb_check c;
	json_t *j;
	(void)state;
	kvb_check_ttft_ratio(cold, 3, warm, 2, 1.2, &c);
	assert_true(c.passed);
	NEAR(c.figure, 4.0, 1e-12);
	kvb_check_speedup(warm, 2, cold, 3, 1.2, &c);
	assert_false(c.passed);
	NEAR(c.figure, 0.25, 1e-12);
	kvb_check_ttft_ratio(cold, 3, warm, 0, 1.2, &c);
	assert_false(c.passed);
	j = kvb_check_to_json(&c);
	assert_true(json_is_null(json_object_get(j, "figure")));
	assert_string_equal(json_string_value(json_object_get(j, "name")), "ttft_ratio");
	assert_true(json_is_false(json_object_get(j, "passed")));
	json_decref(j);
	NEAR(kvb_stddev(cold, 3), 0.2, 1e-12);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_wilson_newcombe),
		cmocka_unit_test(test_mcnemar),
		cmocka_unit_test(test_bootstrap),
		cmocka_unit_test(test_f1),
		cmocka_unit_test(test_rouge_l),
		cmocka_unit_test(test_parse_generation),
		cmocka_unit_test(test_answer_correct),
		cmocka_unit_test(test_accuracy_check),
		cmocka_unit_test(test_quality_check),
		cmocka_unit_test(test_ttft_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
