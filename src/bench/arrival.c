/* Arrival processes for open-loop schedules; see arrival.h. */
#include "arrival.h"

#include <math.h>

#include "common/util.h"
#include "common/banned.h"

/* (0, 1]: safe for log(). */
static double unit_open(struct kvb_rand *r)
{
	return 1.0 - kvb_rand_unit(r);
}

static double normal(struct kvb_rand *r)
{
	double u = unit_open(r), v = kvb_rand_unit(r);

	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* Marsaglia and Tsang's method; shape < 1 by the boost U^(1/shape). */
static double gamma_unit(struct kvb_rand *r, double shape)
{
	double d, c, x, v, u;

	if (shape < 1.0)
		return gamma_unit(r, shape + 1.0) * pow(unit_open(r), 1.0 / shape);
	d = shape - 1.0 / 3.0;
	c = 1.0 / sqrt(9.0 * d);
	for (int tries = 0; tries < 1000; tries++) {
		do {
			x = normal(r);
			v = 1.0 + c * x;
		} while (v <= 0);
		v = v * v * v;
		u = unit_open(r);
		if (log(u) < 0.5 * x * x + d - d * v + d * log(v))
			return d * v;
	}
	return shape; /* never reached in practice: the mean */
}

void kvb_arrival_init(struct kvb_arrival_gen *g, enum kvb_arrival kind, double rate,
		      double burstiness, uint64_t seed)
{
	g->kind = kind;
	g->rate = rate > 0 ? rate : 1;
	g->shape = burstiness > 0 ? burstiness : 1;
	kvb_rand_seed(&g->rng, seed ^ 0x61727269766c6eull);
}

double kvb_arrival_next(struct kvb_arrival_gen *g)
{
	switch (g->kind) {
	case KVB_ARRIVAL_CLOSED:
		return 0;
	case KVB_ARRIVAL_CONSTANT:
		return 1.0 / g->rate;
	case KVB_ARRIVAL_POISSON:
		return -log(unit_open(&g->rng)) / g->rate;
	case KVB_ARRIVAL_GAMMA:
		return gamma_unit(&g->rng, g->shape) / (g->shape * g->rate);
	}
	return 0;
}

static const char *const names[] = {
	[KVB_ARRIVAL_CLOSED] = "closed",
	[KVB_ARRIVAL_CONSTANT] = "constant",
	[KVB_ARRIVAL_POISSON] = "poisson",
	[KVB_ARRIVAL_GAMMA] = "gamma",
};

const char *kvb_arrival_name(enum kvb_arrival a)
{
	return (unsigned)a < KV_ARRAY_SIZE(names) ? names[a] : "unknown";
}

int kvb_arrival_parse(const char *name, enum kvb_arrival *out)
{
	for (size_t i = 0; i < KV_ARRAY_SIZE(names); i++)
		if (!strcmp(name, names[i])) {
			*out = (enum kvb_arrival)i;
			return 0;
		}
	return -1;
}
