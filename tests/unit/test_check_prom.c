/* Prometheus exposition parser, cache counters, cache-path and silent-miss checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>

#include "common/util.h"
#include "checks/checks.h"

#define NEAR(a, b, eps) assert_true(fabs((a) - (b)) < (eps))

static const char before_txt[] =
	"# HELP vllm:prefix_cache_hits_total Prefix cache hits, in terms of number of cached tokens.\n"
	"# TYPE vllm:prefix_cache_hits_total counter\n"
	"vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"m\"} 100.0\n"
	"vllm:prefix_cache_hits_created{engine=\"0\",model_name=\"m\"} 1.7e9\n"
	"vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"m\"} 400.0\n"
	"lmcache:num_hit_tokens_total{model_name=\"m\",worker_id=\"0\"} 0\n"
	"lmcache:num_hit_tokens_total{model_name=\"m\",worker_id=\"1\"} 0\n"
	"lmcache:num_requested_tokens_total{model_name=\"m\",worker_id=\"0\"} 512\n"
	"lmcache:num_stored_tokens_total{model_name=\"m\",worker_id=\"0\"} 256\n"
	"pegaflow_cache_tier_block_requests_total{tier=\"ram\"} 10\n"
	"pegaflow_cache_tier_block_requests_total{tier=\"ssd\"} 2\n"
	"pegaflow_cache_tier_block_requests_total{tier=\"miss\"} 8\n"
	"sglang:cached_tokens_total{name=\"a \\\"quoted\\\" \\\\ label\"} 7 1700000000000\n"
	"sglang:prompt_tokens_total 70\n"
	"this is not a sample\n"
	"bad_value{a=\"b\"} twelve\n"
	"unterminated{a=\"b} 1\n"
	"inf_gauge +Inf\r\n";

static const char after_txt[] =
	"vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"m\"} 300.0\n"
	"vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"m\"} 800.0\n"
	"lmcache:num_hit_tokens_total{model_name=\"m\",worker_id=\"0\"} 0\n"
	"lmcache:num_hit_tokens_total{model_name=\"m\",worker_id=\"1\"} 0\n"
	"lmcache:num_requested_tokens_total{model_name=\"m\",worker_id=\"0\"} 1024\n"
	"lmcache:num_stored_tokens_total{model_name=\"m\",worker_id=\"0\"} 768\n"
	"pegaflow_cache_tier_block_requests_total{tier=\"ram\"} 30\n"
	"pegaflow_cache_tier_block_requests_total{tier=\"ssd\"} 2\n"
	"pegaflow_cache_tier_block_requests_total{tier=\"miss\"} 8\n"
	"sglang:cached_tokens_total 9\n"
	"sglang:prompt_tokens_total 90\n";

static void test_parse(void **state)
{
	struct kvb_prom p;
	bool f;
	(void)state;
	kvb_prom_parse(before_txt, sizeof(before_txt) - 1, &p);
	assert_int_equal(p.n, 13);
	assert_int_equal(p.n_bad, 3);
	assert_false(p.truncated);
	NEAR(kvb_prom_sum(&p, "vllm:prefix_cache_hits", NULL, NULL, &f), 100, 1e-9);
	assert_true(f);
	/* _created is not the counter */
	NEAR(kvb_prom_sum(&p, "vllm:prefix_cache_hits_total", NULL, NULL, &f), 100, 1e-9);
	NEAR(kvb_prom_sum(&p, "pegaflow_cache_tier_block_requests", NULL, NULL, &f), 20, 1e-9);
	NEAR(kvb_prom_sum(&p, "pegaflow_cache_tier_block_requests", "tier", "miss", &f), 8, 1e-9);
	NEAR(kvb_prom_sum(&p, "pegaflow_cache_tier_block_requests", "tier", "!miss", &f), 12, 1e-9);
	kvb_prom_sum(&p, "nothing", NULL, NULL, &f);
	assert_false(f);
	for (size_t i = 0; i < p.n; i++)
		if (!strcmp(p.v[i].name, "sglang:cached_tokens_total")) {
			assert_string_equal(p.v[i].labels[0].value, "a \"quoted\" \\ label");
			NEAR(p.v[i].value, 7, 1e-9); /* the timestamp is not the value */
		}
	assert_true(isinf(kvb_prom_sum(&p, "inf_gauge", NULL, NULL, NULL)));
	kvb_prom_release(&p);
}

static void test_counters_and_checks(void **state)
{
	struct kvb_prom a, b;
	struct kvb_cache_counters ca, cb, d;
	struct kvb_check c;
	(void)state;
	kvb_prom_parse(before_txt, sizeof(before_txt) - 1, &a);
	kvb_prom_parse(after_txt, sizeof(after_txt) - 1, &b);
	kvb_cache_counters_from_prom(&a, &ca);
	kvb_cache_counters_from_prom(&b, &cb);
	assert_true(ca.present[KVB_CF_VLLM_APC] && ca.present[KVB_CF_LMCACHE]);
	assert_false(ca.present[KVB_CF_VLLM_EXTERNAL]);
	NEAR(ca.hits[KVB_CF_PEGAFLOW], 12, 1e-9);
	NEAR(ca.queries[KVB_CF_PEGAFLOW], 20, 1e-9);
	NEAR(ca.hits[KVB_CF_SGLANG], 7, 1e-9);
	kvb_cache_counters_diff(&ca, &cb, &d);
	NEAR(d.hits[KVB_CF_VLLM_APC], 200, 1e-9);
	NEAR(d.queries[KVB_CF_VLLM_APC], 400, 1e-9);
	NEAR(d.hits[KVB_CF_LMCACHE], 0, 1e-9);
	NEAR(d.stores, 512, 1e-9);
	NEAR(d.hits[KVB_CF_PEGAFLOW], 20, 1e-9);
	NEAR(kvb_cache_hit_rate(&d, "apc"), 0.5, 1e-12);

	/* auto picks the external layer (LMCache): zero hits fail */
	assert_int_equal(kvb_cache_pick(&d, NULL), KVB_CF_LMCACHE);
	kvb_check_cache_path(&d, NULL, -1, true, &c);
	assert_false(c.passed);
	assert_non_null(strstr(c.reason, "cache path never exercised"));
	assert_non_null(strstr(c.reason, "apc had 200 hits"));
	/* ... though the GPU prefix cache did hit */
	kvb_check_cache_path(&d, "apc", -1, true, &c);
	assert_true(c.passed);
	NEAR(c.figure, 200, 1e-9);
	/* a baseline makes no claim */
	kvb_check_cache_path(&d, NULL, -1, false, &c);
	assert_true(c.passed);
	/* an idle vllm external family (no connector) gives way to a queried one */
	memset(&d, 0, sizeof(d));
	d.present[KVB_CF_VLLM_EXTERNAL] = d.present[KVB_CF_VLLM_APC] = true;
	d.hits[KVB_CF_VLLM_APC] = 32;
	d.queries[KVB_CF_VLLM_APC] = 64;
	assert_int_equal(kvb_cache_pick(&d, NULL), KVB_CF_VLLM_APC);
	kvb_check_cache_path(&d, NULL, -1, true, &c);
	assert_true(c.passed);
	/* ... but not when it was queried and missed: that is the layer claimed */
	d.queries[KVB_CF_VLLM_EXTERNAL] = 64;
	assert_int_equal(kvb_cache_pick(&d, NULL), KVB_CF_VLLM_EXTERNAL);
	kvb_check_cache_path(&d, NULL, -1, true, &c);
	assert_false(c.passed);
	/* usage cached_tokens can prove the path when counters cannot */
	memset(&d, 0, sizeof(d));
	kvb_check_cache_path(&d, NULL, 64, true, &c);
	assert_true(c.passed);
	kvb_check_cache_path(&d, NULL, -1, true, &c);
	assert_false(c.passed);
	assert_non_null(strstr(c.reason, "cache path never exercised"));

	/* silent miss: LMCache stored 512 tokens and served none */
	kvb_cache_counters_diff(&ca, &cb, &d);
	kvb_check_silent_miss(&d, NULL, &c);
	assert_false(c.passed);
	assert_non_null(strstr(c.reason, "silent miss"));
	kvb_check_silent_miss(&d, "pegaflow", &c);
	assert_true(c.passed);
	kvb_prom_release(&a);
	kvb_prom_release(&b);
}

static void test_bounds(void **state)
{
	struct kvb_prom p;
	size_t n = 70000 * 4;
	char *big = xmalloc(n + 1);
	(void)state;
	for (size_t i = 0; i < n; i += 4)
		memcpy(big + i, "a 1\n", 4);
	big[n] = '\0';
	kvb_prom_parse(big, n, &p);
	assert_true(p.truncated);
	assert_int_equal(p.n, 65536);
	kvb_prom_release(&p);
	memset(big, 'x', n);
	kvb_prom_parse(big, n, &p); /* one huge line */
	assert_int_equal(p.n, 0);
	assert_int_equal(p.n_bad, 1);
	kvb_prom_release(&p);
	free(big);
}

/* key_isolation on recorded key-probe records */
static void test_key_isolation_records(void **state)
{
	/* pair 0 clean; pair 1: tenant-b served from tenant-a's entries (sent
	   in file order b before a, ids say a came first) */
	static const char leak[] =
		"{\"request_id\":0,\"key\":\"probe0/tenant-a\",\"cached_tokens\":0}\n"
		"{\"request_id\":1,\"key\":\"probe0/tenant-b\",\"cached_tokens\":0}\n"
		"{\"request_id\":3,\"key\":\"probe1/tenant-b\",\"cached_tokens\":80}\n"
		"{\"request_id\":2,\"key\":\"probe1/tenant-a\",\"cached_tokens\":0}\n"
		"{\"request_id\":4,\"key\":\"other\",\"cached_tokens\":96}\n";
	/* a failed probe is not judged; pair 0's first request hit (an earlier
	   run sent the prompt), so its pair is not judged either */
	static const char clean[] =
		"{\"request_id\":0,\"key\":\"probe0/a\",\"cached_tokens\":64}\n"
		"{\"request_id\":1,\"key\":\"probe0/b\",\"cached_tokens\":64}\n"
		"{\"request_id\":2,\"key\":\"probe0/c\",\"cached_tokens\":0}\n"
		"{\"request_id\":3,\"key\":\"probe10/a\",\"cached_tokens\":0}\n"
		"{\"request_id\":4,\"key\":\"probe10/b\",\"status\":\"http\",\"cached_tokens\":96}\n";
	static const char noprobe[] = "{\"request_id\":0,\"key\":\"probe/x\",\"cached_tokens\":5}\n"
				      "{\"request_id\":1,\"key\":\"synthetic/1\",\"cached_tokens\":5}\n";
	static const char nousage[] = "{\"request_id\":0,\"key\":\"probe0/a\"}\n"
				      "{\"request_id\":1,\"key\":\"probe0/b\"}\n";
	struct kvb_outputs o;
	struct kvb_cache_counters d;
	struct kvb_check c;
	(void)state;

	assert_int_equal(kvb_outputs_parse("leak", leak, strlen(leak), &o), 0);
	kvb_check_key_isolation_records(&o, NULL, NULL, &c);
	assert_false(c.passed);
	assert_string_equal(c.name, "key_isolation");
	NEAR(c.figure, 80, 1e-9);
	assert_non_null(strstr(c.reason, "probe1/tenant-b"));
	kvb_outputs_release(&o);

	assert_int_equal(kvb_outputs_parse("clean", clean, strlen(clean), &o), 0);
	kvb_check_key_isolation_records(&o, NULL, NULL, &c);
	assert_true(c.passed);
	NEAR(c.figure, 0, 1e-9);
	assert_non_null(strstr(c.reason, "1 of 2 pairs not judged"));
	/* counters over the probe: any hit beyond the stale pair's 128 is a cross hit */
	memset(&d, 0, sizeof(d));
	d.present[KVB_CF_VLLM_APC] = d.present[KVB_CF_VLLM_EXTERNAL] = true;
	d.hits[KVB_CF_VLLM_APC] = 128;
	kvb_check_key_isolation_records(&o, &d, NULL, &c);
	assert_true(c.passed);
	assert_non_null(strstr(c.reason, "cache counters +0"));
	d.hits[KVB_CF_VLLM_EXTERNAL] = 176;
	kvb_check_key_isolation_records(&o, &d, "auto", &c);
	assert_false(c.passed);
	NEAR(c.figure, 48, 1e-9);
	assert_non_null(strstr(c.reason, "external"));
	/* a named family looks at that family only */
	kvb_check_key_isolation_records(&o, &d, "apc", &c);
	assert_true(c.passed);
	kvb_outputs_release(&o);

	assert_int_equal(kvb_outputs_parse("noprobe", noprobe, strlen(noprobe), &o), 0);
	kvb_check_key_isolation_records(&o, NULL, NULL, &c);
	assert_false(c.passed);
	assert_non_null(strstr(c.reason, "not measured"));
	kvb_outputs_release(&o);

	assert_int_equal(kvb_outputs_parse("nousage", nousage, strlen(nousage), &o), 0);
	kvb_check_key_isolation_records(&o, NULL, NULL, &c);
	assert_false(c.passed);
	assert_non_null(strstr(c.reason, "not measured"));
	memset(&d, 0, sizeof(d));
	d.present[KVB_CF_VLLM_APC] = true;
	kvb_check_key_isolation_records(&o, &d, NULL, &c);
	assert_true(c.passed);
	kvb_outputs_release(&o);

	/* every pair stale: nothing can be judged */
	assert_int_equal(kvb_outputs_parse("stale", clean, strcspn(clean, "\n") + 1, &o), 0);
	kvb_check_key_isolation_records(&o, NULL, NULL, &c);
	assert_false(c.passed);
	assert_non_null(strstr(c.reason, "another --seed"));
	kvb_outputs_release(&o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_counters_and_checks),
		cmocka_unit_test(test_key_isolation_records),
		cmocka_unit_test(test_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
