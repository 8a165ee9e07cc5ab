/*
 * data.h: a results folder (docs/RESULTS.md) read into memory for the report
 * and for compare.
 *
 *   struct kvr_run run;
 *   if (kvr_run_load(&run, "results/2026-...") < 0) ... (error printed) ...
 *   for (size_t i = 0; i < run.ntests; i++) ... run.tests[i] ...
 *   kvr_run_release(&run);
 *
 * A suite folder holds one folder per test; a `kvbench bench --output DIR`
 * folder (requests.csv at the top) is read as one test named "bench".
 * Numbers that are missing or empty are NaN (ints: -1). All strings are
 * owned by the run and are raw bytes from the folder: untrusted, possibly not
 * UTF-8 (see kvr_text_clean()).
 */
#ifndef KVR_DATA_H
#define KVR_DATA_H

#include "common/compat.h"

struct kvr_req {
	const char *engine;     /* interned in the test's engine list */
	int engine_idx;
	int pass;               /* -1 unknown */
	bool warmup;
	bool ok;                /* status "ok" or empty */
	double ttft, e2e, throughput, context_len, end_s, completion_tokens;
	int64_t session;        /* -1 unknown */
	int64_t turn;           /* -1 unknown */
};

struct kvr_stat {
	double mean, std, p50, p90, p99, n;  /* NaN when absent */
};

struct kvr_group {
	char *engine;
	int pass;
	double completed, failed;
	double output_token_throughput;
	double hit_rate;        /* 0..1, NaN when absent */
	struct kvr_stat ttft, e2e;
	double accuracy, accuracy_lo, accuracy_hi, accuracy_n;  /* NaN when absent */
};

struct kvr_check {
	char *name;
	int passed;             /* 1, 0, -1 unknown */
	double figure, threshold;
	char *unit;             /* "" when absent */
	char *reason;           /* "" when absent */
	double lo, hi, n;       /* optional interval / sample size (accuracy) */
};

struct kvr_div {
	char *key;
	char *a_label, *b_label;   /* "engine pass N" */
	char *a_text, *b_text;
	double index;              /* first differing token or byte, NaN unknown */
};

struct kvr_test {
	char *name;
	char *status;            /* PASS / FAIL / ... from <test>.result or summary (bench
				  * folder: from its checks); "" unknown */
	char **engines;          /* distinct engine ids in order of first appearance */
	size_t nengines;
	int max_pass;            /* -1 when no pass column */
	struct kvr_req *reqs;
	size_t nreqs;
	struct kvr_group *groups;
	size_t ngroups;
	struct kvr_check *checks;
	size_t nchecks;
	struct kvr_div *divs;
	size_t ndivs;            /* read: at most KVR_MAX_DIVS */
};

#define KVR_MAX_DIVS 20
#define KVR_MAX_ENGINES 32     /* distinct engine_id per test */
#define KVR_MAX_PASS 31        /* highest pass number */

struct kvr_run {
	char *dir;
	char *run_id;            /* summary.json run_id, else the folder's name */
	char *suite;             /* "" unknown */
	char *started;           /* "" unknown */
	double duration_s;
	char *verdict;           /* first line of overall.result, else from the checks:
				  * INTERRUPTED, FAIL, PASS or NO CHECKS */
	bool interrupted;
	struct kvr_test *tests;
	size_t ntests;
};

/* 0, or -1 after printing one error line (kv_error) naming the file. */
int kvr_run_load(struct kvr_run *run, const char *dir);
void kvr_run_release(struct kvr_run *run);

/* Index of the test with that name or -1. */
int kvr_run_find_test(const struct kvr_run *run, const char *name);

/*
 * A copy of s (at most max bytes of it, "…" appended when cut) that is valid
 * UTF-8 without control characters: invalid bytes become '?', tabs and
 * newlines a space (or kept when keep_newlines). malloc'ed.
 */
char *kvr_text_clean(const char *s, size_t max, bool keep_newlines);

#endif
