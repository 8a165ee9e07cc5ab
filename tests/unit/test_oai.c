/*
 * OpenAI response reader: recorded streams through the SSE parser into a
 * result; token counting (role-only and empty chunks are not tokens, a
 * k-token chunk counts k), usage, cached tokens, logprobs in both shapes,
 * echo, errors; request bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>

#include "common/util.h"
#include "oai.h"
#include "sse.h"

struct ctx {
	struct kvb_oai *o;
	uint64_t t;
	int rc;
};

static int on_ev(void *p, const char *type, const char *data, size_t len)
{
	struct ctx *c = p;
	(void)type;
	c->t += 1000; /* each event 1 us later */
	c->rc = kvb_oai_chunk(c->o, data, len, c->t);
	return c->rc < 0 ? -1 : 0;
}

/* Runs a fixture through sse + oai; returns the last chunk's code. */
static int run(const char *name, enum kvb_endpoint ep, struct kvb_result *res, bool echo)
{
	const char *dir = getenv("KV_FIXTURES");
	char *path = xasprintf("%s/sse/%s", dir ? dir : "tests/fixtures", name);
	size_t len;
	char *text = kv_read_file(path, 1 << 20, &len);
	struct kvb_oai o;
	struct kvb_sse s;
	struct ctx c = { &o, 0, 0 };

	assert_non_null(text);
	memset(res, 0, sizeof(*res));
	kvb_oai_init(&o, res, ep, echo, NULL);
	kvb_sse_init(&s, 0);
	kvb_sse_feed(&s, text, len, on_ev, &c);
	kvb_sse_finish(&s, on_ev, &c);
	kvb_oai_finish(&o);
	kvb_oai_release(&o);
	kvb_sse_release(&s);
	free(text);
	free(path);
	return c.rc;
}

static void test_vllm_completions(void **state)
{
	struct kvb_result r;
	(void)state;
	assert_int_equal(run("vllm_completions.sse", KVB_EP_COMPLETIONS, &r, false), 1);
	assert_int_equal(r.status, KVB_OK);
	assert_string_equal(r.text, "Hello world!");
	assert_int_equal(r.n_tok_t, 3);
	assert_int_equal(r.t_first_token, 1000);
	assert_int_equal(r.prompt_tokens, 7);
	assert_int_equal(r.completion_tokens, 3);
	assert_int_equal(r.cached_tokens, 4);
	assert_string_equal(r.finish_reason, "length");
	assert_int_equal(r.n_lps, 3);
	assert_string_equal(r.lps[1].token, " world");
	assert_true(fabsf(r.lps[1].logprob + 1.25f) < 1e-6f);
	assert_int_equal(r.lps[1].n_top, 1);
	kvb_result_release(&r);
}

static void test_vllm_chat_role_and_empty_chunks(void **state)
{
	struct kvb_result r;
	(void)state;
	run("vllm_chat.sse", KVB_EP_CHAT, &r, false);
	assert_int_equal(r.status, KVB_OK);
	assert_string_equal(r.text, "The sky is blue");
	/* role-only first chunk (event 1) and the empty last chunk are no tokens */
	assert_int_equal(r.n_tok_t, 4);
	assert_int_equal(r.t_first_token, 2000);
	assert_int_equal(r.tok_t[3], 5000);
	assert_int_equal(r.completion_tokens, 4);
	assert_int_equal(r.cached_tokens, -1);
	assert_null(r.lps);
	kvb_result_release(&r);
}

static void test_sglang_chat_logprobs(void **state)
{
	struct kvb_result r;
	(void)state;
	run("sglang_chat_crlf.sse", KVB_EP_CHAT, &r, false);
	assert_int_equal(r.status, KVB_OK);
	assert_string_equal(r.text, "Yes, sure");
	assert_int_equal(r.n_tok_t, 3);
	assert_int_equal(r.t_first_token, 2000);
	assert_int_equal(r.n_lps, 2);
	assert_int_equal(r.lps[0].n_top, 2);
	assert_string_equal(r.lps[0].top[1].token, "x");
	assert_true(fabsf(r.lps[0].top[1].logprob + 3.0f) < 1e-6f);
	kvb_result_release(&r);
}

static void test_llamacpp_reasoning_and_cache_n(void **state)
{
	struct kvb_result r;
	(void)state;
	run("llamacpp_chat.sse", KVB_EP_CHAT, &r, false);
	assert_int_equal(r.status, KVB_OK);
	/* reasoning_content is the first token */
	assert_int_equal(r.t_first_token, 1000);
	assert_int_equal(r.n_tok_t, 2);
	assert_string_equal(r.text, "Ok");
	assert_int_equal(r.cached_tokens, 16);
	assert_int_equal(r.prompt_tokens, 20);
	kvb_result_release(&r);
}

static void test_openai_multiline(void **state)
{
	struct kvb_result r;
	(void)state;
	run("openai_chat_cr.sse", KVB_EP_CHAT, &r, false);
	assert_int_equal(r.status, KVB_OK);
	assert_string_equal(r.text, "Hi");
	assert_int_equal(r.n_tok_t, 1);
	assert_string_equal(r.finish_reason, "stop");
	kvb_result_release(&r);
}

static void test_error_in_stream(void **state)
{
	struct kvb_result r;
	(void)state;
	assert_int_equal(run("error_in_stream.sse", KVB_EP_COMPLETIONS, &r, false), -1);
	assert_int_equal(r.status, KVB_ERR_SERVER);
	assert_string_equal(r.error, "KV cache exhausted");
	assert_string_equal(r.text, "a");
	kvb_result_release(&r);
}

static int chunk(struct kvb_oai *o, const char *s, uint64_t t)
{
	return kvb_oai_chunk(o, s, strlen(s), t);
}

static void test_k_token_chunks(void **state)
{
	struct kvb_result r = { 0 };
	struct kvb_oai o;
	(void)state;
	kvb_oai_init(&o, &r, KVB_EP_COMPLETIONS, false, NULL);
	/* token_ids of 3 -> 3 tokens with one stamp */
	assert_int_equal(chunk(&o, "{\"choices\":[{\"index\":0,\"text\":\"abc\",\"token_ids\":[1,2,3]}]}", 10), 0);
	/* empty text with no ids: nothing */
	assert_int_equal(chunk(&o, "{\"choices\":[{\"index\":0,\"text\":\"\"}]}", 20), 0);
	/* another choice index is ignored */
	assert_int_equal(chunk(&o, "{\"choices\":[{\"index\":1,\"text\":\"zz\"}]}", 25), 0);
	assert_int_equal(chunk(&o, "{\"choices\":[{\"index\":0,\"text\":\"d\",\"token_ids\":[4]}]}", 30), 0);
	assert_int_equal(chunk(&o, "[DONE]", 40), 1);
	kvb_oai_finish(&o);
	assert_int_equal(r.n_tok_t, 4);
	assert_int_equal(r.tok_t[0], 10);
	assert_int_equal(r.tok_t[2], 10);
	assert_int_equal(r.tok_t[3], 30);
	assert_int_equal(r.n_token_ids, 4);
	assert_int_equal(r.token_ids[3], 4);
	assert_string_equal(r.text, "abcd");
	assert_int_equal(r.completion_tokens, 4); /* counted: no usage */
	kvb_oai_release(&o);
	kvb_result_release(&r);
}

static void test_errors_and_malformed(void **state)
{
	struct kvb_result r = { 0 };
	struct kvb_oai o;
	char *m;
	(void)state;
	kvb_oai_init(&o, &r, KVB_EP_COMPLETIONS, false, NULL);
	assert_int_equal(chunk(&o, "{\"choices\":[{\"text\":", 1), -1);
	assert_int_equal(r.status, KVB_ERR_STREAM);
	assert_non_null(strstr(r.error, "malformed json"));
	kvb_oai_release(&o);
	kvb_result_release(&r);

	kvb_oai_init(&o, &r, KVB_EP_COMPLETIONS, false, NULL);
	assert_int_equal(chunk(&o, "{\"object\":\"error\",\"message\":\"bad\\nthing\",\"code\":400}", 1), -1);
	assert_int_equal(r.status, KVB_ERR_SERVER);
	assert_string_equal(r.error, "bad thing");
	kvb_oai_release(&o);
	kvb_result_release(&r);

	kvb_oai_init(&o, &r, KVB_EP_COMPLETIONS, false, NULL);
	assert_int_equal(chunk(&o, "[1,2]", 1), -1);
	assert_int_equal(r.status, KVB_ERR_STREAM);
	kvb_oai_release(&o);
	kvb_result_release(&r);

	m = kvb_oai_error_message("{\"error\":{\"message\":\"model not found\"}}", 39);
	assert_string_equal(m, "model not found");
	free(m);
	m = kvb_oai_error_message("{\"detail\":\"Not Found\"}", 22);
	assert_string_equal(m, "Not Found");
	free(m);
	m = kvb_oai_error_message("Internal Server Error\n", 22);
	assert_string_equal(m, "Internal Server Error");
	free(m);
}

static void test_echo_prompt_logprobs(void **state)
{
	struct kvb_result r = { 0 };
	struct kvb_oai o;
	(void)state;
	kvb_oai_init(&o, &r, KVB_EP_COMPLETIONS, true, "ab");
	/* prompt tokens a, b echoed first (first logprob null), then output c */
	assert_int_equal(chunk(&o, "{\"choices\":[{\"index\":0,\"text\":\"ab\",\"logprobs\":{\"tokens\":[\"a\",\"b\"],"
				   "\"token_logprobs\":[null,-0.5],\"top_logprobs\":[null,{\"b\":-0.5}]}}]}", 10), 0);
	assert_int_equal(chunk(&o, "{\"choices\":[{\"index\":0,\"text\":\"c\",\"logprobs\":{\"tokens\":[\"c\"],"
				   "\"token_logprobs\":[-0.25],\"top_logprobs\":[{\"c\":-0.25}]},\"finish_reason\":\"length\"}]}", 20), 0);
	assert_int_equal(chunk(&o, "{\"choices\":[],\"usage\":{\"prompt_tokens\":2,\"completion_tokens\":1}}", 30), 0);
	kvb_oai_finish(&o);
	assert_int_equal(r.n_prompt_lps, 2);
	assert_true(isnan(r.prompt_lps[0].logprob));
	assert_string_equal(r.prompt_lps[1].token, "b");
	assert_int_equal(r.n_lps, 1);
	assert_string_equal(r.lps[0].token, "c");
	assert_int_equal(r.n_tok_t, 1);
	assert_int_equal(r.t_first_token, 20);
	assert_string_equal(r.text, "c");
	kvb_oai_release(&o);
	kvb_result_release(&r);
}

static void test_whole_body(void **state)
{
	struct kvb_result r = { 0 };
	struct kvb_oai o;
	const char *b = "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"4\"},"
			"\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1,"
			"\"prompt_tokens_details\":{\"cached_tokens\":0}}}";
	(void)state;
	kvb_oai_init(&o, &r, KVB_EP_CHAT, false, NULL);
	assert_int_equal(kvb_oai_body(&o, b, strlen(b), 99), 0);
	kvb_oai_finish(&o);
	assert_string_equal(r.text, "4");
	assert_int_equal(r.t_first_token, 99);
	assert_int_equal(r.completion_tokens, 1);
	assert_int_equal(r.cached_tokens, 0);
	kvb_oai_release(&o);
	kvb_result_release(&r);
}

static void test_request_body(void **state)
{
	struct kvb_req q = { 0 };
	int32_t ids[3] = { 5, 6, 7 };
	struct kvb_msg msg = { "user", "hi \"there\"" };
	char *err, *b;
	size_t len;
	json_t *j;
	(void)state;
	q.endpoint = KVB_EP_COMPLETIONS;
	q.prompt_ids = ids;
	q.n_prompt_ids = 3;
	q.max_tokens = 16;
	q.ignore_eos = true;
	q.logprobs = 2;
	q.echo = true;
	q.extra_json = "{\"cache_salt\":\"s1\",\"max_tokens\":8}";
	b = kvb_oai_request_body(&q, "m", true, true, &len, &err);
	assert_non_null(b);
	j = json_loads(b, 0, NULL);
	assert_int_equal(json_integer_value(json_array_get(json_object_get(j, "prompt"), 2)), 7);
	assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 8); /* extra wins */
	assert_int_equal(json_integer_value(json_object_get(j, "logprobs")), 2);
	assert_true(json_is_true(json_object_get(j, "echo")));
	assert_true(json_is_true(json_object_get(j, "ignore_eos")));
	assert_true(json_is_true(json_object_get(j, "return_token_ids")));
	assert_true(json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
	assert_string_equal(json_string_value(json_object_get(j, "cache_salt")), "s1");
	assert_string_equal(json_string_value(json_object_get(j, "model")), "m");
	json_decref(j);
	free(b);

	memset(&q, 0, sizeof(q));
	q.endpoint = KVB_EP_CHAT;
	q.msgs = &msg;
	q.n_msgs = 1;
	q.logprobs = 3;
	b = kvb_oai_request_body(&q, NULL, false, false, &len, &err);
	j = json_loads(b, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(j, "messages"), 0), "content")),
			    "hi \"there\"");
	assert_true(json_is_true(json_object_get(j, "logprobs")));
	assert_int_equal(json_integer_value(json_object_get(j, "top_logprobs")), 3);
	assert_null(json_object_get(j, "stream_options"));
	assert_null(json_object_get(j, "model"));
	json_decref(j);
	free(b);

	q.extra_json = "[1]";
	assert_null(kvb_oai_request_body(&q, NULL, false, false, &len, &err));
	assert_non_null(strstr(err, "not a json object"));
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vllm_completions),
		cmocka_unit_test(test_vllm_chat_role_and_empty_chunks),
		cmocka_unit_test(test_sglang_chat_logprobs),
		cmocka_unit_test(test_llamacpp_reasoning_and_cache_n),
		cmocka_unit_test(test_openai_multiline),
		cmocka_unit_test(test_error_in_stream),
		cmocka_unit_test(test_k_token_chunks),
		cmocka_unit_test(test_errors_and_malformed),
		cmocka_unit_test(test_echo_prompt_logprobs),
		cmocka_unit_test(test_whole_body),
		cmocka_unit_test(test_request_body),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
