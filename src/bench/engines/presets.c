/*
 * Engine presets: a template of argv, environment and health path per
 * engine kind (docs/suite.md "engines"), flags as REFERENCE.md documents them.
 */
#include "common/util.h"

#include <limits.h>
#include <unistd.h>

#include <jansson.h>

#include "common/buf.h"
#include "engines/engine.h"
#include "common/banned.h"

static char **vpush(char **v, size_t *n, char *s)
{
	v = xrealloc(v, (*n + 2) * sizeof(*v));
	v[(*n)++] = s;
	v[*n] = NULL;
	return v;
}

static void vfree(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

/* {port}, {host}, {model}, {name}, {log_dir}, {url}; {{ is a literal {. */
static char *fill(const char *in, const struct kvb_engine *e, const char *log_dir)
{
	struct kv_buf b = KV_BUF_INIT(0);
	char port[16];

	snprintf(port, sizeof(port), "%d", e->port);
	for (const char *p = in; *p; p++) {
		const char *val = NULL;
		size_t skip = 0;
		if (p[0] == '{' && p[1] == '{') {
			kv_buf_putc(&b, '{');
			p++;
			continue;
		}
		if (*p == '{') {
			static const char *const names[] = { "{port}", "{host}", "{model}", "{name}",
							     "{log_dir}", "{url}" };
			const char *vals[] = { port, e->host, e->model ? e->model : "", e->name,
					       log_dir, e->base_url };
			for (size_t i = 0; i < KV_ARRAY_SIZE(names); i++)
				if (!strncmp(p, names[i], strlen(names[i]))) {
					val = vals[i];
					skip = strlen(names[i]);
				}
		}
		if (val) {
			kv_buf_puts(&b, val);
			p += skip - 1;
		} else {
			kv_buf_putc(&b, *p);
		}
	}
	return kv_buf_detach(&b, NULL);
}

/* The kvserve program: $KVSERVE, next to our own executable, else PATH. */
static char *kvserve_path(void)
{
	const char *env = getenv("KVSERVE");
	char self[PATH_MAX];
	ssize_t n;

	if (env && *env)
		return xstrdup(env);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		char *slash, *cand;
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			cand = xasprintf("%s/kvserve", self);
			if (!access(cand, X_OK))
				return cand;
			free(cand);
		}
	}
	return xstrdup("kvserve");
}

static char *kv_transfer_json(const struct kvb_suite_engine *c)
{
	json_t *j = json_object(), *over;
	char *out = NULL;

	if (c->connector && !strcmp(c->connector, "lmcache")) {
		json_object_set_new(j, "kv_connector", json_string("LMCacheConnectorV1"));
		json_object_set_new(j, "kv_role", json_string("kv_both"));
	} else if (c->connector && !strcmp(c->connector, "pegaflow")) {
		json_object_set_new(j, "kv_connector", json_string("PegaKVConnector"));
		json_object_set_new(j, "kv_role", json_string("kv_both"));
		json_object_set_new(j, "kv_connector_module_path", json_string("pegaflow.connector"));
	}
	if (c->kv_transfer_config) {
		over = json_loads(c->kv_transfer_config, 0, NULL);
		if (over)
			json_object_update(j, over);
		json_decref(over);
	}
	if (json_object_size(j))
		out = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(j);
	return out;
}

int kvb_engine_prepare(struct kvb_engine *e, const struct kvb_suite_engine *c,
		       const struct kvb_suite *s, const char *log_dir, int fixed_port)
{
	char **v = NULL, **env = NULL;
	size_t n = 0, ne = 0;
	const char *p = c->preset;
	char port[16];
	int prefix = c->prefix_caching;

	memset(e, 0, sizeof(*e));
	e->name = xstrdup(c->name);
	e->cfg = c;
	e->preset = xstrdup(p);
	e->host = xstrdup(c->host);
	e->startup_timeout_s = c->startup_timeout_s;
	e->stop_grace_s = c->stop_grace_s;
	e->model = c->model ? xstrdup(c->model) : s->model ? xstrdup(s->model) : NULL;
	if (!strcmp(p, "kvserve") && !e->model)
		e->model = xstrdup("kv-tiny");
	e->log_stdout = xasprintf("%s/%s.stdout.log", log_dir, c->name);
	e->log_stderr = xasprintf("%s/%s.stderr.log", log_dir, c->name);

	if (!strcmp(p, "url")) {
		size_t len = strlen(c->url);
		while (len && c->url[len - 1] == '/')
			len--;
		e->base_url = xstrndup(c->url, len);
		if (len >= 3 && !strncmp(e->base_url + len - 3, "/v1", 3))
			e->base_url[len - 3] = '\0';
		e->health_path = xstrdup(c->health_path ? c->health_path : "/v1/models");
		return 0;
	}
	if (!e->model && strcmp(p, "command") && strcmp(p, "pegaflow-server")) {
		kv_error("%s:%d: engines.%s: no model (set model: in the suite or the engine, or "
			 "pass -m MODEL)", s->file, c->line, c->name);
		kvb_engine_release(e);
		return -1;
	}
	e->port = fixed_port ? fixed_port : c->port ? c->port : kvb_free_port(c->host);
	if (!e->port) {
		kv_error("engines.%s: no free port on %s", c->name, c->host);
		kvb_engine_release(e);
		return -1;
	}
	snprintf(port, sizeof(port), "%d", e->port);
	e->base_url = xasprintf("http://%s:%d", strchr(c->host, ':') ? "[::1]" : c->host, e->port);
	e->health_path = xstrdup(c->health_path ? c->health_path : "/health");

	if (!strcmp(p, "kvserve")) {
		v = vpush(v, &n, c->binary ? xstrdup(c->binary) : kvserve_path());
		v = vpush(v, &n, xstrdup("--host"));
		v = vpush(v, &n, xstrdup(c->host));
		v = vpush(v, &n, xstrdup("--port"));
		v = vpush(v, &n, xstrdup(port));
		v = vpush(v, &n, xstrdup("--model"));
		v = vpush(v, &n, xstrdup(e->model));
		if (prefix == 0)
			v = vpush(v, &n, xstrdup("--no-prefix-cache"));
		if (c->max_model_len) {
			v = vpush(v, &n, xstrdup("--max-model-len"));
			v = vpush(v, &n, xasprintf("%lld", (long long)c->max_model_len));
		}
	} else if (!strcmp(p, "vllm")) {
		char *kvt = kv_transfer_json(c);
		v = vpush(v, &n, xstrdup(c->binary ? c->binary : "vllm"));
		v = vpush(v, &n, xstrdup("serve"));
		v = vpush(v, &n, xstrdup(e->model));
		v = vpush(v, &n, xstrdup("--host"));
		v = vpush(v, &n, xstrdup(c->host));
		v = vpush(v, &n, xstrdup("--port"));
		v = vpush(v, &n, xstrdup(port));
		/* PegaFlow's runner turns vLLM's own prefix cache off by default */
		if (prefix < 0 && c->connector && !strcmp(c->connector, "pegaflow"))
			prefix = 0;
		if (prefix == 0)
			v = vpush(v, &n, xstrdup("--no-enable-prefix-caching"));
		else if (prefix == 1)
			v = vpush(v, &n, xstrdup("--enable-prefix-caching"));
		if (c->max_model_len) {
			v = vpush(v, &n, xstrdup("--max-model-len"));
			v = vpush(v, &n, xasprintf("%lld", (long long)c->max_model_len));
		}
		if (kvt) {
			v = vpush(v, &n, xstrdup("--kv-transfer-config"));
			v = vpush(v, &n, kvt);
		}
	} else if (!strcmp(p, "sglang")) {
		v = vpush(v, &n, xstrdup(c->binary ? c->binary : "python3"));
		v = vpush(v, &n, xstrdup("-m"));
		v = vpush(v, &n, xstrdup("sglang.launch_server"));
		v = vpush(v, &n, xstrdup("--model-path"));
		v = vpush(v, &n, xstrdup(e->model));
		v = vpush(v, &n, xstrdup("--host"));
		v = vpush(v, &n, xstrdup(c->host));
		v = vpush(v, &n, xstrdup("--port"));
		v = vpush(v, &n, xstrdup(port));
		v = vpush(v, &n, xstrdup("--enable-metrics"));
		v = vpush(v, &n, xstrdup("--enable-cache-report"));
		if (prefix == 0)
			v = vpush(v, &n, xstrdup("--disable-radix-cache"));
		if (c->max_model_len) {
			v = vpush(v, &n, xstrdup("--context-length"));
			v = vpush(v, &n, xasprintf("%lld", (long long)c->max_model_len));
		}
	} else if (!strcmp(p, "llama.cpp")) {
		v = vpush(v, &n, xstrdup(c->binary ? c->binary : "llama-server"));
		v = vpush(v, &n, xstrdup("-m"));
		v = vpush(v, &n, xstrdup(e->model));
		v = vpush(v, &n, xstrdup("--host"));
		v = vpush(v, &n, xstrdup(c->host));
		v = vpush(v, &n, xstrdup("--port"));
		v = vpush(v, &n, xstrdup(port));
		v = vpush(v, &n, xstrdup("--metrics"));
		if (prefix == 0)
			v = vpush(v, &n, xstrdup("--no-cache-prompt"));
		if (c->max_model_len) {
			v = vpush(v, &n, xstrdup("-c"));
			v = vpush(v, &n, xasprintf("%lld", (long long)c->max_model_len));
		}
	} else if (!strcmp(p, "pegaflow-server")) {
		v = vpush(v, &n, xstrdup(c->binary ? c->binary : "pegaflow-server"));
		v = vpush(v, &n, xstrdup("--http-addr"));
		v = vpush(v, &n, xasprintf("%s:%d", c->host, e->port));
	} else { /* command */
		for (char **a = c->command; *a; a++)
			v = vpush(v, &n, fill(*a, e, log_dir));
	}
	for (char **a = c->args; a && *a; a++)
		v = vpush(v, &n, fill(*a, e, log_dir));
	e->argv = v;

	for (char **a = c->lmcache_env; a && *a; a++)
		env = vpush(env, &ne, xstrdup(*a));
	if (c->gpus)
		env = vpush(env, &ne, xasprintf("CUDA_VISIBLE_DEVICES=%s", c->gpus));
	for (char **a = c->env; a && *a; a++)
		env = vpush(env, &ne, fill(*a, e, log_dir));
	e->env_add = env;
	return 0;
}

void kvb_engine_release(struct kvb_engine *e)
{
	free(e->name);
	free(e->preset);
	vfree(e->argv);
	vfree(e->env_add);
	free(e->host);
	free(e->base_url);
	free(e->health_path);
	free(e->model);
	free(e->log_stdout);
	free(e->log_stderr);
	memset(e, 0, sizeof(*e));
}

static void print_quoted(FILE *out, const char *s)
{
	bool plain = *s != '\0';
	for (const char *p = s; *p; p++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
			    "-_./:=,+@%", *p))
			plain = false;
	if (plain) {
		fputs(s, out);
		return;
	}
	fputc('\'', out);
	for (const char *p = s; *p; p++) {
		if (*p == '\'')
			fputs("'\\''", out);
		else
			fputc(*p, out);
	}
	fputc('\'', out);
}

void kvb_engine_print(FILE *out, const struct kvb_engine *e)
{
	fprintf(out, "engine %s (preset %s)%s\n", e->name, e->preset,
		e->cfg && e->cfg->baseline ? " [baseline]" : "");
	fprintf(out, "  url:    %s (ready when %s answers 200, within %gs)\n", e->base_url,
		e->health_path, e->startup_timeout_s);
	if (!e->argv)
		return;
	for (char **a = e->env_add; a && *a; a++) {
		fputs("  env:    ", out);
		print_quoted(out, *a);
		fputc('\n', out);
	}
	fputs("  argv:  ", out);
	for (char **a = e->argv; *a; a++) {
		fputc(' ', out);
		print_quoted(out, *a);
	}
	fputc('\n', out);
	fprintf(out, "  logs:   %s, %s\n", e->log_stdout, e->log_stderr);
}
