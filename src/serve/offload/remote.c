/* remote.c: client of the `kvserve cache` protocol: the remote tier (remote.h). */
#include "common/util.h"
#include "offload/remote.h"

#include <pthread.h>
#include <unistd.h>

#include "common/clock.h"
#include "offload/netio.h"

#include "common/banned.h"

struct kvo_remote {
	pthread_mutex_t mu;   /* one exchange at a time on the one connection */
	char *host;
	int port;
	int fd;               /* -1 when not connected */
	uint64_t timeout_ns;
	uint64_t max_object;
	uint64_t down_until;  /* back-off after an error (monotonic ns) */
	uint64_t errors;      /* atomic */
};

struct kvo_remote *kvo_remote_new(const char *url, double timeout_s, uint64_t max_object,
				  char **err)
{
	const char *hp, *colon;
	int64_t port;
	struct kvo_remote *r;
	char *host;

	if (!strstr(url, "://")) {
		*err = xasprintf("remote_url: '%s' has no scheme (expected kv://HOST:PORT)", url);
		return NULL;
	}
	if (strncmp(url, "kv://", 5)) {
		*err = xasprintf("remote_url: scheme '%.*s' is not supported (only kv://HOST:PORT, a `kvserve cache` server)",
				 (int)(strstr(url, "://") - url), url);
		return NULL;
	}
	hp = url + 5;
	colon = strrchr(hp, ':');
	if (!colon || colon == hp) {
		*err = xasprintf("remote_url: '%s': expected kv://HOST:PORT", url);
		return NULL;
	}
	{
		char *ps = xstrdup(colon + 1);
		size_t pl = strlen(ps);
		if (pl && ps[pl - 1] == '/')
			ps[pl - 1] = 0;
		if (kv_parse_i64(ps, 1, 65535, &port) < 0) {
			*err = xasprintf("remote_url: '%s': bad port", url);
			free(ps);
			return NULL;
		}
		free(ps);
	}
	host = xstrndup(hp, (size_t)(colon - hp));
	if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1] */
		char *h2 = xstrndup(host + 1, strlen(host) - 2);
		free(host);
		host = h2;
	}
	r = xcalloc(1, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	r->host = host;
	r->port = (int)port;
	r->fd = -1;
	r->timeout_ns = (uint64_t)(timeout_s * 1e9);
	if (r->timeout_ns < 1000000)
		r->timeout_ns = 1000000;
	r->max_object = max_object ? max_object : (256u << 20);
	return r;
}

void kvo_remote_free(struct kvo_remote *r)
{
	if (!r)
		return;
	if (r->fd >= 0)
		close(r->fd);
	pthread_mutex_destroy(&r->mu);
	free(r->host);
	free(r);
}

uint64_t kvo_remote_errors(struct kvo_remote *r)
{
	return __atomic_load_n(&r->errors, __ATOMIC_RELAXED);
}

static void fail(struct kvo_remote *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	r->down_until = kv_now_ns() + r->timeout_ns;
	__atomic_fetch_add(&r->errors, 1, __ATOMIC_RELAXED);
}

/*
 * One request/response exchange. Lock held. Returns the status (>= 0) or -1;
 * on OK with a body, *body is malloc'ed.
 */
static int exchange(struct kvo_remote *r, enum kvo_cmd cmd, const struct kvo_key *k,
		    const uint8_t *payload, size_t plen, uint8_t **body, size_t *blen)
{
	uint8_t req[KVO_REQ_BYTES] = { 0 }, rsp[KVO_RSP_BYTES];
	uint64_t deadline, len;
	uint32_t st;

	if (body)
		*body = NULL;
	if (kv_now_ns() < r->down_until)
		return -1;
	deadline = kv_now_ns() + r->timeout_ns;
	if (r->fd < 0) {
		r->fd = kvo_connect(r->host, r->port, deadline);
		if (r->fd < 0) {
			fail(r);
			return -1;
		}
	}
	kvo_put_u32(req, KVO_REQ_MAGIC);
	kvo_put_u32(req + 4, (uint32_t)cmd);
	if (k)
		memcpy(req + 8, k->b, 32);
	kvo_put_u64(req + 40, plen);
	if (kvo_write_full(r->fd, req, sizeof(req), deadline) < 0 ||
	    (plen && kvo_write_full(r->fd, payload, plen, deadline) < 0) ||
	    kvo_read_full(r->fd, rsp, sizeof(rsp), deadline) < 0)
		goto bad;
	st = kvo_get_u32(rsp + 4);
	len = kvo_get_u64(rsp + 8);
	if (kvo_get_u32(rsp) != KVO_RSP_MAGIC || st > KVO_ST_NO_SPACE || len > r->max_object)
		goto bad;
	if (len) {
		uint8_t *b = xmalloc(len ? len : 1);
		if (kvo_read_full(r->fd, b, len, deadline) < 0) {
			free(b);
			goto bad;
		}
		if (body && st == KVO_ST_OK) {
			*body = b;
			*blen = len;
		} else {
			free(b);
		}
	}
	return (int)st;
bad:
	fail(r);
	return -1;
}

static int simple(struct kvo_remote *r, enum kvo_cmd cmd, const struct kvo_key *k)
{
	int st;
	pthread_mutex_lock(&r->mu);
	st = exchange(r, cmd, k, NULL, 0, NULL, NULL);
	pthread_mutex_unlock(&r->mu);
	if (st < 0)
		return -1;
	if (st == KVO_ST_OK)
		return 1;
	if (st == KVO_ST_NOT_FOUND)
		return 0;
	__atomic_fetch_add(&r->errors, 1, __ATOMIC_RELAXED);
	return -1;
}

int kvo_remote_exists(struct kvo_remote *r, const struct kvo_key *k)
{
	return simple(r, KVO_CMD_EXISTS, k);
}

int kvo_remote_health(struct kvo_remote *r)
{
	return simple(r, KVO_CMD_HEALTH, NULL);
}

int kvo_remote_get(struct kvo_remote *r, const struct kvo_key *k, uint8_t **blob, size_t *len)
{
	int st;
	pthread_mutex_lock(&r->mu);
	st = exchange(r, KVO_CMD_GET, k, NULL, 0, blob, len);
	pthread_mutex_unlock(&r->mu);
	if (st == KVO_ST_OK && *blob)
		return 1;
	if (st == KVO_ST_OK || st < 0) {
		if (st == KVO_ST_OK)
			__atomic_fetch_add(&r->errors, 1, __ATOMIC_RELAXED);
		return -1;
	}
	if (st == KVO_ST_NOT_FOUND)
		return 0;
	__atomic_fetch_add(&r->errors, 1, __ATOMIC_RELAXED);
	return -1;
}

int kvo_remote_put(struct kvo_remote *r, const struct kvo_key *k, const uint8_t *blob, size_t len)
{
	int st;
	if (len > r->max_object)
		return -1;
	pthread_mutex_lock(&r->mu);
	st = exchange(r, KVO_CMD_PUT, k, blob, len, NULL, NULL);
	pthread_mutex_unlock(&r->mu);
	if (st == KVO_ST_OK)
		return 1;
	if (st >= 0)
		__atomic_fetch_add(&r->errors, 1, __ATOMIC_RELAXED);
	return -1;
}
