/*
 * compare.h: two results folders side by side (kvbench compare).
 *
 * For every test in both folders, every (engine, pass) in both, and every
 * metric: base and new value, the relative change, and a seeded bootstrap
 * 95 % interval of new - base (resampling the per-request values of both
 * requests.csv files). A metric regresses when it moved the bad way by more
 * than max_regression (a fraction of the base value) AND the interval
 * excludes zero. Accuracy (checks with unit "accuracy", or groups' accuracy)
 * is resampled as a binomial of the check's n when known; without n, or for
 * identity (a check named "identity*": PASS in base and FAIL in new is a
 * regression), the change alone decides.
 *
 * Metrics: ttft_mean ttft_p50 ttft_p99 e2e_mean e2e_p99 throughput accuracy
 * identity.
 */
#ifndef KVR_COMPARE_H
#define KVR_COMPARE_H

#include "common/compat.h"

struct kvr_compare_opts {
	double max_regression;   /* e.g. 0.10 */
	const char *const *metrics;  /* NULL: all */
	size_t nmetrics;
	int rounds;              /* bootstrap resamples, e.g. 1000 (fewer, but at least 200,
				  * when both samples hold over 20000 values in all) */
	uint64_t seed;
	FILE *out;               /* the table and the verdict lines */
};

/* True when name is one of the metrics above. */
bool kvr_compare_metric_known(const char *name);
/* The metric names, space-separated, for help texts. */
const char *kvr_compare_metric_list(void);

/*
 * 0 no regression, 1 at least one regression (each named on a line
 * "REGRESSION: TEST ENGINE pass P METRIC ..."), 2 a folder cannot be read
 * or the two have no test in common (error printed).
 */
int kvr_compare(const char *base_dir, const char *new_dir, const struct kvr_compare_opts *o);

#endif
