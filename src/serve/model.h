/*
 * model.h: a Llama-style decoder in fp32 (token embedding, RMSNorm, RoPE,
 * grouped-query attention, SwiGLU MLP, LM head) with deterministic random
 * weights.
 *
 * Weights: every tensor is drawn from xoshiro256** seeded by splitmix64 of
 * (model seed, tensor index); a draw becomes a float by exact operations
 * only (24 bits, times 2^-24, times 2, minus 1, times a scale that is a
 * float constant), so the weight bytes are the same on every machine.
 * The RoPE table uses double cos/sin rounded to float (libm; identical on
 * every glibc we know, not guaranteed by IEEE), softmax and SiLU use expf.
 *
 * Determinism: every token row is computed by the same code with the same
 * reduction order whatever else is in the batch: the projections use our
 * own kernel (model_mm=det: per output element a sequential sum over k,
 * multiply then add, no FMA contraction: the build is ISO C so
 * -ffp-contract=off), attention is per row over keys 0..pos in order. So a
 * token's K, V and logits are bitwise the same in one prefill, in chunks,
 * in a decode batch or after a cache hit. model_mm=blas uses OpenBLAS sgemm
 * for the projections: faster on big batches, but sgemm rounds a row
 * differently depending on the matrix size and the row's place in it, so
 * results then differ in the last bits between batchings (tested bound in
 * tests/unit/test_model.c).
 *
 * The KV cache belongs to the caller (kvcache.h); the model reads and writes
 * it through struct model_kv and each row's block table.
 */
#ifndef KVS_MODEL_H
#define KVS_MODEL_H

#include "common/compat.h"

struct pool;

struct model_config {
	char name[96];      /* "kv-tiny", "kv-small" or the random: spec */
	int dim, n_layers, n_heads, n_kv_heads, head_dim, ffn, vocab;
	uint64_t seed;
	float rope_theta;
	float perturb_scale; /* 1.0: none; else layer perturb_layer's wo scaled */
	int perturb_layer;
};

/*
 * Parses "kv-tiny", "kv-small" or
 * "random:dim=D,layers=L,heads=H,kv_heads=K,ffn=F,seed=S" (keys optional,
 * defaults from kv-tiny). 0, or -1 with a message in err.
 */
int model_config_parse(const char *spec, struct model_config *cfg, char *err, size_t errlen);

enum model_mm { MODEL_MM_DET, MODEL_MM_BLAS };

/* A weight matrix [k][n] (y = x W), packed in panels of 16 columns. */
struct model_mat {
	int k, n, np;
	float *panels; /* [np][k][16], zero padded; owned */
	float *raw;    /* [k][n] row-major, only with MODEL_MM_BLAS; owned */
};

struct model_layer {
	float *attn_norm, *ffn_norm; /* [dim] */
	struct model_mat wq, wk, wv, wo, w1, w3, w2;
};

/*
 * Low-rank adapters (LoRA-style, served as extra model names the way vLLM
 * serves LoRA). Adapter a adds scale * B (A x) to the wq, wk, wv and wo
 * projections of every layer, scale = alpha / rank; A is [in][rank] and B
 * [rank][out] (y = x W convention), both drawn deterministically from the
 * adapter's seed like the base weights. Each row of a batch names its
 * adapter (model_row.adapter), so one batch mixes base and adapter rows
 * (vLLM's punica-style per-row selection). The delta is always computed by
 * the det kernel on the rows of one adapter gathered together, so it adds no
 * batch dependence: under --matmul det a row is bitwise the same whatever
 * else is in the batch.
 */
#define MODEL_MAX_ADAPTERS 16
#define MODEL_ADAPTER_NAME_MAX 64
#define MODEL_ADAPTER_MAX_RANK 64

enum { MODEL_AP_Q, MODEL_AP_K, MODEL_AP_V, MODEL_AP_O, MODEL_AP_COUNT };

struct model_adapter_config {
	char name[MODEL_ADAPTER_NAME_MAX];
	uint64_t seed;
	int rank;             /* 1..MODEL_ADAPTER_MAX_RANK, default 8 */
	float alpha;          /* scale = alpha / rank; default rank / 4 (scale 0.25) */
};

struct model_adapter {
	struct model_adapter_config cfg;
	float scale;
	uint64_t version;     /* hash of (seed, rank, alpha): the key's adapter version */
	struct model_mat *a, *b; /* [n_layers * MODEL_AP_COUNT] each; owned */
};

struct model {
	struct model_config cfg;
	int kv_dim;          /* n_kv_heads * head_dim */
	int max_pos;         /* positions 0..max_pos-1 are allowed */
	uint8_t id[32];      /* SHA-256 of the canonical spec (shapes, seed, dtype) */
	uint64_t revision;   /* 0, or a hash of the perturbation */
	enum model_mm mm;
	float *tok_emb;      /* [vocab][dim] */
	struct model_layer *layers;
	float *final_norm;
	struct model_mat lm_head;
	float *lm_bias;      /* [vocab] added to the logits */
	float *rope;         /* [max_pos][head_dim/2][2] cos, sin */
	struct model_adapter adapters[MODEL_MAX_ADAPTERS]; /* index i is adapter i+1 */
	int n_adapters;
	struct pool *pool;   /* owned */
	/* scratch, grown on demand, owned */
	float *x, *xn, *q, *k, *v, *att, *h1, *h3, *lx, *lg;
	float *ax, *at, *ay; /* adapter rows gathered: input, rank, output */
	int *arows;          /* rows of the current adapter */
	int scratch_rows;
	float *scores;       /* [threads][tile rows][heads per kv head][max_pos] */
	float *acc;          /* [threads][tile rows][dim] attention accumulators */
	int *tiles, ntiles;  /* attention tiles of the current forward */
};

/*
 * Where the KV cache lives: K row of (block b, layer l, slot s) is at
 * base + b*block_stride + l*layer_stride + s*kv_dim, the V row
 * block_size*kv_dim floats after it.
 */
struct model_kv {
	float *base;
	int block_size;
	size_t block_stride, layer_stride;
};

static inline float *model_kv_k(const struct model_kv *kv, int kv_dim, int block,
				int layer, int slot)
{
	return kv->base + (size_t)block * kv->block_stride + (size_t)layer * kv->layer_stride +
	       (size_t)slot * (size_t)kv_dim;
}
static inline float *model_kv_v(const struct model_kv *kv, int kv_dim, int block,
				int layer, int slot)
{
	return model_kv_k(kv, kv_dim, block, layer, slot) + (size_t)kv->block_size * (size_t)kv_dim;
}

/* One token to run through the model. */
struct model_row {
	int32_t tok;
	int pos;            /* position in its sequence */
	const int *blocks;  /* the sequence's block table, covering 0..pos */
	bool write_kv;      /* false: the KV of pos is already in the cache */
	float *logits;      /* [vocab] to fill, or NULL */
	int adapter;        /* 0: the base model; i: m->adapters[i - 1] */
};

/* Builds the weights. threads >= 1 (own pool; OpenBLAS gets the same). */
void model_init(struct model *m, const struct model_config *cfg, int threads,
		enum model_mm mm, int max_pos);
void model_release(struct model *m);

/*
 * Runs rows through every layer: writes each row's K and V (write_kv) into
 * the cache, attends over positions 0..pos of its own sequence (which must
 * be in the cache by then: earlier steps, or earlier rows of this batch),
 * and fills logits where asked.
 */
void model_forward(struct model *m, const struct model_kv *kv, struct model_row *rows, int nrows);

/*
 * Rotates one cached K row (kv_dim floats, RoPE already applied at its
 * position p) as if it had been rotated at p + shift: the rotations compose.
 * |shift| < max_pos. Used by the rope-shift fault (engine.c).
 */
void model_rope_shift(const struct model *m, float *k, int shift);

/*
 * Parses an --adapter value "NAME=SEED[,rank=R][,alpha=A]". NAME: 1..63
 * characters of [A-Za-z0-9._:/-]; SEED: a non-negative integer; R in
 * 1..MODEL_ADAPTER_MAX_RANK (default 8); A in (0, 10000] (default R/4). 0, or -1 with a
 * message in err.
 */
int model_adapter_parse(const char *spec, struct model_adapter_config *ac, char *err, size_t errlen);
/*
 * Adds an adapter (before any forward); returns its row index (1..).
 * At most MODEL_MAX_ADAPTERS; rank must be <= dim. The caller checks names.
 */
int model_add_adapter(struct model *m, const struct model_adapter_config *ac);
/* The adapter index (1..) of NAME, or 0 when none has it. */
int model_find_adapter(const struct model *m, const char *name);

/* y[M][n] = x[M][k] W, with the model's matmul mode. Exposed for tests. */
void model_matmul(struct model *m, const struct model_mat *w, const float *x, int M, float *y);
/* W[k][n] element, read from the panels. */
static inline float model_mat_at(const struct model_mat *w, int k, int n)
{
	return w->panels[((size_t)(n / 16) * (size_t)w->k + (size_t)k) * 16 + (size_t)(n % 16)];
}
/* Floating-point operations of one forward row at position pos. */
double model_flops_row(const struct model *m, int pos, bool logits);

#endif
