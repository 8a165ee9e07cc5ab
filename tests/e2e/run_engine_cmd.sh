#!/usr/bin/env bash
# kvbench engine start | status | stop: engines outlive the start command,
# status shows pid, port, state and health, stop leaves nothing behind.
. "$(dirname "$0")/../helpers/e2e_lib.sh"
Q=$KV_SRC/examples/quickstart.yaml

"$KVBENCH" engine start "$Q" -o "$T/e" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] || fail "start: exit $rc: $(cat "$T/err")"
[ -f "$T/e/engines.json" ] || fail "no engines.json"
pids=$(grep '"pid"' "$T/e/engines.json" | tr -dc '0-9 \n' | tr '\n' ' ')
BG_PIDS="$BG_PIDS $pids"   # cleanup stops them if the test fails
n=$(echo $pids | wc -w)    # one per engine of the suite
[ "$n" -ge 2 ] || fail "engines.json lists $n engines"
"$KVBENCH" engine status "$Q" -o "$T/e" >"$T/status"; rc=$?
[ $rc -eq 0 ] || fail "status: exit $rc: $(cat "$T/status")"
[ "$(grep -c ' running .*200 ' "$T/status")" -eq "$n" ] || fail "status: $(cat "$T/status")"
"$KVBENCH" engine start "$Q" -o "$T/e" 2>"$T/err"; [ $? -eq 2 ] || fail "second start must refuse"
# a suite run against the started engine (preset url), as a CI script would
url=$(grep -o '"url": "[^"]*"' "$T/e/engines.json" | head -1 | cut -d'"' -f4)
URL=$url "$KVBENCH" run "$KV_FIXTURES/suites/e2e-url.yaml" -o "$T/u" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 0 ] || fail "url suite: exit $rc: $(cat "$T/err")"
grep -q '^PASS max_error_rate' "$T/u/against-url.result" || fail "url: $(cat "$T/u/against-url.result")"
grep -q ',running,' "$T/u/against-url/requests.csv" || fail "url: engine_id"
"$KVBENCH" engine stop "$Q" -o "$T/e" >"$T/out"; rc=$?
[ $rc -eq 0 ] || fail "stop: exit $rc"
[ "$(grep -c ': stopped' "$T/out")" -eq "$n" ] || fail "stop: $(cat "$T/out")"
no_leftovers "engine stop"
"$KVBENCH" engine status "$Q" -o "$T/e" >"$T/status"; rc=$?
[ $rc -eq 3 ] || fail "status after stop: exit $rc"
[ "$(grep -c ' dead ' "$T/status")" -eq "$n" ] || fail "status after stop: $(cat "$T/status")"
"$KVBENCH" engine stop "$Q" -o "$T/e" >"$T/out"; [ $? -eq 0 ] || fail "second stop"
echo ok
