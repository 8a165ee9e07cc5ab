/*
 * Suite files: ${VAR} expansion, a good file loaded into structs, and every
 * malformed fixture in tests/fixtures/suites/bad giving exactly one error
 * line "FILE:LINE: ..." as its first line "# expect: LINE: TEXT" says.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <unistd.h>

#include "common/util.h"
#include "engines/engine.h"
#include "suite/suite.h"

static const char *fixtures(void)
{
	const char *f = getenv("KV_FIXTURES");
	return f ? f : "tests/fixtures";
}

static void test_expand(void **state)
{
	char *err = NULL, *s;
	(void)state;
	setenv("KVB_T_A", "alpha", 1);
	setenv("KVB_T_EMPTY", "", 1);
	unsetenv("KVB_T_UNSET");

	s = kvb_suite_expand("x${KVB_T_A}y", &err);
	assert_string_equal(s, "xalphay");
	free(s);
	s = kvb_suite_expand("${KVB_T_UNSET:-def}", &err);
	assert_string_equal(s, "def");
	free(s);
	s = kvb_suite_expand("${KVB_T_EMPTY:-def}", &err);
	assert_string_equal(s, "def");
	free(s);
	s = kvb_suite_expand("${KVB_T_A:-def}", &err);
	assert_string_equal(s, "alpha");
	free(s);
	s = kvb_suite_expand("${KVB_T_UNSET:-${KVB_T_A}}/x", &err);
	assert_string_equal(s, "alpha/x");
	free(s);
	s = kvb_suite_expand("cost $$5 and $HOME {port}", &err);
	assert_string_equal(s, "cost $5 and $HOME {port}");
	free(s);
	s = kvb_suite_expand("${KVB_T_UNSET:-}", &err);
	assert_string_equal(s, "");
	free(s);

	assert_null(kvb_suite_expand("${KVB_T_UNSET}", &err));
	assert_non_null(strstr(err, "KVB_T_UNSET is not set"));
	free(err);
	assert_null(kvb_suite_expand("${KVB_T_A", &err));
	assert_non_null(strstr(err, "unterminated"));
	free(err);
	assert_null(kvb_suite_expand("${}", &err));
	free(err);
	assert_null(kvb_suite_expand("${1X}", &err));
	free(err);
}

static void test_duration(void **state)
{
	double d;
	(void)state;
	assert_int_equal(kvb_parse_duration("30", &d), 0);
	assert_true(d == 30);
	assert_int_equal(kvb_parse_duration("500ms", &d), 0);
	assert_true(d > 0.499 && d < 0.501);
	assert_int_equal(kvb_parse_duration("2m", &d), 0);
	assert_true(d == 120);
	assert_int_equal(kvb_parse_duration("1.5s", &d), 0);
	assert_true(d == 1.5);
	assert_int_equal(kvb_parse_duration("3 weeks", &d), -1);
	assert_int_equal(kvb_parse_duration("-1", &d), -1);
	assert_int_equal(kvb_parse_duration("", &d), -1);
}

static void test_good(void **state)
{
	struct kvb_suite s;
	char *path = xasprintf("%s/suites/good.yaml", fixtures());
	const struct kvb_suite_engine *e;
	const struct kvb_suite_test *t;
	const struct kvb_suite_workload *w;
	(void)state;

	unsetenv("KVB_TEST_MODEL");
	assert_int_equal(kvb_suite_load(&s, path, NULL), 0);
	assert_string_equal(s.name, "good");
	assert_string_equal(s.model, "kv-tiny");
	assert_true(s.startup_timeout_s == 30);
	assert_true(s.stop_grace_s == 2);
	assert_int_equal(s.n_engines, 4);

	e = kvb_suite_engine_find(&s, "cache");
	assert_non_null(e);
	assert_string_equal(e->preset, "kvserve");
	assert_int_equal(e->prefix_caching, -1);
	assert_false(e->baseline);
	assert_string_equal(e->args[0], "--threads");
	assert_string_equal(e->args[1], "1");
	assert_null(e->args[2]);
	assert_true(e->startup_timeout_s == 30); /* suite default */

	e = kvb_suite_engine_find(&s, "nocache");
	assert_int_equal(e->prefix_caching, 0);
	assert_true(e->baseline);

	e = kvb_suite_engine_find(&s, "lmc");
	assert_string_equal(e->preset, "vllm");
	assert_string_equal(e->connector, "lmcache");
	assert_int_equal(e->port, 8000);
	assert_int_equal(e->max_model_len, 8192);
	assert_string_equal(e->lmcache_env[0], "LMCACHE_CHUNK_SIZE=256");
	assert_string_equal(e->lmcache_env[1], "LMCACHE_LOCAL_CPU=true");
	assert_string_equal(e->lmcache_env[2], "LMCACHE_MAX_LOCAL_CPU_SIZE=5.0");
	assert_string_equal(e->lmcache_env[3], "LMCACHE_BLEND_CHECK_LAYERS=1,2");
	assert_string_equal(e->env[0], "PROMETHEUS_MULTIPROC_DIR=/tmp/lmc-prom");

	e = kvb_suite_engine_find(&s, "remote");
	assert_string_equal(e->preset, "url");

	w = kvb_suite_workload_find(&s, "docs");
	assert_non_null(w);
	assert_string_equal(w->type, "synthetic");
	assert_int_equal(w->params.n, 2);
	assert_string_equal(w->params.kv[0].key, "num_documents");
	assert_string_equal(w->params.kv[0].value, "4");
	assert_int_equal(w->params.kv[0].line, 33);
	assert_string_equal(w->params.kv[0].file, path);
	assert_string_equal(w->params.kv[1].value, "512,1024");

	assert_int_equal(s.n_tests, 2);
	t = &s.tests[0];
	assert_string_equal(t->name, "ttft");
	assert_true(t->parallel);
	assert_int_equal(t->passes, 2);
	assert_int_equal(t->concurrency, 2);
	assert_int_equal(t->seed, 7);
	assert_int_equal(t->n_engines, 2);
	assert_string_equal(t->arrival, "closed");
	assert_int_equal(t->n_checks, 4);
	assert_int_equal(t->checks[0].type, KVB_CHECK_MAX_TTFT);
	assert_string_equal(t->checks[0].stat, "p90");
	assert_int_equal(t->checks[0].pass, 1);
	assert_true(t->checks[0].limit == 0.5);
	assert_string_equal(t->checks[0].name, "max_ttft.cache");
	assert_int_equal(t->checks[1].type, KVB_CHECK_MIN_SPEEDUP);
	assert_string_equal(t->checks[1].baseline, "nocache");
	assert_string_equal(t->checks[1].candidate, "cache");
	/* cold vs warm on one engine */
	assert_string_equal(t->checks[2].baseline, "cache");
	assert_string_equal(t->checks[2].candidate, "cache");
	assert_int_equal(t->checks[2].baseline_pass, 0);
	assert_null(t->checks[3].engine);
	assert_string_equal(s.tests[1].engines[0], "cache");
	assert_false(s.tests[1].parallel);
	assert_int_equal(s.tests[1].passes, 1);
	kvb_suite_release(&s);

	/* overrides: environment and -m */
	setenv("KVB_TEST_MODEL", "from-env", 1);
	assert_int_equal(kvb_suite_load(&s, path, NULL), 0);
	assert_string_equal(s.model, "from-env");
	kvb_suite_release(&s);
	assert_int_equal(kvb_suite_load(&s, path, "from-flag"), 0);
	assert_string_equal(s.model, "from-flag");
	kvb_suite_release(&s);
	unsetenv("KVB_TEST_MODEL");
	free(path);
}

/* Loads path with stderr captured; returns what was printed. */
static char *load_capture(const char *path, int *rc)
{
	char tmpl[] = "/tmp/kvb-test-XXXXXX";
	int fd = mkstemp(tmpl), saved;
	struct kvb_suite s;
	char *out;

	assert_true(fd >= 0);
	fflush(stderr);
	saved = dup(2);
	dup2(fd, 2);
	*rc = kvb_suite_load(&s, path, NULL);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fd);
	if (*rc == 0)
		kvb_suite_release(&s);
	out = kv_read_file(tmpl, 1 << 20, NULL);
	unlink(tmpl);
	return out;
}


static const char claims_yaml[] =
	"engines:\n"
	"  apc: {preset: kvserve}\n"
	"  off: {preset: kvserve, prefix_caching: false}\n"
	"  offarg: {preset: kvserve, args: [--no-prefix-cache]}\n"
	"  conn: {preset: kvserve, prefix_caching: false, args: [--kv-cpu-bytes, 1GiB]}\n"
	"  disk: {preset: kvserve, prefix_caching: false, args: [\"--kv-disk-dir=/tmp/x\"]}\n"
	"  remote: {preset: kvserve, prefix_caching: false, args: [--kv-remote-url, \"kv://h:1\"]}\n"
	"  said: {preset: kvserve, prefix_caching: false, claims_reuse: true}\n"
	"  denied: {preset: kvserve, claims_reuse: false}\n"
	"  vllm: {preset: vllm, model: m}\n"
	"  vllm-off: {preset: vllm, model: m, prefix_caching: false}\n"
	"  vllm-lmc: {preset: vllm, model: m, prefix_caching: false, connector: lmcache}\n"
	"  sgl: {preset: sglang, model: m}\n"
	"  sgl-off: {preset: sglang, model: m, args: [--disable-radix-cache]}\n"
	"  llama: {preset: llama.cpp, model: m}\n"
	"  llama-off: {preset: llama.cpp, model: m, args: [--no-cache-prompt]}\n"
	"  url: {url: \"http://127.0.0.1:1\"}\n"
	"  url-said: {url: \"http://127.0.0.1:1\", claims_reuse: true}\n"
	"  cmd: {command: [x, \"{port}\"]}\n"
	"workloads:\n"
	"  w: {type: synthetic}\n"
	"tests:\n"
	"  t: {workload: w, engines: [apc]}\n";

static void test_claims_reuse(void **state)
{
	struct kvb_suite s;
	static const struct {
		const char *name;
		bool claims;
	} want[] = {
		{ "apc", true }, { "off", false }, { "offarg", false }, { "conn", true },
		{ "disk", true }, { "remote", true }, { "said", true }, { "denied", false },
		{ "vllm", true }, { "vllm-off", false }, { "vllm-lmc", true }, { "sgl", true },
		{ "sgl-off", false }, { "llama", true }, { "llama-off", false }, { "url", false },
		{ "url-said", true }, { "cmd", false },
	};
	(void)state;

	assert_int_equal(kvb_suite_load_buf(&s, "claims.yaml", claims_yaml, strlen(claims_yaml),
					    NULL), 0);
	for (size_t i = 0; i < KV_ARRAY_SIZE(want); i++) {
		const struct kvb_suite_engine *e = kvb_suite_engine_find(&s, want[i].name);
		assert_non_null(e);
		if (kvb_suite_engine_claims_reuse(e) != want[i].claims)
			fail_msg("engine %s: claims_reuse %d, want %d", want[i].name,
				 kvb_suite_engine_claims_reuse(e), want[i].claims);
	}
	assert_true(s.tests[0].claims_reuse);
	assert_false(kvb_suite_test_is_matrix(&s.tests[0]));
	assert_int_equal(s.tests[0].repeat, 1);
	assert_true(s.tests[0].stream);
	kvb_suite_release(&s);
}

static const char matrix_yaml[] =
	"engines:\n"
	"  ref: {preset: kvserve, prefix_caching: false}\n"
	"  f: {preset: kvserve, prefix_caching: false, args: [--kv-cpu-bytes, 64MiB]}\n"
	"workloads:\n"
	"  w: {type: synthetic}\n"
	"tests:\n"
	"  row:\n"
	"    fault: \"zero-tail\"\n"
	"    class: B\n"
	"    expect: detect\n"
	"    repeat: 3\n"
	"    restart: true\n"
	"    passes: 2\n"
	"    abort_every: 4\n"
	"    abort_after_tokens: 2\n"
	"    abort_after: 500ms\n"
	"    stream: false\n"
	"    claims_reuse: false\n"
	"    tags: [reduced, B]\n"
	"    workload: w\n"
	"    engines: [ref, f]\n"
	"    checks:\n"
	"      - {type: identity, baseline: ref, candidate: f, tolerance: fp32, strict: true}\n"
	"      - {type: identity, name: id2, baseline: ref, candidate: f, near_tie_nats: 0.5}\n"
	"      - {type: logprobs, baseline: ref, candidate: f, prompt: true, max_kl: 0.2}\n"
	"      - {type: logprobs, baseline: ref, candidate: f, max_lp_delta: 0.3}\n"
	"      - {type: cache_path, engine: f, pass: 1}\n"
	"      - {type: key_isolation, engine: f}\n"
	"  clean: {workload: w, engines: [ref, f], expect: pass}\n";

static void test_matrix_keys(void **state)
{
	struct kvb_suite s;
	const struct kvb_suite_test *t;
	const struct kvb_suite_check *k;
	(void)state;

	assert_int_equal(kvb_suite_load_buf(&s, "m.yaml", matrix_yaml, strlen(matrix_yaml), NULL), 0);
	t = &s.tests[0];
	assert_string_equal(t->fault, "zero-tail");
	assert_string_equal(t->fclass, "B");
	assert_true(t->expect_set && t->expect_detect);
	assert_int_equal(t->repeat, 3);
	assert_true(t->restart);
	assert_int_equal(t->abort_every, 4);
	assert_int_equal(t->abort_after_tokens, 2);
	assert_true(t->abort_after_s == 0.5);
	assert_false(t->stream);
	assert_false(t->claims_reuse);
	assert_true(kvb_suite_test_tagged(t, "reduced"));
	assert_true(kvb_suite_test_tagged(t, "B"));
	assert_false(kvb_suite_test_tagged(t, "clean"));
	assert_true(kvb_suite_test_tagged(t, NULL));
	assert_true(kvb_suite_test_is_matrix(t));
	assert_int_equal(t->n_checks, 6);
	k = &t->checks[0];
	assert_int_equal(k->type, KVB_CHECK_IDENTITY);
	assert_string_equal(k->tolerance, "fp32");
	assert_true(k->strict);
	assert_true(k->near_tie_nats < 0); /* from the tolerance */
	assert_string_equal(k->name, "identity.f");
	assert_true(t->checks[1].near_tie_nats == 0.5);
	k = &t->checks[2];
	assert_int_equal(k->type, KVB_CHECK_LOGPROBS);
	assert_true(k->prompt);
	assert_true(k->max_kl == 0.2);
	assert_string_equal(k->name, "prompt_logprobs.f");
	assert_string_equal(t->checks[3].name, "logprobs.f");
	assert_true(t->checks[3].max_lp_delta == 0.3);
	assert_int_equal(t->checks[4].type, KVB_CHECK_CACHE_PATH);
	assert_int_equal(t->checks[4].pass, 1);
	assert_string_equal(t->checks[4].name, "cache_path.f");
	assert_int_equal(t->checks[5].type, KVB_CHECK_KEY_ISOLATION);
	t = &s.tests[1];
	assert_true(t->expect_set && !t->expect_detect);
	assert_null(t->fault);
	assert_true(kvb_suite_test_is_matrix(t));
	assert_false(kvb_suite_test_tagged(t, "reduced"));
	kvb_suite_release(&s);
}

/* examples/faults.yaml loads, and its reduced tag holds one fault per class */
static void test_faults_example(void **state)
{
	struct kvb_suite s;
	char *path = xasprintf("%s/../../examples/faults.yaml", fixtures());
	const char *classes[] = { "R/E", "F", "K2", "S", "K1", "B", "L", "Q" };
	size_t clean = 0;
	(void)state;

	assert_int_equal(kvb_suite_load(&s, path, NULL), 0);
	for (size_t c = 0; c < KV_ARRAY_SIZE(classes); c++) {
		bool found = false;
		for (size_t i = 0; i < s.n_tests; i++) {
			const struct kvb_suite_test *t = &s.tests[i];
			found |= t->fclass && !strcmp(t->fclass, classes[c]) && t->expect_detect &&
				 kvb_suite_test_tagged(t, "reduced");
		}
		if (!found)
			fail_msg("no reduced fault row of class %s", classes[c]);
	}
	for (size_t i = 0; i < s.n_tests; i++) {
		const struct kvb_suite_test *t = &s.tests[i];
		clean += t->expect_set && !t->expect_detect && kvb_suite_test_tagged(t, "reduced");
		/* every row compares with a reference or probes keys: never without checks */
		if (kvb_suite_test_is_matrix(t) && !t->n_checks)
			fail_msg("row %s has no checks", t->name);
	}
	assert_true(clean >= 5);
	kvb_suite_release(&s);
	free(path);
}

static void test_bad_fixtures(void **state)
{
	char *dir = xasprintf("%s/suites/bad", fixtures());
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	(void)state;

	assert_non_null(d);
	unsetenv("KVB_SURELY_UNSET_VARIABLE");
	while ((de = readdir(d))) {
		char *path, *text, *nl, *expect, *want, *got;
		int rc, lines = 0;
		if (!strstr(de->d_name, ".yaml"))
			continue;
		path = xasprintf("%s/%s", dir, de->d_name);
		text = kv_read_file(path, 1 << 20, NULL);
		assert_non_null(text);
		assert_true(!strncmp(text, "# expect: ", 10));
		nl = strchr(text, '\n');
		*nl = '\0';
		expect = text + 10;
		want = xasprintf("kvbench: error: %s:%s", path, expect);
		kv_set_progname("kvbench");
		got = load_capture(path, &rc);
		for (char *p = got; *p; p++)
			lines += *p == '\n';
		if (rc != -1 || lines != 1 || strncmp(got, want, strlen(want)))
			fail_msg("%s: expected one line starting\n  %s\ngot (rc %d):\n  %s",
				 de->d_name, want, rc, got);
		free(got);
		free(want);
		free(text);
		free(path);
		n++;
	}
	closedir(d);
	free(dir);
	assert_true(n >= 16);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_expand),
		cmocka_unit_test(test_duration),
		cmocka_unit_test(test_good),
		cmocka_unit_test(test_bad_fixtures),
		cmocka_unit_test(test_claims_reuse),
		cmocka_unit_test(test_matrix_keys),
		cmocka_unit_test(test_faults_example),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
