/* libcurl multi on epoll: see client.h. */
#include "client.h"

#include <errno.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/util.h"
#include "common/banned.h"

#define MAX_ERR_BODY ((size_t)64 << 10)
/* a proxy from the environment is used for remote servers, never for loopback */
#define NOPROXY "127.0.0.1,localhost,::1"
#define MAX_BODY ((size_t)256 << 20)

enum { MODE_NONE, MODE_SSE, MODE_BODY, MODE_ERRBODY };

struct kvb_client {
	CURLM *multi;
	int epfd, tfd;
	uint64_t curl_deadline;   /* 0: no curl timer */
	size_t inflight;
	struct kvb_call *head;    /* in flight */
	struct kvb_client_opts o;
	kvb_client_done_fn done;
	void *ctx;
	bool reap_pending;        /* finished transfers not handed over yet */
	CURL **pool;              /* idle easy handles */
	size_t n_pool, a_pool;
};

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct kvb_client *c = userp;
	struct epoll_event ev = { 0 };

	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(c->epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	ev.data.fd = s;
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(c->epfd, EPOLL_CTL_MOD, s, &ev) < 0 && errno == ENOENT)
		epoll_ctl(c->epfd, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
	struct kvb_client *c = userp;

	if (timeout_ms < 0)
		c->curl_deadline = 0;
	else
		c->curl_deadline = kv_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	return 0;
}

struct kvb_client *kvb_client_new(const struct kvb_client_opts *o, kvb_client_done_fn done,
				  void *ctx)
{
	struct kvb_client *c;
	struct epoll_event ev = { .events = EPOLLIN };

	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		kv_error("client: curl_global_init failed");
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->o = *o;
	c->done = done;
	c->ctx = ctx;
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	c->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	c->multi = curl_multi_init();
	if (c->epfd < 0 || c->tfd < 0 || !c->multi) {
		kv_error("client: cannot set up the event loop: %s", strerror(errno));
		kvb_client_free(c);
		return NULL;
	}
	ev.data.fd = c->tfd;
	epoll_ctl(c->epfd, EPOLL_CTL_ADD, c->tfd, &ev);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
	curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
	curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 100000L);
	return c;
}

struct kvb_call *kvb_call_new(const char *url)
{
	struct kvb_call *call = xcalloc(1, sizeof(*call));

	call->url = xstrdup(url);
	kvb_sse_init(&call->sse, 0);
	kv_buf_init(&call->in, MAX_BODY);
	kvb_oai_init(&call->oai, &call->res, KVB_EP_COMPLETIONS, false, NULL);
	return call;
}

void kvb_call_free(struct kvb_call *call)
{
	if (!call)
		return;
	free(call->url);
	free(call->body);
	kvb_sse_release(&call->sse);
	kvb_oai_release(&call->oai);
	kv_buf_release(&call->in);
	kvb_result_release(&call->res);
	free(call);
}

static void set_err(struct kvb_call *call, enum kvb_status st, char *msg)
{
	if (call->res.status == KVB_OK) {
		call->res.status = st;
		free(call->res.error);
		call->res.error = msg;
	} else {
		free(msg);
	}
}

static int on_event(void *ctx, const char *type, const char *data, size_t len)
{
	struct kvb_call *call = ctx;
	int rc;

	if (!strcmp(type, "error")) {
		set_err(call, KVB_ERR_SERVER, kvb_oai_error_message(data, len));
		return -1;
	}
	if (call->oai.done)
		return 0; /* after [DONE]: ignore */
	rc = kvb_oai_chunk(&call->oai, data, len, call->t_read);
	if (rc < 0)
		return -1;
	if (call->abort_after_tokens > 0 && !call->oai.finished && !call->oai.done &&
	    call->oai.n_tok_t >= (size_t)call->abort_after_tokens) {
		/* stop reading here: curl closes the connection */
		set_err(call, KVB_ABORTED, xasprintf("aborted by the client after %zu tokens",
						     call->oai.n_tok_t));
		return -1;
	}
	return 0;
}

static void pick_mode(struct kvb_call *call)
{
	char *ct = NULL;
	long code = 0;

	curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ct);
	call->res.http_status = (int)code;
	if (code >= 400) {
		call->mode = MODE_ERRBODY;
		call->in.max = MAX_ERR_BODY;
	} else if (call->stream && !(ct && !strncasecmp(ct, "application/json", 16))) {
		call->mode = MODE_SSE;
	} else {
		/* not streamed, or a server that answers a stream request with one body */
		call->mode = MODE_BODY;
	}
}

static size_t on_write(char *p, size_t size, size_t nmemb, void *userp)
{
	uint64_t t = kv_now_ns();
	struct kvb_call *call = userp;
	size_t n = size * nmemb;

	if (!call->res.t_first_byte)
		call->res.t_first_byte = t;
	if (call->mode == MODE_NONE)
		pick_mode(call);
	switch (call->mode) {
	case MODE_SSE:
		call->t_read = t;
		if (kvb_sse_feed(&call->sse, p, n, on_event, call)) {
			if (call->sse.failed)
				set_err(call, KVB_ERR_STREAM, xstrdup(call->sse.err));
			return 0; /* abort the transfer */
		}
		break;
	case MODE_BODY:
		if (kv_buf_append(&call->in, p, n) < 0) {
			set_err(call, KVB_ERR_STREAM, xstrdup("response body larger than 256 MiB"));
			return 0;
		}
		break;
	case MODE_ERRBODY:
		/* keep the start of the message, drop the rest */
		kv_buf_append(&call->in, p, KV_MIN(n, call->in.max - call->in.len));
		break;
	}
	return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *userp)
{
	struct kvb_call *call = userp;

	if (!call->res.t_first_byte)
		call->res.t_first_byte = kv_now_ns();
	return size * nmemb;
}

void kvb_client_start(struct kvb_client *c, struct kvb_call *call)
{
	CURL *e = c->n_pool ? c->pool[--c->n_pool] : curl_easy_init();

	if (!e)
		kv_die(3, "client: curl_easy_init failed");
	call->easy = e;
	call->client = c;
	call->oai.ep = call->ep;
	call->oai.echo = call->echo;
	call->oai.echo_prompt = call->echo_prompt;
	call->errbuf[0] = '\0';
	curl_easy_setopt(e, CURLOPT_URL, call->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, call);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_NOPROXY, NOPROXY);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, call);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->errbuf);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, c->o.buffer_size > 0 ? c->o.buffer_size : 2048L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(c->o.connect_timeout_s * 1000.0));
	if (call->abort_after_s > 0 &&
	    (c->o.request_timeout_s <= 0 || call->abort_after_s < c->o.request_timeout_s))
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, KV_MAX(1L, (long)(call->abort_after_s * 1000.0)));
	else
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(c->o.request_timeout_s * 1000.0));
	if (call->body) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)call->body_len);
	} else {
		curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	}
	c->inflight++;
	call->prev = NULL;
	call->next = c->head;
	if (c->head)
		c->head->prev = call;
	c->head = call;
	call->res.t_send = kv_now_ns();
	curl_multi_add_handle(c->multi, e);
}

static enum kvb_status curl_status(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return KVB_ERR_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return KVB_ERR_TIMEOUT;
	default:
		return KVB_ERR_RESET;
	}
}

/* Fills in the result of a finished transfer and hands it to the caller. */
static void finish(struct kvb_client *c, struct kvb_call *call, CURLcode rc, bool cancelled)
{
	struct kvb_result *res = &call->res;
	long code = 0;

	res->t_end = kv_now_ns();
	curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &code);
	res->http_status = (int)code;
	if (cancelled) {
		set_err(call, KVB_ERR_CANCELLED, xstrdup("run interrupted"));
	} else if (res->status != KVB_OK) {
		/* already known: our callback stopped the transfer */
	} else if (code >= 400) {
		char *m = kvb_oai_error_message(kv_buf_str(&call->in), call->in.len);
		set_err(call, KVB_ERR_HTTP, xasprintf("http %ld: %s", code, m));
		free(m);
	} else if (rc == CURLE_OPERATION_TIMEDOUT && call->abort_after_s > 0 &&
		   res->t_end - res->t_send + 1000000ull >= (uint64_t)(call->abort_after_s * 1e9)) {
		/* our own timer, not the server's fault: a user pressing stop */
		set_err(call, KVB_ABORTED, xasprintf("aborted by the client after %g s (%zu tokens)",
						     call->abort_after_s, call->oai.n_tok_t));
	} else if (rc != CURLE_OK) {
		set_err(call, curl_status(rc),
			xstrdup(call->errbuf[0] ? call->errbuf : curl_easy_strerror(rc)));
	} else if (call->mode == MODE_BODY) {
		kvb_oai_body(&call->oai, kv_buf_str(&call->in), call->in.len, res->t_end);
	} else if (call->stream) {
		call->t_read = res->t_end;
		if (kvb_sse_finish(&call->sse, on_event, call) && call->sse.failed)
			set_err(call, KVB_ERR_STREAM, xstrdup(call->sse.err));
		if (res->status == KVB_OK && !call->oai.done && !call->oai.finished)
			set_err(call, KVB_ERR_RESET, xstrdup("stream ended before [DONE]"));
	} else {
		set_err(call, KVB_ERR_RESET, xstrdup("empty response"));
	}
	kvb_oai_finish(&call->oai);
	curl_multi_remove_handle(c->multi, call->easy);
	if (c->n_pool == c->a_pool) {
		c->a_pool = c->a_pool ? 2 * c->a_pool : 64;
		c->pool = xrealloc(c->pool, c->a_pool * sizeof(*c->pool));
	}
	c->pool[c->n_pool++] = call->easy;
	call->easy = NULL;
	if (call->prev)
		call->prev->next = call->next;
	else
		c->head = call->next;
	if (call->next)
		call->next->prev = call->prev;
	c->inflight--;
	c->done(c->ctx, call);
}

/*
 * Hands finished transfers to the caller. Stops once the deadline has passed
 * (after at least one), so that due sends are not held up by a burst of
 * completions; the rest are handed over on the next poll.
 */
static void reap(struct kvb_client *c, uint64_t deadline_ns)
{
	CURLMsg *m;
	int left, n = 0;

	c->reap_pending = false;
	while ((m = curl_multi_info_read(c->multi, &left))) {
		struct kvb_call *call = NULL;

		if (m->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&call);
		finish(c, call, m->data.result, false);
		if (left && ++n && kv_now_ns() >= deadline_ns) {
			c->reap_pending = true;
			return;
		}
	}
}

void kvb_client_poll(struct kvb_client *c, uint64_t deadline_ns)
{
	struct epoll_event evs[256];
	uint64_t now = kv_now_ns(), wake = deadline_ns;
	int n, running, timeout = -1;

	if (c->reap_pending) {
		reap(c, deadline_ns);
		return;
	}
	if (c->curl_deadline && c->curl_deadline < wake)
		wake = c->curl_deadline;
	if (wake == UINT64_MAX && !c->inflight)
		return;
	if (wake <= now) {
		timeout = 0;
	} else if (wake != UINT64_MAX) {
		struct itimerspec its = { 0 };
		its.it_value.tv_sec = (time_t)(wake / 1000000000ull);
		its.it_value.tv_nsec = (long)(wake % 1000000000ull);
		timerfd_settime(c->tfd, TFD_TIMER_ABSTIME, &its, NULL);
	}
	n = epoll_wait(c->epfd, evs, (int)KV_ARRAY_SIZE(evs), timeout);
	for (int i = 0; i < n; i++) {
		int fd = evs[i].data.fd, act = 0;

		if (fd == c->tfd) {
			uint64_t x;
			if (read(c->tfd, &x, sizeof(x)) < 0) {
				/* EAGAIN: the timer was re-armed meanwhile */
			}
			continue;
		}
		/* past the deadline: leave the rest to the next poll (level-triggered) */
		if (i && kv_now_ns() >= deadline_ns)
			break;
		if (evs[i].events & EPOLLIN)
			act |= CURL_CSELECT_IN;
		if (evs[i].events & EPOLLOUT)
			act |= CURL_CSELECT_OUT;
		if (evs[i].events & (EPOLLERR | EPOLLHUP))
			act |= CURL_CSELECT_ERR;
		curl_multi_socket_action(c->multi, fd, act, &running);
	}
	if (c->curl_deadline && kv_now_ns() >= c->curl_deadline) {
		c->curl_deadline = 0;
		curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	reap(c, deadline_ns);
}

size_t kvb_client_inflight(const struct kvb_client *c)
{
	return c->inflight;
}

void kvb_client_cancel_all(struct kvb_client *c)
{
	reap(c, UINT64_MAX);
	while (c->head)
		finish(c, c->head, CURLE_OK, true);
}

void kvb_client_free(struct kvb_client *c)
{
	if (!c)
		return;
	if (c->multi) {
		kvb_client_cancel_all(c);
		curl_multi_cleanup(c->multi);
	}
	for (size_t i = 0; i < c->n_pool; i++)
		curl_easy_cleanup(c->pool[i]);
	free(c->pool);
	if (c->epfd >= 0)
		close(c->epfd);
	if (c->tfd >= 0)
		close(c->tfd);
	free(c);
	curl_global_cleanup();
}

static size_t get_write(char *p, size_t size, size_t nmemb, void *userp)
{
	struct kv_buf *b = userp;

	return kv_buf_append(b, p, size * nmemb) < 0 ? 0 : size * nmemb;
}

char *kvb_http_get(const char *url, struct curl_slist *headers, double timeout_s, char **err)
{
	struct kv_buf b = KV_BUF_INIT((size_t)1 << 20);
	char errbuf[CURL_ERROR_SIZE] = "";
	CURL *e = curl_easy_init();
	char *out = NULL;
	long code = 0;
	CURLcode rc;

	*err = NULL;
	if (!e) {
		*err = xstrdup("curl_easy_init failed");
		return NULL;
	}
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_NOPROXY, NOPROXY);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, get_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000.0));
	rc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	if (rc != CURLE_OK) {
		*err = xstrdup(errbuf[0] ? errbuf : curl_easy_strerror(rc));
	} else if (code >= 400) {
		char *m = kvb_oai_error_message(kv_buf_str(&b), b.len);
		*err = xasprintf("http %ld: %s", code, m);
		free(m);
	} else {
		out = kv_buf_detach(&b, NULL);
	}
	kv_buf_release(&b);
	curl_easy_cleanup(e);
	return out;
}
