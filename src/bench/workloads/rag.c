/*
 * rag: CacheBlend's QA over retrieved passages (REFERENCE.md §7). For each
 * sample: every chunk is pre-warmed alone (prefix + chunk, max_tokens 1,
 * warmup=true), then the question is asked over all chunks in `orders`
 * orders (order 0 = as in the file, others seeded permutations), key
 * "rag/<i>/order<o>", pass 0 (and later passes when passes > 1).
 * Prompt (completions): prefix + for each chunk "{title}\n\n{text}\n\n" +
 * query_prompt + normalize_question(q) + "\nAnswer:" (no [INST] wrapper:
 * use the chat endpoint to have the engine apply its own template).
 * expected = the answers joined by "\n" (F1 takes the best line).
 */
#include "common/util.h"

#include <ctype.h>

#include "common/buf.h"
#include "workloads/loaders.h"
#include "workloads/wl_util.h"
#include "common/banned.h"

#define RAG_PREFIX "You will be asked a question after reading several passages. Please directly answer the question based on the given passages. Do NOT repeat the question. The answer should be within 5 words..\nPassages:\n"
#define RAG_QUERY "\n\nAnswer the question directly based on the given passages. Do NOT repeat the question. The answer should be within 5 words. \nQuestion:"

static const struct kvb_wl_key rag_keys[] = {
	{ "path", "", "", "JSONL: {\"ctxs\":[{\"title\",\"text\"}...],\"question\",\"answers\":[...]} (CacheBlend musique shape)" },
	{ "orders", "2", "", "orders of the chunks each question is asked over (1 = file order only)" },
	{ "limit", "0", "", "at most N samples; 0 = all" },
	{ "max_tokens", "32", "tokens", "max_tokens of the answer (CacheBlend: 32)" },
	{ "passes", "1", "", "times each (sample, order) prompt is sent" },
	{ "prewarm", "true", "", "pre-warm each chunk alone first (warmup requests)" },
	{ "logprobs", "-1", "", "top-k logprobs to ask for (-1: none)" },
	{ NULL, NULL, NULL, NULL },
};

static void normalize_question(struct kv_buf *b, const char *q)
{
	size_t l = strlen(q);
	if (l && islower((unsigned char)q[0]) == 0 && isalpha((unsigned char)q[0]))
		kv_buf_putc(b, (char)tolower((unsigned char)q[0]));
	else if (l)
		kv_buf_putc(b, q[0]);
	if (l > 1)
		kv_buf_puts(b, q + 1);
	if (!l || q[l - 1] != '?')
		kv_buf_putc(b, '?');
}

static int rag_create(const struct kvb_wl_params *p, struct kvb_workload **out)
{
	const char *path;
	int64_t orders, limit, max_tokens, passes, lps;
	bool prewarm;
	struct kvb_rag_set set;
	struct kvb_wl_list *l;
	struct kvb_rng rng;
	size_t ns;

	if (kvb_wl_get_str(p, "path", NULL, &path) < 0 ||
	    kvb_wl_get_int(p, "orders", 2, 1, 1000, &orders) < 0 ||
	    kvb_wl_get_int(p, "limit", 0, 0, INT32_MAX, &limit) < 0 ||
	    kvb_wl_get_int(p, "max_tokens", 32, 1, 1000000, &max_tokens) < 0 ||
	    kvb_wl_get_int(p, "passes", 1, 1, 100, &passes) < 0 ||
	    kvb_wl_get_bool(p, "prewarm", true, &prewarm) < 0 ||
	    kvb_wl_get_int(p, "logprobs", -1, -1, 1000, &lps) < 0 ||
	    kvb_wl_check_unused(p, "rag") < 0)
		return -1;
	if (!path) {
		kv_error("--set path: the rag workload needs path=FILE.jsonl");
		return -1;
	}
	if (kvb_rag_load(path, &set) < 0)
		return -1;
	ns = limit > 0 && (size_t)limit < set.n ? (size_t)limit : set.n;
	kvb_rng_seed(&rng, p->seed ^ 0x7261676f72646572ull);
	l = kvb_wl_list_new();
	for (size_t i = 0; i < ns; i++) {
		const struct kvb_rag_item *it = &set.v[i];
		int *ord = xmalloc(it->n_ctx * sizeof(*ord));
		struct kv_buf ans = KV_BUF_INIT(0);
		for (size_t a = 0; a < it->n_answers; a++)
			kv_buf_printf(&ans, "%s%s", a ? "\n" : "", it->answers[a]);
		for (size_t j = 0; prewarm && j < it->n_ctx; j++) {
			struct kvb_req *r = kvb_req_new(p->endpoint, "rag/%zu/chunk%zu", i, j);
			char *s = xasprintf("%s%s\n\n%s\n\n", RAG_PREFIX, it->title[j], it->text[j]);
			kvb_req_set_text(r, s);
			free(s);
			r->warmup = true;
			r->max_tokens = 1;
			kvb_wl_list_add(l, r, false);
		}
		for (int64_t o = 0; o < orders; o++) {
			struct kv_buf b = KV_BUF_INIT(0);
			size_t ctx_len;
			for (size_t j = 0; j < it->n_ctx; j++)
				ord[j] = (int)j;
			if (o > 0)
				kvb_rng_shuffle_int(&rng, ord, it->n_ctx);
			kv_buf_puts(&b, RAG_PREFIX);
			for (size_t j = 0; j < it->n_ctx; j++)
				kv_buf_printf(&b, "%s\n\n%s\n\n", it->title[ord[j]], it->text[ord[j]]);
			ctx_len = b.len;
			kv_buf_puts(&b, RAG_QUERY);
			normalize_question(&b, it->question);
			kv_buf_puts(&b, "\nAnswer:");
			for (int64_t ps = 0; ps < passes; ps++) {
				struct kvb_req *r = kvb_req_new(p->endpoint, "rag/%zu/order%lld", i, (long long)o);
				kvb_req_set_text(r, kv_buf_str(&b));
				r->pass = (int)ps;
				r->max_tokens = (int)max_tokens;
				r->logprobs = (int)lps;
				r->context_len = (int)ctx_len;
				r->query_len = (int)(b.len - ctx_len);
				r->expected = xstrdup(kv_buf_str(&ans));
				/* the question waits for its sample's chunk warmups */
				kvb_wl_list_add(l, r, o == 0 && ps == 0 && prewarm);
			}
			kv_buf_release(&b);
		}
		kv_buf_release(&ans);
		free(ord);
	}
	kvb_rag_set_release(&set);
	*out = kvb_wl_list_workload(l, "rag");
	return 0;
}

const struct kvb_wl_def kvb_wl_rag = {
	"rag",
	"CacheBlend-style QA over passages: chunks pre-warmed one by one, question over several orders",
	rag_keys,
	rag_create,
};
