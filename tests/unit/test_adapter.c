/*
 * Unit tests of kvserve's low-rank adapters (model.h, --adapter): spec
 * parsing, the delta B (A x) against a naive computation, reproducibility
 * from the seed, per-row selection in mixed batches (bitwise under det,
 * bounded under blas), and the engine: adapters in the prefix-cache key
 * (no cross hits between base and adapter), hits within one adapter, and
 * vllm:lora_requests_info.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>

#include "common/util.h"
#include "engine.h"
#include "kvcache.h"
#include "model.h"

static struct model_config tiny(void)
{
	struct model_config c;
	char err[128];
	assert_int_equal(model_config_parse("kv-tiny", &c, err, sizeof(err)), 0);
	return c;
}

static struct model_adapter_config spec(const char *s)
{
	struct model_adapter_config ac;
	char err[256];
	assert_int_equal(model_adapter_parse(s, &ac, err, sizeof(err)), 0);
	return ac;
}

static void test_parse(void **state)
{
	struct model_adapter_config ac;
	char err[256];
	(void)state;
	ac = spec("lora-a=11");
	assert_string_equal(ac.name, "lora-a");
	assert_true(ac.seed == 11 && ac.rank == 8 && ac.alpha == 2.0f);
	ac = spec("org/x.y_z:1=0,rank=4,alpha=16");
	assert_string_equal(ac.name, "org/x.y_z:1");
	assert_true(ac.seed == 0 && ac.rank == 4 && ac.alpha == 16.0f);
	ac = spec("b=5,alpha=1.5,rank=64");
	assert_true(ac.rank == 64 && ac.alpha == 1.5f);

	static const struct { const char *spec, *want; } bad[] = {
		{ "lora", "expected NAME=SEED" },
		{ "=1", "the name" },
		{ "a b=1", "the name" },
		{ "a\"=1", "the name" },
		{ "a=", "seed" },
		{ "a=x", "seed" },
		{ "a=-1", "seed" },
		{ "a=1,rank=0", "rank" },
		{ "a=1,rank=65", "rank" },
		{ "a=1,rank=r", "rank" },
		{ "a=1,alpha=0", "alpha" },
		{ "a=1,alpha=-2", "alpha" },
		{ "a=1,alpha=nan", "alpha" },
		{ "0=4,alpha=7E-74", "alpha" }, /* found by fuzz_serve_adapter: 0 as a float */
		{ "a=1,alpha=10001", "alpha" },
		{ "a=1,seed=2", "unknown key 'seed'" },
		{ "a=1,foo=2", "unknown key 'foo'" },
		{ "a=1,rank", "expected key=value" },
		{ "a=1,", "expected key=value" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa=1", "the name" },
	};
	for (size_t i = 0; i < KV_ARRAY_SIZE(bad); i++) {
		err[0] = 0;
		if (model_adapter_parse(bad[i].spec, &ac, err, sizeof(err)) == 0)
			fail_msg("'%s' was accepted", bad[i].spec);
		if (!strstr(err, bad[i].want))
			fail_msg("'%s': message '%s' lacks '%s'", bad[i].spec, err, bad[i].want);
	}
}

struct fixture {
	struct model m;
	struct kvcache kc;
	int *blocks[3];
};

static void fx_init(struct fixture *f, enum model_mm mm, int maxpos)
{
	struct model_config c = tiny();
	model_init(&f->m, &c, 2, mm, maxpos);
	struct model_adapter_config a1 = spec("lora-a=11"), a2 = spec("lora-b=12,rank=4,alpha=3");
	assert_int_equal(model_add_adapter(&f->m, &a1), 1);
	assert_int_equal(model_add_adapter(&f->m, &a2), 2);
	int per = (maxpos + 15) / 16, nb = 3 * per;
	kvcache_init(&f->kc, nb, 16, c.n_layers, f->m.kv_dim, false);
	for (int s = 0; s < 3; s++) {
		f->blocks[s] = xmalloc((size_t)per * sizeof(int));
		for (int i = 0; i < per; i++)
			f->blocks[s][i] = (i * 3 + s) % nb; /* interleaved, scrambled */
	}
}

static void fx_release(struct fixture *f)
{
	for (int s = 0; s < 3; s++)
		free(f->blocks[s]);
	kvcache_release(&f->kc);
	model_release(&f->m);
}

static void make_toks(int32_t *t, int n, int salt)
{
	for (int i = 0; i < n; i++)
		t[i] = (i * 37 + salt * 11 + 5) % 256;
}

/* toks[from..to) of sequence seq (blocks[seq]) under adapter a, one batch. */
static void run_rows(struct fixture *f, int seq, int a, const int32_t *toks, int from, int to, float *lg)
{
	int n = to - from, V = f->m.cfg.vocab;
	struct model_row *rows = xcalloc((size_t)n, sizeof(*rows));
	for (int i = 0; i < n; i++)
		rows[i] = (struct model_row){ toks[from + i], from + i, f->blocks[seq], true,
					      lg + (size_t)(from + i) * (size_t)V, a };
	model_forward(&f->m, &f->kc.kv, rows, n);
	free(rows);
}

/* The V row of layer 0 is x Wv + scale (x A) B with x = rmsnorm(embedding): checked in double. */
static void test_delta_vs_naive(void **state)
{
	struct fixture f;
	(void)state;
	fx_init(&f, MODEL_MM_DET, 64);
	int n = 20, V = f.m.cfg.vocab, D = f.m.cfg.dim, KV = f.m.kv_dim;
	int32_t toks[20];
	make_toks(toks, n, 1);
	float *lg = xmalloc((size_t)n * (size_t)V * sizeof(float));
	for (int a = 0; a <= 2; a++) {
		run_rows(&f, a, a, toks, 0, n, lg);
		const struct model_adapter *ad = a ? &f.m.adapters[a - 1] : NULL;
		double worst = 0, dnorm = 0;
		for (int p = 0; p < n; p++) {
			const float *e = f.m.tok_emb + (size_t)toks[p] * (size_t)D;
			double x[512], t[64], ss = 0;
			for (int i = 0; i < D; i++)
				ss += (double)e[i] * e[i];
			for (int i = 0; i < D; i++)
				x[i] = e[i] / sqrt(ss / D + 1e-5);
			if (ad) {
				const struct model_mat *A = &ad->a[MODEL_AP_V];
				for (int r = 0; r < ad->cfg.rank; r++) {
					t[r] = 0;
					for (int i = 0; i < D; i++)
						t[r] += x[i] * model_mat_at(A, i, r);
				}
			}
			int blk = f.blocks[a][p / 16];
			const float *v = model_kv_v(&f.kc.kv, KV, blk, 0, p % 16);
			for (int j = 0; j < KV; j++) {
				double y = 0, d = 0;
				for (int i = 0; i < D; i++)
					y += x[i] * model_mat_at(&f.m.layers[0].wv, i, j);
				for (int r = 0; ad && r < ad->cfg.rank; r++)
					d += t[r] * model_mat_at(&ad->b[MODEL_AP_V], r, j);
				y += ad ? ad->scale * d : 0;
				dnorm = fmax(dnorm, fabs(ad ? ad->scale * d : 0));
				worst = fmax(worst, fabs(y - v[j]));
			}
		}
		assert_true(worst < 1e-4);
		if (ad)
			assert_true(dnorm > 0.05); /* the delta is not negligible */
	}
	free(lg);
	fx_release(&f);
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
	double w = 0;
	for (size_t i = 0; i < n; i++)
		w = fmax(w, fabs((double)a[i] - b[i]));
	return w;
}

/* An adapter moves the logits; the same seed (another model instance) gives the same bits. */
static void test_changes_and_reproducible(void **state)
{
	struct fixture f, g;
	(void)state;
	fx_init(&f, MODEL_MM_DET, 64);
	fx_init(&g, MODEL_MM_DET, 64);
	int n = 40, V = f.m.cfg.vocab;
	size_t sz = (size_t)n * (size_t)V;
	int32_t toks[40];
	make_toks(toks, n, 2);
	float *base = xmalloc(sz * sizeof(float)), *la = xmalloc(sz * sizeof(float));
	float *lb = xmalloc(sz * sizeof(float)), *la2 = xmalloc(sz * sizeof(float));
	run_rows(&f, 0, 0, toks, 0, n, base);
	run_rows(&f, 1, 1, toks, 0, n, la);
	run_rows(&f, 2, 2, toks, 0, n, lb);
	run_rows(&g, 1, 1, toks, 0, n, la2);
	assert_true(max_abs_diff(base, la, sz) > 0.5);
	assert_true(max_abs_diff(base, lb, sz) > 0.5);
	assert_true(max_abs_diff(la, lb, sz) > 0.5);
	assert_memory_equal(la, la2, sz * sizeof(float));
	/* another seed under the same name is another adapter (FAULTS.md row 2) */
	struct model m3;
	struct model_config c = tiny();
	model_init(&m3, &c, 1, MODEL_MM_DET, 8);
	struct model_adapter_config s11 = spec("lora-a=11"), s12 = spec("lora-a=12");
	struct model_adapter_config r4 = spec("lora-a=11,rank=4"), al = spec("lora-a=11,alpha=3");
	model_add_adapter(&m3, &s11);
	model_add_adapter(&m3, &s12);
	model_add_adapter(&m3, &r4);
	model_add_adapter(&m3, &al);
	assert_true(m3.adapters[0].version == f.m.adapters[0].version);
	for (int i = 1; i < 4; i++)
		for (int k = 0; k < i; k++)
			assert_true(m3.adapters[i].version != m3.adapters[k].version);
	assert_float_equal(m3.adapters[0].scale, 0.25f, 0);
	assert_float_equal(m3.adapters[3].scale, 3.0f / 8.0f, 0);
	assert_int_equal(model_find_adapter(&m3, "lora-a"), 1);
	assert_int_equal(model_find_adapter(&m3, "nope"), 0);
	model_release(&m3);
	free(base);
	free(la);
	free(lb);
	free(la2);
	fx_release(&f);
	fx_release(&g);
}

/*
 * Three sequences (base, lora-a, lora-b), each alone in one prefill, then
 * all three again in random chunks in shared batches: det gives the same
 * bits, blas stays within its documented bound.
 */
static void mixed(enum model_mm mm)
{
	struct fixture f;
	fx_init(&f, mm, 128);
	int len[3] = { 100, 77, 123 }, V = f.m.cfg.vocab;
	int32_t toks[3][128];
	float *ref[3], *got[3];
	for (int s = 0; s < 3; s++) {
		make_toks(toks[s], len[s], 3); /* the same tokens: only the adapter differs */
		ref[s] = xmalloc((size_t)len[s] * (size_t)V * sizeof(float));
		got[s] = xmalloc((size_t)len[s] * (size_t)V * sizeof(float));
		run_rows(&f, s, s, toks[s], 0, len[s], ref[s]);
	}
	struct model_row rows[3 * 128];
	int done[3] = { 0, 0, 0 };
	uint64_t rng = 7;
	for (int guard = 0; guard < 1000; guard++) {
		int nr = 0;
		for (int s = 0; s < 3; s++) {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			int take = KV_MIN(len[s] - done[s], 1 + (int)((rng >> 33) % 30));
			for (int i = 0; i < take; i++) {
				int p = done[s] + i;
				rows[nr++] = (struct model_row){ toks[s][p], p, f.blocks[s], true,
								 got[s] + (size_t)p * (size_t)V, s };
			}
			done[s] += take;
		}
		if (!nr)
			break;
		/* rows of the three sequences interleaved: rotate the batch */
		struct model_row tmp[3 * 128];
		int off = (int)(rng >> 40) % nr;
		for (int i = 0; i < nr; i++)
			tmp[i] = rows[(i + off) % nr];
		model_forward(&f.m, &f.kc.kv, tmp, nr);
	}
	for (int s = 0; s < 3; s++) {
		size_t sz = (size_t)len[s] * (size_t)V;
		if (mm == MODEL_MM_DET)
			assert_memory_equal(ref[s], got[s], sz * sizeof(float));
		else
			assert_true(max_abs_diff(ref[s], got[s], sz) < 1e-3);
		free(ref[s]);
		free(got[s]);
	}
	fx_release(&f);
}

static void test_mixed_det(void **state)
{
	(void)state;
	mixed(MODEL_MM_DET);
}

static void test_mixed_blas(void **state)
{
	(void)state;
	mixed(MODEL_MM_BLAS);
}

/* ---- engine ---- */

#define GEN 8

struct result {
	int n, cached;
	int32_t tok[GEN];
	float lp[GEN];
};

static struct engine_req *submit(struct engine *e, int adapter, int ntok, int salt)
{
	struct engine_sampling sp;
	int32_t t[200];
	char err[256];
	memset(&sp, 0, sizeof(sp));
	sp.max_tokens = GEN;
	sp.ignore_eos = true;
	sp.top_p = 1;
	sp.logprobs = 0;
	sp.adapter = adapter;
	make_toks(t, ntok, salt);
	struct engine_req *r = engine_submit(e, t, ntok, &sp, err, sizeof(err));
	assert_non_null(r);
	return r;
}

static void finish(struct engine *e, struct engine_req **rs, int n, struct result *res)
{
	for (int steps = 0; steps < 10000; steps++) {
		bool all = true;
		for (int i = 0; i < n; i++) {
			pthread_mutex_lock(&rs[i]->mu);
			all &= rs[i]->finish != ENGINE_RUNNING;
			pthread_mutex_unlock(&rs[i]->mu);
		}
		if (all)
			break;
		engine_step(e);
	}
	for (int i = 0; i < n; i++) {
		struct engine_req *r = rs[i];
		pthread_mutex_lock(&r->mu);
		assert_int_equal(r->n_out, GEN);
		res[i].n = r->n_out;
		res[i].cached = r->cached_tokens;
		memcpy(res[i].tok, r->out_tok, GEN * sizeof(int32_t));
		memcpy(res[i].lp, r->out_lp, GEN * sizeof(float));
		pthread_mutex_unlock(&r->mu);
		engine_req_put(r);
	}
}

static void run1(struct engine *e, int adapter, int ntok, struct result *res)
{
	struct engine_req *r = submit(e, adapter, ntok, 4);
	finish(e, &r, 1, res);
}

static bool same(const struct result *a, const struct result *b)
{
	return !memcmp(a->tok, b->tok, sizeof(a->tok)) && !memcmp(a->lp, b->lp, sizeof(a->lp));
}

static struct engine *mk(struct model *m, int batched)
{
	struct engine_config ec = { 2, 16, batched, 16, 256, 512, true, MODEL_MM_DET };
	return engine_create(m, &ec);
}

static void test_engine_keys(void **state)
{
	struct fixture f;
	struct engine_stats st0, st1;
	struct result cold[3], r, r2;
	(void)state;
	fx_init(&f, MODEL_MM_DET, 512);
	/* cold runs: each model alone in a fresh engine */
	for (int a = 0; a < 3; a++) {
		struct engine *e = mk(&f.m, 512);
		run1(e, a, 100, &cold[a]);
		assert_int_equal(cold[a].cached, 0);
		engine_free(e);
	}
	assert_false(same(&cold[0], &cold[1]));
	assert_false(same(&cold[1], &cold[2]));

	/* base first, then the same tokens under lora-a: no cross hit */
	struct engine *e = mk(&f.m, 512);
	run1(e, 0, 100, &r);
	assert_true(same(&r, &cold[0]));
	engine_get_stats(e, &st0);
	run1(e, 1, 100, &r);
	engine_get_stats(e, &st1);
	assert_int_equal(r.cached, 0);
	assert_true(st1.prefix_hits == st0.prefix_hits);
	assert_true(same(&r, &cold[1]));
	/* lora-a again: hits, same output */
	run1(e, 1, 100, &r2);
	assert_int_equal(r2.cached, 96);
	assert_true(same(&r2, &cold[1]));
	/* lora-b after lora-a: no hit */
	run1(e, 2, 100, &r);
	assert_int_equal(r.cached, 0);
	assert_true(same(&r, &cold[2]));
	engine_free(e);

	/* all three at once in one engine, chunked prefill of 37 rows: mixed batches */
	e = mk(&f.m, 37);
	struct engine_req *rs[3];
	for (int a = 0; a < 3; a++)
		rs[a] = submit(e, a, 100, 4);
	struct result res[3];
	finish(e, rs, 3, res);
	for (int a = 0; a < 3; a++) {
		assert_int_equal(res[a].cached, 0);
		assert_true(same(&res[a], &cold[a]));
	}
	engine_free(e);

	/* the drop-key fault at the prefix cache (FAULTS.md K1): lora-a hits base KV */
	e = mk(&f.m, 512);
	engine_kvcache(e)->drop_mask = KVC_DIM_ADAPTER;
	run1(e, 0, 100, &r);
	run1(e, 1, 100, &r);
	assert_int_equal(r.cached, 96);
	assert_false(same(&r, &cold[1])); /* detectable: differs from its own cold run */
	engine_free(e);
	fx_release(&f);
}

static void test_engine_submit_and_metrics(void **state)
{
	struct fixture f;
	char err[256];
	int32_t t[4] = { 1, 2, 3, 4 };
	struct engine_sampling sp;
	(void)state;
	fx_init(&f, MODEL_MM_DET, 64);
	struct engine *e = mk(&f.m, 64);
	memset(&sp, 0, sizeof(sp));
	sp.max_tokens = 1;
	sp.adapter = 3;
	assert_null(engine_submit(e, t, 4, &sp, err, sizeof(err)));
	assert_non_null(strstr(err, "adapter"));
	sp.adapter = -1;
	assert_null(engine_submit(e, t, 4, &sp, err, sizeof(err)));

	struct engine_req *rb = submit(e, 2, 10, 1);
	struct kv_buf b = KV_BUF_INIT(0);
	engine_metrics(e, "kv-tiny", &b);
	assert_non_null(strstr(kv_buf_str(&b),
			       "vllm:lora_requests_info{max_lora=\"2\",waiting_lora_adapters=\"lora-b\",running_lora_adapters=\"\"} "));
	kv_buf_release(&b);
	engine_step(e);
	b = (struct kv_buf)KV_BUF_INIT(0);
	engine_metrics(e, "kv-tiny", &b);
	assert_non_null(strstr(kv_buf_str(&b),
			       "vllm:lora_requests_info{max_lora=\"2\",waiting_lora_adapters=\"\",running_lora_adapters=\"lora-b\"} "));
	kv_buf_release(&b);
	struct result res;
	finish(e, &rb, 1, &res);
	engine_free(e);
	fx_release(&f);

	/* no adapters: no lora metric (as vLLM without --enable-lora) */
	struct model m;
	struct model_config c = tiny();
	model_init(&m, &c, 1, MODEL_MM_DET, 64);
	e = mk(&m, 64);
	b = (struct kv_buf)KV_BUF_INIT(0);
	engine_metrics(e, "kv-tiny", &b);
	assert_null(strstr(kv_buf_str(&b), "lora"));
	kv_buf_release(&b);
	engine_free(e);
	model_release(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_delta_vs_naive),
		cmocka_unit_test(test_changes_and_reproducible),
		cmocka_unit_test(test_mixed_det),
		cmocka_unit_test(test_mixed_blas),
		cmocka_unit_test(test_engine_keys),
		cmocka_unit_test(test_engine_submit_and_metrics),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
