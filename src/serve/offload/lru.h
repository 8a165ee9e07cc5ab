/*
 * lru.h: a thread-safe key -> bytes store with a byte budget and LRU
 * eviction. Used by the CPU tier, the disk tier's index (entries without
 * data) and the `kvserve cache` server.
 *
 * Readers get a reference (kvo_lru_get) and must kvo_lru_put_ref it; an entry
 * evicted or replaced while referenced is freed at the last release, so a
 * reader never sees its bytes change or vanish.
 */
#ifndef KVO_LRU_H
#define KVO_LRU_H

#include "common/compat.h"
#include "offload/codec.h"

struct kvo_lru;
struct kvo_lru_ent {
	struct kvo_key key;
	uint8_t *data;   /* owned; NULL for size-only entries */
	size_t size;     /* counted against the budget */
	/* private */
	struct kvo_lru_ent *hnext, *prev, *next;
	int refs;
	bool linked;
};

/* Called under the store's lock for each evicted entry (may be NULL). */
typedef void (*kvo_lru_evict_fn)(const struct kvo_lru_ent *e, void *ctx);

struct kvo_lru *kvo_lru_new(uint64_t budget, kvo_lru_evict_fn on_evict, void *ctx);
void kvo_lru_free(struct kvo_lru *c);

/*
 * Inserts key -> data (ownership of data moves in; freed on failure).
 * Replaces an older entry of the same key. Evicts least recently used
 * entries until the budget holds; an entry larger than the budget is refused.
 * 0, or -1 when refused.
 */
int kvo_lru_insert(struct kvo_lru *c, const struct kvo_key *k, uint8_t *data, size_t size);
/* A referenced entry (moved to the front), or NULL. */
struct kvo_lru_ent *kvo_lru_get(struct kvo_lru *c, const struct kvo_key *k);
/* Any entry other than k with data (for the wrong-key fault); referenced. */
struct kvo_lru_ent *kvo_lru_get_other(struct kvo_lru *c, const struct kvo_key *k,
				      uint64_t pick);
void kvo_lru_put_ref(struct kvo_lru *c, struct kvo_lru_ent *e);
bool kvo_lru_contains(struct kvo_lru *c, const struct kvo_key *k);
/* Removes k if present. true when it was. */
bool kvo_lru_remove(struct kvo_lru *c, const struct kvo_key *k);

struct kvo_lru_stats {
	uint64_t used, budget, entries, evictions;
};
void kvo_lru_stats(struct kvo_lru *c, struct kvo_lru_stats *s);

#endif
