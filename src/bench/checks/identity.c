/* Identity of outputs, divergence classification, logprob deltas. */
#include "common/util.h"

#include <math.h>

#include "common/buf.h"
#include "checks/checks.h"
#include "common/banned.h"

const char *kvb_div_class_name(enum kvb_div_class c)
{
	switch (c) {
	case KVB_DIV_NONE:
		return "identical";
	case KVB_DIV_NEAR_TIE:
		return "benign-near-tie";
	default:
		return "corruption";
	}
}

const struct kvb_tolerance *kvb_tolerance_find(const char *name)
{
	static const struct kvb_tolerance presets[] = {
		{ "bf16", KVB_NEAR_TIE_NATS_DEFAULT, KVB_MAX_LP_DELTA_DEFAULT, KVB_MAX_KL_DEFAULT },
		{ "fp32", 1e-3, 1e-3, 1e-6 },
	};
	for (size_t i = 0; i < KV_ARRAY_SIZE(presets); i++)
		if (!strcmp(name, presets[i].name))
			return &presets[i];
	return NULL;
}

static long first_byte_diff(const char *a, const char *b)
{
	size_t i = 0;
	a = a ? a : "";
	b = b ? b : "";
	while (a[i] && a[i] == b[i])
		i++;
	return a[i] == b[i] ? -1 : (long)i;
}

long kvb_first_token_diff(const struct kvb_out_rec *a, const struct kvb_out_rec *b)
{
	size_t n, i;
	if (a->has_token_ids && b->has_token_ids) {
		n = KV_MIN(a->n_token_ids, b->n_token_ids);
		for (i = 0; i < n; i++)
			if (a->token_ids[i] != b->token_ids[i])
				return (long)i;
		return a->n_token_ids == b->n_token_ids ? -1 : (long)n;
	}
	if (a->lps && b->lps) {
		n = KV_MIN(a->n_lps, b->n_lps);
		for (i = 0; i < n; i++)
			if (strcmp(a->lps[i].token, b->lps[i].token))
				return (long)i;
		return a->n_lps == b->n_lps ? -1 : (long)n;
	}
	return -1;
}

static bool top_find(const struct kvb_tok_lp *t, const char *tok, double *lp)
{
	for (int j = 0; j < t->n_top; j++)
		if (!strcmp(t->top[j].token, tok) && !isnan(t->top[j].logprob)) {
			*lp = t->top[j].logprob;
			return true;
		}
	return false;
}

static double top_max(const struct kvb_tok_lp *t)
{
	double m = -INFINITY;
	for (int j = 0; j < t->n_top; j++)
		if (t->top[j].logprob > m)
			m = t->top[j].logprob;
	if (!isnan(t->logprob) && t->logprob > m)
		m = t->logprob;
	return m;
}

/*
 * At token t the two sides chose different tokens. Benign when each side's
 * top-k list holds the other side's token within near_tie_nats of its own
 * best: a flip between two almost equally likely tokens, what changed
 * rounding (batch shape, chunked prefill split) can cause. Anything that
 * cannot be shown to be such a flip counts as corruption.
 */
enum kvb_div_class kvb_classify_divergence(const struct kvb_out_rec *base,
					   const struct kvb_out_rec *cand, long t,
					   double near_tie_nats, double *gap, const char **why)
{
	const struct kvb_tok_lp *bt, *ct;
	double lp, g, g2;

	*gap = NAN;
	if (t < 0) {
		*why = "no token ids or logprobs to locate the divergence";
		return KVB_DIV_CORRUPTION;
	}
	if (!base->lps || (size_t)t >= base->n_lps || !base->lps[t].n_top) {
		*why = "no baseline top-k logprobs at the divergence";
		return KVB_DIV_CORRUPTION;
	}
	if (!cand->lps || (size_t)t >= cand->n_lps) {
		*why = "candidate has no token at the divergence (ended early or no logprobs)";
		return KVB_DIV_CORRUPTION;
	}
	bt = &base->lps[t];
	ct = &cand->lps[t];
	if (!strcmp(bt->token, ct->token)) {
		*why = "same token text, different token id";
		return KVB_DIV_CORRUPTION;
	}
	if (!top_find(bt, ct->token, &lp)) {
		*why = "candidate's token is not in the baseline's top-k";
		return KVB_DIV_CORRUPTION;
	}
	g = top_max(bt) - lp;
	if (ct->n_top) {
		if (!top_find(ct, bt->token, &lp)) {
			*gap = g;
			*why = "baseline's token is not in the candidate's top-k";
			return KVB_DIV_CORRUPTION;
		}
		g2 = top_max(ct) - lp;
		if (g2 > g)
			g = g2;
	}
	*gap = g;
	if (g < near_tie_nats) {
		*why = "top-1/top-2 gap below the near-tie threshold";
		return KVB_DIV_NEAR_TIE;
	}
	*why = "the flipped token was not a near-tie";
	return KVB_DIV_CORRUPTION;
}

static json_t *num_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static int write_divergences(const char *path, const struct kvb_identity_result *r)
{
	struct kv_buf b = KV_BUF_INIT(0);
	int rc;

	for (size_t i = 0; i < r->n_div; i++) {
		const struct kvb_divergence *d = &r->div[i];
		const struct kvb_out_rec *x = d->pair->base, *y = d->pair->cand;
		json_t *o = json_pack("{s:s, s:s, s:i, s:I, s:s, s:i, s:I, s:I, s:I, s:s, s:o, s:s, s:s?, s:s?}",
				      "key", x->key, "base_engine", x->engine_id, "base_pass", x->pass,
				      "base_request_id", (json_int_t)x->request_id, "cand_engine", y->engine_id,
				      "cand_pass", y->pass, "cand_request_id", (json_int_t)y->request_id,
				      "char_pos", (json_int_t)d->char_pos, "token_pos", (json_int_t)d->token_pos,
				      "class", kvb_div_class_name(d->cls), "gap", num_or_null(d->gap),
				      "why", d->why, "base_text", x->text, "cand_text", y->text);
		char *s = o ? json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
		if (s) {
			kv_buf_puts(&b, s);
			kv_buf_putc(&b, '\n');
		}
		free(s);
		json_decref(o);
	}
	rc = kv_write_file_atomic(path, b.data ? b.data : "", b.len);
	kv_buf_release(&b);
	if (rc < 0)
		kv_error("%s: cannot write divergences", path);
	return rc;
}

int kvb_check_identity(const struct kvb_pair *pairs, size_t n,
		       const struct kvb_identity_opts *o, struct kvb_identity_result *r,
		       struct kvb_check *c)
{
	double thr = o && o->near_tie_nats > 0 ? o->near_tie_nats : KVB_NEAR_TIE_NATS_DEFAULT;
	bool strict = o && o->strict;
	double figure;
	bool passed;

	memset(r, 0, sizeof(*r));
	r->n_pairs = n;
	r->div = xcalloc(n + 1, sizeof(*r->div));
	for (size_t i = 0; i < n; i++) {
		const struct kvb_out_rec *a = pairs[i].base, *b = pairs[i].cand;
		long cp = first_byte_diff(a->text, b->text);
		long tp = kvb_first_token_diff(a, b);
		bool ids = a->has_token_ids && b->has_token_ids;
		struct kvb_divergence *d;

		if (cp < 0)
			r->n_text_identical++;
		if (ids) {
			r->n_ids_compared++;
			if (tp < 0)
				r->n_ids_identical++;
		}
		if (cp < 0 && tp < 0)
			continue;
		d = &r->div[r->n_div++];
		d->pair = &pairs[i];
		d->char_pos = cp;
		d->token_pos = tp;
		d->cls = kvb_classify_divergence(a, b, tp, thr, &d->gap, &d->why);
		if (d->cls == KVB_DIV_NEAR_TIE)
			r->n_near_tie++;
		else
			r->n_corruption++;
	}
	if (o && o->divergences_path && write_divergences(o->divergences_path, r) < 0)
		return -1;
	if (!n) {
		kvb_check_set(c, "identity", false, NAN, 1.0, "fraction",
			      "no pairs to compare (no common keys with status ok)");
		return 0;
	}
	figure = (double)(n - r->n_div + (strict ? 0 : r->n_near_tie)) / (double)n;
	passed = r->n_corruption == 0 && (!strict || r->n_near_tie == 0);
	if (!r->n_div) {
		kvb_check_set(c, "identity", true, figure, 1.0, "fraction",
			      "%zu/%zu outputs byte-identical%s", n, n,
			      r->n_ids_compared ? ", token ids identical" : "");
	} else {
		const struct kvb_divergence *d0 = &r->div[0];
		for (size_t i = 0; i < r->n_div; i++)
			if (r->div[i].cls == KVB_DIV_CORRUPTION) {
				d0 = &r->div[i];
				break;
			}
		kvb_check_set(c, "identity", passed, figure, 1.0, "fraction",
			      "%zu/%zu byte-identical, %zu benign near-ties (gap < %g nats), %zu corruption; "
			      "first: key %s char %ld token %ld (%s)",
			      r->n_text_identical, n, r->n_near_tie, thr, r->n_corruption,
			      d0->pair->base->key, d0->char_pos, d0->token_pos, d0->why);
	}
	return 0;
}

void kvb_identity_result_release(struct kvb_identity_result *r)
{
	free(r->div);
	memset(r, 0, sizeof(*r));
}

/* ---- logprobs ------------------------------------------------------------------- */

void kvb_lp_stats_init(struct kvb_lp_stats *s)
{
	memset(s, 0, sizeof(*s));
	s->worst_pos = -1;
}

/*
 * The logprob given to a token missing from t's top list: the lowest of the
 * list. OpenAI-style lists carry the chosen token too, appended when it is
 * not among the top k; when the chosen token is the strict minimum it is
 * left out of the floor (else a token just below the top-k would be given
 * the chosen token's far lower logprob).
 */
static double top_floor(const struct kvb_tok_lp *t)
{
	double m = INFINITY, m_other = INFINITY, chosen = NAN;
	for (int j = 0; j < t->n_top; j++) {
		double v = t->top[j].logprob;
		if (isnan(v))
			continue;
		if (v < m)
			m = v;
		if (t->token && !strcmp(t->top[j].token, t->token))
			chosen = v;
		else if (v < m_other)
			m_other = v;
	}
	if (!isnan(chosen) && isfinite(m_other) && chosen < m_other)
		return m_other;
	return m;
}

double kvb_topk_kl(const struct kvb_tok_lp *p, const struct kvb_tok_lp *q)
{
	double pmin, qmin, zp = 0, zq = 0, kl = 0;
	int n = 0;
	double *lp, *lq;

	if (!p->n_top || !q->n_top)
		return NAN;
	pmin = top_floor(p);
	qmin = top_floor(q);
	if (!isfinite(pmin) || !isfinite(qmin))
		return NAN;
	lp = xcalloc((size_t)(p->n_top + q->n_top), sizeof(double));
	lq = xcalloc((size_t)(p->n_top + q->n_top), sizeof(double));
	for (int j = 0; j < p->n_top; j++) {
		double v;
		lp[n] = p->top[j].logprob;
		lq[n] = top_find(q, p->top[j].token, &v) ? v : qmin;
		n++;
	}
	for (int j = 0; j < q->n_top; j++) {
		double v;
		if (top_find(p, q->top[j].token, &v))
			continue;
		lp[n] = pmin;
		lq[n] = q->top[j].logprob;
		n++;
	}
	for (int i = 0; i < n; i++) {
		zp += exp(lp[i]);
		zq += exp(lq[i]);
	}
	for (int i = 0; i < n; i++) {
		double pi = exp(lp[i]) / zp;
		kl += pi * ((lp[i] - log(zp)) - (lq[i] - log(zq)));
	}
	free(lp);
	free(lq);
	return kl < 0 ? 0 : kl;
}

void kvb_lp_compare(const struct kvb_out_rec *base, const struct kvb_out_rec *cand,
		    bool prompt, struct kvb_lp_stats *s)
{
	const struct kvb_tok_lp *a = prompt ? base->prompt_lps : base->lps;
	const struct kvb_tok_lp *b = prompt ? cand->prompt_lps : cand->lps;
	size_t na = prompt ? base->n_prompt_lps : base->n_lps;
	size_t nb = prompt ? cand->n_prompt_lps : cand->n_lps;
	size_t n = KV_MIN(na, nb);

	if (!a || !b)
		return;
	s->n_pairs++;
	for (size_t i = 0; i < n; i++) {
		double d, kl;
		if (strcmp(a[i].token, b[i].token))
			break; /* after a divergence the contexts differ */
		if (!isnan(a[i].logprob) && !isnan(b[i].logprob)) {
			d = fabs((double)a[i].logprob - (double)b[i].logprob);
			s->n_tokens++;
			s->mean_abs += d;
			if (!s->worst_key || d > s->max_abs) {
				s->max_abs = d;
				s->worst_key = base->key;
				s->worst_pos = (long)i;
			}
		}
		for (int j = 0; j < a[i].n_top; j++) {
			double v;
			if (isnan(a[i].top[j].logprob) || !top_find(&b[i], a[i].top[j].token, &v))
				continue;
			d = fabs((double)a[i].top[j].logprob - v);
			s->n_top++;
			s->mean_abs_top += d;
			if (d > s->max_abs_top)
				s->max_abs_top = d;
		}
		kl = kvb_topk_kl(&a[i], &b[i]);
		if (!isnan(kl)) {
			s->mean_kl += kl;
			if (kl > s->max_kl)
				s->max_kl = kl;
			s->n_kl++;
		}
	}
}

void kvb_lp_stats_finish(struct kvb_lp_stats *s)
{
	s->mean_abs = s->n_tokens ? s->mean_abs / (double)s->n_tokens : NAN;
	s->mean_abs_top = s->n_top ? s->mean_abs_top / (double)s->n_top : NAN;
	s->mean_kl = s->n_kl ? s->mean_kl / (double)s->n_kl : NAN;
}

int kvb_check_logprobs(const struct kvb_pair *pairs, size_t n, const struct kvb_lp_opts *o,
		       struct kvb_lp_stats *s, struct kvb_check *c)
{
	bool prompt = o && o->prompt;
	double max_d = o && o->max_abs_delta > 0 ? o->max_abs_delta : KVB_MAX_LP_DELTA_DEFAULT;
	double max_kl = o && o->max_kl > 0 ? o->max_kl : KVB_MAX_KL_DEFAULT;
	const char *name = prompt ? "prompt_logprobs" : "logprobs";
	bool ok_d, ok_kl;

	kvb_lp_stats_init(s);
	for (size_t i = 0; i < n; i++)
		kvb_lp_compare(pairs[i].base, pairs[i].cand, prompt, s);
	kvb_lp_stats_finish(s);
	if (!s->n_tokens) {
		kvb_check_set(c, name, true, NAN, max_d, "nats", "not measured: no pair has %s on both sides",
			      prompt ? "prompt logprobs (echo)" : "logprobs");
		return 1;
	}
	ok_d = s->max_abs <= max_d;
	ok_kl = !(s->n_kl && s->max_kl > max_kl);
	kvb_check_set(c, name, ok_d && ok_kl, s->max_abs, max_d, "nats",
		      "max |dlp| %.4g (key %s token %ld), mean %.3g over %zu tokens of %zu pairs; "
		      "top-k max %.3g; KL max %.3g (limit %g) mean %.3g",
		      s->max_abs, s->worst_key ? s->worst_key : "-", s->worst_pos, s->mean_abs,
		      s->n_tokens, s->n_pairs, s->max_abs_top, s->n_kl ? s->max_kl : NAN, max_kl,
		      s->mean_kl);
	return 0;
}
