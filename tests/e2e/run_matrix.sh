#!/usr/bin/env bash
# Claims of cache reuse and the detection matrix in suites (docs/suite.md):
# - a kvserve engine with a connector tier that never gets a hit (chunk 256 > every
#   prompt) fails its test with "cache path never exercised"; claims_reuse: false
#   on the test turns the implicit check off;
# - matrix rows: expect: detect with a failing check is "detected" (PASS), with every
#   check passing "missed" (FAIL); expect: pass with repeat: 2 and restart: true runs
#   twice, restarting the connector engine; matrix.csv / matrix.json / report table;
# - -l shows the matrix keys, --tag selects, bad keys are FILE:LINE errors.
. "$(dirname "$0")/../helpers/e2e_lib.sh"
S=$KV_FIXTURES/suites/e2e-matrix.yaml

t0=$(date +%s)
"$KVBENCH" run "$S" -o "$T/all" --no-progress >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 1 ] || fail "exit $rc, want 1: $(tail -5 "$T/err")"
R=$T/all
[ "$(head -1 "$R/never-exercised.result")" = FAIL ] || fail "never-exercised: $(cat "$R/never-exercised.result")"
grep -q '^FAIL cache_path.never: .*cache path never exercised' "$R/never-exercised.result" \
  || fail "no cache_path failure: $(cat "$R/never-exercised.result")"
grep -q '^PASS identity.never' "$R/never-exercised.result" || fail "identity should pass"
grep -q 'silent_miss.never' "$R/never-exercised.result" || fail "no silent_miss check"
[ "$(head -1 "$R/no-claim.result")" = PASS ] || fail "no-claim: $(cat "$R/no-claim.result")"
grep -q cache_path "$R/no-claim.result" && fail "claims_reuse: false still checked the cache path"
[ "$(head -1 "$R/row-detected.result")" = PASS ] || fail "row-detected: $(cat "$R/row-detected.result")"
[ "$(head -1 "$R/row-missed.result")" = FAIL ] || fail "row-missed: $(cat "$R/row-missed.result")"
[ "$(head -1 "$R/row-clean.result")" = PASS ] || fail "row-clean: $(cat "$R/row-clean.result")"
grep -q '^PASS run2:identity.conn' "$R/row-clean.result" || fail "repeat: no run 2: $(cat "$R/row-clean.result")"
[ -f "$R/row-clean/run-1/outputs.jsonl" ] && [ -f "$R/row-clean/run-2/outputs.jsonl" ] || fail "run-N folders"
grep -q 'engine conn: restarting between passes' "$T/err" || fail "restart: true did not restart"
grep -q 'engine conn: restarting for run 2' "$T/err" || fail "repeat did not restart the cache engine"
M=$R/matrix.csv
[ "$(head -1 "$M")" = "test,fault,class,workload,requests,runs,expect,detected_runs,detecting_checks,first_detected_request,verdict,note" ] \
  || fail "matrix.csv header: $(head -1 "$M")"
[ "$(wc -l <"$M")" -eq 4 ] || fail "matrix rows: $(cat "$M")"   # only tests with fault: or expect:
grep -q '^row-detected,none (never exercised),-,sweep (ttft-sweep),4,1,detect,1,cache_path.never,,detected,' "$M" || fail "detected row: $(cat "$M")"
grep -q '^row-missed,none (clean connector),B,sweep (ttft-sweep),4,1,detect,0,,,missed,' "$M" || fail "missed row: $(cat "$M")"
grep -q '^row-clean,,-,sweep (ttft-sweep),8,2,pass,0,,,pass,' "$M" || fail "clean row: $(cat "$M")"
grep -q '"verdict": "missed"' "$R/matrix.json" || fail "matrix.json"
# junit: a detected row's failing checks are its wanted outcome; a missed row fails its detection case
python3 - "$R/junit.xml" <<'PY' || fail "junit.xml (above)"
import sys, xml.dom.minidom as m
d = m.parse(sys.argv[1])
suites = {s.getAttribute("name"): s for s in d.getElementsByTagName("testsuite")}
def fails(s):
    return [c.getAttribute("name") for c in s.getElementsByTagName("testcase") if c.getElementsByTagName("failure")]
assert fails(suites["row-detected"]) == [], fails(suites["row-detected"])
assert fails(suites["row-missed"]) == ["detection"], fails(suites["row-missed"])
assert fails(suites["never-exercised"]) == ["cache_path.never"], fails(suites["never-exercised"])
PY
grep -q '<section id="matrix"><h2>Detection matrix</h2>' "$R/report.html" || fail "no matrix table in report.html"
grep -q '<td class="FAIL">missed</td>' "$R/report.html" || fail "missed row not marked in the report"
ls "$R"/*.tmp* 2>/dev/null && fail "temporary files left"
no_leftovers "matrix suite"

# -l and --tag
"$KVBENCH" run -l "$S" >"$T/l" || fail "-l"
grep -q '^row-missed: .*fault none (clean connector), class B, expect detect, tags matrix' "$T/l" || fail "-l: $(cat "$T/l")"
grep -q '^row-clean: .*repeat 2, restart' "$T/l" || fail "-l repeat: $(cat "$T/l")"
grep -q '^never-exercised: .* +cache_path.never' "$T/l" || fail "-l claims: $(cat "$T/l")"
[ "$("$KVBENCH" run -l --tag matrix "$S" | wc -l)" -eq 3 ] || fail "--tag matrix"
"$KVBENCH" run --tag quiet "$S" -o "$T/quiet" --no-progress --no-report >/dev/null 2>&1 || fail "--tag quiet should pass"
[ ! -e "$T/quiet/matrix.csv" ] || fail "matrix.csv without matrix rows"
"$KVBENCH" run --tag nosuch "$S" -o "$T/x" >/dev/null 2>"$T/e"; [ $? -eq 2 ] || fail "--tag nosuch: exit"
grep -q "no test of .* with tag nosuch" "$T/e" || fail "--tag nosuch: $(cat "$T/e")"

# bad keys: one FILE:LINE error, exit 2
bad() {
  printf '%s\n' "$1" >"$T/bad.yaml"
  "$KVBENCH" run -l "$T/bad.yaml" >/dev/null 2>"$T/e"; local rc=$?
  [ $rc -eq 2 ] || fail "$2: exit $rc"
  grep -q "$2" "$T/e" || fail "$2: $(cat "$T/e")"
}
HEAD='engines: {a: {preset: kvserve}, b: {preset: kvserve}}
workloads: {w: {type: synthetic, num_requests: 1}}
tests:
  t:
    workload: w
    engines: [a, b]'
bad "$HEAD
    expect: maybe" "bad.yaml:7: tests.t.expect: expected detect or pass, got 'maybe'"
bad "$HEAD
    restart: true" "bad.yaml:7: tests.t.restart: needs passes: 2 or more"
bad "$HEAD
    repeat: 0" "bad.yaml:7: tests.t.repeat: expected an integer in 1..10000"
bad "$HEAD
    abort_after_tokens: 2" "bad.yaml:7: tests.t: abort_after_tokens and abort_after need 'abort_every: N'"
bad "$HEAD
    checks:
      - {type: logprobs, baseline: a, candidate: b, tolerance: fp16}" "bad.yaml:8: tests.t.checks.tolerance: expected bf16 or fp32, got 'fp16'"
bad "$HEAD
    checks:
      - {type: max_ttft, max: 1, strict: true}" "bad.yaml:8: tests.t.checks.strict: not a key of max_ttft checks"
bad "$HEAD
    checks:
      - {type: cache_path}" "tests.t.checks: cache_path needs 'engine'"
bad "engines: {a: {preset: kvserve, claims_reuse: perhaps}}
workloads: {w: {type: synthetic}}
tests: {t: {workload: w, engines: [a]}}" "bad.yaml:1: engines.a.claims_reuse: expected true or false"
echo "matrix suite: $(elapsed $t0)s"
