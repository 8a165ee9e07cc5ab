/*
 * sse.h: incremental parser of Server-Sent Events (text/event-stream).
 *
 * Bytes go in as they arrive, split anywhere (even inside a CRLF); complete
 * events come out through a callback. Lines end in LF, CRLF or CR. Lines
 * starting with ':' are comments. "data:" lines of one event are joined with
 * '\n'; "event:" sets the event's type; "id:" and "retry:" are ignored. An
 * event is dispatched at a blank line, and only when it has data.
 *
 * Memory is bounded: a line (and an event's joined data) may not exceed
 * max_line bytes (KVB_SSE_MAX_LINE by default, 16 MiB); past that
 * kvb_sse_feed() fails with "sse line longer than 16 MiB" and the parser
 * stays failed.
 *
 *   struct kvb_sse s;
 *   kvb_sse_init(&s, 0);
 *   while (read) if (kvb_sse_feed(&s, p, n, on_event, ctx)) ... error ...
 *   kvb_sse_finish(&s, on_event, ctx);   // at the end of the stream
 *   kvb_sse_release(&s);
 */
#ifndef KVB_SSE_H
#define KVB_SSE_H

#include "common/buf.h"

#define KVB_SSE_MAX_LINE ((size_t)16 << 20)

/*
 * One event: type is "" when no "event:" line came ("message" in the spec);
 * data is NUL-terminated, len bytes, valid only during the call. Return 0 to
 * go on, non-zero to stop: kvb_sse_feed() then returns that value.
 */
typedef int (*kvb_sse_cb)(void *ctx, const char *type, const char *data, size_t len);

struct kvb_sse {
	struct kv_buf line;  /* the current, incomplete line */
	struct kv_buf data;  /* data lines of the current event, joined */
	char type[64];       /* "event:" value, truncated */
	size_t max_line;
	bool skip_lf;        /* the previous byte was CR: an LF now ends nothing */
	bool has_data;
	bool failed;
	char err[80];        /* why it failed */
};

/* max_line 0 = KVB_SSE_MAX_LINE. */
void kvb_sse_init(struct kvb_sse *s, size_t max_line);
void kvb_sse_release(struct kvb_sse *s);
/* 0, -1 on a line over the cap (s->err says so), or the callback's return. */
int kvb_sse_feed(struct kvb_sse *s, const char *p, size_t n, kvb_sse_cb cb, void *ctx);
/* End of stream: dispatches a last event that lacked its blank line. */
int kvb_sse_finish(struct kvb_sse *s, kvb_sse_cb cb, void *ctx);

#endif
