/*
 * Fuzz target of the SSE parser: any bytes, split at a position taken from
 * the input, with a small line cap; the events of the split input must equal
 * those of the whole input.
 */
#include "common/util.h"

#include "common/buf.h"
#include "sse.h"

static int on_ev(void *ctx, const char *type, const char *data, size_t len)
{
	struct kv_buf *b = ctx;

	if (strlen(data) > len)
		__builtin_trap(); /* data must be NUL-terminated at len */
	kv_buf_puts(b, type);
	kv_buf_putc(b, 0);
	kv_buf_append(b, data, len);
	kv_buf_putc(b, 0);
	return 0;
}

static int parse(const uint8_t *p, size_t n, size_t cut, struct kv_buf *out)
{
	struct kvb_sse s;
	int rc;

	kvb_sse_init(&s, 4096);
	rc = kvb_sse_feed(&s, (const char *)p, cut, on_ev, out);
	if (!rc)
		rc = kvb_sse_feed(&s, (const char *)p + cut, n - cut, on_ev, out);
	if (!rc)
		rc = kvb_sse_finish(&s, on_ev, out);
	kvb_sse_release(&s);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kv_buf a = KV_BUF_INIT(0), b = KV_BUF_INIT(0);
	size_t cut;
	int ra, rb;

	if (!size)
		return 0;
	cut = data[0] % size;
	ra = parse(data + 1, size - 1, 0, &a);
	rb = parse(data + 1, size - 1, cut > size - 1 ? size - 1 : cut, &b);
	if (ra != rb || (!ra && (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len)))))
		__builtin_trap();
	kv_buf_release(&a);
	kv_buf_release(&b);
	return 0;
}
