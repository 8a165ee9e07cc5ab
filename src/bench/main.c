/*
 * kvbench: correctness and performance testing of KV-cache layers for LLM
 * serving. This file holds only the table of subcommands.
 */
#include "common/util.h"

#include "commands.h"
#include "engines/engine.h"
#include "common/banned.h"

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct cmd commands[] = {
	{ "bench", cmd_bench, "drive one workload against a server and measure it" },
	{ "run", cmd_run, "run a suite: start engines, run tests, check thresholds, write results" },
	{ "engine", cmd_engine, "start, inspect or stop a suite's engines (for CI scripts)" },
	{ "check", cmd_check, "compare two outputs.jsonl files: identity, logprobs, accuracy, F1" },
	{ "report", cmd_report, "PDF, HTML and PNG charts from a results folder" },
	{ "compare", cmd_compare, "two results folders side by side; fails on a regression" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: kvbench [--version] [--help] COMMAND [ARGS]\n\n"
		     "Tests that a KV-cache layer changes no output, and measures what it buys.\n\n"
		     "Commands:\n");
	for (size_t i = 0; i < KV_ARRAY_SIZE(commands); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(out, "\nRun 'kvbench COMMAND --help' for the options of one command.\n"
		     "Exit codes: 0 all checks passed, 1 a check failed, 2 usage or config error,\n"
		     "3 runtime failure (engine would not start, server unreachable).\n");
}

int main(int argc, char **argv)
{
	kv_set_progname("kvbench");
	if (argc < 2) {
		usage(stderr);
		return KVB_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return KVB_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("kvbench %s\n", KV_VERSION);
		return KVB_EXIT_OK;
	}
	if (!strcmp(argv[1], KVB_GUARD_CMD)) /* internal: how kvbench run starts engines */
		return kvb_engine_guard_exec(argc - 2, argv + 2);
	for (size_t i = 0; i < KV_ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	kv_error("'%s' is not a kvbench command (see 'kvbench --help')", argv[1]);
	return KVB_EXIT_USAGE;
}
