/*
 * kvserve-bench: prefill and decode speed of kvserve's model, its prefill
 * FLOP rate against OpenBLAS sgemm alone on the same shapes, and TTFT of a
 * long prompt cold vs with its prefix cached. Output: one "key value" line
 * per figure. Usage: kvserve-bench MODEL THREADS PREFILL_TOKENS
 */
#include "common/util.h"

#include <cblas.h>

#include "engine.h"
#include "model.h"
#include "common/clock.h"
#include "common/banned.h"

static double now_s(void)
{
	return kv_ns_to_s(kv_now_ns());
}

/* Prefill n tokens in chunks of `chunk` rows; returns seconds. */
static double prefill(struct model *m, struct kvcache *kc, const int32_t *toks, int n, int chunk, int *blocks,
		      double *flops)
{
	struct model_row *rows = xcalloc((size_t)chunk, sizeof(*rows));
	float *lg = xmalloc((size_t)m->cfg.vocab * sizeof(float));
	double t0 = now_s();
	*flops = 0;
	for (int p = 0; p < n; p += chunk) {
		int k = KV_MIN(chunk, n - p);
		for (int i = 0; i < k; i++) {
			rows[i] = (struct model_row){ toks[p + i], p + i, blocks, true, p + i == n - 1 ? lg : NULL, 0 };
			*flops += model_flops_row(m, p + i, p + i == n - 1);
		}
		model_forward(m, &kc->kv, rows, k);
	}
	double t = now_s() - t0;
	free(rows);
	free(lg);
	return t;
}

/* The projection sgemms of the same prefill, OpenBLAS alone. */
static double sgemm_rate(const struct model *m, int n, int chunk)
{
	const struct model_config *c = &m->cfg;
	int shapes[7][2] = { { c->dim, c->dim }, { c->dim, m->kv_dim }, { c->dim, m->kv_dim }, { c->dim, c->dim },
			     { c->dim, c->ffn }, { c->dim, c->ffn }, { c->ffn, c->dim } };
	float *a = xcalloc((size_t)chunk * (size_t)KV_MAX(c->dim, c->ffn), sizeof(float));
	float *b = xcalloc((size_t)c->dim * (size_t)KV_MAX(c->dim, c->ffn) + 64, sizeof(float));
	float *y = xcalloc((size_t)chunk * (size_t)KV_MAX(c->dim, c->ffn), sizeof(float));
	for (size_t i = 0; i < (size_t)chunk * (size_t)KV_MAX(c->dim, c->ffn); i++)
		a[i] = (float)(i % 13) * 0.01f;
	double flops = 0, t0 = now_s();
	for (int p = 0; p < n; p += chunk) {
		int k = KV_MIN(chunk, n - p);
		for (int l = 0; l < c->n_layers; l++)
			for (int s = 0; s < 7; s++) {
				cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, k, shapes[s][1], shapes[s][0], 1.0f, a,
					    shapes[s][0], b, shapes[s][1], 0.0f, y, shapes[s][1]);
				flops += 2.0 * k * shapes[s][0] * shapes[s][1];
			}
	}
	double t = now_s() - t0;
	free(a);
	free(b);
	free(y);
	return flops / t;
}

static double ttft(struct engine *e, const int32_t *toks, int n, int *cached)
{
	struct engine_sampling sp;
	char err[256];
	memset(&sp, 0, sizeof(sp));
	sp.max_tokens = 1;
	sp.ignore_eos = true;
	sp.top_p = 1;
	sp.logprobs = -1;
	struct engine_req *r = engine_submit(e, toks, n, &sp, err, sizeof(err));
	if (!r)
		kv_die(3, "bench: %s", err);
	pthread_mutex_lock(&r->mu);
	while (r->finish == ENGINE_RUNNING)
		engine_req_wait(r, r->n_out, r->text_ready, 1000);
	double t = kv_ns_to_s(r->t_first_ns - r->t_arrival_ns);
	*cached = r->cached_tokens;
	pthread_mutex_unlock(&r->mu);
	engine_req_put(r);
	return t;
}

int main(int argc, char **argv)
{
	struct model_config cfg;
	char err[256];
	int64_t threads = 2, n = 4096;
	kv_set_progname("kvserve-bench");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 4 || model_config_parse(argv[1], &cfg, err, sizeof(err)) < 0 ||
	    kv_parse_i64(argv[2], 1, 256, &threads) < 0 || kv_parse_i64(argv[3], 16, 1 << 16, &n) < 0)
		kv_die(2, "usage: kvserve-bench MODEL THREADS PREFILL_TOKENS");
	int chunk = 512, bs = 16;
	int32_t *toks = xmalloc((size_t)n * sizeof(int32_t));
	for (int i = 0; i < n; i++)
		toks[i] = 'a' + (i * 7 + i / 13) % 26;
	toks[0] = 256;

	for (int mode = 0; mode < 2; mode++) {
		struct model m;
		struct kvcache kc;
		model_init(&m, &cfg, (int)threads, mode ? MODEL_MM_BLAS : MODEL_MM_DET, (int)n + 64);
		int nb = (int)(n + 64) / bs + 1;
		kvcache_init(&kc, nb, bs, cfg.n_layers, m.kv_dim, false);
		int *blocks = xmalloc((size_t)nb * sizeof(int));
		for (int i = 0; i < nb; i++)
			blocks[i] = i;
		double fl, t = prefill(&m, &kc, toks, (int)n, chunk, blocks, &fl);
		const char *mm = mode ? "blas" : "det";
		printf("%s.%s.prefill_tokens_per_s %.1f\n", argv[1], mm, n / t);
		printf("%s.%s.prefill_seconds %.3f\n", argv[1], mm, t);
		printf("%s.%s.prefill_gflops %.2f\n", argv[1], mm, fl / t / 1e9);
		if (mode == 0) {
			double sg = sgemm_rate(&m, (int)n, chunk);
			printf("%s.sgemm_gflops_same_shapes %.2f\n", argv[1], sg / 1e9);
			printf("%s.det.prefill_vs_sgemm %.3f\n", argv[1], fl / t / sg);
			/* decode: B sequences of context 128, one token each per step */
			int Bs[] = { 1, 16 };
			for (size_t bi = 0; bi < KV_ARRAY_SIZE(Bs); bi++) {
				int B = Bs[bi], steps = 64, ctx = 128;
				struct model_row *rows = xcalloc((size_t)B, sizeof(*rows));
				float *lg = xmalloc((size_t)B * (size_t)cfg.vocab * sizeof(float));
				/* every sequence shares the first blocks (prefilled above) */
				double t0 = now_s();
				for (int s = 0; s < steps; s++) {
					for (int b = 0; b < B; b++)
						rows[b] = (struct model_row){ toks[ctx + s], ctx + s, blocks, b == 0,
									      lg + (size_t)b * (size_t)cfg.vocab, 0 };
					model_forward(&m, &kc.kv, rows, B);
				}
				double dt = now_s() - t0;
				printf("%s.det.decode_batch%d_tokens_per_s %.1f\n", argv[1], B, B * steps / dt);
				free(rows);
				free(lg);
			}
		}
		free(blocks);
		kvcache_release(&kc);
		model_release(&m);
	}

	/* TTFT through the engine: cold, then the same prompt with its prefix cached */
	struct model m;
	model_init(&m, &cfg, (int)threads, MODEL_MM_DET, (int)n + 64);
	struct engine_config ec = { (int)threads, 8, chunk, bs, (int)(2 * n / bs + 16), (int)n + 64, true, MODEL_MM_DET };
	struct engine *e = engine_create(&m, &ec);
	engine_start(e);
	int cached;
	double cold = ttft(e, toks, (int)n, &cached);
	double warm = ttft(e, toks, (int)n, &cached);
	printf("%s.ttft_cold_s %.4f\n", argv[1], cold);
	printf("%s.ttft_cached_s %.4f\n", argv[1], warm);
	printf("%s.ttft_cached_tokens %d\n", argv[1], cached);
	printf("%s.ttft_speedup %.1f\n", argv[1], cold / warm);
	engine_stop(e);
	engine_free(e);
	model_release(&m);
	free(toks);
	return 0;
}
