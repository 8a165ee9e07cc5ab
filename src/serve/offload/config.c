/* config.c: LMCache-style YAML config, LMCACHE_* env and --kv-* flags (offload.h). */
#include "common/util.h"
#include "offload/offload.h"

#include <ctype.h>
#include <errno.h>
#include <yaml.h>

#include "common/banned.h"

#define GB 1e9 /* LMCache sizes are decimal GB */

void kvo_config_init(struct kvo_config *c)
{
	memset(c, 0, sizeof(*c));
	c->chunk_size = 256;
	c->local_cpu = true;
	c->cpu_bytes = (uint64_t)(5.0 * GB);
	c->encoding = KVO_ENC_FP32;
	c->remote_enc = KVO_ENC_FP32;
	c->remote_timeout_s = 1.0;
	c->verify_tokens = true;
	kvo_faults_init(&c->faults, 0x6b76626e63680001ull);
}

void kvo_config_release(struct kvo_config *c)
{
	free(c->disk_dir);
	free(c->remote_url);
	c->disk_dir = c->remote_url = NULL;
}

/* Keys LMCache has that kvserve does not implement: a warning each. */
static const char *const unimplemented[] = {
	"use_layerwise", "enable_blending", "blend_recompute_ratios", "blend_recompute_ratio",
	"blend_thresholds", "blend_check_layers", "blend_min_tokens", "blend_special_str",
	"enable_pd", "pd_role", "pd_buffer_size", "pd_buffer_device", "pd_peer_host",
	"pd_peer_init_port", "pd_peer_alloc_port", "pd_proxy_host", "pd_proxy_port",
	"transfer_channel", "extra_config", "internal_api_server_enabled",
	"internal_api_server_port_start", "internal_api_server_host", "nixl_role",
	"nixl_buffer_size", "nixl_buffer_device", "enable_p2p", "lookup_url",
	"distributed_url", "gds_path", "cufile_buffer_size", "local_device",
	"error_handling", "enable_controller", "lmcache_instance_id", "controller_url",
	"lmcache_worker_port", "numa_mode", "priority_limit", "external_lookup_client",
	"enable_async_loading", "py_enable_gc", "cache_policy", "pre_caching_hash_algorithm",
	"weka_path", "audit_actual_remote_url", "plugin_locations", "blocking_timeout_secs",
	"save_only_first_rank", "remote_storage_plugins",
};

static const char *const implemented[] = {
	"chunk_size", "local_cpu", "max_local_cpu_size", "local_disk", "max_local_disk_size",
	"remote_url", "remote_serde", "save_decode_cache", "save_unfull_chunk",
	"min_retrieve_tokens",
};

static bool in_list(const char *const *l, size_t n, const char *k)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(l[i], k))
			return true;
	return false;
}

static int parse_bool(const char *v, bool env_rule, bool *out)
{
	char low[8];
	size_t i;
	for (i = 0; v[i] && i < sizeof(low) - 1; i++)
		low[i] = (char)tolower((unsigned char)v[i]);
	low[i] = 0;
	if (env_rule) { /* LMCache: str(v).strip().lower() in ["true", "1"] */
		*out = !strcmp(low, "true") || !strcmp(low, "1");
		return 0;
	}
	if (!strcmp(low, "true") || !strcmp(low, "yes") || !strcmp(low, "on") || !strcmp(low, "1"))
		*out = true;
	else if (!strcmp(low, "false") || !strcmp(low, "no") || !strcmp(low, "off") ||
		 !strcmp(low, "0"))
		*out = false;
	else
		return -1;
	return 0;
}

static bool is_null(const char *v)
{
	return !v || !*v || !strcmp(v, "null") || !strcmp(v, "~") || !strcmp(v, "Null") ||
	       !strcmp(v, "NULL") || !strcmp(v, "None");
}

static int parse_gb(const char *v, uint64_t *out)
{
	double d;
	if (kv_parse_double(v, &d) < 0 || !(d >= 0) || d > 1e6)
		return -1;
	*out = (uint64_t)(d * GB + 0.5);
	return 0;
}

static char *disk_path(const char *v)
{
	/* LMCache drops "file://" when the value matches file://(.*)/ */
	if (!strncmp(v, "file://", 7))
		return xstrdup(v + 7);
	return xstrdup(v);
}

int kvo_config_set(struct kvo_config *c, const char *key, const char *val, bool env_rule,
		   const char *where)
{
	if (in_list(unimplemented, KV_ARRAY_SIZE(unimplemented), key)) {
		kv_warn("%s: LMCache key '%s' is not implemented by kvserve; ignored", where, key);
		return 0;
	}
	if (!strcmp(key, "chunk_size") || !strcmp(key, "min_retrieve_tokens")) {
		int64_t v;
		bool cs = key[0] == 'c';
		if (is_null(val) || kv_parse_i64(val, cs ? 1 : 0, cs ? 65536 : INT32_MAX, &v) < 0) {
			kv_error("%s: %s: expected an integer in %s, got '%s'", where, key,
				 cs ? "1..65536 (tokens)" : "0..2^31-1 (tokens)", val ? val : "null");
			return -1;
		}
		if (cs)
			c->chunk_size = v;
		else
			c->min_retrieve_tokens = v;
		return 0;
	}
	if (!strcmp(key, "local_cpu") || !strcmp(key, "save_decode_cache") ||
	    !strcmp(key, "save_unfull_chunk")) {
		bool b;
		if (is_null(val) || parse_bool(val, env_rule, &b) < 0) {
			kv_error("%s: %s: expected true or false, got '%s'", where, key,
				 val ? val : "null");
			return -1;
		}
		if (!strcmp(key, "local_cpu"))
			c->local_cpu = b;
		else if (!strcmp(key, "save_decode_cache")) {
			c->save_decode_cache = b;
			if (b)
				kv_warn("%s: save_decode_cache: not implemented yet; only prompt "
					"tokens are stored", where);
		}
		else
			c->save_unfull_chunk = b;
		return 0;
	}
	if (!strcmp(key, "max_local_cpu_size") || !strcmp(key, "max_local_disk_size")) {
		uint64_t b;
		if (is_null(val) || parse_gb(val, &b) < 0) {
			kv_error("%s: %s: expected a size in GB (decimal, e.g. 5.0), got '%s'", where,
				 key, val ? val : "null");
			return -1;
		}
		if (key[10] == 'c')
			c->cpu_bytes = b;
		else
			c->disk_bytes = b;
		return 0;
	}
	if (!strcmp(key, "local_disk")) {
		free(c->disk_dir);
		c->disk_dir = is_null(val) ? NULL : disk_path(val);
		return 0;
	}
	if (!strcmp(key, "remote_url")) {
		free(c->remote_url);
		c->remote_url = NULL;
		if (is_null(val))
			return 0;
		if (!strstr(val, "://")) {
			kv_error("%s: remote_url: '%s' has no scheme (expected kv://HOST:PORT)", where, val);
			return -1;
		}
		if (strncmp(val, "kv://", 5)) {
			kv_error("%s: remote_url: scheme '%.*s' is not supported by kvserve (only kv://HOST:PORT, a `kvserve cache` server)",
				 where, (int)(strstr(val, "://") - val), val);
			return -1;
		}
		c->remote_url = xstrdup(val);
		return 0;
	}
	if (!strcmp(key, "remote_serde")) {
		if (!is_null(val) && (!strcmp(val, "cachegen") || !strcmp(val, "kivi"))) {
			kv_warn("%s: remote_serde '%s' is not implemented by kvserve", where, val);
			kv_error("%s: remote_serde: '%s' not implemented (use naive, fp32, fp16, bf16 or int8)",
				 where, val);
			return -1;
		}
		if (is_null(val) || kvo_enc_parse(val, &c->remote_enc) < 0) {
			kv_error("%s: remote_serde: expected naive, fp32, fp16, bf16 or int8, got '%s'",
				 where, val ? val : "null");
			return -1;
		}
		c->remote_serde_set = true;
		return 0;
	}
	kv_error("%s: unknown key '%s'", where, key);
	return -1;
}

/* Skips a nested node whose start event was just read. */
static int skip_node(yaml_parser_t *p)
{
	int depth = 1;
	while (depth > 0) {
		yaml_event_t ev;
		if (!yaml_parser_parse(p, &ev))
			return -1;
		if (ev.type == YAML_SEQUENCE_START_EVENT || ev.type == YAML_MAPPING_START_EVENT)
			depth++;
		else if (ev.type == YAML_SEQUENCE_END_EVENT || ev.type == YAML_MAPPING_END_EVENT)
			depth--;
		else if (ev.type == YAML_STREAM_END_EVENT)
			depth = 0;
		yaml_event_delete(&ev);
	}
	return 0;
}

int kvo_config_load_file(struct kvo_config *c, const char *path)
{
	yaml_parser_t p;
	FILE *f = fopen(path, "rb");
	int rc = -1, state = 0; /* 0 before the mapping, 1 want key, 2 done */
	char *key = NULL;
	size_t key_line = 0;

	if (!f) {
		kv_error("%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	yaml_parser_initialize(&p);
	yaml_parser_set_input_file(&p, f);
	for (;;) {
		yaml_event_t ev;
		char where[512];
		if (!yaml_parser_parse(&p, &ev)) {
			kv_error("%s:%zu: yaml: %s", path, p.problem_mark.line + 1,
				 p.problem ? p.problem : "parse error");
			goto out;
		}
		snprintf(where, sizeof(where), "%s:%zu", path, ev.start_mark.line + 1);
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (state == 0 && ev.type == YAML_MAPPING_START_EVENT) {
			state = 1;
		} else if (state == 0 && ev.type == YAML_SCALAR_EVENT) {
			if (ev.data.scalar.length || ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
				kv_error("%s: expected a mapping of LMCache keys", where);
				yaml_event_delete(&ev);
				goto out;
			}
		} else if (state == 0 && (ev.type == YAML_SEQUENCE_START_EVENT)) {
			kv_error("%s: expected a mapping of LMCache keys, got a list", where);
			yaml_event_delete(&ev);
			goto out;
		} else if (state == 1 && ev.type == YAML_MAPPING_END_EVENT) {
			state = 2;
		} else if (state == 1 && !key) {
			if (ev.type != YAML_SCALAR_EVENT) {
				kv_error("%s: expected a key", where);
				yaml_event_delete(&ev);
				goto out;
			}
			key = xstrndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
			key_line = ev.start_mark.line + 1;
		} else if (state == 1) {
			snprintf(where, sizeof(where), "%s:%zu", path, key_line);
			if (ev.type == YAML_SCALAR_EVENT) {
				const char *v = (const char *)ev.data.scalar.value;
				bool plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
				if (kvo_config_set(c, key, plain && is_null(v) ? NULL : v, false,
						   where) < 0) {
					yaml_event_delete(&ev);
					goto out;
				}
			} else if (ev.type == YAML_SEQUENCE_START_EVENT ||
				   ev.type == YAML_MAPPING_START_EVENT) {
				if (!in_list(unimplemented, KV_ARRAY_SIZE(unimplemented), key)) {
					kv_error("%s: %s: %s", where, key,
						 in_list(implemented, KV_ARRAY_SIZE(implemented), key)
						 ? "expected a single value" : "unknown key");
					yaml_event_delete(&ev);
					goto out;
				}
				kvo_config_set(c, key, NULL, false, where); /* the warning */
				if (skip_node(&p) < 0) {
					kv_error("%s: yaml parse error", where);
					yaml_event_delete(&ev);
					goto out;
				}
			} else {
				kv_error("%s: %s: unsupported value (aliases are not allowed)", where, key);
				yaml_event_delete(&ev);
				goto out;
			}
			free(key);
			key = NULL;
		} else if (state == 2 && ev.type != YAML_DOCUMENT_END_EVENT) {
			kv_error("%s: only one YAML document is allowed", where);
			yaml_event_delete(&ev);
			goto out;
		}
		yaml_event_delete(&ev);
	}
	rc = 0;
out:
	free(key);
	yaml_parser_delete(&p);
	fclose(f);
	return rc;
}

int kvo_config_apply_env(struct kvo_config *c)
{
	static const char *const more[] = { "use_layerwise", "enable_blending", "enable_pd",
					    "extra_config" };
	for (size_t pass = 0; pass < 2; pass++) {
		const char *const *l = pass ? more : implemented;
		size_t n = pass ? KV_ARRAY_SIZE(more) : KV_ARRAY_SIZE(implemented);
		for (size_t i = 0; i < n; i++) {
			char name[96], *v, *q = NULL;
			size_t j;
			int rc;
			snprintf(name, sizeof(name), "LMCACHE_%s", l[i]);
			for (j = 8; name[j]; j++)
				name[j] = (char)toupper((unsigned char)name[j]);
			v = getenv(name);
			if (!v)
				continue;
			/* LMCache: values wrapped in matching quotes are unquoted */
			j = strlen(v);
			if (j >= 2 && (v[0] == '"' || v[0] == '\'') && v[j - 1] == v[0])
				v = q = xstrndup(v + 1, j - 2);
			rc = kvo_config_set(c, l[i], v, true, name);
			free(q);
			if (rc < 0)
				return -1;
		}
	}
	return 0;
}

/* ---- flags ---- */

static struct {
	const char *config;
	const char *chunk, *cpu, *disk_dir, *disk_bytes, *remote, *enc, *timeout;
	const char *faults[32];
	int nfaults;
	bool any;
} fl;

void kvo_opts_reset(void)
{
	memset(&fl, 0, sizeof(fl));
}

static int opt_cb(const struct kv_opt *o, const char *arg, void *ctx)
{
	const char *n = o->long_name;
	fl.any = true;
	if (!strcmp(n, "kv-config"))
		fl.config = arg;
	else if (!strcmp(n, "kv-chunk-size"))
		fl.chunk = arg;
	else if (!strcmp(n, "kv-cpu-bytes"))
		fl.cpu = arg;
	else if (!strcmp(n, "kv-disk-dir"))
		fl.disk_dir = arg;
	else if (!strcmp(n, "kv-disk-bytes"))
		fl.disk_bytes = arg;
	else if (!strcmp(n, "kv-remote-url"))
		fl.remote = arg;
	else if (!strcmp(n, "kv-encoding"))
		fl.enc = arg;
	else if (!strcmp(n, "kv-remote-timeout"))
		fl.timeout = arg;
	else if (!strcmp(n, "kv-fault")) {
		struct kvo_faults tmp;
		char *err = NULL;
		if (!strcmp(arg, "list")) {
			kvo_faults_markdown(stdout);
			exit(0);
		}
		kvo_faults_init(&tmp, 0);
		if (kvo_faults_add(&tmp, arg, &err) < 0) {
			kv_error("%s", err);
			free(err);
			return -1;
		}
		if (fl.nfaults >= (int)KV_ARRAY_SIZE(fl.faults)) {
			kv_error("--kv-fault: at most %zu faults", KV_ARRAY_SIZE(fl.faults));
			return -1;
		}
		fl.faults[fl.nfaults++] = arg;
	}
	/* --kv-offload only sets fl.any */
	return 0;
}

static const struct kv_opt kvo_opts[] = {
	KV_OPT_GROUP("KV offload (LMCache-style connector; docs/offload.md)"),
	KV_OPT_CALLBACK(0, "kv-config", "FILE", opt_cb,
			"YAML of LMCache keys (else LMCACHE_CONFIG_FILE); LMCACHE_* env overrides it"),
	{ .type = KV_OPT_T_CALLBACK, .long_name = "kv-offload", .cb = opt_cb, .flags = KV_OPT_NOARG,
	  .help = "turn the connector on with the defaults / LMCACHE_* env only" },
	KV_OPT_CALLBACK(0, "kv-chunk-size", "N", opt_cb, "tokens per chunk (chunk_size, 256)"),
	KV_OPT_CALLBACK(0, "kv-cpu-bytes", "SIZE", opt_cb,
			"CPU tier budget, bytes with unit (max_local_cpu_size, 5GB); 0 turns it off"),
	KV_OPT_CALLBACK(0, "kv-disk-dir", "DIR", opt_cb, "disk tier folder (local_disk, off)"),
	KV_OPT_CALLBACK(0, "kv-disk-bytes", "SIZE", opt_cb,
			"disk tier budget (max_local_disk_size, 0)"),
	KV_OPT_CALLBACK(0, "kv-remote-url", "URL", opt_cb,
			"remote tier kv://HOST:PORT of a `kvserve cache` (remote_url, off)"),
	KV_OPT_CALLBACK(0, "kv-encoding", "ENC", opt_cb,
			"fp32|fp16|bf16|int8 for every tier (remote_serde overrides remote)"),
	KV_OPT_CALLBACK(0, "kv-remote-timeout", "SEC", opt_cb,
			"connect and exchange timeout of the remote tier, seconds (1.0)"),
	KV_OPT_CALLBACK(0, "kv-fault", "TYPE[:ARG]", opt_cb,
			"inject a fault (repeatable; `--kv-fault list` prints the types); off by default"),
};

size_t kvo_opts_copy(struct kv_opt *dst, size_t cap)
{
	size_t n = KV_ARRAY_SIZE(kvo_opts);
	if (n > cap)
		n = cap;
	memcpy(dst, kvo_opts, n * sizeof(*dst));
	return n;
}

int kvo_config_from_flags(struct kvo_config *c, bool *enabled)
{
	const char *file = fl.config ? fl.config : getenv("LMCACHE_CONFIG_FILE");
	enum kvo_enc enc;
	uint64_t sz;
	int64_t v;
	double d;

	kvo_config_init(c);
	*enabled = fl.any || (file && *file);
	if (!*enabled)
		return 0;
	if (file && *file && kvo_config_load_file(c, file) < 0)
		return -1;
	if (kvo_config_apply_env(c) < 0)
		return -1;
	if (fl.chunk) {
		if (kv_parse_i64(fl.chunk, 1, 65536, &v) < 0) {
			kv_error("--kv-chunk-size: expected tokens in 1..65536, got '%s'", fl.chunk);
			return -1;
		}
		c->chunk_size = v;
	}
	if (fl.cpu) {
		if (kv_parse_size(fl.cpu, &sz) < 0) {
			kv_error("--kv-cpu-bytes: expected a size (e.g. 2GiB), got '%s'", fl.cpu);
			return -1;
		}
		c->cpu_bytes = sz;
		c->local_cpu = sz > 0;
	}
	if (fl.disk_dir) {
		free(c->disk_dir);
		c->disk_dir = disk_path(fl.disk_dir);
	}
	if (fl.disk_bytes) {
		if (kv_parse_size(fl.disk_bytes, &sz) < 0) {
			kv_error("--kv-disk-bytes: expected a size (e.g. 10GiB), got '%s'", fl.disk_bytes);
			return -1;
		}
		c->disk_bytes = sz;
	}
	if (fl.remote && kvo_config_set(c, "remote_url", fl.remote, false, "--kv-remote-url") < 0)
		return -1;
	if (fl.enc) {
		if (kvo_enc_parse(fl.enc, &enc) < 0) {
			kv_error("--kv-encoding: expected fp32, fp16, bf16 or int8, got '%s'", fl.enc);
			return -1;
		}
		c->encoding = enc;
		if (!c->remote_serde_set)
			c->remote_enc = enc;
	}
	if (fl.timeout) {
		if (kv_parse_double(fl.timeout, &d) < 0 || !(d >= 0.001 && d <= 600)) {
			kv_error("--kv-remote-timeout: expected seconds in 0.001..600, got '%s'",
				 fl.timeout);
			return -1;
		}
		c->remote_timeout_s = d;
	}
	for (int i = 0; i < fl.nfaults; i++) {
		char *err = NULL;
		if (kvo_faults_add(&c->faults, fl.faults[i], &err) < 0) {
			kv_error("%s", err);
			free(err);
			return -1;
		}
	}
	if (c->disk_dir && !c->disk_bytes)
		kv_warn("local_disk is set but max_local_disk_size is 0: the disk tier stores nothing");
	return 0;
}

int kvo_connector_from_flags(struct kv_connector **out)
{
	struct kvo_config c;
	bool on;
	char *err = NULL;
	int rc = -1;

	*out = NULL;
	if (kvo_config_from_flags(&c, &on) < 0)
		goto out;
	rc = 0;
	if (!on)
		goto out;
	*out = kvo_connector_new(&c, &err);
	if (!*out) {
		kv_error("%s", err);
		free(err);
		rc = -1;
	}
out:
	kvo_config_release(&c);
	return rc;
}
