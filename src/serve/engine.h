/*
 * engine.h: the scheduler of kvserve. One engine thread owns the model, the
 * paged KV cache and every running request; HTTP threads submit requests and
 * read their output under the request's mutex.
 *
 * Each step runs one forward batch: one row for every running request that
 * is decoding, plus prompt rows of requests still in prefill, cut so that
 * the batch holds at most max_num_batched_tokens rows (chunked prefill).
 * A request waits until a slot (max_num_seqs) and KV blocks for its whole
 * prompt are free; when decoding runs out of blocks the most recently
 * admitted request is preempted (its blocks freed, recomputed later from
 * the prefix cache). A prompt's full blocks are matched against the prefix
 * cache first; the last prompt token is always computed.
 *
 * Lifetime of a request: engine_submit() returns it with two references,
 * the engine's and the caller's; the caller reads it under r->mu, waits
 * with engine_req_wait(), may engine_req_abort() it, and must
 * engine_req_put() it once. The engine drops its reference when the
 * request finishes.
 */
#ifndef KVS_ENGINE_H
#define KVS_ENGINE_H

#include <pthread.h>

#include "common/compat.h"
#include "common/buf.h"
#include "kv_connector.h"
#include "kvcache.h"
#include "model.h"
#include "tokenizer.h"

struct engine_config {
	int threads;
	int max_num_seqs;
	int max_num_batched_tokens;
	int block_size;
	int num_kv_blocks;
	int max_model_len;
	bool prefix_caching;
	enum model_mm mm;
};

#define ENGINE_MAX_TOP 20
#define ENGINE_MAX_STOP 8

struct engine_sampling {
	int max_tokens;          /* < 0: up to max_model_len */
	int min_tokens;
	bool ignore_eos;
	double temperature;      /* 0: greedy */
	double top_p;            /* (0, 1] */
	bool has_seed;
	uint64_t seed;
	int logprobs;            /* < 0: none; else top alternatives per token (<= ENGINE_MAX_TOP) */
	bool prompt_logprobs;    /* logprobs of prompt tokens too (echo) */
	int nstop;
	char *stop[ENGINE_MAX_STOP]; /* owned by the request after submit */
	char *salt;              /* cache_salt, owned by the request after submit; may be NULL */
	int adapter;             /* 0: the base model; i: the model's adapter i (model.h) */
};

enum engine_finish {
	ENGINE_RUNNING = 0,
	ENGINE_STOP,     /* EOS or a stop string */
	ENGINE_LENGTH,   /* max_tokens or max_model_len */
	ENGINE_ABORT,    /* client went away or engine stopping */
	ENGINE_ERROR,    /* cannot be served (message in error) */
};

struct engine_req {
	/* set at submit, read-only afterwards */
	int32_t *prompt;
	int n_prompt;
	struct engine_sampling sp;
	uint64_t t_arrival_ns;
	uint64_t id;

	/* shared with the engine thread, under mu; cv signals new output */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int n_out;               /* generated tokens so far */
	int32_t *out_tok;        /* [n_out] */
	float *out_lp;           /* [n_out] logprob of the chosen token */
	int32_t *out_top_tok;    /* [n_out][ntop] alternatives, best first */
	float *out_top_lp;
	int ntop;                /* = max(0, sp.logprobs) */
	float *prompt_lp;        /* [n_prompt] NAN where not computed; NULL unless prompt_logprobs */
	int32_t *prompt_top_tok; /* [n_prompt][ntop] */
	float *prompt_top_lp;
	struct kv_buf text;      /* output text, stop strings cut */
	size_t text_ready;       /* text[0..text_ready) is final (held-back tail excluded) */
	enum engine_finish finish;
	int stop_index;          /* stop string that matched, or -1 */
	bool stop_eos;           /* stopped at EOS */
	char error[160];
	int cached_tokens;       /* prompt tokens served from the prefix cache or connector */
	uint64_t t_first_ns;     /* first token, 0 before */
	bool abort_requested;
	int refs;

	/* engine thread only */
	int32_t *all;            /* prompt then output tokens */
	int n_all, cap_all;
	int n_computed;          /* positions whose KV is in the cache */
	int n_hit;               /* leading positions read from shared cached blocks */
	int n_cached;            /* leading positions served by a cache (prefix or connector):
				  * their rows are never written again */
	int *blocks;             /* block table */
	int n_blocks, cap_blocks;
	uint8_t (*keys)[32];     /* keys of full blocks of all[] */
	int n_keys, cap_keys;
	int n_committed;         /* blocks published to the prefix cache */
	bool stored;             /* connector store done (or deferred: save_pending) */
	bool save_pending;       /* store deferred until the request ends (uaf-abort) */
	bool full_hit;           /* full-hit fault: first token to sample without a forward */
	bool plp_pending;        /* prompt logprobs still to compute */
	struct tok_stream ts;
	uint64_t rng;
	struct engine_req *next; /* incoming list */
};

struct engine_stats {
	uint64_t prompt_tokens, generation_tokens;
	uint64_t prefix_queries, prefix_hits;
	uint64_t ext_queries, ext_hits;
	uint64_t preemptions, steps, rows, computed_prompt_tokens;
	uint64_t finished[5];    /* by enum engine_finish */
	uint64_t ttft_buckets[32], ttft_count;
	double ttft_sum;
	uint64_t e2e_buckets[32], e2e_count;
	double e2e_sum;
	int running, waiting;
	int blocks_used, blocks_total, blocks_cached;
	uint64_t evictions;
};

struct engine;

/* Takes ownership of nothing; the model must outlive the engine. */
struct engine *engine_create(struct model *m, const struct engine_config *cfg);
/* Attach the offload connector (before engine_start); the engine frees it. */
void engine_set_connector(struct engine *e, struct kv_connector *c);
/*
 * The fault table the engine-level faults read (rope-shift, full-hit,
 * uaf-abort: offload/fault.h); NULL (the default) turns them off. Not owned:
 * it must outlive the engine (the connector's own table, usually).
 */
struct kvo_faults;
void engine_set_faults(struct engine *e, struct kvo_faults *f);
/* The engine's KV cache (fault injection sets drop_mask/key_bits before engine_start). */
struct kvcache *engine_kvcache(struct engine *e);
/* Starts the engine thread. */
void engine_start(struct engine *e);
/* Finishes every request with ENGINE_ABORT and joins the thread. */
void engine_stop(struct engine *e);
void engine_free(struct engine *e);

/*
 * Queues a request; prompt is copied, sp->stop and sp->salt are taken over
 * (also on failure). NULL with a message when it can never be served (too
 * long for max_model_len or for the KV cache).
 */
struct engine_req *engine_submit(struct engine *e, const int32_t *prompt, int n,
				 struct engine_sampling *sp, char *err, size_t errlen);
/* Waits (r->mu held by the caller) until n_out > seen_tokens, text_ready >
 * seen_text or the request finished, at most timeout_ms. */
void engine_req_wait(struct engine_req *r, int seen_tokens, size_t seen_text, int timeout_ms);
void engine_req_abort(struct engine *e, struct engine_req *r);
void engine_req_put(struct engine_req *r);

/* Without a thread (tests): runs one step; returns the rows computed. */
int engine_step(struct engine *e);
/* Drops cached blocks nobody uses (POST /reset_prefix_cache). */
void engine_reset_prefix_cache(struct engine *e);
void engine_get_stats(struct engine *e, struct engine_stats *st);
/* Prometheus text of the engine (and the connector's, if any). */
void engine_metrics(struct engine *e, const char *model_name, struct kv_buf *out);
const struct model *engine_model(const struct engine *e);
const struct engine_config *engine_config(const struct engine *e);

/* Histogram bucket bounds of vllm:time_to_first_token_seconds. */
extern const double engine_ttft_bounds[];
extern const int engine_ttft_nbounds;

#endif
