#!/usr/bin/env bash
# kvbench check on recorded outputs: exit codes, figures, divergences file.
set -u
KVB="${KV_BUILD:?}/kvbench"
D="${KV_FIXTURES:?}/data"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# a run against itself (without its failed request): every check passes
grep -v '"status":"timeout"' "$D/outputs_base.jsonl" > "$T/ok.jsonl"
"$KVB" check "$T/ok.jsonl" "$T/ok.jsonl" > "$T/same.txt"; rc=$?
[ $rc -eq 0 ] || { cat "$T/same.txt"; fail "self-compare exit $rc"; }
# the failed request alone fails the comparison
"$KVB" check "$D/outputs_base.jsonl" "$D/outputs_base.jsonl" > "$T/f.txt"; rc=$?
[ $rc -eq 1 ] || fail "a failed request must fail, got $rc"
grep -q '^FAIL completeness' "$T/f.txt" || fail "completeness on a failed request"
grep -q '^PASS identity: 1 ' "$T/same.txt" || fail "identity not 1 on self-compare"

# near-tie + corruption: exit 1, divergences written, JSON checks written
"$KVB" check "$D/outputs_base.jsonl" "$D/outputs_cand.jsonl" --divergences "$T/div.jsonl" \
	--json "$T/checks.json" > "$T/diff.txt"; rc=$?
[ $rc -eq 1 ] || { cat "$T/diff.txt"; fail "expected exit 1, got $rc"; }
grep -q '^FAIL identity: 0.5 ' "$T/diff.txt" || fail "identity figure"
grep -q 'benign-near-tie' "$T/diff.txt" || fail "no near-tie line"
grep -q '^pairs: 4 ' "$T/diff.txt" || fail "pair count"
grep -q '^FAIL completeness: .*2 records without a partner, 1 failed' "$T/diff.txt" || fail "completeness"
[ "$(wc -l < "$T/div.jsonl")" -eq 3 ] || fail "divergences lines"
grep -q '"name": "identity"' "$T/checks.json" || fail "json checks"

# strictness and thresholds are flags
"$KVB" check "$D/outputs_base.jsonl" "$D/outputs_cand.jsonl" --near-tie-nats 0.001 > "$T/t.txt"
grep -q '0 benign near-ties' "$T/t.txt" || fail "--near-tie-nats not applied"

# bad input: exit 2 with file:line
"$KVB" check "$D/bad/outputs_no_key.jsonl" "$D/outputs_base.jsonl" 2> "$T/err.txt"; rc=$?
[ $rc -eq 2 ] || fail "bad file exit $rc"
grep -q 'outputs_no_key.jsonl:2: "key" must be a string' "$T/err.txt" || fail "bad file message"
"$KVB" check "$D/outputs_base.jsonl" 2> /dev/null; [ $? -eq 2 ] || fail "one argument must be a usage error"
# cache counters: LMCache stored but never hit → cache path never exercised
printf 'lmcache:num_hit_tokens_total 0\nlmcache:num_stored_tokens_total 0\n' > "$T/m0"
printf 'lmcache:num_hit_tokens_total 0\nlmcache:num_stored_tokens_total 512\n' > "$T/m1"
"$KVB" check "$T/ok.jsonl" "$T/ok.jsonl" --metrics-before "$T/m0" --metrics-after "$T/m1" > "$T/m.txt"; rc=$?
[ $rc -eq 1 ] || fail "zero hits must fail, got $rc"
grep -q 'FAIL cache_path.*cache path never exercised' "$T/m.txt" || fail "cache_path message"
grep -q 'FAIL silent_miss' "$T/m.txt" || fail "silent_miss"
"$KVB" check "$T/ok.jsonl" "$T/ok.jsonl" --metrics-before "$T/m0" --metrics-after "$T/m0" --no-claims-reuse > "$T/m.txt"; rc=$?
[ $rc -eq 0 ] || { cat "$T/m.txt"; fail "no claim must pass, got $rc"; }
# recorded kvserve outputs: a numerics-only change passes at the fp32 preset,
# the S-class imitation (weights x1.01) fails there, and is a known miss at bf16
K="$D/kvserve"
"$KVB" check "$K/gsm8k_clean_det.jsonl" "$K/gsm8k_clean_blas.jsonl" --tolerance fp32 > "$T/k.txt"; rc=$?
[ $rc -eq 0 ] || { cat "$T/k.txt"; fail "det vs blas must pass at fp32, got $rc"; }
"$KVB" check "$K/gsm8k_clean_det.jsonl" "$K/gsm8k_perturb_1_1.01.jsonl" --tolerance fp32 > "$T/k.txt"; rc=$?
[ $rc -eq 1 ] || { cat "$T/k.txt"; fail "perturbed weights must fail at fp32, got $rc"; }
grep -q '^FAIL identity: .* 3 corruption' "$T/k.txt" || fail "identity at fp32"
grep -q '^FAIL logprobs' "$T/k.txt" || fail "logprobs at fp32"
"$KVB" check "$K/gsm8k_clean_det.jsonl" "$K/gsm8k_perturb_1_1.01.jsonl" > "$T/k.txt"; rc=$?
[ $rc -eq 0 ] || { cat "$T/k.txt"; fail "bf16 preset: documented miss changed, got $rc"; }
grep -q '3 benign near-ties' "$T/k.txt" || fail "bf16 near-ties"
echo ok
