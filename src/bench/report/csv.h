/*
 * csv.h: a strict, bounded reader of RFC 4180 CSV (requests.csv).
 *
 * Fields may be quoted ("a, ""b""" is  a, "b"); quoted fields may hold
 * commas and newlines. Lines end in LF or CRLF; blank lines are skipped. The
 * first record is the header. Every record must have as many fields as the
 * header. A record longer than KVR_CSV_MAX_LINE bytes, a NUL byte, a quote
 * inside an unquoted field, text after a closing quote or an unterminated
 * quote is an error naming the line.
 *
 *   struct kvr_csv csv;
 *   char err[256];
 *   if (kvr_csv_parse(&csv, data, len, err, sizeof(err)) < 0) ... err ...
 *   int c = kvr_csv_col(&csv, "TTFT");
 *   const char *v = kvr_csv_cell(&csv, row, c);   // "" when c < 0
 *   kvr_csv_release(&csv);
 *
 * The struct owns all its memory; cells stay valid until kvr_csv_release().
 */
#ifndef KVR_CSV_H
#define KVR_CSV_H

#include "common/compat.h"

#define KVR_CSV_MAX_LINE (256 * 1024)      /* bytes per record */
#define KVR_CSV_MAX_FIELDS 4096            /* fields per record */
#define KVR_CSV_MAX_FILE (1024UL << 20)    /* bytes per file (kvr_csv_load) */

struct kvr_csv {
	size_t ncols;          /* fields of the header */
	size_t nrows;          /* records after the header */
	char *arena;           /* owned: every cell, NUL-terminated */
	size_t *cell;          /* owned: (nrows + 1) * ncols offsets into arena; row 0 = header */
	size_t *line;          /* owned: nrows + 1 line numbers (1-based) where each record starts */
};

/* 0, or -1 with a one-line message "LINE: what" in err (csv left empty). */
int kvr_csv_parse(struct kvr_csv *csv, const char *data, size_t len, char *err, size_t errlen);
/* Reads and parses a file; err is "PATH:LINE: what" or "PATH: why". */
int kvr_csv_load(struct kvr_csv *csv, const char *path, char *err, size_t errlen);
void kvr_csv_release(struct kvr_csv *csv);

/* Index of the header field equal to name, or -1. */
int kvr_csv_col(const struct kvr_csv *csv, const char *name);
/* The cell of data row `row` (0-based, header excluded); "" when col < 0. */
const char *kvr_csv_cell(const struct kvr_csv *csv, size_t row, int col);
/* The file line where data row `row` starts. */
size_t kvr_csv_line(const struct kvr_csv *csv, size_t row);

#endif
