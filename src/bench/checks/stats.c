/* Accuracy and text-quality statistics: Wilson, McNemar, bootstrap, F1, ROUGE-L. */
#include "common/util.h"

#include <ctype.h>
#include <math.h>

#include "common/buf.h"
#include "checks/checks.h"
#include "rand.h"
#include "common/banned.h"

#define MAX_TOKENS 20000 /* per text, for F1 and ROUGE-L (bounded work) */

double kvb_mean(const double *v, size_t n)
{
	double s = 0;
	if (!n)
		return NAN;
	for (size_t i = 0; i < n; i++)
		s += v[i];
	return s / (double)n;
}

double kvb_stddev(const double *v, size_t n)
{
	double m = kvb_mean(v, n), s = 0;
	if (n < 2)
		return NAN;
	for (size_t i = 0; i < n; i++)
		s += (v[i] - m) * (v[i] - m);
	return sqrt(s / (double)(n - 1));
}

void kvb_wilson(size_t k, size_t n, double z, double *lo, double *hi)
{
	double p, z2, den, center, half;
	if (!n) {
		*lo = 0;
		*hi = 1;
		return;
	}
	p = (double)k / (double)n;
	z2 = z * z;
	den = 1 + z2 / (double)n;
	center = (p + z2 / (2.0 * (double)n)) / den;
	half = z / den * sqrt(p * (1 - p) / (double)n + z2 / (4.0 * (double)n * (double)n));
	*lo = KV_MAX(0.0, center - half);
	*hi = KV_MIN(1.0, center + half);
}

double kvb_mcnemar_exact(size_t b, size_t c)
{
	size_t n = b + c, k = KV_MIN(b, c);
	double sum = 0, p;
	if (!n)
		return 1.0;
	for (size_t i = 0; i <= k; i++)
		sum += exp(lgamma((double)n + 1) - lgamma((double)i + 1) - lgamma((double)(n - i) + 1) -
			   (double)n * log(2.0));
	p = 2 * sum;
	return p > 1 ? 1.0 : p;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double quantile_sorted(const double *v, size_t n, double q)
{
	double pos = q * (double)(n - 1);
	size_t i = (size_t)floor(pos);
	double f = pos - (double)i;
	if (i + 1 >= n)
		return v[n - 1];
	return v[i] + f * (v[i + 1] - v[i]);
}

void kvb_bootstrap_diff(const double *x, const double *y, size_t n, unsigned iters,
			uint64_t seed, double level, double *mean, double *lo, double *hi)
{
	double *m;
	struct kvb_rand rng;
	double sum = 0;

	if (!n) {
		*mean = *lo = *hi = NAN;
		return;
	}
	for (size_t i = 0; i < n; i++)
		sum += y[i] - x[i];
	*mean = sum / (double)n;
	if (!iters)
		iters = KVB_BOOTSTRAP_ITERS;
	kvb_rand_seed(&rng, seed);
	m = xmalloc(iters * sizeof(*m));
	for (unsigned b = 0; b < iters; b++) {
		double t = 0;
		for (size_t i = 0; i < n; i++) {
			size_t j = (size_t)kvb_rand_below(&rng, n);
			t += y[j] - x[j];
		}
		m[b] = t / (double)n;
	}
	qsort(m, iters, sizeof(*m), cmp_dbl);
	*lo = quantile_sorted(m, iters, (1 - level) / 2);
	*hi = quantile_sorted(m, iters, 1 - (1 - level) / 2);
	free(m);
}

/* ---- text ------------------------------------------------------------------- */

void kvb_squad_normalize(const char *s, char *out, size_t outsz)
{
	size_t o = 0;
	bool space = true; /* at the start: drop leading spaces */
	const char *w;

	if (!outsz)
		return;
	/* lowercase, drop ASCII punctuation, split on whitespace, drop articles */
	while (*s) {
		size_t wl = 0;
		char word[256];
		bool long_word = false;
		while (*s && isspace((unsigned char)*s))
			s++;
		if (!*s)
			break;
		w = s;
		while (*s && !isspace((unsigned char)*s)) {
			unsigned char ch = (unsigned char)*s++;
			if (ch < 0x80 && ispunct(ch))
				continue;
			if (wl < sizeof(word) - 1)
				word[wl++] = (char)tolower(ch);
			else
				long_word = true;
		}
		(void)w;
		word[wl] = '\0';
		if (!wl || (!long_word && (!strcmp(word, "a") || !strcmp(word, "an") || !strcmp(word, "the"))))
			continue;
		if (!space && o + 1 < outsz)
			out[o++] = ' ';
		for (size_t i = 0; i < wl && o + 1 < outsz; i++)
			out[o++] = word[i];
		space = false;
	}
	out[o] = '\0';
}

/* Splits s (modified) into tokens at spaces; at most MAX_TOKENS. */
static size_t split_ws(char *s, char **tok)
{
	size_t n = 0;
	char *p = s;
	while (*p && n < MAX_TOKENS) {
		while (*p == ' ')
			*p++ = '\0';
		if (!*p)
			break;
		tok[n++] = p;
		while (*p && *p != ' ')
			p++;
	}
	return n;
}

static int cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

double kvb_f1(const char *pred, const char *gold)
{
	size_t lp = strlen(pred) + 1, lg = strlen(gold) + 1;
	char *a = xmalloc(lp), *b = xmalloc(lg);
	char **ta = xmalloc(MAX_TOKENS * sizeof(char *)), **tb = xmalloc(MAX_TOKENS * sizeof(char *));
	size_t na, nb, i = 0, j = 0, common = 0;
	double f1, p, r;

	kvb_squad_normalize(pred, a, lp);
	kvb_squad_normalize(gold, b, lg);
	na = split_ws(a, ta);
	nb = split_ws(b, tb);
	if (!na || !nb) {
		f1 = na == nb ? 1.0 : 0.0;
		goto out;
	}
	qsort(ta, na, sizeof(*ta), cmp_strp);
	qsort(tb, nb, sizeof(*tb), cmp_strp);
	while (i < na && j < nb) {
		int c = strcmp(ta[i], tb[j]);
		if (!c) {
			common++;
			i++;
			j++;
		} else if (c < 0)
			i++;
		else
			j++;
	}
	if (!common) {
		f1 = 0;
		goto out;
	}
	p = (double)common / (double)na;
	r = (double)common / (double)nb;
	f1 = 2 * p * r / (p + r);
out:
	free(a);
	free(b);
	free(ta);
	free(tb);
	return f1;
}

/* rouge_score's default tokenizer: lowercase, runs of [a-z0-9]. */
static size_t rouge_tokens(const char *s, char *buf, char **tok)
{
	size_t n = 0, o = 0;
	bool in = false;
	for (; *s && n < MAX_TOKENS; s++) {
		char ch = (char)tolower((unsigned char)*s);
		if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')) {
			if (!in)
				tok[n++] = buf + o;
			buf[o++] = ch;
			in = true;
		} else if (in) {
			buf[o++] = '\0';
			in = false;
		}
	}
	buf[o] = '\0';
	return n;
}

double kvb_rouge_l(const char *pred, const char *gold)
{
	size_t lp = strlen(pred) + 2, lg = strlen(gold) + 2;
	char *a = xmalloc(lp), *b = xmalloc(lg);
	char **ta = xmalloc(MAX_TOKENS * sizeof(char *)), **tb = xmalloc(MAX_TOKENS * sizeof(char *));
	size_t na = rouge_tokens(pred, a, ta), nb = rouge_tokens(gold, b, tb);
	uint32_t *prev, *cur;
	double f = 0, p, r;
	size_t lcs;

	if (!na || !nb)
		goto out;
	prev = xcalloc(nb + 1, sizeof(*prev));
	cur = xcalloc(nb + 1, sizeof(*cur));
	for (size_t i = 1; i <= na; i++) {
		for (size_t j = 1; j <= nb; j++)
			cur[j] = !strcmp(ta[i - 1], tb[j - 1]) ? prev[j - 1] + 1 : KV_MAX(prev[j], cur[j - 1]);
		memcpy(prev, cur, (nb + 1) * sizeof(*prev));
	}
	lcs = prev[nb];
	free(prev);
	free(cur);
	if (lcs) {
		p = (double)lcs / (double)na;
		r = (double)lcs / (double)nb;
		f = 2 * p * r / (p + r);
	}
out:
	free(a);
	free(b);
	free(ta);
	free(tb);
	return f;
}

char *kvb_parse_generation(const char *s)
{
	const char *e;
	char *r;
	while (*s == '\n')
		s++;
	e = strchr(s, '\n');
	r = e ? xstrndup(s, (size_t)(e - s)) : xstrdup(s);
	if (!strncmp(r, "Yes", 3) || !strncmp(r, "yes", 3)) {
		free(r);
		return xstrdup("Yes");
	}
	{
		const char *w = r;
		while (isspace((unsigned char)*w))
			w++;
		if (!strncmp(w, "No", 2) || !strncmp(w, "no", 2)) {
			free(r);
			return xstrdup("No");
		}
	}
	return r;
}

double kvb_best_over_lines(double (*f)(const char *, const char *), const char *pred,
			   const char *golds)
{
	double best = 0;
	const char *p = golds;
	for (;;) {
		const char *e = strchr(p, '\n');
		char *g = e ? xstrndup(p, (size_t)(e - p)) : xstrdup(p);
		double v = f(pred, g);
		free(g);
		if (v > best)
			best = v;
		if (!e)
			break;
		p = e + 1;
	}
	return best;
}

/* ---- answers ----------------------------------------------------------------- */

static bool is_letter_answer(const char *e)
{
	return e && e[0] >= 'A' && e[0] <= 'D' && !e[1];
}

char kvb_mcq_choice(const struct kvb_out_rec *r)
{
	const char *t = r->text ? r->text : "";
	if (r->lps && r->n_lps && r->lps[0].n_top) {
		const struct kvb_tok_lp *f = &r->lps[0];
		char best = 0;
		double bl = -INFINITY;
		for (int j = 0; j < f->n_top; j++) {
			const char *s = f->top[j].token;
			char l;
			while (*s == ' ' || *s == '\t' || *s == '\n')
				s++;
			l = *s;
			if (l < 'A' || l > 'D' || s[1] || isnan(f->top[j].logprob))
				continue;
			if (f->top[j].logprob > bl) {
				bl = f->top[j].logprob;
				best = l;
			}
		}
		if (best)
			return best;
	}
	for (; *t; t++)
		if (*t >= 'A' && *t <= 'D')
			return *t;
	return 0;
}

/* A number with optional sign, commas, $ and decimals; -1 when none. */
static int parse_num(const char *s, const char **end, double *v)
{
	char tmp[64];
	size_t o = 0;
	const char *p = s;
	bool digit = false;

	while (*p && o < sizeof(tmp) - 1) {
		if (*p == ',' || *p == '$') {
			p++;
			continue;
		}
		if ((*p == '-' && o == 0) || (*p >= '0' && *p <= '9') || (*p == '.' && digit)) {
			if (*p >= '0' && *p <= '9')
				digit = true;
			tmp[o++] = *p++;
			continue;
		}
		break;
	}
	while (o && tmp[o - 1] == '.')
		o--;
	tmp[o] = '\0';
	*end = p > s ? p : s + 1;
	if (!digit)
		return -1;
	return kv_parse_double(tmp, v);
}

static bool numeric_expected(const char *e, double *v)
{
	const char *end;
	if (!e || !*e)
		return false;
	return parse_num(e, &end, v) == 0 && !*end;
}

bool kvb_answer_correct(const struct kvb_out_rec *r)
{
	const char *t = r->text ? r->text : "";
	double want, got = NAN, x;

	if (!r->expected)
		return false;
	if (is_letter_answer(r->expected))
		return kvb_mcq_choice(r) == r->expected[0];
	if (numeric_expected(r->expected, &want)) {
		const char *h = strstr(t, "####"), *p, *end;
		if (h) {
			p = h + 4;
			while (*p == ' ')
				p++;
			if (parse_num(p, &end, &x) == 0)
				got = x;
		}
		if (isnan(got))
			for (p = t; *p; p = end) {
				if ((*p >= '0' && *p <= '9') || (*p == '-' && p[1] >= '0' && p[1] <= '9') ||
				    *p == '$') {
					if (parse_num(p, &end, &x) == 0)
						got = x;
				} else {
					end = p + 1;
				}
			}
		return !isnan(got) && fabs(got - want) <= 1e-9 * KV_MAX(1.0, fabs(want));
	}
	{
		size_t lt = strlen(t) + 1;
		char *a = xmalloc(lt);
		bool ok = false;
		const char *p = r->expected;
		kvb_squad_normalize(t, a, lt);
		for (;;) {
			const char *e = strchr(p, '\n');
			char *g = e ? xstrndup(p, (size_t)(e - p)) : xstrdup(p);
			size_t lg = strlen(g) + 1;
			char *b = xmalloc(lg);
			kvb_squad_normalize(g, b, lg);
			if (!strcmp(a, b))
				ok = true;
			free(g);
			free(b);
			if (!e || ok)
				break;
			p = e + 1;
		}
		free(a);
		return ok;
	}
}

int kvb_check_accuracy(const struct kvb_pair *pairs, size_t n, const struct kvb_acc_opts *o,
		       struct kvb_acc_result *r, struct kvb_check *c)
{
	double max_drop = o && o->max_drop >= 0 ? o->max_drop : KVB_MAX_ACC_DROP_DEFAULT;
	double alpha = o && o->alpha > 0 ? o->alpha : KVB_ALPHA_DEFAULT;
	bool fail;

	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < n; i++) {
		bool a, b;
		if (!pairs[i].base->expected && !pairs[i].cand->expected)
			continue;
		{
			/* score both sides against the baseline's reference */
			struct kvb_out_rec x = *pairs[i].base, y = *pairs[i].cand;
			const char *e = x.expected ? x.expected : y.expected;
			x.expected = (char *)e;
			y.expected = (char *)e;
			a = kvb_answer_correct(&x);
			b = kvb_answer_correct(&y);
		}
		r->n++;
		r->base_correct += a;
		r->cand_correct += b;
		if (a && !b)
			r->b++;
		if (!a && b)
			r->c++;
	}
	if (!r->n) {
		kvb_check_set(c, "accuracy", true, NAN, max_drop, "fraction",
			      "not measured: no request has an expected answer");
		return 1;
	}
	r->base_acc = (double)r->base_correct / (double)r->n;
	r->cand_acc = (double)r->cand_correct / (double)r->n;
	kvb_wilson(r->base_correct, r->n, 1.959963985, &r->base_lo, &r->base_hi);
	kvb_wilson(r->cand_correct, r->n, 1.959963985, &r->cand_lo, &r->cand_hi);
	r->p_value = kvb_mcnemar_exact(r->b, r->c);
	r->drop = r->base_acc - r->cand_acc;
	fail = r->drop > max_drop && r->p_value < alpha;
	kvb_check_set(c, "accuracy", !fail, r->drop, max_drop, "fraction",
		      "baseline %.4f [%.4f, %.4f], candidate %.4f [%.4f, %.4f] (n=%zu, Wilson 95%%); "
		      "discordant %zu/%zu, exact McNemar p=%.4g (alpha %g)%s",
		      r->base_acc, r->base_lo, r->base_hi, r->cand_acc, r->cand_lo, r->cand_hi, r->n,
		      r->b, r->c, r->p_value, alpha,
		      fail ? ": significant drop beyond the allowance"
			   : r->drop > max_drop ? ": drop beyond the allowance but not significant" : "");
	return 0;
}

int kvb_check_quality(const struct kvb_pair *pairs, size_t n, const struct kvb_quality_opts *o,
		      struct kvb_quality_result *r, struct kvb_check c[2])
{
	double max_drop = o && o->max_drop >= 0 ? o->max_drop : KVB_MAX_QUALITY_DROP_DEFAULT;
	uint64_t seed = o ? o->seed : 0;
	double *bf = xcalloc(n + 1, sizeof(double)), *cf = xcalloc(n + 1, sizeof(double));
	double *br = xcalloc(n + 1, sizeof(double)), *cr = xcalloc(n + 1, sizeof(double));
	size_t m = 0;
	int rc = 0;

	memset(r, 0, sizeof(*r));
	for (size_t i = 0; i < n; i++) {
		const char *e = pairs[i].base->expected ? pairs[i].base->expected : pairs[i].cand->expected;
		char *pb, *pc;
		if (!e)
			continue;
		pb = kvb_parse_generation(pairs[i].base->text ? pairs[i].base->text : "");
		pc = kvb_parse_generation(pairs[i].cand->text ? pairs[i].cand->text : "");
		bf[m] = kvb_best_over_lines(kvb_f1, pb, e);
		cf[m] = kvb_best_over_lines(kvb_f1, pc, e);
		br[m] = kvb_best_over_lines(kvb_rouge_l, pb, e);
		cr[m] = kvb_best_over_lines(kvb_rouge_l, pc, e);
		free(pb);
		free(pc);
		m++;
	}
	r->n = m;
	if (!m) {
		kvb_check_set(&c[0], "f1", true, NAN, max_drop, "F1", "not measured: no expected answers");
		kvb_check_set(&c[1], "rouge_l", true, NAN, max_drop, "ROUGE-L", "not measured: no expected answers");
		rc = 1;
		goto out;
	}
	r->base_f1 = kvb_mean(bf, m);
	r->cand_f1 = kvb_mean(cf, m);
	r->base_rl = kvb_mean(br, m);
	r->cand_rl = kvb_mean(cr, m);
	kvb_bootstrap_diff(bf, cf, m, KVB_BOOTSTRAP_ITERS, seed, 0.95, &r->f1_diff, &r->f1_lo, &r->f1_hi);
	kvb_bootstrap_diff(br, cr, m, KVB_BOOTSTRAP_ITERS, seed, 0.95, &r->rl_diff, &r->rl_lo, &r->rl_hi);
	for (int k = 0; k < 2; k++) {
		double diff = k ? r->rl_diff : r->f1_diff, lo = k ? r->rl_lo : r->f1_lo;
		double hi = k ? r->rl_hi : r->f1_hi;
		double b = k ? r->base_rl : r->base_f1, cc = k ? r->cand_rl : r->cand_f1;
		bool fail = -diff > max_drop && hi < 0;
		kvb_check_set(&c[k], k ? "rouge_l" : "f1", !fail, b - cc, max_drop, k ? "ROUGE-L" : "F1",
			      "baseline %.4f, candidate %.4f, difference %+.4f [%+.4f, %+.4f] (paired bootstrap 95%%, "
			      "%d resamples, n=%zu)%s",
			      b, cc, diff, lo, hi, KVB_BOOTSTRAP_ITERS, m,
			      fail ? ": significant drop beyond the allowance" : "");
	}
out:
	free(bf);
	free(cf);
	free(br);
	free(cr);
	return rc;
}

/* ---- TTFT ---------------------------------------------------------------------- */

int kvb_check_ttft_ratio(const double *cold, size_t n_cold, const double *warm, size_t n_warm,
			 double min_ratio, struct kvb_check *c)
{
	double mc = kvb_mean(cold, n_cold), mw = kvb_mean(warm, n_warm);
	double ratio = mc / mw;
	if (!n_cold || !n_warm || !(mw > 0)) {
		kvb_check_set(c, "ttft_ratio", false, NAN, min_ratio, "x",
			      "no cold or warm TTFT to compare (%zu cold, %zu warm)", n_cold, n_warm);
		return 0;
	}
	kvb_check_set(c, "ttft_ratio", ratio >= min_ratio, ratio, min_ratio, "x",
		      "cold TTFT %.4f s (sd %.4f, n=%zu) / warm %.4f s (sd %.4f, n=%zu)", mc,
		      kvb_stddev(cold, n_cold), n_cold, mw, kvb_stddev(warm, n_warm), n_warm);
	return 0;
}

int kvb_check_speedup(const double *base, size_t n_base, const double *cand, size_t n_cand,
		      double min_speedup, struct kvb_check *c)
{
	double mb = kvb_mean(base, n_base), mc = kvb_mean(cand, n_cand);
	double s = mb / mc;
	if (!n_base || !n_cand || !(mc > 0)) {
		kvb_check_set(c, "speedup", false, NAN, min_speedup, "x",
			      "no baseline or candidate TTFT (%zu, %zu)", n_base, n_cand);
		return 0;
	}
	kvb_check_set(c, "speedup", s >= min_speedup, s, min_speedup, "x",
		      "baseline TTFT %.4f s (n=%zu) / candidate %.4f s (n=%zu)", mb, n_base, mc, n_cand);
	return 0;
}
