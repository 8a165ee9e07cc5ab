/*
 * oai.h: reads OpenAI-style responses (/v1/completions, /v1/chat/completions,
 * streamed chunks or whole bodies) into a struct kvb_result.
 *
 * One struct kvb_oai accumulates one request. The caller stamps the arrival
 * time of each chunk (kv_now_ns() when its bytes came in, before any JSON
 * work) and passes it to kvb_oai_chunk(). What is read, per chunk:
 *   - choices[0]: text (completions) or delta.content / delta.reasoning_content
 *     (chat); message.* in whole bodies; token_ids; logprobs in the completions
 *     shape {tokens, token_logprobs, top_logprobs:[{tok: lp}]} or the chat shape
 *     {content:[{token, logprob, top_logprobs:[{token, logprob}]}]};
 *     finish_reason
 *   - usage: prompt_tokens, completion_tokens, prompt_tokens_details.cached_tokens
 *   - timings.cache_n (llama.cpp) as cached tokens
 *   - "error" (object or string) or {"object":"error","message":...}: a
 *     server error event (KVB_ERR_SERVER)
 * Token counting: a chunk carries k tokens when its logprobs list k entries,
 * else when token_ids has k entries, else 1 when its content (or reasoning)
 * is non-empty, else 0 (role-only, empty and usage-only chunks carry none).
 * Each token gets the chunk's arrival stamp; the first stamps t_first_token.
 * With echo (completions), the first usage.prompt_tokens logprobs are the
 * prompt's: kvb_oai_finish() moves them to prompt_lps and drops their stamps.
 */
#ifndef KVB_OAI_H
#define KVB_OAI_H

#include "common/buf.h"
#include "workload.h"

#define KVB_OAI_MAX_TEXT ((size_t)64 << 20)

struct kvb_oai {
	struct kvb_result *res;   /* not owned; filled in */
	enum kvb_endpoint ep;
	bool echo;
	const char *echo_prompt;  /* not owned: stripped from the text with echo */
	struct kv_buf text;
	uint64_t *tok_t;
	size_t n_tok_t, a_tok_t;
	int32_t *ids;
	size_t n_ids, a_ids;
	struct kvb_tok_lp *lps;
	size_t n_lps, a_lps;
	bool done;                /* data: [DONE] seen */
	bool finished;            /* a finish_reason seen */
};

/* res must be zeroed (or released) by the caller; its counters are set to -1. */
void kvb_oai_init(struct kvb_oai *o, struct kvb_result *res, enum kvb_endpoint ep,
		  bool echo, const char *echo_prompt);
/* Frees what was not moved into the result by kvb_oai_finish(). */
void kvb_oai_release(struct kvb_oai *o);

/*
 * One SSE data payload that arrived at t. Returns 0, 1 for "[DONE]", or -1
 * when the chunk is malformed or an error event: res->status and res->error
 * are then set.
 */
int kvb_oai_chunk(struct kvb_oai *o, const char *data, size_t len, uint64_t t);
/* A whole (non-streamed) response body that ended at t. 0 or -1 as above. */
int kvb_oai_body(struct kvb_oai *o, const char *data, size_t len, uint64_t t);
/* Moves text, stamps, token ids and logprobs into the result. */
void kvb_oai_finish(struct kvb_oai *o);

/*
 * The server's message from an error body (JSON error object, or the text
 * itself), as one line of at most 300 bytes, malloc'ed.
 */
char *kvb_oai_error_message(const char *body, size_t len);

/*
 * The JSON body of req, malloc'ed (*len its length). model: the run's model
 * (req->model overrides it). Streams ask for stream_options.include_usage.
 * NULL with *err set (malloc'ed) when req->extra_json is not a JSON object.
 */
char *kvb_oai_request_body(const struct kvb_req *req, const char *model, bool stream,
			   bool return_token_ids, size_t *len, char **err);
/* "/v1/completions" or "/v1/chat/completions". */
const char *kvb_oai_path(enum kvb_endpoint ep);

#endif
