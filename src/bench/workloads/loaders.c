/* Data-set readers: CSV (MMLU), ShareGPT JSON, generation and RAG JSONL. */
#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>

#include "common/buf.h"
#include "workloads/loaders.h"
#include "common/banned.h"

static char *read_data(const char *path, size_t *len)
{
	char *s = kv_read_file(path, KVB_DATA_MAX_BYTES, len);
	if (!s)
		kv_error("%s: cannot read: %s", path, errno ? strerror(errno) : "too large");
	return s;
}

/* ---- CSV ----------------------------------------------------------------- */

static void row_release(struct kvb_csv_row *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->f[i]);
	free(r->f);
	memset(r, 0, sizeof(*r));
}

void kvb_csv_release(struct kvb_csv *c)
{
	for (size_t i = 0; i < c->n; i++)
		row_release(&c->rows[i]);
	free(c->rows);
	memset(c, 0, sizeof(*c));
}

int kvb_csv_parse(const char *name, const char *text, size_t len, struct kvb_csv *out)
{
	struct kv_buf field = KV_BUF_INIT(KVB_CSV_MAX_FIELD);
	struct kvb_csv_row row = { 0 };
	size_t alloc_rows = 0, alloc_f = 0, i = 0;
	int line = 1, rc = -1;

	memset(out, 0, sizeof(*out));
	while (i < len) {
		/* start of a row: skip empty lines */
		if (text[i] == '\n' || (text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')) {
			i += text[i] == '\r' ? 2 : 1;
			line++;
			continue;
		}
		row.line = line;
		for (;;) { /* one field */
			bool quoted = false;
			kv_buf_reset(&field);
			if (i < len && text[i] == '"') {
				quoted = true;
				i++;
				for (;;) {
					if (i >= len) {
						kv_error("%s:%d: unterminated quoted field", name, row.line);
						goto out;
					}
					if (text[i] == '"') {
						if (i + 1 < len && text[i + 1] == '"') {
							i += 2;
							if (kv_buf_putc(&field, '"') < 0)
								goto toolong;
							continue;
						}
						i++;
						break;
					}
					if (text[i] == '\n')
						line++;
					if (text[i] == '\0') {
						kv_error("%s:%d: NUL byte in field", name, line);
						goto out;
					}
					if (kv_buf_putc(&field, text[i++]) < 0)
						goto toolong;
				}
			}
			while (i < len && text[i] != ',' && text[i] != '\n' &&
			       !(text[i] == '\r' && i + 1 < len && text[i + 1] == '\n')) {
				if (quoted) {
					kv_error("%s:%d: text after a closing quote", name, line);
					goto out;
				}
				if (text[i] == '"') {
					kv_error("%s:%d: quote inside an unquoted field", name, line);
					goto out;
				}
				if (text[i] == '\0') {
					kv_error("%s:%d: NUL byte in field", name, line);
					goto out;
				}
				if (kv_buf_putc(&field, text[i++]) < 0)
					goto toolong;
			}
			if (row.n == alloc_f) {
				alloc_f = alloc_f ? alloc_f * 2 : 8;
				row.f = xrealloc(row.f, alloc_f * sizeof(*row.f));
			}
			row.f[row.n++] = kv_buf_detach(&field, NULL);
			if (row.n > 4096) {
				kv_error("%s:%d: more than 4096 fields", name, row.line);
				goto out;
			}
			if (i < len && text[i] == ',') {
				i++;
				continue;
			}
			break;
		}
		if (i < len) { /* end of line */
			i += text[i] == '\r' ? 2 : 1;
			line++;
		}
		if (out->n == alloc_rows) {
			alloc_rows = alloc_rows ? alloc_rows * 2 : 64;
			out->rows = xrealloc(out->rows, alloc_rows * sizeof(*out->rows));
		}
		out->rows[out->n++] = row;
		memset(&row, 0, sizeof(row));
		alloc_f = 0;
	}
	rc = 0;
	goto out;
toolong:
	kv_error("%s:%d: field longer than %u bytes", name, line, KVB_CSV_MAX_FIELD);
out:
	row_release(&row);
	kv_buf_release(&field);
	if (rc < 0)
		kvb_csv_release(out);
	return rc;
}

/* ---- MMLU ---------------------------------------------------------------- */

void kvb_mcq_set_release(struct kvb_mcq_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].question);
		for (int j = 0; j < 4; j++)
			free(s->v[i].choice[j]);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}

int kvb_mmlu_parse_csv(const char *name, const char *text, size_t len, struct kvb_mcq_set *out)
{
	struct kvb_csv csv;

	memset(out, 0, sizeof(*out));
	if (kvb_csv_parse(name, text, len, &csv) < 0)
		return -1;
	if (!csv.n) {
		kv_error("%s:1: no questions", name);
		kvb_csv_release(&csv);
		return -1;
	}
	out->v = xcalloc(csv.n, sizeof(*out->v));
	for (size_t i = 0; i < csv.n; i++) {
		struct kvb_csv_row *r = &csv.rows[i];
		struct kvb_mcq *q = &out->v[out->n];
		const char *a;
		if (r->n != 6) {
			kv_error("%s:%d: expected 6 fields (question,A,B,C,D,answer), got %zu",
				 name, r->line, r->n);
			goto bad;
		}
		a = r->f[5];
		while (*a == ' ')
			a++;
		if (!(a[0] >= 'A' && a[0] <= 'D') || (a[1] && a[1] != ' ')) {
			kv_error("%s:%d: answer must be A, B, C or D, got '%.20s'", name, r->line, r->f[5]);
			goto bad;
		}
		if (!*r->f[0]) {
			kv_error("%s:%d: empty question", name, r->line);
			goto bad;
		}
		q->answer = a[0];
		q->line = r->line;
		q->question = r->f[0];
		for (int j = 0; j < 4; j++)
			q->choice[j] = r->f[j + 1];
		free(r->f[5]);
		r->n = 0; /* fields moved */
		out->n++;
	}
	kvb_csv_release(&csv);
	return 0;
bad:
	kvb_csv_release(&csv);
	kvb_mcq_set_release(out);
	return -1;
}

int kvb_mmlu_load_csv(const char *path, struct kvb_mcq_set *out)
{
	size_t len;
	char *s = read_data(path, &len);
	int rc;

	memset(out, 0, sizeof(*out));
	if (!s)
		return -1;
	rc = kvb_mmlu_parse_csv(path, s, len, out);
	free(s);
	return rc;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int kvb_mmlu_subjects(const char *dir, char ***names, size_t *n)
{
	char *tdir = xasprintf("%s/test", dir);
	DIR *d = opendir(tdir);
	struct dirent *e;
	size_t alloc = 0;
	const char *suf = "_test.csv";
	size_t sl = strlen(suf);

	*names = NULL;
	*n = 0;
	if (!d) {
		kv_error("%s: cannot open: %s", tdir, strerror(errno));
		free(tdir);
		return -1;
	}
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l <= sl || strcmp(e->d_name + l - sl, suf))
			continue;
		if (*n == alloc) {
			alloc = alloc ? alloc * 2 : 64;
			*names = xrealloc(*names, alloc * sizeof(**names));
		}
		(*names)[(*n)++] = xstrndup(e->d_name, l - sl);
	}
	closedir(d);
	if (!*n) {
		kv_error("%s: no *_test.csv files", tdir);
		free(tdir);
		return -1;
	}
	free(tdir);
	qsort(*names, *n, sizeof(**names), cmp_str);
	return 0;
}

/* ---- JSON helpers ---------------------------------------------------------- */

/* Lines where each element of a top-level JSON array starts (best effort,
 * for messages only). */
static int *array_elem_lines(const char *s, size_t len, size_t *n)
{
	int *v = NULL, line = 1, depth = 0;
	size_t alloc = 0;
	bool in_str = false, want = false;

	*n = 0;
	for (size_t i = 0; i < len; i++) {
		char ch = s[i];
		if (ch == '\n')
			line++;
		if (in_str) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_str = false;
			continue;
		}
		if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
			continue;
		if (depth == 1 && want && ch != ']') {
			if (*n == alloc) {
				alloc = alloc ? alloc * 2 : 64;
				v = xrealloc(v, alloc * sizeof(*v));
			}
			v[(*n)++] = line;
			want = false;
		}
		if (ch == '"')
			in_str = true;
		else if (ch == '[' || ch == '{') {
			depth++;
			if (depth == 1 && ch == '[')
				want = true;
		} else if (ch == ']' || ch == '}')
			depth--;
		else if (ch == ',' && depth == 1)
			want = true;
	}
	return v;
}

static const char *jstr(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* Calls fn for each non-empty line of a JSONL text, with the parsed object. */
static int each_jsonl(const char *name, const char *text, size_t len,
		      int (*fn)(const char *name, int line, json_t *obj, void *ctx), void *ctx)
{
	size_t i = 0;
	int line = 0;

	while (i < len) {
		const char *e = memchr(text + i, '\n', len - i);
		size_t l = e ? (size_t)(e - (text + i)) : len - i;
		const char *p = text + i;
		json_error_t err;
		json_t *o;
		size_t k;
		int rc;

		line++;
		i += l + (e ? 1 : 0);
		for (k = 0; k < l && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r'); k++)
			;
		if (k == l)
			continue;
		o = json_loadb(p, l, JSON_REJECT_DUPLICATES, &err);
		if (!o) {
			kv_error("%s:%d: bad json: %s", name, line, err.text);
			return -1;
		}
		if (!json_is_object(o)) {
			kv_error("%s:%d: expected a json object", name, line);
			json_decref(o);
			return -1;
		}
		rc = fn(name, line, o, ctx);
		json_decref(o);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* ---- ShareGPT ------------------------------------------------------------ */

void kvb_conv_set_release(struct kvb_conv_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		for (size_t j = 0; j < s->v[i].n; j++) {
			free(s->v[i].t[j].role);
			free(s->v[i].t[j].content);
		}
		free(s->v[i].t);
		free(s->v[i].id);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static const char *sharegpt_role(const char *from)
{
	static const char *const user[] = { "human", "user", NULL };
	static const char *const asst[] = { "gpt", "chatgpt", "bard", "bing", "assistant", "model", NULL };
	for (int i = 0; user[i]; i++)
		if (!strcmp(from, user[i]))
			return "user";
	for (int i = 0; asst[i]; i++)
		if (!strcmp(from, asst[i]))
			return "assistant";
	if (!strcmp(from, "system"))
		return "system";
	return NULL;
}

int kvb_sharegpt_parse(const char *name, const char *text, size_t len, struct kvb_conv_set *out)
{
	json_error_t err;
	json_t *root;
	int *lines = NULL;
	size_t n_lines = 0;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	root = json_loadb(text, len, 0, &err);
	if (!root) {
		kv_error("%s:%d: bad json: %s", name, err.line, err.text);
		return -1;
	}
	if (!json_is_array(root)) {
		kv_error("%s:1: expected a json list of conversations", name);
		goto out;
	}
	lines = array_elem_lines(text, len, &n_lines);
	out->v = xcalloc(json_array_size(root) + 1, sizeof(*out->v));
	for (size_t i = 0; i < json_array_size(root); i++) {
		const json_t *c = json_array_get(root, i), *turns, *id;
		struct kvb_conv *cv = &out->v[out->n];
		int line = i < n_lines ? lines[i] : 0;

		if (!json_is_object(c)) {
			kv_error("%s:%d: conversation %zu: expected an object", name, line, i);
			goto out;
		}
		turns = json_object_get(c, "conversations");
		if (!json_is_array(turns)) {
			kv_error("%s:%d: conversation %zu: \"conversations\" must be a list", name, line, i);
			goto out;
		}
		id = json_object_get(c, "id");
		cv->id = json_is_string(id) ? xstrdup(json_string_value(id)) : xasprintf("%zu", i);
		cv->line = line;
		cv->t = xcalloc(json_array_size(turns) + 1, sizeof(*cv->t));
		out->n++;
		for (size_t j = 0; j < json_array_size(turns); j++) {
			const json_t *t = json_array_get(turns, j);
			const char *from = json_is_object(t) ? jstr(t, "from") : NULL;
			const char *value = json_is_object(t) ? jstr(t, "value") : NULL;
			const char *role;
			if (!from || !value) {
				kv_error("%s:%d: conversation %zu turn %zu: needs string \"from\" and \"value\"",
					 name, line, i, j);
				goto out;
			}
			role = sharegpt_role(from);
			if (!role) {
				kv_error("%s:%d: conversation %zu turn %zu: unknown \"from\" '%.40s'",
					 name, line, i, j, from);
				goto out;
			}
			cv->t[cv->n].role = xstrdup(role);
			cv->t[cv->n].content = xstrdup(value);
			cv->n++;
		}
	}
	rc = 0;
out:
	free(lines);
	json_decref(root);
	if (rc < 0)
		kvb_conv_set_release(out);
	return rc;
}

int kvb_sharegpt_load(const char *path, struct kvb_conv_set *out)
{
	size_t len;
	char *s = read_data(path, &len);
	int rc;

	memset(out, 0, sizeof(*out));
	if (!s)
		return -1;
	rc = kvb_sharegpt_parse(path, s, len, out);
	free(s);
	return rc;
}

/* ---- generation ----------------------------------------------------------- */

void kvb_gen_set_release(struct kvb_gen_set *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->v[i].prompt);
		free(s->v[i].reference);
		free(s->v[i].answer_full);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int gen_line(const char *name, int line, json_t *o, void *ctx)
{
	struct kvb_gen_set *s = ctx;
	const char *q = jstr(o, "question"), *a = jstr(o, "answer");
	const char *p = jstr(o, "prompt"), *ref = jstr(o, "reference");
	struct kvb_gen_item it = { 0 };

	it.line = line;
	if (q && a) {
		const char *h = strstr(a, "####");
		struct kv_buf num = KV_BUF_INIT(64);
		if (!h) {
			kv_error("%s:%d: gsm8k answer has no '#### N' line", name, line);
			return -1;
		}
		h += 4;
		while (*h == ' ')
			h++;
		for (; *h && *h != '\n' && *h != ' ' && *h != '\r'; h++)
			if (*h != ',' && *h != '$' && kv_buf_putc(&num, *h) < 0)
				break;
		if (!num.len || num.len >= 63) {
			kv_error("%s:%d: gsm8k answer: no number after '####'", name, line);
			kv_buf_release(&num);
			return -1;
		}
		it.prompt = xstrdup(q);
		it.reference = kv_buf_detach(&num, NULL);
		it.answer_full = xstrdup(a);
		it.gsm8k = true;
	} else if (p) {
		if (json_object_get(o, "reference") && !ref && !json_is_null(json_object_get(o, "reference"))) {
			kv_error("%s:%d: \"reference\" must be a string", name, line);
			return -1;
		}
		it.prompt = xstrdup(p);
		it.reference = ref ? xstrdup(ref) : NULL;
	} else {
		kv_error("%s:%d: expected string \"question\" and \"answer\" (gsm8k) or \"prompt\"",
			 name, line);
		return -1;
	}
	s->v = xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
	s->v[s->n++] = it;
	return 0;
}

int kvb_gen_parse(const char *name, const char *text, size_t len, struct kvb_gen_set *out)
{
	memset(out, 0, sizeof(*out));
	if (each_jsonl(name, text, len, gen_line, out) < 0) {
		kvb_gen_set_release(out);
		return -1;
	}
	if (!out->n) {
		kv_error("%s:1: no items", name);
		return -1;
	}
	return 0;
}

int kvb_gen_load(const char *path, struct kvb_gen_set *out)
{
	size_t len;
	char *s = read_data(path, &len);
	int rc;

	memset(out, 0, sizeof(*out));
	if (!s)
		return -1;
	rc = kvb_gen_parse(path, s, len, out);
	free(s);
	return rc;
}

/* ---- RAG -------------------------------------------------------------------- */

static void rag_item_release(struct kvb_rag_item *it)
{
	for (size_t j = 0; j < it->n_ctx; j++) {
		free(it->title[j]);
		free(it->text[j]);
	}
	free(it->title);
	free(it->text);
	for (size_t j = 0; j < it->n_answers; j++)
		free(it->answers[j]);
	free(it->answers);
	free(it->question);
	memset(it, 0, sizeof(*it));
}

void kvb_rag_set_release(struct kvb_rag_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		rag_item_release(&s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int rag_line(const char *name, int line, json_t *o, void *ctx)
{
	struct kvb_rag_set *s = ctx;
	const json_t *ctxs = json_object_get(o, "ctxs"), *ans = json_object_get(o, "answers");
	const char *q = jstr(o, "question");
	struct kvb_rag_item it = { 0 };

	it.line = line;
	if (!json_is_array(ctxs) || !json_array_size(ctxs)) {
		kv_error("%s:%d: \"ctxs\" must be a non-empty list", name, line);
		return -1;
	}
	if (!q) {
		kv_error("%s:%d: \"question\" must be a string", name, line);
		return -1;
	}
	if (!json_is_array(ans) || !json_array_size(ans)) {
		kv_error("%s:%d: \"answers\" must be a non-empty list of strings", name, line);
		return -1;
	}
	it.n_ctx = json_array_size(ctxs);
	it.title = xcalloc(it.n_ctx, sizeof(char *));
	it.text = xcalloc(it.n_ctx, sizeof(char *));
	for (size_t j = 0; j < it.n_ctx; j++) {
		const json_t *c = json_array_get(ctxs, j);
		const char *ti = json_is_object(c) ? jstr(c, "title") : NULL;
		const char *tx = json_is_object(c) ? jstr(c, "text") : NULL;
		if (!ti || !tx) {
			kv_error("%s:%d: ctxs[%zu] needs string \"title\" and \"text\"", name, line, j);
			rag_item_release(&it);
			return -1;
		}
		it.title[j] = xstrdup(ti);
		it.text[j] = xstrdup(tx);
	}
	it.answers = xcalloc(json_array_size(ans), sizeof(char *));
	for (size_t j = 0; j < json_array_size(ans); j++) {
		const json_t *a = json_array_get(ans, j);
		if (!json_is_string(a)) {
			kv_error("%s:%d: answers[%zu] must be a string", name, line, j);
			rag_item_release(&it);
			return -1;
		}
		it.answers[it.n_answers++] = xstrdup(json_string_value(a));
	}
	it.question = xstrdup(q);
	s->v = xrealloc(s->v, (s->n + 1) * sizeof(*s->v));
	s->v[s->n++] = it;
	return 0;
}

int kvb_rag_parse(const char *name, const char *text, size_t len, struct kvb_rag_set *out)
{
	memset(out, 0, sizeof(*out));
	if (each_jsonl(name, text, len, rag_line, out) < 0) {
		kvb_rag_set_release(out);
		return -1;
	}
	if (!out->n) {
		kv_error("%s:1: no samples", name);
		return -1;
	}
	return 0;
}

int kvb_rag_load(const char *path, struct kvb_rag_set *out)
{
	size_t len;
	char *s = read_data(path, &len);
	int rc;

	memset(out, 0, sizeof(*out));
	if (!s)
		return -1;
	rc = kvb_rag_parse(path, s, len, out);
	free(s);
	return rc;
}
