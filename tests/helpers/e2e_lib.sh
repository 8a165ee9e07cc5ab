# Sourced by tests/e2e/run_*.sh: a scratch folder, cleanup of every process
# the test started (by pid), and the check that no engine is left behind.
set -u
: "${KV_BUILD:?KV_BUILD must name the build folder}"
: "${KV_SRC:=$(cd "$(dirname "$0")/../.." && pwd)}"
: "${KV_FIXTURES:=$KV_SRC/tests/fixtures}"
KVBENCH=$KV_BUILD/kvbench
FAKE=$KV_BUILD/tests/fake_engine
TAG=kvb-e2e-$$
export FAKE TAG
T=$(mktemp -d /tmp/kvb-e2e.XXXXXX)
BG_PIDS=""

fail() { echo "FAIL: $*" >&2; exit 1; }

# kvbench in the background; its pid in $BG
start_bg() { "$@" & BG=$!; BG_PIDS="$BG_PIDS $BG"; }

# waits up to $2 seconds for pid $1 to exit; its status in $RC (124 on timeout)
wait_pid() {
  local i=0 lim=$(( $2 * 10 ))
  while kill -0 "$1" 2>/dev/null; do
    i=$((i + 1)); [ $i -ge $lim ] && { RC=124; return; }
    sleep 0.1
  done
  wait "$1" 2>/dev/null; RC=$?
}

# engines of this build (kvserve) or of this test (fake_engine --tag)
engines_left() {
  { pgrep -f "^$KV_BUILD/kvserve " ; pgrep -f "fake_engine.* --tag $TAG"; } 2>/dev/null | tr '\n' ' '
}

# engines that were running before this test (another test's) do not count
BEFORE=" $(engines_left) "
new_engines() {
  local p out=""
  for p in $(engines_left); do
    case "$BEFORE" in *" $p "*) ;; *) out="$out $p" ;; esac
  done
  echo $out
}

no_leftovers() {
  local i left
  for i in $(seq 1 30); do
    left=$(new_engines)
    [ -z "$left" ] && return 0
    sleep 0.1
  done
  fail "processes left behind after $1: $left ($(ps -o pid,pgid,args -p ${left// /,} 2>/dev/null | tail -n +2))"
}

cleanup() {
  local p
  for p in $BG_PIDS; do kill -INT "$p" 2>/dev/null; done
  for p in $BG_PIDS; do wait_pid "$p" 20; kill -KILL "$p" 2>/dev/null; done
  for p in $(new_engines); do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$T"
}
trap cleanup EXIT

elapsed() { echo $(( $(date +%s) - $1 )); }
