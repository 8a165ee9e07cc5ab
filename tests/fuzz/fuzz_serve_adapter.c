/*
 * libFuzzer target: kvserve's --adapter spec parser (model_adapter_parse) on
 * any bytes. It must accept only specs within the documented limits (name
 * characters and length, rank 1..64, alpha in (0, 10000]) and otherwise fail
 * with a message, never crash or read out of bounds.
 * Build and run: see the comment in tests/fuzz/CMakeLists.txt.
 *   ./build-fuzz/tests/fuzz/fuzz_serve_adapter -max_total_time=30
 */
#include "common/util.h"

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct model_adapter_config ac;
	char err[256];
	char *s = xmalloc(size + 1);
	memcpy(s, data, size);
	s[size] = 0;
	err[0] = 0;
	if (model_adapter_parse(s, &ac, err, sizeof(err)) == 0) {
		size_t n = strlen(ac.name);
		if (n == 0 || n >= MODEL_ADAPTER_NAME_MAX || strncmp(s, ac.name, n) || s[n] != '=')
			__builtin_trap();
		for (size_t i = 0; i < n; i++)
			if (ac.name[i] == ',' || ac.name[i] == '=' || ac.name[i] == '"' || ac.name[i] <= ' ')
				__builtin_trap();
		if (ac.rank < 1 || ac.rank > MODEL_ADAPTER_MAX_RANK || !(ac.alpha > 0 && ac.alpha <= 1e4f))
			__builtin_trap();
	} else if (!err[0]) {
		__builtin_trap();
	}
	free(s);
	return 0;
}
