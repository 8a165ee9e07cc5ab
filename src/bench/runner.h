/*
 * runner.h: sends the requests of one or more workloads to their targets on
 * one event loop, on a schedule, and records every result.
 *
 * This is what `kvbench bench` and `kvbench run` (each experiment of a suite)
 * call. One item = one workload against one target (engine); several items
 * run at the same time on the same loop (the lmcache-tests experiment runner:
 * one workload config, N engines at once, each with its own workload object
 * made from the same params and seed).
 *
 * Records stream to the sinks as they complete (bounded memory); statistics
 * are kept per (item, pass) in histograms.
 */
#ifndef KVB_RUNNER_H
#define KVB_RUNNER_H

#include "workload.h"

struct kvb_target {
	const char *engine_id;   /* name in results ("kvserve-cache", or the URL) */
	const char *base_url;    /* "http://127.0.0.1:8000" (no /v1) */
	const char *model;       /* model name; NULL: first of GET /v1/models */
	const char *api_key_env; /* name of the env var holding the API key, or NULL */
	bool return_token_ids;   /* ask for choices[].token_ids (vLLM, kvserve) */
};

enum kvb_arrival { KVB_ARRIVAL_CLOSED, KVB_ARRIVAL_CONSTANT, KVB_ARRIVAL_POISSON, KVB_ARRIVAL_GAMMA };

/*
 * Options of one run. Start from kvb_run_opts_init() (the defaults below),
 * then set what differs; members added later default to zero = old behaviour.
 */
struct kvb_run_opts {
	const char *expr_id;       /* first CSV column: test name or "bench" */
	int concurrency;           /* closed loop: requests in flight per item; also the
	                              cap on in-flight requests in open loop (0 = none) */
	enum kvb_arrival arrival;
	double rate;               /* open loop: requests/s per item */
	double burstiness;         /* gamma shape; 1 = Poisson */
	uint64_t seed;
	int64_t max_requests;      /* per item; 0 = until the workload ends */
	double duration_s;         /* 0 = no limit */
	double connect_timeout_s;  /* default 10 */
	double request_timeout_s;  /* default 600 */
	bool progress;             /* live progress line (only on a terminal) */
	const char *out_dir;       /* requests.csv, outputs.jsonl go here; NULL: none */
	volatile int *cancel;      /* set non-zero (e.g. by SIGINT) to stop early */
	bool no_stream;            /* send stream=false (no TTFT/ITL figures) */
	long recv_buffer;          /* curl receive buffer per stream, bytes; 0 = 2 KiB */
	/* Client-side aborts (a user pressing stop): with abort_every = N > 0,
	   every non-warmup request whose id % N == N - 1 is closed by the
	   client once abort_after_tokens output tokens arrived (0 = 1 when
	   abort_after_s is 0) or abort_after_s seconds after the send (> 0).
	   Its record has status "aborted": not completed, not failed, not in
	   statistics; the other requests (the victims) are compared normally. */
	int abort_every;
	int abort_after_tokens;
	double abort_after_s;
	/* Pass barrier: when set, before an item sends the first request of a
	   pass higher than every pass it sent so far (a warm pass after the
	   cold one), it waits until its requests in flight finished, then
	   calls on_pass(on_pass_ctx, item index, that pass) from the run loop
	   (blocking is fine: the item has nothing in flight). Not called for
	   the first pass an item sends. Workloads that interleave passes
	   (ttft-sweep: cold, warm, cold, warm) get one drain per new highest
	   pass, not one per switch. NULL: no barrier. */
	void (*on_pass)(void *ctx, size_t item, int pass);
	void *on_pass_ctx;
};

void kvb_run_opts_init(struct kvb_run_opts *o);

struct kvb_run_item {
	struct kvb_workload *wl;   /* not owned */
	struct kvb_target target;
};

struct kvb_stats;             /* per-(item, pass) statistics; see stats.h */

struct kvb_run_result {
	bool interrupted;          /* *cancel was set: requests in flight were cut
	                              (recorded as "cancelled", not counted) */
	uint64_t completed, failed; /* non-warmup requests, all items and passes */
	uint64_t aborted;           /* non-warmup requests aborted by the client */
	double duration_s;          /* first send to last end */
	/* JSON text of the summary's "groups" array (docs/RESULTS.md): one group
	   per (item, pass) in item order, then pass order; malloc'ed */
	char *groups_json;
};

/*
 * Runs until every workload is finished, max_requests or duration is reached,
 * or *cancel becomes non-zero. Returns 0, or -1 on a setup failure (printed):
 * the output folder cannot be written, the API key variable is unset, or the
 * model of a target is NULL and GET /v1/models fails (server unreachable).
 * Request failures are not errors here: they are counted and recorded.
 *
 * Schedule: closed loop keeps o->concurrency requests in flight per item
 * (scheduled = sent). Open loop schedules request i of an item at
 * start + sum of i arrival gaps (an absolute timeline; a late send does not
 * delay the next), or at start + req->at_s when the workload sets it; with
 * o->concurrency > 0 at most that many are in flight (the wait shows up as
 * dispatch lag). When next() returns 0 the item is asked again after its next
 * completion. After the duration no new request is sent; those in flight
 * finish. wl->ops->done() is called for every request next() returned (with a
 * "cancelled" result for one fetched but never sent). Each item gets its own
 * arrival stream (seed + item index). Warmup requests are written to the
 * files but not counted in statistics. The engine_id of an item defaults to
 * its base_url.
 */
int kvb_run(struct kvb_run_item *items, size_t n, const struct kvb_run_opts *o,
	    struct kvb_run_result *out);
void kvb_run_result_release(struct kvb_run_result *r);

#endif
