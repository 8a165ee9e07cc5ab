/*
 * libFuzzer target: the requests.csv reader (src/bench/report/csv.c), then
 * the typed view of the rows that the report takes from it. Must never crash,
 * leak or read out of bounds, whatever the bytes.
 *   ./build-fuzz/tests/fuzz/fuzz_report_csv -max_total_time=30 -max_len=4096
 */
#include "common/util.h"

#include "report/csv.h"
#include "common/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvr_csv c;
	char err[256];
	size_t total = 0;

	if (kvr_csv_parse(&c, (const char *)data, size, err, sizeof(err)) < 0) {
		/* An error names a line and fits the buffer. */
		if (!strchr(err, ':'))
			__builtin_trap();
		return 0;
	}
	if (c.ncols == 0 || kvr_csv_col(&c, "TTFT") >= (int)c.ncols)
		__builtin_trap();
	for (size_t r = 0; r < c.nrows; r++) {
		for (size_t k = 0; k < c.ncols; k++)
			total += strlen(kvr_csv_cell(&c, r, (int)k));
		if (kvr_csv_line(&c, r) == 0)
			__builtin_trap();
	}
	/* Unquoting only shrinks the data. */
	if (total > size)
		__builtin_trap();
	kvr_csv_release(&c);
	return 0;
}
