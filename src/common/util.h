/*
 * util.h: allocation, error reporting and number parsing shared by kvbench
 * and kvserve.
 *
 * Two tiers of errors (see docs/ARCHITECTURE.md): recoverable ones are
 * returned as codes and counted by the caller; bugs are assert(); running out
 * of memory aborts in the x*alloc family, so callers never check for NULL.
 */
#ifndef KV_UTIL_H
#define KV_UTIL_H

#include "common/compat.h"

#include <stdarg.h>

/* Program name used as the prefix of every message ("kvbench", "kvserve"). */
void kv_set_progname(const char *name);
const char *kv_progname(void);

/* "PROG: error: MESSAGE\n" on stderr. Messages are lower case, one line. */
void kv_error(const char *fmt, ...) KV_PRINTF(1, 2);
void kv_warn(const char *fmt, ...) KV_PRINTF(1, 2);
/* kv_error() then exit(code). */
KV_NORETURN void kv_die(int code, const char *fmt, ...) KV_PRINTF(2, 3);
/* Informational line on stderr, shown unless kv_set_quiet(true). */
void kv_info(const char *fmt, ...) KV_PRINTF(1, 2);
void kv_set_quiet(bool quiet);

/* Allocation that aborts with a message on failure; never returns NULL. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* malloc'ed printf. */
char *xasprintf(const char *fmt, ...) KV_PRINTF(1, 2);

/*
 * Strict number parsing: the whole string must be a number in range.
 * Return 0 on success, -1 (and leave *out alone) otherwise.
 */
int kv_parse_i64(const char *s, int64_t min, int64_t max, int64_t *out);
int kv_parse_double(const char *s, double *out);
/*
 * Sizes with an optional unit: 4096, 64k, 512KiB, 1.5GB, 2gib. k/m/g/t are
 * binary (1024) when written KiB/MiB/GiB/TiB or a bare letter, decimal when
 * written KB/MB/GB/TB (LMCache's max_local_cpu_size is in GB).
 */
int kv_parse_size(const char *s, uint64_t *out);

/* Write a whole file atomically: PATH.tmp.PID, fsync, rename. 0 or -1 (errno). */
int kv_write_file_atomic(const char *path, const void *data, size_t len);
/* Read a whole file (up to max bytes) into a malloc'ed NUL-terminated buffer. */
char *kv_read_file(const char *path, size_t max, size_t *len_out);
/* mkdir -p. 0 or -1 (errno). */
int kv_mkdir_p(const char *path, unsigned mode);

#endif
