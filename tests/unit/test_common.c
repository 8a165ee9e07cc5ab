/* Unit tests of src/common: buffers, number parsing, the option table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/opt.h"
#include "common/util.h"

static void test_buf_cap(void **state)
{
	struct kv_buf b = KV_BUF_INIT(8);
	(void)state;
	assert_int_equal(kv_buf_puts(&b, "abcd"), 0);
	assert_int_equal(kv_buf_puts(&b, "efgh"), 0);
	assert_int_equal(kv_buf_putc(&b, 'x'), -1);
	assert_int_equal(b.len, 8);
	assert_string_equal(kv_buf_str(&b), "abcdefgh");
	kv_buf_consume(&b, 3);
	assert_string_equal(kv_buf_str(&b), "defgh");
	assert_int_equal(kv_buf_printf(&b, "%d", 123), 0);
	assert_int_equal(kv_buf_printf(&b, "%d", 4), -1);
	assert_string_equal(kv_buf_str(&b), "defgh123");
	kv_buf_release(&b);
	assert_string_equal(kv_buf_str(&b), "");
}

static void test_parse_numbers(void **state)
{
	int64_t i;
	double d;
	uint64_t s;
	(void)state;
	assert_int_equal(kv_parse_i64("42", 0, 100, &i), 0);
	assert_int_equal(i, 42);
	assert_int_equal(kv_parse_i64("101", 0, 100, &i), -1);
	assert_int_equal(kv_parse_i64("4x", 0, 100, &i), -1);
	assert_int_equal(kv_parse_i64("", 0, 100, &i), -1);
	assert_int_equal(kv_parse_double("1.5e3", &d), 0);
	assert_true(d == 1500.0);
	assert_int_equal(kv_parse_double("nan", &d), -1);
	assert_int_equal(kv_parse_size("4096", &s), 0);
	assert_true(s == 4096);
	assert_int_equal(kv_parse_size("64k", &s), 0);
	assert_true(s == 65536);
	assert_int_equal(kv_parse_size("1GiB", &s), 0);
	assert_true(s == 1073741824ull);
	assert_int_equal(kv_parse_size("2GB", &s), 0);
	assert_true(s == 2000000000ull);
	assert_int_equal(kv_parse_size("1.5MiB", &s), 0);
	assert_true(s == 1572864ull);
	assert_int_equal(kv_parse_size("12q", &s), -1);
	assert_int_equal(kv_parse_size("-1", &s), -1);
}

static int cb_count;
static int count_cb(const struct kv_opt *o, const char *arg, void *ctx)
{
	(void)o;
	(void)ctx;
	cb_count += arg && !strcmp(arg, "x") ? 1 : 100;
	return 0;
}

static void test_opt_parse(void **state)
{
	int64_t n = 3;
	double r = 1.0;
	bool flag = true;
	const char *url = "def";
	const char *mode = "a";
	uint64_t size = 0;
	static const char *const modes[] = { "a", "b", NULL };
	const struct kv_opt opts[] = {
		KV_OPT_INT('n', "num", &n, "N", 1, 10, "count"),
		KV_OPT_DOUBLE(0, "rate", &r, "R", 0, 100, "rate"),
		KV_OPT_BOOL(0, "flag", &flag, "flag"),
		KV_OPT_STRING('u', "url", &url, "URL", "url"),
		KV_OPT_CHOICE(0, "mode", &mode, modes, "mode"),
		KV_OPT_SIZE(0, "size", &size, "BYTES", "size"),
		KV_OPT_CALLBACK('x', "ex", "V", count_cb, "repeatable"),
		KV_OPT_END,
	};
	struct kv_cmd_info info = { "t cmd", NULL, NULL, NULL };
	char *argv[] = { "cmd", "pos1", "-n", "7", "--rate=2.5", "--no-flag", "-uhttp://x",
			 "--mode", "b", "--size", "1k", "-x", "x", "--ex=x", "--", "-pos2", NULL };
	int argc = (int)KV_ARRAY_SIZE(argv) - 1;
	(void)state;

	cb_count = 0;
	assert_int_equal(kv_opt_parse(&info, opts, argc, argv, NULL), 2);
	assert_string_equal(argv[0], "pos1");
	assert_string_equal(argv[1], "-pos2");
	assert_int_equal(n, 7);
	assert_true(r == 2.5);
	assert_false(flag);
	assert_string_equal(url, "http://x");
	assert_string_equal(mode, "b");
	assert_true(size == 1024);
	assert_int_equal(cb_count, 2);

	char *bad1[] = { "cmd", "-n", "11", NULL };
	assert_int_equal(kv_opt_parse(&info, opts, 3, bad1, NULL), -1);
	char *bad2[] = { "cmd", "--mode", "c", NULL };
	assert_int_equal(kv_opt_parse(&info, opts, 3, bad2, NULL), -1);
	char *bad3[] = { "cmd", "--nope", NULL };
	assert_int_equal(kv_opt_parse(&info, opts, 2, bad3, NULL), -1);
	char *bad4[] = { "cmd", "--url", NULL };
	assert_int_equal(kv_opt_parse(&info, opts, 2, bad4, NULL), -1);
	char *bad5[] = { "cmd", "--flag=1", NULL };
	assert_int_equal(kv_opt_parse(&info, opts, 2, bad5, NULL), -1);
}

static void test_help_shows_defaults(void **state)
{
	int64_t n = 17;
	const struct kv_opt opts[] = {
		KV_OPT_GROUP("Load"),
		KV_OPT_INT('n', "num", &n, "N", 1, 100, "requests (count)"),
		KV_OPT_END,
	};
	struct kv_cmd_info info = { "t cmd", "[options]", "Does things.", NULL };
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	(void)state;
	kv_opt_help(f, &info, opts);
	fclose(f);
	assert_non_null(strstr(text, "usage: t cmd [options]"));
	assert_non_null(strstr(text, "Load:"));
	assert_non_null(strstr(text, "--num N"));
	assert_non_null(strstr(text, "[default: 17]"));
	free(text);
}

static void test_atomic_write(void **state)
{
	char dir[] = "/tmp/kvtest.XXXXXX";
	char *path, *back;
	size_t len;
	(void)state;
	assert_non_null(mkdtemp(dir));
	path = xasprintf("%s/a/b/c.txt", dir);
	char *sub = xasprintf("%s/a/b", dir);
	assert_int_equal(kv_mkdir_p(sub, 0755), 0);
	assert_int_equal(kv_write_file_atomic(path, "hello", 5), 0);
	back = kv_read_file(path, 100, &len);
	assert_non_null(back);
	assert_int_equal(len, 5);
	assert_string_equal(back, "hello");
	assert_null(kv_read_file(path, 3, &len));
	free(back);
	char *cmd = xasprintf("rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	free(sub);
	free(path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf_cap),
		cmocka_unit_test(test_parse_numbers),
		cmocka_unit_test(test_opt_parse),
		cmocka_unit_test(test_help_shows_defaults),
		cmocka_unit_test(test_atomic_write),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
