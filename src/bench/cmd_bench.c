/*
 * kvbench bench: one workload (synthetic by default) against one
 * OpenAI-compatible server; statistics on stdout, files with --output.
 */
#include "common/util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>

#include "commands.h"
#include "arrival.h"
#include "fields.h"
#include "metrics.h"
#include "runner.h"
#include "tokenize.h"
#include "suite/suite.h"
#include "common/opt.h"
#include "common/banned.h"

static volatile int cancelled;

static void on_sigint(int sig)
{
	(void)sig;
	cancelled = 1;
}

struct sets {
	struct kvb_kv *kv;
	size_t n;
};

static void add_kv(struct sets *s, const char *k, size_t klen, const char *v)
{
	s->kv = xrealloc(s->kv, (s->n + 1) * sizeof(*s->kv));
	s->kv[s->n].key = xstrndup(k, klen);
	s->kv[s->n].value = xstrdup(v);
	s->kv[s->n].file = NULL;
	s->kv[s->n].line = 0;
	s->kv[s->n].used = false;
	s->n++;
}

static int on_set(const struct kv_opt *opt, const char *arg, void *ctx)
{
	const char *eq = strchr(arg, '=');

	if (!eq || eq == arg) {
		kv_error("bench: --set: expected KEY=VALUE, got '%s'", arg);
		return -1;
	}
	add_kv(ctx, arg, (size_t)(eq - arg), eq + 1);
	return 0;
}

/* The cache-reuse claim of warm passes: /metrics before the first warm
 * request and after the run (docs/checks.md, "cache_path in bench"). */
struct claim {
	const char *url;
	double timeout_s;
	bool warm;                        /* a warm pass (pass >= 1) started */
	int before_rc;                    /* kvb_metrics_counters of the snapshot */
	char *before_err;
	struct kvb_cache_counters before;
};

static void on_pass(void *ctx, size_t item, int pass)
{
	struct claim *c = ctx;

	(void)item;
	if (pass < 1 || c->warm)
		return;
	c->warm = true;
	c->before_rc = kvb_metrics_counters(c->url, c->timeout_s, &c->before, &c->before_err);
}

/* Usage cached tokens of the warm groups (pass >= 1); -1 when none reported. */
static double warm_usage_cached(json_t *groups)
{
	double hits = 0;
	bool known = false;
	size_t i;
	json_t *g;

	json_array_foreach(groups, i, g) {
		json_t *cache = json_object_get(g, "cache");
		if (json_integer_value(json_object_get(g, "pass")) < 1)
			continue;
		if (json_integer_value(json_object_get(cache, "query_tokens")) > 0) {
			known = true;
			hits += (double)json_integer_value(json_object_get(cache, "hit_tokens"));
		}
	}
	return known ? hits : -1;
}

/*
 * cache_path and silent_miss for a run with warm passes. /metrics answering
 * 404 (or with no known counter): the verdict falls back to usage; not
 * answering: a warning, and cache_path fails "not measured" unless usage
 * shows hits. Returns the number of checks written to out (0 or 2).
 */
static int claim_checks(struct claim *c, bool claims, const char *family, json_t *groups,
			struct kvb_check out[2])
{
	struct kvb_cache_counters after, delta;
	double usage = warm_usage_cached(groups);
	char *err = NULL;
	int after_rc;
	const char *why = NULL;

	if (!c->warm)
		return 0;
	memset(&delta, 0, sizeof(delta));
	after_rc = kvb_metrics_counters(c->url, c->timeout_s, &after, &err);
	if (c->before_rc == 0 && after_rc == 0)
		kvb_cache_counters_diff(&c->before, &after, &delta);
	else
		why = c->before_rc ? c->before_err : err;
	if (why && strncmp(why, "http 4", 6)) {
		/* unreachable, timed out: not a missing endpoint */
		kv_warn("bench: /metrics not read (%s): the cache claim rests on usage", why);
		if (claims && !(usage > 0)) {
			kvb_check_set(&out[0], "cache_path", false, NAN, 1, "tokens",
				      "cache path not measured: /metrics not read (%s) and usage shows %s",
				      why, usage < 0 ? "no cached_tokens" : "0 cached tokens");
			kvb_check_silent_miss(&delta, family, &out[1]);
			free(err);
			return 2;
		}
	}
	kvb_check_cache_path(&delta, family, usage, claims, &out[0]);
	if (why && !out[0].passed) {
		size_t l = strlen(out[0].reason);
		snprintf(out[0].reason + l, sizeof(out[0].reason) - l, " (no /metrics: %s)", why);
	}
	kvb_check_silent_miss(&delta, family, &out[1]);
	free(err);
	return 2;
}

static const char *const endpoints[] = { "completions", "chat", NULL };
static const char *const arrivals[] = { "poisson", "constant", "gamma", NULL };

/* `--workload NAME --help`: the keys of that workload. */
static bool workload_help(int argc, char **argv)
{
	const char *name = NULL;
	bool help = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
			help = true;
		else if (!strcmp(argv[i], "--workload") && i + 1 < argc)
			name = argv[i + 1];
		else if (!strncmp(argv[i], "--workload=", 11))
			name = argv[i] + 11;
	}
	if (!help || !name)
		return false;
	if (!kvb_wl_find(name))
		return false;
	kvb_wl_help(stdout, kvb_wl_find(name));
	return true;
}

static void put_set(struct sets *s, const char *k, int64_t v)
{
	char b[32];

	snprintf(b, sizeof(b), "%lld", (long long)v);
	add_kv(s, k, strlen(k), b);
}

int cmd_bench(int argc, char **argv)
{
	const char *url = "http://127.0.0.1:8000", *model = NULL, *endpoint = "completions";
	const char *workload = "synthetic", *arrival = "poisson", *out_dir = NULL;
	const char *api_key_env = NULL, *engine_id = NULL;
	int64_t input_len = 128, output_len = 128, shared = 0, num = 0, conc = 0, logprobs = -1;
	int64_t seed = 0, recv_buf = 2048, abort_every = 0, abort_tokens = 0;
	const char *abort_after = NULL, *cache_family = "auto";
	bool claim_reuse = true;
	double abort_s = 0;
	double duration = 0, rate = 0, burst = 1, max_err = 0, cto = 10, rto = 600;
	bool ignore_eos = true, stream = true, token_ids = false, progress = true;
	struct sets sets = { 0 };
	const struct kv_opt opts[] = {
		KV_OPT_GROUP("Target"),
		KV_OPT_STRING('u', "url", &url, "URL", "base URL of the server (without /v1)"),
		KV_OPT_STRING('m', "model", &model, "NAME", "model name; default: the first of GET /v1/models"),
		KV_OPT_CHOICE(0, "endpoint", &endpoint, endpoints, "completions or chat (/v1/chat/completions)"),
		KV_OPT_STRING(0, "api-key-env", &api_key_env, "VAR", "send the API key held in environment variable VAR (never printed)"),
		KV_OPT_STRING(0, "engine-id", &engine_id, "NAME", "name of the server in results; default: the URL"),
		KV_OPT_DOUBLE(0, "connect-timeout", &cto, "S", 0.001, 3600, "connect timeout (s)"),
		KV_OPT_DOUBLE(0, "request-timeout", &rto, "S", 0.001, 86400, "whole-request timeout (s)"),
		KV_OPT_BOOL(0, "stream", &stream, "stream the answers (SSE); --no-stream: whole bodies, no TTFT/ITL"),
		KV_OPT_BOOL(0, "return-token-ids", &token_ids, "ask for choices[].token_ids (vLLM, kvserve)"),
		KV_OPT_GROUP("Workload"),
		KV_OPT_STRING('w', "workload", &workload, "NAME", "workload (--workload NAME --help lists its keys)"),
		KV_OPT_CALLBACK(0, "set", "KEY=VALUE", on_set, "set a key of the workload (repeatable)"),
		KV_OPT_INT(0, "input-len", &input_len, "N", 1, 1 << 24, "synthetic: prompt length (tokens)"),
		KV_OPT_INT(0, "output-len", &output_len, "N", 1, 1 << 24, "synthetic: max_tokens (tokens)"),
		KV_OPT_INT(0, "shared-prefix-len", &shared, "N", 0, 1 << 24, "synthetic: prefix shared by all prompts (tokens)"),
		KV_OPT_INT(0, "logprobs", &logprobs, "K", -1, 20, "synthetic: ask for top-K logprobs; -1 = none"),
		KV_OPT_BOOL(0, "ignore-eos", &ignore_eos, "synthetic: send ignore_eos (every answer output-len tokens)"),
		KV_OPT_INT('s', "seed", &seed, "N", 0, INT64_MAX, "seed of prompts and arrivals"),
		KV_OPT_GROUP("Load"),
		KV_OPT_INT('n', "num-requests", &num, "N", 0, INT64_MAX, "requests to send; 0 = 100, or no limit with --duration"),
		KV_OPT_DOUBLE('d', "duration", &duration, "S", 0, 1e9, "stop sending after S seconds; 0 = no limit"),
		KV_OPT_INT('c', "concurrency", &conc, "N", 0, 1000000, "closed loop: requests in flight (0 = 1); with --rate: cap (0 = none)"),
		KV_OPT_DOUBLE('r', "rate", &rate, "R", 0, 1e9, "open loop at R requests/s; 0 = closed loop"),
		KV_OPT_CHOICE(0, "arrival", &arrival, arrivals, "open-loop arrivals: poisson, constant or gamma"),
		KV_OPT_DOUBLE(0, "burstiness", &burst, "B", 0.001, 1000, "gamma shape (1 = Poisson, < 1 burstier)"),
		KV_OPT_INT(0, "recv-buffer", &recv_buf, "BYTES", 1024, 1 << 20, "receive buffer per stream (bytes)"),
		KV_OPT_GROUP("Client aborts (a user pressing stop; the other requests are the victims)"),
		KV_OPT_INT(0, "abort-every", &abort_every, "N", 0, 1000000, "abort every Nth non-warmup request (ids N-1, 2N-1, ...); 0 = none"),
		KV_OPT_INT(0, "abort-after-tokens", &abort_tokens, "K", 0, 1 << 24, "close the connection once K output tokens arrived (default 1 without --abort-after)"),
		KV_OPT_STRING(0, "abort-after", &abort_after, "DURATION", "close the connection this long after the send (500ms, 2s)"),
		KV_OPT_GROUP("Cache claim (workloads with warm passes: ttft-sweep, long-doc-qa, mmlu, rag, generation)"),
		KV_OPT_BOOL(0, "claim-reuse", &claim_reuse, "warm passes claim cache reuse: cache_path must see hits (--no-claim-reuse: a baseline engine)"),
		KV_OPT_CHOICE(0, "cache-family", &cache_family, kvb_cache_family_choices, "counters that judge the claim: auto, lmcache, pegaflow, external, apc, sglang"),
		KV_OPT_GROUP("Output"),
		KV_OPT_STRING('o', "output", &out_dir, "DIR", "write DIR/requests.csv, outputs.jsonl, summary.json"),
		KV_OPT_DOUBLE(0, "max-error-rate", &max_err, "F", 0, 1, "exit 1 when the failed fraction exceeds F"),
		KV_OPT_BOOL(0, "progress", &progress, "live progress line on stderr (only on a terminal)"),
		KV_OPT_END,
	};
	struct kv_cmd_info info = {
		"kvbench bench", "[options]",
		"Drive one workload against an OpenAI-compatible server and measure TTFT, ITL,\n"
		"TPOT, end-to-end latency and dispatch lag (latency from the scheduled send time).",
		"Examples:\n"
		"  kvbench bench --url http://127.0.0.1:8000 -n 200 -c 16 --input-len 1024\n"
		"  kvbench bench --rate 20 --arrival gamma --burstiness 0.5 --duration 60 -o out/\n"
		"  kvbench bench --workload synthetic --set prompt_format=ids --help\n"
		"Exit codes: 0 ok, 1 failed fraction above --max-error-rate or a cache check failed,\n"
		"2 usage, 3 runtime failure.",
	};
	struct kvb_wl_params wp = { 0 };
	struct kvb_tokenize_target tt = { 0 };
	const struct kvb_wl_def *def;
	struct kvb_workload *wl = NULL;
	struct kvb_run_opts o;
	struct kvb_run_item item = { 0 };
	struct kvb_run_result res = { 0 };
	json_t *groups = NULL, *sum = NULL;
	int rc = KVB_EXIT_USAGE, npos;
	struct sets all = { 0 };
	struct claim claim = { 0 };
	struct kvb_check checks[2];
	int n_checks = 0;
	bool checks_ok = true;

	if (workload_help(argc, argv))
		return KVB_EXIT_OK;
	/* docs/bench.md is this output: kvbench bench --help-markdown */
	if (argc == 2 && !strcmp(argv[1], "--help-markdown")) {
		kv_opt_markdown(stdout, &info, opts);
		printf("\n## Workload keys\n\n");
		for (const struct kvb_wl_def *const *d = kvb_workloads; *d; d++) {
			printf("### %s\n\n%s\n\n| key | default | unit | meaning |\n|---|---|---|---|\n",
			       (*d)->name, (*d)->summary);
			for (const struct kvb_wl_key *k = (*d)->keys; k && k->name; k++)
				printf("| `%s` | %s | %s | %s |\n", k->name,
				       k->def && *k->def ? k->def : "(required)", k->unit ? k->unit : "",
				       k->help);
			printf("\n");
		}
		return KVB_EXIT_OK;
	}
	npos = kv_opt_parse(&info, opts, argc, argv, &sets);
	if (npos < 0)
		goto out;
	if (npos > 0) {
		kv_error("bench: unexpected argument '%s'", argv[0]);
		goto out;
	}
	if (abort_after && (kvb_parse_duration(abort_after, &abort_s) < 0 || !(abort_s > 0))) {
		kv_error("bench: --abort-after: expected a duration > 0 (500ms, 2s), got '%s'", abort_after);
		goto out;
	}
	if (!abort_every && (abort_after || abort_tokens)) {
		kv_error("bench: --abort-after and --abort-after-tokens need --abort-every N");
		goto out;
	}
	if (api_key_env && (!getenv(api_key_env) || !*getenv(api_key_env))) {
		kv_error("bench: --api-key-env: environment variable %s is not set", api_key_env);
		goto out;
	}
	def = kvb_wl_find(workload);
	if (!def) {
		kv_error("bench: --workload: no workload named '%s'", workload);
		goto out;
	}
	if (!strcmp(def->name, "synthetic")) {
		put_set(&all, "input_len", input_len);
		put_set(&all, "output_len", output_len);
		put_set(&all, "shared_prefix_len", shared);
		put_set(&all, "logprobs", logprobs);
		add_kv(&all, "ignore_eos", 10, ignore_eos ? "true" : "false");
	} else if (input_len != 128 || output_len != 128 || shared || logprobs != -1 || !ignore_eos) {
		kv_error("bench: --input-len, --output-len, --shared-prefix-len, --logprobs and "
			 "--ignore-eos apply to the synthetic workload; use --set with '%s'", def->name);
		goto out;
	}
	for (size_t i = 0; i < sets.n; i++)
		add_kv(&all, sets.kv[i].key, strlen(sets.kv[i].key), sets.kv[i].value);
	wp.kv = all.kv;
	wp.n = all.n;
	wp.seed = (uint64_t)seed;
	wp.model = model;
	wp.endpoint = !strcmp(endpoint, "chat") ? KVB_EP_CHAT : KVB_EP_COMPLETIONS;
	/* prompt_format=ids: workloads ask --url's /tokenize while they are built */
	tt.base_url = url;
	tt.api_key_env = api_key_env;
	tt.timeout_s = rto;
	wp.tokenize = kvb_tokenize_cb;
	wp.tokenize_ctx = &tt;
	if (def->create(&wp, &wl) < 0)
		goto out;

	kvb_run_opts_init(&o);
	o.expr_id = "bench";
	o.seed = (uint64_t)seed;
	o.duration_s = duration;
	o.max_requests = num ? num : (duration > 0 ? 0 : 100);
	o.connect_timeout_s = cto;
	o.request_timeout_s = rto;
	o.out_dir = out_dir;
	o.progress = progress;
	o.cancel = &cancelled;
	o.no_stream = !stream;
	o.recv_buffer = (long)recv_buf;
	o.abort_every = (int)abort_every;
	o.abort_after_tokens = (int)abort_tokens;
	o.abort_after_s = abort_s;
	if (rate > 0) {
		if (kvb_arrival_parse(arrival, &o.arrival) < 0)
			goto out;
		o.rate = rate;
		o.burstiness = burst;
		o.concurrency = (int)conc;
	} else {
		o.arrival = KVB_ARRIVAL_CLOSED;
		o.concurrency = conc ? (int)conc : 1;
	}
	claim.url = url;
	claim.timeout_s = cto > 5 ? cto : 5;
	o.on_pass = on_pass;
	o.on_pass_ctx = &claim;
	item.wl = wl;
	item.target.base_url = url;
	item.target.engine_id = engine_id ? engine_id : url;
	item.target.model = model;
	item.target.api_key_env = api_key_env;
	item.target.return_token_ids = token_ids;

	signal(SIGINT, on_sigint);
	signal(SIGPIPE, SIG_IGN);
	if (kvb_run(&item, 1, &o, &res) < 0) {
		rc = KVB_EXIT_RUNTIME;
		goto out;
	}
	signal(SIGINT, SIG_DFL);
	groups = json_loads(res.groups_json, 0, NULL);
	if (!res.interrupted)
		n_checks = claim_checks(&claim, claim_reuse, cache_family, groups, checks);
	sum = json_pack("{s:s,s:s,s:O,s:{s:s,s:s?,s:s,s:s,s:I,s:f,s:f,s:s,s:i,s:f}}",
			"kvbench_version", KV_VERSION,
			"status", res.interrupted ? "interrupted" : "complete",
			"groups", groups,
			"config", "url", url, "model", model, "endpoint", endpoint,
			"workload", def->name, "seed", (json_int_t)seed, "rate", rate,
			"duration", duration, "arrival", rate > 0 ? arrival : "closed",
			"concurrency", (int)o.concurrency, "burstiness", burst);
	if (n_checks) {
		json_t *a = json_array();
		for (int i = 0; i < n_checks; i++) {
			json_array_append_new(a, kvb_check_to_json(&checks[i]));
			checks_ok &= checks[i].passed;
		}
		json_object_set_new(sum, "checks", a);
		json_object_set_new(json_object_get(sum, "config"), "claim_reuse",
				    json_boolean(claim_reuse));
	}
	if (abort_every) {
		json_object_set_new(sum, "aborted", json_integer((json_int_t)res.aborted));
		json_object_set_new(json_object_get(sum, "config"), "abort_every",
				    json_integer((json_int_t)abort_every));
	}
	if (out_dir) {
		char *path = xasprintf("%s/summary.json", out_dir);
		char *text = json_dumps(sum, JSON_INDENT(1) | JSON_REAL_PRECISION(9));
		size_t len = strlen(text);

		text = xrealloc(text, len + 2);
		text[len++] = '\n';
		if (kv_write_file_atomic(path, text, len) < 0) {
			kv_error("%s: cannot write: %s", path, strerror(errno));
			free(text);
			free(path);
			rc = KVB_EXIT_RUNTIME;
			goto out;
		}
		free(text);
		free(path);
	}
	kvb_summary_print(stdout, groups);
	if (abort_every)
		printf("\naborted by the client: %llu requests (not counted as completed or failed)\n",
		       (unsigned long long)res.aborted);
	if (n_checks)
		printf("\n");
	for (int i = 0; i < n_checks; i++)
		kvb_check_print(stdout, &checks[i]);
	if (res.interrupted) {
		kv_error("bench: interrupted");
		rc = KVB_EXIT_RUNTIME;
	} else if (res.failed &&
		   (double)res.failed / (double)(res.failed + res.completed) > max_err) {
		kv_error("bench: %llu of %llu requests failed (more than --max-error-rate %g)",
			 (unsigned long long)res.failed,
			 (unsigned long long)(res.failed + res.completed), max_err);
		rc = KVB_EXIT_CHECK;
	} else if (!checks_ok) {
		kv_error("bench: a cache check failed (see above; --no-claim-reuse for a baseline engine)");
		rc = KVB_EXIT_CHECK;
	} else {
		rc = KVB_EXIT_OK;
	}
out:
	free(claim.before_err);
	json_decref(groups);
	json_decref(sum);
	kvb_run_result_release(&res);
	if (wl)
		wl->ops->free(wl);
	for (size_t i = 0; i < sets.n; i++) {
		free(sets.kv[i].key);
		free(sets.kv[i].value);
	}
	free(sets.kv);
	for (size_t i = 0; i < all.n; i++) {
		free(all.kv[i].key);
		free(all.kv[i].value);
	}
	free(all.kv);
	return rc;
}
