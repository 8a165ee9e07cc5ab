/*
 * Unit tests of the report writer and compare on the fixture results folders
 * (tests/fixtures/results, made by gen.py there).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <unistd.h>

#include <cairo.h>

#include "common/buf.h"
#include "common/util.h"
#include "report/compare.h"
#include "report/data.h"
#include "report/model.h"
#include "report/report.h"

static char *fixture(const char *name)
{
	const char *fx = getenv("KV_FIXTURES");
	return xasprintf("%s/results/%s", fx ? fx : "tests/fixtures", name);
}

static char *tmpdir(void)
{
	char tmpl[] = "/tmp/kvr-test-XXXXXX";
	char *d = mkdtemp(tmpl);
	assert_non_null(d);
	return xstrdup(d);
}

static void rm_rf(const char *dir)
{
	char *cmd = xasprintf("rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

/* Fraction of pixels that differ from the top-left one; -1 if unreadable or wrong size. */
static double png_ink(const char *path, int w, int h)
{
	cairo_surface_t *s = cairo_image_surface_create_from_png(path);
	size_t diff = 0;
	double r = -1;

	if (cairo_surface_status(s) == CAIRO_STATUS_SUCCESS &&
	    cairo_image_surface_get_width(s) == w && cairo_image_surface_get_height(s) == h) {
		unsigned char *d = cairo_image_surface_get_data(s);
		int stride = cairo_image_surface_get_stride(s);
		uint32_t bg, px;
		memcpy(&bg, d, 4);
		for (int y = 0; y < h; y++)
			for (int x = 0; x < w; x++) {
				memcpy(&px, d + (size_t)y * (size_t)stride + (size_t)x * 4, 4);
				diff += (px & 0xffffff) != (bg & 0xffffff);
			}
		r = (double)diff / ((double)w * h);
	}
	cairo_surface_destroy(s);
	return r;
}

static void test_load_suite(void **state)
{
	struct kvr_run run;
	char *dir = fixture("suite-base");
	const struct kvr_test *t;
	(void)state;
	assert_int_equal(kvr_run_load(&run, dir), 0);
	assert_string_equal(run.run_id, "2026-11-25T09-00-00-base");
	assert_string_equal(run.verdict, "FAIL");
	assert_int_equal(run.ntests, 3);
	t = &run.tests[kvr_run_find_test(&run, "long-doc-qa")];
	assert_int_equal(t->nreqs, 96);
	assert_int_equal(t->nengines, 2);
	assert_int_equal(t->max_pass, 1);
	assert_int_equal(t->ngroups, 4);
	assert_int_equal(t->nchecks, 3);
	assert_int_equal(t->checks[0].passed, 0);
	assert_string_equal(t->status, "FAIL");
	assert_int_equal(t->ndivs, 2);
	assert_string_equal(t->divs[0].a_label, "kvserve-cache pass 1");
	assert_true(fabs(t->groups[1].hit_rate - 0.93) < 1e-9);
	t = &run.tests[kvr_run_find_test(&run, "multi-turn")];
	assert_int_equal(t->reqs[7].session, 1);
	assert_int_equal(t->reqs[7].turn, 2);
	assert_int_equal(kvr_run_find_test(&run, "nope"), -1);
	kvr_run_release(&run);
	free(dir);
}

static void test_view(void **state)
{
	struct kvr_run run;
	struct kvr_view v;
	char *dir = fixture("suite-base");
	static const char *const want[3][6] = {
		{ "ttft-cdf", "ttft-context", "speedup", "throughput", "hit-rate", NULL },
		{ "ttft-cdf", "ttft-context", "ttft-turn", "speedup", "throughput", "hit-rate" },
		{ "ttft-cdf", "speedup", "throughput", "accuracy", NULL, NULL },
	};
	(void)state;
	assert_int_equal(kvr_run_load(&run, dir), 0);
	kvr_view_build(&v, &run);
	for (size_t i = 0; i < 3; i++) {
		const struct kvr_test_view *tv = &v.tests[i];
		size_t k = 0;
		for (size_t s = 0; s < tv->nslots; s++) {
			char *id;
			if (!tv->slots[s].has_data)
				continue;
			assert_true(k < 6 && want[i][k]);
			id = xasprintf("%s-%s", tv->slug, want[i][k]);
			assert_string_equal(tv->slots[s].chart.id, id);
			free(id);
			k++;
		}
		assert_true(k == 6 || want[i][k] == NULL);
	}
	/* long-doc-qa: warm cache is ~4x faster than cold, the baseline is not. */
	{
		const struct kvr_chart *c = &v.tests[0].slots[2].chart;
		assert_string_equal(c->id, "long-doc-qa-speedup");
		assert_true(c->series[0].y[0] > 3 && c->series[0].y[0] < 5);
		assert_true(c->series[0].lo[0] < c->series[0].y[0]);
		assert_true(c->series[0].hi[0] > c->series[0].y[0]);
		assert_true(fabs(c->series[0].y[1] - 1) < 0.1);
		assert_true(isnan(c->series[1].y[1]));   /* baseline vs itself: none */
	}
	/* Per-group rows: 4 in long-doc-qa, TTFT in ms. */
	assert_int_equal(v.tests[0].nrows, 4);
	assert_string_equal(v.tests[0].ttft_unit, "ms");
	assert_int_equal(v.tests[0].rows[1].ok, 24);
	kvr_view_release(&v);
	kvr_run_release(&run);
	free(dir);
}

static void test_write_suite(void **state)
{
	char *dir = fixture("suite-base"), *out = tmpdir(), *p, *html;
	static const char *const charts[] = {
		"long-doc-qa-ttft-cdf", "long-doc-qa-ttft-context", "long-doc-qa-speedup",
		"long-doc-qa-throughput", "long-doc-qa-hit-rate", "multi-turn-ttft-turn",
		"mmlu-accuracy",
	};
	size_t len;
	(void)state;
	assert_int_equal(kvb_report_write(dir, out), 0);
	p = xasprintf("%s/report.html", out);
	html = kv_read_file(p, 64 << 20, &len);
	assert_non_null(html);
	free(p);
	for (size_t i = 0; i < KV_ARRAY_SIZE(charts); i++) {
		char *id = xasprintf("id=\"chart-%s\"", charts[i]);
		double ink;
		if (!strstr(html, id))
			fail_msg("report.html lacks %s", id);
		free(id);
		p = xasprintf("%s/charts/%s.png", out, charts[i]);
		ink = png_ink(p, 1200, 675);
		if (ink < 0.02)
			fail_msg("%s: blank or wrong size (%.4f)", p, ink);
		free(p);
	}
	assert_non_null(strstr(html, "id=\"long-doc-qa-checks\""));
	assert_non_null(strstr(html, "id=\"long-doc-qa-divergences\""));
	assert_non_null(strstr(html, "id=\"mmlu-groups\""));
	/* Self-contained: no external resource, no script. */
	assert_null(strstr(html, "src=\"http"));
	assert_null(strstr(html, "<script"));
	assert_null(strstr(html, "<?xml"));
	/* The identity check failed, so the page says FAIL with it. */
	assert_non_null(strstr(html, "<td class=\"FAIL\">FAIL</td>"));
	/* Divergent text is escaped. */
	assert_non_null(strstr(html, "Answer: <mark>&lt;b&gt;B&lt;/b&gt; &amp; C</mark>"));
	/* The differing part is marked on both sides. */
	assert_non_null(strstr(html, "covers parts for <mark>two years,"));
	assert_non_null(strstr(html, "covers parts for <mark>three years,"));
	free(html);
	/* No chart for what has no data: no ttft-turn in long-doc-qa. */
	p = xasprintf("%s/charts/long-doc-qa-ttft-turn.png", out);
	assert_int_not_equal(access(p, F_OK), 0);
	free(p);
	p = xasprintf("%s/report.pdf", out);
	assert_int_equal(access(p, R_OK), 0);
	free(p);
	rm_rf(out);
	free(out);
	free(dir);
}

static void test_write_paths(void **state)
{
	char *dir = fixture("bench-flat"), *out = tmpdir(), *p;
	(void)state;
	p = xasprintf("%s/x.pdf", out);
	assert_int_equal(kvb_report_write(dir, p), 0);
	free(p);
	p = xasprintf("%s/x.html", out);
	assert_int_equal(access(p, R_OK), 0);
	free(p);
	p = xasprintf("%s/charts/bench-ttft-cdf.png", out);
	assert_true(png_ink(p, 1200, 675) > 0.02);
	free(p);
	free(dir);
	/* Bad input: 2, nothing written. */
	assert_int_equal(kvb_report_write("/nonexistent/results", out), 2);
	dir = fixture("suite-base/logs");
	assert_int_equal(kvb_report_write(dir, out), 2);
	free(dir);
	/* Unwritable output: 3. */
	dir = fixture("bench-flat");
	assert_int_equal(kvb_report_write(dir, "/proc/kvr-no/x.pdf"), 3);
	free(dir);
	rm_rf(out);
	free(out);
}

static void test_edge(void **state)
{
	char *dir = fixture("suite-edge"), *out = tmpdir(), *p, *html;
	size_t len;
	(void)state;
	assert_int_equal(kvb_report_write(dir, out), 0);
	p = xasprintf("%s/report.html", out);
	html = kv_read_file(p, 64 << 20, &len);
	assert_non_null(html);
	assert_null(strstr(html, "<script"));
	assert_null(strstr(html, "<img"));
	assert_non_null(strstr(html, "&lt;script&gt;alert(&quot;x&quot;)"));
	assert_non_null(strstr(html, "TTFT distribution: no data"));
	assert_non_null(strstr(html, "INTERRUPTED"));
	free(html);
	free(p);
	rm_rf(out);
	free(out);
	free(dir);
}

static void put(const char *path, const char *s)
{
	assert_int_equal(kv_write_file_atomic(path, s, strlen(s)), 0);
}

static void test_bad_csv(void **state)
{
	char *out = tmpdir(), *p;
	struct kvr_run run;
	(void)state;
	p = xasprintf("%s/requests.csv", out);
	put(p, "engine_id,TTFT\na,0.1\nb,fast\n");
	assert_int_equal(kvr_run_load(&run, out), -1);
	put(p, "engine_id,x\na,0.1\n");
	assert_int_equal(kvr_run_load(&run, out), -1);
	put(p, "engine_id,TTFT,pass\na,0.1,-1\n");
	assert_int_equal(kvr_run_load(&run, out), -1);
	put(p, "engine_id,TTFT,pass\na,,\nb,nan,1\n");
	assert_int_equal(kvr_run_load(&run, out), 0);
	assert_int_equal(run.ntests, 1);
	assert_string_equal(run.verdict, "NO CHECKS");
	assert_true(isnan(run.tests[0].reqs[1].ttft));
	assert_int_equal(run.tests[0].reqs[1].pass, 1);
	kvr_run_release(&run);
	free(p);
	rm_rf(out);
	free(out);
}

/* Many checks and long divergent outputs: the PDF paginates, nothing breaks. */
static void test_long_tables(void **state)
{
	char *out = tmpdir(), *p;
	struct kv_buf b = KV_BUF_INIT(0);
	(void)state;
	p = xasprintf("%s/requests.csv", out);
	put(p, "engine_id,TTFT,pass\na,0.5,0\na,0.25,1\nb,0.5,0\n");
	free(p);
	kv_buf_puts(&b, "{\"groups\":[],\"checks\":[");
	for (int i = 0; i < 120; i++)
		kv_buf_printf(&b, "%s{\"name\":\"check-%d\",\"passed\":%s,\"figure\":%d,"
			      "\"threshold\":1,\"unit\":\"x\",\"reason\":\"%0300d\"}",
			      i ? "," : "", i, i % 7 ? "true" : "false", i, i);
	kv_buf_puts(&b, "]}\n");
	p = xasprintf("%s/summary.json", out);
	put(p, kv_buf_str(&b));
	free(p);
	kv_buf_reset(&b);
	for (int i = 0; i < 30; i++) {
		kv_buf_printf(&b, "{\"key\":\"k%d\",\"a\":{\"engine_id\":\"a\",\"text\":\"", i);
		for (int w = 0; w < 400; w++)
			kv_buf_puts(&b, w % 13 ? "word " : "averyveryverylongwordwithoutspaces ");
		kv_buf_puts(&b, "\"},\"b\":{\"engine_id\":\"b\",\"text\":\"x\"}}\n");
	}
	p = xasprintf("%s/divergences.jsonl", out);
	put(p, kv_buf_str(&b));
	free(p);
	kv_buf_release(&b);
	assert_int_equal(kvb_report_write(out, NULL), 0);
	p = xasprintf("%s/report.pdf", out);
	assert_int_equal(access(p, R_OK), 0);
	free(p);
	rm_rf(out);
	free(out);
}

static void test_compare(void **state)
{
	char *base = fixture("suite-base"), *reg = fixture("suite-regressed");
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct kvr_compare_opts o = { .max_regression = 0.10, .rounds = 300, .seed = 1, .out = f };
	static const char *const only[] = { "ttft_mean" };
	(void)state;
	assert_int_equal(kvr_compare(base, reg, &o), 1);
	fflush(f);
	assert_non_null(strstr(buf, "REGRESSION: long-doc-qa kvserve-cache pass 1 ttft_mean"));
	assert_null(strstr(buf, "REGRESSION: long-doc-qa kvserve-nocache"));
	assert_null(strstr(buf, "REGRESSION: multi-turn"));
	fclose(f);
	free(buf);
	buf = NULL;
	f = open_memstream(&buf, &len);
	o.out = f;
	assert_int_equal(kvr_compare(base, base, &o), 0);
	fflush(f);
	assert_non_null(strstr(buf, "no regression"));
	/* A 100 % change is within a 150 % allowance. */
	o.max_regression = 1.5;
	assert_int_equal(kvr_compare(base, reg, &o), 0);
	/* Only throughput: it did not change. */
	o.max_regression = 0.10;
	o.metrics = only;
	o.nmetrics = 1;
	assert_int_equal(kvr_compare(base, reg, &o), 1);
	assert_int_equal(kvr_compare(reg, base, &o), 0);   /* faster is no regression */
	assert_int_equal(kvr_compare(base, "/nonexistent", &o), 2);
	fclose(f);
	free(buf);
	assert_true(kvr_compare_metric_known("ttft_p99"));
	assert_false(kvr_compare_metric_known("ttft_p42"));
	free(base);
	free(reg);
}

/* A bench folder whose summary has the given checks (JSON array text). */
static char *folder_with_checks(const char *checks)
{
	char *out = tmpdir(), *p, *js;
	p = xasprintf("%s/requests.csv", out);
	put(p, "engine_id,TTFT,pass\na,0.5,0\na,0.25,0\n");
	free(p);
	p = xasprintf("%s/summary.json", out);
	js = xasprintf("{\"groups\":[],\"checks\":%s}\n", checks);
	put(p, js);
	free(js);
	free(p);
	return out;
}

/* A suite folder whose checks are only in the run's summary.json. */
static void test_run_summary_checks(void **state)
{
	char *out = tmpdir(), *p;
	struct kvr_run run;
	(void)state;
	p = xasprintf("%s/t1", out);
	assert_int_equal(kv_mkdir_p(p, 0755), 0);
	free(p);
	p = xasprintf("%s/t1/requests.csv", out);
	put(p, "engine_id,TTFT\na,0.5\n");
	free(p);
	p = xasprintf("%s/summary.json", out);
	put(p, "{\"run_id\":\"r\",\"tests\":[{\"name\":\"t1\",\"status\":\"FAIL\","
	       "\"checks\":[{\"name\":\"c\",\"passed\":false,\"figure\":2}]}]}");
	assert_int_equal(kvr_run_load(&run, out), 0);
	assert_int_equal(run.tests[0].nchecks, 1);
	assert_int_equal(run.tests[0].checks[0].passed, 0);
	assert_string_equal(run.tests[0].status, "FAIL");
	assert_string_equal(run.verdict, "FAIL");
	kvr_run_release(&run);
	/* A test name that climbs out of the folder is refused. */
	put(p, "{\"tests\":[{\"name\":\"../t1\"}]}");
	assert_int_equal(kvr_run_load(&run, out), -1);
	free(p);
	rm_rf(out);
	free(out);
}

static void test_accuracy_checks(void **state)
{
	char *a = folder_with_checks(
		"[{\"name\":\"acc\",\"passed\":true,\"figure\":0.8,\"unit\":\"accuracy\",\"n\":500},"
		"{\"name\":\"identity\",\"passed\":true,\"figure\":1,\"unit\":\"fraction\"}]");
	char *b = folder_with_checks(
		"[{\"name\":\"acc\",\"passed\":true,\"figure\":0.6,\"unit\":\"accuracy\",\"n\":500},"
		"{\"name\":\"identity\",\"passed\":false,\"figure\":0.9,\"unit\":\"fraction\"}]");
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	struct kvr_compare_opts o = { .max_regression = 0.10, .rounds = 300, .seed = 1, .out = f };
	static const char *const acc[] = { "accuracy" }, *const ident[] = { "identity" };
	struct kvr_run run;
	struct kvr_view v;
	(void)state;
	/* The accuracy chart comes from the check, with a Wilson interval from n. */
	assert_int_equal(kvr_run_load(&run, a), 0);
	kvr_view_build(&v, &run);
	for (size_t k = 0; k < v.tests[0].nslots; k++) {
		const struct kvr_chart *c = &v.tests[0].slots[k].chart;
		if (strcmp(c->id, "bench-accuracy"))
			continue;
		assert_true(fabs(c->series[0].y[0] - 80) < 1e-9);
		assert_true(c->series[0].lo[0] > 75 && c->series[0].lo[0] < 80);
		assert_true(c->series[0].hi[0] > 80 && c->series[0].hi[0] < 85);
		len = 1;
	}
	assert_int_equal(len, 1);
	kvr_view_release(&v);
	kvr_run_release(&run);
	/* 0.8 -> 0.6 over 500 questions each is a regression; identity too. */
	o.metrics = acc;
	o.nmetrics = 1;
	assert_int_equal(kvr_compare(a, b, &o), 1);
	assert_int_equal(kvr_compare(b, a, &o), 0);
	o.metrics = ident;
	assert_int_equal(kvr_compare(a, b, &o), 1);
	assert_int_equal(kvr_compare(b, a, &o), 0);
	fflush(f);
	assert_non_null(strstr(buf, "REGRESSION: bench check acc accuracy: 0.8 -> 0.6"));
	assert_non_null(strstr(buf, "REGRESSION: bench check identity identity: 1 -> 0.9 (passed, now fails)"));
	fclose(f);
	free(buf);
	rm_rf(a);
	rm_rf(b);
	free(a);
	free(b);
}


/* matrix.csv in a suite folder: the "Detection matrix" table; a repeated
   test (run-1 .. run-N) and a test that never ran do not break the report */
static void test_matrix_table(void **state)
{
	char *src = fixture("suite-base"), *out = tmpdir(), *run, *cmd, *p, *html;
	static const char csv[] =
		"test,fault,class,workload,requests,runs,expect,detected_runs,detecting_checks,"
		"first_detected_request,verdict,note\n"
		"bitflip,bitflip,R/E,sweep (ttft-sweep),20,1,detect,1,identity.f+logprobs.f,5,detected,\n"
		"zero-tail,zero-tail,B,sweep (ttft-sweep),20,3,detect,0,,,missed,\"echo <b>hides</b> it, twice\"\n"
		"clean,,-,sweep (ttft-sweep),20,3,pass,0,,,pass,\n";
	(void)state;
	run = xasprintf("%s/run", out);
	cmd = xasprintf("cp -r '%s' '%s' && mkdir '%s/multi-turn/run-1' && mv '%s/multi-turn/'*.* "
			"'%s/multi-turn/run-1/' && rm -rf '%s/mmlu'", src, run, run, run, run, run);
	assert_int_equal(system(cmd), 0);
	free(cmd);
	p = xasprintf("%s/matrix.csv", run);
	assert_int_equal(kv_write_file_atomic(p, csv, strlen(csv)), 0);
	free(p);
	assert_int_equal(kvb_report_write(run, NULL), 0);
	p = xasprintf("%s/report.html", run);
	html = kv_read_file(p, 64 << 20, NULL);
	assert_non_null(html);
	free(p);
	assert_non_null(strstr(html, "<section id=\"matrix\"><h2>Detection matrix</h2>"));
	assert_non_null(strstr(html, "<td class=\"txt\">identity.f+logprobs.f</td>"));
	assert_non_null(strstr(html, "<td class=\"num\">1 / 1</td>"));
	assert_non_null(strstr(html, "<td class=\"PASS\">detected</td>"));
	assert_non_null(strstr(html, "<td class=\"FAIL\">missed</td>"));
	assert_non_null(strstr(html, "<td class=\"num\">0 / 3</td>"));
	assert_non_null(strstr(html, "echo &lt;b&gt;hides&lt;/b&gt; it, twice"));
	assert_null(strstr(html, "<b>hides"));
	/* the repeated test shows its first run */
	assert_non_null(strstr(html, "id=\"chart-multi-turn-ttft-turn\""));
	free(html);
	p = xasprintf("%s/report.pdf", run);
	assert_int_equal(access(p, R_OK), 0);
	free(p);

	/* a matrix.csv without a verdict column is an error, nothing written */
	p = xasprintf("%s/matrix.csv", run);
	assert_int_equal(kv_write_file_atomic(p, "test,fault\nx,y\n", 15), 0);
	free(p);
	p = xasprintf("%s/again", out);
	assert_int_equal(kvb_report_write(run, p), 2);
	free(p);
	free(run);
	rm_rf(out);
	free(out);
	free(src);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_suite),
		cmocka_unit_test(test_view),
		cmocka_unit_test(test_write_suite),
		cmocka_unit_test(test_write_paths),
		cmocka_unit_test(test_edge),
		cmocka_unit_test(test_bad_csv),
		cmocka_unit_test(test_long_tables),
		cmocka_unit_test(test_compare),
		cmocka_unit_test(test_accuracy_checks),
		cmocka_unit_test(test_run_summary_checks),
		cmocka_unit_test(test_matrix_table),
	};
	kv_set_quiet(true);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
