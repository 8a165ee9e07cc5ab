/*
 * The table of workloads. Each workload file defines one kvb_wl_def; add it
 * here (one line) to make it reachable from `kvbench bench --workload` and
 * from suite files.
 */
#include "common/util.h"

#include "workload.h"

extern const struct kvb_wl_def kvb_wl_synthetic;

const struct kvb_wl_def *const kvb_workloads[] = {
	&kvb_wl_synthetic,
	NULL,
};
