#!/usr/bin/env bash
# An engine that exits at start, one that never becomes healthy, one whose
# program does not exist, and one killed in the middle of a test: each gives a
# clear ERROR within its timeout, exit 3, and no process is left behind.
. "$(dirname "$0")/../helpers/e2e_lib.sh"
S=$KV_FIXTURES/suites/e2e-failures.yaml

t0=$(date +%s)
"$KVBENCH" run "$S" -f on-exits -o "$T/exits" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 3 ] || fail "exits: exit $rc, want 3"
[ "$(elapsed $t0)" -lt 20 ] || fail "exits: took $(elapsed $t0)s"
grep -q '^ERROR' "$T/exits/on-exits.result" || fail "exits: $(cat "$T/exits/on-exits.result")"
grep -q 'engine exits exited with status 3.*cannot load model' "$T/exits/on-exits.result" \
  || fail "exits reason: $(cat "$T/exits/on-exits.result")"
grep -q 'cannot load model' "$T/err" || fail "exits: log tail not shown"
[ "$(head -1 "$T/exits/overall.result")" = FAIL ] || fail "exits overall"
no_leftovers "engine that exits at start"

t0=$(date +%s)
"$KVBENCH" run "$S" -f on-never -o "$T/never" >"$T/out" 2>"$T/err"; rc=$?
e=$(elapsed $t0)
[ $rc -eq 3 ] || fail "never: exit $rc, want 3"
[ "$e" -ge 2 ] && [ "$e" -lt 20 ] || fail "never: took ${e}s for a 2s startup_timeout"
grep -q 'engine never never became ready' "$T/never/on-never.result" || fail "never: $(cat "$T/never/on-never.result")"
grep -q '/health did not answer 200 within 2s' "$T/err" || fail "never: $(cat "$T/err")"
no_leftovers "engine that never becomes healthy"

"$KVBENCH" run "$S" -f on-missing -o "$T/missing" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 3 ] || fail "missing: exit $rc, want 3"
grep -q "cannot start '/nonexistent/kvb-no-such-engine': No such file" "$T/err" || fail "missing: $(cat "$T/err")"
grep -q 'engine missing could not be started' "$T/missing/on-missing.result" || fail "missing result"

# the good test still passes next to the broken ones
"$KVBENCH" run "$S" -f 'on-*' -o "$T/all" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 3 ] || fail "all: exit $rc, want 3"
[ "$(head -1 "$T/all/on-good.result")" = PASS ] || fail "on-good: $(cat "$T/all/on-good.result")"
no_leftovers "mixed suite"

# killed mid-test: the test fails at once, not at the end of its workload
start_bg "$KVBENCH" run "$S" -f long -o "$T/killed" >"$T/out" 2>"$T/err"
for i in $(seq 1 300); do grep -q 'test long: running' "$T/err" && break; sleep 0.1; done
grep -q 'test long: running' "$T/err" || fail "killed: the test never started: $(cat "$T/err")"
sleep 1
victim=$(pgrep -P "$BG" -f kvserve | head -1)
[ -n "$victim" ] || fail "killed: no kvserve child of kvbench"
t0=$(date +%s)
kill -KILL "$victim"
wait_pid "$BG" 30
[ $RC -eq 3 ] || fail "killed: exit $RC, want 3"
[ "$(elapsed $t0)" -lt 10 ] || fail "killed: took $(elapsed $t0)s to notice"
grep -q 'engine good killed by signal 9' "$T/killed/long.result" || fail "killed: $(cat "$T/killed/long.result")"
no_leftovers "engine killed mid-test"

# a test timeout cuts a test that would run for ever
LONG_TIMEOUT=2s "$KVBENCH" run "$S" -f long -o "$T/timeout" >"$T/out" 2>"$T/err"; rc=$?
[ $rc -eq 3 ] || fail "timeout: exit $rc"
grep -q 'ran past its timeout of 2s' "$T/timeout/long.result" || fail "timeout: $(cat "$T/timeout/long.result")"
no_leftovers "test timeout"
echo ok
