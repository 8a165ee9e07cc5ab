#include "common/util.h"

#include <assert.h>
#include <math.h>
#include <cblas.h>
#include <openssl/evp.h>

#include "model.h"
#include "pool.h"
#include "tokenizer.h"
#include "common/banned.h"

#define ATT_TILE 8 /* attention rows per task, see att_task */

typedef float v8 __attribute__((vector_size(32)));
typedef float v8u __attribute__((vector_size(32), aligned(4)));
#define ld8(p) (*(const v8u *)(p))
#define st8(p, v) (*(v8u *)(p) = (v))

/* ---- weights ---- */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct xoshiro {
	uint64_t s[4];
};

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t xo_next(struct xoshiro *x)
{
	uint64_t *s = x->s;
	uint64_t r = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

static void xo_seed(struct xoshiro *x, uint64_t seed, uint64_t stream)
{
	uint64_t sm = seed ^ (stream * 0xd1342543de82ef95ull);
	for (int i = 0; i < 4; i++)
		x->s[i] = splitmix64(&sm);
}

/* Uniform in [-1, 1) times scale, by exact float operations. */
static void fill_uniform(float *dst, size_t n, uint64_t seed, uint64_t stream, float scale)
{
	struct xoshiro x;
	xo_seed(&x, seed, stream);
	for (size_t i = 0; i < n; i++) {
		float u = (float)(xo_next(&x) >> 40) * 0x1p-24f; /* [0,1), exact */
		dst[i] = (u * 2.0f - 1.0f) * scale;
	}
}

static void mat_init(struct model_mat *w, int k, int n, uint64_t seed, uint64_t stream,
		     float scale, bool keep_raw)
{
	float *raw = xmalloc((size_t)k * (size_t)n * sizeof(float));
	fill_uniform(raw, (size_t)k * (size_t)n, seed, stream, scale);
	w->k = k;
	w->n = n;
	w->np = (n + 15) / 16;
	size_t psz = (size_t)w->np * (size_t)k * 16 * sizeof(float);
	w->panels = aligned_alloc(64, psz);
	if (!w->panels)
		kv_die(3, "model: out of memory (%zu bytes)", psz);
	memset(w->panels, 0, psz);
	for (int kk = 0; kk < k; kk++)
		for (int j = 0; j < n; j++)
			w->panels[((size_t)(j / 16) * (size_t)k + (size_t)kk) * 16 + (size_t)(j % 16)] =
				raw[(size_t)kk * (size_t)n + (size_t)j];
	if (keep_raw) {
		w->raw = raw;
	} else {
		w->raw = NULL;
		free(raw);
	}
}

static void mat_release(struct model_mat *w)
{
	free(w->panels);
	free(w->raw);
	memset(w, 0, sizeof(*w));
}

/* ---- specs ---- */

int model_config_parse(const char *spec, struct model_config *cfg, char *err, size_t errlen)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->dim = 128;
	cfg->n_layers = 4;
	cfg->n_heads = 4;
	cfg->n_kv_heads = 2;
	cfg->ffn = 384;
	cfg->seed = 1;
	cfg->rope_theta = 10000.0f;
	cfg->perturb_scale = 1.0f;
	cfg->perturb_layer = -1;
	cfg->vocab = TOK_VOCAB;
	if (!strcmp(spec, "kv-tiny")) {
		/* defaults */
	} else if (!strcmp(spec, "kv-small")) {
		cfg->dim = 512;
		cfg->n_layers = 8;
		cfg->n_heads = 8;
		cfg->n_kv_heads = 4;
		cfg->ffn = 1536;
		cfg->seed = 2;
	} else if (!strncmp(spec, "random:", 7)) {
		const char *p = spec + 7;
		while (*p) {
			const char *eq = strchr(p, '=');
			const char *end = strchr(p, ',');
			if (!end)
				end = p + strlen(p);
			if (!eq || eq > end) {
				snprintf(err, errlen, "model spec '%s': expected key=value at '%s'", spec, p);
				return -1;
			}
			char key[32], val[32];
			size_t kl = (size_t)(eq - p), vl = (size_t)(end - eq - 1);
			if (kl >= sizeof(key) || vl >= sizeof(val)) {
				snprintf(err, errlen, "model spec '%s': field too long", spec);
				return -1;
			}
			memcpy(key, p, kl);
			key[kl] = 0;
			memcpy(val, eq + 1, vl);
			val[vl] = 0;
			int64_t v;
			if (kv_parse_i64(val, 0, INT64_MAX, &v) < 0) {
				snprintf(err, errlen, "model spec '%s': %s: expected a non-negative integer, got '%s'",
					 spec, key, val);
				return -1;
			}
			if (!strcmp(key, "seed")) {
				cfg->seed = (uint64_t)v;
			} else {
				int *dst = !strcmp(key, "dim") ? &cfg->dim :
					   !strcmp(key, "layers") ? &cfg->n_layers :
					   !strcmp(key, "heads") ? &cfg->n_heads :
					   !strcmp(key, "kv_heads") ? &cfg->n_kv_heads :
					   !strcmp(key, "ffn") ? &cfg->ffn : NULL;
				if (!dst) {
					snprintf(err, errlen, "model spec '%s': unknown key '%s' (dim, layers, heads, kv_heads, ffn, seed)",
						 spec, key);
					return -1;
				}
				if (v < 1 || v > 65536) {
					snprintf(err, errlen, "model spec '%s': %s must be in 1..65536", spec, key);
					return -1;
				}
				*dst = (int)v;
			}
			p = *end ? end + 1 : end;
		}
	} else {
		snprintf(err, errlen, "unknown model '%s' (kv-tiny, kv-small, random:dim=..,layers=..,heads=..,kv_heads=..,ffn=..,seed=..)",
			 spec);
		return -1;
	}
	if (cfg->dim % cfg->n_heads || cfg->n_heads % cfg->n_kv_heads ||
	    (cfg->dim / cfg->n_heads) % 8 || cfg->dim / cfg->n_heads > 256 ||
	    cfg->n_heads / cfg->n_kv_heads > 64) {
		snprintf(err, errlen, "model spec '%s': need dim %% heads == 0, heads %% kv_heads == 0 and head_dim %% 8 == 0, head_dim <= 256, heads / kv_heads <= 64",
			 spec);
		return -1;
	}
	cfg->head_dim = cfg->dim / cfg->n_heads;
	snprintf(cfg->name, sizeof(cfg->name), "%s", spec);
	return 0;
}

/* ---- adapters ---- */

static bool adapter_name_ok(const char *s, size_t n)
{
	if (n == 0 || n >= MODEL_ADAPTER_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == '-' || c == ':' || c == '/'))
			return false;
	}
	return true;
}

int model_adapter_parse(const char *spec, struct model_adapter_config *ac, char *err, size_t errlen)
{
	const char *eq = strchr(spec, '=');
	const char *comma;
	char val[64];
	int64_t v;
	bool have_alpha = false;

	memset(ac, 0, sizeof(*ac));
	ac->rank = 8;
	if (!eq) {
		snprintf(err, errlen, "'%s': expected NAME=SEED[,rank=R][,alpha=A]", spec);
		return -1;
	}
	if (!adapter_name_ok(spec, (size_t)(eq - spec))) {
		snprintf(err, errlen, "'%s': the name must be 1..%d characters of A-Z a-z 0-9 . _ - : /",
			 spec, MODEL_ADAPTER_NAME_MAX - 1);
		return -1;
	}
	memcpy(ac->name, spec, (size_t)(eq - spec));
	ac->name[eq - spec] = 0;
	const char *p = eq + 1;
	for (int field = 0; ; field++) {
		comma = strchr(p, ',');
		size_t n = comma ? (size_t)(comma - p) : strlen(p);
		const char *key = field ? p : "seed", *fv = p;
		size_t kl = strlen(key);
		if (field) {
			const char *e2 = memchr(p, '=', n);
			if (!e2) {
				snprintf(err, errlen, "'%s': expected key=value at '%.*s'", spec, (int)n, p);
				return -1;
			}
			kl = (size_t)(e2 - p);
			fv = e2 + 1;
			n -= kl + 1;
		}
		if (n >= sizeof(val)) {
			snprintf(err, errlen, "'%s': value too long", spec);
			return -1;
		}
		memcpy(val, fv, n);
		val[n] = 0;
		if (kl == 4 && !strncmp(key, "seed", 4) && !field) {
			if (kv_parse_i64(val, 0, INT64_MAX, &v) < 0) {
				snprintf(err, errlen, "'%s': seed: expected a non-negative integer, got '%s'", spec, val);
				return -1;
			}
			ac->seed = (uint64_t)v;
		} else if (kl == 4 && !strncmp(key, "rank", 4)) {
			if (kv_parse_i64(val, 1, MODEL_ADAPTER_MAX_RANK, &v) < 0) {
				snprintf(err, errlen, "'%s': rank: expected an integer in 1..%d, got '%s'", spec,
					 MODEL_ADAPTER_MAX_RANK, val);
				return -1;
			}
			ac->rank = (int)v;
		} else if (kl == 5 && !strncmp(key, "alpha", 5)) {
			double d;
			/* > 0 as a float too: 1e-60 would round to 0 */
			if (kv_parse_double(val, &d) < 0 || !(d > 0 && d <= 1e4) || !((float)d > 0)) {
				snprintf(err, errlen, "'%s': alpha: expected a number in (0, 10000], got '%s'", spec, val);
				return -1;
			}
			ac->alpha = (float)d;
			have_alpha = true;
		} else {
			snprintf(err, errlen, "'%s': unknown key '%.*s' (rank, alpha)", spec, (int)kl, key);
			return -1;
		}
		if (!comma)
			break;
		p = comma + 1;
	}
	if (!have_alpha)
		ac->alpha = (float)ac->rank / 4.0f; /* scale 0.25 */
	return 0;
}

#define ADAPTER_STREAM (1ull << 32) /* adapter tensors' streams, apart from the base's */

int model_add_adapter(struct model *m, const struct model_adapter_config *ac)
{
	const struct model_config *c = &m->cfg;
	int D = c->dim, KV = m->kv_dim, r = ac->rank;
	static const int outs[MODEL_AP_COUNT] = { 0, 1, 1, 0 }; /* 1: kv_dim, 0: dim */

	assert(m->n_adapters < MODEL_MAX_ADAPTERS && r >= 1 && r <= D);
	struct model_adapter *ad = &m->adapters[m->n_adapters];
	memset(ad, 0, sizeof(*ad));
	ad->cfg = *ac;
	ad->scale = ac->alpha / (float)r;
	size_t n = (size_t)c->n_layers * MODEL_AP_COUNT;
	ad->a = xcalloc(n, sizeof(*ad->a));
	ad->b = xcalloc(n, sizeof(*ad->b));
	/* A x has unit variance for unit-RMS x, B (A x) too: scale 1 would move
	 * a projection as much as the base weights do. The default 0.25 changes
	 * kv-tiny's greedy text within a few tokens (teacher-forced |dlogprob|
	 * up to ~7) and keeps it as text-like as the base's. */
	float sa = sqrtf(3.0f / (float)D), sb = sqrtf(3.0f / (float)r);
	uint64_t st = ADAPTER_STREAM;
	for (size_t i = 0; i < n; i++) {
		int out = outs[i % MODEL_AP_COUNT] ? KV : D;
		mat_init(&ad->a[i], D, r, ac->seed, st++, sa, false);
		mat_init(&ad->b[i], r, out, ac->seed, st++, sb, false);
	}
	uint64_t sm = ac->seed ^ ((uint64_t)r << 48);
	uint32_t bits;
	memcpy(&bits, &ac->alpha, 4);
	sm ^= (uint64_t)bits << 8;
	ad->version = splitmix64(&sm);
	return ++m->n_adapters;
}

int model_find_adapter(const struct model *m, const char *name)
{
	for (int i = 0; i < m->n_adapters; i++)
		if (!strcmp(m->adapters[i].cfg.name, name))
			return i + 1;
	return 0;
}

/* ---- matmul ---- */

struct mm_job {
	const struct model_mat *w;
	const float *x;
	float *y;
	int M, ngroups;
};

#define MM_ROWS 64   /* rows per task */
#define MM_PANELS 4  /* 16-column panels per task */

/*
 * Each y element is sum over k of x[k]*W[k][n] in order k = 0..K-1,
 * multiply then add, whichever path (4-row tile or single row) computes it.
 */
__attribute__((target_clones("avx2", "default")))
static void mm_task(void *ctx, int task, int tid)
{
	const struct mm_job *j = ctx;
	const struct model_mat *w = j->w;
	int K = w->k, N = w->n;
	int r0 = (task / j->ngroups) * MM_ROWS, p0 = (task % j->ngroups) * MM_PANELS;
	int r1 = KV_MIN(r0 + MM_ROWS, j->M), p1 = KV_MIN(p0 + MM_PANELS, w->np);

	for (int p = p0; p < p1; p++) {
		const float *pan = w->panels + (size_t)p * (size_t)K * 16;
		int ncol = KV_MIN(16, N - p * 16);
		int r = r0;
		for (; r + 4 <= r1; r += 4) {
			const float *x0 = j->x + (size_t)r * (size_t)K;
			const float *x1 = x0 + K, *x2 = x1 + K, *x3 = x2 + K;
			v8 c00 = { 0 }, c01 = { 0 }, c10 = { 0 }, c11 = { 0 };
			v8 c20 = { 0 }, c21 = { 0 }, c30 = { 0 }, c31 = { 0 };
			for (int k = 0; k < K; k++) {
				v8 b0 = ld8(pan + (size_t)k * 16), b1 = ld8(pan + (size_t)k * 16 + 8);
				c00 += b0 * x0[k];
				c01 += b1 * x0[k];
				c10 += b0 * x1[k];
				c11 += b1 * x1[k];
				c20 += b0 * x2[k];
				c21 += b1 * x2[k];
				c30 += b0 * x3[k];
				c31 += b1 * x3[k];
			}
			float t[4][16];
			st8(t[0], c00);
			st8(t[0] + 8, c01);
			st8(t[1], c10);
			st8(t[1] + 8, c11);
			st8(t[2], c20);
			st8(t[2] + 8, c21);
			st8(t[3], c30);
			st8(t[3] + 8, c31);
			for (int i = 0; i < 4; i++)
				memcpy(j->y + (size_t)(r + i) * (size_t)N + (size_t)p * 16, t[i],
				       (size_t)ncol * sizeof(float));
		}
		for (; r < r1; r++) {
			const float *x0 = j->x + (size_t)r * (size_t)K;
			v8 c00 = { 0 }, c01 = { 0 };
			for (int k = 0; k < K; k++) {
				v8 b0 = ld8(pan + (size_t)k * 16), b1 = ld8(pan + (size_t)k * 16 + 8);
				c00 += b0 * x0[k];
				c01 += b1 * x0[k];
			}
			float t[16];
			st8(t, c00);
			st8(t + 8, c01);
			memcpy(j->y + (size_t)r * (size_t)N + (size_t)p * 16, t, (size_t)ncol * sizeof(float));
		}
	}
}

void model_matmul(struct model *m, const struct model_mat *w, const float *x, int M, float *y)
{
	if (M <= 0)
		return;
	if (m->mm == MODEL_MM_BLAS && w->raw) {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, w->n, w->k, 1.0f, x, w->k,
			    w->raw, w->n, 0.0f, y, w->n);
		return;
	}
	struct mm_job j = { w, x, y, M, (w->np + MM_PANELS - 1) / MM_PANELS };
	int nt = ((M + MM_ROWS - 1) / MM_ROWS) * j.ngroups;
	pool_run(m->pool, nt, mm_task, &j);
}

/* ---- init ---- */

void model_init(struct model *m, const struct model_config *cfg, int threads,
		enum model_mm mm, int max_pos)
{
	memset(m, 0, sizeof(*m));
	m->cfg = *cfg;
	m->mm = mm;
	m->max_pos = max_pos;
	m->kv_dim = cfg->n_kv_heads * cfg->head_dim;
	m->pool = pool_create(threads);
	/* OpenBLAS workers spin after each call: keep them out of det mode */
	openblas_set_num_threads(mm == MODEL_MM_BLAS ? threads : 1);

	int D = cfg->dim, F = cfg->ffn, KV = m->kv_dim, V = cfg->vocab;
	uint64_t s = cfg->seed, st = 1;
	bool raw = mm == MODEL_MM_BLAS;
	float sd = sqrtf(3.0f / (float)D), sf = sqrtf(3.0f / (float)F);

	m->tok_emb = xmalloc((size_t)V * (size_t)D * sizeof(float));
	fill_uniform(m->tok_emb, (size_t)V * (size_t)D, s, st++, 1.0f);
	m->layers = xcalloc((size_t)cfg->n_layers, sizeof(*m->layers));
	for (int l = 0; l < cfg->n_layers; l++) {
		struct model_layer *L = &m->layers[l];
		L->attn_norm = xmalloc((size_t)D * sizeof(float));
		L->ffn_norm = xmalloc((size_t)D * sizeof(float));
		for (int i = 0; i < D; i++)
			L->attn_norm[i] = L->ffn_norm[i] = 1.0f;
		mat_init(&L->wq, D, D, s, st++, sd, raw);
		mat_init(&L->wk, D, KV, s, st++, sd, raw);
		mat_init(&L->wv, D, KV, s, st++, sd, raw);
		float so = sd * (l == cfg->perturb_layer ? cfg->perturb_scale : 1.0f);
		mat_init(&L->wo, D, D, s, st++, so, raw);
		mat_init(&L->w1, D, F, s, st++, sd, raw);
		mat_init(&L->w3, D, F, s, st++, sd, raw);
		mat_init(&L->w2, F, D, s, st++, sf, raw);
	}
	m->final_norm = xmalloc((size_t)D * sizeof(float));
	for (int i = 0; i < D; i++)
		m->final_norm[i] = 1.0f;
	/* logits with a standard deviation of about 3: peaked, not one-hot */
	mat_init(&m->lm_head, D, V, s, st++, sd * 3.0f, raw);
	/* a fixed output bias so that text looks like text: printable ASCII
	 * favoured, EOS rarer (random weights otherwise spread over all bytes) */
	m->lm_bias = xcalloc((size_t)V, sizeof(float));
	for (int i = 0; i < V; i++)
		m->lm_bias[i] = (i >= 'a' && i <= 'z') || i == ' ' ? 6.0f :
				(i >= 32 && i < 127) || i == '\n' ? 4.0f :
				i == TOK_EOS ? 1.0f : 0.0f;

	int half = cfg->head_dim / 2;
	m->rope = xmalloc((size_t)max_pos * (size_t)half * 2 * sizeof(float));
	for (int p = 0; p < max_pos; p++)
		for (int i = 0; i < half; i++) {
			double f = pow((double)cfg->rope_theta, -2.0 * i / cfg->head_dim);
			double a = p * f;
			m->rope[((size_t)p * (size_t)half + (size_t)i) * 2] = (float)cos(a);
			m->rope[((size_t)p * (size_t)half + (size_t)i) * 2 + 1] = (float)sin(a);
		}
	int g = cfg->n_heads / cfg->n_kv_heads;
	m->scores = xmalloc((size_t)threads * ATT_TILE * (size_t)g * (size_t)max_pos * sizeof(float));
	m->acc = aligned_alloc(64, (size_t)threads * ATT_TILE * (size_t)cfg->dim * sizeof(float));
	if (!m->acc)
		kv_die(3, "model: out of memory");

	char canon[256];
	int n = snprintf(canon, sizeof(canon),
			 "kvserve-model-v1|dim=%d|layers=%d|heads=%d|kv_heads=%d|ffn=%d|vocab=%d|seed=%llu|rope=%g|dtype=fp32",
			 D, cfg->n_layers, cfg->n_heads, cfg->n_kv_heads, F, V,
			 (unsigned long long)cfg->seed, (double)cfg->rope_theta);
	unsigned int olen = 32;
	EVP_Digest(canon, (size_t)n, m->id, &olen, EVP_sha256(), NULL);
	if (cfg->perturb_layer >= 0 && cfg->perturb_scale != 1.0f) {
		uint64_t sm = (uint64_t)cfg->perturb_layer * 1000003u;
		float ps = cfg->perturb_scale;
		uint32_t bits;
		memcpy(&bits, &ps, 4);
		sm ^= (uint64_t)bits << 20;
		m->revision = splitmix64(&sm) | 1;
	}
}

void model_release(struct model *m)
{
	if (!m->layers && !m->pool)
		return;
	for (int l = 0; l < m->cfg.n_layers; l++) {
		struct model_layer *L = &m->layers[l];
		free(L->attn_norm);
		free(L->ffn_norm);
		mat_release(&L->wq);
		mat_release(&L->wk);
		mat_release(&L->wv);
		mat_release(&L->wo);
		mat_release(&L->w1);
		mat_release(&L->w3);
		mat_release(&L->w2);
	}
	free(m->layers);
	for (int i = 0; i < m->n_adapters; i++) {
		struct model_adapter *ad = &m->adapters[i];
		for (int k = 0; k < m->cfg.n_layers * MODEL_AP_COUNT; k++) {
			mat_release(&ad->a[k]);
			mat_release(&ad->b[k]);
		}
		free(ad->a);
		free(ad->b);
	}
	mat_release(&m->lm_head);
	free(m->tok_emb);
	free(m->final_norm);
	free(m->lm_bias);
	free(m->rope);
	free(m->scores);
	free(m->acc);
	free(m->tiles);
	free(m->x);
	free(m->xn);
	free(m->q);
	free(m->k);
	free(m->v);
	free(m->att);
	free(m->h1);
	free(m->h3);
	free(m->lx);
	free(m->lg);
	free(m->ax);
	free(m->at);
	free(m->ay);
	free(m->arows);
	pool_free(m->pool);
	memset(m, 0, sizeof(*m));
}

static void grow_scratch(struct model *m, int rows)
{
	if (rows <= m->scratch_rows)
		return;
	size_t r = (size_t)rows, D = (size_t)m->cfg.dim, KV = (size_t)m->kv_dim;
	size_t F = (size_t)m->cfg.ffn, V = (size_t)m->cfg.vocab;
	m->x = xrealloc(m->x, r * D * sizeof(float));
	m->xn = xrealloc(m->xn, r * D * sizeof(float));
	m->q = xrealloc(m->q, r * D * sizeof(float));
	m->k = xrealloc(m->k, r * KV * sizeof(float));
	m->v = xrealloc(m->v, r * KV * sizeof(float));
	m->att = xrealloc(m->att, r * D * sizeof(float));
	m->h1 = xrealloc(m->h1, r * F * sizeof(float));
	m->h3 = xrealloc(m->h3, r * F * sizeof(float));
	m->lx = xrealloc(m->lx, r * D * sizeof(float));
	m->lg = xrealloc(m->lg, r * V * sizeof(float));
	m->tiles = xrealloc(m->tiles, (r + 1) * sizeof(int));
	m->ax = xrealloc(m->ax, r * D * sizeof(float));
	m->at = xrealloc(m->at, r * MODEL_ADAPTER_MAX_RANK * sizeof(float));
	m->ay = xrealloc(m->ay, r * D * sizeof(float));
	m->arows = xrealloc(m->arows, r * sizeof(int));
	m->scratch_rows = rows;
}

/* ---- layers ---- */

static void rmsnorm(float *out, const float *x, const float *w, int n)
{
	float ss = 0.0f;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	float s = 1.0f / sqrtf(ss / (float)n + 1e-5f);
	for (int i = 0; i < n; i++)
		out[i] = x[i] * s * w[i];
}

static void rope(const struct model *m, float *x, int nheads, int pos)
{
	int hd = m->cfg.head_dim, half = hd / 2;
	const float *cs = m->rope + (size_t)pos * (size_t)half * 2;
	for (int h = 0; h < nheads; h++) {
		float *v = x + (size_t)h * (size_t)hd;
		for (int i = 0; i < half; i++) {
			float c = cs[2 * i], s = cs[2 * i + 1];
			float a = v[2 * i], b = v[2 * i + 1];
			v[2 * i] = a * c - b * s;
			v[2 * i + 1] = a * s + b * c;
		}
	}
}

void model_rope_shift(const struct model *m, float *k, int shift)
{
	int hd = m->cfg.head_dim, half = hd / 2, a = shift < 0 ? -shift : shift;
	assert(a < m->max_pos);
	const float *cs = m->rope + (size_t)a * (size_t)half * 2;
	for (int h = 0; h < m->cfg.n_kv_heads; h++) {
		float *v = k + (size_t)h * (size_t)hd;
		for (int i = 0; i < half; i++) {
			float c = cs[2 * i], s = shift < 0 ? -cs[2 * i + 1] : cs[2 * i + 1];
			float x = v[2 * i], y = v[2 * i + 1];
			v[2 * i] = x * c - y * s;
			v[2 * i + 1] = x * s + y * c;
		}
	}
}

struct att_job {
	struct model *m;
	const struct model_kv *kv;
	const struct model_row *rows;
	const int *tiles;   /* first row of each tile, then nrows */
	int layer;
};

/*
 * Attention runs on tiles of up to ATT_TILE rows of one sequence at
 * consecutive positions (a prefill chunk), so that each K and V row read
 * from the cache serves every row of the tile. Every score and every output
 * element is still computed by the same operations in the same order as for
 * a row alone.
 */


/* Fixed-order dot product of two head vectors (n % 8 == 0). */
static inline __attribute__((always_inline)) float dot_hd(const float *a, const float *b, int n)
{
	v8 acc = ld8(a) * ld8(b);
	for (int i = 8; i < n; i += 8)
		acc += ld8(a + i) * ld8(b + i);
	return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

typedef int v8i __attribute__((vector_size(32)));

/* Two-vector lane shuffle with constant indices (GCC and clang spell it differently). */
#if defined(__clang__)
#define SHUF8(a, b, ...) __builtin_shufflevector((a), (b), __VA_ARGS__)
#else
#define SHUF8(a, b, ...) __builtin_shuffle((a), (b), (v8i){ __VA_ARGS__ })
#endif

/*
 * Eight dot products at once, each summed by exactly the tree of dot_hd:
 * ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)) over the lanes of its accumulator,
 * so a score is bitwise the same whichever of the two computed it.
 */
static inline __attribute__((always_inline)) void dot8_hd(const float *q, const float *k, size_t kstride,
							   int n, float *out)
{
	v8 a[8];
	for (int j = 0; j < 8; j++) {
		const float *kj = k + (size_t)j * kstride;
		v8 acc = ld8(q) * ld8(kj);
		for (int i = 8; i < n; i += 8)
			acc += ld8(q + i) * ld8(kj + i);
		a[j] = acc;
	}
	v8 u[4], w[2];
	for (int j = 0; j < 4; j++)
		u[j] = SHUF8(a[2 * j], a[2 * j + 1], 0, 1, 2, 3, 8, 9, 10, 11) +
		       SHUF8(a[2 * j], a[2 * j + 1], 4, 5, 6, 7, 12, 13, 14, 15);
	for (int j = 0; j < 2; j++)
		w[j] = SHUF8(u[2 * j], u[2 * j + 1], 0, 1, 4, 5, 8, 9, 12, 13) +
		       SHUF8(u[2 * j], u[2 * j + 1], 2, 3, 6, 7, 10, 11, 14, 15);
	st8(out, SHUF8(w[0], w[1], 0, 2, 4, 6, 8, 10, 12, 14) + SHUF8(w[0], w[1], 1, 3, 5, 7, 9, 11, 13, 15));
}

/*
 * exp(x) for x <= 0 by exact float operations only (x = n ln2 + r, a
 * degree-6 polynomial for e^r, 2^n from the exponent bits): the same bits on
 * every machine, unlike libm's expf, and eight lanes at a time. Relative
 * error about 2e-7; x below -87 gives exp(-87).
 */
static inline __attribute__((always_inline)) void exp8_sub(float *dst, float mx)
{
	v8 x = ld8(dst) - mx;
	const v8 lo = (v8){ 0 } - 87.0f;
	v8i m = x < lo, xi, loi;
	memcpy(&xi, &x, sizeof(x));
	memcpy(&loi, &lo, sizeof(lo));
	xi = (xi & ~m) | (loi & m);
	memcpy(&x, &xi, sizeof(x));
	v8 t = x * 1.44269504088896341f + 0.5f;
	v8i ti = __builtin_convertvector(t, v8i);
	v8 fn = __builtin_convertvector(ti, v8);
	fn += __builtin_convertvector(fn > t, v8); /* floor: -1 where truncation went up */
	v8 r = x - fn * 0.693359375f;
	r = r - fn * -2.12194440e-4f;
	v8 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * (r * r) + r + 1.0f;
	v8i bits = (__builtin_convertvector(fn, v8i) + 127) << 23;
	v8 scale;
	memcpy(&scale, &bits, sizeof(scale));
	st8(dst, p * scale);
}

#define MAX_HD_VEC 32 /* head_dim <= 256 */

/* One task: one tile of rows, one kv head and the query heads that share it. */
__attribute__((target_clones("avx2", "default")))
static void att_task(void *ctx, int task, int tid)
{
	const struct att_job *j = ctx;
	struct model *m = j->m;
	const struct model_config *c = &m->cfg;
	int nkv = c->n_kv_heads, hd = c->head_dim, g = c->n_heads / nkv, nv = hd / 8;
	int tile = task / nkv, kh = task % nkv, bs = j->kv->block_size;
	int r0 = j->tiles[tile], nr = j->tiles[tile + 1] - r0;
	size_t mp = (size_t)m->max_pos, kvd = (size_t)m->kv_dim;
	float *sc = m->scores + (size_t)tid * (size_t)ATT_TILE * (size_t)g * mp;
	v8 *acc = (v8 *)(void *)(m->acc + (size_t)tid * (size_t)ATT_TILE * (size_t)c->dim);
	const int *blocks = j->rows[r0].blocks;
	int nmax = j->rows[r0 + nr - 1].pos + 1;
	float scale = 1.0f / sqrtf((float)hd);

	/* scores: sc[(r * g + h) * mp + key] */
	for (int b = 0; b * bs < nmax; b++) {
		int blk = blocks[b];
		const float *kr = model_kv_k(j->kv, m->kv_dim, blk, j->layer, 0) + (size_t)kh * (size_t)hd;
		for (int r = 0; r < nr; r++) {
			const struct model_row *row = &j->rows[r0 + r];
			int n = row->pos + 1, ns = KV_MIN(bs, n - b * bs), s = 0;
			if (ns <= 0)
				continue;
			const float *q = m->q + (size_t)(r0 + r) * (size_t)c->dim + (size_t)kh * (size_t)g * (size_t)hd;
			for (int h = 0; h < g; h++) {
				float *dst = sc + (size_t)(r * g + h) * mp + (size_t)b * (size_t)bs;
				const float *qh = q + (size_t)h * (size_t)hd;
				for (s = 0; s + 8 <= ns; s += 8) {
					dot8_hd(qh, kr + (size_t)s * kvd, kvd, hd, dst + s);
					st8(dst + s, ld8(dst + s) * scale);
				}
				for (; s < ns; s++)
					dst[s] = dot_hd(qh, kr + (size_t)s * kvd, hd) * scale;
			}
		}
	}
	/* softmax of each row and head over its keys 0..pos; the 1/sum is
	 * applied to the outputs. Sums run in 8 lanes by key index mod 8, then
	 * a fixed tree: the same order for a row whatever the tile. */
	float inv[ATT_TILE * 64];
	for (int r = 0; r < nr; r++) {
		int n = j->rows[r0 + r].pos + 1, n8 = n / 8 * 8;
		for (int h = 0; h < g; h++) {
			float *sp = sc + (size_t)(r * g + h) * mp;
			float mx = sp[0];
			if (n8) {
				v8 vm = ld8(sp);
				for (int k = 8; k < n8; k += 8) {
					v8 x = ld8(sp + k);
					v8i gt = x > vm, xi, mi;
					memcpy(&xi, &x, sizeof(x));
					memcpy(&mi, &vm, sizeof(vm));
					mi = (mi & ~gt) | (xi & gt);
					memcpy(&vm, &mi, sizeof(vm));
				}
				for (int i = 0; i < 8; i++)
					mx = vm[i] > mx ? vm[i] : mx;
			}
			for (int i = n8; i < n; i++)
				mx = sp[i] > mx ? sp[i] : mx;
			int k = 0;
			v8 vs = { 0 };
			for (; k + 8 <= n; k += 8) {
				exp8_sub(sp + k, mx);
				vs += ld8(sp + k);
			}
			if (k < n) {
				float tail[8] = { 0 };
				memcpy(tail, sp + k, (size_t)(n - k) * sizeof(float));
				exp8_sub(tail, mx);
				memset(tail + (n - k), 0, (size_t)(8 - (n - k)) * sizeof(float));
				memcpy(sp + k, tail, (size_t)(n - k) * sizeof(float));
				vs += ld8(tail);
			}
			float sum = ((vs[0] + vs[4]) + (vs[2] + vs[6])) + ((vs[1] + vs[5]) + (vs[3] + vs[7]));
			inv[r * g + h] = 1.0f / sum;
		}
	}
	/* outputs: per element a sum over keys in order */
	for (int i = 0; i < nr * g * nv; i++)
		acc[i] = (v8){ 0 };
	for (int b = 0; b * bs < nmax; b++) {
		int blk = blocks[b], nsb = KV_MIN(bs, nmax - b * bs);
		const float *vr = model_kv_v(j->kv, m->kv_dim, blk, j->layer, 0) + (size_t)kh * (size_t)hd;
		for (int s = 0; s < nsb; s++) {
			int key = b * bs + s;
			const float *v = vr + (size_t)s * kvd;
			for (int r = 0; r < nr; r++) {
				if (key > j->rows[r0 + r].pos)
					continue;
				for (int h = 0; h < g; h++) {
					float pj = sc[(size_t)(r * g + h) * mp + (size_t)key];
					v8 *a = acc + (size_t)(r * g + h) * (size_t)nv;
					for (int d = 0; d < nv; d++)
						a[d] += ld8(v + 8 * d) * pj;
				}
			}
		}
	}
	for (int r = 0; r < nr; r++) {
		float *out = m->att + (size_t)(r0 + r) * (size_t)c->dim + (size_t)kh * (size_t)g * (size_t)hd;
		for (int h = 0; h < g; h++)
			for (int d = 0; d < nv; d++)
				st8(out + (size_t)h * (size_t)hd + 8 * d,
				    acc[(size_t)(r * g + h) * (size_t)nv + (size_t)d] * inv[r * g + h]);
	}
}

static float silu(float x)
{
	return x / (1.0f + expf(-x));
}

/*
 * y[row] += scale * B (A x[row]) for the rows of each adapter (projection p
 * of layer l; x rows of dim floats, y rows of out floats). The rows of one
 * adapter are gathered so that A and B run once per adapter; the det kernel
 * (their matrices keep no raw copy for sgemm) computes each row alone.
 */
static void adapter_delta(struct model *m, const struct model_row *rows, int nrows, int l, int p,
			  const float *x, float *y, int out)
{
	size_t D = (size_t)m->cfg.dim, O = (size_t)out;
	for (int a = 1; a <= m->n_adapters; a++) {
		const struct model_adapter *ad = &m->adapters[a - 1];
		int n = 0;
		for (int i = 0; i < nrows; i++)
			if (rows[i].adapter == a)
				m->arows[n++] = i;
		if (!n)
			continue;
		for (int i = 0; i < n; i++)
			memcpy(m->ax + (size_t)i * D, x + (size_t)m->arows[i] * D, D * sizeof(float));
		size_t w = (size_t)l * MODEL_AP_COUNT + (size_t)p;
		model_matmul(m, &ad->a[w], m->ax, n, m->at);
		model_matmul(m, &ad->b[w], m->at, n, m->ay);
		for (int i = 0; i < n; i++) {
			float *yr = y + (size_t)m->arows[i] * O;
			const float *d = m->ay + (size_t)i * O;
			for (size_t j = 0; j < O; j++)
				yr[j] += ad->scale * d[j];
		}
	}
}

void model_forward(struct model *m, const struct model_kv *kv, struct model_row *rows, int nrows)
{
	const struct model_config *c = &m->cfg;
	int D = c->dim, KV = m->kv_dim, F = c->ffn;

	if (nrows <= 0)
		return;
	grow_scratch(m, nrows);
	bool any_adapter = false;
	for (int i = 0; i < nrows; i++) {
		assert(rows[i].tok >= 0 && rows[i].tok < c->vocab && rows[i].pos < m->max_pos);
		assert(rows[i].adapter >= 0 && rows[i].adapter <= m->n_adapters);
		any_adapter |= rows[i].adapter > 0;
		memcpy(m->x + (size_t)i * (size_t)D, m->tok_emb + (size_t)rows[i].tok * (size_t)D,
		       (size_t)D * sizeof(float));
	}
	m->ntiles = 0;
	for (int i = 0; i < nrows;) {
		int k = i + 1;
		while (k < nrows && k - i < ATT_TILE && rows[k].blocks == rows[i].blocks &&
		       rows[k].pos == rows[k - 1].pos + 1)
			k++;
		m->tiles[m->ntiles++] = i;
		i = k;
	}
	m->tiles[m->ntiles] = nrows;
	for (int l = 0; l < c->n_layers; l++) {
		struct model_layer *L = &m->layers[l];
		for (int i = 0; i < nrows; i++)
			rmsnorm(m->xn + (size_t)i * (size_t)D, m->x + (size_t)i * (size_t)D, L->attn_norm, D);
		model_matmul(m, &L->wq, m->xn, nrows, m->q);
		model_matmul(m, &L->wk, m->xn, nrows, m->k);
		model_matmul(m, &L->wv, m->xn, nrows, m->v);
		if (any_adapter) {
			adapter_delta(m, rows, nrows, l, MODEL_AP_Q, m->xn, m->q, D);
			adapter_delta(m, rows, nrows, l, MODEL_AP_K, m->xn, m->k, KV);
			adapter_delta(m, rows, nrows, l, MODEL_AP_V, m->xn, m->v, KV);
		}
		for (int i = 0; i < nrows; i++) {
			const struct model_row *r = &rows[i];
			rope(m, m->q + (size_t)i * (size_t)D, c->n_heads, r->pos);
			rope(m, m->k + (size_t)i * (size_t)KV, c->n_kv_heads, r->pos);
			if (!r->write_kv)
				continue;
			int blk = r->blocks[r->pos / kv->block_size], slot = r->pos % kv->block_size;
			memcpy(model_kv_k(kv, KV, blk, l, slot), m->k + (size_t)i * (size_t)KV,
			       (size_t)KV * sizeof(float));
			memcpy(model_kv_v(kv, KV, blk, l, slot), m->v + (size_t)i * (size_t)KV,
			       (size_t)KV * sizeof(float));
		}
		struct att_job aj = { m, kv, rows, m->tiles, l };
		pool_run(m->pool, m->ntiles * c->n_kv_heads, att_task, &aj);
		model_matmul(m, &L->wo, m->att, nrows, m->xn);
		if (any_adapter)
			adapter_delta(m, rows, nrows, l, MODEL_AP_O, m->att, m->xn, D);
		for (size_t i = 0; i < (size_t)nrows * (size_t)D; i++)
			m->x[i] += m->xn[i];
		for (int i = 0; i < nrows; i++)
			rmsnorm(m->xn + (size_t)i * (size_t)D, m->x + (size_t)i * (size_t)D, L->ffn_norm, D);
		model_matmul(m, &L->w1, m->xn, nrows, m->h1);
		model_matmul(m, &L->w3, m->xn, nrows, m->h3);
		for (size_t i = 0; i < (size_t)nrows * (size_t)F; i++)
			m->h1[i] = silu(m->h1[i]) * m->h3[i];
		model_matmul(m, &L->w2, m->h1, nrows, m->xn);
		for (size_t i = 0; i < (size_t)nrows * (size_t)D; i++)
			m->x[i] += m->xn[i];
	}
	int nl = 0;
	for (int i = 0; i < nrows; i++)
		if (rows[i].logits)
			rmsnorm(m->lx + (size_t)nl++ * (size_t)D, m->x + (size_t)i * (size_t)D, m->final_norm, D);
	if (!nl)
		return;
	model_matmul(m, &m->lm_head, m->lx, nl, m->lg);
	for (size_t i = 0; i < (size_t)nl * (size_t)c->vocab; i++)
		m->lg[i] += m->lm_bias[i % (size_t)c->vocab];
	nl = 0;
	for (int i = 0; i < nrows; i++)
		if (rows[i].logits)
			memcpy(rows[i].logits, m->lg + (size_t)nl++ * (size_t)c->vocab,
			       (size_t)c->vocab * sizeof(float));
}

double model_flops_row(const struct model *m, int pos, bool logits)
{
	const struct model_config *c = &m->cfg;
	double D = c->dim, KV = m->kv_dim, F = c->ffn;
	double per_layer = 2 * D * (2 * D + 2 * KV) + 2 * 3 * D * F + 4.0 * (pos + 1) * D;
	return per_layer * c->n_layers + (logits ? 2 * D * c->vocab : 0);
}
