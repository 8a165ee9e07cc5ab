/*
 * metrics.h: an engine's Prometheus /metrics, fetched over HTTP and turned
 * into the cache counters the checks read (checks.h: kvb_prom_parse,
 * kvb_cache_counters_from_prom).
 *
 * Blocking calls (one libcurl easy transfer): call them between runs or
 * between passes, never from the run loop's callbacks.
 */
#ifndef KVB_METRICS_H
#define KVB_METRICS_H

#include "checks/checks.h"

#define KVB_METRICS_MAX_BYTES ((size_t)16 << 20)

/*
 * GET base_url + "/metrics" (a trailing "/" or "/v1" of base_url is
 * dropped; no proxy for loopback). 0: *text (malloc'ed, NUL-terminated,
 * owned by the caller) and *len hold the body, at most 16 MiB. -1: *err is a
 * malloc'ed line: the transfer's error (refused, timeout), "http CODE: ..."
 * when the server answered with an error status (a server without /metrics
 * gives "http 404: ..."), or "larger than 16 MiB".
 */
int kvb_metrics_fetch(const char *base_url, double timeout_s, char **text, size_t *len,
		      char **err);
/* Fetch, parse and read the known cache counters into *out. 0, or -1 with
 * *err as kvb_metrics_fetch. */
int kvb_metrics_counters(const char *base_url, double timeout_s, struct kvb_cache_counters *out,
			 char **err);

#endif
