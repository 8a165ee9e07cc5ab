#!/usr/bin/env bash
# Reduced detection matrix (issue 9): one connector fault per class kvserve imitates,
# plus clean rows. Asserts every fault is detected and every clean row passes.
# --no-stream: under ASan the streamed echo text is sometimes missing (see docs/DETECTION.md).
# bench/detect-matrix.sh kills every kvserve it starts (trap) and binds 127.0.0.1 only.
set -eu
SRC=${KV_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
BUILD=${KV_BUILD:-build}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/detect-e2e-XXXXXX")
trap 'rm -rf "$OUT"' EXIT
rc=0
DETECT_BENCH_ARGS="--no-stream" DETECT_REDUCED=1 DETECT_REPS=${DETECT_REPS:-2} timeout 170 bash "$SRC/bench/detect-matrix.sh" "$BUILD" "$OUT" || rc=$?
cat "$OUT/matrix.csv" 2>/dev/null || true
fail=0
[ "$rc" -eq 0 ] || { echo "FAIL detect-matrix exited $rc"; fail=1; }
# each class row exists and is detected; clean rows are not
grep -q "^zero-tail,B,[^,]*no echo),[0-9]*,yes," "$OUT/matrix.csv" || { echo "FAIL zero-tail (no echo) not detected"; fail=1; }
for f in bitflip truncate wrong-key stale drop-key:salt offset swap-kv lossy; do
	grep -q "^$f,[^,]*,[^,]*,[0-9]*,yes," "$OUT/matrix.csv" || { echo "FAIL $f not detected"; fail=1; }
done
grep -q '^none (connector fp32),.*,no,-,' "$OUT/matrix.csv" || { echo "FAIL clean row missing or alarmed"; fail=1; }
grep -q "^none (no connector; reuse claimed),.*,yes,[a-z_+]*cache_path," "$OUT/matrix.csv" || { echo "FAIL connector-off row not caught by cache_path"; fail=1; }
grep -q '^none (chunk 256.*,yes,[a-z_+]*cache_path,' "$OUT/matrix.csv" || { echo "FAIL never-exercised row not caught by cache_path"; fail=1; }
if grep -q '^none.*FALSE_ALARM' "$OUT/matrix.csv"; then echo "FAIL false alarm on a clean row"; fail=1; fi
[ -s "$OUT/matrix.json" ] || { echo "FAIL matrix.json missing"; fail=1; }
[ "$fail" -eq 0 ] && echo "ok   reduced detection matrix"
exit "$fail"
