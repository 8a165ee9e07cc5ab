/*
 * libFuzzer target: kvserve's request parser (server_check_request) on any
 * bytes, as /v1/completions and as /v1/chat/completions. It must return 0
 * or an HTTP status (400/404), never crash, leak or read out of bounds.
 * Build and run: see the comment in tests/fuzz/CMakeLists.txt, or by hand:
 *   clang -g -fsanitize=fuzzer,address -Isrc -Isrc/serve -D_DEFAULT_SOURCE \
 *     -DKV_VERSION='"fuzz"' tests/fuzz/fuzz_serve_request.c src/serve/*.c \
 *     src/common/*.c $(pkg-config --cflags --libs jansson libmicrohttpd \
 *     openblas libcrypto yaml-0.1) -lm -lpthread -o fuzz_serve_request
 *   ./fuzz_serve_request -max_total_time=30
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
