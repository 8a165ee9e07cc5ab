#!/usr/bin/env bash
# kvbench bench options: help, usage errors (exit 2), workload keys, prompts
# of exact length with a shared prefix, token-id prompts, the API key sent
# but never printed or written.
. "$(dirname "$0")/lib/bench_common.bash"

"$KVBENCH" bench --help >"$WORK/help" || fail "--help exit $?"
grep -q -- "--concurrency" "$WORK/help" || fail "help lacks --concurrency"
grep -q -- "--max-error-rate" "$WORK/help" || fail "help lacks --max-error-rate"
"$KVBENCH" bench --workload synthetic --help >"$WORK/whelp" || fail "workload help exit $?"
grep -q "shared_prefix_len" "$WORK/whelp" || fail "workload help lacks keys"
expect2() { "$KVBENCH" bench "$@" >/dev/null 2>"$WORK/e"; rc=$?; [ $rc -eq 2 ] || fail "$*: exit $rc, want 2"; [ "$(wc -l <"$WORK/e")" -eq 1 ] || fail "$*: want one error line: $(cat "$WORK/e")"; }
expect2 --concurrency x
expect2 --no-such-flag
expect2 --endpoint grpc
expect2 --workload nope
expect2 --set nokey
expect2 --set not_a_key=1 --model m
expect2 --set prompt_format=bytes --model m
expect2 --shared-prefix-len 200 --input-len 100 --model m
expect2 --api-key-env KVB_SURELY_UNSET_VAR --model m

cat > "$WORK/s.script" <<EOS
$MODELS_SECTION
on POST /v1/completions
header Content-Type: text/event-stream
send data: {"choices":[{"index":0,"text":"x","finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}\n\n
send data: [DONE]\n\n
EOS
start_server "$WORK/s.script"
export KVB_TEST_SECRET=sekrit-7f3a9c
"$KVBENCH" bench --url "$URL" -n 3 -c 1 --input-len 64 --shared-prefix-len 40 --seed 5 \
	--api-key-env KVB_TEST_SECRET -o "$WORK/out" >"$WORK/stdout" 2>"$WORK/stderr" ||
	fail "kvbench exit $?: $(cat "$WORK/stderr")"
grep -q "Authorization: Bearer sekrit-7f3a9c" "$WORK/server.log" || fail "api key not sent"
if grep -rq "sekrit-7f3a9c" "$WORK/out" "$WORK/stdout" "$WORK/stderr"; then fail "api key leaked"; fi
py '
import json
bodies = [json.loads(l[l.index("{"):]) for l in open("server.log") if l.startswith("POST")]
assert len(bodies) == 3
p = [b["prompt"] for b in bodies]
assert all(len(x) == 64 for x in p), [len(x) for x in p]
assert p[0][:40] == p[1][:40] == p[2][:40] and len(set(p)) == 3
b = bodies[0]
assert b["model"] == "scripted" and b["stream"] and b["stream_options"]["include_usage"]
assert b["max_tokens"] == 128 and b["ignore_eos"] is True
'
: >"$WORK/server.log"
"$KVBENCH" bench --url "$URL" --model other -n 2 --set prompt_format=ids --set input_len=10 \
	--set shared_prefix_len=4 --logprobs 2 --no-ignore-eos >/dev/null 2>&1 || fail "ids run failed"
py '
import json
bodies = [json.loads(l[l.index("{"):]) for l in open("server.log") if l.startswith("POST")]
p = [b["prompt"] for b in bodies]
assert all(isinstance(x, list) and len(x) == 10 for x in p), p
assert p[0][:4] == p[1][:4] and p[0] != p[1]
assert bodies[0]["model"] == "other" and bodies[0]["logprobs"] == 2 and "ignore_eos" not in bodies[0]
'
stop_servers

# not streamed: a whole JSON body
cat > "$WORK/body.script" <<EOS
$MODELS_SECTION
on POST /v1/chat/completions
header Content-Type: application/json
body {"choices":[{"index":0,"message":{"role":"assistant","content":"fine"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":1}}
EOS
start_server "$WORK/body.script"
"$KVBENCH" bench --url "$URL" --endpoint chat --no-stream -n 2 -o "$WORK/ns" >/dev/null 2>&1 || fail "--no-stream run failed"
py '
import json, csv
rows = list(csv.DictReader(open("ns/requests.csv")))
assert [r["status"] for r in rows] == ["ok", "ok"], rows
assert all(r["completion_tokens"] == "1" and r["prompt_tokens"] == "9" for r in rows)
assert json.loads(open("ns/outputs.jsonl").readline())["text"] == "fine"
'
grep -q '"stream":false' "$WORK/server.log" || fail "stream:false not sent"
# a server that answers a stream request with one JSON body is read as a body
"$KVBENCH" bench --url "$URL" --endpoint chat -n 1 -o "$WORK/ns2" >/dev/null 2>&1 || fail "json answer to a stream request failed"
stop_servers

# SIGINT: in-flight requests are cut, the summary says interrupted, exit 3
cat > "$WORK/hang.script" <<EOS
$MODELS_SECTION
on POST /v1/completions
header Content-Type: text/event-stream
send data: {"choices":[{"index":0,"text":"a"}]}\n\n
hang
EOS
start_server "$WORK/hang.script"
"$KVBENCH" bench --url "$URL" -n 5 -c 2 -o "$WORK/int" >/dev/null 2>"$WORK/int.err" &
KPID=$!
sleep 0.5
kill -INT $KPID
wait $KPID
rc=$?
[ $rc -eq 3 ] || fail "interrupted: exit $rc, want 3"
py '
import json
s = json.load(open("int/summary.json"))
assert s["status"] == "interrupted", s["status"]
'
echo ok
