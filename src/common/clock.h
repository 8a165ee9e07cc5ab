/*
 * clock.h: the one monotonic clock of the project.
 *
 * All timing (request send, first byte, tokens, scheduler steps) reads
 * kv_now_ns(): CLOCK_MONOTONIC in nanoseconds. Wall-clock time appears only
 * as a label (kv_wall_s) in results, never in a duration.
 */
#ifndef KV_CLOCK_H
#define KV_CLOCK_H

#include <stdint.h>

uint64_t kv_now_ns(void);
/* Seconds since the Unix epoch (CLOCK_REALTIME), for timestamps in results. */
double kv_wall_s(void);
/* Sleep until the monotonic time t (ns); returns at once if t is past. */
void kv_sleep_until_ns(uint64_t t);

static inline double kv_ns_to_s(uint64_t ns) { return (double)ns / 1e9; }

#endif
