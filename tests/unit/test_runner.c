/*
 * kvb_run against the scripted server: multi-turn (next() returns 0 until a
 * turn is done), passes and warmup in statistics, two items on one loop,
 * open-loop at_s offsets, cancellation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <jansson.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/util.h"
#include "runner.h"

static pid_t server, slow_server;
static char url[64], slow_url[64];
static char dir[64];

/* Starts kvb_script_server on text; fills *pid and u. */
static void spawn(const char *name, const char *text, pid_t *pid, char *u, size_t usz)
{
	const char *b = getenv("KV_BUILD");
	char *script = xasprintf("%s/%s.script", dir, name), *pf = xasprintf("%s/%s.port", dir, name);
	char *bin = xasprintf("%s/tests/kvb_script_server", b ? b : "build"), *port = NULL;
	size_t len = 0;

	assert_int_equal(kv_write_file_atomic(script, text, strlen(text)), 0);
	*pid = fork();
	if (*pid == 0) {
		execl(bin, bin, "--port-file", pf, "--max-seconds", "60", script, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200 && !port; i++) {
		port = kv_read_file(pf, 64, &len);
		if (!port)
			usleep(20000);
	}
	assert_non_null(port);
	snprintf(u, usz, "http://127.0.0.1:%d", (int)strtol(port, NULL, 10));
	free(port);
	free(bin);
	free(script);
	free(pf);
}

static int start(void **state)
{
	/* three tokens 300 ms apart: room for the client to close mid-stream */
	const char *slow =
		"on GET /v1/models\nbody {\"data\":[{\"id\":\"m0\"}]}\n"
		"on POST /v1/completions\nheader Content-Type: text/event-stream\n"
		"send data: {\"choices\":[{\"index\":0,\"text\":\"a\"}]}\\n\\n\n"
		"sleep 300\n"
		"send data: {\"choices\":[{\"index\":0,\"text\":\"b\"}]}\\n\\n\n"
		"sleep 300\n"
		"send data: {\"choices\":[{\"index\":0,\"text\":\"c\",\"finish_reason\":\"length\"}]}\\n\\n\n"
		"send data: [DONE]\\n\\n\n";
	const char *text =
		"on GET /v1/models\nbody {\"data\":[{\"id\":\"m0\"}]}\n"
		"on POST /v1/completions\nheader Content-Type: text/event-stream\nsleep 20\n"
		"send data: {\"choices\":[{\"index\":0,\"text\":\"hi\"}]}\\n\\n\n"
		"send data: {\"choices\":[{\"index\":0,\"text\":\"!\",\"finish_reason\":\"length\"}],"
		"\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"prompt_tokens_details\":{\"cached_tokens\":1}}}\\n\\n\n"
		"send data: [DONE]\\n\\n\n";

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/kvb_test_runner.%d", (int)getpid());
	kv_mkdir_p(dir, 0700);
	spawn("s", text, &server, url, sizeof(url));
	spawn("slow", slow, &slow_server, slow_url, sizeof(slow_url));
	return 0;
}

static int stop(void **state)
{
	char *cmd;
	(void)state;
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
	}
	if (slow_server > 0) {
		kill(slow_server, SIGTERM);
		waitpid(slow_server, NULL, 0);
	}
	cmd = xasprintf("rm -rf %s", dir);
	if (system(cmd)) {
		/* best effort */
	}
	free(cmd);
	return 0;
}

/* 3 sessions x 2 turns; turn 1 of a session waits for turn 0; one warmup first. */
struct fake {
	int sent[3], done[3];
	bool warm_sent, warm_done;
	int n_done, n_next0;
	uint64_t id;
	double at_step;        /* > 0: request i at at_step * i seconds */
	uint64_t t_sched[8];
	volatile int *cancel_after_first;
	const char *model_seen;
};

static int f_next(struct kvb_workload *wl, struct kvb_req **out)
{
	struct fake *f = wl->priv;
	struct kvb_req *r;
	int s = -1;
	bool all = true;

	if (!f->warm_sent) {
		f->warm_sent = true;
		s = -2;
	} else {
		for (int i = 0; i < 3; i++) {
			if (f->sent[i] < 2)
				all = false;
			if (s < 0 && (f->sent[i] == 0 || (f->sent[i] == 1 && f->done[i] == 1)))
				s = i;
		}
		if (s < 0 && all)
			return -1;
		if (s < 0) {
			f->n_next0++;
			return 0;
		}
	}
	r = xcalloc(1, sizeof(*r));
	r->id = f->id++;
	r->endpoint = KVB_EP_COMPLETIONS;
	r->prompt = xstrdup("abcd");
	r->max_tokens = 2;
	r->logprobs = -1;
	r->context_len = r->query_len = -1;
	r->at_s = f->at_step > 0 ? f->at_step * (double)r->id : -1;
	if (s == -2) {
		r->warmup = true;
		r->pass = 0;
		r->session = -1;
		r->key = xstrdup("warm");
	} else {
		r->session = s;
		r->turn = f->sent[s];
		r->pass = f->sent[s];
		r->key = xasprintf("s%d/t%d", s, f->sent[s]);
		f->sent[s]++;
	}
	*out = r;
	return 1;
}

static void f_done(struct kvb_workload *wl, const struct kvb_req *req, const struct kvb_result *res)
{
	struct fake *f = wl->priv;

	if (req->id < 8)
		f->t_sched[req->id] = res->t_sched;
	if (res->status == KVB_OK) {
		assert_string_equal(res->text, "hi!");
		assert_int_equal(res->completion_tokens, 2);
	}
	if (req->warmup)
		f->warm_done = true;
	else
		f->done[req->session]++;
	f->n_done++;
	if (f->cancel_after_first)
		*f->cancel_after_first = 1;
}

static void f_free(struct kvb_workload *wl)
{
	(void)wl;
}

static const struct kvb_workload_ops fops = { "fake", f_next, f_done, f_free };

static void test_multi_turn_passes_warmup(void **state)
{
	struct fake f = { 0 };
	struct kvb_workload wl = { &fops, &f };
	struct kvb_run_item it = { &wl, { "eng", url, NULL, NULL, false } };
	struct kvb_run_opts o;
	struct kvb_run_result res;
	json_t *g;
	char *out = xasprintf("%s/out", dir), *csv;
	size_t len;
	(void)state;
	kvb_run_opts_init(&o);
	o.concurrency = 8;
	o.out_dir = out;
	assert_int_equal(kvb_run(&it, 1, &o, &res), 0);
	assert_false(res.interrupted);
	assert_int_equal(f.n_done, 7);
	assert_true(f.warm_done);
	assert_true(f.n_next0 > 0); /* turn 1 had to wait */
	assert_int_equal(res.completed, 6);
	assert_int_equal(res.failed, 0);
	g = json_loads(res.groups_json, 0, NULL);
	assert_int_equal(json_array_size(g), 2);
	for (int p = 0; p < 2; p++) {
		json_t *x = json_array_get(g, (size_t)p);
		assert_int_equal(json_integer_value(json_object_get(x, "pass")), p);
		assert_int_equal(json_integer_value(json_object_get(x, "completed")), 3);
		assert_string_equal(json_string_value(json_object_get(x, "engine_id")), "eng");
		assert_int_equal(json_integer_value(json_object_get(json_object_get(x, "cache"), "hit_tokens")), 3);
	}
	json_decref(g);
	kvb_run_result_release(&res);
	/* every request, warmup included, is in the csv; the model was discovered */
	{
		char *path = xasprintf("%s/requests.csv", out);
		csv = kv_read_file(path, 1 << 20, &len);
		free(path);
	}
	assert_non_null(csv);
	{
		int lines = 0;
		for (size_t i = 0; i < len; i++)
			lines += csv[i] == '\n';
		assert_int_equal(lines, 8);
	}
	free(csv);
	free(out);
}

static void test_two_items_and_at_s(void **state)
{
	struct fake f1 = { 0 }, f2 = { 0 };
	struct kvb_workload w1 = { &fops, &f1 }, w2 = { &fops, &f2 };
	struct kvb_run_item its[2] = { { &w1, { "a", url, "m0", NULL, false } },
				       { &w2, { "b", url, "m0", NULL, true } } };
	struct kvb_run_opts o;
	struct kvb_run_result res;
	json_t *g;
	(void)state;
	f1.at_step = 0.1; /* request i at 0.1 s * i */
	kvb_run_opts_init(&o);
	o.concurrency = 0;
	o.arrival = KVB_ARRIVAL_POISSON;
	o.rate = 1000;
	assert_int_equal(kvb_run(its, 2, &o, &res), 0);
	assert_int_equal(res.completed, 12);
	g = json_loads(res.groups_json, 0, NULL);
	assert_int_equal(json_array_size(g), 4);
	assert_string_equal(json_string_value(json_object_get(json_array_get(g, 0), "engine_id")), "a");
	assert_string_equal(json_string_value(json_object_get(json_array_get(g, 3), "engine_id")), "b");
	json_decref(g);
	/* at_s: scheduled 100 ms apart on an absolute timeline */
	for (int i = 1; i < 7; i++) {
		int64_t d = (int64_t)(f1.t_sched[i] - f1.t_sched[0]);
		assert_true(llabs(d - (int64_t)i * 100000000) < 1000000);
	}
	kvb_run_result_release(&res);
}

static void test_cancel(void **state)
{
	static volatile int cancel;
	struct fake f = { 0 };
	struct kvb_workload wl = { &fops, &f };
	struct kvb_run_item it = { &wl, { "eng", url, "m0", NULL, false } };
	struct kvb_run_opts o;
	struct kvb_run_result res;
	(void)state;
	f.cancel_after_first = &cancel;
	kvb_run_opts_init(&o);
	o.concurrency = 3;
	o.cancel = &cancel;
	assert_int_equal(kvb_run(&it, 1, &o, &res), 0);
	assert_true(res.interrupted);
	assert_true(f.n_done >= 1 && f.n_done <= 4);
	kvb_run_result_release(&res);
}

static void test_unreachable(void **state)
{
	struct fake f = { 0 };
	struct kvb_workload wl = { &fops, &f };
	struct kvb_run_item it = { &wl, { "eng", "http://127.0.0.1:1", NULL, NULL, false } };
	struct kvb_run_opts o;
	struct kvb_run_result res;
	(void)state;
	kvb_run_opts_init(&o);
	assert_int_equal(kvb_run(&it, 1, &o, &res), -1);
	kvb_run_result_release(&res);
}

/* on_pass: called once, for pass 1, when every pass-0 request is done */
struct pass_seen {
	struct fake *f;
	int calls, pass;
	size_t item;
	int done_then;
};

static void on_pass(void *ctx, size_t item, int pass)
{
	struct pass_seen *p = ctx;

	p->calls++;
	p->pass = pass;
	p->item = item;
	p->done_then = p->f->n_done;
}

static void test_pass_barrier(void **state)
{
	struct fake f = { 0 };
	struct pass_seen ps = { &f, 0, -1, 9, -1 };
	struct kvb_workload wl = { &fops, &f };
	struct kvb_run_item it = { &wl, { "eng", url, "m0", NULL, false } };
	struct kvb_run_opts o;
	struct kvb_run_result res;
	(void)state;
	kvb_run_opts_init(&o);
	o.concurrency = 8;
	o.on_pass = on_pass;
	o.on_pass_ctx = &ps;
	assert_int_equal(kvb_run(&it, 1, &o, &res), 0);
	assert_int_equal(res.completed, 6);
	assert_int_equal(ps.calls, 1);
	assert_int_equal(ps.pass, 1);
	assert_int_equal(ps.item, 0);
	/* the warmup and the three turn-0 requests (pass 0) were all done */
	assert_int_equal(ps.done_then, 4);
	kvb_run_result_release(&res);
}

/* n requests, ids 0..n-1, request 0 a warmup; the status of each id is kept. */
struct flat {
	int n, sent;
	enum kvb_status st[16];
	char *text[16];
};

static int flat_next(struct kvb_workload *wl, struct kvb_req **out)
{
	struct flat *f = wl->priv;
	struct kvb_req *r;

	if (f->sent >= f->n)
		return -1;
	r = xcalloc(1, sizeof(*r));
	r->id = (uint64_t)f->sent++;
	r->endpoint = KVB_EP_COMPLETIONS;
	r->prompt = xstrdup("abcd");
	r->max_tokens = 3;
	r->logprobs = -1;
	r->context_len = r->query_len = -1;
	r->at_s = -1;
	r->session = -1;
	r->pass = 0;
	r->warmup = r->id == 0;
	r->key = xasprintf("r%d", (int)r->id);
	*out = r;
	return 1;
}

static void flat_done(struct kvb_workload *wl, const struct kvb_req *req, const struct kvb_result *res)
{
	struct flat *f = wl->priv;

	f->st[req->id] = res->status;
	f->text[req->id] = xstrdup(res->text ? res->text : "");
}

static const struct kvb_workload_ops flat_ops = { "flat", flat_next, flat_done, f_free };

/* every 3rd non-warmup request (ids 2, 5) closed after its first token;
   the others (the victims) end normally; outputs.jsonl says "aborted" */
static void test_abort_after_tokens(void **state)
{
	struct flat f = { .n = 7 };
	struct kvb_workload wl = { &flat_ops, &f };
	struct kvb_run_item it = { &wl, { "eng", slow_url, "m0", NULL, false } };
	struct kvb_run_opts o;
	struct kvb_run_result res;
	char *out = xasprintf("%s/abort", dir), *path = xasprintf("%s/outputs.jsonl", out), *jl;
	size_t len, n_aborted_lines = 0;
	(void)state;
	kvb_run_opts_init(&o);
	o.concurrency = 3;
	o.out_dir = out;
	o.abort_every = 3;
	assert_int_equal(kvb_run(&it, 1, &o, &res), 0);
	for (int i = 0; i < 7; i++) {
		bool ab = i % 3 == 2;
		assert_int_equal(f.st[i], ab ? KVB_ABORTED : KVB_OK);
		assert_string_equal(f.text[i], ab ? "a" : "abc");
		free(f.text[i]);
	}
	assert_int_equal(res.aborted, 2);
	assert_int_equal(res.completed, 4); /* 6 non-warmup, 2 aborted */
	assert_int_equal(res.failed, 0);
	kvb_run_result_release(&res);
	jl = kv_read_file(path, 1 << 20, &len);
	assert_non_null(jl);
	for (const char *p = jl; (p = strstr(p, "\"status\":\"aborted\"")); p++)
		n_aborted_lines++;
	assert_int_equal(n_aborted_lines, 2);
	assert_non_null(strstr(jl, "aborted by the client after 1 tokens"));
	free(jl);
	free(path);
	free(out);
}

/* the time form: closed 50 ms after the send, long before the last token */
static void test_abort_after_time(void **state)
{
	struct flat f = { .n = 5 };
	struct kvb_workload wl = { &flat_ops, &f };
	struct kvb_run_item it = { &wl, { "eng", slow_url, "m0", NULL, false } };
	struct kvb_run_opts o;
	struct kvb_run_result res;
	(void)state;
	kvb_run_opts_init(&o);
	o.concurrency = 4;
	o.abort_every = 2;
	o.abort_after_s = 0.05;
	assert_int_equal(kvb_run(&it, 1, &o, &res), 0);
	for (int i = 0; i < 5; i++) {
		bool ab = i % 2 == 1;
		assert_int_equal(f.st[i], ab ? KVB_ABORTED : KVB_OK);
		if (ab)
			assert_string_not_equal(f.text[i], "abc");
		else
			assert_string_equal(f.text[i], "abc");
		free(f.text[i]);
	}
	assert_int_equal(res.aborted, 2);
	assert_int_equal(res.completed, 2);
	assert_int_equal(res.failed, 0);
	kvb_run_result_release(&res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_multi_turn_passes_warmup),
		cmocka_unit_test(test_two_items_and_at_s),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_pass_barrier),
		cmocka_unit_test(test_abort_after_tokens),
		cmocka_unit_test(test_abort_after_time),
	};
	kv_set_quiet(true);
	return cmocka_run_group_tests(tests, start, stop);
}
