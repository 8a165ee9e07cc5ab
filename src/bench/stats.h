/*
 * stats.h: statistics of one group of requests (one item x pass, or a whole
 * bench run) in fixed memory: counters and one histogram per metric.
 */
#ifndef KVB_STATS_H
#define KVB_STATS_H

#include <jansson.h>

#include "fields.h"
#include "hist.h"

enum kvb_metric {
	KVB_M_TTFT,        /* first token - send */
	KVB_M_ITL,         /* every gap between two output tokens */
	KVB_M_TPOT,
	KVB_M_E2E,         /* end - send */
	KVB_M_E2E_SCHED,   /* end - scheduled */
	KVB_M_TTFT_SCHED,  /* first token - scheduled */
	KVB_M_LAG,         /* send - scheduled (every request sent) */
	KVB_M_COUNT
};

extern const char *const kvb_metric_keys[KVB_M_COUNT];

struct kvb_stats {
	char *engine_id;       /* owned */
	int pass;
	double target_rate;    /* requests/s; < 0: closed loop (null) */
	uint64_t completed, failed, by_reason[KVB_STATUS_COUNT];
	char *first_error[KVB_STATUS_COUNT]; /* owned: the first message per reason */
	uint64_t n_sent, t_first_sched, t_first_send, t_last_send, t_last_end;
	uint64_t prompt_tokens, completion_tokens;
	uint64_t hit_tokens, query_tokens; /* requests that report cached tokens */
	struct kvb_hist h[KVB_M_COUNT];
};

void kvb_stats_init(struct kvb_stats *s, const char *engine_id, int pass, double target_rate);
void kvb_stats_release(struct kvb_stats *s);
/* Adds one record (warmup and cancelled requests are the caller's to skip). */
void kvb_stats_add(struct kvb_stats *s, const struct kvb_record *r);
/* The group object of summary.json (docs/RESULTS.md). */
json_t *kvb_stats_json(const struct kvb_stats *s);

#endif
