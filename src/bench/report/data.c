/* data.c: see data.h. */
#include "report/data.h"

#include <dirent.h>
#include <errno.h>
#include <unistd.h>
#include <math.h>
#include <strings.h>
#include <sys/stat.h>

#include <jansson.h>

#include "common/util.h"
#include "report/csv.h"
#include "common/banned.h"

#define JSON_MAX (256UL << 20)
#define RESULT_MAX (1UL << 20)
#define DIV_TEXT_MAX 4096

char *kvr_text_clean(const char *s, size_t max, bool keep_newlines)
{
	size_t n = strlen(s), i = 0, o = 0;
	bool cut = n > max;
	char *out;

	if (cut)
		n = max;
	out = xmalloc(n + 4);
	while (i < n) {
		unsigned char c = (unsigned char)s[i];
		size_t k = 0;
		uint32_t cp = 0;

		if (c < 0x80) {
			if (c == '\n' && keep_newlines)
				out[o++] = '\n';
			else if (c < 0x20 || c == 0x7f)
				out[o++] = c == '\t' || c == '\n' || c == '\r' ? ' ' : '?';
			else
				out[o++] = (char)c;
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			k = 1;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			k = 2;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			k = 3;
			cp = c & 0x07;
		}
		if (k == 0 || i + k >= n) {
			out[o++] = '?';
			i++;
			continue;
		}
		bool good = true;
		for (size_t j = 1; j <= k; j++) {
			unsigned char d = (unsigned char)s[i + j];
			if ((d & 0xc0) != 0x80) {
				good = false;
				break;
			}
			cp = (cp << 6) | (d & 0x3f);
		}
		if (good && ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) ||
			     (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
			     (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp < 0xa0)))
			good = false;
		if (!good) {
			out[o++] = '?';
			i++;
			continue;
		}
		memcpy(out + o, s + i, k + 1);
		o += k + 1;
		i += k + 1;
	}
	if (cut) {
		memcpy(out + o, "\xe2\x80\xa6", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

static double jnum(json_t *o, const char *key)
{
	json_t *v = o ? json_object_get(o, key) : NULL;
	return json_is_number(v) ? json_number_value(v) : NAN;
}

static char *jstrdup(json_t *o, const char *key)
{
	json_t *v = o ? json_object_get(o, key) : NULL;
	return xstrdup(json_is_string(v) ? json_string_value(v) : "");
}

static json_t *load_json(const char *path, bool *missing)
{
	json_error_t je;
	size_t len;
	char *data = kv_read_file(path, JSON_MAX, &len);
	json_t *root;

	*missing = false;
	if (!data) {
		if (errno == ENOENT) {
			*missing = true;
			return NULL;
		}
		kv_error("%s: %s", path, strerror(errno));
		return NULL;
	}
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
	free(data);
	if (!root) {
		kv_error("%s:%d: %s", path, je.line, je.text);
		return NULL;
	}
	if (!json_is_object(root)) {
		kv_error("%s: expected a JSON object", path);
		json_decref(root);
		return NULL;
	}
	return root;
}

/* First line of a .result file, "" when absent. */
static char *first_line(const char *path)
{
	size_t len, n;
	char *data = kv_read_file(path, RESULT_MAX, &len);
	char *s;

	if (!data)
		return xstrdup("");
	n = strcspn(data, "\r\n");
	s = xstrndup(data, KV_MIN(n, (size_t)64));
	free(data);
	return s;
}

static void stat_read(struct kvr_stat *st, json_t *o)
{
	st->mean = jnum(o, "mean");
	st->std = jnum(o, "std");
	st->p50 = jnum(o, "p50");
	st->p90 = jnum(o, "p90");
	st->p99 = jnum(o, "p99");
	st->n = jnum(o, "n");
}

static void check_read(struct kvr_check *c, json_t *o)
{
	json_t *p = json_object_get(o, "passed"), *iv;

	c->name = jstrdup(o, "name");
	c->passed = json_is_boolean(p) ? json_is_true(p) : -1;
	c->figure = jnum(o, "figure");
	c->threshold = jnum(o, "threshold");
	c->unit = jstrdup(o, "unit");
	c->reason = jstrdup(o, "reason");
	c->lo = jnum(o, "lo");
	c->hi = jnum(o, "hi");
	iv = json_object_get(o, "interval");
	if (json_is_array(iv) && json_array_size(iv) == 2 &&
	    json_is_number(json_array_get(iv, 0)) && json_is_number(json_array_get(iv, 1))) {
		c->lo = json_number_value(json_array_get(iv, 0));
		c->hi = json_number_value(json_array_get(iv, 1));
	}
	c->n = jnum(o, "n");
}

static void group_read(struct kvr_group *g, json_t *o)
{
	json_t *p = json_object_get(o, "pass"), *acc, *cache;

	g->engine = jstrdup(o, "engine_id");
	g->pass = json_is_integer(p) ? (int)json_integer_value(p) : 0;
	g->completed = jnum(o, "completed");
	g->failed = jnum(o, "failed");
	g->output_token_throughput = jnum(o, "output_token_throughput");
	stat_read(&g->ttft, json_object_get(o, "ttft"));
	stat_read(&g->e2e, json_object_get(o, "e2e"));
	cache = json_object_get(o, "cache");
	g->hit_rate = jnum(cache, "hit_rate");
	acc = json_object_get(o, "accuracy");
	g->accuracy = g->accuracy_lo = g->accuracy_hi = g->accuracy_n = NAN;
	if (json_is_number(acc)) {
		g->accuracy = json_number_value(acc);
	} else if (json_is_object(acc)) {
		g->accuracy = jnum(acc, "value");
		if (isnan(g->accuracy))
			g->accuracy = jnum(acc, "mean");
		g->accuracy_lo = jnum(acc, "lo");
		g->accuracy_hi = jnum(acc, "hi");
		g->accuracy_n = jnum(acc, "n");
	}
}

/* Reads checks and groups from a summary object into the test. */
static void summary_read(struct kvr_test *t, json_t *root)
{
	json_t *groups = json_object_get(root, "groups");
	json_t *checks = json_object_get(root, "checks");
	size_t i;
	json_t *v;

	if (json_is_array(groups) && json_array_size(groups) > 0) {
		t->groups = xcalloc(json_array_size(groups), sizeof(*t->groups));
		json_array_foreach(groups, i, v) {
			if (json_is_object(v))
				group_read(&t->groups[t->ngroups++], v);
		}
	}
	if (json_is_array(checks) && json_array_size(checks) > 0 && t->nchecks == 0) {
		t->checks = xcalloc(json_array_size(checks), sizeof(*t->checks));
		json_array_foreach(checks, i, v) {
			if (json_is_object(v))
				check_read(&t->checks[t->nchecks++], v);
		}
	}
}

static bool is_nan_text(const char *s)
{
	return !strcasecmp(s, "nan") || !strcasecmp(s, "-nan") || !strcasecmp(s, "inf") ||
	       !strcasecmp(s, "-inf") || !strcasecmp(s, "infinity");
}

static int cell_num(const struct kvr_csv *csv, const char *path, size_t row, int col,
		    const char *name, double *out)
{
	const char *s = kvr_csv_cell(csv, row, col);

	*out = NAN;
	if (!*s || is_nan_text(s))
		return 0;
	if (kv_parse_double(s, out) < 0) {
		char *clean = kvr_text_clean(s, 40, false);
		kv_error("%s:%zu: column %s: not a number: '%s'", path, kvr_csv_line(csv, row),
			 name, clean);
		free(clean);
		return -1;
	}
	return 0;
}

static int cell_int(const struct kvr_csv *csv, const char *path, size_t row, int col,
		    const char *name, int64_t *out)
{
	const char *s = kvr_csv_cell(csv, row, col);

	*out = -1;
	if (!*s)
		return 0;
	if (kv_parse_i64(s, 0, INT64_MAX / 2, out) < 0) {
		char *clean = kvr_text_clean(s, 40, false);
		kv_error("%s:%zu: column %s: expected a non-negative integer, got '%s'", path,
			 kvr_csv_line(csv, row), name, clean);
		free(clean);
		return -1;
	}
	return 0;
}

static int engine_intern(struct kvr_test *t, const char *name)
{
	for (size_t i = 0; i < t->nengines; i++)
		if (!strcmp(t->engines[i], name))
			return (int)i;
	t->engines = xrealloc(t->engines, (t->nengines + 1) * sizeof(*t->engines));
	t->engines[t->nengines] = xstrdup(name);
	return (int)t->nengines++;
}

static int requests_read(struct kvr_test *t, const char *path)
{
	struct kvr_csv csv;
	char err[512];
	int rc = -1;
	enum { C_ENGINE, C_TTFT, C_PASS, C_WARMUP, C_STATUS, C_E2E, C_TPUT, C_CTX, C_END,
	       C_COMPL, C_SESSION, C_TURN, C_N };
	static const char *const names[C_N] = {
		"engine_id", "TTFT", "pass", "warmup", "status", "e2e", "throughput",
		"context_len", "end_s", "completion_tokens", "session", "turn",
	};
	int col[C_N];

	if (kvr_csv_load(&csv, path, err, sizeof(err)) < 0) {
		kv_error("%s", err);
		return -1;
	}
	for (int i = 0; i < C_N; i++)
		col[i] = kvr_csv_col(&csv, names[i]);
	if (col[C_ENGINE] < 0 || col[C_TTFT] < 0) {
		kv_error("%s:1: the header lacks column '%s'", path,
			 col[C_ENGINE] < 0 ? "engine_id" : "TTFT");
		goto out;
	}
	t->reqs = xcalloc(csv.nrows ? csv.nrows : 1, sizeof(*t->reqs));
	for (size_t r = 0; r < csv.nrows; r++) {
		struct kvr_req *q = &t->reqs[t->nreqs];
		int64_t v;
		const char *st;

		q->engine_idx = engine_intern(t, kvr_csv_cell(&csv, r, col[C_ENGINE]));
		if (t->nengines > KVR_MAX_ENGINES) {
			kv_error("%s:%zu: more than %d engines in one test", path,
				 kvr_csv_line(&csv, r), KVR_MAX_ENGINES);
			goto out;
		}
		if (cell_int(&csv, path, r, col[C_PASS], "pass", &v) < 0)
			goto out;
		if (v > KVR_MAX_PASS) {
			kv_error("%s:%zu: column pass: %lld is above the limit (%d)", path,
				 kvr_csv_line(&csv, r), (long long)v, KVR_MAX_PASS);
			goto out;
		}
		q->pass = v < 0 ? 0 : (int)v;
		if (cell_int(&csv, path, r, col[C_WARMUP], "warmup", &v) < 0)
			goto out;
		q->warmup = v > 0;
		st = kvr_csv_cell(&csv, r, col[C_STATUS]);
		q->ok = !*st || !strcmp(st, "ok");
		if (cell_num(&csv, path, r, col[C_TTFT], "TTFT", &q->ttft) < 0 ||
		    cell_num(&csv, path, r, col[C_E2E], "e2e", &q->e2e) < 0 ||
		    cell_num(&csv, path, r, col[C_TPUT], "throughput", &q->throughput) < 0 ||
		    cell_num(&csv, path, r, col[C_CTX], "context_len", &q->context_len) < 0 ||
		    cell_num(&csv, path, r, col[C_END], "end_s", &q->end_s) < 0 ||
		    cell_num(&csv, path, r, col[C_COMPL], "completion_tokens",
			     &q->completion_tokens) < 0)
			goto out;
		if (cell_int(&csv, path, r, col[C_SESSION], "session", &q->session) < 0 ||
		    cell_int(&csv, path, r, col[C_TURN], "turn", &q->turn) < 0)
			goto out;
		if (q->pass > t->max_pass)
			t->max_pass = q->pass;
		t->nreqs++;
	}
	for (size_t r = 0; r < t->nreqs; r++)
		t->reqs[r].engine = t->engines[t->reqs[r].engine_idx];
	rc = 0;
out:
	kvr_csv_release(&csv);
	return rc;
}

static char *side_label(json_t *o)
{
	json_t *p = json_object_get(o, "pass");
	const char *e = json_is_string(json_object_get(o, "engine_id")) ?
		json_string_value(json_object_get(o, "engine_id")) : "?";

	if (json_is_integer(p))
		return xasprintf("%.200s pass %lld", e, (long long)json_integer_value(p));
	return xasprintf("%.200s", e);
}

static int divs_read(struct kvr_test *t, const char *path)
{
	size_t len, pos = 0, lineno = 0;
	char *data = kv_read_file(path, JSON_MAX, &len);

	if (!data)
		return errno == ENOENT ? 0 : (kv_error("%s: %s", path, strerror(errno)), -1);
	t->divs = xcalloc(KVR_MAX_DIVS, sizeof(*t->divs));
	while (pos < len && t->ndivs < KVR_MAX_DIVS) {
		size_t n = strcspn(data + pos, "\n");
		json_error_t je;
		json_t *o, *a, *b;
		struct kvr_div *d;

		lineno++;
		if (n == 0 || (n == 1 && data[pos] == '\r')) {
			pos += n + 1;
			continue;
		}
		o = json_loadb(data + pos, n, JSON_ALLOW_NUL, &je);
		pos += n + 1;
		if (!json_is_object(o)) {
			kv_error("%s:%zu: not a JSON object%s%s", path, lineno, o ? "" : ": ",
				 o ? "" : je.text);
			json_decref(o);
			free(data);
			return -1;
		}
		d = &t->divs[t->ndivs++];
		a = json_object_get(o, "a");
		b = json_object_get(o, "b");
		d->key = json_is_string(json_object_get(o, "key")) ?
			xstrdup(json_string_value(json_object_get(o, "key"))) :
			json_is_integer(json_object_get(o, "request_id")) ?
			xasprintf("request %lld", (long long)json_integer_value(
					  json_object_get(o, "request_id"))) : xstrdup("");
		d->a_label = json_is_object(a) ? side_label(a) : xstrdup("a");
		d->b_label = json_is_object(b) ? side_label(b) : xstrdup("b");
		d->a_text = json_is_object(a) ? jstrdup(a, "text") : xstrdup("");
		d->b_text = json_is_object(b) ? jstrdup(b, "text") : xstrdup("");
		if (strlen(d->a_text) > DIV_TEXT_MAX)
			d->a_text[DIV_TEXT_MAX] = '\0';
		if (strlen(d->b_text) > DIV_TEXT_MAX)
			d->b_text[DIV_TEXT_MAX] = '\0';
		d->index = jnum(o, "index");
		json_decref(o);
	}
	free(data);
	return 0;
}

static bool safe_name(const char *s)
{
	if (!*s || !strcmp(s, ".") || !strcmp(s, "..") || strlen(s) > 200)
		return false;
	for (; *s; s++)
		if (*s == '/' || *s == '\\' || (unsigned char)*s < 0x20)
			return false;
	return true;
}

static int test_load(struct kvr_test *t, const char *dir, const char *name, bool flat)
{
	char *tdir = flat ? xstrdup(dir) : xasprintf("%s/%s", dir, name);
	char *path = NULL;
	json_t *root = NULL;
	bool missing;
	int rc = -1;

	t->name = xstrdup(name);
	t->max_pass = -1;
	path = xasprintf("%s/requests.csv", tdir);
	if (!flat && access(path, F_OK) < 0) {
		/* a repeated test (repeat: N) keeps its runs in run-1 .. run-N: the
		   report shows the first; a test that never ran has no requests */
		char *first = xasprintf("%s/run-1", tdir);
		free(path);
		path = xasprintf("%s/requests.csv", first);
		if (access(path, F_OK) == 0) {
			free(tdir);
			tdir = first;
		} else {
			free(first);
			free(path);
			path = NULL;
		}
	}
	if (path && requests_read(t, path) < 0)
		goto out;
	free(path);
	path = xasprintf("%s/summary.json", tdir);
	root = load_json(path, &missing);
	if (!root && !missing)
		goto out;
	if (root)
		summary_read(t, root);
	free(path);
	path = xasprintf("%s/divergences.jsonl", tdir);
	if (divs_read(t, path) < 0)
		goto out;
	free(path);
	path = flat ? xstrdup("") : xasprintf("%s/%s.result", dir, name);
	if (!t->status)
		t->status = flat ? xstrdup("") : first_line(path);
	rc = 0;
out:
	json_decref(root);
	free(path);
	free(tdir);
	return rc;
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Folders of dir that hold a requests.csv, sorted. */
static char **scan_tests(const char *dir, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char **names = NULL;

	*n = 0;
	if (!d)
		return NULL;
	while ((e = readdir(d)) != NULL && *n < 10000) {
		struct stat sb;
		char *p;

		if (e->d_name[0] == '.' || !strcmp(e->d_name, "logs") || !strcmp(e->d_name, "charts"))
			continue;
		p = xasprintf("%s/%s/requests.csv", dir, e->d_name);
		if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode)) {
			names = xrealloc(names, (*n + 1) * sizeof(*names));
			names[(*n)++] = xstrdup(e->d_name);
		}
		free(p);
	}
	closedir(d);
	if (*n > 1)
		qsort(names, *n, sizeof(*names), name_cmp);
	return names;
}

/* PASS / FAIL / NO CHECKS from the checks, for a folder without overall.result. */
static const char *verdict_of(const struct kvr_test *tests, size_t n, bool interrupted)
{
	size_t checks = 0;

	if (interrupted)
		return "INTERRUPTED";
	for (size_t i = 0; i < n; i++)
		for (size_t c = 0; c < tests[i].nchecks; c++) {
			if (tests[i].checks[c].passed == 0)
				return "FAIL";
			checks++;
		}
	return checks ? "PASS" : "NO CHECKS";
}

int kvr_run_load(struct kvr_run *run, const char *dir)
{
	struct stat sb;
	char *path = NULL, **names = NULL;
	size_t nnames = 0;
	json_t *root = NULL, *tests;
	bool missing, flat;
	int rc = -1;

	memset(run, 0, sizeof(*run));
	run->dir = xstrdup(dir);
	run->duration_s = NAN;
	if (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		kv_error("%s: not a results folder (not a readable directory)", dir);
		goto out;
	}
	path = xasprintf("%s/requests.csv", dir);
	flat = stat(path, &sb) == 0;
	free(path);
	path = xasprintf("%s/summary.json", dir);
	root = load_json(path, &missing);
	if (!root && !missing)
		goto out;
	run->run_id = root && json_is_string(json_object_get(root, "run_id")) ?
		jstrdup(root, "run_id") : NULL;
	if (!run->run_id) {
		const char *base;
		size_t l = strlen(dir);
		while (l > 1 && dir[l - 1] == '/')
			l--;
		base = dir;
		for (size_t i = 0; i + 1 < l; i++)
			if (dir[i] == '/')
				base = dir + i + 1;
		run->run_id = xstrndup(base, (size_t)(dir + l - base));
	}
	run->suite = jstrdup(root, "suite");
	run->started = jstrdup(root, "started");
	run->duration_s = jnum(root, "duration_s");
	free(path);
	path = xasprintf("%s/overall.result", dir);
	run->verdict = first_line(path);
	run->interrupted = !strcmp(run->verdict, "INTERRUPTED") ||
		(root && json_is_string(json_object_get(root, "status")) &&
		 !strcmp(json_string_value(json_object_get(root, "status")), "interrupted"));

	if (flat) {
		run->tests = xcalloc(1, sizeof(*run->tests));
		run->ntests = 1;
		if (test_load(&run->tests[0], dir, "bench", true) < 0)
			goto out;
		free(run->tests[0].status);
		run->tests[0].status = xstrdup(verdict_of(run->tests, 1, run->interrupted));
		rc = 0;
		goto out;
	}
	tests = root ? json_object_get(root, "tests") : NULL;
	if (json_is_array(tests) && json_array_size(tests) > 0) {
		size_t i;
		json_t *v;
		json_array_foreach(tests, i, v) {
			json_t *nm = json_object_get(v, "name");
			if (!json_is_string(nm) || !safe_name(json_string_value(nm))) {
				kv_error("%s/summary.json: tests[%zu]: missing or unsafe name", dir, i);
				goto out;
			}
			names = xrealloc(names, (nnames + 1) * sizeof(*names));
			names[nnames++] = xstrdup(json_string_value(nm));
		}
	} else {
		names = scan_tests(dir, &nnames);
	}
	if (nnames == 0) {
		kv_error("%s: no tests found (no requests.csv here or in a subfolder)", dir);
		goto out;
	}
	run->tests = xcalloc(nnames, sizeof(*run->tests));
	for (size_t i = 0; i < nnames; i++) {
		struct kvr_test *t = &run->tests[run->ntests++];
		if (test_load(t, dir, names[i], false) < 0)
			goto out;
		/* Checks from the run's summary when the test's own has none. */
		if (t->nchecks == 0 && json_is_array(tests)) {
			json_t *ck = json_object_get(json_array_get(tests, i), "checks");
			if (json_is_array(ck) && json_array_size(ck) > 0) {
				size_t k;
				json_t *c;
				t->checks = xcalloc(json_array_size(ck), sizeof(*t->checks));
				json_array_foreach(ck, k, c) {
					if (json_is_object(c))
						check_read(&t->checks[t->nchecks++], c);
				}
			}
		}
		if (!*t->status && json_is_array(tests)) {
			json_t *st = json_object_get(json_array_get(tests, i), "status");
			if (json_is_string(st)) {
				free(t->status);
				t->status = xstrdup(json_string_value(st));
			}
		}
	}
	rc = 0;
out:
	if (rc == 0 && !*run->verdict) {
		free(run->verdict);
		run->verdict = xstrdup(verdict_of(run->tests, run->ntests, run->interrupted));
	}
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	free(path);
	json_decref(root);
	if (rc < 0)
		kvr_run_release(run);
	return rc;
}

static void test_release(struct kvr_test *t)
{
	free(t->name);
	free(t->status);
	for (size_t i = 0; i < t->nengines; i++)
		free(t->engines[i]);
	free(t->engines);
	free(t->reqs);
	for (size_t i = 0; i < t->ngroups; i++)
		free(t->groups[i].engine);
	free(t->groups);
	for (size_t i = 0; i < t->nchecks; i++) {
		free(t->checks[i].name);
		free(t->checks[i].unit);
		free(t->checks[i].reason);
	}
	free(t->checks);
	for (size_t i = 0; i < t->ndivs; i++) {
		free(t->divs[i].key);
		free(t->divs[i].a_label);
		free(t->divs[i].b_label);
		free(t->divs[i].a_text);
		free(t->divs[i].b_text);
	}
	free(t->divs);
}

void kvr_run_release(struct kvr_run *run)
{
	for (size_t i = 0; i < run->ntests; i++)
		test_release(&run->tests[i]);
	free(run->tests);
	free(run->dir);
	free(run->run_id);
	free(run->suite);
	free(run->started);
	free(run->verdict);
	memset(run, 0, sizeof(*run));
}

int kvr_run_find_test(const struct kvr_run *run, const char *name)
{
	for (size_t i = 0; i < run->ntests; i++)
		if (!strcmp(run->tests[i].name, name))
			return (int)i;
	return -1;
}
