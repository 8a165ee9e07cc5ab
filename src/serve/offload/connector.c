/*
 * connector.c: the LMCache-style KV connector of kvserve (offload.h,
 * kv_connector.h): chunk keys, tier lookup CPU -> disk -> remote, loads with
 * verification and promotion, write-through stores, faults and metrics.
 */
#include "common/util.h"
#include "offload/offload.h"

#include <inttypes.h>
#include <time.h>

#include "common/buf.h"
#include "common/clock.h"
#include "offload/disk.h"
#include "offload/lru.h"
#include "offload/remote.h"

#include "common/banned.h"

enum tier { T_CPU, T_DISK, T_REMOTE, NTIER };
static const char *const tier_names[NTIER] = { "cpu", "disk", "remote" };

static const double hist_le[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
				  0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5 };
#define NB KV_ARRAY_SIZE(hist_le)

struct hist {
	uint64_t b[NB + 1]; /* the last is +Inf */
	uint64_t sum_ns;
};

static void hist_add(struct hist *h, uint64_t ns)
{
	double s = (double)ns / 1e9;
	size_t i = 0;
	while (i < NB && s > hist_le[i])
		i++;
	__atomic_fetch_add(&h->b[i], 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&h->sum_ns, ns, __ATOMIC_RELAXED);
}

/* All counters are updated with relaxed atomics. */
struct tier_m {
	uint64_t probes, probe_hits;       /* chunk lookups in this tier */
	uint64_t hit_tokens;               /* tokens loaded from this tier */
	uint64_t stored_chunks, stored_bytes, loaded_bytes;
	uint64_t errors;                   /* failed loads / stores / bad objects */
	struct hist load, store;
};

/* race: a CPU-tier entry whose bytes have not landed yet */
struct pending_write {
	struct kvo_key key;
	uint8_t *blob;       /* the bytes that will land */
	size_t len;
	uint64_t due_ns;
};

struct conn {
	struct kv_connector base;
	struct kvo_config cfg;
	struct kvo_lru *cpu;
	struct kvo_disk *disk;
	struct kvo_remote *remote;
	struct tier_m t[NTIER];
	uint64_t lookup_requests, requested_tokens, lookup_hit_tokens, miss_tokens;
	uint64_t load_requests, retrieved_tokens, stored_tokens, store_requests;
	uint64_t verify_errors, promotions, remote_budget_skips;
	struct pending_write *pw; /* race fault (engine thread only) */
	int n_pw, cap_pw;
};

static void add(uint64_t *c, uint64_t n)
{
	__atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *c)
{
	return __atomic_load_n(c, __ATOMIC_RELAXED);
}

/*
 * race: writes the bytes of CPU-tier entries whose delay is over (all of
 * them when all), into the entry that the index already published.
 */
static void land_writes(struct conn *c, bool all)
{
	uint64_t now = kv_now_ns();
	for (int i = 0; i < c->n_pw;) {
		struct pending_write *w = &c->pw[i];
		if (!all && now < w->due_ns) {
			i++;
			continue;
		}
		struct kvo_lru_ent *e = c->cpu ? kvo_lru_get(c->cpu, &w->key) : NULL;
		if (e && e->data && e->size == w->len)
			memcpy(e->data, w->blob, w->len);
		if (e)
			kvo_lru_put_ref(c->cpu, e);
		free(w->blob);
		c->pw[i] = c->pw[--c->n_pw];
	}
}

static bool write_pending(const struct conn *c, const struct kvo_key *k)
{
	for (int i = 0; i < c->n_pw; i++)
		if (!memcmp(c->pw[i].key.b, k->b, 32))
			return true;
	return false;
}

/*
 * race: the copy published in the index now: header and token ids, the KV
 * payload not written yet (zeros); the real bytes land due ms later.
 */
static uint8_t *publish_early(struct conn *c, const struct kvo_key *k, uint8_t *blob, size_t len,
			      int ntok)
{
	size_t head = KVO_HDR_BYTES + 4 * (size_t)ntok;
	uint8_t *pub = xcalloc(1, len);
	memcpy(pub, blob, KV_MIN(head, len));
	if (c->n_pw == c->cap_pw) {
		c->cap_pw = c->cap_pw ? 2 * c->cap_pw : 16;
		c->pw = xrealloc(c->pw, (size_t)c->cap_pw * sizeof(*c->pw));
	}
	c->pw[c->n_pw++] = (struct pending_write){
		*k, blob, len, kv_now_ns() + (uint64_t)c->cfg.faults.arg[KVO_F_RACE] * 1000000ull
	};
	return pub;
}

/* Keys of the first nch chunks for encoding e (faults KEY stage applied). */
static void chunk_keys(struct conn *c, const struct kv_namespace *ns, const int32_t *toks,
		       int ntok, int nch, enum kvo_enc e, struct kvo_key *out)
{
	int cs = (int)c->cfg.chunk_size;
	unsigned drop = kvo_faults_key_drop(&c->cfg.faults);
	int bits = kvo_faults_key_bits(&c->cfg.faults);
	struct kvo_key prev, trunc;

	kvo_key_seed(ns, e, cs, drop, &prev);
	for (int i = 0; i < nch; i++) {
		int n = KV_MIN(cs, ntok - i * cs);
		kvo_key_next(&prev, toks + (size_t)i * cs, n, &out[i]);
		prev = out[i]; /* the chain runs on full keys */
		if (bits < 256) {
			trunc = out[i];
			kvo_key_truncate(&trunc, bits);
			out[i] = trunc;
		}
	}
}

/*
 * The remote tier gets at most one remote timeout per connector call in
 * total, so a slow-but-alive cache cannot stretch a request to N timeouts
 * (one per chunk); past the budget the call goes on without the tier.
 */
static bool remote_ok(struct conn *c, uint64_t t_call)
{
	if (!c->remote)
		return false;
	if (kv_now_ns() - t_call <= (uint64_t)(c->cfg.remote_timeout_s * 1e9))
		return true;
	add(&c->remote_budget_skips, 1);
	return false;
}

static bool need_remote_keys(const struct conn *c)
{
	return c->remote && c->cfg.remote_enc != c->cfg.encoding;
}

static int c_lookup(struct kv_connector *kc, const struct kv_namespace *ns,
		    const int32_t *toks, int ntok)
{
	struct conn *c = kc->priv;
	int cs = (int)c->cfg.chunk_size, maxc, i, n;
	struct kvo_key *k, *kr;
	uint64_t t_call = kv_now_ns();

	add(&c->lookup_requests, 1);
	add(&c->requested_tokens, (uint64_t)KV_MAX(ntok, 0));
	land_writes(c, false);
	if (ntok <= 1)
		return 0;
	/* the last prompt token is always computed; full-hit offers the whole
	 * prompt and the engine forgets to hold the last token back */
	maxc = c->cfg.faults.on[KVO_F_FULL_HIT] ? ntok / cs : (ntok - 1) / cs;
	if (!maxc)
		return 0;
	k = xmalloc((size_t)maxc * sizeof(*k));
	chunk_keys(c, ns, toks, ntok, maxc, c->cfg.encoding, k);
	kr = k;
	if (need_remote_keys(c)) {
		kr = xmalloc((size_t)maxc * sizeof(*kr));
		chunk_keys(c, ns, toks, ntok, maxc, c->cfg.remote_enc, kr);
	}
	for (i = 0; i < maxc; i++) {
		bool hit = false;
		if (c->cpu) {
			add(&c->t[T_CPU].probes, 1);
			hit = kvo_lru_contains(c->cpu, &k[i]);
			if (hit)
				add(&c->t[T_CPU].probe_hits, 1);
		}
		if (!hit && c->disk) {
			add(&c->t[T_DISK].probes, 1);
			hit = kvo_disk_contains(c->disk, &k[i]);
			if (hit)
				add(&c->t[T_DISK].probe_hits, 1);
		}
		if (!hit && remote_ok(c, t_call)) {
			int rc = kvo_remote_exists(c->remote, &kr[i]);
			add(&c->t[T_REMOTE].probes, 1);
			hit = rc == 1;
			if (hit)
				add(&c->t[T_REMOTE].probe_hits, 1);
			if (rc < 0)
				add(&c->t[T_REMOTE].errors, 1);
		}
		if (!hit)
			break;
	}
	n = i * cs;
	if (n < c->cfg.min_retrieve_tokens)
		n = 0;
	add(&c->lookup_hit_tokens, (uint64_t)n);
	if (kr != k)
		free(kr);
	free(k);
	return n;
}

/* Zeroes K and V rows [from, to) in every layer. */
static void zero_rows(const struct kv_seq_view *v, int from, int to)
{
	for (int l = 0; l < v->n_layers; l++)
		for (int p = from; p < to; p++) {
			memset(v->k_row(v->ctx, l, p), 0, (size_t)v->kv_dim * sizeof(float));
			memset(v->v_row(v->ctx, l, p), 0, (size_t)v->kv_dim * sizeof(float));
		}
}

static void bitflip(struct conn *c, const struct kv_seq_view *v, int pos, int ntok)
{
	struct kvo_faults *f = &c->cfg.faults;
	for (int i = 0; i < 16; i++) {
		uint64_t r = kvo_fault_rand(f);
		int l = (int)(r % (uint64_t)v->n_layers);
		int t = (int)((r >> 16) % (uint64_t)ntok);
		int d = (int)((r >> 32) % (uint64_t)v->kv_dim);
		int bit = 23 + (int)((r >> 56) % 7);
		float *row = (r >> 63) ? v->v_row(v->ctx, l, pos + t) : v->k_row(v->ctx, l, pos + t);
		uint32_t u;
		memcpy(&u, &row[d], 4);
		u ^= 1u << bit;
		memcpy(&row[d], &u, 4);
	}
}

/*
 * Fetches chunk i: CPU (referenced entry), disk or remote (malloc'ed).
 * Returns the tier or -1 on a miss/error.
 */
struct fetched {
	const uint8_t *blob;
	size_t len;
	struct kvo_lru_ent *ent; /* CPU reference, else NULL */
	uint8_t *owned;          /* disk / remote copy, else NULL */
};

static int fetch(struct conn *c, const struct kvo_key *k, const struct kvo_key *kr,
		 struct fetched *f, uint64_t t_call)
{
	memset(f, 0, sizeof(*f));
	if (c->cpu && (f->ent = kvo_lru_get(c->cpu, k))) {
		f->blob = f->ent->data;
		f->len = f->ent->size;
		return T_CPU;
	}
	if (c->disk) {
		int rc = kvo_disk_get(c->disk, k, &f->owned, &f->len);
		if (rc < 0)
			add(&c->t[T_DISK].errors, 1);
		if (rc == 1) {
			f->blob = f->owned;
			return T_DISK;
		}
	}
	if (remote_ok(c, t_call)) {
		int rc = kvo_remote_get(c->remote, kr, &f->owned, &f->len);
		if (rc < 0)
			add(&c->t[T_REMOTE].errors, 1);
		if (rc == 1) {
			f->blob = f->owned;
			return T_REMOTE;
		}
	}
	return -1;
}

static void fetched_release(struct conn *c, struct fetched *f)
{
	if (f->ent)
		kvo_lru_put_ref(c->cpu, f->ent);
	free(f->owned);
	memset(f, 0, sizeof(*f));
}

static bool tokens_match(const uint8_t *stored, const int32_t *toks, int n)
{
	for (int i = 0; i < n; i++) {
		const uint8_t *p = stored + 4 * (size_t)i;
		uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			     (uint32_t)p[3] << 24;
		if ((int32_t)v != toks[i])
			return false;
	}
	return true;
}

static bool fire(struct conn *c, enum kvo_fault_id id)
{
	if (!kvo_fault_fires(&c->cfg.faults, id))
		return false;
	kvo_fault_count(&c->cfg.faults, id);
	return true;
}

static int c_load(struct kv_connector *kc, const struct kv_namespace *ns,
		  const int32_t *toks, int n, const struct kv_seq_view *view)
{
	struct conn *c = kc->priv;
	struct kvo_faults *F = &c->cfg.faults;
	int cs = (int)c->cfg.chunk_size, nch = n / cs, got = 0;
	/* faults that imitate a cache with no digest check switch ours off */
	bool verify = c->cfg.verify_tokens && !F->on[KVO_F_WRONG_KEY] &&
		      !F->on[KVO_F_TRUNCATE_KEY];
	struct kvo_key *k, *kr;
	uint64_t t_call = kv_now_ns();

	add(&c->load_requests, 1);
	land_writes(c, false);
	if (nch <= 0)
		return 0;
	if (F->on[KVO_F_DELAY]) {
		struct timespec ts = { F->arg[KVO_F_DELAY] / 1000,
				       (F->arg[KVO_F_DELAY] % 1000) * 1000000 };
		kvo_fault_count(F, KVO_F_DELAY);
		nanosleep(&ts, NULL);
	}
	k = xmalloc((size_t)nch * sizeof(*k));
	chunk_keys(c, ns, toks, n, nch, c->cfg.encoding, k);
	kr = k;
	if (need_remote_keys(c)) {
		kr = xmalloc((size_t)nch * sizeof(*kr));
		chunk_keys(c, ns, toks, n, nch, c->cfg.remote_enc, kr);
	}
	for (int i = 0; i < nch; i++) {
		uint64_t t0 = kv_now_ns();
		struct fetched f, other;
		struct kvo_decode_mods m = { 0 };
		struct kvo_hdr h;
		const char *why;
		int tier = fetch(c, &k[i], &kr[i], &f, t_call), pos = i * cs;
		bool truncated = false;

		if (tier < 0)
			break;
		if (tier == T_CPU && c->n_pw && write_pending(c, &k[i]))
			kvo_fault_count(F, KVO_F_RACE); /* reads bytes not written yet */
		if (c->cpu && kvo_fault_fires(F, KVO_F_WRONG_KEY)) {
			struct kvo_lru_ent *e = kvo_lru_get_other(c->cpu, &k[i], kvo_fault_rand(F));
			if (e) {
				kvo_fault_count(F, KVO_F_WRONG_KEY);
				fetched_release(c, &f);
				memset(&other, 0, sizeof(other));
				other.ent = e;
				other.blob = e->data;
				other.len = e->size;
				f = other;
				tier = T_CPU;
			}
		}
		truncated = fire(c, KVO_F_TRUNCATE);
		if (kvo_blob_parse(f.blob, f.len, tier != T_CPU, &h, &why) < 0 ||
		    (int)h.n_layers != view->n_layers || (int)h.kv_dim != view->kv_dim ||
		    (int)h.ntok != cs) {
			if (tier == T_CPU)
				kvo_lru_remove(c->cpu, &k[i]);
			add(&c->t[tier].errors, 1);
			fetched_release(c, &f);
			break;
		}
		if (verify && (memcmp(h.key.b, (tier == T_REMOTE ? &kr[i] : &k[i])->b, 32) ||
			       !tokens_match(kvo_blob_tokens(f.blob), toks + pos, cs))) {
			/* the Dig check: a wrong object under this key */
			add(&c->verify_errors, 1);
			add(&c->t[tier].errors, 1);
			fetched_release(c, &f);
			break;
		}
		if (F->on[KVO_F_OFFSET] && fire(c, KVO_F_OFFSET))
			m.pos_shift = (int)F->arg[KVO_F_OFFSET];
		if (F->on[KVO_F_LAYER_SHIFT] && fire(c, KVO_F_LAYER_SHIFT))
			m.layer_shift = (int)F->arg[KVO_F_LAYER_SHIFT];
		m.swap_kv = fire(c, KVO_F_SWAP_KV);
		m.poison = fire(c, KVO_F_POISON);
		m.lossy = fire(c, KVO_F_LOSSY);
		kvo_blob_decode(f.blob, &h, view, pos, &m);
		if (truncated)
			zero_rows(view, pos + cs / 2, pos + cs);
		if (i == nch - 1 && fire(c, KVO_F_ZERO_TAIL))
			zero_rows(view, pos + cs - 1, pos + cs);
		if (fire(c, KVO_F_BITFLIP))
			bitflip(c, view, pos, cs);
		/* a chunk served under a faulty key counts for each key fault */
		if (F->on[KVO_F_TRUNCATE_KEY])
			kvo_fault_count(F, KVO_F_TRUNCATE_KEY);
		if (F->on[KVO_F_DROP_KEY])
			kvo_fault_count(F, KVO_F_DROP_KEY);
		if (F->on[KVO_F_STALE])
			kvo_fault_count(F, KVO_F_STALE);
		add(&c->t[tier].hit_tokens, (uint64_t)cs);
		add(&c->t[tier].loaded_bytes, f.len);
		/* promote a lower-tier hit into the CPU tier (same encoding only:
		 * the encoding is part of the key) */
		if (tier != T_CPU && c->cpu && f.owned &&
		    (tier == T_DISK || c->cfg.remote_enc == c->cfg.encoding)) {
			if (kvo_lru_insert(c->cpu, &k[i], f.owned, f.len) == 0)
				add(&c->promotions, 1);
			f.owned = NULL;
		}
		fetched_release(c, &f);
		hist_add(&c->t[tier].load, kv_now_ns() - t0);
		got = pos + cs;
	}
	add(&c->retrieved_tokens, (uint64_t)got);
	if (kr != k)
		free(kr);
	free(k);
	return got;
}

static void c_store(struct kv_connector *kc, const struct kv_namespace *ns,
		    const int32_t *toks, int ntok, const struct kv_seq_view *view)
{
	struct conn *c = kc->priv;
	int cs = (int)c->cfg.chunk_size;
	int nch = ntok / cs + (c->cfg.save_unfull_chunk && ntok % cs ? 1 : 0);
	struct kvo_key *k, *kr;
	uint64_t t_call = kv_now_ns();

	add(&c->store_requests, 1);
	land_writes(c, false);
	if (nch <= 0)
		return;
	k = xmalloc((size_t)nch * sizeof(*k));
	chunk_keys(c, ns, toks, ntok, nch, c->cfg.encoding, k);
	kr = k;
	if (need_remote_keys(c)) {
		kr = xmalloc((size_t)nch * sizeof(*kr));
		chunk_keys(c, ns, toks, ntok, nch, c->cfg.remote_enc, kr);
	}
	for (int i = 0; i < nch; i++) {
		int pos = i * cs, len = KV_MIN(cs, ntok - pos);
		bool need_cpu = c->cpu && !kvo_lru_contains(c->cpu, &k[i]);
		bool need_disk = c->disk && !kvo_disk_contains(c->disk, &k[i]);
		int rex = remote_ok(c, t_call) ? kvo_remote_exists(c->remote, &kr[i]) : 1;
		bool need_remote = rex == 0;
		uint8_t *blob = NULL, *rblob = NULL;
		size_t blen = 0, rlen = 0;
		uint64_t t0;
		bool any = false;

		if (rex < 0)
			add(&c->t[T_REMOTE].errors, 1);
		if (!need_cpu && !need_disk && !need_remote)
			continue;
		t0 = kv_now_ns();
		if (need_cpu || need_disk)
			blob = kvo_blob_encode(c->cfg.encoding, &k[i], toks + pos, len, view, pos,
					       &blen);
		if (need_remote) {
			if (blob && kr == k) {
				rblob = blob;
				rlen = blen;
			} else {
				rblob = kvo_blob_encode(c->cfg.remote_enc, &kr[i], toks + pos, len,
							view, pos, &rlen);
			}
		}
		if (need_remote) {
			uint64_t t1 = kv_now_ns();
			if (kvo_remote_put(c->remote, &kr[i], rblob, rlen) == 1) {
				add(&c->t[T_REMOTE].stored_chunks, 1);
				add(&c->t[T_REMOTE].stored_bytes, rlen);
				any = true;
			} else {
				add(&c->t[T_REMOTE].errors, 1);
			}
			hist_add(&c->t[T_REMOTE].store, kv_now_ns() - t1 + (t1 - t0));
		}
		if (rblob != blob)
			free(rblob);
		if (need_disk) {
			uint64_t t1 = kv_now_ns();
			if (kvo_disk_put(c->disk, &k[i], blob, blen) == 0) {
				add(&c->t[T_DISK].stored_chunks, 1);
				add(&c->t[T_DISK].stored_bytes, blen);
				any = true;
			} else {
				add(&c->t[T_DISK].errors, 1);
			}
			hist_add(&c->t[T_DISK].store, kv_now_ns() - t1 + (t1 - t0));
		}
		if (need_cpu) {
			uint64_t t1 = kv_now_ns();
			if (c->cfg.faults.on[KVO_F_RACE])
				blob = publish_early(c, &k[i], blob, blen, len);
			if (kvo_lru_insert(c->cpu, &k[i], blob, blen) == 0) {
				add(&c->t[T_CPU].stored_chunks, 1);
				add(&c->t[T_CPU].stored_bytes, blen);
				any = true;
			}
			blob = NULL; /* owned by the pool (or freed when refused) */
			hist_add(&c->t[T_CPU].store, kv_now_ns() - t1 + (t1 - t0));
		}
		free(blob);
		if (any)
			add(&c->stored_tokens, (uint64_t)len);
	}
	if (kr != k)
		free(kr);
	free(k);
}

static void counter(struct kv_buf *o, const char *name, const char *help, uint64_t v)
{
	kv_buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name,
		      name, v);
}

static void tier_counter(struct kv_buf *o, struct conn *c, const char *name, const char *help,
			 size_t off)
{
	kv_buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
	for (int t = 0; t < NTIER; t++)
		kv_buf_printf(o, "%s{tier=\"%s\"} %" PRIu64 "\n", name, tier_names[t],
			      get((const uint64_t *)((const char *)&c->t[t] + off)));
}

static void tier_hist(struct kv_buf *o, struct conn *c, const char *name, const char *help,
		      bool load)
{
	kv_buf_printf(o, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (int t = 0; t < NTIER; t++) {
		struct hist *h = load ? &c->t[t].load : &c->t[t].store;
		uint64_t cum = 0;
		for (size_t i = 0; i <= NB; i++) {
			cum += get(&h->b[i]);
			if (i < NB)
				kv_buf_printf(o, "%s_bucket{tier=\"%s\",le=\"%g\"} %" PRIu64 "\n", name,
					      tier_names[t], hist_le[i], cum);
			else
				kv_buf_printf(o, "%s_bucket{tier=\"%s\",le=\"+Inf\"} %" PRIu64 "\n",
					      name, tier_names[t], cum);
		}
		kv_buf_printf(o, "%s_sum{tier=\"%s\"} %.9f\n%s_count{tier=\"%s\"} %" PRIu64 "\n",
			      name, tier_names[t], (double)get(&h->sum_ns) / 1e9, name,
			      tier_names[t], cum);
	}
}

static void c_metrics(struct kv_connector *kc, struct kv_buf *o)
{
	struct conn *c = kc->priv;
	struct kvo_lru_stats ls = { 0 };
	struct kvo_disk_stats ds = { 0 };
	uint64_t hit = 0;

	for (int t = 0; t < NTIER; t++)
		hit += get(&c->t[t].hit_tokens);
	counter(o, "kvserve:offload_lookup_requests_total", "Connector lookups (one per request).",
		get(&c->lookup_requests));
	counter(o, "kvserve:offload_requested_tokens_total", "Prompt tokens looked up.",
		get(&c->requested_tokens));
	counter(o, "kvserve:offload_lookup_hit_tokens_total",
		"Tokens the tiers held at lookup time.", get(&c->lookup_hit_tokens));
	counter(o, "kvserve:offload_retrieved_tokens_total", "Tokens loaded into the KV cache.", hit);
	counter(o, "kvserve:offload_miss_tokens_total",
		"Prompt tokens not loaded (requested - retrieved).",
		get(&c->requested_tokens) - KV_MIN(hit, get(&c->requested_tokens)));
	counter(o, "kvserve:offload_stored_tokens_total", "Tokens of newly stored chunks.",
		get(&c->stored_tokens));
	counter(o, "kvserve:offload_verify_errors_total",
		"Loaded objects whose key or token ids did not match (wrong KV refused).",
		get(&c->verify_errors));
	counter(o, "kvserve:offload_promotions_total", "Disk/remote hits copied into the CPU tier.",
		get(&c->promotions));
	counter(o, "kvserve:offload_remote_budget_skips_total",
		"Remote calls skipped: the call had used its one-timeout budget.",
		get(&c->remote_budget_skips));
	tier_counter(o, c, "kvserve:offload_lookups_total", "Chunk probes per tier.",
		     offsetof(struct tier_m, probes));
	tier_counter(o, c, "kvserve:offload_lookup_hits_total", "Chunk probes that found the chunk.",
		     offsetof(struct tier_m, probe_hits));
	tier_counter(o, c, "kvserve:offload_hit_tokens_total", "Tokens loaded from each tier.",
		     offsetof(struct tier_m, hit_tokens));
	tier_counter(o, c, "kvserve:offload_stored_chunks_total", "Chunks stored per tier.",
		     offsetof(struct tier_m, stored_chunks));
	tier_counter(o, c, "kvserve:offload_stored_bytes_total", "Bytes stored per tier.",
		     offsetof(struct tier_m, stored_bytes));
	tier_counter(o, c, "kvserve:offload_loaded_bytes_total", "Bytes loaded per tier.",
		     offsetof(struct tier_m, loaded_bytes));
	tier_counter(o, c, "kvserve:offload_errors_total",
		     "Failed loads/stores, bad objects, timeouts per tier.",
		     offsetof(struct tier_m, errors));
	tier_hist(o, c, "kvserve:offload_load_seconds", "Time to load one chunk.", true);
	tier_hist(o, c, "kvserve:offload_store_seconds", "Time to store one chunk.", false);
	if (c->cpu)
		kvo_lru_stats(c->cpu, &ls);
	if (c->disk)
		kvo_disk_stats(c->disk, &ds);
	kv_buf_printf(o, "# HELP kvserve:offload_usage_bytes Bytes held per tier.\n"
			 "# TYPE kvserve:offload_usage_bytes gauge\n"
			 "kvserve:offload_usage_bytes{tier=\"cpu\"} %" PRIu64 "\n"
			 "kvserve:offload_usage_bytes{tier=\"disk\"} %" PRIu64 "\n"
			 "# HELP kvserve:offload_capacity_bytes Byte budget per tier.\n"
			 "# TYPE kvserve:offload_capacity_bytes gauge\n"
			 "kvserve:offload_capacity_bytes{tier=\"cpu\"} %" PRIu64 "\n"
			 "kvserve:offload_capacity_bytes{tier=\"disk\"} %" PRIu64 "\n"
			 "# HELP kvserve:offload_evictions_total Chunks evicted per tier.\n"
			 "# TYPE kvserve:offload_evictions_total counter\n"
			 "kvserve:offload_evictions_total{tier=\"cpu\"} %" PRIu64 "\n"
			 "kvserve:offload_evictions_total{tier=\"disk\"} %" PRIu64 "\n"
			 "# HELP kvserve:offload_disk_corrupt_total Disk files dropped for a bad checksum or header.\n"
			 "# TYPE kvserve:offload_disk_corrupt_total counter\n"
			 "kvserve:offload_disk_corrupt_total %" PRIu64 "\n",
		      ls.used, ds.used, ls.budget, ds.budget, ls.evictions, ds.evictions, ds.corrupt);
	/* LMCache-style names, for kvbench's LMCache parser */
	counter(o, "lmcache:num_lookup_requests_total", "LMCache-compatible: lookups.",
		get(&c->lookup_requests));
	counter(o, "lmcache:num_requested_tokens_total", "LMCache-compatible: tokens asked.",
		get(&c->requested_tokens));
	counter(o, "lmcache:num_hit_tokens_total", "LMCache-compatible: tokens retrieved.", hit);
	counter(o, "lmcache:num_lookup_hits_total", "LMCache-compatible: hit tokens at lookup.",
		get(&c->lookup_hit_tokens));
	counter(o, "lmcache:num_stored_tokens_total", "LMCache-compatible: tokens stored.",
		get(&c->stored_tokens));
	counter(o, "lmcache:local_cpu_evict_count_total", "LMCache-compatible: CPU evictions.",
		ls.evictions);
	kvo_faults_metrics(&c->cfg.faults, o);
}

static void c_free(struct kv_connector *kc)
{
	struct conn *c;
	if (!kc)
		return;
	c = kc->priv;
	land_writes(c, true);
	free(c->pw);
	kvo_lru_free(c->cpu);
	kvo_disk_close(c->disk);
	kvo_remote_free(c->remote);
	kvo_config_release(&c->cfg);
	free(c);
}

static const struct kv_connector_ops conn_ops = {
	.lookup = c_lookup,
	.load = c_load,
	.store = c_store,
	.metrics = c_metrics,
	.free = c_free,
};

struct kv_connector *kvo_connector_new(const struct kvo_config *cfg, char **err)
{
	struct conn *c = xcalloc(1, sizeof(*c));

	c->cfg = *cfg;
	c->cfg.disk_dir = cfg->disk_dir ? xstrdup(cfg->disk_dir) : NULL;
	c->cfg.remote_url = cfg->remote_url ? xstrdup(cfg->remote_url) : NULL;
	memset(c->cfg.faults.injected, 0, sizeof(c->cfg.faults.injected));
	c->base.ops = &conn_ops;
	c->base.priv = c;
	if (c->cfg.chunk_size < 1) {
		*err = xasprintf("chunk_size must be >= 1");
		goto fail;
	}
	if (c->cfg.local_cpu && c->cfg.cpu_bytes)
		c->cpu = kvo_lru_new(c->cfg.cpu_bytes, NULL, NULL);
	if (c->cfg.disk_dir && c->cfg.disk_bytes) {
		c->disk = kvo_disk_open(c->cfg.disk_dir, c->cfg.disk_bytes, err);
		if (!c->disk)
			goto fail;
	}
	if (c->cfg.remote_url) {
		c->remote = kvo_remote_new(c->cfg.remote_url, c->cfg.remote_timeout_s, 0, err);
		if (!c->remote)
			goto fail;
	}
	return &c->base;
fail:
	c_free(&c->base);
	return NULL;
}

bool kvo_save_decode(const struct kv_connector *kc)
{
	const struct conn *c = kc->priv;
	return c->cfg.save_decode_cache;
}

struct kvo_faults *kvo_connector_faults(struct kv_connector *kc)
{
	struct conn *c = kc->priv;
	return &c->cfg.faults;
}
