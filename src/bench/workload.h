/*
 * workload.h: the contract between workloads, the client and the runner.
 *
 * A workload is a generator: config + seed in, requests out. It is pulled by
 * the runner (the schedule decides *when*, the workload decides *what*):
 *
 *   runner                         workload
 *   ------                         --------
 *   wl->ops->next(wl, &req)  --->  1: here is a request (ownership moves to
 *                                     the runner, freed with kvb_req_free)
 *                                  0: nothing ready now (a multi-turn session
 *                                     waits for its previous turn); ask again
 *                                     after the next completion
 *                                 -1: finished, no more requests
 *   client sends req, records kvb_result
 *   wl->ops->done(wl, req, res) -> the workload sees every answer (multi-turn
 *                                  history, MMLU scoring, ...); may be NULL
 *
 * All times are CLOCK_MONOTONIC nanoseconds (common/clock.h).
 */
#ifndef KVB_WORKLOAD_H
#define KVB_WORKLOAD_H

#include "common/compat.h"

enum kvb_endpoint {
	KVB_EP_COMPLETIONS, /* POST /v1/completions */
	KVB_EP_CHAT,        /* POST /v1/chat/completions */
};

struct kvb_msg {
	char *role;    /* "system", "user", "assistant" */
	char *content;
};

/* One request to send. Every pointer is owned by the struct. */
struct kvb_req {
	uint64_t id;          /* request_id, unique within one run, from 0 */
	char *key;            /* stable identity of the *content*, the same for the
	                         same prompt in another pass or on another engine
	                         ("doc3/q0", "mmlu/anatomy/17"); checks pair
	                         requests by (key); never NULL */
	int pass;             /* 0-based pass (0 = cold, 1.. = warm); -1 none */
	bool warmup;          /* sent, but excluded from statistics and checks */
	int session;          /* user / conversation id; -1 none */
	int turn;             /* 0-based turn within the session */
	double at_s;          /* open-loop offset from the start of the run in
	                         seconds; < 0: send when the schedule allows */

	enum kvb_endpoint endpoint;
	char *prompt;         /* completions: text prompt, or NULL */
	int32_t *prompt_ids;  /* completions: token-id prompt (used when n > 0) */
	size_t n_prompt_ids;
	struct kvb_msg *msgs; /* chat */
	size_t n_msgs;

	int max_tokens;       /* max_tokens */
	int min_tokens;       /* 0: not sent */
	bool ignore_eos;      /* sent as "ignore_eos": true when set */
	double temperature;   /* 0 = greedy */
	int logprobs;         /* < 0: not requested; k >= 0: chosen + top-k */
	bool echo;            /* completions echo (prompt logprobs on kvserve) */
	char *extra_json;     /* a JSON object whose members are merged into the
	                         body ("cache_salt", "seed", "stop", ...), or NULL */
	char *model;          /* overrides the run's model name, or NULL */

	int context_len;      /* tokens of shared context, -1 unknown (CSV) */
	int query_len;        /* tokens of the query part, -1 unknown (CSV) */
	char *expected;       /* reference answer for scoring, or NULL */
};

enum kvb_status {
	KVB_OK = 0,
	KVB_ERR_CONNECT,   /* refused, DNS, TLS */
	KVB_ERR_RESET,     /* connection closed or reset mid-response */
	KVB_ERR_TIMEOUT,   /* connect or request timeout */
	KVB_ERR_HTTP,      /* HTTP status >= 400; error holds the server's message */
	KVB_ERR_STREAM,    /* malformed SSE or JSON, line too long */
	KVB_ERR_SERVER,    /* an "error" object inside the stream */
	KVB_ERR_CANCELLED, /* run interrupted before the response ended */
	KVB_ABORTED,       /* closed by the client on purpose (--abort-every): not
	                      a failure, left out of statistics and pairing */
	KVB_STATUS_COUNT
};

/* Stable lower-case names used in CSV, JSON and summaries ("ok", "timeout"...). */
const char *kvb_status_name(enum kvb_status s);

struct kvb_top_lp {
	char *token;
	float logprob;
};

/* One generated (or, with echo, prompt) token with its logprob. */
struct kvb_tok_lp {
	char *token;          /* token text as the server sent it */
	float logprob;        /* NAN when the server sent null */
	struct kvb_top_lp *top;
	int n_top;
};

/* What happened to one request. Every pointer is owned by the struct. */
struct kvb_result {
	uint64_t req_id;
	enum kvb_status status;
	int http_status;      /* 0 when no response */
	char *error;          /* one line, NULL when ok */

	/* monotonic ns; 0 = did not happen */
	uint64_t t_sched;     /* when the schedule wanted it sent */
	uint64_t t_send;      /* when the client handed it to the socket */
	uint64_t t_first_byte;
	uint64_t t_first_token; /* first chunk that carries content */
	uint64_t t_end;
	uint64_t *tok_t;      /* arrival time of each output token (a chunk
	                         carrying k tokens gives k equal stamps) */
	size_t n_tok_t;

	int prompt_tokens;      /* from usage; -1 unknown */
	int completion_tokens;  /* from usage, else counted; -1 unknown */
	int cached_tokens;      /* usage.prompt_tokens_details.cached_tokens or
	                           llama.cpp timings.cache_n; -1 unknown */
	char *text;             /* generated text (all choices[0] content) */
	char *finish_reason;    /* "stop", "length", NULL */
	int32_t *token_ids;     /* choices[0].token_ids when the server sends them */
	size_t n_token_ids;
	struct kvb_tok_lp *lps; /* generated tokens' logprobs, when requested */
	size_t n_lps;
	struct kvb_tok_lp *prompt_lps; /* echo'ed prompt logprobs (kvserve), or NULL */
	size_t n_prompt_lps;
};

void kvb_req_free(struct kvb_req *r);
void kvb_result_release(struct kvb_result *r);

struct kvb_workload;

struct kvb_workload_ops {
	const char *name;
	/* 1: *out holds a request; 0: none ready now; -1: finished. */
	int (*next)(struct kvb_workload *wl, struct kvb_req **out);
	/* Called once for every request next() returned, with its result. May be NULL. */
	void (*done)(struct kvb_workload *wl, const struct kvb_req *req,
		     const struct kvb_result *res);
	/* Frees priv and wl itself (the creator of wl calls it; the runner never does). */
	void (*free)(struct kvb_workload *wl);
};

struct kvb_workload {
	const struct kvb_workload_ops *ops;
	void *priv;
};

/* ---- Workload registry and parameters ---------------------------------- */

/*
 * key=value settings of one workload, from `--set key=value` or from a suite
 * file's workload section. file/line say where a value came from, for errors
 * ("suite.yaml:12: num_documents: expected an integer >= 1, got 'x'", or
 * "--set num_documents: ..." when file is NULL).
 */
struct kvb_kv {
	char *key;
	char *value;
	const char *file; /* not owned; NULL for the command line */
	int line;
	bool used;        /* set by the getters; unused keys are errors */
};

struct kvb_wl_params {
	struct kvb_kv *kv;
	size_t n;
	uint64_t seed;      /* --seed */
	const char *model;  /* model name for the requests, may be NULL */
	enum kvb_endpoint endpoint;
	/*
	 * Token-exact prompts (prompt_format=ids): turns text into the target
	 * server's token ids. 0 with *ids (malloc'ed, owned by the caller) and
	 * *n; -1 after printing one error line. NULL when no target is known
	 * (then workloads refuse prompt_format=ids). `kvbench bench` sets it to
	 * kvb_tokenize_cb (tokenize.h) with ctx = a struct kvb_tokenize_target
	 * for --url. Workloads call it only from create(), a few times each.
	 */
	int (*tokenize)(void *ctx, const char *text, int32_t **ids, size_t *n);
	void *tokenize_ctx;
};

/* A documented key of a workload: what `--workload NAME --help` lists. */
struct kvb_wl_key {
	const char *name;  /* snake_case */
	const char *def;   /* default as text, "" for none (required) */
	const char *unit;  /* "tokens", "s", "requests/s", "" */
	const char *help;
};

struct kvb_wl_def {
	const char *name;     /* "synthetic", "long-doc-qa", ... */
	const char *summary;  /* one line */
	const struct kvb_wl_key *keys; /* terminated by { NULL } */
	/* 0 on success; on error prints one line (kv_error) and returns -1. */
	int (*create)(const struct kvb_wl_params *p, struct kvb_workload **out);
};

/* The registry (src/bench/workloads/registry.c). NULL-terminated. */
extern const struct kvb_wl_def *const kvb_workloads[];
const struct kvb_wl_def *kvb_wl_find(const char *name);
/* Prints `--workload NAME --help`: summary and the keys with defaults. */
void kvb_wl_help(FILE *out, const struct kvb_wl_def *def);

/*
 * Getters: look the key up (marking it used), else use the default. On a bad
 * value print one error line naming file:line or --set and return -1.
 */
int kvb_wl_get_int(const struct kvb_wl_params *p, const char *key, int64_t def,
		   int64_t min, int64_t max, int64_t *out);
int kvb_wl_get_double(const struct kvb_wl_params *p, const char *key, double def,
		      double min, double max, double *out);
int kvb_wl_get_bool(const struct kvb_wl_params *p, const char *key, bool def, bool *out);
/* *out points into p (not owned); def may be NULL (then *out = NULL if absent). */
int kvb_wl_get_str(const struct kvb_wl_params *p, const char *key, const char *def,
		   const char **out);
/* -1 with an error naming the first key no getter asked for. */
int kvb_wl_check_unused(const struct kvb_wl_params *p, const char *workload);

#endif
