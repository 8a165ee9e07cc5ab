/* libFuzzer target: the /tokenize response parser (all three shapes). */
#include "common/util.h"

#include "tokenize.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int32_t *ids = NULL;
	size_t n = 0;
	char *err = NULL;

	if (kvb_tokenize_parse((const char *)data, size, &ids, &n, &err) == 0) {
		if (!ids || err)
			abort();
	} else if (ids || !err || strchr(err, '\n')) {
		abort();
	}
	free(ids);
	free(err);
	return 0;
}
