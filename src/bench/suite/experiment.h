/*
 * experiment.h: runs one test of a suite: its workload against its engines
 * (all at once, or one after the other), for each pass, while watching the
 * engines; merges the per-run files into TEST_DIR/requests.csv,
 * outputs.jsonl and summary.json; evaluates the checks.
 *
 * The engines are started and stopped by the caller (cmd_run.c); this code
 * only watches them (waitpid WNOHANG from a watcher thread while kvb_run
 * runs on this thread). An engine that dies cancels the run at once and the
 * test is an ERROR naming the engine, how it ended and the tail of its log.
 */
#ifndef KVB_EXPERIMENT_H
#define KVB_EXPERIMENT_H

#include <signal.h>

#include "engines/engine.h"
#include "suite/results.h"
#include "suite/suite.h"

struct kvb_exp {
	const struct kvb_suite *suite;
	const struct kvb_suite_test *test;
	struct kvb_engine **engines;   /* the test's engines that take part; not owned */
	size_t n_engines;
	const char *const *skipped;    /* engine names left out (--quick), NULL-terminated */
	const char *test_dir;          /* created by the caller */
	volatile sig_atomic_t *interrupt; /* set by SIGINT/SIGTERM */
	bool progress;
};

/*
 * Runs the test and fills res (verdict, reason, checks, duration). Returns 0;
 * -1 only when the results could not be written (printed).
 */
int kvb_exp_run(const struct kvb_exp *x, struct kvb_test_result *res);

/*
 * Creates the test's workload once and frees it, to check its parameters
 * (unknown keys, bad values: one FILE:LINE error). 0 or -1.
 */
int kvb_exp_validate_workload(const struct kvb_suite *s, const struct kvb_suite_workload *w,
			      uint64_t seed);

/*
 * /metrics of one engine (Prometheus text) at the start of each pass and at
 * the end: text[p] before pass p (after a restart: of the new process),
 * text[n_passes] after the last pass. NULL where it could not be read.
 */
struct kvb_exp_snap {
	const char *engine;
	bool claims;       /* the engine claims reuse in this test: implicit checks */
	char **text;       /* n_passes + 1 entries */
	int n_passes;
};

/*
 * Evaluates the checks of test t over groups (the JSON array of per
 * (engine, pass) statistics, docs/RESULTS.md) and appends them to res.
 * skipped: engines not run (--quick); checks needing them are SKIPPED.
 * test_dir: where outputs.jsonl is (read once, when a check needs records).
 * snaps (n_snaps, may be 0): /metrics of the engines, for the explicit
 * cache_path and key_isolation checks, and for every snap with claims set
 * the implicit cache_path.ENGINE and silent_miss.ENGINE over the last pass.
 */
void kvb_exp_checks(const struct kvb_suite_test *t, const char *groups_json,
		    const char *const *skipped, const char *test_dir,
		    const struct kvb_exp_snap *snaps, size_t n_snaps,
		    struct kvb_test_result *res);

/*
 * Stops engine e and starts it again (restart: true, repeat:), waiting until
 * it is ready. 0, or -1 with a one-line reason in *why (malloc'ed) and
 * *cancelled set when interrupt cut the wait.
 */
int kvb_exp_restart_engine(struct kvb_engine *e, volatile sig_atomic_t *interrupt, char **why,
			   bool *cancelled);

/* Whether engine e takes part in test t as a cache engine that claims reuse. */
bool kvb_exp_claims(const struct kvb_suite_test *t, const struct kvb_suite_engine *e);

#endif
