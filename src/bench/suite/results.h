/*
 * results.h: the top of a suite's results folder (docs/RESULTS.md):
 * overall.result, <test>.result, summary.json, junit.xml.
 *
 * Every file is written with kv_write_file_atomic. A run writes these files
 * first when it starts (status "running", overall INTERRUPTED) and again
 * after every test, so a folder whose run was cut short, even by SIGKILL,
 * never says PASS.
 *
 * The structs own all their strings; kvb_suite_result_release frees them.
 */
#ifndef KVB_RESULTS_H
#define KVB_RESULTS_H

#include "common/compat.h"

enum kvb_verdict {
	KVB_V_PASS,
	KVB_V_FAIL,
	KVB_V_ERROR,       /* the test could not run (engine died, setup failed) */
	KVB_V_INTERRUPTED,
	KVB_V_SKIPPED,     /* a check that --quick or a missing engine left out */
	KVB_V_PENDING,     /* a test not run yet */
};

const char *kvb_verdict_name(enum kvb_verdict v); /* "PASS", "FAIL", ... */

struct kvb_check_result {
	char *name;
	enum kvb_verdict verdict; /* PASS, FAIL, ERROR or SKIPPED */
	double figure;            /* NAN when not measured */
	double threshold;         /* NAN when none */
	char *unit;               /* "s", "x", "fraction" */
	char *reason;             /* one line */
	long first_req;           /* FAIL: smallest send index (0-based, among the requests
				     sent to the checked engine) of a request the check
				     flagged; -1 when not per request */
};

struct kvb_test_result {
	char *name;
	enum kvb_verdict verdict;
	char *reason;             /* one line, or NULL */
	double duration_s;
	struct kvb_check_result *checks;
	size_t n_checks;
	bool expect_detect;       /* a matrix row with expect: detect: its failing checks
				     are detections; junit.xml adds a "detection" case with
				     the row's verdict and reports those checks as passed */
};

struct kvb_suite_result {
	char *run_id;
	char *suite;              /* suite name */
	char *suite_file;
	double started;           /* Unix epoch seconds (label only) */
	double duration_s;
	bool finished;            /* every selected test has a verdict */
	bool interrupted;         /* SIGINT/SIGTERM */
	struct kvb_test_result *tests;
	size_t n_tests;
};

/* Appends a check to t (strings copied). */
void kvb_test_add_check(struct kvb_test_result *t, const char *name, enum kvb_verdict v,
			double figure, double threshold, const char *unit, const char *reason);
/* PASS when every check passed or was skipped (and none is ERROR), else FAIL/ERROR. */
enum kvb_verdict kvb_test_verdict(const struct kvb_test_result *t);

/* The overall verdict: INTERRUPTED unless finished, else FAIL if any test is not PASS. */
enum kvb_verdict kvb_suite_verdict(const struct kvb_suite_result *r);

/* Writes overall.result, every <test>.result, summary.json, junit.xml. 0 or -1. */
int kvb_results_write(const char *dir, const struct kvb_suite_result *r);

void kvb_suite_result_release(struct kvb_suite_result *r);
/* Frees one test result's strings and checks and zeroes it. */
void kvb_test_result_release(struct kvb_test_result *t);

/* XML-escapes s into a malloc'ed string (also drops control characters). */
char *kvb_xml_escape(const char *s);

#endif
