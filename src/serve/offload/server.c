/* server.c: `kvserve cache`, the shared remote KV cache (remote.h). */
#include "common/util.h"
#include "offload/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/opt.h"
#include "offload/lru.h"
#include "offload/netio.h"

#include "common/banned.h"

#define MAX_CLIENTS_CAP 1024

struct kvo_server {
	struct kvo_server_opts o;
	struct kvo_lru *lru;
	int lfd, port;
	pthread_t acceptor;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int clients[MAX_CLIENTS_CAP]; /* fds of live clients, -1 free */
	int nclients;
	bool stopping;
	struct MHD_Daemon *mhd;
	int mport;
	/* counters (atomic) */
	uint64_t n_cmd[6], hits, misses, bytes_in, bytes_out, errors, refused;
};

struct client_arg {
	struct kvo_server *s;
	int fd, slot;
};

static int reply(int fd, enum kvo_status st, const void *body, size_t len)
{
	uint8_t rsp[KVO_RSP_BYTES];
	uint64_t dl = kv_now_ns() + 30ull * 1000000000ull;
	kvo_put_u32(rsp, KVO_RSP_MAGIC);
	kvo_put_u32(rsp + 4, (uint32_t)st);
	kvo_put_u64(rsp + 8, len);
	if (kvo_write_full(fd, rsp, sizeof(rsp), dl) < 0)
		return -1;
	if (len && kvo_write_full(fd, body, len, dl) < 0)
		return -1;
	return 0;
}

static void count(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

/* Serves one request. 0 to go on, -1 to close the connection. */
static int serve_one(struct kvo_server *s, int fd)
{
	uint8_t req[KVO_REQ_BYTES];
	struct kvo_key k;
	uint32_t cmd;
	uint64_t len;

	if (kvo_read_full(fd, req, sizeof(req), 0) < 0)
		return -1;
	cmd = kvo_get_u32(req + 4);
	memcpy(k.b, req + 8, 32);
	len = kvo_get_u64(req + 40);
	if (kvo_get_u32(req) != KVO_REQ_MAGIC || cmd < KVO_CMD_PUT || cmd > KVO_CMD_METRICS) {
		count(&s->errors, 1);
		reply(fd, KVO_ST_BAD_REQUEST, NULL, 0);
		return -1;
	}
	count(&s->n_cmd[cmd], 1);
	if (cmd != KVO_CMD_PUT && len) {
		count(&s->errors, 1);
		reply(fd, KVO_ST_BAD_REQUEST, NULL, 0);
		return -1;
	}
	switch (cmd) {
	case KVO_CMD_PUT: {
		struct kvo_hdr h;
		const char *why;
		uint8_t *b;
		if (len > s->o.max_object) {
			count(&s->errors, 1);
			reply(fd, KVO_ST_TOO_LARGE, NULL, 0);
			return -1;
		}
		b = xmalloc(len ? len : 1);
		if (kvo_read_full(fd, b, len, kv_now_ns() + 30ull * 1000000000ull) < 0) {
			free(b);
			return -1;
		}
		count(&s->bytes_in, len);
		if (kvo_blob_parse(b, len, true, &h, &why) < 0 || memcmp(h.key.b, k.b, 32)) {
			free(b);
			count(&s->errors, 1);
			return reply(fd, KVO_ST_BAD_REQUEST, NULL, 0);
		}
		if (kvo_lru_insert(s->lru, &k, b, len) < 0) {
			count(&s->refused, 1);
			return reply(fd, KVO_ST_NO_SPACE, NULL, 0);
		}
		return reply(fd, KVO_ST_OK, NULL, 0);
	}
	case KVO_CMD_GET: {
		struct kvo_lru_ent *e = kvo_lru_get(s->lru, &k);
		int rc;
		if (!e) {
			count(&s->misses, 1);
			return reply(fd, KVO_ST_NOT_FOUND, NULL, 0);
		}
		count(&s->hits, 1);
		count(&s->bytes_out, e->size);
		rc = reply(fd, KVO_ST_OK, e->data, e->size);
		kvo_lru_put_ref(s->lru, e);
		return rc;
	}
	case KVO_CMD_EXISTS:
		return reply(fd, kvo_lru_contains(s->lru, &k) ? KVO_ST_OK : KVO_ST_NOT_FOUND,
			     NULL, 0);
	case KVO_CMD_HEALTH:
		return reply(fd, KVO_ST_OK, NULL, 0);
	case KVO_CMD_METRICS: {
		struct kv_buf b = KV_BUF_INIT(1 << 20);
		int rc;
		kvo_server_metrics(s, &b);
		rc = reply(fd, KVO_ST_OK, b.data, b.len);
		kv_buf_release(&b);
		return rc;
	}
	}
	return -1;
}

static void *client_main(void *p)
{
	struct client_arg *a = p;
	struct kvo_server *s = a->s;
	while (serve_one(s, a->fd) == 0)
		;
	pthread_mutex_lock(&s->mu);
	close(a->fd);
	s->clients[a->slot] = -1;
	s->nclients--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	free(a);
	return NULL;
}

static void *accept_main(void *p)
{
	struct kvo_server *s = p;
	for (;;) {
		struct pollfd pf = { .fd = s->lfd, .events = POLLIN };
		int fd, slot = -1;
		pthread_t t;
		pthread_attr_t at;
		struct client_arg *a;

		if (poll(&pf, 1, 100) < 0 && errno != EINTR)
			break;
		pthread_mutex_lock(&s->mu);
		if (s->stopping) {
			pthread_mutex_unlock(&s->mu);
			break;
		}
		pthread_mutex_unlock(&s->mu);
		if (!(pf.revents & POLLIN))
			continue;
		fd = accept(s->lfd, NULL, NULL);
		if (fd < 0)
			continue;
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		pthread_mutex_lock(&s->mu);
		for (int i = 0; i < s->o.max_clients && slot < 0; i++)
			if (s->clients[i] < 0)
				slot = i;
		if (slot < 0) {
			pthread_mutex_unlock(&s->mu);
			count(&s->refused, 1);
			close(fd);
			continue;
		}
		s->clients[slot] = fd;
		s->nclients++;
		pthread_mutex_unlock(&s->mu);
		a = xmalloc(sizeof(*a));
		a->s = s;
		a->fd = fd;
		a->slot = slot;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &at, client_main, a) != 0) {
			pthread_mutex_lock(&s->mu);
			close(fd);
			s->clients[slot] = -1;
			s->nclients--;
			pthread_mutex_unlock(&s->mu);
			free(a);
		}
		pthread_attr_destroy(&at);
	}
	return NULL;
}

void kvo_server_metrics(struct kvo_server *s, struct kv_buf *out)
{
	static const char *const names[6] = { "", "put", "get", "exists", "health", "metrics" };
	struct kvo_lru_stats st;
	kvo_lru_stats(s->lru, &st);
	kv_buf_puts(out, "# TYPE kvserve:cache_requests_total counter\n");
	for (int i = 1; i < 6; i++)
		kv_buf_printf(out, "kvserve:cache_requests_total{cmd=\"%s\"} %" PRIu64 "\n",
			      names[i], __atomic_load_n(&s->n_cmd[i], __ATOMIC_RELAXED));
	kv_buf_printf(out,
		      "# TYPE kvserve:cache_hits_total counter\nkvserve:cache_hits_total %" PRIu64 "\n"
		      "# TYPE kvserve:cache_misses_total counter\nkvserve:cache_misses_total %" PRIu64 "\n"
		      "# TYPE kvserve:cache_bytes_in_total counter\nkvserve:cache_bytes_in_total %" PRIu64 "\n"
		      "# TYPE kvserve:cache_bytes_out_total counter\nkvserve:cache_bytes_out_total %" PRIu64 "\n"
		      "# TYPE kvserve:cache_errors_total counter\nkvserve:cache_errors_total %" PRIu64 "\n"
		      "# TYPE kvserve:cache_refused_total counter\nkvserve:cache_refused_total %" PRIu64 "\n"
		      "# TYPE kvserve:cache_evictions_total counter\nkvserve:cache_evictions_total %" PRIu64 "\n"
		      "# TYPE kvserve:cache_usage_bytes gauge\nkvserve:cache_usage_bytes %" PRIu64 "\n"
		      "# TYPE kvserve:cache_capacity_bytes gauge\nkvserve:cache_capacity_bytes %" PRIu64 "\n"
		      "# TYPE kvserve:cache_objects gauge\nkvserve:cache_objects %" PRIu64 "\n"
		      "# TYPE kvserve:cache_clients gauge\nkvserve:cache_clients %d\n",
		      __atomic_load_n(&s->hits, __ATOMIC_RELAXED),
		      __atomic_load_n(&s->misses, __ATOMIC_RELAXED),
		      __atomic_load_n(&s->bytes_in, __ATOMIC_RELAXED),
		      __atomic_load_n(&s->bytes_out, __ATOMIC_RELAXED),
		      __atomic_load_n(&s->errors, __ATOMIC_RELAXED),
		      __atomic_load_n(&s->refused, __ATOMIC_RELAXED),
		      st.evictions, st.used, st.budget, st.entries,
		      __atomic_load_n(&s->nclients, __ATOMIC_RELAXED));
}

static enum MHD_Result http_cb(void *cls, struct MHD_Connection *conn, const char *url,
			       const char *method, const char *version, const char *upload,
			       size_t *upload_len, void **con_cls)
{
	struct kvo_server *s = cls;
	struct MHD_Response *r;
	struct kv_buf b = KV_BUF_INIT(1 << 20);
	unsigned code = MHD_HTTP_OK;
	enum MHD_Result ret;
	size_t len;
	char *body;

	if (strcmp(method, "GET")) {
		code = MHD_HTTP_METHOD_NOT_ALLOWED;
		kv_buf_puts(&b, "method not allowed\n");
	} else if (!strcmp(url, "/metrics")) {
		kvo_server_metrics(s, &b);
	} else if (!strcmp(url, "/health")) {
		kv_buf_puts(&b, "{\"status\":\"ok\"}\n");
	} else {
		code = MHD_HTTP_NOT_FOUND;
		kv_buf_puts(&b, "not found\n");
	}
	body = kv_buf_detach(&b, &len);
	r = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
	MHD_add_response_header(r, "Content-Type", !strcmp(url, "/metrics")
				? "text/plain; version=0.0.4" : "text/plain");
	ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

static int listen_on(const char *host, int port, int *bound, char **err)
{
	struct addrinfo hints = { 0 }, *ai = NULL;
	char ps[16];
	int fd, one = 1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(ps, sizeof(ps), "%d", port);
	if (getaddrinfo(host, ps, &hints, &ai) != 0 || !ai) {
		*err = xasprintf("cache: cannot resolve host '%s'", host);
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 128) < 0) {
		*err = xasprintf("cache: cannot listen on %s:%d: %s", host, port, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return -1;
	}
	freeaddrinfo(ai);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
		*bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							: ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

struct kvo_server *kvo_server_start(const struct kvo_server_opts *o, char **err)
{
	struct kvo_server *s = xcalloc(1, sizeof(*s));
	s->o = *o;
	if (!s->o.host)
		s->o.host = "127.0.0.1";
	if (!s->o.max_bytes)
		s->o.max_bytes = 1ull << 30;
	if (!s->o.max_object)
		s->o.max_object = 256u << 20;
	if (s->o.max_clients <= 0 || s->o.max_clients > MAX_CLIENTS_CAP)
		s->o.max_clients = 256;
	for (int i = 0; i < MAX_CLIENTS_CAP; i++)
		s->clients[i] = -1;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->lru = kvo_lru_new(s->o.max_bytes, NULL, NULL);
	s->lfd = listen_on(s->o.host, s->o.port, &s->port, err);
	if (s->lfd < 0)
		goto fail;
	if (s->o.metrics_port) {
		int mp = s->o.metrics_port < 0 ? 0 : s->o.metrics_port;
		int mfd = listen_on(s->o.host, mp, &s->mport, err);
		if (mfd < 0)
			goto fail;
		s->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
					  http_cb, s, MHD_OPTION_LISTEN_SOCKET, mfd,
					  MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
		if (!s->mhd) {
			close(mfd);
			*err = xasprintf("cache: cannot start the metrics server");
			goto fail;
		}
	}
	if (pthread_create(&s->acceptor, NULL, accept_main, s) != 0) {
		*err = xasprintf("cache: cannot start a thread");
		goto fail;
	}
	return s;
fail:
	if (s->mhd)
		MHD_stop_daemon(s->mhd);
	if (s->lfd >= 0)
		close(s->lfd);
	kvo_lru_free(s->lru);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
	return NULL;
}

int kvo_server_port(const struct kvo_server *s)
{
	return s->port;
}

int kvo_server_metrics_port(const struct kvo_server *s)
{
	return s->mport;
}

void kvo_server_stop(struct kvo_server *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->mu);
	s->stopping = true;
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->acceptor, NULL);
	close(s->lfd);
	pthread_mutex_lock(&s->mu);
	for (int i = 0; i < MAX_CLIENTS_CAP; i++)
		if (s->clients[i] >= 0)
			shutdown(s->clients[i], SHUT_RDWR);
	while (s->nclients > 0)
		pthread_cond_wait(&s->cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
	if (s->mhd)
		MHD_stop_daemon(s->mhd);
	kvo_lru_free(s->lru);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
	got_signal = sig;
}

int kvo_cmd_cache(int argc, char **argv)
{
	const char *host = "127.0.0.1";
	int64_t port = 8100, mport = 0;
	uint64_t max_bytes = 1ull << 30, max_object = 256u << 20;
	const struct kv_opt opts[] = {
		KV_OPT_GROUP("Server"),
		KV_OPT_STRING(0, "host", &host, "ADDR", "address to listen on"),
		KV_OPT_INT('p', "port", &port, "PORT", 0, 65535, "TCP port of the cache protocol"),
		KV_OPT_INT(0, "metrics-port", &mport, "PORT", 0, 65535,
			   "HTTP port for /metrics and /health (0: off; METRICS command works anyway)"),
		KV_OPT_GROUP("Storage"),
		KV_OPT_SIZE(0, "max-bytes", &max_bytes, "SIZE", "byte budget of stored chunks (LRU beyond)"),
		KV_OPT_SIZE(0, "max-object", &max_object, "SIZE", "largest accepted object"),
		KV_OPT_END,
	};
	struct kv_cmd_info info = { "kvserve cache", "[options]",
		"Shared KV chunk cache for many kvserve engines (no model). Engines use it with\n"
		"--kv-remote-url kv://HOST:PORT. Protocol: docs/offload.md.", NULL };
	struct kvo_server_opts so = { 0 };
	struct kvo_server *s;
	struct sigaction sa = { 0 };
	char *err = NULL;

	int npos = kv_opt_parse(&info, opts, argc, argv, NULL);
	if (npos < 0)
		return 2;
	if (npos > 0) {
		kv_error("cache: unexpected argument '%s'", argv[0]);
		return 2;
	}
	so.host = host;
	so.port = (int)port;
	so.max_bytes = max_bytes;
	so.max_object = max_object;
	so.metrics_port = (int)mport;
	s = kvo_server_start(&so, &err);
	if (!s) {
		kv_error("%s", err);
		free(err);
		return 3;
	}
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	kv_info("cache: listening on %s:%d (budget %" PRIu64 " bytes)%s", host,
		kvo_server_port(s), max_bytes, mport ? "" : ", no HTTP metrics port");
	if (mport)
		kv_info("cache: metrics on http://%s:%d/metrics", host, kvo_server_metrics_port(s));
	while (!got_signal)
		pause();
	kvo_server_stop(s);
	return 0;
}
