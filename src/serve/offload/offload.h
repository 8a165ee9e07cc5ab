/*
 * offload.h: kvserve's KV offload connector (LMCache-style), its config and
 * its command-line options. docs/offload.md describes keys, flags, metrics,
 * the remote protocol and the faults.
 *
 * Use from kvserve's main.c:
 *   struct kv_opt opts[N] = { ...engine options... };
 *   n += kvo_opts_copy(opts + n, N - n);   // the "KV offload" group
 *   ... kv_opt_parse(...) ...
 *   struct kv_connector *conn;
 *   if (kvo_connector_from_flags(&conn) < 0) exit(2);  // error printed
 *   // conn is NULL when no --kv-* option, --kv-config or LMCACHE_CONFIG_FILE
 *   engine_set_connector(eng, conn); ... conn->ops->free(conn) at exit.
 */
#ifndef KVO_OFFLOAD_H
#define KVO_OFFLOAD_H

#include "common/compat.h"
#include "common/opt.h"
#include "kv_connector.h"
#include "offload/codec.h"
#include "offload/fault.h"

struct kvo_config {
	int64_t chunk_size;          /* tokens; 256 */
	bool local_cpu;              /* true */
	uint64_t cpu_bytes;          /* max_local_cpu_size (GB, decimal) in bytes; 5e9 */
	char *disk_dir;              /* local_disk, NULL = off; owned */
	uint64_t disk_bytes;         /* max_local_disk_size in bytes; 0 */
	char *remote_url;            /* kv://HOST:PORT, NULL = off; owned */
	enum kvo_enc encoding;       /* CPU and disk tiers; fp32 */
	enum kvo_enc remote_enc;     /* remote_serde; naive = fp32 */
	bool remote_serde_set;       /* remote_serde given (file or env): --kv-encoding keeps it */
	bool save_decode_cache;      /* false (the engine asks kvo_save_decode) */
	bool save_unfull_chunk;      /* false */
	int64_t min_retrieve_tokens; /* 0 */
	double remote_timeout_s;     /* 1.0 */
	bool verify_tokens;          /* true: check the stored token ids at load */
	struct kvo_faults faults;
};

void kvo_config_init(struct kvo_config *c);
void kvo_config_release(struct kvo_config *c);
/* Reads a YAML file of LMCache keys. Errors (printed) name FILE:LINE. 0 / -1. */
int kvo_config_load_file(struct kvo_config *c, const char *path);
/* Applies LMCACHE_<KEY> environment overrides. 0 / -1 (printed). */
int kvo_config_apply_env(struct kvo_config *c);
/* Sets one key from text (where = "FILE:LINE" or the env name). 0 / -1. */
int kvo_config_set(struct kvo_config *c, const char *key, const char *val, bool env_rule,
		   const char *where);

/* The "KV offload" option group (without KV_OPT_END); returns entries copied. */
size_t kvo_opts_copy(struct kv_opt *dst, size_t cap);
/* Forget flags seen (tests). */
void kvo_opts_reset(void);
/* Config from LMCACHE_CONFIG_FILE / --kv-config, env, then flags. */
int kvo_config_from_flags(struct kvo_config *c, bool *enabled);
int kvo_connector_from_flags(struct kv_connector **out);

/* A connector for the config (copied). NULL + *err (malloc'ed) on error. */
struct kv_connector *kvo_connector_new(const struct kvo_config *c, char **err);
bool kvo_save_decode(const struct kv_connector *c);
/* The connector's fault state (counters), for tests. */
struct kvo_faults *kvo_connector_faults(struct kv_connector *c);

#endif
