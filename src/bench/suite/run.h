/*
 * run.h: what `kvbench run` and `kvbench engine` share: test selection and
 * preparing the engines a selection needs.
 */
#ifndef KVB_SUITE_RUN_H
#define KVB_SUITE_RUN_H

#include "engines/engine.h"
#include "suite/suite.h"

/* -f FILTER: a substring of the name, or a glob when it has * ? or [. NULL: all. */
bool kvb_test_selected(const char *name, const char *filter);

/*
 * Prepares (kvb_engine_prepare) the engines that the selected tests (filter,
 * and tag when not NULL) need, in
 * suite order, with what they require; --quick leaves baseline engines out.
 * Allocates distinct free ports. *out is malloc'ed (release each, then free).
 * 0, or -1 after one error line.
 */
int kvb_suite_prepare_engines(const struct kvb_suite *s, const char *filter, const char *tag,
			      bool quick, const char *log_dir, struct kvb_engine **out,
			      size_t *n_out);

#endif
