/*
 * The table of workloads. Each workload file defines one kvb_wl_def; add it
 * here (one line) to make it reachable from `kvbench bench --workload` and
 * from suite files.
 */
#include "common/util.h"

#include "workload.h"

extern const struct kvb_wl_def kvb_wl_synthetic;
extern const struct kvb_wl_def kvb_wl_long_doc_qa;
extern const struct kvb_wl_def kvb_wl_multi_round_qa;
extern const struct kvb_wl_def kvb_wl_sharegpt;
extern const struct kvb_wl_def kvb_wl_mmlu;
extern const struct kvb_wl_def kvb_wl_generation;
extern const struct kvb_wl_def kvb_wl_rag;
extern const struct kvb_wl_def kvb_wl_ttft_sweep;
extern const struct kvb_wl_def kvb_wl_key_probe;

const struct kvb_wl_def *const kvb_workloads[] = {
	&kvb_wl_synthetic,
	&kvb_wl_long_doc_qa,
	&kvb_wl_multi_round_qa,
	&kvb_wl_sharegpt,
	&kvb_wl_mmlu,
	&kvb_wl_generation,
	&kvb_wl_rag,
	&kvb_wl_ttft_sweep,
	&kvb_wl_key_probe,
	NULL,
};
