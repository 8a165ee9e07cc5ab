/* outputs.jsonl reader, pairing of records, and the kvb_check record. */
#include "common/util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>

#include "checks/checks.h"
#include "common/banned.h"

#define OUT_MAX_FILE ((size_t)1 << 30)
#define OUT_MAX_LINE ((size_t)64 << 20)

/* ---- kvb_check --------------------------------------------------------------- */

void kvb_check_set(struct kvb_check *c, const char *name, bool passed, double figure,
		   double threshold, const char *unit, const char *fmt, ...)
{
	va_list ap;
	memset(c, 0, sizeof(*c));
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->passed = passed;
	c->figure = figure;
	c->threshold = threshold;
	snprintf(c->unit, sizeof(c->unit), "%s", unit);
	va_start(ap, fmt);
	vsnprintf(c->reason, sizeof(c->reason), fmt, ap);
	va_end(ap);
	for (char *p = c->reason; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
}

static json_t *num_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

json_t *kvb_check_to_json(const struct kvb_check *c)
{
	return json_pack("{s:s, s:b, s:o, s:o, s:s, s:s}", "name", c->name, "passed", c->passed,
			 "figure", num_or_null(c->figure), "threshold", num_or_null(c->threshold),
			 "unit", c->unit, "reason", c->reason);
}

void kvb_check_print(FILE *out, const struct kvb_check *c)
{
	fprintf(out, "%s %s: %.6g (threshold %.6g%s%s): %s\n", c->passed ? "PASS" : "FAIL", c->name,
		c->figure, c->threshold, *c->unit ? " " : "", c->unit, c->reason);
}

/* ---- records ------------------------------------------------------------------- */

static void lps_free(struct kvb_tok_lp *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].token);
		for (int j = 0; j < v[i].n_top; j++)
			free(v[i].top[j].token);
		free(v[i].top);
	}
	free(v);
}

void kvb_out_rec_release(struct kvb_out_rec *r)
{
	free(r->engine_id);
	free(r->key);
	free(r->status);
	free(r->text);
	free(r->token_ids);
	free(r->finish_reason);
	lps_free(r->lps, r->n_lps);
	lps_free(r->prompt_lps, r->n_prompt_lps);
	free(r->expected);
	memset(r, 0, sizeof(*r));
}

static int opt_str(const json_t *o, const char *k, char **out, const char *file, int line)
{
	const json_t *v = json_object_get(o, k);
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		kv_error("%s:%d: \"%s\" must be a string", file, line, k);
		return -1;
	}
	*out = xstrdup(json_string_value(v));
	return 0;
}

static int parse_lps(const json_t *a, const char *k, struct kvb_tok_lp **out, size_t *n,
		     const char *file, int line)
{
	*out = NULL;
	*n = 0;
	if (!a || json_is_null(a))
		return 0;
	if (!json_is_array(a)) {
		kv_error("%s:%d: \"%s\" must be a list or null", file, line, k);
		return -1;
	}
	*out = xcalloc(json_array_size(a) + 1, sizeof(**out));
	for (size_t i = 0; i < json_array_size(a); i++) {
		const json_t *e = json_array_get(a, i), *t, *lp, *top;
		struct kvb_tok_lp *d = &(*out)[i];
		*n = i + 1;
		if (!json_is_object(e)) {
			kv_error("%s:%d: %s[%zu] must be an object", file, line, k, i);
			return -1;
		}
		t = json_object_get(e, "t");
		lp = json_object_get(e, "lp");
		top = json_object_get(e, "top");
		if (!json_is_string(t)) {
			kv_error("%s:%d: %s[%zu].t must be a string", file, line, k, i);
			return -1;
		}
		d->token = xstrdup(json_string_value(t));
		if (json_is_number(lp))
			d->logprob = (float)json_number_value(lp);
		else if (!lp || json_is_null(lp))
			d->logprob = NAN;
		else {
			kv_error("%s:%d: %s[%zu].lp must be a number or null", file, line, k, i);
			return -1;
		}
		if (!top || json_is_null(top))
			continue;
		if (!json_is_array(top) || json_array_size(top) > 100000) {
			kv_error("%s:%d: %s[%zu].top must be a list", file, line, k, i);
			return -1;
		}
		d->top = xcalloc(json_array_size(top) + 1, sizeof(*d->top));
		for (size_t j = 0; j < json_array_size(top); j++) {
			const json_t *pr = json_array_get(top, j);
			const json_t *pt = json_array_get(pr, 0), *pl = json_array_get(pr, 1);
			if (!json_is_array(pr) || json_array_size(pr) != 2 || !json_is_string(pt) ||
			    !(json_is_number(pl) || json_is_null(pl))) {
				kv_error("%s:%d: %s[%zu].top[%zu] must be [token, logprob]", file, line, k, i, j);
				return -1;
			}
			d->top[j].token = xstrdup(json_string_value(pt));
			d->top[j].logprob = json_is_number(pl) ? (float)json_number_value(pl) : NAN;
			d->n_top = (int)j + 1;
		}
	}
	return 0;
}

int kvb_out_rec_from_json(const json_t *o, struct kvb_out_rec *r, const char *file, int line)
{
	const json_t *v;

	memset(r, 0, sizeof(*r));
	r->line = line;
	r->pass = -1;
	r->cached_tokens = -1;
	if (!json_is_object(o)) {
		kv_error("%s:%d: expected a json object", file, line);
		return -1;
	}
	v = json_object_get(o, "key");
	if (!json_is_string(v)) {
		kv_error("%s:%d: \"key\" must be a string", file, line);
		goto bad;
	}
	r->key = xstrdup(json_string_value(v));
	v = json_object_get(o, "request_id");
	if (json_is_integer(v) && json_integer_value(v) >= 0)
		r->request_id = (uint64_t)json_integer_value(v);
	else if (v && !json_is_null(v)) {
		kv_error("%s:%d: \"request_id\" must be an integer >= 0", file, line);
		goto bad;
	}
	v = json_object_get(o, "pass");
	if (json_is_integer(v) && json_integer_value(v) >= -1 && json_integer_value(v) < 1000000)
		r->pass = (int)json_integer_value(v);
	else if (v && !json_is_null(v)) {
		kv_error("%s:%d: \"pass\" must be an integer", file, line);
		goto bad;
	}
	v = json_object_get(o, "cached_tokens");
	if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= INT32_MAX)
		r->cached_tokens = (int)json_integer_value(v);
	else if (v && !json_is_null(v)) {
		kv_error("%s:%d: \"cached_tokens\" must be an integer >= 0", file, line);
		goto bad;
	}
	v = json_object_get(o, "warmup");
	if (json_is_boolean(v))
		r->warmup = json_is_true(v);
	else if (json_is_integer(v))
		r->warmup = json_integer_value(v) != 0;
	if (opt_str(o, "engine_id", &r->engine_id, file, line) < 0 ||
	    opt_str(o, "status", &r->status, file, line) < 0 ||
	    opt_str(o, "text", &r->text, file, line) < 0 ||
	    opt_str(o, "finish_reason", &r->finish_reason, file, line) < 0 ||
	    opt_str(o, "expected", &r->expected, file, line) < 0)
		goto bad;
	if (!r->engine_id)
		r->engine_id = xstrdup("");
	if (!r->status)
		r->status = xstrdup("ok");
	v = json_object_get(o, "token_ids");
	if (json_is_array(v)) {
		r->has_token_ids = true;
		r->token_ids = xcalloc(json_array_size(v) + 1, sizeof(*r->token_ids));
		for (size_t i = 0; i < json_array_size(v); i++) {
			const json_t *e = json_array_get(v, i);
			if (!json_is_integer(e) || json_integer_value(e) < INT32_MIN ||
			    json_integer_value(e) > INT32_MAX) {
				kv_error("%s:%d: token_ids[%zu] must be an integer", file, line, i);
				goto bad;
			}
			r->token_ids[i] = (int32_t)json_integer_value(e);
			r->n_token_ids = i + 1;
		}
	} else if (v && !json_is_null(v)) {
		kv_error("%s:%d: \"token_ids\" must be a list or null", file, line);
		goto bad;
	}
	if (parse_lps(json_object_get(o, "logprobs"), "logprobs", &r->lps, &r->n_lps, file, line) < 0 ||
	    parse_lps(json_object_get(o, "prompt_logprobs"), "prompt_logprobs", &r->prompt_lps,
		      &r->n_prompt_lps, file, line) < 0)
		goto bad;
	return 0;
bad:
	kvb_out_rec_release(r);
	return -1;
}

void kvb_outputs_release(struct kvb_outputs *o)
{
	for (size_t i = 0; i < o->n; i++)
		kvb_out_rec_release(&o->v[i]);
	free(o->v);
	free(o->path);
	memset(o, 0, sizeof(*o));
}

int kvb_outputs_parse(const char *name, const char *data, size_t len, struct kvb_outputs *out)
{
	size_t i = 0, alloc = 0;
	int line = 0;

	memset(out, 0, sizeof(*out));
	out->path = xstrdup(name);
	while (i < len) {
		const char *p = data + i, *e = memchr(p, '\n', len - i);
		size_t l = e ? (size_t)(e - p) : len - i, k;
		json_error_t err;
		json_t *o;
		int rc;

		line++;
		i += l + (e ? 1 : 0);
		for (k = 0; k < l && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'); k++)
			;
		if (k == l)
			continue;
		if (l > OUT_MAX_LINE) {
			kv_error("%s:%d: line longer than %zu bytes", name, line, OUT_MAX_LINE);
			goto bad;
		}
		o = json_loadb(p, l, 0, &err);
		if (!o) {
			kv_error("%s:%d: bad json: %s", name, line, err.text);
			goto bad;
		}
		if (out->n == alloc) {
			alloc = alloc ? alloc * 2 : 64;
			out->v = xrealloc(out->v, alloc * sizeof(*out->v));
		}
		rc = kvb_out_rec_from_json(o, &out->v[out->n], name, line);
		json_decref(o);
		if (rc < 0)
			goto bad;
		out->n++;
	}
	return 0;
bad:
	kvb_outputs_release(out);
	return -1;
}

int kvb_outputs_load(const char *path, struct kvb_outputs *out)
{
	size_t len;
	char *s = kv_read_file(path, OUT_MAX_FILE, &len);
	int rc;

	memset(out, 0, sizeof(*out));
	if (!s) {
		kv_error("%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	rc = kvb_outputs_parse(path, s, len, out);
	free(s);
	return rc;
}

/* ---- pairing ------------------------------------------------------------------- */

struct sel_rec {
	const struct kvb_out_rec *r;
	size_t order;
	int pass;  /* pass used in the pairing key, or 0 */
	bool aborted; /* closed by the client: matched, never paired */
};

static int cmp_sel(const void *a, const void *b)
{
	const struct sel_rec *x = a, *y = b;
	int c = strcmp(x->r->key, y->r->key);
	if (c)
		return c;
	if (x->pass != y->pass)
		return x->pass < y->pass ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static struct sel_rec *select_recs(const struct kvb_outputs *o, const struct kvb_select *s,
				   bool by_pass, size_t *n, size_t *n_failed, size_t *n_aborted)
{
	struct sel_rec *v = xcalloc(o->n + 1, sizeof(*v));
	*n = 0;
	for (size_t i = 0; i < o->n; i++) {
		const struct kvb_out_rec *r = &o->v[i];
		if (r->warmup)
			continue;
		if (s && s->engine_id && strcmp(s->engine_id, r->engine_id))
			continue;
		if (s && s->pass >= 0 && s->pass != r->pass)
			continue;
		v[*n].aborted = !strcmp(r->status, "aborted");
		if (v[*n].aborted) {
			(*n_aborted)++;
		} else if (strcmp(r->status, "ok")) {
			(*n_failed)++;
			continue;
		}
		v[*n].r = r;
		v[*n].order = i;
		v[*n].pass = by_pass ? r->pass : 0;
		(*n)++;
	}
	qsort(v, *n, sizeof(*v), cmp_sel);
	return v;
}

static int cmp_pair(const void *x, const void *y)
{
	const struct kvb_pair *a = x, *b = y;
	return a->base < b->base ? -1 : a->base > b->base;
}

void kvb_pair_outputs(const struct kvb_outputs *base, const struct kvb_select *bs,
		      const struct kvb_outputs *cand, const struct kvb_select *cs,
		      struct kvb_pair **pairs, size_t *n_pairs, size_t *n_unpaired,
		      size_t *n_failed)
{
	kvb_pair_outputs_ex(base, bs, cand, cs, pairs, n_pairs, n_unpaired, n_failed, NULL);
}

void kvb_pair_outputs_ex(const struct kvb_outputs *base, const struct kvb_select *bs,
			 const struct kvb_outputs *cand, const struct kvb_select *cs,
			 struct kvb_pair **pairs, size_t *n_pairs, size_t *n_unpaired,
			 size_t *n_failed, size_t *n_aborted)
{
	bool by_pass = !(bs && bs->pass >= 0) && !(cs && cs->pass >= 0);
	size_t na, nb, i = 0, j = 0;
	size_t failed = 0, aborted = 0;
	struct sel_rec *a = select_recs(base, bs, by_pass, &na, &failed, &aborted);
	struct sel_rec *b = select_recs(cand, cs, by_pass, &nb, &failed, &aborted);

	*pairs = xcalloc(KV_MIN(na, nb) + 1, sizeof(**pairs));
	*n_pairs = 0;
	*n_unpaired = 0;
	while (i < na && j < nb) {
		int c = strcmp(a[i].r->key, b[j].r->key);
		if (!c && a[i].pass != b[j].pass)
			c = a[i].pass < b[j].pass ? -1 : 1;
		if (c < 0) {
			*n_unpaired += !a[i++].aborted;
		} else if (c > 0) {
			*n_unpaired += !b[j++].aborted;
		} else if (a[i].aborted || b[j].aborted) {
			/* a request the client closed has no output to compare, and its
			   partner is not left without one by a fault */
			i++;
			j++;
		} else {
			(*pairs)[*n_pairs].base = a[i++].r;
			(*pairs)[*n_pairs].cand = b[j++].r;
			(*n_pairs)++;
		}
	}
	for (; i < na; i++)
		*n_unpaired += !a[i].aborted;
	for (; j < nb; j++)
		*n_unpaired += !b[j].aborted;
	if (n_failed)
		*n_failed = failed;
	if (n_aborted)
		*n_aborted = aborted;
	/* pairs in the baseline's file order */
	qsort(*pairs, *n_pairs, sizeof(**pairs), cmp_pair);
	free(a);
	free(b);
}

/* ---- from memory, to JSON ------------------------------------------------------ */

static struct kvb_tok_lp *lps_dup(const struct kvb_tok_lp *v, size_t n)
{
	struct kvb_tok_lp *d;
	if (!v)
		return NULL;
	d = xcalloc(n + 1, sizeof(*d));
	for (size_t i = 0; i < n; i++) {
		d[i].token = xstrdup(v[i].token ? v[i].token : "");
		d[i].logprob = v[i].logprob;
		d[i].n_top = v[i].n_top;
		if (v[i].n_top > 0) {
			d[i].top = xcalloc((size_t)v[i].n_top, sizeof(*d[i].top));
			for (int j = 0; j < v[i].n_top; j++) {
				d[i].top[j].token = xstrdup(v[i].top[j].token ? v[i].top[j].token : "");
				d[i].top[j].logprob = v[i].top[j].logprob;
			}
		}
	}
	return d;
}

static char *dup_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

void kvb_out_rec_from_result(struct kvb_out_rec *r, const struct kvb_req *req,
			     const struct kvb_result *res, const char *engine_id)
{
	memset(r, 0, sizeof(*r));
	r->request_id = res->req_id;
	r->engine_id = xstrdup(engine_id ? engine_id : "");
	r->pass = req->pass;
	r->warmup = req->warmup;
	r->key = xstrdup(req->key ? req->key : "");
	r->status = xstrdup(kvb_status_name(res->status));
	r->text = dup_null(res->text);
	if (res->token_ids) {
		r->has_token_ids = true;
		r->n_token_ids = res->n_token_ids;
		r->token_ids = xcalloc(res->n_token_ids + 1, sizeof(*r->token_ids));
		memcpy(r->token_ids, res->token_ids, res->n_token_ids * sizeof(*r->token_ids));
	}
	r->finish_reason = dup_null(res->finish_reason);
	r->lps = lps_dup(res->lps, res->n_lps);
	r->n_lps = res->lps ? res->n_lps : 0;
	r->prompt_lps = lps_dup(res->prompt_lps, res->n_prompt_lps);
	r->n_prompt_lps = res->prompt_lps ? res->n_prompt_lps : 0;
	r->expected = dup_null(req->expected);
	r->cached_tokens = res->cached_tokens;
}

void kvb_outputs_append(struct kvb_outputs *o, struct kvb_out_rec *r)
{
	o->v = xrealloc(o->v, (o->n + 1) * sizeof(*o->v));
	o->v[o->n++] = *r;
	memset(r, 0, sizeof(*r));
}

static json_t *lps_json(const struct kvb_tok_lp *v, size_t n)
{
	json_t *a;
	if (!v)
		return json_null();
	a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *top = v[i].top ? json_array() : json_null();
		for (int j = 0; j < v[i].n_top && v[i].top; j++)
			json_array_append_new(top, json_pack("[s,o]", v[i].top[j].token,
							     num_or_null(v[i].top[j].logprob)));
		json_array_append_new(a, json_pack("{s:s,s:o,s:o}", "t", v[i].token, "lp",
						   num_or_null(v[i].logprob), "top", top));
	}
	return a;
}

json_t *kvb_out_rec_to_json(const struct kvb_out_rec *r)
{
	json_t *ids = json_null();
	json_t *o;
	if (r->has_token_ids) {
		ids = json_array();
		for (size_t i = 0; i < r->n_token_ids; i++)
			json_array_append_new(ids, json_integer(r->token_ids[i]));
	}
	o = json_pack("{s:I,s:s,s:i,s:s,s:s,s:s?,s:o,s:s?,s:o,s:o,s:s?}", "request_id",
		      (json_int_t)r->request_id, "engine_id", r->engine_id ? r->engine_id : "", "pass",
		      r->pass, "key", r->key ? r->key : "", "status", r->status ? r->status : "ok",
		      "text", r->text, "token_ids", ids, "finish_reason", r->finish_reason, "logprobs",
		      lps_json(r->lps, r->n_lps), "prompt_logprobs",
		      lps_json(r->prompt_lps, r->n_prompt_lps), "expected", r->expected);
	if (o && r->warmup)
		json_object_set_new(o, "warmup", json_true());
	if (o && r->cached_tokens >= 0)
		json_object_set_new(o, "cached_tokens", json_integer(r->cached_tokens));
	return o;
}

void kvb_check_completeness(size_t n_pairs, size_t n_unpaired, size_t n_failed,
			    bool allow_unpaired, struct kvb_check *c)
{
	kvb_check_completeness_ex(n_pairs, n_unpaired, n_failed, 0, allow_unpaired, c);
}

void kvb_check_completeness_ex(size_t n_pairs, size_t n_unpaired, size_t n_failed,
			       size_t n_aborted, bool allow_unpaired, struct kvb_check *c)
{
	size_t total = n_pairs + n_unpaired + n_failed;
	bool ok = n_failed == 0 && (allow_unpaired || n_unpaired == 0) && n_pairs > 0;
	char ab[64] = "";

	if (n_aborted)
		snprintf(ab, sizeof(ab), ", %zu aborted by the client (left out)", n_aborted);
	kvb_check_set(c, "completeness", ok, total ? (double)n_pairs / (double)total : NAN, 1.0,
		      "fraction", "%zu pairs, %zu records without a partner%s, %zu failed requests%s",
		      n_pairs, n_unpaired, allow_unpaired ? " (allowed)" : "", n_failed, ab);
}
