/* libFuzzer target: the CSV reader and the MMLU row checks. */
#include "common/util.h"

#include "workloads/loaders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvb_mcq_set s;
	struct kvb_csv c;
	if (kvb_csv_parse("fuzz", (const char *)data, size, &c) == 0)
		kvb_csv_release(&c);
	if (kvb_mmlu_parse_csv("fuzz", (const char *)data, size, &s) == 0)
		kvb_mcq_set_release(&s);
	return 0;
}
