/*
 * fields.h: one table per output drives every place the output appears
 * (the style of curl's tool_writeout.c):
 *   - kvb_req_fields: the columns of requests.csv, from a struct kvb_record
 *   - kvb_sum_fields: the figures of one statistics group, used both for
 *     summary.json (stats.c builds the JSON from it) and for the terminal
 *     table (kvb_summary_print reads the JSON back through it)
 * Column names and units are documented in docs/RESULTS.md.
 */
#ifndef KVB_FIELDS_H
#define KVB_FIELDS_H

#include <jansson.h>

#include "common/buf.h"
#include "workload.h"

/* One finished request with its derived figures (seconds; NAN = unknown). */
struct kvb_record {
	const char *expr_id;      /* not owned */
	const char *engine_id;    /* not owned */
	const struct kvb_req *req;
	const struct kvb_result *res;
	uint64_t t0;              /* monotonic start of the run */
	double wall0;             /* epoch seconds at t0 */
	int out_tokens;           /* completion tokens (usage, else counted); -1 */
	double ttft, ttft_sched, throughput, dispatch_lag, e2e, e2e_sched, tpot;
	double itl_mean, itl_p50, itl_p99, itl_max;
};

/* Fills the derived figures from r->req and r->res. */
void kvb_record_derive(struct kvb_record *r);

struct kvb_req_field {
	const char *name;
	void (*put)(struct kv_buf *b, const struct kvb_record *r);
};
extern const struct kvb_req_field kvb_req_fields[]; /* ends with { NULL } */

/* The CSV header line, and one record as a CSV line (both end in '\n'). */
void kvb_csv_header(struct kv_buf *b);
void kvb_csv_row(struct kv_buf *b, const struct kvb_record *r);
/* One outputs.jsonl line (ends in '\n'). */
void kvb_jsonl_row(struct kv_buf *b, const struct kvb_record *r);

/* RFC 4180 cell: quoted when it holds , " CR or LF; quotes doubled. */
void kvb_csv_cell(struct kv_buf *b, const char *s);
/* A JSON string literal with its quotes; NULL gives null. */
void kvb_json_str(struct kv_buf *b, const char *s);

enum kvb_sum_kind {
	KVB_SUM_COUNT,    /* integer */
	KVB_SUM_NUMBER,   /* number with a unit (s, requests/s, tokens/s), may be null */
	KVB_SUM_DIST,     /* object {mean,std,p50,p90,p99,p99_9,min,max,n}, seconds */
};

struct kvb_sum_field {
	const char *key;    /* summary.json member */
	const char *label;  /* terminal table */
	const char *unit;
	enum kvb_sum_kind kind;
	int metric;         /* KVB_SUM_DIST: enum kvb_metric of stats.h */
};
extern const struct kvb_sum_field kvb_sum_fields[]; /* ends with { NULL } */

/* The terminal table of a "groups" array (summary.json shape), one column per group. */
void kvb_summary_print(FILE *out, json_t *groups);

#endif
