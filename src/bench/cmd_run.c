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
#include "checks/checks.h"
#include "suite/experiment.h"
#include "suite/matrix.h"
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

static bool selected(const struct kvb_suite_test *t, const char *filter, const char *tag)
{
	return kvb_test_selected(t->name, filter) && kvb_suite_test_tagged(t, tag);
}

/* The engines the selected tests need, in suite order, with their requires. */
static void needed_engines(const struct kvb_suite *s, const char *filter, const char *tag,
			   bool quick, bool *need)
{
	for (size_t i = 0; i < s->n_tests; i++) {
		const struct kvb_suite_test *t = &s->tests[i];
		if (!selected(t, filter, tag))
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

int kvb_suite_prepare_engines(const struct kvb_suite *s, const char *filter, const char *tag,
				  bool quick, const char *log_dir, struct kvb_engine **out,
				  size_t *n_out)
{
	bool *need = xcalloc(s->n_engines ? s->n_engines : 1, sizeof(*need));
	struct kvb_engine *v = xcalloc(s->n_engines ? s->n_engines : 1, sizeof(*v));
	size_t n = 0;
	int rc = -1;

	needed_engines(s, filter, tag, quick, need);
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

static void print_tests(const struct kvb_suite *s, const char *filter, const char *tag,
			bool quick)
{
	for (size_t i = 0; i < s->n_tests; i++) {
		const struct kvb_suite_test *t = &s->tests[i];
		const struct kvb_suite_workload *w = kvb_suite_workload_find(s, t->workload);
		if (!selected(t, filter, tag))
			continue;
		printf("%s: %s (%s) on", t->name, w->name, w->type);
		for (size_t k = 0; k < t->n_engines; k++) {
			const struct kvb_suite_engine *e = kvb_suite_engine_find(s, t->engines[k]);
			printf(" %s%s", t->engines[k], e->baseline ? (quick ? "(skipped)" : "(baseline)")
								   : "");
		}
		printf(", %s, %d pass%s, %zu check%s", t->parallel ? "parallel" : "sequential",
		       t->passes, t->passes == 1 ? "" : "es", t->n_checks, t->n_checks == 1 ? "" : "s");
		for (size_t k = 0; k < t->n_engines; k++) {
			const struct kvb_suite_engine *e = kvb_suite_engine_find(s, t->engines[k]);
			if (kvb_exp_claims(t, e))
				printf(" +cache_path.%s", e->name);
		}
		if (kvb_suite_test_is_matrix(t))
			printf(", fault %s, class %s, expect %s", t->fault ? t->fault : "-",
			       t->fclass ? t->fclass : "-", t->expect_detect ? "detect" : "pass");
		if (t->repeat > 1)
			printf(", repeat %d", t->repeat);
		if (t->restart)
			printf(", restart");
		if (t->abort_every)
			printf(", abort_every %d", t->abort_every);
		if (t->tags) {
			printf(", tags");
			for (char **p = t->tags; *p; p++)
				printf("%s%s", p == t->tags ? " " : ",", *p);
		}
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

/*
 * An engine started late (before the first test that needs it) gets its free
 * port again just before it starts: the one picked at the start of the run
 * may have been taken since (client connections use the same range). It
 * must differ from the ports of the engines that are running.
 */
static int refresh_port(struct kvb_engine *v, size_t n, struct kvb_engine *e,
			const struct kvb_suite *s, const char *log_dir)
{
	const struct kvb_suite_engine *cfg = e->cfg;

	if (!e->argv || !cfg || cfg->port || e->started_ns)
		return 0; /* fixed port, url, or started before: keep it */
	for (int tries = 0; tries < 20; tries++) {
		bool clash = false;
		kvb_engine_release(e);
		if (kvb_engine_prepare(e, cfg, s, log_dir, 0) < 0)
			return -1;
		for (size_t j = 0; j < n; j++)
			clash |= &v[j] != e && v[j].argv && v[j].port == e->port;
		if (!clash)
			return 0;
	}
	return 0; /* after 20 tries: start with the last, a clash shows in its log */
}

/* Starts one engine and waits until it is ready; failures are printed and
 * marked on the engine (start_failed, pgid -1 for "never ready"). false when
 * it failed. */
static bool start_engine(struct kvb_engine *e)
{
	enum kvb_ready r;

	if (e->argv)
		kv_info("engine %s: starting %s on port %d (logs/%s.stderr.log)", e->name,
			e->argv[0], e->port, e->name);
	if (kvb_engine_start(e) < 0) {
		e->start_failed = true;
		return false;
	}
	r = kvb_engine_wait_ready(e, &interrupted);
	if (r == KVB_READY) {
		kv_info("engine %s: ready at %s (%.1fs)", e->name, e->base_url,
			e->argv ? kv_ns_to_s(e->ready_ns - e->started_ns) : 0.0);
		return true;
	}
	if (r == KVB_READY_CANCELLED)
		return true; /* the run is interrupted: not an engine failure */
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
	return false;
}

/* The engine whose requests the matrix counts: the candidate of the first
 * identity/logprobs check, else the engine of a cache_path/key_isolation
 * check, else the last engine that claims reuse, else the last engine. */
static const char *matrix_candidate(const struct kvb_suite *s, const struct kvb_suite_test *t)
{
	const char *c = NULL;
	for (size_t i = 0; i < t->n_checks; i++)
		if ((t->checks[i].type == KVB_CHECK_IDENTITY || t->checks[i].type == KVB_CHECK_LOGPROBS) &&
		    t->checks[i].candidate)
			return t->checks[i].candidate;
	for (size_t i = 0; i < t->n_checks; i++)
		if (t->checks[i].type == KVB_CHECK_CACHE_PATH ||
		    t->checks[i].type == KVB_CHECK_KEY_ISOLATION)
			return t->checks[i].engine;
	for (size_t i = 0; i < t->n_engines; i++)
		if (kvb_exp_claims(t, kvb_suite_engine_find(s, t->engines[i])))
			c = t->engines[i];
	return c ? c : t->engines[t->n_engines - 1];
}

/* Requests (not warm-up) of engine in DIR/outputs.jsonl; -1 when unreadable. */
static long count_requests(const char *dir, const char *engine)
{
	char *path = xasprintf("%s/outputs.jsonl", dir);
	struct kvb_outputs o = { 0 };
	long n = -1;

	/* a run that never started has no outputs.jsonl: unknown, not an error */
	if (access(path, R_OK) == 0 && kvb_outputs_load(path, &o) == 0) {
		n = 0;
		for (size_t i = 0; i < o.n; i++)
			n += !strcmp(o.v[i].engine_id, engine) && !o.v[i].warmup;
	}
	kvb_outputs_release(&o);
	free(path);
	return n;
}

/* Moves the checks of run into t, names prefixed "runN:" when prefix > 0. */
static void take_checks(struct kvb_test_result *t, struct kvb_test_result *run, int prefix)
{
	for (size_t i = 0; i < run->n_checks; i++) {
		struct kvb_check_result *c = &run->checks[i];
		char *name = prefix > 0 ? xasprintf("run%d:%s", prefix, c->name) : xstrdup(c->name);
		kvb_test_add_check(t, name, c->verdict, c->figure, c->threshold, c->unit, c->reason);
		t->checks[t->n_checks - 1].first_req = c->first_req;
		free(name);
	}
}

static int verdict_rank(enum kvb_verdict v)
{
	switch (v) {
	case KVB_V_PASS:
	case KVB_V_SKIPPED:
		return 0;
	case KVB_V_FAIL:
		return 1;
	case KVB_V_ERROR:
		return 2;
	default:
		return 3;
	}
}

int cmd_run(int argc, char **argv)
{
	const char *filter = NULL, *out_dir = NULL, *model = NULL, *tag = NULL;
	bool list = false, quick = false, dry = false, progress = true, report = true;
	struct kv_opt opts[] = {
		KV_OPT_GROUP("Selection"),
		KV_OPT_STRING('f', "filter", &filter, "PATTERN",
			      "run only tests whose name contains PATTERN (or matches a glob)"),
		KV_OPT_STRING(0, "tag", &tag, "TAG", "run only tests whose tags: list holds TAG"),
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
	size_t *first_use = NULL, *last_use = NULL, n_matrix = 0, n_rows = 0;
	struct kvb_matrix_row *rows = NULL;

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
		print_tests(&s, filter, tag, quick);
		kvb_suite_release(&s);
		return KVB_EXIT_OK;
	}
	{
		size_t sel = 0;
		for (size_t i = 0; i < s.n_tests; i++)
			sel += selected(&s.tests[i], filter, tag);
		if (!sel) {
			kv_error("run: no test of %s matches '%s'%s%s", s.file, filter ? filter : "",
				 tag ? " with tag " : "", tag ? tag : "");
			kvb_suite_release(&s);
			return KVB_EXIT_USAGE;
		}
	}
	/* every workload of a selected test must be creatable before anything starts */
	for (size_t i = 0; i < s.n_tests; i++) {
		const struct kvb_suite_test *t = &s.tests[i];
		if (selected(t, filter, tag) &&
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

	if (kvb_suite_prepare_engines(&s, filter, tag, quick, log_dir, &eng, &n_eng) < 0) {
		rc = KVB_EXIT_USAGE;
		goto out;
	}
	if (dry) {
		printf("# suite %s (%s), results would go to %s\n", s.name, s.file, dir);
		for (size_t i = 0; i < n_eng; i++)
			kvb_engine_print(stdout, &eng[i]);
		printf("# tests\n");
		print_tests(&s, filter, tag, quick);
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
		if (!selected(&s.tests[i], filter, tag))
			continue;
		res.tests[res.n_tests].name = xstrdup(s.tests[i].name);
		res.tests[res.n_tests].verdict = KVB_V_PENDING;
		res.n_tests++;
		n_matrix += kvb_suite_test_is_matrix(&s.tests[i]);
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

	/*
	 * Engines are started before the first selected test that needs them
	 * (in suite order, requires: first) and stopped after the last one, so
	 * an engine of one test (a fault of the matrix) lives only for it.
	 */
	first_use = xcalloc(n_eng ? n_eng : 1, sizeof(*first_use));
	last_use = xcalloc(n_eng ? n_eng : 1, sizeof(*last_use));
	for (size_t j = 0; j < n_eng; j++) {
		first_use[j] = SIZE_MAX;
		last_use[j] = 0;
	}
	for (size_t i = 0, ti = 0; i < s.n_tests; i++) {
		const struct kvb_suite_test *t = &s.tests[i];
		if (!selected(t, filter, tag))
			continue;
		for (size_t k = 0; k < t->n_engines; k++) {
			struct kvb_engine *e = engine_by_name(eng, n_eng, t->engines[k]);
			size_t j;
			if (!e)
				continue;
			j = (size_t)(e - eng);
			if (first_use[j] == SIZE_MAX)
				first_use[j] = ti;
			last_use[j] = ti;
		}
		ti++;
	}
	/* a required engine lives at least as long as the engines that require it */
	for (size_t j = n_eng; j-- > 0;)
		for (char **r = eng[j].cfg ? eng[j].cfg->requires : NULL; r && *r; r++) {
			struct kvb_engine *q = engine_by_name(eng, n_eng, *r);
			size_t qi;
			if (!q || first_use[j] == SIZE_MAX)
				continue;
			qi = (size_t)(q - eng);
			if (first_use[qi] == SIZE_MAX || first_use[qi] > first_use[j])
				first_use[qi] = first_use[j];
			if (last_use[qi] < last_use[j])
				last_use[qi] = last_use[j];
		}
	if (n_matrix)
		rows = xcalloc(res.n_tests, sizeof(*rows));

	for (size_t i = 0, ti = 0; i < s.n_tests; i++) {
		const struct kvb_suite_test *t = &s.tests[i];
		struct kvb_test_result *tr;
		struct kvb_engine **te;
		size_t nte = 0;
		const char *bad = NULL, *why = NULL;
		size_t this_ti;

		if (!selected(t, filter, tag))
			continue;
		this_ti = ti;
		tr = &res.tests[ti++];
		if (interrupted) {
			tr->verdict = KVB_V_INTERRUPTED;
			tr->reason = xstrdup("not run: the run was interrupted");
			continue;
		}
		for (size_t j = 0; j < n_eng && !interrupted; j++) {
			if (first_use[j] != this_ti)
				continue;
			if (this_ti > 0 && refresh_port(eng, n_eng, &eng[j], &s, log_dir) < 0) {
				eng[j].start_failed = true;
				engine_failed = true;
				continue;
			}
			if (!start_engine(&eng[j]))
				engine_failed = true;
		}
		if (kvb_suite_test_is_matrix(t))
			kvb_matrix_row_init(&rows[n_rows++], &s, t);
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
		if (interrupted) {
			tr->verdict = KVB_V_INTERRUPTED;
			tr->reason = xstrdup("not run: the run was interrupted");
		} else if (bad) {
			char *tail = NULL;
			struct kvb_engine *e = engine_by_name(eng, n_eng, bad);
			tail = kvb_engine_log_tail(e, 3);
			for (char *p = tail; *p; p++)
				if (*p == '\n')
					*p = '|';
			tr->reason = xasprintf("engine %s %s; logs/%s.stderr.log ends: %s", bad, why,
					       bad, tail);
			free(tail);
			if (kvb_suite_test_is_matrix(t)) {
				kvb_matrix_add_run(&rows[n_rows - 1], tr, -1);
				kvb_matrix_finish(&rows[n_rows - 1]);
			}
		} else if (!nte) {
			tr->reason = xstrdup("every engine of the test was skipped (--quick)");
			tr->verdict = KVB_V_SKIPPED;
		} else {
			struct kvb_exp x = {
				.suite = &s, .test = t, .engines = te, .n_engines = nte,
				.skipped = skipped, .interrupt = &interrupted,
				.progress = progress,
			};
			const char *cand = matrix_candidate(&s, t);
			enum kvb_verdict worst = KVB_V_PASS;
			char *tdir = xasprintf("%s/%s", dir, t->name);

			tr->verdict = KVB_V_PASS;
			tr->duration_s = 0;
			for (int r = 0; r < t->repeat && !interrupted; r++) {
				struct kvb_test_result run = { 0 };
				char *test_dir = t->repeat > 1 ? xasprintf("%s/run-%d", tdir, r + 1)
							       : xstrdup(tdir);
				x.test_dir = test_dir;
				/* each run after the first starts with cold caches */
				for (size_t k = 0; k < nte && r > 0; k++) {
					char *rwhy = NULL;
					bool cancelled;
					if (!te[k]->cfg || !kvb_suite_engine_claims_reuse(te[k]->cfg))
						continue; /* no cache layer: nothing to empty */
					kv_info("engine %s: restarting for run %d of %s", te[k]->name,
						r + 1, t->name);
					if (kvb_exp_restart_engine(te[k], &interrupted, &rwhy,
								   &cancelled) < 0) {
						run.verdict = cancelled ? KVB_V_INTERRUPTED : KVB_V_ERROR;
						run.reason = rwhy;
						break;
					}
				}
				if (run.reason) {
					/* the restart failed */
				} else if (kv_mkdir_p(test_dir, 0755) < 0) {
					run.verdict = KVB_V_ERROR;
					run.reason = xasprintf("cannot create %s: %s", test_dir,
							       strerror(errno));
				} else {
					if (t->repeat > 1)
						kv_info("test %s: run %d of %d", t->name, r + 1, t->repeat);
					else
						kv_info("test %s: running", t->name);
					kvb_exp_run(&x, &run);
				}
				tr->duration_s += run.duration_s;
				if (kvb_suite_test_is_matrix(t))
					kvb_matrix_add_run(&rows[n_rows - 1], &run,
							   count_requests(test_dir, cand));
				take_checks(tr, &run, t->repeat > 1 ? r + 1 : 0);
				if (verdict_rank(run.verdict) > verdict_rank(worst)) {
					worst = run.verdict;
					free(tr->reason);
					tr->reason = run.reason ? (t->repeat > 1 ? xasprintf("run %d: %s",
							 r + 1, run.reason) : xstrdup(run.reason)) : NULL;
				}
				kvb_test_result_release(&run);
				free(test_dir);
			}
			tr->verdict = worst;
			if (interrupted && worst != KVB_V_ERROR)
				tr->verdict = KVB_V_INTERRUPTED;
			tr->expect_detect = kvb_suite_test_is_matrix(t) && t->expect_detect;
			if (kvb_suite_test_is_matrix(t) && tr->verdict != KVB_V_INTERRUPTED) {
				struct kvb_matrix_row *row = &rows[n_rows - 1];
				char *row_why;
				tr->verdict = kvb_matrix_finish(row);
				row_why = kvb_matrix_reason(row);
				if (row_why) {
					free(tr->reason);
					tr->reason = row_why;
				}
			}
			kv_info("test %s: %s", t->name, kvb_verdict_name(tr->verdict));
			free(tdir);
		}
		free(te);
		/* engines no later test needs */
		for (size_t j = n_eng; j-- > 0;)
			if (last_use[j] == this_ti && first_use[j] != SIZE_MAX) {
				if (eng[j].argv && eng[j].pgid > 0)
					kv_info("engine %s: stopping", eng[j].name);
				kvb_engine_stop(&eng[j]);
			}
		res.duration_s = kv_ns_to_s(kv_now_ns() - t0);
		kvb_results_write(dir, &res);
		if (n_rows)
			kvb_matrix_write(dir, rows, n_rows);
	}

	/* stop every engine, last started first */
	for (size_t i = n_eng; i-- > 0;) {
		if (eng[i].argv && eng[i].pgid > 0 && kvb_engine_alive(&eng[i]))
			kv_info("engine %s: stopping", eng[i].name);
		kvb_engine_stop(&eng[i]);
	}
	res.interrupted = interrupted != 0;
	res.finished = !interrupted;
	res.duration_s = kv_ns_to_s(kv_now_ns() - t0);
	if (kvb_results_write(dir, &res) < 0)
		rc = KVB_EXIT_RUNTIME;
	if (n_rows && kvb_matrix_write(dir, rows, n_rows) < 0)
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
	for (size_t i = 0; i < n_rows; i++)
		kvb_matrix_row_release(&rows[i]);
	free(rows);
	free(first_use);
	free(last_use);
	kvb_suite_result_release(&res);
	kvb_suite_release(&s);
	free(dir);
	free(log_dir);
	free(run_id);
	return rc;
}
