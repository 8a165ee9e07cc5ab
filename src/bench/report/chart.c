/* chart.c: see chart.h. */
#include "report/chart.h"

#include <errno.h>
#include <math.h>

#include <cairo-svg.h>

#include "common/util.h"
#include "report/data.h"
#include "common/banned.h"

#define FONT "sans-serif"
#define FS_TITLE 17.0
#define FS_LABEL 14.0
#define FS_TICK 13.0
#define FS_LEGEND 13.0
#define MAX_LABEL 80

static const double palette[][3] = {
	{ 0x00 / 255.0, 0x72 / 255.0, 0xB2 / 255.0 },  /* blue */
	{ 0xE6 / 255.0, 0x9F / 255.0, 0x00 / 255.0 },  /* orange */
	{ 0x00 / 255.0, 0x9E / 255.0, 0x73 / 255.0 },  /* bluish green */
	{ 0xD5 / 255.0, 0x5E / 255.0, 0x00 / 255.0 },  /* vermillion */
	{ 0xCC / 255.0, 0x79 / 255.0, 0xA7 / 255.0 },  /* reddish purple */
	{ 0x56 / 255.0, 0xB4 / 255.0, 0xE9 / 255.0 },  /* sky blue */
	{ 0x00 / 255.0, 0x00 / 255.0, 0x00 / 255.0 },  /* black */
	{ 0xF0 / 255.0, 0xE4 / 255.0, 0x42 / 255.0 },  /* yellow */
};

void kvr_palette(int i, double *r, double *g, double *b)
{
	size_t k = (size_t)(i < 0 ? -i : i) % KV_ARRAY_SIZE(palette);
	*r = palette[k][0];
	*g = palette[k][1];
	*b = palette[k][2];
}

static void set_color(cairo_t *cr, int i)
{
	double r, g, b;
	kvr_palette(i, &r, &g, &b);
	cairo_set_source_rgb(cr, r, g, b);
}

/* 0 solid, 1 dashed, 2 dotted, 3 dash-dot (wraps). */
static void set_dash(cairo_t *cr, int dash)
{
	static const double dashed[] = { 7, 4 }, dotted[] = { 1.5, 3.5 },
			    dashdot[] = { 8, 3, 1.5, 3 };

	switch (dash % 4) {
	case 1:
		cairo_set_dash(cr, dashed, 2, 0);
		break;
	case 2:
		cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
		cairo_set_dash(cr, dotted, 2, 0);
		break;
	case 3:
		cairo_set_dash(cr, dashdot, 4, 0);
		break;
	default:
		cairo_set_dash(cr, NULL, 0, 0);
		break;
	}
}

static double nicenum(double x, bool round)
{
	double e = floor(log10(x)), f = x / pow(10, e), nf;

	if (round)
		nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
	else
		nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
	return nf * pow(10, e);
}

void kvr_nice_ticks(double lo, double hi, int want, double *tlo, double *thi, double *step)
{
	double range, d;

	if (!isfinite(lo) || !isfinite(hi)) {
		lo = 0;
		hi = 1;
	}
	if (hi < lo) {
		double t = lo;
		lo = hi;
		hi = t;
	}
	if (hi - lo < 1e-12 * KV_MAX(fabs(lo), fabs(hi)) || hi == lo) {
		double pad = lo == 0 ? 1 : fabs(lo) * 0.1;
		lo -= pad;
		hi += pad;
	}
	if (want < 2)
		want = 2;
	/* The step from the raw range (Heckbert first rounds the range, which gives
	 * fewer, coarser ticks than asked for). */
	range = hi - lo;
	d = nicenum(range / (want - 1), true);
	*tlo = floor(lo / d + 1e-9) * d;
	*thi = ceil(hi / d - 1e-9) * d;
	*step = d;
}

void kvr_tick_label(char *buf, size_t len, double v, double step)
{
	int dec = 0;
	double l = log10(step);

	if (l < 0)
		dec = (int)ceil(-l - 1e-9);
	if (dec > 9)
		dec = 9;
	if (fabs(v) < step * 1e-6)
		v = 0;
	if (fabs(v) >= 1e6 && dec == 0)
		snprintf(buf, len, "%.3g", v);
	else
		snprintf(buf, len, "%.*f", dec, v);
}

void kvr_chart_init(struct kvr_chart *c, enum kvr_chart_kind kind, const char *id,
		    const char *title, const char *xlabel, const char *ylabel)
{
	memset(c, 0, sizeof(*c));
	c->kind = kind;
	c->style = KVR_STYLE_POINTS;
	c->id = xstrdup(id);
	c->title = kvr_text_clean(title, 160, false);
	c->xlabel = kvr_text_clean(xlabel, 120, false);
	c->ylabel = kvr_text_clean(ylabel, 120, false);
	c->y_ref = NAN;
}

void kvr_chart_release(struct kvr_chart *c)
{
	free(c->id);
	free(c->title);
	free(c->xlabel);
	free(c->ylabel);
	free(c->caption);
	for (size_t i = 0; i < c->ncats; i++)
		free(c->cats[i]);
	free(c->cats);
	for (size_t i = 0; i < c->nseries; i++) {
		struct kvr_series *s = &c->series[i];
		free(s->label);
		free(s->x);
		free(s->y);
		free(s->lo);
		free(s->hi);
	}
	free(c->series);
	memset(c, 0, sizeof(*c));
}

struct kvr_series *kvr_chart_add_series(struct kvr_chart *c, const char *label, size_t n,
					int color, int dash)
{
	struct kvr_series *s;

	c->series = xrealloc(c->series, (c->nseries + 1) * sizeof(*c->series));
	s = &c->series[c->nseries++];
	memset(s, 0, sizeof(*s));
	s->label = kvr_text_clean(label, MAX_LABEL, false);
	s->color = color;
	s->dash = dash;
	s->n = n;
	s->x = xcalloc(n ? n : 1, sizeof(double));
	s->y = xcalloc(n ? n : 1, sizeof(double));
	s->lo = xcalloc(n ? n : 1, sizeof(double));
	s->hi = xcalloc(n ? n : 1, sizeof(double));
	for (size_t i = 0; i < n; i++)
		s->lo[i] = s->hi[i] = NAN;
	return s;
}

void kvr_chart_add_cat(struct kvr_chart *c, const char *name)
{
	c->cats = xrealloc(c->cats, (c->ncats + 1) * sizeof(*c->cats));
	c->cats[c->ncats++] = kvr_text_clean(name, MAX_LABEL, false);
}

static bool point_ok(const struct kvr_chart *c, const struct kvr_series *s, size_t i)
{
	if (!isfinite(s->y[i]))
		return false;
	if (c->kind == KVR_CHART_BARS)
		return i < c->ncats;
	return isfinite(s->x[i]);
}

bool kvr_chart_has_data(const struct kvr_chart *c)
{
	for (size_t k = 0; k < c->nseries; k++)
		for (size_t i = 0; i < c->series[k].n; i++)
			if (point_ok(c, &c->series[k], i))
				return true;
	return false;
}

static double text_w(cairo_t *cr, const char *s)
{
	cairo_text_extents_t e;
	cairo_text_extents(cr, s, &e);
	return e.x_advance;
}

static void font(cairo_t *cr, double size, bool bold)
{
	cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL,
			       bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
	cairo_set_font_size(cr, size);
}

/* Text anchored at x: align 0 left, 0.5 centre, 1 right; y is the baseline. */
static void text_at(cairo_t *cr, double x, double y, const char *s, double align)
{
	cairo_move_to(cr, x - text_w(cr, s) * align, y);
	cairo_show_text(cr, s);
}

struct frame {
	double x0, y0, x1, y1;       /* plot area, y0 top */
	double xlo, xhi, xstep;
	double ylo, yhi, ystep;
};

static double px(const struct frame *f, double x)
{
	return f->x0 + (x - f->xlo) / (f->xhi - f->xlo) * (f->x1 - f->x0);
}

static double py(const struct frame *f, double y)
{
	return f->y1 - (y - f->ylo) / (f->yhi - f->ylo) * (f->y1 - f->y0);
}

static void legend_sample(cairo_t *cr, const struct kvr_chart *c, const struct kvr_series *s,
			  double x, double y)
{
	set_color(cr, s->color);
	if (c->kind == KVR_CHART_BARS) {
		cairo_rectangle(cr, x, y - 9, 22, 11);
		cairo_fill(cr);
		return;
	}
	cairo_set_line_width(cr, 2.5);
	set_dash(cr, s->dash);
	cairo_move_to(cr, x, y - 4);
	cairo_line_to(cr, x + 24, y - 4);
	cairo_stroke(cr);
	cairo_set_dash(cr, NULL, 0, 0);
	cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
	if (c->style == KVR_STYLE_POINTS) {
		cairo_arc(cr, x + 12, y - 4, 3.5, 0, 2 * M_PI);
		cairo_fill(cr);
	}
}

/* Draws the legend rows from y; returns the y below them. */
static double legend(cairo_t *cr, const struct kvr_chart *c, double x0, double x1, double y)
{
	double x = x0;

	if (c->nseries < 2)
		return y;
	font(cr, FS_LEGEND, false);
	y += FS_LEGEND;
	for (size_t i = 0; i < c->nseries; i++) {
		const struct kvr_series *s = &c->series[i];
		double w = 30 + text_w(cr, s->label) + 20;
		if (x > x0 && x + w > x1) {
			x = x0;
			y += FS_LEGEND + 7;
		}
		legend_sample(cr, c, s, x, y);
		cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
		text_at(cr, x + 30, y, s->label, 0);
		x += w;
	}
	return y + 10;
}

static void ranges(const struct kvr_chart *c, double *xlo, double *xhi, double *ylo, double *yhi)
{
	*xlo = *ylo = INFINITY;
	*xhi = *yhi = -INFINITY;
	for (size_t k = 0; k < c->nseries; k++) {
		const struct kvr_series *s = &c->series[k];
		for (size_t i = 0; i < s->n; i++) {
			if (!point_ok(c, s, i))
				continue;
			if (c->kind == KVR_CHART_XY) {
				*xlo = fmin(*xlo, s->x[i]);
				*xhi = fmax(*xhi, s->x[i]);
			}
			*ylo = fmin(*ylo, s->y[i]);
			*yhi = fmax(*yhi, s->y[i]);
			if (isfinite(s->lo[i]))
				*ylo = fmin(*ylo, s->lo[i]);
			if (isfinite(s->hi[i]))
				*yhi = fmax(*yhi, s->hi[i]);
		}
	}
	if (isfinite(c->y_ref)) {
		*ylo = fmin(*ylo, c->y_ref);
		*yhi = fmax(*yhi, c->y_ref);
	}
	if (c->y_from_zero) {
		*ylo = fmin(*ylo, 0);
		*yhi = fmax(*yhi, 0);
	}
}

static void draw_y_axis(cairo_t *cr, const struct frame *f)
{
	char lab[64];
	int guard = 0;

	font(cr, FS_TICK, false);
	for (double v = f->ylo; v <= f->yhi + f->ystep * 1e-6 && guard < 100;
	     v += f->ystep, guard++) {
		double y = py(f, v);
		cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
		cairo_set_line_width(cr, 1);
		cairo_move_to(cr, f->x0, round(y) + 0.5);
		cairo_line_to(cr, f->x1, round(y) + 0.5);
		cairo_stroke(cr);
		kvr_tick_label(lab, sizeof(lab), v, f->ystep);
		cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
		text_at(cr, f->x0 - 8, y + FS_TICK * 0.35, lab, 1);
	}
}

static void draw_xy(cairo_t *cr, const struct kvr_chart *c, const struct frame *f)
{
	char lab[64];
	int guard = 0;

	font(cr, FS_TICK, false);
	for (double v = ceil(f->xlo / f->xstep - 1e-9) * f->xstep;
	     v <= f->xhi + f->xstep * 1e-6 && guard < 100; v += f->xstep, guard++) {
		double x = px(f, v);
		cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
		cairo_set_line_width(cr, 1);
		cairo_move_to(cr, round(x) + 0.5, f->y1);
		cairo_line_to(cr, round(x) + 0.5, f->y1 + 5);
		cairo_stroke(cr);
		kvr_tick_label(lab, sizeof(lab), v, f->xstep);
		cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
		text_at(cr, x, f->y1 + 8 + FS_TICK, lab, 0.5);
	}
	cairo_save(cr);
	cairo_rectangle(cr, f->x0 - 6, f->y0 - 6, f->x1 - f->x0 + 12, f->y1 - f->y0 + 12);
	cairo_clip(cr);
	for (size_t k = 0; k < c->nseries; k++) {
		const struct kvr_series *s = &c->series[k];
		bool pen = false;
		double prev = 0;
		/* Points with error bars of several series are dodged sideways a
		 * little so that no bar hides another. */
		double dx = c->style == KVR_STYLE_POINTS && c->nseries > 1 ?
			((double)k - (double)(c->nseries - 1) / 2.0) *
			(c->nseries > 6 ? 2.0 : 4.0) : 0;

		set_color(cr, s->color);
		cairo_set_line_width(cr, 2.2);
		cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
		set_dash(cr, s->dash);
		for (size_t i = 0; i < s->n; i++) {
			if (!point_ok(c, s, i)) {
				pen = false;
				continue;
			}
			if (c->style == KVR_STYLE_STEP) {
				if (!pen)
					cairo_move_to(cr, px(f, s->x[i]), py(f, f->ylo > 0 ? f->ylo : 0));
				else
					cairo_line_to(cr, px(f, s->x[i]), py(f, prev));
				cairo_line_to(cr, px(f, s->x[i]), py(f, s->y[i]));
			} else if (!pen) {
				cairo_move_to(cr, px(f, s->x[i]) + dx, py(f, s->y[i]));
			} else {
				cairo_line_to(cr, px(f, s->x[i]) + dx, py(f, s->y[i]));
			}
			prev = s->y[i];
			pen = true;
		}
		cairo_stroke(cr);
		cairo_set_dash(cr, NULL, 0, 0);
		cairo_set_line_cap(cr, CAIRO_LINE_CAP_BUTT);
		for (size_t i = 0; i < s->n; i++) {
			double x, ylo, yhi;
			if (!point_ok(c, s, i))
				continue;
			x = px(f, s->x[i]) + dx;
			if (isfinite(s->lo[i]) && isfinite(s->hi[i])) {
				ylo = py(f, s->lo[i]);
				yhi = py(f, s->hi[i]);
				cairo_set_line_width(cr, 1.5);
				cairo_move_to(cr, x, ylo);
				cairo_line_to(cr, x, yhi);
				cairo_move_to(cr, x - 4, ylo);
				cairo_line_to(cr, x + 4, ylo);
				cairo_move_to(cr, x - 4, yhi);
				cairo_line_to(cr, x + 4, yhi);
				cairo_stroke(cr);
			}
			if (c->style == KVR_STYLE_POINTS) {
				cairo_arc(cr, x, py(f, s->y[i]), 4, 0, 2 * M_PI);
				cairo_fill(cr);
			}
		}
	}
	cairo_restore(cr);
}

static void draw_bars(cairo_t *cr, const struct kvr_chart *c, const struct frame *f)
{
	double gw = (f->x1 - f->x0) / (double)c->ncats;
	double bw = gw * 0.72 / (double)(c->nseries ? c->nseries : 1);
	bool values = c->nseries * c->ncats <= 18;
	double base = py(f, f->ylo > 0 ? f->ylo : f->yhi < 0 ? f->yhi : 0);

	for (size_t j = 0; j < c->ncats; j++) {
		double cx = f->x0 + gw * ((double)j + 0.5);
		char lab[128];

		font(cr, FS_TICK, false);
		cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
		/* Shorten a category name that does not fit its slot. */
		snprintf(lab, sizeof(lab), "%s", c->cats[j]);
		while (strlen(lab) > 4 && text_w(cr, lab) > gw - 6) {
			size_t l = strlen(lab);
			while (l > 0 && ((unsigned char)lab[l - 1] & 0xc0) == 0x80)
				l--;
			if (l < 4)
				break;
			lab[l - 1] = '\0';
			lab[l - 2] = '.';
			lab[l - 3] = '.';
		}
		text_at(cr, cx, f->y1 + 8 + FS_TICK, lab, 0.5);
		for (size_t k = 0; k < c->nseries; k++) {
			const struct kvr_series *s = &c->series[k];
			double x = cx - gw * 0.36 + bw * (double)k, y;
			if (!point_ok(c, s, j))
				continue;
			y = py(f, s->y[j]);
			set_color(cr, s->color);
			cairo_rectangle(cr, x + 1, fmin(y, base), bw - 2, fabs(base - y));
			cairo_fill(cr);
			cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
			if (isfinite(s->lo[j]) && isfinite(s->hi[j])) {
				double m = x + bw / 2;
				cairo_set_line_width(cr, 1.5);
				cairo_move_to(cr, m, py(f, s->lo[j]));
				cairo_line_to(cr, m, py(f, s->hi[j]));
				cairo_move_to(cr, m - 5, py(f, s->lo[j]));
				cairo_line_to(cr, m + 5, py(f, s->lo[j]));
				cairo_move_to(cr, m - 5, py(f, s->hi[j]));
				cairo_line_to(cr, m + 5, py(f, s->hi[j]));
				cairo_stroke(cr);
			}
			if (values) {
				char v[64];
				double top = isfinite(s->hi[j]) ? fmin(py(f, s->hi[j]), y) : y;
				kvr_tick_label(v, sizeof(v), s->y[j], f->ystep / 10);
				font(cr, FS_TICK - 2, false);
				text_at(cr, x + bw / 2, top - 5, v, 0.5);
			}
		}
	}
}

void kvr_chart_draw(const struct kvr_chart *c, cairo_t *cr)
{
	const double W = KVR_CHART_W, H = KVR_CHART_H;
	struct frame f;
	double xlo, xhi, ylo, yhi, top, wlab = 0;
	char lab[64];
	int guard = 0;

	cairo_save(cr);
	cairo_set_source_rgb(cr, 1, 1, 1);
	cairo_rectangle(cr, 0, 0, W, H);
	cairo_fill(cr);

	font(cr, FS_TITLE, true);
	cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
	text_at(cr, 16, 26, c->title, 0);
	top = legend(cr, c, 16, W - 16, 36);

	ranges(c, &xlo, &xhi, &ylo, &yhi);
	if (!isfinite(ylo)) {
		ylo = 0;
		yhi = 1;
	}
	kvr_nice_ticks(ylo, yhi, 6, &f.ylo, &f.yhi, &f.ystep);
	if (c->kind == KVR_CHART_XY) {
		if (!isfinite(xlo)) {
			xlo = 0;
			xhi = 1;
		}
		kvr_nice_ticks(xlo, xhi, 8, &f.xlo, &f.xhi, &f.xstep);
		if (c->x_integer && f.xstep < 1)
			f.xstep = 1;   /* whole-number ticks */
		if (c->style == KVR_STYLE_POINTS) {
			/* Points (and their dodged error bars) kept off the frame's edges;
			 * ticks need not fall on the ends. */
			double pad = fmax(0.04 * (xhi - xlo), c->x_integer ? 0.4 : 0);
			if (!(pad > 0))
				pad = fabs(xlo) > 0 ? 0.1 * fabs(xlo) : 1;
			f.xlo = xlo - pad;
			f.xhi = xhi + pad;
		}
	} else {
		f.xlo = 0;
		f.xhi = 1;
		f.xstep = 1;
	}
	font(cr, FS_TICK, false);
	for (double v = f.ylo; v <= f.yhi + f.ystep * 1e-6 && guard < 100; v += f.ystep, guard++) {
		kvr_tick_label(lab, sizeof(lab), v, f.ystep);
		wlab = fmax(wlab, text_w(cr, lab));
	}
	f.x0 = 16 + FS_LABEL + 10 + wlab + 8;
	f.x1 = W - 24;
	f.y0 = top + 14;
	f.y1 = H - (FS_TICK + FS_LABEL + 26);

	/* The y label, rotated, centred on the plot area. */
	font(cr, FS_LABEL, false);
	cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
	cairo_save(cr);
	cairo_translate(cr, 16 + FS_LABEL, (f.y0 + f.y1) / 2);
	cairo_rotate(cr, -M_PI / 2);
	text_at(cr, 0, 0, c->ylabel, 0.5);
	cairo_restore(cr);
	text_at(cr, (f.x0 + f.x1) / 2, H - 10, c->xlabel, 0.5);

	draw_y_axis(cr, &f);
	if (c->kind == KVR_CHART_XY)
		draw_xy(cr, c, &f);
	else if (c->ncats > 0)
		draw_bars(cr, c, &f);

	/* Axis lines last so that nothing covers them. */
	cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
	cairo_set_line_width(cr, 1.2);
	cairo_move_to(cr, f.x0, f.y0 - 4);
	cairo_line_to(cr, f.x0, f.y1);
	cairo_line_to(cr, f.x1, f.y1);
	cairo_stroke(cr);
	if (isfinite(c->y_ref) && c->y_ref >= f.ylo && c->y_ref <= f.yhi) {
		double d[] = { 5, 4 };
		cairo_set_dash(cr, d, 2, 0);
		cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
		cairo_set_line_width(cr, 1.2);
		cairo_move_to(cr, f.x0, py(&f, c->y_ref));
		cairo_line_to(cr, f.x1, py(&f, c->y_ref));
		cairo_stroke(cr);
		cairo_set_dash(cr, NULL, 0, 0);
	}
	cairo_restore(cr);
}

static cairo_status_t to_buf(void *closure, const unsigned char *data, unsigned int len)
{
	return kv_buf_append(closure, data, len) < 0 ? CAIRO_STATUS_WRITE_ERROR :
		CAIRO_STATUS_SUCCESS;
}

int kvr_chart_write_png(const struct kvr_chart *c, const char *path, int width, int height)
{
	cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
	cairo_t *cr = cairo_create(s);
	struct kv_buf b = KV_BUF_INIT(256UL << 20);
	int rc = -1;

	cairo_scale(cr, width / KVR_CHART_W, height / KVR_CHART_H);
	kvr_chart_draw(c, cr);
	if (cairo_status(cr) != CAIRO_STATUS_SUCCESS) {
		kv_error("chart %s: %s", c->id, cairo_status_to_string(cairo_status(cr)));
		goto out;
	}
	cairo_surface_flush(s);
	if (cairo_surface_write_to_png_stream(s, to_buf, &b) != CAIRO_STATUS_SUCCESS)
		goto out;
	if (kv_write_file_atomic(path, b.data, b.len) < 0) {
		kv_error("%s: %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	cairo_destroy(cr);
	cairo_surface_destroy(s);
	kv_buf_release(&b);
	return rc;
}

/* Copies svg to out, prefixing every id and every reference to one. */
static int svg_prefix(struct kv_buf *out, const char *p, const char *pfx)
{
	static const char *const pats[] = { "id=\"", "href=\"#", "url(#" };
	int rc = 0;

	while (*p && rc == 0) {
		size_t best = SIZE_MAX, which = 0;
		for (size_t i = 0; i < KV_ARRAY_SIZE(pats); i++) {
			const char *q = strstr(p, pats[i]);
			if (q && (size_t)(q - p) < best) {
				best = (size_t)(q - p);
				which = i;
			}
		}
		if (best == SIZE_MAX) {
			rc = kv_buf_puts(out, p);
			break;
		}
		size_t l = strlen(pats[which]);
		rc |= kv_buf_append(out, p, best + l);
		rc |= kv_buf_puts(out, pfx);
		p += best + l;
	}
	return rc;
}

int kvr_chart_svg(const struct kvr_chart *c, struct kv_buf *out, const char *id_prefix)
{
	struct kv_buf b = KV_BUF_INIT(64UL << 20);
	cairo_surface_t *s = cairo_svg_surface_create_for_stream(to_buf, &b, KVR_CHART_W,
								 KVR_CHART_H);
	cairo_t *cr = cairo_create(s);
	int rc = -1;

	kvr_chart_draw(c, cr);
	if (cairo_status(cr) != CAIRO_STATUS_SUCCESS)
		goto out;
	cairo_destroy(cr);
	cr = NULL;
	cairo_surface_finish(s);
	if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS)
		goto out;
	{
		/* The <svg> tag, a <title> for screen readers, then the body. */
		const char *svg = strstr(kv_buf_str(&b), "<svg"), *end;
		if (!svg || !(end = strchr(svg, '>')))
			goto out;
		rc = kv_buf_append(out, svg, (size_t)(end - svg) + 1);
		rc |= kv_buf_puts(out, "<title>");
		for (const char *q = c->title; *q; q++) {
			if (*q == '<')
				rc |= kv_buf_puts(out, "&lt;");
			else if (*q == '>')
				rc |= kv_buf_puts(out, "&gt;");
			else if (*q == '&')
				rc |= kv_buf_puts(out, "&amp;");
			else
				rc |= kv_buf_putc(out, *q);
		}
		rc |= kv_buf_puts(out, "</title>");
		rc |= svg_prefix(out, end + 1, id_prefix);
	}
out:
	if (cr)
		cairo_destroy(cr);
	cairo_surface_destroy(s);
	kv_buf_release(&b);
	return rc < 0 ? -1 : 0;
}
