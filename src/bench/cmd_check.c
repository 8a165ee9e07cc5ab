/*
 * kvbench check BASE_OUTPUTS.jsonl NEW_OUTPUTS.jsonl: the correctness
 * checks between two recorded runs (or two passes of one run), without a
 * server. Exit 0 when every check passes, 1 when one fails, 2 on bad input.
 */
#include "common/util.h"

#include <math.h>

#include "common/opt.h"
#include "checks/checks.h"
#include "commands.h"
#include "common/banned.h"

static bool free_text_expected(const struct kvb_pair *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *e = p[i].base->expected ? p[i].base->expected : p[i].cand->expected;
		double v;
		if (!e)
			continue;
		if (e[0] >= 'A' && e[0] <= 'D' && !e[1])
			continue;
		if (kv_parse_double(e, &v) == 0)
			continue;
		return true;
	}
	return false;
}

/* Counters after - before from two saved /metrics texts. 0, or -1 (printed). */
static int load_delta(const char *before, const char *after, struct kvb_cache_counters *cd)
{
	struct kvb_prom pb, pa;
	struct kvb_cache_counters cb, ca;
	size_t lb, la;
	char *tb, *ta;

	if (!before || !after) {
		kv_error("check: --metrics-before and --metrics-after go together");
		return -1;
	}
	tb = kv_read_file(before, 64u << 20, &lb);
	ta = kv_read_file(after, 64u << 20, &la);
	if (!tb || !ta) {
		kv_error("%s: cannot read", !tb ? before : after);
		free(tb);
		free(ta);
		return -1;
	}
	kvb_prom_parse(tb, lb, &pb);
	kvb_prom_parse(ta, la, &pa);
	kvb_cache_counters_from_prom(&pb, &cb);
	kvb_cache_counters_from_prom(&pa, &ca);
	kvb_cache_counters_diff(&cb, &ca, cd);
	kvb_prom_release(&pb);
	kvb_prom_release(&pa);
	free(tb);
	free(ta);
	return 0;
}

static int write_checks(const char *path, const struct kvb_check *c, int n)
{
	json_t *a = json_array();
	char *s;

	for (int i = 0; i < n; i++)
		json_array_append_new(a, kvb_check_to_json(&c[i]));
	s = json_dumps(a, JSON_INDENT(1));
	json_decref(a);
	if (!s || kv_write_file_atomic(path, s, strlen(s)) < 0) {
		kv_error("%s: cannot write", path);
		free(s);
		return -1;
	}
	free(s);
	return 0;
}

/* kvbench check --key-isolation FILE [--metrics-before B --metrics-after A] */
static int key_isolation(const char *path, const char *before, const char *after,
			 const char *family, const char *json_path)
{
	struct kvb_outputs o;
	struct kvb_cache_counters d;
	struct kvb_check c;
	int rc = KVB_EXIT_USAGE;

	if ((before || after) && load_delta(before, after, &d) < 0)
		return KVB_EXIT_USAGE;
	if (kvb_outputs_load(path, &o) < 0)
		return KVB_EXIT_USAGE;
	kvb_check_key_isolation_records(&o, before ? &d : NULL, family, &c);
	kvb_check_print(stdout, &c);
	if (json_path && write_checks(json_path, &c, 1) < 0)
		rc = KVB_EXIT_RUNTIME;
	else
		rc = c.passed ? KVB_EXIT_OK : KVB_EXIT_CHECK;
	kvb_outputs_release(&o);
	return rc;
}

int cmd_check(int argc, char **argv)
{
	const char *base_engine = NULL, *cand_engine = NULL, *div_path = NULL, *json_path = NULL;
	const char *m_before = NULL, *m_after = NULL, *family = "auto", *key_iso = NULL;
	bool claims = true;
	int64_t base_pass = -1, cand_pass = -1, seed = 0;
	double near_tie = -1, max_lp = -1, max_kl = -1, max_acc = KVB_MAX_ACC_DROP_DEFAULT;
	const char *tol_name = "bf16";
	static const char *const tol_names[] = { "bf16", "fp32", NULL };
	const struct kvb_tolerance *tol;
	double alpha = KVB_ALPHA_DEFAULT, max_q = KVB_MAX_QUALITY_DROP_DEFAULT;
	bool strict = false, allow_unpaired = false;
	const struct kv_opt opts[] = {
		KV_OPT_GROUP("Selection"),
		KV_OPT_STRING(0, "base-engine", &base_engine, "ID", "use only baseline records of this engine_id"),
		KV_OPT_STRING(0, "cand-engine", &cand_engine, "ID", "use only candidate records of this engine_id"),
		KV_OPT_INT(0, "base-pass", &base_pass, "P", -1, 1000000, "use only this baseline pass (-1: all, paired pass with pass)"),
		KV_OPT_INT(0, "cand-pass", &cand_pass, "P", -1, 1000000, "use only this candidate pass (-1: all)"),
		KV_OPT_BOOL(0, "allow-unpaired", &allow_unpaired, "keys present on one side only do not fail the completeness check"),
		KV_OPT_GROUP("Thresholds"),
		KV_OPT_CHOICE(0, "tolerance", &tol_name, tol_names, "numeric preset: bf16 (GPU engines: 0.1 nats) or fp32 (exact engines such as kvserve: 1e-3 nats)"),
		KV_OPT_DOUBLE(0, "near-tie-nats", &near_tie, "NATS", -1, 100, "a flipped token whose top-1/top-2 gap is below this is a benign near-tie (-1: from --tolerance)"),
		KV_OPT_BOOL(0, "strict", &strict, "benign near-ties fail the identity check too"),
		KV_OPT_DOUBLE(0, "max-lp-delta", &max_lp, "NATS", -1, 1000, "max |delta logprob| of a chosen token (-1: from --tolerance)"),
		KV_OPT_DOUBLE(0, "max-kl", &max_kl, "NATS", -1, 1000, "max KL over the top-k at one position (-1: from --tolerance)"),
		KV_OPT_DOUBLE(0, "max-accuracy-drop", &max_acc, "FRAC", 0, 1, "allowed accuracy drop (0.02 = 2 points)"),
		KV_OPT_DOUBLE(0, "alpha", &alpha, "P", 1e-9, 0.5, "significance level of the McNemar test and the bootstrap"),
		KV_OPT_DOUBLE(0, "max-quality-drop", &max_q, "F", 0, 1, "allowed F1 / ROUGE-L drop"),
		KV_OPT_INT(0, "seed", &seed, "N", 0, INT64_MAX, "bootstrap seed"),
		KV_OPT_GROUP("Key isolation (instead of the two files: one key-probe run)"),
		KV_OPT_STRING(0, "key-isolation", &key_iso, "FILE", "judge the outputs.jsonl of a key-probe run: no cross hits between keys (with --metrics-*: counters too)"),
		KV_OPT_GROUP("Cache counters (Prometheus text saved before and after the candidate pass)"),
		KV_OPT_STRING(0, "metrics-before", &m_before, "FILE", "/metrics text before the pass"),
		KV_OPT_STRING(0, "metrics-after", &m_after, "FILE", "/metrics text after the pass"),
		KV_OPT_CHOICE(0, "cache-family", &family, kvb_cache_family_choices, "counters to judge: auto, lmcache, pegaflow, external, apc, sglang"),
		KV_OPT_BOOL(0, "claims-reuse", &claims, "the pass claims cache reuse (cache_path must see hits)"),
		KV_OPT_GROUP("Output"),
		KV_OPT_STRING(0, "divergences", &div_path, "FILE", "write differing pairs (both texts) as JSONL"),
		KV_OPT_STRING(0, "json", &json_path, "FILE", "write the checks as a JSON list (summary.json \"checks\")"),
		KV_OPT_END,
	};
	struct kv_cmd_info info = {
		"kvbench check", "[options] BASE_OUTPUTS.jsonl NEW_OUTPUTS.jsonl",
		"Compare two outputs.jsonl files (or two passes of one: give the same file twice with\n"
		"--base-pass 0 --cand-pass 1). Records pair by key (and by pass when no pass is chosen).\n"
		"Runs identity (with divergence classification), logprob and prompt-logprob deltas,\n"
		"and, when the records carry expected answers, accuracy (Wilson, exact McNemar) and\n"
		"F1 / ROUGE-L (paired bootstrap). Exit 0: all passed; 1: a check failed; 2: bad input.",
		"examples:\n"
		"  kvbench check out/outputs.jsonl out/outputs.jsonl --base-pass 0 --cand-pass 1\n"
		"  kvbench check --key-isolation probe/outputs.jsonl --metrics-before b.prom --metrics-after a.prom",
	};
	struct kvb_outputs base = { 0 }, cand = { 0 };
	const struct kvb_outputs *candp;
	struct kvb_select bs, cs;
	struct kvb_pair *pairs = NULL;
	size_t n_pairs = 0, n_unpaired = 0, n_failed = 0, n_aborted = 0;
	struct kvb_check checks[16];
	int n_checks = 0, rc = KVB_EXIT_USAGE, npos;
	struct kvb_identity_opts io = { 0 };
	struct kvb_identity_result ir;
	struct kvb_lp_opts lo = { 0 };
	struct kvb_lp_stats ls;
	struct kvb_acc_opts ao;
	struct kvb_acc_result ar;
	struct kvb_quality_opts qo;
	struct kvb_quality_result qr;
	bool all_ok = true;

	npos = kv_opt_parse(&info, opts, argc, argv, NULL);
	if (npos < 0)
		return KVB_EXIT_USAGE;
	tol = kvb_tolerance_find(tol_name);
	if (!tol) {
		kv_error("check: --tolerance: unknown preset '%s'", tol_name);
		return KVB_EXIT_USAGE;
	}
	if (near_tie <= 0)
		near_tie = tol->near_tie_nats;
	if (max_lp <= 0)
		max_lp = tol->max_lp_delta;
	if (max_kl <= 0)
		max_kl = tol->max_kl;
	if (key_iso) {
		if (npos) {
			kv_error("check: --key-isolation takes one file, got %d more arguments", npos);
			return KVB_EXIT_USAGE;
		}
		return key_isolation(key_iso, m_before, m_after, family, json_path);
	}
	if (npos != 2) {
		kv_error("check: expected two outputs.jsonl files, got %d arguments (see --help)", npos);
		return KVB_EXIT_USAGE;
	}
	if (kvb_outputs_load(argv[0], &base) < 0)
		return KVB_EXIT_USAGE;
	if (!strcmp(argv[0], argv[1])) {
		candp = &base;
	} else {
		if (kvb_outputs_load(argv[1], &cand) < 0)
			goto out;
		candp = &cand;
	}
	bs.engine_id = base_engine;
	bs.pass = (int)base_pass;
	cs.engine_id = cand_engine;
	cs.pass = (int)cand_pass;
	kvb_pair_outputs_ex(&base, &bs, candp, &cs, &pairs, &n_pairs, &n_unpaired, &n_failed,
			    &n_aborted);
	printf("pairs: %zu (unpaired records: %zu, failed requests left out: %zu, "
	       "aborted by the client: %zu)\n", n_pairs, n_unpaired, n_failed, n_aborted);

	kvb_check_completeness_ex(n_pairs, n_unpaired, n_failed, n_aborted, allow_unpaired,
				  &checks[n_checks++]);
	io.near_tie_nats = near_tie;
	io.strict = strict;
	io.divergences_path = div_path;
	if (kvb_check_identity(pairs, n_pairs, &io, &ir, &checks[n_checks++]) < 0) {
		kvb_identity_result_release(&ir);
		rc = KVB_EXIT_RUNTIME;
		goto out;
	}
	for (size_t i = 0; i < ir.n_div && i < 10; i++)
		printf("  differs: key %s char %ld token %ld %s (gap %.4g nats: %s)\n",
		       ir.div[i].pair->base->key, ir.div[i].char_pos, ir.div[i].token_pos,
		       kvb_div_class_name(ir.div[i].cls), ir.div[i].gap, ir.div[i].why);
	kvb_identity_result_release(&ir);

	lo.max_abs_delta = max_lp;
	lo.max_kl = max_kl;
	if (kvb_check_logprobs(pairs, n_pairs, &lo, &ls, &checks[n_checks]) == 0)
		n_checks++;
	lo.prompt = true;
	if (kvb_check_logprobs(pairs, n_pairs, &lo, &ls, &checks[n_checks]) == 0)
		n_checks++;
	ao.max_drop = max_acc;
	ao.alpha = alpha;
	if (kvb_check_accuracy(pairs, n_pairs, &ao, &ar, &checks[n_checks]) == 0)
		n_checks++;
	if (free_text_expected(pairs, n_pairs)) {
		qo.max_drop = max_q;
		qo.seed = (uint64_t)seed;
		if (kvb_check_quality(pairs, n_pairs, &qo, &qr, &checks[n_checks]) == 0)
			n_checks += 2;
	}
	if (m_before || m_after) {
		struct kvb_cache_counters cd;
		if (load_delta(m_before, m_after, &cd) < 0) {
			rc = KVB_EXIT_USAGE;
			goto out;
		}
		kvb_check_cache_path(&cd, family, -1, claims, &checks[n_checks++]);
		kvb_check_silent_miss(&cd, family, &checks[n_checks++]);
	}
	for (int i = 0; i < n_checks; i++) {
		kvb_check_print(stdout, &checks[i]);
		all_ok &= checks[i].passed;
	}
	if (json_path && write_checks(json_path, checks, n_checks) < 0) {
		rc = KVB_EXIT_RUNTIME;
		goto out;
	}
	rc = all_ok ? KVB_EXIT_OK : KVB_EXIT_CHECK;
out:
	free(pairs);
	kvb_outputs_release(&base);
	kvb_outputs_release(&cand);
	return rc;
}
