/* Unit tests of src/serve/tokenizer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/util.h"
#include "tokenizer.h"

static void test_roundtrip(void **state)
{
	const char *text = "héllo <|user|>wörld\n\xe2\x82\xac<|x|>";
	int32_t *t = NULL;
	int n = 0, cap = 0;
	struct kv_buf b = KV_BUF_INIT(0);
	(void)state;
	tok_encode(text, strlen(text), true, &t, &n, &cap);
	assert_int_equal(t[0], TOK_BOS);
	int users = 0;
	for (int i = 0; i < n; i++)
		users += t[i] == TOK_USER;
	assert_int_equal(users, 1);
	assert_int_equal(tok_decode(t + 1, n - 1, false, &b), 0);
	assert_string_equal(kv_buf_str(&b), text);
	kv_buf_reset(&b);
	assert_int_equal(tok_decode(t, n, true, &b), 0);
	assert_null(strstr(kv_buf_str(&b), "<|user|>"));
	assert_null(strstr(kv_buf_str(&b), "<|bos|>"));
	int32_t bad = TOK_VOCAB;
	assert_int_equal(tok_decode(&bad, 1, false, &b), -1);
	kv_buf_release(&b);
	free(t);
}

static void test_invalid_utf8(void **state)
{
	struct kv_buf b = KV_BUF_INIT(0);
	int32_t t[] = { 'a', 0xe2, 0x82, 'b', 0xff, 0xc3, 0xa9 };
	(void)state;
	assert_int_equal(tok_decode(t, 7, false, &b), 0);
	/* the cut sequence e2 82 becomes two U+FFFD, ff one, c3 a9 is é */
	assert_string_equal(kv_buf_str(&b), "a\xef\xbf\xbd\xef\xbf\xbd" "b\xef\xbf\xbd\xc3\xa9");
	kv_buf_release(&b);
}

static void test_stream_holds_partial(void **state)
{
	struct tok_stream s = { { 0 }, 0 };
	struct kv_buf b = KV_BUF_INIT(0);
	(void)state;
	tok_stream_feed(&s, 0xe2, &b);
	tok_stream_feed(&s, 0x82, &b);
	assert_int_equal(b.len, 0);
	tok_stream_feed(&s, 0xac, &b);
	assert_string_equal(kv_buf_str(&b), "\xe2\x82\xac");
	tok_stream_feed(&s, 0xc3, &b);
	tok_stream_flush(&s, &b);
	assert_string_equal(kv_buf_str(&b), "\xe2\x82\xac\xef\xbf\xbd");
	tok_stream_feed(&s, TOK_EOS, &b); /* specials are not text */
	assert_int_equal(b.len, 6);
	char p[32];
	tok_piece(0x80, p, sizeof(p));
	assert_string_equal(p, "bytes:\\x80");
	tok_piece('A', p, sizeof(p));
	assert_string_equal(p, "A");
	tok_piece(TOK_EOS, p, sizeof(p));
	assert_string_equal(p, "<|eos|>");
	kv_buf_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_stream_holds_partial),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
