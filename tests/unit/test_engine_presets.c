/*
 * Engine presets: the argv and environment each preset produces, checked
 * against the flags REFERENCE.md documents for vLLM (+ LMCache, PegaFlow),
 * SGLang, llama.cpp and kvserve. Nothing is started.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/util.h"
#include "engines/engine.h"
#include "suite/suite.h"

static struct kvb_suite suite;

static int setup(void **state)
{
	const char *f = getenv("KV_FIXTURES");
	char *path = xasprintf("%s/suites/presets.yaml", f ? f : "tests/fixtures");
	(void)state;
	unsetenv("KVB_T_MODEL");
	if (kvb_suite_load(&suite, path, NULL) < 0) {
		free(path);
		return -1;
	}
	free(path);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	kvb_suite_release(&suite);
	return 0;
}

/* argv joined with single spaces */
static char *joined(char **v)
{
	struct kv_buf b = KV_BUF_INIT(0);
	for (char **p = v; p && *p; p++)
		kv_buf_printf(&b, "%s%s", p == v ? "" : " ", *p);
	return kv_buf_detach(&b, NULL);
}

static void check(const char *name, const char *want_argv, const char *want_env)
{
	struct kvb_engine e;
	char *a, *env;
	assert_int_equal(kvb_engine_prepare(&e, kvb_suite_engine_find(&suite, name), &suite,
					    "/tmp/logs", 0), 0);
	a = joined(e.argv);
	env = joined(e.env_add);
	if (strcmp(a, want_argv))
		fail_msg("%s argv:\n  got  %s\n  want %s", name, a, want_argv);
	if (strcmp(env, want_env))
		fail_msg("%s env:\n  got  %s\n  want %s", name, env, want_env);
	free(a);
	free(env);
	kvb_engine_release(&e);
}

static void test_vllm_lmcache(void **state)
{
	(void)state;
	check("lmc",
	      "vllm serve meta-llama/Llama-3.1-8B-Instruct --host 127.0.0.1 --port 8000 "
	      "--no-enable-prefix-caching --max-model-len 8192 --kv-transfer-config "
	      "{\"kv_connector\":\"LMCacheConnectorV1\",\"kv_role\":\"kv_both\"}",
	      "LMCACHE_CHUNK_SIZE=256 LMCACHE_LOCAL_CPU=true LMCACHE_MAX_LOCAL_CPU_SIZE=5 "
	      "CUDA_VISIBLE_DEVICES=0 PROMETHEUS_MULTIPROC_DIR=/tmp/p-lmc");
}

static void test_vllm_plain(void **state)
{
	(void)state;
	check("vanilla", "vllm serve meta-llama/Llama-3.1-8B-Instruct --host 127.0.0.1 --port 9000",
	      "");
}

static void test_vllm_pegaflow(void **state)
{
	(void)state;
	/* PegaFlow's runner turns vLLM's prefix cache off unless told otherwise */
	check("pega",
	      "vllm serve meta-llama/Llama-3.1-8B-Instruct --host 127.0.0.1 --port 8001 "
	      "--no-enable-prefix-caching --kv-transfer-config "
	      "{\"kv_connector\":\"PegaKVConnector\",\"kv_role\":\"kv_both\","
	      "\"kv_connector_module_path\":\"pegaflow.connector\","
	      "\"kv_connector_extra_config\":{\"pegaflow.mode\":\"read_write\"}}",
	      "");
	check("pega-server",
	      "pegaflow-server --http-addr 127.0.0.1:9091 --addr 127.0.0.1:50055 --pool-size 50gb", "");
}

static void test_sglang_llamacpp_kvserve(void **state)
{
	(void)state;
	check("sg",
	      "python3 -m sglang.launch_server --model-path meta-llama/Llama-3.1-8B-Instruct "
	      "--host 127.0.0.1 --port 30000 --enable-metrics --enable-cache-report "
	      "--disable-radix-cache",
	      "");
	check("llama", "llama-server -m /models/m.gguf --host 127.0.0.1 --port 8080 --metrics", "");
	check("kv",
	      "/opt/kvserve --host 127.0.0.1 --port 8100 --model meta-llama/Llama-3.1-8B-Instruct "
	      "--no-prefix-cache --threads 2",
	      "");
}

static void test_url_and_ports(void **state)
{
	struct kvb_engine e;
	struct kvb_suite_engine copy;
	(void)state;
	assert_int_equal(kvb_engine_prepare(&e, kvb_suite_engine_find(&suite, "remote"), &suite,
					    "/tmp/logs", 0), 0);
	assert_null(e.argv);
	assert_string_equal(e.base_url, "http://10.0.0.1:8000");
	assert_string_equal(e.health_path, "/v1/models");
	kvb_engine_release(&e);

	/* port 0: a free port is allocated, and it shows up in argv and url */
	copy = *kvb_suite_engine_find(&suite, "kv");
	copy.port = 0;
	assert_int_equal(kvb_engine_prepare(&e, &copy, &suite, "/tmp/logs", 0), 0);
	assert_true(e.port > 0);
	{
		char want[64];
		snprintf(want, sizeof(want), "%d", e.port);
		assert_string_equal(e.argv[4], want);
		snprintf(want, sizeof(want), "http://127.0.0.1:%d", e.port);
		assert_string_equal(e.base_url, want);
	}
	assert_string_equal(e.log_stdout, "/tmp/logs/kv.stdout.log");
	assert_string_equal(e.log_stderr, "/tmp/logs/kv.stderr.log");
	kvb_engine_release(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vllm_lmcache),
		cmocka_unit_test(test_vllm_plain),
		cmocka_unit_test(test_vllm_pegaflow),
		cmocka_unit_test(test_sglang_llamacpp_kvserve),
		cmocka_unit_test(test_url_and_ports),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
