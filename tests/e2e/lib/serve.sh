# Helpers for kvserve end-to-end tests (sourced). Starts kvserve on a free
# loopback port, kills it on exit, and checks HTTP replies with curl + python3.
set -eu
KV_BUILD=${KV_BUILD:-build}
KVSERVE="$KV_BUILD/kvserve"
TMP=$(mktemp -d)
SERVE_PID=""
FAILS=0

serve_cleanup() {
	if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
		kill -KILL "$SERVE_PID" 2>/dev/null || true
	fi
	jobs -p | xargs -r kill -KILL 2>/dev/null || true
	rm -rf "$TMP"
}
trap serve_cleanup EXIT

# serve_start [kvserve options...]: sets PORT and BASE.
serve_start() {
	"$KVSERVE" serve --port 0 "$@" 2>"$TMP/serve.log" &
	SERVE_PID=$!
	PORT=""
	for _ in $(seq 1 200); do
		PORT=$(sed -n 's/.*on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/serve.log" | head -n1)
		[ -n "$PORT" ] && break
		kill -0 "$SERVE_PID" 2>/dev/null || { cat "$TMP/serve.log"; echo "kvserve died"; exit 1; }
		sleep 0.05
	done
	[ -n "$PORT" ] || { echo "kvserve did not start"; exit 1; }
	BASE="http://127.0.0.1:$PORT"
}

# serve_stop: SIGTERM, must exit 0 within 10 s.
serve_stop() {
	kill -TERM "$SERVE_PID"
	for _ in $(seq 1 200); do
		kill -0 "$SERVE_PID" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$SERVE_PID" 2>/dev/null; then
		echo "FAIL: kvserve did not exit on SIGTERM"; exit 1
	fi
	local rc=0
	wait "$SERVE_PID" || rc=$?
	SERVE_PID=""
	[ "$rc" = 0 ] || { echo "FAIL: kvserve exited with $rc"; cat "$TMP/serve.log"; exit 1; }
}

# req METHOD PATH [BODY]: body in $TMP/out, status in $STATUS.
req() {
	local data=()
	[ $# -ge 3 ] && data=(--data-binary "$3" -H 'Content-Type: application/json')
	STATUS=$(curl -s -o "$TMP/out" -w '%{http_code}' --max-time 60 -X "$1" "${data[@]}" "$BASE$2")
}

# check NAME PYTHON-EXPR: evaluates with j = parsed JSON of $TMP/out, s = raw text, st = status.
check() {
	if python3 - "$TMP/out" "$STATUS" "$2" <<'PY'
import json, sys
s = open(sys.argv[1], encoding="utf-8").read()
st = int(sys.argv[2])
try:
    j = json.loads(s)
except Exception:
    j = None
def sse(text):
    out = []
    for block in text.split("\n\n"):
        if block.startswith("data: "):
            p = block[6:]
            out.append(p if p == "[DONE]" else json.loads(p))
    return out
ok = eval(sys.argv[3])
sys.exit(0 if ok else 1)
PY
	then
		echo "ok   $1"
	else
		echo "FAIL $1 (status $STATUS): $(head -c 600 "$TMP/out")"
		FAILS=$((FAILS + 1))
	fi
}

finish() {
	if [ "$FAILS" -gt 0 ]; then
		echo "$FAILS check(s) failed"; exit 1
	fi
	echo "all checks passed"
}
