/*
 * kvserve: a reference CPU inference engine with a paged prefix KV cache.
 * This file holds the table of subcommands and `kvserve serve`.
 *
 * Extension points for other modules (src/serve/offload/):
 *  - commands[]: add `{ "cache", cmd_cache, "..." }`.
 *  - serve_opt_groups[]: add an option group (a KV_OPT_GROUP-headed array
 *    without KV_OPT_END);
 *  - serve_hooks[]: add a function that runs after the engine is created and
 *    before it starts, e.g. to build a connector from those options and call
 *    engine_set_connector(). Non-zero stops kvserve with exit code 2 (the
 *    hook prints its own error line).
 */
#include "common/util.h"

#include <pthread.h>
#include <signal.h>

#include "engine.h"
#include "model.h"
#include "server.h"
#include "offload/offload.h"
#include "offload/remote.h"
#include "common/opt.h"
#include "common/banned.h"

/* ---- serve options ---- */

static const char *o_model = "kv-tiny";
static const char *o_served_name = NULL;
static const char *o_host = "127.0.0.1";
static int64_t o_port = 8000;
static int64_t o_max_model_len = 8192;
static int64_t o_max_num_seqs = 64;
static int64_t o_max_batched = 512;
static int64_t o_block_size = 16;
static int64_t o_num_blocks = 0;
static uint64_t o_kv_bytes = (uint64_t)256 << 20;
static bool o_prefix_cache = true;
static int64_t o_threads = 2;
static const char *o_matmul = "det";
static const char *const matmul_choices[] = { "det", "blas", NULL };
static uint64_t o_max_body = (uint64_t)16 << 20;
static bool o_quiet = false;
static const char *o_perturb = NULL;
static struct model_adapter_config o_adapters[MODEL_MAX_ADAPTERS];
static int o_n_adapters;

/* --adapter NAME=SEED[,rank=R][,alpha=A], repeatable. */
static int adapter_cb(const struct kv_opt *opt, const char *arg, void *ctx)
{
	struct model_adapter_config ac;
	char err[256];
	(void)opt;
	(void)ctx;
	if (o_n_adapters == MODEL_MAX_ADAPTERS) {
		kv_error("serve: --adapter: at most %d adapters", MODEL_MAX_ADAPTERS);
		return -1;
	}
	if (model_adapter_parse(arg, &ac, err, sizeof(err)) < 0) {
		kv_error("serve: --adapter: %s", err);
		return -1;
	}
	for (int i = 0; i < o_n_adapters; i++)
		if (!strcmp(o_adapters[i].name, ac.name)) {
			kv_error("serve: --adapter: '%s' is given twice", ac.name);
			return -1;
		}
	o_adapters[o_n_adapters++] = ac;
	return 0;
}

static const struct kv_opt serve_opts_model[] = {
	KV_OPT_GROUP("Model"),
	KV_OPT_STRING('m', "model", &o_model, "SPEC",
		      "kv-tiny, kv-small or random:dim=D,layers=L,heads=H,kv_heads=K,ffn=F,seed=S"),
	KV_OPT_STRING(0, "served-model-name", &o_served_name, "NAME", "model name in the API (default: the spec)"),
	KV_OPT_INT(0, "max-model-len", &o_max_model_len, "N", 2, 1 << 20, "longest sequence, prompt plus output, in tokens"),
	KV_OPT_INT('t', "threads", &o_threads, "N", 1, 256, "compute threads (own kernels and OpenBLAS)"),
	KV_OPT_CHOICE(0, "matmul", &o_matmul, matmul_choices,
		      "projections: det (own kernel, batch-invariant, bitwise reproducible) or blas (OpenBLAS sgemm)"),
	KV_OPT_STRING(0, "perturb", &o_perturb, "LAYER:SCALE",
		      "scale the attention output weights of one layer (a new weights revision)"),
	KV_OPT_CALLBACK(0, "adapter", "NAME=SEED[,rank=R][,alpha=A]", adapter_cb,
			"serve a low-rank adapter as model NAME (repeatable, up to 16; rank 8, alpha rank/4)"),
};

static const struct kv_opt serve_opts_sched[] = {
	KV_OPT_GROUP("Scheduler and KV cache"),
	KV_OPT_INT(0, "max-num-seqs", &o_max_num_seqs, "N", 1, 4096, "requests running at once"),
	KV_OPT_INT(0, "max-num-batched-tokens", &o_max_batched, "N", 1, 1 << 20,
		   "token rows per step (decodes plus prefill chunks)"),
	KV_OPT_INT(0, "block-size", &o_block_size, "N", 1, 1024, "tokens per KV block"),
	KV_OPT_INT(0, "num-kv-blocks", &o_num_blocks, "N", 0, 1 << 26, "KV blocks (0: from --kv-cache-bytes)"),
	KV_OPT_SIZE(0, "kv-cache-bytes", &o_kv_bytes, "SIZE", "KV cache memory when --num-kv-blocks is 0"),
	KV_OPT_BOOL(0, "prefix-cache", &o_prefix_cache, "automatic prefix caching (--no-prefix-cache turns it off)"),
};

static const struct kv_opt serve_opts_http[] = {
	KV_OPT_GROUP("HTTP"),
	KV_OPT_STRING(0, "host", &o_host, "ADDR", "IPv4 address to listen on"),
	KV_OPT_INT('p', "port", &o_port, "PORT", 0, 65535, "TCP port (0: any free port, printed on stderr)"),
	KV_OPT_SIZE(0, "max-request-bytes", &o_max_body, "SIZE", "largest request body (413 beyond)"),
	KV_OPT_BOOL('q', "quiet", &o_quiet, "no informational messages"),
};

struct opt_group {
	const struct kv_opt *opts;
	size_t n;
};

#define GROUP(a) { a, KV_ARRAY_SIZE(a) }
static const struct opt_group serve_opt_groups[] = {
	GROUP(serve_opts_model),
	GROUP(serve_opts_sched),
	GROUP(serve_opts_http),
};

#define KVO_OPTS_CAP 32 /* room for the KV offload group (offload.h) */

/* The KV offload connector from --kv-* / --kv-config / LMCACHE_*; the engine
 * frees it. Non-zero on a config error (printed). */
static int offload_hook(struct engine *e, const struct model *m)
{
	struct kv_connector *conn = NULL;
	(void)m;
	if (kvo_connector_from_flags(&conn) < 0)
		return -1;
	if (conn) {
		engine_set_connector(e, conn);
		engine_set_faults(e, kvo_connector_faults(conn));
	}
	return 0;
}

typedef int (*serve_hook)(struct engine *e, const struct model *m);
static const serve_hook serve_hooks[] = {
	offload_hook,
	NULL, /* end */
};

static struct kv_opt *build_opts(void)
{
	size_t n = 1 + KVO_OPTS_CAP;
	for (size_t i = 0; i < KV_ARRAY_SIZE(serve_opt_groups); i++)
		n += serve_opt_groups[i].n;
	struct kv_opt *o = xcalloc(n, sizeof(*o)), *p = o;
	for (size_t i = 0; i < KV_ARRAY_SIZE(serve_opt_groups); i++)
		for (size_t k = 0; k < serve_opt_groups[i].n; k++)
			*p++ = serve_opt_groups[i].opts[k];
	p += kvo_opts_copy(p, KVO_OPTS_CAP);
	*p = (struct kv_opt)KV_OPT_END;
	return o;
}

static int parse_perturb(const char *s, struct model_config *cfg)
{
	const char *colon = strchr(s, ':');
	char layer[32];
	int64_t l;
	double sc;
	if (!colon || (size_t)(colon - s) >= sizeof(layer))
		return -1;
	memcpy(layer, s, (size_t)(colon - s));
	layer[colon - s] = 0;
	if (kv_parse_i64(layer, 0, cfg->n_layers - 1, &l) < 0 || kv_parse_double(colon + 1, &sc) < 0)
		return -1;
	cfg->perturb_layer = (int)l;
	cfg->perturb_scale = (float)sc;
	return 0;
}

static int cmd_serve(int argc, char **argv)
{
	struct kv_cmd_info info = {
		"kvserve serve", "[options]",
		"Serve a Llama-style model with deterministic random weights on the CPU, with an\n"
		"OpenAI-compatible API (/v1/completions, /v1/chat/completions, /tokenize,\n"
		"/detokenize, /v1/models, /health, /metrics). See docs/kvserve.md.",
		"Example:\n  kvserve --model kv-tiny --port 8000 --threads 2\n",
	};
	struct kv_opt *opts = build_opts();
	int rc = 2;
	struct model m;
	struct model_config cfg;
	struct engine *e = NULL;
	struct server *srv = NULL;
	char err[512];
	bool model_ok = false;

	int npos = kv_opt_parse(&info, opts, argc, argv, NULL);
	if (npos < 0)
		goto out;
	if (npos > 0) {
		kv_error("serve: unexpected argument '%s'", argv[0]);
		goto out;
	}
	kv_set_quiet(o_quiet);
	if (model_config_parse(o_model, &cfg, err, sizeof(err)) < 0) {
		kv_error("serve: --model: %s", err);
		goto out;
	}
	if (o_perturb && parse_perturb(o_perturb, &cfg) < 0) {
		kv_error("serve: --perturb: expected LAYER:SCALE with LAYER in 0..%d, got '%s'", cfg.n_layers - 1,
			 o_perturb);
		goto out;
	}
	const char *served = o_served_name ? o_served_name : o_model;
	for (int i = 0; i < o_n_adapters; i++) {
		if (!strcmp(o_adapters[i].name, served)) {
			kv_error("serve: --adapter: '%s' is the served model's name", served);
			goto out;
		}
		if (o_adapters[i].rank > cfg.dim) {
			kv_error("serve: --adapter: %s: rank %d is larger than the model dim %d", o_adapters[i].name,
				 o_adapters[i].rank, cfg.dim);
			goto out;
		}
	}
	size_t bb = kvcache_block_bytes((int)o_block_size, cfg.n_layers, cfg.n_kv_heads * cfg.head_dim);
	int64_t nblocks = o_num_blocks ? o_num_blocks : (int64_t)(o_kv_bytes / bb);
	if (nblocks < 1) {
		kv_error("serve: --kv-cache-bytes: %llu bytes hold no block of %zu bytes",
			 (unsigned long long)o_kv_bytes, bb);
		goto out;
	}

	/* signals are taken by sigwait below; every thread inherits the mask */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	model_init(&m, &cfg, (int)o_threads, !strcmp(o_matmul, "blas") ? MODEL_MM_BLAS : MODEL_MM_DET,
		   (int)o_max_model_len);
	model_ok = true;
	for (int i = 0; i < o_n_adapters; i++)
		model_add_adapter(&m, &o_adapters[i]);
	struct engine_config ec = {
		.threads = (int)o_threads,
		.max_num_seqs = (int)o_max_num_seqs,
		.max_num_batched_tokens = (int)o_max_batched,
		.block_size = (int)o_block_size,
		.num_kv_blocks = (int)nblocks,
		.max_model_len = (int)o_max_model_len,
		.prefix_caching = o_prefix_cache,
		.mm = m.mm,
	};
	e = engine_create(&m, &ec);
	for (size_t i = 0; serve_hooks[i]; i++)
		if (serve_hooks[i](e, &m))
			goto out;
	engine_start(e);
	struct server_config sc = { o_host, (int)o_port, served, o_max_body };
	srv = server_start(e, &sc, err, sizeof(err));
	if (!srv) {
		kv_error("serve: %s", err);
		rc = 3;
		goto out;
	}
	for (int i = 0; i < o_n_adapters; i++)
		kv_info("adapter %s: seed %llu, rank %d, alpha %g", o_adapters[i].name,
			(unsigned long long)o_adapters[i].seed, o_adapters[i].rank, (double)o_adapters[i].alpha);
	kv_info("serving %s on http://%s:%d (%lld KV blocks of %lld tokens, %lld threads)", sc.model_name,
		o_host, server_port(srv), (long long)nblocks, (long long)o_block_size, (long long)o_threads);
	int sig = 0;
	sigwait(&sigs, &sig);
	kv_info("signal %d: shutting down", sig);
	rc = 0;
out:
	if (srv)
		server_quiesce(srv);
	if (e)
		engine_stop(e);
	server_stop(srv);
	engine_free(e);
	if (model_ok)
		model_release(&m);
	free(opts);
	return rc;
}

/* ---- commands ---- */

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct cmd commands[] = {
	{ "serve", cmd_serve, "serve the model over HTTP (the default command)" },
	{ "cache", kvo_cmd_cache, "shared KV chunk cache for many engines (no model; docs/offload.md)" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: kvserve [--version] [--help] [COMMAND] [ARGS]\n\n"
		     "A reference CPU inference engine with a paged prefix KV cache.\n\nCommands:\n");
	for (size_t i = 0; i < KV_ARRAY_SIZE(commands); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nWithout a command, or with options first, runs 'serve'.\n"
		     "Run 'kvserve COMMAND --help' for the options of one command.\n");
}

int main(int argc, char **argv)
{
	kv_set_progname("kvserve");
	if (argc >= 2 && (!strcmp(argv[1], "help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version"))) {
		printf("kvserve %s\n", KV_VERSION);
		return 0;
	}
	if (argc >= 2 && argv[1][0] != '-') {
		for (size_t i = 0; i < KV_ARRAY_SIZE(commands); i++)
			if (!strcmp(argv[1], commands[i].name))
				return commands[i].fn(argc - 1, argv + 1);
		kv_error("'%s' is not a kvserve command (see 'kvserve help')", argv[1]);
		return 2;
	}
	/* kvserve [options] == kvserve serve [options] */
	argv[0] = "serve";
	return cmd_serve(argc, argv);
}
