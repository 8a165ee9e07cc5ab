# Sourced by e2e tests that start kvserve processes of their own and drive
# them with kvbench: a temp folder T, every started kvserve killed on exit,
# fail/ok, serve/unserve. Loopback only (kvserve binds 127.0.0.1).
#   E2E_PREFIX    name of the temp folder (default e2e)
#   E2E_KEEP_DIR  when set by the caller: T is copied there before removal
#   E2E_SERVE_ARGS  kvserve options every serve adds (word-split)
set -u
: "${KV_BUILD:?KV_BUILD must point at the build folder}"
KVS=$KV_BUILD/kvserve
KVB=$KV_BUILD/kvbench
T=$(mktemp -d "${TMPDIR:-/tmp}/${E2E_PREFIX:-e2e}.XXXXXX")
PIDS=""
PID=""
NSERVE=0
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	if [ -n "${E2E_KEEP_DIR:-}" ]; then
		mkdir -p "$E2E_KEEP_DIR" && cp -r "$T"/. "$E2E_KEEP_DIR"/
	fi
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok   $*"; }

# serve NAME ARGS...: kvserve kv-tiny on a free port with ARGS; sets PID, URL.
# Its log is $T/NAME.N.log (N counts the starts).
serve() {
	local name=$1 log i
	NSERVE=$((NSERVE + 1))
	log=$T/$name.$NSERVE.log
	shift
	# shellcheck disable=SC2086
	"$KVS" --model kv-tiny --port 0 --threads 1 ${E2E_SERVE_ARGS:-} "$@" >"$log" 2>&1 &
	PID=$!
	PIDS="$PIDS $PID"
	URL=""
	for ((i = 0; i < 200; i++)); do
		URL=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" 2>/dev/null | head -1)
		[ -n "$URL" ] && break
		kill -0 "$PID" 2>/dev/null || fail "kvserve $name died: $(cat "$log")"
		sleep 0.05
	done
	[ -n "$URL" ] || fail "kvserve $name did not start: $(cat "$log")"
}
# unserve: stops the last kvserve started.
unserve() {
	kill "$PID" 2>/dev/null
	wait "$PID" 2>/dev/null
	PID=""
}
