/*
 * kvbench run SUITE.yaml: start the suite's engines, run its tests, apply the
 * checks, write the results folder, stop every engine, print one verdict.
 */
#include "common/util.h"

#include <errno.h>
#include <fnmatch.h>
#include <math.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "report/report.h"
#include "common/clock.h"
#include "common/opt.h"
#include "engines/engine.h"
#include "suite/experiment.h"
#include "suite/results.h"
#include "suite/run.h"
#include "suite/suite.h"
#include "common/banned.h"

static volatile sig_atomic_t interrupted;

bool kvb_test_selected(const char *name, const char *filter)
{
	if (!filter || !*filter)
		return true;
	if (strpbrk(filter, "*?["))
		return !fnmatch(filter, name, 0);
	return strstr(name, filter) != NULL;
}

/* The engines the selected tests need, in suite order, with their requires. */
static void needed_engines(const struct kvb_suite *s, const char *filter, bool quick,
			   bool *need)
{
	for (size_t i = 0; i < s->n_tests; i++) {
		const struct kvb_suite_test *t = &s->tests[i];
		if (!kvb_test_selected(t->name, filter))
			continue;
		for (size_t k = 0; k < t->n_engines; k++) {
			const struct kvb_suite_engine *e = kvb_suite_engine_find(s, t->engines[k]);
			if (quick && e->baseline)
				continue;
			need[e - s->engines] = true;
		}
	}
	/* requires point upwards (checked at load): one backwards sweep closes them */
	for (size_t i = s->n_engines; i-- > 0;)
		if (need[i])
			for (char **r = s->engines[i].requires; r && *r; r++)
				need[kvb_suite_engine_find(s, *r) - s->engines] = true;
}

int kvb_suite_prepare_engines(const struct kvb_suite *s, const char *filter, bool quick,
			      const char *log_dir, struct kvb_engine **out, size_t *n_out)
{
	bool *need = xcalloc(s->n_engines ? s->n_engines : 1, sizeof(*need));
	struct kvb_engine *v = xcalloc(s->n_engines ? s->n_engines : 1, sizeof(*v));
	size_t n = 0;
	int rc = -1;

	needed_engines(s, filter, quick, need);
	for (size_t i = 0; i < s->n_engines; i++) {
		if (!need[i])
			continue;
		if (kvb_engine_prepare(&v[n], &s->engines[i], s, log_dir, 0) < 0)
			goto out;
		/* two engines may not get the same port */
		for (size_t j = 0; j < n; j++)
			if (v[j].argv && v[n].argv && v[j].port == v[n].port) {
				if (s->engines[i].port) {
					kv_error("%s:%d: engines.%s: port %d is also used by %s", s->file,
						 s->engines[i].line, v[n].name, v[n].port, v[j].name);
					n++;
					goto out;
				}
				kvb_engine_release(&v[n]);
				if (kvb_engine_prepare(&v[n], &s->engines[i], s, log_dir, 0) < 0)
					goto out;
				j = (size_t)-1;
			}
		n++;
	}
	rc = 0;
out:
	free(need);
	if (rc < 0) {
		for (size_t i = 0; i < n; i++)
			kvb_engine_release(&v[i]);
		free(v);
		v = NULL;
		n = 0;
	}
	*out = v;
	*n_out = n;
	return rc;
}

static struct kvb_engine *engine_by_name(struct kvb_engine *v, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].name, name))
			return &v[i];
	return NULL;
}

static void print_tests(const struct kvb_suite *s, const char *filter, bool quick)
{
	for (size_t i = 0; i < s->n_tests; i++) {
		const struct kvb_suite_test *t = &s->tests[i];
		const struct kvb_suite_workload *w = kvb_suite_workload_find(s, t->workload);
		if (!kvb_test_selected(t->name, filter))
			continue;
		printf("%s: %s (%s) on", t->name, w->name, w->type);
		for (size_t k = 0; k < t->n_engines; k++) {
			const struct kvb_suite_engine *e = kvb_suite_engine_find(s, t->engines[k]);
			printf(" %s%s", t->engines[k], e->baseline ? (quick ? "(skipped)" : "(baseline)")
								   : "");
		}
		printf(", %s, %d pass%s, %zu check%s", t->parallel ? "parallel" : "sequential",
		       t->passes, t->passes == 1 ? "" : "es", t->n_checks, t->n_checks == 1 ? "" : "s");
		if (t->description)
			printf(" - %s", t->description);
		printf("\n");
	}
}

/* results/<suite>-YYYYmmdd-HHMMSS[-N] */
static char *new_run_dir(const struct kvb_suite *s, char **run_id)
{
	time_t now = time(NULL);
	struct tm tm;
	char stamp[32];
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
	for (int k = 0; k < 1000; k++) {
		char *id = k ? xasprintf("%s-%s-%d", s->name, stamp, k) : xasprintf("%s-%s", s->name, stamp);
		char *dir = xasprintf("%s/%s", s->results_dir, id);
		struct stat st;
		if (stat(dir, &st) < 0 && errno == ENOENT) {
			*run_id = id;
			return dir;
		}
		free(id);
		free(dir);
	}
	*run_id = xstrdup(s->name);
	return xasprintf("%s/%s", s->results_dir, s->name);
}

static void print_verdict(const struct kvb_suite_result *r, const char *dir)
{
	enum kvb_verdict v = kvb_suite_verdict(r);
	printf("\n%-12s %-28s %s\n", "RESULT", "TEST", "WHY");
	for (size_t i = 0; i < r->n_tests; i++) {
		const struct kvb_test_result *t = &r->tests[i];
		printf("%-12s %-28s %s\n", kvb_verdict_name(t->verdict), t->name,
		       t->reason ? t->reason : "");
		for (size_t k = 0; k < t->n_checks; k++) {
			const struct kvb_check_result *c = &t->checks[k];
			char fig[48], thr[48];
			if (isnan(c->figure))
				snprintf(fig, sizeof(fig), "-");
			else
				snprintf(fig, sizeof(fig), "%.4g%s%s", c->figure, *c->unit ? " " : "",
					 c->unit);
			if (isnan(c->threshold))
				snprintf(thr, sizeof(thr), "-");
			else
				snprintf(thr, sizeof(thr), "%.4g%s%s", c->threshold, *c->unit ? " " : "",
					 c->unit);
			printf("  %-10s %-28s figure %s, threshold %s  %s\n", kvb_verdict_name(c->verdict),
			       c->name, fig, thr, c->reason);
		}
	}
	printf("\n%s  %s (%s/overall.result, %.1fs)\n", kvb_verdict_name(v), r->suite, dir,
	       r->duration_s);
	fflush(stdout);
}

int cmd_run(int argc, char **argv)
{
	const char *filter = NULL, *out_dir = NULL, *model = NULL;
	bool list = false, quick = false, dry = false, progress = true, report = true;
	struct kv_opt opts[] = {
		KV_OPT_GROUP("Selection"),
		KV_OPT_STRING('f', "filter", &filter, "PATTERN",
			      "run only tests whose name contains PATTERN (or matches a glob)"),
		KV_OPT_BOOL('l', "list", &list, "list the tests and exit"),
		KV_OPT_BOOL(0, "quick", &quick, "skip engines marked baseline: (and their checks)"),
		KV_OPT_GROUP("Output"),
		KV_OPT_STRING('o', "output-dir", &out_dir, "DIR",
			      "results folder of this run (default: RESULTS_DIR/SUITE-DATE-TIME)"),
		KV_OPT_BOOL(0, "progress", &progress, "live progress line on a terminal"),
		KV_OPT_BOOL(0, "report", &report,
			    "write report.html, report.pdf and charts/ into the results folder at the end"),
		KV_OPT_GROUP("Engines"),
		KV_OPT_STRING('m', "model", &model, "MODEL", "model of every engine (overrides model:)"),
		KV_OPT_BOOL(0, "dry-run", &dry,
			    "print the argv and environment of each engine, start nothing"),
		KV_OPT_END,
	};
	struct kv_cmd_info info = {
		"kvbench run", "[options] SUITE.yaml",
		"Start the suite's engines, run its tests, apply the checks, write the results\n"
		"folder (overall.result, <test>.result, summary.json, junit.xml, logs/), stop\n"
		"every engine. Suite files: docs/suite.md.",
		"Exit codes: 0 every test passed, 1 a check failed, 2 the suite file is wrong,\n"
		"3 an engine did not start or died, or the run was interrupted.\n"
		"Example: kvbench run examples/quickstart.yaml",
	};
	struct kvb_suite s;
	struct kvb_suite_result res = { 0 };
	struct kvb_engine *eng = NULL;
	size_t n_eng = 0;
	char *dir = NULL, *log_dir = NULL, *run_id = NULL;
	const char **skipped = NULL;
	size_t n_skipped = 0;
	uint64_t t0;
	int npos, rc = KVB_EXIT_RUNTIME;
	bool engine_failed = false;

	npos = kv_opt_parse(&info, opts, argc, argv, NULL);
	if (npos < 0)
		return KVB_EXIT_USAGE;
	if (npos != 1) {
		kv_error("run: expected one suite file (see 'kvbench run --help')");
		return KVB_EXIT_USAGE;
	}
	if (kvb_suite_load(&s, argv[0], model) < 0)
		return KVB_EXIT_USAGE;
	if (list) {
		print_tests(&s, filter, quick);
		kvb_suite_release(&s);
		return KVB_EXIT_OK;
	}
	{
		size_t sel = 0;
		for (size_t i = 0; i < s.n_tests; i++)
			sel += kvb_test_selected(s.tests[i].name, filter);
		if (!sel) {
			kv_error("run: no test of %s matches '%s'", s.file, filter ? filter : "");
			kvb_suite_release(&s);
			return KVB_EXIT_USAGE;
		}
	}
	/* every workload of a selected test must be creatable before anything starts */
	for (size_t i = 0; i < s.n_tests; i++) {
		const struct kvb_suite_test *t = &s.tests[i];
		if (kvb_test_selected(t->name, filter) &&
		    kvb_exp_validate_workload(&s, kvb_suite_workload_find(&s, t->workload), t->seed) < 0) {
			kvb_suite_release(&s);
			return KVB_EXIT_USAGE;
		}
	}

	if (out_dir) {
		const char *b = strrchr(out_dir, '/');
		dir = xstrdup(out_dir);
		run_id = xstrdup(b && b[1] ? b + 1 : out_dir);
	} else {
		dir = new_run_dir(&s, &run_id);
	}
	log_dir = xasprintf("%s/logs", dir);

	if (kvb_suite_prepare_engines(&s, filter, quick, log_dir, &eng, &n_eng) < 0) {
		rc = KVB_EXIT_USAGE;
		goto out;
	}
	if (dry) {
		printf("# suite %s (%s), results would go to %s\n", s.name, s.file, dir);
		for (size_t i = 0; i < n_eng; i++)
			kvb_engine_print(stdout, &eng[i]);
		printf("# tests\n");
		print_tests(&s, filter, quick);
		rc = KVB_EXIT_OK;
		goto out;
	}

	if (kv_mkdir_p(log_dir, 0755) < 0) {
		kv_error("%s: cannot create: %s", log_dir, strerror(errno));
		goto out;
	}
	kvb_signals_install(&interrupted);
	{
		/* engines die with kvbench even if it is killed with SIGKILL */
		static char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n > 0) {
			self[n] = '\0';
			kvb_engine_set_guard(self);
		}
	}
	t0 = kv_now_ns();
	res.run_id = xstrdup(run_id);
	res.suite = xstrdup(s.name);
	res.suite_file = xstrdup(s.file);
	res.started = kv_wall_s();
	res.tests = xcalloc(s.n_tests ? s.n_tests : 1, sizeof(*res.tests));
	for (size_t i = 0; i < s.n_tests; i++) {
		if (!kvb_test_selected(s.tests[i].name, filter))
			continue;
		res.tests[res.n_tests].name = xstrdup(s.tests[i].name);
		res.tests[res.n_tests].verdict = KVB_V_PENDING;
		res.n_tests++;
	}
	/* from now on the folder says INTERRUPTED until the run has finished */
	kvb_results_write(dir, &res);
	kv_info("run %s: results in %s", run_id, dir);

	for (size_t i = 0; i < s.n_engines; i++)
		if (quick && s.engines[i].baseline) {
			skipped = xrealloc(skipped, (n_skipped + 2) * sizeof(*skipped));
			skipped[n_skipped++] = s.engines[i].name;
			skipped[n_skipped] = NULL;
		}

	/* start every engine, in suite order (requires: come first) */
	for (size_t i = 0; i < n_eng && !interrupted; i++) {
		struct kvb_engine *e = &eng[i];
		enum kvb_ready r;
		if (e->argv)
			kv_info("engine %s: starting %s on port %d (logs/%s.stderr.log)", e->name,
				e->argv[0], e->port, e->name);
		if (kvb_engine_start(e) < 0) {
			engine_failed = true;
			e->start_failed = true;
			continue;
		}
		r = kvb_engine_wait_ready(e, &interrupted);
		if (r == KVB_READY) {
			kv_info("engine %s: ready at %s (%.1fs)", e->name, e->base_url,
				e->argv ? kv_ns_to_s(e->ready_ns - e->started_ns) : 0.0);
			continue;
		}
		if (r == KVB_READY_CANCELLED)
			break;
		engine_failed = true;
		{
			char *tail = kvb_engine_log_tail(e, 10);
			if (r == KVB_READY_DIED)
				kv_error("engine %s %s before it was ready; last lines of its log:\n%s",
					 e->name, kvb_engine_exit_text(e), tail);
			else
				kv_error("engine %s: %s did not answer 200 within %gs; last lines of its "
					 "log:\n%s", e->name, e->health_path, e->startup_timeout_s, tail);
			free(tail);
		}
		kvb_engine_stop(e); /* a hung engine must not hold its GPU */
		if (r == KVB_READY_TIMEOUT)
			e->pgid = -1; /* marks "never ready" below */
	}

	for (size_t i = 0, ti = 0; i < s.n_tests; i++) {
		const struct kvb_suite_test *t = &s.tests[i];
		struct kvb_test_result *tr;
		struct kvb_engine **te;
		size_t nte = 0;
		char *test_dir;
		const char *bad = NULL, *why = NULL;

		if (!kvb_test_selected(t->name, filter))
			continue;
		tr = &res.tests[ti++];
		if (interrupted) {
			tr->verdict = KVB_V_INTERRUPTED;
			tr->reason = xstrdup("not run: the run was interrupted");
			continue;
		}
		te = xcalloc(t->n_engines, sizeof(*te));
		for (size_t k = 0; k < t->n_engines; k++) {
			struct kvb_engine *e = engine_by_name(eng, n_eng, t->engines[k]);
			if (!e)
				continue; /* skipped by --quick */
			if (e->pgid < 0 || e->ready_ns == 0 || !kvb_engine_alive(e)) {
				bad = e->name;
				if (e->pgid < 0)
					why = "never became ready (startup_timeout)";
				else if (e->start_failed)
					why = "could not be started";
				else if (e->exited)
					why = kvb_engine_exit_text(e);
				else
					why = "was not started";
				break;
			}
			te[nte++] = e;
		}
		tr->verdict = KVB_V_ERROR;
		if (bad) {
			char *tail = NULL;
			struct kvb_engine *e = engine_by_name(eng, n_eng, bad);
			tail = kvb_engine_log_tail(e, 3);
			for (char *p = tail; *p; p++)
				if (*p == '\n')
					*p = '|';
			tr->reason = xasprintf("engine %s %s; logs/%s.stderr.log ends: %s", bad, why,
					       bad, tail);
			free(tail);
		} else if (!nte) {
			tr->reason = xstrdup("every engine of the test was skipped (--quick)");
			tr->verdict = KVB_V_SKIPPED;
		} else {
			struct kvb_exp x = {
				.suite = &s, .test = t, .engines = te, .n_engines = nte,
				.skipped = skipped, .interrupt = &interrupted,
				.progress = progress,
			};
			test_dir = xasprintf("%s/%s", dir, t->name);
			x.test_dir = test_dir;
			if (kv_mkdir_p(test_dir, 0755) < 0) {
				tr->reason = xasprintf("cannot create %s: %s", test_dir, strerror(errno));
			} else {
				kv_info("test %s: running", t->name);
				kvb_exp_run(&x, tr);
				kv_info("test %s: %s", t->name, kvb_verdict_name(tr->verdict));
			}
			free(test_dir);
		}
		free(te);
		res.duration_s = kv_ns_to_s(kv_now_ns() - t0);
		kvb_results_write(dir, &res);
	}

	/* stop every engine, last started first */
	for (size_t i = n_eng; i-- > 0;) {
		if (eng[i].argv && eng[i].pgid > 0)
			kv_info("engine %s: stopping", eng[i].name);
		kvb_engine_stop(&eng[i]);
	}
	res.interrupted = interrupted != 0;
	res.finished = !interrupted;
	res.duration_s = kv_ns_to_s(kv_now_ns() - t0);
	if (kvb_results_write(dir, &res) < 0)
		rc = KVB_EXIT_RUNTIME;
	if (report && kvb_report_write(dir, NULL) != 0)
		kv_warn("the report of %s could not be written (see the error above)", dir);
	print_verdict(&res, dir);
	{
		enum kvb_verdict v = kvb_suite_verdict(&res);
		bool err = engine_failed;
		for (size_t i = 0; i < res.n_tests; i++)
			err |= res.tests[i].verdict == KVB_V_ERROR;
		if (v == KVB_V_INTERRUPTED) {
			kv_error("run interrupted by signal %d; every engine was stopped",
				 kvb_signals_caught());
			rc = KVB_EXIT_RUNTIME;
		} else if (err) {
			rc = KVB_EXIT_RUNTIME;
		} else {
			rc = v == KVB_V_PASS ? KVB_EXIT_OK : KVB_EXIT_CHECK;
		}
	}
out:
	for (size_t i = 0; i < n_eng; i++) {
		kvb_engine_stop(&eng[i]);
		kvb_engine_release(&eng[i]);
	}
	free(eng);
	free(skipped);
	kvb_suite_result_release(&res);
	kvb_suite_release(&s);
	free(dir);
	free(log_dir);
	free(run_id);
	return rc;
}
