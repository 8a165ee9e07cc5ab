#!/usr/bin/env bash
# passes: 2 with two engines at once: the pass column and the statistics are
# numbered by the suite's pass, cold-vs-warm speedup and identity across
# passes hold, one requests.csv holds every engine and pass.
. "$(dirname "$0")/../helpers/e2e_lib.sh"
S=$KV_FIXTURES/suites/e2e-passes.yaml
"$KVBENCH" run "$S" -o "$T/p" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] || fail "exit $rc: $(cat "$T/out") $(tail -5 "$T/err")"
R=$T/p/cold-warm
[ "$(grep -c '^cold-warm,' "$R/requests.csv")" -eq 12 ] || fail "rows: $(wc -l <"$R/requests.csv")"
col=$(head -1 "$R/requests.csv" | tr ',' '\n' | grep -n '^pass$' | cut -d: -f1)
ecol=$(head -1 "$R/requests.csv" | tr ',' '\n' | grep -n '^engine_id$' | cut -d: -f1)
for e in cache nocache; do
  for p in 0 1; do
    n=$(tail -n +2 "$R/requests.csv" | awk -F, -v c=$col -v ec=$ecol -v e=$e -v p=$p '$ec==e && $c==p' | wc -l)
    [ "$n" -eq 3 ] || fail "$e pass $p: $n rows"
  done
done
[ "$(grep -c '"pass": 1' "$R/summary.json")" -ge 2 ] || fail "summary groups of pass 1"
[ "$(wc -l <"$R/outputs.jsonl")" -eq 12 ] || fail "outputs.jsonl"
grep -q '^PASS min_speedup.cache' "$T/p/cold-warm.result" || fail "$(cat "$T/p/cold-warm.result")"
grep -q '^PASS identity.vs-nocache' "$T/p/cold-warm.result" || fail "$(cat "$T/p/cold-warm.result")"
ls -d "$R"/run-* 2>/dev/null && fail "per-run folders left"
no_leftovers "passes"
echo ok
