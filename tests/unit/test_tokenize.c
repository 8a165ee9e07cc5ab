/*
 * /tokenize response parser: vLLM/kvserve {"count","tokens"}, SGLang
 * {"tokens","count","max_model_len"}, llama.cpp {"tokens":[ids]} and
 * [{"id","piece"}]; errors name the field; kvb_tokenize against a closed
 * port fails with the URL in the message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/util.h"
#include "tokenize.h"
#include "workload.h"

static void expect_ids(const char *body, const int32_t *want, size_t nwant)
{
	int32_t *ids = NULL;
	size_t n = 99;
	char *err = NULL;

	assert_int_equal(kvb_tokenize_parse(body, strlen(body), &ids, &n, &err), 0);
	assert_null(err);
	assert_non_null(ids);
	assert_int_equal(n, nwant);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ids[i], want[i]);
	free(ids);
}

static void expect_err(const char *body, const char *needle)
{
	int32_t *ids = (int32_t *)1;
	size_t n = 99;
	char *err = NULL;

	assert_int_equal(kvb_tokenize_parse(body, strlen(body), &ids, &n, &err), -1);
	assert_null(ids);
	assert_int_equal(n, 0);
	assert_non_null(err);
	if (!strstr(err, needle))
		fail_msg("error '%s' lacks '%s'", err, needle);
	assert_null(strchr(err, '\n'));
	free(err);
}

static void t_vllm(void **st)
{
	static const int32_t w[] = { 9906, 1917, 0 };
	(void)st;
	expect_ids("{\"count\":3,\"max_model_len\":4096,\"tokens\":[9906,1917,0],\"token_strs\":null}", w, 3);
}

static void t_sglang(void **st)
{
	static const int32_t w[] = { 1, 22172 };
	(void)st;
	expect_ids("{\"tokens\":[1,22172],\"count\":2,\"max_model_len\":131072}", w, 2);
}

static void t_llamacpp(void **st)
{
	static const int32_t w[] = { 15043, 3186 };
	(void)st;
	expect_ids("{\"tokens\":[15043,3186]}", w, 2);
	expect_ids("{\"tokens\":[{\"id\":15043,\"piece\":\"Hello\"},{\"id\":3186,\"piece\":[32,119]}]}", w, 2);
}

static void t_empty(void **st)
{
	(void)st;
	expect_ids("{\"tokens\":[],\"count\":0}", NULL, 0);
}

static void t_errors(void **st)
{
	(void)st;
	expect_err("not json", "invalid JSON");
	/* jansson quotes the input: the newline must not split the line */
	expect_err("{\"\\\\\\\n\"}", "invalid JSON");
	expect_err("[1,2]", "expected a JSON object");
	expect_err("{\"count\":2}", "tokens: missing");
	expect_err("{\"tokens\":\"abc\"}", "tokens: missing or not an array");
	expect_err("{\"tokens\":[1,\"x\"]}", "tokens[1]");
	expect_err("{\"tokens\":[{\"piece\":\"a\"}]}", "tokens[0]");
	expect_err("{\"tokens\":[-5]}", "out of range");
	expect_err("{\"tokens\":[4294967296]}", "out of range");
	expect_err("{\"tokens\":[1,2],\"count\":3}", "count");
	expect_err("{\"tokens\":[1,2],\"count\":\"2\"}", "count");
}

static void t_unreachable(void **st)
{
	int32_t *ids = NULL;
	size_t n = 0;
	char *err = NULL;
	(void)st;
	/* port 1 on loopback: refused at once */
	assert_int_equal(kvb_tokenize("http://127.0.0.1:1/v1", "hi", NULL, 5.0, &ids, &n, &err), -1);
	assert_non_null(err);
	if (!strstr(err, "http://127.0.0.1:1/tokenize"))
		fail_msg("error '%s' lacks the url", err);
	assert_null(ids);
	free(err);
}

/* fake tokenizer: one id per byte, 1000 + byte; counts calls */
static int n_calls;
static int fake_tok(void *ctx, const char *text, int32_t **ids, size_t *n)
{
	size_t m = strlen(text);
	(void)ctx;
	n_calls++;
	*ids = malloc((m ? m : 1) * sizeof(**ids));
	for (size_t i = 0; i < m; i++)
		(*ids)[i] = 1000 + (unsigned char)text[i];
	*n = m;
	return 0;
}

static struct kvb_workload *mk(const char *name, struct kvb_kv *kv, size_t n, bool tok)
{
	struct kvb_wl_params p = { kv, n, 7, NULL, KVB_EP_COMPLETIONS, tok ? fake_tok : NULL, NULL };
	struct kvb_workload *wl = NULL;
	int rc = kvb_wl_find(name)->create(&p, &wl);
	return rc < 0 ? NULL : wl;
}

static void t_sweep_ids(void **st)
{
	struct kvb_kv kv[] = {
		{ (char *)"prompt_format", (char *)"ids", NULL, 0, false },
		{ (char *)"lengths", (char *)"40,97", NULL, 0, false },
		{ (char *)"trials", (char *)"2", NULL, 0, false },
	};
	struct kvb_workload *wl;
	struct kvb_req *r;
	int seen = 0;
	(void)st;
	n_calls = 0;
	wl = mk("ttft-sweep", kv, 3, true);
	assert_non_null(wl);
	assert_int_equal(n_calls, 8); /* tag + unit per (length, trial) */
	while (wl->ops->next(wl, &r) == 1) {
		size_t want = strstr(r->key, "len=40/") ? 40 : 97;
		assert_null(r->prompt);
		assert_int_equal(r->n_prompt_ids, want);
		/* the tag's ids first ("<16 hex>-N-T: "), then " Hello" repeated */
		assert_int_equal(r->prompt_ids[16], 1000 + '-');
		assert_int_equal(r->prompt_ids[want - 1] >= 1000, 1);
		wl->ops->done(wl, r, NULL);
		kvb_req_free(r);
		seen++;
	}
	assert_int_equal(seen, 8);
	wl->ops->free(wl);
	/* no tokenizer: refused with one line */
	for (size_t i = 0; i < 3; i++)
		kv[i].used = false;
	assert_null(mk("ttft-sweep", kv, 3, false));
	/* a length below the tag's ids */
	kv[1].value = (char *)"16";
	kv[1].used = kv[0].used = kv[2].used = false;
	assert_null(mk("ttft-sweep", kv, 3, true));
}

static void t_ldqa_ids(void **st)
{
	struct kvb_kv kv[] = {
		{ (char *)"prompt_format", (char *)"ids", NULL, 0, false },
		{ (char *)"num_documents", (char *)"3", NULL, 0, false },
		{ (char *)"document_length", (char *)"50", NULL, 0, false },
		{ (char *)"hit_miss_ratio", (char *)"1:1", NULL, 0, false },
		{ (char *)"pre_warmup", (char *)"false", NULL, 0, false },
	};
	struct kvb_workload *wl;
	struct kvb_req *r;
	int docs = 0, misses = 0;
	(void)st;
	wl = mk("long-doc-qa", kv, 5, true);
	assert_non_null(wl);
	while (wl->ops->next(wl, &r) == 1) {
		assert_null(r->prompt);
		if (strstr(r->key, "/miss")) {
			/* "<int> " in front of the 50-token document */
			assert_true(r->n_prompt_ids > 51);
			assert_int_equal(r->prompt_ids[r->n_prompt_ids - 51], 1000 + ' ');
			misses++;
		} else {
			assert_int_equal(r->n_prompt_ids, 50);
			assert_int_equal(r->prompt_ids[1], 1000 + ' ');
			assert_int_equal(r->prompt_ids[2], 1000 + 'h');
			docs++;
		}
		wl->ops->done(wl, r, NULL);
		kvb_req_free(r);
	}
	assert_int_equal(docs, 6);
	assert_int_equal(misses, 3);
	wl->ops->free(wl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_vllm),
		cmocka_unit_test(t_sglang),
		cmocka_unit_test(t_llamacpp),
		cmocka_unit_test(t_empty),
		cmocka_unit_test(t_errors),
		cmocka_unit_test(t_unreachable),
		cmocka_unit_test(t_sweep_ids),
		cmocka_unit_test(t_ldqa_ids),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
