/* The run loop: schedule, send, record; see runner.h. */
#include "runner.h"

#include <math.h>
#include <unistd.h>

#include "arrival.h"
#include "client.h"
#include "sink.h"
#include "stats.h"
#include "common/clock.h"
#include "common/util.h"
#include "common/banned.h"

struct item {
	struct kvb_run_item *it;
	size_t idx;
	const char *engine_id;       /* not owned */
	char *base;                  /* base URL without trailing / or /v1 */
	char *model;                 /* owned */
	struct curl_slist *headers;
	struct kvb_arrival_gen arr;
	uint64_t next_slot;          /* open loop: next scheduled time */
	struct kvb_req *pending;     /* fetched, not sent yet */
	uint64_t pending_at;         /* its scheduled time; 0 = when a slot frees */
	int64_t issued;
	size_t inflight;
	bool finished;               /* no more requests to send */
	bool waiting;                /* next() said 0: ask after a completion */
	int max_pass;                /* highest pass sent so far, -1 none (on_pass) */
	struct kvb_stats *groups;    /* index pass + 1 */
	size_t n_groups;
};

struct runner {
	struct item *items;
	size_t n;
	const struct kvb_run_opts *o;
	struct kvb_client *client;
	struct kvb_sink sink;
	bool have_sink;
	uint64_t t0, t_stop;
	double wall0;
	uint64_t completed, failed, aborted, done_all;
	uint64_t first_send, last_end;
};

struct inflight {
	struct item *item;
	struct kvb_req *req;
};

void kvb_run_opts_init(struct kvb_run_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->expr_id = "bench";
	o->concurrency = 1;
	o->arrival = KVB_ARRIVAL_CLOSED;
	o->burstiness = 1;
	o->connect_timeout_s = 10;
	o->request_timeout_s = 600;
}

static struct kvb_stats *group(struct runner *r, struct item *it, int pass)
{
	size_t k = pass < 0 ? 0 : (size_t)pass + 1;

	if (k >= it->n_groups) {
		it->groups = xrealloc(it->groups, (k + 1) * sizeof(*it->groups));
		for (size_t i = it->n_groups; i <= k; i++)
			it->groups[i].engine_id = NULL; /* not initialised yet */
		it->n_groups = k + 1;
	}
	if (!it->groups[k].engine_id)
		kvb_stats_init(&it->groups[k], it->engine_id, pass < 0 ? 0 : pass,
			       r->o->arrival == KVB_ARRIVAL_CLOSED ? -1 : r->o->rate);
	return &it->groups[k];
}

/* Statistics, files and the workload's done() for one finished request. */
static void record(struct runner *r, struct item *it, struct kvb_req *req, struct kvb_result *res)
{
	struct kvb_record rec = {
		.expr_id = r->o->expr_id ? r->o->expr_id : "bench",
		.engine_id = it->engine_id, .req = req, .res = res, .t0 = r->t0, .wall0 = r->wall0,
	};

	res->req_id = req->id;
	kvb_record_derive(&rec);
	if (!req->warmup && res->status == KVB_ABORTED) {
		r->aborted++;
	} else if (!req->warmup && res->status != KVB_ERR_CANCELLED) {
		kvb_stats_add(group(r, it, req->pass), &rec);
		if (res->status == KVB_OK)
			r->completed++;
		else
			r->failed++;
	}
	if (res->t_send && (!r->first_send || res->t_send < r->first_send))
		r->first_send = res->t_send;
	if (res->t_end > r->last_end)
		r->last_end = res->t_end;
	/* a request fetched but never sent (the run ended first) is no record */
	if (res->t_send || res->status != KVB_ERR_CANCELLED) {
		r->done_all++;
		if (r->have_sink)
			kvb_sink_write(&r->sink, &rec);
	}
	if (it->it->wl->ops->done)
		it->it->wl->ops->done(it->it->wl, req, res);
}

static void on_done(void *ctx, struct kvb_call *call)
{
	struct runner *r = ctx;
	struct inflight *f = call->ctx;

	f->item->inflight--;
	f->item->waiting = false;
	record(r, f->item, f->req, &call->res);
	kvb_req_free(f->req);
	free(f);
	kvb_call_free(call);
}

static void send_req(struct runner *r, struct item *it, struct kvb_req *req, uint64_t t_sched)
{
	bool stream = !r->o->no_stream;
	char *err = NULL, *url;
	struct kvb_call *call;
	struct inflight *f;
	size_t len = 0;
	char *body = kvb_oai_request_body(req, it->model, stream, it->it->target.return_token_ids,
					  &len, &err);

	it->issued++;
	if (!body) {
		struct kvb_result res = { 0 };

		res.status = KVB_ERR_STREAM;
		res.error = err;
		res.prompt_tokens = res.completion_tokens = res.cached_tokens = -1;
		res.t_sched = t_sched;
		record(r, it, req, &res);
		kvb_result_release(&res);
		kvb_req_free(req);
		return;
	}
	url = xasprintf("%s%s", it->base, kvb_oai_path(req->endpoint));
	call = kvb_call_new(url);
	free(url);
	call->body = body;
	call->body_len = len;
	call->headers = it->headers;
	call->stream = stream;
	call->ep = req->endpoint;
	call->echo = req->echo;
	call->echo_prompt = req->n_prompt_ids ? NULL : req->prompt;
	f = xmalloc(sizeof(*f));
	f->item = it;
	f->req = req;
	call->ctx = f;
	call->res.t_sched = t_sched;
	if (r->o->abort_every > 0 && !req->warmup &&
	    req->id % (uint64_t)r->o->abort_every == (uint64_t)r->o->abort_every - 1) {
		call->abort_after_s = r->o->abort_after_s;
		call->abort_after_tokens = r->o->abort_after_tokens;
		if (call->abort_after_tokens <= 0 && !(call->abort_after_s > 0))
			call->abort_after_tokens = 1;
	}
	it->inflight++;
	kvb_client_start(r->client, call);
}

/* Sends what is due for one item; lowers *wake to its next scheduled time. */
static void fill(struct runner *r, struct item *it, uint64_t now, uint64_t *wake)
{
	const struct kvb_run_opts *o = r->o;
	bool closed = o->arrival == KVB_ARRIVAL_CLOSED;
	int cap = closed ? KV_MAX(o->concurrency, 1) : o->concurrency;

	while (!it->finished && !it->waiting) {
		uint64_t at;

		if (!it->pending) {
			int rc;

			if (o->max_requests && it->issued >= o->max_requests) {
				it->finished = true;
				break;
			}
			rc = it->it->wl->ops->next(it->it->wl, &it->pending);
			if (rc == 0) {
				it->pending = NULL;
				it->waiting = true;
				break;
			}
			if (rc < 0) {
				it->pending = NULL;
				it->finished = true;
				break;
			}
			if (it->pending->at_s >= 0) {
				it->pending_at = r->t0 + (uint64_t)llround(it->pending->at_s * 1e9);
			} else if (closed) {
				it->pending_at = 0;
			} else {
				it->pending_at = it->next_slot;
				it->next_slot += (uint64_t)llround(kvb_arrival_next(&it->arr) * 1e9);
			}
		}
		if (o->on_pass && it->pending->pass > it->max_pass) {
			if (it->max_pass >= 0) {
				if (it->inflight)
					break; /* the barrier: the passes before end first */
				o->on_pass(o->on_pass_ctx, it->idx, it->pending->pass);
				now = kv_now_ns();
			}
			it->max_pass = it->pending->pass;
		}
		if (cap > 0 && it->inflight >= (size_t)cap)
			break;
		at = it->pending_at;
		if (at > now) {
			if (at < *wake)
				*wake = at;
			break;
		}
		if (at >= r->t_stop && r->t_stop) {
			it->finished = true;
			break;
		}
		{
			struct kvb_req *req = it->pending;
			it->pending = NULL;
			send_req(r, it, req, at ? at : kv_now_ns());
		}
		now = kv_now_ns();
	}
}

static void progress(struct runner *r, bool last)
{
	double el = (double)(kv_now_ns() - r->t0) / 1e9;

	fprintf(stderr, "\r\033[Kdone %llu  errors %llu  in flight %zu  %.1f req/s  %.1f s",
		(unsigned long long)r->completed, (unsigned long long)r->failed,
		kvb_client_inflight(r->client), el > 0 ? (double)r->done_all / el : 0.0, el);
	if (last)
		fputs("\r\033[K", stderr);
	fflush(stderr);
}

static char *base_url(const char *u)
{
	size_t n = strlen(u);

	while (n && u[n - 1] == '/')
		n--;
	if (n >= 3 && !memcmp(u + n - 3, "/v1", 3))
		n -= 3;
	return xstrndup(u, n);
}

/* GET /v1/models: the first model's id. */
static char *discover_model(struct item *it, double timeout)
{
	char *err = NULL, *url = xasprintf("%s/v1/models", it->base), *model = NULL;
	char *body = kvb_http_get(url, it->headers, timeout, &err);
	json_t *root = NULL, *id;

	if (!body) {
		kv_error("%s: cannot list the models: %s", url, err);
		goto out;
	}
	root = json_loads(body, 0, NULL);
	id = json_object_get(json_array_get(json_object_get(root, "data"), 0), "id");
	if (!json_is_string(id))
		kv_error("%s: no model in the answer (expected data[0].id)", url);
	else
		model = xstrdup(json_string_value(id));
out:
	json_decref(root);
	free(body);
	free(err);
	free(url);
	return model;
}

static int setup_item(struct runner *r, struct item *it)
{
	const struct kvb_target *t = &it->it->target;
	char *h;

	it->base = base_url(t->base_url ? t->base_url : "http://127.0.0.1:8000");
	it->engine_id = t->engine_id ? t->engine_id : t->base_url;
	it->headers = curl_slist_append(NULL, "Content-Type: application/json");
	it->headers = curl_slist_append(it->headers, "Expect:");
	if (t->api_key_env) {
		const char *key = getenv(t->api_key_env);
		if (!key || !*key) {
			kv_error("api key: environment variable %s is not set", t->api_key_env);
			return -1;
		}
		h = xasprintf("Authorization: Bearer %s", key);
		it->headers = curl_slist_append(it->headers, h);
		memset(h, 0, strlen(h));
		free(h);
	}
	if (t->model)
		it->model = xstrdup(t->model);
	else if (!(it->model = discover_model(it, r->o->connect_timeout_s > 0 ?
					       r->o->connect_timeout_s + 5 : 15)))
		return -1;
	kvb_arrival_init(&it->arr, r->o->arrival, r->o->rate, r->o->burstiness,
			 r->o->seed + it->idx * 0x9e3779b97f4a7c15ull);
	return 0;
}

static char *groups_json(struct runner *r)
{
	json_t *a = json_array();
	char *s;

	for (size_t i = 0; i < r->n; i++)
		for (size_t k = 0; k < r->items[i].n_groups; k++)
			if (r->items[i].groups[k].engine_id)
				json_array_append_new(a, kvb_stats_json(&r->items[i].groups[k]));
	s = json_dumps(a, JSON_COMPACT | JSON_REAL_PRECISION(9));
	json_decref(a);
	return s;
}

int kvb_run(struct kvb_run_item *items, size_t n, const struct kvb_run_opts *o,
	    struct kvb_run_result *out)
{
	struct kvb_client_opts co = {
		.connect_timeout_s = o->connect_timeout_s,
		.request_timeout_s = o->request_timeout_s,
		.buffer_size = o->recv_buffer,
	};
	struct runner r = { .n = n, .o = o };
	bool show = o->progress && isatty(2);
	uint64_t next_tick = 0;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	r.items = xcalloc(n ? n : 1, sizeof(*r.items));
	for (size_t i = 0; i < n; i++) {
		r.items[i].it = &items[i];
		r.items[i].idx = i;
		r.items[i].max_pass = -1;
	}
	r.client = kvb_client_new(&co, on_done, &r);
	if (!r.client)
		goto out;
	for (size_t i = 0; i < n; i++)
		if (setup_item(&r, &r.items[i]) < 0)
			goto out;
	if (o->out_dir) {
		if (kvb_sink_open(&r.sink, o->out_dir) < 0)
			goto out;
		r.have_sink = true;
	}
	r.t0 = kv_now_ns();
	r.wall0 = kv_wall_s();
	r.t_stop = o->duration_s > 0 ? r.t0 + (uint64_t)llround(o->duration_s * 1e9) : 0;
	for (size_t i = 0; i < n; i++)
		r.items[i].next_slot = r.t0;
	for (;;) {
		uint64_t now = kv_now_ns(), wake = UINT64_MAX;
		bool all_done = true;

		if (o->cancel && *o->cancel) {
			out->interrupted = true;
			break;
		}
		for (size_t i = 0; i < n; i++) {
			struct item *it = &r.items[i];

			if (r.t_stop && now >= r.t_stop)
				it->finished = true;
			fill(&r, it, now, &wake);
			if (!it->finished || it->inflight)
				all_done = false;
		}
		if (all_done)
			break;
		if (!kvb_client_inflight(r.client) && wake == UINT64_MAX) {
			bool stuck = true;
			for (size_t i = 0; i < n; i++)
				if (!r.items[i].finished && !r.items[i].waiting)
					stuck = false;
			if (stuck) {
				/* every workload waits for a completion that cannot come */
				kv_warn("run: every workload waits and nothing is in flight; stopping");
				break;
			}
		}
		if (r.t_stop && r.t_stop < wake)
			wake = r.t_stop > now ? r.t_stop : wake;
		if (show) {
			now = kv_now_ns();
			if (now >= next_tick) {
				progress(&r, false);
				next_tick = now + 250000000ull;
			}
			if (next_tick < wake)
				wake = next_tick;
		}
		if (o->cancel && wake > now + 100000000ull)
			wake = now + 100000000ull; /* notice *cancel within 0.1 s */
		kvb_client_poll(r.client, wake);
	}
	kvb_client_cancel_all(r.client);
	for (size_t i = 0; i < n; i++) {
		struct item *it = &r.items[i];

		if (it->pending) {
			struct kvb_result res = { 0 };
			res.status = KVB_ERR_CANCELLED;
			res.error = xstrdup("not sent: the run ended first");
			res.prompt_tokens = res.completion_tokens = res.cached_tokens = -1;
			record(&r, it, it->pending, &res);
			kvb_result_release(&res);
			kvb_req_free(it->pending);
			it->pending = NULL;
		}
	}
	if (show)
		progress(&r, true);
	rc = 0;
	if (r.have_sink && kvb_sink_close(&r.sink) < 0)
		rc = -1;
	r.have_sink = false;
	out->completed = r.completed;
	out->failed = r.failed;
	out->aborted = r.aborted;
	out->duration_s = r.last_end > r.first_send ? (double)(r.last_end - r.first_send) / 1e9 : 0;
	out->groups_json = groups_json(&r);
out:
	if (r.have_sink)
		kvb_sink_close(&r.sink);
	kvb_client_free(r.client);
	for (size_t i = 0; i < n; i++) {
		struct item *it = &r.items[i];

		kvb_req_free(it->pending);
		for (size_t k = 0; k < it->n_groups; k++)
			if (it->groups[k].engine_id)
				kvb_stats_release(&it->groups[k]);
		free(it->groups);
		free(it->base);
		free(it->model);
		curl_slist_free_all(it->headers);
	}
	free(r.items);
	return rc;
}

void kvb_run_result_release(struct kvb_run_result *r)
{
	free(r->groups_json);
	r->groups_json = NULL;
}
