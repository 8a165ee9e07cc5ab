/*
 * multi-round-qa: LMCache benchmarks/multi_round_qa (REFERENCE.md §1.8; the
 * text as multi-round-qa.py builds it: gen_dummy_text(n) = " ".join(["hi"] * n),
 * question ids from 1, user ids from 1).
 *
 * U users, R rounds each. User u's first message (LMCache user id u+1) is
 *   "Hi, here's some system prompt: {hi x S}.For user {u+1}, here are some
 *    other context: {hi x H}." + "Here's question #1: can you tell me a new
 *    long story with a happy ending?"
 * and round r adds the engine's answer to round r-1 and "Here's question
 * #{r+1}: ...". Round r of user u is due at u/qps + r*U/qps seconds (qps is
 * the total rate: each user sends every U/qps s) and is not handed out
 * before the answer of round r-1 is in (done()). Before any user, the 10
 * warmup requests of LMCache ("WARMUP: Hi, I'm user {i}. Here are some
 * text: {'hi ' * 100}.", max_tokens 100, warmup=true) unless
 * warmup_requests=false; users start when they are answered. key
 * "user<u+1>/round<r>", session u, turn r, pass 0. On the completions
 * endpoint the history is concatenated into one prompt. A failed turn ends
 * its user's session.
 */
#include "common/util.h"

#include <math.h>

#include "common/buf.h"
#include "workloads/wl_util.h"
#include "common/banned.h"

static const struct kvb_wl_key mrqa_keys[] = {
	{ "num_users", "10", "", "concurrent users (sessions)" },
	{ "num_rounds", "5", "", "rounds (turns) per user" },
	{ "shared_system_prompt", "1000", "tokens", "S words \"hi\", shared by every user (see length_unit)" },
	{ "user_history_prompt", "2000", "tokens", "H words \"hi\", per user" },
	{ "answer_len", "100", "tokens", "max_tokens of each answer" },
	{ "qps", "0.5", "requests/s", "total request rate; each user sends every num_users/qps s" },
	{ "length_unit", "words", "", "words: \"hi\" x N as LMCache (~N tokens on BPE); bytes: N bytes of that text" },
	{ "warmup_requests", "true", "", "LMCache's 10 warmup requests first (warmup, excluded)" },
	{ NULL, NULL, NULL, NULL },
};

struct mrqa_user {
	struct kvb_msg *h;
	size_t n;
	int round;
	bool in_flight, finished;
};

struct mrqa {
	struct mrqa_user *u;
	int64_t nu, nr, alen;
	double qps;
	enum kvb_endpoint ep;
	uint64_t next_id;
	char *sys;    /* " ".join(["hi"] * S) */
	bool bytes;
	int warm_next, warm_out; /* warmup requests handed out / not answered */
	int64_t hlen;
	struct kvb_workload_ops ops;
};

static void add_hist(struct mrqa_user *u, const char *role, char *content)
{
	u->h = xrealloc(u->h, (u->n + 1) * sizeof(*u->h));
	u->h[u->n].role = xstrdup(role);
	u->h[u->n].content = content;
	u->n++;
}

/* gen_dummy_text(n) = " ".join(["hi"] * n), or n bytes of it */
static char *his(int64_t n, bool bytes)
{
	char *s, *p;
	if (bytes)
		return kvb_filler("", "hi", (size_t)n);
	p = s = xmalloc(3 * (size_t)n + 1);
	for (int64_t k = 0; k < n; k++) {
		if (k)
			*p++ = ' ';
		*p++ = 'h';
		*p++ = 'i';
	}
	*p = '\0';
	return s;
}

static int mrqa_next(struct kvb_workload *wl, struct kvb_req **out)
{
	struct mrqa *m = wl->priv;
	struct mrqa_user *best = NULL;
	double best_at = 0;
	int64_t bi = -1;
	bool waiting = false;

	if (m->warm_next < 10) {
		struct kvb_req *r = kvb_req_new(m->ep, "warmup%d", m->warm_next);
		char *t = xasprintf("WARMUP: Hi, I'm user %d. Here are some text: %s.", m->warm_next,
				    "hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi "
				    "hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi "
				    "hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi "
				    "hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi hi ");
		kvb_req_set_text(r, t);
		free(t);
		r->id = m->next_id++;
		r->warmup = true;
		r->max_tokens = 100;
		m->warm_next++;
		m->warm_out++;
		*out = r;
		return 1;
	}
	if (m->warm_out)
		return 0; /* users start after the warmup (LMCache waits for it) */
	for (int64_t i = 0; i < m->nu; i++) {
		struct mrqa_user *u = &m->u[i];
		double at;
		if (u->finished || u->round >= m->nr)
			continue;
		if (u->in_flight) {
			waiting = true;
			continue;
		}
		at = (double)i / m->qps + (double)u->round * (double)m->nu / m->qps;
		if (!best || at < best_at) {
			best = u;
			best_at = at;
			bi = i;
		}
	}
	if (!best)
		return waiting ? 0 : -1;
	{
		struct kvb_req *r = kvb_req_new(m->ep, "user%lld/round%d", (long long)bi + 1, best->round);
		char *q;
		if (best->round == 0) {
			char *uh = his(m->hlen, m->bytes);
			q = xasprintf("Hi, here's some system prompt: %s.For user %lld, here are some other context: %s."
				      "Here's question #1: can you tell me a new long story with a happy ending?",
				      m->sys, (long long)bi + 1, uh);
			free(uh);
		} else {
			q = xasprintf("Here's question #%d: can you tell me a new long story with a happy ending?",
				      best->round + 1);
		}
		add_hist(best, "user", q);
		if (m->ep == KVB_EP_CHAT) {
			for (size_t k = 0; k < best->n; k++)
				kvb_req_add_msg(r, best->h[k].role, best->h[k].content);
		} else {
			struct kv_buf b = KV_BUF_INIT(0);
			for (size_t k = 0; k < best->n; k++)
				kv_buf_puts(&b, best->h[k].content);
			r->prompt = kv_buf_detach(&b, NULL);
		}
		r->id = m->next_id++;
		r->session = (int)bi;
		r->turn = best->round;
		r->pass = 0;
		r->at_s = best_at;
		r->max_tokens = (int)m->alen;
		best->in_flight = true;
		*out = r;
	}
	return 1;
}

static void mrqa_done(struct kvb_workload *wl, const struct kvb_req *req,
		      const struct kvb_result *res)
{
	struct mrqa *m = wl->priv;
	struct mrqa_user *u;

	if (req->warmup) {
		if (m->warm_out)
			m->warm_out--;
		return;
	}
	if (req->session < 0 || req->session >= m->nu)
		return;
	u = &m->u[req->session];
	u->in_flight = false;
	u->round++;
	if (!res || res->status != KVB_OK) {
		u->finished = true;
		return;
	}
	add_hist(u, "assistant", xstrdup(res->text ? res->text : ""));
}

static void mrqa_free(struct kvb_workload *wl)
{
	struct mrqa *m;
	if (!wl)
		return;
	m = wl->priv;
	for (int64_t i = 0; i < m->nu; i++) {
		for (size_t k = 0; k < m->u[i].n; k++) {
			free(m->u[i].h[k].role);
			free(m->u[i].h[k].content);
		}
		free(m->u[i].h);
	}
	free(m->u);
	free(m->sys);
	free(m);
	free(wl);
}

static int mrqa_create(const struct kvb_wl_params *p, struct kvb_workload **out)
{
	int64_t nu, nr, s, h, alen;
	double qps;
	const char *unit;
	bool warm;
	struct mrqa *m;
	struct kvb_workload *wl;

	if (kvb_wl_get_int(p, "num_users", 10, 1, 100000, &nu) < 0 ||
	    kvb_wl_get_int(p, "num_rounds", 5, 1, 100000, &nr) < 0 ||
	    kvb_wl_get_int(p, "shared_system_prompt", 1000, 0, 100000000, &s) < 0 ||
	    kvb_wl_get_int(p, "user_history_prompt", 2000, 0, 100000000, &h) < 0 ||
	    kvb_wl_get_int(p, "answer_len", 100, 1, 1000000, &alen) < 0 ||
	    kvb_wl_get_double(p, "qps", 0.5, 1e-6, 1e6, &qps) < 0 ||
	    kvb_wl_get_str(p, "length_unit", "words", &unit) < 0 ||
	    kvb_wl_get_bool(p, "warmup_requests", true, &warm) < 0 ||
	    kvb_wl_check_unused(p, "multi-round-qa") < 0)
		return -1;
	if (strcmp(unit, "words") && strcmp(unit, "bytes")) {
		kv_error("--set length_unit: expected words or bytes, got '%s'", unit);
		return -1;
	}
	m = xcalloc(1, sizeof(*m));
	m->u = xcalloc((size_t)nu, sizeof(*m->u));
	m->nu = nu;
	m->nr = nr;
	m->alen = alen;
	m->qps = qps;
	m->ep = p->endpoint;
	m->bytes = !strcmp(unit, "bytes");
	m->sys = his(s, m->bytes);
	m->hlen = h;
	m->warm_next = warm ? 0 : 10;
	m->ops.name = "multi-round-qa";
	m->ops.next = mrqa_next;
	m->ops.done = mrqa_done;
	m->ops.free = mrqa_free;
	wl = xcalloc(1, sizeof(*wl));
	wl->ops = &m->ops;
	wl->priv = m;
	*out = wl;
	return 0;
}

const struct kvb_wl_def kvb_wl_multi_round_qa = {
	"multi-round-qa",
	"LMCache multi-round QA: users with a shared system prompt, own context and growing history",
	mrqa_keys,
	mrqa_create,
};
