/*
 * sharegpt: multi-turn conversations from a ShareGPT-format JSON file
 * (PegaFlow's run-share-gpt). Conversation c (the first num_conversations
 * that have a user turn, in file order) starts at c / request_rate s, at
 * most max_active at once; turn t (the t-th user message, t < max_turns)
 * is handed out after the answer to turn t-1 is in. The history holds the
 * leading system message, the user messages and, for assistant turns, the
 * engine's own answers (history=engine) or the data set's (history=dataset).
 * key "conv<c>/turn<t>", session c, turn t, pass 0.
 */
#include "common/util.h"

#include "common/buf.h"
#include "workloads/loaders.h"
#include "workloads/wl_util.h"
#include "common/banned.h"

static const struct kvb_wl_key sgpt_keys[] = {
	{ "path", "", "", "ShareGPT JSON: [{\"conversations\":[{\"from\":\"human\",\"value\":...},...]},...]" },
	{ "num_conversations", "50", "", "conversations used (file order; those without a user turn are skipped)" },
	{ "max_turns", "5", "", "user turns per conversation" },
	{ "max_active", "10", "", "conversations in progress at once" },
	{ "request_rate", "0.5", "conversations/s", "start rate of conversations; 0 = as fast as max_active allows" },
	{ "history", "engine", "", "assistant turns in the history: engine (its answers) or dataset" },
	{ "max_tokens", "256", "tokens", "max_tokens of each answer" },
	{ NULL, NULL, NULL, NULL },
};

struct sgpt_conv {
	const struct kvb_conv *src;
	size_t pos;              /* next source turn */
	int turn;
	struct kvb_msg *h;
	size_t n;
	bool started, in_flight, finished;
	char *pending_dataset;   /* dataset answer to the turn in flight */
};

struct sgpt {
	struct kvb_conv_set set;
	struct sgpt_conv *c;
	size_t nc;
	int64_t max_turns, max_active, max_tokens;
	double rate;
	bool from_dataset;
	size_t active;
	enum kvb_endpoint ep;
	uint64_t next_id;
	struct kvb_workload_ops ops;
};

static void hist_add(struct sgpt_conv *c, const char *role, const char *content)
{
	c->h = xrealloc(c->h, (c->n + 1) * sizeof(*c->h));
	c->h[c->n].role = xstrdup(role);
	c->h[c->n].content = xstrdup(content);
	c->n++;
}

static bool has_user_turn(const struct sgpt_conv *c)
{
	for (size_t k = c->pos; k < c->src->n; k++)
		if (!strcmp(c->src->t[k].role, "user"))
			return true;
	return false;
}

static int sgpt_next(struct kvb_workload *wl, struct kvb_req **out)
{
	struct sgpt *s = wl->priv;
	bool waiting = false;

	for (size_t i = 0; i < s->nc; i++) {
		struct sgpt_conv *c = &s->c[i];
		struct kvb_req *r;
		if (c->finished)
			continue;
		if (c->in_flight) {
			waiting = true;
			continue;
		}
		if (!c->started) {
			if (s->active >= (size_t)s->max_active) {
				waiting = true;
				break; /* start conversations in order */
			}
			c->started = true;
			s->active++;
		}
		if (c->turn >= s->max_turns || !has_user_turn(c)) {
			c->finished = true;
			s->active--;
			continue;
		}
		/* system messages and (dataset) history up to the next user turn */
		while (c->pos < c->src->n && strcmp(c->src->t[c->pos].role, "user")) {
			if (!strcmp(c->src->t[c->pos].role, "system") && c->turn == 0)
				hist_add(c, "system", c->src->t[c->pos].content);
			c->pos++;
		}
		hist_add(c, "user", c->src->t[c->pos].content);
		c->pos++;
		free(c->pending_dataset);
		c->pending_dataset = NULL;
		if (c->pos < c->src->n && !strcmp(c->src->t[c->pos].role, "assistant")) {
			c->pending_dataset = xstrdup(c->src->t[c->pos].content);
			c->pos++;
		}
		r = kvb_req_new(s->ep, "conv%zu/turn%d", i, c->turn);
		if (s->ep == KVB_EP_CHAT) {
			for (size_t k = 0; k < c->n; k++)
				kvb_req_add_msg(r, c->h[k].role, c->h[k].content);
		} else {
			struct kv_buf b = KV_BUF_INIT(0);
			for (size_t k = 0; k < c->n; k++)
				kv_buf_printf(&b, "%s%s", k ? "\n" : "", c->h[k].content);
			r->prompt = kv_buf_detach(&b, NULL);
		}
		r->id = s->next_id++;
		r->session = (int)i;
		r->turn = c->turn;
		r->pass = 0;
		r->at_s = c->turn == 0 && s->rate > 0 ? (double)i / s->rate : -1;
		r->max_tokens = (int)s->max_tokens;
		c->in_flight = true;
		*out = r;
		return 1;
	}
	for (size_t i = 0; i < s->nc; i++)
		if (!s->c[i].finished)
			waiting = true;
	return waiting ? 0 : -1;
}

static void sgpt_done(struct kvb_workload *wl, const struct kvb_req *req,
		      const struct kvb_result *res)
{
	struct sgpt *s = wl->priv;
	struct sgpt_conv *c;

	if (req->session < 0 || (size_t)req->session >= s->nc)
		return;
	c = &s->c[req->session];
	c->in_flight = false;
	c->turn++;
	if (!res || res->status != KVB_OK) {
		c->finished = true;
		s->active--;
		return;
	}
	if (s->from_dataset && c->pending_dataset)
		hist_add(c, "assistant", c->pending_dataset);
	else
		hist_add(c, "assistant", res->text ? res->text : "");
}

static void sgpt_free(struct kvb_workload *wl)
{
	struct sgpt *s;
	if (!wl)
		return;
	s = wl->priv;
	for (size_t i = 0; i < s->nc; i++) {
		for (size_t k = 0; k < s->c[i].n; k++) {
			free(s->c[i].h[k].role);
			free(s->c[i].h[k].content);
		}
		free(s->c[i].h);
		free(s->c[i].pending_dataset);
	}
	free(s->c);
	kvb_conv_set_release(&s->set);
	free(s);
	free(wl);
}

static int sgpt_create(const struct kvb_wl_params *p, struct kvb_workload **out)
{
	const char *path, *hist;
	int64_t nconv, mt, ma, mtok;
	double rate;
	struct sgpt *s;
	struct kvb_workload *wl;

	if (kvb_wl_get_str(p, "path", NULL, &path) < 0 ||
	    kvb_wl_get_int(p, "num_conversations", 50, 1, 10000000, &nconv) < 0 ||
	    kvb_wl_get_int(p, "max_turns", 5, 1, 100000, &mt) < 0 ||
	    kvb_wl_get_int(p, "max_active", 10, 1, 1000000, &ma) < 0 ||
	    kvb_wl_get_double(p, "request_rate", 0.5, 0, 1e6, &rate) < 0 ||
	    kvb_wl_get_str(p, "history", "engine", &hist) < 0 ||
	    kvb_wl_get_int(p, "max_tokens", 256, 1, 1000000, &mtok) < 0 ||
	    kvb_wl_check_unused(p, "sharegpt") < 0)
		return -1;
	if (!path) {
		kv_error("--set path: the sharegpt workload needs path=FILE.json");
		return -1;
	}
	if (strcmp(hist, "engine") && strcmp(hist, "dataset")) {
		kv_error("--set history: expected engine or dataset, got '%s'", hist);
		return -1;
	}
	s = xcalloc(1, sizeof(*s));
	if (kvb_sharegpt_load(path, &s->set) < 0) {
		free(s);
		return -1;
	}
	s->c = xcalloc(s->set.n + 1, sizeof(*s->c));
	for (size_t i = 0; i < s->set.n && s->nc < (size_t)nconv; i++) {
		struct sgpt_conv tmp = { .src = &s->set.v[i] };
		if (has_user_turn(&tmp))
			s->c[s->nc++] = tmp;
	}
	if (!s->nc) {
		kv_error("%s: no conversation has a user turn", path);
		kvb_conv_set_release(&s->set);
		free(s->c);
		free(s);
		return -1;
	}
	s->max_turns = mt;
	s->max_active = ma;
	s->max_tokens = mtok;
	s->rate = rate;
	s->from_dataset = !strcmp(hist, "dataset");
	s->ep = p->endpoint;
	s->ops.name = "sharegpt";
	s->ops.next = sgpt_next;
	s->ops.done = sgpt_done;
	s->ops.free = sgpt_free;
	wl = xcalloc(1, sizeof(*wl));
	wl->ops = &s->ops;
	wl->priv = s;
	*out = wl;
	return 0;
}

const struct kvb_wl_def kvb_wl_sharegpt = {
	"sharegpt",
	"multi-turn ShareGPT conversations; history from the engine's answers or the data set",
	sgpt_keys,
	sgpt_create,
};
