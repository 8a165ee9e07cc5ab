/* Shared pieces of the workloads: rng, request construction, list workload. */
#include "common/util.h"

#include <stdarg.h>

#include "common/buf.h"
#include "workloads/wl_util.h"
#include "common/banned.h"

void kvb_rng_seed(struct kvb_rng *r, uint64_t seed)
{
	r->s = seed;
}

uint64_t kvb_rng_next(struct kvb_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint64_t kvb_rng_below(struct kvb_rng *r, uint64_t n)
{
	uint64_t lim = UINT64_MAX - UINT64_MAX % n, x;
	do
		x = kvb_rng_next(r);
	while (x >= lim);
	return x % n;
}

void kvb_rng_shuffle_int(struct kvb_rng *r, int *v, size_t n)
{
	for (size_t i = n; i > 1; i--) {
		size_t j = kvb_rng_below(r, i);
		int t = v[i - 1];
		v[i - 1] = v[j];
		v[j] = t;
	}
}

struct kvb_req *kvb_req_new(enum kvb_endpoint ep, const char *key_fmt, ...)
{
	struct kvb_req *r = xcalloc(1, sizeof(*r));
	struct kv_buf b = KV_BUF_INIT(0);
	va_list ap;
	char tmp[512];

	va_start(ap, key_fmt);
	vsnprintf(tmp, sizeof(tmp), key_fmt, ap);
	va_end(ap);
	kv_buf_puts(&b, tmp);
	r->key = kv_buf_detach(&b, NULL);
	r->pass = -1;
	r->session = -1;
	r->at_s = -1;
	r->endpoint = ep;
	r->max_tokens = 16;
	r->logprobs = -1;
	r->context_len = -1;
	r->query_len = -1;
	return r;
}

void kvb_req_add_msg(struct kvb_req *r, const char *role, const char *content)
{
	r->msgs = xrealloc(r->msgs, (r->n_msgs + 1) * sizeof(*r->msgs));
	r->msgs[r->n_msgs].role = xstrdup(role);
	r->msgs[r->n_msgs].content = xstrdup(content);
	r->n_msgs++;
}

void kvb_req_set_text(struct kvb_req *r, const char *text)
{
	if (r->endpoint == KVB_EP_CHAT)
		kvb_req_add_msg(r, "user", text);
	else
		r->prompt = xstrdup(text);
}

static char *dup_or_null(const char *s)
{
	return s ? xstrdup(s) : NULL;
}

struct kvb_req *kvb_req_dup(const struct kvb_req *r)
{
	struct kvb_req *d = xmalloc(sizeof(*d));
	*d = *r;
	d->key = xstrdup(r->key);
	d->prompt = dup_or_null(r->prompt);
	d->prompt_ids = NULL;
	if (r->n_prompt_ids) {
		d->prompt_ids = xmalloc(r->n_prompt_ids * sizeof(*d->prompt_ids));
		memcpy(d->prompt_ids, r->prompt_ids, r->n_prompt_ids * sizeof(*d->prompt_ids));
	}
	d->msgs = NULL;
	d->n_msgs = 0;
	for (size_t i = 0; i < r->n_msgs; i++)
		kvb_req_add_msg(d, r->msgs[i].role, r->msgs[i].content);
	d->extra_json = dup_or_null(r->extra_json);
	d->model = dup_or_null(r->model);
	d->expected = dup_or_null(r->expected);
	return d;
}

/* ---- list workload ---------------------------------------------------------- */

struct kvb_wl_list {
	struct kvb_req **v;
	bool *barrier;
	size_t n, alloc, next;
	size_t outstanding;
	uint64_t next_id;
	char *name;
	struct kvb_workload_ops ops;
};

struct kvb_wl_list *kvb_wl_list_new(void)
{
	return xcalloc(1, sizeof(struct kvb_wl_list));
}

void kvb_wl_list_add(struct kvb_wl_list *l, struct kvb_req *r, bool barrier)
{
	if (l->n == l->alloc) {
		l->alloc = l->alloc ? l->alloc * 2 : 64;
		l->v = xrealloc(l->v, l->alloc * sizeof(*l->v));
		l->barrier = xrealloc(l->barrier, l->alloc * sizeof(*l->barrier));
	}
	l->v[l->n] = r;
	l->barrier[l->n] = barrier;
	l->n++;
}

size_t kvb_wl_list_len(const struct kvb_wl_list *l)
{
	return l->n;
}

const struct kvb_req *kvb_wl_list_at(const struct kvb_wl_list *l, size_t i)
{
	return i < l->n ? l->v[i] : NULL;
}

void kvb_wl_list_free(struct kvb_wl_list *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		kvb_req_free(l->v[i]);
	free(l->v);
	free(l->barrier);
	free(l->name);
	free(l);
}

static int list_next(struct kvb_workload *wl, struct kvb_req **out)
{
	struct kvb_wl_list *l = wl->priv;
	if (l->next >= l->n)
		return -1;
	if (l->barrier[l->next] && l->outstanding)
		return 0;
	*out = l->v[l->next];
	l->v[l->next] = NULL;
	(*out)->id = l->next_id++;
	l->next++;
	l->outstanding++;
	return 1;
}

static void list_done(struct kvb_workload *wl, const struct kvb_req *req,
		      const struct kvb_result *res)
{
	struct kvb_wl_list *l = wl->priv;
	(void)req;
	(void)res;
	if (l->outstanding)
		l->outstanding--;
}

static void list_free(struct kvb_workload *wl)
{
	if (!wl)
		return;
	kvb_wl_list_free(wl->priv);
	free(wl);
}

struct kvb_workload *kvb_wl_list_workload(struct kvb_wl_list *l, const char *name)
{
	struct kvb_workload *wl = xcalloc(1, sizeof(*wl));
	l->name = xstrdup(name);
	l->ops.name = l->name;
	l->ops.next = list_next;
	l->ops.done = list_done;
	l->ops.free = list_free;
	wl->ops = &l->ops;
	wl->priv = l;
	return wl;
}

int kvb_parse_int_list(const char *key, const char *s, int64_t min, int64_t max,
		       int **out, size_t *n)
{
	const char *p = s;
	*out = NULL;
	*n = 0;
	for (;;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		char tmp[32];
		int64_t v;
		if (!l || l >= sizeof(tmp))
			goto bad;
		memcpy(tmp, p, l);
		tmp[l] = '\0';
		if (kv_parse_i64(tmp, min, max, &v) < 0)
			goto bad;
		*out = xrealloc(*out, (*n + 1) * sizeof(**out));
		(*out)[(*n)++] = (int)v;
		if (!e)
			break;
		p = e + 1;
		if (*n >= 4096)
			goto bad;
	}
	return 0;
bad:
	kv_error("--set %s: expected a comma list of integers in %lld..%lld, got '%s'", key,
		 (long long)min, (long long)max, s);
	free(*out);
	*out = NULL;
	*n = 0;
	return -1;
}

char *kvb_filler(const char *tag, const char *word, size_t n)
{
	char *s = xmalloc(n + 1);
	size_t tl = strlen(tag), wl = strlen(word), i = 0;

	for (; i < n && i < tl; i++)
		s[i] = tag[i];
	for (size_t k = 0; i < n; i++, k = (k + 1) % (wl + 1))
		s[i] = k < wl ? word[k] : ' ';
	s[n] = '\0';
	return s;
}

int kvb_wl_exact_ids(const struct kvb_wl_params *p, const char *what, const char *tag,
		     const char *unit, size_t n, int32_t **out)
{
	int32_t *t = NULL, *u = NULL, *v;
	size_t nt = 0, nu = 0;
	int rc = -1;

	*out = NULL;
	if (!p->tokenize) {
		kv_error("%s: prompt_format=ids needs a target server to tokenize with", what);
		return -1;
	}
	if (p->tokenize(p->tokenize_ctx, tag, &t, &nt) < 0 ||
	    p->tokenize(p->tokenize_ctx, unit, &u, &nu) < 0)
		goto out;
	if (!nu) {
		kv_error("%s: the server's /tokenize returned no ids for '%s'", what, unit);
		goto out;
	}
	if (nt > n) {
		kv_error("%s: length %zu is shorter than the %zu tokens of the prompt's tag", what,
			 n, nt);
		goto out;
	}
	v = xmalloc(KV_MAX(n, (size_t)1) * sizeof(*v));
	if (nt)
		memcpy(v, t, nt * sizeof(*v));
	for (size_t i = nt, k = 0; i < n; i++, k = (k + 1) % nu)
		v[i] = u[k];
	*out = v;
	rc = 0;
out:
	free(t);
	free(u);
	return rc;
}

int kvb_wl_get_prompt_format(const struct kvb_wl_params *p, const char *workload, bool *ids)
{
	const char *fmt;

	*ids = false;
	if (kvb_wl_get_str(p, "prompt_format", "text", &fmt) < 0)
		return -1;
	if (strcmp(fmt, "text") && strcmp(fmt, "ids")) {
		kv_error("%s: prompt_format: expected text or ids, got '%s'", workload, fmt);
		return -1;
	}
	*ids = !strcmp(fmt, "ids");
	if (*ids && p->endpoint != KVB_EP_COMPLETIONS) {
		kv_error("%s: prompt_format=ids needs the completions endpoint", workload);
		return -1;
	}
	if (*ids && !p->tokenize) {
		kv_error("%s: prompt_format=ids needs a target server's /tokenize", workload);
		return -1;
	}
	return 0;
}
