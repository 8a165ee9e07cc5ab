/* libFuzzer target: the JSONL and JSON loaders (generation, rag, outputs,
 * ShareGPT). */
#include "common/util.h"

#include "checks/checks.h"
#include "workloads/loaders.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvb_gen_set g;
	struct kvb_rag_set r;
	struct kvb_outputs o;
	struct kvb_conv_set c;
	const char *t = (const char *)data;
	if (kvb_gen_parse("fuzz", t, size, &g) == 0)
		kvb_gen_set_release(&g);
	if (kvb_rag_parse("fuzz", t, size, &r) == 0)
		kvb_rag_set_release(&r);
	if (kvb_outputs_parse("fuzz", t, size, &o) == 0) {
		struct kvb_pair *p;
		size_t n, u, f;
		struct kvb_identity_result ir;
		struct kvb_check ck;
		struct kvb_lp_stats ls;
		kvb_pair_outputs(&o, NULL, &o, NULL, &p, &n, &u, &f);
		kvb_check_identity(p, n, NULL, &ir, &ck);
		kvb_identity_result_release(&ir);
		kvb_check_logprobs(p, n, NULL, &ls, &ck);
		free(p);
		kvb_outputs_release(&o);
	}
	if (kvb_sharegpt_parse("fuzz", t, size, &c) == 0)
		kvb_conv_set_release(&c);
	return 0;
}
