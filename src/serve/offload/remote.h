/*
 * remote.h: the `kvserve cache` binary protocol, its client (the remote
 * tier) and its server. Documented in docs/offload.md.
 *
 * Framing (all integers little-endian):
 *   request  48 bytes: magic "KVRQ" u32 | cmd u32 | key[32] | len u64,
 *                      then len payload bytes (PUT only; len 0 otherwise)
 *   response 16 bytes: magic "KVRS" u32 | status u32 | len u64,
 *                      then len bytes (GET hit: the object; METRICS: text)
 * A PUT payload must be a blob (codec.h) whose header key equals the request
 * key. len is capped (--max-object, default 256 MiB); larger: TOO_LARGE and
 * the connection is closed. A bad magic or command closes the connection.
 */
#ifndef KVO_REMOTE_H
#define KVO_REMOTE_H

#include "common/compat.h"
#include "common/buf.h"
#include "offload/codec.h"

#define KVO_REQ_MAGIC 0x5152564bu /* "KVRQ" */
#define KVO_RSP_MAGIC 0x5352564bu /* "KVRS" */
#define KVO_REQ_BYTES 48u
#define KVO_RSP_BYTES 16u

enum kvo_cmd { KVO_CMD_PUT = 1, KVO_CMD_GET = 2, KVO_CMD_EXISTS = 3, KVO_CMD_HEALTH = 4,
	       KVO_CMD_METRICS = 5 };
enum kvo_status { KVO_ST_OK = 0, KVO_ST_NOT_FOUND = 1, KVO_ST_BAD_REQUEST = 2,
		  KVO_ST_TOO_LARGE = 3, KVO_ST_NO_SPACE = 4 };

/* ---- client ---- */
struct kvo_remote;
/* url: kv://HOST:PORT. NULL and *err (malloc'ed) on a bad URL. No I/O yet. */
struct kvo_remote *kvo_remote_new(const char *url, double timeout_s, uint64_t max_object,
				  char **err);
void kvo_remote_free(struct kvo_remote *r);
/*
 * Each call takes at most about timeout_s (connect + exchange). On any I/O or
 * protocol error the connection is dropped, the error counted, and the tier
 * is skipped for a back-off of one timeout (calls fail at once meanwhile).
 * Return: 1 yes / found, 0 no / not found, -1 error.
 */
int kvo_remote_exists(struct kvo_remote *r, const struct kvo_key *k);
/* On 1, *blob is malloc'ed (*len bytes). */
int kvo_remote_get(struct kvo_remote *r, const struct kvo_key *k, uint8_t **blob, size_t *len);
int kvo_remote_put(struct kvo_remote *r, const struct kvo_key *k, const uint8_t *blob, size_t len);
int kvo_remote_health(struct kvo_remote *r);
uint64_t kvo_remote_errors(struct kvo_remote *r);

/* ---- server ---- */
struct kvo_server_opts {
	const char *host;       /* default 127.0.0.1 */
	int port;               /* 0: ephemeral (tests) */
	uint64_t max_bytes;     /* budget, default 1 GiB */
	uint64_t max_object;    /* default 256 MiB */
	int metrics_port;       /* HTTP /metrics and /health; 0 off, -1 ephemeral */
	int max_clients;        /* default 256 */
};
struct kvo_server;
/* Binds, listens and serves from background threads. NULL + *err on failure. */
struct kvo_server *kvo_server_start(const struct kvo_server_opts *o, char **err);
int kvo_server_port(const struct kvo_server *s);
int kvo_server_metrics_port(const struct kvo_server *s);
void kvo_server_metrics(struct kvo_server *s, struct kv_buf *out);
void kvo_server_stop(struct kvo_server *s);

/* `kvserve cache [options]`: runs until SIGINT/SIGTERM. Exit code. */
int kvo_cmd_cache(int argc, char **argv);

#endif
