/* OpenAI response and stream-chunk reader; see oai.h. */
#include "oai.h"

#include <jansson.h>
#include <math.h>

#include "common/util.h"
#include "common/banned.h"

void kvb_oai_init(struct kvb_oai *o, struct kvb_result *res, enum kvb_endpoint ep,
		  bool echo, const char *echo_prompt)
{
	memset(o, 0, sizeof(*o));
	o->res = res;
	o->ep = ep;
	o->echo = echo;
	o->echo_prompt = echo_prompt;
	kv_buf_init(&o->text, KVB_OAI_MAX_TEXT);
	res->prompt_tokens = -1;
	res->completion_tokens = -1;
	res->cached_tokens = -1;
}

static void free_lps(struct kvb_tok_lp *lps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(lps[i].token);
		for (int j = 0; j < lps[i].n_top; j++)
			free(lps[i].top[j].token);
		free(lps[i].top);
	}
	free(lps);
}

void kvb_oai_release(struct kvb_oai *o)
{
	kv_buf_release(&o->text);
	free(o->tok_t);
	free(o->ids);
	free_lps(o->lps, o->n_lps);
	o->tok_t = NULL;
	o->ids = NULL;
	o->lps = NULL;
	o->n_tok_t = o->n_ids = o->n_lps = 0;
}

static void set_err(struct kvb_result *res, enum kvb_status st, char *msg)
{
	if (res->status == KVB_OK) {
		res->status = st;
		free(res->error);
		res->error = msg;
	} else {
		free(msg);
	}
}

/* One line: control characters become spaces, at most 300 bytes. */
static char *one_line(const char *s, size_t n)
{
	size_t k = KV_MIN(n, 300);
	char *out = xstrndup(s, k);

	for (size_t i = 0; out[i]; i++)
		if ((unsigned char)out[i] < 0x20)
			out[i] = ' ';
	return out;
}

static char *error_of(json_t *root)
{
	json_t *e = json_object_get(root, "error"), *m;

	if (json_is_string(e))
		return one_line(json_string_value(e), json_string_length(e));
	if (json_is_object(e)) {
		m = json_object_get(e, "message");
		if (json_is_string(m))
			return one_line(json_string_value(m), json_string_length(m));
		return xstrdup("error object without a message");
	}
	if (e && !json_is_null(e))
		return xstrdup("error of an unexpected type");
	m = json_object_get(root, "object");
	if (json_is_string(m) && !strcmp(json_string_value(m), "error")) {
		m = json_object_get(root, "message");
		if (json_is_string(m))
			return one_line(json_string_value(m), json_string_length(m));
		return xstrdup("error object without a message");
	}
	return NULL;
}

char *kvb_oai_error_message(const char *body, size_t len)
{
	json_t *root = json_loadb(body, len, 0, NULL);
	char *msg = NULL;

	if (json_is_object(root)) {
		json_t *m;

		msg = error_of(root);
		if (!msg && (json_is_string(m = json_object_get(root, "message")) ||
			     json_is_string(m = json_object_get(root, "detail"))))
			msg = one_line(json_string_value(m), json_string_length(m));
	}
	json_decref(root);
	if (!msg) {
		while (len && (body[len - 1] == '\n' || body[len - 1] == '\r' || body[len - 1] == ' '))
			len--;
		msg = len ? one_line(body, len) : xstrdup("empty body");
	}
	return msg;
}

static int int_of(json_t *v)
{
	json_int_t i;

	if (!json_is_integer(v))
		return -1;
	i = json_integer_value(v);
	return i < 0 ? -1 : (i > INT32_MAX ? INT32_MAX : (int)i);
}

static void read_usage(struct kvb_oai *o, json_t *root)
{
	json_t *u = json_object_get(root, "usage"), *d, *t;
	int v;

	if (json_is_object(u)) {
		if ((v = int_of(json_object_get(u, "prompt_tokens"))) >= 0)
			o->res->prompt_tokens = v;
		if ((v = int_of(json_object_get(u, "completion_tokens"))) >= 0)
			o->res->completion_tokens = v;
		d = json_object_get(u, "prompt_tokens_details");
		if (json_is_object(d) && (v = int_of(json_object_get(d, "cached_tokens"))) >= 0)
			o->res->cached_tokens = v;
	}
	t = json_object_get(root, "timings");
	if (json_is_object(t) && (v = int_of(json_object_get(t, "cache_n"))) >= 0)
		o->res->cached_tokens = v;
}

static float lp_of(json_t *v)
{
	return json_is_number(v) ? (float)json_number_value(v) : NAN;
}

static struct kvb_tok_lp *new_lp(struct kvb_oai *o)
{
	struct kvb_tok_lp *lp;

	if (o->n_lps == o->a_lps) {
		o->a_lps = o->a_lps ? 2 * o->a_lps : 16;
		o->lps = xrealloc(o->lps, o->a_lps * sizeof(*o->lps));
	}
	lp = &o->lps[o->n_lps++];
	memset(lp, 0, sizeof(*lp));
	return lp;
}

static char *str_dup(json_t *v)
{
	return json_is_string(v) ? xstrndup(json_string_value(v), json_string_length(v)) : xstrdup("");
}

/* Returns the number of entries read. */
static size_t read_logprobs(struct kvb_oai *o, json_t *lp)
{
	json_t *content = json_object_get(lp, "content"), *toks, *lps, *tops, *e, *t;
	size_t i, j, n = 0;
	const char *k;

	if (json_is_array(content)) {
		json_array_foreach(content, i, e) {
			struct kvb_tok_lp *x = new_lp(o);

			x->token = str_dup(json_object_get(e, "token"));
			x->logprob = lp_of(json_object_get(e, "logprob"));
			tops = json_object_get(e, "top_logprobs");
			if (json_is_array(tops) && json_array_size(tops)) {
				x->top = xcalloc(json_array_size(tops), sizeof(*x->top));
				json_array_foreach(tops, j, t) {
					x->top[x->n_top].token = str_dup(json_object_get(t, "token"));
					x->top[x->n_top].logprob = lp_of(json_object_get(t, "logprob"));
					x->n_top++;
				}
			}
			n++;
		}
		return n;
	}
	toks = json_object_get(lp, "tokens");
	if (!json_is_array(toks))
		return 0;
	lps = json_object_get(lp, "token_logprobs");
	tops = json_object_get(lp, "top_logprobs");
	json_array_foreach(toks, i, e) {
		struct kvb_tok_lp *x = new_lp(o);
		json_t *top = json_is_array(tops) ? json_array_get(tops, i) : NULL;

		x->token = str_dup(e);
		x->logprob = json_is_array(lps) ? lp_of(json_array_get(lps, i)) : NAN;
		if (json_is_object(top) && json_object_size(top)) {
			x->top = xcalloc(json_object_size(top), sizeof(*x->top));
			json_object_foreach(top, k, t) {
				x->top[x->n_top].token = xstrdup(k);
				x->top[x->n_top].logprob = lp_of(t);
				x->n_top++;
			}
		}
		n++;
	}
	return n;
}

static int add_text(struct kvb_oai *o, json_t *v, size_t *added)
{
	if (!json_is_string(v) || !json_string_length(v))
		return 0;
	if (kv_buf_append(&o->text, json_string_value(v), json_string_length(v)) < 0) {
		set_err(o->res, KVB_ERR_STREAM, xstrdup("output text longer than 64 MiB"));
		return -1;
	}
	*added += json_string_length(v);
	return 0;
}

static void stamp(struct kvb_oai *o, size_t k, uint64_t t)
{
	if (!k || !t)
		return;
	if (o->n_tok_t + k > o->a_tok_t) {
		o->a_tok_t = KV_MAX(2 * o->a_tok_t, o->n_tok_t + k + 16);
		o->tok_t = xrealloc(o->tok_t, o->a_tok_t * sizeof(*o->tok_t));
	}
	for (size_t i = 0; i < k; i++)
		o->tok_t[o->n_tok_t++] = t;
	if (!o->res->t_first_token)
		o->res->t_first_token = t;
}

static json_t *choice0(json_t *root)
{
	json_t *ch = json_object_get(root, "choices"), *c;
	size_t i;

	if (!json_is_array(ch))
		return NULL;
	json_array_foreach(ch, i, c) {
		json_t *idx = json_object_get(c, "index");
		if (!idx || (json_is_integer(idx) && json_integer_value(idx) == 0))
			return json_is_object(c) ? c : NULL;
	}
	return NULL;
}

/* Reads one parsed chunk or body. t: arrival stamp (0 = do not stamp tokens). */
static int read_root(struct kvb_oai *o, json_t *root, uint64_t t, bool whole)
{
	json_t *c, *msg, *ids, *lp, *fr, *e;
	size_t added = 0, n_lp = 0, n_id = 0, k, i;
	char *err;

	if (!json_is_object(root)) {
		set_err(o->res, KVB_ERR_STREAM, xstrdup("response is not a json object"));
		return -1;
	}
	err = error_of(root);
	if (err) {
		set_err(o->res, KVB_ERR_SERVER, err);
		return -1;
	}
	read_usage(o, root);
	c = choice0(root);
	if (!c)
		return 0;
	if (o->ep == KVB_EP_CHAT) {
		msg = json_object_get(c, whole ? "message" : "delta");
		if (json_is_object(msg)) {
			if (add_text(o, json_object_get(msg, "content"), &added) < 0)
				return -1;
			e = json_object_get(msg, "reasoning_content");
			if (json_is_string(e) && json_string_length(e))
				added += json_string_length(e);
		}
	} else if (add_text(o, json_object_get(c, "text"), &added) < 0) {
		return -1;
	}
	ids = json_object_get(c, "token_ids");
	if (json_is_array(ids)) {
		n_id = json_array_size(ids);
		if (o->n_ids + n_id > o->a_ids) {
			o->a_ids = KV_MAX(2 * o->a_ids, o->n_ids + n_id + 16);
			o->ids = xrealloc(o->ids, o->a_ids * sizeof(*o->ids));
		}
		json_array_foreach(ids, i, e) {
			json_int_t v = json_is_integer(e) ? json_integer_value(e) : -1;
			o->ids[o->n_ids++] = (v < INT32_MIN || v > INT32_MAX) ? -1 : (int32_t)v;
		}
	}
	lp = json_object_get(c, "logprobs");
	if (json_is_object(lp))
		n_lp = read_logprobs(o, lp);
	fr = json_object_get(c, "finish_reason");
	if (json_is_string(fr)) {
		free(o->res->finish_reason);
		o->res->finish_reason = str_dup(fr);
		o->finished = true;
	}
	k = n_lp ? n_lp : n_id ? n_id : added ? 1 : 0;
	if (!whole)
		stamp(o, k, t);
	return 0;
}

int kvb_oai_chunk(struct kvb_oai *o, const char *data, size_t len, uint64_t t)
{
	json_error_t jerr;
	json_t *root;
	int rc;

	if (len == 6 && !memcmp(data, "[DONE]", 6)) {
		o->done = true;
		return 1;
	}
	root = json_loadb(data, len, 0, &jerr);
	if (!root) {
		set_err(o->res, KVB_ERR_STREAM,
			xasprintf("malformed json in stream at byte %d: %s", jerr.position, jerr.text));
		return -1;
	}
	rc = read_root(o, root, t, false);
	json_decref(root);
	return rc;
}

int kvb_oai_body(struct kvb_oai *o, const char *data, size_t len, uint64_t t)
{
	json_error_t jerr;
	json_t *root = json_loadb(data, len, 0, &jerr);
	int rc;

	if (!root) {
		set_err(o->res, KVB_ERR_STREAM,
			xasprintf("malformed json response at byte %d: %s", jerr.position, jerr.text));
		return -1;
	}
	rc = read_root(o, root, t, true);
	json_decref(root);
	if (!rc) {
		o->done = true;
		o->res->t_first_token = t;
		if (o->res->completion_tokens < 0)
			o->res->completion_tokens = (int)(o->n_lps ? o->n_lps : o->n_ids);
	}
	return rc;
}

void kvb_oai_finish(struct kvb_oai *o)
{
	struct kvb_result *res = o->res;
	size_t np, len;

	if (o->echo && res->prompt_tokens > 0 && o->n_lps >= (size_t)res->prompt_tokens) {
		np = (size_t)res->prompt_tokens;
		res->prompt_lps = xmalloc(np * sizeof(*res->prompt_lps));
		memcpy(res->prompt_lps, o->lps, np * sizeof(*o->lps));
		res->n_prompt_lps = np;
		memmove(o->lps, o->lps + np, (o->n_lps - np) * sizeof(*o->lps));
		o->n_lps -= np;
		np = KV_MIN(np, o->n_tok_t);
		if (np) /* tok_t is NULL without streaming */
			memmove(o->tok_t, o->tok_t + np, (o->n_tok_t - np) * sizeof(*o->tok_t));
		o->n_tok_t -= np;
		res->t_first_token = o->n_tok_t ? o->tok_t[0] : 0;
	}
	if (o->echo && o->echo_prompt) {
		len = strlen(o->echo_prompt);
		if (o->text.len >= len && !memcmp(o->text.data, o->echo_prompt, len))
			kv_buf_consume(&o->text, len);
	}
	if (res->completion_tokens < 0 && o->n_tok_t)
		res->completion_tokens = (int)o->n_tok_t;
	free(res->text);
	res->text = kv_buf_detach(&o->text, NULL);
	free(res->tok_t);
	res->tok_t = o->tok_t;
	res->n_tok_t = o->n_tok_t;
	free(res->token_ids);
	res->token_ids = o->ids;
	res->n_token_ids = o->n_ids;
	res->lps = o->lps;
	res->n_lps = o->n_lps;
	o->tok_t = NULL;
	o->ids = NULL;
	o->lps = NULL;
	o->n_tok_t = o->n_ids = o->n_lps = 0;
}

const char *kvb_oai_path(enum kvb_endpoint ep)
{
	return ep == KVB_EP_CHAT ? "/v1/chat/completions" : "/v1/completions";
}

char *kvb_oai_request_body(const struct kvb_req *req, const char *model, bool stream,
			   bool return_token_ids, size_t *len, char **err)
{
	json_t *b = json_object(), *x;
	json_error_t jerr;
	char *out = NULL;

	*err = NULL;
	if (req->model || model)
		json_object_set_new(b, "model", json_string(req->model ? req->model : model));
	if (req->endpoint == KVB_EP_CHAT) {
		x = json_array();
		for (size_t i = 0; i < req->n_msgs; i++)
			json_array_append_new(x, json_pack("{s:s,s:s}", "role",
							   req->msgs[i].role ? req->msgs[i].role : "user",
							   "content",
							   req->msgs[i].content ? req->msgs[i].content : ""));
		json_object_set_new(b, "messages", x);
	} else if (req->n_prompt_ids) {
		x = json_array();
		for (size_t i = 0; i < req->n_prompt_ids; i++)
			json_array_append_new(x, json_integer(req->prompt_ids[i]));
		json_object_set_new(b, "prompt", x);
	} else {
		json_object_set_new(b, "prompt", json_string(req->prompt ? req->prompt : ""));
	}
	if (req->max_tokens > 0)
		json_object_set_new(b, "max_tokens", json_integer(req->max_tokens));
	if (req->min_tokens > 0)
		json_object_set_new(b, "min_tokens", json_integer(req->min_tokens));
	if (req->ignore_eos)
		json_object_set_new(b, "ignore_eos", json_true());
	json_object_set_new(b, "temperature", json_real(req->temperature));
	if (req->logprobs >= 0) {
		if (req->endpoint == KVB_EP_CHAT) {
			json_object_set_new(b, "logprobs", json_true());
			json_object_set_new(b, "top_logprobs", json_integer(req->logprobs));
		} else {
			json_object_set_new(b, "logprobs", json_integer(req->logprobs));
		}
	}
	if (req->echo && req->endpoint == KVB_EP_COMPLETIONS)
		json_object_set_new(b, "echo", json_true());
	if (return_token_ids)
		json_object_set_new(b, "return_token_ids", json_true());
	json_object_set_new(b, "stream", json_boolean(stream));
	if (stream)
		json_object_set_new(b, "stream_options", json_pack("{s:b}", "include_usage", 1));
	if (req->extra_json) {
		x = json_loads(req->extra_json, 0, &jerr);
		if (!json_is_object(x)) {
			*err = xasprintf("extra_json of request %llu is not a json object: %s",
					 (unsigned long long)req->id, x ? "not an object" : jerr.text);
			json_decref(x);
			goto out;
		}
		json_object_update(b, x);
		json_decref(x);
	}
	out = json_dumps(b, JSON_COMPACT);
	*len = strlen(out);
out:
	json_decref(b);
	return out;
}
