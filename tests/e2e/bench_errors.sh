#!/usr/bin/env bash
# Each failure gets its reason and the run goes on: HTTP 500 with the
# server's message, an error event, a reset, a close mid-stream, malformed
# JSON, a timeout; a 1 MiB single SSE line is fine. Exit 1 unless
# --max-error-rate allows the failures. Refused connections; unreachable
# model discovery exits 3. A line over 16 MiB is a clear per-request error.
. "$(dirname "$0")/lib/bench_common.bash"

OKSTREAM='header Content-Type: text/event-stream
send data: {"choices":[{"index":0,"text":"ok","finish_reason":"length"}]}\n\n
send data: [DONE]\n\n'
cat > "$WORK/s.script" <<EOS
$MODELS_SECTION
on POST /v1/completions
status 500 Internal Server Error
header Content-Type: application/json
body {"error":{"message":"engine exploded","code":500}}
on POST /v1/completions
header Content-Type: text/event-stream
send data: {"choices":[{"index":0,"text":"a"}]}\n\n
send data: {"error":{"message":"KV cache full"}}\n\n
on POST /v1/completions
header Content-Type: text/event-stream
send data: {"choices":[{"index":0,"text":"a"}]}\n\n
sleep 50
reset
on POST /v1/completions
header Content-Type: text/event-stream
send data: {"choices":[{"index":0,"text":"a"}]}\n\n
sleep 50
close
on POST /v1/completions
header Content-Type: text/event-stream
send data: {"choices":[{"index":0,"text":"a"\n\n
send data: [DONE]\n\n
on POST /v1/completions
header Content-Type: text/event-stream
send data: {"choices":[{"index":0,"text":"a"}]}\n\n
hang
on POST /v1/completions
header Content-Type: text/event-stream
send data: {"choices":[{"index":0,"text":"
fill 1048576 q
send ","finish_reason":"length"}]}\n\n
send data: [DONE]\n\n
on POST /v1/completions
$OKSTREAM
on POST /v1/completions
header Content-Type: text/event-stream
send data: {"choices":[{"index":0,"text":"
fill 17000000 z
send "}]}\n\n
send data: [DONE]\n\n
on POST /v1/completions
$OKSTREAM
EOS
start_server "$WORK/s.script"
"$KVBENCH" bench --url "$URL" -n 10 -c 1 --request-timeout 2 -o "$WORK/out" >"$WORK/stdout" 2>"$WORK/stderr"
rc=$?
[ $rc -eq 1 ] || { cat "$WORK/stderr"; fail "expected exit 1 with failures, got $rc"; }
grep -q "7 of 10 requests failed" "$WORK/stderr" || fail "no failure line: $(cat "$WORK/stderr")"
py '
import csv, json
rows = sorted(csv.DictReader(open("out/requests.csv")), key=lambda r: int(r["request_id"]))
st = [r["status"] for r in rows]
assert st == ["http", "server_error", "reset", "reset", "malformed", "timeout", "ok", "ok",
              "malformed", "ok"], st
assert rows[8]["error"] == "sse line longer than 16 MiB", rows[8]["error"]
assert rows[0]["http_status"] == "500" and "engine exploded" in rows[0]["error"], rows[0]
assert rows[1]["error"] == "KV cache full", rows[1]["error"]
assert "malformed json" in rows[4]["error"], rows[4]["error"]
assert 0.9 < float(rows[5]["e2e"] or 0) + 1 and rows[5]["TTFT"] == ""
g = json.load(open("out/summary.json"))["groups"][0]
assert g["completed"] == 3 and g["failed"] == 7, g
assert g["failed_by_reason"] == {"http": 1, "server_error": 1, "reset": 2, "malformed": 2, "timeout": 1}, g["failed_by_reason"]
outs = {json.loads(l)["request_id"]: json.loads(l) for l in open("out/outputs.jsonl")}
assert len(outs[6]["text"]) == 1048576 and outs[6]["status"] == "ok"
'
stop_servers

# the same failures are allowed by --max-error-rate
start_server "$WORK/s.script"
"$KVBENCH" bench --url "$URL" -n 10 -c 1 --request-timeout 2 --max-error-rate 0.7 >/dev/null 2>&1 ||
	fail "expected exit 0 with --max-error-rate 0.7"
stop_servers

# refused: counted failures, exit 1; unreachable discovery: exit 3
"$KVBENCH" bench --url "http://127.0.0.1:$PORT" --model m -n 3 >/dev/null 2>"$WORK/err"
rc=$?
[ $rc -eq 1 ] || fail "refused: expected exit 1, got $rc"
"$KVBENCH" bench --url "http://127.0.0.1:$PORT" -n 3 >/dev/null 2>"$WORK/err"
rc=$?
[ $rc -eq 3 ] || fail "unreachable: expected exit 3, got $rc"
grep -q "cannot list the models" "$WORK/err" || fail "no discovery error line"
echo ok
