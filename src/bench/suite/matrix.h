/*
 * matrix.h: the detection matrix of a suite run (docs/suite.md "Detection
 * matrix", docs/RESULTS.md "matrix.csv"): one row per test that has fault:
 * or expect:, folded over its runs (repeat: N).
 *
 *   struct kvb_matrix_row row;
 *   kvb_matrix_row_init(&row, suite, test);
 *   for each run: kvb_matrix_add_run(&row, &run_result, requests);
 *   enum kvb_verdict v = kvb_matrix_finish(&row);   // the test's verdict
 *   ... kvb_matrix_write(dir, rows, n) ...
 *   kvb_matrix_row_release(&row);
 *
 * A run is "detected" when at least one of its checks FAILED, "clean" when
 * all passed, "error" when a check could not run (ERROR) or the run itself
 * did not complete; an error run is never counted as detected.
 * The row owns its strings.
 */
#ifndef KVB_MATRIX_H
#define KVB_MATRIX_H

#include "suite/results.h"
#include "suite/suite.h"

enum kvb_matrix_verdict {
	KVB_MV_NONE = 0,      /* not finished */
	KVB_MV_DETECTED,      /* expect detect: some run's check failed */
	KVB_MV_MISSED,        /* expect detect: every check passed in every run */
	KVB_MV_PASS,          /* expect pass: no alarm */
	KVB_MV_FALSE_ALARM,   /* expect pass: a check failed */
	KVB_MV_ERROR,         /* a run did not complete or a check could not run */
};
/* "detected", "missed", "pass", "false-alarm", "error" (NONE: "error") */
const char *kvb_matrix_verdict_name(enum kvb_matrix_verdict v);

struct kvb_matrix_row {
	char *test;
	char *fault;          /* "" when none */
	char *fclass;         /* "" when none */
	char *workload;       /* "NAME (TYPE)" */
	long requests;        /* requests sent to the candidate in one run (the first) */
	int runs;
	int detected_runs;
	int error_runs;
	bool expect_detect;
	char *checks;         /* detecting checks, '+'-joined, union over runs */
	long first_req;       /* smallest first_req over failing checks; -1 none */
	enum kvb_matrix_verdict verdict; /* set by kvb_matrix_finish */
	char *note;           /* description, and why a run was an error */
};

void kvb_matrix_row_init(struct kvb_matrix_row *r, const struct kvb_suite *s,
			 const struct kvb_suite_test *t);
/* Folds one run (its test result) into the row. */
void kvb_matrix_add_run(struct kvb_matrix_row *r, const struct kvb_test_result *run,
			long requests);
/*
 * Sets r->verdict and returns the test's verdict: expect detect: detected
 * (some run detected, no error) PASS, missed FAIL; expect pass: pass PASS,
 * false-alarm FAIL; any error run: error ERROR.
 */
enum kvb_verdict kvb_matrix_finish(struct kvb_matrix_row *r);
/* The test's one-line reason for a finished row ("detected in 3/3 runs by
 * identity.x"), malloc'ed; NULL for an error row (the run's reason stays). */
char *kvb_matrix_reason(const struct kvb_matrix_row *r);
void kvb_matrix_row_release(struct kvb_matrix_row *r);

/* Writes DIR/matrix.csv and DIR/matrix.json atomically. 0 or -1 (printed). */
int kvb_matrix_write(const char *dir, const struct kvb_matrix_row *rows, size_t n);

/* The CSV header (column names, comma-separated). */
extern const char kvb_matrix_header[];

#endif
