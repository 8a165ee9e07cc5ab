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
#include "suite/matrix.h"
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
	kvb_exp_checks(&t, groups, skipped, "/nonexistent", NULL, 0, &r);
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
		kvb_exp_checks(&t, groups, sk, "/nonexistent", NULL, 0, &q);
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
		kvb_exp_checks(&t, "[]", skipped, "/nonexistent", NULL, 0, &e);
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
		kvb_exp_checks(&t, groups, skipped, "/nonexistent", NULL, 0, &e);
		assert_int_equal(e.checks[0].verdict, KVB_V_ERROR);
		free(e.checks[0].name);
		free(e.checks[0].unit);
		free(e.checks[0].reason);
		free(e.checks);
	}
}


/* ---- suite checks over outputs.jsonl: identity tolerance, logprobs, first request ---- */

static void write_file(const char *dir, const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", dir, name);
	assert_int_equal(kv_write_file_atomic(p, text, strlen(text)), 0);
	free(p);
}

/* ref (pass 0) and f (pass 1) agree on k0 and k2; on k1 f picks the
   runner-up token, 0.05 nats below the top one (a near-tie at bf16, a
   corruption at fp32); k3's logprobs differ by 0.02 with the same tokens */
static const char outs_jsonl[] =
	"{\"request_id\":0,\"engine_id\":\"ref\",\"pass\":0,\"key\":\"k0\",\"status\":\"ok\",\"text\":\"a\",\"token_ids\":[1],\"logprobs\":[{\"t\":\"a\",\"lp\":-0.1,\"top\":[[\"a\",-0.1],[\"b\",-2.0]]}]}\n"
	"{\"request_id\":1,\"engine_id\":\"ref\",\"pass\":0,\"key\":\"k1\",\"status\":\"ok\",\"text\":\"a\",\"token_ids\":[1],\"logprobs\":[{\"t\":\"a\",\"lp\":-0.1,\"top\":[[\"a\",-0.1],[\"b\",-0.15]]}]}\n"
	"{\"request_id\":2,\"engine_id\":\"ref\",\"pass\":0,\"key\":\"k2\",\"status\":\"ok\",\"text\":\"a\",\"token_ids\":[1],\"logprobs\":[{\"t\":\"a\",\"lp\":-0.1,\"top\":[[\"a\",-0.1],[\"b\",-2.0]]}]}\n"
	"{\"request_id\":3,\"engine_id\":\"ref\",\"pass\":0,\"key\":\"k3\",\"status\":\"ok\",\"text\":\"a\",\"token_ids\":[1],\"logprobs\":[{\"t\":\"a\",\"lp\":-0.1,\"top\":[[\"a\",-0.1],[\"b\",-2.0]]}]}\n"
	"{\"request_id\":0,\"engine_id\":\"f\",\"pass\":0,\"key\":\"k0\",\"status\":\"ok\",\"text\":\"a\",\"token_ids\":[1],\"logprobs\":[{\"t\":\"a\",\"lp\":-0.1,\"top\":[[\"a\",-0.1],[\"b\",-2.0]]}]}\n"
	"{\"request_id\":1,\"engine_id\":\"f\",\"pass\":1,\"key\":\"k0\",\"status\":\"ok\",\"text\":\"a\",\"token_ids\":[1],\"logprobs\":[{\"t\":\"a\",\"lp\":-0.1,\"top\":[[\"a\",-0.1],[\"b\",-2.0]]}]}\n"
	"{\"request_id\":2,\"engine_id\":\"f\",\"pass\":1,\"key\":\"k3\",\"status\":\"ok\",\"text\":\"a\",\"token_ids\":[1],\"logprobs\":[{\"t\":\"a\",\"lp\":-0.12,\"top\":[[\"a\",-0.12],[\"b\",-2.0]]}]}\n"
	"{\"request_id\":3,\"engine_id\":\"f\",\"pass\":1,\"key\":\"k1\",\"status\":\"ok\",\"text\":\"b\",\"token_ids\":[2],\"logprobs\":[{\"t\":\"b\",\"lp\":-0.1,\"top\":[[\"b\",-0.1],[\"a\",-0.15]]}]}\n"
	"{\"request_id\":4,\"engine_id\":\"f\",\"pass\":1,\"key\":\"k2\",\"status\":\"ok\",\"text\":\"a\",\"token_ids\":[1],\"logprobs\":[{\"t\":\"a\",\"lp\":-0.1,\"top\":[[\"a\",-0.1],[\"b\",-2.0]]}]}\n";

static struct kvb_suite_check mkc(enum kvb_check_type type, const char *name, const char *tol,
				  bool strict, bool prompt, double max_lp)
{
	struct kvb_suite_check k = { 0 };
	k.type = type;
	k.name = (char *)name;
	k.baseline = "ref";
	k.candidate = "f";
	k.pass = 1;
	k.baseline_pass = 0;
	k.tolerance = (char *)tol;
	k.strict = strict;
	k.prompt = prompt;
	k.near_tie_nats = -1;
	k.max_lp_delta = max_lp;
	k.max_kl = -1;
	return k;
}

static void test_output_checks(void **state)
{
	char dir[] = "/tmp/kvb-outchecks-XXXXXX";
	char *engines[] = { "ref", "f", NULL };
	struct kvb_suite_check checks[] = {
		mkc(KVB_CHECK_IDENTITY, "id-bf16", NULL, false, false, -1),
		mkc(KVB_CHECK_IDENTITY, "id-fp32", "fp32", false, false, -1),
		mkc(KVB_CHECK_IDENTITY, "id-strict", NULL, true, false, -1),
		mkc(KVB_CHECK_LOGPROBS, "lp-loose", NULL, false, false, 1.0),
		mkc(KVB_CHECK_LOGPROBS, "lp-fp32", "fp32", false, false, -1),
		mkc(KVB_CHECK_LOGPROBS, "lp-prompt", "fp32", false, true, -1),
	};
	struct kvb_suite_test t = { 0 };
	struct kvb_test_result r = { 0 };
	const char *skipped[] = { NULL };
	(void)state;

	assert_non_null(mkdtemp(dir));
	write_file(dir, "outputs.jsonl", outs_jsonl);
	checks[3].max_kl = 10;
	t.name = "t";
	t.engines = engines;
	t.n_engines = 2;
	t.passes = 1;
	t.claims_reuse = true;
	t.checks = checks;
	t.n_checks = KV_ARRAY_SIZE(checks);
	kvb_exp_checks(&t, "[]", skipped, dir, NULL, 0, &r);
	assert_int_equal(r.n_checks, 6);
	/* the 0.05-nat flip is a benign near-tie at bf16 (0.1 nats) */
	assert_int_equal(r.checks[0].verdict, KVB_V_PASS);
	assert_int_equal(r.checks[0].first_req, -1);
	/* ... and a corruption at fp32 (1e-3): f's request 3 of 0..4, in send order */
	assert_int_equal(r.checks[1].verdict, KVB_V_FAIL);
	assert_int_equal(r.checks[1].first_req, 3);
	assert_int_equal(r.checks[2].verdict, KVB_V_FAIL); /* strict: near-ties fail too */
	assert_int_equal(r.checks[2].first_req, 3);
	assert_int_equal(r.checks[3].verdict, KVB_V_PASS); /* |dlp| 0.02 < 1 */
	/* fp32: |dlp| 0.02 of k3 (request 2) and the flip of k1 (request 3) exceed 1e-3 */
	assert_int_equal(r.checks[4].verdict, KVB_V_FAIL);
	assert_string_equal(r.checks[4].unit, "nats");
	assert_int_equal(r.checks[4].first_req, 2);
	/* no record carries prompt logprobs: nothing to measure fails */
	assert_int_equal(r.checks[5].verdict, KVB_V_FAIL);
	assert_non_null(strstr(r.checks[5].reason, "nothing to compare"));
	assert_true(isnan(r.checks[5].figure));
	for (size_t i = 0; i < r.n_checks; i++) {
		free(r.checks[i].name);
		free(r.checks[i].unit);
		free(r.checks[i].reason);
	}
	free(r.checks);
	rm_rf(dir);
}


/* implicit cache_path / silent_miss of a claiming engine and explicit
   cache_path, from /metrics snapshots (Prometheus text) */
static void test_metrics_checks(void **state)
{
	char *engines[] = { "ref", "f", "g", NULL };
	struct kvb_suite_check checks[2] = { { 0 }, { 0 } };
	char *f_text[3] = {
		"lmcache:num_hit_tokens_total 0\nlmcache:num_requested_tokens_total 0\n"
		"lmcache:num_stored_tokens_total 0\n",
		"lmcache:num_hit_tokens_total 0\nlmcache:num_requested_tokens_total 100\n"
		"lmcache:num_stored_tokens_total 96\n",
		"lmcache:num_hit_tokens_total 0\nlmcache:num_requested_tokens_total 200\n"
		"lmcache:num_stored_tokens_total 192\n",
	};
	char *g_text[3] = {
		"lmcache:num_hit_tokens_total 0\nlmcache:num_requested_tokens_total 0\n",
		"lmcache:num_hit_tokens_total 0\nlmcache:num_requested_tokens_total 100\n",
		NULL, /* the engine's /metrics could not be read after the test */
	};
	struct kvb_exp_snap snaps[2] = {
		{ .engine = "f", .claims = true, .text = f_text, .n_passes = 2 },
		{ .engine = "g", .claims = false, .text = g_text, .n_passes = 2 },
	};
	struct kvb_suite_test t = { 0 };
	struct kvb_test_result r = { 0 };
	const char *skipped[] = { NULL };
	(void)state;

	checks[0].type = KVB_CHECK_CACHE_PATH;
	checks[0].name = "cache_path.g";
	checks[0].engine = "g";
	checks[0].pass = 0;
	checks[0].baseline_pass = -1;
	checks[1] = checks[0];
	checks[1].name = "cache_path.g.last";
	checks[1].pass = -1;
	t.name = "t";
	t.engines = engines;
	t.n_engines = 3;
	t.passes = 2;
	t.claims_reuse = true;
	t.checks = checks;
	t.n_checks = 2;
	kvb_exp_checks(&t, "[]", skipped, "/nonexistent", snaps, 2, &r);
	assert_int_equal(r.n_checks, 4);
	/* explicit, pass 0 of g: no hit in lmcache counters */
	assert_string_equal(r.checks[0].name, "cache_path.g");
	assert_int_equal(r.checks[0].verdict, KVB_V_FAIL);
	assert_non_null(strstr(r.checks[0].reason, "cache path never exercised"));
	assert_non_null(strstr(r.checks[0].reason, "g, pass 0: "));
	/* explicit, last pass of g: /metrics not read afterwards: an error, never a pass */
	assert_int_equal(r.checks[1].verdict, KVB_V_ERROR);
	/* implicit on the claiming engine f, over the last pass: stores grew, no hit */
	assert_string_equal(r.checks[2].name, "cache_path.f");
	assert_int_equal(r.checks[2].verdict, KVB_V_FAIL);
	assert_non_null(strstr(r.checks[2].reason, "f, pass 1: cache path never exercised"));
	assert_string_equal(r.checks[3].name, "silent_miss.f");
	assert_int_equal(r.checks[3].verdict, KVB_V_FAIL);
	assert_true(r.checks[3].figure == 96);
	for (size_t i = 0; i < r.n_checks; i++) {
		free(r.checks[i].name);
		free(r.checks[i].unit);
		free(r.checks[i].reason);
	}
	free(r.checks);
	memset(&r, 0, sizeof(r));

	/* hits in the last pass of f: the path is proven, no silent miss */
	f_text[2] = "lmcache:num_hit_tokens_total 48\nlmcache:num_requested_tokens_total 200\n"
		    "lmcache:num_stored_tokens_total 192\n";
	t.n_checks = 0;
	kvb_exp_checks(&t, "[]", skipped, "/nonexistent", snaps, 2, &r);
	assert_int_equal(r.n_checks, 2);
	assert_int_equal(r.checks[0].verdict, KVB_V_PASS);
	assert_true(r.checks[0].figure == 48);
	assert_int_equal(r.checks[1].verdict, KVB_V_PASS);
	for (size_t i = 0; i < r.n_checks; i++) {
		free(r.checks[i].name);
		free(r.checks[i].unit);
		free(r.checks[i].reason);
	}
	free(r.checks);
	memset(&r, 0, sizeof(r));
	/* an engine that makes no claim in this test (claims_reuse: false): no implicit check */
	snaps[0].claims = false;
	kvb_exp_checks(&t, "[]", skipped, "/nonexistent", snaps, 2, &r);
	assert_int_equal(r.n_checks, 0);
	free(r.checks);
}

/* ---- the detection matrix: rows, verdicts, matrix.csv / matrix.json ---- */

static void add_check(struct kvb_test_result *r, const char *name, enum kvb_verdict v, long first)
{
	kvb_test_add_check(r, name, v, 1, 1, "x", "why");
	r->checks[r->n_checks - 1].first_req = first;
}

static void free_result(struct kvb_test_result *r)
{
	for (size_t i = 0; i < r->n_checks; i++) {
		free(r->checks[i].name);
		free(r->checks[i].unit);
		free(r->checks[i].reason);
	}
	free(r->checks);
	free(r->reason);
	memset(r, 0, sizeof(*r));
}

static const char matrix_suite[] =
	"engines: {a: {preset: kvserve}}\n"
	"workloads: {sweep: {type: ttft-sweep}}\n"
	"tests:\n"
	"  det: {workload: sweep, engines: [a], fault: \"zero-tail\", class: B, expect: detect,"
	" description: \"a, b\"}\n"
	"  miss: {workload: sweep, engines: [a], fault: offset, class: B, expect: detect}\n"
	"  clean: {workload: sweep, engines: [a], expect: pass}\n"
	"  alarm: {workload: sweep, engines: [a], expect: pass}\n"
	"  err: {workload: sweep, engines: [a], fault: lossy, expect: detect}\n";

static void test_matrix(void **state)
{
	char dir[] = "/tmp/kvb-matrix-XXXXXX";
	struct kvb_suite s;
	struct kvb_matrix_row rows[5];
	struct kvb_test_result run = { 0 };
	json_t *j;
	char *csv;
	(void)state;

	assert_int_equal(kvb_suite_load_buf(&s, "m.yaml", matrix_suite, strlen(matrix_suite), NULL), 0);
	for (int i = 0; i < 5; i++)
		kvb_matrix_row_init(&rows[i], &s, &s.tests[i]);

	/* det: run 1 clean, run 2 detected by identity (request 7) and logprobs (request 4),
	   run 3 detected by identity again (request 2): union of checks, smallest request */
	add_check(&run, "max_error_rate", KVB_V_PASS, -1);
	kvb_matrix_add_run(&rows[0], &run, 20);
	free_result(&run);
	add_check(&run, "identity.f", KVB_V_FAIL, 7);
	add_check(&run, "logprobs.f", KVB_V_FAIL, 4);
	add_check(&run, "cache_path.f", KVB_V_PASS, -1);
	kvb_matrix_add_run(&rows[0], &run, 20);
	free_result(&run);
	add_check(&run, "identity.f", KVB_V_FAIL, 2);
	kvb_matrix_add_run(&rows[0], &run, 20);
	free_result(&run);
	assert_int_equal(kvb_matrix_finish(&rows[0]), KVB_V_PASS);
	assert_string_equal(kvb_matrix_verdict_name(rows[0].verdict), "detected");
	assert_int_equal(rows[0].runs, 3);
	assert_int_equal(rows[0].detected_runs, 2);
	assert_string_equal(rows[0].checks, "identity.f+logprobs.f");
	assert_int_equal(rows[0].first_req, 2);

	/* miss: every check passed */
	add_check(&run, "identity.f", KVB_V_PASS, -1);
	kvb_matrix_add_run(&rows[1], &run, 20);
	free_result(&run);
	assert_int_equal(kvb_matrix_finish(&rows[1]), KVB_V_FAIL);
	assert_string_equal(kvb_matrix_verdict_name(rows[1].verdict), "missed");

	/* clean: two clean runs; a skipped check is no alarm */
	add_check(&run, "identity.f", KVB_V_PASS, -1);
	add_check(&run, "min_speedup", KVB_V_SKIPPED, -1);
	kvb_matrix_add_run(&rows[2], &run, 10);
	kvb_matrix_add_run(&rows[2], &run, 10);
	free_result(&run);
	assert_int_equal(kvb_matrix_finish(&rows[2]), KVB_V_PASS);
	assert_string_equal(kvb_matrix_verdict_name(rows[2].verdict), "pass");

	/* alarm: one of two runs raised a check */
	add_check(&run, "identity.f", KVB_V_PASS, -1);
	kvb_matrix_add_run(&rows[3], &run, 10);
	free_result(&run);
	add_check(&run, "identity.f", KVB_V_FAIL, 0);
	kvb_matrix_add_run(&rows[3], &run, 10);
	free_result(&run);
	assert_int_equal(kvb_matrix_finish(&rows[3]), KVB_V_FAIL);
	assert_string_equal(kvb_matrix_verdict_name(rows[3].verdict), "false-alarm");
	assert_int_equal(rows[3].detected_runs, 1);

	/* err: a check that could not run makes the row an error, never "detected",
	   even next to a failing check */
	add_check(&run, "identity.f", KVB_V_FAIL, 1);
	add_check(&run, "cache_path.f", KVB_V_ERROR, -1);
	kvb_matrix_add_run(&rows[4], &run, 10);
	free_result(&run);
	run.verdict = KVB_V_ERROR;
	run.reason = xstrdup("engine f exited with status 2");
	kvb_matrix_add_run(&rows[4], &run, -1);
	free_result(&run);
	assert_int_equal(kvb_matrix_finish(&rows[4]), KVB_V_ERROR);
	assert_string_equal(kvb_matrix_verdict_name(rows[4].verdict), "error");
	assert_int_equal(rows[4].detected_runs, 0);
	assert_int_equal(rows[4].error_runs, 2);
	assert_non_null(strstr(rows[4].note, "run 2: engine f exited with status 2"));

	assert_non_null(mkdtemp(dir));
	assert_int_equal(kvb_matrix_write(dir, rows, 5), 0);
	csv = slurp(dir, "matrix.csv");
	assert_true(!strncmp(csv, kvb_matrix_header, strlen(kvb_matrix_header)));
	assert_non_null(strstr(csv, "\ndet,zero-tail,B,sweep (ttft-sweep),20,3,detect,2,"
				    "identity.f+logprobs.f,2,detected,\"a, b\"\n"));
	assert_non_null(strstr(csv, "\nmiss,offset,B,sweep (ttft-sweep),20,1,detect,0,,,missed,\n"));
	assert_non_null(strstr(csv, "\nclean,,,sweep (ttft-sweep),10,2,pass,0,,,pass,\n"));
	assert_non_null(strstr(csv, "\nalarm,,,sweep (ttft-sweep),10,2,pass,1,identity.f,0,false-alarm,\n"));
	assert_non_null(strstr(csv, "\nerr,lossy,,sweep (ttft-sweep),10,2,detect,0,,,error,"));
	free(csv);
	csv = slurp(dir, "matrix.json");
	j = json_loads(csv, 0, NULL);
	assert_true(json_is_array(j));
	assert_int_equal(json_array_size(j), 5);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(j, 0), "first_detected_request")), 2);
	assert_true(json_is_null(json_object_get(json_array_get(j, 1), "first_detected_request")));
	assert_string_equal(json_string_value(json_object_get(json_array_get(j, 3), "verdict")),
			    "false-alarm");
	json_decref(j);
	free(csv);
	for (int i = 0; i < 5; i++)
		kvb_matrix_row_release(&rows[i]);
	kvb_suite_release(&s);
	rm_rf(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verdicts_and_files),
		cmocka_unit_test(test_checks),
		cmocka_unit_test(test_output_checks),
		cmocka_unit_test(test_metrics_checks),
		cmocka_unit_test(test_matrix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
