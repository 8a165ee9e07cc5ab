#!/usr/bin/env bash
# Runs every test twice: in a normal build (build/) and in an ASan+UBSan build
# (build-asan/). Usage: scripts/test.sh [--quick]   (--quick: normal build only)
set -eu
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh --test
jobs=$(nproc)
bash scripts/build.sh build
echo "== tests (build/)"
ctest --test-dir build --output-on-failure -j "$jobs"
[ "${1:-}" = "--quick" ] && exit 0
bash scripts/build.sh build-asan -DKV_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
echo "== tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  KV_SANITIZED=1 ctest --test-dir build-asan --output-on-failure -j "$jobs"
