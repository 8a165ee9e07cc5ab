/*
 * checks.h: correctness and cache-effect checks over recorded outputs.
 *
 * Pure functions over records: nothing here talks HTTP. The records come
 * from outputs.jsonl files (docs/RESULTS.md) or from the runner in memory
 * (the suite fills struct kvb_out_rec itself). Every check yields one
 * struct kvb_check (name, pass/fail, figure, threshold, unit, one-line
 * reason), which renders as a summary.json "checks" entry.
 *
 * Ownership: kvb_outputs owns its records and every string in them. Pairs
 * and divergences point into the outputs they were built from: keep the
 * outputs alive while you use them. Results (kvb_*_result) own their arrays;
 * release them with the matching *_release.
 *
 * Thresholds and what each check can and cannot catch: docs/checks.md.
 */
#ifndef KVB_CHECKS_H
#define KVB_CHECKS_H

#include "common/compat.h"

#include <jansson.h>

/* workload.h's registry part sits outside its include guard: include once */
#ifndef KVB_WORKLOAD_H
#include "workload.h"
#endif

/* ---- one verdict ---------------------------------------------------------- */

struct kvb_check {
	char name[48];       /* "identity", "logprobs", "accuracy", ... */
	bool passed;
	double figure;       /* the measured value the verdict is on */
	double threshold;    /* the limit it was held against */
	char unit[24];       /* "fraction", "nats", "x", "tokens" */
	char reason[320];    /* one line, no newline */
};

/* {"name","passed","figure","threshold","unit","reason"}; NaN/inf → null. */
json_t *kvb_check_to_json(const struct kvb_check *c);
/* "PASS identity: figure 1 (threshold 1 fraction): reason\n" */
void kvb_check_print(FILE *out, const struct kvb_check *c);
void kvb_check_set(struct kvb_check *c, const char *name, bool passed, double figure,
		   double threshold, const char *unit, const char *fmt, ...) KV_PRINTF(7, 8);

/* ---- outputs.jsonl -------------------------------------------------------- */

/* One line of outputs.jsonl (docs/RESULTS.md). Strings owned, may be NULL
 * except key and engine_id (""), status ("ok" when absent). */
struct kvb_out_rec {
	uint64_t request_id;
	char *engine_id;
	int pass;              /* -1 when absent */
	bool warmup;           /* optional "warmup": true; skipped by pairing */
	char *key;
	char *status;
	char *text;            /* NULL when null/absent */
	int32_t *token_ids;    /* NULL when null/absent */
	size_t n_token_ids;
	bool has_token_ids;
	char *finish_reason;
	struct kvb_tok_lp *lps; /* NULL when null/absent */
	size_t n_lps;
	struct kvb_tok_lp *prompt_lps;
	size_t n_prompt_lps;
	char *expected;
	int cached_tokens;     /* usage cached prompt tokens; -1 when absent */
	int line;              /* line in the file, for messages */
};

struct kvb_outputs {
	struct kvb_out_rec *v;
	size_t n;
	char *path;
};

/*
 * Reads an outputs.jsonl file (at most 1 GiB, lines of at most 64 MiB).
 * Empty lines are skipped. 0, or -1 after printing "FILE:LINE: what is
 * wrong" (bad JSON, a field of the wrong type, missing "key").
 */
int kvb_outputs_load(const char *path, struct kvb_outputs *out);
/* The same from a buffer; name is used in messages. */
int kvb_outputs_parse(const char *name, const char *data, size_t len, struct kvb_outputs *out);
void kvb_outputs_release(struct kvb_outputs *o);
/* A record from what the runner holds in memory (deep copy; status from
 * kvb_status_name, pass/warmup/key/expected from req). */
void kvb_out_rec_from_result(struct kvb_out_rec *r, const struct kvb_req *req,
			     const struct kvb_result *res, const char *engine_id);
/* Appends r (moved: r is emptied) to o. */
void kvb_outputs_append(struct kvb_outputs *o, struct kvb_out_rec *r);
/* One outputs.jsonl line as docs/RESULTS.md gives it (plus "warmup" when
 * set); kvb_out_rec_from_json reads it back unchanged. */
json_t *kvb_out_rec_to_json(const struct kvb_out_rec *r);
/* Parses one record from a JSON object (used by the loader and the suite). */
int kvb_out_rec_from_json(const json_t *obj, struct kvb_out_rec *r, const char *file, int line);
void kvb_out_rec_release(struct kvb_out_rec *r);

/* ---- pairing -------------------------------------------------------------- */

struct kvb_pair {
	const struct kvb_out_rec *base; /* baseline (cold pass, or engine without the layer) */
	const struct kvb_out_rec *cand; /* candidate */
};

/* Which records of one side take part. NULL / -1 = any. */
struct kvb_select {
	const char *engine_id;
	int pass;
};

/*
 * Pairs base and candidate records by key (and by pass too when both
 * selections leave pass = -1, so two engines' runs of a multi-pass workload
 * pair pass with pass). Warmup records and records whose status is not "ok"
 * are left out (counted in *n_failed), except status "aborted" (closed by
 * the client on purpose, --abort-every): such a record is counted in
 * *n_aborted (kvb_pair_outputs_ex; may be NULL) and neither it nor its
 * partner forms a pair or counts as unpaired. Duplicate keys pair in file
 * order. *pairs is malloc'ed (free it); *n_unpaired counts records of either
 * side without a partner.
 */
void kvb_pair_outputs(const struct kvb_outputs *base, const struct kvb_select *bs,
		      const struct kvb_outputs *cand, const struct kvb_select *cs,
		      struct kvb_pair **pairs, size_t *n_pairs, size_t *n_unpaired,
		      size_t *n_failed);
void kvb_pair_outputs_ex(const struct kvb_outputs *base, const struct kvb_select *bs,
			 const struct kvb_outputs *cand, const struct kvb_select *cs,
			 struct kvb_pair **pairs, size_t *n_pairs, size_t *n_unpaired,
			 size_t *n_failed, size_t *n_aborted);

/* Every request answered and paired: fails when n_failed > 0 (a request
 * errored on either side: a fault may surface as errors, not wrong text) or,
 * unless allow_unpaired, when a key has no partner. Aborted requests
 * (n_aborted, _ex) never fail it: the reason says "N aborted by the client". */
void kvb_check_completeness(size_t n_pairs, size_t n_unpaired, size_t n_failed,
			    bool allow_unpaired, struct kvb_check *c);
void kvb_check_completeness_ex(size_t n_pairs, size_t n_unpaired, size_t n_failed,
			       size_t n_aborted, bool allow_unpaired, struct kvb_check *c);

/*
 * Tolerance presets of the numeric thresholds (docs/checks.md has the
 * measurements behind them):
 *   bf16 (default): GPU engines, bf16/fp16 logits, batch-shape dependent
 *                   kernels: near-tie 0.1 nats, max |dlp| 0.1, max KL 0.01;
 *   fp32:           exact engines such as kvserve, whose clean noise is
 *                   ~1e-5 nats: near-tie 1e-3, max |dlp| 1e-3, max KL 1e-6.
 */
struct kvb_tolerance {
	const char *name;
	double near_tie_nats;
	double max_lp_delta;
	double max_kl;
};
/* NULL when name is not a preset. */
const struct kvb_tolerance *kvb_tolerance_find(const char *name);

/* ---- 1. identity + divergence classification ------------------------------ */

enum kvb_div_class {
	KVB_DIV_NONE = 0,      /* identical */
	KVB_DIV_NEAR_TIE,      /* benign: baseline's top-1 / candidate-token gap < threshold */
	KVB_DIV_CORRUPTION,    /* anything else, including no logprobs to decide */
};
const char *kvb_div_class_name(enum kvb_div_class c); /* "identical","benign-near-tie","corruption" */

#define KVB_NEAR_TIE_NATS_DEFAULT 0.1

struct kvb_identity_opts {
	double near_tie_nats;   /* gap below which a flip is benign; default above */
	bool strict;            /* benign near-ties fail too */
	const char *divergences_path; /* write differing pairs here (JSONL), or NULL */
};

struct kvb_divergence {
	const struct kvb_pair *pair;
	long char_pos;          /* first differing byte of text; -1 when texts equal */
	long token_pos;         /* first differing token; -1 unknown / ids equal */
	enum kvb_div_class cls;
	double gap;             /* nats at token_pos; NaN when not decidable */
	const char *why;        /* static one-phrase explanation */
};

struct kvb_identity_result {
	size_t n_pairs;
	size_t n_text_identical;
	size_t n_ids_compared;  /* pairs where both sides had token ids */
	size_t n_ids_identical;
	size_t n_near_tie;
	size_t n_corruption;
	struct kvb_divergence *div; /* one per differing pair */
	size_t n_div;
};

/* First differing token between two records: by token ids when both have
 * them, else by logprob token strings; -1 when equal or unknown. */
long kvb_first_token_diff(const struct kvb_out_rec *a, const struct kvb_out_rec *b);
/* Classifies one differing pair at token t (see docs/checks.md). */
enum kvb_div_class kvb_classify_divergence(const struct kvb_out_rec *base,
					   const struct kvb_out_rec *cand, long t,
					   double near_tie_nats, double *gap, const char **why);

/* Fills r and c. Returns 0, -1 when the divergences file cannot be written. */
int kvb_check_identity(const struct kvb_pair *pairs, size_t n,
		       const struct kvb_identity_opts *o, struct kvb_identity_result *r,
		       struct kvb_check *c);
void kvb_identity_result_release(struct kvb_identity_result *r);

/* ---- 2. logprobs ---------------------------------------------------------- */

#define KVB_MAX_LP_DELTA_DEFAULT 0.1   /* nats, max over chosen tokens */
#define KVB_MAX_KL_DEFAULT 0.01        /* nats, max per-position KL over top-k */

struct kvb_lp_opts {
	bool prompt;            /* compare prompt_lps (teacher-forced, echo) instead */
	double max_abs_delta;   /* fail above */
	double max_kl;          /* fail above */
};

struct kvb_lp_stats {
	size_t n_pairs;         /* pairs with logprobs on both sides */
	size_t n_tokens;        /* positions compared (up to the first divergence) */
	double max_abs, mean_abs;          /* |Δ lp| of the chosen tokens */
	size_t n_top;
	double max_abs_top, mean_abs_top;  /* |Δ lp| over tokens in both top-k lists */
	double max_kl, mean_kl;            /* KL(base || cand) over the top-k union */
	size_t n_kl;   /* positions with a KL value */
	const char *worst_key;  /* the pair with max_abs (points into records) */
	long worst_pos;
};

/* Compares one pair, accumulating into s (call kvb_lp_stats_init first). */
void kvb_lp_stats_init(struct kvb_lp_stats *s);
void kvb_lp_compare(const struct kvb_out_rec *base, const struct kvb_out_rec *cand,
		    bool prompt, struct kvb_lp_stats *s);
/* Finishes the means. */
void kvb_lp_stats_finish(struct kvb_lp_stats *s);
/* KL(P || Q) of two top-k lists renormalised over their union; a token
 * missing from one list gets that list's lowest logprob (not counting the
 * chosen token when it sits below all the others: OpenAI-style lists append
 * it when it is outside the top k). */
double kvb_topk_kl(const struct kvb_tok_lp *p, const struct kvb_tok_lp *q);
/* Returns 0 and fills c; c->passed false when a bound is exceeded. When no
 * pair has logprobs, passes with "not measured" (figure NaN): 1 is returned. */
int kvb_check_logprobs(const struct kvb_pair *pairs, size_t n, const struct kvb_lp_opts *o,
		       struct kvb_lp_stats *s, struct kvb_check *c);

/* ---- 3. accuracy ---------------------------------------------------------- */

/* Wilson score interval for k successes out of n at normal quantile z
 * (1.959964 for 95%). n = 0 gives [0, 1]. */
void kvb_wilson(size_t k, size_t n, double z, double *lo, double *hi);
/* Exact McNemar test: two-sided binomial p-value of b vs c discordant pairs
 * under p = 1/2 (1.0 when b + c = 0). */
double kvb_mcnemar_exact(size_t b, size_t c);

/*
 * Is a generated answer right? By the shape of expected:
 * - one letter A-D (MMLU): the letter with the highest logprob among A-D in
 *   the first token's top list when there is one, else the first A-D
 *   character of the stripped text (LMCache's rule, fallback none);
 * - a number (gsm8k): the number after "####" in the text, else the last
 *   number in the text; compared numerically after removing , and $;
 * - otherwise: SQuAD-normalised exact match against any line of expected.
 */
bool kvb_answer_correct(const struct kvb_out_rec *r);
/* The letter chosen for MMLU ('A'..'D'), 0 if none. */
char kvb_mcq_choice(const struct kvb_out_rec *r);

#define KVB_MAX_ACC_DROP_DEFAULT 0.02
#define KVB_ALPHA_DEFAULT 0.05

struct kvb_acc_opts {
	double max_drop;        /* fraction (0.02 = 2 points) */
	double alpha;           /* significance level of McNemar */
};

struct kvb_acc_result {
	size_t n;               /* pairs with an expected answer */
	size_t base_correct, cand_correct;
	double base_acc, base_lo, base_hi; /* Wilson 95% */
	double cand_acc, cand_lo, cand_hi;
	size_t b;               /* base right, cand wrong */
	size_t c;               /* base wrong, cand right */
	double p_value;         /* exact McNemar */
	double drop;            /* base_acc - cand_acc */
};

/* figure = drop. Fails when drop > max_drop and p < alpha (a significant
 * drop beyond the allowance). Both sides are scored against the baseline's
 * expected (the candidate's when the baseline has none). Returns 1 (and
 * passes, "not measured") when no pair has an expected answer. */
int kvb_check_accuracy(const struct kvb_pair *pairs, size_t n, const struct kvb_acc_opts *o,
		       struct kvb_acc_result *r, struct kvb_check *c);

/* ---- 4. text quality ------------------------------------------------------ */

/* SQuAD normalisation into out (cap outsz): lowercase, ASCII punctuation
 * dropped, articles a/an/the dropped, whitespace collapsed. */
void kvb_squad_normalize(const char *s, char *out, size_t outsz);
/* CacheBlend's parse_generation: strip leading newlines, cut at the next
 * newline, a leading yes/no becomes "Yes"/"No". malloc'ed. */
char *kvb_parse_generation(const char *s);
/* Token F1 after SQuAD normalisation (whitespace tokens, multiset overlap).
 * Both empty → 1, one empty → 0. */
double kvb_f1(const char *pred, const char *gold);
/* ROUGE-L F-measure: LCS over rouge_score's default tokens (lowercase,
 * runs of [a-z0-9]), no stemmer. Either empty → 0. */
double kvb_rouge_l(const char *pred, const char *gold);
/* Max of f over the lines of golds (answers joined by '\n'). */
double kvb_best_over_lines(double (*f)(const char *, const char *), const char *pred,
			   const char *golds);

/*
 * Paired bootstrap of mean(y - x): `iters` resamples of the n pairs with a
 * splitmix64 generator seeded with seed; percentile interval at level
 * (0.95). Writes the point estimate and the interval.
 */
void kvb_bootstrap_diff(const double *x, const double *y, size_t n, unsigned iters,
			uint64_t seed, double level, double *mean, double *lo, double *hi);

#define KVB_MAX_QUALITY_DROP_DEFAULT 0.02
#define KVB_BOOTSTRAP_ITERS 2000

struct kvb_quality_opts {
	double max_drop;        /* allowed mean drop (baseline - candidate) */
	uint64_t seed;
};

struct kvb_quality_result {
	size_t n;
	double base_f1, cand_f1, f1_diff, f1_lo, f1_hi;   /* diff = cand - base */
	double base_rl, cand_rl, rl_diff, rl_lo, rl_hi;
};

/* Two checks: c[0] = "f1", c[1] = "rouge_l", figure = mean drop (baseline -
 * candidate). Each fails when the drop exceeds max_drop and the bootstrap
 * interval of (candidate - baseline) lies below 0 (a significant drop beyond
 * the allowance). Predictions go through kvb_parse_generation first.
 * Returns 1 (both pass, "not measured") when no pair has an expected text. */
int kvb_check_quality(const struct kvb_pair *pairs, size_t n, const struct kvb_quality_opts *o,
		      struct kvb_quality_result *r, struct kvb_check c[2]);

/* ---- 5. cache effect ------------------------------------------------------ */

double kvb_mean(const double *v, size_t n);  /* NaN when n = 0 */
double kvb_stddev(const double *v, size_t n); /* sample (n-1); NaN when n < 2 */

/* mean(cold) / mean(warm) TTFT; passes when >= min_ratio. */
int kvb_check_ttft_ratio(const double *cold, size_t n_cold, const double *warm, size_t n_warm,
			 double min_ratio, struct kvb_check *c);
/* mean(baseline) / mean(candidate) TTFT; passes when >= min_speedup. */
int kvb_check_speedup(const double *base, size_t n_base, const double *cand, size_t n_cand,
		      double min_speedup, struct kvb_check *c);

/* Prometheus text exposition (0.0.4), parsed with caps: at most 65536
 * samples, 4096-byte lines, 32 labels a sample. Comments and HELP/TYPE are
 * skipped; malformed lines are counted and skipped. */
struct kvb_prom_label {
	char *name, *value;
};
struct kvb_prom_sample {
	char *name;
	struct kvb_prom_label *labels;
	int n_labels;
	double value;
};
struct kvb_prom {
	struct kvb_prom_sample *v;
	size_t n;
	size_t n_bad;           /* lines that were not samples */
	bool truncated;         /* a cap was hit */
};
void kvb_prom_parse(const char *text, size_t len, struct kvb_prom *out);
void kvb_prom_release(struct kvb_prom *p);
/* Sum over every series named name or name + "_total" (counters), whose
 * labels include label=value when label is not NULL (value "!x" = not x).
 * *found (may be NULL) says whether any series matched. */
double kvb_prom_sum(const struct kvb_prom *p, const char *name, const char *label,
		    const char *value, bool *found);

/* The cache counters kvbench knows (docs/checks.md lists the names). */
enum kvb_cache_family {
	KVB_CF_VLLM_APC,        /* vllm:prefix_cache_* / gpu_prefix_cache_* (tokens or blocks); kvserve */
	KVB_CF_VLLM_EXTERNAL,   /* vllm:external_prefix_cache_* (KV connector) */
	KVB_CF_LMCACHE,         /* lmcache:num_hit_tokens / num_requested_tokens (or *_retrieve_*) */
	KVB_CF_SGLANG,          /* sglang:cached_tokens_total / prompt_tokens_total */
	KVB_CF_PEGAFLOW,        /* pegaflow_cache_tier_block_requests_total{tier} */
	KVB_CF_COUNT
};
const char *kvb_cache_family_name(enum kvb_cache_family f);
/* "auto" and every family name, NULL-terminated: the choices of --cache-family. */
extern const char *const kvb_cache_family_choices[];

struct kvb_cache_counters {
	bool present[KVB_CF_COUNT];
	double hits[KVB_CF_COUNT];     /* tokens (blocks for pegaflow, old vLLM) */
	double queries[KVB_CF_COUNT];
	bool stores_present;
	double stores;                 /* lmcache stored tokens, pegaflow saved bytes, ... */
};
void kvb_cache_counters_from_prom(const struct kvb_prom *p, struct kvb_cache_counters *c);
/* after - before, per family; a family present on only one side is absent. */
void kvb_cache_counters_diff(const struct kvb_cache_counters *before,
			     const struct kvb_cache_counters *after,
			     struct kvb_cache_counters *delta);
/* The family the verdict uses: `which` names one ("lmcache", "apc", ...),
 * or NULL/"auto" = the first present of external layer families (lmcache,
 * pegaflow, vllm external), else apc, else sglang; vllm external is passed
 * over when it saw no queries but another family did (an engine without a
 * connector may export it at 0). KVB_CF_COUNT: none. */
enum kvb_cache_family kvb_cache_pick(const struct kvb_cache_counters *c, const char *which);

/*
 * Proof of the cache path: a pass that claims reuse must show hits > 0 in
 * the delta (picked family), or usage cached tokens > 0 when usage_cached
 * >= 0 is given. Fails with "cache path never exercised" otherwise (also
 * when no counter is known and usage_cached < 0: nothing proves the path).
 * figure = hit tokens, threshold = 1. claims_reuse false: passes, "no claim".
 */
void kvb_check_cache_path(const struct kvb_cache_counters *delta, const char *which,
			  double usage_cached, bool claims_reuse, struct kvb_check *c);
/*
 * Key isolation (issue 9) over the records of a key-probe run: keys
 * "probe{i}/{value}", requests with identical tokens that differ only in
 * salt, adapter or model. The first request of each pair (lowest
 * request_id among the records of probe{i}) has a fresh prompt, so any hit
 * in the probe is a cross hit. Fails when a later request of a pair reports
 * cached tokens (usage; records with status "ok"), or, when delta (counters
 * over the probe run) is given, when its hits are > 0: in the family named
 * by family, or with NULL/"auto" in any family present. A pair whose first
 * request itself hit (an earlier run with the same seed sent the prompt) is
 * not judged, and its usage cached tokens are subtracted from the counter
 * hits. figure = cross-hit tokens (usage sum, else counter hits), threshold
 * 0; the reason names the first offending key or family. Fails "not
 * measured" when there are no probe records, when neither usage
 * cached_tokens nor a counter is known, or when no pair could be judged.
 */
void kvb_check_key_isolation_records(const struct kvb_outputs *o,
				     const struct kvb_cache_counters *delta, const char *family,
				     struct kvb_check *c);
/* Silent-miss alarm: stores grew in the delta and hits stayed zero → fail. */
void kvb_check_silent_miss(const struct kvb_cache_counters *delta, const char *which,
			   struct kvb_check *c);
/* Hit rate hits/queries of the picked family; NaN when unknown. */
double kvb_cache_hit_rate(const struct kvb_cache_counters *c, const char *which);

#endif
