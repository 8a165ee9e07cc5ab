/*
 * Unit tests of src/serve/engine: the prefix-cache, chunked-prefill,
 * batched-decode, preemption and connector paths give bitwise the same
 * tokens and logprobs as one plain prefill of each prompt alone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "common/util.h"
#include "engine.h"

#define NP 14
#define GEN 8

struct result {
	int n;
	int32_t tok[GEN];
	float lp[GEN];
	int32_t top[GEN * 3];
	float toplp[GEN * 3];
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

static struct engine *mk(int batched, int nblocks, bool apc, int max_seqs)
{
	struct engine_config ec = { 2, max_seqs, batched, 16, nblocks, 512, apc, MODEL_MM_DET };
	return engine_create(&g_model, &ec);
}

/* Prompts sharing prefixes, lengths around block and chunk boundaries. */
static int make_prompt(int i, int32_t *t)
{
	static const int lens[NP] = { 1, 15, 16, 17, 31, 32, 33, 47, 64, 100, 129, 150, 37, 200 };
	int n = lens[i];
	for (int k = 0; k < n; k++)
		t[k] = (i % 3 == 0 || k < 40) ? 'a' + (k * 7 + k / 5) % 26 : (k * 13 + i * 7) % 256;
	return n;
}

static void fill_sp(struct engine_sampling *sp)
{
	memset(sp, 0, sizeof(*sp));
	sp->max_tokens = GEN;
	sp->ignore_eos = true;
	sp->temperature = 0;
	sp->top_p = 1;
	sp->logprobs = 3;
}

static void collect(struct engine_req *r, struct result *res)
{
	pthread_mutex_lock(&r->mu);
	res->n = r->n_out;
	res->fin = r->finish;
	res->cached = r->cached_tokens;
	memcpy(res->tok, r->out_tok, (size_t)r->n_out * sizeof(int32_t));
	memcpy(res->lp, r->out_lp, (size_t)r->n_out * sizeof(float));
	memcpy(res->top, r->out_top_tok, (size_t)r->n_out * 3 * sizeof(int32_t));
	memcpy(res->toplp, r->out_top_lp, (size_t)r->n_out * 3 * sizeof(float));
	pthread_mutex_unlock(&r->mu);
}

static void run_until_done(struct engine *e, struct engine_req **rs, int n)
{
	for (int steps = 0; steps < 100000; steps++) {
		bool all = true;
		for (int i = 0; i < n; i++) {
			pthread_mutex_lock(&rs[i]->mu);
			all &= rs[i]->finish != ENGINE_RUNNING;
			pthread_mutex_unlock(&rs[i]->mu);
		}
		if (all)
			return;
		engine_step(e);
	}
	fail_msg("requests did not finish");
}

/* Submits prompts [from, to) together, runs them, collects. */
static void run_batch(struct engine *e, int from, int to, struct result *res)
{
	struct engine_req *rs[NP];
	int32_t t[256];
	char err[256];
	for (int i = from; i < to; i++) {
		struct engine_sampling sp;
		fill_sp(&sp);
		int n = make_prompt(i, t);
		rs[i - from] = engine_submit(e, t, n, &sp, err, sizeof(err));
		assert_non_null(rs[i - from]);
	}
	run_until_done(e, rs, to - from);
	for (int i = from; i < to; i++) {
		collect(rs[i - from], &res[i]);
		engine_req_put(rs[i - from]);
	}
}

static void same(const struct result *a, const struct result *b)
{
	assert_int_equal(a->n, b->n);
	assert_memory_equal(a->tok, b->tok, (size_t)a->n * sizeof(int32_t));
	assert_memory_equal(a->lp, b->lp, (size_t)a->n * sizeof(float));
	assert_memory_equal(a->top, b->top, (size_t)a->n * 3 * sizeof(int32_t));
	assert_memory_equal(a->toplp, b->toplp, (size_t)a->n * 3 * sizeof(float));
}

static struct result ref[NP];

/* The reference: each prompt alone, one prefill, no prefix cache. */
static void make_ref(void)
{
	static bool done;
	if (done)
		return;
	for (int i = 0; i < NP; i++) {
		struct engine *e = mk(4096, 256, false, 4);
		run_batch(e, i, i + 1, ref);
		assert_int_equal(ref[i].n, GEN);
		assert_int_equal(ref[i].cached, 0);
		engine_free(e);
	}
	done = true;
}

static void test_batched_chunked_cached(void **state)
{
	struct result res[NP];
	(void)state;
	make_ref();
	int chunks[] = { 37, 7 };
	for (size_t c = 0; c < KV_ARRAY_SIZE(chunks); c++) {
		struct engine *e = mk(chunks[c], 512, true, 64);
		for (int pass = 0; pass < 2; pass++) {
			run_batch(e, 0, NP, res);
			for (int i = 0; i < NP; i++)
				same(&res[i], &ref[i]);
		}
		/* the second pass hit the cache */
		struct engine_stats st;
		engine_get_stats(e, &st);
		assert_true(st.prefix_hits > 0);
		assert_true(res[NP - 1].cached >= 192);
		assert_int_equal(st.blocks_used, 0);
		engine_free(e);
	}
}

/* A cache too small for the batch: requests wait, get preempted, recompute. */
static void test_preemption(void **state)
{
	struct result res[NP];
	(void)state;
	make_ref();
	struct engine *e = mk(64, 24, true, 64);
	run_batch(e, 0, NP, res);
	for (int i = 0; i < NP; i++)
		same(&res[i], &ref[i]);
	struct engine_stats st;
	engine_get_stats(e, &st);
	assert_true(st.preemptions > 0);
	engine_free(e);
}

/* ---- a connector that keeps one sequence in memory, in chunks of 16 ---- */

struct memconn {
	int32_t toks[512];
	float *k, *v; /* [layer][pos][kv_dim] */
	int n, layers, kv_dim;
	int loads, stores;
};

static int mc_lookup(struct kv_connector *c, const struct kv_namespace *ns, const int32_t *toks, int ntok)
{
	struct memconn *m = c->priv;
	int n = 0;
	(void)ns;
	while (n < m->n && n < ntok && m->toks[n] == toks[n])
		n++;
	n = n / 16 * 16;
	if (n >= ntok)
		n = (ntok - 1) / 16 * 16;
	return n;
}

static int mc_load(struct kv_connector *c, const struct kv_namespace *ns, const int32_t *toks, int n,
		   const struct kv_seq_view *v)
{
	struct memconn *m = c->priv;
	(void)ns;
	(void)toks;
	for (int l = 0; l < v->n_layers; l++)
		for (int p = 0; p < n; p++) {
			memcpy(v->k_row(v->ctx, l, p), m->k + ((size_t)l * 512 + p) * m->kv_dim, (size_t)m->kv_dim * 4);
			memcpy(v->v_row(v->ctx, l, p), m->v + ((size_t)l * 512 + p) * m->kv_dim, (size_t)m->kv_dim * 4);
		}
	m->loads++;
	return n;
}

static void mc_store(struct kv_connector *c, const struct kv_namespace *ns, const int32_t *toks, int ntok,
		     const struct kv_seq_view *v)
{
	struct memconn *m = c->priv;
	(void)ns;
	m->n = ntok;
	memcpy(m->toks, toks, (size_t)ntok * sizeof(int32_t));
	for (int l = 0; l < v->n_layers; l++)
		for (int p = 0; p < ntok; p++) {
			memcpy(m->k + ((size_t)l * 512 + p) * m->kv_dim, v->k_row(v->ctx, l, p), (size_t)m->kv_dim * 4);
			memcpy(m->v + ((size_t)l * 512 + p) * m->kv_dim, v->v_row(v->ctx, l, p), (size_t)m->kv_dim * 4);
		}
	m->stores++;
}

static void mc_free(struct kv_connector *c)
{
	struct memconn *m = c->priv;
	free(m->k);
	free(m->v);
	free(m);
	free(c);
}

static const struct kv_connector_ops mc_ops = { mc_lookup, mc_load, mc_store, NULL, mc_free };

static void test_connector_path(void **state)
{
	struct result res[NP];
	(void)state;
	make_ref();
	struct kv_connector *c = xcalloc(1, sizeof(*c));
	struct memconn *m = xcalloc(1, sizeof(*m));
	m->layers = g_model.cfg.n_layers;
	m->kv_dim = g_model.kv_dim;
	m->k = xcalloc((size_t)m->layers * 512 * (size_t)m->kv_dim, 4);
	m->v = xcalloc((size_t)m->layers * 512 * (size_t)m->kv_dim, 4);
	c->ops = &mc_ops;
	c->priv = m;
	/* prefix cache off: only the connector can serve the prefix */
	struct engine *e = mk(48, 256, false, 4);
	engine_set_connector(e, c);
	int i = NP - 1;
	run_batch(e, i, i + 1, res);
	same(&res[i], &ref[i]);
	assert_int_equal(m->stores, 1);
	run_batch(e, i, i + 1, res);
	same(&res[i], &ref[i]);
	assert_int_equal(m->loads, 1);
	assert_int_equal(res[i].cached, 192);
	struct engine_stats st;
	engine_get_stats(e, &st);
	assert_int_equal(st.ext_hits, 192);
	assert_int_equal(st.prefix_hits, 0);
	engine_free(e);
}

static struct engine_req *submit_text(struct engine *e, const char *text, struct engine_sampling *sp)
{
	int32_t *t = NULL;
	int n = 0, cap = 0;
	char err[256];
	tok_encode(text, strlen(text), true, &t, &n, &cap);
	struct engine_req *r = engine_submit(e, t, n, sp, err, sizeof(err));
	free(t);
	return r;
}

static void test_params(void **state)
{
	struct engine *e = mk(512, 64, true, 8);
	struct engine_sampling sp;
	(void)state;

	/* abort frees the blocks */
	fill_sp(&sp);
	sp.max_tokens = 400;
	struct engine_req *r = submit_text(e, "abort me please", &sp);
	for (int i = 0; i < 3; i++)
		engine_step(e);
	engine_req_abort(e, r);
	engine_step(e);
	assert_int_equal(r->finish, ENGINE_ABORT);
	assert_int_equal(engine_kvcache(e)->n_free, 64);
	engine_req_put(r);

	/* max_tokens, a stop string, min_tokens */
	fill_sp(&sp);
	sp.max_tokens = 40;
	r = submit_text(e, "the quick brown fox", &sp);
	run_until_done(e, &r, 1);
	assert_int_equal(r->finish, ENGINE_LENGTH);
	assert_int_equal(r->n_out, 40);
	char stop[3] = { r->text.data[5], r->text.data[6], 0 };
	size_t cut = strstr(r->text.data, stop) - r->text.data;
	engine_req_put(r);
	fill_sp(&sp);
	sp.max_tokens = 40;
	sp.stop[sp.nstop++] = xstrdup(stop);
	r = submit_text(e, "the quick brown fox", &sp);
	run_until_done(e, &r, 1);
	assert_int_equal(r->finish, ENGINE_STOP);
	assert_int_equal(r->stop_index, 0);
	assert_int_equal(r->text.len, cut);
	engine_req_put(r);

	/* seeded sampling repeats; top_p tiny is greedy */
	int32_t first[2][20];
	for (int k = 0; k < 2; k++) {
		fill_sp(&sp);
		sp.max_tokens = 20;
		sp.temperature = 1.5;
		sp.has_seed = true;
		sp.seed = 42;
		r = submit_text(e, "sampling", &sp);
		run_until_done(e, &r, 1);
		memcpy(first[k], r->out_tok, sizeof(first[k]));
		engine_req_put(r);
	}
	assert_memory_equal(first[0], first[1], sizeof(first[0]));

	/* echo + logprobs: prompt logprobs, also after a prefix hit (from the hit on) */
	float lp_cold[64];
	int np = 0;
	for (int k = 0; k < 2; k++) {
		fill_sp(&sp);
		sp.max_tokens = 0;
		sp.prompt_logprobs = true;
		r = submit_text(e, "a prompt that is longer than two blocks of sixteen tokens", &sp);
		run_until_done(e, &r, 1);
		assert_int_equal(r->finish, ENGINE_LENGTH);
		assert_int_equal(r->n_out, 0);
		np = r->n_prompt;
		assert_true(isnan(r->prompt_lp[0]));
		if (k == 0) {
			assert_int_equal(r->cached_tokens, 0);
			for (int i = 1; i < np; i++)
				assert_false(isnan(r->prompt_lp[i]));
			memcpy(lp_cold, r->prompt_lp, (size_t)np * sizeof(float));
		} else {
			assert_int_equal(r->cached_tokens, 48);
			for (int i = 1; i < 48; i++)
				assert_true(isnan(r->prompt_lp[i]));
			assert_memory_equal(lp_cold + 48, r->prompt_lp + 48, (size_t)(np - 48) * sizeof(float));
		}
		engine_req_put(r);
	}

	/* cache_salt separates the cache */
	fill_sp(&sp);
	sp.max_tokens = 1;
	sp.salt = xstrdup("tenant-b");
	r = submit_text(e, "a prompt that is longer than two blocks of sixteen tokens", &sp);
	run_until_done(e, &r, 1);
	assert_int_equal(r->cached_tokens, 0);
	engine_req_put(r);

	/* too long for max_model_len */
	fill_sp(&sp);
	int32_t big[600] = { 0 };
	char err[512];
	assert_null(engine_submit(e, big, 600, &sp, err, sizeof(err)));
	assert_non_null(strstr(err, "maximum context length"));
	engine_free(e);
}

/* The engine thread, with clients on other threads. */
static void test_threaded(void **state)
{
	struct result res[NP];
	(void)state;
	make_ref();
	struct engine *e = mk(512, 512, true, 64);
	engine_start(e);
	struct engine_req *rs[NP];
	int32_t t[256];
	char err[256];
	for (int i = 0; i < NP; i++) {
		struct engine_sampling sp;
		fill_sp(&sp);
		int n = make_prompt(i, t);
		rs[i] = engine_submit(e, t, n, &sp, err, sizeof(err));
	}
	for (int i = 0; i < NP; i++) {
		pthread_mutex_lock(&rs[i]->mu);
		for (int k = 0; k < 600 && rs[i]->finish == ENGINE_RUNNING; k++)
			engine_req_wait(rs[i], rs[i]->n_out, rs[i]->text_ready, 100);
		pthread_mutex_unlock(&rs[i]->mu);
		collect(rs[i], &res[i]);
		same(&res[i], &ref[i]);
		engine_req_put(rs[i]);
	}
	engine_stop(e);
	engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batched_chunked_cached),
		cmocka_unit_test(test_preemption),
		cmocka_unit_test(test_connector_path),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_threaded),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
