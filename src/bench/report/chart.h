/*
 * chart.h: charts drawn with cairo. One drawing code serves the PDF pages,
 * the PNG files and the inline SVG of the HTML report.
 *
 * A chart is drawn in a logical box of KVR_CHART_W x KVR_CHART_H units; the
 * writers scale it to the target. Two kinds:
 *   KVR_CHART_XY    series of (x, y) points drawn as steps, lines or lines
 *                   with points, each point with an optional error bar lo..hi
 *   KVR_CHART_BARS  categories along x, one bar per series in each, with an
 *                   optional interval lo..hi
 * Axes ticks come from kvr_nice_ticks(); NaN values are skipped; a chart
 * with no finite value has no data (kvr_chart_has_data()) and is not drawn.
 * Colours are the Okabe-Ito palette (safe for colour-blind readers).
 *
 * The chart owns every string and array in it.
 */
#ifndef KVR_CHART_H_
#define KVR_CHART_H_

#include "common/compat.h"
#include "common/buf.h"

#include <cairo.h>

#define KVR_CHART_W 800.0
#define KVR_CHART_H 450.0

enum kvr_chart_kind { KVR_CHART_XY, KVR_CHART_BARS };
enum kvr_style { KVR_STYLE_STEP, KVR_STYLE_LINE, KVR_STYLE_POINTS };

struct kvr_series {
	char *label;
	int color;          /* palette index */
	int dash;           /* 0 solid, 1 dashed, 2 dotted, 3 dash-dot */
	size_t n;
	double *x, *y;      /* BARS: y[j] for category j; x unused */
	double *lo, *hi;    /* interval ends, NaN for none */
};

struct kvr_chart {
	char *id;           /* file stem and HTML id: [A-Za-z0-9_-] */
	char *title, *xlabel, *ylabel;
	char *caption;      /* one line under the chart, may be NULL */
	enum kvr_chart_kind kind;
	enum kvr_style style;
	bool y_from_zero;   /* include 0 in the y range */
	bool x_integer;     /* x ticks at whole numbers only */
	double y_ref;       /* dashed horizontal reference line, NaN for none */
	char **cats;
	size_t ncats;
	struct kvr_series *series;
	size_t nseries;
};

/* The strings are copied. */
void kvr_chart_init(struct kvr_chart *c, enum kvr_chart_kind kind, const char *id,
		    const char *title, const char *xlabel, const char *ylabel);
void kvr_chart_release(struct kvr_chart *c);
/* A new series of n points (x, y zero, lo, hi NaN); valid until the next add. */
struct kvr_series *kvr_chart_add_series(struct kvr_chart *c, const char *label, size_t n,
					int color, int dash);
void kvr_chart_add_cat(struct kvr_chart *c, const char *name);
bool kvr_chart_has_data(const struct kvr_chart *c);

/* Draws into cr in the box (0,0)-(KVR_CHART_W,KVR_CHART_H) of the current matrix. */
void kvr_chart_draw(const struct kvr_chart *c, cairo_t *cr);
/* PNG of width x height pixels, written atomically. 0 or -1. */
int kvr_chart_write_png(const struct kvr_chart *c, const char *path, int width, int height);
/* Appends an <svg> element (no XML prolog; ids prefixed with id_prefix). 0 or -1. */
int kvr_chart_svg(const struct kvr_chart *c, struct kv_buf *out, const char *id_prefix);

/*
 * "Nice numbers" axis (after Heckbert, Graphics Gems 1990): a step of 1, 2
 * or 5 times a power of ten giving about `want` ticks (between 2/3 and 3/2
 * of it), and the range [lo, hi] widened to multiples of the step.
 */
void kvr_nice_ticks(double lo, double hi, int want, double *tlo, double *thi, double *step);
/* The label of tick value v on an axis of that step: "0.25", "1500", "2". */
void kvr_tick_label(char *buf, size_t len, double v, double step);

/* Okabe-Ito palette colour i (wraps). */
void kvr_palette(int i, double *r, double *g, double *b);

#endif
