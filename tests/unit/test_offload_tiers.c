/* Unit tests of the offload tiers: LRU pool (budget, order, references,
 * threads) and the disk tier (atomic files, restart, corruption, budget). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include "offload_fake.h"
#include "offload/disk.h"
#include "offload/lru.h"

static struct kvo_key keyn(int n)
{
	struct kvo_key k;
	memset(&k, 0, sizeof(k));
	memcpy(k.b, &n, sizeof(n));
	k.b[31] = 0x5a;
	return k;
}

static uint8_t *bytes(size_t n, int fill)
{
	uint8_t *p = xmalloc(n);
	memset(p, fill, n);
	return p;
}

static void test_lru_budget(void **state)
{
	struct kvo_lru *c = kvo_lru_new(1000, NULL, NULL);
	struct kvo_lru_stats st;
	struct kvo_lru_ent *e;
	struct kvo_key k;
	(void)state;
	for (int i = 0; i < 10; i++) {
		k = keyn(i);
		assert_int_equal(kvo_lru_insert(c, &k, bytes(300, i), 300), 0);
		kvo_lru_stats(c, &st);
		assert_true(st.used <= 1000);
		if (i == 2) { /* touch 0 so that 1 is the oldest */
			k = keyn(0);
			kvo_lru_put_ref(c, kvo_lru_get(c, &k));
		}
		if (i == 3) {
			k = keyn(1);
			assert_false(kvo_lru_contains(c, &k));
			k = keyn(0);
			assert_true(kvo_lru_contains(c, &k));
		}
	}
	kvo_lru_stats(c, &st);
	assert_int_equal(st.entries, 3);
	assert_int_equal(st.used, 900);
	assert_int_equal(st.evictions, 7);
	/* larger than the budget: refused */
	k = keyn(99);
	assert_int_equal(kvo_lru_insert(c, &k, bytes(1001, 1), 1001), -1);
	/* a referenced entry survives eviction until released */
	k = keyn(9);
	e = kvo_lru_get(c, &k);
	assert_non_null(e);
	for (int i = 20; i < 25; i++) {
		struct kvo_key k2 = keyn(i);
		kvo_lru_insert(c, &k2, bytes(400, i), 400);
	}
	assert_false(kvo_lru_contains(c, &k));
	assert_int_equal(e->data[0], 9);
	assert_int_equal(e->data[299], 9);
	kvo_lru_put_ref(c, e);
	/* replace keeps one entry */
	k = keyn(24);
	kvo_lru_insert(c, &k, bytes(10, 7), 10);
	e = kvo_lru_get(c, &k);
	assert_int_equal(e->size, 10);
	kvo_lru_put_ref(c, e);
	/* get_other never returns the key itself */
	for (uint64_t p = 0; p < 10; p++) {
		e = kvo_lru_get_other(c, &k, p);
		assert_non_null(e);
		assert_memory_not_equal(e->key.b, k.b, 32);
		kvo_lru_put_ref(c, e);
	}
	kvo_lru_free(c);
}

struct thr {
	struct kvo_lru *c;
	int id;
};

static void *lru_worker(void *p)
{
	struct thr *t = p;
	for (int i = 0; i < 3000; i++) {
		struct kvo_key k = keyn(i % 37);
		struct kvo_lru_ent *e;
		if ((i + t->id) % 3 == 0) {
			kvo_lru_insert(t->c, &k, bytes(64, i % 37), 64);
		} else if ((e = kvo_lru_get(t->c, &k))) {
			/* the bytes of a referenced entry never change */
			for (int j = 0; j < 64; j++)
				if (e->data[j] != (uint8_t)(i % 37))
					abort();
			kvo_lru_put_ref(t->c, e);
		}
	}
	return NULL;
}

static void test_lru_threads(void **state)
{
	struct kvo_lru *c = kvo_lru_new(64 * 10, NULL, NULL);
	pthread_t th[4];
	struct thr a[4];
	struct kvo_lru_stats st;
	(void)state;
	for (int i = 0; i < 4; i++) {
		a[i].c = c;
		a[i].id = i;
		pthread_create(&th[i], NULL, lru_worker, &a[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	kvo_lru_stats(c, &st);
	assert_true(st.used <= 640);
	assert_int_equal(st.used, st.entries * 64);
	kvo_lru_free(c);
}

static uint8_t *make_blob(int seed, size_t *len, struct kvo_key *k)
{
	struct fake_kv f;
	int32_t toks[16];
	uint8_t *b;
	for (int i = 0; i < 16; i++)
		toks[i] = seed * 100 + i;
	fake_init(&f, 2, 8, 16);
	fake_fill(&f, toks, 16, (uint32_t)seed);
	*k = keyn(seed);
	b = kvo_blob_encode(KVO_ENC_FP32, k, toks, 16, &f.view, 0, len);
	fake_release(&f);
	return b;
}

static void test_disk(void **state)
{
	char *dir = fake_tmpdir(), *err = NULL;
	struct kvo_disk *d;
	struct kvo_disk_stats st;
	struct kvo_key k, k0;
	size_t len, glen;
	uint8_t *b, *g, *b0;
	(void)state;
	b0 = make_blob(0, &len, &k0);
	d = kvo_disk_open(dir, 3 * len + len / 2, &err);
	assert_non_null(d);
	assert_int_equal(kvo_disk_put(d, &k0, b0, len), 0);
	assert_true(kvo_disk_contains(d, &k0));
	assert_int_equal(kvo_disk_get(d, &k0, &g, &glen), 1);
	assert_int_equal(glen, len);
	assert_memory_equal(g, b0, len);
	free(g);
	for (int i = 1; i < 5; i++) {
		b = make_blob(i, &len, &k);
		assert_int_equal(kvo_disk_put(d, &k, b, len), 0);
		free(b);
		usleep(20000); /* distinct mtimes for the restart order */
		kvo_disk_stats(d, &st);
		assert_true(st.used <= st.budget);
	}
	kvo_disk_stats(d, &st);
	assert_int_equal(st.files, 3);
	assert_int_equal(st.evictions, 2);
	assert_false(kvo_disk_contains(d, &k0));
	{ /* evicted files are deleted */
		char hex[65], *p;
		struct stat sb;
		kvo_key_hex(&k0, hex);
		p = xasprintf("%s/%s.kvc", dir, hex);
		assert_int_equal(stat(p, &sb), -1);
		free(p);
	}
	assert_int_equal(kvo_disk_get(d, &k0, &g, &glen), 0);
	kvo_disk_close(d);

	/* restart: found again; a leftover temp file is removed */
	{
		char *tmp = xasprintf("%s/x.kvc.tmp.123", dir);
		assert_int_equal(kv_write_file_atomic(tmp, "junk", 4), 0);
		free(tmp);
	}
	d = kvo_disk_open(dir, 3 * len + len / 2, &err);
	assert_non_null(d);
	kvo_disk_stats(d, &st);
	assert_int_equal(st.files, 3);
	for (int i = 2; i < 5; i++) {
		k = keyn(i);
		assert_int_equal(kvo_disk_get(d, &k, &g, &glen), 1);
		free(g);
	}
	/* corrupt one file: dropped and counted */
	{
		char hex[65], *p;
		size_t n;
		char *data;
		k = keyn(3);
		kvo_key_hex(&k, hex);
		p = xasprintf("%s/%s.kvc", dir, hex);
		data = kv_read_file(p, 1 << 20, &n);
		data[n - 3] ^= 0x40;
		assert_int_equal(kv_write_file_atomic(p, data, n), 0);
		free(data);
		assert_int_equal(kvo_disk_get(d, &k, &g, &glen), -1);
		assert_false(kvo_disk_contains(d, &k));
		assert_int_equal(access(p, F_OK), -1);
		free(p);
		kvo_disk_stats(d, &st);
		assert_int_equal(st.corrupt, 1);
	}
	kvo_disk_close(d);
	/* restart with a smaller budget: the oldest files go */
	d = kvo_disk_open(dir, len + 1, &err);
	kvo_disk_stats(d, &st);
	assert_int_equal(st.files, 1);
	k = keyn(4);
	assert_true(kvo_disk_contains(d, &k));
	kvo_disk_close(d);
	free(b0);
	fake_rmdir(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lru_budget),
		cmocka_unit_test(test_lru_threads),
		cmocka_unit_test(test_disk),
	};
	kv_set_quiet(true);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
