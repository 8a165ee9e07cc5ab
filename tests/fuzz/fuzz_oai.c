/*
 * Fuzz target of the OpenAI response reader: the input as an SSE stream of
 * chunks (streamed) and as a whole body (not streamed), both endpoints, with
 * and without echo. Nothing may crash or leak; stamps stay ordered.
 */
#include "common/util.h"

#include "oai.h"
#include "sse.h"

static int on_ev(void *ctx, const char *type, const char *data, size_t len)
{
	struct kvb_oai *o = ctx;
	static uint64_t t;

	(void)type;
	return kvb_oai_chunk(o, data, len, ++t) < 0 ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (int mode = 0; mode < 4; mode++) {
		struct kvb_result r = { 0 };
		struct kvb_oai o;
		struct kvb_sse s;
		char *m;

		kvb_oai_init(&o, &r, mode & 1 ? KVB_EP_CHAT : KVB_EP_COMPLETIONS, mode & 2, "ab");
		if (mode < 2) {
			kvb_sse_init(&s, 1 << 16);
			if (!kvb_sse_feed(&s, (const char *)data, size, on_ev, &o))
				kvb_sse_finish(&s, on_ev, &o);
			kvb_sse_release(&s);
		} else {
			kvb_oai_body(&o, (const char *)data, size, 7);
		}
		kvb_oai_finish(&o);
		for (size_t i = 1; i < r.n_tok_t; i++)
			if (r.tok_t[i] < r.tok_t[i - 1])
				__builtin_trap();
		kvb_oai_release(&o);
		kvb_result_release(&r);
		m = kvb_oai_error_message((const char *)data, size);
		free(m);
	}
	return 0;
}
