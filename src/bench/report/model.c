/* model.c: see model.h. */
#include "report/model.h"

#include <ctype.h>
#include <math.h>

#include "common/util.h"
#include "report/stats.h"
#include "common/banned.h"

#define BOOT_ROUNDS 400
#define CDF_POINTS 1000
#define MAX_X_VALUES 24   /* more distinct lengths or turns than this: binned */
#define BOOT_SEED 0x6b7662656e6368ULL   /* "kvbench" */

void kvr_pass_name(char *buf, size_t len, int pass, int max_pass)
{
	if (pass <= 0)
		snprintf(buf, len, "cold");
	else if (max_pass <= 1)
		snprintf(buf, len, "warm");
	else
		snprintf(buf, len, "warm %d", pass);
}

/* Line style of a pass: cold dashed, the first warm pass solid, later ones dotted... */
static int pass_dash(int pass, int max_pass)
{
	if (max_pass <= 0)
		return 0;
	return pass == 0 ? 1 : pass == 1 ? 0 : 2 + (pass - 2) % 2;
}

static char *make_slug(const char *name, size_t idx, const struct kvr_view *v)
{
	char s[64];
	size_t o = 0;

	for (const char *p = name; *p && o + 1 < 40; p++) {
		unsigned char c = (unsigned char)*p;
		if (isalnum(c))
			s[o++] = (char)tolower(c);
		else if (o > 0 && s[o - 1] != '-')
			s[o++] = '-';
	}
	while (o > 0 && s[o - 1] == '-')
		o--;
	if (o == 0)
		o = (size_t)snprintf(s, sizeof(s), "test");
	s[o] = '\0';
	for (size_t i = 0; i < idx; i++)
		if (!strcmp(v->tests[i].slug, s))
			return xasprintf("%s-%zu", s, idx + 1);
	return xstrdup(s);
}

/* Values of the test's usable requests matching engine/pass (-1: any), with f. */
static double *collect(const struct kvr_test *t, int engine, int pass, double ctx,
		       int64_t turn, size_t *n)
{
	double *v = xmalloc((t->nreqs ? t->nreqs : 1) * sizeof(*v));

	*n = 0;
	for (size_t i = 0; i < t->nreqs; i++) {
		const struct kvr_req *q = &t->reqs[i];
		if (q->warmup || !q->ok || !isfinite(q->ttft))
			continue;
		if ((engine >= 0 && q->engine_idx != engine) || (pass >= 0 && q->pass != pass))
			continue;
		if (!isnan(ctx) && q->context_len != ctx)
			continue;
		if (turn >= 0 && q->turn != turn)
			continue;
		v[(*n)++] = q->ttft;
	}
	return v;
}

static bool has_pass(const struct kvr_test *t, int e, int p)
{
	for (size_t i = 0; i < t->nreqs; i++)
		if (t->reqs[i].engine_idx == e && t->reqs[i].pass == p)
			return true;
	return false;
}

static struct kvr_slot *new_slot(struct kvr_test_view *tv)
{
	struct kvr_slot *s;

	tv->slots = xrealloc(tv->slots, (tv->nslots + 1) * sizeof(*tv->slots));
	s = &tv->slots[tv->nslots++];
	memset(s, 0, sizeof(*s));
	return s;
}

static void slot_init(struct kvr_test_view *tv, struct kvr_slot **out, enum kvr_chart_kind kind,
		      const char *what, const char *title, const char *xl, const char *yl)
{
	struct kvr_slot *s = new_slot(tv);
	char *id = xasprintf("%s-%s", tv->slug, what);

	kvr_chart_init(&s->chart, kind, id, title, xl, yl);
	free(id);
	*out = s;
}

static void series_label(char *buf, size_t len, const struct kvr_test *t, int e, int p)
{
	char pn[32];
	kvr_pass_name(pn, sizeof(pn), p, t->max_pass);
	if (t->max_pass > 0)
		snprintf(buf, len, "%.60s, %s", t->engines[e], pn);
	else
		snprintf(buf, len, "%.60s", t->engines[e]);
}

static void chart_cdf(struct kvr_test_view *tv, double scale)
{
	const struct kvr_test *t = tv->test;
	struct kvr_slot *s;
	char xl[64], lab[128];

	snprintf(xl, sizeof(xl), "time to first token (%s)", tv->ttft_unit);
	slot_init(tv, &s, KVR_CHART_XY, "ttft-cdf", "TTFT distribution", xl,
		  "requests at or below (%)");
	s->note_if_empty = true;
	s->chart.style = KVR_STYLE_STEP;
	s->chart.y_from_zero = true;
	for (size_t e = 0; e < t->nengines; e++) {
		for (int p = 0; p <= KV_MAX(t->max_pass, 0); p++) {
			size_t n;
			double *v = collect(t, (int)e, p, NAN, -1, &n);
			if (n > 0) {
				struct kvr_series *se;
				/* At most CDF_POINTS steps, taken at evenly spaced ranks
				 * (first and last kept), so that a long run stays light. */
				size_t m = KV_MIN(n, (size_t)CDF_POINTS);
				kvr_quantile(v, n, 0.5);   /* sorts */
				series_label(lab, sizeof(lab), t, (int)e, p);
				se = kvr_chart_add_series(&s->chart, lab, m, (int)e,
							  pass_dash((int)p, t->max_pass));
				for (size_t i = 0; i < m; i++) {
					size_t k = m == 1 ? 0 : i * (n - 1) / (m - 1);
					se->x[i] = v[k] * scale;
					se->y[i] = 100.0 * (double)(k + 1) / (double)n;
				}
			}
			free(v);
		}
	}
}

static int dcmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double req_x(const struct kvr_req *q, bool use_turn)
{
	return use_turn ? (q->turn >= 0 ? (double)q->turn : NAN) : q->context_len;
}

/* Distinct finite values of context_len (use_turn false) or turn, sorted. */
static double *distinct(const struct kvr_test *t, bool use_turn, size_t *n)
{
	double *v = xmalloc((t->nreqs ? t->nreqs : 1) * sizeof(*v));
	size_t k = 0;

	for (size_t i = 0; i < t->nreqs; i++) {
		double x = req_x(&t->reqs[i], use_turn);
		if (isfinite(x))
			v[k++] = x;
	}
	qsort(v, k, sizeof(*v), dcmp);
	*n = 0;
	for (size_t i = 0; i < k; i++)
		if (*n == 0 || v[*n - 1] != v[i])
			v[(*n)++] = v[i];
	return v;
}

/* Index of x in the sorted xs (exact), or -1. */
static long find_x(const double *xs, size_t n, double x)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (xs[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n && xs[lo] == x ? (long)lo : -1;
}

/*
 * Mean TTFT ± std against context length or turn, per engine and pass, in
 * one pass over the requests. Up to MAX_X_VALUES distinct values are points
 * of their own; more are grouped into about 12 bins of a round width, drawn
 * at the bin's centre.
 */
static void chart_by(struct kvr_test_view *tv, double scale, bool by_turn)
{
	const struct kvr_test *t = tv->test;
	const size_t np = (size_t)KV_MAX(t->max_pass, 0) + 1;
	struct kvr_slot *s;
	size_t nx, ncell;
	double *xs = distinct(t, by_turn, &nx), *sum, *sq, *cnt;
	double blo = 0, bstep = 0;
	bool binned = false;
	char yl[64], lab[128];

	if (nx < 2) {
		free(xs);
		return;
	}
	if (nx > MAX_X_VALUES) {
		double hi;
		kvr_nice_ticks(xs[0], xs[nx - 1], 13, &blo, &hi, &bstep);
		nx = (size_t)llround((hi - blo) / bstep);
		if (nx < 1)
			nx = 1;
		for (size_t i = 0; i < nx; i++)
			xs[i] = blo + ((double)i + 0.5) * bstep;
		binned = true;
	}
	ncell = t->nengines * np * nx;
	sum = xcalloc(ncell, sizeof(*sum));
	sq = xcalloc(ncell, sizeof(*sq));
	cnt = xcalloc(ncell, sizeof(*cnt));
	for (size_t i = 0; i < t->nreqs; i++) {
		const struct kvr_req *q = &t->reqs[i];
		double x = req_x(q, by_turn);
		long k;
		size_t c;
		if (q->warmup || !q->ok || !isfinite(q->ttft) || !isfinite(x))
			continue;
		if (binned)
			k = (long)fmin((double)(nx - 1), fmax(0, floor((x - blo) / bstep)));
		else
			k = find_x(xs, nx, x);
		if (k < 0)
			continue;
		c = ((size_t)q->engine_idx * np + (size_t)q->pass) * nx + (size_t)k;
		sum[c] += q->ttft;
		sq[c] += q->ttft * q->ttft;
		cnt[c] += 1;
	}
	snprintf(yl, sizeof(yl), "mean TTFT \xc2\xb1 std (%s)", tv->ttft_unit);
	if (by_turn)
		slot_init(tv, &s, KVR_CHART_XY, "ttft-turn", "TTFT per turn", "turn of the session",
			  yl);
	else
		slot_init(tv, &s, KVR_CHART_XY, "ttft-context", "TTFT against context length",
			  binned ? "context length (tokens, binned)" : "context length (tokens)", yl);
	s->chart.y_from_zero = true;
	s->chart.x_integer = true;
	for (size_t e = 0; e < t->nengines; e++) {
		for (size_t p = 0; p < np; p++) {
			struct kvr_series *se;
			if (!has_pass(t, (int)e, (int)p))
				continue;
			series_label(lab, sizeof(lab), t, (int)e, (int)p);
			se = kvr_chart_add_series(&s->chart, lab, nx, (int)e,
						  pass_dash((int)p, t->max_pass));
			for (size_t i = 0; i < nx; i++) {
				size_t c = (e * np + p) * nx + i;
				double n = cnt[c], m = n > 0 ? sum[c] / n : NAN;
				se->x[i] = xs[i];
				se->y[i] = m * scale;
				if (n > 1) {
					double var = fmax(0, (sq[c] - n * m * m) / (n - 1));
					se->lo[i] = (m - sqrt(var)) * scale;
					se->hi[i] = (m + sqrt(var)) * scale;
				}
			}
		}
	}
	free(sum);
	free(sq);
	free(cnt);
	free(xs);
}

static int baseline_engine(const struct kvr_test *t)
{
	static const char *const marks[] = { "baseline", "nocache", "no-cache", "no_cache" };

	if (t->nengines < 2)
		return -1;
	for (size_t m = 0; m < KV_ARRAY_SIZE(marks); m++)
		for (size_t e = 0; e < t->nengines; e++)
			if (strstr(t->engines[e], marks[m]))
				return (int)e;
	return -1;
}

/* Speedup = mean TTFT of `slow` / mean TTFT of `fast`, with a bootstrap interval. */
static void speedup(const struct kvr_test *t, int es, int ps, int ef, int pf, double *y,
		    double *lo, double *hi)
{
	size_t ns, nf;
	double *s = collect(t, es, ps, NAN, -1, &ns), *f = collect(t, ef, pf, NAN, -1, &nf);
	double ms = kvb_mean(s, ns), mf = kvb_mean(f, nf);

	*y = ns && nf && mf > 0 ? ms / mf : NAN;
	if (isfinite(*y) && ns > 1 && nf > 1)
		kvr_bootstrap(s, ns, f, nf, KVR_MEAN, true, BOOT_ROUNDS, 0.95, BOOT_SEED, lo, hi);
	free(s);
	free(f);
}

static void chart_speedup(struct kvr_test_view *tv)
{
	const struct kvr_test *t = tv->test;
	int base = baseline_engine(t);
	struct kvr_slot *s;
	struct kvr_series *se;

	if (t->max_pass < 1 && base < 0)
		return;
	slot_init(tv, &s, KVR_CHART_BARS, "speedup", "TTFT speedup (ratio of mean TTFT, 95% CI)",
		  "engine", "speedup (\xc3\x97)");
	s->chart.y_from_zero = true;
	s->chart.y_ref = 1;
	for (size_t e = 0; e < t->nengines; e++)
		kvr_chart_add_cat(&s->chart, t->engines[e]);
	if (t->max_pass >= 1) {
		se = kvr_chart_add_series(&s->chart, t->max_pass > 1 ?
					  "last warm pass vs cold, same engine" :
					  "warm vs cold, same engine", t->nengines, 0, 0);
		for (size_t e = 0; e < t->nengines; e++)
			speedup(t, (int)e, 0, (int)e, t->max_pass, &se->y[e], &se->lo[e],
				&se->hi[e]);
	}
	if (base >= 0) {
		for (int p = 0; p <= KV_MAX(t->max_pass, 0); p++) {
			char lab[160], pn[32];
			kvr_pass_name(pn, sizeof(pn), p, t->max_pass);
			snprintf(lab, sizeof(lab), "vs %.60s, %s", t->engines[base], pn);
			se = kvr_chart_add_series(&s->chart, lab, t->nengines, 1 + 2 * p, 0);
			for (size_t e = 0; e < t->nengines; e++) {
				se->y[e] = NAN;
				if ((int)e != base)
					speedup(t, base, p, (int)e, p, &se->y[e], &se->lo[e],
						&se->hi[e]);
			}
		}
	}
}

static void chart_throughput(struct kvr_test_view *tv)
{
	const struct kvr_test *t = tv->test;
	double tmin = INFINITY, tmax = -INFINITY, lo, hi, step;
	size_t nb;
	struct kvr_slot *s;

	for (size_t i = 0; i < t->nreqs; i++) {
		const struct kvr_req *q = &t->reqs[i];
		if (q->ok && isfinite(q->end_s) && isfinite(q->completion_tokens)) {
			tmin = fmin(tmin, q->end_s);
			tmax = fmax(tmax, q->end_s);
		}
	}
	slot_init(tv, &s, KVR_CHART_XY, "throughput", "Output token throughput over time",
		  "time since the start of the run (s)", "output tokens per second");
	s->note_if_empty = true;
	s->chart.style = KVR_STYLE_LINE;
	s->chart.y_from_zero = true;
	if (!isfinite(tmin) || !(tmax > tmin))
		return;
	/* About 30 bins, of a round width. */
	kvr_nice_ticks(0, (tmax - tmin) / 30, 2, &lo, &hi, &step);
	if (!(step > 0))
		return;
	lo = floor(tmin / step) * step;
	nb = (size_t)ceil((tmax - lo) / step + 1e-9);
	if (nb == 0)
		nb = 1;
	if (nb > 2000)
		return;
	for (size_t e = 0; e < t->nengines; e++) {
		double *tok = xcalloc(nb, sizeof(*tok));
		size_t first = nb, last = 0;
		struct kvr_series *se;
		for (size_t i = 0; i < t->nreqs; i++) {
			const struct kvr_req *q = &t->reqs[i];
			size_t b;
			if ((size_t)q->engine_idx != e || !q->ok || !isfinite(q->end_s) ||
			    !isfinite(q->completion_tokens))
				continue;
			b = (size_t)fmin((double)(nb - 1), floor((q->end_s - lo) / step));
			tok[b] += q->completion_tokens;
			first = KV_MIN(first, b);
			last = KV_MAX(last, b);
		}
		if (first < nb) {
			se = kvr_chart_add_series(&s->chart, t->engines[e], last - first + 1,
						  (int)e, 0);
			for (size_t b = first; b <= last; b++) {
				se->x[b - first] = lo + ((double)b + 0.5) * step;
				se->y[b - first] = tok[b] / step;
			}
		}
		free(tok);
	}
}

static void chart_hit_rate(struct kvr_test_view *tv)
{
	const struct kvr_test *t = tv->test;
	struct kvr_slot *s;
	int maxp = -1;
	char **eng = NULL;
	size_t neng = 0;

	for (size_t g = 0; g < t->ngroups; g++) {
		bool seen = false;
		if (!isfinite(t->groups[g].hit_rate))
			continue;
		maxp = KV_MAX(maxp, KV_MIN(t->groups[g].pass, 50));
		for (size_t i = 0; i < neng; i++)
			seen |= !strcmp(eng[i], t->groups[g].engine);
		if (!seen) {
			eng = xrealloc(eng, (neng + 1) * sizeof(*eng));
			eng[neng++] = t->groups[g].engine;
		}
	}
	if (maxp < 0) {
		free(eng);
		return;
	}
	slot_init(tv, &s, KVR_CHART_BARS, "hit-rate", "Cache hit rate per pass", "pass",
		  "prompt tokens served from cache (%)");
	s->chart.y_from_zero = true;
	for (int p = 0; p <= maxp; p++) {
		char pn[32], lab[64];
		kvr_pass_name(pn, sizeof(pn), p, maxp);
		snprintf(lab, sizeof(lab), "pass %d (%s)", p, pn);
		kvr_chart_add_cat(&s->chart, lab);
	}
	for (size_t i = 0; i < neng; i++) {
		struct kvr_series *se = kvr_chart_add_series(&s->chart, eng[i], (size_t)maxp + 1,
							     (int)i, 0);
		for (int p = 0; p <= maxp; p++)
			se->y[p] = NAN;
		for (size_t g = 0; g < t->ngroups; g++)
			if (!strcmp(t->groups[g].engine, eng[i]) && t->groups[g].pass >= 0 &&
			    t->groups[g].pass <= maxp && isfinite(t->groups[g].hit_rate))
				se->y[t->groups[g].pass] = 100 * t->groups[g].hit_rate;
	}
	free(eng);
}

static void chart_accuracy(struct kvr_test_view *tv)
{
	const struct kvr_test *t = tv->test;
	struct kvr_slot *s;
	struct kvr_series *se;
	size_t n = 0, k = 0;
	bool from_groups = false;

	for (size_t g = 0; g < t->ngroups; g++)
		if (isfinite(t->groups[g].accuracy))
			n++;
	from_groups = n > 0;
	if (!from_groups)
		for (size_t c = 0; c < t->nchecks; c++)
			if (!strcmp(t->checks[c].unit, "accuracy") && isfinite(t->checks[c].figure))
				n++;
	if (n == 0)
		return;
	slot_init(tv, &s, KVR_CHART_BARS, "accuracy", "Accuracy (95% interval)",
		  from_groups ? "engine and pass" : "check", "accuracy (%)");
	s->chart.y_from_zero = true;
	se = kvr_chart_add_series(&s->chart, "accuracy", n, 0, 0);
	if (from_groups) {
		for (size_t g = 0; g < t->ngroups; g++) {
			const struct kvr_group *gr = &t->groups[g];
			char lab[128], pn[32];
			double lo = gr->accuracy_lo, hi = gr->accuracy_hi;
			if (!isfinite(gr->accuracy))
				continue;
			kvr_pass_name(pn, sizeof(pn), gr->pass, t->max_pass);
			snprintf(lab, sizeof(lab), "%.60s, %s", gr->engine, pn);
			kvr_chart_add_cat(&s->chart, lab);
			if (!isfinite(lo) || !isfinite(hi))
				kvr_wilson(gr->accuracy, gr->accuracy_n, &lo, &hi);
			se->y[k] = 100 * gr->accuracy;
			se->lo[k] = 100 * lo;
			se->hi[k] = 100 * hi;
			k++;
		}
		return;
	}
	for (size_t c = 0; c < t->nchecks; c++) {
		const struct kvr_check *ck = &t->checks[c];
		double lo = ck->lo, hi = ck->hi;
		if (strcmp(ck->unit, "accuracy") || !isfinite(ck->figure))
			continue;
		kvr_chart_add_cat(&s->chart, ck->name);
		if (!isfinite(lo) || !isfinite(hi))
			kvr_wilson(ck->figure, ck->n, &lo, &hi);
		se->y[k] = 100 * ck->figure;
		se->lo[k] = 100 * lo;
		se->hi[k] = 100 * hi;
		k++;
	}
}

static void rows_build(struct kvr_test_view *tv)
{
	const struct kvr_test *t = tv->test;

	for (size_t e = 0; e < t->nengines; e++) {
		for (int p = 0; p <= KV_MAX(t->max_pass, 0); p++) {
			struct kvr_row *r;
			size_t n = 0, ne = 0;
			double *v, *e2e;
			if (!has_pass(t, (int)e, p))
				continue;
			tv->rows = xrealloc(tv->rows, (tv->nrows + 1) * sizeof(*tv->rows));
			r = &tv->rows[tv->nrows++];
			memset(r, 0, sizeof(*r));
			r->engine = t->engines[e];
			r->pass = p;
			v = collect(t, (int)e, p, NAN, -1, &n);
			e2e = xmalloc((t->nreqs ? t->nreqs : 1) * sizeof(*e2e));
			double tok = 0, t0 = INFINITY, t1 = -INFINITY;
			for (size_t i = 0; i < t->nreqs; i++) {
				const struct kvr_req *q = &t->reqs[i];
				if (q->engine_idx != (int)e || q->pass != p || q->warmup)
					continue;
				if (!q->ok) {
					r->failed++;
					continue;
				}
				r->ok++;
				if (isfinite(q->e2e))
					e2e[ne++] = q->e2e;
				if (isfinite(q->completion_tokens) && isfinite(q->end_s)) {
					tok += q->completion_tokens;
					t1 = fmax(t1, q->end_s);
					if (isfinite(q->e2e))
						t0 = fmin(t0, q->end_s - q->e2e);
				}
			}
			r->ttft_mean = kvb_mean(v, n);
			r->ttft_p50 = kvr_quantile(v, n, 0.5);
			r->ttft_p99 = kvr_quantile(v, n, 0.99);
			r->e2e_mean = kvb_mean(e2e, ne);
			r->tput = t1 > t0 ? tok / (t1 - t0) : NAN;
			r->hit_rate = NAN;
			for (size_t g = 0; g < t->ngroups; g++)
				if (!strcmp(t->groups[g].engine, r->engine) && t->groups[g].pass == p)
					r->hit_rate = t->groups[g].hit_rate;
			free(v);
			free(e2e);
		}
	}
}

void kvr_view_build(struct kvr_view *v, const struct kvr_run *run)
{
	memset(v, 0, sizeof(*v));
	v->run = run;
	v->tests = xcalloc(run->ntests ? run->ntests : 1, sizeof(*v->tests));
	for (size_t i = 0; i < run->ntests; i++) {
		struct kvr_test_view *tv = &v->tests[i];
		const struct kvr_test *t = &run->tests[i];
		double maxt = 0, scale;

		tv->test = t;
		tv->slug = make_slug(t->name, i, v);
		v->ntests = i + 1;
		for (size_t r = 0; r < t->nreqs; r++)
			if (isfinite(t->reqs[r].ttft))
				maxt = fmax(maxt, t->reqs[r].ttft);
		tv->ttft_unit = xstrdup(maxt < 1 ? "ms" : "s");
		scale = maxt < 1 ? 1000 : 1;
		rows_build(tv);
		chart_cdf(tv, scale);
		chart_by(tv, scale, false);
		chart_by(tv, scale, true);
		chart_speedup(tv);
		chart_throughput(tv);
		chart_hit_rate(tv);
		chart_accuracy(tv);
		for (size_t k = 0; k < tv->nslots; k++) {
			struct kvr_slot *s = &tv->slots[k];
			s->has_data = kvr_chart_has_data(&s->chart);
			if (s->has_data)
				tv->ncharts++;
			else
				s->nodata = xasprintf("%s: no data", s->chart.title);
		}
	}
}

void kvr_view_release(struct kvr_view *v)
{
	for (size_t i = 0; i < v->ntests; i++) {
		struct kvr_test_view *tv = &v->tests[i];
		for (size_t k = 0; k < tv->nslots; k++) {
			kvr_chart_release(&tv->slots[k].chart);
			free(tv->slots[k].nodata);
		}
		free(tv->slots);
		free(tv->rows);
		free(tv->slug);
		free(tv->ttft_unit);
	}
	free(v->tests);
	memset(v, 0, sizeof(*v));
}
