/*
 * sink.h: streams finished requests to DIR/requests.csv and
 * DIR/outputs.jsonl (docs/RESULTS.md) as they complete, so memory stays
 * bounded on long runs. Files are written as NAME.tmp and renamed into place
 * by kvb_sink_close(), so a folder never holds a half-written file under the
 * final name.
 */
#ifndef KVB_SINK_H
#define KVB_SINK_H

#include "fields.h"

struct kvb_sink {
	FILE *csv, *jsonl;
	char *csv_path, *jsonl_path;   /* final names */
	struct kv_buf line;
	bool failed;                   /* a write failed (reported once) */
};

/* Creates dir (mkdir -p) and both files. 0, or -1 after kv_error. */
int kvb_sink_open(struct kvb_sink *s, const char *dir);
void kvb_sink_write(struct kvb_sink *s, const struct kvb_record *r);
/* Flushes, syncs and renames into place; frees. 0, or -1 after kv_error. */
int kvb_sink_close(struct kvb_sink *s);

#endif
