/*
 * rand.h: kvbench's one seeded random generator (xoshiro256**, seeded
 * through splitmix64). Arrival schedules, workloads, the checks' bootstrap
 * and the report's bootstrap all draw from it, so that a seed gives the
 * same run, the same intervals and the same plots everywhere.
 */
#ifndef KVB_RAND_H
#define KVB_RAND_H

#include <stdint.h>

struct kvb_rand {
	uint64_t s[4];
};

void kvb_rand_seed(struct kvb_rand *r, uint64_t seed);
uint64_t kvb_rand_u64(struct kvb_rand *r);
/* Uniform in [0, 1). */
double kvb_rand_unit(struct kvb_rand *r);
/* Uniform in [0, n); n > 0. */
uint64_t kvb_rand_below(struct kvb_rand *r, uint64_t n);

#endif
