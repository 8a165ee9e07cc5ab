/*
 * Field tables: CSV and JSON escaping, the lmcache-tests seed columns first,
 * derived per-request figures, outputs.jsonl lines and summary groups that
 * parse back.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "common/util.h"
#include "fields.h"
#include "stats.h"

static char *csv(const char *s)
{
	struct kv_buf b = KV_BUF_INIT(0);
	kvb_csv_cell(&b, s);
	return kv_buf_detach(&b, NULL);
}

static char *js(const char *s)
{
	struct kv_buf b = KV_BUF_INIT(0);
	kvb_json_str(&b, s);
	return kv_buf_detach(&b, NULL);
}

#define EQ_FREE(expr, want) do { char *_s = (expr); assert_string_equal(_s, want); free(_s); } while (0)

static void test_escaping(void **state)
{
	json_t *j;
	char *s;
	(void)state;
	EQ_FREE(csv("plain"), "plain");
	EQ_FREE(csv("a,b"), "\"a,b\"");
	EQ_FREE(csv("say \"hi\""), "\"say \"\"hi\"\"\"");
	EQ_FREE(csv("two\nlines"), "\"two\nlines\"");
	EQ_FREE(csv("cr\r"), "\"cr\r\"");
	EQ_FREE(csv(NULL), "");
	EQ_FREE(js("a\"b\\c"), "\"a\\\"b\\\\c\"");
	EQ_FREE(js("\n\t\x01\x1f"), "\"\\n\\t\\u0001\\u001f\"");
	EQ_FREE(js("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
	EQ_FREE(js(NULL), "null");
	/* what we escape, jansson reads back unchanged */
	s = js("x\"\\\b\f\n\r\t\x02 \xe2\x82\xac");
	j = json_loads(s, JSON_DECODE_ANY, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(j), "x\"\\\b\f\n\r\t\x02 \xe2\x82\xac");
	json_decref(j);
	free(s);
}

static void test_csv_header_seed_columns(void **state)
{
	struct kv_buf b = KV_BUF_INIT(0);
	(void)state;
	kvb_csv_header(&b);
	const char *seed = "expr_id,timestamp,engine_id,request_id,TTFT,throughput,"
			   "context_len,query_len,gpu_memory,";
	assert_int_equal(strncmp(b.data, seed, strlen(seed)), 0);
	assert_non_null(strstr(b.data, ",dispatch_lag,"));
	assert_non_null(strstr(b.data, ",e2e_sched,"));
	kv_buf_release(&b);
}

/* A request: sched 0 ms, sent at 1 ms, tokens at 11, 21, 21, 41 ms, end 42 ms. */
static void make(struct kvb_req *q, struct kvb_result *r, uint64_t *tok)
{
	uint64_t ms = 1000000, base = 1000 * ms;

	memset(q, 0, sizeof(*q));
	memset(r, 0, sizeof(*r));
	q->id = 3;
	q->key = "k,3";
	q->pass = 1;
	q->session = -1;
	q->context_len = 100;
	q->query_len = 20;
	r->t_sched = base;
	r->t_send = base + 1 * ms;
	r->t_first_byte = base + 5 * ms;
	r->t_first_token = base + 11 * ms;
	r->t_end = base + 42 * ms;
	tok[0] = base + 11 * ms;
	tok[1] = base + 21 * ms;
	tok[2] = base + 21 * ms;
	tok[3] = base + 41 * ms;
	r->tok_t = tok;
	r->n_tok_t = 4;
	r->prompt_tokens = 120;
	r->completion_tokens = 4;
	r->cached_tokens = 96;
	r->text = "he said \"x\"\n";
	r->finish_reason = "length";
	r->http_status = 200;
}

static void test_record_and_rows(void **state)
{
	struct kvb_req q;
	struct kvb_result r;
	uint64_t tok[4];
	struct kvb_record rec = { .expr_id = "bench", .engine_id = "e1", .wall0 = 1e9 };
	struct kv_buf b = KV_BUF_INIT(0);
	json_t *j;
	(void)state;
	make(&q, &r, tok);
	rec.req = &q;
	rec.res = &r;
	rec.t0 = r.t_sched;
	kvb_record_derive(&rec);
	assert_true(fabs(rec.ttft - 0.010) < 1e-9);
	assert_true(fabs(rec.ttft_sched - 0.011) < 1e-9);
	assert_true(fabs(rec.dispatch_lag - 0.001) < 1e-9);
	assert_true(fabs(rec.e2e - 0.041) < 1e-9);
	assert_true(fabs(rec.e2e_sched - 0.042) < 1e-9);
	assert_true(fabs(rec.tpot - 0.031 / 3) < 1e-9);
	/* gaps 10, 0, 20 ms */
	assert_true(fabs(rec.itl_mean - 0.010) < 1e-9);
	assert_true(fabs(rec.itl_p50 - 0.010) < 1e-9);
	assert_true(fabs(rec.itl_max - 0.020) < 1e-9);
	assert_true(fabs(rec.throughput - 4 / 0.031) < 1e-6);

	kvb_csv_row(&b, &rec);
	assert_int_equal(strncmp(b.data, "bench,1000000000.001000,e1,3,0.010000,",
				 strlen("bench,1000000000.001000,e1,3,0.010000,")), 0);
	assert_non_null(strstr(b.data, ",\"k,3\","));
	kv_buf_reset(&b);

	kvb_jsonl_row(&b, &rec);
	assert_int_equal(b.data[b.len - 1], '\n');
	j = json_loads(b.data, 0, NULL);
	assert_non_null(j);
	assert_string_equal(json_string_value(json_object_get(j, "text")), "he said \"x\"\n");
	assert_string_equal(json_string_value(json_object_get(j, "key")), "k,3");
	assert_int_equal(json_integer_value(json_object_get(j, "pass")), 1);
	assert_true(json_is_null(json_object_get(j, "token_ids")));
	assert_true(json_is_null(json_object_get(j, "logprobs")));
	json_decref(j);
	kv_buf_release(&b);

	/* a failed request: timing figures empty */
	r.status = KVB_ERR_HTTP;
	r.error = "http 500: boom, again";
	kvb_record_derive(&rec);
	assert_true(isnan(rec.ttft));
	kvb_csv_row(&b, &rec);
	assert_non_null(strstr(b.data, ",http,200,\"http 500: boom, again\","));
	kv_buf_release(&b);
}

/* The fast "%.6f" of the CSV agrees with printf. */
static void test_number_format(void **state)
{
	double vs[] = { 0, 1e-7, 4e-7, 5e-7, 0.010000, 0.0123456789, -0.0015, 1.5, 123.4567891,
			1795599155.633973, -2.5e-6, 999999.9999995 };
	struct kvb_req q;
	struct kvb_result r;
	uint64_t tok[4];
	struct kvb_record rec = { .expr_id = "e", .engine_id = "x" };
	(void)state;
	make(&q, &r, tok);
	rec.req = &q;
	rec.res = &r;
	rec.t0 = r.t_sched;
	for (size_t i = 0; i < KV_ARRAY_SIZE(vs); i++) {
		struct kv_buf b = KV_BUF_INIT(0);
		char want[64], *cell;
		kvb_record_derive(&rec);
		rec.ttft = vs[i]; /* TTFT is the fifth column */
		kvb_csv_row(&b, &rec);
		cell = b.data;
		for (int c = 0; c < 4; c++)
			cell = strchr(cell, ',') + 1;
		*strchr(cell, ',') = 0;
		snprintf(want, sizeof(want), "%.6f", vs[i]);
		/* same text, except that a tie may round the other way by 1 us */
		if (strcmp(cell, want) && strcmp(want, "-0.000000"))
			if (fabs(strtod(cell, NULL) - strtod(want, NULL)) > 1.001e-6)
				fail_msg("%g: got %s, printf %s", vs[i], cell, want);
		assert_int_equal(strlen(strchr(cell, '.')), 7);
		kv_buf_release(&b);
	}
}

static void test_stats_group(void **state)
{
	struct kvb_req q;
	struct kvb_result r;
	uint64_t tok[4];
	struct kvb_record rec = { .expr_id = "bench", .engine_id = "e1" };
	struct kvb_stats s;
	json_t *g, *a;
	(void)state;
	make(&q, &r, tok);
	rec.req = &q;
	rec.res = &r;
	kvb_stats_init(&s, "e1", 1, -1);
	for (int i = 0; i < 10; i++) {
		kvb_record_derive(&rec);
		kvb_stats_add(&s, &rec);
	}
	r.status = KVB_ERR_TIMEOUT;
	kvb_record_derive(&rec);
	kvb_stats_add(&s, &rec);
	g = kvb_stats_json(&s);
	assert_int_equal(json_integer_value(json_object_get(g, "completed")), 10);
	assert_int_equal(json_integer_value(json_object_get(g, "failed")), 1);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(g, "failed_by_reason"), "timeout")), 1);
	assert_true(json_is_null(json_object_get(g, "target_rate")));
	assert_true(fabs(json_real_value(json_object_get(json_object_get(g, "ttft"), "p50")) - 0.010) < 0.0001);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(g, "itl"), "n")), 30);
	assert_int_equal(json_integer_value(json_object_get(json_object_get(g, "dispatch_lag"), "n")), 11);
	assert_true(fabs(json_real_value(json_object_get(json_object_get(g, "cache"), "hit_rate")) - 0.8) < 1e-9);
	/* every summary field is present */
	for (const struct kvb_sum_field *f = kvb_sum_fields; f->key; f++)
		assert_non_null(json_object_get(g, f->key));
	a = json_array();
	json_array_append_new(a, g);
	{
		char *buf = NULL;
		size_t len = 0;
		FILE *f = open_memstream(&buf, &len);
		kvb_summary_print(f, a);
		fclose(f);
		assert_non_null(strstr(buf, "TTFT"));
		assert_non_null(strstr(buf, "failed: timeout"));
		free(buf);
	}
	json_decref(a);
	kvb_stats_release(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escaping),
		cmocka_unit_test(test_csv_header_seed_columns),
		cmocka_unit_test(test_record_and_rows),
		cmocka_unit_test(test_number_format),
		cmocka_unit_test(test_stats_group),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
