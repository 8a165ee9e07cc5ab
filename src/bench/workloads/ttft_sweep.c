/*
 * ttft-sweep: TTFT against input length, cold vs warm (CacheBlend's TTFT
 * table). For each length N and trial T: a cold request (pass 0) with a
 * prompt no earlier request shares (a tag from --seed, N and T in front),
 * then `warm_repeats` identical requests (pass 1..), each waiting for the
 * previous one; key "len=N/trial=T". Prompt = tag + "Hello " repeated, cut
 * to exactly N bytes (length_unit=bytes: N tokens on kvserve's byte
 * tokenizer) or N words "Hello" (length_unit=words: about N tokens on BPE
 * tokenizers). prompt_format=ids (completions only): exactly N tokens on
 * any engine: the tag and " Hello" are tokenized once each by the target's
 * /tokenize, the prompt is ids(tag) then ids(" Hello") repeated and cut to
 * N, sent as a token-id array (length_unit is then ignored).
 */
#include "common/util.h"

#include "common/buf.h"
#include "workloads/wl_util.h"
#include "common/banned.h"

static const struct kvb_wl_key sweep_keys[] = {
	{ "lengths", "512,1024,2048,4096,8192", "tokens", "input lengths (see length_unit)" },
	{ "length_unit", "bytes", "", "bytes: exactly N bytes; words: N words" },
	{ "prompt_format", "text", "", "text, or ids: exactly N tokens, built from the target's /tokenize and sent as token ids (completions only)" },
	{ "trials", "5", "", "cold+warm trials per length" },
	{ "warm_repeats", "1", "", "warm requests after each cold one" },
	{ "output_len", "10", "tokens", "max_tokens (CacheBlend: 10)" },
	{ "logprobs", "-1", "", "top-k logprobs to ask for (-1: none)" },
	{ "echo", "false", "", "teacher-forced: also ask for the prompt's logprobs (completions echo; needs logprobs >= 0)" },
	{ NULL, NULL, NULL, NULL },
};

static int sweep_create(const struct kvb_wl_params *p, struct kvb_workload **out)
{
	const char *lens_s, *unit;
	int64_t trials, warm, olen, lps;
	bool echo;
	int *lens = NULL;
	size_t n_lens;
	struct kvb_wl_list *l;
	struct kvb_rng rng;
	bool words, ids;

	if (kvb_wl_get_str(p, "lengths", "512,1024,2048,4096,8192", &lens_s) < 0 ||
	    kvb_wl_get_str(p, "length_unit", "bytes", &unit) < 0 ||
	    kvb_wl_get_int(p, "trials", 5, 1, 10000, &trials) < 0 ||
	    kvb_wl_get_int(p, "warm_repeats", 1, 1, 1000, &warm) < 0 ||
	    kvb_wl_get_int(p, "output_len", 10, 1, 1000000, &olen) < 0 ||
	    kvb_wl_get_int(p, "logprobs", -1, -1, 1000, &lps) < 0 ||
	    kvb_wl_get_bool(p, "echo", false, &echo) < 0 ||
	    kvb_wl_get_prompt_format(p, "ttft-sweep", &ids) < 0 ||
	    kvb_wl_check_unused(p, "ttft-sweep") < 0)
		return -1;
	if (echo && (lps < 0 || p->endpoint != KVB_EP_COMPLETIONS)) {
		kv_error("--set echo: needs logprobs >= 0 and the completions endpoint");
		return -1;
	}
	if (strcmp(unit, "bytes") && strcmp(unit, "words")) {
		kv_error("--set length_unit: expected bytes or words, got '%s'", unit);
		return -1;
	}
	words = !strcmp(unit, "words");
	if (kvb_parse_int_list("lengths", lens_s, 16, 100000000, &lens, &n_lens) < 0)
		return -1;
	l = kvb_wl_list_new();
	for (size_t i = 0; i < n_lens; i++)
		for (int64_t t = 0; t < trials; t++) {
			char tag[96];
			char *text = NULL;
			int32_t *pids = NULL;
			/* the unique part first: no two trials share even one KV block */
			kvb_rng_seed(&rng, p->seed ^ ((uint64_t)lens[i] << 32) ^ (uint64_t)t);
			snprintf(tag, sizeof(tag), "%016llx-%d-%lld: ",
				 (unsigned long long)kvb_rng_next(&rng), lens[i], (long long)t);
			if (ids) {
				if (kvb_wl_exact_ids(p, "ttft-sweep", tag, " Hello", (size_t)lens[i],
						     &pids) < 0) {
					free(lens);
					kvb_wl_list_free(l);
					return -1;
				}
			} else if (words) {
				struct kv_buf b = KV_BUF_INIT(0);
				kv_buf_puts(&b, tag);
				for (int k = 0; k < lens[i]; k++)
					kv_buf_puts(&b, k ? " Hello" : "Hello");
				text = kv_buf_detach(&b, NULL);
			} else {
				text = kvb_filler(tag, "Hello", (size_t)lens[i]);
			}
			for (int64_t w = 0; w <= warm; w++) {
				struct kvb_req *r = kvb_req_new(p->endpoint, "len=%d/trial=%lld", lens[i],
								(long long)t);
				if (ids) {
					r->prompt_ids = xmalloc((size_t)lens[i] * sizeof(*pids));
					memcpy(r->prompt_ids, pids, (size_t)lens[i] * sizeof(*pids));
					r->n_prompt_ids = (size_t)lens[i];
				} else {
					kvb_req_set_text(r, text);
				}
				r->pass = (int)w;
				r->max_tokens = (int)olen;
				r->logprobs = (int)lps;
				r->echo = echo;
				r->context_len = lens[i];
				r->query_len = 0;
				kvb_wl_list_add(l, r, true);
			}
			free(text);
			free(pids);
		}
	free(lens);
	*out = kvb_wl_list_workload(l, "ttft-sweep");
	return 0;
}

const struct kvb_wl_def kvb_wl_ttft_sweep = {
	"ttft-sweep",
	"TTFT against input length: per length and trial a cold request, then warm repeats",
	sweep_keys,
	sweep_create,
};
