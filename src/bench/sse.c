/* Incremental Server-Sent Events parser; see sse.h. */
#include "sse.h"

#include "common/util.h"
#include "common/banned.h"

void kvb_sse_init(struct kvb_sse *s, size_t max_line)
{
	memset(s, 0, sizeof(*s));
	s->max_line = max_line ? max_line : KVB_SSE_MAX_LINE;
	kv_buf_init(&s->line, s->max_line);
	kv_buf_init(&s->data, s->max_line);
}

void kvb_sse_release(struct kvb_sse *s)
{
	kv_buf_release(&s->line);
	kv_buf_release(&s->data);
}

static int fail_long(struct kvb_sse *s)
{
	s->failed = true;
	snprintf(s->err, sizeof(s->err), "sse line longer than %zu MiB", s->max_line >> 20);
	return -1;
}

static int dispatch(struct kvb_sse *s, kvb_sse_cb cb, void *ctx)
{
	int rc = 0;

	if (s->has_data)
		rc = cb(ctx, s->type, s->data.len ? s->data.data : "", s->data.len);
	kv_buf_reset(&s->data);
	s->type[0] = '\0';
	s->has_data = false;
	return rc;
}

/* One complete line (without its terminator). */
static int line(struct kvb_sse *s, const char *p, size_t n, kvb_sse_cb cb, void *ctx)
{
	const char *colon, *val;
	size_t flen, vlen;

	if (!n)
		return dispatch(s, cb, ctx);
	if (p[0] == ':')
		return 0;
	colon = memchr(p, ':', n);
	flen = colon ? (size_t)(colon - p) : n;
	val = colon ? colon + 1 : p + n;
	vlen = n - (size_t)(val - p);
	if (vlen && val[0] == ' ') {
		val++;
		vlen--;
	}
	if (flen == 4 && !memcmp(p, "data", 4)) {
		if (s->has_data && kv_buf_putc(&s->data, '\n') < 0)
			return fail_long(s);
		if (kv_buf_append(&s->data, val, vlen) < 0)
			return fail_long(s);
		s->has_data = true;
	} else if (flen == 5 && !memcmp(p, "event", 5)) {
		size_t k = KV_MIN(vlen, sizeof(s->type) - 1);
		memcpy(s->type, val, k);
		s->type[k] = '\0';
	}
	return 0;
}

int kvb_sse_feed(struct kvb_sse *s, const char *p, size_t n, kvb_sse_cb cb, void *ctx)
{
	const char *end = p + n;
	int rc;

	if (s->failed)
		return -1;
	while (p < end) {
		const char *q = p;

		if (s->skip_lf) {
			s->skip_lf = false;
			if (*p == '\n') {
				p++;
				continue;
			}
		}
		while (q < end && *q != '\n' && *q != '\r')
			q++;
		if (q == end) {
			if (kv_buf_append(&s->line, p, (size_t)(q - p)) < 0)
				return fail_long(s);
			break;
		}
		if (*q == '\r')
			s->skip_lf = true;
		if (s->line.len) {
			if (kv_buf_append(&s->line, p, (size_t)(q - p)) < 0)
				return fail_long(s);
			rc = line(s, s->line.data, s->line.len, cb, ctx);
			kv_buf_reset(&s->line);
		} else {
			rc = line(s, p, (size_t)(q - p), cb, ctx);
		}
		if (rc)
			return rc;
		p = q + 1;
	}
	return 0;
}

int kvb_sse_finish(struct kvb_sse *s, kvb_sse_cb cb, void *ctx)
{
	int rc = 0;

	if (s->failed)
		return -1;
	if (s->line.len) {
		rc = line(s, s->line.data, s->line.len, cb, ctx);
		kv_buf_reset(&s->line);
	}
	if (!rc)
		rc = dispatch(s, cb, ctx);
	return rc;
}
