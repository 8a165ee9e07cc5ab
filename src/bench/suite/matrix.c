/* The detection matrix: rows, verdicts, matrix.csv/json. See matrix.h. */
#include "common/util.h"

#include <errno.h>

#include <jansson.h>

#include "common/buf.h"
#include "fields.h"
#include "suite/matrix.h"
#include "common/banned.h"

const char kvb_matrix_header[] = "test,fault,class,workload,requests,runs,expect,detected_runs,"
				 "detecting_checks,first_detected_request,verdict,note";

void kvb_matrix_row_init(struct kvb_matrix_row *r, const struct kvb_suite *s,
			 const struct kvb_suite_test *t)
{
	const struct kvb_suite_workload *w = kvb_suite_workload_find(s, t->workload);

	memset(r, 0, sizeof(*r));
	r->test = xstrdup(t->name);
	r->fault = xstrdup(t->fault ? t->fault : "");
	r->fclass = xstrdup(t->fclass ? t->fclass : "");
	r->workload = w ? xasprintf("%s (%s)", w->name, w->type) : xstrdup(t->workload);
	r->requests = -1;
	r->expect_detect = t->expect_detect;
	r->checks = xstrdup("");
	r->first_req = -1;
	r->note = xstrdup(t->description ? t->description : "");
}

/* Adds name to the '+'-joined set *set unless it is there. */
static void set_add(char **set, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = *set; *p;) {
		const char *e = strchr(p, '+');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == n && !strncmp(p, name, n))
			return;
		p += l + (e ? 1 : 0);
	}
	{
		char *v = **set ? xasprintf("%s+%s", *set, name) : xstrdup(name);
		free(*set);
		*set = v;
	}
}

void kvb_matrix_add_run(struct kvb_matrix_row *r, const struct kvb_test_result *run,
			long requests)
{
	bool error = run->verdict == KVB_V_ERROR || run->verdict == KVB_V_INTERRUPTED ||
		     run->verdict == KVB_V_PENDING;
	bool failed = false;
	const char *why = run->reason;

	r->runs++;
	if (r->requests < 0)
		r->requests = requests;
	for (size_t i = 0; i < run->n_checks; i++) {
		if (run->checks[i].verdict == KVB_V_ERROR) {
			error = true;
			if (!why)
				why = run->checks[i].reason;
		}
		failed |= run->checks[i].verdict == KVB_V_FAIL;
	}
	if (error) {
		char *n;
		r->error_runs++;
		n = *r->note ? xasprintf("%s; run %d: %s", r->note, r->runs, why ? why : "error")
			     : xasprintf("run %d: %s", r->runs, why ? why : "error");
		free(r->note);
		r->note = n;
		return;
	}
	if (!failed)
		return;
	r->detected_runs++;
	for (size_t i = 0; i < run->n_checks; i++) {
		const struct kvb_check_result *c = &run->checks[i];
		if (c->verdict != KVB_V_FAIL)
			continue;
		set_add(&r->checks, c->name);
		if (c->first_req >= 0 && (r->first_req < 0 || c->first_req < r->first_req))
			r->first_req = c->first_req;
	}
}

const char *kvb_matrix_verdict_name(enum kvb_matrix_verdict v)
{
	switch (v) {
	case KVB_MV_DETECTED:
		return "detected";
	case KVB_MV_MISSED:
		return "missed";
	case KVB_MV_PASS:
		return "pass";
	case KVB_MV_FALSE_ALARM:
		return "false-alarm";
	default:
		return "error";
	}
}

enum kvb_verdict kvb_matrix_finish(struct kvb_matrix_row *r)
{
	if (r->error_runs > 0 || r->runs == 0)
		r->verdict = KVB_MV_ERROR;
	else if (r->expect_detect)
		r->verdict = r->detected_runs > 0 ? KVB_MV_DETECTED : KVB_MV_MISSED;
	else
		r->verdict = r->detected_runs > 0 ? KVB_MV_FALSE_ALARM : KVB_MV_PASS;
	switch (r->verdict) {
	case KVB_MV_DETECTED:
	case KVB_MV_PASS:
		return KVB_V_PASS;
	case KVB_MV_MISSED:
	case KVB_MV_FALSE_ALARM:
		return KVB_V_FAIL;
	default:
		return KVB_V_ERROR;
	}
}

char *kvb_matrix_reason(const struct kvb_matrix_row *r)
{
	const char *s = r->runs == 1 ? "" : "s";

	switch (r->verdict) {
	case KVB_MV_DETECTED:
		return xasprintf("detected in %d/%d runs by %s", r->detected_runs, r->runs, r->checks);
	case KVB_MV_MISSED:
		return xasprintf("missed: every check passed in %d run%s", r->runs, s);
	case KVB_MV_FALSE_ALARM:
		return xasprintf("false alarm in %d/%d runs: %s", r->detected_runs, r->runs, r->checks);
	case KVB_MV_PASS:
		return xasprintf("no alarm in %d run%s", r->runs, s);
	default:
		return NULL;
	}
}

void kvb_matrix_row_release(struct kvb_matrix_row *r)
{
	free(r->test);
	free(r->fault);
	free(r->fclass);
	free(r->workload);
	free(r->checks);
	free(r->note);
	memset(r, 0, sizeof(*r));
}

int kvb_matrix_write(const char *dir, const struct kvb_matrix_row *rows, size_t n)
{
	struct kv_buf b = KV_BUF_INIT(0);
	json_t *a = json_array();
	char *path = NULL, *text = NULL;
	int rc = -1;

	kv_buf_printf(&b, "%s\n", kvb_matrix_header);
	for (size_t i = 0; i < n; i++) {
		const struct kvb_matrix_row *r = &rows[i];
		const char *verdict = kvb_matrix_verdict_name(r->verdict);
		json_t *o = json_object();
		kvb_csv_cell(&b, r->test);
		kv_buf_putc(&b, ',');
		kvb_csv_cell(&b, r->fault);
		kv_buf_putc(&b, ',');
		kvb_csv_cell(&b, r->fclass);
		kv_buf_putc(&b, ',');
		kvb_csv_cell(&b, r->workload);
		if (r->requests >= 0)
			kv_buf_printf(&b, ",%ld", r->requests);
		else
			kv_buf_puts(&b, ",");
		kv_buf_printf(&b, ",%d,%s,%d,", r->runs, r->expect_detect ? "detect" : "pass",
			      r->detected_runs);
		kvb_csv_cell(&b, r->checks);
		if (r->first_req >= 0)
			kv_buf_printf(&b, ",%ld,", r->first_req);
		else
			kv_buf_puts(&b, ",,");
		kvb_csv_cell(&b, verdict);
		kv_buf_putc(&b, ',');
		kvb_csv_cell(&b, r->note);
		kv_buf_putc(&b, '\n');

		json_object_set_new(o, "test", json_string(r->test));
		json_object_set_new(o, "fault", json_string(r->fault));
		json_object_set_new(o, "class", json_string(r->fclass));
		json_object_set_new(o, "workload", json_string(r->workload));
		json_object_set_new(o, "requests", r->requests >= 0 ? json_integer(r->requests)
								      : json_null());
		json_object_set_new(o, "runs", json_integer(r->runs));
		json_object_set_new(o, "expect", json_string(r->expect_detect ? "detect" : "pass"));
		json_object_set_new(o, "detected_runs", json_integer(r->detected_runs));
		json_object_set_new(o, "detecting_checks", json_string(r->checks));
		json_object_set_new(o, "first_detected_request",
				    r->first_req >= 0 ? json_integer(r->first_req) : json_null());
		json_object_set_new(o, "verdict", json_string(verdict));
		json_object_set_new(o, "note", json_string(r->note));
		json_array_append_new(a, o);
	}
	path = xasprintf("%s/matrix.csv", dir);
	if (kv_write_file_atomic(path, kv_buf_str(&b), b.len) < 0) {
		kv_error("%s: cannot write: %s", path, strerror(errno));
		goto out;
	}
	free(path);
	path = xasprintf("%s/matrix.json", dir);
	text = json_dumps(a, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	if (kv_write_file_atomic(path, text, strlen(text)) < 0) {
		kv_error("%s: cannot write: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	free(path);
	free(text);
	json_decref(a);
	kv_buf_release(&b);
	return rc;
}
