/*
 * kvb_fast_server: the cheapest OpenAI-style streaming server we can write,
 * so that a benchmark of the client measures the client.
 *
 *   kvb_fast_server [--tokens N] [--hold-ms H] [--port-file F] [--max-seconds S]
 *
 * One thread, epoll, keep-alive. Every POST gets a chunked SSE answer of N
 * one-token chunks, a finish chunk with usage and [DONE]. With --hold-ms the
 * first chunk goes out at once and the rest H ms later, so that many streams
 * stay open at the same time (memory per open stream). GET /v1/models names
 * one model. Exits after --max-seconds (default 600) or on SIGTERM.
 */
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/banned.h"

struct conn {
	int fd;
	struct kv_buf in;
	const char *out;        /* not owned: one of the shared answers */
	size_t out_len, out_at;
	uint64_t due;           /* held: send the rest at this time */
	struct conn *next;      /* hold queue (FIFO: every hold is equally long) */
	bool held;
};

static struct kv_buf first, rest, models;
static struct conn *q_head, *q_tail;
static int epfd;
static volatile sig_atomic_t stop;

static void on_term(int s)
{
	(void)s;
	stop = 1;
}

static void chunk(struct kv_buf *b, const char *data)
{
	kv_buf_printf(b, "%zx\r\n%s\r\n", strlen(data), data);
}

static void build(long tokens, bool hold)
{
	const char *tok = "data: {\"choices\":[{\"index\":0,\"text\":\"x\"}]}\n\n";
	char fin[256];

	kv_buf_puts(&first, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
			    "Transfer-Encoding: chunked\r\n\r\n");
	chunk(&first, tok);
	for (long i = 1; i < tokens; i++)
		chunk(hold ? &rest : &first, tok);
	snprintf(fin, sizeof(fin), "data: {\"choices\":[{\"index\":0,\"text\":\"\",\"finish_reason\":\"length\"}],"
		 "\"usage\":{\"prompt_tokens\":8,\"completion_tokens\":%ld}}\n\ndata: [DONE]\n\n", tokens);
	chunk(hold ? &rest : &first, fin);
	kv_buf_puts(hold ? &rest : &first, "0\r\n\r\n");
	kv_buf_puts(&models, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n"
			     "{\"data\":[{\"id\":\"fast\",\"object\":\"model\"}]}");
}

static void drop(struct conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	kv_buf_release(&c->in);
	if (c->held)
		c->fd = -1; /* freed when it leaves the hold queue */
	else
		free(c);
}

static void want_out(struct conn *c, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c };

	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes what is pending; -1 when the connection is gone. */
static int flush(struct conn *c)
{
	while (c->out && c->out_at < c->out_len) {
		ssize_t k = write(c->fd, c->out + c->out_at, c->out_len - c->out_at);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN) {
			want_out(c, true);
			return 0;
		}
		if (k <= 0)
			return -1;
		c->out_at += (size_t)k;
	}
	if (c->out)
		want_out(c, false);
	c->out = NULL;
	return 0;
}

static void send_buf(struct conn *c, const struct kv_buf *b)
{
	c->out = b->data;
	c->out_len = b->len;
	c->out_at = 0;
}

/* Handles the complete requests in c->in; -1 when the connection is gone. */
static int handle(struct conn *c, uint64_t hold_ns)
{
	for (;;) {
		char *end = c->in.len ? strstr(c->in.data, "\r\n\r\n") : NULL, *p;
		size_t head, blen = 0;

		if (!end || c->out || c->held)
			return 0;
		head = (size_t)(end - c->in.data) + 4;
		for (p = c->in.data; p < end; p++)
			if (!strncasecmp(p, "\r\ncontent-length:", 17)) {
				blen = (size_t)strtoul(p + 17, NULL, 10);
				break;
			}
		if (c->in.len < head + blen)
			return 0;
		if (!strncmp(c->in.data, "GET", 3)) {
			send_buf(c, &models);
		} else {
			send_buf(c, &first);
			if (hold_ns) {
				c->held = true;
				c->due = kv_now_ns() + hold_ns;
				c->next = NULL;
				if (q_tail)
					q_tail->next = c;
				else
					q_head = c;
				q_tail = c;
			}
		}
		kv_buf_consume(&c->in, head + blen);
		if (flush(c) < 0)
			return -1;
	}
}

int main(int argc, char **argv)
{
	long tokens = 16, hold_ms = 0;
	double max_s = 600;
	const char *port_file = NULL;
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	struct epoll_event ev, evs[512];
	struct rlimit rl;
	uint64_t deadline;
	int lfd, one = 1;

	kv_set_progname("kvb_fast_server");
	for (int i = 1; i + 1 < argc; i += 2) {
		int64_t v;
		if (!strcmp(argv[i], "--tokens") && !kv_parse_i64(argv[i + 1], 1, 1 << 20, &v))
			tokens = (long)v;
		else if (!strcmp(argv[i], "--hold-ms") && !kv_parse_i64(argv[i + 1], 0, 3600000, &v))
			hold_ms = (long)v;
		else if (!strcmp(argv[i], "--port-file"))
			port_file = argv[i + 1];
		else if (!strcmp(argv[i], "--max-seconds") && !kv_parse_double(argv[i + 1], &max_s))
			;
		else
			kv_die(2, "usage: kvb_fast_server [--tokens N] [--hold-ms H] [--port-file F] [--max-seconds S]");
	}
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	build(tokens, hold_ms > 0);
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	epfd = epoll_create1(0);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 4096) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
		kv_die(3, "cannot listen on 127.0.0.1: %s", strerror(errno));
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
	if (port_file) {
		char num[16];
		int n = snprintf(num, sizeof(num), "%d\n", ntohs(a.sin_port));
		if (kv_write_file_atomic(port_file, num, (size_t)n) < 0)
			kv_die(3, "%s: cannot write", port_file);
	} else {
		printf("%d\n", ntohs(a.sin_port));
		fflush(stdout);
	}
	deadline = kv_now_ns() + (uint64_t)(max_s * 1e9);
	while (!stop && kv_now_ns() < deadline) {
		int timeout = 100, n;
		uint64_t now = kv_now_ns();

		if (q_head)
			timeout = q_head->due > now ? (int)((q_head->due - now) / 1000000) : 0;
		n = epoll_wait(epfd, evs, (int)KV_ARRAY_SIZE(evs), timeout);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;

			if (!c) {
				int fd;
				while ((fd = accept(lfd, NULL, NULL)) >= 0) {
					fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
					c = xcalloc(1, sizeof(*c));
					c->fd = fd;
					kv_buf_init(&c->in, 1 << 20);
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
					ev.events = EPOLLIN;
					ev.data.ptr = c;
					epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			if (evs[i].events & EPOLLOUT && flush(c) < 0) {
				drop(c);
				continue;
			}
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
				char buf[65536];
				ssize_t k = read(c->fd, buf, sizeof(buf));
				if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR) ||
				    (k > 0 && kv_buf_append(&c->in, buf, (size_t)k) < 0)) {
					drop(c);
					continue;
				}
				if (handle(c, (uint64_t)hold_ms * 1000000ull) < 0)
					drop(c);
			}
		}
		now = kv_now_ns();
		while (q_head && q_head->due <= now) {
			struct conn *c = q_head;

			q_head = c->next;
			if (!q_head)
				q_tail = NULL;
			c->held = false;
			if (c->fd < 0) {
				free(c);
				continue;
			}
			if (c->out) {
				/* the first part is still going out: send the rest after it */
				c->held = true;
				c->due = now + 1000000;
				c->next = NULL;
				if (q_tail)
					q_tail->next = c;
				else
					q_head = c;
				q_tail = c;
				break;
			}
			send_buf(c, &rest);
			if (flush(c) < 0 || handle(c, (uint64_t)hold_ms * 1000000ull) < 0)
				drop(c);
		}
	}
	return 0;
}
