/*
 * Unit tests of src/serve/model: the kernels against plain reference code,
 * bitwise batch invariance, and that the KV of every block matters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <openssl/evp.h>

#include "common/util.h"
#include "kvcache.h"
#include "model.h"
#include "tokenizer.h"

static struct model_config tiny(void)
{
	struct model_config c;
	char err[256];
	assert_int_equal(model_config_parse("kv-tiny", &c, err, sizeof(err)), 0);
	return c;
}

static double rel_err(float a, float b)
{
	return fabs((double)a - b) / (1.0 + fabs((double)b));
}

static void test_spec_parse(void **state)
{
	struct model_config c;
	char err[256];
	(void)state;
	assert_int_equal(model_config_parse("random:dim=64,layers=2,heads=4,kv_heads=1,ffn=96,seed=9", &c, err,
					    sizeof(err)), 0);
	assert_int_equal(c.dim, 64);
	assert_int_equal(c.head_dim, 16);
	assert_int_equal(c.n_kv_heads, 1);
	assert_int_equal((int)c.seed, 9);
	assert_int_equal(model_config_parse("kv-small", &c, err, sizeof(err)), 0);
	assert_int_equal(c.dim, 512);
	assert_int_equal(model_config_parse("random:dim=60,heads=4", &c, err, sizeof(err)), -1);
	assert_int_equal(model_config_parse("random:bogus=1", &c, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "bogus"));
	assert_int_equal(model_config_parse("kv-huge", &c, err, sizeof(err)), -1);
	assert_int_equal(model_config_parse("random:dim=x", &c, err, sizeof(err)), -1);
}

/* The weight bytes are a function of the spec only: pin them. */
static void test_weights_reproducible(void **state)
{
	struct model_config c = tiny();
	struct model m1, m2;
	uint8_t h[32];
	unsigned int hl = 32;
	(void)state;
	model_init(&m1, &c, 1, MODEL_MM_DET, 64);
	model_init(&m2, &c, 2, MODEL_MM_BLAS, 64);
	size_t n = (size_t)c.vocab * (size_t)c.dim;
	assert_memory_equal(m1.tok_emb, m2.tok_emb, n * sizeof(float));
	assert_memory_equal(m1.layers[3].w2.panels, m2.layers[3].w2.panels,
			    (size_t)m1.layers[3].w2.np * (size_t)m1.layers[3].w2.k * 16 * sizeof(float));
	/* SHA-256 of kv-tiny's embedding bytes, pinned: a change here changes
	 * every output and every cache key; it must be deliberate */
	EVP_Digest(m1.tok_emb, n * sizeof(float), h, &hl, EVP_sha256(), NULL);
	static const uint8_t want[8] = { 0x03, 0x98, 0x03, 0x56, 0x4c, 0xb4, 0x4d, 0xd4 };
	assert_memory_equal(h, want, sizeof(want));
	float first = m1.tok_emb[0];
	/* a float drawn by exact operations: k * 2^-23 - 1 for an integer k */
	double k = ((double)first + 1.0) * 8388608.0;
	assert_true(k == floor(k));
	struct model_config c2 = c;
	c2.seed = 2;
	struct model m3;
	model_init(&m3, &c2, 1, MODEL_MM_DET, 64);
	assert_memory_not_equal(m1.tok_emb, m3.tok_emb, 64 * sizeof(float));
	assert_memory_not_equal(m1.id, m3.id, 32);
	model_release(&m3);
	model_release(&m1);
	model_release(&m2);
}

static void test_matmul_vs_naive(void **state)
{
	struct model_config c;
	char err[128];
	(void)state;
	assert_int_equal(model_config_parse("random:dim=96,layers=1,heads=4,kv_heads=2,ffn=200,seed=3", &c, err,
					    sizeof(err)), 0);
	for (int mode = 0; mode < 2; mode++) {
		struct model m;
		model_init(&m, &c, 2, mode ? MODEL_MM_BLAS : MODEL_MM_DET, 16);
		const struct model_mat *ws[] = { &m.layers[0].wq, &m.layers[0].w1, &m.layers[0].w2, &m.lm_head };
		for (size_t wi = 0; wi < KV_ARRAY_SIZE(ws); wi++) {
			const struct model_mat *w = ws[wi];
			int Ms[] = { 1, 3, 4, 5, 67, 130 };
			for (size_t mi = 0; mi < KV_ARRAY_SIZE(Ms); mi++) {
				int M = Ms[mi];
				float *x = xmalloc((size_t)M * (size_t)w->k * sizeof(float));
				float *y = xmalloc((size_t)M * (size_t)w->n * sizeof(float));
				for (int i = 0; i < M * w->k; i++)
					x[i] = (float)sin(i * 0.37 + wi);
				model_matmul(&m, w, x, M, y);
				for (int r = 0; r < M; r++)
					for (int n = 0; n < w->n; n++) {
						double ref = 0;
						for (int k = 0; k < w->k; k++)
							ref += (double)x[r * w->k + k] * model_mat_at(w, k, n);
						assert_true(rel_err(y[r * w->n + n], (float)ref) < 1e-5);
					}
				free(x);
				free(y);
			}
		}
		model_release(&m);
	}
}

/* ---- a plain reference forward: contiguous KV, naive loops, doubles where cheap ---- */

static void ref_forward(const struct model *m, const int32_t *toks, int n, float *logits_last)
{
	const struct model_config *c = &m->cfg;
	int D = c->dim, KV = m->kv_dim, hd = c->head_dim, F = c->ffn, g = c->n_heads / c->n_kv_heads;
	float *x = xcalloc((size_t)n * D, 4), *xn = xcalloc((size_t)D, 4), *q = xcalloc((size_t)n * D, 4);
	float *k = xcalloc((size_t)n * KV, 4), *v = xcalloc((size_t)n * KV, 4), *att = xcalloc((size_t)n * D, 4);
	float *h = xcalloc((size_t)F, 4), *sc = xcalloc((size_t)n, 4);
	for (int i = 0; i < n; i++)
		memcpy(x + i * D, m->tok_emb + (size_t)toks[i] * D, (size_t)D * 4);
	for (int l = 0; l < c->n_layers; l++) {
		const struct model_layer *L = &m->layers[l];
		for (int i = 0; i < n; i++) {
			double ss = 0;
			for (int d = 0; d < D; d++)
				ss += (double)x[i * D + d] * x[i * D + d];
			double s = 1.0 / sqrt(ss / D + 1e-5);
			for (int d = 0; d < D; d++)
				xn[d] = (float)(x[i * D + d] * s * L->attn_norm[d]);
			for (int o = 0; o < D; o++) {
				double a = 0;
				for (int d = 0; d < D; d++)
					a += (double)xn[d] * model_mat_at(&L->wq, d, o);
				q[i * D + o] = (float)a;
			}
			for (int o = 0; o < KV; o++) {
				double a = 0, b = 0;
				for (int d = 0; d < D; d++) {
					a += (double)xn[d] * model_mat_at(&L->wk, d, o);
					b += (double)xn[d] * model_mat_at(&L->wv, d, o);
				}
				k[i * KV + o] = (float)a;
				v[i * KV + o] = (float)b;
			}
			/* RoPE on pairs, angle pos * theta^(-2j/hd) */
			for (int hh = 0; hh < c->n_heads + c->n_kv_heads; hh++) {
				float *p = hh < c->n_heads ? q + i * D + hh * hd : k + i * KV + (hh - c->n_heads) * hd;
				for (int j = 0; j < hd / 2; j++) {
					double a = i * pow(c->rope_theta, -2.0 * j / hd);
					double x0 = p[2 * j], x1 = p[2 * j + 1];
					p[2 * j] = (float)(x0 * cos(a) - x1 * sin(a));
					p[2 * j + 1] = (float)(x0 * sin(a) + x1 * cos(a));
				}
			}
		}
		for (int i = 0; i < n; i++)
			for (int hh = 0; hh < c->n_heads; hh++) {
				int kh = hh / g;
				double mx = -1e300, sum = 0;
				for (int j = 0; j <= i; j++) {
					double s = 0;
					for (int d = 0; d < hd; d++)
						s += (double)q[i * D + hh * hd + d] * k[j * KV + kh * hd + d];
					sc[j] = (float)(s / sqrt(hd));
					mx = sc[j] > mx ? sc[j] : mx;
				}
				for (int j = 0; j <= i; j++)
					sum += exp(sc[j] - mx);
				for (int d = 0; d < hd; d++) {
					double o = 0;
					for (int j = 0; j <= i; j++)
						o += exp(sc[j] - mx) / sum * v[j * KV + kh * hd + d];
					att[i * D + hh * hd + d] = (float)o;
				}
			}
		for (int i = 0; i < n; i++) {
			for (int o = 0; o < D; o++) {
				double a = 0;
				for (int d = 0; d < D; d++)
					a += (double)att[i * D + d] * model_mat_at(&L->wo, d, o);
				xn[o] = (float)a;
			}
			for (int d = 0; d < D; d++)
				x[i * D + d] += xn[d];
			double ss = 0;
			for (int d = 0; d < D; d++)
				ss += (double)x[i * D + d] * x[i * D + d];
			double s = 1.0 / sqrt(ss / D + 1e-5);
			for (int d = 0; d < D; d++)
				xn[d] = (float)(x[i * D + d] * s * L->ffn_norm[d]);
			for (int f = 0; f < F; f++) {
				double a = 0, b = 0;
				for (int d = 0; d < D; d++) {
					a += (double)xn[d] * model_mat_at(&L->w1, d, f);
					b += (double)xn[d] * model_mat_at(&L->w3, d, f);
				}
				h[f] = (float)(a / (1 + exp(-a)) * b);
			}
			for (int o = 0; o < D; o++) {
				double a = 0;
				for (int f = 0; f < F; f++)
					a += (double)h[f] * model_mat_at(&L->w2, f, o);
				x[i * D + o] += (float)a;
			}
		}
	}
	double ss = 0;
	for (int d = 0; d < D; d++)
		ss += (double)x[(n - 1) * D + d] * x[(n - 1) * D + d];
	double s = 1.0 / sqrt(ss / D + 1e-5);
	for (int d = 0; d < D; d++)
		xn[d] = (float)(x[(n - 1) * D + d] * s * m->final_norm[d]);
	for (int o = 0; o < c->vocab; o++) {
		double a = 0;
		for (int d = 0; d < D; d++)
			a += (double)xn[d] * model_mat_at(&m->lm_head, d, o);
		logits_last[o] = (float)a + m->lm_bias[o];
	}
	free(x);
	free(xn);
	free(q);
	free(k);
	free(v);
	free(att);
	free(h);
	free(sc);
}

struct fixture {
	struct model m;
	struct kvcache kc;
	int *blocks;
};

static void fx_init(struct fixture *f, const struct model_config *c, enum model_mm mm, int threads, int maxpos,
		    int bs)
{
	model_init(&f->m, c, threads, mm, maxpos);
	int nb = (maxpos + bs - 1) / bs;
	kvcache_init(&f->kc, nb, bs, c->n_layers, f->m.kv_dim, false);
	f->blocks = xmalloc((size_t)nb * sizeof(int));
	/* blocks in a scrambled order, as a real block table has */
	for (int i = 0; i < nb; i++)
		f->blocks[i] = (i * 7 + 3) % nb;
	if (nb % 7 == 0)
		for (int i = 0; i < nb; i++)
			f->blocks[i] = nb - 1 - i;
}

static void fx_release(struct fixture *f)
{
	kvcache_release(&f->kc);
	model_release(&f->m);
	free(f->blocks);
}

/* Runs toks[from..to) as one batch; logits of every row into lg (row-major, by position). */
static void run_rows(struct fixture *f, const int32_t *toks, int from, int to, float *lg, bool write)
{
	int n = to - from;
	struct model_row *rows = xcalloc((size_t)n, sizeof(*rows));
	for (int i = 0; i < n; i++)
		rows[i] = (struct model_row){ toks[from + i], from + i, f->blocks, write,
					      lg ? lg + (size_t)(from + i) * (size_t)f->m.cfg.vocab : NULL, 0 };
	model_forward(&f->m, &f->kc.kv, rows, n);
	free(rows);
}

static void test_forward_vs_reference(void **state)
{
	struct model_config c;
	char err[128];
	(void)state;
	assert_int_equal(model_config_parse("random:dim=64,layers=2,heads=4,kv_heads=2,ffn=128,seed=5", &c, err,
					    sizeof(err)), 0);
	struct fixture f;
	fx_init(&f, &c, MODEL_MM_DET, 2, 64, 16);
	int32_t toks[37];
	for (int i = 0; i < 37; i++)
		toks[i] = (i * 31 + 7) % TOK_VOCAB;
	float *lg = xmalloc((size_t)37 * (size_t)c.vocab * sizeof(float));
	float ref[TOK_VOCAB];
	run_rows(&f, toks, 0, 37, lg, true);
	ref_forward(&f.m, toks, 37, ref);
	double worst = 0;
	for (int o = 0; o < c.vocab; o++)
		worst = fmax(worst, rel_err(lg[36 * c.vocab + o], ref[o]));
	assert_true(worst < 1e-5);
	free(lg);
	fx_release(&f);
}

/* One prefill, chunks of every size, token by token: bitwise the same logits. */
static void test_batch_invariance(void **state)
{
	struct model_config c = tiny();
	(void)state;
	int n = 100, V = c.vocab;
	int32_t toks[100];
	for (int i = 0; i < n; i++)
		toks[i] = (i * 131 + 17) % 256;
	struct fixture f;
	fx_init(&f, &c, MODEL_MM_DET, 2, 128, 16);
	float *a = xmalloc((size_t)n * (size_t)V * sizeof(float));
	float *b = xmalloc((size_t)n * (size_t)V * sizeof(float));
	run_rows(&f, toks, 0, n, a, true);
	int chunks[] = { 1, 3, 16, 17, 64 };
	for (size_t ci = 0; ci < KV_ARRAY_SIZE(chunks); ci++) {
		memset(f.kc.kv.base, 0xff, kvcache_block_bytes(16, c.n_layers, f.m.kv_dim) * 8); /* poison: NaN */
		for (int p = 0; p < n; p += chunks[ci])
			run_rows(&f, toks, p, KV_MIN(n, p + chunks[ci]), b, true);
		assert_memory_equal(a, b, (size_t)n * (size_t)V * sizeof(float));
	}
	/* a row recomputed over its cached KV (write_kv false) matches too */
	run_rows(&f, toks, n - 1, n, b, false);
	assert_memory_equal(a + (size_t)(n - 1) * V, b + (size_t)(n - 1) * V, (size_t)V * sizeof(float));
	free(a);
	free(b);
	fx_release(&f);
}

/*
 * Random prompts and lengths, split into random chunks and mixed with rows
 * of other sequences in the same batch (as the scheduler does): every
 * logit bitwise equal to one plain prefill of the prompt alone.
 */
static void test_random_batches(void **state)
{
	struct model_config c = tiny();
	(void)state;
	int V = c.vocab, maxn = 160, nseq = 3, bs = 16;
	struct model m;
	struct kvcache kc;
	model_init(&m, &c, 2, MODEL_MM_DET, maxn);
	int per = maxn / bs;
	kvcache_init(&kc, per * (nseq + 1), bs, c.n_layers, m.kv_dim, false);
	int blocks[4][10];
	for (int s = 0; s <= nseq; s++)
		for (int b = 0; b < per; b++)
			blocks[s][b] = (b * (nseq + 1) + s * 3) % (per * (nseq + 1));
	uint64_t rng = 12345;
	float *ref = xmalloc((size_t)maxn * (size_t)V * sizeof(float));
	float *got = xmalloc((size_t)maxn * (size_t)V * sizeof(float));
	float *junk = xmalloc((size_t)V * sizeof(float));
	struct model_row *rows = xcalloc(256, sizeof(*rows));
	for (int iter = 0; iter < 12; iter++) {
		int32_t toks[4][160];
		int len[4], done[4] = { 0 };
		for (int s = 0; s < nseq; s++) {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			len[s] = 1 + (int)((rng >> 33) % (uint64_t)(maxn - 1));
			for (int i = 0; i < len[s]; i++) {
				rng = rng * 6364136223846793005ull + 1442695040888963407ull;
				toks[s][i] = (int32_t)((rng >> 33) % 256);
			}
		}
		/* reference: sequence 0 alone, one prefill, in its own blocks */
		struct model_row *rr = xcalloc((size_t)len[0], sizeof(*rr));
		for (int i = 0; i < len[0]; i++)
			rr[i] = (struct model_row){ toks[0][i], i, blocks[3], true, ref + (size_t)i * (size_t)V, 0 };
		model_forward(&m, &kc.kv, rr, len[0]);
		free(rr);
		/* mixed: random chunks of all sequences per batch */
		for (int guard = 0; guard < 1000; guard++) {
			int nr = 0;
			for (int s = 0; s < nseq; s++) {
				rng = rng * 6364136223846793005ull + 1442695040888963407ull;
				int take = KV_MIN(len[s] - done[s], 1 + (int)((rng >> 33) % 40));
				for (int i = 0; i < take; i++) {
					int p = done[s] + i;
					rows[nr++] = (struct model_row){ toks[s][p], p, blocks[s], true,
									 s == 0 ? got + (size_t)p * (size_t)V : junk, 0 };
				}
				done[s] += take;
			}
			if (!nr)
				break;
			model_forward(&m, &kc.kv, rows, nr);
		}
		assert_memory_equal(ref, got, (size_t)len[0] * (size_t)V * sizeof(float));
	}
	free(rows);
	free(ref);
	free(got);
	free(junk);
	kvcache_release(&kc);
	model_release(&m);
}

/* With sgemm the projections round differently per batch shape: bounded, not bitwise. */
static void test_blas_bound(void **state)
{
	struct model_config c = tiny();
	(void)state;
	int n = 80, V = c.vocab;
	int32_t toks[80];
	for (int i = 0; i < n; i++)
		toks[i] = (i * 37 + 5) % 256;
	struct fixture f;
	fx_init(&f, &c, MODEL_MM_BLAS, 2, 96, 16);
	float *a = xmalloc((size_t)n * (size_t)V * sizeof(float));
	float *b = xmalloc((size_t)n * (size_t)V * sizeof(float));
	run_rows(&f, toks, 0, n, a, true);
	for (int p = 0; p < n; p += 7)
		run_rows(&f, toks, p, KV_MIN(n, p + 7), b, true);
	double worst = 0;
	for (int i = 0; i < n * V; i++)
		worst = fmax(worst, fabs((double)a[i] - b[i]));
	assert_true(worst < 1e-3); /* documented bound on logits, docs/kvserve.md */
	free(a);
	free(b);
	fx_release(&f);
}

static double logprob(const float *lg, int V, int t)
{
	double mx = lg[0], s = 0;
	for (int i = 1; i < V; i++)
		mx = fmax(mx, lg[i]);
	for (int i = 0; i < V; i++)
		s += exp(lg[i] - mx);
	return lg[t] - mx - log(s);
}

/*
 * Corrupting the KV of any one block in any layer moves the logprobs of the
 * next token measurably (the model depends on the whole context).
 */
static void test_every_block_matters(void **state)
{
	struct model_config c = tiny();
	(void)state;
	int n = 129, V = c.vocab, bs = 16;
	int32_t toks[129];
	for (int i = 0; i < n; i++)
		toks[i] = 'a' + (i * 7) % 26;
	struct fixture f;
	fx_init(&f, &c, MODEL_MM_DET, 2, 160, bs);
	float *lg = xmalloc((size_t)n * (size_t)V * sizeof(float));
	float clean[TOK_VOCAB], bad[TOK_VOCAB];
	run_rows(&f, toks, 0, n, lg, true);
	memcpy(clean, lg + (size_t)(n - 1) * V, sizeof(clean));
	size_t bsz = (size_t)bs * (size_t)f.m.kv_dim * 2;
	float *save = xmalloc(bsz * sizeof(float));
	double least = 1e9;
	for (int l = 0; l < c.n_layers; l++)
		for (int b = 0; b < n / bs; b++) {
			float *k = model_kv_k(&f.kc.kv, f.m.kv_dim, f.blocks[b], l, 0);
			memcpy(save, k, bsz * sizeof(float));
			/* the bug of FAULTS.md F: the block left as zeros */
			memset(k, 0, bsz * sizeof(float));
			struct model_row row = { toks[n - 1], n - 1, f.blocks, false, bad, 0 };
			/* recompute the last row of every layer from the corrupted cache */
			model_forward(&f.m, &f.kc.kv, &row, 1);
			memcpy(k, save, bsz * sizeof(float));
			double d = 0;
			for (int t = 0; t < V; t++)
				d = fmax(d, fabs(logprob(bad, V, t) - logprob(clean, V, t)));
			least = fmin(least, d);
		}
	/* every (layer, block) pair moved some logprob by more than 1e-3 */
	assert_true(least > 1e-3);
	free(save);
	free(lg);
	fx_release(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_parse),
		cmocka_unit_test(test_weights_reproducible),
		cmocka_unit_test(test_matmul_vs_naive),
		cmocka_unit_test(test_forward_vs_reference),
		cmocka_unit_test(test_batch_invariance),
		cmocka_unit_test(test_random_batches),
		cmocka_unit_test(test_blas_bound),
		cmocka_unit_test(test_every_block_matters),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
