/*
 * model.h: what the report shows, derived from a loaded run (data.h): the
 * charts of each test and the per-(engine, pass) table. Built once, then
 * written as PNG, PDF and HTML by report.c, so the three never disagree.
 */
#ifndef KVR_MODEL_H
#define KVR_MODEL_H

#include "report/chart.h"
#include "report/csv.h"
#include "report/data.h"

struct kvr_row {
	const char *engine;
	int pass;
	size_t ok, failed;
	double ttft_mean, ttft_p50, ttft_p99, e2e_mean, hit_rate, tput;
};

/* A chart slot: a chart with data, or a "no data" note in its place. */
struct kvr_slot {
	struct kvr_chart chart;
	bool has_data;
	bool note_if_empty;      /* say "no data" rather than skip */
	char *nodata;            /* the note, when !has_data */
};

struct kvr_test_view {
	const struct kvr_test *test;
	char *slug;              /* unique, [a-z0-9-] */
	struct kvr_row *rows;
	size_t nrows;
	struct kvr_slot *slots;
	size_t nslots;
	size_t ncharts;          /* slots with data */
	char *ttft_unit;         /* "ms" or "s" */
};

struct kvr_view {
	const struct kvr_run *run;
	struct kvr_test_view *tests;
	size_t ntests;
	struct kvr_csv *matrix;  /* matrix.csv of the run (docs/RESULTS.md), or NULL; owned
				    by whoever set it (report.c), not by kvr_view_release */
};

void kvr_view_build(struct kvr_view *v, const struct kvr_run *run);
void kvr_view_release(struct kvr_view *v);

/* "cold" for pass 0, "warm" for pass 1 when it is the last pass, else "warm N". */
void kvr_pass_name(char *buf, size_t len, int pass, int max_pass);

#endif
