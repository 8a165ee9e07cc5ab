/* Unit tests of the requests.csv reader (src/bench/report/csv.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/util.h"
#include "report/csv.h"

static int parse(struct kvr_csv *c, const char *s, char *err, size_t n)
{
	return kvr_csv_parse(c, s, strlen(s), err, n);
}

static void test_simple(void **state)
{
	struct kvr_csv c;
	char err[256];
	(void)state;
	assert_int_equal(parse(&c, "a,b,c\n1,2,3\n4,,6\n", err, sizeof(err)), 0);
	assert_int_equal(c.ncols, 3);
	assert_int_equal(c.nrows, 2);
	assert_int_equal(kvr_csv_col(&c, "b"), 1);
	assert_int_equal(kvr_csv_col(&c, "z"), -1);
	assert_string_equal(kvr_csv_cell(&c, 0, 2), "3");
	assert_string_equal(kvr_csv_cell(&c, 1, 1), "");
	assert_string_equal(kvr_csv_cell(&c, 1, -1), "");
	assert_string_equal(kvr_csv_cell(&c, 5, 0), "");
	assert_int_equal(kvr_csv_line(&c, 1), 3);
	kvr_csv_release(&c);
}

static void test_quoted(void **state)
{
	struct kvr_csv c;
	char err[256];
	(void)state;
	/* Quoted commas, doubled quotes, a newline inside quotes, CRLF, no final newline. */
	assert_int_equal(parse(&c, "x,y\r\n\"a,b\",\"say \"\"hi\"\"\"\r\n\"two\nlines\",z",
			       err, sizeof(err)), 0);
	assert_int_equal(c.nrows, 2);
	assert_string_equal(kvr_csv_cell(&c, 0, 0), "a,b");
	assert_string_equal(kvr_csv_cell(&c, 0, 1), "say \"hi\"");
	assert_string_equal(kvr_csv_cell(&c, 1, 0), "two\nlines");
	assert_string_equal(kvr_csv_cell(&c, 1, 1), "z");
	assert_int_equal(kvr_csv_line(&c, 1), 3);
	kvr_csv_release(&c);
	/* Blank lines are skipped, an empty last field is kept. */
	assert_int_equal(parse(&c, "p,q\n\n1,\n\n", err, sizeof(err)), 0);
	assert_int_equal(c.nrows, 1);
	assert_string_equal(kvr_csv_cell(&c, 0, 1), "");
	kvr_csv_release(&c);
}

static void expect_error(const char *in, size_t len, const char *what)
{
	struct kvr_csv c;
	char err[256];
	assert_int_equal(kvr_csv_parse(&c, in, len, err, sizeof(err)), -1);
	if (!strstr(err, what))
		fail_msg("error '%s' does not say '%s'", err, what);
	assert_null(c.arena);
}

static void test_errors(void **state)
{
	(void)state;
	expect_error("a,b\n1,2,3\n", 10, "2: 3 fields, the header has 2");
	expect_error("a,b\n\"1,2\n", 9, "2: unterminated quoted field");
	expect_error("a,b\n1\"x,2\n", 10, "2: quote inside an unquoted field");
	expect_error("a,b\n\"1\"x,2\n", 11, "2: text after a closing quote");
	expect_error("a,b\n1\0,2\n", 9, "NUL byte");
	expect_error("a,b\n1\r2,3\n", 10, "carriage return");
	expect_error("", 0, "empty file");
}

static void test_limits(void **state)
{
	size_t n = KVR_CSV_MAX_LINE + 100;
	char *big = xmalloc(n + 16);
	struct kvr_csv c;
	char err[256];
	(void)state;
	memcpy(big, "a\n", 2);
	memset(big + 2, 'x', n);
	assert_int_equal(kvr_csv_parse(&c, big, n + 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "longer than the limit"));
	/* The same inside quotes. */
	big[2] = '"';
	assert_int_equal(kvr_csv_parse(&c, big, n + 2, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "longer than the limit"));
	free(big);
	/* Too many fields. */
	big = xmalloc(2 * (KVR_CSV_MAX_FIELDS + 10));
	for (size_t i = 0; i < KVR_CSV_MAX_FIELDS + 10; i++) {
		big[2 * i] = 'f';
		big[2 * i + 1] = ',';
	}
	assert_int_equal(kvr_csv_parse(&c, big, 2 * (KVR_CSV_MAX_FIELDS + 10) - 1, err,
				       sizeof(err)), -1);
	assert_non_null(strstr(err, "too many fields"));
	free(big);
}

static void test_load(void **state)
{
	struct kvr_csv c;
	char err[512];
	const char *fx = getenv("KV_FIXTURES");
	char *path;
	(void)state;
	assert_int_equal(kvr_csv_load(&c, "/nonexistent/requests.csv", err, sizeof(err)), -1);
	assert_non_null(strstr(err, "/nonexistent/requests.csv: "));
	if (!fx)
		skip();
	path = xasprintf("%s/results/suite-base/long-doc-qa/requests.csv", fx);
	assert_int_equal(kvr_csv_load(&c, path, err, sizeof(err)), 0);
	assert_int_equal(c.nrows, 96);
	assert_int_equal(kvr_csv_col(&c, "expr_id"), 0);
	assert_int_equal(kvr_csv_col(&c, "TTFT"), 4);
	assert_string_equal(kvr_csv_cell(&c, 0, kvr_csv_col(&c, "engine_id")), "kvserve-cache");
	kvr_csv_release(&c);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_quoted),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_load),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
