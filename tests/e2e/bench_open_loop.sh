#!/usr/bin/env bash
# Open loop: the achieved rate meets the target, dispatch lag stays small,
# --duration stops sending; a concurrency cap shows up as dispatch lag.
. "$(dirname "$0")/lib/bench_common.bash"

cat > "$WORK/fast.script" <<EOS
$MODELS_SECTION
on POST /v1/completions
header Content-Type: text/event-stream
send data: {"choices":[{"index":0,"text":"x","finish_reason":"length"}]}\n\n
send data: [DONE]\n\n
EOS
start_server "$WORK/fast.script"
"$KVBENCH" bench --url "$URL" --rate 100 --arrival constant -n 100 -o "$WORK/c" >/dev/null 2>&1 ||
	fail "constant rate run failed"
"$KVBENCH" bench --url "$URL" --rate 50 --arrival poisson --duration 1 --seed 3 -o "$WORK/p" >/dev/null 2>&1 ||
	fail "poisson duration run failed"
"$KVBENCH" bench --url "$URL" --rate 100 --arrival gamma --burstiness 0.5 -n 50 -o "$WORK/g" >/dev/null 2>&1 ||
	fail "gamma run failed"
py '
import json, csv
g = json.load(open("c/summary.json"))["groups"][0]
assert g["completed"] == 100, g
assert abs(g["achieved_rate"] - 100) / 100 < 0.03, g["achieved_rate"]
assert g["target_rate"] == 100
assert g["dispatch_lag"]["p50"] < 0.002, g["dispatch_lag"]
rows = list(csv.DictReader(open("c/requests.csv")))
sched = sorted(float(r["sched_s"]) for r in rows)
# an absolute timeline: request i is scheduled at i / rate
assert all(abs(s - i / 100) < 1e-4 for i, s in enumerate(sched)), sched[:5]
p = json.load(open("p/summary.json"))["groups"][0]
assert 25 <= p["completed"] <= 80, p["completed"]
rows = list(csv.DictReader(open("p/requests.csv")))
assert max(float(r["sched_s"]) for r in rows) < 1.0
'
stop_servers

# a slow server and a cap of 1 in flight at 20/s: requests queue, lag grows,
# and e2e_sched (from the schedule) exceeds e2e (from the send)
cat > "$WORK/slow.script" <<EOS
$MODELS_SECTION
on POST /v1/completions
header Content-Type: text/event-stream
sleep 100
send data: {"choices":[{"index":0,"text":"x","finish_reason":"length"}]}\n\n
send data: [DONE]\n\n
EOS
start_server "$WORK/slow.script"
"$KVBENCH" bench --url "$URL" --rate 20 --arrival constant -c 1 -n 6 -o "$WORK/s" >/dev/null 2>&1 ||
	fail "capped run failed"
py '
import json
g = json.load(open("s/summary.json"))["groups"][0]
assert g["dispatch_lag"]["max"] > 0.2, g["dispatch_lag"]
assert g["e2e_sched"]["max"] > g["e2e"]["max"] + 0.2, (g["e2e_sched"], g["e2e"])
'
echo ok
