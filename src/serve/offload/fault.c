/* fault.c: the fault table and its parser (fault.h). */
#include "common/util.h"
#include "offload/fault.h"

#include <inttypes.h>

#include "offload/codec.h"

#include "common/banned.h"

const struct kvo_fault_type kvo_fault_types[KVO_F_COUNT] = {
	[KVO_F_BITFLIP] = { "bitflip", "R/E", KVO_FA_PROB, KVO_FS_POST, true,
			    "flip one exponent bit (23..29) in 16 values of each loaded chunk", 0 },
	[KVO_F_TRUNCATE] = { "truncate", "F", KVO_FA_PROB, KVO_FS_FETCH, true,
			     "serve the chunk cut to its first half; the rest of the rows is zero", 0 },
	[KVO_F_WRONG_KEY] = { "wrong-key", "K2", KVO_FA_PROB, KVO_FS_FETCH, true,
			      "serve the chunk stored under another key (CPU tier)", 0 },
	[KVO_F_STALE] = { "stale", "S", KVO_FA_PROB, KVO_FS_KEY, true,
			  "ignore the model revision in keys: chunks of older weights are served", 0 },
	[KVO_F_DELAY] = { "delay", "-", KVO_FA_MS, KVO_FS_POST, true,
			  "sleep ARG ms (default 100) in each load", 0 },
	[KVO_F_DROP_KEY] = { "drop-key", "K1", KVO_FA_DIM, KVO_FS_KEY, true,
			     "leave one dimension out of keys: salt|adapter|revision|encoding|model", 0 },
	[KVO_F_TRUNCATE_KEY] = { "truncate-key", "K2", KVO_FA_BITS, KVO_FS_KEY, true,
				 "keep only the first ARG bits (default 16) of each key", 0 },
	[KVO_F_OFFSET] = { "offset", "B", KVO_FA_INT, KVO_FS_DECODE, true,
			   "write row t of a chunk at position t+ARG (default 1)", 0 },
	[KVO_F_ZERO_TAIL] = { "zero-tail", "B", KVO_FA_PROB, KVO_FS_POST, true,
			      "zero the last loaded token's K and V rows in every layer", 0 },
	[KVO_F_SWAP_KV] = { "swap-kv", "L", KVO_FA_PROB, KVO_FS_DECODE, true,
			    "load K rows into V and V rows into K", 0 },
	[KVO_F_LAYER_SHIFT] = { "layer-shift", "L", KVO_FA_INT, KVO_FS_DECODE, true,
				"load layer l's KV into layer l+ARG (default 1)", 0 },
	[KVO_F_ROPE_SHIFT] = { "rope-shift", "P", KVO_FA_INT, KVO_FS_ENGINE, true,
			       "re-rotate loaded K rows as if at position p+ARG (default 1); V unchanged", 0 },
	[KVO_F_POISON] = { "poison", "F", KVO_FA_PROB, KVO_FS_DECODE, true,
			   "report the load as done but leave the rows zeroed", 0 },
	[KVO_F_LOSSY] = { "lossy", "Q", KVO_FA_PROB, KVO_FS_DECODE, true,
			  "quantize loaded values to int8 without scales (round, clamp +-127)", 0 },
	[KVO_F_FULL_HIT] = { "full-hit", "B", KVO_FA_PROB, KVO_FS_ENGINE, true,
			     "whole prompt cached: load it all, sample token 1 from uncomputed logits", 0 },
	[KVO_F_RACE] = { "race", "R", KVO_FA_MS, KVO_FS_STORE, true,
			 "CPU tier indexes a stored chunk ARG ms (200) before its bytes land",
			 200 },
	[KVO_F_UAF_ABORT] = { "uaf-abort", "E", KVO_FA_PROB, KVO_FS_ENGINE, true,
			      "deferred save of an aborted request reads its freed, reused blocks", 0 },
};

void kvo_faults_init(struct kvo_faults *f, uint64_t seed)
{
	memset(f, 0, sizeof(*f));
	f->seed = seed;
}

static const struct { const char *name; unsigned mask; } dims[] = {
	{ "salt", KVO_DIM_SALT }, { "adapter", KVO_DIM_ADAPTER },
	{ "revision", KVO_DIM_REVISION }, { "encoding", KVO_DIM_ENCODING },
	{ "model", KVO_DIM_MODEL },
};

int kvo_faults_add(struct kvo_faults *f, const char *spec, char **err)
{
	const char *colon = strchr(spec, ':');
	size_t nl = colon ? (size_t)(colon - spec) : strlen(spec);
	const char *arg = colon ? colon + 1 : NULL;
	int id = -1;

	for (int i = 0; i < KVO_F_COUNT; i++)
		if (strlen(kvo_fault_types[i].name) == nl &&
		    !strncmp(kvo_fault_types[i].name, spec, nl))
			id = i;
	if (id < 0) {
		*err = xasprintf("--kv-fault: unknown fault type '%.*s'", (int)nl, spec);
		return -1;
	}
	if (!kvo_fault_types[id].implemented) {
		*err = xasprintf("--kv-fault: '%s' is not implemented",
				 kvo_fault_types[id].name);
		return -1;
	}
	double prob = 1.0;
	int64_t val = f->arg[id];
	switch (kvo_fault_types[id].arg) {
	case KVO_FA_PROB: {
		double p = 1.0;
		if (arg && (kv_parse_double(arg, &p) < 0 || !(p > 0 && p <= 1))) {
			*err = xasprintf("--kv-fault: %s: probability must be in (0, 1], got '%s'",
					 kvo_fault_types[id].name, arg);
			return -1;
		}
		prob = p;
		break;
	}
	case KVO_FA_MS:
		val = kvo_fault_types[id].def ? kvo_fault_types[id].def : 100;
		if (arg && kv_parse_i64(arg, 1, 60000, &val) < 0) {
			*err = xasprintf("--kv-fault: %s: expected milliseconds in 1..60000, got '%s'",
					 kvo_fault_types[id].name, arg);
			return -1;
		}
		break;
	case KVO_FA_BITS:
		val = 16;
		if (arg && kv_parse_i64(arg, 1, 255, &val) < 0) {
			*err = xasprintf("--kv-fault: %s: expected bits in 1..255, got '%s'",
					 kvo_fault_types[id].name, arg);
			return -1;
		}
		break;
	case KVO_FA_INT:
		val = 1;
		if (arg && (kv_parse_i64(arg, -64, 64, &val) < 0 || !val)) {
			*err = xasprintf("--kv-fault: %s: expected a non-zero shift in -64..64, got '%s'",
					 kvo_fault_types[id].name, arg);
			return -1;
		}
		break;
	case KVO_FA_DIM: {
		unsigned m = 0;
		for (size_t i = 0; arg && i < KV_ARRAY_SIZE(dims); i++)
			if (!strcmp(arg, dims[i].name))
				m = dims[i].mask;
		if (!m) {
			*err = xasprintf("--kv-fault: drop-key: expected salt|adapter|revision|encoding|model, got '%s'",
					 arg ? arg : "");
			return -1;
		}
		val = (f->on[id] ? f->arg[id] : 0) | m; /* drop-key may be repeated: the dims add up */
		break;
	}
	}
	f->prob[id] = prob;
	f->arg[id] = val;
	f->on[id] = true;
	return 0;
}

bool kvo_faults_any(const struct kvo_faults *f)
{
	for (int i = 0; i < KVO_F_COUNT; i++)
		if (f->on[i])
			return true;
	return false;
}

uint64_t kvo_fault_rand(struct kvo_faults *f)
{
	/* splitmix64 over an atomic counter: thread-safe and reproducible
	 * for one thread */
	uint64_t z = f->seed + 0x9e3779b97f4a7c15ull *
			       (__atomic_fetch_add(&f->draws, 1, __ATOMIC_RELAXED) + 1);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

bool kvo_fault_fires(struct kvo_faults *f, enum kvo_fault_id id)
{
	if (!f->on[id])
		return false;
	if (f->prob[id] >= 1.0)
		return true;
	return (double)(kvo_fault_rand(f) >> 11) * 0x1.0p-53 < f->prob[id];
}

void kvo_fault_count(struct kvo_faults *f, enum kvo_fault_id id)
{
	__atomic_fetch_add(&f->injected[id], 1, __ATOMIC_RELAXED);
}

unsigned kvo_faults_key_drop(const struct kvo_faults *f)
{
	unsigned m = 0;
	if (f->on[KVO_F_DROP_KEY])
		m |= (unsigned)f->arg[KVO_F_DROP_KEY];
	if (f->on[KVO_F_STALE])
		m |= KVO_DIM_REVISION;
	return m;
}

int kvo_faults_key_bits(const struct kvo_faults *f)
{
	return f->on[KVO_F_TRUNCATE_KEY] ? (int)f->arg[KVO_F_TRUNCATE_KEY] : 256;
}

void kvo_faults_metrics(struct kvo_faults *f, struct kv_buf *out)
{
	kv_buf_puts(out, "# HELP kvserve:kv_faults_injected_total Faults injected by --kv-fault, by type.\n"
			 "# TYPE kvserve:kv_faults_injected_total counter\n");
	for (int i = 0; i < KVO_F_COUNT; i++)
		kv_buf_printf(out, "kvserve:kv_faults_injected_total{type=\"%s\"} %" PRIu64 "\n",
			      kvo_fault_types[i].name,
			      __atomic_load_n(&f->injected[i], __ATOMIC_RELAXED));
}

void kvo_faults_markdown(FILE *out)
{
	static const char *const args[] = { "P (0..1]", "MS", "BITS", "DIM", "K" };
	static const char *const stages[] = { "KEY", "FETCH", "DECODE", "POST", "STORE", "ENGINE" };
	fprintf(out, "| type | class | argument | stage | implemented | what it does |\n"
		     "|---|---|---|---|---|---|\n");
	for (int i = 0; i < KVO_F_COUNT; i++) {
		const struct kvo_fault_type *t = &kvo_fault_types[i];
		fprintf(out, "| %s | %s | %s | %s | %s | ", t->name, t->cls, args[t->arg],
			stages[t->stage], t->implemented ? "yes" : "no");
		for (const char *p = t->help; *p; p++) {
			if (*p == '|') /* a bare '|' would end the cell */
				fputc('\\', out);
			fputc(*p, out);
		}
		fputs(" |\n", out);
	}
}
