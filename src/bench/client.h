/*
 * client.h: HTTP transfers on one event loop (libcurl multi, socket API,
 * epoll + a timerfd), with connection reuse, for OpenAI-style requests.
 *
 * The caller fills a struct kvb_call (URL, body, headers, how to read the
 * answer), hands it to kvb_client_start() and calls kvb_client_poll() in its
 * loop. When the transfer ends the done callback gets the call with its
 * result filled in (status, times, text, tokens); the callback then owns the
 * call and frees it with kvb_call_free(). Nothing is printed.
 *
 * Times (kv_now_ns) are stamped in curl's callbacks as the bytes arrive,
 * before any JSON work: t_first_byte at the first header or body byte, each
 * SSE event with the time of the read that completed it.
 *
 * Failures become result statuses: refused / DNS / TLS -> KVB_ERR_CONNECT,
 * connect or request timeout -> KVB_ERR_TIMEOUT, connection closed or reset
 * before the end of the stream ([DONE] or a finish_reason) -> KVB_ERR_RESET,
 * HTTP >= 400 -> KVB_ERR_HTTP with the server's message, bad SSE or JSON ->
 * KVB_ERR_STREAM, an error event -> KVB_ERR_SERVER, kvb_client_cancel_all()
 * -> KVB_ERR_CANCELLED, an abort the caller asked for (abort_after_*) ->
 * KVB_ABORTED.
 */
#ifndef KVB_CLIENT_H
#define KVB_CLIENT_H

#include <curl/curl.h>

#include "oai.h"
#include "sse.h"

struct kvb_client;

struct kvb_call {
	/* set by the caller before kvb_client_start() */
	char *url;                  /* owned */
	char *body;                 /* owned; POSTed when non-NULL, else GET */
	size_t body_len;
	struct curl_slist *headers; /* not owned; must outlive the call */
	bool stream;                /* the answer is an SSE stream */
	enum kvb_endpoint ep;
	bool echo;
	const char *echo_prompt;    /* not owned */
	void *ctx;                  /* the caller's */
	/* a user pressing stop: the client closes the connection once this
	   many output tokens arrived (0: never) or this long after the send
	   (seconds, 0: never); the result is then KVB_ABORTED. A stream that
	   ended (finish_reason or [DONE]) before either is not aborted. With
	   echo, the echoed prompt tokens count as they arrive (the prompt's
	   length is known only from usage at the end). */
	int abort_after_tokens;
	double abort_after_s;
	struct kvb_result res;      /* filled in; released by kvb_call_free() */

	/* private */
	CURL *easy;
	struct kvb_client *client;
	struct kvb_sse sse;
	struct kvb_oai oai;
	struct kv_buf in;           /* whole body (non-stream) or error body */
	uint64_t t_read;            /* stamp of the read being parsed */
	int mode;
	struct kvb_call *prev, *next; /* in flight */
	char errbuf[CURL_ERROR_SIZE];
};

struct kvb_client_opts {
	double connect_timeout_s;   /* 0: curl's default */
	double request_timeout_s;   /* whole transfer; 0: none */
	long buffer_size;           /* curl receive buffer per transfer; 0: 2 KiB */
};

typedef void (*kvb_client_done_fn)(void *ctx, struct kvb_call *call);

/* Returns NULL (after kv_error) when curl or epoll cannot be set up. */
struct kvb_client *kvb_client_new(const struct kvb_client_opts *o, kvb_client_done_fn done,
				  void *ctx);
/* Cancels what is in flight (callbacks fire) and frees the client. */
void kvb_client_free(struct kvb_client *c);

/* A zeroed call; url is copied. */
struct kvb_call *kvb_call_new(const char *url);
void kvb_call_free(struct kvb_call *call);

/* Starts the transfer: stamps call->res.t_send. */
void kvb_client_start(struct kvb_client *c, struct kvb_call *call);
/*
 * Runs the loop until deadline_ns (CLOCK_MONOTONIC) or until at least one
 * event was handled, whichever first; done callbacks fire from here. Work
 * left when the deadline passes (more ready sockets, more finished
 * transfers) waits for the next call, so a caller's due sends are not held
 * up. With nothing in flight and no deadline (UINT64_MAX) it returns at once.
 */
void kvb_client_poll(struct kvb_client *c, uint64_t deadline_ns);
size_t kvb_client_inflight(const struct kvb_client *c);
/* Ends every transfer in flight with KVB_ERR_CANCELLED (callbacks fire). */
void kvb_client_cancel_all(struct kvb_client *c);

/*
 * Blocking GET of base_url + path (for /v1/models). Returns the body
 * (malloc'ed, at most 1 MiB) or NULL with *err set (malloc'ed, one line).
 */
char *kvb_http_get(const char *url, struct curl_slist *headers, double timeout_s, char **err);

#endif
