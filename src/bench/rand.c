/* The seeded generator of kvbench; see rand.h. */
#include "rand.h"

#include "common/util.h"
#include "common/banned.h"

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

void kvb_rand_seed(struct kvb_rand *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t kvb_rand_u64(struct kvb_rand *r)
{
	uint64_t *s = r->s, res = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return res;
}

double kvb_rand_unit(struct kvb_rand *r)
{
	return (double)(kvb_rand_u64(r) >> 11) * 0x1.0p-53;
}

uint64_t kvb_rand_below(struct kvb_rand *r, uint64_t n)
{
	return (uint64_t)(kvb_rand_unit(r) * (double)n) % n;
}

