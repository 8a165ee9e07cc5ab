/*
 * buf.h: a growable byte buffer with a hard size cap.
 *
 * Every buffer filled from outside input (network, files) has a cap: appending
 * past it fails with -1 and leaves the buffer unchanged, so a hostile or
 * broken peer can never make us allocate without bound. The data is always
 * NUL-terminated (the NUL is not counted in len).
 *
 *   struct kv_buf b = KV_BUF_INIT(1 << 20);
 *   if (kv_buf_append(&b, p, n) < 0) ... too large ...
 *   kv_buf_release(&b);
 */
#ifndef KV_BUF_H
#define KV_BUF_H

#include "common/compat.h"

struct kv_buf {
	char *data;     /* owned; NULL until the first append */
	size_t len;     /* bytes in use, excluding the trailing NUL */
	size_t alloc;   /* bytes allocated */
	size_t max;     /* cap on len; 0 means SIZE_MAX */
};

#define KV_BUF_INIT(cap) { NULL, 0, 0, (cap) }

void kv_buf_init(struct kv_buf *b, size_t max);
/* Frees the data; the buffer may be used again (empty, same cap). */
void kv_buf_release(struct kv_buf *b);
/* Empties the buffer, keeping its allocation. */
void kv_buf_reset(struct kv_buf *b);
/* 0, or -1 when len + n would exceed the cap (buffer unchanged). */
int kv_buf_append(struct kv_buf *b, const void *p, size_t n);
int kv_buf_puts(struct kv_buf *b, const char *s);
int kv_buf_putc(struct kv_buf *b, char c);
int kv_buf_printf(struct kv_buf *b, const char *fmt, ...) KV_PRINTF(2, 3);
/* Drops the first n bytes (n <= len). */
void kv_buf_consume(struct kv_buf *b, size_t n);
/* Hands the data to the caller (malloc'ed, never NULL) and empties b. */
char *kv_buf_detach(struct kv_buf *b, size_t *len);
/* Returns the data as a string, "" when empty. Valid until the next change. */
const char *kv_buf_str(const struct kv_buf *b);

#endif
