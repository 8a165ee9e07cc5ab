/*
 * SSE parser: recorded streams (vLLM, SGLang, llama.cpp, OpenAI shapes) give
 * the same events however the bytes are split; line ends, comments,
 * multi-line data, event types, the line cap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/util.h"
#include "sse.h"

struct log {
	struct kv_buf b;
	int n;
};

static int on_ev(void *ctx, const char *type, const char *data, size_t len)
{
	struct log *l = ctx;

	kv_buf_printf(&l->b, "[%s|", type);
	kv_buf_append(&l->b, data, len);
	assert_int_equal(strlen(data), len); /* NUL-terminated */
	kv_buf_puts(&l->b, "]");
	l->n++;
	return 0;
}

static char *fixture(const char *name, size_t *len)
{
	const char *dir = getenv("KV_FIXTURES");
	char *path = xasprintf("%s/sse/%s", dir ? dir : "tests/fixtures", name);
	char *text = kv_read_file(path, 1 << 20, len);

	if (!text)
		fail_msg("cannot read %s", path);
	free(path);
	return text;
}

/* Events of data split into pieces at the given cut positions. */
static char *parse_cuts(const char *data, size_t len, const size_t *cuts, int ncuts, int *nev)
{
	struct kvb_sse s;
	struct log l = { KV_BUF_INIT(0), 0 };
	size_t at = 0;

	kvb_sse_init(&s, 0);
	for (int i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : len;
		assert_int_equal(kvb_sse_feed(&s, data + at, to - at, on_ev, &l), 0);
		at = to;
	}
	assert_int_equal(kvb_sse_finish(&s, on_ev, &l), 0);
	kvb_sse_release(&s);
	*nev = l.n;
	return kv_buf_detach(&l.b, NULL);
}

static void check_fixture(const char *name, int want_events)
{
	size_t len;
	char *data = fixture(name, &len), *whole, *bytes;
	int n, n2;
	size_t *all = xmalloc(len * sizeof(*all));

	whole = parse_cuts(data, len, NULL, 0, &n);
	assert_int_equal(n, want_events);
	/* split at every byte position */
	for (size_t i = 0; i <= len; i++) {
		char *one = parse_cuts(data, len, &i, 1, &n2);
		if (strcmp(one, whole))
			fail_msg("%s: split at byte %zu gives other events", name, i);
		free(one);
	}
	/* and one byte at a time */
	for (size_t i = 0; i < len; i++)
		all[i] = i;
	bytes = parse_cuts(data, len, all, (int)len, &n2);
	assert_string_equal(bytes, whole);
	free(bytes);
	free(all);
	free(whole);
	free(data);
}

static void test_fixtures_split_anywhere(void **state)
{
	(void)state;
	check_fixture("vllm_completions.sse", 5);
	check_fixture("vllm_chat.sse", 8);
	check_fixture("sglang_chat_crlf.sse", 6);
	check_fixture("llamacpp_chat.sse", 4);
	check_fixture("openai_chat_comments.sse", 4);
	check_fixture("openai_chat_cr.sse", 4);
	check_fixture("error_in_stream.sse", 2);
	check_fixture("error_event.sse", 2);
}

static char *parse_str(const char *s, int *n)
{
	return parse_cuts(s, strlen(s), NULL, 0, n);
}

static void test_line_ends_and_fields(void **state)
{
	int n;
	char *e;
	size_t len;
	char *cr, *lf;

	(void)state;
	e = parse_str("data: a\n\ndata: b\r\n\r\ndata: c\r\rdata:d\n\n", &n);
	assert_int_equal(n, 4);
	assert_string_equal(e, "[|a][|b][|c][|d]");
	free(e);
	/* multi-line data joined with \n; comments and unknown fields ignored */
	e = parse_str(": hello\nid: 7\nretry: 10\ndata: x\nfoo: bar\ndata:  y\n\n", &n);
	assert_string_equal(e, "[|x\n y]");
	free(e);
	/* event type; reset after dispatch */
	e = parse_str("event: error\ndata: {}\n\ndata: z\n\n", &n);
	assert_string_equal(e, "[error|{}][|z]");
	free(e);
	/* blank lines without data dispatch nothing; a last event without its blank line */
	e = parse_str("\n\n\r\n: c\n\ndata: [DONE]", &n);
	assert_int_equal(n, 1);
	assert_string_equal(e, "[|[DONE]]");
	free(e);
	/* "data" without a colon is an empty data line */
	e = parse_str("data\n\n", &n);
	assert_string_equal(e, "[|]");
	free(e);
	/* CRLF and CR+LF split across feeds are one line end */
	cr = parse_str("data: a\r\n\r\ndata: b\r\n\r\n", &n);
	lf = parse_str("data: a\n\ndata: b\n\n", &n);
	assert_string_equal(cr, lf);
	free(cr);
	free(lf);
	(void)len;
}

static void test_long_lines(void **state)
{
	struct kvb_sse s;
	struct log l = { KV_BUF_INIT(0), 0 };
	size_t big = (size_t)1 << 20, huge = ((size_t)16 << 20) + 10;
	char *p = xmalloc(huge + 16);

	(void)state;
	/* a 1 MiB single line in 4 KiB reads */
	memcpy(p, "data: ", 6);
	memset(p + 6, 'a', big);
	memcpy(p + 6 + big, "\n\n", 2);
	kvb_sse_init(&s, 0);
	for (size_t at = 0; at < big + 8; at += 4096)
		assert_int_equal(kvb_sse_feed(&s, p + at, KV_MIN(4096, big + 8 - at), on_ev, &l), 0);
	assert_int_equal(l.n, 1);
	assert_int_equal(l.b.len, big + 3);
	kvb_sse_release(&s);
	kv_buf_release(&l.b);

	/* over 16 MiB: a clear error, and the parser stays failed */
	memset(p + 6, 'b', huge);
	kvb_sse_init(&s, 0);
	l.n = 0;
	int rc = 0;
	for (size_t at = 0; at < huge + 6 && !rc; at += 65536)
		rc = kvb_sse_feed(&s, p + at, KV_MIN(65536, huge + 6 - at), on_ev, &l);
	assert_int_equal(rc, -1);
	assert_string_equal(s.err, "sse line longer than 16 MiB");
	assert_int_equal(kvb_sse_feed(&s, "\n\n", 2, on_ev, &l), -1);
	assert_int_equal(l.n, 0);
	kvb_sse_release(&s);
	kv_buf_release(&l.b);
	free(p);
}

static int stop_cb(void *ctx, const char *type, const char *data, size_t len)
{
	(void)ctx;
	(void)type;
	(void)len;
	return !strcmp(data, "stop") ? 7 : 0;
}

static void test_callback_stops(void **state)
{
	struct kvb_sse s;

	(void)state;
	kvb_sse_init(&s, 0);
	assert_int_equal(kvb_sse_feed(&s, "data: go\n\ndata: stop\n\ndata: x\n\n", 31, stop_cb, NULL), 7);
	kvb_sse_release(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixtures_split_anywhere),
		cmocka_unit_test(test_line_ends_and_fields),
		cmocka_unit_test(test_long_lines),
		cmocka_unit_test(test_callback_stops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
