/*
 * arrival.h: inter-arrival gaps of an open-loop schedule.
 *
 * The runner adds the gaps to the start time to get each request's scheduled
 * send time (an absolute timeline: a late send does not push later ones).
 *   constant: every gap is 1/rate
 *   poisson:  exponential gaps of mean 1/rate (coefficient of variation 1)
 *   gamma:    gamma gaps of shape B (--burstiness) and mean 1/rate; B < 1 is
 *             burstier than Poisson, B > 1 smoother, B = 1 is Poisson
 * Deterministic for a given seed.
 */
#ifndef KVB_ARRIVAL_H
#define KVB_ARRIVAL_H

#include "rand.h"
#include "runner.h"

struct kvb_arrival_gen {
	enum kvb_arrival kind;
	double rate;        /* requests/s, > 0 */
	double shape;       /* gamma shape */
	struct kvb_rand rng;
};

void kvb_arrival_init(struct kvb_arrival_gen *g, enum kvb_arrival kind, double rate,
		      double burstiness, uint64_t seed);
/* The next gap in seconds (0 for the closed loop). */
double kvb_arrival_next(struct kvb_arrival_gen *g);
/* "closed", "constant", "poisson", "gamma". */
const char *kvb_arrival_name(enum kvb_arrival a);
/* 0 and *out set, or -1 for an unknown name. */
int kvb_arrival_parse(const char *name, enum kvb_arrival *out);

#endif
