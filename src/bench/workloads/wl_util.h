/*
 * wl_util.h: pieces shared by the workloads of this folder (not a public
 * API): a seeded generator, request construction, and the "list" workload
 * that hands out a prepared sequence of requests with barriers.
 */
#ifndef KVB_WL_UTIL_H
#define KVB_WL_UTIL_H

#include "common/compat.h"

/* workload.h's registry part sits outside its include guard: include once */
#ifndef KVB_WORKLOAD_H
#include "workload.h"
#endif

/* splitmix64: small, seedable, the same on every platform. */
struct kvb_rng {
	uint64_t s;
};
void kvb_rng_seed(struct kvb_rng *r, uint64_t seed);
uint64_t kvb_rng_next(struct kvb_rng *r);
/* Uniform in [0, n), n >= 1 (rejection sampling, no modulo bias). */
uint64_t kvb_rng_below(struct kvb_rng *r, uint64_t n);
/* Fisher-Yates over n ints. */
void kvb_rng_shuffle_int(struct kvb_rng *r, int *v, size_t n);

/* A request with the contract's defaults: pass -1, session -1, at_s -1,
 * greedy, no logprobs, lengths unknown, the given endpoint; key formatted. */
struct kvb_req *kvb_req_new(enum kvb_endpoint ep, const char *key_fmt, ...) KV_PRINTF(2, 3);
/* Appends a chat message (copies). */
void kvb_req_add_msg(struct kvb_req *r, const char *role, const char *content);
/* The text as the prompt: completions → prompt, chat → one user message. */
void kvb_req_set_text(struct kvb_req *r, const char *text);
/* A deep copy. */
struct kvb_req *kvb_req_dup(const struct kvb_req *r);

/*
 * The list workload: requests handed out in order. An item with barrier
 * set waits until every request handed out before it is done (e.g. warm
 * pass after the cold pass). Ownership of the items moves to the list.
 */
struct kvb_wl_list;
struct kvb_wl_list *kvb_wl_list_new(void);
void kvb_wl_list_add(struct kvb_wl_list *l, struct kvb_req *r, bool barrier);
size_t kvb_wl_list_len(const struct kvb_wl_list *l);
const struct kvb_req *kvb_wl_list_at(const struct kvb_wl_list *l, size_t i);
/* Wraps the list as a workload named name (frees the list with it). ids
 * are assigned 0.. in order. */
struct kvb_workload *kvb_wl_list_workload(struct kvb_wl_list *l, const char *name);
void kvb_wl_list_free(struct kvb_wl_list *l);

/* Parses "512,1024,..." into a malloc'ed array of ints in [min, max]; the
 * error names key. */
int kvb_parse_int_list(const char *key, const char *s, int64_t min, int64_t max,
		       int **out, size_t *n);

/* Filler text of exactly n bytes: tag then repetitions of word + " ". */
char *kvb_filler(const char *tag, const char *word, size_t n);

/*
 * prompt_format=ids: exactly n token ids = ids(tag) then ids(unit) repeated
 * and cut, both from p->tokenize (the target's /tokenize, special tokens
 * off). The text is tokenized, never the ids guessed, so the prompt is
 * tokens this model knows; its length is n on any engine. *out: malloc'ed,
 * owned by the caller. -1 (one error line) when p->tokenize is NULL, when
 * unit yields no ids or when ids(tag) is longer than n; what names the key.
 */
int kvb_wl_exact_ids(const struct kvb_wl_params *p, const char *what, const char *tag,
		     const char *unit, size_t n, int32_t **out);
/* Parses prompt_format (text|ids; default text) into *ids; ids needs the
 * completions endpoint and p->tokenize. */
int kvb_wl_get_prompt_format(const struct kvb_wl_params *p, const char *workload, bool *ids);

#endif
