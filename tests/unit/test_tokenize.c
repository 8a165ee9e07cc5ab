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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_vllm),
		cmocka_unit_test(t_sglang),
		cmocka_unit_test(t_llamacpp),
		cmocka_unit_test(t_empty),
		cmocka_unit_test(t_errors),
		cmocka_unit_test(t_unreachable),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
