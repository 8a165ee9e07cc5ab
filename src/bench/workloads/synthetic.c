/*
 * synthetic: random prompts of an exact length, an optional prefix shared by
 * every request, a fixed output length. What `kvbench bench` sends by default.
 *
 * prompt_format=ids sends token-id arrays (completions only): exact token
 * counts on any server. prompt_format=text builds text from a fixed word
 * list; on a byte-level tokenizer (kvserve: 1 ASCII char = 1 token) a text
 * of N characters is N tokens, elsewhere it is about N/4 to N/5 tokens.
 */
#include "common/util.h"

#include "arrival.h"
#include "workload.h"
#include "common/banned.h"

static const char *const words[] = {
	"the", "cache", "block", "token", "model", "serve", "prefix", "page", "layer", "key",
	"value", "query", "batch", "river", "stone", "cloud", "green", "quick", "seven", "north",
	"paper", "light", "sound", "table", "chair", "water", "field", "horse", "music", "glass",
	"apple", "house", "train", "winter", "garden", "window", "silver", "orange", "forest",
	"planet", "signal", "vector", "matrix", "kernel", "thread", "socket", "buffer", "stream",
	"packet", "memory", "engine", "number", "letter", "bridge", "castle", "island", "market",
	"doctor", "farmer", "pencil", "rocket", "spring", "summer", "autumn",
};

struct syn {
	int64_t input_len, output_len, shared, num, vocab, logprobs;
	double temperature;
	bool ids, ignore_eos;
	enum kvb_endpoint ep;
	char *model;
	uint64_t seed;
	uint64_t next_id;
	char *prefix;          /* text mode */
	int32_t *prefix_ids;   /* ids mode */
};

static const struct kvb_wl_key keys[] = {
	{ "input_len", "128", "tokens", "prompt length (characters in text mode)" },
	{ "output_len", "128", "tokens", "max_tokens of each request" },
	{ "shared_prefix_len", "0", "tokens", "leading part of the prompt that every request shares" },
	{ "num_requests", "0", "requests", "requests to send; 0 = no limit (the run's limit applies)" },
	{ "prompt_format", "text", "", "text (word list) or ids (token-id arrays, completions only)" },
	{ "vocab_size", "128", "tokens", "ids mode: ids are drawn from 32..vocab_size-1" },
	{ "ignore_eos", "true", "", "send ignore_eos so every answer has output_len tokens" },
	{ "logprobs", "-1", "", "logprobs to ask for (top-k); -1 = none" },
	{ "temperature", "0", "", "sampling temperature (0 = greedy)" },
	{ NULL, NULL, NULL, NULL },
};

/* Appends words from rng until out holds exactly len characters. */
static void fill_text(char *out, size_t len, struct kvb_rand *rng)
{
	size_t at = 0;

	while (at < len) {
		const char *w = words[kvb_rand_below(rng, KV_ARRAY_SIZE(words))];
		size_t k = strlen(w);

		if (at) {
			out[at++] = ' ';
			if (at == len)
				break;
		}
		k = KV_MIN(k, len - at);
		memcpy(out + at, w, k);
		at += k;
	}
	out[len] = '\0';
}

static int syn_next(struct kvb_workload *wl, struct kvb_req **out)
{
	struct syn *s = wl->priv;
	struct kvb_req *r;
	struct kvb_rand rng;
	size_t n = (size_t)s->input_len, sh = (size_t)s->shared;

	if (s->num && s->next_id >= (uint64_t)s->num)
		return -1;
	r = xcalloc(1, sizeof(*r));
	r->id = s->next_id++;
	r->key = xasprintf("synthetic/%llu", (unsigned long long)r->id);
	r->session = -1;
	r->at_s = -1;
	r->endpoint = s->ep;
	r->max_tokens = (int)s->output_len;
	r->ignore_eos = s->ignore_eos;
	r->temperature = s->temperature;
	r->logprobs = (int)s->logprobs;
	r->model = s->model ? xstrdup(s->model) : NULL;
	r->context_len = (int)sh;
	r->query_len = (int)(n - sh);
	kvb_rand_seed(&rng, s->seed ^ (0x5bd1e995ull * (r->id + 1)));
	if (s->ids) {
		r->prompt_ids = xmalloc(KV_MAX(n, 1) * sizeof(*r->prompt_ids));
		r->n_prompt_ids = n;
		if (sh)
			memcpy(r->prompt_ids, s->prefix_ids, sh * sizeof(*r->prompt_ids));
		for (size_t i = sh; i < n; i++)
			r->prompt_ids[i] = (int32_t)(32 + kvb_rand_below(&rng, (uint64_t)s->vocab - 32));
	} else {
		char *p = xmalloc(n + 1), tag[32];
		size_t k;

		memcpy(p, s->prefix, sh);
		/* the unique part starts with the request number */
		k = (size_t)snprintf(tag, sizeof(tag), "%llu ", (unsigned long long)r->id);
		k = KV_MIN(k, n - sh);
		memcpy(p + sh, tag, k);
		fill_text(p + sh + k, n - sh - k, &rng);
		if (s->ep == KVB_EP_CHAT) {
			r->msgs = xcalloc(1, sizeof(*r->msgs));
			r->msgs[0].role = xstrdup("user");
			r->msgs[0].content = p;
			r->n_msgs = 1;
		} else {
			r->prompt = p;
		}
	}
	*out = r;
	return 1;
}

static void syn_free(struct kvb_workload *wl)
{
	struct syn *s = wl->priv;

	free(s->model);
	free(s->prefix);
	free(s->prefix_ids);
	free(s);
	free(wl);
}

static const struct kvb_workload_ops syn_ops = {
	.name = "synthetic",
	.next = syn_next,
	.done = NULL,
	.free = syn_free,
};

static int syn_create(const struct kvb_wl_params *p, struct kvb_workload **out)
{
	struct syn *s = xcalloc(1, sizeof(*s));
	struct kvb_workload *wl;
	struct kvb_rand rng;
	const char *fmt;

	if (kvb_wl_get_int(p, "input_len", 128, 1, 1 << 24, &s->input_len) < 0 ||
	    kvb_wl_get_int(p, "output_len", 128, 1, 1 << 24, &s->output_len) < 0 ||
	    kvb_wl_get_int(p, "shared_prefix_len", 0, 0, 1 << 24, &s->shared) < 0 ||
	    kvb_wl_get_int(p, "num_requests", 0, 0, INT64_MAX, &s->num) < 0 ||
	    kvb_wl_get_str(p, "prompt_format", "text", &fmt) < 0 ||
	    kvb_wl_get_int(p, "vocab_size", 128, 33, 1 << 30, &s->vocab) < 0 ||
	    kvb_wl_get_bool(p, "ignore_eos", true, &s->ignore_eos) < 0 ||
	    kvb_wl_get_int(p, "logprobs", -1, -1, 20, &s->logprobs) < 0 ||
	    kvb_wl_get_double(p, "temperature", 0, 0, 10, &s->temperature) < 0 ||
	    kvb_wl_check_unused(p, "synthetic") < 0)
		goto fail;
	if (strcmp(fmt, "text") && strcmp(fmt, "ids")) {
		kv_error("synthetic: prompt_format: expected text or ids, got '%s'", fmt);
		goto fail;
	}
	s->ids = !strcmp(fmt, "ids");
	s->ep = p->endpoint;
	if (s->ids && s->ep == KVB_EP_CHAT) {
		kv_error("synthetic: prompt_format=ids needs the completions endpoint");
		goto fail;
	}
	if (s->shared > s->input_len) {
		kv_error("synthetic: shared_prefix_len (%lld) is larger than input_len (%lld)",
			 (long long)s->shared, (long long)s->input_len);
		goto fail;
	}
	s->seed = p->seed;
	s->model = p->model ? xstrdup(p->model) : NULL;
	kvb_rand_seed(&rng, p->seed ^ 0x707265666978ull);
	if (s->ids) {
		s->prefix_ids = xmalloc((size_t)KV_MAX(s->shared, 1) * sizeof(*s->prefix_ids));
		for (int64_t i = 0; i < s->shared; i++)
			s->prefix_ids[i] = (int32_t)(32 + kvb_rand_below(&rng, (uint64_t)s->vocab - 32));
	} else {
		s->prefix = xmalloc((size_t)s->shared + 1);
		fill_text(s->prefix, (size_t)s->shared, &rng);
	}
	wl = xcalloc(1, sizeof(*wl));
	wl->ops = &syn_ops;
	wl->priv = s;
	*out = wl;
	return 0;
fail:
	free(s);
	return -1;
}

const struct kvb_wl_def kvb_wl_synthetic = {
	.name = "synthetic",
	.summary = "random prompts of an exact length with an optional shared prefix",
	.keys = keys,
	.create = syn_create,
};
