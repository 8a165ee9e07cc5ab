/*
 * Unit tests of the engine-level fault classes (docs/offload.md "Fault
 * injection"): the engine with the real offload connector (chunk 24 != block
 * 16), driven step by step in-process. For each fault: with it on, the
 * output differs from a fault-free engine and the fault is counted; with it
 * off, the same sequence of requests gives bitwise the output of an engine
 * without a connector. Also the echo path: the recompute of the last loaded
 * row for the first prompt logprob reads the loaded KV and does not write it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <time.h>

#include "common/util.h"
#include "engine.h"
#include "offload/offload.h"

#define GEN 6
#define MAXP 128
#define CHUNK 24

struct result {
	int n, np;
	int32_t tok[GEN];
	float lp[GEN];
	float plp[MAXP];  /* prompt logprobs (NAN where not computed) */
	int cached;
	enum engine_finish fin;
};

static struct model g_model;

static int setup(void **state)
{
	struct model_config c;
	char err[128];
	(void)state;
	model_config_parse("kv-tiny", &c, err, sizeof(err));
	model_init(&g_model, &c, 2, MODEL_MM_DET, 512);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	model_release(&g_model);
	return 0;
}

/* An engine, with the offload connector (CPU tier, chunk 24) and fault
 * spec (NULL: none) when conn; apc: the prefix cache. */
static struct engine *mk(bool conn, bool apc, const char *fault)
{
	struct engine_config ec = { 2, 8, 4096, 16, 64, 512, apc, MODEL_MM_DET };
	struct engine *e = engine_create(&g_model, &ec);
	if (conn) {
		struct kvo_config c;
		char *err = NULL;
		kvo_config_init(&c);
		c.chunk_size = CHUNK;
		c.cpu_bytes = 64u << 20;
		if (fault && kvo_faults_add(&c.faults, fault, &err) < 0)
			fail_msg("%s", err);
		struct kv_connector *k = kvo_connector_new(&c, &err);
		if (!k)
			fail_msg("connector: %s", err);
		kvo_config_release(&c);
		engine_set_connector(e, k);
		engine_set_faults(e, kvo_connector_faults(k));
	}
	return e;
}

/* Prompt number i of n tokens: distinct per i, byte tokens. */
static void make_prompt(int i, int n, int32_t *t)
{
	for (int k = 0; k < n; k++)
		t[k] = 'a' + (k * 7 + i * 11 + k / 5) % 26;
}

static struct engine_req *submit(struct engine *e, int i, int n, bool echo)
{
	struct engine_sampling sp;
	int32_t t[MAXP];
	char err[256];
	memset(&sp, 0, sizeof(sp));
	sp.max_tokens = GEN;
	sp.ignore_eos = true;
	sp.top_p = 1;
	sp.logprobs = 2;
	sp.prompt_logprobs = echo;
	make_prompt(i, n, t);
	struct engine_req *r = engine_submit(e, t, n, &sp, err, sizeof(err));
	if (!r)
		fail_msg("submit: %s", err);
	return r;
}

static bool finished(struct engine_req *r)
{
	pthread_mutex_lock(&r->mu);
	bool f = r->finish != ENGINE_RUNNING;
	pthread_mutex_unlock(&r->mu);
	return f;
}

static void run_until_done(struct engine *e, struct engine_req *r)
{
	for (int steps = 0; steps < 10000; steps++) {
		if (finished(r))
			return;
		engine_step(e);
	}
	fail_msg("request did not finish");
}

static void collect(struct engine_req *r, struct result *res)
{
	memset(res, 0, sizeof(*res));
	pthread_mutex_lock(&r->mu);
	res->n = r->n_out;
	res->np = r->n_prompt;
	res->fin = r->finish;
	res->cached = r->cached_tokens;
	memcpy(res->tok, r->out_tok, (size_t)r->n_out * sizeof(int32_t));
	memcpy(res->lp, r->out_lp, (size_t)r->n_out * sizeof(float));
	for (int i = 0; i < r->n_prompt; i++)
		res->plp[i] = r->prompt_lp ? r->prompt_lp[i] : NAN;
	pthread_mutex_unlock(&r->mu);
}

/* Prompt i of n tokens, alone, to completion. */
static void run1(struct engine *e, int i, int n, bool echo, struct result *res)
{
	struct engine_req *r = submit(e, i, n, echo);
	run_until_done(e, r);
	collect(r, res);
	engine_req_put(r);
}

/* Output tokens and logprobs equal, and prompt logprobs where both have one. */
static bool same(const struct result *a, const struct result *b)
{
	if (a->n != b->n || memcmp(a->tok, b->tok, (size_t)a->n * sizeof(int32_t)) ||
	    memcmp(a->lp, b->lp, (size_t)a->n * sizeof(float)))
		return false;
	for (int i = 0; i < a->np; i++)
		if (!isnan(a->plp[i]) && !isnan(b->plp[i]) && a->plp[i] != b->plp[i])
			return false;
	return true;
}

static uint64_t injected(struct engine *e, const char *type)
{
	struct kv_buf b = KV_BUF_INIT(1 << 22);
	char line[128];
	unsigned long long v = 0;
	engine_metrics(e, "m", &b);
	snprintf(line, sizeof(line), "kvserve:kv_faults_injected_total{type=\"%s\"} ", type);
	const char *p = strstr(kv_buf_str(&b), line);
	assert_non_null(p);
	v = strtoull(p + strlen(line), NULL, 10);
	kv_buf_release(&b);
	return v;
}

/* The reference: no connector, no prefix cache. */
static void ref_run(int i, int n, bool echo, struct result *res)
{
	struct engine *e = mk(false, false, NULL);
	run1(e, i, n, echo, res);
	assert_int_equal(res->n, GEN);
	engine_free(e);
}

/* Cold run then warm run of prompt (i, n) on an engine with fault; the warm
 * result in *warm. */
static void cold_warm(const char *fault, bool apc, int i, int n, bool echo, struct result *warm,
		      uint64_t *count)
{
	struct engine *e = mk(true, apc, fault);
	struct result cold;
	run1(e, i, n, echo, &cold);
	run1(e, i, n, echo, warm);
	if (count) {
		char type[32];
		snprintf(type, sizeof(type), "%.*s", (int)strcspn(fault, ":"), fault);
		*count = injected(e, type);
	}
	engine_free(e);
}

/* 1. echo: the recompute of the last loaded row keeps the loaded KV */
static void test_echo_keeps_loaded_rows(void **state)
{
	struct result ref, warm;
	uint64_t n;
	(void)state;
	for (int echo = 0; echo < 2; echo++) {
		ref_run(1, 60, echo, &ref);
		/* clean: bitwise the reference, 48 tokens from the connector */
		cold_warm(NULL, false, 1, 60, echo, &warm, NULL);
		assert_int_equal(warm.cached, 48);
		assert_true(same(&ref, &warm));
		if (echo) /* the first prompt logprob after the loaded rows is there */
			assert_false(isnan(warm.plp[48]));
		/* zero-tail: seen with and without echo */
		cold_warm("zero-tail", false, 1, 60, echo, &warm, &n);
		assert_int_equal(warm.cached, 48);
		assert_false(same(&ref, &warm));
		if (echo) /* the recomputed row attends over the zeroed row */
			assert_true(warm.plp[48] != ref.plp[48]);
		assert_true(n >= 1);
	}
	/* with the prefix cache on too (its rows were never rewritten) */
	ref_run(2, 50, true, &ref);
	cold_warm(NULL, true, 2, 50, true, &warm, NULL);
	assert_true(warm.cached >= 32);
	assert_true(same(&ref, &warm));
}

/* 2. rope-shift */
static void test_rope_shift(void **state)
{
	struct result ref, warm;
	uint64_t n;
	float k[64], k0[64];
	(void)state;
	/* the rotation composes: +3 then -3 gives the row back */
	assert_true(g_model.kv_dim <= 64);
	for (int i = 0; i < g_model.kv_dim; i++)
		k[i] = k0[i] = (float)(i % 7) - 3.0f;
	model_rope_shift(&g_model, k, 3);
	assert_true(memcmp(k, k0, (size_t)g_model.kv_dim * sizeof(float)) != 0);
	model_rope_shift(&g_model, k, -3);
	for (int i = 0; i < g_model.kv_dim; i++)
		assert_true(fabsf(k[i] - k0[i]) < 1e-4f);

	for (int echo = 0; echo < 2; echo++) {
		ref_run(3, 73, echo, &ref);
		cold_warm("rope-shift", false, 3, 73, echo, &warm, &n);
		assert_int_equal(warm.cached, 72);
		assert_false(same(&ref, &warm));
		assert_int_equal(n, 1);
		cold_warm("rope-shift:-2", false, 3, 73, echo, &warm, &n);
		assert_false(same(&ref, &warm));
	}
}

/* 3. full-hit: prompt length a multiple of chunk and block (48) */
static void test_full_hit(void **state)
{
	struct result ref, warm;
	uint64_t n;
	(void)state;
	ref_run(4, 48, false, &ref);
	/* how kvserve handles a full hit: the last token is recomputed, so at
	 * most (48 - 1) / 24 chunks or (48 - 1) / 16 blocks are hits */
	cold_warm(NULL, false, 4, 48, false, &warm, NULL);
	assert_int_equal(warm.cached, 24);
	assert_true(same(&ref, &warm));
	/* connector path: all 48 loaded, the first token sampled from the
	 * logits of a zero hidden state */
	cold_warm("full-hit", false, 4, 48, false, &warm, &n);
	assert_int_equal(warm.cached, 48);
	assert_int_equal(warm.n, GEN);
	assert_int_equal(warm.tok[0], ' '); /* the output bias alone: ' ' ranks first */
	assert_false(same(&ref, &warm));
	assert_int_equal(n, 1);
	/* not a multiple of the chunk: nothing to forget */
	struct result ref2;
	ref_run(4, 50, false, &ref2);
	cold_warm("full-hit", false, 4, 50, false, &warm, &n);
	assert_true(same(&ref2, &warm));
	assert_int_equal(n, 0);

	/* prefix-cache path, no connector: the fault table alone */
	struct kvo_faults f;
	char *err = NULL;
	for (int on = 0; on < 2; on++) {
		struct result cold;
		struct engine *e = mk(false, true, NULL);
		kvo_faults_init(&f, 1);
		if (on)
			assert_int_equal(kvo_faults_add(&f, "full-hit", &err), 0);
		engine_set_faults(e, &f);
		run1(e, 4, 48, false, &cold);
		run1(e, 4, 48, false, &warm);
		assert_true(same(&ref, &cold));
		assert_int_equal(warm.cached, on ? 48 : 32);
		assert_true(same(&ref, &warm) == !on);
		assert_int_equal(f.injected[KVO_F_FULL_HIT], (uint64_t)on);
		engine_free(e);
	}
}

/* 4. race: a load inside the window reads the unwritten chunk */
static void test_race(void **state)
{
	struct result ref, warm;
	uint64_t n;
	(void)state;
	ref_run(5, 60, false, &ref);
	/* 60 s: the warm request surely comes inside the window */
	cold_warm("race:60000", false, 5, 60, false, &warm, &n);
	assert_int_equal(warm.cached, 48);
	assert_false(same(&ref, &warm));
	assert_int_equal(n, 2);
	/* 1 ms and a 30 ms pause: the bytes landed before the load */
	struct engine *e = mk(true, false, "race:1");
	struct result cold;
	struct timespec ts = { 0, 30000000 };
	run1(e, 5, 60, false, &cold);
	nanosleep(&ts, NULL);
	run1(e, 5, 60, false, &warm);
	assert_true(same(&ref, &cold));
	assert_int_equal(warm.cached, 48);
	assert_true(same(&ref, &warm));
	assert_int_equal(injected(e, "race"), 0);
	engine_free(e);
}

/*
 * 5. uaf-abort: A (prompt 0) is aborted after 2 tokens; B (prompt 6) is
 * admitted in the step that frees A's blocks; the victim is prompt 0 again.
 */
static void uaf_scenario(const char *fault, struct result *victim, struct result *other,
			 uint64_t *count)
{
	struct engine *e = mk(true, false, fault);
	struct engine_req *a = submit(e, 0, 60, false);
	for (int s = 0; s < 100; s++) {
		pthread_mutex_lock(&a->mu);
		int got = a->n_out;
		pthread_mutex_unlock(&a->mu);
		if (got >= 2)
			break;
		engine_step(e);
	}
	engine_req_abort(e, a);
	struct engine_req *b = submit(e, 6, 60, false);
	run_until_done(e, b);
	assert_true(finished(a));
	assert_int_equal(a->finish, ENGINE_ABORT);
	engine_req_put(a);
	collect(b, other);
	engine_req_put(b);
	run1(e, 0, 60, false, victim);
	if (count)
		*count = injected(e, "uaf-abort");
	engine_free(e);
}

static void test_uaf_abort(void **state)
{
	struct result ref0, ref6, victim, other;
	uint64_t n;
	(void)state;
	ref_run(0, 60, false, &ref0);
	ref_run(6, 60, false, &ref6);
	/* fault-free, with the abort: identical */
	uaf_scenario(NULL, &victim, &other, NULL);
	assert_true(same(&ref6, &other));
	assert_int_equal(victim.cached, 48);
	assert_true(same(&ref0, &victim));
	/* the fault on, no abort: saves deferred to the end, still identical */
	struct result warm;
	cold_warm("uaf-abort", false, 0, 60, false, &warm, &n);
	assert_int_equal(warm.cached, 48);
	assert_true(same(&ref0, &warm));
	assert_int_equal(n, 0);
	/* the fault on, with the abort: the victim loads B's KV */
	uaf_scenario("uaf-abort", &victim, &other, &n);
	assert_true(same(&ref6, &other));
	assert_int_equal(victim.cached, 48);
	assert_false(same(&ref0, &victim));
	assert_int_equal(n, 1);
}

static void test_bad_args(void **state)
{
	struct kvo_faults f;
	char *err = NULL;
	(void)state;
	kvo_faults_init(&f, 1);
	static const char *const bad[] = { "rope-shift:0", "rope-shift:x", "rope-shift:65",
					   "full-hit:0", "full-hit:1.5", "race:0", "race:60001",
					   "race:abc", "uaf-abort:2" };
	for (size_t i = 0; i < KV_ARRAY_SIZE(bad); i++) {
		assert_int_equal(kvo_faults_add(&f, bad[i], &err), -1);
		assert_non_null(strstr(err, "--kv-fault: "));
		assert_null(strchr(err, '\n'));
		free(err);
		err = NULL;
	}
	assert_int_equal(kvo_faults_add(&f, "race", &err), 0);
	assert_int_equal(f.arg[KVO_F_RACE], 200);
	assert_int_equal(kvo_faults_add(&f, "rope-shift", &err), 0);
	assert_int_equal(f.arg[KVO_F_ROPE_SHIFT], 1);
	assert_int_equal(kvo_faults_add(&f, "uaf-abort:0.5", &err), 0);
	assert_int_equal(kvo_faults_add(&f, "full-hit", &err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_echo_keeps_loaded_rows),
		cmocka_unit_test(test_rope_shift),
		cmocka_unit_test(test_full_hit),
		cmocka_unit_test(test_race),
		cmocka_unit_test(test_uaf_abort),
		cmocka_unit_test(test_bad_args),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
