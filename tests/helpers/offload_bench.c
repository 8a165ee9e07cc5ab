/*
 * offload_bench: load bandwidth of each offload tier against memcpy on the
 * same machine (bench/run-offload.sh). KV of --tokens tokens with --layers x
 * --kv-dim floats per K and V row, loaded through the connector into a
 * plain-array view, best of --reps. Prints one Markdown table row per case.
 */
#include "common/util.h"

#include <inttypes.h>
#include <signal.h>

#include "common/clock.h"
#include "common/opt.h"
#include "offload/offload.h"
#include "offload/remote.h"

#include "common/banned.h"

struct view {
	int L, D, cap;
	float *k, *v;
};

static float *krow(void *ctx, int l, int p)
{
	struct view *w = ctx;
	return w->k + ((size_t)l * w->cap + (size_t)p) * w->D;
}

static float *vrow(void *ctx, int l, int p)
{
	struct view *w = ctx;
	return w->v + ((size_t)l * w->cap + (size_t)p) * w->D;
}

static double best_of(int reps, struct kv_connector *c, const struct kv_namespace *ns,
		      const int32_t *toks, int n, const struct kv_seq_view *sv, int *got)
{
	double best = 1e30;
	for (int r = 0; r < reps; r++) {
		uint64_t t0 = kv_now_ns();
		*got = kvc_load(c, ns, toks, n, sv);
		best = KV_MIN(best, (double)(kv_now_ns() - t0) / 1e9);
	}
	return best;
}

int main(int argc, char **argv)
{
	int64_t layers = 8, kv_dim = 256, tokens = 4097, chunk = 256, reps = 5;
	const char *disk_dir = "/tmp/kvo-bench-disk";
	const struct kv_opt opts[] = {
		KV_OPT_INT(0, "layers", &layers, "N", 1, 256, "layers"),
		KV_OPT_INT(0, "kv-dim", &kv_dim, "N", 1, 65536, "floats per K (and V) row"),
		KV_OPT_INT(0, "tokens", &tokens, "N", 2, 1 << 20, "tokens loaded"),
		KV_OPT_INT(0, "chunk", &chunk, "N", 1, 65536, "chunk size, tokens"),
		KV_OPT_INT(0, "reps", &reps, "N", 1, 1000, "repetitions (best is kept)"),
		KV_OPT_STRING(0, "disk-dir", &disk_dir, "DIR", "folder for the disk tier"),
		KV_OPT_END,
	};
	struct kv_cmd_info info = { "offload_bench", "[options]",
				    "Load bandwidth per offload tier vs memcpy.", NULL };
	struct view w;
	struct kv_seq_view sv;
	struct kv_namespace ns;
	int32_t *toks;
	size_t kvbytes;
	double t_memcpy = 1e30;
	char *err = NULL;
	int n;

	kv_set_progname("offload_bench");
	signal(SIGPIPE, SIG_IGN);
	if (kv_opt_parse(&info, opts, argc, argv, NULL) != 0)
		return 2;
	w.L = (int)layers;
	w.D = (int)kv_dim;
	w.cap = (int)tokens + 1;
	w.k = xcalloc((size_t)w.L * w.cap * w.D, 4);
	w.v = xcalloc((size_t)w.L * w.cap * w.D, 4);
	for (size_t i = 0; i < (size_t)w.L * w.cap * w.D; i++) {
		w.k[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1;
		w.v[i] = (float)((i * 40503u) % 1000) / 500.0f - 1;
	}
	sv = (struct kv_seq_view){ w.L, w.D, krow, vrow, &w };
	memset(&ns, 0, sizeof(ns));
	ns.adapter = ns.salt = "";
	toks = xmalloc((size_t)(tokens + 1) * sizeof(*toks));
	for (int i = 0; i <= tokens; i++)
		toks[i] = i * 7 % 32000;
	n = (int)(tokens / chunk * chunk);
	if (n == tokens)
		n -= (int)chunk;
	kvbytes = (size_t)n * w.L * 2 * w.D * 4;
	{ /* memcpy of the same bytes, between two buffers of the same size */
		float *dk = xmalloc(kvbytes / 2), *dv = xmalloc(kvbytes / 2);
		size_t per_layer = (size_t)n * w.D * 4;
		for (int r = 0; r < reps + 1; r++) {
			uint64_t t0 = kv_now_ns();
			for (int l = 0; l < w.L; l++) {
				memcpy((char *)dk + l * per_layer, krow(&w, l, 0), per_layer);
				memcpy((char *)dv + l * per_layer, vrow(&w, l, 0), per_layer);
			}
			if (r)
				t_memcpy = KV_MIN(t_memcpy, (double)(kv_now_ns() - t0) / 1e9);
		}
		free(dk);
		free(dv);
	}
	printf("| case | tokens loaded | KV bytes (fp32) | time (ms) | GB/s | vs memcpy |\n|---|---|---|---|---|---|\n");
	printf("| memcpy | %d | %zu | %.3f | %.2f | 100%% |\n", n, kvbytes, t_memcpy * 1e3,
	       kvbytes / t_memcpy / 1e9);
	for (int tier = 0; tier < 3; tier++)
		for (int e = 0; e < KVO_NENC; e++) {
			struct kvo_config c;
			struct kv_connector *conn;
			struct kvo_server *srv = NULL;
			double t;
			int got = 0;
			char cmd[300];

			if (tier > 0 && e > 0)
				continue; /* lower tiers: fp32 only */
			kvo_config_init(&c);
			c.chunk_size = chunk;
			c.encoding = c.remote_enc = (enum kvo_enc)e;
			c.cpu_bytes = 2 * kvbytes + (64u << 20);
			if (tier == 1) {
				snprintf(cmd, sizeof(cmd), "rm -rf '%s'", disk_dir);
				if (system(cmd) != 0)
					kv_die(3, "cannot clear %s", disk_dir);
				c.disk_dir = xstrdup(disk_dir);
				c.disk_bytes = 2 * kvbytes + (64u << 20);
			}
			if (tier == 2) {
				struct kvo_server_opts so = { .port = 0, .max_bytes = 2 * kvbytes + (64u << 20) };
				srv = kvo_server_start(&so, &err);
				if (!srv)
					kv_die(3, "%s", err);
				c.remote_url = xasprintf("kv://127.0.0.1:%d", kvo_server_port(srv));
				c.remote_timeout_s = 10;
			}
			conn = kvo_connector_new(&c, &err);
			if (!conn)
				kv_die(3, "%s", err);
			kvc_store(conn, &ns, toks, (int)tokens, &sv);
			kvo_config_release(&c);
			if (tier > 0) { /* load without the CPU tier (no promotion) */
				conn->ops->free(conn);
				kvo_config_init(&c);
				c.chunk_size = chunk;
				c.encoding = c.remote_enc = (enum kvo_enc)e;
				c.local_cpu = false;
				if (tier == 1) {
					c.disk_dir = xstrdup(disk_dir);
					c.disk_bytes = 2 * kvbytes + (64u << 20);
				} else {
					c.remote_url = xasprintf("kv://127.0.0.1:%d", kvo_server_port(srv));
					c.remote_timeout_s = 10;
				}
				conn = kvo_connector_new(&c, &err);
				kvo_config_release(&c);
			}
			t = best_of((int)reps, conn, &ns, toks, n, &sv, &got);
			if (got != n)
				kv_die(3, "tier %d: loaded %d of %d tokens", tier, got, n);
			printf("| %s %s | %d | %zu | %.3f | %.2f | %.0f%% |\n",
			       tier == 0 ? "cpu" : tier == 1 ? "disk (page cache)" : "remote (loopback)",
			       kvo_enc_name((enum kvo_enc)e), n, kvbytes, t * 1e3, kvbytes / t / 1e9,
			       100 * t_memcpy / t);
			conn->ops->free(conn);
			kvo_server_stop(srv);
		}
	{
		char cmd[300];
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", disk_dir);
		if (system(cmd) != 0)
			kv_warn("cannot remove %s", disk_dir);
	}
	free(toks);
	free(w.k);
	free(w.v);
	return 0;
}
