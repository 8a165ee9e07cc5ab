/* csv.c: see csv.h. */
#include "report/csv.h"

#include <errno.h>

#include "common/util.h"
#include "common/banned.h"

struct parser {
	const char *p;
	size_t len, pos;
	size_t lineno;
	char *arena;
	size_t alen;
	size_t *cell;
	size_t ncell, acell;
	size_t *line;
	size_t nrec, arec;
	char *err;
	size_t errlen;
};

static int fail(struct parser *ps, size_t lineno, const char *what)
{
	snprintf(ps->err, ps->errlen, "%zu: %s", lineno, what);
	return -1;
}

static void push_cell(struct parser *ps, size_t off)
{
	if (ps->ncell == ps->acell) {
		ps->acell = ps->acell ? ps->acell * 2 : 256;
		ps->cell = xrealloc(ps->cell, ps->acell * sizeof(*ps->cell));
	}
	ps->cell[ps->ncell++] = off;
}

static void push_line(struct parser *ps, size_t lineno)
{
	if (ps->nrec == ps->arec) {
		ps->arec = ps->arec ? ps->arec * 2 : 64;
		ps->line = xrealloc(ps->line, ps->arec * sizeof(*ps->line));
	}
	ps->line[ps->nrec++] = lineno;
}

/*
 * Parses one record starting at ps->pos (not at end, not a blank line).
 * Returns the number of fields, or -1.
 */
static long parse_record(struct parser *ps)
{
	size_t start = ps->pos, recline = ps->lineno;
	long nf = 0;

	for (;;) {
		size_t off = ps->alen;
		char c;

		if (nf >= KVR_CSV_MAX_FIELDS)
			return fail(ps, recline, "too many fields");
		if (ps->pos < ps->len && ps->p[ps->pos] == '"') {
			ps->pos++;
			for (;;) {
				if (ps->pos >= ps->len)
					return fail(ps, recline, "unterminated quoted field");
				c = ps->p[ps->pos];
				if (c == '"') {
					if (ps->pos + 1 < ps->len && ps->p[ps->pos + 1] == '"') {
						ps->arena[ps->alen++] = '"';
						ps->pos += 2;
						continue;
					}
					ps->pos++;
					break;
				}
				if (c == '\0')
					return fail(ps, ps->lineno, "NUL byte");
				if (c == '\n')
					ps->lineno++;
				ps->arena[ps->alen++] = c;
				ps->pos++;
				if (ps->pos - start > KVR_CSV_MAX_LINE)
					return fail(ps, recline, "record longer than the limit (256 KiB)");
			}
			if (ps->pos < ps->len && ps->p[ps->pos] != ',' && ps->p[ps->pos] != '\n' &&
			    ps->p[ps->pos] != '\r')
				return fail(ps, ps->lineno, "text after a closing quote");
		} else {
			while (ps->pos < ps->len) {
				c = ps->p[ps->pos];
				if (c == ',' || c == '\n' || c == '\r')
					break;
				if (c == '"')
					return fail(ps, ps->lineno, "quote inside an unquoted field");
				if (c == '\0')
					return fail(ps, ps->lineno, "NUL byte");
				ps->arena[ps->alen++] = c;
				ps->pos++;
			}
		}
		if (ps->pos - start > KVR_CSV_MAX_LINE)
			return fail(ps, recline, "record longer than the limit (256 KiB)");
		ps->arena[ps->alen++] = '\0';
		push_cell(ps, off);
		nf++;
		if (ps->pos >= ps->len)
			return nf;
		c = ps->p[ps->pos];
		if (c == ',') {
			ps->pos++;
			continue;
		}
		if (c == '\r') {
			if (ps->pos + 1 < ps->len && ps->p[ps->pos + 1] == '\n')
				ps->pos++;
			else
				return fail(ps, ps->lineno, "carriage return without a line feed");
		}
		ps->pos++;
		ps->lineno++;
		return nf;
	}
}

int kvr_csv_parse(struct kvr_csv *csv, const char *data, size_t len, char *err, size_t errlen)
{
	struct parser ps = { .p = data, .len = len, .lineno = 1, .err = err, .errlen = errlen };
	size_t ncols = 0;
	int rc = -1;

	memset(csv, 0, sizeof(*csv));
	/* Unquoting only shrinks; each field adds at most one NUL for its separator. */
	ps.arena = xmalloc(len + 1);
	while (ps.pos < ps.len) {
		size_t recline;
		long nf;

		if (ps.p[ps.pos] == '\n' || (ps.p[ps.pos] == '\r' && ps.pos + 1 < ps.len &&
					     ps.p[ps.pos + 1] == '\n')) {
			ps.pos += ps.p[ps.pos] == '\r' ? 2 : 1;
			ps.lineno++;
			continue;
		}
		recline = ps.lineno;
		nf = parse_record(&ps);
		if (nf < 0)
			goto out;
		if (ps.nrec == 0) {
			ncols = (size_t)nf;
		} else if ((size_t)nf != ncols) {
			char what[96];
			snprintf(what, sizeof(what), "%ld fields, the header has %zu", nf, ncols);
			fail(&ps, recline, what);
			goto out;
		}
		push_line(&ps, recline);
	}
	if (ps.nrec == 0) {
		fail(&ps, 1, "empty file (no header)");
		goto out;
	}
	csv->ncols = ncols;
	csv->nrows = ps.nrec - 1;
	csv->arena = ps.arena;
	csv->cell = ps.cell;
	csv->line = ps.line;
	ps.arena = NULL;
	ps.cell = NULL;
	ps.line = NULL;
	rc = 0;
out:
	free(ps.arena);
	free(ps.cell);
	free(ps.line);
	return rc;
}

int kvr_csv_load(struct kvr_csv *csv, const char *path, char *err, size_t errlen)
{
	size_t len;
	char *data = kv_read_file(path, KVR_CSV_MAX_FILE, &len);
	char sub[256];
	int rc;

	memset(csv, 0, sizeof(*csv));
	if (!data) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	rc = kvr_csv_parse(csv, data, len, sub, sizeof(sub));
	if (rc < 0)
		snprintf(err, errlen, "%s:%s", path, sub);
	free(data);
	return rc;
}

void kvr_csv_release(struct kvr_csv *csv)
{
	free(csv->arena);
	free(csv->cell);
	free(csv->line);
	memset(csv, 0, sizeof(*csv));
}

int kvr_csv_col(const struct kvr_csv *csv, const char *name)
{
	for (size_t i = 0; i < csv->ncols; i++)
		if (!strcmp(csv->arena + csv->cell[i], name))
			return (int)i;
	return -1;
}

const char *kvr_csv_cell(const struct kvr_csv *csv, size_t row, int col)
{
	if (col < 0 || (size_t)col >= csv->ncols || row >= csv->nrows)
		return "";
	return csv->arena + csv->cell[(row + 1) * csv->ncols + (size_t)col];
}

size_t kvr_csv_line(const struct kvr_csv *csv, size_t row)
{
	return row < csv->nrows ? csv->line[row + 1] : 0;
}
