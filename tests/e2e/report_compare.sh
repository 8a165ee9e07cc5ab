#!/usr/bin/env bash
# kvbench compare: a known TTFT regression exits 1 and is named; the same
# folder twice exits 0; bad input exits 2.
set -euo pipefail
: "${KV_BUILD:?}" "${KV_FIXTURES:?}"
kvb=$KV_BUILD/kvbench
base=$KV_FIXTURES/results/suite-base
reg=$KV_FIXTURES/results/suite-regressed
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

set +e
"$kvb" compare "$base" "$reg" >"$out/reg.txt" 2>"$out/err"; rc=$?
[ $rc = 1 ] || fail "regression: expected exit 1, got $rc"
grep -q "^REGRESSION: long-doc-qa kvserve-cache pass 1 ttft_mean" "$out/reg.txt" ||
	fail "the regression is not named: $(tail -5 "$out/reg.txt")"
if grep -q "^REGRESSION: .*kvserve-nocache" "$out/reg.txt"; then fail "false regression"; fi

"$kvb" compare "$base" "$base" >"$out/same.txt"; rc=$?
[ $rc = 0 ] || fail "same folder: expected exit 0, got $rc"
grep -q "no regression" "$out/same.txt" || fail "same folder: no verdict line"

# Faster is not a regression; a loose threshold lets it pass; --metric narrows.
"$kvb" compare "$reg" "$base" >/dev/null; [ $? = 0 ] || fail "improvement flagged"
"$kvb" compare "$base" "$reg" --max-regression 1.5 >/dev/null; [ $? = 0 ] || fail "--max-regression"
"$kvb" compare "$base" "$reg" --metric throughput >/dev/null; [ $? = 0 ] || fail "--metric throughput"
"$kvb" compare "$base" "$reg" --metric ttft_p99 >"$out/p99.txt"; [ $? = 1 ] || fail "--metric ttft_p99"
grep -q "REGRESSION: long-doc-qa kvserve-cache pass 1 ttft_p99" "$out/p99.txt" || fail "p99 unnamed"
# Deterministic: the same output twice.
"$kvb" compare "$base" "$reg" >"$out/reg2.txt"
cmp -s "$out/reg.txt" "$out/reg2.txt" || fail "compare output is not deterministic"

"$kvb" compare "$base" /nonexistent 2>/dev/null; [ $? = 2 ] || fail "missing folder: expected 2"
"$kvb" compare "$base" 2>/dev/null; [ $? = 2 ] || fail "one folder: expected 2"
"$kvb" compare "$base" "$reg" --metric nope 2>"$out/err"; [ $? = 2 ] || fail "bad metric: expected 2"
grep -q "unknown metric 'nope'" "$out/err" || fail "bad metric message"
"$kvb" compare "$base" "$KV_FIXTURES/results/bench-flat" 2>/dev/null; [ $? = 2 ] ||
	fail "no common test: expected 2"
echo "ok: report_compare"
