#include "common/util.h"

#include <assert.h>
#include <math.h>
#include <time.h>

#include "engine.h"
#include "common/clock.h"
#include "offload/fault.h"
#include "common/banned.h"

const double engine_ttft_bounds[] = {
	0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
	2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
};
const int engine_ttft_nbounds = (int)KV_ARRAY_SIZE(engine_ttft_bounds);

struct plan {
	struct engine_req *r;
	int first, n, row0;
};

/* A store queued after its request was aborted (uaf-abort): it holds a
 * reference to the request and a copy of its freed block table. */
struct save {
	struct engine_req *r;
	int *blocks, n_blocks;
	uint32_t *gens;        /* kvcache_block.gen of each block when it was freed */
	int age;               /* steps waited */
};

struct engine {
	struct model *m;
	struct engine_config cfg;
	struct kvcache kc;
	struct kv_connector *conn;
	pthread_t th;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, reset_pending;
	struct engine_req *inc_head, *inc_tail;
	struct engine_req **running, **waiting;
	int n_running, n_waiting, cap_waiting;
	struct engine_stats st;
	uint64_t next_id;
	struct model_row *rows;
	struct plan *plan;
	float *logits;
	int cap_rows, cap_plan;
	float *discard;   /* K/V rows a connector load may not write */
	struct kvo_faults *faults; /* engine-level faults; NULL: none */
	float *stale_logits;       /* [vocab] what full-hit samples from: the output head
				    * over a hidden state nobody computed (zeros) */
	struct save *saves;        /* deferred stores of aborted requests */
	int n_saves, cap_saves;
};

static bool fault_fires(struct engine *e, enum kvo_fault_id id)
{
	return e->faults && kvo_fault_fires(e->faults, id);
}

/* ---- requests ---- */

static void req_free(struct engine_req *r)
{
	for (int i = 0; i < r->sp.nstop; i++)
		free(r->sp.stop[i]);
	free(r->sp.salt);
	free(r->prompt);
	free(r->out_tok);
	free(r->out_lp);
	free(r->out_top_tok);
	free(r->out_top_lp);
	free(r->prompt_lp);
	free(r->prompt_top_tok);
	free(r->prompt_top_lp);
	kv_buf_release(&r->text);
	free(r->all);
	free(r->blocks);
	free(r->keys);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
}

void engine_req_put(struct engine_req *r)
{
	pthread_mutex_lock(&r->mu);
	int left = --r->refs;
	pthread_mutex_unlock(&r->mu);
	if (left == 0)
		req_free(r);
}

void engine_req_wait(struct engine_req *r, int seen_tokens, size_t seen_text, int timeout_ms)
{
	uint64_t until = kv_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	while (r->finish == ENGINE_RUNNING && r->n_out <= seen_tokens && r->text_ready <= seen_text) {
		uint64_t now = kv_now_ns();
		if (now >= until)
			return;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + (until - now);
		ts.tv_sec += (time_t)(ns / 1000000000ull);
		ts.tv_nsec = (long)(ns % 1000000000ull);
		pthread_cond_timedwait(&r->cv, &r->mu, &ts);
	}
}

void engine_req_abort(struct engine *e, struct engine_req *r)
{
	pthread_mutex_lock(&r->mu);
	r->abort_requested = true;
	pthread_mutex_unlock(&r->mu);
	pthread_mutex_lock(&e->mu);
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
}

struct engine_req *engine_submit(struct engine *e, const int32_t *prompt, int n,
				 struct engine_sampling *sp, char *err, size_t errlen)
{
	const char *msg = NULL;
	int len = e->cfg.max_model_len, bs = e->cfg.block_size;

	if (n < 1)
		msg = "the prompt is empty";
	else if (sp->adapter < 0 || sp->adapter > e->m->n_adapters)
		msg = "unknown adapter";
	for (int i = 0; !msg && i < n; i++)
		if (prompt[i] < 0 || prompt[i] >= e->m->cfg.vocab)
			msg = "token id out of range";
	if (msg) {
		snprintf(err, errlen, "%s", msg);
	} else if (n >= len || (sp->max_tokens > 0 && n + sp->max_tokens > len)) {
		snprintf(err, errlen,
			 "This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion). Please reduce the length of the messages or completion.",
			 len, n + KV_MAX(sp->max_tokens, 1), n, KV_MAX(sp->max_tokens, 1));
		msg = err;
	} else if ((n + 1 + bs - 1) / bs > e->kc.n_blocks) {
		snprintf(err, errlen, "the prompt needs %d KV blocks but the cache has %d (--num-kv-blocks)",
			 (n + bs) / bs, e->kc.n_blocks);
		msg = err;
	}
	if (msg) {
		for (int i = 0; i < sp->nstop; i++)
			free(sp->stop[i]);
		free(sp->salt);
		sp->nstop = 0;
		sp->salt = NULL;
		return NULL;
	}

	struct engine_req *r = xcalloc(1, sizeof(*r));
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&r->mu, NULL);
	r->prompt = xmalloc((size_t)n * sizeof(int32_t));
	memcpy(r->prompt, prompt, (size_t)n * sizeof(int32_t));
	r->n_prompt = n;
	r->sp = *sp;
	sp->nstop = 0;
	sp->salt = NULL;
	r->ntop = KV_MAX(0, KV_MIN(sp->logprobs, ENGINE_MAX_TOP));
	if (sp->prompt_logprobs) {
		r->prompt_lp = xmalloc((size_t)n * sizeof(float));
		for (int i = 0; i < n; i++)
			r->prompt_lp[i] = NAN;
		r->prompt_top_tok = xcalloc((size_t)n * (size_t)KV_MAX(r->ntop, 1), sizeof(int32_t));
		r->prompt_top_lp = xcalloc((size_t)n * (size_t)KV_MAX(r->ntop, 1), sizeof(float));
		r->plp_pending = true;
	}
	kv_buf_init(&r->text, (size_t)64 << 20);
	r->stop_index = -1;
	r->refs = 2;
	r->cap_all = n + 16;
	r->all = xmalloc((size_t)r->cap_all * sizeof(int32_t));
	memcpy(r->all, prompt, (size_t)n * sizeof(int32_t));
	r->n_all = n;
	r->t_arrival_ns = kv_now_ns();

	pthread_mutex_lock(&e->mu);
	if (e->stop) {
		pthread_mutex_unlock(&e->mu);
		snprintf(err, errlen, "the engine is stopping");
		r->refs = 1;
		engine_req_put(r);
		return NULL;
	}
	r->id = ++e->next_id;
	r->rng = sp->has_seed ? sp->seed : (r->id * 0x9e3779b97f4a7c15ull) ^ r->t_arrival_ns;
	if (e->inc_tail)
		e->inc_tail->next = r;
	else
		e->inc_head = r;
	e->inc_tail = r;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	return r;
}

/* ---- lifecycle ---- */

struct engine *engine_create(struct model *m, const struct engine_config *cfg)
{
	struct engine *e = xcalloc(1, sizeof(*e));
	e->m = m;
	e->cfg = *cfg;
	kvcache_init(&e->kc, cfg->num_kv_blocks, cfg->block_size, m->cfg.n_layers, m->kv_dim,
		     cfg->prefix_caching);
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	e->running = xcalloc((size_t)cfg->max_num_seqs, sizeof(*e->running));
	e->discard = xcalloc((size_t)m->kv_dim, sizeof(float));
	e->stale_logits = xmalloc((size_t)m->cfg.vocab * sizeof(float));
	memcpy(e->stale_logits, m->lm_bias, (size_t)m->cfg.vocab * sizeof(float));
	return e;
}

void engine_set_faults(struct engine *e, struct kvo_faults *f)
{
	e->faults = f;
}

void engine_set_connector(struct engine *e, struct kv_connector *c)
{
	e->conn = c;
}

struct kvcache *engine_kvcache(struct engine *e)
{
	return &e->kc;
}

const struct model *engine_model(const struct engine *e)
{
	return e->m;
}

const struct engine_config *engine_config(const struct engine *e)
{
	return &e->cfg;
}

static void store_prompt(struct engine *e, struct engine_req *r, const int *blocks, int n_blocks);

static void release_blocks(struct engine *e, struct engine_req *r)
{
	/* a deferred save lands before the blocks go */
	if (r->save_pending) {
		store_prompt(e, r, r->blocks, r->n_blocks);
		r->save_pending = false;
	}
	/* tail first, so the prefix stays longest in the LRU */
	for (int i = r->n_blocks - 1; i >= 0; i--)
		kvcache_put(&e->kc, r->blocks[i]);
	r->n_blocks = 0;
	r->n_computed = 0;
	r->n_hit = 0;
	r->n_cached = 0;
	r->n_committed = 0;
}

/*
 * uaf-abort: the engine frees an aborted request's blocks without waiting
 * for its queued save; the save keeps the (now stale) block table.
 */
static void queue_save(struct engine *e, struct engine_req *r)
{
	if (e->n_saves == e->cap_saves) {
		e->cap_saves = e->cap_saves ? 2 * e->cap_saves : 8;
		e->saves = xrealloc(e->saves, (size_t)e->cap_saves * sizeof(*e->saves));
	}
	struct save *s = &e->saves[e->n_saves++];
	s->r = r;
	s->n_blocks = r->n_blocks;
	s->blocks = xmalloc((size_t)KV_MAX(r->n_blocks, 1) * sizeof(int));
	memcpy(s->blocks, r->blocks, (size_t)r->n_blocks * sizeof(int));
	s->gens = xmalloc((size_t)KV_MAX(r->n_blocks, 1) * sizeof(uint32_t));
	for (int b = 0; b < r->n_blocks; b++)
		s->gens[b] = e->kc.b[r->blocks[b]].gen;
	s->age = 0;
	pthread_mutex_lock(&r->mu);
	r->refs++;
	pthread_mutex_unlock(&r->mu);
	r->save_pending = false;
}

/*
 * e->mu held. Runs the queued saves once a block of theirs was handed out
 * again (after the step's forward wrote into it), after 64 steps, or all of
 * them. A block held again through a prefix-cache hit keeps its KV.
 */
static void land_saves(struct engine *e, bool all)
{
	for (int i = 0; i < e->n_saves;) {
		struct save *s = &e->saves[i];
		bool reused = false;
		for (int b = 0; b < s->n_blocks; b++)
			reused |= e->kc.b[s->blocks[b]].gen != s->gens[b];
		if (!all && !reused && ++s->age < 64) {
			i++;
			continue;
		}
		if (reused)
			kvo_fault_count(e->faults, KVO_F_UAF_ABORT);
		store_prompt(e, s->r, s->blocks, s->n_blocks);
		engine_req_put(s->r);
		free(s->blocks);
		free(s->gens);
		e->saves[i] = e->saves[--e->n_saves];
	}
}

static void hist_add(uint64_t *buckets, uint64_t *count, double *sum, double v)
{
	for (int i = 0; i < engine_ttft_nbounds; i++)
		if (v <= engine_ttft_bounds[i])
			buckets[i]++;
	(*count)++;
	*sum += v;
}

/* e->mu held. Removes r from running/waiting, frees its blocks, wakes the client. */
static void finish_req(struct engine *e, struct engine_req *r, enum engine_finish why, const char *err)
{
	for (int i = 0; i < e->n_running; i++)
		if (e->running[i] == r) {
			memmove(&e->running[i], &e->running[i + 1],
				(size_t)(e->n_running - i - 1) * sizeof(*e->running));
			e->n_running--;
			break;
		}
	for (int i = 0; i < e->n_waiting; i++)
		if (e->waiting[i] == r) {
			memmove(&e->waiting[i], &e->waiting[i + 1],
				(size_t)(e->n_waiting - i - 1) * sizeof(*e->waiting));
			e->n_waiting--;
			break;
		}
	if (r->save_pending && why == ENGINE_ABORT && fault_fires(e, KVO_F_UAF_ABORT))
		queue_save(e, r);
	release_blocks(e, r);
	e->st.finished[why]++;
	hist_add(e->st.e2e_buckets, &e->st.e2e_count, &e->st.e2e_sum,
		 kv_ns_to_s(kv_now_ns() - r->t_arrival_ns));
	pthread_mutex_lock(&r->mu);
	if (why != ENGINE_STOP || r->stop_index < 0)
		tok_stream_flush(&r->ts, &r->text);
	r->text_ready = r->text.len;
	r->finish = why;
	if (err)
		snprintf(r->error, sizeof(r->error), "%s", err);
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	engine_req_put(r);
}

static void abort_all(struct engine *e)
{
	pthread_mutex_lock(&e->mu);
	while (e->inc_head) {
		struct engine_req *r = e->inc_head;
		e->inc_head = r->next;
		finish_req(e, r, ENGINE_ABORT, "engine stopping");
	}
	e->inc_tail = NULL;
	while (e->n_running)
		finish_req(e, e->running[0], ENGINE_ABORT, "engine stopping");
	while (e->n_waiting)
		finish_req(e, e->waiting[0], ENGINE_ABORT, "engine stopping");
	pthread_mutex_unlock(&e->mu);
}

static void *engine_main(void *arg)
{
	struct engine *e = arg;
	pthread_mutex_lock(&e->mu);
	while (!e->stop) {
		if (!e->inc_head && !e->n_running && !e->n_waiting && !e->reset_pending) {
			pthread_cond_wait(&e->cv, &e->mu);
			continue;
		}
		pthread_mutex_unlock(&e->mu);
		engine_step(e);
		pthread_mutex_lock(&e->mu);
	}
	pthread_mutex_unlock(&e->mu);
	abort_all(e);
	return NULL;
}

void engine_start(struct engine *e)
{
	if (pthread_create(&e->th, NULL, engine_main, e))
		kv_die(3, "engine: cannot start the engine thread");
	e->started = true;
}

void engine_stop(struct engine *e)
{
	pthread_mutex_lock(&e->mu);
	e->stop = true;
	pthread_cond_signal(&e->cv);
	pthread_mutex_unlock(&e->mu);
	if (e->started) {
		pthread_join(e->th, NULL);
		e->started = false;
	} else {
		abort_all(e);
	}
}

void engine_free(struct engine *e)
{
	if (!e)
		return;
	if (e->started)
		engine_stop(e);
	abort_all(e);
	land_saves(e, true);
	free(e->saves);
	if (e->conn && e->conn->ops->free)
		e->conn->ops->free(e->conn);
	kvcache_release(&e->kc);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	free(e->running);
	free(e->waiting);
	free(e->rows);
	free(e->plan);
	free(e->logits);
	free(e->discard);
	free(e->stale_logits);
	free(e);
}

/* ---- keys, views ---- */

static void req_ns(const struct engine *e, const struct engine_req *r, struct kv_namespace *ns)
{
	memcpy(ns->model_id, e->m->id, 32);
	ns->revision = e->m->revision;
	if (r->sp.adapter > 0) {
		const struct model_adapter *ad = &e->m->adapters[r->sp.adapter - 1];
		ns->adapter = ad->cfg.name;
		ns->adapter_seed = ad->version;
	} else {
		ns->adapter = "";
		ns->adapter_seed = 0;
	}
	ns->salt = r->sp.salt ? r->sp.salt : "";
}

static void update_keys(struct engine *e, struct engine_req *r)
{
	int bs = e->cfg.block_size, want = r->n_all / bs;
	struct kv_namespace ns;

	if (want <= r->n_keys)
		return;
	if (want > r->cap_keys) {
		r->cap_keys = want + 8;
		r->keys = xrealloc(r->keys, (size_t)r->cap_keys * 32);
	}
	req_ns(e, r, &ns);
	for (int i = r->n_keys; i < want; i++)
		kvcache_key(&e->kc, i ? r->keys[i - 1] : NULL, &ns, r->all + (size_t)i * (size_t)bs,
			    r->keys[i]);
	r->n_keys = want;
}

static void commit_blocks(struct engine *e, struct engine_req *r)
{
	int full = r->n_computed / e->cfg.block_size;
	update_keys(e, r);
	for (; r->n_committed < full && r->n_committed < r->n_keys; r->n_committed++)
		kvcache_commit(&e->kc, r->blocks[r->n_committed], r->keys[r->n_committed]);
}

struct vctx {
	struct engine *e;
	struct engine_req *r;
	bool load;
	const int *blocks;    /* the block table read (r's, or a queued save's copy) */
	int n_blocks;
};

static float *view_row(void *ctx, int layer, int pos, bool v)
{
	struct vctx *c = ctx;
	struct engine *e = c->e;
	int bs = e->cfg.block_size;
	assert(pos >= 0 && pos / bs < c->n_blocks);
	if (c->load && pos < c->r->n_hit)
		return e->discard;
	int blk = c->blocks[pos / bs];
	return v ? model_kv_v(&e->kc.kv, e->m->kv_dim, blk, layer, pos % bs) :
		   model_kv_k(&e->kc.kv, e->m->kv_dim, blk, layer, pos % bs);
}

static float *view_k(void *ctx, int layer, int pos)
{
	return view_row(ctx, layer, pos, false);
}

static float *view_v(void *ctx, int layer, int pos)
{
	return view_row(ctx, layer, pos, true);
}

/* Stores r's prompt KV through the block table blocks (kvc_store). */
static void store_prompt(struct engine *e, struct engine_req *r, const int *blocks, int n_blocks)
{
	struct kv_namespace ns;
	struct vctx c = { e, r, false, blocks, n_blocks };
	struct kv_seq_view v = { e->m->cfg.n_layers, e->m->kv_dim, view_k, view_v, &c };
	req_ns(e, r, &ns);
	kvc_store(e->conn, &ns, r->prompt, r->n_prompt, &v);
}

/* ---- scheduling ---- */

static bool grow_blocks(struct engine *e, struct engine_req *r, int nblocks)
{
	if (nblocks > r->cap_blocks) {
		r->cap_blocks = nblocks + 16;
		r->blocks = xrealloc(r->blocks, (size_t)r->cap_blocks * sizeof(int));
	}
	while (r->n_blocks < nblocks) {
		int b = kvcache_alloc(&e->kc);
		if (b < 0)
			return false;
		r->blocks[r->n_blocks++] = b;
	}
	return true;
}

/* e->mu held. Matches the prefix cache, loads from the connector, allocates. */
static bool admit(struct engine *e, struct engine_req *r)
{
	int bs = e->cfg.block_size, need = (r->n_all + bs - 1) / bs;
	/* the last token is recomputed so that its logits exist; full-hit
	 * imitates the engine that forgets this when the whole prompt is cached */
	bool fh = fault_fires(e, KVO_F_FULL_HIT);
	int maxhit = fh && r->n_all % bs == 0 ? r->n_all / bs : (r->n_all - 1) / bs;
	int nhit = 0, reclaim = 0;

	update_keys(e, r);
	if (need > r->cap_blocks) {
		r->cap_blocks = need + 16;
		r->blocks = xrealloc(r->blocks, (size_t)r->cap_blocks * sizeof(int));
	}
	for (; nhit < maxhit; nhit++) {
		int b = kvcache_lookup(&e->kc, r->keys[nhit]);
		if (b < 0)
			break;
		r->blocks[nhit] = b;
		if (e->kc.b[b].ref == 0)
			reclaim++;
	}
	if (e->kc.n_free - reclaim < need - nhit)
		return false;
	for (int i = 0; i < nhit; i++)
		kvcache_acquire(&e->kc, r->blocks[i]);
	r->n_blocks = nhit;
	if (!grow_blocks(e, r, need))
		assert(0);
	r->n_hit = nhit * bs;
	r->n_computed = r->n_hit;
	r->n_committed = nhit;
	e->st.prefix_queries += (uint64_t)r->n_all;
	e->st.prefix_hits += (uint64_t)r->n_hit;

	int got = 0;
	if (e->conn) {
		struct kv_namespace ns;
		req_ns(e, r, &ns);
		e->st.ext_queries += (uint64_t)r->n_all;
		int n = kvc_lookup(e->conn, &ns, r->all, r->n_all);
		if (n > r->n_all - (fh ? 0 : 1))
			n = r->n_all - (fh ? 0 : 1);
		if (n > r->n_hit) {
			struct vctx c = { e, r, true, r->blocks, r->n_blocks };
			struct kv_seq_view v = { e->m->cfg.n_layers, e->m->kv_dim, view_k, view_v, &c };
			got = kvc_load(e->conn, &ns, r->all, n, &v);
			if (got > n)
				got = n;
			if (got > r->n_hit) {
				e->st.ext_hits += (uint64_t)(got - r->n_hit);
				r->n_computed = got;
				if (fault_fires(e, KVO_F_ROPE_SHIFT)) {
					/* the loaded K rows rotated with a wrong position offset */
					int sh = (int)e->faults->arg[KVO_F_ROPE_SHIFT];
					for (int p = r->n_hit; p < got; p++)
						for (int l = 0; l < e->m->cfg.n_layers; l++)
							model_rope_shift(e->m, view_k(&c, l, p), sh);
					kvo_fault_count(e->faults, KVO_F_ROPE_SHIFT);
				}
			}
		}
	}
	int cached = r->n_computed;
	r->n_cached = cached;
	commit_blocks(e, r);
	if (fh && r->n_computed == r->n_all) {
		/* nothing left to compute: the first token comes without logits */
		r->full_hit = true;
		r->plp_pending = false;
		kvo_fault_count(e->faults, KVO_F_FULL_HIT);
	}
	/* recompute one row for the first prompt logprob; it reads the cached
	 * KV of its position and does not write it (write_kv is off below
	 * n_cached) */
	if (r->plp_pending && r->n_computed > 0)
		r->n_computed--;
	pthread_mutex_lock(&r->mu);
	if (r->n_out == 0)
		r->cached_tokens = cached;
	pthread_mutex_unlock(&r->mu);
	return true;
}

/* e->mu held. Frees the blocks of r and puts it first in the waiting queue. */
static void preempt(struct engine *e, struct engine_req *r)
{
	for (int i = 0; i < e->n_running; i++)
		if (e->running[i] == r) {
			memmove(&e->running[i], &e->running[i + 1],
				(size_t)(e->n_running - i - 1) * sizeof(*e->running));
			e->n_running--;
			break;
		}
	release_blocks(e, r);
	r->plp_pending = false;
	if (e->n_waiting == e->cap_waiting) {
		e->cap_waiting = e->cap_waiting ? 2 * e->cap_waiting : 64;
		e->waiting = xrealloc(e->waiting, (size_t)e->cap_waiting * sizeof(*e->waiting));
	}
	memmove(&e->waiting[1], &e->waiting[0], (size_t)e->n_waiting * sizeof(*e->waiting));
	e->waiting[0] = r;
	e->n_waiting++;
	e->st.preemptions++;
}

/* ---- sampling ---- */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* log-softmax of logits[v] at t; and the top k alternatives. */
static float logprob_of(const float *lg, int V, int32_t t, int k, int32_t *top_t, float *top_lp)
{
	float mx = lg[0];
	for (int i = 1; i < V; i++)
		mx = lg[i] > mx ? lg[i] : mx;
	double sum = 0;
	for (int i = 0; i < V; i++)
		sum += exp((double)lg[i] - mx);
	double lse = mx + log(sum);
	for (int j = 0; j < k; j++) {
		int best = -1;
		for (int i = 0; i < V; i++) {
			bool taken = false;
			for (int q = 0; q < j; q++)
				taken |= top_t[q] == i;
			if (!taken && (best < 0 || lg[i] > lg[best]))
				best = i;
		}
		top_t[j] = best;
		top_lp[j] = (float)((double)lg[best] - lse);
	}
	return (float)((double)lg[t] - lse);
}

static int32_t sample(struct engine_req *r, const float *lg, int V)
{
	bool mask_eos = r->n_out < r->sp.min_tokens;
	int best = -1;
	for (int i = 0; i < V; i++) {
		if (mask_eos && i == TOK_EOS)
			continue;
		if (best < 0 || lg[i] > lg[best])
			best = i;
	}
	if (r->sp.temperature <= 0)
		return best;
	double p[TOK_VOCAB + 64];
	int idx[TOK_VOCAB + 64];
	double sum = 0;
	assert(V <= (int)KV_ARRAY_SIZE(p));
	for (int i = 0; i < V; i++) {
		p[i] = (mask_eos && i == TOK_EOS) ? 0 : exp(((double)lg[i] - lg[best]) / r->sp.temperature);
		sum += p[i];
		idx[i] = i;
	}
	for (int i = 0; i < V; i++)
		p[i] /= sum;
	/* insertion sort by probability, ties by id: V is small */
	for (int i = 1; i < V; i++) {
		int x = idx[i], k = i;
		while (k > 0 && (p[idx[k - 1]] < p[x] || (p[idx[k - 1]] == p[x] && idx[k - 1] > x))) {
			idx[k] = idx[k - 1];
			k--;
		}
		idx[k] = x;
	}
	int keep = V;
	if (r->sp.top_p < 1.0) {
		double c = 0;
		for (int i = 0; i < V; i++) {
			c += p[idx[i]];
			if (c >= r->sp.top_p) {
				keep = i + 1;
				break;
			}
		}
	}
	double tot = 0;
	for (int i = 0; i < keep; i++)
		tot += p[idx[i]];
	double u = (double)(rng_next(&r->rng) >> 11) * 0x1p-53 * tot, c = 0;
	for (int i = 0; i < keep; i++) {
		c += p[idx[i]];
		if (u < c)
			return idx[i];
	}
	return idx[keep - 1];
}

/* e->mu held. Appends token t to r, checks stops. */
static void emit(struct engine *e, struct engine_req *r, int32_t t, const float *lg)
{
	int V = e->m->cfg.vocab;
	int32_t tt[ENGINE_MAX_TOP];
	float tl[ENGINE_MAX_TOP];
	float lp = logprob_of(lg, V, t, r->ntop, tt, tl);
	enum engine_finish fin = ENGINE_RUNNING;
	uint64_t now = kv_now_ns();

	if (r->n_all == r->cap_all) {
		r->cap_all *= 2;
		r->all = xrealloc(r->all, (size_t)r->cap_all * sizeof(int32_t));
	}
	r->all[r->n_all++] = t;
	e->st.generation_tokens++;

	pthread_mutex_lock(&r->mu);
	int n = r->n_out;
	if (n == 0 || (n >= 16 && (n & (n - 1)) == 0)) {
		size_t c = (size_t)(n ? 2 * n : 16);
		r->out_tok = xrealloc(r->out_tok, c * sizeof(int32_t));
		r->out_lp = xrealloc(r->out_lp, c * sizeof(float));
		r->out_top_tok = xrealloc(r->out_top_tok, c * (size_t)KV_MAX(r->ntop, 1) * sizeof(int32_t));
		r->out_top_lp = xrealloc(r->out_top_lp, c * (size_t)KV_MAX(r->ntop, 1) * sizeof(float));
	}
	r->out_tok[n] = t;
	r->out_lp[n] = lp;
	memcpy(r->out_top_tok + (size_t)n * (size_t)r->ntop, tt, (size_t)r->ntop * sizeof(int32_t));
	memcpy(r->out_top_lp + (size_t)n * (size_t)r->ntop, tl, (size_t)r->ntop * sizeof(float));
	r->n_out = n + 1;
	if (!r->t_first_ns) {
		r->t_first_ns = now;
		hist_add(e->st.ttft_buckets, &e->st.ttft_count, &e->st.ttft_sum,
			 kv_ns_to_s(now - r->t_arrival_ns));
	}
	size_t before = r->text.len;
	tok_stream_feed(&r->ts, t, &r->text);
	size_t maxstop = 0;
	for (int i = 0; i < r->sp.nstop; i++)
		maxstop = KV_MAX(maxstop, strlen(r->sp.stop[i]));
	if (t == TOK_EOS && !r->sp.ignore_eos && r->n_out > r->sp.min_tokens) {
		fin = ENGINE_STOP;
		r->stop_eos = true;
	} else if (r->sp.nstop && r->n_out >= r->sp.min_tokens) {
		size_t from = before >= maxstop ? before - maxstop + 1 : 0;
		const char *hit = NULL;
		for (int i = 0; i < r->sp.nstop; i++) {
			const char *s = r->sp.stop[i];
			size_t sl = strlen(s);
			for (size_t p = from; sl && p + sl <= r->text.len; p++)
				if (!memcmp(r->text.data + p, s, sl)) {
					if (!hit || r->text.data + p < hit) {
						hit = r->text.data + p;
						r->stop_index = i;
					}
					break;
				}
		}
		if (hit) {
			r->text.len = (size_t)(hit - r->text.data);
			r->text.data[r->text.len] = 0;
			fin = ENGINE_STOP;
		}
	}
	if (!fin && ((r->sp.max_tokens >= 0 && r->n_out >= r->sp.max_tokens) ||
		     r->n_all >= e->cfg.max_model_len))
		fin = ENGINE_LENGTH;
	if (!fin) {
		size_t hold = maxstop ? maxstop - 1 : 0;
		size_t ready = r->text.len > hold ? r->text.len - hold : 0;
		while (ready > 0 && ready < r->text.len && ((uint8_t)r->text.data[ready] & 0xc0) == 0x80)
			ready--;
		if (ready > r->text_ready)
			r->text_ready = ready;
	}
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	if (fin)
		finish_req(e, r, fin, NULL);
}

/* ---- one step ---- */

/* e->mu held. The prompt's KV is complete: count it, store it (or queue the
 * store until the request ends, the way asynchronous savers do, while
 * uaf-abort is on). */
static void prefill_done(struct engine *e, struct engine_req *r)
{
	e->st.prompt_tokens += (uint64_t)r->n_prompt;
	if (!e->conn || r->stored)
		return;
	if (e->faults && e->faults->on[KVO_F_UAF_ABORT])
		r->save_pending = true;
	else
		store_prompt(e, r, r->blocks, r->n_blocks);
	r->stored = true;
}

void engine_reset_prefix_cache(struct engine *e)
{
	pthread_mutex_lock(&e->mu);
	if (e->started) {
		e->reset_pending = true;
		pthread_cond_signal(&e->cv);
	} else {
		kvcache_reset(&e->kc);
	}
	pthread_mutex_unlock(&e->mu);
}

static void ensure_rows(struct engine *e, int rows, int plans)
{
	if (rows > e->cap_rows) {
		e->cap_rows = rows;
		e->rows = xrealloc(e->rows, (size_t)rows * sizeof(*e->rows));
		e->logits = xrealloc(e->logits, (size_t)rows * (size_t)e->m->cfg.vocab * sizeof(float));
	}
	if (plans > e->cap_plan) {
		e->cap_plan = plans;
		e->plan = xrealloc(e->plan, (size_t)plans * sizeof(*e->plan));
	}
}

int engine_step(struct engine *e)
{
	int bs = e->cfg.block_size, V = e->m->cfg.vocab;

	pthread_mutex_lock(&e->mu);
	while (e->inc_head) {
		struct engine_req *r = e->inc_head;
		e->inc_head = r->next;
		r->next = NULL;
		if (e->n_waiting == e->cap_waiting) {
			e->cap_waiting = e->cap_waiting ? 2 * e->cap_waiting : 64;
			e->waiting = xrealloc(e->waiting, (size_t)e->cap_waiting * sizeof(*e->waiting));
		}
		e->waiting[e->n_waiting++] = r;
	}
	e->inc_tail = NULL;
	if (e->reset_pending) {
		kvcache_reset(&e->kc);
		e->reset_pending = false;
	}
	/* aborts */
	for (int pass = 0; pass < 2; pass++) {
		struct engine_req **list = pass ? e->waiting : e->running;
		int *n = pass ? &e->n_waiting : &e->n_running;
		for (int i = 0; i < *n;) {
			struct engine_req *r = list[i];
			pthread_mutex_lock(&r->mu);
			bool ab = r->abort_requested;
			pthread_mutex_unlock(&r->mu);
			if (ab)
				finish_req(e, r, ENGINE_ABORT, "aborted");
			else
				i++;
		}
	}
	/* admission, first come first served */
	while (e->n_waiting && e->n_running < e->cfg.max_num_seqs) {
		struct engine_req *r = e->waiting[0];
		if (!admit(e, r))
			break;
		memmove(&e->waiting[0], &e->waiting[1], (size_t)(e->n_waiting - 1) * sizeof(*e->waiting));
		e->n_waiting--;
		e->running[e->n_running++] = r;
	}
	/* full-hit: requests whose whole prompt was cached have no row to
	 * compute; the first token is sampled from logits nobody computed */
	for (int i = 0; i < e->n_running;) {
		struct engine_req *r = e->running[i];
		if (!r->full_hit) {
			i++;
			continue;
		}
		r->full_hit = false;
		if (r->n_out == 0) /* not a preempted request coming back */
			prefill_done(e, r);
		if (r->sp.max_tokens == 0)
			finish_req(e, r, ENGINE_LENGTH, NULL);
		else
			emit(e, r, sample(r, e->stale_logits, V), e->stale_logits);
		if (i < e->n_running && e->running[i] == r)
			i++;
	}
	/* blocks for the decode rows; preempt the newest request when out */
	for (int i = 0; i < e->n_running; i++) {
		struct engine_req *r = e->running[i];
		int need = (r->n_all + bs - 1) / bs;
		while (!grow_blocks(e, r, need)) {
			struct engine_req *victim = e->running[e->n_running - 1];
			if (victim == r) {
				if (e->n_running == 1) {
					finish_req(e, r, ENGINE_ERROR, "the KV cache is too small for this request");
				} else {
					preempt(e, r);
				}
				r = NULL;
				i--;
				break;
			}
			preempt(e, victim);
		}
	}
	/* the batch: decodes first, then prefill chunks */
	int budget = e->cfg.max_num_batched_tokens, nplan = 0, nrows = 0;
	ensure_rows(e, budget + e->n_running, e->n_running);
	for (int pass = 0; pass < 2; pass++)
		for (int i = 0; i < e->n_running; i++) {
			struct engine_req *r = e->running[i];
			int want = r->n_all - r->n_computed;
			if ((pass == 0) != (want == 1) || want < 1)
				continue;
			int take = pass == 0 ? 1 : KV_MIN(want, budget);
			if (take <= 0)
				continue;
			budget -= take;
			e->plan[nplan++] = (struct plan){ r, r->n_computed, take, nrows };
			for (int p = r->n_computed; p < r->n_computed + take; p++) {
				struct model_row *row = &e->rows[nrows];
				bool lg = p == r->n_all - 1 || (r->plp_pending && p < r->n_prompt - 1);
				*row = (struct model_row){ r->all[p], p, r->blocks, p >= r->n_cached,
							   lg ? e->logits + (size_t)nrows * (size_t)V : NULL,
							   r->sp.adapter };
				nrows++;
			}
		}
	if (!nrows) {
		land_saves(e, false);
		pthread_mutex_unlock(&e->mu);
		return 0;
	}
	pthread_mutex_unlock(&e->mu);

	model_forward(e->m, &e->kc.kv, e->rows, nrows);

	pthread_mutex_lock(&e->mu);
	e->st.steps++;
	e->st.rows += (uint64_t)nrows;
	for (int pi = 0; pi < nplan; pi++) {
		struct plan *pl = &e->plan[pi];
		struct engine_req *r = pl->r;
		if (r->plp_pending) {
			pthread_mutex_lock(&r->mu);
			for (int k = 0; k < pl->n; k++) {
				int p = pl->first + k;
				if (p >= r->n_prompt - 1)
					break;
				int kk = KV_MAX(r->ntop, 1);
				r->prompt_lp[p + 1] = logprob_of(e->logits + (size_t)(pl->row0 + k) * (size_t)V, V,
								 r->all[p + 1], r->ntop,
								 r->prompt_top_tok + (size_t)(p + 1) * (size_t)kk,
								 r->prompt_top_lp + (size_t)(p + 1) * (size_t)kk);
			}
			pthread_mutex_unlock(&r->mu);
		}
		int prompt_before = r->n_computed < r->n_prompt;
		e->st.computed_prompt_tokens += (uint64_t)KV_MAX(0, KV_MIN(pl->first + pl->n, r->n_prompt) -
								 KV_MAX(pl->first, r->n_hit));
		r->n_computed = pl->first + pl->n;
		if (r->n_computed >= r->n_prompt - 1)
			r->plp_pending = false;
		commit_blocks(e, r);
		if (prompt_before && r->n_computed >= r->n_prompt)
			prefill_done(e, r);
		if (r->n_computed == r->n_all) {
			if (r->sp.max_tokens == 0) {
				finish_req(e, r, ENGINE_LENGTH, NULL);
				continue;
			}
			const float *lg = e->logits + (size_t)(pl->row0 + pl->n - 1) * (size_t)V;
			emit(e, r, sample(r, lg, V), lg);
		}
	}
	land_saves(e, false);
	pthread_mutex_unlock(&e->mu);
	return nrows;
}

/* ---- stats ---- */

void engine_get_stats(struct engine *e, struct engine_stats *st)
{
	pthread_mutex_lock(&e->mu);
	*st = e->st;
	int in = 0;
	for (struct engine_req *r = e->inc_head; r; r = r->next)
		in++;
	st->running = e->n_running;
	st->waiting = e->n_waiting + in;
	st->blocks_total = e->kc.n_blocks;
	st->blocks_used = kvcache_used(&e->kc);
	int cached = 0;
	for (int i = 0; i < e->kc.n_blocks; i++)
		cached += e->kc.b[i].cached;
	st->blocks_cached = cached;
	st->evictions = e->kc.evictions;
	pthread_mutex_unlock(&e->mu);
}

static void hist_out(struct kv_buf *o, const char *name, const char *lab, const uint64_t *b,
		     uint64_t count, double sum)
{
	kv_buf_printf(o, "# TYPE %s histogram\n", name);
	for (int i = 0; i < engine_ttft_nbounds; i++)
		kv_buf_printf(o, "%s_bucket{%s,le=\"%g\"} %llu\n", name, lab, engine_ttft_bounds[i],
			      (unsigned long long)b[i]);
	kv_buf_printf(o, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, lab, (unsigned long long)count);
	kv_buf_printf(o, "%s_count{%s} %llu\n", name, lab, (unsigned long long)count);
	kv_buf_printf(o, "%s_sum{%s} %.6f\n", name, lab, sum);
}

/*
 * vLLM's vllm:lora_requests_info gauge (only with adapters): the names of the
 * adapters of running and of waiting requests, comma-separated, as labels;
 * the value is the scrape's wall-clock time in seconds, as vLLM's.
 */
static void lora_info(struct engine *e, struct kv_buf *o)
{
	bool run[MODEL_MAX_ADAPTERS + 1] = { false }, wait[MODEL_MAX_ADAPTERS + 1] = { false };
	const struct model *m = e->m;
	if (!m->n_adapters)
		return;
	pthread_mutex_lock(&e->mu);
	for (int i = 0; i < e->n_running; i++)
		run[e->running[i]->sp.adapter] = true;
	for (int i = 0; i < e->n_waiting; i++)
		wait[e->waiting[i]->sp.adapter] = true;
	for (struct engine_req *r = e->inc_head; r; r = r->next)
		wait[r->sp.adapter] = true;
	pthread_mutex_unlock(&e->mu);
	struct kv_buf rs = KV_BUF_INIT(0), ws = KV_BUF_INIT(0);
	for (int a = 1; a <= m->n_adapters; a++) {
		if (run[a])
			kv_buf_printf(&rs, "%s%s", rs.len ? "," : "", m->adapters[a - 1].cfg.name);
		if (wait[a])
			kv_buf_printf(&ws, "%s%s", ws.len ? "," : "", m->adapters[a - 1].cfg.name);
	}
	kv_buf_printf(o, "# HELP vllm:lora_requests_info Running stats on lora requests.\n"
			 "# TYPE vllm:lora_requests_info gauge\n"
			 "vllm:lora_requests_info{max_lora=\"%d\",waiting_lora_adapters=\"%s\",running_lora_adapters=\"%s\"} %.3f\n",
		      m->n_adapters, kv_buf_str(&ws), kv_buf_str(&rs), (double)time(NULL));
	kv_buf_release(&rs);
	kv_buf_release(&ws);
}

void engine_metrics(struct engine *e, const char *model_name, struct kv_buf *o)
{
	struct engine_stats s;
	char lab[160];
	engine_get_stats(e, &s);
	snprintf(lab, sizeof(lab), "model_name=\"%s\",engine=\"0\"", model_name);
#define G(name, help, v) kv_buf_printf(o, "# HELP %s %s\n# TYPE %s gauge\n%s{%s} %.6g\n", name, help, name, name, lab, (double)(v))
#define C(name, help, v) kv_buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n%s{%s} %llu\n", name, help, name, name, lab, (unsigned long long)(v))
	G("vllm:num_requests_running", "Requests in the running batch.", s.running);
	G("vllm:num_requests_waiting", "Requests waiting to be admitted.", s.waiting);
	G("vllm:kv_cache_usage_perc", "KV-cache usage, 1 means 100 percent (blocks referenced by requests).",
	  s.blocks_total ? (double)s.blocks_used / s.blocks_total : 0);
	C("vllm:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.", s.prefix_queries);
	C("vllm:prefix_cache_hits_total", "Prompt tokens served by the prefix cache.", s.prefix_hits);
	C("vllm:external_prefix_cache_queries_total", "Prompt tokens looked up in the KV connector.", s.ext_queries);
	C("vllm:external_prefix_cache_hits_total", "Prompt tokens loaded from the KV connector.", s.ext_hits);
	C("vllm:prompt_tokens_total", "Prompt tokens of requests that finished prefill.", s.prompt_tokens);
	C("vllm:generation_tokens_total", "Generated tokens.", s.generation_tokens);
	C("vllm:num_preemptions_total", "Requests preempted for lack of KV blocks.", s.preemptions);
	kv_buf_printf(o, "# HELP vllm:request_success_total Finished requests by reason.\n# TYPE vllm:request_success_total counter\n");
	static const char *const why[] = { "running", "stop", "length", "abort", "error" };
	for (int i = 1; i < 5; i++)
		kv_buf_printf(o, "vllm:request_success_total{%s,finished_reason=\"%s\"} %llu\n", lab, why[i],
			      (unsigned long long)s.finished[i]);
	hist_out(o, "vllm:time_to_first_token_seconds", lab, s.ttft_buckets, s.ttft_count, s.ttft_sum);
	hist_out(o, "vllm:e2e_request_latency_seconds", lab, s.e2e_buckets, s.e2e_count, s.e2e_sum);
	G("kvserve:kv_cache_blocks_total", "KV blocks in the cache.", s.blocks_total);
	G("kvserve:kv_cache_blocks_used", "KV blocks referenced by requests.", s.blocks_used);
	G("kvserve:kv_cache_blocks_cached", "KV blocks holding a prefix-cache entry.", s.blocks_cached);
	C("kvserve:prefix_cache_evictions_total", "Cached blocks evicted (LRU).", s.evictions);
	C("kvserve:prompt_tokens_computed_total", "Prompt positions computed (not served by a cache).",
	  s.computed_prompt_tokens);
	C("kvserve:engine_steps_total", "Forward steps run.", s.steps);
	C("kvserve:engine_rows_total", "Token rows computed in all steps.", s.rows);
	lora_info(e, o);
#undef G
#undef C
	if (e->conn && e->conn->ops->metrics) {
		pthread_mutex_lock(&e->mu);
		e->conn->ops->metrics(e->conn, o);
		pthread_mutex_unlock(&e->mu);
	}
}
