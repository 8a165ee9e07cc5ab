/* outputs.jsonl reader, pairing, identity with divergence classification,
 * logprob deltas, on recorded records (tests/fixtures/data/outputs_*.jsonl). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <unistd.h>

#include "common/util.h"
#include "checks/checks.h"

#define NEAR(a, b, eps) assert_true(fabs((a) - (b)) < (eps))

static char *fx(const char *name)
{
	const char *d = getenv("KV_FIXTURES");
	return xasprintf("%s/data/%s", d ? d : "tests/fixtures", name);
}

struct env {
	struct kvb_outputs base, cand;
	struct kvb_pair *pairs;
	size_t n, unpaired, failed;
};

static int setup(void **state)
{
	struct env *e = xcalloc(1, sizeof(*e));
	char *b = fx("outputs_base.jsonl"), *c = fx("outputs_cand.jsonl");
	if (kvb_outputs_load(b, &e->base) < 0 || kvb_outputs_load(c, &e->cand) < 0)
		return -1;
	free(b);
	free(c);
	kvb_pair_outputs(&e->base, NULL, &e->cand, NULL, &e->pairs, &e->n, &e->unpaired, &e->failed);
	*state = e;
	return 0;
}

static int teardown(void **state)
{
	struct env *e = *state;
	free(e->pairs);
	kvb_outputs_release(&e->base);
	kvb_outputs_release(&e->cand);
	free(e);
	return 0;
}

static const struct kvb_pair *pair_of(struct env *e, const char *key)
{
	for (size_t i = 0; i < e->n; i++)
		if (!strcmp(e->pairs[i].base->key, key))
			return &e->pairs[i];
	return NULL;
}

static void test_load_and_pair(void **state)
{
	struct env *e = *state;
	assert_int_equal(e->base.n, 6);
	assert_true(e->base.v[5].warmup);
	assert_true(isnan(e->base.v[0].prompt_lps[0].logprob));
	assert_int_equal(e->base.v[0].lps[0].n_top, 2);
	NEAR(e->base.v[0].lps[0].top[1].logprob, -2.5, 1e-6);
	/* same, tie, bad, nolp; "failed" left out, warmup skipped, only-cand unpaired */
	assert_int_equal(e->n, 4);
	assert_int_equal(e->failed, 1);
	assert_int_equal(e->unpaired, 2);
	assert_string_equal(e->pairs[0].base->key, "same");
	assert_string_equal(e->pairs[0].cand->engine_id, "cand");
	{
		struct kvb_check c;
		kvb_check_completeness(e->n, e->unpaired, e->failed, true, &c);
		assert_false(c.passed); /* a failed request always fails */
		kvb_check_completeness(e->n, e->unpaired, 0, true, &c);
		assert_true(c.passed);
		kvb_check_completeness(e->n, e->unpaired, 0, false, &c);
		assert_false(c.passed);
		kvb_check_completeness(0, 0, 0, true, &c);
		assert_false(c.passed);
	}
}

static void test_first_token_diff(void **state)
{
	struct env *e = *state;
	assert_int_equal(kvb_first_token_diff(pair_of(e, "same")->base, pair_of(e, "same")->cand), -1);
	assert_int_equal(kvb_first_token_diff(pair_of(e, "tie")->base, pair_of(e, "tie")->cand), 0);
	assert_int_equal(kvb_first_token_diff(pair_of(e, "nolp")->base, pair_of(e, "nolp")->cand), -1);
}

static void test_classify(void **state)
{
	struct env *e = *state;
	const struct kvb_pair *t = pair_of(e, "tie"), *b = pair_of(e, "bad");
	double gap;
	const char *why;

	/* near-tie: both sides' top-2 within 0.02 nats */
	assert_int_equal(kvb_classify_divergence(t->base, t->cand, 0, 0.1, &gap, &why), KVB_DIV_NEAR_TIE);
	NEAR(gap, 0.02, 1e-5);
	/* the same flip with a tighter threshold is corruption */
	assert_int_equal(kvb_classify_divergence(t->base, t->cand, 0, 0.01, &gap, &why), KVB_DIV_CORRUPTION);
	/* a real divergence: the baseline was 3.15 nats sure */
	assert_int_equal(kvb_classify_divergence(b->base, b->cand, 0, 0.1, &gap, &why), KVB_DIV_CORRUPTION);
	NEAR(gap, 3.99, 1e-5); /* max of 3.15 (baseline) and 3.99 (candidate) */
	/* no position: corruption */
	assert_int_equal(kvb_classify_divergence(b->base, b->cand, -1, 0.1, &gap, &why), KVB_DIV_CORRUPTION);
	assert_true(isnan(gap));
}

static void test_identity_check(void **state)
{
	struct env *e = *state;
	struct kvb_identity_opts o = { 0.1, false, NULL };
	struct kvb_identity_result r;
	struct kvb_check c;
	struct kvb_pair sub[2];
	char path[] = "/tmp/kvb_div_XXXXXX";
	int fd = mkstemp(path);
	char *s;
	size_t len, lines = 0;

	assert_true(fd >= 0);
	close(fd);
	o.divergences_path = path;
	assert_int_equal(kvb_check_identity(e->pairs, e->n, &o, &r, &c), 0);
	assert_int_equal(r.n_pairs, 4);
	assert_int_equal(r.n_text_identical, 1);
	assert_int_equal(r.n_ids_compared, 3);
	assert_int_equal(r.n_ids_identical, 1);
	assert_int_equal(r.n_near_tie, 1);
	assert_int_equal(r.n_corruption, 2);
	assert_int_equal(r.n_div, 3);
	assert_false(c.passed);
	NEAR(c.figure, 0.5, 1e-12);
	assert_non_null(strstr(c.reason, "1 benign near-ties"));
	assert_non_null(strstr(c.reason, "key bad"));
	kvb_identity_result_release(&r);
	s = kv_read_file(path, 1 << 20, &len);
	assert_non_null(s);
	for (size_t i = 0; i < len; i++)
		lines += s[i] == '\n';
	assert_int_equal(lines, 3);
	assert_non_null(strstr(s, "\"class\":\"benign-near-tie\""));
	assert_non_null(strstr(s, "\"cand_text\":\" Lyon\""));
	assert_non_null(strstr(s, "\"char_pos\":1"));
	free(s);
	unlink(path);

	/* identical + near-tie only: passes, unless strict */
	sub[0] = *pair_of(e, "same");
	sub[1] = *pair_of(e, "tie");
	o.divergences_path = NULL;
	kvb_check_identity(sub, 2, &o, &r, &c);
	assert_true(c.passed);
	NEAR(c.figure, 1.0, 1e-12);
	kvb_identity_result_release(&r);
	o.strict = true;
	kvb_check_identity(sub, 2, &o, &r, &c);
	assert_false(c.passed);
	NEAR(c.figure, 0.5, 1e-12);
	kvb_identity_result_release(&r);
	/* nothing to compare never passes */
	kvb_check_identity(sub, 0, &o, &r, &c);
	assert_false(c.passed);
	kvb_identity_result_release(&r);
}

static void test_logprobs(void **state)
{
	struct env *e = *state;
	struct kvb_lp_opts o = { false, 0.1, 0.01 };
	struct kvb_lp_stats s;
	struct kvb_check c;
	struct kvb_top_lp pt[2] = { { (char *)"a", (float)log(0.5) }, { (char *)"b", (float)log(0.5) } };
	struct kvb_top_lp qt[2] = { { (char *)"a", (float)log(0.75) }, { (char *)"b", (float)log(0.25) } };
	struct kvb_top_lp rt[1] = { { (char *)"a", (float)log(0.5) } };
	struct kvb_tok_lp p = { (char *)"a", 0, pt, 2 }, q = { (char *)"a", 0, qt, 2 }, r1 = { (char *)"a", 0, rt, 1 };

	/* KL(P||Q) = 0.5 ln(0.5/0.75) + 0.5 ln(0.5/0.25) */
	NEAR(kvb_topk_kl(&p, &q), 0.5 * log(0.5 / 0.75) + 0.5 * log(2.0), 1e-6);
	NEAR(kvb_topk_kl(&p, &p), 0.0, 1e-9);
	/* "b" missing from r1: it gets r1's lowest logprob, so r1 reads as uniform */
	NEAR(kvb_topk_kl(&p, &r1), 0.0, 1e-6);
	{
		/* recorded from kvserve (echo, top-3): the chosen ' ' is appended far
		 * below the top-3, and '~' / \xa8 sit just outside one list each.
		 * Flooring the missing ones at ' ' gave KL 1.18; the floor is the top-3's. */
		struct kvb_top_lp at[4] = { { (char *)" ", -6.89642143f }, { (char *)"\xf4", -1.97755885f },
					    { (char *)"V", -2.19238734f }, { (char *)"\xa8", -2.4030931f } };
		struct kvb_top_lp bt[4] = { { (char *)" ", -6.90520859f }, { (char *)"\xf4", -1.97533429f },
					    { (char *)"V", -2.20473886f }, { (char *)"~", -2.37126565f } };
		struct kvb_tok_lp a = { (char *)" ", -6.89642143f, at, 4 }, b = { (char *)" ", -6.90520859f, bt, 4 };
		double kl = kvb_topk_kl(&a, &b);
		assert_true(kl < 0.01);
		assert_true(kl > 0);
	}

	assert_int_equal(kvb_check_logprobs(e->pairs, e->n, &o, &s, &c), 0);
	assert_int_equal(s.n_tokens, 2); /* only "same": the others diverge at token 0 */
	NEAR(s.max_abs, 0.03, 1e-5);
	NEAR(s.mean_abs, 0.015, 1e-5);
	NEAR(s.max_abs_top, 0.1, 1e-5);
	assert_string_equal(s.worst_key, "same");
	assert_true(s.max_kl > 0 && s.max_kl < 0.01);
	assert_true(c.passed);
	o.max_abs_delta = 0.02;
	kvb_check_logprobs(e->pairs, e->n, &o, &s, &c);
	assert_false(c.passed);

	/* teacher-forced prompt logprobs: " capital" moved by 0.2 nats */
	o.prompt = true;
	o.max_abs_delta = 0.1;
	kvb_check_logprobs(e->pairs, e->n, &o, &s, &c);
	assert_string_equal(c.name, "prompt_logprobs");
	assert_int_equal(s.n_tokens, 1);
	NEAR(s.max_abs, 0.2, 1e-5);
	assert_false(c.passed);
}

static void test_bad_outputs(void **state)
{
	struct kvb_outputs o;
	char *p;
	(void)state;
	p = fx("bad/outputs_no_key.jsonl");
	assert_int_equal(kvb_outputs_load(p, &o), -1);
	free(p);
	p = fx("bad/outputs_bad_lp.jsonl");
	assert_int_equal(kvb_outputs_load(p, &o), -1);
	free(p);
	assert_int_equal(kvb_outputs_parse("x", "{\"key\":\"a\"}\n{", 13, &o), -1);
	assert_int_equal(kvb_outputs_parse("x", "\n{\"key\":\"a\",\"pass\":1}\n\n", 23, &o), 0);
	assert_int_equal(o.n, 1);
	assert_int_equal(o.v[0].pass, 1);
	assert_int_equal(o.v[0].line, 2);
	assert_string_equal(o.v[0].status, "ok");
	kvb_outputs_release(&o);
}

static void test_pair_by_pass(void **state)
{
	const char *t = "{\"key\":\"a\",\"pass\":0,\"text\":\"x\"}\n{\"key\":\"a\",\"pass\":1,\"text\":\"y\"}\n";
	struct kvb_outputs o;
	struct kvb_pair *p;
	size_t n, un, f;
	struct kvb_select s0 = { NULL, 0 }, s1 = { NULL, 1 };
	(void)state;
	assert_int_equal(kvb_outputs_parse("x", t, strlen(t), &o), 0);
	kvb_pair_outputs(&o, &s0, &o, &s1, &p, &n, &un, &f);
	assert_int_equal(n, 1);
	assert_string_equal(p[0].base->text, "x");
	assert_string_equal(p[0].cand->text, "y");
	free(p);
	/* no pass chosen: pass pairs with pass */
	kvb_pair_outputs(&o, NULL, &o, NULL, &p, &n, &un, &f);
	assert_int_equal(n, 2);
	assert_string_equal(p[0].base->text, p[0].cand->text);
	free(p);
	kvb_outputs_release(&o);
}

/* an aborted request and its partner form no pair, are not unpaired, are
   not failures; the victims pair normally */
static void test_pair_skips_aborted(void **state)
{
	const char *t =
		"{\"key\":\"a\",\"pass\":0,\"text\":\"x\"}\n"
		"{\"key\":\"b\",\"pass\":0,\"text\":\"y\"}\n"
		"{\"key\":\"c\",\"pass\":0,\"status\":\"aborted\",\"text\":\"z\"}\n"
		"{\"key\":\"a\",\"pass\":1,\"text\":\"x\"}\n"
		"{\"key\":\"b\",\"pass\":1,\"status\":\"aborted\",\"text\":\"\"}\n"
		"{\"key\":\"c\",\"pass\":1,\"text\":\"z\"}\n"
		"{\"key\":\"d\",\"pass\":1,\"status\":\"aborted\",\"text\":\"\"}\n";
	struct kvb_outputs o;
	struct kvb_pair *p;
	size_t n, un, f, ab;
	struct kvb_select s0 = { NULL, 0 }, s1 = { NULL, 1 };
	struct kvb_check c;
	(void)state;
	assert_int_equal(kvb_outputs_parse("x", t, strlen(t), &o), 0);
	kvb_pair_outputs_ex(&o, &s0, &o, &s1, &p, &n, &un, &f, &ab);
	assert_int_equal(n, 1);
	assert_string_equal(p[0].base->key, "a");
	assert_int_equal(un, 0);
	assert_int_equal(f, 0);
	assert_int_equal(ab, 3);
	kvb_check_completeness_ex(n, un, f, ab, false, &c);
	assert_true(c.passed);
	assert_non_null(strstr(c.reason, "3 aborted by the client"));
	free(p);
	/* the old entry point: aborted records are no failures either */
	kvb_pair_outputs(&o, &s0, &o, &s1, &p, &n, &un, &f);
	assert_int_equal(n, 1);
	assert_int_equal(f, 0);
	free(p);
	kvb_outputs_release(&o);
}

static void test_from_result_round_trip(void **state)
{
	struct kvb_req req;
	struct kvb_result res;
	struct kvb_top_lp top[2] = { { (char *)" a", -0.25f }, { (char *)" b", -1.5f } };
	struct kvb_tok_lp lp[2] = { { (char *)" a", -0.25f, top, 2 }, { (char *)"\u00e9\"", NAN, NULL, 0 } };
	int32_t ids[2] = { 7, -1 };
	struct kvb_out_rec r, back;
	struct kvb_outputs o = { 0 };
	json_t *j;
	char *s;
	(void)state;
	memset(&req, 0, sizeof(req));
	memset(&res, 0, sizeof(res));
	req.key = (char *)"mmlu/x/1";
	req.pass = 1;
	req.warmup = true;
	req.expected = (char *)"B";
	res.req_id = 9;
	res.status = KVB_ERR_TIMEOUT;
	res.text = (char *)" a\n";
	res.token_ids = ids;
	res.n_token_ids = 2;
	res.lps = lp;
	res.n_lps = 2;
	kvb_out_rec_from_result(&r, &req, &res, "eng");
	assert_string_equal(r.status, "timeout");
	j = kvb_out_rec_to_json(&r);
	s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	j = json_loads(s, 0, NULL);
	assert_int_equal(kvb_out_rec_from_json(j, &back, "rt", 1), 0);
	json_decref(j);
	free(s);
	assert_string_equal(back.key, "mmlu/x/1");
	assert_string_equal(back.engine_id, "eng");
	assert_int_equal(back.pass, 1);
	assert_true(back.warmup);
	assert_int_equal(back.request_id, 9);
	assert_string_equal(back.text, " a\n");
	assert_true(back.has_token_ids);
	assert_int_equal(back.token_ids[1], -1);
	assert_int_equal(back.n_lps, 2);
	assert_int_equal(back.lps[0].n_top, 2);
	NEAR(back.lps[0].top[1].logprob, -1.5, 1e-6);
	assert_true(isnan(back.lps[1].logprob));
	assert_null(back.prompt_lps);
	assert_string_equal(back.expected, "B");
	kvb_outputs_append(&o, &back);
	assert_int_equal(o.n, 1);
	assert_null(back.key);
	kvb_outputs_release(&o);
	kvb_out_rec_release(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_and_pair),
		cmocka_unit_test(test_first_token_diff),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_identity_check),
		cmocka_unit_test(test_logprobs),
		cmocka_unit_test(test_bad_outputs),
		cmocka_unit_test(test_pair_by_pass),
		cmocka_unit_test(test_pair_skips_aborted),
		cmocka_unit_test(test_from_result_round_trip),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
