#include "common/buf.h"

#include <stdarg.h>

#include "common/util.h"
#include "common/banned.h"

void kv_buf_init(struct kv_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	b->max = max;
}

void kv_buf_release(struct kv_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
}

void kv_buf_reset(struct kv_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

static int grow(struct kv_buf *b, size_t extra)
{
	size_t max = b->max ? b->max : SIZE_MAX - 1;
	size_t need;

	if (extra > max || b->len > max - extra)
		return -1;
	need = b->len + extra + 1;
	if (need <= b->alloc)
		return 0;
	size_t a = b->alloc ? b->alloc : 64;
	while (a < need)
		a = a > SIZE_MAX / 2 ? need : a * 2;
	b->data = xrealloc(b->data, a);
	b->alloc = a;
	return 0;
}

int kv_buf_append(struct kv_buf *b, const void *p, size_t n)
{
	if (grow(b, n) < 0)
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int kv_buf_puts(struct kv_buf *b, const char *s)
{
	return kv_buf_append(b, s, strlen(s));
}

int kv_buf_putc(struct kv_buf *b, char c)
{
	return kv_buf_append(b, &c, 1);
}

int kv_buf_printf(struct kv_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || grow(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void kv_buf_consume(struct kv_buf *b, size_t n)
{
	if (n >= b->len) {
		kv_buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

char *kv_buf_detach(struct kv_buf *b, size_t *len)
{
	char *p = b->data ? b->data : xstrdup("");
	if (len)
		*len = b->len;
	b->data = NULL;
	b->len = 0;
	b->alloc = 0;
	return p;
}

const char *kv_buf_str(const struct kv_buf *b)
{
	return b->data ? b->data : "";
}
