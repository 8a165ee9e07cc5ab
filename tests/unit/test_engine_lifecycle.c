/*
 * Engine lifecycle with the fake_engine helper: start in a new process group,
 * readiness, an engine that exits at start, one that never becomes healthy,
 * one that dies while watched, one that ignores SIGTERM (SIGKILL after the
 * grace period, its child too), a program that does not exist, and the
 * emergency kill-all. After every case the process group must be gone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/util.h"
#include "engines/engine.h"
#include "suite/suite.h"

static struct kvb_suite suite;
static char logdir[] = "/tmp/kvb-engine-test-XXXXXX";

static int setup(void **state)
{
	const char *f = getenv("KV_FIXTURES"), *b = getenv("KV_BUILD");
	char *path = xasprintf("%s/suites/lifecycle.yaml", f ? f : "tests/fixtures");
	char *fake = xasprintf("%s/tests/fake_engine", b ? b : "build");
	int rc;
	(void)state;
	setenv("FAKE", fake, 1);
	free(fake);
	rc = kvb_suite_load(&suite, path, NULL);
	free(path);
	if (!mkdtemp(logdir))
		return -1;
	return rc;
}

static int teardown(void **state)
{
	char *cmd = xasprintf("rm -rf '%s'", logdir);
	(void)state;
	kvb_suite_release(&suite);
	if (system(cmd))
		(void)0;
	free(cmd);
	return 0;
}

static void prepare(struct kvb_engine *e, const char *name)
{
	assert_int_equal(kvb_engine_prepare(e, kvb_suite_engine_find(&suite, name), &suite,
					    logdir, 0), 0);
}

static bool group_exists(pid_t pgid)
{
	return !(kill(-pgid, 0) < 0 && errno == ESRCH);
}

static void test_healthy(void **state)
{
	struct kvb_engine e;
	char *tail;
	pid_t pg;
	(void)state;
	prepare(&e, "healthy");
	assert_int_equal(kvb_engine_start(&e), 0);
	pg = e.pgid;
	assert_true(pg > 0);
	assert_int_equal(getpgid(e.pid), pg); /* its own group */
	assert_true(getpgid(0) != pg);
	assert_int_equal(kvb_engine_wait_ready(&e, NULL), KVB_READY);
	assert_true(kvb_engine_alive(&e));
	assert_int_equal(kvb_http_probe(e.base_url, "/health", 2), 200);
	kvb_engine_stop(&e);
	assert_false(group_exists(pg)); /* the forked child went too */
	assert_true(e.exited);
	assert_true(WIFSIGNALED(e.wstatus) && WTERMSIG(e.wstatus) == SIGTERM);
	tail = kvb_engine_log_tail(&e, 5);
	assert_non_null(strstr(tail, "fake_engine: pid"));
	free(tail);
	kvb_engine_release(&e);
}

static void test_exits_at_start(void **state)
{
	struct kvb_engine e;
	uint64_t t0 = kv_now_ns();
	char *tail;
	(void)state;
	prepare(&e, "exits");
	assert_int_equal(kvb_engine_start(&e), 0);
	assert_int_equal(kvb_engine_wait_ready(&e, NULL), KVB_READY_DIED);
	assert_true(kv_ns_to_s(kv_now_ns() - t0) < 5); /* not the 10 s timeout */
	assert_string_equal(kvb_engine_exit_text(&e), "exited with status 3");
	tail = kvb_engine_log_tail(&e, 3);
	assert_non_null(strstr(tail, "cannot load model"));
	free(tail);
	kvb_engine_stop(&e);
	assert_false(group_exists(e.pgid));
	kvb_engine_release(&e);
}

static void test_never_healthy(void **state)
{
	struct kvb_engine e;
	uint64_t t0 = kv_now_ns();
	double took;
	(void)state;
	prepare(&e, "never");
	assert_int_equal(kvb_engine_start(&e), 0);
	assert_int_equal(kvb_engine_wait_ready(&e, NULL), KVB_READY_TIMEOUT);
	took = kv_ns_to_s(kv_now_ns() - t0);
	assert_true(took >= 1.4 && took < 8);
	kvb_engine_stop(&e);
	assert_false(group_exists(e.pgid));
	kvb_engine_release(&e);
}

static void test_stubborn_gets_sigkill(void **state)
{
	struct kvb_engine e;
	uint64_t t0;
	double took;
	(void)state;
	prepare(&e, "stubborn");
	assert_int_equal(kvb_engine_start(&e), 0);
	assert_int_equal(kvb_engine_wait_ready(&e, NULL), KVB_READY);
	t0 = kv_now_ns();
	kvb_engine_stop(&e);
	took = kv_ns_to_s(kv_now_ns() - t0);
	assert_true(took >= 0.45 && took < 8);
	assert_false(group_exists(e.pgid));
	assert_true(WIFSIGNALED(e.wstatus) && WTERMSIG(e.wstatus) == SIGKILL);
	kvb_engine_release(&e);
}

static void test_dies_while_watched(void **state)
{
	struct kvb_engine e;
	uint64_t deadline;
	(void)state;
	prepare(&e, "dies");
	assert_int_equal(kvb_engine_start(&e), 0);
	assert_int_equal(kvb_engine_wait_ready(&e, NULL), KVB_READY);
	deadline = kv_now_ns() + 10000000000ull;
	while (kvb_engine_alive(&e) && kv_now_ns() < deadline) {
		struct timespec ts = { 0, 50000000 };
		nanosleep(&ts, NULL);
	}
	assert_false(kvb_engine_alive(&e));
	assert_string_equal(kvb_engine_exit_text(&e), "exited with status 7");
	{
		char *tail = kvb_engine_log_tail(&e, 2);
		assert_non_null(strstr(tail, "illegal memory access"));
		free(tail);
	}
	kvb_engine_stop(&e);
	assert_false(group_exists(e.pgid));
	kvb_engine_release(&e);
}

static void test_slow_and_missing(void **state)
{
	struct kvb_engine e;
	(void)state;
	prepare(&e, "slow");
	assert_int_equal(kvb_engine_start(&e), 0);
	assert_int_equal(kvb_http_probe(e.base_url, "/v1/models", 2) == 200, 0);
	assert_int_equal(kvb_engine_wait_ready(&e, NULL), KVB_READY);
	assert_true(kv_ns_to_s(e.ready_ns - e.started_ns) >= 0.6);
	kvb_engine_stop(&e);
	assert_false(group_exists(e.pgid));
	kvb_engine_release(&e);

	prepare(&e, "missing");
	assert_int_equal(kvb_engine_start(&e), -1);
	assert_int_equal(e.pid, 0);
	kvb_engine_release(&e);
}

static void test_cancel_and_kill_all(void **state)
{
	struct kvb_engine a, b;
	volatile sig_atomic_t cancel = 1;
	pid_t pa, pb;
	(void)state;
	prepare(&a, "healthy");
	prepare(&b, "stubborn");
	assert_int_equal(kvb_engine_start(&a), 0);
	assert_int_equal(kvb_engine_start(&b), 0);
	pa = a.pgid;
	pb = b.pgid;
	assert_int_equal(kvb_engine_wait_ready(&a, &cancel), KVB_READY_CANCELLED);
	assert_int_equal(kvb_engine_wait_ready(&b, NULL), KVB_READY);
	kvb_engines_kill_all(0.5);
	assert_false(group_exists(pa));
	assert_false(group_exists(pb));
	kvb_engine_stop(&a); /* nothing left: returns at once */
	kvb_engine_stop(&b);
	kvb_engine_release(&a);
	kvb_engine_release(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_healthy),
		cmocka_unit_test(test_exits_at_start),
		cmocka_unit_test(test_never_healthy),
		cmocka_unit_test(test_stubborn_gets_sigkill),
		cmocka_unit_test(test_dies_while_watched),
		cmocka_unit_test(test_slow_and_missing),
		cmocka_unit_test(test_cancel_and_kill_all),
	};
	/* engines' children are reaped here, as in kvbench run */
	kvb_signals_install(NULL);
	return cmocka_run_group_tests(tests, setup, teardown);
}
