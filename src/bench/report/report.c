/*
 * report.c: kvb_report_write(): a results folder to report.pdf, report.html
 * and charts/<id>.png. The content comes from model.c; this file only lays
 * it out.
 */
#include "report/report.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cairo-pdf.h>
#include <cairo.h>

#include "common/buf.h"
#include "common/util.h"
#include "report/model.h"
#include "common/banned.h"

#define PNG_W 1200
#define PNG_H 675
#define HTML_MAX (512UL << 20)

/* ---- formatting shared by PDF and HTML ---- */

/* v with dec decimals (dec < 0: 4 significant digits) and a suffix; a dash for NaN. */
static void fmt_num(char *buf, size_t len, double v, int dec, const char *suffix)
{
	if (!isfinite(v))
		snprintf(buf, len, "\xe2\x80\x94");   /* em dash */
	else if (dec < 0)
		snprintf(buf, len, "%.4g%s", v, suffix);
	else
		snprintf(buf, len, "%.*f%s", dec, v, suffix);
}

static void fmt_ttft(char *buf, size_t len, double s, const char *unit)
{
	if (!strcmp(unit, "ms"))
		fmt_num(buf, len, s * 1000, 1, "");
	else
		fmt_num(buf, len, s, 3, "");
}

static const char *check_result(const struct kvr_check *c)
{
	return c->passed == 1 ? "PASS" : c->passed == 0 ? "FAIL" : "?";
}

static void pass_label(char *buf, size_t len, int pass, int max_pass)
{
	char pn[32];
	kvr_pass_name(pn, sizeof(pn), pass, max_pass);
	snprintf(buf, len, "%d (%s)", pass, pn);
}

#define NCOLS_ROWS 10
static const char *const row_head[NCOLS_ROWS] = {
	"engine", "pass", "ok", "failed", "TTFT\nmean", "TTFT\np50", "TTFT\np99", "E2E\nmean",
	"output\ntok/s", "cache\nhit rate",
};

/* Cells of row r of the per-(engine, pass) table; each cell is cells[i][64]. */
static void row_cells(const struct kvr_test_view *tv, const struct kvr_row *r, char cells[][64])
{
	snprintf(cells[0], 64, "%.63s", r->engine);
	pass_label(cells[1], 64, r->pass, tv->test->max_pass);
	snprintf(cells[2], 64, "%zu", r->ok);
	snprintf(cells[3], 64, "%zu", r->failed);
	fmt_ttft(cells[4], 64, r->ttft_mean, tv->ttft_unit);
	fmt_ttft(cells[5], 64, r->ttft_p50, tv->ttft_unit);
	fmt_ttft(cells[6], 64, r->ttft_p99, tv->ttft_unit);
	fmt_num(cells[7], 64, r->e2e_mean, 3, "");
	fmt_num(cells[8], 64, r->tput, 1, "");
	fmt_num(cells[9], 64, 100 * r->hit_rate, 1, " %");
}

/* ---- PDF ---- */

#define A4_W 595.28
#define A4_H 841.89
#define MARGIN 42.0
#define CONTENT_W (A4_W - 2 * MARGIN)

struct pdf {
	cairo_t *cr;
	double y;
	int page;
	const char *run_id;
};

static void pfont(struct pdf *p, double size, bool bold)
{
	cairo_select_font_face(p->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
			       bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(p->cr, size);
}

static double pwidth(struct pdf *p, const char *s)
{
	cairo_text_extents_t e;
	cairo_text_extents(p->cr, s, &e);
	return e.x_advance;
}

/* Shows s (cleaned, cut with an ellipsis to width) at x on baseline y. */
static void ptext(struct pdf *p, double x, double y, const char *s, double width)
{
	char *c = kvr_text_clean(s, 400, false);
	size_t l = strlen(c);

	if (width > 0 && pwidth(p, c) > width) {
		char *t = xmalloc(l + 4);
		while (l > 0) {
			l--;
			while (l > 0 && ((unsigned char)c[l] & 0xc0) == 0x80)
				l--;
			memcpy(t, c, l);
			memcpy(t + l, "\xe2\x80\xa6", 4);
			if (pwidth(p, t) <= width)
				break;
		}
		free(c);
		c = t;
	}
	cairo_move_to(p->cr, x, y);
	cairo_show_text(p->cr, c);
	free(c);
}

static void pfooter(struct pdf *p)
{
	char buf[256];
	pfont(p, 8, false);
	cairo_set_source_rgb(p->cr, 0.45, 0.45, 0.45);
	snprintf(buf, sizeof(buf), "kvbench report \xc2\xb7 %.120s", p->run_id);
	ptext(p, MARGIN, A4_H - 22, buf, CONTENT_W - 60);
	snprintf(buf, sizeof(buf), "page %d", p->page);
	ptext(p, A4_W - MARGIN - pwidth(p, buf), A4_H - 22, buf, 0);
}

static void pnew_page(struct pdf *p)
{
	pfooter(p);
	cairo_show_page(p->cr);
	p->page++;
	p->y = MARGIN;
}

static void pheading(struct pdf *p, const char *s, double size)
{
	pfont(p, size, true);
	cairo_set_source_rgb(p->cr, 0.1, 0.1, 0.1);
	p->y += size;
	ptext(p, MARGIN, p->y, s, CONTENT_W);
	p->y += size * 0.6;
}

static void ptable(struct pdf *p, size_t ncols, const char *const *head, const double *frac,
		   size_t nrows, void (*cell)(const void *ctx, size_t r, size_t c, char *buf,
						size_t len), const void *ctx)
{
	const double rh = 14.5;
	char buf[512];

	for (size_t r = 0; r <= nrows; r++) {
		double x = MARGIN;
		if (p->y + rh > A4_H - MARGIN - 20)
			pnew_page(p);   /* the header is repeated on the new page below */
		if (r == 0 || p->y == MARGIN) {
			double hh = rh;
			pfont(p, 8.5, true);
			cairo_set_source_rgb(p->cr, 0.1, 0.1, 0.1);
			for (size_t c = 0; c < ncols; c++) {
				const char *nl = strchr(head[c], '\n');
				if (nl) {
					char *first = xstrndup(head[c], (size_t)(nl - head[c]));
					ptext(p, x + 2, p->y + 10, first, frac[c] * CONTENT_W - 4);
					ptext(p, x + 2, p->y + 21, nl + 1, frac[c] * CONTENT_W - 4);
					free(first);
					hh = rh + 11;
				} else {
					ptext(p, x + 2, p->y + 10, head[c], frac[c] * CONTENT_W - 4);
				}
				x += frac[c] * CONTENT_W;
			}
			p->y += hh;
			cairo_set_source_rgb(p->cr, 0.3, 0.3, 0.3);
			cairo_set_line_width(p->cr, 0.8);
			cairo_move_to(p->cr, MARGIN, p->y - 2);
			cairo_line_to(p->cr, MARGIN + CONTENT_W, p->y - 2);
			cairo_stroke(p->cr);
			if (r == 0)
				continue;
			x = MARGIN;
		}
		pfont(p, 8.5, false);
		for (size_t c = 0; c < ncols; c++) {
			cell(ctx, r - 1, c, buf, sizeof(buf));
			if (!strcmp(buf, "FAIL"))
				cairo_set_source_rgb(p->cr, 0.78, 0.30, 0.0);
			else if (!strcmp(buf, "PASS"))
				cairo_set_source_rgb(p->cr, 0.0, 0.40, 0.65);
			else
				cairo_set_source_rgb(p->cr, 0.1, 0.1, 0.1);
			ptext(p, x + 2, p->y + 10, buf, frac[c] * CONTENT_W - 4);
			x += frac[c] * CONTENT_W;
		}
		p->y += rh;
		cairo_set_source_rgb(p->cr, 0.88, 0.88, 0.88);
		cairo_set_line_width(p->cr, 0.5);
		cairo_move_to(p->cr, MARGIN, p->y - 2);
		cairo_line_to(p->cr, MARGIN + CONTENT_W, p->y - 2);
		cairo_stroke(p->cr);
	}
	p->y += 10;
}

static void rows_cell(const void *ctx, size_t r, size_t c, char *buf, size_t len)
{
	const struct kvr_test_view *tv = ctx;
	char cells[NCOLS_ROWS][64];
	row_cells(tv, &tv->rows[r], cells);
	snprintf(buf, len, "%s", cells[c]);
}

static void checks_cell(const void *ctx, size_t r, size_t c, char *buf, size_t len)
{
	const struct kvr_check *k = &((const struct kvr_test *)ctx)->checks[r];
	switch (c) {
	case 0: snprintf(buf, len, "%.200s", k->name); break;
	case 1: fmt_num(buf, len, k->figure, -1, ""); break;
	case 2: fmt_num(buf, len, k->threshold, -1, ""); break;
	case 3: snprintf(buf, len, "%.60s", k->unit); break;
	case 4: snprintf(buf, len, "%s", check_result(k)); break;
	default: snprintf(buf, len, "%.400s", k->reason); break;
	}
}

static void tests_cell(const void *ctx, size_t r, size_t c, char *buf, size_t len)
{
	const struct kvr_test *t = &((const struct kvr_run *)ctx)->tests[r];
	size_t passed = 0;
	for (size_t i = 0; i < t->nchecks; i++)
		passed += t->checks[i].passed == 1;
	switch (c) {
	case 0: snprintf(buf, len, "%.200s", t->name); break;
	case 1: snprintf(buf, len, "%.60s", *t->status ? t->status : "\xe2\x80\x94"); break;
	case 2: snprintf(buf, len, "%zu / %zu", passed, t->nchecks); break;
	default: snprintf(buf, len, "%zu", t->nreqs); break;
	}
}

/* ---- the detection matrix (matrix.csv, docs/RESULTS.md) ---- */

/* Columns of the matrix table: PDF shows those with a width. */
static const struct {
	const char *head;   /* table heading */
	const char *col;    /* matrix.csv column, or NULL for "detected_runs / runs" */
	double pdf_frac;    /* 0: HTML only */
	bool num;
} mx_cols[] = {
	{ "test", "test", 0.15, false },
	{ "fault", "fault", 0.15, false },
	{ "class", "class", 0.06, false },
	{ "workload", "workload", 0, false },
	{ "reqs", "requests", 0.06, true },
	{ "expect", "expect", 0.08, false },
	{ "detected\nruns", NULL, 0.08, true },
	{ "detecting checks", "detecting_checks", 0.22, false },
	{ "first\nrequest", "first_detected_request", 0.08, true },
	{ "verdict", "verdict", 0.12, false },
	{ "note", "note", 0, false },
};

static void matrix_cell_all(const struct kvr_csv *m, size_t r, size_t c, char *buf, size_t len)
{
	if (!mx_cols[c].col) {
		snprintf(buf, len, "%.20s / %.20s", kvr_csv_cell(m, r, kvr_csv_col(m, "detected_runs")),
			 kvr_csv_cell(m, r, kvr_csv_col(m, "runs")));
		return;
	}
	snprintf(buf, len, "%.400s", kvr_csv_cell(m, r, kvr_csv_col(m, mx_cols[c].col)));
}

/* PDF columns: the ones with a width, in order. */
static size_t mx_pdf_col(size_t c)
{
	for (size_t i = 0, k = 0; i < KV_ARRAY_SIZE(mx_cols); i++)
		if (mx_cols[i].pdf_frac > 0 && k++ == c)
			return i;
	return 0;
}

static void matrix_cell_pdf(const void *ctx, size_t r, size_t c, char *buf, size_t len)
{
	matrix_cell_all(ctx, r, mx_pdf_col(c), buf, len);
}

static void pdf_matrix(struct pdf *p, const struct kvr_csv *m)
{
	const char *head[KV_ARRAY_SIZE(mx_cols)];
	double frac[KV_ARRAY_SIZE(mx_cols)];
	size_t n = 0, det = 0, missed = 0, fa = 0, err = 0;
	char buf[256];

	for (size_t i = 0; i < KV_ARRAY_SIZE(mx_cols); i++)
		if (mx_cols[i].pdf_frac > 0) {
			head[n] = mx_cols[i].head;
			frac[n++] = mx_cols[i].pdf_frac;
		}
	for (size_t r = 0; r < m->nrows; r++) {
		const char *v = kvr_csv_cell(m, r, kvr_csv_col(m, "verdict"));
		det += !strcmp(v, "detected");
		missed += !strcmp(v, "missed");
		fa += !strcmp(v, "false-alarm");
		err += !strcmp(v, "error");
	}
	pnew_page(p);
	pheading(p, "Detection matrix", 14);
	pfont(p, 10, false);
	cairo_set_source_rgb(p->cr, 0.1, 0.1, 0.1);
	snprintf(buf, sizeof(buf), "%zu rows: %zu detected, %zu missed, %zu false alarms, %zu errors "
		 "(matrix.csv)", m->nrows, det, missed, fa, err);
	p->y += 12;
	ptext(p, MARGIN, p->y, buf, CONTENT_W);
	p->y += 8;
	ptable(p, n, head, frac, m->nrows, matrix_cell_pdf, m);
}

static void h_esc(struct kv_buf *b, const char *s, size_t max);

static void h_matrix(struct kv_buf *b, const struct kvr_csv *m)
{
	kv_buf_puts(b, "<section id=\"matrix\"><h2>Detection matrix</h2>\n<table id=\"matrix-table\">"
		    "<thead><tr>");
	for (size_t c = 0; c < KV_ARRAY_SIZE(mx_cols); c++) {
		char *h = xstrdup(mx_cols[c].head);
		for (char *q = h; *q; q++)
			if (*q == '\n')
				*q = ' ';
		kv_buf_puts(b, "<th>");
		h_esc(b, h, 60);
		kv_buf_puts(b, "</th>");
		free(h);
	}
	kv_buf_puts(b, "</tr></thead><tbody>\n");
	for (size_t r = 0; r < m->nrows; r++) {
		const char *v = kvr_csv_cell(m, r, kvr_csv_col(m, "verdict"));
		bool good = !strcmp(v, "detected") || !strcmp(v, "pass");
		kv_buf_puts(b, "<tr>");
		for (size_t c = 0; c < KV_ARRAY_SIZE(mx_cols); c++) {
			char cell[512];
			matrix_cell_all(m, r, c, cell, sizeof(cell));
			kv_buf_printf(b, "<td class=\"%s\">", c == 9 ? (good ? "PASS" : "FAIL")
							     : mx_cols[c].num ? "num" : "txt");
			h_esc(b, cell, 500);
			kv_buf_puts(b, "</td>");
		}
		kv_buf_puts(b, "</tr>\n");
	}
	kv_buf_puts(b, "</tbody></table></section>\n");
}

/* Wraps s into lines of at most width; draws at most maxl lines from y. */
static double pwrapped(struct pdf *p, double x, double y, const char *s, double width, int maxl)
{
	char *c = kvr_text_clean(s, 2000, false);
	const char *q = c;
	int lines = 0;

	while (*q && lines < maxl) {
		size_t n = strlen(q), fit = 0, i = 0;
		while (i < n) {
			size_t j = i + 1;
			char tmp[512];
			while (j < n && ((unsigned char)q[j] & 0xc0) == 0x80)
				j++;
			if (j >= sizeof(tmp))
				break;
			memcpy(tmp, q, j);
			tmp[j] = '\0';
			if (pwidth(p, tmp) > width)
				break;
			fit = j;
			i = j;
		}
		if (fit == 0)
			fit = KV_MIN(n, (size_t)1);
		/* Prefer a break at a space. */
		if (fit < n) {
			size_t sp = fit;
			while (sp > 0 && q[sp] != ' ')
				sp--;
			if (sp > fit / 2)
				fit = sp + 1;
		}
		char *line = xstrndup(q, fit);
		if (lines == maxl - 1 && fit < n) {
			ptext(p, x, y, line, width - pwidth(p, "\xe2\x80\xa6"));
			ptext(p, x + pwidth(p, line), y, "\xe2\x80\xa6", 0);
		} else {
			ptext(p, x, y, line, width);
		}
		free(line);
		q += fit;
		y += 11;
		lines++;
	}
	free(c);
	return y;
}

static void pdf_title(struct pdf *p, const struct kvr_view *v)
{
	const struct kvr_run *run = v->run;
	const char *verdict = *run->verdict ? run->verdict : "no verdict";
	bool pass = !strcmp(verdict, "PASS"), fail = !strcmp(verdict, "FAIL");
	static const double tfrac[] = { 0.52, 0.16, 0.16, 0.16 };
	static const char *const thead[] = { "test", "result", "checks passed", "requests" };
	char buf[512];

	p->y = MARGIN + 20;
	pheading(p, "kvbench report", 26);
	p->y += 14;
	if (pass)
		cairo_set_source_rgb(p->cr, 0.0, 0.447, 0.698);
	else if (fail)
		cairo_set_source_rgb(p->cr, 0.835, 0.369, 0.0);
	else
		cairo_set_source_rgb(p->cr, 0.4, 0.4, 0.4);
	pfont(p, 28, true);
	{
		double w = fmin(CONTENT_W, fmax(180, pwidth(p, verdict) + 28));
		cairo_rectangle(p->cr, MARGIN, p->y, w, 52);
		cairo_fill(p->cr);
		cairo_set_source_rgb(p->cr, 1, 1, 1);
		ptext(p, MARGIN + 14, p->y + 37, verdict, w - 28);
	}
	p->y += 80;
	pfont(p, 11, false);
	cairo_set_source_rgb(p->cr, 0.1, 0.1, 0.1);
	snprintf(buf, sizeof(buf), "run id: %.200s", run->run_id);
	ptext(p, MARGIN, p->y, buf, CONTENT_W);
	p->y += 16;
	if (*run->suite) {
		snprintf(buf, sizeof(buf), "suite: %.200s", run->suite);
		ptext(p, MARGIN, p->y, buf, CONTENT_W);
		p->y += 16;
	}
	if (*run->started) {
		snprintf(buf, sizeof(buf), "started: %.100s", run->started);
		ptext(p, MARGIN, p->y, buf, CONTENT_W);
		p->y += 16;
	}
	if (isfinite(run->duration_s)) {
		snprintf(buf, sizeof(buf), "duration: %.1f s", run->duration_s);
		ptext(p, MARGIN, p->y, buf, CONTENT_W);
		p->y += 16;
	}
	p->y += 16;
	pheading(p, "Tests", 14);
	ptable(p, 4, thead, tfrac, run->ntests, tests_cell, run);
	/* Failed checks, so the first page says what went wrong. */
	bool any = false;
	for (size_t i = 0; i < run->ntests; i++) {
		const struct kvr_test *t = &run->tests[i];
		/* a test that passed with failing checks is a detection-matrix row
		   whose fault was detected (expect: detect): nothing went wrong */
		if (t->status && !strcmp(t->status, "PASS"))
			continue;
		for (size_t c = 0; c < t->nchecks; c++) {
			const struct kvr_check *k = &t->checks[c];
			char fig[32], thr[32];
			if (k->passed != 0)
				continue;
			if (!any)
				pheading(p, "Failed checks", 14);
			any = true;
			if (p->y > A4_H - MARGIN - 40)
				break;
			fmt_num(fig, sizeof(fig), k->figure, -1, "");
			fmt_num(thr, sizeof(thr), k->threshold, -1, "");
			pfont(p, 10, false);
			cairo_set_source_rgb(p->cr, 0.1, 0.1, 0.1);
			snprintf(buf, sizeof(buf), "%.100s / %.100s: %s (threshold %s) %.200s",
				 t->name, k->name, fig, thr, k->reason);
			p->y += 13;
			ptext(p, MARGIN, p->y, buf, CONTENT_W);
		}
	}
}

static void pdf_test(struct pdf *p, const struct kvr_test_view *tv)
{
	const struct kvr_test *t = tv->test;
	static const double rfrac[NCOLS_ROWS] = { 0.22, 0.10, 0.05, 0.07, 0.095, 0.09, 0.09,
						   0.09, 0.09, 0.105 };
	static const double cfrac[] = { 0.22, 0.11, 0.11, 0.10, 0.07, 0.39 };
	static const char *const chead[] = { "check", "figure", "threshold", "unit", "result",
					     "reason" };
	const char *rhead[NCOLS_ROWS];
	char ttft_head[1], buf[512];
	size_t drawn = 0;

	pnew_page(p);
	snprintf(buf, sizeof(buf), "Test %.200s \xe2\x80\x94 %.40s", t->name,
		 *t->status ? t->status : "no result");
	pheading(p, buf, 18);
	p->y += 6;
	for (size_t i = 0; i < NCOLS_ROWS; i++)
		rhead[i] = row_head[i];
	(void)ttft_head;
	snprintf(buf, sizeof(buf), "Per engine and pass (TTFT in %s, E2E in s)", tv->ttft_unit);
	pheading(p, buf, 12);
	if (tv->nrows)
		ptable(p, NCOLS_ROWS, rhead, rfrac, tv->nrows, rows_cell, tv);
	pheading(p, "Checks", 12);
	if (t->nchecks) {
		ptable(p, 6, chead, cfrac, t->nchecks, checks_cell, t);
	} else {
		pfont(p, 10, false);
		p->y += 12;
		ptext(p, MARGIN, p->y, "no checks", 0);
		p->y += 12;
	}
	for (size_t k = 0; k < tv->nslots; k++) {
		if (tv->slots[k].has_data || !tv->slots[k].note_if_empty)
			continue;
		pfont(p, 10, false);
		cairo_set_source_rgb(p->cr, 0.35, 0.35, 0.35);
		p->y += 13;
		ptext(p, MARGIN, p->y, tv->slots[k].nodata, CONTENT_W);
	}
	/* Charts: two per page. */
	for (size_t k = 0; k < tv->nslots; k++) {
		const double scale = CONTENT_W / KVR_CHART_W, h = KVR_CHART_H * scale;
		if (!tv->slots[k].has_data)
			continue;
		if (drawn % 2 == 0)
			pnew_page(p);
		cairo_save(p->cr);
		cairo_translate(p->cr, MARGIN, MARGIN + (double)(drawn % 2) * (h + 40));
		cairo_scale(p->cr, scale, scale);
		kvr_chart_draw(&tv->slots[k].chart, p->cr);
		cairo_restore(p->cr);
		drawn++;
	}
	if (t->ndivs == 0)
		return;
	pnew_page(p);
	snprintf(buf, sizeof(buf), "%.200s: first differing outputs", t->name);
	pheading(p, buf, 14);
	for (size_t d = 0; d < t->ndivs; d++) {
		const struct kvr_div *dv = &t->divs[d];
		double half = CONTENT_W / 2 - 6, ya, yb;
		if (p->y > A4_H - MARGIN - 160)
			pnew_page(p);
		pfont(p, 10, true);
		cairo_set_source_rgb(p->cr, 0.1, 0.1, 0.1);
		if (isfinite(dv->index))
			snprintf(buf, sizeof(buf), "%.200s (first difference at %.0f)", dv->key,
				 dv->index);
		else
			snprintf(buf, sizeof(buf), "%.200s", dv->key);
		p->y += 16;
		ptext(p, MARGIN, p->y, buf, CONTENT_W);
		p->y += 13;
		pfont(p, 9, true);
		ptext(p, MARGIN, p->y, dv->a_label, half);
		ptext(p, MARGIN + half + 12, p->y, dv->b_label, half);
		p->y += 12;
		pfont(p, 8.5, false);
		ya = pwrapped(p, MARGIN, p->y, dv->a_text, half, 8);
		yb = pwrapped(p, MARGIN + half + 12, p->y, dv->b_text, half, 8);
		p->y = fmax(ya, yb) + 4;
	}
}

static int write_pdf(const struct kvr_view *v, const char *path)
{
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	cairo_surface_t *s = cairo_pdf_surface_create(tmp, A4_W, A4_H);
	struct pdf p = { .cr = cairo_create(s), .page = 1, .run_id = v->run->run_id };
	int rc = -1;

	cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_TITLE, "kvbench report");
	cairo_pdf_surface_set_metadata(s, CAIRO_PDF_METADATA_CREATOR, "kvbench " KV_VERSION);
	pdf_title(&p, v);
	if (v->matrix)
		pdf_matrix(&p, v->matrix);
	for (size_t i = 0; i < v->ntests; i++)
		pdf_test(&p, &v->tests[i]);
	pfooter(&p);
	cairo_show_page(p.cr);
	if (cairo_status(p.cr) != CAIRO_STATUS_SUCCESS) {
		kv_error("%s: drawing failed: %s", path, cairo_status_to_string(cairo_status(p.cr)));
		goto out;
	}
	cairo_destroy(p.cr);
	p.cr = NULL;
	cairo_surface_finish(s);
	if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) {
		kv_error("%s: %s", path, cairo_status_to_string(cairo_surface_status(s)));
		goto out;
	}
	if (rename(tmp, path) < 0) {
		kv_error("%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (p.cr)
		cairo_destroy(p.cr);
	cairo_surface_destroy(s);
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

/* ---- HTML ---- */

/* Appends s, cleaned to UTF-8 and escaped for text and attribute values. */
static void h_esc(struct kv_buf *b, const char *s, size_t max)
{
	char *c = kvr_text_clean(s, max, true);

	for (const char *q = c; *q; q++) {
		switch (*q) {
		case '&': kv_buf_puts(b, "&amp;"); break;
		case '<': kv_buf_puts(b, "&lt;"); break;
		case '>': kv_buf_puts(b, "&gt;"); break;
		case '"': kv_buf_puts(b, "&quot;"); break;
		case '\'': kv_buf_puts(b, "&#39;"); break;
		default: kv_buf_putc(b, *q); break;
		}
	}
	free(c);
}

static const char css[] =
	"body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;"
	"color:#1a1a1a;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
	"h1{font-size:1.8em;margin-bottom:.2em}h2{margin-top:2em;border-bottom:2px solid #ddd;"
	"padding-bottom:.2em}h3{margin-top:1.4em}"
	".verdict{display:inline-block;font-size:1.6em;font-weight:bold;color:#fff;"
	"padding:.2em .8em;border-radius:4px;background:#666}"
	".verdict.pass{background:#0072B2}.verdict.fail{background:#D55E00}"
	"table{border-collapse:collapse;margin:.6em 0;font-size:.92em}"
	"th,td{padding:.25em .7em;border-bottom:1px solid #e3e3e3;text-align:left;"
	"vertical-align:top}th{border-bottom:2px solid #888}"
	"td.num{text-align:right;font-variant-numeric:tabular-nums}"
	"td.FAIL{color:#D55E00;font-weight:bold}td.PASS{color:#0072B2;font-weight:bold}"
	"figure{margin:1.2em 0}figure svg{width:100%;height:auto;max-width:900px;display:block}"
	"figcaption{color:#555;font-size:.9em}.nodata{color:#777;font-style:italic}"
	"table.div{width:100%}table.div td{width:50%;white-space:pre-wrap;word-break:break-word;"
	"font-family:ui-monospace,'DejaVu Sans Mono',monospace;font-size:.85em}"
	"mark{background:#fbd8bd;color:inherit}table.stats td{white-space:nowrap}"
	"dl{display:grid;grid-template-columns:max-content auto;gap:.1em 1em}dt{color:#555}"
	"dd{margin:0}";

static void h_rows(struct kv_buf *b, const struct kvr_test_view *tv)
{
	kv_buf_printf(b, "<h3>Per engine and pass</h3>\n<table class=\"stats\" id=\"%s-groups\"><thead><tr>",
		      tv->slug);
	for (size_t i = 0; i < NCOLS_ROWS; i++) {
		kv_buf_puts(b, "<th>");
		h_esc(b, row_head[i], 40);
		if (i >= 4 && i <= 7)
			kv_buf_printf(b, " (%s)", i == 7 ? "s" : tv->ttft_unit);
		kv_buf_puts(b, "</th>");
	}
	kv_buf_puts(b, "</tr></thead><tbody>\n");
	for (size_t r = 0; r < tv->nrows; r++) {
		char cells[NCOLS_ROWS][64];
		row_cells(tv, &tv->rows[r], cells);
		kv_buf_puts(b, "<tr>");
		for (size_t i = 0; i < NCOLS_ROWS; i++) {
			kv_buf_puts(b, i >= 2 ? "<td class=\"num\">" : "<td>");
			h_esc(b, cells[i], 200);
			kv_buf_puts(b, "</td>");
		}
		kv_buf_puts(b, "</tr>\n");
	}
	kv_buf_puts(b, "</tbody></table>\n");
}

static void h_checks(struct kv_buf *b, const struct kvr_test_view *tv)
{
	const struct kvr_test *t = tv->test;

	kv_buf_printf(b, "<h3>Checks</h3>\n");
	if (t->nchecks == 0) {
		kv_buf_printf(b, "<p class=\"nodata\" id=\"%s-checks\">no checks</p>\n", tv->slug);
		return;
	}
	kv_buf_printf(b, "<table id=\"%s-checks\"><thead><tr><th>check</th><th>figure</th>"
		      "<th>threshold</th><th>unit</th><th>result</th><th>reason</th></tr>"
		      "</thead><tbody>\n", tv->slug);
	for (size_t i = 0; i < t->nchecks; i++) {
		char cell[512];
		kv_buf_puts(b, "<tr>");
		for (size_t c = 0; c < 6; c++) {
			checks_cell(t, i, c, cell, sizeof(cell));
			if (c == 4)
				kv_buf_printf(b, "<td class=\"%s\">", check_result(&t->checks[i]));
			else
				kv_buf_puts(b, c == 1 || c == 2 ? "<td class=\"num\">" : "<td>");
			h_esc(b, cell, 600);
			kv_buf_puts(b, "</td>");
		}
		kv_buf_puts(b, "</tr>\n");
	}
	kv_buf_puts(b, "</tbody></table>\n");
}

/* Text s, marked from the first word where it departs from other. */
static void h_diff_text(struct kv_buf *b, const char *s, const char *other)
{
	char *cs = kvr_text_clean(s, 4096, true), *co = kvr_text_clean(other, 4096, true);
	size_t n = 0;
	char *head;

	while (cs[n] && cs[n] == co[n])
		n++;
	/* Mark from the start of the differing word. */
	while (n > 0 && cs[n - 1] != ' ' && cs[n - 1] != '\n')
		n--;
	head = xstrndup(cs, n);
	h_esc(b, head, 4096);
	if (cs[n]) {
		kv_buf_puts(b, "<mark>");
		h_esc(b, cs + n, 4096);
		kv_buf_puts(b, "</mark>");
	}
	free(head);
	free(cs);
	free(co);
}

static void h_divs(struct kv_buf *b, const struct kvr_test_view *tv)
{
	const struct kvr_test *t = tv->test;

	if (t->ndivs == 0)
		return;
	kv_buf_printf(b, "<h3>First differing outputs</h3>\n<table class=\"div\" "
		      "id=\"%s-divergences\"><tbody>\n", tv->slug);
	for (size_t d = 0; d < t->ndivs; d++) {
		const struct kvr_div *dv = &t->divs[d];
		kv_buf_puts(b, "<tr><th colspan=\"2\">");
		h_esc(b, dv->key, 200);
		if (isfinite(dv->index))
			kv_buf_printf(b, " (first difference at %.0f)", dv->index);
		kv_buf_puts(b, "</th></tr>\n<tr><th>");
		h_esc(b, dv->a_label, 200);
		kv_buf_puts(b, "</th><th>");
		h_esc(b, dv->b_label, 200);
		kv_buf_puts(b, "</th></tr>\n<tr><td>");
		h_diff_text(b, dv->a_text, dv->b_text);
		kv_buf_puts(b, "</td><td>");
		h_diff_text(b, dv->b_text, dv->a_text);
		kv_buf_puts(b, "</td></tr>\n");
	}
	kv_buf_puts(b, "</tbody></table>\n");
}

static int write_html(const struct kvr_view *v, const char *path)
{
	const struct kvr_run *run = v->run;
	struct kv_buf b = KV_BUF_INIT(HTML_MAX);
	const char *verdict = *run->verdict ? run->verdict : "no verdict";
	int rc = -1;

	kv_buf_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
		    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
		    "<link rel=\"icon\" href=\"data:,\">\n<title>kvbench report \xe2\x80\x94 ");
	h_esc(&b, run->run_id, 200);
	kv_buf_printf(&b, "</title>\n<style>%s</style></head><body>\n", css);
	kv_buf_puts(&b, "<header id=\"summary\"><h1>kvbench report</h1>\n<p class=\"verdict ");
	kv_buf_puts(&b, !strcmp(verdict, "PASS") ? "pass" : !strcmp(verdict, "FAIL") ? "fail" :
		    "other");
	kv_buf_puts(&b, "\" id=\"verdict\">");
	h_esc(&b, verdict, 40);
	kv_buf_puts(&b, "</p>\n<dl><dt>run id</dt><dd>");
	h_esc(&b, run->run_id, 200);
	kv_buf_puts(&b, "</dd>");
	if (*run->suite) {
		kv_buf_puts(&b, "<dt>suite</dt><dd>");
		h_esc(&b, run->suite, 200);
		kv_buf_puts(&b, "</dd>");
	}
	if (*run->started) {
		kv_buf_puts(&b, "<dt>started</dt><dd>");
		h_esc(&b, run->started, 100);
		kv_buf_puts(&b, "</dd>");
	}
	if (isfinite(run->duration_s))
		kv_buf_printf(&b, "<dt>duration</dt><dd>%.1f s</dd>", run->duration_s);
	kv_buf_puts(&b, "</dl></header>\n<nav><h2>Tests</h2>\n<table id=\"tests\"><thead><tr>"
		    "<th>test</th><th>result</th><th>checks passed</th><th>requests</th></tr>"
		    "</thead><tbody>\n");
	for (size_t i = 0; i < v->ntests; i++) {
		char cell[256];
		kv_buf_printf(&b, "<tr><td><a href=\"#test-%s\">", v->tests[i].slug);
		h_esc(&b, run->tests[i].name, 200);
		kv_buf_puts(&b, "</a></td>");
		for (size_t c = 1; c < 4; c++) {
			tests_cell(run, i, c, cell, sizeof(cell));
			kv_buf_printf(&b, "<td class=\"%s\">", c == 1 && !strcmp(cell, "PASS") ?
				      "PASS" : c == 1 && !strcmp(cell, "FAIL") ? "FAIL" : "num");
			h_esc(&b, cell, 200);
			kv_buf_puts(&b, "</td>");
		}
		kv_buf_puts(&b, "</tr>\n");
	}
	kv_buf_puts(&b, "</tbody></table></nav>\n");
	if (v->matrix)
		h_matrix(&b, v->matrix);

	for (size_t i = 0; i < v->ntests; i++) {
		const struct kvr_test_view *tv = &v->tests[i];
		kv_buf_printf(&b, "<section id=\"test-%s\"><h2>Test ", tv->slug);
		h_esc(&b, tv->test->name, 200);
		kv_buf_puts(&b, " \xe2\x80\x94 ");
		h_esc(&b, *tv->test->status ? tv->test->status : "no result", 40);
		kv_buf_puts(&b, "</h2>\n");
		h_rows(&b, tv);
		h_checks(&b, tv);
		for (size_t k = 0; k < tv->nslots; k++) {
			const struct kvr_slot *s = &tv->slots[k];
			if (!s->has_data) {
				if (s->note_if_empty) {
					kv_buf_printf(&b, "<p class=\"nodata\" id=\"chart-%s\">",
						      s->chart.id);
					h_esc(&b, s->nodata, 200);
					kv_buf_puts(&b, "</p>\n");
				}
				continue;
			}
			char *pfx = xasprintf("%s-", s->chart.id);
			kv_buf_printf(&b, "<figure id=\"chart-%s\">\n", s->chart.id);
			if (kvr_chart_svg(&s->chart, &b, pfx) < 0) {
				free(pfx);
				kv_error("chart %s: could not draw the SVG", s->chart.id);
				goto out;
			}
			free(pfx);
			kv_buf_puts(&b, "<figcaption>");
			h_esc(&b, s->chart.title, 200);
			kv_buf_printf(&b, " (charts/%s.png)</figcaption></figure>\n", s->chart.id);
		}
		h_divs(&b, tv);
		kv_buf_puts(&b, "</section>\n");
	}
	if (kv_buf_puts(&b, "<footer><p>kvbench " KV_VERSION "</p></footer>\n</body></html>\n") <
	    0) {
		kv_error("%s: the report is larger than %lu MiB", path, HTML_MAX >> 20);
		goto out;
	}
	if (kv_write_file_atomic(path, b.data, b.len) < 0) {
		kv_error("%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	kv_buf_release(&b);
	return rc;
}

/* ---- entry point ---- */

/*
 * Drops cairo's and fontconfig's font caches: the report is a one-off, and
 * leak checkers should see a clean exit. No cairo object of ours is alive
 * when this runs. fontconfig is loaded by cairo; it is reached by name so
 * that the build needs no link flag of its own.
 */
static void release_font_caches(void)
{
	void (*fc_fini)(void);
	void *sym;

	cairo_debug_reset_static_data();
	sym = dlsym(RTLD_DEFAULT, "FcFini");
	if (sym) {
		memcpy(&fc_fini, &sym, sizeof(fc_fini));
		fc_fini();
	}
}

static bool ends_with(const char *s, const char *suf)
{
	size_t a = strlen(s), b = strlen(suf);
	return a >= b && !strcmp(s + a - b, suf);
}

int kvb_report_write(const char *results_dir, const char *out)
{
	struct kvr_run run;
	struct kvr_view view;
	struct kvr_csv matrix = { 0 };
	char *pdf = NULL, *html = NULL, *charts = NULL, *dir = NULL;
	struct stat sb;
	int rc = 3;

	if (kvr_run_load(&run, results_dir) < 0)
		return 2;
	if (!out || (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode)) || ends_with(out, "/")) {
		dir = xstrdup(out ? out : results_dir);
		pdf = xasprintf("%s/report.pdf", dir);
		html = xasprintf("%s/report.html", dir);
	} else {
		size_t stem = strlen(out);
		const char *slash = strrchr(out, '/');
		if (ends_with(out, ".pdf") || ends_with(out, ".html"))
			stem -= ends_with(out, ".pdf") ? 4 : 5;
		pdf = xasprintf("%.*s.pdf", (int)stem, out);
		html = xasprintf("%.*s.html", (int)stem, out);
		dir = slash ? xstrndup(out, (size_t)(slash - out)) : xstrdup(".");
	}
	charts = xasprintf("%s/charts", dir);
	if (kv_mkdir_p(charts, 0755) < 0) {
		kv_error("%s: %s", charts, strerror(errno));
		goto out;
	}
	kvr_view_build(&view, &run);
	{
		/* a suite run with fault: / expect: tests has a matrix.csv */
		char *mp = xasprintf("%s/matrix.csv", results_dir);
		if (access(mp, F_OK) == 0) {
			char err[512];
			view.matrix = &matrix;
			if (kvr_csv_load(&matrix, mp, err, sizeof(err)) < 0 ||
			    kvr_csv_col(&matrix, "verdict") < 0 || kvr_csv_col(&matrix, "test") < 0) {
				if (view.matrix && matrix.ncols)
					snprintf(err, sizeof(err), "%s: no test/verdict column", mp);
				kv_error("%s", err);
				free(mp);
				rc = 2;
				goto out_view;
			}
		}
		free(mp);
	}
	for (size_t i = 0; i < view.ntests; i++) {
		for (size_t k = 0; k < view.tests[i].nslots; k++) {
			const struct kvr_slot *s = &view.tests[i].slots[k];
			char *png;
			int r;
			if (!s->has_data)
				continue;
			png = xasprintf("%s/%s.png", charts, s->chart.id);
			r = kvr_chart_write_png(&s->chart, png, PNG_W, PNG_H);
			free(png);
			if (r < 0)
				goto out_view;
		}
	}
	if (write_pdf(&view, pdf) < 0 || write_html(&view, html) < 0)
		goto out_view;
	kv_info("report: %s, %s", pdf, html);
	rc = 0;
out_view:
	kvr_view_release(&view);
	kvr_csv_release(&matrix);
out:
	kvr_run_release(&run);
	free(pdf);
	free(html);
	free(charts);
	free(dir);
	release_font_caches();
	return rc;
}
