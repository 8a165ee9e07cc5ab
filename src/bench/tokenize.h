/*
 * tokenize.h: ask a server's /tokenize for the token ids of a text.
 *
 * One request: POST <base_url>/tokenize with
 *   {"prompt": text, "content": text, "add_special_tokens": false, "add_special": false}
 * so that vLLM (§2.2), SGLang (§3, alias /tokenize) and llama.cpp (§4) all
 * understand it. Accepted responses (REFERENCE.md):
 *   vLLM / SGLang / kvserve: {"tokens": [int], "count": int, ...}
 *   llama.cpp:               {"tokens": [int]} or {"tokens": [{"id": int, "piece": ...}]}
 * When "count" is present it must equal the number of ids.
 */
#ifndef KVB_TOKENIZE_H
#define KVB_TOKENIZE_H

#include "common/compat.h"

/* Largest /tokenize response read (bytes); a longer one is an error. */
#define KVB_TOKENIZE_MAX_RESPONSE ((size_t)64 << 20)

/*
 * Parses a /tokenize response body. 0 with *ids (xmalloc'ed, owned by the
 * caller, never NULL) and *n; -1 with *err (one line, owned by the caller).
 */
int kvb_tokenize_parse(const char *body, size_t len, int32_t **ids, size_t *n, char **err);

/*
 * POSTs text to base_url + "/tokenize" (base_url without /v1; a trailing
 * "/v1" or "/" is dropped). api_key_env: name of an environment variable
 * holding a bearer token, or NULL. timeout_s: whole-request limit. Returns
 * as kvb_tokenize_parse; errors name the URL.
 */
int kvb_tokenize(const char *base_url, const char *text, const char *api_key_env,
		 double timeout_s, int32_t **ids, size_t *n, char **err);

/* The context of kvb_tokenize_cb (struct kvb_wl_params.tokenize_ctx). Not owned. */
struct kvb_tokenize_target {
	const char *base_url;
	const char *api_key_env;
	double timeout_s;
};

/* A kvb_wl_params.tokenize callback: ctx is a struct kvb_tokenize_target;
 * prints one error line (kv_error) on failure. */
int kvb_tokenize_cb(void *ctx, const char *text, int32_t **ids, size_t *n);

#endif
