/* Per-group statistics in histograms; see stats.h. */
#include "stats.h"

#include <math.h>

#include "fields.h"
#include "common/util.h"
#include "common/banned.h"

const char *const kvb_metric_keys[KVB_M_COUNT] = {
	"ttft", "itl", "tpot", "e2e", "e2e_sched", "ttft_sched", "dispatch_lag",
};

void kvb_stats_init(struct kvb_stats *s, const char *engine_id, int pass, double target_rate)
{
	memset(s, 0, sizeof(*s));
	s->engine_id = xstrdup(engine_id ? engine_id : "");
	s->pass = pass;
	s->target_rate = target_rate;
	for (int m = 0; m < KVB_M_COUNT; m++)
		kvb_hist_init(&s->h[m]);
}

void kvb_stats_release(struct kvb_stats *s)
{
	free(s->engine_id);
	for (int i = 0; i < KVB_STATUS_COUNT; i++)
		free(s->first_error[i]);
	for (int m = 0; m < KVB_M_COUNT; m++)
		kvb_hist_release(&s->h[m]);
}

static void rec(struct kvb_stats *s, int m, uint64_t a, uint64_t b)
{
	if (a && b)
		kvb_hist_record(&s->h[m], b > a ? b - a : 0);
}

void kvb_stats_add(struct kvb_stats *s, const struct kvb_record *r)
{
	const struct kvb_result *res = r->res;

	if (res->t_send) {
		s->n_sent++;
		if (!s->t_first_sched || res->t_sched < s->t_first_sched)
			s->t_first_sched = res->t_sched;
		if (!s->t_first_send || res->t_send < s->t_first_send)
			s->t_first_send = res->t_send;
		if (res->t_send > s->t_last_send)
			s->t_last_send = res->t_send;
		rec(s, KVB_M_LAG, res->t_sched, res->t_send);
	}
	if (res->t_end > s->t_last_end)
		s->t_last_end = res->t_end;
	if (res->status != KVB_OK) {
		s->failed++;
		s->by_reason[res->status]++;
		if (!s->first_error[res->status] && res->error)
			s->first_error[res->status] = xstrdup(res->error);
		return;
	}
	s->completed++;
	if (res->prompt_tokens > 0)
		s->prompt_tokens += (uint64_t)res->prompt_tokens;
	if (r->out_tokens > 0)
		s->completion_tokens += (uint64_t)r->out_tokens;
	if (res->cached_tokens >= 0 && res->prompt_tokens > 0) {
		s->hit_tokens += (uint64_t)res->cached_tokens;
		s->query_tokens += (uint64_t)res->prompt_tokens;
	}
	rec(s, KVB_M_TTFT, res->t_send, res->t_first_token);
	rec(s, KVB_M_TTFT_SCHED, res->t_sched, res->t_first_token);
	rec(s, KVB_M_E2E, res->t_send, res->t_end);
	rec(s, KVB_M_E2E_SCHED, res->t_sched, res->t_end);
	if (!isnan(r->tpot))
		kvb_hist_record(&s->h[KVB_M_TPOT], (uint64_t)llround(r->tpot * 1e9));
	for (size_t i = 1; i < res->n_tok_t; i++)
		rec(s, KVB_M_ITL, res->tok_t[i - 1], res->tok_t[i]);
}

static json_t *num_or_null(double v)
{
	return isnan(v) || isinf(v) ? json_null() : json_real(v);
}

static json_t *dist(const struct kvb_hist *h)
{
	json_t *o = json_object();

	if (!h->n) {
		json_object_set_new(o, "n", json_integer(0));
		return o;
	}
	json_object_set_new(o, "mean", json_real(kvb_hist_mean(h) / 1e9));
	json_object_set_new(o, "std", json_real(kvb_hist_std(h) / 1e9));
	json_object_set_new(o, "p50", json_real((double)kvb_hist_quantile(h, 0.50) / 1e9));
	json_object_set_new(o, "p90", json_real((double)kvb_hist_quantile(h, 0.90) / 1e9));
	json_object_set_new(o, "p99", json_real((double)kvb_hist_quantile(h, 0.99) / 1e9));
	json_object_set_new(o, "p99_9", json_real((double)kvb_hist_quantile(h, 0.999) / 1e9));
	json_object_set_new(o, "min", json_real((double)h->min / 1e9));
	json_object_set_new(o, "max", json_real((double)h->max / 1e9));
	json_object_set_new(o, "n", json_integer((json_int_t)h->n));
	return o;
}

json_t *kvb_stats_json(const struct kvb_stats *s)
{
	json_t *g = json_object(), *fb = json_object(), *fe = json_object();
	double dur = s->t_last_end > s->t_first_sched && s->t_first_sched ?
		     (double)(s->t_last_end - s->t_first_sched) / 1e9 : NAN;
	double achieved = s->n_sent >= 2 && s->t_last_send > s->t_first_send ?
			  (double)(s->n_sent - 1) / ((double)(s->t_last_send - s->t_first_send) / 1e9) :
			  NAN;

	json_object_set_new(g, "engine_id", json_string(s->engine_id));
	json_object_set_new(g, "pass", json_integer(s->pass));
	for (int i = 0; i < KVB_STATUS_COUNT; i++) {
		if (s->by_reason[i])
			json_object_set_new(fb, kvb_status_name((enum kvb_status)i),
					    json_integer((json_int_t)s->by_reason[i]));
		if (s->first_error[i])
			json_object_set_new(fe, kvb_status_name((enum kvb_status)i),
					    json_string(s->first_error[i]));
	}
	for (const struct kvb_sum_field *f = kvb_sum_fields; f->key; f++) {
		json_t *v = NULL;

		if (f->kind == KVB_SUM_DIST)
			v = dist(&s->h[f->metric]);
		else if (!strcmp(f->key, "completed"))
			v = json_integer((json_int_t)s->completed);
		else if (!strcmp(f->key, "failed"))
			v = json_integer((json_int_t)s->failed);
		else if (!strcmp(f->key, "duration_s"))
			v = num_or_null(dur);
		else if (!strcmp(f->key, "request_throughput"))
			v = num_or_null((double)s->completed / dur);
		else if (!strcmp(f->key, "output_token_throughput"))
			v = num_or_null((double)s->completion_tokens / dur);
		else if (!strcmp(f->key, "input_token_throughput"))
			v = num_or_null((double)s->prompt_tokens / dur);
		else if (!strcmp(f->key, "target_rate"))
			v = s->target_rate > 0 ? json_real(s->target_rate) : json_null();
		else if (!strcmp(f->key, "achieved_rate"))
			v = num_or_null(achieved);
		if (v)
			json_object_set_new(g, f->key, v);
		if (!strcmp(f->key, "failed")) {
			json_object_set_new(g, "failed_by_reason", fb);
			json_object_set_new(g, "first_error_by_reason", fe);
		}
	}
	json_object_set_new(g, "cache", json_pack("{s:I,s:I,s:o}", "hit_tokens",
						  (json_int_t)s->hit_tokens, "query_tokens",
						  (json_int_t)s->query_tokens, "hit_rate",
						  s->query_tokens ? json_real((double)s->hit_tokens /
									      (double)s->query_tokens) :
								    json_null()));
	return g;
}
