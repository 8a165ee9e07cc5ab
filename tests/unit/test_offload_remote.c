/* Unit tests of the remote tier: the `kvserve cache` protocol on loopback,
 * budgets, bad requests, and a server that dies, hangs or sends garbage. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/clock.h"
#include "offload_fake.h"
#include "offload/netio.h"
#include "offload/offload.h"
#include "offload/remote.h"

static uint8_t *make_blob(int seed, size_t *len, struct kvo_key *k)
{
	struct fake_kv f;
	int32_t toks[16];
	uint8_t *b;
	for (int i = 0; i < 16; i++)
		toks[i] = seed * 100 + i;
	fake_init(&f, 2, 8, 16);
	fake_fill(&f, toks, 16, (uint32_t)seed);
	memset(k, 0, sizeof(*k));
	memcpy(k->b, &seed, sizeof(seed));
	b = kvo_blob_encode(KVO_ENC_FP32, k, toks, 16, &f.view, 0, len);
	fake_release(&f);
	return b;
}

static char *url_of(int port)
{
	return xasprintf("kv://127.0.0.1:%d", port);
}

static void test_protocol(void **state)
{
	struct kvo_server_opts o = { .port = 0, .max_bytes = 0, .metrics_port = -1 };
	struct kvo_server *s;
	struct kvo_remote *r;
	char *err = NULL, *url;
	struct kvo_key k, k2;
	uint8_t *b, *g;
	size_t len, glen;
	struct kv_buf m = KV_BUF_INIT(1 << 20);
	(void)state;
	b = make_blob(1, &len, &k);
	o.max_bytes = 3 * len;
	s = kvo_server_start(&o, &err);
	assert_non_null(s);
	url = url_of(kvo_server_port(s));
	r = kvo_remote_new(url, 2.0, 0, &err);
	assert_non_null(r);
	assert_int_equal(kvo_remote_health(r), 1);
	assert_int_equal(kvo_remote_exists(r, &k), 0);
	assert_int_equal(kvo_remote_get(r, &k, &g, &glen), 0);
	assert_int_equal(kvo_remote_put(r, &k, b, len), 1);
	assert_int_equal(kvo_remote_exists(r, &k), 1);
	assert_int_equal(kvo_remote_get(r, &k, &g, &glen), 1);
	assert_int_equal(glen, len);
	assert_memory_equal(g, b, len);
	free(g);
	/* a PUT whose blob key differs from the request key is refused */
	k2 = k;
	k2.b[5] ^= 1;
	assert_int_equal(kvo_remote_put(r, &k2, b, len), -1);
	assert_int_equal(kvo_remote_exists(r, &k2), 0);
	/* budget: LRU on the server */
	for (int i = 2; i < 8; i++) {
		uint8_t *x = make_blob(i, &glen, &k2);
		assert_int_equal(kvo_remote_put(r, &k2, x, glen), 1);
		free(x);
	}
	assert_int_equal(kvo_remote_exists(r, &k), 0);
	assert_int_equal(kvo_remote_exists(r, &k2), 1);
	kvo_server_metrics(s, &m);
	assert_non_null(strstr(m.data, "kvserve:cache_evictions_total 4"));
	assert_non_null(strstr(m.data, "kvserve:cache_objects 3"));
	assert_non_null(strstr(m.data, "kvserve:cache_requests_total{cmd=\"put\"} 8"));
	kv_buf_release(&m);
	{ /* HTTP /metrics and /health on the metrics port */
		int fd = kvo_connect("127.0.0.1", kvo_server_metrics_port(s), kv_now_ns() + 2000000000ull);
		static const char get[] = "GET /metrics HTTP/1.0\r\n\r\n";
		char buf[8192];
		size_t n = 0;
		assert_true(fd >= 0);
		assert_int_equal(kvo_write_full(fd, get, sizeof(get) - 1, kv_now_ns() + 2000000000ull), 0);
		for (int i = 0; i < 200 && n < sizeof(buf) - 1; i++) {
			struct pollfd pf = { .fd = fd, .events = POLLIN };
			ssize_t got;
			if (poll(&pf, 1, 50) <= 0)
				continue;
			got = read(fd, buf + n, sizeof(buf) - 1 - n);
			if (got <= 0)
				break;
			n += (size_t)got;
		}
		buf[n] = 0;
		close(fd);
		assert_non_null(strstr(buf, "200 OK"));
		assert_non_null(strstr(buf, "kvserve:cache_objects 3"));
	}
	kvo_remote_free(r);
	/* bad URLs */
	assert_null(kvo_remote_new("lm://127.0.0.1:1", 1, 0, &err));
	assert_non_null(strstr(err, "'lm'"));
	free(err);
	assert_null(kvo_remote_new("kv://127.0.0.1", 1, 0, &err));
	free(err);
	assert_null(kvo_remote_new("127.0.0.1:80", 1, 0, &err));
	free(err);
	/* raw garbage to the server: it answers BAD_REQUEST and closes, stays up */
	{
		int fd = kvo_connect("127.0.0.1", kvo_server_port(s), kv_now_ns() + 2000000000ull);
		uint8_t junk[48], rsp[16];
		memset(junk, 'x', sizeof(junk));
		assert_true(fd >= 0);
		assert_int_equal(kvo_write_full(fd, junk, 48, kv_now_ns() + 2000000000ull), 0);
		assert_int_equal(kvo_read_full(fd, rsp, 16, kv_now_ns() + 2000000000ull), 0);
		assert_int_equal(kvo_get_u32(rsp + 4), KVO_ST_BAD_REQUEST);
		close(fd);
		/* a PUT announcing more than --max-object */
		fd = kvo_connect("127.0.0.1", kvo_server_port(s), kv_now_ns() + 2000000000ull);
		memset(junk, 0, sizeof(junk));
		kvo_put_u32(junk, KVO_REQ_MAGIC);
		kvo_put_u32(junk + 4, KVO_CMD_PUT);
		kvo_put_u64(junk + 40, 1ull << 40);
		assert_int_equal(kvo_write_full(fd, junk, 48, kv_now_ns() + 2000000000ull), 0);
		assert_int_equal(kvo_read_full(fd, rsp, 16, kv_now_ns() + 2000000000ull), 0);
		assert_int_equal(kvo_get_u32(rsp + 4), KVO_ST_TOO_LARGE);
		close(fd);
	}
	r = kvo_remote_new(url, 2.0, 0, &err);
	assert_int_equal(kvo_remote_health(r), 1);
	kvo_remote_free(r);
	kvo_server_stop(s);
	free(url);
	free(b);
}

/* A fake server: accepts one connection at a time and either never answers
 * (hang) or answers garbage. */
struct fake_srv {
	int lfd, port, mode; /* 0 hang, 1 garbage, 2 oversized length, 3 slow "found" */
	volatile int stop;
	pthread_t th;
};

static void *fake_main(void *p)
{
	struct fake_srv *f = p;
	int conns[16], nc = 0;
	while (!f->stop) {
		struct pollfd pf = { .fd = f->lfd, .events = POLLIN };
		if (poll(&pf, 1, 50) > 0) {
			int fd = accept(f->lfd, NULL, NULL);
			uint8_t req[48], rsp[16];
			if (fd < 0)
				continue;
			while (f->mode == 3 && !f->stop &&
			       kvo_read_full(fd, req, 48, kv_now_ns() + 2000000000ull) == 0) {
				usleep(150000);
				kvo_put_u32(rsp, KVO_RSP_MAGIC);
				kvo_put_u32(rsp + 4, KVO_ST_OK);
				kvo_put_u64(rsp + 8, 0);
				if (kvo_write_full(fd, rsp, 16, kv_now_ns() + 1000000000ull) < 0)
					break;
			}
			if (f->mode > 0 && f->mode < 3 && kvo_read_full(fd, req, 48, kv_now_ns() + 1000000000ull) == 0) {
				memset(rsp, 0x7e, sizeof(rsp));
				if (f->mode == 2) {
					kvo_put_u32(rsp, KVO_RSP_MAGIC);
					kvo_put_u32(rsp + 4, KVO_ST_OK);
					kvo_put_u64(rsp + 8, 1ull << 50);
				}
				kvo_write_full(fd, rsp, 16, kv_now_ns() + 1000000000ull);
			}
			if (nc < 16)
				conns[nc++] = fd;
			else
				close(fd);
		}
	}
	for (int i = 0; i < nc; i++)
		close(conns[i]);
	return NULL;
}

static void fake_start(struct fake_srv *f, int mode)
{
	struct sockaddr_in a = { 0 };
	socklen_t al = sizeof(a);
	f->mode = mode;
	f->stop = 0;
	f->lfd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(f->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(f->lfd, 16), 0);
	getsockname(f->lfd, (struct sockaddr *)&a, &al);
	f->port = ntohs(a.sin_port);
	pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(struct fake_srv *f)
{
	f->stop = 1;
	pthread_join(f->th, NULL);
	close(f->lfd);
}

static void test_bad_servers(void **state)
{
	(void)state;
	for (int mode = 0; mode < 3; mode++) {
		struct fake_srv f;
		struct kvo_remote *r;
		struct kvo_key k;
		char *err = NULL, *url;
		uint8_t *g = NULL;
		size_t glen;
		uint64_t t0, dt;
		fake_start(&f, mode);
		url = url_of(f.port);
		r = kvo_remote_new(url, 0.3, 1 << 20, &err);
		memset(&k, 1, sizeof(k));
		t0 = kv_now_ns();
		assert_int_equal(kvo_remote_get(r, &k, &g, &glen), -1);
		dt = kv_now_ns() - t0;
		assert_null(g);
		/* bounded by the timeout (generous margin for a loaded machine) */
		assert_true(dt < 2000000000ull);
		if (mode == 0)
			assert_true(dt >= 250000000ull);
		assert_int_equal(kvo_remote_errors(r), 1);
		/* during the back-off the tier fails at once */
		t0 = kv_now_ns();
		assert_int_equal(kvo_remote_exists(r, &k), -1);
		assert_true(kv_now_ns() - t0 < 100000000ull);
		kvo_remote_free(r);
		free(url);
		fake_stop(&f);
	}
}

/* A cache that answers, but slowly: one connector call spends at most about
 * one timeout on it, not one per chunk. */
static void test_slow_server_budget(void **state)
{
	struct fake_srv f;
	struct kvo_config c;
	struct kv_connector *k;
	struct kv_namespace ns;
	int32_t toks[200];
	char *err = NULL;
	uint64_t t0, dt;
	int n;
	struct kv_buf m = KV_BUF_INIT(1 << 20);
	(void)state;
	fake_start(&f, 3);
	kvo_config_init(&c);
	c.chunk_size = 16;
	c.cpu_bytes = 1 << 20;
	c.remote_timeout_s = 0.3;
	c.remote_url = xasprintf("kv://127.0.0.1:%d", f.port);
	k = kvo_connector_new(&c, &err);
	assert_non_null(k);
	fake_ns(&ns);
	for (int i = 0; i < 200; i++)
		toks[i] = i;
	t0 = kv_now_ns();
	n = kvc_lookup(k, &ns, toks, 200); /* 12 chunks "found" at 150 ms each */
	dt = kv_now_ns() - t0;
	assert_true(n >= 16 && n < 12 * 16);
	assert_true(dt < 900000000ull); /* 12 probes would take 1.8 s */
	k->ops->metrics(k, &m);
	assert_null(strstr(m.data, "kvserve:offload_remote_budget_skips_total 0\n"));
	kv_buf_release(&m);
	k->ops->free(k);
	kvo_config_release(&c);
	fake_stop(&f);
}

static void test_server_killed(void **state)
{
	int pfd[2], port = 0;
	pid_t pid;
	struct kvo_remote *r;
	struct kvo_key k;
	uint8_t *b;
	size_t len;
	char *err = NULL, *url;
	(void)state;
	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	if (pid == 0) {
		struct kvo_server_opts o = { .port = 0, .max_bytes = 1 << 20 };
		struct kvo_server *s = kvo_server_start(&o, &err);
		int p = s ? kvo_server_port(s) : -1;
		if (write(pfd[1], &p, sizeof(p)) != sizeof(p))
			_exit(1);
		for (int i = 0; i < 600; i++) /* bounded: 60 s at most */
			usleep(100000);
		_exit(0);
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &port, sizeof(port)), (ssize_t)sizeof(port));
	close(pfd[0]);
	assert_true(port > 0);
	url = url_of(port);
	r = kvo_remote_new(url, 0.5, 0, &err);
	b = make_blob(3, &len, &k);
	assert_int_equal(kvo_remote_put(r, &k, b, len), 1);
	assert_int_equal(kvo_remote_exists(r, &k), 1);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_int_equal(kvo_remote_exists(r, &k), -1);
	assert_true(kvo_remote_errors(r) >= 1);
	kvo_remote_free(r);
	free(url);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_protocol),
		cmocka_unit_test(test_bad_servers),
		cmocka_unit_test(test_slow_server_budget),
		cmocka_unit_test(test_server_killed),
	};
	signal(SIGPIPE, SIG_IGN);
	kv_set_quiet(true);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
