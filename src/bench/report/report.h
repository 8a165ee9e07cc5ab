/*
 * report.h: the report of a results folder (docs/RESULTS.md, docs/report.md).
 *
 * This is the one entry point other modules call; `kvbench run` calls it at
 * the end of every suite, `kvbench report` from the command line. It reads
 * the folder (overall.result, summary.json, <test>/requests.csv,
 * <test>/summary.json, <test>/divergences.jsonl; or the requests.csv and
 * summary.json of a `kvbench bench --output DIR` folder) and writes:
 *
 *   report.pdf            multi-page A4: a title page with the verdict and
 *                         the run id, then the charts and tables of each test
 *   report.html           one self-contained file (charts as inline SVG, no
 *                         external resources, no JavaScript)
 *   charts/<name>.png     one PNG per chart that has data
 *
 * out_path_or_NULL:
 *   NULL                  all of the above inside results_dir
 *   "x/y.pdf" / "x/y.html" that file, the other format as x/y.{html,pdf},
 *                         the PNGs in x/charts/
 *   an existing folder    all of the above inside that folder
 *
 * Every file is written atomically. Strings from the folder are untrusted:
 * the HTML escapes them all, and malformed rows or files make a clear
 * one-line error (kv_error) rather than a crash.
 *
 * Returns 0 on success, 2 when the results folder cannot be read or is
 * malformed (nothing is written), 3 when an output cannot be written.
 * Errors are printed (kv_error, one line each); progress with kv_info.
 *
 * Call it from one thread while no other cairo drawing runs in the process:
 * at the end it drops cairo's and fontconfig's font caches, so that leak
 * checkers see a clean exit. Not async-signal-safe.
 */
#ifndef KVB_REPORT_H
#define KVB_REPORT_H

int kvb_report_write(const char *results_dir, const char *out_path_or_NULL);

#endif
