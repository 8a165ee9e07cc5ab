/*
 * kv_connector.h: the contract between kvserve's engine and its KV offload
 * connector (src/serve/offload/), in the style of LMCache's vLLM connector.
 *
 * The engine owns the paged KV cache; the connector owns the tiers (CPU pool,
 * local disk, remote `kvserve cache`). The engine never sees a tier and the
 * connector never sees a block table: it reads and writes KV through a
 * kv_seq_view, one token position at a time per layer.
 *
 * Call order for one request, on the engine's thread:
 *   n = kvc_lookup(c, ns, toks, ntok)      before prefill: how many leading
 *                                          tokens the tiers hold, a multiple
 *                                          of chunk_size, always < ntok (the
 *                                          last prompt token is computed so
 *                                          that its logits exist; the fault
 *                                          full-hit breaks this on purpose)
 *   got = kvc_load(c, ns, toks, n, view)   copy KV of tokens [0, got) into
 *                                          the view; got <= n; got < n means
 *                                          a tier failed or a chunk was bad:
 *                                          the engine computes [got, ntok)
 *   ... engine computes the rest ...
 *   kvc_store(c, ns, toks, ntok, view)     after prefill: store every full
 *                                          chunk not yet stored (and the
 *                                          partial tail when save_unfull_chunk);
 *                                          with the fault uaf-abort, when the
 *                                          request ends
 * A connector may be NULL: the engine then skips all three.
 */
#ifndef KVS_KV_CONNECTOR_H
#define KVS_KV_CONNECTOR_H

#include "common/compat.h"
#include "common/buf.h"

/*
 * Everything besides the tokens that the KV depends on. Every field is part
 * of every chunk key (FAULTS.md K1: a key missing a dimension serves the
 * wrong KV). The engine fills it per request.
 */
struct kv_namespace {
	uint8_t model_id[32];  /* hash of the model spec: shapes, seed, dtype */
	uint64_t revision;     /* weights revision (changes with --perturb) */
	const char *adapter;   /* adapter (LoRA-style) name, "" for the base */
	uint64_t adapter_seed; /* adapter version */
	const char *salt;      /* request's cache_salt, "" when none */
};

/* A window onto one sequence's KV in the engine's paged cache. */
struct kv_seq_view {
	int n_layers;
	int kv_dim;            /* n_kv_heads * head_dim floats per token per layer */
	/* K and V rows of token pos (0-based, in the sequence) in layer l:
	 * float[kv_dim], writable. pos is < the sequence's allocated length. */
	float *(*k_row)(void *ctx, int layer, int pos);
	float *(*v_row)(void *ctx, int layer, int pos);
	void *ctx;
};

/*
 * A connector is an object with operations, so that the engine links without
 * the offload code; src/serve/offload/ creates one from its config.
 */
struct kv_connector;
struct kv_connector_ops {
	int (*lookup)(struct kv_connector *c, const struct kv_namespace *ns,
		      const int32_t *toks, int ntok);
	int (*load)(struct kv_connector *c, const struct kv_namespace *ns,
		    const int32_t *toks, int n, const struct kv_seq_view *view);
	void (*store)(struct kv_connector *c, const struct kv_namespace *ns,
		      const int32_t *toks, int ntok, const struct kv_seq_view *view);
	/* Appends Prometheus text for the connector's metrics. May be NULL. */
	void (*metrics)(struct kv_connector *c, struct kv_buf *out);
	void (*free)(struct kv_connector *c);
};
struct kv_connector {
	const struct kv_connector_ops *ops;
	void *priv;
};

static inline int kvc_lookup(struct kv_connector *c, const struct kv_namespace *ns,
			     const int32_t *toks, int ntok)
{
	return c->ops->lookup(c, ns, toks, ntok);
}
static inline int kvc_load(struct kv_connector *c, const struct kv_namespace *ns,
			   const int32_t *toks, int n, const struct kv_seq_view *view)
{
	return c->ops->load(c, ns, toks, n, view);
}
static inline void kvc_store(struct kv_connector *c, const struct kv_namespace *ns,
			     const int32_t *toks, int ntok, const struct kv_seq_view *view)
{
	c->ops->store(c, ns, toks, ntok, view);
}

#endif
