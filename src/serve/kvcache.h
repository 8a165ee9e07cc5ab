/*
 * kvcache.h: the paged KV cache with automatic prefix caching.
 *
 * Memory: n_blocks blocks of block_size tokens; per block and layer the K
 * rows then the V rows of its tokens (struct model_kv describes it).
 *
 * Prefix caching: a FULL block gets a key, the SHA-256 hash chain
 *   key(i) = H("kvserve-block-v1", key(i-1), model id, revision, adapter,
 *              adapter seed, salt, encoding, tokens of block i)
 * with every field length-prefixed and tagged, so that a field can never
 * run into the next one. A block whose key is in the table is "cached":
 * another sequence with the same key reuses it (refcount). Blocks with no
 * reference sit in the free list, uncached ones first, cached ones in LRU
 * order behind them; allocation takes the head and evicts a cached block
 * (drops its key) only when no uncached one is free.
 *
 * For fault injection (issue 9, FAULTS.md K1/K2) the key can drop a
 * dimension (drop_mask of enum kvcache_dim) or keep only key_bits bits.
 * Defaults keep everything.
 *
 * Single-threaded: the engine thread owns it.
 */
#ifndef KVS_KVCACHE_H
#define KVS_KVCACHE_H

#include "common/compat.h"
#include "kv_connector.h"
#include "model.h"

enum kvcache_dim {
	KVC_DIM_MODEL = 1u << 0,
	KVC_DIM_REVISION = 1u << 1,
	KVC_DIM_ADAPTER = 1u << 2,
	KVC_DIM_SALT = 1u << 3,
	KVC_DIM_ENCODING = 1u << 4,
	KVC_DIM_PARENT = 1u << 5,
};

struct kvcache_block {
	int ref;
	bool cached;
	uint8_t key[32];
	int prev, next;   /* free list links, -1 at the ends */
	int ht_next;      /* hash-table chain */
	bool in_free;
	uint32_t gen;     /* times handed out by kvcache_alloc (new contents follow) */
};

struct kvcache {
	int n_blocks, block_size, n_layers, kv_dim;
	bool prefix_caching;
	unsigned drop_mask;   /* kvcache_dim bits left out of keys */
	int key_bits;         /* 256, or fewer to weaken keys */
	struct model_kv kv;   /* base is owned */
	struct kvcache_block *b;
	int free_head, free_tail, n_free;
	int *ht;
	int ht_size;
	uint64_t evictions;
};

/* Bytes of one block (all layers, K and V). */
size_t kvcache_block_bytes(int block_size, int n_layers, int kv_dim);
void kvcache_init(struct kvcache *kc, int n_blocks, int block_size, int n_layers, int kv_dim,
		  bool prefix_caching);
void kvcache_release(struct kvcache *kc);

/* Key of one full block of block_size tokens; parent NULL for the first. */
void kvcache_key(const struct kvcache *kc, const uint8_t *parent, const struct kv_namespace *ns,
		 const int32_t *toks, uint8_t out[32]);

/* The cached block with this key, or -1. */
int kvcache_lookup(const struct kvcache *kc, const uint8_t key[32]);
/* Takes a reference on a block (it leaves the free list). */
void kvcache_acquire(struct kvcache *kc, int blk);
/* A block with one reference and no key, or -1 when none is free. */
int kvcache_alloc(struct kvcache *kc);
/* Publishes a full, computed block under key (no-op if the key is taken or caching is off). */
void kvcache_commit(struct kvcache *kc, int blk, const uint8_t key[32]);
/* Drops a reference; at zero the block goes to the free list. */
void kvcache_put(struct kvcache *kc, int blk);
/* Forgets every cached block that no one references. */
void kvcache_reset(struct kvcache *kc);
/* Blocks referenced by a sequence. */
static inline int kvcache_used(const struct kvcache *kc)
{
	return kc->n_blocks - kc->n_free;
}

#endif
