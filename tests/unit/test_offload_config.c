/* Unit tests of the offload config: LMCache YAML keys, errors with
 * file:line, LMCACHE_* env overrides and the --kv-* option group. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <unistd.h>

#include "offload_fake.h"
#include "offload/offload.h"

static char *dir;

static char *write_cfg(const char *name, const char *text)
{
	char *p = xasprintf("%s/%s", dir, name);
	if (kv_write_file_atomic(p, text, strlen(text)) < 0)
		abort();
	return p;
}

/* Runs load_file with stderr captured; returns rc and the message. */
static int load_capture(struct kvo_config *c, const char *path, char *msg, size_t cap)
{
	char *errp = xasprintf("%s/stderr.txt", dir);
	FILE *f;
	int rc, saved = dup(2);
	size_t n;
	f = fopen(errp, "w+");
	fflush(stderr);
	dup2(fileno(f), 2);
	rc = kvo_config_load_file(c, path);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(f);
	n = fread(msg, 1, cap - 1, f);
	msg[n] = 0;
	fclose(f);
	free(errp);
	return rc;
}

static void test_yaml_ok(void **state)
{
	struct kvo_config c;
	char *p, msg[4096];
	(void)state;
	p = write_cfg("ok.yaml",
		      "# LMCache config\n"
		      "chunk_size: 64\n"
		      "local_cpu: True\n"
		      "max_local_cpu_size: 1.5\n"
		      "local_disk: \"file:///tmp/kvo-disk/\"\n"
		      "max_local_disk_size: 2\n"
		      "remote_url: kv://127.0.0.1:8100\n"
		      "remote_serde: naive\n"
		      "save_decode_cache: false\n"
		      "save_unfull_chunk: yes\n"
		      "min_retrieve_tokens: 128\n"
		      "use_layerwise: false\n"
		      "blend_check_layers: [1, 2]\n"
		      "extra_config: {a: 1}\n");
	kvo_config_init(&c);
	assert_int_equal(load_capture(&c, p, msg, sizeof(msg)), 0);
	assert_int_equal(c.chunk_size, 64);
	assert_true(c.local_cpu);
	assert_int_equal(c.cpu_bytes, 1500000000ull);
	assert_string_equal(c.disk_dir, "/tmp/kvo-disk/");
	assert_int_equal(c.disk_bytes, 2000000000ull);
	assert_string_equal(c.remote_url, "kv://127.0.0.1:8100");
	assert_int_equal(c.remote_enc, KVO_ENC_FP32);
	assert_true(c.save_unfull_chunk);
	assert_int_equal(c.min_retrieve_tokens, 128);
	/* one warning line per unimplemented LMCache key, naming it */
	assert_non_null(strstr(msg, "ok.yaml:12: LMCache key 'use_layerwise' is not implemented"));
	assert_non_null(strstr(msg, "'blend_check_layers'"));
	assert_non_null(strstr(msg, "ok.yaml:14: LMCache key 'extra_config'"));
	kvo_config_release(&c);
	free(p);
	/* null values and an empty file */
	p = write_cfg("null.yaml", "local_disk: null\nremote_url: ~\n");
	kvo_config_init(&c);
	assert_int_equal(load_capture(&c, p, msg, sizeof(msg)), 0);
	assert_null(c.disk_dir);
	assert_null(c.remote_url);
	free(p);
	p = write_cfg("empty.yaml", "");
	assert_int_equal(load_capture(&c, p, msg, sizeof(msg)), 0);
	assert_int_equal(c.chunk_size, 256);
	assert_int_equal(c.cpu_bytes, 5000000000ull);
	free(p);
}

static void test_yaml_errors(void **state)
{
	static const struct { const char *text, *want; } cases[] = {
		{ "chunk_size: 64\ncolour: blue\n", "bad.yaml:2: unknown key 'colour'" },
		{ "chunk_size: x\n", "bad.yaml:1: chunk_size: expected an integer" },
		{ "chunk_size: 0\n", "bad.yaml:1: chunk_size" },
		{ "\n\nlocal_cpu: maybe\n", "bad.yaml:3: local_cpu: expected true or false" },
		{ "max_local_cpu_size: -1\n", "bad.yaml:1: max_local_cpu_size: expected a size in GB" },
		{ "remote_url: lm://h:1\n", "bad.yaml:1: remote_url: scheme 'lm' is not supported" },
		{ "remote_url: redis://h:1\n", "scheme 'redis'" },
		{ "remote_url: h:1\n", "has no scheme" },
		{ "remote_serde: cachegen\n", "bad.yaml:1: remote_serde: 'cachegen' not implemented" },
		{ "remote_serde: zstd\n", "bad.yaml:1: remote_serde: expected" },
		{ "- a\n- b\n", "bad.yaml:1: expected a mapping" },
		{ "chunk_size: [1]\n", "bad.yaml:1: chunk_size: expected a single value" },
		{ "a: [1\n", "bad.yaml:" },
		{ "chunk_size: 1\n---\nchunk_size: 2\n", "only one YAML document" },
	};
	(void)state;
	for (size_t i = 0; i < KV_ARRAY_SIZE(cases); i++) {
		struct kvo_config c;
		char *p = write_cfg("bad.yaml", cases[i].text), msg[4096];
		kvo_config_init(&c);
		assert_int_equal(load_capture(&c, p, msg, sizeof(msg)), -1);
		if (!strstr(msg, cases[i].want))
			fail_msg("case %zu: want '%s' in '%s'", i, cases[i].want, msg);
		{ /* exactly one error line */
			const char *e = strstr(msg, "error:");
			assert_non_null(e);
			assert_null(strstr(e + 1, "error:"));
		}
		kvo_config_release(&c);
		free(p);
	}
	{
		struct kvo_config c;
		char msg[512];
		kvo_config_init(&c);
		assert_int_equal(load_capture(&c, "/nonexistent/x.yaml", msg, sizeof(msg)), -1);
		assert_non_null(strstr(msg, "/nonexistent/x.yaml: cannot open"));
	}
}

static void test_env_and_flags(void **state)
{
	struct kvo_config c;
	struct kv_opt opts[32];
	size_t n = 0;
	bool on;
	char *p;
	(void)state;
	p = write_cfg("env.yaml", "chunk_size: 64\nmax_local_cpu_size: 2.0\nlocal_cpu: true\n");
	/* no flag and no LMCACHE_CONFIG_FILE: off */
	unsetenv("LMCACHE_CONFIG_FILE");
	kvo_opts_reset();
	assert_int_equal(kvo_config_from_flags(&c, &on), 0);
	assert_false(on);
	kvo_config_release(&c);
	/* file from env; env overrides file values; LMCache's bool rule */
	setenv("LMCACHE_CONFIG_FILE", p, 1);
	setenv("LMCACHE_CHUNK_SIZE", "'32'", 1);
	setenv("LMCACHE_LOCAL_CPU", "yes", 1); /* not "true"/"1": false */
	setenv("LMCACHE_SAVE_DECODE_CACHE", "True", 1);
	assert_int_equal(kvo_config_from_flags(&c, &on), 0);
	assert_true(on);
	assert_int_equal(c.chunk_size, 32);
	assert_false(c.local_cpu);
	assert_true(c.save_decode_cache);
	assert_int_equal(c.cpu_bytes, 2000000000ull);
	kvo_config_release(&c);
	/* flags override env and file */
	{
		char *argv[] = { "kvserve", "--kv-chunk-size", "16", "--kv-cpu-bytes", "64MiB",
				 "--kv-encoding", "int8", "--kv-fault", "bitflip:0.5",
				 "--kv-fault", "drop-key:salt", "--kv-remote-url", "kv://127.0.0.1:9",
				 "--kv-remote-timeout", "0.25", NULL };
		struct kv_cmd_info info = { "kvserve", "[options]", "test", NULL };
		n = kvo_opts_copy(opts, 31);
		opts[n] = (struct kv_opt)KV_OPT_END;
		assert_int_equal(kv_opt_parse(&info, opts, 15, argv, NULL), 0);
		assert_int_equal(kvo_config_from_flags(&c, &on), 0);
		assert_int_equal(c.chunk_size, 16);
		assert_int_equal(c.cpu_bytes, 64ull << 20);
		assert_true(c.local_cpu);
		assert_int_equal(c.encoding, KVO_ENC_INT8);
		assert_int_equal(c.remote_enc, KVO_ENC_INT8);
		assert_true(c.faults.on[KVO_F_BITFLIP]);
		assert_true(c.faults.prob[KVO_F_BITFLIP] == 0.5);
		assert_int_equal(kvo_faults_key_drop(&c.faults), KVO_DIM_SALT);
		assert_string_equal(c.remote_url, "kv://127.0.0.1:9");
		assert_true(c.remote_timeout_s == 0.25);
		kvo_config_release(&c);
		/* remote_serde from the environment survives --kv-encoding */
		setenv("LMCACHE_REMOTE_SERDE", "bf16", 1);
		assert_int_equal(kvo_config_from_flags(&c, &on), 0);
		assert_int_equal(c.encoding, KVO_ENC_INT8);
		assert_int_equal(c.remote_enc, KVO_ENC_BF16);
		unsetenv("LMCACHE_REMOTE_SERDE");
		kvo_config_release(&c);
	}
	/* a bad flag value is an error */
	{
		char *argv[] = { "kvserve", "--kv-fault", "nope", NULL };
		struct kv_cmd_info info = { "kvserve", "[options]", "test", NULL };
		kvo_opts_reset();
		assert_int_equal(kv_opt_parse(&info, opts, 3, argv, NULL), -1);
	}
	{
		char *argv[] = { "kvserve", "--kv-remote-url", "redis://x:1", NULL };
		struct kv_cmd_info info = { "kvserve", "[options]", "test", NULL };
		kvo_opts_reset();
		assert_int_equal(kv_opt_parse(&info, opts, 3, argv, NULL), 0);
		assert_int_equal(kvo_config_from_flags(&c, &on), -1);
		kvo_config_release(&c);
	}
	/* a bad env value names the variable */
	setenv("LMCACHE_MAX_LOCAL_CPU_SIZE", "lots", 1);
	kvo_opts_reset();
	assert_int_equal(kvo_config_from_flags(&c, &on), -1);
	kvo_config_release(&c);
	unsetenv("LMCACHE_MAX_LOCAL_CPU_SIZE");
	unsetenv("LMCACHE_CONFIG_FILE");
	unsetenv("LMCACHE_CHUNK_SIZE");
	unsetenv("LMCACHE_LOCAL_CPU");
	unsetenv("LMCACHE_SAVE_DECODE_CACHE");
	free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_yaml_ok),
		cmocka_unit_test(test_yaml_errors),
		cmocka_unit_test(test_env_and_flags),
	};
	int rc;
	dir = fake_tmpdir();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	fake_rmdir(dir);
	free(dir);
	return rc;
}
