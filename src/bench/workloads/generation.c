/*
 * generation: greedy generation over a JSONL set, each prompt sent `passes`
 * times (pass 0 cold, then warm), for byte-identity between passes
 * (PegaFlow's run-lm-eval) and exact match of the final number (gsm8k).
 *
 * gsm8k items ({"question","answer"}) are prompted as lm-eval's gsm8k task
 * does: "Question: {question}\nAnswer:", k_shot worked examples taken from
 * the first k items of the file ("Question: q\nAnswer: {answer}" joined by
 * "\n\n"; those items are then not asked), stop at "Question:", "</s>",
 * "<|im_end|>". {"prompt","reference"} items are sent as they are.
 */
#include "common/util.h"

#include "common/buf.h"
#include "workloads/loaders.h"
#include "workloads/wl_util.h"
#include "common/banned.h"

static const struct kvb_wl_key gen_keys[] = {
	{ "path", "", "", "JSONL: {\"question\",\"answer\":\"... #### N\"} (gsm8k) or {\"prompt\",\"reference\"}" },
	{ "k_shot", "0", "", "gsm8k: worked examples from the first k items (not asked)" },
	{ "limit", "0", "", "ask at most N items; 0 = all" },
	{ "max_tokens", "256", "tokens", "max_tokens of each request (lm-eval gsm8k: 256)" },
	{ "passes", "2", "", "times each prompt is sent (pass 0 cold, later warm)" },
	{ "logprobs", "-1", "", "top-k logprobs to ask for (-1: none); needed to classify divergences" },
	{ "echo", "false", "", "teacher-forced: also ask for the prompt's logprobs (completions echo; needs logprobs >= 0)" },
	{ NULL, NULL, NULL, NULL },
};

static int gen_create(const struct kvb_wl_params *p, struct kvb_workload **out)
{
	const char *path;
	int64_t k_shot, limit, max_tokens, passes, lps;
	bool echo;
	struct kvb_gen_set set;
	struct kvb_wl_list *l;
	struct kv_buf shots = KV_BUF_INIT(0);
	size_t first_q, nq;

	if (kvb_wl_get_str(p, "path", NULL, &path) < 0 ||
	    kvb_wl_get_int(p, "k_shot", 0, 0, 1000, &k_shot) < 0 ||
	    kvb_wl_get_int(p, "limit", 0, 0, INT32_MAX, &limit) < 0 ||
	    kvb_wl_get_int(p, "max_tokens", 256, 1, 1000000, &max_tokens) < 0 ||
	    kvb_wl_get_int(p, "passes", 2, 1, 100, &passes) < 0 ||
	    kvb_wl_get_int(p, "logprobs", -1, -1, 1000, &lps) < 0 ||
	    kvb_wl_get_bool(p, "echo", false, &echo) < 0 ||
	    kvb_wl_check_unused(p, "generation") < 0)
		return -1;
	if (echo && (lps < 0 || p->endpoint != KVB_EP_COMPLETIONS)) {
		kv_error("--set echo: needs logprobs >= 0 and the completions endpoint");
		return -1;
	}
	if (!path) {
		kv_error("--set path: the generation workload needs path=FILE.jsonl");
		return -1;
	}
	if (kvb_gen_load(path, &set) < 0)
		return -1;
	if ((size_t)k_shot >= set.n) {
		kv_error("%s: k_shot=%lld leaves no item to ask (%zu items)", path, (long long)k_shot, set.n);
		kvb_gen_set_release(&set);
		return -1;
	}
	for (size_t i = 0; i < (size_t)k_shot; i++) {
		if (!set.v[i].gsm8k) {
			kv_error("%s:%d: k_shot needs gsm8k-shaped items", path, set.v[i].line);
			kvb_gen_set_release(&set);
			kv_buf_release(&shots);
			return -1;
		}
		kv_buf_printf(&shots, "Question: %s\nAnswer: %s\n\n", set.v[i].prompt, set.v[i].answer_full);
	}
	first_q = (size_t)k_shot;
	nq = set.n - first_q;
	if (limit > 0 && (size_t)limit < nq)
		nq = (size_t)limit;
	l = kvb_wl_list_new();
	for (int64_t ps = 0; ps < passes; ps++)
		for (size_t i = first_q; i < first_q + nq; i++) {
			const struct kvb_gen_item *it = &set.v[i];
			struct kvb_req *r = kvb_req_new(p->endpoint, "gen/%zu", i);
			if (it->gsm8k) {
				char *s = xasprintf("%sQuestion: %s\nAnswer:", kv_buf_str(&shots), it->prompt);
				kvb_req_set_text(r, s);
				r->context_len = (int)shots.len;
				r->query_len = (int)(strlen(s) - shots.len);
				free(s);
				r->extra_json = xstrdup("{\"stop\":[\"Question:\",\"</s>\",\"<|im_end|>\"]}");
			} else {
				kvb_req_set_text(r, it->prompt);
			}
			r->pass = (int)ps;
			r->max_tokens = (int)max_tokens;
			r->logprobs = (int)lps;
			r->echo = echo;
			r->expected = it->reference ? xstrdup(it->reference) : NULL;
			kvb_wl_list_add(l, r, i == first_q && ps > 0);
		}
	kv_buf_release(&shots);
	kvb_gen_set_release(&set);
	*out = kvb_wl_list_workload(l, "generation");
	return 0;
}

const struct kvb_wl_def kvb_wl_generation = {
	"generation",
	"greedy generation over a JSONL set (gsm8k shape or prompt/reference), cold then warm",
	gen_keys,
	gen_create,
};
