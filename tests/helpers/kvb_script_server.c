/*
 * kvb_script_server: a loopback HTTP/1.1 server that answers from a script,
 * for tests of the client's timing and error handling.
 *
 *   kvb_script_server [--port-file F] [--log F] [--timing-log F] [--max-seconds S] SCRIPT
 *
 * Listens on 127.0.0.1 (an ephemeral port, written to --port-file once it
 * listens), forks one child per connection, and exits by itself after
 * --max-seconds (default 60), killing its children. SIGTERM does the same.
 *
 * SCRIPT holds sections; a request is answered by the sections whose
 * "on METHOD PATH" matches it: the n-th matching request gets the n-th of
 * them (the last one repeats). Steps of a section, one per line:
 *   status CODE [REASON]   status line (default 200 OK)
 *   header NAME: VALUE     a response header
 *   body TEXT              whole body, sent with Content-Length
 *   send TEXT              one chunk of a chunked body (flushes the headers)
 *   fill N C               one chunk of N bytes C (for long lines)
 *   sleep MS               pause
 *   end                    last chunk; the connection stays open (default)
 *   close                  close the connection (no last chunk)
 *   reset                  close with a TCP reset
 *   hang                   never answer further (until --max-seconds)
 * TEXT takes escapes \n \r \t \\ \xHH. '#' starts a comment line.
 * --log appends "METHOD PATH HEADERS... BODY" per request (for assertions).
 * --timing-log appends one line per answered request: the CLOCK_MONOTONIC ns
 * when the request was read, then when each send/fill step was written, so
 * tests can compare the client's stamps with what the server really did.
 */
#include "common/util.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <strings.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/banned.h"

#define MAX_SECTIONS 64
#define MAX_STEPS 256
#define MAX_CHILDREN 4096

enum op { OP_STATUS, OP_HEADER, OP_BODY, OP_SEND, OP_FILL, OP_SLEEP, OP_END, OP_CLOSE, OP_RESET, OP_HANG };

struct step {
	enum op op;
	char *text;
	size_t len;
	long n;
};

struct section {
	char method[16];
	char path[256];
	struct step steps[MAX_STEPS];
	int n;
};

static struct section sections[MAX_SECTIONS];
static int n_sections;
static int *hits;                 /* shared between processes: per section */
static const char *log_path, *timing_path;
static pid_t children[MAX_CHILDREN];
static int n_children;
static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static char *unescape(const char *s, size_t *len)
{
	struct kv_buf b = KV_BUF_INIT(0);

	for (; *s; s++) {
		if (*s != '\\' || !s[1]) {
			kv_buf_putc(&b, *s);
			continue;
		}
		s++;
		switch (*s) {
		case 'n': kv_buf_putc(&b, '\n'); break;
		case 'r': kv_buf_putc(&b, '\r'); break;
		case 't': kv_buf_putc(&b, '\t'); break;
		case 'x':
			if (s[1] && s[2]) {
				char h[3] = { s[1], s[2], 0 };
				kv_buf_putc(&b, (char)strtol(h, NULL, 16));
				s += 2;
			}
			break;
		default: kv_buf_putc(&b, *s); break;
		}
	}
	return kv_buf_detach(&b, len);
}

static void load(const char *path)
{
	size_t len;
	char *text = kv_read_file(path, 16 << 20, &len), *line, *save = NULL;
	struct section *cur = NULL;
	int lineno = 0;

	if (!text)
		kv_die(2, "%s: cannot read: %s", path, strerror(errno));
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *arg;
		struct step *st;

		lineno++;
		while (*line == ' ' || *line == '\t')
			line++;
		if (!*line || *line == '#')
			continue;
		arg = strchr(line, ' ');
		if (arg)
			*arg++ = '\0';
		else
			arg = line + strlen(line);
		if (!strcmp(line, "on")) {
			if (n_sections == MAX_SECTIONS)
				kv_die(2, "%s: too many sections", path);
			cur = &sections[n_sections++];
			if (sscanf(arg, "%15s %255s", cur->method, cur->path) != 2)
				kv_die(2, "%s: 'on' needs METHOD PATH", path);
			continue;
		}
		if (!cur)
			kv_die(2, "%s: step '%s' before any 'on' line", path, line);
		if (cur->n == MAX_STEPS)
			kv_die(2, "%s: too many steps", path);
		st = &cur->steps[cur->n++];
		memset(st, 0, sizeof(*st));
		if (!strcmp(line, "status")) {
			st->op = OP_STATUS;
			st->text = xstrdup(arg);
		} else if (!strcmp(line, "header")) {
			st->op = OP_HEADER;
			st->text = xstrdup(arg);
		} else if (!strcmp(line, "body") || !strcmp(line, "send")) {
			st->op = line[0] == 'b' ? OP_BODY : OP_SEND;
			st->text = unescape(arg, &st->len);
		} else if (!strcmp(line, "fill")) {
			char c = 'a';
			st->op = OP_FILL;
			if (sscanf(arg, "%ld %c", &st->n, &c) < 1 || st->n < 0)
				kv_die(2, "%s: fill N C", path);
			st->text = xstrndup(&c, 1);
		} else if (!strcmp(line, "sleep")) {
			st->op = OP_SLEEP;
			st->n = strtol(arg, NULL, 10);
		} else if (!strcmp(line, "end")) {
			st->op = OP_END;
		} else if (!strcmp(line, "close")) {
			st->op = OP_CLOSE;
		} else if (!strcmp(line, "reset")) {
			st->op = OP_RESET;
		} else if (!strcmp(line, "hang")) {
			st->op = OP_HANG;
		} else {
			kv_die(2, "%s: unknown step '%s'", path, line);
		}
	}
	(void)lineno;
	free(text);
}

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n) {
		ssize_t k = write(fd, c, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		c += k;
		n -= (size_t)k;
	}
	return 0;
}

static void sleep_ms(long ms)
{
	kv_sleep_until_ns(kv_now_ns() + (uint64_t)ms * 1000000ull);
}

/* Reads one request; 0 and method/path set, -1 at EOF or on error. */
static int read_request(int fd, struct kv_buf *in, char *method, char *path, struct kv_buf *logb)
{
	char *end, *cl;
	size_t head, blen = 0;

	for (;;) {
		char tmp[65536];
		ssize_t k;

		end = in->len ? strstr(in->data, "\r\n\r\n") : NULL;
		if (end) {
			head = (size_t)(end - in->data) + 4;
			for (cl = in->data; cl < end; cl++)
				if (!strncasecmp(cl, "\r\ncontent-length:", 17)) {
					blen = (size_t)strtoul(cl + 17, NULL, 10);
					break;
				}
			if (in->len >= head + blen)
				break;
		}
		k = read(fd, tmp, sizeof(tmp));
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		if (kv_buf_append(in, tmp, (size_t)k) < 0)
			return -1;
	}
	if (sscanf(in->data, "%15s %255s", method, path) != 2)
		return -1;
	kv_buf_reset(logb);
	kv_buf_append(logb, in->data, head + blen);
	kv_buf_consume(in, head + blen);
	return 0;
}

static void log_request(struct kv_buf *b)
{
	FILE *f;

	if (!log_path)
		return;
	for (size_t i = 0; i < b->len; i++)
		if (b->data[i] == '\n' || b->data[i] == '\r')
			b->data[i] = ' ';
	f = fopen(log_path, "a");
	if (f) {
		fprintf(f, "%s\n", b->data);
		fclose(f);
	}
}

static struct section *match(const char *method, const char *path)
{
	int idx[MAX_SECTIONS], n = 0, first = -1, k;

	for (int i = 0; i < n_sections; i++)
		if (!strcmp(sections[i].method, method) && !strcmp(sections[i].path, path)) {
			if (first < 0)
				first = i;
			idx[n++] = i;
		}
	if (!n)
		return NULL;
	k = __atomic_fetch_add(&hits[first], 1, __ATOMIC_SEQ_CST);
	return &sections[idx[k < n ? k : n - 1]];
}

/* Answers one request. 0: keep the connection, -1: it was closed. */
static void log_timing(struct kv_buf *t)
{
	FILE *f;

	if (!timing_path)
		return;
	f = fopen(timing_path, "a");
	if (f) {
		fprintf(f, "%s\n", kv_buf_str(t));
		fclose(f);
	}
}

static int answer(int fd, struct section *s, uint64_t t_req)
{
	struct kv_buf hdr = KV_BUF_INIT(0), tl = KV_BUF_INIT(0);
	bool sent_head = false, chunked = true;

	kv_buf_printf(&tl, "%llu", (unsigned long long)t_req);
	const char *status = "200 OK";
	int rc = 0;

	for (int i = 0; i < s->n; i++)
		if (s->steps[i].op == OP_BODY)
			chunked = false;
	for (int i = 0; i < s->n && !rc; i++) {
		struct step *st = &s->steps[i];

		if (st->op == OP_STATUS) {
			status = st->text;
			continue;
		}
		if (st->op == OP_HEADER) {
			kv_buf_printf(&hdr, "%s\r\n", st->text);
			continue;
		}
		if (!sent_head && st->op != OP_BODY) {
			char *h = xasprintf("HTTP/1.1 %s\r\n%s%s\r\n", status, hdr.data ? hdr.data : "",
					    chunked ? "Transfer-Encoding: chunked\r\n" : "");
			rc = write_all(fd, h, strlen(h));
			free(h);
			sent_head = true;
		}
		switch (st->op) {
		case OP_BODY: {
			char *h = xasprintf("HTTP/1.1 %s\r\n%sContent-Length: %zu\r\n\r\n", status,
					    hdr.data ? hdr.data : "", st->len);
			rc = write_all(fd, h, strlen(h));
			if (!rc)
				rc = write_all(fd, st->text, st->len);
			free(h);
			sent_head = true;
			break;
		}
		case OP_SEND:
		case OP_FILL: {
			size_t n = st->op == OP_SEND ? st->len : (size_t)st->n;
			char h[32];
			char *p = st->op == OP_SEND ? st->text : xmalloc(n);

			if (st->op == OP_FILL)
				memset(p, st->text[0], n);
			snprintf(h, sizeof(h), "%zx\r\n", n);
			if (n)
				rc = write_all(fd, h, strlen(h)) || write_all(fd, p, n) ||
				     write_all(fd, "\r\n", 2);
			if (st->op == OP_FILL)
				free(p);
			kv_buf_printf(&tl, " %llu", (unsigned long long)kv_now_ns());
			break;
		}
		case OP_SLEEP:
			sleep_ms(st->n);
			break;
		case OP_END:
			if (chunked)
				rc = write_all(fd, "0\r\n\r\n", 5);
			chunked = false;
			break;
		case OP_CLOSE:
			close(fd);
			rc = -1;
			break;
		case OP_RESET: {
			struct linger l = { 1, 0 };
			setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
			close(fd);
			rc = -1;
			break;
		}
		case OP_HANG:
			log_timing(&tl);
			for (;;)
				pause();
		default:
			break;
		}
	}
	if (!rc && !sent_head) {
		char *h = xasprintf("HTTP/1.1 %s\r\n%sContent-Length: 0\r\n\r\n", status,
				    hdr.data ? hdr.data : "");
		rc = write_all(fd, h, strlen(h));
		free(h);
	} else if (!rc && chunked) {
		rc = write_all(fd, "0\r\n\r\n", 5);
	}
	log_timing(&tl);
	kv_buf_release(&hdr);
	kv_buf_release(&tl);
	return rc ? -1 : 0;
}

static void serve(int fd)
{
	struct kv_buf in = KV_BUF_INIT((size_t)64 << 20), logb = KV_BUF_INIT(0);
	char method[16], path[256];

	for (;;) {
		struct section *s;

		uint64_t t_req;

		if (read_request(fd, &in, method, path, &logb) < 0)
			break;
		t_req = kv_now_ns();
		log_request(&logb);
		s = match(method, path);
		if (!s) {
			const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 44\r\n\r\n"
					 "{\"error\":{\"message\":\"no script for path\"}}\r\n";
			if (write_all(fd, nf, strlen(nf)) < 0)
				break;
			continue;
		}
		if (answer(fd, s, t_req) < 0)
			return;
	}
	close(fd);
}

int main(int argc, char **argv)
{
	const char *port_file = NULL, *script = NULL;
	double max_s = 60;
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t alen = sizeof(a);
	uint64_t deadline;
	int lfd, one = 1;

	kv_set_progname("kvb_script_server");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--port-file") && i + 1 < argc)
			port_file = argv[++i];
		else if (!strcmp(argv[i], "--log") && i + 1 < argc)
			log_path = argv[++i];
		else if (!strcmp(argv[i], "--timing-log") && i + 1 < argc)
			timing_path = argv[++i];
		else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) {
			if (kv_parse_double(argv[++i], &max_s) < 0 || max_s <= 0)
				kv_die(2, "--max-seconds: expected a positive number");
		} else if (argv[i][0] != '-' && !script)
			script = argv[i];
		else
			kv_die(2, "usage: kvb_script_server [--port-file F] [--log F] [--timing-log F] [--max-seconds S] SCRIPT");
	}
	if (!script)
		kv_die(2, "usage: kvb_script_server [--port-file F] [--log F] [--timing-log F] [--max-seconds S] SCRIPT");
	load(script);
	hits = mmap(NULL, sizeof(int) * MAX_SECTIONS, PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (hits == MAP_FAILED)
		kv_die(3, "mmap: %s", strerror(errno));
	signal(SIGTERM, on_term);
	signal(SIGINT, on_term);
	signal(SIGPIPE, SIG_IGN);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1024) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &alen) < 0)
		kv_die(3, "cannot listen on 127.0.0.1: %s", strerror(errno));
	if (port_file) {
		char *tmp = xasprintf("%s.tmp", port_file), num[16];
		int n = snprintf(num, sizeof(num), "%d\n", ntohs(a.sin_port));
		if (kv_write_file_atomic(port_file, num, (size_t)n) < 0)
			kv_die(3, "%s: cannot write: %s", port_file, strerror(errno));
		free(tmp);
	} else {
		printf("%d\n", ntohs(a.sin_port));
		fflush(stdout);
	}
	deadline = kv_now_ns() + (uint64_t)(max_s * 1e9);
	while (!stop && kv_now_ns() < deadline) {
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		int fd;
		pid_t pid;

		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
		if (poll(&p, 1, 100) <= 0)
			continue;
		fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pid = fork();
		if (pid == 0) {
			close(lfd);
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			signal(SIGTERM, SIG_DFL);
			alarm((unsigned)max_s + 1);
			serve(fd);
			_exit(0);
		}
		close(fd);
		if (pid > 0 && n_children < MAX_CHILDREN)
			children[n_children++] = pid;
	}
	for (int i = 0; i < n_children; i++)
		kill(children[i], SIGKILL);
	while (wait(NULL) > 0)
		;
	close(lfd);
	return 0;
}
