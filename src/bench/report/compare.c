/* compare.c: see compare.h. */
#include "report/compare.h"

#include <math.h>

#include "common/util.h"
#include "report/data.h"
#include "report/stats.h"
#include "common/banned.h"

enum field { F_TTFT, F_E2E, F_TPUT, F_NONE };

struct metric {
	const char *name;
	enum field field;
	enum kvr_statistic stat;
	bool up_is_worse;
	const char *unit;
};

static const struct metric metrics[] = {
	{ "ttft_mean", F_TTFT, KVR_MEAN, true, "s" },
	{ "ttft_p50", F_TTFT, KVR_P50, true, "s" },
	{ "ttft_p99", F_TTFT, KVR_P99, true, "s" },
	{ "e2e_mean", F_E2E, KVR_MEAN, true, "s" },
	{ "e2e_p99", F_E2E, KVR_P99, true, "s" },
	{ "throughput", F_TPUT, KVR_MEAN, false, "tok/s" },
	{ "accuracy", F_NONE, KVR_MEAN, false, "" },
	{ "identity", F_NONE, KVR_MEAN, false, "" },
};

bool kvr_compare_metric_known(const char *name)
{
	for (size_t i = 0; i < KV_ARRAY_SIZE(metrics); i++)
		if (!strcmp(metrics[i].name, name))
			return true;
	return false;
}

const char *kvr_compare_metric_list(void)
{
	return "ttft_mean ttft_p50 ttft_p99 e2e_mean e2e_p99 throughput accuracy identity";
}

static bool wanted(const struct kvr_compare_opts *o, const char *name)
{
	if (!o->metrics || o->nmetrics == 0)
		return true;
	for (size_t i = 0; i < o->nmetrics; i++)
		if (!strcmp(o->metrics[i], name))
			return true;
	return false;
}

static double *values(const struct kvr_test *t, const char *engine, int pass, enum field f,
		      size_t *n)
{
	double *v = xmalloc((t->nreqs ? t->nreqs : 1) * sizeof(*v));

	*n = 0;
	for (size_t i = 0; i < t->nreqs; i++) {
		const struct kvr_req *q = &t->reqs[i];
		double x;
		if (q->warmup || !q->ok || q->pass != pass || strcmp(q->engine, engine))
			continue;
		x = f == F_TTFT ? q->ttft : f == F_E2E ? q->e2e : q->throughput;
		if (isfinite(x))
			v[(*n)++] = x;
	}
	return v;
}

struct ctx {
	const struct kvr_compare_opts *o;
	int regressions;
	int rows;
};

static void print_row(struct ctx *c, const char *test, const char *engine, int pass,
		      const char *metric, double base, double nw, double lo, double hi,
		      const char *unit, bool regressed)
{
	char *te = kvr_text_clean(test, 40, false), *en = kvr_text_clean(engine, 40, false);
	double rel = base != 0 ? (nw - base) / fabs(base) : NAN;
	char ci[96] = "n/a", chg[32] = "n/a", ps[16] = "-";

	if (isfinite(lo) && isfinite(hi))
		snprintf(ci, sizeof(ci), "[%+.4g, %+.4g]%s%s", lo, hi, *unit ? " " : "", unit);
	if (isfinite(rel))
		snprintf(chg, sizeof(chg), "%+.1f%%", 100 * rel);
	if (pass >= 0)
		snprintf(ps, sizeof(ps), "%d", pass);
	fprintf(c->o->out, "%-20s %-20s %4s %-11s %12.5g %12.5g %8s  %-28s %s\n", te, en, ps,
		metric, base, nw, chg, ci, regressed ? "REGRESSION" : "ok");
	if (regressed)
		c->regressions++;
	c->rows++;
	free(te);
	free(en);
}

static void name_regression(struct ctx *c, const char *test, const char *engine, int pass,
			    const char *metric, double base, double nw, double lo, double hi,
			    const char *unit)
{
	char *te = kvr_text_clean(test, 80, false), *en = kvr_text_clean(engine, 80, false);
	double rel = base != 0 ? (nw - base) / fabs(base) : NAN;

	fprintf(c->o->out, "REGRESSION: %s %s pass %d %s: %.5g -> %.5g %s (%+.1f%%", te, en, pass,
		metric, base, nw, unit, 100 * rel);
	if (isfinite(lo))
		fprintf(c->o->out, ", 95%% CI of the difference [%+.4g, %+.4g] %s", lo, hi, unit);
	fprintf(c->o->out, "), beyond %.1f%%\n", 100 * c->o->max_regression);
	free(te);
	free(en);
}

static bool is_regression(const struct ctx *c, const struct metric *m, double base, double nw,
			  double lo, double hi)
{
	double rel = base != 0 ? (nw - base) / fabs(base) : (nw != base ? INFINITY : 0);
	bool bad = m->up_is_worse ? rel > c->o->max_regression : -rel > c->o->max_regression;
	bool excl = !isfinite(lo) ? true : m->up_is_worse ? lo > 0 : hi < 0;
	return bad && excl;
}

/*
 * Resamples for samples of n values in all: the asked number, but no more
 * than keeps one interval under about 2e7 drawn values (at least 200), so a
 * run of a million requests compares in seconds.
 */
static int rounds_for(int rounds, size_t n)
{
	size_t cap = n ? (size_t)2e7 / n : (size_t)rounds;
	if (cap < 200)
		cap = 200;
	return (size_t)rounds > cap ? (int)cap : rounds;
}

struct named_rel {
	char *test, *engine, *metric, *unit;
	int pass;
	double base, nw, lo, hi;
};

static void compare_requests(struct ctx *c, const struct kvr_test *a, const struct kvr_test *b,
			     struct named_rel **reg, size_t *nreg)
{
	for (size_t e = 0; e < a->nengines; e++) {
		const char *engine = a->engines[e];
		for (int p = 0; p <= KV_MAX(a->max_pass, 0); p++) {
			for (size_t m = 0; m < KV_ARRAY_SIZE(metrics); m++) {
				const struct metric *mt = &metrics[m];
				size_t na, nb;
				double *va, *vb, sa, sb, lo, hi;
				bool r;
				if (mt->field == F_NONE || !wanted(c->o, mt->name))
					continue;
				va = values(a, engine, p, mt->field, &na);
				vb = values(b, engine, p, mt->field, &nb);
				if (na == 0 || nb == 0) {
					free(va);
					free(vb);
					continue;
				}
				kvr_bootstrap(va, na, vb, nb, mt->stat, false,
					      rounds_for(c->o->rounds, na + nb), 0.95, c->o->seed,
					      &lo, &hi);
				sa = kvr_stat_of(mt->stat, va, na);
				sb = kvr_stat_of(mt->stat, vb, nb);
				r = is_regression(c, mt, sa, sb, lo, hi);
				print_row(c, a->name, engine, p, mt->name, sa, sb, lo, hi, mt->unit, r);
				if (r) {
					*reg = xrealloc(*reg, (*nreg + 1) * sizeof(**reg));
					(*reg)[(*nreg)++] = (struct named_rel){
						xstrdup(a->name), xstrdup(engine), xstrdup(mt->name),
						xstrdup(mt->unit), p, sa, sb, lo, hi };
				}
				free(va);
				free(vb);
			}
		}
	}
}

/* Binomial bootstrap of the difference of two proportions. */
static void binom_ci(const struct ctx *c, double pa, double na, double pb, double nb,
		     double *lo, double *hi)
{
	size_t ia = (size_t)na, ib = (size_t)nb;
	double *va, *vb;

	*lo = *hi = NAN;
	if (!(na >= 1) || !(nb >= 1) || na > 1e7 || nb > 1e7)
		return;
	va = xmalloc(ia * sizeof(*va));
	vb = xmalloc(ib * sizeof(*vb));
	for (size_t i = 0; i < ia; i++)
		va[i] = (double)i < pa * na - 0.5 ? 1 : 0;
	for (size_t i = 0; i < ib; i++)
		vb[i] = (double)i < pb * nb - 0.5 ? 1 : 0;
	kvr_bootstrap(va, ia, vb, ib, KVR_MEAN, false, c->o->rounds, 0.95, c->o->seed, lo, hi);
	free(va);
	free(vb);
}

static void compare_checks(struct ctx *c, const struct kvr_test *a, const struct kvr_test *b,
			   struct named_rel **reg, size_t *nreg)
{
	for (size_t i = 0; i < a->nchecks; i++) {
		const struct kvr_check *ka = &a->checks[i], *kb = NULL;
		bool acc = !strcmp(ka->unit, "accuracy");
		bool ident = !strncmp(ka->name, "identity", 8);
		double lo = NAN, hi = NAN;
		bool r;

		if (!(acc && wanted(c->o, "accuracy")) && !(ident && wanted(c->o, "identity")))
			continue;
		for (size_t j = 0; j < b->nchecks; j++)
			if (!strcmp(b->checks[j].name, ka->name))
				kb = &b->checks[j];
		if (!kb)
			continue;
		if (ident) {
			r = ka->passed == 1 && kb->passed == 0;
		} else {
			binom_ci(c, ka->figure, ka->n, kb->figure, kb->n, &lo, &hi);
			r = is_regression(c, &metrics[6], ka->figure, kb->figure, lo, hi);
		}
		print_row(c, a->name, ka->name, -1, ident ? "identity" : "accuracy", ka->figure,
			  kb->figure, lo, hi, "", r);
		if (r) {
			*reg = xrealloc(*reg, (*nreg + 1) * sizeof(**reg));
			(*reg)[(*nreg)++] = (struct named_rel){
				xstrdup(a->name), xstrdup(ka->name),
				xstrdup(ident ? "identity" : "accuracy"), xstrdup(""), -1,
				ka->figure, kb->figure, lo, hi };
		}
	}
}

int kvr_compare(const char *base_dir, const char *new_dir, const struct kvr_compare_opts *o)
{
	struct kvr_run a, b;
	struct ctx c = { .o = o };
	struct named_rel *reg = NULL;
	size_t nreg = 0, common = 0;
	int rc = 2;

	if (kvr_run_load(&a, base_dir) < 0)
		return 2;
	if (kvr_run_load(&b, new_dir) < 0) {
		kvr_run_release(&a);
		return 2;
	}
	fprintf(o->out, "%-20s %-20s %4s %-11s %12s %12s %8s  %-28s %s\n", "test", "engine/check",
		"pass", "metric", "base", "new", "change", "95% CI of new - base", "verdict");
	for (size_t i = 0; i < a.ntests; i++) {
		int j = kvr_run_find_test(&b, a.tests[i].name);
		if (j < 0) {
			kv_warn("compare: test '%.80s' is only in %s", a.tests[i].name, base_dir);
			continue;
		}
		common++;
		compare_requests(&c, &a.tests[i], &b.tests[j], &reg, &nreg);
		compare_checks(&c, &a.tests[i], &b.tests[j], &reg, &nreg);
	}
	for (size_t j = 0; j < b.ntests; j++)
		if (kvr_run_find_test(&a, b.tests[j].name) < 0)
			kv_warn("compare: test '%.80s' is only in %s", b.tests[j].name, new_dir);
	if (common == 0) {
		kv_error("compare: %s and %s have no test in common", base_dir, new_dir);
		goto out;
	}
	fputc('\n', o->out);
	for (size_t i = 0; i < nreg; i++) {
		struct named_rel *r = &reg[i];
		if (r->pass < 0)
			fprintf(o->out, "REGRESSION: %s check %s %s: %.5g -> %.5g%s\n", r->test,
				r->engine, r->metric, r->base, r->nw,
				!strcmp(r->metric, "identity") ? " (passed, now fails)" : "");
		else
			name_regression(&c, r->test, r->engine, r->pass, r->metric, r->base, r->nw,
					r->lo, r->hi, r->unit);
	}
	if (nreg == 0)
		fprintf(o->out, "no regression beyond %.1f%% (%d comparisons)\n",
			100 * o->max_regression, c.rows);
	rc = nreg > 0 ? 1 : 0;
out:
	for (size_t i = 0; i < nreg; i++) {
		free(reg[i].test);
		free(reg[i].engine);
		free(reg[i].metric);
		free(reg[i].unit);
	}
	free(reg);
	kvr_run_release(&a);
	kvr_run_release(&b);
	return rc;
}
