#include "common/util.h"

#include <assert.h>
#include <openssl/evp.h>

#include "kvcache.h"
#include "common/banned.h"

size_t kvcache_block_bytes(int block_size, int n_layers, int kv_dim)
{
	return (size_t)block_size * (size_t)n_layers * (size_t)kv_dim * 2 * sizeof(float);
}

static void fl_remove(struct kvcache *kc, int i)
{
	struct kvcache_block *b = &kc->b[i];
	assert(b->in_free);
	if (b->prev >= 0)
		kc->b[b->prev].next = b->next;
	else
		kc->free_head = b->next;
	if (b->next >= 0)
		kc->b[b->next].prev = b->prev;
	else
		kc->free_tail = b->prev;
	b->prev = b->next = -1;
	b->in_free = false;
	kc->n_free--;
}

static void fl_push(struct kvcache *kc, int i, bool front)
{
	struct kvcache_block *b = &kc->b[i];
	assert(!b->in_free);
	b->in_free = true;
	kc->n_free++;
	if (front) {
		b->prev = -1;
		b->next = kc->free_head;
		if (kc->free_head >= 0)
			kc->b[kc->free_head].prev = i;
		else
			kc->free_tail = i;
		kc->free_head = i;
	} else {
		b->next = -1;
		b->prev = kc->free_tail;
		if (kc->free_tail >= 0)
			kc->b[kc->free_tail].next = i;
		else
			kc->free_head = i;
		kc->free_tail = i;
	}
}

void kvcache_init(struct kvcache *kc, int n_blocks, int block_size, int n_layers, int kv_dim,
		  bool prefix_caching)
{
	memset(kc, 0, sizeof(*kc));
	kc->n_blocks = n_blocks;
	kc->block_size = block_size;
	kc->n_layers = n_layers;
	kc->kv_dim = kv_dim;
	kc->prefix_caching = prefix_caching;
	kc->key_bits = 256;
	size_t bb = kvcache_block_bytes(block_size, n_layers, kv_dim);
	size_t total = bb * (size_t)n_blocks;
	kc->kv.base = aligned_alloc(64, (total + 63) / 64 * 64);
	if (!kc->kv.base)
		kv_die(3, "kvcache: cannot allocate %zu bytes for %d blocks", total, n_blocks);
	memset(kc->kv.base, 0, total);
	kc->kv.block_size = block_size;
	kc->kv.block_stride = bb / sizeof(float);
	kc->kv.layer_stride = (size_t)block_size * (size_t)kv_dim * 2;
	kc->b = xcalloc((size_t)n_blocks, sizeof(*kc->b));
	kc->free_head = kc->free_tail = -1;
	for (int i = 0; i < n_blocks; i++) {
		kc->b[i].prev = kc->b[i].next = -1;
		kc->b[i].ht_next = -1;
		fl_push(kc, i, false);
	}
	kc->ht_size = 1;
	while (kc->ht_size < 2 * n_blocks)
		kc->ht_size *= 2;
	kc->ht = xmalloc((size_t)kc->ht_size * sizeof(int));
	for (int i = 0; i < kc->ht_size; i++)
		kc->ht[i] = -1;
}

void kvcache_release(struct kvcache *kc)
{
	free(kc->kv.base);
	free(kc->b);
	free(kc->ht);
	memset(kc, 0, sizeof(*kc));
}

static void put_field(EVP_MD_CTX *ctx, char tag, const void *p, uint32_t len)
{
	uint8_t hdr[5] = { (uint8_t)tag, (uint8_t)len, (uint8_t)(len >> 8), (uint8_t)(len >> 16),
			   (uint8_t)(len >> 24) };
	EVP_DigestUpdate(ctx, hdr, sizeof(hdr));
	if (len)
		EVP_DigestUpdate(ctx, p, len);
}

static void put_u64(EVP_MD_CTX *ctx, char tag, uint64_t v)
{
	uint8_t b[8];
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	put_field(ctx, tag, b, 8);
}

void kvcache_key(const struct kvcache *kc, const uint8_t *parent, const struct kv_namespace *ns,
		 const int32_t *toks, uint8_t out[32])
{
	static const char domain[] = "kvserve-block-v1";
	unsigned drop = kc->drop_mask;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int olen = 32;

	if (!ctx)
		kv_die(3, "kvcache: out of memory");
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	put_field(ctx, 'D', domain, sizeof(domain) - 1);
	if (!(drop & KVC_DIM_PARENT))
		put_field(ctx, 'P', parent, parent ? 32 : 0);
	if (!(drop & KVC_DIM_MODEL))
		put_field(ctx, 'M', ns->model_id, 32);
	if (!(drop & KVC_DIM_REVISION))
		put_u64(ctx, 'R', ns->revision);
	if (!(drop & KVC_DIM_ADAPTER)) {
		const char *a = ns->adapter ? ns->adapter : "";
		put_field(ctx, 'A', a, (uint32_t)strlen(a));
		put_u64(ctx, 'a', ns->adapter_seed);
	}
	if (!(drop & KVC_DIM_SALT)) {
		const char *s = ns->salt ? ns->salt : "";
		put_field(ctx, 'S', s, (uint32_t)strlen(s));
	}
	if (!(drop & KVC_DIM_ENCODING))
		put_field(ctx, 'E', "fp32", 4);
	uint8_t tb[4 * 64];
	int n = kc->block_size;
	put_u64(ctx, 'N', (uint64_t)n);
	for (int i = 0; i < n;) {
		int m = KV_MIN(n - i, 64);
		for (int j = 0; j < m; j++)
			for (int k = 0; k < 4; k++)
				tb[4 * j + k] = (uint8_t)((uint32_t)toks[i + j] >> (8 * k));
		EVP_DigestUpdate(ctx, tb, (size_t)m * 4);
		i += m;
	}
	EVP_DigestFinal_ex(ctx, out, &olen);
	EVP_MD_CTX_free(ctx);
	if (kc->key_bits < 256) {
		int bits = kc->key_bits < 0 ? 0 : kc->key_bits;
		for (int i = 0; i < 32; i++) {
			int keep = bits - 8 * i;
			if (keep <= 0)
				out[i] = 0;
			else if (keep < 8)
				out[i] &= (uint8_t)(0xff << (8 - keep));
		}
	}
}

static unsigned bucket(const struct kvcache *kc, const uint8_t key[32])
{
	uint32_t h;
	memcpy(&h, key, 4);
	/* keys may be truncated to their first bits: mix those */
	h ^= (uint32_t)key[0] * 0x9e3779b1u;
	return h & (unsigned)(kc->ht_size - 1);
}

int kvcache_lookup(const struct kvcache *kc, const uint8_t key[32])
{
	if (!kc->prefix_caching)
		return -1;
	for (int i = kc->ht[bucket(kc, key)]; i >= 0; i = kc->b[i].ht_next)
		if (!memcmp(kc->b[i].key, key, 32))
			return i;
	return -1;
}

static void ht_remove(struct kvcache *kc, int blk)
{
	int *pp = &kc->ht[bucket(kc, kc->b[blk].key)];
	while (*pp >= 0 && *pp != blk)
		pp = &kc->b[*pp].ht_next;
	assert(*pp == blk);
	*pp = kc->b[blk].ht_next;
	kc->b[blk].ht_next = -1;
	kc->b[blk].cached = false;
}

void kvcache_acquire(struct kvcache *kc, int blk)
{
	if (kc->b[blk].ref++ == 0)
		fl_remove(kc, blk);
}

int kvcache_alloc(struct kvcache *kc)
{
	int blk = kc->free_head;
	if (blk < 0)
		return -1;
	fl_remove(kc, blk);
	if (kc->b[blk].cached) {
		ht_remove(kc, blk);
		kc->evictions++;
	}
	kc->b[blk].ref = 1;
	kc->b[blk].gen++;
	return blk;
}

void kvcache_commit(struct kvcache *kc, int blk, const uint8_t key[32])
{
	if (!kc->prefix_caching || kc->b[blk].cached || kvcache_lookup(kc, key) >= 0)
		return;
	struct kvcache_block *b = &kc->b[blk];
	memcpy(b->key, key, 32);
	b->cached = true;
	unsigned h = bucket(kc, key);
	b->ht_next = kc->ht[h];
	kc->ht[h] = blk;
}

void kvcache_put(struct kvcache *kc, int blk)
{
	assert(kc->b[blk].ref > 0);
	if (--kc->b[blk].ref == 0)
		fl_push(kc, blk, !kc->b[blk].cached);
}

void kvcache_reset(struct kvcache *kc)
{
	for (int i = 0; i < kc->n_blocks; i++)
		if (kc->b[i].cached && kc->b[i].ref == 0) {
			ht_remove(kc, i);
			fl_remove(kc, i);
			fl_push(kc, i, true);
		}
}
