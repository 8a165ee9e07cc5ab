/*
 * suite.h: a suite file (YAML) loaded into structs, checked against the
 * schema of docs/suite.md.
 *
 *   struct kvb_suite s;
 *   if (kvb_suite_load(&s, "examples/quickstart.yaml", NULL) < 0)
 *           return 2;           // one "FILE:LINE: ..." line was printed
 *   ...
 *   kvb_suite_release(&s);
 *
 * Every scalar value is expanded once at load time: ${VAR} is the value of the
 * environment variable VAR (an error when unset), ${VAR:-default} falls back
 * to default when VAR is unset or empty, $$ is a literal $. Placeholders that
 * only exist when an engine starts are written {port}, {host}, {model},
 * {name}, {log_dir} and are filled by the engine module, not here.
 *
 * Everything in struct kvb_suite is owned by it and freed by
 * kvb_suite_release(). Line numbers are 1-based lines of the suite file.
 */
#ifndef KVB_SUITE_H
#define KVB_SUITE_H

#include "common/compat.h"
#include "workload.h"

/* A check on a test's statistics (docs/suite.md "checks"). */
enum kvb_check_type {
	KVB_CHECK_MAX_TTFT,          /* ttft[stat] of engine/pass <= max */
	KVB_CHECK_MIN_SPEEDUP,       /* baseline ttft / candidate ttft >= min */
	KVB_CHECK_MIN_HIT_RATE,      /* cache.hit_rate >= min */
	KVB_CHECK_MAX_ERROR_RATE,    /* failed / (completed + failed) <= max */
	KVB_CHECK_IDENTITY,          /* outputs of a and b identical (checks module) */
	KVB_CHECK_MAX_ACCURACY_DROP, /* accuracy(baseline) - accuracy(candidate) <= max */
	KVB_CHECK_LOGPROBS,          /* logprob deltas of paired outputs (checks module) */
	KVB_CHECK_CACHE_PATH,        /* the engine's /metrics show cache hits in the pass */
	KVB_CHECK_KEY_ISOLATION,     /* no cross hits between key-probe pairs */
};

struct kvb_suite_check {
	enum kvb_check_type type;
	char *name;        /* shown in results; default built from the type */
	char *engine;      /* max_ttft, min_hit_rate, max_error_rate; NULL = every engine */
	char *baseline;    /* min_speedup, identity (a), max_accuracy_drop */
	char *candidate;   /* min_speedup, identity (b), max_accuracy_drop */
	int pass;          /* which pass; -1 = the last pass of the test */
	int baseline_pass; /* min_speedup: pass of the baseline; -1 = same as pass */
	char *stat;        /* "mean", "p50", "p90", "p99", "p99_9", "max" */
	double limit;      /* the threshold (max or min) */
	/* identity, logprobs: numeric thresholds (docs/checks.md); < 0 = from tolerance */
	char *tolerance;   /* "bf16" (default) or "fp32" */
	double near_tie_nats;
	double max_lp_delta;
	double max_kl;
	bool strict;       /* identity: benign near-ties fail too */
	bool prompt;       /* logprobs: prompt_logprobs (echo) instead of the output's */
	int line;
};

struct kvb_suite_engine {
	char *name;
	char *preset;          /* kvserve, vllm, sglang, llama.cpp, pegaflow-server, url, command */
	char *binary;          /* overrides the preset's program; NULL = preset's */
	char **command;        /* whole argv for preset "command"; NULL-terminated or NULL */
	char **args;           /* appended to the preset's argv; NULL-terminated */
	char **env;            /* "KEY=VALUE", added to the environment; NULL-terminated */
	char *host;            /* default 127.0.0.1 */
	int port;              /* 0 = allocate a free one */
	char *url;             /* preset url: base URL; NULL otherwise */
	char *health_path;     /* NULL = the preset's */
	char *model;           /* NULL = the suite's model */
	double startup_timeout_s;
	double stop_grace_s;
	bool baseline;         /* skipped by --quick */
	int prefix_caching;    /* -1 = engine default, 0 off, 1 on */
	int64_t max_model_len; /* 0 = engine default */
	char *connector;       /* vllm: NULL, "lmcache", "pegaflow" */
	char *kv_transfer_config; /* JSON object text merged over the connector's; or NULL */
	char **lmcache_env;    /* "LMCACHE_KEY=VALUE" from the lmcache: map */
	char *gpus;            /* CUDA_VISIBLE_DEVICES, or NULL */
	char **requires;       /* engines started before this one; NULL-terminated */
	bool return_token_ids;
	char *api_key_env;
	int claims_reuse;      /* -1 = from the preset and args (kvb_suite_engine_claims_reuse) */
	int line;
};

struct kvb_suite_workload {
	char *name;
	char *type;                /* registry name (kvb_wl_find) */
	struct kvb_wl_params params; /* kv[].file points at kvb_suite.file */
	int line;
};

struct kvb_suite_test {
	char *name;
	char *description;
	char *workload;            /* name in workloads: */
	char **engines;            /* NULL-terminated */
	size_t n_engines;
	bool parallel;             /* true: all engines at once; false: one after the other */
	int passes;                /* the experiment is run this many times (0 = cold, 1.. warm) */
	/* run options (struct kvb_run_opts) */
	int concurrency;
	char *arrival;             /* closed, constant, poisson, gamma */
	double rate;
	double burstiness;
	int64_t max_requests;
	double duration_s;
	double request_timeout_s;
	uint64_t seed;
	double timeout_s;          /* whole test; 0 = none */
	struct kvb_suite_check *checks;
	size_t n_checks;
	/* detection matrix (docs/suite.md "Detection matrix") */
	bool claims_reuse;         /* false: no implicit cache_path/silent_miss checks */
	char *fault;               /* label of the injected fault, or NULL */
	char *fclass;              /* FAULTS.md class letter(s), or NULL */
	bool expect_set;           /* expect: was given */
	bool expect_detect;        /* expect: detect (a failing check is the wanted outcome) */
	int repeat;                /* runs of the test (>= 1) */
	bool restart;              /* restart the candidate engine between passes */
	bool stream;               /* false: stream=false requests (no TTFT/ITL) */
	int abort_every;           /* client-side aborts (runner options); 0 = none */
	int abort_after_tokens;
	double abort_after_s;
	char **tags;               /* NULL-terminated or NULL */
	int line;
};

struct kvb_suite {
	char *file;                /* path as given */
	char *name;
	char *model;               /* default model of every engine */
	char *results_dir;         /* default "results" */
	double startup_timeout_s;  /* defaults for engines */
	double stop_grace_s;
	struct kvb_suite_engine *engines;
	size_t n_engines;
	struct kvb_suite_workload *workloads;
	size_t n_workloads;
	struct kvb_suite_test *tests;
	size_t n_tests;
};

/*
 * Loads and checks a suite file. model_override (-m) replaces the suite's
 * model when not NULL. Returns 0, or -1 after printing one error line
 * "FILE:LINE: what is wrong" (s is then released).
 */
int kvb_suite_load(struct kvb_suite *s, const char *path, const char *model_override);
/* The same from a buffer (len bytes, need not be NUL-terminated); name is
 * used as the file name in messages and in kvb_kv.file. */
int kvb_suite_load_buf(struct kvb_suite *s, const char *name, const char *data, size_t len,
		       const char *model_override);
void kvb_suite_release(struct kvb_suite *s);

const struct kvb_suite_engine *kvb_suite_engine_find(const struct kvb_suite *s, const char *name);
const struct kvb_suite_workload *kvb_suite_workload_find(const struct kvb_suite *s, const char *name);

/*
 * ${VAR} / ${VAR:-default} expansion of one string (exposed for tests).
 * Returns a malloc'ed string, or NULL with an error message in *err
 * (malloc'ed, without file:line).
 */
char *kvb_suite_expand(const char *in, char **err);

const char *kvb_check_type_name(enum kvb_check_type t);

/*
 * Whether an engine claims cache reuse (docs/suite.md "claims_reuse"): the
 * claims_reuse key when set, else true for an engine with a cache layer:
 * kvserve with prefix caching on or a connector tier flag among its args,
 * vllm with prefix caching on (its default) or a connector, sglang unless
 * its radix cache is off, llama.cpp unless --no-cache-prompt; false for the
 * url, command and pegaflow-server presets.
 */
bool kvb_suite_engine_claims_reuse(const struct kvb_suite_engine *e);
/* Whether test t carries tag (NULL tag: every test). */
bool kvb_suite_test_tagged(const struct kvb_suite_test *t, const char *tag);
/* A test of the detection matrix: it has fault: or expect:. */
bool kvb_suite_test_is_matrix(const struct kvb_suite_test *t);
/* Seconds from "30", "30s", "500ms", "2m", "1h". 0 or -1. */
int kvb_parse_duration(const char *s, double *out);

#endif
