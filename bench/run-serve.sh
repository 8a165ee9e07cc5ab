#!/usr/bin/env bash
# kvserve performance figures for docs/PERFORMANCE.md: prefill and decode
# tokens/s of kv-tiny and kv-small, prefill FLOP rate vs OpenBLAS sgemm alone
# on the same shapes, TTFT of a 4,096-token prompt cold vs prefix-cached.
# Usage: bench/run-serve.sh [BUILD_DIR] [THREADS]   (build with scripts/build.sh first)
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-2}
[ -x "$build/bench/kvserve-bench" ] || bash scripts/build.sh "$build"
echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(nproc) cores, $threads threads, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
# kv-tiny at 4,096 tokens (the TTFT target); kv-small at 1,024 (minutes otherwise on 2 cores)
"$build/bench/kvserve-bench" kv-tiny "$threads" 4096
"$build/bench/kvserve-bench" kv-small "$threads" 1024
