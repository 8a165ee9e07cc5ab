/* Streaming writers of requests.csv and outputs.jsonl; see sink.h. */
#include "sink.h"

#include <errno.h>
#include <unistd.h>

#include "common/util.h"
#include "common/banned.h"

static FILE *open_tmp(const char *path)
{
	char *tmp = xasprintf("%s.tmp", path);
	FILE *f = fopen(tmp, "w");

	if (!f)
		kv_error("%s: cannot create: %s", tmp, strerror(errno));
	free(tmp);
	return f;
}

int kvb_sink_open(struct kvb_sink *s, const char *dir)
{
	memset(s, 0, sizeof(*s));
	kv_buf_init(&s->line, 0);
	if (kv_mkdir_p(dir, 0755) < 0) {
		kv_error("%s: cannot create the folder: %s", dir, strerror(errno));
		return -1;
	}
	s->csv_path = xasprintf("%s/requests.csv", dir);
	s->jsonl_path = xasprintf("%s/outputs.jsonl", dir);
	s->csv = open_tmp(s->csv_path);
	s->jsonl = s->csv ? open_tmp(s->jsonl_path) : NULL;
	if (!s->csv || !s->jsonl) {
		s->failed = true;
		kvb_sink_close(s);
		return -1;
	}
	kvb_csv_header(&s->line);
	fwrite(s->line.data, 1, s->line.len, s->csv);
	return 0;
}

static void put(struct kvb_sink *s, FILE *f, const char *path)
{
	if (fwrite(s->line.data, 1, s->line.len, f) != s->line.len && !s->failed) {
		kv_error("%s.tmp: write failed: %s", path, strerror(errno));
		s->failed = true;
	}
}

void kvb_sink_write(struct kvb_sink *s, const struct kvb_record *r)
{
	kv_buf_reset(&s->line);
	kvb_csv_row(&s->line, r);
	put(s, s->csv, s->csv_path);
	kv_buf_reset(&s->line);
	kvb_jsonl_row(&s->line, r);
	put(s, s->jsonl, s->jsonl_path);
}

static int finish(FILE *f, const char *path, bool keep)
{
	char *tmp = xasprintf("%s.tmp", path);
	int rc = 0;

	if (!f) {
		free(tmp);
		return 0;
	}
	if (fflush(f) || fsync(fileno(f)) < 0)
		rc = -1;
	if (fclose(f))
		rc = -1;
	if (rc < 0)
		kv_error("%s: write failed: %s", tmp, strerror(errno));
	if (rc == 0 && keep && rename(tmp, path) < 0) {
		kv_error("%s: cannot rename into place: %s", path, strerror(errno));
		rc = -1;
	}
	if (!keep || rc < 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

int kvb_sink_close(struct kvb_sink *s)
{
	bool keep = !s->failed;
	int rc = 0;

	if (finish(s->csv, s->csv_path, keep) < 0)
		rc = -1;
	if (finish(s->jsonl, s->jsonl_path, keep) < 0)
		rc = -1;
	free(s->csv_path);
	free(s->jsonl_path);
	kv_buf_release(&s->line);
	s->csv = s->jsonl = NULL;
	s->csv_path = s->jsonl_path = NULL;
	return s->failed ? -1 : rc;
}
