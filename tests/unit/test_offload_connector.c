/* Unit tests of the offload connector with a fake KV view: lookup/load/store
 * across tiers, namespaces, restart, sharing through a cache server, faults,
 * metrics and threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>

#include "common/buf.h"
#include "common/clock.h"
#include "offload_fake.h"
#include "offload/offload.h"
#include "offload/remote.h"

#define L 3
#define D 16
#define CS 16
#define CAP 128

static int32_t toks[CAP];

static struct kv_connector *mk(struct kvo_config *c)
{
	char *err = NULL;
	struct kv_connector *k = kvo_connector_new(c, &err);
	if (!k)
		fail_msg("connector: %s", err);
	return k;
}

static void cfg_small(struct kvo_config *c)
{
	kvo_config_init(c);
	c->chunk_size = CS;
	c->cpu_bytes = 1 << 20;
}

static bool metric_has_q(struct kv_connector *k, const char *line, bool quiet)
{
	struct kv_buf b = KV_BUF_INIT(1 << 22);
	bool r;
	k->ops->metrics(k, &b);
	r = strstr(kv_buf_str(&b), line) != NULL;
	if (!r && !quiet)
		fprintf(stderr, "missing metric line: %s\n", line);
	kv_buf_release(&b);
	return r;
}

static bool metric_has(struct kv_connector *k, const char *line)
{
	return metric_has_q(k, line, false);
}

static void setup_toks(void)
{
	for (int i = 0; i < CAP; i++)
		toks[i] = 500 + i * 13 % 97;
}

static void test_roundtrip_cpu(void **state)
{
	struct kvo_config c;
	struct kv_connector *k;
	struct kv_namespace ns;
	struct fake_kv src, dst;
	(void)state;
	setup_toks();
	fake_ns(&ns);
	fake_init(&src, L, D, CAP);
	fake_init(&dst, L, D, CAP);
	fake_fill(&src, toks, CAP, 7);
	cfg_small(&c);
	k = mk(&c);
	assert_int_equal(kvc_lookup(k, &ns, toks, 100), 0);
	kvc_store(k, &ns, toks, 100, &src.view); /* 6 full chunks + a tail of 4 */
	/* lookup: multiple of CS, < ntok */
	assert_int_equal(kvc_lookup(k, &ns, toks, 100), 96);
	assert_int_equal(kvc_lookup(k, &ns, toks, 96), 80); /* the last token is computed */
	assert_int_equal(kvc_lookup(k, &ns, toks, 97), 96);
	assert_int_equal(kvc_lookup(k, &ns, toks, 40), 32);
	assert_int_equal(kvc_lookup(k, &ns, toks, 16), 0);
	assert_int_equal(kvc_lookup(k, &ns, toks, 128), 96);
	assert_int_equal(kvc_load(k, &ns, toks, 96, &dst.view), 96);
	assert_true(fake_equal(&src, &dst, 96)); /* fp32: bit-exact */
	/* a prompt that diverges in chunk 2 hits only chunks 0 and 1 */
	{
		int32_t t2[CAP];
		memcpy(t2, toks, sizeof(t2));
		t2[40] += 1;
		assert_int_equal(kvc_lookup(k, &ns, t2, 100), 32);
	}
	/* every namespace dimension separates */
	{
		struct kv_namespace n2 = ns;
		n2.salt = "user-b";
		assert_int_equal(kvc_lookup(k, &n2, toks, 100), 0);
		n2 = ns;
		n2.adapter = "a1";
		assert_int_equal(kvc_lookup(k, &n2, toks, 100), 0);
		n2 = ns;
		n2.revision = 2;
		assert_int_equal(kvc_lookup(k, &n2, toks, 100), 0);
	}
	assert_true(metric_has(k, "kvserve:offload_hit_tokens_total{tier=\"cpu\"} 96"));
	assert_true(metric_has(k, "lmcache:num_hit_tokens_total 96"));
	assert_true(metric_has(k, "lmcache:num_stored_tokens_total 96"));
	assert_true(metric_has(k, "kvserve:offload_stored_chunks_total{tier=\"cpu\"} 6"));
	assert_true(metric_has(k, "kvserve:offload_load_seconds_count{tier=\"cpu\"} 6"));
	assert_true(metric_has(k, "kvserve:kv_faults_injected_total{type=\"bitflip\"} 0"));
	k->ops->free(k);
	/* min_retrieve_tokens and save_unfull_chunk */
	c.min_retrieve_tokens = 64;
	c.save_unfull_chunk = true;
	k = mk(&c);
	kvc_store(k, &ns, toks, 40, &src.view);
	assert_true(metric_has(k, "kvserve:offload_stored_chunks_total{tier=\"cpu\"} 3"));
	assert_int_equal(kvc_lookup(k, &ns, toks, 100), 0);
	k->ops->free(k);
	fake_release(&src);
	fake_release(&dst);
}

static void test_encodings(void **state)
{
	(void)state;
	setup_toks();
	for (int e = 1; e < KVO_NENC; e++) {
		struct kvo_config c;
		struct kv_connector *k;
		struct kv_namespace ns;
		struct fake_kv src, dst;
		double m;
		fake_ns(&ns);
		fake_init(&src, L, D, CAP);
		fake_init(&dst, L, D, CAP);
		fake_fill(&src, toks, CAP, 3);
		cfg_small(&c);
		c.encoding = (enum kvo_enc)e;
		k = mk(&c);
		kvc_store(k, &ns, toks, 64, &src.view);
		assert_int_equal(kvc_load(k, &ns, toks, kvc_lookup(k, &ns, toks, 64), &dst.view), 48);
		m = fake_maxdiff(&src, &dst, 48);
		assert_true(m > 0);
		assert_true(m < (e == KVO_ENC_FP16 ? 0.003 : 0.03));
		k->ops->free(k);
		fake_release(&src);
		fake_release(&dst);
	}
}

static void test_disk_tier(void **state)
{
	struct kvo_config c;
	struct kv_connector *k;
	struct kv_namespace ns;
	struct fake_kv src, dst;
	char *dir = fake_tmpdir();
	(void)state;
	setup_toks();
	fake_ns(&ns);
	fake_init(&src, L, D, CAP);
	fake_init(&dst, L, D, CAP);
	fake_fill(&src, toks, CAP, 9);
	cfg_small(&c);
	c.disk_dir = xstrdup(dir);
	c.disk_bytes = 1 << 20;
	k = mk(&c);
	kvc_store(k, &ns, toks, 80, &src.view);
	k->ops->free(k);
	/* a new process: CPU is empty, the disk tier was re-indexed */
	k = mk(&c);
	assert_int_equal(kvc_lookup(k, &ns, toks, 80), 64);
	assert_int_equal(kvc_load(k, &ns, toks, 64, &dst.view), 64);
	assert_true(fake_equal(&src, &dst, 64));
	assert_true(metric_has(k, "kvserve:offload_hit_tokens_total{tier=\"disk\"} 64"));
	assert_true(metric_has(k, "kvserve:offload_promotions_total 4"));
	/* promoted: the second load comes from CPU */
	fake_zero(&dst);
	assert_int_equal(kvc_load(k, &ns, toks, 64, &dst.view), 64);
	assert_true(metric_has(k, "kvserve:offload_hit_tokens_total{tier=\"cpu\"} 64"));
	k->ops->free(k);
	kvo_config_release(&c);
	fake_rmdir(dir);
	free(dir);
	fake_release(&src);
	fake_release(&dst);
}

static void test_remote_shared(void **state)
{
	struct kvo_server_opts o = { .port = 0, .max_bytes = 1 << 22 };
	struct kvo_server *s;
	struct kvo_config c;
	struct kv_connector *a, *b;
	struct kv_namespace ns;
	struct fake_kv src, dst;
	char *err = NULL;
	(void)state;
	setup_toks();
	fake_ns(&ns);
	fake_init(&src, L, D, CAP);
	fake_init(&dst, L, D, CAP);
	fake_fill(&src, toks, CAP, 11);
	s = kvo_server_start(&o, &err);
	assert_non_null(s);
	cfg_small(&c);
	c.remote_url = xasprintf("kv://127.0.0.1:%d", kvo_server_port(s));
	a = mk(&c);
	b = mk(&c);
	kvc_store(a, &ns, toks, 70, &src.view);
	/* engine b never saw the prompt: served from the remote tier */
	assert_int_equal(kvc_lookup(b, &ns, toks, 70), 64);
	assert_int_equal(kvc_load(b, &ns, toks, 64, &dst.view), 64);
	assert_true(fake_equal(&src, &dst, 64));
	assert_true(metric_has(b, "kvserve:offload_hit_tokens_total{tier=\"remote\"} 64"));
	/* remote with another encoding: separate keys, lossy but bounded */
	{
		struct kvo_config c2 = c;
		struct kv_connector *x, *y;
		c2.remote_url = c.remote_url;
		c2.remote_enc = KVO_ENC_BF16;
		x = mk(&c2);
		y = mk(&c2);
		kvc_store(x, &ns, toks, 40, &src.view);
		fake_zero(&dst);
		assert_int_equal(kvc_load(y, &ns, toks, 32, &dst.view), 32);
		assert_true(fake_maxdiff(&src, &dst, 32) > 0 && fake_maxdiff(&src, &dst, 32) < 0.03);
		x->ops->free(x);
		y->ops->free(y);
	}
	/* the cache goes away: loads return fewer tokens, never hang or crash */
	kvo_server_stop(s);
	b->ops->free(b);
	c.remote_timeout_s = 0.2;
	b = mk(&c);
	{
		uint64_t t0 = kv_now_ns();
		assert_int_equal(kvc_lookup(b, &ns, toks, 70), 0);
		assert_int_equal(kvc_load(b, &ns, toks, 64, &dst.view), 0);
		kvc_store(b, &ns, toks, 70, &src.view); /* CPU still works */
		assert_true(kv_now_ns() - t0 < 3000000000ull);
	}
	assert_int_equal(kvc_lookup(b, &ns, toks, 70), 64);
	assert_false(metric_has_q(b, "kvserve:offload_errors_total{tier=\"remote\"} 0", true));
	a->ops->free(a);
	b->ops->free(b);
	kvo_config_release(&c);
	fake_release(&src);
	fake_release(&dst);
}

/* Each fault, switched on, changes the loaded KV (or the hit pattern) and is
 * counted. */
static void test_faults(void **state)
{
	static const char *const specs[] = {
		"bitflip", "truncate", "wrong-key", "offset", "zero-tail", "swap-kv",
		"layer-shift", "poison", "lossy", "truncate-key:4", "stale", "drop-key:salt",
		"delay:30",
	};
	(void)state;
	setup_toks();
	for (size_t i = 0; i < KV_ARRAY_SIZE(specs); i++) {
		struct kvo_config c;
		struct kv_connector *k;
		struct kv_namespace ns, other;
		struct fake_kv src, src2, dst;
		int32_t t2[CAP];
		char *err = NULL, line[128];
		const char *nm = specs[i];
		size_t nl = strcspn(nm, ":");
		uint64_t t0;
		bool changed;

		fake_ns(&ns);
		fake_init(&src, L, D, CAP);
		fake_init(&src2, L, D, CAP);
		fake_init(&dst, L, D, CAP);
		fake_fill(&src, toks, CAP, 5);
		cfg_small(&c);
		assert_int_equal(kvo_faults_add(&c.faults, nm, &err), 0);
		k = mk(&c);
		/* another prompt stored under another namespace: the source of
		 * wrong-key, stale and drop-key hits */
		other = ns;
		if (!strcmp(nm, "stale"))
			other.revision = 0;
		if (strcmp(nm, "stale") && strncmp(nm, "truncate-key", 12))
			other.salt = "other-user";
		memcpy(t2, toks, sizeof(t2));
		if (!strcmp(nm, "wrong-key") || !strncmp(nm, "truncate-key", 12))
			for (int j = 0; j < CAP; j++)
				t2[j] = toks[j] + 1;
		fake_fill(&src2, t2, CAP, 77);
		kvc_store(k, &other, t2, 64, &src2.view);
		if (!strncmp(nm, "truncate-key", 12)) {
			/* 4 bits kept: among 120 one-chunk prompts some share the
			 * truncated key of toks' first chunk */
			for (int v = 0; v < 120; v++) {
				t2[0] = 100000 + v;
				kvc_store(k, &other, t2, CS, &src2.view);
			}
			fake_zero(&dst);
			assert_int_equal(kvc_load(k, &ns, toks, kvc_lookup(k, &ns, toks, CS + 1), &dst.view), CS);
			assert_false(fake_equal(&src, &dst, CS));
			goto counted;
		}
		if (strcmp(nm, "stale") && strncmp(nm, "drop-key", 8) && strncmp(nm, "truncate-key", 12))
			kvc_store(k, &ns, toks, 64, &src.view);
		t0 = kv_now_ns();
		assert_int_equal(kvc_load(k, &ns, toks, kvc_lookup(k, &ns, toks, 64), &dst.view), 48);
		changed = !fake_equal(&src, &dst, 48);
		if (!strncmp(nm, "delay", 5)) {
			assert_false(changed);
			assert_true(kv_now_ns() - t0 >= 25000000ull);
		} else {
			if (!changed)
				fail_msg("fault %s did not change the loaded KV", nm);
		}
counted:
		snprintf(line, sizeof(line), "kvserve:kv_faults_injected_total{type=\"%.*s\"} ",
			 (int)nl, nm);
		assert_true(metric_has(k, line));
		strncat(line, "0\n", sizeof(line) - strlen(line) - 1);
		if (metric_has_q(k, line, true))
			fail_msg("fault %s not counted", nm);
		k->ops->free(k);
		fake_release(&src);
		fake_release(&src2);
		fake_release(&dst);
	}
}

/* The Dig check: an object whose key matches but whose token ids do not (a
 * collision, or a buggy writer) is refused and counted; the load stops. */
static void test_verify_refuses(void **state)
{
	struct kvo_config c;
	struct kv_connector *k;
	struct kv_namespace ns;
	struct fake_kv src, dst;
	struct kvo_key seed, k0, k1;
	char *dir = fake_tmpdir(), hex[65], *path;
	int32_t wrong[CS];
	uint8_t *b;
	size_t len;
	(void)state;
	setup_toks();
	fake_ns(&ns);
	fake_init(&src, L, D, CAP);
	fake_init(&dst, L, D, CAP);
	fake_fill(&src, toks, CAP, 21);
	cfg_small(&c);
	c.local_cpu = false;
	c.disk_dir = xstrdup(dir);
	c.disk_bytes = 1 << 20;
	k = mk(&c);
	kvc_store(k, &ns, toks, 2 * CS + 1, &src.view);
	k->ops->free(k);
	/* replace chunk 1's file by an object with the right key and wrong tokens */
	kvo_key_seed(&ns, KVO_ENC_FP32, CS, 0, &seed);
	kvo_key_next(&seed, toks, CS, &k0);
	kvo_key_next(&k0, toks + CS, CS, &k1);
	for (int i = 0; i < CS; i++)
		wrong[i] = toks[CS + i] + 1;
	b = kvo_blob_encode(KVO_ENC_FP32, &k1, wrong, CS, &src.view, CS, &len);
	kvo_key_hex(&k1, hex);
	path = xasprintf("%s/%s.kvc", dir, hex);
	assert_int_equal(kv_write_file_atomic(path, b, len), 0);
	k = mk(&c);
	assert_int_equal(kvc_lookup(k, &ns, toks, 2 * CS + 1), 2 * CS);
	assert_int_equal(kvc_load(k, &ns, toks, 2 * CS, &dst.view), CS);
	assert_true(fake_equal(&src, &dst, CS));
	assert_true(metric_has(k, "kvserve:offload_verify_errors_total 1"));
	k->ops->free(k);
	free(path);
	free(b);
	kvo_config_release(&c);
	fake_rmdir(dir);
	free(dir);
	fake_release(&src);
	fake_release(&dst);
}

static void test_fault_parse(void **state)
{
	struct kvo_faults f;
	char *err = NULL;
	(void)state;
	kvo_faults_init(&f, 1);
	assert_int_equal(kvo_faults_add(&f, "bitflip:0.5", &err), 0);
	assert_true(f.prob[KVO_F_BITFLIP] == 0.5);
	assert_int_equal(kvo_faults_add(&f, "bitflip:2", &err), -1);
	free(err);
	assert_int_equal(kvo_faults_add(&f, "nope", &err), -1);
	assert_non_null(strstr(err, "unknown fault type 'nope'"));
	free(err);
	assert_int_equal(kvo_faults_add(&f, "rope-shift:0", &err), -1);
	assert_non_null(strstr(err, "non-zero shift"));
	free(err);
	assert_int_equal(kvo_faults_add(&f, "drop-key:colour", &err), -1);
	free(err);
	assert_int_equal(kvo_faults_add(&f, "drop-key:adapter", &err), 0);
	assert_int_equal(kvo_faults_add(&f, "drop-key:salt", &err), 0);
	assert_int_equal(kvo_faults_key_drop(&f), KVO_DIM_ADAPTER | KVO_DIM_SALT);
	assert_int_equal(kvo_faults_add(&f, "delay:0", &err), -1);
	free(err);
	/* probability: about half of 2000 draws fire */
	{
		int n = 0;
		for (int i = 0; i < 2000; i++)
			n += kvo_fault_fires(&f, KVO_F_BITFLIP);
		assert_true(n > 850 && n < 1150);
	}
}

struct thr {
	struct kv_connector *k;
	const struct fake_kv *src;
	int id, bad;
};

static void *worker(void *p)
{
	struct thr *t = p;
	struct kv_namespace ns;
	struct fake_kv dst;
	fake_ns(&ns);
	fake_init(&dst, L, D, CAP);
	for (int i = 0; i < 200; i++) {
		int n = 17 + (i * 7 + t->id * 13) % 100;
		int hit = kvc_lookup(t->k, &ns, toks, n);
		int got = kvc_load(t->k, &ns, toks, hit, &dst.view);
		if (got > hit || got % CS || !fake_equal(t->src, &dst, got))
			t->bad++;
		kvc_store(t->k, &ns, toks, n, &t->src->view);
	}
	fake_release(&dst);
	return NULL;
}

static void test_threads(void **state)
{
	struct kvo_config c;
	struct kv_connector *k;
	struct fake_kv src;
	pthread_t th[4];
	struct thr a[4];
	(void)state;
	setup_toks();
	fake_init(&src, L, D, CAP);
	fake_fill(&src, toks, CAP, 13);
	cfg_small(&c);
	/* a budget of 3 chunks: constant eviction under the readers */
	c.cpu_bytes = 3 * kvo_blob_size(KVO_ENC_FP32, CS, L, D);
	k = mk(&c);
	for (int i = 0; i < 4; i++) {
		a[i] = (struct thr){ k, &src, i, 0 };
		pthread_create(&th[i], NULL, worker, &a[i]);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(a[i].bad, 0);
	}
	k->ops->free(k);
	fake_release(&src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_cpu),
		cmocka_unit_test(test_encodings),
		cmocka_unit_test(test_disk_tier),
		cmocka_unit_test(test_remote_shared),
		cmocka_unit_test(test_faults),
		cmocka_unit_test(test_verify_refuses),
		cmocka_unit_test(test_fault_parse),
		cmocka_unit_test(test_threads),
	};
	signal(SIGPIPE, SIG_IGN);
	kv_set_quiet(true);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
