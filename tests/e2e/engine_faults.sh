#!/usr/bin/env bash
# Engine-level faults end to end (docs/offload.md "Fault injection"): for each of
# zero-tail with echo, rope-shift, full-hit, race and uaf-abort, kvserve runs a
# workload with the fault on, `kvbench check` compares it with an engine without a
# connector and must exit 1; the same workload on a fault-free connector (and,
# for race, the fault on but requests far apart) must exit 0.
# kvserve binds 127.0.0.1 only; every process started here is killed on exit.
# ENGINE_FAULTS_OUT=DIR keeps every run's outputs, /metrics and check.txt in DIR.
E2E_PREFIX=engine_faults
E2E_KEEP_DIR=${ENGINE_FAULTS_OUT:-}
E2E_SERVE_ARGS=--no-prefix-cache   # every engine: hits come from the connector only
. "$(dirname "$0")/lib/kvserve_procs.bash"
CONN=(--kv-chunk-size 48 --kv-cpu-bytes 64MiB)

# bench OUT ARGS...: kvbench bench against URL, /metrics before and after.
# --no-claim-reuse: the reference engine has no cache; the claim is made by
# `kvbench check --claims-reuse` below, on the snapshots taken here.
bench() {
	local d=$T/$1
	shift
	mkdir -p "$d"
	curl -s --max-time 30 "$URL/metrics" >"$d/m0" || fail "metrics $URL"
	timeout 120 "$KVB" bench -u "$URL" --no-progress --no-claim-reuse --return-token-ids -o "$d" "$@" \
		>"$d/bench.log" 2>&1 || fail "bench $*: $(tail -5 "$d/bench.log")"
	curl -s --max-time 30 "$URL/metrics" >"$d/m1" || fail "metrics $URL"
}

# injected OUT TYPE: kvserve:kv_faults_injected_total{type=TYPE} after the run OUT
injected() {
	sed -n "s/^kvserve:kv_faults_injected_total{type=\"$2\"} //p" "$T/$1/m1"
}

# check NAME WANT_RC REF CAND [kvbench check args...]: kvbench check must exit WANT_RC
check() {
	local name=$1 want=$2 ref=$T/$3 cand=$T/$4 rc
	shift 4
	"$KVB" check "$ref/outputs.jsonl" "$cand/outputs.jsonl" --tolerance fp32 \
		--metrics-before "$cand/m0" --metrics-after "$cand/m1" "$@" >"$cand/check.txt" 2>&1
	rc=$?
	[ "$rc" -eq "$want" ] || fail "$name: kvbench check exited $rc, want $want:
$(cat "$cand/check.txt")"
	echo "ok   $name: kvbench check exit $rc $(grep -o '^FAIL [a-z_]*' "$cand/check.txt" | cut -c6- | paste -sd+ -)"
}

# ---- 1-3: cold + warm per length, prompts around the chunk (48) and block (16) ----
SWEEP=(-w ttft-sweep --set lengths=47,48,49,97,120 --set trials=1 --set output_len=8
	--set logprobs=5 --no-stream)
ECHO=("${SWEEP[@]}" --set echo=true)
serve ref
bench ref-echo "${ECHO[@]}"
bench ref-noecho "${SWEEP[@]}"
unserve
WARM=(--base-pass 0 --cand-pass 1 --claims-reuse)

serve clean "${CONN[@]}"
bench clean-echo "${ECHO[@]}"
unserve
check "no fault, echo" 0 ref-echo clean-echo "${WARM[@]}"

# 1. zero-tail with echo: the recompute for the first prompt logprob used to
# rewrite the zeroed row
serve zt "${CONN[@]}" --kv-fault zero-tail
bench zt-echo "${ECHO[@]}"
unserve
check "zero-tail, echo" 1 ref-echo zt-echo "${WARM[@]}"
grep -q '^FAIL prompt_logprobs' "$T/zt-echo/check.txt" || fail "zero-tail: prompt_logprobs not failed"

# 2. rope-shift
for arg in rope-shift rope-shift:-3; do
	serve rs "${CONN[@]}" --kv-fault "$arg"
	bench "rs$arg" "${ECHO[@]}"
	unserve
	check "$arg, echo" 1 ref-echo "rs$arg" "${WARM[@]}"
	[ "$(injected "rs$arg" rope-shift)" -ge 1 ] || fail "$arg not counted"
done

# 3. full-hit: the 47-byte prompt (48 tokens with BOS) is all cached in the warm pass
for wl in echo noecho; do
	serve fh "${CONN[@]}" --kv-fault full-hit
	if [ $wl = echo ]; then bench fh-$wl "${ECHO[@]}"; else bench fh-$wl "${SWEEP[@]}"; fi
	unserve
	check "full-hit, $wl" 1 ref-$wl fh-$wl "${WARM[@]}"
	grep -q '^FAIL identity' "$T/fh-$wl/check.txt" || fail "full-hit: identity not failed"
	[ "$(injected fh-$wl full-hit)" -eq 1 ] || fail "full-hit: want one full hit (len 47)"
done

# ---- 4. race: requests sharing a 144-token prefix ----
SYN=(--input-len 200 --shared-prefix-len 144 --output-len 8 --logprobs 5 --seed 3 --no-stream)
serve ref
bench race-ref "${SYN[@]}" -n 8
unserve
# 8 requests 10 ms apart: later ones load the prefix inside the 200 ms window
serve race "${CONN[@]}" --kv-fault race
bench race-fast "${SYN[@]}" -n 8 -r 100 --arrival constant
unserve
check "race, 10 ms apart" 1 race-ref race-fast --claims-reuse
[ "$(injected race-fast race)" -ge 1 ] || fail "race: no load inside the window"
# the same fault and arrivals, but the shared prefix was stored by one request 1 s
# before (far beyond the window): every load reads landed bytes
serve race "${CONN[@]}" --kv-fault race
bench race-prime "${SYN[@]}" -n 1
sleep 1
bench race-late "${SYN[@]}" -n 8 -r 100 --arrival constant
unserve
check "race, prefix stored 1 s before" 0 race-ref race-late --claims-reuse
[ "$(injected race-late race)" -eq 0 ] || fail "race fired on loads after the window"
serve clean "${CONN[@]}"
bench race-clean "${SYN[@]}" -n 8 -r 100 --arrival constant
unserve
check "no fault, 10 ms apart" 0 race-ref race-clean --claims-reuse

# ---- 5. uaf-abort: streams aborted after 2 tokens, then the same prompts again ----
python3 - "$T/victims.jsonl" "$T/others.txt" <<'PY'
import json, sys
with open(sys.argv[1], "w") as v, open(sys.argv[2], "w") as o:
    for i in range(4):
        p = "victim %d: " % i + " ".join("w%d%d" % (i, k) for k in range(40))
        q = "other %d: " % i + " ".join("q%d%d" % (k, i) for k in range(40))
        v.write(json.dumps({"prompt": p[:120], "reference": ""}) + "\n")
        o.write(q[:120] + "\n")
PY
GEN=(-w generation --set path="$T/victims.jsonl" --set passes=1 --set max_tokens=8
	--set logprobs=5 --no-stream)
serve ref
bench uaf-ref "${GEN[@]}"
unserve

# abort_phase: for each victim prompt, a stream closed after 2 tokens, a pause
# (kvserve notices the close and frees the blocks), then another prompt of the
# same length runs to completion in the freed blocks
abort_phase() {
	python3 - "${URL#http://}" "$T/victims.jsonl" "$T/others.txt" <<'PY' || fail "abort phase"
import http.client, json, socket, sys, time
host, port = sys.argv[1].split(":")
victims = [json.loads(l)["prompt"] for l in open(sys.argv[2])]
others = [l.rstrip("\n") for l in open(sys.argv[3])]
for p, q in zip(victims, others):
    body = json.dumps({"model": "kv-tiny", "prompt": p, "max_tokens": 1500, "stream": True,
                       "ignore_eos": True})
    s = socket.create_connection((host, int(port)), timeout=30)
    s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n%s" % (len(body), body)).encode())
    buf = b""
    for _ in range(1000):
        if buf.count(b"data: ") >= 2:
            break
        got = s.recv(4096)
        if not got:
            break
        buf += got
    s.close()
    assert buf.count(b"data: ") >= 2, buf[:200]
    time.sleep(0.5)
    c = http.client.HTTPConnection(host, int(port), timeout=60)
    c.request("POST", "/v1/completions", json.dumps({"model": "kv-tiny", "prompt": q,
              "max_tokens": 4}), {"Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200, r.read()[:200]
    r.read()
    c.close()
PY
	local ab
	ab=$(curl -s --max-time 30 "$URL/metrics" | sed -n 's/^vllm:request_success_total{.*finished_reason="abort"} //p')
	[ "$ab" = 4 ] || fail "want 4 aborted requests, got '$ab'"
}
serve clean "${CONN[@]}"
abort_phase
bench uaf-clean "${GEN[@]}"
unserve
check "no fault, 4 aborts" 0 uaf-ref uaf-clean --claims-reuse
serve uaf "${CONN[@]}" --kv-fault uaf-abort
abort_phase
bench uaf "${GEN[@]}"
unserve
check "uaf-abort, 4 aborts" 1 uaf-ref uaf --claims-reuse
[ "$(injected uaf uaf-abort)" -ge 1 ] || fail "uaf-abort not counted"

# bad arguments: one error line, exit 2
for bad in rope-shift:0 race:0 full-hit:2 uaf-abort:x; do
	"$KVS" serve --port 0 --kv-fault "$bad" >/dev/null 2>"$T/err" && fail "--kv-fault $bad accepted"
	[ "$(grep -c . "$T/err")" -eq 1 ] && grep -q -- "--kv-fault: " "$T/err" ||
		fail "--kv-fault $bad: $(cat "$T/err")"
done
"$KVS" serve --kv-fault list | grep -q '^| uaf-abort | E |' || fail "--kv-fault list"
echo "all checks passed"
