/*
 * mmlu: MMLU-format multiple choice (REFERENCE.md §6), every question sent
 * twice: pass 0 (cold), then, after all of pass 0 is done, pass 1 (warm).
 * Three prompt formats, byte for byte as the original harnesses build them:
 *   hendrycks: hendrycks/test evaluate.py ("about  abstract algebra." with
 *              two spaces; shots "q\nA. ..\nAnswer: X\n\n")
 *   lm-eval:   lm-evaluation-harness mmlu default template (one space;
 *              shots joined with "\n\n", target delimiter " ")
 *   lmcache:   LMCache .buildkite/correctness/2-mmlu.py (32 spaces before
 *              "about", shots answered with option D's text as that script
 *              does, prompt = prefix + "\n\n" + query)
 * k_shot dev questions are used in file order in every format (the
 * originals crop by model tokens; see docs/workloads.md).
 */
#include "common/util.h"

#include "common/buf.h"
#include "workloads/loaders.h"
#include "workloads/wl_util.h"
#include "common/banned.h"

static const struct kvb_wl_key mmlu_keys[] = {
	{ "path", "", "", "folder with dev/<subject>_dev.csv and test/<subject>_test.csv" },
	{ "subjects", "all", "", "comma list of subjects (file names without _test.csv), or all" },
	{ "k_shot", "5", "", "dev questions as worked examples in each prompt" },
	{ "questions_per_subject", "0", "", "first N test questions of each subject; 0 = all" },
	{ "format", "hendrycks", "", "prompt format: hendrycks, lm-eval or lmcache" },
	{ "scoring", "generate", "", "generate: first generated letter; logprobs: best of A-D in the first token's top list" },
	{ "top_logprobs", "20", "", "top-k asked for with scoring=logprobs" },
	{ "passes", "2", "", "times each question is sent (pass 0 cold, later warm)" },
	{ NULL, NULL, NULL, NULL },
};

enum mmlu_fmt { FMT_HENDRYCKS, FMT_LMEVAL, FMT_LMCACHE };

static void put_question(struct kv_buf *b, const struct kvb_mcq *q, bool strip)
{
	const char *s = q->question;
	size_t l = strlen(s);
	if (strip) {
		while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') {
			s++;
			l--;
		}
		while (l && (s[l - 1] == ' ' || s[l - 1] == '\n' || s[l - 1] == '\t' || s[l - 1] == '\r'))
			l--;
	}
	kv_buf_append(b, s, l);
	for (int j = 0; j < 4; j++)
		kv_buf_printf(b, "\n%c. %s", 'A' + j, q->choice[j]);
	kv_buf_puts(b, "\nAnswer:");
}

static void put_subject(struct kv_buf *b, const char *subj, const char *sep)
{
	for (const char *s = subj; *s; s++) {
		if (*s == '_')
			kv_buf_puts(b, sep);
		else
			kv_buf_putc(b, *s);
	}
}

/* The shared part (header + shots) into ctx, the question into q. */
static void mmlu_prompt(enum mmlu_fmt fmt, const char *subj, const struct kvb_mcq_set *dev,
			size_t k, const struct kvb_mcq *test, struct kv_buf *ctx, struct kv_buf *qb)
{
	switch (fmt) {
	case FMT_HENDRYCKS:
		kv_buf_puts(ctx, "The following are multiple choice questions (with answers) about ");
		kv_buf_putc(ctx, ' ');
		put_subject(ctx, subj, " ");
		kv_buf_puts(ctx, ".\n\n");
		for (size_t i = 0; i < k; i++) {
			put_question(ctx, &dev->v[i], false);
			kv_buf_printf(ctx, " %c\n\n", dev->v[i].answer);
		}
		put_question(qb, test, false);
		break;
	case FMT_LMEVAL:
		kv_buf_puts(ctx, "The following are multiple choice questions (with answers) about ");
		put_subject(ctx, subj, " ");
		kv_buf_puts(ctx, ".\n\n");
		for (size_t i = 0; i < k; i++) {
			put_question(ctx, &dev->v[i], true);
			kv_buf_printf(ctx, " %c\n\n", dev->v[i].answer);
		}
		put_question(qb, test, true);
		break;
	case FMT_LMCACHE:
		kv_buf_puts(ctx, "The following are multiple choice questions (with answers) ");
		kv_buf_puts(ctx, "                                about ");
		put_subject(ctx, subj, " ");
		kv_buf_puts(ctx, ". \n\n");
		for (size_t i = 0; i < k; i++) {
			put_question(ctx, &dev->v[i], false);
			/* df.iloc[idx, k] with k = ncols - 2 = 4: option D's text */
			kv_buf_printf(ctx, " %s\n\n", dev->v[i].choice[3]);
		}
		kv_buf_puts(ctx, "\n\n");
		put_question(qb, test, false);
		break;
	}
}

static int mmlu_create(const struct kvb_wl_params *p, struct kvb_workload **out)
{
	const char *path, *subjects, *fmt_s, *scoring;
	int64_t k_shot, qps, topk, passes;
	enum mmlu_fmt fmt;
	bool lp;
	char **names = NULL;
	size_t n_names = 0;
	struct kvb_wl_list *l = NULL;
	struct kvb_req **first = NULL;
	size_t n_first = 0;
	int rc = -1;

	if (kvb_wl_get_str(p, "path", NULL, &path) < 0 ||
	    kvb_wl_get_str(p, "subjects", "all", &subjects) < 0 ||
	    kvb_wl_get_int(p, "k_shot", 5, 0, 1000, &k_shot) < 0 ||
	    kvb_wl_get_int(p, "questions_per_subject", 0, 0, INT32_MAX, &qps) < 0 ||
	    kvb_wl_get_str(p, "format", "hendrycks", &fmt_s) < 0 ||
	    kvb_wl_get_str(p, "scoring", "generate", &scoring) < 0 ||
	    kvb_wl_get_int(p, "top_logprobs", 20, 1, 1000, &topk) < 0 ||
	    kvb_wl_get_int(p, "passes", 2, 1, 100, &passes) < 0 ||
	    kvb_wl_check_unused(p, "mmlu") < 0)
		return -1;
	if (!path) {
		kv_error("--set path: the mmlu workload needs path=DIR (dev/ and test/ CSV files)");
		return -1;
	}
	if (!strcmp(fmt_s, "hendrycks"))
		fmt = FMT_HENDRYCKS;
	else if (!strcmp(fmt_s, "lm-eval"))
		fmt = FMT_LMEVAL;
	else if (!strcmp(fmt_s, "lmcache"))
		fmt = FMT_LMCACHE;
	else {
		kv_error("--set format: expected hendrycks, lm-eval or lmcache, got '%s'", fmt_s);
		return -1;
	}
	if (strcmp(scoring, "generate") && strcmp(scoring, "logprobs")) {
		kv_error("--set scoring: expected generate or logprobs, got '%s'", scoring);
		return -1;
	}
	if (p->endpoint != KVB_EP_COMPLETIONS) {
		kv_error("mmlu: the prompt formats are raw text: use the completions endpoint");
		return -1;
	}
	lp = !strcmp(scoring, "logprobs");
	if (!strcmp(subjects, "all")) {
		if (kvb_mmlu_subjects(path, &names, &n_names) < 0)
			return -1;
	} else {
		const char *s = subjects;
		while (*s) {
			const char *e = strchr(s, ',');
			size_t len = e ? (size_t)(e - s) : strlen(s);
			if (!len) {
				kv_error("--set subjects: empty name in '%s'", subjects);
				goto out;
			}
			names = xrealloc(names, (n_names + 1) * sizeof(*names));
			names[n_names++] = xstrndup(s, len);
			s += len + (e ? 1 : 0);
		}
		if (!n_names) {
			kv_error("--set subjects: empty");
			goto out;
		}
	}

	l = kvb_wl_list_new();
	for (size_t si = 0; si < n_names; si++) {
		struct kvb_mcq_set dev = { 0 }, test = { 0 };
		char *f;
		size_t nq;
		f = xasprintf("%s/test/%s_test.csv", path, names[si]);
		if (kvb_mmlu_load_csv(f, &test) < 0) {
			free(f);
			goto out;
		}
		free(f);
		if (k_shot > 0) {
			f = xasprintf("%s/dev/%s_dev.csv", path, names[si]);
			if (kvb_mmlu_load_csv(f, &dev) < 0) {
				free(f);
				kvb_mcq_set_release(&test);
				goto out;
			}
			if ((size_t)k_shot > dev.n) {
				kv_error("%s: k_shot=%lld but only %zu dev questions", f,
					 (long long)k_shot, dev.n);
				free(f);
				kvb_mcq_set_release(&test);
				kvb_mcq_set_release(&dev);
				goto out;
			}
			free(f);
		}
		nq = qps > 0 && (size_t)qps < test.n ? (size_t)qps : test.n;
		for (size_t qi = 0; qi < nq; qi++) {
			struct kv_buf ctx = KV_BUF_INIT(0), qb = KV_BUF_INIT(0);
			struct kvb_req *r = kvb_req_new(p->endpoint, "mmlu/%s/%zu", names[si], qi);
			mmlu_prompt(fmt, names[si], &dev, (size_t)k_shot, &test.v[qi], &ctx, &qb);
			r->context_len = (int)ctx.len;
			r->query_len = (int)qb.len;
			kv_buf_append(&ctx, qb.data, qb.len);
			r->prompt = kv_buf_detach(&ctx, NULL);
			kv_buf_release(&qb);
			r->pass = 0;
			r->max_tokens = lp ? 1 : fmt == FMT_LMCACHE ? 3 : 1;
			r->logprobs = lp ? (int)topk : -1;
			if (fmt == FMT_LMCACHE)
				r->extra_json = xstrdup("{\"seed\":42}");
			r->expected = xasprintf("%c", test.v[qi].answer);
			first = xrealloc(first, (n_first + 1) * sizeof(*first));
			first[n_first++] = r;
		}
		kvb_mcq_set_release(&dev);
		kvb_mcq_set_release(&test);
	}
	for (int64_t ps = 0; ps < passes; ps++)
		for (size_t i = 0; i < n_first; i++) {
			struct kvb_req *r = ps == passes - 1 ? first[i] : kvb_req_dup(first[i]);
			r->pass = (int)ps;
			kvb_wl_list_add(l, r, i == 0 && ps > 0);
		}
	n_first = 0;
	*out = kvb_wl_list_workload(l, "mmlu");
	l = NULL;
	rc = 0;
out:
	for (size_t i = 0; i < n_first; i++)
		kvb_req_free(first[i]);
	free(first);
	for (size_t i = 0; i < n_names; i++)
		free(names[i]);
	free(names);
	kvb_wl_list_free(l);
	return rc;
}

const struct kvb_wl_def kvb_wl_mmlu = {
	"mmlu",
	"MMLU-format multiple choice, k-shot, each question cold then warm; accuracy checks",
	mmlu_keys,
	mmlu_create,
};
