/*
 * Results files (overall.result, <test>.result, summary.json, junit.xml) and
 * the threshold checks evaluated over per-(engine, pass) statistics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <unistd.h>

#include <jansson.h>

#include "common/util.h"
#include "suite/experiment.h"
#include "suite/results.h"
#include "suite/suite.h"

static char *slurp(const char *dir, const char *name)
{
	char *p = xasprintf("%s/%s", dir, name);
	char *t = kv_read_file(p, 1 << 20, NULL);
	assert_non_null(t);
	free(p);
	return t;
}

static void rm_rf(const char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd))
		(void)0;
	free(cmd);
}

static void test_verdicts_and_files(void **state)
{
	char dir[] = "/tmp/kvb-results-XXXXXX";
	struct kvb_suite_result r = { 0 };
	char *t;
	json_t *j;
	(void)state;

	assert_non_null(mkdtemp(dir));
	r.run_id = xstrdup("r1");
	r.suite = xstrdup("s<&>");
	r.suite_file = xstrdup("s.yaml");
	r.tests = xcalloc(3, sizeof(*r.tests));
	r.n_tests = 3;
	r.tests[0].name = xstrdup("a");
	r.tests[1].name = xstrdup("b");
	r.tests[2].name = xstrdup("c");
	for (int i = 0; i < 3; i++)
		r.tests[i].verdict = KVB_V_PENDING;

	/* at the start: INTERRUPTED, pending tests have no .result */
	assert_int_equal(kvb_results_write(dir, &r), 0);
	t = slurp(dir, "overall.result");
	assert_true(!strncmp(t, "INTERRUPTED\n", 12));
	free(t);
	assert_int_equal(access("/nonexistent", F_OK), -1);
	{
		char *p = xasprintf("%s/a.result", dir);
		assert_int_equal(access(p, F_OK), -1);
		free(p);
	}
	t = slurp(dir, "summary.json");
	assert_non_null(strstr(t, "\"status\": \"running\""));
	free(t);

	kvb_test_add_check(&r.tests[0], "max_ttft.x", KVB_V_PASS, 0.1, 0.2, "s", "p90 of x");
	kvb_test_add_check(&r.tests[0], "min_speedup.x", KVB_V_SKIPPED, NAN, 2, "x", "--quick");
	r.tests[0].verdict = kvb_test_verdict(&r.tests[0]);
	assert_int_equal(r.tests[0].verdict, KVB_V_PASS);
	kvb_test_add_check(&r.tests[1], "min_speedup.y", KVB_V_FAIL, 1.1, 1.2, "x", "a \"quote\" <b>");
	r.tests[1].verdict = kvb_test_verdict(&r.tests[1]);
	assert_int_equal(r.tests[1].verdict, KVB_V_FAIL);
	r.tests[2].verdict = KVB_V_ERROR;
	r.tests[2].reason = xstrdup("engine e killed by signal 9 during the test");

	/* every test has a verdict, but the run is not finished: still INTERRUPTED */
	assert_int_equal(kvb_suite_verdict(&r), KVB_V_INTERRUPTED);
	r.finished = true;
	assert_int_equal(kvb_suite_verdict(&r), KVB_V_FAIL);
	assert_int_equal(kvb_results_write(dir, &r), 0);

	t = slurp(dir, "overall.result");
	assert_string_equal(t, "FAIL\nPASS a\nFAIL b: min_speedup.y failed\n"
			       "ERROR c: engine e killed by signal 9 during the test\n");
	free(t);
	t = slurp(dir, "b.result");
	assert_string_equal(t, "FAIL\nFAIL min_speedup.y: figure 1.1 x, threshold 1.2 x "
			       "(a \"quote\" <b>)\n");
	free(t);
	t = slurp(dir, "a.result");
	assert_non_null(strstr(t, "SKIPPED min_speedup.x: figure -, threshold 2 x (--quick)\n"));
	free(t);

	t = slurp(dir, "junit.xml");
	assert_non_null(strstr(t, "<testsuites name=\"s&lt;&amp;&gt;\" tests=\"4\" failures=\"1\" "
				  "errors=\"1\" skipped=\"1\""));
	assert_non_null(strstr(t, "<failure message=\"figure 1.1 x, threshold 1.2 x: a &quot;quote&quot; "
				  "&lt;b&gt;\""));
	assert_non_null(strstr(t, "<testcase classname=\"s&lt;&amp;&gt;.c\" name=\"run\""));
	free(t);

	t = slurp(dir, "summary.json");
	j = json_loads(t, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "status")), "fail");
	assert_true(json_is_null(json_object_get(json_array_get(json_object_get(
		json_array_get(json_object_get(j, "tests"), 0), "checks"), 1), "figure")));
	json_decref(j);
	free(t);

	/* interrupted: never PASS, even when every test that ran passed */
	r.tests[1].verdict = KVB_V_PASS;
	r.tests[2].verdict = KVB_V_INTERRUPTED;
	r.interrupted = true;
	assert_int_equal(kvb_results_write(dir, &r), 0);
	t = slurp(dir, "overall.result");
	assert_true(!strncmp(t, "INTERRUPTED\n", 12));
	free(t);
	t = slurp(dir, "summary.json");
	assert_non_null(strstr(t, "\"status\": \"interrupted\""));
	free(t);

	/* a test skipped by --quick does not fail the run */
	r.interrupted = false;
	r.tests[2].verdict = KVB_V_SKIPPED;
	assert_int_equal(kvb_suite_verdict(&r), KVB_V_PASS);

	kvb_suite_result_release(&r);
	rm_rf(dir);
}

static const char *groups =
	"[{\"engine_id\":\"cache\",\"pass\":0,\"completed\":4,\"failed\":0,"
	"  \"ttft\":{\"mean\":0.5,\"p90\":0.6,\"n\":4},\"cache\":{\"hit_rate\":0.1}},"
	" {\"engine_id\":\"cache\",\"pass\":1,\"completed\":4,\"failed\":0,"
	"  \"ttft\":{\"mean\":0.1,\"p90\":0.12,\"n\":4},\"cache\":{\"hit_rate\":0.9}},"
	" {\"engine_id\":\"nocache\",\"pass\":0,\"completed\":4,\"failed\":0,"
	"  \"ttft\":{\"mean\":0.5,\"p90\":0.55,\"n\":4},\"cache\":{\"hit_rate\":null}},"
	" {\"engine_id\":\"nocache\",\"pass\":1,\"completed\":3,\"failed\":1,"
	"  \"ttft\":{\"mean\":0.45,\"p90\":0.5,\"n\":3},\"cache\":{\"hit_rate\":null}}]";

static struct kvb_suite_check mk(enum kvb_check_type type, const char *name, const char *engine,
				 const char *base, const char *cand, int pass, int bpass,
				 const char *stat, double limit)
{
	struct kvb_suite_check k = { 0 };
	k.type = type;
	k.name = (char *)name;
	k.engine = (char *)engine;
	k.baseline = (char *)base;
	k.candidate = (char *)cand;
	k.pass = pass;
	k.baseline_pass = bpass;
	k.stat = (char *)stat;
	k.limit = limit;
	return k;
}

static void test_checks(void **state)
{
	char *engines[] = { "cache", "nocache", NULL };
	struct kvb_suite_check checks[] = {
		mk(KVB_CHECK_MAX_TTFT, "ttft-ok", "cache", NULL, NULL, -1, -1, "p90", 0.2),
		mk(KVB_CHECK_MAX_TTFT, "ttft-all", NULL, NULL, NULL, 1, -1, "mean", 0.2),
		mk(KVB_CHECK_MIN_SPEEDUP, "vs-base", NULL, "nocache", "cache", 1, -1, "mean", 4),
		mk(KVB_CHECK_MIN_SPEEDUP, "cold-warm", NULL, "cache", "cache", 1, 0, "mean", 6),
		mk(KVB_CHECK_MIN_HIT_RATE, "hit", "cache", NULL, NULL, -1, -1, "mean", 0.5),
		mk(KVB_CHECK_MIN_HIT_RATE, "hit-none", "nocache", NULL, NULL, -1, -1, "mean", 0.5),
		mk(KVB_CHECK_MAX_ERROR_RATE, "err", NULL, NULL, NULL, -1, -1, "mean", 0.1),
		mk(KVB_CHECK_MAX_TTFT, "missing-pass", "cache", NULL, NULL, 5, -1, "mean", 1),
	};
	struct kvb_suite_test t = { 0 };
	struct kvb_test_result r = { 0 };
	const char *skipped[] = { NULL };
	(void)state;

	t.name = "t";
	t.engines = engines;
	t.n_engines = 2;
	t.passes = 1;
	t.checks = checks;
	t.n_checks = KV_ARRAY_SIZE(checks);
	kvb_exp_checks(&t, groups, skipped, "/nonexistent", &r);
	assert_int_equal(r.n_checks, 8);

	assert_int_equal(r.checks[0].verdict, KVB_V_PASS);      /* 0.12 <= 0.2 (last pass) */
	assert_true(fabs(r.checks[0].figure - 0.12) < 1e-9);
	assert_int_equal(r.checks[1].verdict, KVB_V_FAIL);      /* nocache 0.45 is the worst */
	assert_true(fabs(r.checks[1].figure - 0.45) < 1e-9);
	assert_non_null(strstr(r.checks[1].reason, "nocache"));
	assert_int_equal(r.checks[2].verdict, KVB_V_PASS);      /* 0.45 / 0.1 = 4.5 */
	assert_true(fabs(r.checks[2].figure - 4.5) < 1e-9);
	assert_int_equal(r.checks[3].verdict, KVB_V_FAIL);      /* 0.5 / 0.1 = 5 < 6 */
	assert_true(fabs(r.checks[3].figure - 5) < 1e-9);
	assert_int_equal(r.checks[4].verdict, KVB_V_PASS);
	assert_int_equal(r.checks[5].verdict, KVB_V_FAIL);      /* never passes unmeasured */
	assert_true(isnan(r.checks[5].figure));
	assert_int_equal(r.checks[6].verdict, KVB_V_PASS);      /* 1 of 16 */
	assert_true(fabs(r.checks[6].figure - 1.0 / 16) < 1e-9);
	assert_int_equal(r.checks[7].verdict, KVB_V_FAIL);
	assert_int_equal(kvb_test_verdict(&r), KVB_V_FAIL);
	{
		struct kvb_suite_result sr = { 0 };
		sr.tests = xcalloc(1, sizeof(*sr.tests));
		sr.tests[0] = r;
		sr.n_tests = 1;
		sr.tests[0].name = xstrdup("t");
		kvb_suite_result_release(&sr);
	}

	/* --quick: checks that need the skipped baseline are SKIPPED, not passed */
	{
		const char *sk[] = { "nocache", NULL };
		struct kvb_test_result q = { 0 };
		struct kvb_suite_check c2[] = {
			mk(KVB_CHECK_MIN_SPEEDUP, "vs-base", NULL, "nocache", "cache", 1, -1, "mean", 4),
			mk(KVB_CHECK_IDENTITY, "ident", NULL, "nocache", "cache", -1, -1, "mean", 0),
			mk(KVB_CHECK_MAX_TTFT, "ttft", NULL, NULL, NULL, -1, -1, "mean", 0.2),
		};
		t.checks = c2;
		t.n_checks = 3;
		kvb_exp_checks(&t, groups, sk, "/nonexistent", &q);
		assert_int_equal(q.checks[0].verdict, KVB_V_SKIPPED);
		assert_int_equal(q.checks[1].verdict, KVB_V_SKIPPED);
		assert_int_equal(q.checks[2].verdict, KVB_V_PASS); /* only cache counted */
		assert_int_equal(kvb_test_verdict(&q), KVB_V_PASS);
		for (size_t i = 0; i < q.n_checks; i++) {
			free(q.checks[i].name);
			free(q.checks[i].unit);
			free(q.checks[i].reason);
		}
		free(q.checks);
	}
	/* no statistics at all: every threshold check fails */
	{
		struct kvb_test_result e = { 0 };
		t.checks = checks;
		t.n_checks = KV_ARRAY_SIZE(checks);
		kvb_exp_checks(&t, "[]", skipped, "/nonexistent", &e);
		for (size_t i = 0; i < e.n_checks; i++) {
			assert_int_equal(e.checks[i].verdict, KVB_V_FAIL);
			free(e.checks[i].name);
			free(e.checks[i].unit);
			free(e.checks[i].reason);
		}
		free(e.checks);
	}
	/* identity over an outputs.jsonl that does not exist: ERROR, never PASS */
	{
		struct kvb_test_result e = { 0 };
		struct kvb_suite_check c3 = mk(KVB_CHECK_IDENTITY, "ident", NULL, "nocache", "cache",
					       -1, -1, "mean", 0);
		t.checks = &c3;
		t.n_checks = 1;
		kvb_exp_checks(&t, groups, skipped, "/nonexistent", &e);
		assert_int_equal(e.checks[0].verdict, KVB_V_ERROR);
		free(e.checks[0].name);
		free(e.checks[0].unit);
		free(e.checks[0].reason);
		free(e.checks);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verdicts_and_files),
		cmocka_unit_test(test_checks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
