/*
 * libFuzzer target: suite files (YAML -> tree -> schema). Any input must give
 * either a suite or one error line: never a crash, a leak or a hang.
 *   ./build-fuzz/tests/fuzz/fuzz_suite -max_total_time=30 -close_fd_mask=2 CORPUS
 * (seed the corpus with tests/fixtures/suites/ and examples/)
 */
#include "common/util.h"

#include "suite/suite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvb_suite s;
	static bool once;

	if (!once) {
		setenv("KVB_FUZZ_VAR", "value", 1);
		once = true;
	}
	if (kvb_suite_load_buf(&s, "fuzz.yaml", (const char *)data, size, NULL) == 0)
		kvb_suite_release(&s);
	return 0;
}
