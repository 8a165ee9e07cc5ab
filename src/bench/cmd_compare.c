/* kvbench compare: two results folders side by side; a CI gate (docs/report.md). */
#include "common/util.h"

#include "common/opt.h"
#include "commands.h"
#include "report/compare.h"
#include "common/banned.h"

#define MAX_METRICS 16

struct metric_list {
	const char *names[MAX_METRICS];
	size_t n;
};

static int add_metric(const struct kv_opt *opt, const char *arg, void *vctx)
{
	struct metric_list *l = vctx;

	if (!kvr_compare_metric_known(arg)) {
		kv_error("compare: --metric: unknown metric '%.60s' (one of: %s)", arg,
			 kvr_compare_metric_list());
		return -1;
	}
	if (l->n == MAX_METRICS) {
		kv_error("compare: --metric: at most %d", MAX_METRICS);
		return -1;
	}
	l->names[l->n++] = arg;
	return 0;
}

int cmd_compare(int argc, char **argv)
{
	double max_reg = 0.10;
	int64_t rounds = 1000, seed = 1;
	struct metric_list ml = { .n = 0 };
	const struct kv_opt opts[] = {
		KV_OPT_DOUBLE(0, "max-regression", &max_reg, "FRAC", 0, 1000,
			      "fail when a metric is worse by more than FRAC of its base value "
			      "and the 95% interval excludes zero"),
		KV_OPT_CALLBACK(0, "metric", "NAME", add_metric,
				"compare only this metric (repeatable): ttft_mean ttft_p50 "
				"ttft_p99 e2e_mean e2e_p99 throughput accuracy identity"),
		KV_OPT_INT(0, "resamples", &rounds, "N", 10, 100000,
			   "bootstrap resamples for the intervals"),
		KV_OPT_INT(0, "seed", &seed, "N", 0, INT64_MAX, "seed of the bootstrap"),
		KV_OPT_END,
	};
	struct kv_cmd_info info = {
		"kvbench compare", "[options] BASE_DIR NEW_DIR",
		"Compare two results folders test by test: base and new value of each metric,\n"
		"the relative change and a bootstrap 95% interval of the difference.\n"
		"Exit 1 when a metric regressed beyond --max-regression with the interval\n"
		"excluding zero, 0 otherwise, 2 on bad input.",
		"Example (a CI gate between two commits of a cache layer):\n"
		"  kvbench compare results/main results/branch --max-regression 0.05\n",
	};
	struct kvr_compare_opts o;
	int n = kv_opt_parse(&info, opts, argc, argv, &ml);

	if (n < 0)
		return KVB_EXIT_USAGE;
	if (n != 2) {
		kv_error("compare: expected BASE_DIR and NEW_DIR, got %d arguments (see --help)", n);
		return KVB_EXIT_USAGE;
	}
	o = (struct kvr_compare_opts){
		.max_regression = max_reg,
		.metrics = ml.n ? ml.names : NULL,
		.nmetrics = ml.n,
		.rounds = (int)rounds,
		.seed = (uint64_t)seed,
		.out = stdout,
	};
	return kvr_compare(argv[0], argv[1], &o);
}
