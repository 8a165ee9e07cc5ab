/*
 * GPU memory from nvidia-smi: a stand-in nvidia-smi on PATH prints compute
 * apps; only the processes of the asked process group count. Without one, or
 * when it hangs past the timeout, the answer is "unknown" (-1), in bounded time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/util.h"
#include "engines/engine.h"

static char dir[] = "/tmp/kvb-gpu-XXXXXX";
static char *old_path;

static void script(const char *body)
{
	char *p = xasprintf("%s/nvidia-smi", dir);
	char *text = xasprintf("#!/bin/sh\n%s\n", body);
	assert_int_equal(kv_write_file_atomic(p, text, strlen(text)), 0);
	assert_int_equal(chmod(p, 0755), 0);
	free(text);
	free(p);
}

static void test_gpu_memory(void **state)
{
	uint64_t bytes = 7;
	uint64_t t0;
	char *body;
	(void)state;

	assert_non_null(mkdtemp(dir));
	old_path = xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
	setenv("PATH", dir, 1); /* only the stand-in, or nothing */

	assert_int_equal(kvb_gpu_memory(getpgid(0), 2, &bytes), -1); /* no nvidia-smi */

	body = xasprintf("echo '%d, 1000'\necho '1, 500'\necho 'garbage'\necho '%d, 24'",
			 (int)getpid(), (int)getpid());
	script(body);
	free(body);
	assert_int_equal(kvb_gpu_memory(getpgid(0), 5, &bytes), 0);
	assert_true(bytes == (uint64_t)1024 * 1024 * 1024); /* 1000 + 24 MiB; pid 1 is not ours */

	script("exit 9");
	assert_int_equal(kvb_gpu_memory(getpgid(0), 5, &bytes), -1);

	script("exec /bin/sleep 30");
	t0 = kv_now_ns();
	assert_int_equal(kvb_gpu_memory(getpgid(0), 0.5, &bytes), -1);
	assert_true(kv_ns_to_s(kv_now_ns() - t0) >= 0.45); /* it did hang, and was cut */
	assert_true(kv_ns_to_s(kv_now_ns() - t0) < 5);

	setenv("PATH", old_path, 1);
	free(old_path);
	{
		char *cmd = xasprintf("rm -rf '%s'", dir);
		if (system(cmd))
			(void)0;
		free(cmd);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gpu_memory),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
