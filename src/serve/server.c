#include "common/util.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

#include "engine.h"
#include "server.h"
#include "tokenizer.h"
#include "common/buf.h"
#include "common/clock.h"
#include "common/banned.h"

struct server {
	struct engine *e;
	struct server_config cfg;
	struct MHD_Daemon *d;
	int port;
	atomic_uint_fast64_t next_id;
};

struct conn_ctx {
	struct kv_buf body;
	bool too_big;
};

/* ---- responses ---- */

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *ctype,
				 const char *body, size_t len)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	if (ctype)
		MHD_add_response_header(r, "Content-Type", ctype);
	enum MHD_Result ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *c, unsigned status, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	enum MHD_Result ret = send_text(c, status, "application/json", s, strlen(s));
	free(s);
	json_decref(j);
	return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *param,
				  const char *fmt, ...) KV_PRINTF(4, 5);
static enum MHD_Result send_error(struct MHD_Connection *c, unsigned status, const char *param,
				  const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	const char *type = status == 400 ? "BadRequestError" : status == 404 ? "NotFoundError" :
			   status == 405 ? "MethodNotAllowed" : status == 413 ? "RequestTooLarge" :
			   status == 503 ? "ServiceUnavailableError" : "InternalServerError";
	json_t *j = json_pack("{s:{s:s,s:s,s:o,s:i}}", "error", "message", msg, "type", type, "param",
			      param ? json_string(param) : json_null(), "code", (int)status);
	return send_json(c, status, j);
}

/* ---- request parsing ---- */

struct gen_req {
	bool chat, stream, include_usage, continuous_usage, echo, return_token_ids;
	bool chat_logprobs;
	int top_logprobs;
	struct engine_sampling sp;
	int32_t *toks;
	int ntok, cap;
	const char *model;   /* the requested name (served name or an adapter's), not owned */
};

struct perr {
	unsigned status;
	const char *param;
	char msg[256];
};

static int fail(struct perr *pe, unsigned status, const char *param, const char *fmt, ...) KV_PRINTF(4, 5);
static int fail(struct perr *pe, unsigned status, const char *param, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pe->msg, sizeof(pe->msg), fmt, ap);
	va_end(ap);
	pe->status = status;
	pe->param = param;
	return -1;
}

static int get_bool(json_t *o, const char *k, bool *out, struct perr *pe)
{
	json_t *v = json_object_get(o, k);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return fail(pe, 400, k, "%s: expected a boolean", k);
	*out = json_is_true(v);
	return 0;
}

static int get_int(json_t *o, const char *k, int64_t lo, int64_t hi, int64_t *out, struct perr *pe)
{
	json_t *v = json_object_get(o, k);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return fail(pe, 400, k, "%s: expected an integer", k);
	json_int_t x = json_integer_value(v);
	if (x < lo || x > hi)
		return fail(pe, 400, k, "%s: must be in %" PRId64 "..%" PRId64 ", got %" JSON_INTEGER_FORMAT,
			    k, lo, hi, x);
	*out = x;
	return 1;
}

static int get_num(json_t *o, const char *k, double lo, double hi, double *out, struct perr *pe)
{
	json_t *v = json_object_get(o, k);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v))
		return fail(pe, 400, k, "%s: expected a number", k);
	double x = json_number_value(v);
	if (!(x >= lo && x <= hi))
		return fail(pe, 400, k, "%s: must be in [%g, %g], got %g", k, lo, hi, x);
	*out = x;
	return 0;
}

static void push_tok(struct gen_req *g, int32_t t)
{
	if (g->ntok == g->cap) {
		g->cap = g->cap ? 2 * g->cap : 64;
		g->toks = xrealloc(g->toks, (size_t)g->cap * sizeof(int32_t));
	}
	g->toks[g->ntok++] = t;
}

static int parse_token_array(json_t *a, struct gen_req *g, const char *param, struct perr *pe)
{
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= TOK_VOCAB)
			return fail(pe, 400, param, "%s: token ids must be integers in 0..%d", param, TOK_VOCAB - 1);
		push_tok(g, (int32_t)json_integer_value(v));
	}
	return 0;
}

static int parse_prompt(json_t *p, struct gen_req *g, bool add_special, struct perr *pe)
{
	if (json_is_string(p)) {
		tok_encode(json_string_value(p), json_string_length(p), add_special, &g->toks, &g->ntok, &g->cap);
		return 0;
	}
	if (json_is_array(p)) {
		if (json_array_size(p) == 0)
			return fail(pe, 400, "prompt", "prompt: must not be empty");
		json_t *f = json_array_get(p, 0);
		if (json_is_integer(f))
			return parse_token_array(p, g, "prompt", pe);
		if (json_array_size(p) != 1)
			return fail(pe, 400, "prompt", "prompt: only one prompt per request is supported");
		if (json_is_string(f) || json_is_array(f))
			return parse_prompt(f, g, add_special, pe);
	}
	return fail(pe, 400, "prompt", "prompt: expected a string or an array of token ids");
}

static const char *role_token_name(const char *role, int32_t *t)
{
	if (!strcmp(role, "system") || !strcmp(role, "developer"))
		*t = TOK_SYSTEM;
	else if (!strcmp(role, "user"))
		*t = TOK_USER;
	else if (!strcmp(role, "assistant"))
		*t = TOK_ASSISTANT;
	else
		return NULL;
	return role;
}

/* The chat template of docs/kvserve.md. */
static int parse_messages(json_t *msgs, struct gen_req *g, bool add_gen, struct perr *pe)
{
	size_t i;
	json_t *m;
	if (!json_is_array(msgs) || json_array_size(msgs) == 0)
		return fail(pe, 400, "messages", "messages: expected a non-empty array");
	push_tok(g, TOK_BOS);
	json_array_foreach(msgs, i, m) {
		json_t *role = json_object_get(m, "role"), *content = json_object_get(m, "content");
		int32_t rt;
		if (!json_is_object(m) || !json_is_string(role) || !role_token_name(json_string_value(role), &rt))
			return fail(pe, 400, "messages", "messages[%zu].role: expected system, user or assistant", i);
		push_tok(g, rt);
		if (json_is_string(content)) {
			tok_encode(json_string_value(content), json_string_length(content), false, &g->toks,
				   &g->ntok, &g->cap);
		} else if (json_is_array(content)) {
			size_t k;
			json_t *part;
			json_array_foreach(content, k, part) {
				json_t *tx = json_object_get(part, "text");
				if (!json_is_string(tx))
					return fail(pe, 400, "messages", "messages[%zu].content[%zu]: only text parts are supported", i, k);
				tok_encode(json_string_value(tx), json_string_length(tx), false, &g->toks, &g->ntok, &g->cap);
			}
		} else if (!json_is_null(content)) {
			return fail(pe, 400, "messages", "messages[%zu].content: expected a string or an array of text parts", i);
		}
		push_tok(g, TOK_END);
	}
	if (add_gen)
		push_tok(g, TOK_ASSISTANT);
	return 0;
}

static int check_model(struct server *s, json_t *req, struct gen_req *g, struct perr *pe)
{
	json_t *m = json_object_get(req, "model");
	if (!m || json_is_null(m)) {
		g->model = s->cfg.model_name;
		return 0;
	}
	if (!json_is_string(m))
		return fail(pe, 400, "model", "model: expected a string");
	const char *name = json_string_value(m);
	int a = 0;
	if (strcmp(name, s->cfg.model_name)) {
		/* an adapter's name selects it, as vLLM's LoRA modules */
		a = s->e && strlen(name) < MODEL_ADAPTER_NAME_MAX ? model_find_adapter(engine_model(s->e), name) : 0;
		if (!a)
			return fail(pe, 404, "model", "The model `%.128s` does not exist.", name);
	}
	g->sp.adapter = a;
	g->model = a ? engine_model(s->e)->adapters[a - 1].cfg.name : s->cfg.model_name;
	return 0;
}

static int parse_gen(struct server *s, json_t *req, bool chat, struct gen_req *g, struct perr *pe)
{
	int64_t v;
	int rc;
	memset(g, 0, sizeof(*g));
	g->chat = chat;
	g->sp.temperature = 1.0;
	g->sp.top_p = 1.0;
	g->sp.logprobs = -1;
	g->sp.max_tokens = chat ? -1 : 16;
	if (!json_is_object(req))
		return fail(pe, 400, NULL, "the request body must be a JSON object");
	if (check_model(s, req, g, pe) < 0)
		return -1;
	if (chat) {
		bool add_gen = true;
		if (get_bool(req, "add_generation_prompt", &add_gen, pe) < 0)
			return -1;
		json_t *msgs = json_object_get(req, "messages");
		if (!msgs)
			return fail(pe, 400, "messages", "messages: required");
		if (parse_messages(msgs, g, add_gen, pe) < 0)
			return -1;
	} else {
		bool add_special = true;
		if (get_bool(req, "add_special_tokens", &add_special, pe) < 0)
			return -1;
		json_t *p = json_object_get(req, "prompt");
		if (!p)
			return fail(pe, 400, "prompt", "prompt: required");
		if (parse_prompt(p, g, add_special, pe) < 0)
			return -1;
	}
	if (g->ntok == 0)
		return fail(pe, 400, chat ? "messages" : "prompt", "the prompt is empty");
	if ((rc = get_int(req, "n", 1, 1, &v, pe)) < 0)
		return fail(pe, 400, "n", "n: only n=1 is supported");
	const char *mt = chat && json_object_get(req, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
	if ((rc = get_int(req, mt, 0, INT32_MAX, &v, pe)) < 0)
		return -1;
	if (rc)
		g->sp.max_tokens = (int)v;
	if ((rc = get_int(req, "min_tokens", 0, INT32_MAX, &v, pe)) < 0)
		return -1;
	if (rc)
		g->sp.min_tokens = (int)v;
	if (g->sp.max_tokens >= 0 && g->sp.min_tokens > g->sp.max_tokens)
		return fail(pe, 400, "min_tokens", "min_tokens must be less than or equal to max_tokens");
	if (get_bool(req, "ignore_eos", &g->sp.ignore_eos, pe) < 0 ||
	    get_num(req, "temperature", 0, 100, &g->sp.temperature, pe) < 0 ||
	    get_num(req, "top_p", 1e-9, 1, &g->sp.top_p, pe) < 0 ||
	    get_bool(req, "stream", &g->stream, pe) < 0 ||
	    get_bool(req, "echo", &g->echo, pe) < 0 ||
	    get_bool(req, "return_token_ids", &g->return_token_ids, pe) < 0)
		return -1;
	if (chat && g->echo)
		g->echo = false; /* chat "echo" repeats the last message in vLLM; not supported, ignored */
	if ((rc = get_int(req, "seed", INT64_MIN, INT64_MAX, &v, pe)) < 0)
		return -1;
	if (rc) {
		g->sp.has_seed = true;
		g->sp.seed = (uint64_t)v;
	}
	if (chat) {
		if (get_bool(req, "logprobs", &g->chat_logprobs, pe) < 0)
			return -1;
		if ((rc = get_int(req, "top_logprobs", 0, ENGINE_MAX_TOP, &v, pe)) < 0)
			return -1;
		if (rc) {
			if (!g->chat_logprobs && v > 0)
				return fail(pe, 400, "top_logprobs", "top_logprobs needs logprobs: true");
			g->top_logprobs = (int)v;
		}
		if (g->chat_logprobs)
			g->sp.logprobs = g->top_logprobs;
	} else {
		if ((rc = get_int(req, "logprobs", 0, ENGINE_MAX_TOP, &v, pe)) < 0)
			return -1;
		if (rc)
			g->sp.logprobs = (int)v;
		g->sp.prompt_logprobs = g->echo && g->sp.logprobs >= 0;
	}
	json_t *so = json_object_get(req, "stream_options");
	if (so && !json_is_null(so)) {
		if (!json_is_object(so))
			return fail(pe, 400, "stream_options", "stream_options: expected an object");
		if (get_bool(so, "include_usage", &g->include_usage, pe) < 0 ||
		    get_bool(so, "continuous_usage_stats", &g->continuous_usage, pe) < 0)
			return -1;
	}
	json_t *salt = json_object_get(req, "cache_salt");
	if (salt && !json_is_null(salt)) {
		if (!json_is_string(salt) || json_string_length(salt) == 0)
			return fail(pe, 400, "cache_salt", "cache_salt: expected a non-empty string");
		g->sp.salt = xstrdup(json_string_value(salt));
	}
	json_t *st = json_object_get(req, "stop");
	if (st && !json_is_null(st)) {
		json_t *one = json_is_string(st) ? st : NULL;
		size_t n = one ? 1 : json_is_array(st) ? json_array_size(st) : 0;
		if (!one && !json_is_array(st))
			return fail(pe, 400, "stop", "stop: expected a string or an array of strings");
		if (n > ENGINE_MAX_STOP)
			return fail(pe, 400, "stop", "stop: at most %d strings", ENGINE_MAX_STOP);
		for (size_t i = 0; i < n; i++) {
			json_t *x = one ? one : json_array_get(st, i);
			if (!json_is_string(x) || json_string_length(x) == 0 || json_string_length(x) > 256)
				return fail(pe, 400, "stop", "stop: expected non-empty strings of at most 256 bytes");
			g->sp.stop[g->sp.nstop++] = xstrdup(json_string_value(x));
		}
	}
	return 0;
}

static void gen_release(struct gen_req *g)
{
	for (int i = 0; i < g->sp.nstop; i++)
		free(g->sp.stop[i]);
	free(g->sp.salt);
	free(g->toks);
	memset(g, 0, sizeof(*g));
}

int server_check_request(const char *model_name, const char *body, size_t len, bool chat,
			 char *err, size_t errlen)
{
	struct server s;
	struct gen_req g;
	struct perr pe = { 0, NULL, "" };
	json_error_t je;
	memset(&s, 0, sizeof(s));
	s.cfg.model_name = model_name;
	json_t *req = json_loadb(body, len, 0, &je);
	if (!req) {
		snprintf(err, errlen, "invalid JSON: %s", je.text);
		return 400;
	}
	int rc = parse_gen(&s, req, chat, &g, &pe) < 0 ? (int)pe.status : 0;
	if (rc)
		snprintf(err, errlen, "%s", pe.msg);
	gen_release(&g);
	json_decref(req);
	return rc;
}

/* ---- output building ---- */

static const char *finish_str(const struct engine_req *r)
{
	switch (r->finish) {
	case ENGINE_STOP:
		return "stop";
	case ENGINE_LENGTH:
		return "length";
	case ENGINE_ABORT:
		return "abort";
	case ENGINE_ERROR:
		return "error";
	default:
		return NULL;
	}
}

static json_t *stop_reason(const struct engine_req *r)
{
	if (r->finish == ENGINE_STOP && r->stop_index >= 0)
		return json_string(r->sp.stop[r->stop_index]);
	return json_null();
}

static json_t *piece_json(int32_t t)
{
	char p[32];
	tok_piece(t, p, sizeof(p));
	return json_string(p);
}

static json_t *bytes_json(int32_t t)
{
	json_t *a = json_array();
	if (t < 256) {
		json_array_append_new(a, json_integer(t));
	} else {
		const char *s = tok_special(t);
		for (; s && *s; s++)
			json_array_append_new(a, json_integer((uint8_t)*s));
	}
	return a;
}

static size_t tok_len(int32_t t)
{
	return t < 256 ? 1 : strlen(tok_special(t));
}

/* Completions logprobs object for tokens toks[0..n) (r->mu held). */
static void cmpl_logprobs_add(json_t *lp, const int32_t *toks, const float *lps, const int32_t *tt,
			      const float *tl, int ntop, int n, size_t *offset, bool first_null)
{
	json_t *to = json_object_get(lp, "text_offset"), *tlp = json_object_get(lp, "token_logprobs");
	json_t *tk = json_object_get(lp, "tokens"), *top = json_object_get(lp, "top_logprobs");
	for (int i = 0; i < n; i++) {
		json_array_append_new(to, json_integer((json_int_t)*offset));
		*offset += tok_len(toks[i]);
		json_array_append_new(tk, piece_json(toks[i]));
		bool null = (first_null && i == 0) || isnan(lps[i]);
		json_array_append_new(tlp, null ? json_null() : json_real(lps[i]));
		if (null) {
			json_array_append_new(top, json_null());
			continue;
		}
		json_t *d = json_object();
		char p[32];
		tok_piece(toks[i], p, sizeof(p));
		json_object_set_new(d, p, json_real(lps[i]));
		for (int k = 0; k < ntop; k++) {
			tok_piece(tt[(size_t)i * (size_t)ntop + (size_t)k], p, sizeof(p));
			json_object_set_new(d, p, json_real(tl[(size_t)i * (size_t)ntop + (size_t)k]));
		}
		json_array_append_new(top, d);
	}
}

static json_t *cmpl_logprobs_new(void)
{
	return json_pack("{s:[],s:[],s:[],s:[]}", "text_offset", "token_logprobs", "tokens", "top_logprobs");
}

static json_t *chat_logprobs(const struct engine_req *r, int from, int to)
{
	json_t *content = json_array();
	for (int i = from; i < to; i++) {
		json_t *tops = json_array();
		for (int k = 0; k < r->ntop; k++) {
			int32_t t = r->out_top_tok[(size_t)i * (size_t)r->ntop + (size_t)k];
			json_array_append_new(tops, json_pack("{s:o,s:f,s:o}", "token", piece_json(t), "logprob",
							      (double)r->out_top_lp[(size_t)i * (size_t)r->ntop + (size_t)k],
							      "bytes", bytes_json(t)));
		}
		json_array_append_new(content, json_pack("{s:o,s:f,s:o,s:o}", "token", piece_json(r->out_tok[i]),
							 "logprob", (double)r->out_lp[i], "bytes",
							 bytes_json(r->out_tok[i]), "top_logprobs", tops));
	}
	return json_pack("{s:o}", "content", content);
}

static json_t *usage_json(const struct engine_req *r)
{
	return json_pack("{s:i,s:i,s:i,s:{s:i}}", "prompt_tokens", r->n_prompt, "completion_tokens", r->n_out,
			 "total_tokens", r->n_prompt + r->n_out, "prompt_tokens_details", "cached_tokens",
			 r->cached_tokens);
}

static json_t *int_array(const int32_t *t, int n)
{
	json_t *a = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(a, json_integer(t[i]));
	return a;
}

/* Prompt text for echo. */
static char *prompt_text(const struct engine_req *r)
{
	struct kv_buf b = KV_BUF_INIT(0);
	tok_decode(r->prompt, r->n_prompt, false, &b);
	char *s = kv_buf_detach(&b, NULL);
	return s;
}

static json_t *full_response(struct server *s, const struct gen_req *g, struct engine_req *r,
			     const char *id, time_t created)
{
	json_t *choice;
	if (g->chat) {
		choice = json_pack("{s:i,s:{s:s,s:s%},s:o,s:s?,s:o}", "index", 0, "message", "role", "assistant",
				   "content", r->text.data ? r->text.data : "", r->text.len,
				   "logprobs", g->chat_logprobs ? chat_logprobs(r, 0, r->n_out) : json_null(),
				   "finish_reason", finish_str(r), "stop_reason", stop_reason(r));
	} else {
		json_t *lp = json_null();
		struct kv_buf text = KV_BUF_INIT(0);
		if (g->echo) {
			char *pt = prompt_text(r);
			kv_buf_puts(&text, pt);
			free(pt);
		}
		kv_buf_append(&text, r->text.data ? r->text.data : "", r->text.len);
		if (g->sp.logprobs >= 0) {
			size_t off = 0;
			lp = cmpl_logprobs_new();
			if (g->echo)
				cmpl_logprobs_add(lp, r->prompt, r->prompt_lp, r->prompt_top_tok, r->prompt_top_lp,
						  r->ntop, r->n_prompt, &off, true);
			cmpl_logprobs_add(lp, r->out_tok, r->out_lp, r->out_top_tok, r->out_top_lp, r->ntop,
					  r->n_out, &off, false);
		}
		choice = json_pack("{s:i,s:s%,s:o,s:s?,s:o}", "index", 0, "text", kv_buf_str(&text), text.len,
				   "logprobs", lp, "finish_reason", finish_str(r), "stop_reason", stop_reason(r));
		kv_buf_release(&text);
	}
	if (g->return_token_ids) {
		json_object_set_new(choice, "token_ids", int_array(r->out_tok, r->n_out));
		json_object_set_new(choice, "prompt_token_ids", int_array(r->prompt, r->n_prompt));
	}
	return json_pack("{s:s,s:s,s:I,s:s,s:[o],s:o}", "id", id, "object",
			 g->chat ? "chat.completion" : "text_completion", "created", (json_int_t)created,
			 "model", g->model, "choices", choice, "usage", usage_json(r));
}

/* ---- streaming ---- */

struct stream {
	struct server *s;
	struct gen_req g;
	struct engine_req *r;
	struct MHD_Connection *conn;
	char id[64];
	time_t created;
	int sent_tokens;
	size_t sent_text;
	size_t offset;
	bool started, finished, done;
	bool echoed;      /* the first content chunk (with the echoed prompt) went out */
	struct kv_buf out;
	size_t out_pos;
};

static void sse(struct stream *st, json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	kv_buf_puts(&st->out, "data: ");
	kv_buf_puts(&st->out, s);
	kv_buf_puts(&st->out, "\n\n");
	free(s);
	json_decref(j);
}

static json_t *chunk_base(struct stream *st)
{
	return json_pack("{s:s,s:s,s:I,s:s}", "id", st->id, "object",
			 st->g.chat ? "chat.completion.chunk" : "text_completion", "created",
			 (json_int_t)st->created, "model", st->g.model);
}

/* r->mu held: turn new output into SSE chunks. */
static void stream_collect(struct stream *st)
{
	struct engine_req *r = st->r;
	struct gen_req *g = &st->g;
	bool fin = r->finish != ENGINE_RUNNING;
	int nt = r->n_out;
	size_t tr = r->text_ready;

	if (!st->started && g->chat) {
		json_t *c = chunk_base(st);
		json_t *ch = json_pack("{s:i,s:{s:s,s:s},s:n,s:n}", "index", 0, "delta", "role", "assistant",
				       "content", "", "logprobs", "finish_reason");
		if (g->return_token_ids)
			json_object_set_new(c, "prompt_token_ids", int_array(r->prompt, r->n_prompt));
		json_object_set_new(c, "choices", json_pack("[o]", ch));
		sse(st, c);
	}
	/* The echo rides on the first chunk that is sent, which is not the
	 * first call when no token is ready yet. */
	bool first = !st->echoed;
	st->started = true;
	if (nt > st->sent_tokens || tr > st->sent_text || (fin && !st->finished)) {
		json_t *c = chunk_base(st);
		json_t *ch;
		struct kv_buf text = KV_BUF_INIT(0);
		if (first && g->echo) {
			char *pt = prompt_text(r);
			kv_buf_puts(&text, pt);
			free(pt);
		}
		kv_buf_append(&text, r->text.data + st->sent_text, tr - st->sent_text);
		if (g->chat) {
			ch = json_pack("{s:i,s:{s:s%}}", "index", 0, "delta", "content", kv_buf_str(&text), text.len);
			json_object_set_new(ch, "logprobs", g->chat_logprobs ? chat_logprobs(r, st->sent_tokens, nt) :
							     json_null());
		} else {
			json_t *lp = json_null();
			if (g->sp.logprobs >= 0) {
				lp = cmpl_logprobs_new();
				if (first && g->echo)
					cmpl_logprobs_add(lp, r->prompt, r->prompt_lp, r->prompt_top_tok,
							  r->prompt_top_lp, r->ntop, r->n_prompt, &st->offset, true);
				int k = st->sent_tokens;
				cmpl_logprobs_add(lp, r->out_tok + k, r->out_lp + k,
						  r->out_top_tok + (size_t)k * (size_t)r->ntop,
						  r->out_top_lp + (size_t)k * (size_t)r->ntop, r->ntop, nt - k,
						  &st->offset, false);
			}
			ch = json_pack("{s:i,s:s%,s:o}", "index", 0, "text", kv_buf_str(&text), text.len, "logprobs", lp);
		}
		kv_buf_release(&text);
		if (g->return_token_ids)
			json_object_set_new(ch, "token_ids", int_array(r->out_tok + st->sent_tokens, nt - st->sent_tokens));
		if (first && g->return_token_ids && !g->chat)
			json_object_set_new(ch, "prompt_token_ids", int_array(r->prompt, r->n_prompt));
		json_object_set_new(ch, "finish_reason", fin ? json_string(finish_str(r)) : json_null());
		json_object_set_new(ch, "stop_reason", fin ? stop_reason(r) : json_null());
		json_object_set_new(c, "choices", json_pack("[o]", ch));
		if (g->continuous_usage && g->include_usage)
			json_object_set_new(c, "usage", usage_json(r));
		else if (!g->chat)
			json_object_set_new(c, "usage", json_null());
		sse(st, c);
		st->sent_tokens = nt;
		st->sent_text = tr;
		st->echoed = true;
	}
	if (fin && !st->finished) {
		st->finished = true;
		if (r->finish == ENGINE_ERROR) {
			json_t *e = json_pack("{s:{s:s,s:s,s:n,s:i}}", "error", "message", r->error, "type",
					      "InternalServerError", "param", "code", 500);
			sse(st, e);
		}
		if (g->include_usage) {
			json_t *c = chunk_base(st);
			json_object_set_new(c, "choices", json_array());
			json_object_set_new(c, "usage", usage_json(r));
			sse(st, c);
		}
		kv_buf_puts(&st->out, "data: [DONE]\n\n");
	}
}

static bool peer_gone(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci)
		return false;
	struct pollfd p = { ci->connect_fd, POLLIN, 0 };
	if (poll(&p, 1, 0) <= 0)
		return false;
	if (p.revents & (POLLHUP | POLLERR))
		return true;
	if (p.revents & POLLIN) {
		char b;
		ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
		return n == 0;
	}
	return false;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct stream *st = cls;
	(void)pos;
	for (int spins = 0; st->out_pos == st->out.len; spins++) {
		if (st->done)
			return MHD_CONTENT_READER_END_OF_STREAM;
		kv_buf_reset(&st->out);
		st->out_pos = 0;
		pthread_mutex_lock(&st->r->mu);
		engine_req_wait(st->r, st->sent_tokens, st->sent_text, 100);
		stream_collect(st);
		pthread_mutex_unlock(&st->r->mu);
		if (st->finished)
			st->done = true;
		if (st->out.len == 0 && peer_gone(st->conn)) {
			engine_req_abort(st->s->e, st->r);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (st->out.len == 0 && spins > 50)
			return 0;
	}
	size_t n = KV_MIN(max, st->out.len - st->out_pos);
	memcpy(buf, st->out.data + st->out_pos, n);
	st->out_pos += n;
	return (ssize_t)n;
}

static void stream_free(void *cls)
{
	struct stream *st = cls;
	if (!st->finished)
		engine_req_abort(st->s->e, st->r);
	engine_req_put(st->r);
	gen_release(&st->g);
	kv_buf_release(&st->out);
	free(st);
}

/* ---- handlers ---- */

static enum MHD_Result handle_gen(struct server *s, struct MHD_Connection *c, json_t *req, bool chat)
{
	struct gen_req g;
	struct perr pe = { 0, NULL, "" };
	char err[512];
	if (parse_gen(s, req, chat, &g, &pe) < 0) {
		gen_release(&g);
		return send_error(c, pe.status, pe.param, "%s", pe.msg);
	}
	struct engine_req *r = engine_submit(s->e, g.toks, g.ntok, &g.sp, err, sizeof(err));
	if (!r) {
		gen_release(&g);
		return send_error(c, 400, NULL, "%s", err);
	}
	char id[64];
	snprintf(id, sizeof(id), "%s-%016" PRIx64 "%08" PRIx64, chat ? "chatcmpl" : "cmpl",
		 (uint64_t)atomic_fetch_add(&s->next_id, 1), (uint64_t)(kv_now_ns() & 0xffffffffu));
	time_t created = time(NULL);
	if (g.stream) {
		struct stream *st = xcalloc(1, sizeof(*st));
		st->s = s;
		st->g = g;
		st->r = r;
		st->conn = c;
		snprintf(st->id, sizeof(st->id), "%s", id);
		st->created = created;
		kv_buf_init(&st->out, 0);
		struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read,
									       st, stream_free);
		MHD_add_response_header(resp, "Content-Type", "text/event-stream");
		MHD_add_response_header(resp, "Cache-Control", "no-cache");
		enum MHD_Result ret = MHD_queue_response(c, 200, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	pthread_mutex_lock(&r->mu);
	while (r->finish == ENGINE_RUNNING) {
		engine_req_wait(r, r->n_out, r->text_ready, 100);
		if (r->finish == ENGINE_RUNNING && peer_gone(c)) {
			pthread_mutex_unlock(&r->mu);
			engine_req_abort(s->e, r);
			pthread_mutex_lock(&r->mu);
		}
	}
	enum MHD_Result ret;
	if (r->finish == ENGINE_ERROR || r->finish == ENGINE_ABORT) {
		char msg[200];
		snprintf(msg, sizeof(msg), "%s", r->error[0] ? r->error : "aborted");
		pthread_mutex_unlock(&r->mu);
		ret = send_error(c, r->finish == ENGINE_ERROR ? 500 : 503, NULL, "%s", msg);
	} else {
		json_t *j = full_response(s, &g, r, id, created);
		pthread_mutex_unlock(&r->mu);
		ret = send_json(c, 200, j);
	}
	engine_req_put(r);
	gen_release(&g);
	return ret;
}

static enum MHD_Result handle_tokenize(struct server *s, struct MHD_Connection *c, json_t *req)
{
	struct gen_req g;
	struct perr pe = { 0, NULL, "" };
	memset(&g, 0, sizeof(g));
	if (!json_is_object(req))
		return send_error(c, 400, NULL, "the request body must be a JSON object");
	bool strs = false;
	int rc = check_model(s, req, &g, &pe);
	if (rc == 0)
		rc = get_bool(req, "return_token_strs", &strs, &pe);
	if (rc == 0 && json_object_get(req, "messages")) {
		bool add_gen = true;
		rc = get_bool(req, "add_generation_prompt", &add_gen, &pe);
		if (rc == 0)
			rc = parse_messages(json_object_get(req, "messages"), &g, add_gen, &pe);
	} else if (rc == 0) {
		bool add_special = true;
		json_t *p = json_object_get(req, "prompt");
		rc = get_bool(req, "add_special_tokens", &add_special, &pe);
		if (rc == 0 && !json_is_string(p))
			rc = fail(&pe, 400, "prompt", "prompt: expected a string");
		if (rc == 0)
			tok_encode(json_string_value(p), json_string_length(p), add_special, &g.toks, &g.ntok, &g.cap);
	}
	if (rc < 0) {
		gen_release(&g);
		return send_error(c, pe.status, pe.param, "%s", pe.msg);
	}
	json_t *ts = json_null();
	if (strs) {
		ts = json_array();
		for (int i = 0; i < g.ntok; i++)
			json_array_append_new(ts, piece_json(g.toks[i]));
	}
	json_t *j = json_pack("{s:i,s:i,s:o,s:o}", "count", g.ntok, "max_model_len",
			      engine_config(s->e)->max_model_len, "tokens", int_array(g.toks, g.ntok),
			      "token_strs", ts);
	gen_release(&g);
	return send_json(c, 200, j);
}

static enum MHD_Result handle_detokenize(struct server *s, struct MHD_Connection *c, json_t *req)
{
	struct gen_req g;
	struct perr pe = { 0, NULL, "" };
	memset(&g, 0, sizeof(g));
	if (!json_is_object(req))
		return send_error(c, 400, NULL, "the request body must be a JSON object");
	json_t *t = json_object_get(req, "tokens");
	int rc = check_model(s, req, &g, &pe);
	if (rc == 0 && !json_is_array(t))
		rc = fail(&pe, 400, "tokens", "tokens: expected an array of token ids");
	if (rc == 0)
		rc = parse_token_array(t, &g, "tokens", &pe);
	if (rc < 0) {
		gen_release(&g);
		return send_error(c, pe.status, pe.param, "%s", pe.msg);
	}
	struct kv_buf b = KV_BUF_INIT(0);
	tok_decode(g.toks, g.ntok, false, &b);
	json_t *j = json_pack("{s:s%}", "prompt", kv_buf_str(&b), b.len);
	kv_buf_release(&b);
	gen_release(&g);
	return send_json(c, 200, j);
}

/* GET /v1/models: the base model, then each adapter (vLLM's LoRA cards). */
static json_t *models_json(struct server *s)
{
	const struct model *m = engine_model(s->e);
	json_t *data = json_array();
	json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s,s:s,s:n,s:i}", "id", s->cfg.model_name, "object",
					      "model", "created", 0, "owned_by", "kvserve", "root",
					      s->cfg.model_name, "parent", "max_model_len",
					      engine_config(s->e)->max_model_len));
	for (int i = 0; i < m->n_adapters; i++) {
		const struct model_adapter_config *ac = &m->adapters[i].cfg;
		char root[160];
		snprintf(root, sizeof(root), "%s=%llu,rank=%d,alpha=%g", ac->name, (unsigned long long)ac->seed,
			 ac->rank, (double)ac->alpha);
		json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s,s:s,s:s,s:n}", "id", ac->name, "object",
						      "model", "created", 0, "owned_by", "kvserve", "root", root,
						      "parent", s->cfg.model_name, "max_model_len"));
	}
	return json_pack("{s:s,s:o}", "object", "list", "data", data);
}

struct route {
	const char *path, *method;
	int kind;
};

enum { R_HEALTH, R_MODELS, R_METRICS, R_CMPL, R_CHAT, R_TOK, R_DETOK, R_RESET, R_VERSION };

static const struct route routes[] = {
	{ "/health", "GET", R_HEALTH },
	{ "/v1/models", "GET", R_MODELS },
	{ "/metrics", "GET", R_METRICS },
	{ "/v1/completions", "POST", R_CMPL },
	{ "/v1/chat/completions", "POST", R_CHAT },
	{ "/tokenize", "POST", R_TOK },
	{ "/v1/tokenize", "POST", R_TOK },
	{ "/detokenize", "POST", R_DETOK },
	{ "/v1/detokenize", "POST", R_DETOK },
	{ "/reset_prefix_cache", "POST", R_RESET },
	{ "/version", "GET", R_VERSION },
};

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url, const char *method,
			       const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
	struct server *s = cls;
	struct conn_ctx *cc = *con_cls;
	(void)version;

	if (!cc) {
		cc = xcalloc(1, sizeof(*cc));
		kv_buf_init(&cc->body, s->cfg.max_body);
		*con_cls = cc;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!cc->too_big && kv_buf_append(&cc->body, upload, *upload_size) < 0) {
			cc->too_big = true;
			kv_buf_release(&cc->body);
		}
		*upload_size = 0;
		return MHD_YES;
	}
	const struct route *rt = NULL;
	bool path_known = false;
	for (size_t i = 0; i < KV_ARRAY_SIZE(routes); i++)
		if (!strcmp(url, routes[i].path)) {
			path_known = true;
			if (!strcmp(method, routes[i].method) ||
			    (!strcmp(method, "HEAD") && !strcmp(routes[i].method, "GET")))
				rt = &routes[i];
		}
	if (!path_known)
		return send_error(c, 404, NULL, "Not Found: %s", url);
	if (!rt)
		return send_error(c, 405, NULL, "Method Not Allowed: %s %s", method, url);
	if (cc->too_big)
		return send_error(c, 413, NULL, "request body larger than %zu bytes (--max-request-bytes)",
				  s->cfg.max_body);
	switch (rt->kind) {
	case R_HEALTH:
		return send_text(c, 200, NULL, "", 0);
	case R_VERSION:
		return send_json(c, 200, json_pack("{s:s}", "version", KV_VERSION));
	case R_MODELS:
		return send_json(c, 200, models_json(s));
	case R_METRICS: {
		struct kv_buf b = KV_BUF_INIT(0);
		engine_metrics(s->e, s->cfg.model_name, &b);
		enum MHD_Result ret = send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8",
						kv_buf_str(&b), b.len);
		kv_buf_release(&b);
		return ret;
	}
	case R_RESET:
		engine_reset_prefix_cache(s->e);
		return send_text(c, 200, NULL, "", 0);
	default:
		break;
	}
	json_error_t je;
	json_t *req = json_loadb(cc->body.data ? cc->body.data : "", cc->body.len, 0, &je);
	if (!req)
		return send_error(c, 400, NULL, "invalid JSON at line %d column %d: %s", je.line, je.column, je.text);
	enum MHD_Result ret;
	switch (rt->kind) {
	case R_CMPL:
		ret = handle_gen(s, c, req, false);
		break;
	case R_CHAT:
		ret = handle_gen(s, c, req, true);
		break;
	case R_TOK:
		ret = handle_tokenize(s, c, req);
		break;
	default:
		ret = handle_detokenize(s, c, req);
		break;
	}
	json_decref(req);
	return ret;
}

static void completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct conn_ctx *cc = *con_cls;
	(void)cls;
	(void)c;
	(void)toe;
	if (!cc)
		return;
	kv_buf_release(&cc->body);
	free(cc);
	*con_cls = NULL;
}

struct server *server_start(struct engine *e, const struct server_config *cfg, char *err, size_t errlen)
{
	struct server *s = xcalloc(1, sizeof(*s));
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)cfg->port);
	if (inet_pton(AF_INET, cfg->host, &sa.sin_addr) != 1) {
		snprintf(err, errlen, "--host: '%s' is not a numeric IPv4 address", cfg->host);
		free(s);
		return NULL;
	}
	s->e = e;
	s->cfg = *cfg;
	s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC, 0, NULL, NULL,
				handler, s, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				MHD_OPTION_NOTIFY_COMPLETED, completed, s,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned int)4096,
				MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int)1,
				MHD_OPTION_END);
	if (!s->d) {
		snprintf(err, errlen, "cannot listen on %s:%d", cfg->host, cfg->port);
		free(s);
		return NULL;
	}
	const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	s->port = di ? di->port : cfg->port;
	return s;
}

int server_port(const struct server *s)
{
	return s->port;
}

void server_quiesce(struct server *s)
{
	if (s && s->d)
		MHD_quiesce_daemon(s->d);
}

void server_stop(struct server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->d);
	free(s);
}
