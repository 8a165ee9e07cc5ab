/*
 * kvserve-adapter-bench: cost of a low-rank adapter (--adapter) in kvserve's
 * forward: prefill and batched-decode token rates with every row on the base
 * model, every row on one adapter, and half and half (a mixed batch). Best of
 * REPS runs each (modes interleaved), det kernel. Output: one "key value" line per figure.
 * Usage: kvserve-adapter-bench MODEL THREADS [RANK]
 */
#include "common/util.h"

#include "kvcache.h"
#include "model.h"
#include "common/clock.h"
#include "common/banned.h"

#define PREFILL 512
#define CHUNK 256
#define BATCH 16
#define STEPS 32
#define REPS 15

/* Seconds of one prefill of PREFILL tokens in CHUNK-row batches, rows on adapter `mode` (2: alternate). */
static double prefill(struct model *m, struct kvcache *kc, int *blocks, int mode)
{
	struct model_row rows[CHUNK];
	uint64_t t0 = kv_now_ns();
	for (int p = 0; p < PREFILL; p += CHUNK) {
		for (int i = 0; i < CHUNK; i++)
			rows[i] = (struct model_row){ (int32_t)((p + i) * 37 % 256), p + i, blocks, true, NULL,
						      mode == 2 ? (i & 1) : mode };
		model_forward(m, &kc->kv, rows, CHUNK);
	}
	return kv_ns_to_s(kv_now_ns() - t0);
}

/* Seconds of STEPS decode steps of BATCH sequences (each at position PREFILL + step). */
static double decode(struct model *m, struct kvcache *kc, int **blocks, float *lg, int mode)
{
	struct model_row rows[BATCH];
	uint64_t t0 = kv_now_ns();
	for (int s = 0; s < STEPS; s++) {
		for (int b = 0; b < BATCH; b++)
			rows[b] = (struct model_row){ (int32_t)((s + b) % 256), PREFILL + s, blocks[b], true,
						      lg + (size_t)b * (size_t)m->cfg.vocab, mode == 2 ? (b & 1) : mode };
		model_forward(m, &kc->kv, rows, BATCH);
	}
	return kv_ns_to_s(kv_now_ns() - t0);
}

int main(int argc, char **argv)
{
	struct model_config cfg;
	struct model m;
	struct kvcache kc;
	char err[256];
	int64_t threads, rank = 8;

	kv_set_progname("kvserve-adapter-bench");
	if (argc < 3 || model_config_parse(argv[1], &cfg, err, sizeof(err)) < 0 ||
	    kv_parse_i64(argv[2], 1, 256, &threads) < 0 ||
	    (argc > 3 && kv_parse_i64(argv[3], 1, MODEL_ADAPTER_MAX_RANK, &rank) < 0)) {
		kv_error("usage: kvserve-adapter-bench MODEL THREADS [RANK]");
		return 2;
	}
	int maxpos = PREFILL + STEPS + 1, per = (maxpos + 15) / 16;
	model_init(&m, &cfg, (int)threads, MODEL_MM_DET, maxpos);
	struct model_adapter_config ac;
	char spec[64];
	snprintf(spec, sizeof(spec), "bench=11,rank=%d", (int)rank);
	if (model_adapter_parse(spec, &ac, err, sizeof(err)) < 0 || ac.rank > cfg.dim) {
		kv_error("bad rank: %s", err);
		return 2;
	}
	model_add_adapter(&m, &ac);
	kvcache_init(&kc, per * BATCH, 16, cfg.n_layers, m.kv_dim, false);
	int *blocks[BATCH];
	for (int b = 0; b < BATCH; b++) {
		blocks[b] = xmalloc((size_t)per * sizeof(int));
		for (int i = 0; i < per; i++)
			blocks[b][i] = b * per + i;
	}
	float *lg = xmalloc((size_t)BATCH * (size_t)cfg.vocab * sizeof(float));
	static const char *const names[] = { "base", "adapter", "mixed" };
	double pf[3], dc[3];
	for (int mode = 0; mode < 3; mode++)
		pf[mode] = dc[mode] = 1e30;
	/* modes interleaved, so that load from elsewhere hits all of them alike */
	for (int r = 0; r < REPS; r++)
		for (int mode = 0; mode < 3; mode++) {
			double t = prefill(&m, &kc, blocks[0], mode);
			pf[mode] = t < pf[mode] ? t : pf[mode];
			t = decode(&m, &kc, blocks, lg, mode);
			dc[mode] = t < dc[mode] ? t : dc[mode];
		}
	printf("model %s\nthreads %d\nrank %d\n", argv[1], (int)threads, (int)rank);
	for (int mode = 0; mode < 3; mode++)
		printf("prefill_tok_s_%s %.0f\ndecode_tok_s_%s %.0f\n", names[mode], PREFILL / pf[mode], names[mode],
		       STEPS * BATCH / dc[mode]);
	printf("prefill_overhead_adapter_pct %.1f\ndecode_overhead_adapter_pct %.1f\n",
	       100.0 * (pf[1] / pf[0] - 1), 100.0 * (dc[1] / dc[0] - 1));
	for (int b = 0; b < BATCH; b++)
		free(blocks[b]);
	free(lg);
	kvcache_release(&kc);
	model_release(&m);
	return 0;
}
