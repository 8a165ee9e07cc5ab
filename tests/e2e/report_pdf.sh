#!/usr/bin/env bash
# kvbench report on the fixture folders: the PDF is valid, has the expected
# pages and text; every PNG has the expected size and is not blank; the HTML
# holds every chart and table.
set -euo pipefail
: "${KV_BUILD:?}" "${KV_FIXTURES:?}"
kvb=$KV_BUILD/kvbench
png_check=$KV_BUILD/tests/png_check
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

command -v pdfinfo >/dev/null || fail "pdfinfo missing: scripts/install-deps.sh --test"

"$kvb" report "$KV_FIXTURES/results/suite-base" -o "$out/" 2>"$out/err" ||
	fail "report exited $? ($(cat "$out/err"))"
pdf=$out/report.pdf html=$out/report.html
pdfinfo "$pdf" >"$out/info" || fail "pdfinfo rejects the PDF"
pages=$(awk '/^Pages:/ {print $2}' "$out/info")
# title 1; long-doc-qa 1 + 3 (5 charts) + 1 divergences; multi-turn 1 + 3 (6 charts);
# mmlu 1 + 2 (4 charts)
[ "$pages" = 13 ] || fail "expected 13 pages, got $pages"
grep -q "Page size:.*595.* x 841.*A4" "$out/info" || fail "not A4: $(grep 'Page size' "$out/info")"
pdftotext -layout "$pdf" "$out/text"
for s in "kvbench report" "FAIL" "2026-11-25T09-00-00-base" "Test long-doc-qa" "Test multi-turn" \
	"Test mmlu" identity ttft-warm-mean speedup-vs-baseline ttft-p99-turn-ratio \
	accuracy-kvserve-cache accuracy-differential "TTFT distribution" \
	"TTFT against context length" "TTFT per turn" "Cache hit rate per pass" \
	"Output token throughput over time" "Accuracy" "first differing outputs"; do
	grep -qF -- "$s" "$out/text" || fail "the PDF text lacks '$s'"
done
# The first page carries the verdict and the failed check.
pdftotext -f 1 -l 1 "$pdf" - | grep -q "long-doc-qa / identity" || fail "page 1 lacks the failed check"

n=0
for f in "$out"/charts/*.png; do
	"$png_check" "$f" 1200 675 0.02 >/dev/null || fail "$f"
	id=$(basename "$f" .png)
	grep -q "id=\"chart-$id\"" "$html" || fail "report.html lacks chart $id"
	n=$((n + 1))
done
[ "$n" = 15 ] || fail "expected 15 PNG charts, got $n"
for id in tests long-doc-qa-groups long-doc-qa-checks long-doc-qa-divergences multi-turn-groups \
	multi-turn-checks mmlu-groups mmlu-checks verdict; do
	grep -q "id=\"$id\"" "$html" || fail "report.html lacks table $id"
done
grep -q "<svg" "$html" || fail "no inline SVG"
grep -q "<title>TTFT distribution</title>" "$html" || fail "charts lack an SVG title"
if grep -Eq '(src|href)="(https?:|//)' "$html"; then fail "report.html loads an external resource"; fi

# A bench folder, the -o FILE form, and a hostile folder.
"$kvb" report "$KV_FIXTURES/results/bench-flat" -o "$out/flat/r.pdf" 2>/dev/null
[ "$(pdfinfo "$out/flat/r.pdf" | awk '/^Pages:/ {print $2}')" = 3 ] || fail "bench-flat pages"
[ -s "$out/flat/r.html" ] && [ -s "$out/flat/charts/bench-ttft-cdf.png" ] || fail "bench-flat files"
pdftotext -f 1 -l 1 "$out/flat/r.pdf" - | grep -q "NO CHECKS" || fail "bench-flat verdict"
mkdir -p "$out/edge"
"$kvb" report "$KV_FIXTURES/results/suite-edge" -o "$out/edge" 2>/dev/null
if grep -q "<script\|<img" "$out/edge/report.html"; then fail "unescaped markup in report.html"; fi
pdftotext "$out/edge/report.pdf" - | grep -q "no data" || fail "edge PDF lacks 'no data'"

# Usage and input errors.
set +e
"$kvb" report 2>/dev/null; [ $? = 2 ] || fail "no argument: expected exit 2"
"$kvb" report /nonexistent 2>"$out/err"; [ $? = 2 ] || fail "missing folder: expected exit 2"
grep -q "/nonexistent" "$out/err" || fail "the error does not name the folder"
"$kvb" report --help | grep -q -- "--output" || fail "--help"
echo "ok: report_pdf"
