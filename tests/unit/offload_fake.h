/* offload_fake.h: a kv_seq_view over plain arrays, for the offload tests. */
#ifndef OFFLOAD_FAKE_H
#define OFFLOAD_FAKE_H

#include "common/util.h"

#include <math.h>
#include <unistd.h>
#include "kv_connector.h"

struct fake_kv {
	int n_layers, kv_dim, cap;
	float *k, *v; /* [layer][pos][dim] */
	struct kv_seq_view view;
};

static float *fake_k_row(void *ctx, int l, int p)
{
	struct fake_kv *f = ctx;
	return f->k + ((size_t)l * f->cap + (size_t)p) * f->kv_dim;
}

static float *fake_v_row(void *ctx, int l, int p)
{
	struct fake_kv *f = ctx;
	return f->v + ((size_t)l * f->cap + (size_t)p) * f->kv_dim;
}

static KV_UNUSED void fake_init(struct fake_kv *f, int n_layers, int kv_dim, int cap)
{
	size_t n = (size_t)n_layers * cap * kv_dim;
	f->n_layers = n_layers;
	f->kv_dim = kv_dim;
	f->cap = cap;
	f->k = xcalloc(n, sizeof(float));
	f->v = xcalloc(n, sizeof(float));
	f->view.n_layers = n_layers;
	f->view.kv_dim = kv_dim;
	f->view.k_row = fake_k_row;
	f->view.v_row = fake_v_row;
	f->view.ctx = f;
}

/* Deterministic KV that depends on the tokens before each position, like a
 * real model's (so different prompts have different KV). */
static KV_UNUSED void fake_fill(struct fake_kv *f, const int32_t *toks, int n, uint32_t seed)
{
	uint32_t h = seed * 2654435761u + 1;
	for (int p = 0; p < n; p++) {
		h = (h ^ (uint32_t)toks[p]) * 16777619u;
		for (int l = 0; l < f->n_layers; l++)
			for (int d = 0; d < f->kv_dim; d++) {
				uint32_t x = h ^ (uint32_t)(l * 7919 + d * 104729);
				x ^= x >> 13;
				x *= 0x5bd1e995u;
				x ^= x >> 15;
				fake_k_row(f, l, p)[d] = ((float)(x & 0xffff) / 32768.0f - 1.0f) * 3.0f;
				fake_v_row(f, l, p)[d] = ((float)((x >> 16) & 0xffff) / 32768.0f - 1.0f);
			}
	}
}

static KV_UNUSED void fake_zero(struct fake_kv *f)
{
	size_t n = (size_t)f->n_layers * f->cap * f->kv_dim;
	memset(f->k, 0, n * sizeof(float));
	memset(f->v, 0, n * sizeof(float));
}

/* Max |a - b| over positions [0, n). */
static KV_UNUSED double fake_maxdiff(const struct fake_kv *a, const struct fake_kv *b, int n)
{
	double m = 0;
	for (int l = 0; l < a->n_layers; l++)
		for (int p = 0; p < n; p++)
			for (int d = 0; d < a->kv_dim; d++) {
				size_t i = ((size_t)l * a->cap + (size_t)p) * a->kv_dim + (size_t)d;
				double x = (double)a->k[i] - b->k[i], y = (double)a->v[i] - b->v[i];
				if (x != x || y != y)
					return 1e300;
				m = fmax(m, fmax(fabs(x), fabs(y)));
			}
	return m;
}

static KV_UNUSED bool fake_equal(const struct fake_kv *a, const struct fake_kv *b, int n)
{
	for (int l = 0; l < a->n_layers; l++) {
		size_t off = (size_t)l * a->cap * a->kv_dim, len = (size_t)n * a->kv_dim * 4;
		if (memcmp(a->k + off, b->k + off, len) || memcmp(a->v + off, b->v + off, len))
			return false;
	}
	return true;
}

static KV_UNUSED void fake_release(struct fake_kv *f)
{
	free(f->k);
	free(f->v);
}

static KV_UNUSED void fake_ns(struct kv_namespace *ns)
{
	memset(ns, 0, sizeof(*ns));
	for (int i = 0; i < 32; i++)
		ns->model_id[i] = (uint8_t)(i * 3 + 1);
	ns->revision = 1;
	ns->adapter = "";
	ns->salt = "";
}

static KV_UNUSED char *fake_tmpdir(void)
{
	char tmpl[] = "/tmp/kvo-test-XXXXXX";
	char *d = mkdtemp(tmpl);
	if (!d)
		abort();
	return xstrdup(d);
}

static KV_UNUSED void fake_rmdir(const char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(cmd);
}

#endif
