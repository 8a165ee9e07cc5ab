/* kvbench bench: placeholder until the client lands (issue: kvbench foundation). */
#include "common/util.h"
#include "common/opt.h"
#include "commands.h"

int cmd_bench(int argc, char **argv)
{
	const struct kv_opt opts[] = { KV_OPT_END };
	struct kv_cmd_info info = { "kvbench bench", "[options]",
				    "Drive one workload against an OpenAI-compatible server.", NULL };
	if (kv_opt_parse(&info, opts, argc, argv, NULL) < 0)
		return KVB_EXIT_USAGE;
	kv_error("bench: not built yet");
	return KVB_EXIT_RUNTIME;
}
