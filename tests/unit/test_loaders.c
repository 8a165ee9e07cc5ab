/* Data loaders on good and malformed fixtures: every error is one
 * "file:line: what is wrong" line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <unistd.h>

#include "common/util.h"
#include "workloads/loaders.h"

static char *fx(const char *name)
{
	const char *d = getenv("KV_FIXTURES");
	return xasprintf("%s/data/%s", d ? d : "tests/fixtures", name);
}

/* stderr into a temp file while fn runs; returns what was written. */
static int saved_fd = -1;
static FILE *cap;
static void cap_start(void)
{
	fflush(stderr);
	cap = tmpfile();
	saved_fd = dup(2);
	dup2(fileno(cap), 2);
}
static char *cap_end(void)
{
	long n;
	char *s;
	fflush(stderr);
	dup2(saved_fd, 2);
	close(saved_fd);
	n = ftell(cap);
	s = xcalloc((size_t)n + 1, 1);
	rewind(cap);
	if (n > 0 && fread(s, 1, (size_t)n, cap) != (size_t)n)
		s[0] = '\0';
	fclose(cap);
	return s;
}

/* The error names name:line and is a single line. */
static void expect_err(const char *msg, const char *name, int line)
{
	char *want = xasprintf("%s:%d: ", name, line);
	if (!strstr(msg, want))
		fprintf(stderr, "expected '%s' in: %s", want, msg);
	assert_non_null(strstr(msg, want));
	assert_int_equal(strchr(msg, '\n') - msg, (long)strlen(msg) - 1);
	free(want);
}

static void test_csv(void **state)
{
	struct kvb_csv c;
	const char *t = "a,\"b,\"\"c\"\"\",d\r\n\r\n\"multi\nline\",,x\nlast";
	(void)state;
	assert_int_equal(kvb_csv_parse("t", t, strlen(t), &c), 0);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.rows[0].n, 3);
	assert_string_equal(c.rows[0].f[1], "b,\"c\"");
	assert_string_equal(c.rows[1].f[0], "multi\nline");
	assert_string_equal(c.rows[1].f[1], "");
	assert_int_equal(c.rows[1].line, 3);
	assert_int_equal(c.rows[2].line, 5);
	assert_string_equal(c.rows[2].f[0], "last");
	kvb_csv_release(&c);
}

static void test_mmlu_good(void **state)
{
	struct kvb_mcq_set s;
	char *p = fx("mmlu/dev/high_school_geography_dev.csv");
	char *dir = fx("mmlu");
	char **names;
	size_t n;
	(void)state;
	assert_int_equal(kvb_mmlu_load_csv(p, &s), 0);
	assert_int_equal(s.n, 5);
	assert_string_equal(s.v[2].question, "Which city is the capital of Kenya, \"the safari capital\"?");
	assert_int_equal(s.v[0].answer, 'A');
	assert_string_equal(s.v[0].choice[0], "Paris");
	kvb_mcq_set_release(&s);
	free(p);
	assert_int_equal(kvb_mmlu_subjects(dir, &names, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(names[0], "elementary_mathematics");
	assert_string_equal(names[1], "formal_logic");
	assert_string_equal(names[2], "high_school_geography");
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(dir);
}

static void test_mmlu_bad(void **state)
{
	static const struct { const char *file; int line; const char *what; } bad[] = {
		{ "bad/mmlu_bad_answer.csv", 2, "answer must be A, B, C or D" },
		{ "bad/mmlu_five_fields.csv", 2, "expected 6 fields" },
		{ "bad/mmlu_unterminated.csv", 2, "unterminated quoted field" },
		{ "bad/mmlu_stray_quote.csv", 2, "quote inside an unquoted field" },
	};
	(void)state;
	for (size_t i = 0; i < KV_ARRAY_SIZE(bad); i++) {
		struct kvb_mcq_set s;
		char *p = fx(bad[i].file), *msg;
		cap_start();
		assert_int_equal(kvb_mmlu_load_csv(p, &s), -1);
		msg = cap_end();
		expect_err(msg, p, bad[i].line);
		assert_non_null(strstr(msg, bad[i].what));
		assert_int_equal(s.n, 0);
		free(msg);
		free(p);
	}
}

static void test_sharegpt(void **state)
{
	static const struct { const char *file; int line; const char *what; } bad[] = {
		{ "bad/sharegpt_no_value.json", 3, "needs string \"from\" and \"value\"" },
		{ "bad/sharegpt_bad_role.json", 3, "unknown \"from\" 'robot'" },
		{ "bad/sharegpt_truncated.json", 2, "bad json" },
	};
	struct kvb_conv_set s;
	char *p = fx("sharegpt.json");
	(void)state;
	assert_int_equal(kvb_sharegpt_load(p, &s), 0);
	assert_int_equal(s.n, 11);
	assert_string_equal(s.v[3].id, "c3");
	assert_string_equal(s.v[3].t[0].role, "system");
	assert_string_equal(s.v[3].t[1].role, "user");
	assert_string_equal(s.v[0].t[1].role, "assistant");
	assert_int_equal(s.v[1].n, 4);
	assert_int_equal(s.v[0].line, 2);
	kvb_conv_set_release(&s);
	free(p);
	for (size_t i = 0; i < KV_ARRAY_SIZE(bad); i++) {
		char *msg;
		p = fx(bad[i].file);
		cap_start();
		assert_int_equal(kvb_sharegpt_load(p, &s), -1);
		msg = cap_end();
		expect_err(msg, p, bad[i].line);
		assert_non_null(strstr(msg, bad[i].what));
		free(msg);
		free(p);
	}
	cap_start();
	assert_int_equal(kvb_sharegpt_parse("x", "{}", 2, &s), -1);
	free(cap_end());
}

static void test_gen_and_rag(void **state)
{
	static const struct { const char *file; int line; const char *what; bool rag; } bad[] = {
		{ "bad/gsm8k_no_hash.jsonl", 2, "no '#### N'", false },
		{ "bad/gsm8k_bad_json.jsonl", 3, "bad json", false },
		{ "bad/rag_ctxs_not_list.jsonl", 2, "\"ctxs\" must be a non-empty list", true },
		{ "bad/rag_answer_not_string.jsonl", 2, "answers[0] must be a string", true },
	};
	struct kvb_gen_set g;
	struct kvb_rag_set r;
	char *p = fx("gsm8k.jsonl");
	(void)state;
	assert_int_equal(kvb_gen_load(p, &g), 0);
	assert_int_equal(g.n, 10);
	assert_true(g.v[0].gsm8k);
	assert_string_equal(g.v[0].reference, "24"); /* 12 + 3*4 */
	assert_string_equal(g.v[9].reference, "2500");
	assert_int_equal(g.v[9].line, 10);
	kvb_gen_set_release(&g);
	free(p);
	assert_int_equal(kvb_gen_parse("x", "{\"prompt\":\"hi\"}\n", 16, &g), 0);
	assert_null(g.v[0].reference);
	assert_false(g.v[0].gsm8k);
	kvb_gen_set_release(&g);
	p = fx("rag.jsonl");
	assert_int_equal(kvb_rag_load(p, &r), 0);
	assert_int_equal(r.n, 5);
	assert_int_equal(r.v[0].n_ctx, 3);
	assert_string_equal(r.v[0].title[0], "Ada Lind");
	assert_string_equal(r.v[0].answers[1], "Bergen city");
	kvb_rag_set_release(&r);
	free(p);
	for (size_t i = 0; i < KV_ARRAY_SIZE(bad); i++) {
		char *msg;
		p = fx(bad[i].file);
		cap_start();
		if (bad[i].rag)
			assert_int_equal(kvb_rag_load(p, &r), -1);
		else
			assert_int_equal(kvb_gen_load(p, &g), -1);
		msg = cap_end();
		expect_err(msg, p, bad[i].line);
		assert_non_null(strstr(msg, bad[i].what));
		free(msg);
		free(p);
	}
	cap_start();
	assert_int_equal(kvb_gen_load("/nonexistent/x.jsonl", &g), -1);
	free(cap_end());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csv),
		cmocka_unit_test(test_mmlu_good),
		cmocka_unit_test(test_mmlu_bad),
		cmocka_unit_test(test_sharegpt),
		cmocka_unit_test(test_gen_and_rag),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
