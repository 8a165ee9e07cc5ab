/* The workloads generate the documented prompts, keys, passes and barriers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/util.h"
#include "workloads/wl_util.h"

static char *fx(const char *name)
{
	const char *d = getenv("KV_FIXTURES");
	return xasprintf("%s/data/%s", d ? d : "tests/fixtures", name);
}

struct made {
	struct kvb_workload *wl;
	struct kvb_req *r[512];
	size_t n;
};

/* Creates NAME with KEY=VALUE settings (NULL-terminated); -1 when create fails. */
static int make(const char *name, enum kvb_endpoint ep, struct kvb_workload **out, ...)
{
	struct kvb_kv kv[16];
	struct kvb_wl_params p = { kv, 0, 42, NULL, ep, NULL, NULL };
	const struct kvb_wl_def *d = kvb_wl_find(name);
	va_list ap;
	const char *s;
	int rc;

	assert_non_null(d);
	va_start(ap, out);
	while ((s = va_arg(ap, const char *))) {
		const char *eq = strchr(s, '=');
		kv[p.n].key = xstrndup(s, (size_t)(eq - s));
		kv[p.n].value = xstrdup(eq + 1);
		kv[p.n].file = NULL;
		kv[p.n].line = 0;
		kv[p.n].used = false;
		p.n++;
	}
	va_end(ap);
	rc = d->create(&p, out);
	for (size_t i = 0; i < p.n; i++) {
		free(kv[i].key);
		free(kv[i].value);
	}
	return rc;
}

/* Pulls everything, answering each request at once with text "ANS". */
static void drain(struct made *m)
{
	struct kvb_result res;
	int rc;
	memset(&res, 0, sizeof(res));
	res.text = (char *)"ANS";
	m->n = 0;
	while ((rc = m->wl->ops->next(m->wl, &m->r[m->n])) != -1) {
		assert_int_equal(rc, 1);
		if (m->wl->ops->done)
			m->wl->ops->done(m->wl, m->r[m->n], &res);
		m->n++;
		assert_true(m->n < 512);
	}
}

static void made_free(struct made *m)
{
	for (size_t i = 0; i < m->n; i++)
		kvb_req_free(m->r[i]);
	m->wl->ops->free(m->wl);
}

static const char MMLU_Q0[] = "What is 13 * 9?\nA. 118\nB. 117\nC. 115\nD. 122\nAnswer:";
static const char MMLU_SHOT0[] = "What is 3 + 4?\nA. 7\nB. 8\nC. 5\nD. 12\nAnswer:";

static void test_mmlu_formats(void **state)
{
	char *dir = fx("mmlu"), *path = xasprintf("path=%s", dir);
	char *want;
	struct made m;
	(void)state;

	/* hendrycks: two spaces after "about", " A\n\n" after each shot */
	assert_int_equal(make("mmlu", KVB_EP_COMPLETIONS, &m.wl, path, "subjects=elementary_mathematics",
			      "k_shot=1", "questions_per_subject=2", NULL), 0);
	drain(&m);
	assert_int_equal(m.n, 4);
	want = xasprintf("The following are multiple choice questions (with answers) about  elementary mathematics.\n\n"
			 "%s A\n\n%s", MMLU_SHOT0, MMLU_Q0);
	assert_string_equal(m.r[0]->prompt, want);
	free(want);
	assert_string_equal(m.r[0]->key, "mmlu/elementary_mathematics/0");
	assert_string_equal(m.r[0]->expected, "B");
	assert_int_equal(m.r[0]->pass, 0);
	assert_int_equal(m.r[0]->max_tokens, 1);
	assert_int_equal(m.r[2]->pass, 1);
	assert_string_equal(m.r[2]->key, m.r[0]->key);
	assert_string_equal(m.r[2]->prompt, m.r[0]->prompt);
	assert_int_equal(m.r[0]->query_len, (int)strlen(MMLU_Q0));
	made_free(&m);

	/* lm-eval: one space, same shot layout */
	assert_int_equal(make("mmlu", KVB_EP_COMPLETIONS, &m.wl, path, "subjects=elementary_mathematics",
			      "k_shot=1", "questions_per_subject=1", "format=lm-eval", "passes=1", NULL), 0);
	drain(&m);
	assert_int_equal(m.n, 1);
	want = xasprintf("The following are multiple choice questions (with answers) about elementary mathematics.\n\n"
			 "%s A\n\n%s", MMLU_SHOT0, MMLU_Q0);
	assert_string_equal(m.r[0]->prompt, want);
	free(want);
	made_free(&m);

	/* lmcache: 32 spaces before "about", ". \n\n", shots answered with option D's
	 * text, then "\n\n" before the query; max_tokens 3 and seed 42 */
	assert_int_equal(make("mmlu", KVB_EP_COMPLETIONS, &m.wl, path, "subjects=elementary_mathematics",
			      "k_shot=1", "questions_per_subject=1", "format=lmcache", "passes=1", NULL), 0);
	drain(&m);
	want = xasprintf("The following are multiple choice questions (with answers)                                 "
			 "about elementary mathematics. \n\n%s 12\n\n\n\n%s", MMLU_SHOT0, MMLU_Q0);
	assert_string_equal(m.r[0]->prompt, want);
	free(want);
	assert_int_equal(m.r[0]->max_tokens, 3);
	assert_string_equal(m.r[0]->extra_json, "{\"seed\":42}");
	made_free(&m);

	/* scoring=logprobs asks for top-k of one token; all subjects, 0-shot */
	assert_int_equal(make("mmlu", KVB_EP_COMPLETIONS, &m.wl, path, "k_shot=0", "scoring=logprobs",
			      "top_logprobs=5", NULL), 0);
	drain(&m);
	assert_int_equal(m.n, 60); /* 3 subjects x 10 questions x 2 passes */
	assert_int_equal(m.r[0]->logprobs, 5);
	assert_string_equal(m.r[10]->key, "mmlu/formal_logic/0");
	made_free(&m);

	/* bad settings and bad data fail create() */
	assert_int_equal(make("mmlu", KVB_EP_COMPLETIONS, &m.wl, path, "format=helm", NULL), -1);
	assert_int_equal(make("mmlu", KVB_EP_COMPLETIONS, &m.wl, path, "subjects=astrology", NULL), -1);
	assert_int_equal(make("mmlu", KVB_EP_COMPLETIONS, &m.wl, path, "k_shot=6", NULL), -1);
	assert_int_equal(make("mmlu", KVB_EP_COMPLETIONS, &m.wl, path, "bogus=1", NULL), -1);
	assert_int_equal(make("mmlu", KVB_EP_COMPLETIONS, &m.wl, NULL), -1);
	free(path);
	free(dir);
}

static void test_mmlu_barrier(void **state)
{
	char *dir = fx("mmlu"), *path = xasprintf("path=%s", dir);
	struct kvb_workload *wl;
	struct kvb_req *a, *b, *c;
	struct kvb_result res;
	(void)state;
	memset(&res, 0, sizeof(res));
	assert_int_equal(make("mmlu", KVB_EP_COMPLETIONS, &wl, path, "subjects=formal_logic",
			      "questions_per_subject=2", NULL), 0);
	assert_int_equal(wl->ops->next(wl, &a), 1);
	assert_int_equal(wl->ops->next(wl, &b), 1);
	/* pass 1 waits until pass 0 is answered */
	assert_int_equal(wl->ops->next(wl, &c), 0);
	wl->ops->done(wl, a, &res);
	assert_int_equal(wl->ops->next(wl, &c), 0);
	wl->ops->done(wl, b, &res);
	assert_int_equal(wl->ops->next(wl, &c), 1);
	assert_int_equal(c->pass, 1);
	assert_int_equal(c->id, 2);
	kvb_req_free(a);
	kvb_req_free(b);
	kvb_req_free(c);
	wl->ops->free(wl);
	free(path);
	free(dir);
}

static void test_long_doc_qa(void **state)
{
	struct made m;
	(void)state;
	assert_int_equal(make("long-doc-qa", KVB_EP_COMPLETIONS, &m.wl, "num_documents=3", "document_length=4",
			      "repeat_mode=tile", "pre_warmup=false", NULL), 0);
	drain(&m);
	assert_int_equal(m.n, 9);
	/* str(i) + " " + " ".join(["hi"] * L) */
	assert_string_equal(m.r[0]->prompt, "0 hi hi hi hi");
	assert_string_equal(m.r[2]->prompt, "2 hi hi hi hi");
	assert_int_equal(m.r[0]->pass, 0);
	assert_int_equal(m.r[0]->max_tokens, 100);
	/* tile: 0 1 2 0 1 2, k-th copy is pass k+1 */
	assert_string_equal(m.r[3]->key, "doc0");
	assert_string_equal(m.r[4]->key, "doc1");
	assert_string_equal(m.r[6]->key, "doc0");
	assert_int_equal(m.r[3]->pass, 1);
	assert_int_equal(m.r[6]->pass, 2);
	made_free(&m);

	assert_int_equal(make("long-doc-qa", KVB_EP_CHAT, &m.wl, "num_documents=3", "document_length=10",
			      "length_unit=bytes", "repeat_mode=interleave", "hit_miss_ratio=1:1", NULL), 0);
	drain(&m);
	assert_int_equal(m.n, 5 + 3 + 6);
	assert_true(m.r[0]->warmup);
	assert_string_equal(m.r[0]->key, "prewarm0");
	/* str(i) + "xx" + " ".join(["hi"] * 1000) */
	assert_int_equal(strlen(m.r[0]->msgs[0].content), 3 + 2999);
	assert_int_equal(strncmp(m.r[0]->msgs[0].content, "0xxhi hi ", 9), 0);
	assert_string_equal(m.r[0]->msgs[0].content + 3 + 2999 - 5, "hi hi");
	assert_int_equal(m.r[5]->n_msgs, 1);
	assert_string_equal(m.r[5]->msgs[0].role, "user");
	assert_string_equal(m.r[5]->msgs[0].content, "0 hi hi hi");
	/* interleave 0 0 1 1 2 2; odd positions are misses with a number in front */
	assert_string_equal(m.r[8]->key, "doc0");
	assert_non_null(strstr(m.r[9]->key, "doc0/miss1"));
	assert_non_null(strstr(m.r[9]->msgs[0].content, " 0 hi hi hi"));
	assert_string_equal(m.r[10]->key, "doc1");
	made_free(&m);

	/* random: a seeded shuffle of the tile list */
	{
		struct made a, b;
		int cnt[8] = { 0 };
		bool differs = false;
		assert_int_equal(make("long-doc-qa", KVB_EP_COMPLETIONS, &a.wl, "num_documents=8", "document_length=2",
				      "pre_warmup=false", "shuffle_seed=3", NULL), 0);
		assert_int_equal(make("long-doc-qa", KVB_EP_COMPLETIONS, &b.wl, "num_documents=8", "document_length=2",
				      "pre_warmup=false", "shuffle_seed=3", NULL), 0);
		drain(&a);
		drain(&b);
		assert_int_equal(a.n, 24);
		for (size_t i = 8; i < 24; i++) {
			assert_string_equal(a.r[i]->key, b.r[i]->key);
			cnt[a.r[i]->key[3] - '0']++;
			if (a.r[i]->key[3] - '0' != (int)((i - 8) % 8))
				differs = true;
		}
		for (int i = 0; i < 8; i++)
			assert_int_equal(cnt[i], 2);
		assert_true(differs);
		made_free(&a);
		made_free(&b);
	}
	assert_int_equal(make("long-doc-qa", KVB_EP_COMPLETIONS, &m.wl, "repeat_mode=zigzag", NULL), -1);
	assert_int_equal(make("long-doc-qa", KVB_EP_COMPLETIONS, &m.wl, "hit_miss_ratio=3", NULL), -1);
}

static void test_ttft_sweep(void **state)
{
	struct made m;
	(void)state;
	assert_int_equal(make("ttft-sweep", KVB_EP_COMPLETIONS, &m.wl, "lengths=32,64", "trials=2", NULL), 0);
	drain(&m);
	assert_int_equal(m.n, 8);
	assert_string_equal(m.r[0]->key, "len=32/trial=0");
	assert_int_equal(m.r[0]->pass, 0);
	assert_int_equal(m.r[1]->pass, 1);
	assert_string_equal(m.r[0]->prompt, m.r[1]->prompt);
	assert_int_equal(strlen(m.r[0]->prompt), 32);
	assert_int_equal(strlen(m.r[4]->prompt), 64);
	/* each trial starts cold: the prompts differ within the first 16 bytes (a KV block) */
	assert_true(strncmp(m.r[0]->prompt, m.r[2]->prompt, 16) != 0);
	assert_true(strncmp(m.r[0]->prompt, m.r[4]->prompt, 16) != 0);
	assert_int_equal(m.r[0]->max_tokens, 10);
	made_free(&m);
	assert_int_equal(make("ttft-sweep", KVB_EP_COMPLETIONS, &m.wl, "lengths=32,,64", NULL), -1);
}

static void test_rag(void **state)
{
	char *f = fx("rag.jsonl"), *path = xasprintf("path=%s", f);
	struct made m;
	(void)state;
	assert_int_equal(make("rag", KVB_EP_COMPLETIONS, &m.wl, path, "limit=1", NULL), 0);
	drain(&m);
	assert_int_equal(m.n, 3 + 2);
	assert_true(m.r[0]->warmup);
	assert_int_equal(m.r[0]->max_tokens, 1);
	assert_string_equal(m.r[0]->prompt,
			    "You will be asked a question after reading several passages. Please directly answer the "
			    "question based on the given passages. Do NOT repeat the question. The answer should be "
			    "within 5 words..\nPassages:\nAda Lind\n\nAda Lind is a botanist who was born in Bergen.\n\n");
	assert_string_equal(m.r[3]->key, "rag/0/order0");
	assert_string_equal(m.r[3]->prompt,
			    "You will be asked a question after reading several passages. Please directly answer the "
			    "question based on the given passages. Do NOT repeat the question. The answer should be "
			    "within 5 words..\nPassages:\n"
			    "Ada Lind\n\nAda Lind is a botanist who was born in Bergen.\n\n"
			    "Bergen\n\nBergen is a city known for its harbour and old market.\n\n"
			    "Botanists\n\nA botanist is a person whose work is that of a botanist.\n\n"
			    "\n\nAnswer the question directly based on the given passages. Do NOT repeat the question. "
			    "The answer should be within 5 words. \nQuestion:where was Ada Lind born?\nAnswer:");
	assert_string_equal(m.r[3]->expected, "Bergen\nBergen city");
	assert_int_equal(m.r[3]->max_tokens, 32);
	assert_string_equal(m.r[4]->key, "rag/0/order1");
	assert_int_equal(strlen(m.r[4]->prompt), strlen(m.r[3]->prompt)); /* same chunks */
	made_free(&m);
	free(path);
	free(f);
}

static void test_generation(void **state)
{
	char *f = fx("gsm8k.jsonl"), *path = xasprintf("path=%s", f);
	struct made m;
	(void)state;
	assert_int_equal(make("generation", KVB_EP_COMPLETIONS, &m.wl, path, "k_shot=1", "limit=2", NULL), 0);
	drain(&m);
	assert_int_equal(m.n, 4);
	assert_string_equal(m.r[0]->prompt,
			    "Question: Sam has 12 apples and buys 3 bags with 4 apples each. How many apples does Sam have?\n"
			    "Answer: The bags hold 3*4 = <<3*4=12>>12 apples.\nSam has 12+12 = <<12+12=24>>24 apples.\n#### 24\n\n"
			    "Question: Sam has 19 apples and buys 4 bags with 4 apples each. How many apples does Sam have?\nAnswer:");
	assert_string_equal(m.r[0]->expected, "35");
	assert_string_equal(m.r[0]->key, "gen/1");
	assert_int_equal(m.r[0]->max_tokens, 256);
	assert_non_null(strstr(m.r[0]->extra_json, "\"Question:\""));
	assert_int_equal(m.r[2]->pass, 1);
	assert_string_equal(m.r[2]->key, "gen/1");
	made_free(&m);
	free(path);
	free(f);
}

static void test_multi_round_qa(void **state)
{
	struct kvb_workload *wl;
	struct kvb_req *a, *b, *c;
	struct kvb_result res;
	(void)state;
	memset(&res, 0, sizeof(res));
	/* LMCache's 10 warmup requests come first; users wait for their answers */
	assert_int_equal(make("multi-round-qa", KVB_EP_COMPLETIONS, &wl, "num_users=1", "num_rounds=1", NULL), 0);
	{
		struct kvb_req *w[10];
		for (int i = 0; i < 10; i++) {
			assert_int_equal(wl->ops->next(wl, &w[i]), 1);
			assert_true(w[i]->warmup);
			assert_int_equal(w[i]->max_tokens, 100);
		}
		assert_int_equal(strlen(w[3]->prompt), strlen("WARMUP: Hi, I'm user 3. Here are some text: .") + 300);
		assert_int_equal(wl->ops->next(wl, &a), 0);
		for (int i = 0; i < 10; i++) {
			wl->ops->done(wl, w[i], &res);
			kvb_req_free(w[i]);
		}
		assert_int_equal(wl->ops->next(wl, &a), 1);
		assert_string_equal(a->key, "user1/round0");
		kvb_req_free(a);
		wl->ops->free(wl);
	}

	assert_int_equal(make("multi-round-qa", KVB_EP_CHAT, &wl, "num_users=2", "num_rounds=2",
			      "shared_system_prompt=2", "user_history_prompt=1", "qps=1", "warmup_requests=false",
			      NULL), 0);
	assert_int_equal(wl->ops->next(wl, &a), 1);
	assert_int_equal(wl->ops->next(wl, &b), 1);
	assert_string_equal(a->key, "user1/round0");
	assert_string_equal(b->key, "user2/round0");
	assert_true(a->at_s == 0.0 && b->at_s == 1.0);
	/* gen_dummy_text(n) = " ".join(["hi"] * n); user and question ids from 1 */
	assert_string_equal(a->msgs[0].content,
			    "Hi, here's some system prompt: hi hi.For user 1, here are some other context: hi."
			    "Here's question #1: can you tell me a new long story with a happy ending?");
	/* the next round waits for the answer */
	assert_int_equal(wl->ops->next(wl, &c), 0);
	res.status = KVB_OK;
	res.text = (char *)"Once upon a time.";
	wl->ops->done(wl, a, &res);
	assert_int_equal(wl->ops->next(wl, &c), 1);
	assert_string_equal(c->key, "user1/round1");
	assert_int_equal(c->session, 0);
	assert_int_equal(c->turn, 1);
	assert_true(c->at_s == 2.0); /* each user every num_users/qps = 2 s */
	assert_int_equal(c->n_msgs, 3);
	assert_string_equal(c->msgs[1].role, "assistant");
	assert_string_equal(c->msgs[1].content, "Once upon a time.");
	assert_string_equal(c->msgs[2].content,
			    "Here's question #2: can you tell me a new long story with a happy ending?");
	/* a failed turn ends that user */
	res.status = KVB_ERR_TIMEOUT;
	wl->ops->done(wl, b, &res);
	res.status = KVB_OK;
	wl->ops->done(wl, c, &res);
	kvb_req_free(c);
	assert_int_equal(wl->ops->next(wl, &c), -1);
	kvb_req_free(a);
	kvb_req_free(b);
	wl->ops->free(wl);
}

static void test_sharegpt(void **state)
{
	char *f = fx("sharegpt.json"), *path = xasprintf("path=%s", f);
	struct kvb_workload *wl;
	struct kvb_req *a, *b, *c;
	struct kvb_result res;
	struct made m;
	(void)state;
	memset(&res, 0, sizeof(res));
	res.text = (char *)"engine says";
	assert_int_equal(make("sharegpt", KVB_EP_CHAT, &wl, path, "num_conversations=3", "max_active=1",
			      "max_turns=2", "request_rate=0", "history=dataset", NULL), 0);
	assert_int_equal(wl->ops->next(wl, &a), 1);
	assert_string_equal(a->key, "conv0/turn0");
	assert_int_equal(wl->ops->next(wl, &b), 0); /* max_active=1 */
	wl->ops->done(wl, a, &res);
	/* conversation 0 has one user turn: conversation 1 starts */
	assert_int_equal(wl->ops->next(wl, &b), 1);
	assert_string_equal(b->key, "conv1/turn0");
	wl->ops->done(wl, b, &res);
	assert_int_equal(wl->ops->next(wl, &c), 1);
	assert_string_equal(c->key, "conv1/turn1");
	assert_int_equal(c->n_msgs, 3);
	assert_string_equal(c->msgs[1].content, "A colour starting with B: answer 0."); /* from the data set */
	kvb_req_free(a);
	kvb_req_free(b);
	kvb_req_free(c);
	wl->ops->free(wl);

	/* history=engine, all conversations: the system message leads conv3 */
	assert_int_equal(make("sharegpt", KVB_EP_CHAT, &m.wl, path, "max_turns=5", NULL), 0);
	drain(&m);
	assert_int_equal(m.n, 1 + 2 + 3 + 4 + 1 + 2 + 3 + 4 + 1 + 2); /* 1 + i%4 user turns */
	for (size_t i = 0; i < m.n; i++)
		if (!strcmp(m.r[i]->key, "conv3/turn1")) {
			assert_string_equal(m.r[i]->msgs[0].role, "system");
			assert_string_equal(m.r[i]->msgs[2].content, "ANS");
		}
	assert_true(m.r[0]->at_s == 0.0);
	made_free(&m);
	assert_int_equal(make("sharegpt", KVB_EP_CHAT, &m.wl, path, "history=both", NULL), -1);
	free(path);
	free(f);
}

/* key-probe: identical prompts per pair, one salt / model each, fresh
   prompts across pairs; the other values wait for the first one */
static void test_key_probe(void **state)
{
	struct kvb_workload *wl;
	struct kvb_req *a, *b, *c, *d, *x;
	struct kvb_result res;
	struct made m;
	(void)state;
	memset(&res, 0, sizeof(res));
	assert_int_equal(make("key-probe", KVB_EP_COMPLETIONS, &wl, "num_pairs=2", "input_len=40",
			      "values=s1,s2,s3", NULL), 0);
	assert_int_equal(wl->ops->next(wl, &a), 1);
	assert_string_equal(a->key, "probe0/s1");
	assert_string_equal(a->extra_json, "{\"cache_salt\":\"s1\"}");
	assert_null(a->model);
	assert_int_equal((int)strlen(a->prompt), 40);
	assert_int_equal(a->max_tokens, 4);
	assert_int_equal(a->pass, 0);
	/* the second value waits until the first is answered */
	assert_int_equal(wl->ops->next(wl, &x), 0);
	wl->ops->done(wl, a, &res);
	assert_int_equal(wl->ops->next(wl, &b), 1);
	assert_int_equal(wl->ops->next(wl, &c), 1); /* the third goes with the second */
	assert_string_equal(b->key, "probe0/s2");
	assert_string_equal(c->key, "probe0/s3");
	assert_string_equal(b->prompt, a->prompt);
	assert_string_equal(c->prompt, a->prompt);
	assert_string_equal(c->extra_json, "{\"cache_salt\":\"s3\"}");
	/* the next pair waits for the whole pair, and has a fresh prompt */
	assert_int_equal(wl->ops->next(wl, &x), 0);
	wl->ops->done(wl, b, &res);
	wl->ops->done(wl, c, &res);
	assert_int_equal(wl->ops->next(wl, &d), 1);
	assert_string_equal(d->key, "probe1/s1");
	assert_string_not_equal(d->prompt, a->prompt);
	assert_true(memcmp(d->prompt, a->prompt, 16) != 0); /* differs from the first block on */
	kvb_req_free(a);
	kvb_req_free(b);
	kvb_req_free(c);
	kvb_req_free(d);
	wl->ops->free(wl);

	/* model dimension: the model name, no salt; defaults: 4 pairs x 2 */
	assert_int_equal(make("key-probe", KVB_EP_CHAT, &m.wl, "dimension=model",
			      "values=base,lora-a", NULL), 0);
	drain(&m);
	assert_int_equal(m.n, 8);
	assert_string_equal(m.r[7]->key, "probe3/lora-a");
	assert_string_equal(m.r[7]->model, "lora-a");
	assert_string_equal(m.r[6]->model, "base");
	assert_null(m.r[7]->extra_json);
	assert_string_equal(m.r[7]->msgs[0].content, m.r[6]->msgs[0].content);
	assert_int_equal((int)strlen(m.r[6]->msgs[0].content), 96);
	made_free(&m);

	/* bad settings name the key */
	assert_int_equal(make("key-probe", KVB_EP_COMPLETIONS, &wl, "dimension=model", NULL), -1);
	assert_int_equal(make("key-probe", KVB_EP_COMPLETIONS, &wl, "values=only", NULL), -1);
	assert_int_equal(make("key-probe", KVB_EP_COMPLETIONS, &wl, "values=a,,b", NULL), -1);
	assert_int_equal(make("key-probe", KVB_EP_COMPLETIONS, &wl, "values=a,a", NULL), -1);
	assert_int_equal(make("key-probe", KVB_EP_COMPLETIONS, &wl, "dimension=lora", NULL), -1);
}

static void test_registry(void **state)
{
	static const char *const names[] = { "long-doc-qa", "multi-round-qa", "sharegpt", "mmlu",
					     "generation", "rag", "ttft-sweep", "key-probe" };
	(void)state;
	for (size_t i = 0; i < KV_ARRAY_SIZE(names); i++) {
		const struct kvb_wl_def *d = kvb_wl_find(names[i]);
		assert_non_null(d);
		assert_non_null(d->keys[0].name);
	}
}

/* Each documented default, passed explicitly, is accepted and gives the same
 * requests as leaving the key out (help and code agree). */
static void test_documented_defaults(void **state)
{
	static const struct { const char *wl, *path; } w[] = {
		{ "long-doc-qa", NULL }, { "multi-round-qa", NULL }, { "sharegpt", "sharegpt.json" },
		{ "mmlu", "mmlu" }, { "generation", "gsm8k.jsonl" }, { "rag", "rag.jsonl" },
		{ "ttft-sweep", NULL }, { "key-probe", NULL },
	};
	(void)state;
	for (size_t i = 0; i < KV_ARRAY_SIZE(w); i++) {
		const struct kvb_wl_def *d = kvb_wl_find(w[i].wl);
		struct kvb_kv kv[32];
		struct kvb_wl_params p = { kv, 0, 42, NULL, KVB_EP_COMPLETIONS, NULL, NULL };
		struct kvb_workload *a, *b;
		char *path = w[i].path ? fx(w[i].path) : NULL;
		struct kvb_req *ra, *rb;
		for (const struct kvb_wl_key *k = d->keys; k->name; k++) {
			assert_true(p.n < 32);
			kv[p.n].key = (char *)k->name;
			kv[p.n].file = NULL;
			kv[p.n].line = 0;
			kv[p.n].used = false;
			if (!*k->def) {
				assert_string_equal(k->name, "path");
				kv[p.n++].value = path;
				continue;
			}
			kv[p.n++].value = (char *)k->def;
		}
		assert_int_equal(d->create(&p, &a), 0);
		p.n = 0;
		if (path) {
			kv[0].key = (char *)"path";
			kv[0].value = path;
			kv[0].used = false;
			p.n = 1;
		}
		assert_int_equal(d->create(&p, &b), 0);
		assert_int_equal(a->ops->next(a, &ra), 1);
		assert_int_equal(b->ops->next(b, &rb), 1);
		assert_string_equal(ra->key, rb->key);
		assert_int_equal(ra->max_tokens, rb->max_tokens);
		if (ra->prompt)
			assert_string_equal(ra->prompt, rb->prompt);
		kvb_req_free(ra);
		kvb_req_free(rb);
		a->ops->free(a);
		b->ops->free(b);
		free(path);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mmlu_formats),
		cmocka_unit_test(test_mmlu_barrier),
		cmocka_unit_test(test_long_doc_qa),
		cmocka_unit_test(test_ttft_sweep),
		cmocka_unit_test(test_rag),
		cmocka_unit_test(test_generation),
		cmocka_unit_test(test_multi_round_qa),
		cmocka_unit_test(test_sharegpt),
		cmocka_unit_test(test_key_probe),
		cmocka_unit_test(test_registry),
		cmocka_unit_test(test_documented_defaults),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
