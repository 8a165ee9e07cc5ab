/* Unit tests of src/serve/kvcache: keys, refcounts, LRU eviction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/util.h"
#include "kvcache.h"

static void ns_base(struct kv_namespace *ns)
{
	memset(ns, 0, sizeof(*ns));
	memset(ns->model_id, 0xab, 32);
	ns->revision = 0;
	ns->adapter = "";
	ns->salt = "";
}

static void test_key_dimensions(void **state)
{
	struct kvcache kc;
	struct kv_namespace ns, o;
	int32_t toks[4] = { 1, 2, 3, 4 }, toks2[4] = { 1, 2, 3, 5 };
	uint8_t k0[32], k1[32], parent[32];
	(void)state;
	kvcache_init(&kc, 4, 4, 1, 8, true);
	ns_base(&ns);
	kvcache_key(&kc, NULL, &ns, toks, k0);
	kvcache_key(&kc, NULL, &ns, toks, k1);
	assert_memory_equal(k0, k1, 32);
	kvcache_key(&kc, NULL, &ns, toks2, k1);
	assert_memory_not_equal(k0, k1, 32);
	memset(parent, 1, 32);
	kvcache_key(&kc, parent, &ns, toks, k1);
	assert_memory_not_equal(k0, k1, 32);
	/* each namespace field changes the key, and dropping it makes it equal again */
	for (int d = 0; d < 5; d++) {
		o = ns;
		unsigned dim = 0;
		switch (d) {
		case 0: o.salt = "user-a"; dim = KVC_DIM_SALT; break;
		case 1: o.adapter = "lora1"; dim = KVC_DIM_ADAPTER; break;
		case 2: o.adapter_seed = 7; dim = KVC_DIM_ADAPTER; break;
		case 3: o.revision = 99; dim = KVC_DIM_REVISION; break;
		default: o.model_id[5] ^= 1; dim = KVC_DIM_MODEL; break;
		}
		kc.drop_mask = 0;
		kvcache_key(&kc, NULL, &ns, toks, k0);
		kvcache_key(&kc, NULL, &o, toks, k1);
		assert_memory_not_equal(k0, k1, 32);
		kc.drop_mask = dim;
		kvcache_key(&kc, NULL, &ns, toks, k0);
		kvcache_key(&kc, NULL, &o, toks, k1);
		assert_memory_equal(k0, k1, 32);
	}
	/* fields are length-prefixed: salt "ab"+adapter "" != salt ""+adapter "ab" */
	kc.drop_mask = 0;
	o = ns;
	o.salt = "ab";
	kvcache_key(&kc, NULL, &o, toks, k0);
	o.salt = "";
	o.adapter = "ab";
	kvcache_key(&kc, NULL, &o, toks, k1);
	assert_memory_not_equal(k0, k1, 32);
	/* truncated keys collide on the dropped bits */
	kc.key_bits = 8;
	kvcache_key(&kc, NULL, &ns, toks, k0);
	for (int i = 1; i < 32; i++)
		assert_int_equal(k0[i], 0);
	kvcache_release(&kc);
}

static void test_refcount_lru(void **state)
{
	struct kvcache kc;
	uint8_t key[4][32];
	(void)state;
	kvcache_init(&kc, 4, 2, 1, 8, true);
	for (int i = 0; i < 4; i++)
		memset(key[i], i + 1, 32);
	int b[4];
	for (int i = 0; i < 4; i++) {
		b[i] = kvcache_alloc(&kc);
		assert_true(b[i] >= 0);
	}
	assert_int_equal(kvcache_alloc(&kc), -1);
	assert_int_equal(kvcache_used(&kc), 4);
	for (int i = 0; i < 3; i++)
		kvcache_commit(&kc, b[i], key[i]);
	/* a second commit of a taken key is ignored */
	kvcache_commit(&kc, b[3], key[0]);
	assert_int_equal(kvcache_lookup(&kc, key[0]), b[0]);
	assert_int_equal(kvcache_lookup(&kc, key[3]), -1);
	/* free in order 2, 0, 1, 3: the uncached block 3 is reused first, then LRU: 2, 0, 1 */
	kvcache_put(&kc, b[2]);
	kvcache_put(&kc, b[0]);
	kvcache_put(&kc, b[1]);
	kvcache_put(&kc, b[3]);
	assert_int_equal(kvcache_used(&kc), 0);
	assert_int_equal(kvcache_lookup(&kc, key[1]), b[1]);
	/* a hit takes a reference: the block is not evicted while used */
	kvcache_acquire(&kc, b[0]);
	assert_int_equal(kvcache_alloc(&kc), b[3]);
	assert_int_equal(kvcache_alloc(&kc), b[2]);
	assert_int_equal(kvcache_lookup(&kc, key[2]), -1);
	assert_int_equal(kc.evictions, 1);
	assert_int_equal(kvcache_alloc(&kc), b[1]);
	assert_int_equal(kvcache_alloc(&kc), -1);
	assert_int_equal(kvcache_lookup(&kc, key[0]), b[0]);
	kvcache_put(&kc, b[0]);
	kvcache_reset(&kc);
	assert_int_equal(kvcache_lookup(&kc, key[0]), -1);
	kvcache_release(&kc);

	/* prefix caching off: nothing is ever found */
	kvcache_init(&kc, 2, 2, 1, 8, false);
	int x = kvcache_alloc(&kc);
	kvcache_commit(&kc, x, key[0]);
	assert_int_equal(kvcache_lookup(&kc, key[0]), -1);
	kvcache_put(&kc, x);
	kvcache_release(&kc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_dimensions),
		cmocka_unit_test(test_refcount_lru),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
