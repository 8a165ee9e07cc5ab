#!/usr/bin/env bash
# examples/quickstart.yaml against kvserve: PASS everywhere and exit 0; the
# same with thresholds that cannot be met: FAIL with the figure and exit 1;
# --quick skips the baseline engine and its checks. No engine is left behind.
. "$(dirname "$0")/../helpers/e2e_lib.sh"
# absolute TTFT depends on the machine (and on a sanitizer build): the speedup is the test
export QS_REQUESTS=6 QS_INPUT_LEN=600 QS_PREFIX_LEN=512 QS_MAX_TTFT=120 QS_MIN_SPEEDUP=1.1
Q=$KV_SRC/examples/quickstart.yaml

t0=$(date +%s)
"$KVBENCH" run "$Q" -o "$T/pass" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] || fail "passing suite: exit $rc: $(tail -5 "$T/err")"
[ "$(head -1 "$T/pass/overall.result")" = PASS ] || fail "overall: $(cat "$T/pass/overall.result")"
[ "$(head -1 "$T/pass/prefix-cache.result")" = PASS ] || fail "test result"
grep -q '^PASS identity' "$T/pass/prefix-cache.result" || fail "identity: $(cat "$T/pass/prefix-cache.result")"
grep -q 'failures="0"' "$T/pass/junit.xml" || fail "junit"
grep -q '"status": "pass"' "$T/pass/summary.json" || fail "summary status"
grep -q '^PASS  quickstart' "$T/out" || fail "no verdict line: $(tail -3 "$T/out")"
for f in logs/cache.stdout.log logs/cache.stderr.log logs/nocache.stderr.log \
         prefix-cache/requests.csv prefix-cache/outputs.jsonl prefix-cache/summary.json; do
  [ -f "$T/pass/$f" ] || fail "missing $f"
done
[ "$(head -1 "$T/pass/prefix-cache/requests.csv" | cut -d, -f1-9)" = \
  "expr_id,timestamp,engine_id,request_id,TTFT,throughput,context_len,query_len,gpu_memory" ] || fail "csv header"
[ "$(grep -c '^prefix-cache,' "$T/pass/prefix-cache/requests.csv")" -eq 12 ] || fail "csv rows"
ls "$T/pass"/*.tmp* "$T/pass"/*/*.tmp* 2>/dev/null && fail "temporary files left"
no_leftovers "passing suite"
echo "passing suite: $(elapsed $t0)s"

QS_MIN_SPEEDUP=1000 QS_MAX_TTFT=0.000001 "$KVBENCH" run "$Q" -o "$T/fail" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] || fail "failing thresholds: exit $rc, want 1: $(tail -5 "$T/err")"
[ "$(head -1 "$T/fail/overall.result")" = FAIL ] || fail "overall: $(cat "$T/fail/overall.result")"
grep -Eq '^FAIL min_speedup.cache: figure [0-9.]+ x, threshold 1000 x' "$T/fail/prefix-cache.result" \
  || fail "speedup line: $(cat "$T/fail/prefix-cache.result")"
grep -Eq '^FAIL max_ttft.cache: figure [0-9.e-]+ s, threshold 1e-06 s' "$T/fail/prefix-cache.result" \
  || fail "ttft line: $(cat "$T/fail/prefix-cache.result")"
grep -q '<failure message="figure' "$T/fail/junit.xml" || fail "junit failure"
if command -v python3 >/dev/null; then
  for x in "$T/pass/junit.xml" "$T/fail/junit.xml"; do
    python3 -c 'import sys, xml.dom.minidom as m; m.parse(sys.argv[1])' "$x" || fail "$x is not well-formed XML"
  done
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$T/fail/summary.json" || fail "summary.json"
fi
no_leftovers "failing suite"

"$KVBENCH" run "$Q" --quick -o "$T/quick" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] || fail "--quick: exit $rc: $(tail -5 "$T/err")"
grep -q '^SKIPPED min_speedup.cache' "$T/quick/prefix-cache.result" || fail "quick: $(cat "$T/quick/prefix-cache.result")"
[ -e "$T/quick/logs/nocache.stdout.log" ] && fail "--quick started the baseline engine"
no_leftovers "--quick"
echo ok
