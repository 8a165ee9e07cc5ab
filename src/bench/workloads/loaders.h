/*
 * loaders.h: readers of the data sets the workloads use.
 *
 * Every loader reads the whole file (with a size cap), checks its shape,
 * and on any problem prints one line "FILE:LINE: what is wrong" (kv_error)
 * and returns -1 leaving *out empty. The structs own every string; release
 * them with the matching *_release.
 */
#ifndef KVB_LOADERS_H
#define KVB_LOADERS_H

#include "common/compat.h"

#define KVB_DATA_MAX_BYTES (512u << 20) /* one data file */
#define KVB_CSV_MAX_FIELD (1u << 20)

/* ---- CSV (RFC 4180: quotes, "" escapes, newlines inside quotes, CRLF) ---- */

struct kvb_csv_row {
	char **f;
	size_t n;
	int line;               /* line where the row starts (1-based) */
};
struct kvb_csv {
	struct kvb_csv_row *rows;
	size_t n;
};
/* Parses text (name for messages). Empty lines are skipped. */
int kvb_csv_parse(const char *name, const char *text, size_t len, struct kvb_csv *out);
void kvb_csv_release(struct kvb_csv *c);

/* ---- MMLU (hendrycks layout: headerless question,A,B,C,D,answer) ---- */

struct kvb_mcq {
	char *question;
	char *choice[4];
	char answer;            /* 'A'..'D' */
	int line;
};
struct kvb_mcq_set {
	struct kvb_mcq *v;
	size_t n;
};
/* One CSV file; every row must have 6 fields and answer A-D. */
int kvb_mmlu_load_csv(const char *path, struct kvb_mcq_set *out);
int kvb_mmlu_parse_csv(const char *name, const char *text, size_t len, struct kvb_mcq_set *out);
void kvb_mcq_set_release(struct kvb_mcq_set *s);
/* Subjects that have DIR/test/<s>_test.csv, sorted; malloc'ed array of
 * malloc'ed names. -1 when DIR/test cannot be read or holds none. */
int kvb_mmlu_subjects(const char *dir, char ***names, size_t *n);

/* ---- ShareGPT (a JSON list of {"conversations":[{"from","value"}...]}) ---- */

struct kvb_turn {
	char *role;             /* "user", "assistant", "system" */
	char *content;
};
struct kvb_conv {
	char *id;               /* "id" when present, else the index */
	struct kvb_turn *t;
	size_t n;
	int line;
};
struct kvb_conv_set {
	struct kvb_conv *v;
	size_t n;
};
/* "from": human/user → user; gpt/chatgpt/bard/bing/assistant/model →
 * assistant; system → system; anything else is an error. */
int kvb_sharegpt_load(const char *path, struct kvb_conv_set *out);
int kvb_sharegpt_parse(const char *name, const char *text, size_t len, struct kvb_conv_set *out);
void kvb_conv_set_release(struct kvb_conv_set *s);

/* ---- generation JSONL: {"question","answer"} (gsm8k) or {"prompt","reference"?} ---- */

struct kvb_gen_item {
	char *prompt;           /* question or prompt */
	char *reference;        /* gsm8k: the number after "####" (commas dropped); or reference; or NULL */
	bool gsm8k;             /* came in the question/answer shape */
	char *answer_full;      /* gsm8k: the whole answer text (for few-shot) */
	int line;
};
struct kvb_gen_set {
	struct kvb_gen_item *v;
	size_t n;
};
int kvb_gen_load(const char *path, struct kvb_gen_set *out);
int kvb_gen_parse(const char *name, const char *text, size_t len, struct kvb_gen_set *out);
void kvb_gen_set_release(struct kvb_gen_set *s);

/* ---- RAG JSONL (CacheBlend musique shape): {"ctxs":[{"title","text"}],"question","answers":[...]} ---- */

struct kvb_rag_item {
	char **title;
	char **text;
	size_t n_ctx;
	char *question;
	char **answers;
	size_t n_answers;
	int line;
};
struct kvb_rag_set {
	struct kvb_rag_item *v;
	size_t n;
};
int kvb_rag_load(const char *path, struct kvb_rag_set *out);
int kvb_rag_parse(const char *name, const char *text, size_t len, struct kvb_rag_set *out);
void kvb_rag_set_release(struct kvb_rag_set *s);

#endif
