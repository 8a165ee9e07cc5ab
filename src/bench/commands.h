/*
 * commands.h: the subcommands of kvbench. Each lives in its own file
 * (cmd_NAME.c) and is registered in the table in main.c.
 *
 * A command gets argv with argv[0] = its own name, returns the process exit
 * code: 0 all checks passed, 1 a check failed, 2 usage or config error,
 * 3 runtime failure (engine would not start, server unreachable).
 */
#ifndef KVB_COMMANDS_H
#define KVB_COMMANDS_H

enum {
	KVB_EXIT_OK = 0,
	KVB_EXIT_CHECK = 1,
	KVB_EXIT_USAGE = 2,
	KVB_EXIT_RUNTIME = 3,
};

int cmd_bench(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_engine(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_compare(int argc, char **argv);

#endif
