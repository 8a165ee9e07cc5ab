/*
 * libFuzzer target: kvserve's request parser (server_check_request) on any
 * bytes, as /v1/completions and as /v1/chat/completions. It must return 0
 * or an HTTP status (400/404), never crash, leak or read out of bounds.
 * Build and run: see the comment in tests/fuzz/CMakeLists.txt.
 *   ./build-fuzz/tests/fuzz/fuzz_serve_request -max_total_time=30
 */
#include "common/util.h"

#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[512];
	for (int chat = 0; chat < 2; chat++) {
		int rc = server_check_request("kv-tiny", (const char *)data, size, chat, err, sizeof(err));
		if (rc != 0 && rc != 400 && rc != 404)
			__builtin_trap();
	}
	return 0;
}
