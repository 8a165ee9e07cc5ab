/* Field tables of requests.csv, outputs.jsonl and the summary; see fields.h. */
#include "fields.h"

#include <inttypes.h>
#include <math.h>

#include "stats.h"
#include "common/util.h"
#include "common/banned.h"

static double span(uint64_t a, uint64_t b)
{
	if (!a || !b)
		return NAN;
	return b >= a ? (double)(b - a) / 1e9 : -(double)(a - b) / 1e9;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void kvb_record_derive(struct kvb_record *r)
{
	const struct kvb_result *res = r->res;
	bool ok = res->status == KVB_OK;
	size_t n = res->n_tok_t;

	r->out_tokens = res->completion_tokens >= 0 ? res->completion_tokens : (int)n;
	r->dispatch_lag = span(res->t_sched, res->t_send);
	r->ttft = r->ttft_sched = r->throughput = r->e2e = r->e2e_sched = r->tpot = NAN;
	r->itl_mean = r->itl_p50 = r->itl_p99 = r->itl_max = NAN;
	if (!ok)
		return;
	r->e2e = span(res->t_send, res->t_end);
	r->e2e_sched = span(res->t_sched, res->t_end);
	r->ttft = span(res->t_send, res->t_first_token);
	r->ttft_sched = span(res->t_sched, res->t_first_token);
	if (res->t_first_token && res->t_end > res->t_first_token && r->out_tokens > 0)
		r->throughput = r->out_tokens / span(res->t_first_token, res->t_end);
	if (res->t_first_token && r->out_tokens > 1)
		r->tpot = span(res->t_first_token, res->t_end) / (r->out_tokens - 1);
	if (n >= 2) {
		uint64_t *g = xmalloc((n - 1) * sizeof(*g));
		double sum = 0;

		for (size_t i = 1; i < n; i++) {
			g[i - 1] = res->tok_t[i] - res->tok_t[i - 1];
			sum += (double)g[i - 1];
		}
		qsort(g, n - 1, sizeof(*g), cmp_u64);
		r->itl_mean = sum / (double)(n - 1) / 1e9;
		r->itl_p50 = (double)g[(size_t)ceil(0.50 * (double)(n - 1)) - 1] / 1e9;
		r->itl_p99 = (double)g[(size_t)ceil(0.99 * (double)(n - 1)) - 1] / 1e9;
		r->itl_max = (double)g[n - 2] / 1e9;
		free(g);
	}
}

/* ---- cells --------------------------------------------------------------- */

void kvb_csv_cell(struct kv_buf *b, const char *s)
{
	if (!s)
		return;
	if (!s[strcspn(s, ",\"\r\n")]) {
		kv_buf_puts(b, s);
		return;
	}
	kv_buf_putc(b, '"');
	for (; *s; s++) {
		if (*s == '"')
			kv_buf_putc(b, '"');
		kv_buf_putc(b, *s);
	}
	kv_buf_putc(b, '"');
}

void kvb_json_str(struct kv_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";

	if (!s) {
		kv_buf_puts(b, "null");
		return;
	}
	kv_buf_putc(b, '"');
	while (*s) {
		const char *run = s;

		while (*s && *s != '"' && *s != '\\' && (unsigned char)*s >= 0x20)
			s++;
		kv_buf_append(b, run, (size_t)(s - run));
		if (!*s)
			break;
		switch (*s) {
		case '"': kv_buf_puts(b, "\\\""); break;
		case '\\': kv_buf_puts(b, "\\\\"); break;
		case '\n': kv_buf_puts(b, "\\n"); break;
		case '\r': kv_buf_puts(b, "\\r"); break;
		case '\t': kv_buf_puts(b, "\\t"); break;
		default: {
			char u[7] = { '\\', 'u', '0', '0', hex[((unsigned char)*s) >> 4],
				      hex[*s & 15], 0 };
			kv_buf_puts(b, u);
		}
		}
		s++;
	}
	kv_buf_putc(b, '"');
}

/* "%.6f" without printf's cost (this runs for a dozen columns per request). */
static void num(struct kv_buf *b, double v)
{
	char tmp[32], *p = tmp + sizeof(tmp);
	long long u;
	unsigned long long a;
	bool neg;

	if (isnan(v))
		return;
	if (!(fabs(v) < 9e12)) {
		kv_buf_printf(b, "%.6f", v);
		return;
	}
	u = llround(v * 1e6);
	neg = u < 0;
	a = neg ? (unsigned long long)-u : (unsigned long long)u;
	for (int i = 0; i < 6; i++) {
		*--p = (char)('0' + a % 10);
		a /= 10;
	}
	*--p = '.';
	do {
		*--p = (char)('0' + a % 10);
		a /= 10;
	} while (a);
	if (neg)
		*--p = '-';
	kv_buf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

static void num_int(struct kv_buf *b, long long v)
{
	if (v >= 0)
		kv_buf_printf(b, "%lld", v);
}

static double rel(const struct kvb_record *r, uint64_t t)
{
	return t ? span(r->t0, t) : NAN;
}

#define F(nm, body) static void put_##nm(struct kv_buf *b, const struct kvb_record *r) { body; }
F(expr_id, kvb_csv_cell(b, r->expr_id))
F(timestamp, num(b, r->res->t_send ? r->wall0 + rel(r, r->res->t_send) : NAN))
F(engine_id, kvb_csv_cell(b, r->engine_id))
F(request_id, kv_buf_printf(b, "%" PRIu64, r->req->id))
F(ttft, num(b, r->ttft))
F(throughput, num(b, r->throughput))
F(context_len, num_int(b, r->req->context_len))
F(query_len, num_int(b, r->req->query_len))
F(gpu_memory, (void)b)
F(pass, num_int(b, r->req->pass))
F(key, kvb_csv_cell(b, r->req->key))
F(session, num_int(b, r->req->session))
F(turn, num_int(b, r->req->session >= 0 ? r->req->turn : -1))
F(warmup, kv_buf_putc(b, r->req->warmup ? '1' : '0'))
F(status, kv_buf_puts(b, kvb_status_name(r->res->status)))
F(http_status, if (r->res->http_status) kv_buf_printf(b, "%d", r->res->http_status))
F(error, kvb_csv_cell(b, r->res->error))
F(sched_s, num(b, rel(r, r->res->t_sched)))
F(send_s, num(b, rel(r, r->res->t_send)))
F(first_byte_s, num(b, rel(r, r->res->t_first_byte)))
F(first_token_s, num(b, rel(r, r->res->t_first_token)))
F(end_s, num(b, rel(r, r->res->t_end)))
F(dispatch_lag, num(b, r->dispatch_lag))
F(e2e, num(b, r->e2e))
F(e2e_sched, num(b, r->e2e_sched))
F(ttft_sched, num(b, r->ttft_sched))
F(itl_mean, num(b, r->itl_mean))
F(itl_p50, num(b, r->itl_p50))
F(itl_p99, num(b, r->itl_p99))
F(itl_max, num(b, r->itl_max))
F(tpot, num(b, r->tpot))
F(prompt_tokens, num_int(b, r->res->prompt_tokens))
F(completion_tokens, num_int(b, r->out_tokens))
F(cached_tokens, num_int(b, r->res->cached_tokens))
F(finish_reason, kvb_csv_cell(b, r->res->finish_reason))
#undef F

#define C(nm, col) { col, put_##nm }
const struct kvb_req_field kvb_req_fields[] = {
	C(expr_id, "expr_id"), C(timestamp, "timestamp"), C(engine_id, "engine_id"),
	C(request_id, "request_id"), C(ttft, "TTFT"), C(throughput, "throughput"),
	C(context_len, "context_len"), C(query_len, "query_len"), C(gpu_memory, "gpu_memory"),
	C(pass, "pass"), C(key, "key"), C(session, "session"), C(turn, "turn"),
	C(warmup, "warmup"), C(status, "status"), C(http_status, "http_status"),
	C(error, "error"), C(sched_s, "sched_s"), C(send_s, "send_s"),
	C(first_byte_s, "first_byte_s"), C(first_token_s, "first_token_s"), C(end_s, "end_s"),
	C(dispatch_lag, "dispatch_lag"), C(e2e, "e2e"), C(e2e_sched, "e2e_sched"),
	C(ttft_sched, "ttft_sched"), C(itl_mean, "itl_mean"), C(itl_p50, "itl_p50"),
	C(itl_p99, "itl_p99"), C(itl_max, "itl_max"), C(tpot, "tpot"),
	C(prompt_tokens, "prompt_tokens"), C(completion_tokens, "completion_tokens"),
	C(cached_tokens, "cached_tokens"), C(finish_reason, "finish_reason"),
	{ NULL, NULL },
};
#undef C

void kvb_csv_header(struct kv_buf *b)
{
	for (const struct kvb_req_field *f = kvb_req_fields; f->name; f++) {
		if (f != kvb_req_fields)
			kv_buf_putc(b, ',');
		kv_buf_puts(b, f->name);
	}
	kv_buf_putc(b, '\n');
}

void kvb_csv_row(struct kv_buf *b, const struct kvb_record *r)
{
	for (const struct kvb_req_field *f = kvb_req_fields; f->name; f++) {
		if (f != kvb_req_fields)
			kv_buf_putc(b, ',');
		f->put(b, r);
	}
	kv_buf_putc(b, '\n');
}

static void json_lp(struct kv_buf *b, float v)
{
	if (isnan(v) || isinf(v))
		kv_buf_puts(b, "null");
	else
		kv_buf_printf(b, "%.9g", (double)v);
}

static void json_lps(struct kv_buf *b, const struct kvb_tok_lp *lps, size_t n)
{
	if (!lps) {
		kv_buf_puts(b, "null");
		return;
	}
	kv_buf_putc(b, '[');
	for (size_t i = 0; i < n; i++) {
		if (i)
			kv_buf_putc(b, ',');
		kv_buf_puts(b, "{\"t\":");
		kvb_json_str(b, lps[i].token);
		kv_buf_puts(b, ",\"lp\":");
		json_lp(b, lps[i].logprob);
		kv_buf_puts(b, ",\"top\":[");
		for (int j = 0; j < lps[i].n_top; j++) {
			kv_buf_puts(b, j ? ",[" : "[");
			kvb_json_str(b, lps[i].top[j].token);
			kv_buf_putc(b, ',');
			json_lp(b, lps[i].top[j].logprob);
			kv_buf_putc(b, ']');
		}
		kv_buf_puts(b, "]}");
	}
	kv_buf_putc(b, ']');
}

void kvb_jsonl_row(struct kv_buf *b, const struct kvb_record *r)
{
	const struct kvb_result *res = r->res;

	kv_buf_printf(b, "{\"request_id\":%" PRIu64 ",\"engine_id\":", r->req->id);
	kvb_json_str(b, r->engine_id);
	kv_buf_printf(b, ",\"pass\":%d,\"warmup\":%s,\"key\":", r->req->pass,
		      r->req->warmup ? "true" : "false");
	kvb_json_str(b, r->req->key);
	kv_buf_puts(b, ",\"status\":");
	kvb_json_str(b, kvb_status_name(res->status));
	kv_buf_puts(b, ",\"error\":");
	kvb_json_str(b, res->error);
	kv_buf_puts(b, ",\"text\":");
	kvb_json_str(b, res->text ? res->text : "");
	kv_buf_puts(b, ",\"token_ids\":");
	if (res->token_ids) {
		kv_buf_putc(b, '[');
		for (size_t i = 0; i < res->n_token_ids; i++)
			kv_buf_printf(b, i ? ",%d" : "%d", (int)res->token_ids[i]);
		kv_buf_putc(b, ']');
	} else {
		kv_buf_puts(b, "null");
	}
	kv_buf_puts(b, ",\"finish_reason\":");
	kvb_json_str(b, res->finish_reason);
	kv_buf_puts(b, ",\"logprobs\":");
	json_lps(b, res->lps, res->n_lps);
	kv_buf_puts(b, ",\"prompt_logprobs\":");
	json_lps(b, res->prompt_lps, res->n_prompt_lps);
	kv_buf_puts(b, ",\"expected\":");
	kvb_json_str(b, r->req->expected);
	if (res->cached_tokens >= 0)
		kv_buf_printf(b, ",\"cached_tokens\":%d", res->cached_tokens);
	kv_buf_puts(b, "}\n");
}

/* ---- summary ------------------------------------------------------------- */

const struct kvb_sum_field kvb_sum_fields[] = {
	{ "completed", "completed", "requests", KVB_SUM_COUNT, 0 },
	{ "failed", "failed", "requests", KVB_SUM_COUNT, 0 },
	{ "duration_s", "duration", "s", KVB_SUM_NUMBER, 0 },
	{ "request_throughput", "request throughput", "requests/s", KVB_SUM_NUMBER, 0 },
	{ "output_token_throughput", "output token throughput", "tokens/s", KVB_SUM_NUMBER, 0 },
	{ "input_token_throughput", "input token throughput", "tokens/s", KVB_SUM_NUMBER, 0 },
	{ "target_rate", "target rate", "requests/s", KVB_SUM_NUMBER, 0 },
	{ "achieved_rate", "achieved rate", "requests/s", KVB_SUM_NUMBER, 0 },
	{ "ttft", "TTFT", "s", KVB_SUM_DIST, KVB_M_TTFT },
	{ "itl", "ITL", "s", KVB_SUM_DIST, KVB_M_ITL },
	{ "tpot", "TPOT", "s", KVB_SUM_DIST, KVB_M_TPOT },
	{ "e2e", "E2E latency", "s", KVB_SUM_DIST, KVB_M_E2E },
	{ "e2e_sched", "E2E from schedule", "s", KVB_SUM_DIST, KVB_M_E2E_SCHED },
	{ "ttft_sched", "TTFT from schedule", "s", KVB_SUM_DIST, KVB_M_TTFT_SCHED },
	{ "dispatch_lag", "dispatch lag", "s", KVB_SUM_DIST, KVB_M_LAG },
	{ NULL, NULL, NULL, 0, 0 },
};

static const char *const dist_keys[] = { "mean", "std", "p50", "p90", "p99", "p99_9", "max" };

static void cell(FILE *out, json_t *v, bool ms, int width)
{
	char s[32];
	double d;

	if (!json_is_number(v)) {
		fprintf(out, " %*s", width, "-");
		return;
	}
	d = json_number_value(v);
	if (ms)
		snprintf(s, sizeof(s), "%.3f", d * 1e3);
	else if (json_is_integer(v))
		snprintf(s, sizeof(s), "%lld", (long long)json_integer_value(v));
	else
		snprintf(s, sizeof(s), "%.3f", d);
	fprintf(out, " %*s", width, s);
}

void kvb_summary_print(FILE *out, json_t *groups)
{
	size_t i;
	json_t *g, *fb, *v;
	const char *k;

	json_array_foreach(groups, i, g) {
		const char *eng = json_string_value(json_object_get(g, "engine_id"));

		fprintf(out, "%s== %s, pass %lld ==\n", i ? "\n" : "", eng ? eng : "?",
			(long long)json_integer_value(json_object_get(g, "pass")));
		for (const struct kvb_sum_field *f = kvb_sum_fields; f->key; f++) {
			char l[64];

			if (f->kind == KVB_SUM_DIST)
				continue;
			snprintf(l, sizeof(l), "%s (%s)", f->label, f->unit);
			fprintf(out, "%-36s", l);
			cell(out, json_object_get(g, f->key), false, 12);
			fputc('\n', out);
		}
		fb = json_object_get(g, "failed_by_reason");
		json_object_foreach(fb, k, v) {
			const char *e = json_string_value(json_object_get(
				json_object_get(g, "first_error_by_reason"), k));
			fprintf(out, "  failed: %-26s %12lld  (first: %.120s)\n", k,
				(long long)json_integer_value(v), e ? e : "-");
		}
		fprintf(out, "%-22s", "latency (ms)");
		for (size_t d = 0; d < KV_ARRAY_SIZE(dist_keys); d++)
			fprintf(out, " %9s", dist_keys[d]);
		fputc('\n', out);
		for (const struct kvb_sum_field *f = kvb_sum_fields; f->key; f++) {
			json_t *dist = json_object_get(g, f->key);

			if (f->kind != KVB_SUM_DIST)
				continue;
			fprintf(out, "%-22s", f->label);
			for (size_t d = 0; d < KV_ARRAY_SIZE(dist_keys); d++)
				cell(out, json_object_get(dist, dist_keys[d]), true, 9);
			fputc('\n', out);
		}
	}
}
