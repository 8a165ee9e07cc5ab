/* libFuzzer target: the Prometheus exposition parser and the cache counters. */
#include "common/util.h"

#include "checks/checks.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvb_prom p;
	struct kvb_cache_counters c, d;
	struct kvb_check ck;
	kvb_prom_parse((const char *)data, size, &p);
	kvb_cache_counters_from_prom(&p, &c);
	kvb_cache_counters_diff(&c, &c, &d);
	kvb_check_cache_path(&d, NULL, -1, true, &ck);
	kvb_check_silent_miss(&c, NULL, &ck);
	kvb_prom_release(&p);
	return 0;
}
