/*
 * stats.h: small statistics for the report and compare: mean, standard
 * deviation, quantiles, and a seeded bootstrap interval of a difference or a
 * ratio of two samples. NaN values must be filtered out by the caller.
 */
#ifndef KVR_STATS_H
#define KVR_STATS_H

#include "common/compat.h"
#include "checks/checks.h"

enum kvr_statistic { KVR_MEAN, KVR_P50, KVR_P90, KVR_P99 };

/* Mean and sample standard deviation: kvb_mean() and kvb_stddev() of checks/checks.h. */
/* Quantile q in [0,1] of v, linear between order statistics; sorts v in place. */
double kvr_quantile(double *v, size_t n, double q);
/* The statistic of v (which may be reordered). */
double kvr_stat_of(enum kvr_statistic st, double *v, size_t n);


/*
 * Bootstrap percentile interval (level e.g. 0.95) of stat(b) - stat(a)
 * (ratio: stat(a) / stat(b)), resampling both with replacement `rounds`
 * times from seed. 0, or -1 when a sample is empty (lo, hi set to NaN).
 */
int kvr_bootstrap(const double *a, size_t na, const double *b, size_t nb, enum kvr_statistic st,
		  bool ratio, int rounds, double level, uint64_t seed, double *lo, double *hi);

/* Wilson score interval of a proportion p observed over n trials (95 %). */
void kvr_wilson(double p, double n, double *lo, double *hi);

#endif
