#!/usr/bin/env bash
# Every malformed suite gives exit 2 and exactly one line naming file:line.
. "$(dirname "$0")/../helpers/e2e_lib.sh"
unset KVB_SURELY_UNSET_VARIABLE
n=0
for f in "$KV_FIXTURES"/suites/bad/*.yaml "$KV_FIXTURES"/suites/e2e-workload-*.yaml; do
  for mode in "" --dry-run; do
    "$KVBENCH" run $mode "$f" -o "$T/out" >"$T/stdout" 2>"$T/stderr"; rc=$?
    [ $rc -eq 2 ] || fail "$f $mode: exit $rc, want 2: $(cat "$T/stderr")"
    [ "$(wc -l <"$T/stderr")" -eq 1 ] || fail "$f: want one error line, got: $(cat "$T/stderr")"
    grep -Eq "^kvbench: error: $f:[0-9]+: " "$T/stderr" || fail "$f: no file:line: $(cat "$T/stderr")"
    [ -e "$T/out" ] && fail "$f: a results folder was created for a bad suite"
  done
  n=$((n + 1))
done
[ $n -ge 18 ] || fail "only $n fixtures"
grep -q "e2e-workload-param.yaml:7: input_len" "$T/stderr" 2>/dev/null || true
"$KVBENCH" run "$KV_FIXTURES/suites/e2e-workload-param.yaml" 2>"$T/stderr"
grep -q "e2e-workload-param.yaml:7: input_len: expected an integer" "$T/stderr" || fail "param: $(cat "$T/stderr")"
"$KVBENCH" run "$KV_FIXTURES/suites/e2e-workload-unknown.yaml" 2>"$T/stderr"
grep -q "e2e-workload-unknown.yaml:7" "$T/stderr" || fail "unknown param: $(cat "$T/stderr")"
# usage errors
"$KVBENCH" run 2>/dev/null; [ $? -eq 2 ] || fail "no suite: want exit 2"
"$KVBENCH" run "$KV_FIXTURES/suites/good.yaml" -f no-such-test 2>"$T/stderr"; [ $? -eq 2 ] || fail "-f: want 2"
"$KVBENCH" run /nonexistent.yaml 2>"$T/stderr"; [ $? -eq 2 ] || fail "missing file: want 2"
grep -q "/nonexistent.yaml: cannot read" "$T/stderr" || fail "missing file: $(cat "$T/stderr")"
no_leftovers "config errors"
echo "ok: $n malformed suites"
