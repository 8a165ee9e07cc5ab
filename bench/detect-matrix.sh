#!/usr/bin/env bash
# Detection matrix (issue 9): a thin wrapper around the suite examples/faults.yaml,
# kept for the commands in docs/DETECTION.md. Everything it did is now `kvbench run`:
#
#   kvbench run examples/faults.yaml [-o OUT_DIR] [--tag reduced]
#
# usage: bench/detect-matrix.sh BUILD_DIR [OUT_DIR]
# env:   DETECT_REPS=N          runs of each clean row (default 3; FAULTS_REPEAT)
#        DETECT_REDUCED=1       one fault per class + clean rows (--tag reduced)
#        DETECT_BENCH_ARGS=--no-stream   requests without streaming (FAULTS_STREAM=false)
# Writes OUT_DIR/matrix.csv and matrix.json (docs/RESULTS.md) with the rest of the
# run folder; exits as kvbench run does (0: every fault row detected and every clean
# row passed, 1: a row missed or alarmed, 2: usage, 3: an engine failed).
set -u
BUILD=${1:-}
OUT=${2:-detect-out}
if [ -z "$BUILD" ] || [ ! -x "$BUILD/kvbench" ] || [ ! -x "$BUILD/kvserve" ]; then
	echo "usage: bench/detect-matrix.sh BUILD_DIR [OUT_DIR]  (BUILD_DIR holds kvserve and kvbench)" >&2
	exit 2
fi
SRC=$(cd "$(dirname "$0")/.." && pwd)
export FAULTS_REPEAT=${DETECT_REPS:-3}
case " ${DETECT_BENCH_ARGS:-} " in *" --no-stream "*) export FAULTS_STREAM=false ;; esac
TAG=()
[ "${DETECT_REDUCED:-0}" = 1 ] && TAG=(--tag reduced)
KVSERVE=$BUILD/kvserve exec "$BUILD/kvbench" run "$SRC/examples/faults.yaml" "${TAG[@]}" -o "$OUT" --no-progress
