/*
 * fault.h: the fault registry of the KV offload connector.
 *
 * Faults imitate the KV-cache bugs of ../shared/FAULTS.md §3 so that kvbench
 * can be shown to catch them. All are off by default; `--kv-fault TYPE[:ARG]`
 * (repeatable) switches one on. Each row of the table below names a type,
 * its FAULTS.md class, what its argument means and at which stage of a load
 * it acts. A new class is a new row plus its case in the connector's stage
 * hook. Every firing is counted: kvserve:kv_faults_injected_total{type=...}.
 *
 * Stages of loading one chunk (connector.c):
 *   KEY     while computing chunk keys (lookup, load and store alike)
 *   FETCH   which stored object is used (wrong-key, truncate)
 *   DECODE  how the object is written into the view (offset, swap-kv, ...)
 *   POST    on the KV after it is written (bitflip, zero-tail) or on timing
 *   STORE   how a stored chunk reaches the CPU tier (race)
 *   ENGINE  in the engine around the connector calls (engine.c: rope-shift,
 *           full-hit, uaf-abort); the engine gets the table through
 *           engine_set_faults()
 */
#ifndef KVO_FAULT_H
#define KVO_FAULT_H

#include "common/compat.h"
#include "common/buf.h"

enum kvo_fault_id {
	KVO_F_BITFLIP,
	KVO_F_TRUNCATE,
	KVO_F_WRONG_KEY,
	KVO_F_STALE,
	KVO_F_DELAY,
	KVO_F_DROP_KEY,
	KVO_F_TRUNCATE_KEY,
	KVO_F_OFFSET,
	KVO_F_ZERO_TAIL,
	KVO_F_SWAP_KV,
	KVO_F_LAYER_SHIFT,
	KVO_F_ROPE_SHIFT,
	KVO_F_POISON,
	KVO_F_LOSSY,
	KVO_F_FULL_HIT,
	KVO_F_RACE,
	KVO_F_UAF_ABORT,
	KVO_F_COUNT
};

enum kvo_fault_arg {
	KVO_FA_PROB,  /* probability per chunk in (0, 1], default 1 */
	KVO_FA_MS,    /* milliseconds, 1..60000 */
	KVO_FA_BITS,  /* key bits kept, 1..255 */
	KVO_FA_DIM,   /* salt|adapter|revision|encoding|model */
	KVO_FA_INT,   /* a signed shift, default 1 */
};

enum kvo_fault_stage { KVO_FS_KEY, KVO_FS_FETCH, KVO_FS_DECODE, KVO_FS_POST, KVO_FS_STORE,
		       KVO_FS_ENGINE };

struct kvo_fault_type {
	const char *name;
	const char *cls;      /* FAULTS.md class */
	enum kvo_fault_arg arg;
	enum kvo_fault_stage stage;
	bool implemented;     /* false: reserved row, --kv-fault rejects it */
	const char *help;
	int64_t def;          /* default argument; 0: the kind's default */
};

extern const struct kvo_fault_type kvo_fault_types[KVO_F_COUNT];

/* The faults switched on; one per type (a repeated type replaces the earlier). */
struct kvo_faults {
	bool on[KVO_F_COUNT];
	double prob[KVO_F_COUNT];  /* per chunk, for PROB types; 1 otherwise */
	int64_t arg[KVO_F_COUNT];  /* ms, bits, dim mask or shift */
	uint64_t seed;
	/* counters (atomic) */
	uint64_t injected[KVO_F_COUNT];
	uint64_t draws;            /* atomic; the random stream's position */
};

void kvo_faults_init(struct kvo_faults *f, uint64_t seed);
/* Parses "TYPE[:ARG]" and switches it on. 0, or -1 with *err (malloc'ed). */
int kvo_faults_add(struct kvo_faults *f, const char *spec, char **err);
bool kvo_faults_any(const struct kvo_faults *f);
/* Whether fault id fires now (draws with its probability). */
bool kvo_fault_fires(struct kvo_faults *f, enum kvo_fault_id id);
/* A uniform 64-bit draw from the fault stream (thread-safe). */
uint64_t kvo_fault_rand(struct kvo_faults *f);
void kvo_fault_count(struct kvo_faults *f, enum kvo_fault_id id);
/* KVO_DIM_* mask of dimensions left out of keys (drop-key, stale). */
unsigned kvo_faults_key_drop(const struct kvo_faults *f);
/* Key bits kept (truncate-key), 256 when off. */
int kvo_faults_key_bits(const struct kvo_faults *f);
/* Appends kvserve:kv_faults_injected_total for every type. */
void kvo_faults_metrics(struct kvo_faults *f, struct kv_buf *out);
/* The table as Markdown (docs/offload.md). */
void kvo_faults_markdown(FILE *out);

#endif
