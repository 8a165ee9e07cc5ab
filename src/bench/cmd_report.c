/* kvbench report: PDF, HTML and PNG charts from a results folder (docs/report.md). */
#include "common/util.h"

#include "common/opt.h"
#include "commands.h"
#include "report/report.h"
#include "common/banned.h"

int cmd_report(int argc, char **argv)
{
	const char *out = NULL;
	const struct kv_opt opts[] = {
		KV_OPT_STRING('o', "output", &out, "FILE",
			      "write FILE.pdf and FILE.html (or into FILE when it is a folder); "
			      "default: inside RESULTS_DIR"),
		KV_OPT_END,
	};
	struct kv_cmd_info info = {
		"kvbench report", "[options] RESULTS_DIR",
		"Write report.pdf (A4), report.html (one self-contained file) and\n"
		"charts/<name>.png from a results folder of 'kvbench run' or 'kvbench bench'.",
		"Example:\n  kvbench report results/2026-11-25T10-00-00 -o /tmp/report.pdf\n",
	};
	int n = kv_opt_parse(&info, opts, argc, argv, NULL);

	if (n < 0)
		return KVB_EXIT_USAGE;
	if (n != 1) {
		kv_error("report: expected one RESULTS_DIR, got %d arguments (see --help)", n);
		return KVB_EXIT_USAGE;
	}
	return kvb_report_write(argv[0], out);
}
