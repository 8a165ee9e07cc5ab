#!/usr/bin/env bash
# SIGINT (and SIGTERM) during a run: every engine stops within the grace
# period, the results say INTERRUPTED (never PASS), exit 3. While the run is
# going, the folder already says INTERRUPTED.
. "$(dirname "$0")/../helpers/e2e_lib.sh"
S=$KV_FIXTURES/suites/e2e-failures.yaml

for sig in INT TERM; do
  start_bg "$KVBENCH" run "$S" -f long -o "$T/$sig" >"$T/out" 2>"$T/err"
  for i in $(seq 1 300); do grep -q 'test long: running' "$T/err" && break; sleep 0.1; done
  grep -q 'test long: running' "$T/err" || fail "$sig: the test never started: $(cat "$T/err")"
  sleep 1
  [ "$(head -1 "$T/$sig/overall.result")" = INTERRUPTED ] || fail "$sig: a running folder must say INTERRUPTED"
  grep -q '"status": "running"' "$T/$sig/summary.json" || fail "$sig: summary status while running"
  [ -n "$(pgrep -P "$BG" -f kvserve)" ] || fail "$sig: no engine running"
  t0=$(date +%s)
  kill -$sig "$BG"
  wait_pid "$BG" 20   # stop_grace is 2s; SIGKILL after it
  [ $RC -eq 3 ] || fail "$sig: exit $RC, want 3"
  [ "$(elapsed $t0)" -le 8 ] || fail "$sig: took $(elapsed $t0)s"
  [ "$(head -1 "$T/$sig/overall.result")" = INTERRUPTED ] || fail "$sig: $(cat "$T/$sig/overall.result")"
  [ "$(head -1 "$T/$sig/long.result")" = INTERRUPTED ] || fail "$sig: $(cat "$T/$sig/long.result")"
  grep -q '"status": "interrupted"' "$T/$sig/summary.json" || fail "$sig: summary"
  grep -q 'PASS' "$T/$sig/overall.result" && fail "$sig: PASS in an interrupted run"
  no_leftovers "SIG$sig"
done

# SIGINT while an engine is still starting: no waiting for its startup_timeout
NEVER_TIMEOUT=60s start_bg "$KVBENCH" run "$S" -f on-never -o "$T/starting" >"$T/out" 2>"$T/err"
for i in $(seq 1 100); do [ -n "$(pgrep -P "$BG" -f fake_engine)" ] && break; sleep 0.1; done
[ -n "$(pgrep -P "$BG" -f fake_engine)" ] || fail "starting: the engine never started"
sleep 0.5
t0=$(date +%s)
kill -INT "$BG"
wait_pid "$BG" 20
[ $RC -eq 3 ] || fail "starting: exit $RC, want 3"
[ "$(elapsed $t0)" -le 5 ] || fail "starting: took $(elapsed $t0)s"
[ "$(head -1 "$T/starting/overall.result")" = INTERRUPTED ] || fail "starting: $(cat "$T/starting/overall.result")"
no_leftovers "SIGINT during startup"

# SIGKILL: nothing can be cleaned up by kvbench itself, yet its engines die
# with it (PR_SET_PDEATHSIG) and the folder still says INTERRUPTED.
start_bg "$KVBENCH" run "$S" -f long -o "$T/KILL" >"$T/out" 2>"$T/err"
for i in $(seq 1 300); do grep -q 'test long: running' "$T/err" && break; sleep 0.1; done
grep -q 'test long: running' "$T/err" || fail "KILL: the test never started: $(cat "$T/err")"
[ -n "$(pgrep -P "$BG" -f kvserve)" ] || fail "KILL: no engine running"
kill -KILL "$BG"
wait_pid "$BG" 10
no_leftovers "SIGKILL of kvbench"
[ "$(head -1 "$T/KILL/overall.result")" = INTERRUPTED ] || fail "KILL: $(cat "$T/KILL/overall.result")"
grep -q 'PASS' "$T/KILL/overall.result" && fail "KILL: PASS in a killed run"
echo ok
