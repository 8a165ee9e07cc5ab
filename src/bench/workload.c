#include "workload.h"

#include "common/util.h"
#include "common/banned.h"

static const char *const status_names[KVB_STATUS_COUNT] = {
	[KVB_OK] = "ok",
	[KVB_ERR_CONNECT] = "connect",
	[KVB_ERR_RESET] = "reset",
	[KVB_ERR_TIMEOUT] = "timeout",
	[KVB_ERR_HTTP] = "http",
	[KVB_ERR_STREAM] = "malformed",
	[KVB_ERR_SERVER] = "server_error",
	[KVB_ERR_CANCELLED] = "cancelled",
	[KVB_ABORTED] = "aborted",
};

const char *kvb_status_name(enum kvb_status s)
{
	return (unsigned)s < KVB_STATUS_COUNT ? status_names[s] : "unknown";
}

void kvb_req_free(struct kvb_req *r)
{
	if (!r)
		return;
	free(r->key);
	free(r->prompt);
	free(r->prompt_ids);
	for (size_t i = 0; i < r->n_msgs; i++) {
		free(r->msgs[i].role);
		free(r->msgs[i].content);
	}
	free(r->msgs);
	free(r->extra_json);
	free(r->model);
	free(r->expected);
	free(r);
}

static void free_lps(struct kvb_tok_lp *lps, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(lps[i].token);
		for (int j = 0; j < lps[i].n_top; j++)
			free(lps[i].top[j].token);
		free(lps[i].top);
	}
	free(lps);
}

void kvb_result_release(struct kvb_result *r)
{
	free(r->error);
	free(r->tok_t);
	free(r->text);
	free(r->finish_reason);
	free(r->token_ids);
	free_lps(r->lps, r->n_lps);
	free_lps(r->prompt_lps, r->n_prompt_lps);
	memset(r, 0, sizeof(*r));
}
