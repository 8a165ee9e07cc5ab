/*
 * opt.h: one option table drives the parser, --help and the docs.
 *
 * A command declares its options as an array ending in KV_OPT_END, with the
 * variables already holding their defaults:
 *
 *   int64_t conc = 8; const char *url = "http://127.0.0.1:8000";
 *   const struct kv_opt opts[] = {
 *       KV_OPT_GROUP("Target"),
 *       KV_OPT_STRING('u', "url", &url, "URL", "base URL of the server"),
 *       KV_OPT_INT('c', "concurrency", &conc, "N", 1, 100000, "requests in flight"),
 *       KV_OPT_END,
 *   };
 *   struct kv_cmd_info info = { "kvbench bench", "[options]", "Benchmark a server." };
 *   int npos = kv_opt_parse(&info, opts, argc, argv, NULL);
 *   if (npos < 0) return 2;      // the error line was printed
 *   // argv[0..npos-1] now hold the positional arguments
 *
 * --help / -h prints the help to stdout and exits 0; the default of each
 * option is printed from the variable's value at that moment, so help never
 * disagrees with the code. Usage errors print one line to stderr:
 *   kvbench: error: bench: --concurrency: expected an integer in 1..100000, got 'x'
 * Boolean options accept --no-NAME. "--" ends the options.
 */
#ifndef KV_OPT_H
#define KV_OPT_H

#include "common/compat.h"

enum kv_opt_type {
	KV_OPT_T_END,
	KV_OPT_T_GROUP,    /* a heading in the help; no option */
	KV_OPT_T_BOOL,     /* bool *; --NAME sets, --no-NAME clears */
	KV_OPT_T_INT,      /* int64_t *, checked against [min, max] */
	KV_OPT_T_DOUBLE,   /* double *, checked against [dmin, dmax] */
	KV_OPT_T_STRING,   /* const char **, points into argv */
	KV_OPT_T_SIZE,     /* uint64_t *, bytes; accepts 64k, 1GiB, 2GB */
	KV_OPT_T_CHOICE,   /* const char **, must be one of choices[] */
	KV_OPT_T_CALLBACK, /* cb(opt, arg, ctx) for each use; repeatable */
};

#define KV_OPT_HIDDEN 1u   /* not shown in --help */
#define KV_OPT_NOARG 2u    /* callback takes no argument */

struct kv_opt;
typedef int (*kv_opt_cb)(const struct kv_opt *opt, const char *arg, void *ctx);

struct kv_opt {
	enum kv_opt_type type;
	char short_name;        /* 0: none */
	const char *long_name;
	void *value;
	const char *argh;       /* name of the argument in help: "N", "URL" */
	const char *help;       /* one line; say the unit */
	int64_t min, max;
	double dmin, dmax;
	const char *const *choices; /* NULL-terminated */
	kv_opt_cb cb;
	unsigned flags;
};

#define KV_OPT_END { .type = KV_OPT_T_END }
#define KV_OPT_GROUP(h) { .type = KV_OPT_T_GROUP, .help = (h) }
#define KV_OPT_BOOL(s, l, v, h) { .type = KV_OPT_T_BOOL, .short_name = (s), .long_name = (l), .value = (v), .help = (h) }
#define KV_OPT_INT(s, l, v, a, lo, hi, h) { .type = KV_OPT_T_INT, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), .min = (lo), .max = (hi), .help = (h) }
#define KV_OPT_DOUBLE(s, l, v, a, lo, hi, h) { .type = KV_OPT_T_DOUBLE, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), .dmin = (lo), .dmax = (hi), .help = (h) }
#define KV_OPT_STRING(s, l, v, a, h) { .type = KV_OPT_T_STRING, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), .help = (h) }
#define KV_OPT_SIZE(s, l, v, a, h) { .type = KV_OPT_T_SIZE, .short_name = (s), .long_name = (l), .value = (v), .argh = (a), .help = (h) }
#define KV_OPT_CHOICE(s, l, v, ch, h) { .type = KV_OPT_T_CHOICE, .short_name = (s), .long_name = (l), .value = (v), .choices = (ch), .help = (h) }
#define KV_OPT_CALLBACK(s, l, a, fn, h) { .type = KV_OPT_T_CALLBACK, .short_name = (s), .long_name = (l), .argh = (a), .cb = (fn), .help = (h) }

struct kv_cmd_info {
	const char *name;        /* "kvbench bench" */
	const char *usage;       /* "[options] SUITE.yaml" */
	const char *description; /* a paragraph; may hold newlines */
	const char *epilog;      /* examples etc., printed after the options; may be NULL */
};

/*
 * Parses argv[1..argc-1] (argv[0] is the command name). On success moves the
 * positional arguments to argv[0..n-1] and returns n. On a usage error prints
 * one line and returns -1. --help exits the process with 0.
 * A callback returning non-zero stops the parse with -1 (it prints its own error).
 */
int kv_opt_parse(const struct kv_cmd_info *info, const struct kv_opt *opts,
		 int argc, char **argv, void *ctx);

/* The help text, as --help prints it. */
void kv_opt_help(FILE *out, const struct kv_cmd_info *info, const struct kv_opt *opts);
/* The options as a Markdown table, for docs/. */
void kv_opt_markdown(FILE *out, const struct kv_cmd_info *info, const struct kv_opt *opts);

#endif
