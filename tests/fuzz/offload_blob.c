/* Fuzzes the stored-object parser and decoder (disk files and remote replies
 * are outside input). */
#include "common/util.h"
#include "offload/codec.h"

static float rows[4][2][64][64];

static float *krow(void *ctx, int l, int p)
{
	(void)ctx;
	return rows[l][0][p];
}

static float *vrow(void *ctx, int l, int p)
{
	(void)ctx;
	return rows[l][1][p];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kvo_hdr h;
	const char *why;
	struct kv_seq_view v = { 4, 64, krow, vrow, NULL };
	if (kvo_blob_parse(data, size, size & 1, &h, &why) < 0)
		return 0;
	/* the connector decodes only objects whose shape matches the view */
	if (h.n_layers <= 4 && h.kv_dim == 64 && h.ntok <= 64)
		kvo_blob_decode(data, &h, &v, 0, NULL);
	return 0;
}
