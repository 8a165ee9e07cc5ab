# Shared by tests/e2e/bench_*.sh: start the scripted server, run kvbench,
# check results. Every process started here is killed on exit (trap).
set -u
: "${KV_BUILD:?KV_BUILD must point at the build folder}"
KVBENCH=$KV_BUILD/kvbench
SERVER=$KV_BUILD/tests/kvb_script_server
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kvb_e2e.XXXXXX")
SERVER_PIDS=""

cleanup() {
	for p in $SERVER_PIDS; do kill "$p" 2>/dev/null; done
	for p in $SERVER_PIDS; do wait "$p" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() { echo "FAIL: $*" >&2; exit 1; }

# start_server SCRIPT_FILE [max_seconds]: sets PORT and URL; logs to $WORK/server.log
start_server() {
	local pf=$WORK/port.$RANDOM
	"$SERVER" --port-file "$pf" --log "$WORK/server.log" --timing-log "$WORK/timing.log" --max-seconds "${2:-60}" "$1" &
	SERVER_PIDS="$SERVER_PIDS $!"
	for _ in $(seq 100); do [ -s "$pf" ] && break; sleep 0.05; done
	[ -s "$pf" ] || fail "scripted server did not start"
	PORT=$(cat "$pf")
	URL=http://127.0.0.1:$PORT
}

stop_servers() {
	for p in $SERVER_PIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
	SERVER_PIDS=""
}

# py 'python code' : runs with the work folder as cwd; assertions raise.
py() { (cd "$WORK" && python3 -c "$1") || fail "check failed: $1"; }

MODELS_SECTION='on GET /v1/models
header Content-Type: application/json
body {"object":"list","data":[{"id":"scripted","object":"model"}]}'
