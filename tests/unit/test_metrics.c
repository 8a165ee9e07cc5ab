/*
 * kvb_metrics_fetch / kvb_metrics_counters against the scripted server:
 * the counters of a /metrics text, a server without /metrics (404), a
 * body over the cap, and an unreachable server.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "metrics.h"

static pid_t server;
static char url[64];
static char dir[64];

static int start(void **state)
{
	const char *b = getenv("KV_BUILD");
	const char *text =
		"on GET /metrics\n"
		"header Content-Type: text/plain; version=0.0.4\n"
		"body # TYPE vllm:prefix_cache_hits counter\\n"
		"vllm:prefix_cache_hits_total{model_name=\"m\"} 96\\n"
		"vllm:prefix_cache_queries_total{model_name=\"m\"} 192\\n"
		"vllm:external_prefix_cache_hits_total{model_name=\"m\"} 32\\n"
		"vllm:external_prefix_cache_queries_total{model_name=\"m\"} 64\\n"
		"kvserve:offload_stored_tokens_total 480\\n\n"
		"on GET /big/metrics\n"
		"fill 17000000 x\n"
		"end\n";
	char *bin, *script, *pf, *port = NULL;
	size_t len = 0;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/kvb_test_metrics.%d", (int)getpid());
	kv_mkdir_p(dir, 0700);
	script = xasprintf("%s/s.script", dir);
	pf = xasprintf("%s/port", dir);
	assert_int_equal(kv_write_file_atomic(script, text, strlen(text)), 0);
	bin = xasprintf("%s/tests/kvb_script_server", b ? b : "build");
	server = fork();
	if (server == 0) {
		execl(bin, bin, "--port-file", pf, "--max-seconds", "60", script, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200 && !port; i++) {
		port = kv_read_file(pf, 64, &len);
		if (!port)
			usleep(20000);
	}
	assert_non_null(port);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", (int)strtol(port, NULL, 10));
	free(port);
	free(bin);
	free(script);
	free(pf);
	return 0;
}

static int stop(void **state)
{
	char *cmd;
	(void)state;
	if (server > 0) {
		kill(server, SIGTERM);
		waitpid(server, NULL, 0);
	}
	cmd = xasprintf("rm -rf %s", dir);
	if (system(cmd)) {
		/* best effort */
	}
	free(cmd);
	return 0;
}

static void test_counters(void **state)
{
	struct kvb_cache_counters c;
	char *err = NULL, *text = NULL, *v1 = xasprintf("%s/v1/", url);
	size_t len;
	(void)state;
	assert_int_equal(kvb_metrics_counters(url, 5, &c, &err), 0);
	assert_null(err);
	assert_true(c.present[KVB_CF_VLLM_APC]);
	assert_true(fabs(c.hits[KVB_CF_VLLM_APC] - 96) < 1e-9);
	assert_true(fabs(c.queries[KVB_CF_VLLM_APC] - 192) < 1e-9);
	assert_true(fabs(c.hits[KVB_CF_VLLM_EXTERNAL] - 32) < 1e-9);
	assert_true(c.stores_present);
	assert_true(fabs(c.stores - 480) < 1e-9);
	/* a base URL with /v1 and a trailing slash reaches the same /metrics */
	assert_int_equal(kvb_metrics_fetch(v1, 5, &text, &len, &err), 0);
	assert_int_equal(len, strlen(text));
	assert_non_null(strstr(text, "vllm:prefix_cache_hits_total"));
	free(text);
	free(v1);
}

static void test_errors(void **state)
{
	struct kvb_cache_counters c;
	char *err = NULL, *text = NULL, *u;
	size_t len;
	(void)state;
	/* a server without /metrics */
	u = xasprintf("%s/nothing", url);
	assert_int_equal(kvb_metrics_fetch(u, 5, &text, &len, &err), -1);
	assert_null(text);
	assert_non_null(err);
	assert_int_equal(strncmp(err, "http 404", 8), 0);
	free(err);
	free(u);
	/* over the 16 MiB cap */
	u = xasprintf("%s/big", url);
	assert_int_equal(kvb_metrics_counters(u, 20, &c, &err), -1);
	assert_non_null(strstr(err, "larger than 16 MiB"));
	free(err);
	free(u);
	/* unreachable */
	assert_int_equal(kvb_metrics_counters("http://127.0.0.1:1", 5, &c, &err), -1);
	assert_non_null(err);
	assert_null(strchr(err, '\n'));
	free(err);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counters),
		cmocka_unit_test(test_errors),
	};
	kv_set_quiet(true);
	return cmocka_run_group_tests(tests, start, stop);
}
