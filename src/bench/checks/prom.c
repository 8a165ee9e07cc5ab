/*
 * Prometheus text exposition parser (bounded) and the cache counters of
 * vLLM, LMCache, SGLang, PegaFlow and kvserve, with the cache-path checks.
 */
#include "common/util.h"

#include <math.h>

#include "checks/checks.h"
#include "common/banned.h"

#define PROM_MAX_SAMPLES 65536
#define PROM_MAX_LINE 4096
#define PROM_MAX_LABELS 32

void kvb_prom_release(struct kvb_prom *p)
{
	for (size_t i = 0; i < p->n; i++) {
		free(p->v[i].name);
		for (int j = 0; j < p->v[i].n_labels; j++) {
			free(p->v[i].labels[j].name);
			free(p->v[i].labels[j].value);
		}
		free(p->v[i].labels);
	}
	free(p->v);
	memset(p, 0, sizeof(*p));
}

static bool name_start(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool name_char(char c)
{
	return name_start(c) || (c >= '0' && c <= '9');
}

static void sample_free(struct kvb_prom_sample *s)
{
	free(s->name);
	for (int j = 0; j < s->n_labels; j++) {
		free(s->labels[j].name);
		free(s->labels[j].value);
	}
	free(s->labels);
	memset(s, 0, sizeof(*s));
}

/* One line (not NUL-terminated, no newline). 0 ok, -1 not a sample. */
static int parse_line(const char *p, size_t len, struct kvb_prom_sample *s)
{
	const char *e = p + len, *q;
	char num[64];
	size_t nl;

	memset(s, 0, sizeof(*s));
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	if (p == e || !name_start(*p))
		return -1;
	q = p;
	while (q < e && name_char(*q))
		q++;
	s->name = xstrndup(p, (size_t)(q - p));
	p = q;
	if (p < e && *p == '{') {
		p++;
		s->labels = xcalloc(PROM_MAX_LABELS, sizeof(*s->labels));
		for (;;) {
			char val[PROM_MAX_LINE];
			size_t vl = 0;
			while (p < e && (*p == ' ' || *p == ','))
				p++;
			if (p < e && *p == '}') {
				p++;
				break;
			}
			if (p == e || !name_start(*p) || s->n_labels >= PROM_MAX_LABELS)
				goto bad;
			q = p;
			while (q < e && name_char(*q))
				q++;
			if (q >= e || *q != '=' || q + 1 >= e || q[1] != '"')
				goto bad;
			s->labels[s->n_labels].name = xstrndup(p, (size_t)(q - p));
			p = q + 2;
			while (p < e && *p != '"') {
				char ch = *p++;
				if (ch == '\\') {
					if (p == e)
						goto bad;
					ch = *p++;
					if (ch == 'n')
						ch = '\n';
				}
				if (vl < sizeof(val) - 1)
					val[vl++] = ch;
			}
			if (p == e)
				goto bad;
			p++; /* closing quote */
			val[vl] = '\0';
			s->labels[s->n_labels].value = xstrdup(val);
			s->n_labels++;
		}
	}
	while (p < e && (*p == ' ' || *p == '\t'))
		p++;
	q = p;
	while (q < e && *q != ' ' && *q != '\t')
		q++;
	nl = (size_t)(q - p);
	if (!nl || nl >= sizeof(num))
		goto bad;
	memcpy(num, p, nl);
	num[nl] = '\0';
	if (!strcmp(num, "+Inf") || !strcmp(num, "Inf"))
		s->value = INFINITY;
	else if (!strcmp(num, "-Inf"))
		s->value = -INFINITY;
	else if (!strcmp(num, "NaN"))
		s->value = NAN;
	else if (kv_parse_double(num, &s->value) < 0)
		goto bad;
	return 0; /* a timestamp after the value is ignored */
bad:
	if (s->labels && s->n_labels < PROM_MAX_LABELS) {
		free(s->labels[s->n_labels].name); /* a label cut short */
		s->labels[s->n_labels].name = NULL;
	}
	sample_free(s);
	return -1;
}

void kvb_prom_parse(const char *text, size_t len, struct kvb_prom *out)
{
	size_t i = 0, alloc = 0;

	memset(out, 0, sizeof(*out));
	while (i < len) {
		const char *p = text + i, *e = memchr(p, '\n', len - i);
		size_t l = e ? (size_t)(e - p) : len - i;
		struct kvb_prom_sample s;
		size_t k;

		i += l + (e ? 1 : 0);
		if (l && p[l - 1] == '\r')
			l--;
		for (k = 0; k < l && (p[k] == ' ' || p[k] == '\t'); k++)
			;
		if (k == l || p[k] == '#')
			continue;
		if (l > PROM_MAX_LINE || memchr(p, '\0', l)) {
			out->n_bad++;
			continue;
		}
		if (out->n >= PROM_MAX_SAMPLES) {
			out->truncated = true;
			break;
		}
		if (parse_line(p, l, &s) < 0) {
			out->n_bad++;
			continue;
		}
		if (out->n == alloc) {
			alloc = alloc ? alloc * 2 : 256;
			out->v = xrealloc(out->v, alloc * sizeof(*out->v));
		}
		out->v[out->n++] = s;
	}
}

static const char *label_of(const struct kvb_prom_sample *s, const char *name)
{
	for (int j = 0; j < s->n_labels; j++)
		if (!strcmp(s->labels[j].name, name))
			return s->labels[j].value;
	return NULL;
}

double kvb_prom_sum(const struct kvb_prom *p, const char *name, const char *label,
		    const char *value, bool *found)
{
	size_t nl = strlen(name);
	double sum = 0;
	bool any = false;

	for (size_t i = 0; i < p->n; i++) {
		const struct kvb_prom_sample *s = &p->v[i];
		if (strncmp(s->name, name, nl) || (s->name[nl] && strcmp(s->name + nl, "_total")))
			continue;
		if (label) {
			const char *v = label_of(s, label);
			if (value[0] == '!') {
				if (v && !strcmp(v, value + 1))
					continue;
			} else if (!v || strcmp(v, value)) {
				continue;
			}
		}
		if (isnan(s->value))
			continue;
		sum += s->value;
		any = true;
	}
	if (found)
		*found = any;
	return sum;
}

/* ---- cache families --------------------------------------------------------------- */

static const char *const family_names[KVB_CF_COUNT] = {
	[KVB_CF_VLLM_APC] = "apc",
	[KVB_CF_VLLM_EXTERNAL] = "external",
	[KVB_CF_LMCACHE] = "lmcache",
	[KVB_CF_SGLANG] = "sglang",
	[KVB_CF_PEGAFLOW] = "pegaflow",
};

const char *const kvb_cache_family_choices[] = { "auto", "lmcache", "pegaflow", "external",
						 "apc", "sglang", NULL };

const char *kvb_cache_family_name(enum kvb_cache_family f)
{
	return (unsigned)f < KVB_CF_COUNT ? family_names[f] : "none";
}

/* hits/queries from the first (hits, queries) name pair present. */
static void pick_pair(const struct kvb_prom *p, const char *const names[][2], size_t n,
		      struct kvb_cache_counters *c, enum kvb_cache_family f)
{
	for (size_t i = 0; i < n; i++) {
		bool fh, fq;
		double h = kvb_prom_sum(p, names[i][0], NULL, NULL, &fh);
		double q = kvb_prom_sum(p, names[i][1], NULL, NULL, &fq);
		if (fh) {
			c->present[f] = true;
			c->hits[f] = h;
			c->queries[f] = fq ? q : NAN;
			return;
		}
	}
}

void kvb_cache_counters_from_prom(const struct kvb_prom *p, struct kvb_cache_counters *c)
{
	static const char *const apc[][2] = {
		{ "vllm:prefix_cache_hits", "vllm:prefix_cache_queries" },
		{ "vllm:gpu_prefix_cache_hits", "vllm:gpu_prefix_cache_queries" },
	};
	static const char *const ext[][2] = {
		{ "vllm:external_prefix_cache_hits", "vllm:external_prefix_cache_queries" },
	};
	static const char *const lmc[][2] = {
		{ "lmcache:num_hit_tokens", "lmcache:num_requested_tokens" },
		{ "lmcache:num_retrieve_retrieved_tokens", "lmcache:num_retrieve_requested_tokens" },
	};
	static const char *const sgl[][2] = {
		{ "sglang:cached_tokens", "sglang:prompt_tokens" },
	};
	static const char *const stores[] = {
		"lmcache:num_stored_tokens", "lmcache:num_store_stored_tokens",
		"pegaflow_save_bytes", "kvserve:offload_stored_tokens",
	};
	bool f1, f2;
	double all, miss;

	memset(c, 0, sizeof(*c));
	pick_pair(p, apc, KV_ARRAY_SIZE(apc), c, KVB_CF_VLLM_APC);
	pick_pair(p, ext, KV_ARRAY_SIZE(ext), c, KVB_CF_VLLM_EXTERNAL);
	pick_pair(p, lmc, KV_ARRAY_SIZE(lmc), c, KVB_CF_LMCACHE);
	pick_pair(p, sgl, KV_ARRAY_SIZE(sgl), c, KVB_CF_SGLANG);
	all = kvb_prom_sum(p, "pegaflow_cache_tier_block_requests", NULL, NULL, &f1);
	miss = kvb_prom_sum(p, "pegaflow_cache_tier_block_requests", "tier", "miss", &f2);
	if (f1) {
		c->present[KVB_CF_PEGAFLOW] = true;
		c->hits[KVB_CF_PEGAFLOW] = all - (f2 ? miss : 0);
		c->queries[KVB_CF_PEGAFLOW] = all;
	} else {
		double h = kvb_prom_sum(p, "pegaflow_cache_block_hits", NULL, NULL, &f1);
		double m = kvb_prom_sum(p, "pegaflow_cache_block_misses", NULL, NULL, &f2);
		if (f1) {
			c->present[KVB_CF_PEGAFLOW] = true;
			c->hits[KVB_CF_PEGAFLOW] = h;
			c->queries[KVB_CF_PEGAFLOW] = h + (f2 ? m : 0);
		}
	}
	for (size_t i = 0; i < KV_ARRAY_SIZE(stores); i++) {
		double v = kvb_prom_sum(p, stores[i], NULL, NULL, &f1);
		if (f1) { /* the first present (kvserve exports two names for one count) */
			c->stores_present = true;
			c->stores = v;
			break;
		}
	}
}

void kvb_cache_counters_diff(const struct kvb_cache_counters *before,
			     const struct kvb_cache_counters *after,
			     struct kvb_cache_counters *d)
{
	memset(d, 0, sizeof(*d));
	for (int f = 0; f < KVB_CF_COUNT; f++) {
		if (!before->present[f] || !after->present[f])
			continue;
		d->present[f] = true;
		d->hits[f] = after->hits[f] - before->hits[f];
		d->queries[f] = after->queries[f] - before->queries[f];
	}
	if (before->stores_present && after->stores_present) {
		d->stores_present = true;
		d->stores = after->stores - before->stores;
	}
}

enum kvb_cache_family kvb_cache_pick(const struct kvb_cache_counters *c, const char *which)
{
	static const enum kvb_cache_family order[] = {
		KVB_CF_LMCACHE, KVB_CF_PEGAFLOW, KVB_CF_VLLM_EXTERNAL, KVB_CF_VLLM_APC, KVB_CF_SGLANG,
	};
	if (which && strcmp(which, "auto")) {
		for (int f = 0; f < KVB_CF_COUNT; f++)
			if (!strcmp(which, family_names[f]))
				return c->present[f] ? (enum kvb_cache_family)f : KVB_CF_COUNT;
		return KVB_CF_COUNT;
	}
	/* vllm:external_prefix_cache_* may be exported (at 0) by an engine
	 * without a connector: when nothing queried it and another family was
	 * queried, it is not the layer in use */
	bool other_queried = false;
	for (int f = 0; f < KVB_CF_COUNT; f++)
		other_queried |= f != KVB_CF_VLLM_EXTERNAL && c->present[f] && c->queries[f] > 0;
	for (size_t i = 0; i < KV_ARRAY_SIZE(order); i++) {
		enum kvb_cache_family f = order[i];
		if (!c->present[f])
			continue;
		if (f == KVB_CF_VLLM_EXTERNAL && !(c->queries[f] > 0) && other_queried)
			continue;
		return f;
	}
	return KVB_CF_COUNT;
}

double kvb_cache_hit_rate(const struct kvb_cache_counters *c, const char *which)
{
	enum kvb_cache_family f = kvb_cache_pick(c, which);
	if (f == KVB_CF_COUNT || !(c->queries[f] > 0))
		return NAN;
	return c->hits[f] / c->queries[f];
}

void kvb_check_cache_path(const struct kvb_cache_counters *delta, const char *which,
			  double usage_cached, bool claims_reuse, struct kvb_check *c)
{
	enum kvb_cache_family f = kvb_cache_pick(delta, which);
	double hits = f == KVB_CF_COUNT ? NAN : delta->hits[f];

	if (!claims_reuse) {
		kvb_check_set(c, "cache_path", true, hits, 1, "tokens", "no claim of cache reuse");
		return;
	}
	if (f != KVB_CF_COUNT && hits > 0) {
		kvb_check_set(c, "cache_path", true, hits, 1, "tokens",
			      "%.0f hits of %.0f queries in %s counters during the pass", hits,
			      delta->queries[f], family_names[f]);
		return;
	}
	if (usage_cached > 0) {
		kvb_check_set(c, "cache_path", true, usage_cached, 1, "tokens",
			      "%.0f cached prompt tokens reported in usage", usage_cached);
		return;
	}
	if (f == KVB_CF_COUNT && usage_cached < 0)
		kvb_check_set(c, "cache_path", false, NAN, 1, "tokens",
			      "cache path never exercised: no known cache counter in /metrics%s and no usage cached_tokens",
			      which && strcmp(which, "auto") ? " for the named family" : "");
	else {
		char other[96] = "";
		for (int g = 0; g < KVB_CF_COUNT; g++)
			if (g != (int)f && delta->present[g] && delta->hits[g] > 0) {
				snprintf(other, sizeof(other), " (%s had %.0f hits: name --cache-family %s if that is the path under test)",
					 family_names[g], delta->hits[g], family_names[g]);
				break;
			}
		kvb_check_set(c, "cache_path", false, f == KVB_CF_COUNT ? usage_cached : hits, 1, "tokens",
			      "cache path never exercised: 0 hits%s%s in a pass that claims reuse%s",
			      f == KVB_CF_COUNT ? "" : " in ", f == KVB_CF_COUNT ? "" : family_names[f], other);
	}
}

void kvb_check_silent_miss(const struct kvb_cache_counters *delta, const char *which,
			   struct kvb_check *c)
{
	enum kvb_cache_family f = kvb_cache_pick(delta, which);
	double hits = f == KVB_CF_COUNT ? 0 : delta->hits[f];

	if (!delta->stores_present) {
		kvb_check_set(c, "silent_miss", true, NAN, 0, "tokens", "not measured: no store counter");
		return;
	}
	if (delta->stores > 0 && !(hits > 0))
		kvb_check_set(c, "silent_miss", false, delta->stores, 0, "tokens",
			      "silent miss: stores grew by %.0f while hits stayed 0%s%s", delta->stores,
			      f == KVB_CF_COUNT ? "" : " in ", f == KVB_CF_COUNT ? "" : family_names[f]);
	else
		kvb_check_set(c, "silent_miss", true, delta->stores, 0, "tokens",
			      "stores +%.0f, hits +%.0f", delta->stores, hits);
}

/* "probe{i}/..." → length of "probe{i}" (the pair), 0 when not a probe key. */
static size_t probe_group(const char *key)
{
	size_t k = 5;

	if (strncmp(key, "probe", 5) || !(key[5] >= '0' && key[5] <= '9'))
		return 0;
	while (key[k] >= '0' && key[k] <= '9')
		k++;
	return key[k] == '/' && key[k + 1] ? k : 0;
}

struct probe_ref {
	const struct kvb_out_rec *r;
	size_t g;      /* length of "probe{i}" */
	size_t order;  /* file order */
};

/* by pair, then by send order (request_id, then file order) */
static int cmp_probe(const void *x, const void *y)
{
	const struct probe_ref *a = x, *b = y;
	int c;

	if (a->g != b->g)
		return a->g < b->g ? -1 : 1;
	c = strncmp(a->r->key, b->r->key, a->g);
	if (c)
		return c;
	if (a->r->request_id != b->r->request_id)
		return a->r->request_id < b->r->request_id ? -1 : 1;
	return a->order < b->order ? -1 : a->order > b->order;
}

void kvb_check_key_isolation_records(const struct kvb_outputs *o,
				     const struct kvb_cache_counters *delta, const char *family,
				     struct kvb_check *c)
{
	struct probe_ref *v = xcalloc(o->n + 1, sizeof(*v));
	size_t n_probe = 0, n_known = 0, n_pairs = 0, n_stale = 0;
	double cross = 0, legit = 0;
	bool stale = false;
	char stale_note[160] = "";
	const struct kvb_out_rec *bad = NULL;
	bool any_family = !family || !strcmp(family, "auto");
	int hit_family = -1;
	bool counters = false;

	for (size_t i = 0; i < o->n; i++) {
		size_t g = probe_group(o->v[i].key);
		if (!g || o->v[i].warmup)
			continue;
		v[n_probe].r = &o->v[i];
		v[n_probe].g = g;
		v[n_probe].order = i;
		n_probe++;
	}
	qsort(v, n_probe, sizeof(*v), cmp_probe);
	for (size_t i = 0; i < n_probe; i++) {
		const struct kvb_out_rec *r = v[i].r;
		bool known = !strcmp(r->status, "ok") && r->cached_tokens >= 0;
		/* the first of its pair: no record of the pair sent before it */
		bool first = i == 0 || v[i - 1].g != v[i].g ||
			     strncmp(v[i - 1].r->key, r->key, v[i].g) != 0;

		if (first) {
			n_pairs++;
			/* its prompt was not fresh (an earlier run with this seed sent
			   it): hits of the pair's other requests may be their own */
			stale = known && r->cached_tokens > 0;
			n_stale += stale;
		}
		if (!known)
			continue;
		n_known++;
		if (stale) {
			legit += r->cached_tokens;
		} else if (!first && r->cached_tokens > 0) {
			cross += r->cached_tokens;
			if (!bad || r->request_id < bad->request_id)
				bad = r;
		}
	}
	free(v);
	if (delta) {
		if (any_family) {
			for (int f = 0; f < KVB_CF_COUNT; f++)
				if (delta->present[f]) {
					counters = true;
					if (delta->hits[f] > legit &&
					    (hit_family < 0 || delta->hits[f] > delta->hits[hit_family]))
						hit_family = f;
				}
		} else {
			enum kvb_cache_family f = kvb_cache_pick(delta, family);
			if (f != KVB_CF_COUNT) {
				counters = true;
				if (delta->hits[f] > legit)
					hit_family = (int)f;
			}
		}
	}
	if (n_stale)
		snprintf(stale_note, sizeof(stale_note),
			 "; %zu of %zu pairs not judged: their first request hit (an earlier run sent the prompt: use another --seed)",
			 n_stale, n_pairs);
	if (!n_probe) {
		kvb_check_set(c, "key_isolation", false, NAN, 0, "tokens",
			      "not measured: no key-probe records (keys probe{i}/{value})");
		return;
	}
	if (!n_known && !counters) {
		kvb_check_set(c, "key_isolation", false, NAN, 0, "tokens",
			      "not measured: no usage cached_tokens in %zu probe records and no known cache counter",
			      n_probe);
		return;
	}
	if (n_stale == n_pairs) {
		kvb_check_set(c, "key_isolation", false, NAN, 0, "tokens",
			      "not measured: the first request of every pair hit the cache (an earlier run sent these prompts: use another --seed or a fresh server)");
		return;
	}
	if (bad) {
		kvb_check_set(c, "key_isolation", false, cross, 0, "tokens",
			      "cross hits: %s reported %d cached tokens of a prompt only another key had sent (%.0f cross-hit tokens in all)%s%s%s",
			      bad->key, bad->cached_tokens, cross, hit_family >= 0 ? "; counter " : "",
			      hit_family >= 0 ? family_names[hit_family] : "", stale_note);
		return;
	}
	if (hit_family >= 0) {
		if (legit > 0)
			kvb_check_set(c, "key_isolation", false, delta->hits[hit_family] - legit, 0, "tokens",
				      "cross hits: %s counter +%.0f hit tokens during the probe, %.0f more than the pairs whose prompt was not fresh account for%s",
				      family_names[hit_family], delta->hits[hit_family],
				      delta->hits[hit_family] - legit, stale_note);
		else
			kvb_check_set(c, "key_isolation", false, delta->hits[hit_family], 0, "tokens",
				      "cross hits: %s counter +%.0f hit tokens during a probe whose prompts were all fresh",
				      family_names[hit_family], delta->hits[hit_family]);
		return;
	}
	kvb_check_set(c, "key_isolation", true, 0, 0, "tokens",
		      "no cross hits in %zu probe requests (%zu with usage cached_tokens%s)%s", n_probe,
		      n_known, counters ? ", cache counters +0" : "", stale_note);
}
