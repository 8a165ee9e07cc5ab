/* The top files of a results folder: *.result, summary.json, junit.xml. */
#include "common/util.h"

#include <errno.h>
#include <math.h>

#include <jansson.h>

#include "common/buf.h"
#include "suite/results.h"
#include "common/banned.h"

static const char *const names[] = {
	[KVB_V_PASS] = "PASS", [KVB_V_FAIL] = "FAIL", [KVB_V_ERROR] = "ERROR",
	[KVB_V_INTERRUPTED] = "INTERRUPTED", [KVB_V_SKIPPED] = "SKIPPED",
	[KVB_V_PENDING] = "PENDING",
};

const char *kvb_verdict_name(enum kvb_verdict v)
{
	return (unsigned)v < KV_ARRAY_SIZE(names) ? names[v] : "?";
}

void kvb_test_add_check(struct kvb_test_result *t, const char *name, enum kvb_verdict v,
			double figure, double threshold, const char *unit, const char *reason)
{
	struct kvb_check_result *c;
	t->checks = xrealloc(t->checks, (t->n_checks + 1) * sizeof(*t->checks));
	c = &t->checks[t->n_checks++];
	c->name = xstrdup(name);
	c->verdict = v;
	c->figure = figure;
	c->threshold = threshold;
	c->unit = xstrdup(unit ? unit : "");
	c->reason = xstrdup(reason ? reason : "");
	c->first_req = -1;
}

enum kvb_verdict kvb_test_verdict(const struct kvb_test_result *t)
{
	enum kvb_verdict v = KVB_V_PASS;
	for (size_t i = 0; i < t->n_checks; i++) {
		if (t->checks[i].verdict == KVB_V_ERROR)
			return KVB_V_ERROR;
		if (t->checks[i].verdict == KVB_V_FAIL)
			v = KVB_V_FAIL;
	}
	return v;
}

enum kvb_verdict kvb_suite_verdict(const struct kvb_suite_result *r)
{
	if (r->interrupted || !r->finished)
		return KVB_V_INTERRUPTED;
	for (size_t i = 0; i < r->n_tests; i++)
		if (r->tests[i].verdict != KVB_V_PASS && r->tests[i].verdict != KVB_V_SKIPPED)
			return KVB_V_FAIL;
	return KVB_V_PASS;
}

/* "1.5 s", or "-" when not measured */
static void fmt_val(struct kv_buf *b, double v, const char *unit)
{
	if (isnan(v))
		kv_buf_puts(b, "-");
	else
		kv_buf_printf(b, "%.6g%s%s", v, *unit ? " " : "", unit);
}

static char *test_result_text(const struct kvb_test_result *t)
{
	struct kv_buf b = KV_BUF_INIT(0);
	kv_buf_printf(&b, "%s\n", kvb_verdict_name(t->verdict));
	if (t->reason)
		kv_buf_printf(&b, "reason: %s\n", t->reason);
	for (size_t i = 0; i < t->n_checks; i++) {
		const struct kvb_check_result *c = &t->checks[i];
		kv_buf_printf(&b, "%s %s: figure ", kvb_verdict_name(c->verdict), c->name);
		fmt_val(&b, c->figure, c->unit);
		kv_buf_puts(&b, ", threshold ");
		fmt_val(&b, c->threshold, c->unit);
		if (*c->reason)
			kv_buf_printf(&b, " (%s)", c->reason);
		kv_buf_putc(&b, '\n');
	}
	return kv_buf_detach(&b, NULL);
}

static json_t *num_or_null(double v)
{
	return isnan(v) || isinf(v) ? json_null() : json_real(v);
}

static json_t *summary_json(const struct kvb_suite_result *r)
{
	json_t *j = json_object(), *tests = json_array();
	enum kvb_verdict ov = kvb_suite_verdict(r);
	const char *status = ov == KVB_V_INTERRUPTED ? (r->interrupted ? "interrupted" : "running")
						     : ov == KVB_V_PASS ? "pass" : "fail";

	json_object_set_new(j, "kvbench_version", json_string(KV_VERSION));
	json_object_set_new(j, "run_id", json_string(r->run_id ? r->run_id : ""));
	json_object_set_new(j, "suite", json_string(r->suite ? r->suite : ""));
	json_object_set_new(j, "suite_file", json_string(r->suite_file ? r->suite_file : ""));
	json_object_set_new(j, "status", json_string(status));
	json_object_set_new(j, "result", json_string(kvb_verdict_name(ov)));
	json_object_set_new(j, "started", json_real(r->started));
	json_object_set_new(j, "duration_s", json_real(r->duration_s));
	for (size_t i = 0; i < r->n_tests; i++) {
		const struct kvb_test_result *t = &r->tests[i];
		json_t *jt = json_object(), *checks = json_array();
		json_object_set_new(jt, "name", json_string(t->name));
		json_object_set_new(jt, "status", json_string(kvb_verdict_name(t->verdict)));
		json_object_set_new(jt, "reason", t->reason ? json_string(t->reason) : json_null());
		json_object_set_new(jt, "duration_s", json_real(t->duration_s));
		for (size_t k = 0; k < t->n_checks; k++) {
			const struct kvb_check_result *c = &t->checks[k];
			json_t *jc = json_object();
			json_object_set_new(jc, "name", json_string(c->name));
			json_object_set_new(jc, "status", json_string(kvb_verdict_name(c->verdict)));
			json_object_set_new(jc, "passed", json_boolean(c->verdict == KVB_V_PASS));
			json_object_set_new(jc, "figure", num_or_null(c->figure));
			json_object_set_new(jc, "threshold", num_or_null(c->threshold));
			json_object_set_new(jc, "unit", json_string(c->unit));
			json_object_set_new(jc, "reason", json_string(c->reason));
			json_array_append_new(checks, jc);
		}
		json_object_set_new(jt, "checks", checks);
		json_array_append_new(tests, jt);
	}
	json_object_set_new(j, "tests", tests);
	return j;
}

char *kvb_xml_escape(const char *s)
{
	struct kv_buf b = KV_BUF_INIT(0);
	kv_buf_puts(&b, "");
	for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
		switch (*p) {
		case '<': kv_buf_puts(&b, "&lt;"); break;
		case '>': kv_buf_puts(&b, "&gt;"); break;
		case '&': kv_buf_puts(&b, "&amp;"); break;
		case '"': kv_buf_puts(&b, "&quot;"); break;
		case '\'': kv_buf_puts(&b, "&apos;"); break;
		default:
			if (*p < 0x20 && *p != '\n' && *p != '\t')
				kv_buf_putc(&b, '?');
			else
				kv_buf_putc(&b, (char)*p);
		}
	}
	return kv_buf_detach(&b, NULL);
}

static void xml_attr(struct kv_buf *b, const char *name, const char *val)
{
	char *e = kvb_xml_escape(val);
	kv_buf_printf(b, " %s=\"%s\"", name, e);
	free(e);
}

static void junit_case(struct kv_buf *b, const char *cls, const char *name,
		       enum kvb_verdict v, const char *msg, const char *body, double time_s)
{
	const char *tag = v == KVB_V_FAIL ? "failure" : v == KVB_V_SKIPPED ? "skipped" : "error";

	kv_buf_puts(b, "    <testcase");
	xml_attr(b, "classname", cls);
	xml_attr(b, "name", name);
	kv_buf_printf(b, " time=\"%.3f\"", time_s);
	if (v == KVB_V_PASS) {
		kv_buf_puts(b, "/>\n");
		return;
	}
	kv_buf_printf(b, ">\n      <%s", tag);
	xml_attr(b, "message", msg);
	if (v != KVB_V_SKIPPED)
		xml_attr(b, "type", kvb_verdict_name(v));
	if (body && *body && v != KVB_V_SKIPPED) {
		char *e = kvb_xml_escape(body);
		kv_buf_printf(b, ">%s</%s>\n", e, tag);
		free(e);
	} else {
		kv_buf_puts(b, "/>\n");
	}
	kv_buf_puts(b, "    </testcase>\n");
}

static char *junit_xml(const struct kvb_suite_result *r)
{
	struct kv_buf b = KV_BUF_INIT(0);
	size_t total = 0, fail = 0, err = 0, skip = 0;

	for (size_t i = 0; i < r->n_tests; i++) {
		const struct kvb_test_result *t = &r->tests[i];
		if (!t->n_checks || t->verdict == KVB_V_ERROR || t->verdict == KVB_V_INTERRUPTED ||
		    t->verdict == KVB_V_PENDING) {
			total++;
			err += t->verdict == KVB_V_ERROR || t->verdict == KVB_V_INTERRUPTED;
			skip += t->verdict == KVB_V_PENDING || t->verdict == KVB_V_SKIPPED;
		}
		for (size_t k = 0; k < t->n_checks; k++) {
			total++;
			fail += t->checks[k].verdict == KVB_V_FAIL && !t->expect_detect;
			err += t->checks[k].verdict == KVB_V_ERROR;
			skip += t->checks[k].verdict == KVB_V_SKIPPED;
		}
		if (t->expect_detect && t->n_checks && t->verdict != KVB_V_ERROR &&
		    t->verdict != KVB_V_INTERRUPTED && t->verdict != KVB_V_PENDING) {
			total++;
			fail += t->verdict == KVB_V_FAIL;
		}
	}
	kv_buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites");
	xml_attr(&b, "name", r->suite ? r->suite : "kvbench");
	kv_buf_printf(&b, " tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" skipped=\"%zu\" "
		      "time=\"%.3f\">\n", total, fail, err, skip, r->duration_s);
	for (size_t i = 0; i < r->n_tests; i++) {
		const struct kvb_test_result *t = &r->tests[i];
		size_t tt = 0, tf = 0, te = 0, ts = 0;
		char *cls = xasprintf("%s.%s", r->suite ? r->suite : "kvbench", t->name);
		bool run_case = !t->n_checks || t->verdict == KVB_V_ERROR ||
				t->verdict == KVB_V_INTERRUPTED || t->verdict == KVB_V_PENDING;
		bool det_case = t->expect_detect && !run_case;

		if (run_case) {
			tt++;
			te += t->verdict == KVB_V_ERROR || t->verdict == KVB_V_INTERRUPTED;
			ts += t->verdict == KVB_V_PENDING || t->verdict == KVB_V_SKIPPED;
		}
		for (size_t k = 0; k < t->n_checks; k++) {
			tt++;
			tf += t->checks[k].verdict == KVB_V_FAIL && !t->expect_detect;
			te += t->checks[k].verdict == KVB_V_ERROR;
			ts += t->checks[k].verdict == KVB_V_SKIPPED;
		}
		if (det_case) {
			tt++;
			tf += t->verdict == KVB_V_FAIL;
		}
		kv_buf_puts(&b, "  <testsuite");
		xml_attr(&b, "name", t->name);
		kv_buf_printf(&b, " tests=\"%zu\" failures=\"%zu\" errors=\"%zu\" skipped=\"%zu\" "
			      "time=\"%.3f\">\n", tt, tf, te, ts, t->duration_s);
		if (run_case) {
			enum kvb_verdict v = t->verdict == KVB_V_PENDING ? KVB_V_SKIPPED :
					     t->verdict == KVB_V_INTERRUPTED ? KVB_V_ERROR : t->verdict;
			junit_case(&b, cls, "run", v, t->reason ? t->reason :
				   t->verdict == KVB_V_PENDING ? "not run" : kvb_verdict_name(t->verdict),
				   t->reason, t->duration_s);
		}
		if (det_case) /* expect: detect: detected passes, missed fails */
			junit_case(&b, cls, "detection", t->verdict == KVB_V_PASS ? KVB_V_PASS : KVB_V_FAIL,
				   t->reason ? t->reason : kvb_verdict_name(t->verdict), t->reason,
				   t->duration_s);
		for (size_t k = 0; k < t->n_checks; k++) {
			const struct kvb_check_result *c = &t->checks[k];
			struct kv_buf m = KV_BUF_INIT(0);
			char *msg;
			kv_buf_puts(&m, "figure ");
			fmt_val(&m, c->figure, c->unit);
			kv_buf_puts(&m, ", threshold ");
			fmt_val(&m, c->threshold, c->unit);
			if (*c->reason)
				kv_buf_printf(&m, ": %s", c->reason);
			msg = kv_buf_detach(&m, NULL);
			/* a detecting check of an expect: detect row is the wanted outcome */
			junit_case(&b, cls, c->name,
				   t->expect_detect && c->verdict == KVB_V_FAIL ? KVB_V_PASS : c->verdict,
				   msg, msg, 0);
			free(msg);
		}
		kv_buf_puts(&b, "  </testsuite>\n");
		free(cls);
	}
	kv_buf_puts(&b, "</testsuites>\n");
	return kv_buf_detach(&b, NULL);
}

static int write_str(const char *dir, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	int rc = kv_write_file_atomic(path, text, strlen(text));
	if (rc < 0)
		kv_error("%s: cannot write: %s", path, strerror(errno));
	free(path);
	return rc;
}

int kvb_results_write(const char *dir, const struct kvb_suite_result *r)
{
	struct kv_buf ov = KV_BUF_INIT(0);
	enum kvb_verdict v = kvb_suite_verdict(r);
	json_t *j;
	char *text;
	int rc = 0;

	for (size_t i = 0; i < r->n_tests; i++) {
		const struct kvb_test_result *t = &r->tests[i];
		char *name;
		if (t->verdict == KVB_V_PENDING)
			continue;
		name = xasprintf("%s.result", t->name);
		text = test_result_text(t);
		rc |= write_str(dir, name, text);
		free(text);
		free(name);
	}
	j = summary_json(r);
	text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(j);
	rc |= write_str(dir, "summary.json", text);
	free(text);
	text = junit_xml(r);
	rc |= write_str(dir, "junit.xml", text);
	free(text);

	/* last: overall.result is what CI scripts look at */
	kv_buf_printf(&ov, "%s\n", kvb_verdict_name(v));
	if (v == KVB_V_INTERRUPTED)
		kv_buf_printf(&ov, "# %s\n", r->interrupted ? "the run was interrupted" :
					   "the run has not finished (still running, or killed)");
	for (size_t i = 0; i < r->n_tests; i++) {
		const struct kvb_test_result *t = &r->tests[i];
		kv_buf_printf(&ov, "%s %s", kvb_verdict_name(t->verdict), t->name);
		if (t->reason)
			kv_buf_printf(&ov, ": %s", t->reason);
		else if (t->verdict == KVB_V_FAIL)
			for (size_t k = 0; k < t->n_checks; k++)
				if (t->checks[k].verdict == KVB_V_FAIL) {
					kv_buf_printf(&ov, ": %s failed", t->checks[k].name);
					break;
				}
		kv_buf_putc(&ov, '\n');
	}
	text = kv_buf_detach(&ov, NULL);
	rc |= write_str(dir, "overall.result", text);
	free(text);
	return rc ? -1 : 0;
}

void kvb_test_result_release(struct kvb_test_result *t)
{
	for (size_t k = 0; k < t->n_checks; k++) {
		free(t->checks[k].name);
		free(t->checks[k].unit);
		free(t->checks[k].reason);
	}
	free(t->checks);
	free(t->name);
	free(t->reason);
	memset(t, 0, sizeof(*t));
}

void kvb_suite_result_release(struct kvb_suite_result *r)
{
	for (size_t i = 0; i < r->n_tests; i++)
		kvb_test_result_release(&r->tests[i]);
	free(r->tests);
	free(r->run_id);
	free(r->suite);
	free(r->suite_file);
	memset(r, 0, sizeof(*r));
}
