/*
 * long-doc-qa: LMCache benchmarks/long_doc_qa (REFERENCE.md §1.7).
 *
 * N documents of L tokens; optional pre-warmup (5 unrelated prompts
 * str(i) + "xx" + " ".join(["hi"] * 1000), warmup=true); the warmup round sends every document once (pass 0, cold);
 * the query round sends the repeated list (repeat_count copies, in tile,
 * interleave or random order); the k-th copy of document i is pass k+1 with
 * key "doc<i>". With hit_miss_ratio H:M, query position p is a miss when
 * p % (H+M) >= H: its prompt gets "<random int> " in front and the key
 * "doc<i>/miss<p>" (a different content, so nothing pairs with it).
 * prompt_format=ids (completions only): each document is exactly L tokens
 * on any engine: ids(str(i)) then ids(" hi") repeated and cut to L, both
 * from the target's /tokenize, sent as token ids; a miss puts
 * ids("<random int> ") in front; the pre-warmup prompts stay text.
 */
#include "common/util.h"

#include "workloads/wl_util.h"
#include "common/banned.h"

static const struct kvb_wl_key ldqa_keys[] = {
	{ "num_documents", "8", "", "number of documents" },
	{ "document_length", "20000", "tokens", "length of each document (see length_unit)" },
	{ "length_unit", "words", "", "words: LMCache's text, L words \"hi\" (~L tokens on BPE tokenizers); bytes: exactly L bytes (L tokens on kvserve)" },
	{ "prompt_format", "text", "", "text, or ids: documents of exactly L tokens, built from the target's /tokenize and sent as token ids (completions only; length_unit is then ignored)" },
	{ "output_len", "100", "tokens", "max_tokens of each request" },
	{ "repeat_count", "2", "", "copies of each document in the query round" },
	{ "repeat_mode", "random", "", "random (shuffled tile), tile (1,2,3,1,2,3) or interleave (1,1,2,2,3,3)" },
	{ "shuffle_seed", "0", "", "seed of the random order (kvbench's generator, not Python's)" },
	{ "hit_miss_ratio", "none", "", "H:M, of every H+M query positions the last M are misses; none = all hits" },
	{ "pre_warmup", "true", "", "send LMCache's 5 unrelated pre-warmup prompts first (warmup, excluded)" },
	{ NULL, NULL, NULL, NULL },
};

static char *ldqa_document(int i, int64_t len, bool bytes)
{
	if (bytes) {
		char tag[32];
		snprintf(tag, sizeof(tag), "%d ", i);
		return kvb_filler(tag, "hi", (size_t)len);
	}
	/* str(i) + " " + " ".join(["hi"] * len) */
	char tag[32];
	int tl = snprintf(tag, sizeof(tag), "%d", i);
	size_t n = (size_t)tl + 3 * (size_t)len;
	char *s = xmalloc(n + 1), *p = s;
	memcpy(p, tag, (size_t)tl);
	p += tl;
	for (int64_t k = 0; k < len; k++) {
		*p++ = ' ';
		*p++ = 'h';
		*p++ = 'i';
	}
	*p = '\0';
	return s;
}

/* r's prompt = pre[0..npre) then ids[0..n) as token ids */
static void ldqa_set_ids(struct kvb_req *r, const int32_t *pre, size_t npre, const int32_t *ids,
			 size_t n)
{
	r->prompt_ids = xmalloc(KV_MAX(npre + n, (size_t)1) * sizeof(*ids));
	if (npre)
		memcpy(r->prompt_ids, pre, npre * sizeof(*ids));
	memcpy(r->prompt_ids + npre, ids, n * sizeof(*ids));
	r->n_prompt_ids = npre + n;
}

static int ldqa_create(const struct kvb_wl_params *p, struct kvb_workload **out)
{
	int64_t ndoc, dlen, olen, rep, sseed;
	const char *unit, *mode, *hm;
	bool prewarm, bytes, ids;
	int32_t **dids = NULL;
	int rc = -1;
	int64_t hits = 0, misses = 0;
	struct kvb_wl_list *l = NULL;
	struct kvb_rng rng;
	int *order = NULL, *occ = NULL;
	char **docs = NULL;
	size_t nq;

	if (kvb_wl_get_int(p, "num_documents", 8, 1, 100000, &ndoc) < 0 ||
	    kvb_wl_get_int(p, "document_length", 20000, 1, 100000000, &dlen) < 0 ||
	    kvb_wl_get_str(p, "length_unit", "words", &unit) < 0 ||
	    kvb_wl_get_int(p, "output_len", 100, 1, 1000000, &olen) < 0 ||
	    kvb_wl_get_int(p, "repeat_count", 2, 1, 10000, &rep) < 0 ||
	    kvb_wl_get_str(p, "repeat_mode", "random", &mode) < 0 ||
	    kvb_wl_get_int(p, "shuffle_seed", 0, 0, INT64_MAX, &sseed) < 0 ||
	    kvb_wl_get_str(p, "hit_miss_ratio", "none", &hm) < 0 ||
	    kvb_wl_get_bool(p, "pre_warmup", true, &prewarm) < 0 ||
	    kvb_wl_get_prompt_format(p, "long-doc-qa", &ids) < 0 ||
	    kvb_wl_check_unused(p, "long-doc-qa") < 0)
		return -1;
	if (strcmp(unit, "words") && strcmp(unit, "bytes")) {
		kv_error("--set length_unit: expected words or bytes, got '%s'", unit);
		return -1;
	}
	bytes = !strcmp(unit, "bytes");
	if (strcmp(mode, "random") && strcmp(mode, "tile") && strcmp(mode, "interleave")) {
		kv_error("--set repeat_mode: expected random, tile or interleave, got '%s'", mode);
		return -1;
	}
	if (*hm && strcmp(hm, "none")) {
		const char *c = strchr(hm, ':');
		char a[32];
		if (!c || (size_t)(c - hm) >= sizeof(a)) {
			kv_error("--set hit_miss_ratio: expected H:M, got '%s'", hm);
			return -1;
		}
		memcpy(a, hm, (size_t)(c - hm));
		a[c - hm] = '\0';
		if (kv_parse_i64(a, 0, 1000000, &hits) < 0 || kv_parse_i64(c + 1, 0, 1000000, &misses) < 0 ||
		    hits + misses == 0) {
			kv_error("--set hit_miss_ratio: expected H:M with H+M > 0, got '%s'", hm);
			return -1;
		}
	}

	nq = (size_t)(ndoc * rep);
	order = xmalloc(nq * sizeof(*order));
	for (size_t k = 0; k < nq; k++) {
		if (!strcmp(mode, "interleave"))
			order[k] = (int)(k / (size_t)rep);
		else
			order[k] = (int)(k % (size_t)ndoc);
	}
	if (!strcmp(mode, "random")) {
		kvb_rng_seed(&rng, (uint64_t)sseed);
		kvb_rng_shuffle_int(&rng, order, nq);
	}
	kvb_rng_seed(&rng, p->seed ^ 0x6c6471616d697373ull);

	l = kvb_wl_list_new();
	if (prewarm)
		for (int i = 0; i < 5; i++) {
			struct kvb_req *r = kvb_req_new(p->endpoint, "prewarm%d", i);
			char tag[32];
			snprintf(tag, sizeof(tag), "%dxx", i);
			{
				/* str(i) + "xx" + " ".join(["hi"] * 1000) */
				char *d = ldqa_document(0, 1000, false);
				char *s = xasprintf("%s%s", tag, d + 2); /* d = "0 hi hi ... hi" */
				kvb_req_set_text(r, s);
				free(s);
				free(d);
			}
			r->warmup = true;
			r->max_tokens = (int)olen;
			kvb_wl_list_add(l, r, false);
		}
	docs = xcalloc((size_t)ndoc, sizeof(*docs));
	dids = xcalloc((size_t)ndoc, sizeof(*dids));
	for (int i = 0; i < ndoc; i++) {
		struct kvb_req *r = kvb_req_new(p->endpoint, "doc%d", i);
		if (ids) {
			char tag[32];
			snprintf(tag, sizeof(tag), "%d", i);
			if (kvb_wl_exact_ids(p, "long-doc-qa", tag, " hi", (size_t)dlen, &dids[i]) < 0) {
				kvb_req_free(r);
				goto out;
			}
			ldqa_set_ids(r, NULL, 0, dids[i], (size_t)dlen);
		} else {
			docs[i] = ldqa_document(i, dlen, bytes);
			kvb_req_set_text(r, docs[i]);
		}
		r->pass = 0;
		r->max_tokens = (int)olen;
		r->context_len = (int)dlen;
		r->query_len = 0;
		kvb_wl_list_add(l, r, i == 0 && prewarm);
	}
	occ = xcalloc((size_t)ndoc, sizeof(*occ));
	for (size_t k = 0; k < nq; k++) {
		int i = order[k];
		bool miss = hits + misses > 0 && (int64_t)(k % (size_t)(hits + misses)) >= hits;
		struct kvb_req *r;
		occ[i]++;
		if (miss) {
			char *s;
			long v = (long)kvb_rng_below(&rng, 20000001) - 10000000;
			r = kvb_req_new(p->endpoint, "doc%d/miss%zu", i, k);
			if (ids) {
				int32_t *pre = NULL;
				size_t npre = 0;
				s = xasprintf("%ld ", v);
				if (p->tokenize(p->tokenize_ctx, s, &pre, &npre) < 0) {
					free(s);
					kvb_req_free(r);
					goto out;
				}
				ldqa_set_ids(r, pre, npre, dids[i], (size_t)dlen);
				free(pre);
			} else {
				s = xasprintf("%ld %s", v, docs[i]);
				kvb_req_set_text(r, s);
			}
			free(s);
		} else {
			r = kvb_req_new(p->endpoint, "doc%d", i);
			if (ids)
				ldqa_set_ids(r, NULL, 0, dids[i], (size_t)dlen);
			else
				kvb_req_set_text(r, docs[i]);
		}
		r->pass = occ[i];
		r->max_tokens = (int)olen;
		r->context_len = (int)dlen;
		r->query_len = 0;
		kvb_wl_list_add(l, r, k == 0);
	}
	*out = kvb_wl_list_workload(l, "long-doc-qa");
	l = NULL;
	rc = 0;
out:
	kvb_wl_list_free(l);
	for (int i = 0; docs && i < ndoc; i++) {
		free(docs[i]);
		free(dids[i]);
	}
	free(docs);
	free(dids);
	free(order);
	free(occ);
	return rc;
}

const struct kvb_wl_def kvb_wl_long_doc_qa = {
	"long-doc-qa",
	"LMCache long_doc_qa: N documents, a cold warmup round, then repeated query rounds",
	ldqa_keys,
	ldqa_create,
};
