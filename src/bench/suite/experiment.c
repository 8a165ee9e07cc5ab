/* One test of a suite: runs, watching, merging, checks. See experiment.h. */
#include "common/util.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/clock.h"
#include "checks/checks.h"
#include "metrics.h"
#include "runner.h"
#include "tokenize.h"
#include "suite/experiment.h"
#include "common/banned.h"

/* ---- workloads ---------------------------------------------------------- */

/*
 * Validation only (no engine runs yet): one id per byte, so that a
 * prompt_format=ids workload can be checked before any server is up. Its
 * ids are never sent.
 */
static int validate_tokenize(void *ctx, const char *text, int32_t **ids, size_t *n)
{
	size_t m = strlen(text);

	(void)ctx;
	*ids = xmalloc(KV_MAX(m, (size_t)1) * sizeof(**ids));
	for (size_t i = 0; i < m; i++)
		(*ids)[i] = (unsigned char)text[i];
	*n = m;
	return 0;
}

/* tt: the engine whose /tokenize serves prompt_format=ids, or NULL (validation) */
static int make_workload(const struct kvb_suite *s, const struct kvb_suite_workload *w,
			 uint64_t seed, const char *model, struct kvb_tokenize_target *tt,
			 struct kvb_workload **out)
{
	const struct kvb_wl_def *def = kvb_wl_find(w->type);
	struct kvb_wl_params p = w->params;
	int rc = -1;

	*out = NULL;
	if (!def) {
		struct kv_buf known = KV_BUF_INIT(0);
		for (size_t i = 0; kvb_workloads[i]; i++)
			kv_buf_printf(&known, "%s%s", i ? ", " : "", kvb_workloads[i]->name);
		kv_error("%s:%d: workloads.%s.type: unknown workload '%s' (known: %s)", s->file,
			 w->line, w->name, w->type, kv_buf_str(&known));
		kv_buf_release(&known);
		return -1;
	}
	/* a private copy of the key/value list: the getters mark keys used */
	p.kv = xcalloc(w->params.n ? w->params.n : 1, sizeof(*p.kv));
	for (size_t i = 0; i < w->params.n; i++) {
		p.kv[i] = w->params.kv[i];
		p.kv[i].used = false;
	}
	p.seed = seed;
	p.model = model;
	p.tokenize = tt ? kvb_tokenize_cb : validate_tokenize;
	p.tokenize_ctx = tt;
	if (def->create(&p, out) < 0)
		goto out;
	if (kvb_wl_check_unused(&p, w->type) < 0) {
		(*out)->ops->free(*out);
		*out = NULL;
		goto out;
	}
	rc = 0;
out:
	free(p.kv);
	return rc;
}

int kvb_exp_validate_workload(const struct kvb_suite *s, const struct kvb_suite_workload *w,
			      uint64_t seed)
{
	struct kvb_workload *wl;
	if (make_workload(s, w, seed, s->model, NULL, &wl) < 0)
		return -1;
	wl->ops->free(wl);
	return 0;
}

/* ---- the watcher thread ------------------------------------------------- */

struct watch {
	const struct kvb_exp *x;
	volatile int cancel;          /* the runner's cancel flag */
	volatile int done;            /* set by the main thread to stop the watcher */
	struct kvb_engine *dead;      /* the engine that died, or NULL */
	bool interrupted, timed_out;
	uint64_t deadline;            /* test timeout, 0 = none */
};

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	struct timespec ts = { 0, 50 * 1000000L };

	while (!w->done) {
		if (w->x->interrupt && *w->x->interrupt) {
			w->interrupted = true;
			w->cancel = 1;
		}
		for (size_t i = 0; i < w->x->n_engines && !w->dead; i++)
			if (!kvb_engine_alive(w->x->engines[i])) {
				w->dead = w->x->engines[i];
				w->cancel = 1;
			}
		if (w->deadline && kv_now_ns() >= w->deadline) {
			w->timed_out = true;
			w->cancel = 1;
		}
		if (w->cancel)
			break;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ---- merging the per-run files ----------------------------------------- */

struct merge {
	FILE *csv, *jsonl;
	char *csv_path, *jsonl_path;
	bool header_done;
	json_t *groups;
};

/* Splits one CSV record (RFC 4180 quoting) starting at *p; fields point into
 * a copy held in *fields_buf. Returns the number of fields, -1 at the end. */
static int csv_record(const char **p, const char *end, struct kv_buf *rec,
		      size_t *starts, size_t *lens, int max)
{
	const char *s = *p;
	int n = 0;
	bool q = false;
	size_t fstart = 0;

	if (s >= end)
		return -1;
	kv_buf_reset(rec);
	for (; s < end; s++) {
		char ch = *s;
		if (q) {
			if (ch == '"' && s + 1 < end && s[1] == '"') {
				kv_buf_putc(rec, '"');
				kv_buf_putc(rec, '"');
				s++;
			} else if (ch == '"') {
				q = false;
				kv_buf_putc(rec, ch);
			} else {
				kv_buf_putc(rec, ch);
			}
			continue;
		}
		if (ch == '"') {
			q = true;
			kv_buf_putc(rec, ch);
		} else if (ch == ',' || ch == '\n') {
			if (n < max) {
				starts[n] = fstart;
				lens[n] = rec->len - fstart;
				n++;
			}
			if (ch == '\n') {
				s++;
				break;
			}
			kv_buf_putc(rec, ',');
			fstart = rec->len;
		} else if (ch != '\r') {
			kv_buf_putc(rec, ch);
		}
	}
	if (s >= end && (rec->len > fstart || n)) {
		/* last line without a newline */
		if ((s == end && end[-1] != '\n') && n < max) {
			starts[n] = fstart;
			lens[n] = rec->len - fstart;
			n++;
		}
	}
	*p = s;
	return n;
}

#define MAX_COLS 128

static const char *gpu_mem_of(struct kvb_engine **engines, const char *const *gpu, size_t n,
			      const char *engine_id, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(engines[i]->name) == len && !strncmp(engines[i]->name, engine_id, len))
			return gpu[i];
	return NULL;
}

static int merge_run(struct merge *m, const char *run_dir, int pass,
		     struct kvb_engine **engines, const char *const *gpu, size_t n_eng,
		     const char *groups_json)
{
	char *path = xasprintf("%s/requests.csv", run_dir);
	size_t len = 0;
	char *data = kv_read_file(path, (size_t)1 << 31, &len);
	struct kv_buf rec = KV_BUF_INIT(0);
	size_t st[MAX_COLS], ln[MAX_COLS], hs[MAX_COLS], hl[MAX_COLS];
	int col_pass = -1, col_gpu = -1, col_eng = -1, nh;
	const char *p, *end;
	char *hdr = NULL;
	json_t *g;

	free(path);
	if (data) {
		p = data;
		end = data + len;
		nh = csv_record(&p, end, &rec, hs, hl, MAX_COLS);
		hdr = xstrdup(kv_buf_str(&rec));
		for (int i = 0; i < nh; i++) {
			if (hl[i] == 4 && !strncmp(hdr + hs[i], "pass", 4))
				col_pass = i;
			if (hl[i] == 10 && !strncmp(hdr + hs[i], "gpu_memory", 10))
				col_gpu = i;
			if (hl[i] == 9 && !strncmp(hdr + hs[i], "engine_id", 9))
				col_eng = i;
		}
		if (!m->header_done && nh > 0) {
			fprintf(m->csv, "%s\n", hdr);
			m->header_done = true;
		}
		for (;;) {
			int nf = csv_record(&p, end, &rec, st, ln, MAX_COLS);
			const char *r = kv_buf_str(&rec);
			const char *gm = NULL;
			if (nf < 0)
				break;
			if (nf == 0 || (nf == 1 && !ln[0]))
				continue;
			if (col_eng >= 0 && col_eng < nf)
				gm = gpu_mem_of(engines, gpu, n_eng, r + st[col_eng], ln[col_eng]);
			for (int i = 0; i < nf; i++) {
				if (i)
					fputc(',', m->csv);
				if (i == col_pass && pass >= 0)
					fprintf(m->csv, "%d", pass);
				else if (i == col_gpu && gm)
					fputs(gm, m->csv);
				else
					fwrite(r + st[i], 1, ln[i], m->csv);
			}
			fputc('\n', m->csv);
		}
		free(data);
	}
	free(hdr);
	kv_buf_release(&rec);

	path = xasprintf("%s/outputs.jsonl", run_dir);
	data = kv_read_file(path, (size_t)1 << 31, &len);
	free(path);
	if (data) {
		char *line = data, *nl;
		for (; line < data + len; line = nl + 1) {
			json_t *j;
			nl = memchr(line, '\n', (size_t)(data + len - line));
			if (!nl)
				nl = data + len;
			if (nl == line)
				continue;
			if (pass < 0) {
				fwrite(line, 1, (size_t)(nl - line), m->jsonl);
				fputc('\n', m->jsonl);
				continue;
			}
			j = json_loadb(line, (size_t)(nl - line), 0, NULL);
			if (j) {
				char *t;
				json_object_set_new(j, "pass", json_integer(pass));
				t = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
				fprintf(m->jsonl, "%s\n", t);
				free(t);
				json_decref(j);
			}
		}
		free(data);
	}

	g = groups_json ? json_loads(groups_json, 0, NULL) : NULL;
	if (json_is_array(g)) {
		size_t i;
		json_t *v;
		json_array_foreach(g, i, v) {
			const char *eid = json_string_value(json_object_get(v, "engine_id"));
			const char *gm = eid ? gpu_mem_of(engines, gpu, n_eng, eid, strlen(eid)) : NULL;
			if (pass >= 0)
				json_object_set_new(v, "pass", json_integer(pass));
			if (gm) {
				int64_t b;
				if (!kv_parse_i64(gm, 0, INT64_MAX, &b))
					json_object_set_new(v, "gpu_memory", json_integer(b));
			}
			json_array_append(m->groups, v);
		}
	}
	json_decref(g);
	return 0;
}

static void rm_run_dir(const char *dir)
{
	const char *files[] = { "requests.csv", "outputs.jsonl", "requests.csv.tmp",
				"outputs.jsonl.tmp" };
	for (size_t i = 0; i < KV_ARRAY_SIZE(files); i++) {
		char *p = xasprintf("%s/%s", dir, files[i]);
		unlink(p);
		free(p);
	}
	rmdir(dir);
}

/* ---- checks ------------------------------------------------------------- */

static json_t *find_group(json_t *groups, const char *engine, int pass)
{
	size_t i;
	json_t *v, *best = NULL;
	json_int_t best_pass = -1000;

	json_array_foreach(groups, i, v) {
		const char *eid = json_string_value(json_object_get(v, "engine_id"));
		json_int_t p = json_integer_value(json_object_get(v, "pass"));
		if (!eid || strcmp(eid, engine))
			continue;
		if (pass >= 0 && p == pass)
			return v;
		if (pass < 0 && p > best_pass) {
			best = v;
			best_pass = p;
		}
	}
	return best;
}

static double ttft_stat(json_t *g, const char *stat)
{
	json_t *t = json_object_get(g, "ttft");
	json_t *v = json_object_get(t, stat);
	if (!json_is_number(v) || json_integer_value(json_object_get(t, "n")) <= 0)
		return NAN;
	return json_number_value(v);
}

static bool is_skipped(const char *const *skipped, const char *name)
{
	for (const char *const *p = skipped; p && *p; p++)
		if (!strcmp(*p, name))
			return true;
	return false;
}

static char *pass_label(int pass)
{
	return pass < 0 ? xstrdup("last pass") : xasprintf("pass %d", pass);
}

/*
 * The send index of the earliest of the flagged candidate records: 0-based
 * rank among the records of engine `engine` in send order (request_id within
 * a run; with passes > 1 the runs of earlier passes come first). -1 if none.
 */
static long first_flagged(const struct kvb_outputs *o, const char *engine, bool by_pass,
			  const struct kvb_out_rec *const *flagged, size_t n_flagged)
{
	const struct kvb_out_rec *first = NULL;
	long rank = 0;

	for (size_t i = 0; i < n_flagged; i++) {
		const struct kvb_out_rec *r = flagged[i];
		if (!r)
			continue;
		if (!first || (by_pass && r->pass < first->pass) ||
		    ((!by_pass || r->pass == first->pass) && r->request_id < first->request_id))
			first = r;
	}
	if (!first)
		return -1;
	for (size_t i = 0; i < o->n; i++) {
		const struct kvb_out_rec *r = &o->v[i];
		if (strcmp(r->engine_id, engine))
			continue;
		if ((by_pass && r->pass < first->pass) ||
		    ((!by_pass || r->pass == first->pass) && r->request_id < first->request_id))
			rank++;
	}
	return rank;
}

static void thresholds(const struct kvb_suite_check *k, double *near_tie, double *max_lp,
		       double *max_kl)
{
	const struct kvb_tolerance *tol = kvb_tolerance_find(k->tolerance ? k->tolerance : "bf16");
	/* <= 0: unset (as kvbench check's flags), from the tolerance preset */
	*near_tie = k->near_tie_nats > 0 ? k->near_tie_nats
		    : k->tolerance ? tol->near_tie_nats : KVB_NEAR_TIE_NATS_DEFAULT;
	*max_lp = k->max_lp_delta > 0 ? k->max_lp_delta : tol->max_lp_delta;
	*max_kl = k->max_kl > 0 ? k->max_kl : tol->max_kl;
}

/* The test's merged outputs.jsonl, read once, when the first check needs it. */
struct test_outputs {
	const char *test_dir;
	bool tried;
	bool ok;
	struct kvb_outputs o;
};

/* NULL when it cannot be read (the loader printed why). */
static const struct kvb_outputs *test_outputs(struct test_outputs *to)
{
	if (!to->tried) {
		char *path = xasprintf("%s/outputs.jsonl", to->test_dir);
		to->tried = true;
		to->ok = kvb_outputs_load(path, &to->o) == 0;
		free(path);
	}
	return to->ok ? &to->o : NULL;
}

/*
 * Identity, logprobs and accuracy compare the outputs of two engines (or
 * passes) record by record, with the checks module (checks/checks.h), over
 * the test's merged outputs.jsonl. A check with nothing to compare fails:
 * it never passes unmeasured.
 */
static void external_check(const struct kvb_suite_test *t, const struct kvb_suite_check *k,
			   struct test_outputs *to, struct kvb_test_result *res)
{
	bool ident = k->type == KVB_CHECK_IDENTITY, lp = k->type == KVB_CHECK_LOGPROBS;
	const char *unit = lp ? "nats" : "fraction";
	const struct kvb_outputs *outs = test_outputs(to);
	struct kvb_select bs, cs;
	struct kvb_pair *pairs = NULL;
	size_t n_pairs = 0, n_unpaired = 0, n_failed = 0;
	struct kvb_check c;
	double near_tie, max_lp, max_kl, thr;
	bool by_pass = t->passes > 1;
	char reason[400];

	memset(&c, 0, sizeof(c));
	thresholds(k, &near_tie, &max_lp, &max_kl);
	thr = ident ? 1.0 : lp ? max_lp : k->limit;
	if (!outs) {
		kvb_test_add_check(res, k->name, KVB_V_ERROR, NAN, thr, unit,
				   "cannot read the test's outputs.jsonl");
		goto out;
	}
	bs.engine_id = k->baseline;
	bs.pass = k->baseline_pass >= 0 ? k->baseline_pass : k->pass;
	cs.engine_id = k->candidate;
	cs.pass = k->pass;
	kvb_pair_outputs(outs, &bs, outs, &cs, &pairs, &n_pairs, &n_unpaired, &n_failed);
	if (!n_pairs) {
		snprintf(reason, sizeof(reason), "no request of %s pairs with one of %s (%zu failed, "
			 "%zu unpaired): nothing to compare", k->candidate, k->baseline, n_failed,
			 n_unpaired);
		kvb_test_add_check(res, k->name, KVB_V_FAIL, NAN, thr, unit, reason);
		goto out;
	}
	if (ident) {
		struct kvb_identity_opts io = { 0 };
		struct kvb_identity_result ir;
		char *div = xasprintf("%s/divergences.jsonl", to->test_dir);
		io.near_tie_nats = near_tie;
		io.strict = k->strict;
		io.divergences_path = div;
		if (kvb_check_identity(pairs, n_pairs, &io, &ir, &c) < 0) {
			kvb_test_add_check(res, k->name, KVB_V_ERROR, NAN, 1.0, "fraction",
					   "cannot write divergences.jsonl");
		} else {
			snprintf(reason, sizeof(reason), "%s vs %s over %zu pairs: %s", k->baseline,
				 k->candidate, n_pairs, c.reason);
			kvb_test_add_check(res, k->name, c.passed ? KVB_V_PASS : KVB_V_FAIL, c.figure,
					   c.threshold, c.unit, reason);
			if (!c.passed) {
				const struct kvb_out_rec **fl = xcalloc(ir.n_div + 1, sizeof(*fl));
				for (size_t i = 0; i < ir.n_div; i++)
					if (k->strict || ir.div[i].cls == KVB_DIV_CORRUPTION)
						fl[i] = ir.div[i].pair->cand;
				res->checks[res->n_checks - 1].first_req =
					first_flagged(outs, k->candidate, by_pass, fl, ir.n_div);
				free(fl);
			}
		}
		kvb_identity_result_release(&ir);
		free(div);
	} else if (lp) {
		struct kvb_lp_opts lo = { k->prompt, max_lp, max_kl };
		struct kvb_lp_stats ls;
		if (kvb_check_logprobs(pairs, n_pairs, &lo, &ls, &c) != 0) {
			snprintf(reason, sizeof(reason), "no pair of %s and %s carries %s: nothing to "
				 "compare (ask for %s)", k->baseline, k->candidate,
				 k->prompt ? "prompt logprobs" : "logprobs",
				 k->prompt ? "echo with logprobs" : "logprobs");
			kvb_test_add_check(res, k->name, KVB_V_FAIL, NAN, max_lp, "nats", reason);
		} else {
			snprintf(reason, sizeof(reason), "%s vs %s over %zu pairs: %s", k->baseline,
				 k->candidate, n_pairs, c.reason);
			kvb_test_add_check(res, k->name, c.passed ? KVB_V_PASS : KVB_V_FAIL, c.figure,
					   c.threshold, c.unit, reason);
			if (!c.passed) {
				/* the pairs that alone exceed a bound */
				const struct kvb_out_rec **fl = xcalloc(n_pairs + 1, sizeof(*fl));
				for (size_t i = 0; i < n_pairs; i++) {
					struct kvb_lp_stats one;
					kvb_lp_stats_init(&one);
					kvb_lp_compare(pairs[i].base, pairs[i].cand, k->prompt, &one);
					kvb_lp_stats_finish(&one);
					if (one.max_abs > max_lp || one.max_kl > max_kl)
						fl[i] = pairs[i].cand;
				}
				res->checks[res->n_checks - 1].first_req =
					first_flagged(outs, k->candidate, by_pass, fl, n_pairs);
				free(fl);
			}
		}
	} else {
		struct kvb_acc_opts ao = { k->limit, KVB_ALPHA_DEFAULT };
		struct kvb_acc_result ar;
		if (kvb_check_accuracy(pairs, n_pairs, &ao, &ar, &c) != 0) {
			kvb_test_add_check(res, k->name, KVB_V_FAIL, NAN, k->limit, "fraction",
					   "no request carries an expected answer: accuracy not measured");
		} else {
			snprintf(reason, sizeof(reason), "%s vs %s: %s", k->baseline, k->candidate,
				 c.reason);
			kvb_test_add_check(res, k->name, c.passed ? KVB_V_PASS : KVB_V_FAIL, c.figure,
					   c.threshold, c.unit, reason);
		}
	}
out:
	free(pairs);
}

/* ---- checks on /metrics ------------------------------------------------ */

static const struct kvb_exp_snap *snap_of(const struct kvb_exp_snap *snaps, size_t n,
					  const char *engine)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(snaps[i].engine, engine))
			return &snaps[i];
	return NULL;
}

/* Counter deltas of engine's pass `pass` (-1: last). -1 when /metrics was not read. */
static int snap_delta(const struct kvb_exp_snap *sn, int pass, struct kvb_cache_counters *d)
{
	struct kvb_prom pb, pa;
	struct kvb_cache_counters cb, ca;
	int p = pass < 0 || pass >= sn->n_passes ? sn->n_passes - 1 : pass;

	if (!sn->text[p] || !sn->text[p + 1])
		return -1;
	kvb_prom_parse(sn->text[p], strlen(sn->text[p]), &pb);
	kvb_prom_parse(sn->text[p + 1], strlen(sn->text[p + 1]), &pa);
	kvb_cache_counters_from_prom(&pb, &cb);
	kvb_cache_counters_from_prom(&pa, &ca);
	kvb_cache_counters_diff(&cb, &ca, d);
	kvb_prom_release(&pb);
	kvb_prom_release(&pa);
	return 0;
}

/* usage cached_tokens of engine's group in pass (-1: last), or -1 when not reported */
static double usage_cached(json_t *groups, const char *engine, int pass)
{
	json_t *g = find_group(groups, engine, pass);
	json_t *h = json_object_get(json_object_get(g, "cache"), "hit_tokens");
	return json_is_number(h) ? json_number_value(h) : -1;
}

static void add_kvb_check(struct kvb_test_result *res, const char *name, const struct kvb_check *c,
			  const char *engine, const char *pl)
{
	char reason[480];
	snprintf(reason, sizeof(reason), "%s, %s: %s", engine, pl, c->reason);
	kvb_test_add_check(res, name, c->passed ? KVB_V_PASS : KVB_V_FAIL, c->figure, c->threshold,
			   c->unit, reason);
}

/* key_isolation: the probe records of engine (pass, -1 any) in the test's outputs.jsonl */
static void key_isolation(const struct kvb_suite_test *t, const struct kvb_suite_check *k,
			  struct test_outputs *to, const struct kvb_cache_counters *d,
			  struct kvb_check *c, long *first)
{
	const struct kvb_outputs *all = test_outputs(to);
	struct kvb_outputs o = { 0 };

	*first = -1;
	if (!all) {
		kvb_check_set(c, "key_isolation", false, NAN, 0, "tokens",
			      "cannot read the test's outputs.jsonl");
		return;
	}
	/* a view: shallow copies of the engine's records, owned by all */
	o.v = xcalloc(all->n ? all->n : 1, sizeof(*o.v));
	o.path = all->path;
	for (size_t i = 0; i < all->n; i++)
		if (!strcmp(all->v[i].engine_id, k->engine) && (k->pass < 0 || all->v[i].pass == k->pass))
			o.v[o.n++] = all->v[i];
	kvb_check_key_isolation_records(&o, d, NULL, c);
	if (!c->passed && o.n) {
		/* flagged: a request with cached tokens that is not the first of its pair */
		const struct kvb_out_rec **fl = xcalloc(o.n, sizeof(*fl));
		for (size_t i = 0; i < o.n; i++) {
			const struct kvb_out_rec *r = &o.v[i];
			const char *slash = strchr(r->key, '/');
			size_t pl = slash ? (size_t)(slash - r->key) + 1 : 0;
			if (!pl || r->cached_tokens <= 0)
				continue;
			for (size_t j = 0; j < o.n; j++)
				if (j != i && !strncmp(o.v[j].key, r->key, pl) &&
				    o.v[j].request_id < r->request_id) {
					fl[i] = r;
					break;
				}
		}
		*first = first_flagged(&o, k->engine, t->passes > 1, fl, o.n);
		free(fl);
	}
	free(o.v);
}

static void metrics_checks(const struct kvb_suite_test *t, json_t *groups,
			   const struct kvb_exp_snap *snaps, size_t n_snaps,
			   const struct kvb_suite_check *k, struct test_outputs *to,
			   struct kvb_test_result *res)
{
	const char *engine = k ? k->engine : NULL;
	int pass = k ? k->pass : -1;
	const struct kvb_exp_snap *sn;
	struct kvb_cache_counters d;
	struct kvb_check c;
	bool have;
	char *pl;

	if (!k) { /* implicit: every claiming engine, last pass */
		for (size_t i = 0; i < n_snaps; i++) {
			char *n1, *n2;
			if (!snaps[i].claims)
				continue;
			pl = pass_label(t->passes > 1 ? t->passes - 1 : -1);
			n1 = xasprintf("cache_path.%s", snaps[i].engine);
			n2 = xasprintf("silent_miss.%s", snaps[i].engine);
			if (snap_delta(&snaps[i], -1, &d) < 0) {
				kvb_test_add_check(res, n1, KVB_V_ERROR, NAN, 1, "tokens",
						   "cannot read the engine's /metrics");
			} else {
				kvb_check_cache_path(&d, NULL, usage_cached(groups, snaps[i].engine, -1),
						     true, &c);
				add_kvb_check(res, n1, &c, snaps[i].engine, pl);
				kvb_check_silent_miss(&d, NULL, &c);
				add_kvb_check(res, n2, &c, snaps[i].engine, pl);
			}
			free(n1);
			free(n2);
			free(pl);
		}
		return;
	}
	pl = pass_label(pass);
	sn = snap_of(snaps, n_snaps, engine);
	have = sn && snap_delta(sn, pass, &d) == 0;
	if (k->type == KVB_CHECK_KEY_ISOLATION) {
		/* records' usage cached_tokens, and the counters when /metrics was read */
		long first = -1;
		key_isolation(t, k, to, have ? &d : NULL, &c, &first);
		add_kvb_check(res, k->name, &c, engine, pl);
		res->checks[res->n_checks - 1].first_req = first;
	} else if (!have) {
		kvb_test_add_check(res, k->name, KVB_V_ERROR, NAN, 1, "tokens",
				   "cannot read the engine's /metrics");
	} else {
		kvb_check_cache_path(&d, NULL, usage_cached(groups, engine, pass), true, &c);
		add_kvb_check(res, k->name, &c, engine, pl);
	}
	free(pl);
}

void kvb_exp_checks(const struct kvb_suite_test *t, const char *groups_json,
		    const char *const *skipped, const char *test_dir,
		    const struct kvb_exp_snap *snaps, size_t n_snaps,
		    struct kvb_test_result *res)
{
	json_t *groups = groups_json ? json_loads(groups_json, 0, NULL) : NULL;
	struct test_outputs to = { .test_dir = test_dir };
	char reason[512];

	if (!json_is_array(groups)) {
		json_decref(groups);
		groups = json_array();
	}
	for (size_t i = 0; i < t->n_checks; i++) {
		const struct kvb_suite_check *k = &t->checks[i];
		char *pl = pass_label(k->pass);
		const char *need[2] = { k->baseline, k->candidate ? k->candidate : k->engine };
		bool skip = false;

		for (int j = 0; j < 2; j++)
			if (need[j] && is_skipped(skipped, need[j])) {
				snprintf(reason, sizeof(reason), "engine %s not run (--quick)", need[j]);
				kvb_test_add_check(res, k->name, KVB_V_SKIPPED, NAN, k->limit,
						   k->type == KVB_CHECK_MIN_SPEEDUP ? "x" : "", reason);
				skip = true;
				break;
			}
		if (skip) {
			free(pl);
			continue;
		}
		switch (k->type) {
		case KVB_CHECK_MAX_TTFT: {
			double worst = NAN;
			const char *worst_eng = NULL;
			bool missing = false;
			for (size_t e = 0; e < t->n_engines; e++) {
				const char *name = t->engines[e];
				json_t *g;
				double v;
				if (k->engine ? strcmp(k->engine, name) : is_skipped(skipped, name))
					continue;
				g = find_group(groups, name, k->pass);
				v = g ? ttft_stat(g, k->stat) : NAN;
				if (isnan(v)) {
					missing = true;
					worst_eng = name;
					break;
				}
				if (isnan(worst) || v > worst) {
					worst = v;
					worst_eng = name;
				}
			}
			if (missing || !worst_eng) {
				snprintf(reason, sizeof(reason), "no successful requests of %s in %s",
					 worst_eng ? worst_eng : "any engine", pl);
				kvb_test_add_check(res, k->name, KVB_V_FAIL, NAN, k->limit, "s", reason);
				break;
			}
			snprintf(reason, sizeof(reason), "%s TTFT of %s in %s", k->stat, worst_eng, pl);
			kvb_test_add_check(res, k->name, worst <= k->limit ? KVB_V_PASS : KVB_V_FAIL,
					   worst, k->limit, "s", reason);
			break;
		}
		case KVB_CHECK_MIN_SPEEDUP: {
			int bp = k->baseline_pass >= 0 ? k->baseline_pass : k->pass;
			json_t *gb = find_group(groups, k->baseline, bp);
			json_t *gc = find_group(groups, k->candidate, k->pass);
			double b = gb ? ttft_stat(gb, k->stat) : NAN;
			double c = gc ? ttft_stat(gc, k->stat) : NAN;
			char *bl = pass_label(bp);
			if (isnan(b) || isnan(c) || c <= 0) {
				snprintf(reason, sizeof(reason), "no TTFT for %s (%s) or %s (%s)",
					 k->baseline, bl, k->candidate, pl);
				kvb_test_add_check(res, k->name, KVB_V_FAIL, NAN, k->limit, "x", reason);
			} else {
				snprintf(reason, sizeof(reason), "%s TTFT %.4gs of %s (%s) / %.4gs of %s (%s)",
					 k->stat, b, k->baseline, bl, c, k->candidate, pl);
				kvb_test_add_check(res, k->name, b / c >= k->limit ? KVB_V_PASS : KVB_V_FAIL,
						   b / c, k->limit, "x", reason);
			}
			free(bl);
			break;
		}
		case KVB_CHECK_MIN_HIT_RATE: {
			for (size_t e = 0; e < t->n_engines; e++) {
				const char *name = t->engines[e];
				json_t *g, *hr;
				char *cname;
				if (k->engine ? strcmp(k->engine, name) : is_skipped(skipped, name))
					continue;
				g = find_group(groups, name, k->pass);
				hr = json_object_get(json_object_get(g, "cache"), "hit_rate");
				cname = k->engine ? xstrdup(k->name) : xasprintf("%s.%s", k->name, name);
				if (!json_is_number(hr)) {
					snprintf(reason, sizeof(reason), "%s reported no cached-token counts "
						 "in %s (usage.prompt_tokens_details.cached_tokens)", name, pl);
					kvb_test_add_check(res, cname, KVB_V_FAIL, NAN, k->limit, "fraction",
							   reason);
				} else {
					double v = json_number_value(hr);
					snprintf(reason, sizeof(reason), "cached / prompt tokens of %s in %s",
						 name, pl);
					kvb_test_add_check(res, cname, v >= k->limit ? KVB_V_PASS : KVB_V_FAIL,
							   v, k->limit, "fraction", reason);
				}
				free(cname);
			}
			break;
		}
		case KVB_CHECK_MAX_ERROR_RATE: {
			double ok = 0, bad = 0;
			size_t gi;
			json_t *g;
			json_array_foreach(groups, gi, g) {
				const char *eid = json_string_value(json_object_get(g, "engine_id"));
				if (k->engine && (!eid || strcmp(eid, k->engine)))
					continue;
				ok += (double)json_integer_value(json_object_get(g, "completed"));
				bad += (double)json_integer_value(json_object_get(g, "failed"));
			}
			if (ok + bad == 0) {
				kvb_test_add_check(res, k->name, KVB_V_FAIL, NAN, k->limit, "fraction",
						   "no requests were recorded");
			} else {
				double v = bad / (ok + bad);
				snprintf(reason, sizeof(reason), "%.0f of %.0f requests failed%s%s", bad,
					 ok + bad, k->engine ? " on " : "", k->engine ? k->engine : "");
				kvb_test_add_check(res, k->name, v <= k->limit ? KVB_V_PASS : KVB_V_FAIL, v,
						   k->limit, "fraction", reason);
			}
			break;
		}
		case KVB_CHECK_IDENTITY:
		case KVB_CHECK_MAX_ACCURACY_DROP:
		case KVB_CHECK_LOGPROBS:
			external_check(t, k, &to, res);
			break;
		case KVB_CHECK_CACHE_PATH:
		case KVB_CHECK_KEY_ISOLATION:
			metrics_checks(t, groups, snaps, n_snaps, k, &to, res);
			break;
		}
		free(pl);
	}
	metrics_checks(t, groups, snaps, n_snaps, NULL, &to, res);
	kvb_outputs_release(&to.o);
	json_decref(groups);
}

/* ---- the test ----------------------------------------------------------- */

static enum kvb_arrival arrival_of(const char *s)
{
	if (!strcmp(s, "constant"))
		return KVB_ARRIVAL_CONSTANT;
	if (!strcmp(s, "poisson"))
		return KVB_ARRIVAL_POISSON;
	if (!strcmp(s, "gamma"))
		return KVB_ARRIVAL_GAMMA;
	return KVB_ARRIVAL_CLOSED;
}

static char *one_line_tail(struct kvb_engine *e)
{
	char *tail = kvb_engine_log_tail(e, 3);
	for (char *p = tail; *p; p++)
		if (*p == '\n')
			*p = '|';
	return tail;
}

/* One kvb_run over engines[0..n-1] for pass `pass`, into run_dir. */
static int one_run(const struct kvb_exp *x, struct kvb_engine **engines, size_t n, int pass,
		   const char *run_dir, struct watch *w, struct merge *m,
		   struct kvb_test_result *res)
{
	const struct kvb_suite_test *t = x->test;
	const struct kvb_suite_workload *wd = kvb_suite_workload_find(x->suite, t->workload);
	struct kvb_run_item *items = xcalloc(n, sizeof(*items));
	struct kvb_tokenize_target *tts = xcalloc(n, sizeof(*tts));
	struct kvb_run_opts o;
	struct kvb_run_result rr;
	char **gpu = xcalloc(n, sizeof(*gpu));
	pthread_t th;
	int rc = -1;

	memset(&rr, 0, sizeof(rr));
	for (size_t i = 0; i < n; i++) {
		struct kvb_engine *e = engines[i];
		const char *model = e->cfg && (!strcmp(e->preset, "command") || !strcmp(e->preset, "url"))
					    ? e->cfg->model : e->model;
		tts[i].base_url = e->base_url;
		tts[i].api_key_env = e->cfg ? e->cfg->api_key_env : NULL;
		tts[i].timeout_s = t->request_timeout_s;
		if (make_workload(x->suite, wd, t->seed, model, &tts[i], &items[i].wl) < 0) {
			res->verdict = KVB_V_ERROR;
			res->reason = xasprintf("workload %s could not be created", wd->name);
			goto out;
		}
		items[i].target.engine_id = e->name;
		items[i].target.base_url = e->base_url;
		items[i].target.model = model;
		items[i].target.api_key_env = e->cfg ? e->cfg->api_key_env : NULL;
		items[i].target.return_token_ids = e->cfg ? e->cfg->return_token_ids : true;
	}
	kvb_run_opts_init(&o);
	o.expr_id = t->name;
	o.concurrency = t->concurrency;
	o.arrival = arrival_of(t->arrival);
	o.rate = t->rate;
	o.burstiness = t->burstiness;
	o.seed = t->seed;
	o.max_requests = t->max_requests;
	o.duration_s = t->duration_s;
	o.request_timeout_s = t->request_timeout_s;
	o.progress = x->progress;
	o.no_stream = !t->stream;
	/* client-side aborts: on the engines that claim reuse (a baseline keeps
	   every record to compare with), in the first pass only when there are
	   more (later passes send the same prompts to completion: the victims) */
	if (t->abort_every > 0 && (t->passes == 1 || pass == 0)) {
		bool any = false;
		for (size_t i = 0; i < n; i++)
			any |= kvb_exp_claims(t, engines[i]->cfg);
		if (any) {
			o.abort_every = t->abort_every;
			o.abort_after_tokens = t->abort_after_tokens;
			o.abort_after_s = t->abort_after_s;
		}
	}
	o.out_dir = run_dir;
	o.cancel = &w->cancel;

	w->done = 0;
	if (pthread_create(&th, NULL, watch_main, w)) {
		res->verdict = KVB_V_ERROR;
		res->reason = xstrdup("cannot start the watcher thread");
		goto out;
	}
	rc = kvb_run(items, n, &o, &rr);
	w->done = 1;
	pthread_join(th, NULL);
	if (rc < 0 && !w->dead && !w->interrupted) {
		res->verdict = KVB_V_ERROR;
		res->reason = xstrdup("the run could not start (see the error above)");
	}
	/* GPU memory of each engine, before the experiment is over */
	for (size_t i = 0; i < n; i++) {
		uint64_t bytes;
		static bool no_smi;
		if (no_smi || !engines[i]->argv || engines[i]->pgid <= 0)
			continue;
		if (kvb_gpu_memory(engines[i]->pgid, 5, &bytes) < 0)
			no_smi = true;
		else
			gpu[i] = xasprintf("%llu", (unsigned long long)bytes);
	}
	merge_run(m, run_dir, x->test->passes > 1 ? pass : -1, engines,
		  (const char *const *)gpu, n, rr.groups_json);
	rm_run_dir(run_dir);
	rc = rc < 0 ? -1 : 0;
out:
	kvb_run_result_release(&rr);
	for (size_t i = 0; i < n; i++) {
		if (items[i].wl)
			items[i].wl->ops->free(items[i].wl);
		free(gpu[i]);
	}
	free(gpu);
	free(items);
	free(tts);
	return rc;
}

/* Closes the merged files and renames them into place. 0 or -1. */
static int close_merge(struct merge *m, const struct kvb_exp *x)
{
	int rc = 0;

	if (m->csv && (fflush(m->csv) || fsync(fileno(m->csv)) < 0))
		rc = -1;
	if (m->csv && fclose(m->csv))
		rc = -1;
	if (m->jsonl && (fflush(m->jsonl) || fsync(fileno(m->jsonl)) < 0))
		rc = -1;
	if (m->jsonl && fclose(m->jsonl))
		rc = -1;
	m->csv = m->jsonl = NULL;
	if (rc == 0) {
		char *final = xasprintf("%s/requests.csv", x->test_dir);
		rc |= rename(m->csv_path, final);
		free(final);
		final = xasprintf("%s/outputs.jsonl", x->test_dir);
		rc |= rename(m->jsonl_path, final);
		free(final);
	}
	if (rc)
		kv_error("%s: cannot write requests.csv / outputs.jsonl: %s", x->test_dir,
			 strerror(errno));
	return rc ? -1 : 0;
}

static int finish_merge(struct merge *m, const struct kvb_exp *x, struct kvb_test_result *res)
{
	json_t *j = json_object(), *checks = json_array();
	char *text, *path;
	int rc = 0;

	json_object_set_new(j, "kvbench_version", json_string(KV_VERSION));
	json_object_set_new(j, "test", json_string(x->test->name));
	json_object_set_new(j, "status", json_string(res->verdict == KVB_V_INTERRUPTED ?
						     "interrupted" : "complete"));
	json_object_set_new(j, "result", json_string(kvb_verdict_name(res->verdict)));
	json_object_set(j, "groups", m->groups);
	for (size_t i = 0; i < res->n_checks; i++) {
		const struct kvb_check_result *c = &res->checks[i];
		json_t *jc = json_object();
		json_object_set_new(jc, "name", json_string(c->name));
		json_object_set_new(jc, "passed", json_boolean(c->verdict == KVB_V_PASS));
		json_object_set_new(jc, "status", json_string(kvb_verdict_name(c->verdict)));
		json_object_set_new(jc, "figure", isnan(c->figure) ? json_null() : json_real(c->figure));
		json_object_set_new(jc, "threshold",
				    isnan(c->threshold) ? json_null() : json_real(c->threshold));
		json_object_set_new(jc, "unit", json_string(c->unit));
		json_object_set_new(jc, "reason", json_string(c->reason));
		json_array_append_new(checks, jc);
	}
	json_object_set_new(j, "checks", checks);
	text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
	path = xasprintf("%s/summary.json", x->test_dir);
	if (kv_write_file_atomic(path, text, strlen(text)) < 0) {
		kv_error("%s: cannot write: %s", path, strerror(errno));
		rc = -1;
	}
	free(path);
	free(text);
	json_decref(j);
	return rc ? -1 : 0;
}

bool kvb_exp_claims(const struct kvb_suite_test *t, const struct kvb_suite_engine *e)
{
	return t->claims_reuse && e && kvb_suite_engine_claims_reuse(e);
}

/* GET base_url/metrics: malloc'ed text, or NULL (a warning says why). */
static char *fetch_metrics(struct kvb_engine *e, double timeout_s)
{
	char *text = NULL, *err = NULL;
	size_t len = 0;

	if (kvb_metrics_fetch(e->base_url, timeout_s, &text, &len, &err) < 0) {
		kv_warn("engine %s: /metrics: %s", e->name, err);
		free(err);
		return NULL;
	}
	return text;
}

int kvb_exp_restart_engine(struct kvb_engine *e, volatile sig_atomic_t *interrupt, char **why,
			   bool *cancelled)
{
	enum kvb_ready r;

	*cancelled = false;
	kvb_engine_stop(e);
	e->ready_ns = 0;
	if (kvb_engine_start(e) < 0) {
		*why = xasprintf("engine %s could not be started again", e->name);
		return -1;
	}
	r = kvb_engine_wait_ready(e, interrupt);
	if (r != KVB_READY) {
		*cancelled = r == KVB_READY_CANCELLED;
		*why = xasprintf("engine %s was not ready again after its restart (%s)", e->name,
				 kvb_engine_exit_text(e));
		return -1;
	}
	return 0;
}

/* restart: true: the candidate engine is stopped and started again. 0 or -1. */
static int restart_engine(const struct kvb_exp *x, struct kvb_engine *e,
			  struct kvb_test_result *res)
{
	bool cancelled;
	char *why = NULL;

	kv_info("engine %s: restarting between passes (restart: true)", e->name);
	if (kvb_exp_restart_engine(e, x->interrupt, &why, &cancelled) < 0) {
		res->verdict = cancelled ? KVB_V_INTERRUPTED : KVB_V_ERROR;
		free(res->reason);
		res->reason = why;
		return -1;
	}
	return 0;
}

/* An engine named by a cache_path or key_isolation check of t. */
static bool metrics_named(const struct kvb_suite_test *t, const char *engine)
{
	for (size_t i = 0; i < t->n_checks; i++)
		if ((t->checks[i].type == KVB_CHECK_CACHE_PATH ||
		     t->checks[i].type == KVB_CHECK_KEY_ISOLATION) &&
		    !strcmp(t->checks[i].engine, engine))
			return true;
	return false;
}

int kvb_exp_run(const struct kvb_exp *x, struct kvb_test_result *res)
{
	struct kvb_exp_snap *snaps = xcalloc(x->n_engines + 1, sizeof(*snaps));
	size_t n_snaps = 0;
	const struct kvb_suite_test *t = x->test;
	struct merge m = { 0 };
	struct watch w;
	uint64_t t0 = kv_now_ns();
	char *groups_text = NULL;
	int rc;

	memset(&w, 0, sizeof(w));
	w.x = x;
	if (t->timeout_s > 0)
		w.deadline = t0 + (uint64_t)(t->timeout_s * 1e9);
	res->verdict = KVB_V_PASS;
	m.groups = json_array();
	m.csv_path = xasprintf("%s/requests.csv.tmp", x->test_dir);
	m.jsonl_path = xasprintf("%s/outputs.jsonl.tmp", x->test_dir);
	m.csv = fopen(m.csv_path, "w");
	m.jsonl = fopen(m.jsonl_path, "w");
	if (!m.csv || !m.jsonl) {
		kv_error("%s: cannot write: %s", x->test_dir, strerror(errno));
		res->verdict = KVB_V_ERROR;
		res->reason = xstrdup("cannot write the test's folder");
		goto done;
	}

	for (size_t i = 0; i < x->n_engines; i++)
		if (!kvb_engine_alive(x->engines[i])) {
			w.dead = x->engines[i];
			goto done;
		}
	for (size_t i = 0; i < x->n_engines; i++) {
		bool claims = kvb_exp_claims(t, x->engines[i]->cfg);
		if (!claims && !metrics_named(t, x->engines[i]->name))
			continue;
		snaps[n_snaps].engine = x->engines[i]->name;
		snaps[n_snaps].claims = claims;
		snaps[n_snaps].n_passes = t->passes;
		snaps[n_snaps].text = xcalloc((size_t)t->passes + 1, sizeof(char *));
		n_snaps++;
	}

	for (int pass = 0; pass < t->passes && !w.cancel; pass++) {
		for (size_t i = 0; i < x->n_engines && t->restart && pass > 0; i++)
			if (x->engines[i]->cfg && kvb_suite_engine_claims_reuse(x->engines[i]->cfg) &&
			    restart_engine(x, x->engines[i], res) < 0)
				goto done;
		for (size_t i = 0, k = 0; i < x->n_engines; i++)
			if (k < n_snaps && !strcmp(snaps[k].engine, x->engines[i]->name))
				snaps[k++].text[pass] = fetch_metrics(x->engines[i], 30);
		if (t->parallel || x->n_engines == 1) {
			char *dir = xasprintf("%s/run-p%d", x->test_dir, pass);
			one_run(x, x->engines, x->n_engines, pass, dir, &w, &m, res);
			free(dir);
		} else {
			for (size_t i = 0; i < x->n_engines && !w.cancel; i++) {
				char *dir = xasprintf("%s/run-p%d-%s", x->test_dir, pass,
						      x->engines[i]->name);
				one_run(x, &x->engines[i], 1, pass, dir, &w, &m, res);
				free(dir);
				if (res->verdict == KVB_V_ERROR)
					break;
			}
		}
		if (res->verdict == KVB_V_ERROR)
			break;
	}
	if (!w.cancel && res->verdict == KVB_V_PASS)
		for (size_t i = 0, k = 0; i < x->n_engines; i++)
			if (k < n_snaps && !strcmp(snaps[k].engine, x->engines[i]->name))
				snaps[k++].text[t->passes] = fetch_metrics(x->engines[i], 30);
done:
	if (w.dead) {
		char *tail = one_line_tail(w.dead);
		res->verdict = KVB_V_ERROR;
		free(res->reason);
		res->reason = xasprintf("engine %s %s during the test; logs/%s.stderr.log ends: %s",
					w.dead->name, kvb_engine_exit_text(w.dead), w.dead->name, tail);
		kv_error("test %s: engine %s %s; last lines of its log:", t->name, w.dead->name,
			 kvb_engine_exit_text(w.dead));
		{
			char *full = kvb_engine_log_tail(w.dead, 10);
			fprintf(stderr, "%s\n", full);
			free(full);
		}
		free(tail);
	} else if (w.interrupted) {
		res->verdict = KVB_V_INTERRUPTED;
		free(res->reason);
		res->reason = xstrdup("interrupted by a signal");
	} else if (w.timed_out) {
		res->verdict = KVB_V_ERROR;
		free(res->reason);
		res->reason = xasprintf("the test ran past its timeout of %gs", t->timeout_s);
	}
	if (close_merge(&m, x) < 0 && res->verdict == KVB_V_PASS) {
		res->verdict = KVB_V_ERROR;
		res->reason = xstrdup("cannot write the test's requests.csv / outputs.jsonl");
	}
	if (res->verdict == KVB_V_PASS) {
		groups_text = json_dumps(m.groups, JSON_COMPACT);
		kvb_exp_checks(t, groups_text, x->skipped, x->test_dir, snaps, n_snaps, res);
		res->verdict = kvb_test_verdict(res);
		free(groups_text);
	}
	res->duration_s = kv_ns_to_s(kv_now_ns() - t0);
	rc = finish_merge(&m, x, res);
	json_decref(m.groups);
	free(m.csv_path);
	free(m.jsonl_path);
	for (size_t i = 0; i < n_snaps; i++) {
		for (int p = 0; p <= snaps[i].n_passes; p++)
			free(snaps[i].text[p]);
		free(snaps[i].text);
	}
	free(snaps);
	return rc;
}
