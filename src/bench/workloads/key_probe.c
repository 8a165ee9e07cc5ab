/*
 * key-probe: pairs of requests with identical prompt tokens that differ
 * only in one key dimension (issue 9): the cache salt, or the model name
 * (kvserve and vLLM serve adapters as model names). A cache that leaves the
 * dimension out of its keys serves the second request from the first one's
 * entries: a cross hit, which kvb_check_key_isolation_records (checks.h)
 * finds in the records' cached_tokens and in the /metrics hit counters.
 *
 * For pair i a fresh prompt (seed-driven random text; prompt_format=ids:
 * exactly input_len tokens from the target's /tokenize) is sent first with
 * values[0] (key "probe{i}/{values[0]}"); only after it completed are the
 * requests with the other values sent (keys "probe{i}/{value}"), and the
 * next pair waits for all of them. Every request is pass 0.
 */
#include "common/util.h"

#include <jansson.h>

#include "workloads/wl_util.h"
#include "common/banned.h"

#define PROBE_MAX_VALUES 16

static const struct kvb_wl_key probe_keys[] = {
	{ "dimension", "salt", "", "key dimension the two requests of a pair differ in: salt (body \"cache_salt\") or model (the request's model name; adapters are model names)" },
	{ "values", "tenant-a,tenant-b", "", "two or more comma-separated values: salts, or model names (required for model); the first is sent first" },
	{ "num_pairs", "4", "", "probe pairs, each with a fresh prompt" },
	{ "input_len", "96", "tokens", "prompt length (bytes of random text: tokens on kvserve; with prompt_format=ids exactly this many tokens)" },
	{ "output_len", "4", "tokens", "max_tokens" },
	{ "prompt_format", "text", "", "text, or ids: token ids from the target's /tokenize (completions only)" },
	{ NULL, NULL, NULL, NULL },
};

/* Splits "a,b,c" into at most PROBE_MAX_VALUES malloc'ed strings. */
static int split_values(const char *s, char **v, size_t *n)
{
	const char *p = s;

	*n = 0;
	for (;;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (!l) {
			kv_error("--set values: empty value in '%s'", s);
			return -1;
		}
		if (*n == PROBE_MAX_VALUES) {
			kv_error("--set values: at most %d values", PROBE_MAX_VALUES);
			return -1;
		}
		v[(*n)++] = xstrndup(p, l);
		for (size_t k = 0; k + 1 < *n; k++)
			if (!strcmp(v[k], v[*n - 1])) {
				kv_error("--set values: '%s' is given twice", v[k]);
				return -1;
			}
		if (!e)
			break;
		p = e + 1;
	}
	if (*n < 2) {
		kv_error("--set values: expected two or more comma-separated values, got '%s'", s);
		return -1;
	}
	return 0;
}

/* Random lower-case words, exactly n bytes; the tag (unique per pair) first. */
static char *random_text(struct kvb_rng *rng, const char *tag, size_t n)
{
	char *t = xmalloc(n + 1);
	size_t tl = strlen(tag), i;

	for (i = 0; i < n; i++) {
		if (i < tl)
			t[i] = tag[i];
		else if (kvb_rng_below(rng, 6) == 0)
			t[i] = ' ';
		else
			t[i] = (char)('a' + kvb_rng_below(rng, 26));
	}
	t[n] = '\0';
	return t;
}

static int probe_create(const struct kvb_wl_params *p, struct kvb_workload **out)
{
	const char *dim, *vals;
	int64_t pairs, ilen, olen;
	char *v[PROBE_MAX_VALUES] = { 0 };
	size_t nv = 0;
	bool ids, model;
	struct kvb_wl_list *l = NULL;
	struct kvb_rng rng;
	int rc = -1;

	if (kvb_wl_get_str(p, "dimension", "salt", &dim) < 0 ||
	    kvb_wl_get_str(p, "values", NULL, &vals) < 0 ||
	    kvb_wl_get_int(p, "num_pairs", 4, 1, 100000, &pairs) < 0 ||
	    kvb_wl_get_int(p, "input_len", 96, 16, 100000000, &ilen) < 0 ||
	    kvb_wl_get_int(p, "output_len", 4, 1, 1000000, &olen) < 0 ||
	    kvb_wl_get_prompt_format(p, "key-probe", &ids) < 0 ||
	    kvb_wl_check_unused(p, "key-probe") < 0)
		return -1;
	if (strcmp(dim, "salt") && strcmp(dim, "model")) {
		kv_error("--set dimension: expected salt or model, got '%s'", dim);
		return -1;
	}
	model = !strcmp(dim, "model");
	if (!vals && model) {
		kv_error("--set values: dimension=model needs two or more model names (e.g. base,lora-a)");
		return -1;
	}
	if (split_values(vals ? vals : "tenant-a,tenant-b", v, &nv) < 0)
		goto out;
	l = kvb_wl_list_new();
	kvb_rng_seed(&rng, p->seed ^ 0x6b65792d70726f62ull);
	for (int64_t i = 0; i < pairs; i++) {
		char tag[64];
		char *text = NULL;
		int32_t *pids = NULL;

		/* the unique part first: no two pairs share even one KV block */
		snprintf(tag, sizeof(tag), "%016llx-%lld: ", (unsigned long long)kvb_rng_next(&rng),
			 (long long)i);
		if (ids) {
			if (kvb_wl_exact_ids(p, "key-probe", tag, " probe", (size_t)ilen, &pids) < 0)
				goto out;
		} else {
			text = random_text(&rng, tag, (size_t)ilen);
		}
		for (size_t k = 0; k < nv; k++) {
			struct kvb_req *r = kvb_req_new(p->endpoint, "probe%lld/%s", (long long)i, v[k]);

			if (ids) {
				r->prompt_ids = xmalloc((size_t)ilen * sizeof(*pids));
				memcpy(r->prompt_ids, pids, (size_t)ilen * sizeof(*pids));
				r->n_prompt_ids = (size_t)ilen;
			} else {
				kvb_req_set_text(r, text);
			}
			r->pass = 0;
			r->max_tokens = (int)olen;
			r->context_len = (int)ilen;
			r->query_len = 0;
			if (model) {
				r->model = xstrdup(v[k]);
			} else {
				json_t *o = json_pack("{s:s}", "cache_salt", v[k]);
				r->extra_json = json_dumps(o, JSON_COMPACT);
				json_decref(o);
			}
			/* values[0] waits for the previous pair; values[1] for values[0];
			   the others go with values[1] */
			kvb_wl_list_add(l, r, k <= 1);
		}
		free(text);
		free(pids);
	}
	*out = kvb_wl_list_workload(l, "key-probe");
	l = NULL;
	rc = 0;
out:
	kvb_wl_list_free(l);
	for (size_t k = 0; k < nv; k++)
		free(v[k]);
	return rc;
}

const struct kvb_wl_def kvb_wl_key_probe = {
	"key-probe",
	"key isolation probe: pairs of identical prompts that differ only in cache salt or model (adapter)",
	probe_keys,
	probe_create,
};
