#!/usr/bin/env bash
# Offload figures for docs/PERFORMANCE.md: load bandwidth of each tier
# (CPU per encoding, disk, remote on loopback) against memcpy of the same
# bytes on this machine, and, when build/kvserve exists with the connector,
# TTFT of a 4,096-token prompt served cold and from each tier.
# Usage: bench/run-offload.sh [BUILD_DIR]   (default build/)
set -eu
cd "$(dirname "$0")/.."
B=${1:-build}
[ -x "$B/tests/offload_bench" ] || { echo "run-offload: build first (scripts/build.sh $B)" >&2; exit 2; }
echo "## Offload load bandwidth ($(uname -m), $(nproc) cores, $(date -u +%Y-%m-%d))"
echo
echo "8 layers x kv_dim 256, 4,096 tokens loaded (chunks of 256), best of 5."
echo
"$B/tests/offload_bench" --layers 8 --kv-dim 256 --tokens 4097 --chunk 256 --reps 5
echo
if [ -x "$B/kvserve" ]; then
	echo "## TTFT of a 4,096-token prompt, cold vs served from each tier"
	echo
	echo "kv-tiny, prefix cache off, chunk 256: 3,840 tokens loaded, 256 computed."
	echo
	python3 bench/offload_ttft.py "$B" --model "${MODEL:-kv-tiny}" --tokens 4096 --reps "${REPS:-2}"
fi
