#!/usr/bin/env bash
# Runs every test twice: in a normal build (build/) and in an ASan+UBSan build
# (build-asan/), then builds the libFuzzer targets with clang (build-fuzz/) and
# gives each a short run. Usage: scripts/test.sh [--quick]   (--quick: normal
# build only)
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
# The libFuzzer targets (tests/fuzz, clang) must build (-Werror) and survive a
# short run from their seed inputs; long fuzzing runs are by hand.
CC=clang bash scripts/build.sh build-fuzz -DKV_FUZZ=ON
echo "== fuzz targets: 20,000 runs each (build-fuzz/)"
seeds() {
	case $1 in
	fuzz_sse | fuzz_oai) echo tests/fixtures/sse ;;
	fuzz_suite) echo examples tests/fixtures/suites ;;
	fuzz_jsonl | fuzz_csv | fuzz_tokenize) echo tests/fixtures/data ;;
	fuzz_report_csv) echo tests/fixtures/results/suite-base ;;
	esac
}
fz=$(mktemp -d)
trap 'rm -rf "$fz"' EXIT
for f in build-fuzz/tests/fuzz/*; do
	[ -f "$f" ] && [ -x "$f" ] || continue
	n=$(basename "$f")
	mkdir -p "$fz/$n"
	# new inputs go to the first (scratch) folder, never into the seeds
	# shellcheck disable=SC2046
	if ! "$f" -runs=20000 -close_fd_mask=3 "$fz/$n" $(seeds "$n") >"$fz/$n.log" 2>&1; then
		tail -30 "$fz/$n.log"
		echo "FAIL: fuzz target $n (crash input in the log above)"
		exit 1
	fi
	echo "ok   $n"
done
