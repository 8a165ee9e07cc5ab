/* Suite files: ${VAR} expansion and the schema walk (docs/suite.md). */
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>

#include <jansson.h>

#include "common/buf.h"
#include "checks/checks.h"
#include "suite/suite.h"
#include "suite/ynode.h"
#include "common/banned.h"

#define SUITE_MAX_BYTES (4u << 20)

/* ---- ${VAR} expansion -------------------------------------------------- */

static bool var_char(char c, bool first)
{
	return c == '_' || isalpha((unsigned char)c) || (!first && isdigit((unsigned char)c));
}

char *kvb_suite_expand(const char *in, char **err)
{
	struct kv_buf b = KV_BUF_INIT(1u << 20);
	const char *p = in;

	*err = NULL;
	while (*p) {
		const char *name, *end, *def = NULL;
		size_t nlen, dlen = 0;
		char *var;
		const char *val;

		if (*p != '$') {
			if (kv_buf_putc(&b, *p++) < 0)
				goto too_long;
			continue;
		}
		if (p[1] == '$') {
			if (kv_buf_putc(&b, '$') < 0)
				goto too_long;
			p += 2;
			continue;
		}
		if (p[1] != '{') {
			if (kv_buf_putc(&b, *p++) < 0)
				goto too_long;
			continue;
		}
		name = p + 2;
		end = name;
		while (var_char(*end, end == name))
			end++;
		nlen = (size_t)(end - name);
		if (!nlen) {
			*err = xasprintf("'%.40s': expected a variable name after '${'", p);
			goto fail;
		}
		if (end[0] == ':' && end[1] == '-') {
			int depth = 0;
			def = end + 2;
			end = def;
			while (*end && (*end != '}' || depth)) {
				if (end[0] == '$' && end[1] == '{')
					depth++;
				else if (*end == '}')
					depth--;
				end++;
			}
			dlen = (size_t)(end - def);
		}
		if (*end != '}') {
			*err = xasprintf("'%.40s': unterminated '${' (write ${NAME} or ${NAME:-default})", p);
			goto fail;
		}
		var = xstrndup(name, nlen);
		val = getenv(var);
		if (def && (!val || !*val)) {
			char *d = xstrndup(def, dlen), *e;
			e = kvb_suite_expand(d, err);
			free(d);
			if (!e) {
				free(var);
				goto fail;
			}
			if (kv_buf_puts(&b, e) < 0) {
				free(e);
				free(var);
				goto too_long;
			}
			free(e);
		} else if (!val) {
			*err = xasprintf("${%s}: the environment variable %s is not set "
					 "(set it, or write ${%s:-default})", var, var, var);
			free(var);
			goto fail;
		} else if (kv_buf_puts(&b, val) < 0) {
			free(var);
			goto too_long;
		}
		free(var);
		p = end + 1;
	}
	return kv_buf_detach(&b, NULL);
too_long:
	*err = xasprintf("value longer than 1 MiB after expansion");
fail:
	kv_buf_release(&b);
	return NULL;
}

/* ---- schema walk ------------------------------------------------------- */

struct ctx {
	const char *file;
	const char *where; /* "engines.a": prefix of key names in messages */
	char qbuf[256];
};

/* "engines.a.port" for the key "port" of the section being read. */
static const char *qual(struct ctx *c, const char *what)
{
	if (!c->where || !*c->where)
		return what;
	snprintf(c->qbuf, sizeof(c->qbuf), "%s.%s", c->where, what);
	return c->qbuf;
}

#define ERR(c, node, ...) cerr((c), (node) ? (node)->line : 1, __VA_ARGS__)

static void KV_PRINTF(3, 4) cerr(struct ctx *c, int line, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	kv_error("%s:%d: %s", c->file, line, msg);
}

static int check_unused(struct ctx *c, const struct ynode *map, const char *where,
			const char *known)
{
	long i = ynode_first_unused(map);
	if (i < 0)
		return 0;
	cerr(c, map->key_lines[i], "%s%s%s: unknown key (known: %s)", where, *where ? "." : "",
	     map->keys[i], known);
	return -1;
}

static int want_map(struct ctx *c, const struct ynode *n, const char *what)
{
	if (n->type == YN_MAP)
		return 0;
	ERR(c, n, "%s: expected a mapping (key: value lines)", qual(c, what));
	return -1;
}

static int want_scalar(struct ctx *c, const struct ynode *n, const char *what)
{
	if (n->type == YN_SCALAR)
		return 0;
	ERR(c, n, "%s: expected a single value, got a %s", qual(c, what),
	    n->type == YN_MAP ? "mapping" : "list");
	return -1;
}

static int get_str(struct ctx *c, struct ynode *map, const char *key, const char *what,
		   char **out)
{
	struct ynode *n = ynode_get(map, key);
	if (!n)
		return 0;
	if (want_scalar(c, n, what) < 0)
		return -1;
	free(*out);
	*out = n->plain_null ? NULL : xstrdup(n->str);
	return 0;
}

static int get_int(struct ctx *c, struct ynode *map, const char *key, const char *what,
		   int64_t min, int64_t max, int64_t *out)
{
	struct ynode *n = ynode_get(map, key);
	if (!n)
		return 0;
	if (want_scalar(c, n, what) < 0)
		return -1;
	if (kv_parse_i64(n->str, min, max, out) < 0) {
		ERR(c, n, "%s: expected an integer in %lld..%lld, got '%s'", qual(c, what), (long long)min,
		    (long long)max, n->str);
		return -1;
	}
	return 0;
}

static int get_double(struct ctx *c, struct ynode *map, const char *key, const char *what,
		      double min, double max, double *out)
{
	struct ynode *n = ynode_get(map, key);
	double v;
	if (!n)
		return 0;
	if (want_scalar(c, n, what) < 0)
		return -1;
	if (kv_parse_double(n->str, &v) < 0 || v < min || v > max) {
		ERR(c, n, "%s: expected a number in %g..%g, got '%s'", qual(c, what), min, max, n->str);
		return -1;
	}
	*out = v;
	return 0;
}

int kvb_parse_duration(const char *s, double *out)
{
	char *end;
	double v, mult = 1;

	if (!s || !*s)
		return -1;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v < 0)
		return -1;
	if (!strcmp(end, "") || !strcmp(end, "s"))
		mult = 1;
	else if (!strcmp(end, "ms"))
		mult = 1e-3;
	else if (!strcmp(end, "m") || !strcmp(end, "min"))
		mult = 60;
	else if (!strcmp(end, "h"))
		mult = 3600;
	else
		return -1;
	*out = v * mult;
	return 0;
}

static int get_duration(struct ctx *c, struct ynode *map, const char *key, const char *what,
			double *out)
{
	struct ynode *n = ynode_get(map, key);
	if (!n)
		return 0;
	if (want_scalar(c, n, what) < 0)
		return -1;
	if (kvb_parse_duration(n->str, out) < 0) {
		ERR(c, n, "%s: expected a duration in seconds (30, 30s, 500ms, 2m), got '%s'",
		    qual(c, what), n->str);
		return -1;
	}
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const t[] = { "true", "True", "TRUE", "yes", "on", "1" };
	static const char *const f[] = { "false", "False", "FALSE", "no", "off", "0" };
	for (size_t i = 0; i < KV_ARRAY_SIZE(t); i++)
		if (!strcmp(s, t[i])) {
			*out = true;
			return 0;
		}
	for (size_t i = 0; i < KV_ARRAY_SIZE(f); i++)
		if (!strcmp(s, f[i])) {
			*out = false;
			return 0;
		}
	return -1;
}

static int get_bool(struct ctx *c, struct ynode *map, const char *key, const char *what,
		    bool *out)
{
	struct ynode *n = ynode_get(map, key);
	if (!n)
		return 0;
	if (want_scalar(c, n, what) < 0)
		return -1;
	if (parse_bool(n->str, out) < 0) {
		ERR(c, n, "%s: expected true or false, got '%s'", qual(c, what), n->str);
		return -1;
	}
	return 0;
}

static char **strv_push(char **v, size_t *n, char *s)
{
	v = xrealloc(v, (*n + 2) * sizeof(*v));
	v[(*n)++] = s;
	v[*n] = NULL;
	return v;
}

static void strv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

/* A list of scalars (or one scalar) into a NULL-terminated vector. */
static int get_strv(struct ctx *c, struct ynode *map, const char *key, const char *what,
		    char ***out, size_t *count)
{
	struct ynode *n = ynode_get(map, key);
	char **v = NULL;
	size_t cnt = 0;

	if (!n)
		return 0;
	if (n->type == YN_SCALAR) {
		if (!n->plain_null)
			v = strv_push(v, &cnt, xstrdup(n->str));
	} else if (n->type == YN_SEQ) {
		for (size_t i = 0; i < n->n; i++) {
			if (n->kids[i]->type != YN_SCALAR) {
				ERR(c, n->kids[i], "%s: expected a list of values", qual(c, what));
				strv_free(v);
				return -1;
			}
			v = strv_push(v, &cnt, xstrdup(n->kids[i]->str));
		}
	} else {
		ERR(c, n, "%s: expected a list, got a mapping", qual(c, what));
		return -1;
	}
	if (!v)
		v = xcalloc(1, sizeof(*v));
	strv_free(*out);
	*out = v;
	if (count)
		*count = cnt;
	return 0;
}

static bool valid_name(const char *s)
{
	if (!*s || strlen(s) > 64)
		return false;
	for (const char *p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_' && *p != '.')
			return false;
	return *s != '.';
}

/* YAML value -> JSON (scalars typed the YAML 1.1 way: ints, floats, bools). */
static json_t *to_json(const struct ynode *n)
{
	json_t *j;
	int64_t i;
	double d;
	bool b;

	switch (n->type) {
	case YN_SCALAR:
		if (n->quoted)
			return json_string(n->str);
		if (n->plain_null)
			return json_null();
		if (!kv_parse_i64(n->str, INT64_MIN, INT64_MAX, &i))
			return json_integer(i);
		if (!kv_parse_double(n->str, &d))
			return json_real(d);
		if (!parse_bool(n->str, &b))
			return json_boolean(b);
		return json_string(n->str);
	case YN_SEQ:
		j = json_array();
		for (size_t k = 0; k < n->n; k++)
			json_array_append_new(j, to_json(n->kids[k]));
		return j;
	case YN_MAP:
		j = json_object();
		for (size_t k = 0; k < n->n; k++)
			json_object_set_new(j, n->keys[k], to_json(n->kids[k]));
		return j;
	}
	return json_null();
}

static const char *const presets[] = { "kvserve", "vllm", "sglang", "llama.cpp",
				       "pegaflow-server", "url", "command", NULL };

#define ENGINE_KEYS "preset, binary, command, args, env, host, port, url, health_path, " \
	"model, startup_timeout, stop_grace, baseline, prefix_caching, max_model_len, " \
	"connector, kv_transfer_config, lmcache, gpus, requires, return_token_ids, api_key_env, " \
	"claims_reuse"

static int load_engine(struct ctx *c, struct kvb_suite *s, struct kvb_suite_engine *e,
		       const char *name, int line, struct ynode *m)
{
	char where[128];
	int64_t port = 0;
	struct ynode *n;
	bool pc;
	size_t cnt;
	int rc;

	snprintf(where, sizeof(where), "engines.%s", name);
	e->name = xstrdup(name);
	e->line = line;
	e->prefix_caching = -1;
	e->startup_timeout_s = s->startup_timeout_s;
	e->stop_grace_s = s->stop_grace_s;
	e->return_token_ids = true;
	e->claims_reuse = -1;
	if (!valid_name(name)) {
		cerr(c, line, "%s: engine names use letters, digits, '-', '_' and '.'", where);
		return -1;
	}
	if (want_map(c, m, where) < 0)
		return -1;
	c->where = where;
	if (get_str(c, m, "preset", "preset", &e->preset) < 0 ||
	    get_str(c, m, "binary", "binary", &e->binary) < 0 ||
	    get_strv(c, m, "command", "command", &e->command, &cnt) < 0 ||
	    get_strv(c, m, "args", "args", &e->args, NULL) < 0 ||
	    get_str(c, m, "host", "host", &e->host) < 0 ||
	    get_int(c, m, "port", "port", 0, 65535, &port) < 0 ||
	    get_str(c, m, "url", "url", &e->url) < 0 ||
	    get_str(c, m, "health_path", "health_path", &e->health_path) < 0 ||
	    get_str(c, m, "model", "model", &e->model) < 0 ||
	    get_duration(c, m, "startup_timeout", "startup_timeout", &e->startup_timeout_s) < 0 ||
	    get_duration(c, m, "stop_grace", "stop_grace", &e->stop_grace_s) < 0 ||
	    get_bool(c, m, "baseline", "baseline", &e->baseline) < 0 ||
	    get_int(c, m, "max_model_len", "max_model_len", 0, INT32_MAX, &e->max_model_len) < 0 ||
	    get_str(c, m, "connector", "connector", &e->connector) < 0 ||
	    get_str(c, m, "gpus", "gpus", &e->gpus) < 0 ||
	    get_strv(c, m, "requires", "requires", &e->requires, NULL) < 0 ||
	    get_bool(c, m, "return_token_ids", "return_token_ids", &e->return_token_ids) < 0 ||
	    get_str(c, m, "api_key_env", "api_key_env", &e->api_key_env) < 0)
		return -1;
	e->port = (int)port;
	n = ynode_get(m, "claims_reuse");
	if (n) {
		bool cr;
		if (want_scalar(c, n, "claims_reuse") < 0)
			return -1;
		if (parse_bool(n->str, &cr) < 0) {
			ERR(c, n, "%s: expected true or false, got '%s'", qual(c, "claims_reuse"),
			    n->str);
			return -1;
		}
		e->claims_reuse = cr;
	}
	n = ynode_get(m, "prefix_caching");
	if (n) {
		if (want_scalar(c, n, "prefix_caching") < 0)
			return -1;
		if (parse_bool(n->str, &pc) < 0) {
			ERR(c, n, "prefix_caching: expected true or false, got '%s'", n->str);
			return -1;
		}
		e->prefix_caching = pc;
	}
	if (!e->preset)
		e->preset = xstrdup(e->command ? "command" : e->url ? "url" : "kvserve");
	{
		bool ok = false;
		for (size_t i = 0; presets[i]; i++)
			ok |= !strcmp(presets[i], e->preset);
		if (!ok) {
			n = ynode_get(m, "preset");
			ERR(c, n, "%s.preset: unknown preset '%s' (known: kvserve, vllm, sglang, "
			    "llama.cpp, pegaflow-server, url, command)", where, e->preset);
			return -1;
		}
	}
	if (!strcmp(e->preset, "command") && (!e->command || !e->command[0])) {
		cerr(c, line, "%s: preset command needs 'command: [program, args...]'", where);
		return -1;
	}
	if (e->command && strcmp(e->preset, "command")) {
		ERR(c, ynode_get(m, "command"), "%s.command: only with preset command "
		    "(use args: to add arguments to preset %s)", where, e->preset);
		return -1;
	}
	if (!strcmp(e->preset, "url") && !e->url) {
		cerr(c, line, "%s: preset url needs 'url: http://host:port'", where);
		return -1;
	}
	if (e->url && strncmp(e->url, "http://", 7) && strncmp(e->url, "https://", 8)) {
		ERR(c, ynode_get(m, "url"), "%s.url: expected http://host:port, got '%s'", where,
		    e->url);
		return -1;
	}
	if (e->connector && strcmp(e->connector, "lmcache") && strcmp(e->connector, "pegaflow") &&
	    strcmp(e->connector, "none")) {
		ERR(c, ynode_get(m, "connector"), "%s.connector: expected lmcache, pegaflow or "
		    "none, got '%s'", where, e->connector);
		return -1;
	}
	if (e->connector && !strcmp(e->connector, "none")) {
		free(e->connector);
		e->connector = NULL;
	}
	if (e->connector && strcmp(e->preset, "vllm")) {
		ERR(c, ynode_get(m, "connector"), "%s.connector: only the vllm preset takes a "
		    "connector", where);
		return -1;
	}
	if (!e->host)
		e->host = xstrdup("127.0.0.1");
	if (e->health_path && e->health_path[0] != '/') {
		ERR(c, ynode_get(m, "health_path"), "%s.health_path: must start with '/'", where);
		return -1;
	}

	n = ynode_get(m, "env");
	if (n) {
		size_t ne = 0;
		if (want_map(c, n, "env") < 0)
			return -1;
		for (size_t i = 0; i < n->n; i++) {
			if (want_scalar(c, n->kids[i], "env") < 0)
				return -1;
			if (!n->keys[i][0] || strchr(n->keys[i], '=')) {
				cerr(c, n->key_lines[i], "%s.env: bad variable name '%s'", where,
				     n->keys[i]);
				return -1;
			}
			e->env = strv_push(e->env, &ne, xasprintf("%s=%s", n->keys[i], n->kids[i]->str));
		}
	}
	n = ynode_get(m, "lmcache");
	if (n) {
		size_t ne = 0;
		if (want_map(c, n, "lmcache") < 0)
			return -1;
		if (!e->connector || strcmp(e->connector, "lmcache")) {
			ERR(c, n, "%s.lmcache: needs 'connector: lmcache'", where);
			return -1;
		}
		for (size_t i = 0; i < n->n; i++) {
			struct kv_buf b = KV_BUF_INIT(0);
			const struct ynode *v = n->kids[i];
			kv_buf_puts(&b, "LMCACHE_");
			for (const char *p = n->keys[i]; *p; p++) {
				if (!isalnum((unsigned char)*p) && *p != '_') {
					cerr(c, n->key_lines[i], "%s.lmcache: bad key '%s'", where,
					     n->keys[i]);
					kv_buf_release(&b);
					return -1;
				}
				kv_buf_putc(&b, (char)toupper((unsigned char)*p));
			}
			kv_buf_putc(&b, '=');
			if (v->type == YN_SCALAR) {
				kv_buf_puts(&b, v->str);
			} else if (v->type == YN_SEQ) { /* LMCache lists are comma-separated */
				for (size_t k = 0; k < v->n; k++) {
					if (v->kids[k]->type != YN_SCALAR) {
						ERR(c, v->kids[k], "%s.lmcache.%s: expected a list of values",
						    where, n->keys[i]);
						kv_buf_release(&b);
						return -1;
					}
					kv_buf_printf(&b, "%s%s", k ? "," : "", v->kids[k]->str);
				}
			} else { /* extra_config: JSON */
				json_t *j = to_json(v);
				char *t = json_dumps(j, JSON_COMPACT);
				kv_buf_puts(&b, t);
				free(t);
				json_decref(j);
			}
			e->lmcache_env = strv_push(e->lmcache_env, &ne, kv_buf_detach(&b, NULL));
		}
	}
	n = ynode_get(m, "kv_transfer_config");
	if (n) {
		json_t *j;
		if (strcmp(e->preset, "vllm")) {
			ERR(c, n, "%s.kv_transfer_config: only for preset vllm", where);
			return -1;
		}
		if (want_map(c, n, "kv_transfer_config") < 0)
			return -1;
		j = to_json(n);
		e->kv_transfer_config = json_dumps(j, JSON_COMPACT);
		json_decref(j);
	}
	rc = check_unused(c, m, where, ENGINE_KEYS);
	c->where = NULL;
	return rc;
}

static int load_workload(struct ctx *c, struct kvb_suite_workload *w, const char *name,
			 int line, struct ynode *m)
{
	char where[128];
	struct ynode *t;

	snprintf(where, sizeof(where), "workloads.%s", name);
	w->name = xstrdup(name);
	w->line = line;
	if (!valid_name(name)) {
		cerr(c, line, "%s: workload names use letters, digits, '-', '_' and '.'", where);
		return -1;
	}
	if (want_map(c, m, where) < 0)
		return -1;
	c->where = where;
	t = ynode_get(m, "type");
	if (!t) {
		cerr(c, line, "%s: missing 'type' (a workload name, see 'kvbench bench --help')",
		     where);
		return -1;
	}
	if (want_scalar(c, t, "type") < 0)
		return -1;
	w->type = xstrdup(t->str);
	w->params.kv = xcalloc(m->n ? m->n : 1, sizeof(*w->params.kv));
	w->params.endpoint = KVB_EP_COMPLETIONS;
	for (size_t i = 0; i < m->n; i++) {
		struct ynode *v = m->kids[i];
		struct kvb_kv *kv;
		if (!strcmp(m->keys[i], "type"))
			continue;
		kv = &w->params.kv[w->params.n++];
		kv->key = xstrdup(m->keys[i]);
		kv->file = c->file;
		kv->line = m->key_lines[i];
		m->used[i] = true;
		if (v->type == YN_SCALAR) {
			kv->value = xstrdup(v->str);
		} else if (v->type == YN_SEQ) {
			struct kv_buf b = KV_BUF_INIT(0);
			for (size_t k = 0; k < v->n; k++) {
				if (v->kids[k]->type != YN_SCALAR) {
					ERR(c, v->kids[k], "%s.%s: expected a list of values", where,
					    m->keys[i]);
					kv_buf_release(&b);
					return -1;
				}
				kv_buf_printf(&b, "%s%s", k ? "," : "", v->kids[k]->str);
			}
			kv->value = kv_buf_detach(&b, NULL);
		} else {
			ERR(c, v, "%s.%s: expected a value or a list, got a mapping", where, m->keys[i]);
			return -1;
		}
	}
	return 0;
}

struct check_kind {
	const char *name;
	enum kvb_check_type type;
	const char *limit_key; /* "max" or "min" */
};

static const struct check_kind check_kinds[] = {
	{ "max_ttft", KVB_CHECK_MAX_TTFT, "max" },
	{ "min_speedup", KVB_CHECK_MIN_SPEEDUP, "min" },
	{ "min_hit_rate", KVB_CHECK_MIN_HIT_RATE, "min" },
	{ "max_error_rate", KVB_CHECK_MAX_ERROR_RATE, "max" },
	{ "identity", KVB_CHECK_IDENTITY, NULL },
	{ "max_accuracy_drop", KVB_CHECK_MAX_ACCURACY_DROP, "max" },
	{ "logprobs", KVB_CHECK_LOGPROBS, NULL },
	{ "cache_path", KVB_CHECK_CACHE_PATH, NULL },
	{ "key_isolation", KVB_CHECK_KEY_ISOLATION, NULL },
};

#define CHECK_TYPES "max_ttft, min_speedup, min_hit_rate, max_error_rate, identity, " \
	"max_accuracy_drop, logprobs, cache_path, key_isolation"

const char *kvb_check_type_name(enum kvb_check_type t)
{
	for (size_t i = 0; i < KV_ARRAY_SIZE(check_kinds); i++)
		if (check_kinds[i].type == t)
			return check_kinds[i].name;
	return "?";
}

static int engine_ref(struct ctx *c, const struct kvb_suite *s, const struct kvb_suite_test *t,
		      const char *name, int line, const char *what)
{
	bool in_test = false;
	if (!name)
		return 0;
	for (size_t i = 0; i < t->n_engines; i++)
		in_test |= !strcmp(t->engines[i], name);
	if (!in_test) {
		cerr(c, line, "tests.%s: %s: '%s' is not one of the test's engines", t->name, what,
		     name);
		return -1;
	}
	(void)s;
	return 0;
}

static const char *const stats[] = { "mean", "p50", "p90", "p99", "p99_9", "max", "min", NULL };

#define CHECK_KEYS "type, name, engine, baseline, candidate, pass, baseline_pass, stat, max, " \
	"min, tolerance, near_tie_nats, max_lp_delta, max_kl, strict, prompt"

static int load_check(struct ctx *c, const struct kvb_suite *s, struct kvb_suite_test *t,
		      struct kvb_suite_check *k, struct ynode *m)
{
	const struct check_kind *kind = NULL;
	char *type = NULL, where[160];
	int64_t pass = -1, bpass = -1;
	struct ynode *lim;
	int rc = -1;

	k->line = m->line;
	k->pass = -1;
	k->baseline_pass = -1;
	k->near_tie_nats = -1;
	k->max_lp_delta = -1;
	k->max_kl = -1;
	snprintf(where, sizeof(where), "tests.%s.checks", t->name);
	if (want_map(c, m, where) < 0)
		return -1;
	c->where = where;
	if (get_str(c, m, "type", "type", &type) < 0)
		goto out;
	if (!type) {
		ERR(c, m, "%s: missing 'type' (" CHECK_TYPES ")", where);
		goto out;
	}
	for (size_t i = 0; i < KV_ARRAY_SIZE(check_kinds); i++)
		if (!strcmp(check_kinds[i].name, type))
			kind = &check_kinds[i];
	if (!kind) {
		ERR(c, ynode_get(m, "type"), "%s.type: unknown check '%s' (known: " CHECK_TYPES ")",
		    where, type);
		goto out;
	}
	k->type = kind->type;
	if (get_str(c, m, "name", "name", &k->name) < 0 ||
	    get_str(c, m, "engine", "engine", &k->engine) < 0 ||
	    get_str(c, m, "baseline", "baseline", &k->baseline) < 0 ||
	    get_str(c, m, "candidate", "candidate", &k->candidate) < 0 ||
	    get_int(c, m, "pass", "pass", 0, 1000, &pass) < 0 ||
	    get_int(c, m, "baseline_pass", "baseline_pass", 0, 1000, &bpass) < 0 ||
	    get_str(c, m, "stat", "stat", &k->stat) < 0 ||
	    get_str(c, m, "tolerance", "tolerance", &k->tolerance) < 0 ||
	    get_double(c, m, "near_tie_nats", "near_tie_nats", 1e-12, 100, &k->near_tie_nats) < 0 ||
	    get_double(c, m, "max_lp_delta", "max_lp_delta", 1e-12, 1000, &k->max_lp_delta) < 0 ||
	    get_double(c, m, "max_kl", "max_kl", 1e-12, 1000, &k->max_kl) < 0 ||
	    get_bool(c, m, "strict", "strict", &k->strict) < 0 ||
	    get_bool(c, m, "prompt", "prompt", &k->prompt) < 0)
		goto out;
	{
		/* numeric keys only where they mean something */
		static const char *const num_keys[] = { "tolerance", "near_tie_nats", "max_lp_delta",
							"max_kl", "strict", "prompt" };
		/* which check types take each of num_keys: I identity, L logprobs */
		static const char *const takes[] = { "IL", "I", "L", "L", "I", "L" };
		char me = k->type == KVB_CHECK_IDENTITY ? 'I' : k->type == KVB_CHECK_LOGPROBS ? 'L' : 0;
		for (size_t i = 0; i < KV_ARRAY_SIZE(num_keys); i++)
			if (ynode_get(m, num_keys[i]) && (!me || !strchr(takes[i], me))) {
				ERR(c, ynode_get(m, num_keys[i]), "%s.%s: not a key of %s checks",
				    where, num_keys[i], type);
				goto out;
			}
	}
	if (k->tolerance && !kvb_tolerance_find(k->tolerance)) {
		ERR(c, ynode_get(m, "tolerance"), "%s.tolerance: expected bf16 or fp32, got '%s'",
		    where, k->tolerance);
		goto out;
	}
	k->pass = (int)pass;
	k->baseline_pass = (int)bpass;
	if (k->stat) {
		bool ok = false;
		for (size_t i = 0; stats[i]; i++)
			ok |= !strcmp(stats[i], k->stat);
		if (!ok) {
			ERR(c, ynode_get(m, "stat"), "%s.stat: expected mean, p50, p90, p99, p99_9, "
			    "min or max, got '%s'", where, k->stat);
			goto out;
		}
	} else {
		k->stat = xstrdup("mean");
	}
	if (kind->limit_key) {
		const char *other = !strcmp(kind->limit_key, "max") ? "min" : "max";
		if (ynode_get(m, other)) {
			ERR(c, ynode_get(m, other), "%s: %s takes '%s', not '%s'", where, type,
			    kind->limit_key, other);
			goto out;
		}
		lim = ynode_get(m, kind->limit_key);
		if (!lim) {
			ERR(c, m, "%s: %s needs '%s: NUMBER'", where, type, kind->limit_key);
			goto out;
		}
		if (get_double(c, m, kind->limit_key, kind->limit_key, 0, 1e12, &k->limit) < 0)
			goto out;
	}
	switch (k->type) {
	case KVB_CHECK_MIN_SPEEDUP:
		if (!k->candidate && k->engine) {
			k->candidate = xstrdup(k->engine);
		}
		if (!k->baseline && k->candidate && k->baseline_pass >= 0)
			k->baseline = xstrdup(k->candidate);
		if (!k->baseline || !k->candidate) {
			ERR(c, m, "%s: min_speedup needs 'baseline' and 'candidate' engines (or "
			    "'engine' with 'baseline_pass' and 'pass' for cold vs warm)", where);
			goto out;
		}
		break;
	case KVB_CHECK_IDENTITY:
	case KVB_CHECK_MAX_ACCURACY_DROP:
	case KVB_CHECK_LOGPROBS:
		if (!k->baseline || !k->candidate) {
			ERR(c, m, "%s: %s needs 'baseline' and 'candidate' engines", where, type);
			goto out;
		}
		break;
	case KVB_CHECK_CACHE_PATH:
	case KVB_CHECK_KEY_ISOLATION:
		if (!k->engine) {
			ERR(c, m, "%s: %s needs 'engine' (the engine whose /metrics are read)", where,
			    type);
			goto out;
		}
		break;
	default:
		break;
	}
	if (engine_ref(c, s, t, k->engine, m->line, "engine") < 0 ||
	    engine_ref(c, s, t, k->baseline, m->line, "baseline") < 0 ||
	    engine_ref(c, s, t, k->candidate, m->line, "candidate") < 0)
		goto out;
	/* with passes: 1 the workload numbers its own passes (mmlu, long-doc-qa...) */
	if (t->passes > 1 && (k->pass >= t->passes || k->baseline_pass >= t->passes)) {
		ERR(c, m, "%s: pass must be below the test's passes (%d)", where, t->passes);
		goto out;
	}
	if (!k->name) {
		if (k->type == KVB_CHECK_LOGPROBS && k->prompt)
			k->name = xasprintf("prompt_logprobs.%s", k->candidate);
		else if (k->engine || k->candidate)
			k->name = xasprintf("%s.%s", type, k->candidate ? k->candidate : k->engine);
		else
			k->name = xstrdup(type);
	}
	if (check_unused(c, m, where, CHECK_KEYS) < 0)
		goto out;
	rc = 0;
out:
	free(type);
	return rc;
}

#define TEST_KEYS "description, workload, engines, mode, passes, concurrency, arrival, " \
	"rate, burstiness, max_requests, duration, request_timeout, seed, timeout, checks, " \
	"claims_reuse, fault, class, expect, repeat, restart, abort_every, abort_after_tokens, " \
	"abort_after, tags, stream"

static int load_test(struct ctx *c, struct kvb_suite *s, struct kvb_suite_test *t,
		     const char *name, int line, struct ynode *m)
{
	char where[128];
	char *mode = NULL, *expect = NULL;
	int64_t passes = 1, conc = 1, seed = 0, repeat = 1, abort_every = 0, abort_tokens = 0;
	struct ynode *n;
	int rc = -1;

	snprintf(where, sizeof(where), "tests.%s", name);
	t->name = xstrdup(name);
	t->line = line;
	t->burstiness = 1;
	t->request_timeout_s = 600;
	t->claims_reuse = true;
	t->stream = true;
	if (!valid_name(name)) {
		cerr(c, line, "%s: test names use letters, digits, '-', '_' and '.'", where);
		return -1;
	}
	if (want_map(c, m, where) < 0)
		return -1;
	c->where = where;
	if (get_str(c, m, "description", "description", &t->description) < 0 ||
	    get_str(c, m, "workload", "workload", &t->workload) < 0 ||
	    get_strv(c, m, "engines", "engines", &t->engines, &t->n_engines) < 0 ||
	    get_str(c, m, "mode", "mode", &mode) < 0 ||
	    get_int(c, m, "passes", "passes", 1, 100, &passes) < 0 ||
	    get_int(c, m, "concurrency", "concurrency", 0, 100000, &conc) < 0 ||
	    get_str(c, m, "arrival", "arrival", &t->arrival) < 0 ||
	    get_double(c, m, "rate", "rate", 0, 1e9, &t->rate) < 0 ||
	    get_double(c, m, "burstiness", "burstiness", 1e-6, 1e6, &t->burstiness) < 0 ||
	    get_int(c, m, "max_requests", "max_requests", 0, INT64_MAX, &t->max_requests) < 0 ||
	    get_duration(c, m, "duration", "duration", &t->duration_s) < 0 ||
	    get_duration(c, m, "request_timeout", "request_timeout", &t->request_timeout_s) < 0 ||
	    get_int(c, m, "seed", "seed", 0, INT64_MAX, &seed) < 0 ||
	    get_duration(c, m, "timeout", "timeout", &t->timeout_s) < 0 ||
	    get_bool(c, m, "claims_reuse", "claims_reuse", &t->claims_reuse) < 0 ||
	    get_str(c, m, "fault", "fault", &t->fault) < 0 ||
	    get_str(c, m, "class", "class", &t->fclass) < 0 ||
	    get_str(c, m, "expect", "expect", &expect) < 0 ||
	    get_int(c, m, "repeat", "repeat", 1, 10000, &repeat) < 0 ||
	    get_bool(c, m, "restart", "restart", &t->restart) < 0 ||
	    get_int(c, m, "abort_every", "abort_every", 0, INT32_MAX, &abort_every) < 0 ||
	    get_int(c, m, "abort_after_tokens", "abort_after_tokens", 0, INT32_MAX,
		    &abort_tokens) < 0 ||
	    get_duration(c, m, "abort_after", "abort_after", &t->abort_after_s) < 0 ||
	    get_strv(c, m, "tags", "tags", &t->tags, NULL) < 0 ||
	    get_bool(c, m, "stream", "stream", &t->stream) < 0)
		goto out;
	t->repeat = (int)repeat;
	t->abort_every = (int)abort_every;
	t->abort_after_tokens = (int)abort_tokens;
	if (expect) {
		t->expect_set = true;
		if (!strcmp(expect, "detect")) {
			t->expect_detect = true;
		} else if (strcmp(expect, "pass")) {
			ERR(c, ynode_get(m, "expect"), "%s.expect: expected detect or pass, got '%s'",
			    where, expect);
			goto out;
		}
	}
	if (t->restart && passes < 2) {
		ERR(c, ynode_get(m, "restart"), "%s.restart: needs passes: 2 or more (the engine is "
		    "restarted between passes)", where);
		goto out;
	}
	if ((abort_tokens > 0 || t->abort_after_s > 0) && abort_every <= 0) {
		ERR(c, ynode_get(m, abort_tokens > 0 ? "abort_after_tokens" : "abort_after"),
		    "%s: abort_after_tokens and abort_after need 'abort_every: N'", where);
		goto out;
	}
	t->passes = (int)passes;
	t->concurrency = (int)conc;
	t->seed = (uint64_t)seed;
	t->parallel = false;
	if (mode) {
		if (!strcmp(mode, "parallel")) {
			t->parallel = true;
		} else if (strcmp(mode, "sequential")) {
			ERR(c, ynode_get(m, "mode"), "%s.mode: expected parallel or sequential, got '%s'",
			    where, mode);
			goto out;
		}
	}
	if (!t->arrival)
		t->arrival = xstrdup(t->rate > 0 ? "poisson" : "closed");
	if (strcmp(t->arrival, "closed") && strcmp(t->arrival, "constant") &&
	    strcmp(t->arrival, "poisson") && strcmp(t->arrival, "gamma")) {
		ERR(c, ynode_get(m, "arrival"), "%s.arrival: expected closed, constant, poisson or "
		    "gamma, got '%s'", where, t->arrival);
		goto out;
	}
	if (strcmp(t->arrival, "closed") && t->rate <= 0) {
		ERR(c, ynode_get(m, "arrival"), "%s: arrival %s needs 'rate' (requests/s)", where,
		    t->arrival);
		goto out;
	}
	if (!t->workload) {
		cerr(c, line, "%s: missing 'workload'", where);
		goto out;
	}
	if (!kvb_suite_workload_find(s, t->workload)) {
		ERR(c, ynode_get(m, "workload"), "%s.workload: no workload named '%s' in workloads:",
		    where, t->workload);
		goto out;
	}
	if (!t->engines || !t->n_engines) {
		cerr(c, line, "%s: missing 'engines' (a list of engine names)", where);
		goto out;
	}
	n = ynode_get(m, "engines");
	for (size_t i = 0; i < t->n_engines; i++) {
		if (!kvb_suite_engine_find(s, t->engines[i])) {
			int l = n->type == YN_SEQ ? n->kids[i]->line : n->line;
			cerr(c, l, "%s.engines: no engine named '%s' in engines:", where, t->engines[i]);
			goto out;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(t->engines[i], t->engines[j])) {
				ERR(c, n, "%s.engines: '%s' is listed twice", where, t->engines[i]);
				goto out;
			}
	}
	n = ynode_get(m, "checks");
	if (n) {
		if (n->type != YN_SEQ) {
			ERR(c, n, "%s.checks: expected a list ('- type: ...' items)", where);
			goto out;
		}
		t->checks = xcalloc(n->n ? n->n : 1, sizeof(*t->checks));
		for (size_t i = 0; i < n->n; i++) {
			t->n_checks = i + 1;
			if (load_check(c, s, t, &t->checks[i], n->kids[i]) < 0)
				goto out;
		}
		c->where = where;
	}
	if (check_unused(c, m, where, TEST_KEYS) < 0)
		goto out;
	rc = 0;
out:
	free(mode);
	free(expect);
	return rc;
}

static int check_requires(struct ctx *c, struct kvb_suite *s)
{
	for (size_t i = 0; i < s->n_engines; i++) {
		struct kvb_suite_engine *e = &s->engines[i];
		for (char **r = e->requires; r && *r; r++) {
			bool before = false;
			for (size_t j = 0; j < i; j++)
				before |= !strcmp(s->engines[j].name, *r);
			if (!before) {
				cerr(c, e->line, "engines.%s.requires: '%s' must be an engine defined "
				     "above this one", e->name, *r);
				return -1;
			}
		}
	}
	return 0;
}

#define TOP_KEYS "name, model, results_dir, startup_timeout, stop_grace, engines, workloads, tests"

int kvb_suite_load(struct kvb_suite *s, const char *path, const char *model_override)
{
	size_t len = 0;
	char *data = kv_read_file(path, SUITE_MAX_BYTES, &len);
	int rc;

	if (!data) {
		memset(s, 0, sizeof(*s));
		kv_error("%s: cannot read: %s", path, errno ? strerror(errno) : "too large");
		return -1;
	}
	rc = kvb_suite_load_buf(s, path, data, len, model_override);
	free(data);
	return rc;
}

int kvb_suite_load_buf(struct kvb_suite *s, const char *name, const char *data, size_t len,
		       const char *model_override)
{
	struct ctx c = { 0 };
	struct ynode *root = NULL, *n;
	const char *path = name;
	int rc = -1, r;

	memset(s, 0, sizeof(*s));
	s->file = xstrdup(name);
	c.file = s->file;
	s->startup_timeout_s = 600;
	s->stop_grace_s = 10;
	root = ynode_load_buf(s->file, data, len);
	if (!root)
		goto out;
	if (root->type != YN_MAP) {
		ERR(&c, root, "a suite file is a mapping with engines:, workloads: and tests:");
		goto out;
	}
	if (get_str(&c, root, "name", "name", &s->name) < 0 ||
	    get_str(&c, root, "model", "model", &s->model) < 0 ||
	    get_str(&c, root, "results_dir", "results_dir", &s->results_dir) < 0 ||
	    get_duration(&c, root, "startup_timeout", "startup_timeout", &s->startup_timeout_s) < 0 ||
	    get_duration(&c, root, "stop_grace", "stop_grace", &s->stop_grace_s) < 0)
		goto out;
	if (s->model && !*s->model) {
		free(s->model);
		s->model = NULL;
	}
	if (model_override) {
		free(s->model);
		s->model = xstrdup(model_override);
	}
	if (!s->name) {
		const char *b = strrchr(path, '/');
		const char *dot;
		b = b ? b + 1 : path;
		dot = strrchr(b, '.');
		s->name = dot && dot != b ? xstrndup(b, (size_t)(dot - b)) : xstrdup(b);
	}
	if (!s->results_dir)
		s->results_dir = xstrdup("results");

	n = ynode_get(root, "engines");
	if (!n) {
		cerr(&c, root->line, "missing 'engines:' (a mapping of engine names)");
		goto out;
	}
	if (want_map(&c, n, "engines") < 0)
		goto out;
	s->engines = xcalloc(n->n ? n->n : 1, sizeof(*s->engines));
	for (size_t i = 0; i < n->n; i++) {
		s->n_engines = i + 1;
		r = load_engine(&c, s, &s->engines[i], n->keys[i], n->key_lines[i], n->kids[i]);
		c.where = NULL;
		if (r < 0)
			goto out;
	}
	if (check_requires(&c, s) < 0)
		goto out;

	n = ynode_get(root, "workloads");
	if (!n) {
		cerr(&c, root->line, "missing 'workloads:' (a mapping of workload names)");
		goto out;
	}
	if (want_map(&c, n, "workloads") < 0)
		goto out;
	s->workloads = xcalloc(n->n ? n->n : 1, sizeof(*s->workloads));
	for (size_t i = 0; i < n->n; i++) {
		s->n_workloads = i + 1;
		r = load_workload(&c, &s->workloads[i], n->keys[i], n->key_lines[i], n->kids[i]);
		c.where = NULL;
		if (r < 0)
			goto out;
	}

	n = ynode_get(root, "tests");
	if (!n) {
		cerr(&c, root->line, "missing 'tests:' (a mapping of test names)");
		goto out;
	}
	if (want_map(&c, n, "tests") < 0)
		goto out;
	s->tests = xcalloc(n->n ? n->n : 1, sizeof(*s->tests));
	for (size_t i = 0; i < n->n; i++) {
		s->n_tests = i + 1;
		r = load_test(&c, s, &s->tests[i], n->keys[i], n->key_lines[i], n->kids[i]);
		c.where = NULL;
		if (r < 0)
			goto out;
	}
	if (check_unused(&c, root, "", TOP_KEYS) < 0)
		goto out;
	rc = 0;
out:
	ynode_free(root);
	if (rc < 0)
		kvb_suite_release(s);
	return rc;
}

const struct kvb_suite_engine *kvb_suite_engine_find(const struct kvb_suite *s, const char *name)
{
	for (size_t i = 0; i < s->n_engines; i++)
		if (s->engines[i].name && !strcmp(s->engines[i].name, name))
			return &s->engines[i];
	return NULL;
}

const struct kvb_suite_workload *kvb_suite_workload_find(const struct kvb_suite *s,
							 const char *name)
{
	for (size_t i = 0; i < s->n_workloads; i++)
		if (s->workloads[i].name && !strcmp(s->workloads[i].name, name))
			return &s->workloads[i];
	return NULL;
}

void kvb_suite_release(struct kvb_suite *s)
{
	for (size_t i = 0; i < s->n_engines; i++) {
		struct kvb_suite_engine *e = &s->engines[i];
		free(e->name);
		free(e->preset);
		free(e->binary);
		strv_free(e->command);
		strv_free(e->args);
		strv_free(e->env);
		free(e->host);
		free(e->url);
		free(e->health_path);
		free(e->model);
		free(e->connector);
		free(e->kv_transfer_config);
		strv_free(e->lmcache_env);
		free(e->gpus);
		strv_free(e->requires);
		free(e->api_key_env);
	}
	free(s->engines);
	for (size_t i = 0; i < s->n_workloads; i++) {
		struct kvb_suite_workload *w = &s->workloads[i];
		free(w->name);
		free(w->type);
		for (size_t k = 0; k < w->params.n; k++) {
			free(w->params.kv[k].key);
			free(w->params.kv[k].value);
		}
		free(w->params.kv);
	}
	free(s->workloads);
	for (size_t i = 0; i < s->n_tests; i++) {
		struct kvb_suite_test *t = &s->tests[i];
		free(t->name);
		free(t->description);
		free(t->workload);
		strv_free(t->engines);
		free(t->arrival);
		for (size_t k = 0; k < t->n_checks; k++) {
			free(t->checks[k].name);
			free(t->checks[k].engine);
			free(t->checks[k].baseline);
			free(t->checks[k].candidate);
			free(t->checks[k].stat);
			free(t->checks[k].tolerance);
		}
		free(t->checks);
		free(t->fault);
		free(t->fclass);
		strv_free(t->tags);
	}
	free(s->tests);
	free(s->file);
	free(s->name);
	free(s->model);
	free(s->results_dir);
	memset(s, 0, sizeof(*s));
}

static bool argv_has(char **args, const char *const *flags)
{
	for (char **a = args; a && *a; a++)
		for (const char *const *f = flags; *f; f++) {
			size_t n = strlen(*f);
			if (!strncmp(*a, *f, n) && ((*a)[n] == '\0' || (*a)[n] == '='))
				return true;
		}
	return false;
}

bool kvb_suite_engine_claims_reuse(const struct kvb_suite_engine *e)
{
	/* kvserve connector tiers (docs/offload.md): any of these turns the connector on */
	static const char *const kv_tiers[] = { "--kv-cpu-bytes", "--kv-disk-dir", "--kv-disk-bytes",
						"--kv-remote-url", "--kv-config", "--kv-offload",
						NULL };
	static const char *const no_cache_prompt[] = { "--no-cache-prompt", NULL };
	static const char *const no_radix[] = { "--disable-radix-cache", NULL };
	static const char *const no_apc[] = { "--no-enable-prefix-caching", NULL };
	static const char *const kv_no_pc[] = { "--no-prefix-cache", NULL };

	if (e->claims_reuse >= 0)
		return e->claims_reuse;
	if (!strcmp(e->preset, "kvserve"))
		return (e->prefix_caching != 0 && !argv_has(e->args, kv_no_pc)) ||
		       argv_has(e->args, kv_tiers);
	if (!strcmp(e->preset, "vllm"))
		return e->connector || argv_has(e->args, (const char *const[]){ "--kv-transfer-config",
										  NULL }) ||
		       (e->prefix_caching != 0 && !argv_has(e->args, no_apc));
	if (!strcmp(e->preset, "sglang"))
		return e->prefix_caching != 0 && !argv_has(e->args, no_radix);
	if (!strcmp(e->preset, "llama.cpp"))
		return e->prefix_caching != 0 && !argv_has(e->args, no_cache_prompt);
	return false;
}

bool kvb_suite_test_tagged(const struct kvb_suite_test *t, const char *tag)
{
	if (!tag)
		return true;
	for (char **p = t->tags; p && *p; p++)
		if (!strcmp(*p, tag))
			return true;
	return false;
}

bool kvb_suite_test_is_matrix(const struct kvb_suite_test *t)
{
	return t->fault || t->expect_set;
}
