#!/usr/bin/env bash
# key isolation (issue 9) and client aborts against kvserve:
# - key-probe by salt through the KV connector: no cross hits; with the
#   fault drop-key:salt the salted requests hit each other's chunks and
#   `kvbench check --key-isolation` fails naming the key (usage and counters);
# - key-probe by model over an adapter: clean, then drop-key:adapter fails;
# - --abort-every: the aborted requests are recorded "aborted", the run
#   exits 0, and a cold/warm check of the run pairs the victims only.
E2E_PREFIX=kvb_probe
. "$(dirname "$0")/lib/kvserve_procs.bash"

# probe NAME ARGS...: a key-probe run between two /metrics snapshots, then
# the check; its exit status in $RC, its output in $T/NAME.check
probe() {
	local name=$1
	shift
	curl -s --max-time 10 "$URL/metrics" > "$T/$name.before" || fail "$name: /metrics"
	timeout 120 "$KVB" bench -u "$URL" --no-progress -w key-probe -o "$T/$name" "$@" \
		> "$T/$name.log" 2>&1 || fail "$name: bench failed: $(tail -3 "$T/$name.log")"
	curl -s --max-time 10 "$URL/metrics" > "$T/$name.after" || fail "$name: /metrics"
	"$KVB" check --key-isolation "$T/$name/outputs.jsonl" --metrics-before "$T/$name.before" \
		--metrics-after "$T/$name.after" > "$T/$name.check" 2>&1
	RC=$?
}

CONN="--no-prefix-cache --kv-cpu-bytes 64MiB --kv-chunk-size 16"

serve salt $CONN
probe salt --set num_pairs=3 --set input_len=64
[ $RC = 0 ] || fail "salt, no fault: $(cat "$T/salt.check")"
grep -q '"cached_tokens":0' "$T/salt/outputs.jsonl" || fail "salt: no cached_tokens in outputs.jsonl"
ok "key-probe salt through the connector: $(cat "$T/salt.check")"
unserve

serve salt-fault $CONN --kv-fault drop-key:salt
probe saltf --set num_pairs=3 --set input_len=64
[ $RC = 1 ] || fail "drop-key:salt: exit $RC, want 1: $(cat "$T/saltf.check")"
grep -q 'FAIL key_isolation.*cross hits: probe0/tenant-b' "$T/saltf.check" ||
	fail "drop-key:salt: $(cat "$T/saltf.check")"
ok "drop-key:salt caught: $(cat "$T/saltf.check")"
# the counters alone catch it too (records without usage)
sed 's/,"cached_tokens":[0-9]*//' "$T/saltf/outputs.jsonl" > "$T/nousage.jsonl"
"$KVB" check --key-isolation "$T/nousage.jsonl" --metrics-before "$T/saltf.before" \
	--metrics-after "$T/saltf.after" > "$T/nousage.check" 2>&1
[ $? = 1 ] && grep -q 'external counter' "$T/nousage.check" ||
	fail "counters only: $(cat "$T/nousage.check")"
ok "counters alone: $(cat "$T/nousage.check")"
unserve

serve model $CONN --adapter lora-a=7
probe model --set dimension=model --set values=kv-tiny,lora-a --set num_pairs=2 --set input_len=48
[ $RC = 0 ] || fail "model, no fault: $(cat "$T/model.check")"
ok "key-probe model/adapter: $(cat "$T/model.check")"
unserve
serve model-fault $CONN --adapter lora-a=7 --kv-fault drop-key:adapter
probe modelf --set dimension=model --set values=kv-tiny,lora-a --set num_pairs=2 --set input_len=48
[ $RC = 1 ] || fail "drop-key:adapter: exit $RC: $(cat "$T/modelf.check")"
ok "drop-key:adapter caught: $(cat "$T/modelf.check")"
unserve

# no probe records: not measured, exit 1
printf '{"key":"synthetic/0","cached_tokens":3}\n' > "$T/none.jsonl"
"$KVB" check --key-isolation "$T/none.jsonl" > "$T/none.check" 2>&1
[ $? = 1 ] && grep -q 'not measured' "$T/none.check" || fail "no probes: $(cat "$T/none.check")"
ok "no probe records: not measured"
"$KVB" check --key-isolation "$T/none.jsonl" extra > /dev/null 2>&1
[ $? = 2 ] || fail "--key-isolation with a second file must be a usage error"

# client aborts: every 3rd request closed after its first token
serve abort
timeout 120 "$KVB" bench -u "$URL" --no-progress -w ttft-sweep --set lengths=64,96 \
	--set trials=3 --set output_len=24 --set warm_repeats=1 -c 2 --abort-every 3 \
	-o "$T/ab" > "$T/ab.log" 2>&1 || fail "abort run: exit $? $(tail -3 "$T/ab.log")"
NA=$(grep -c '"status":"aborted"' "$T/ab/outputs.jsonl")
[ "$NA" -ge 1 ] || fail "no aborted records"
grep -q "aborted by the client: $NA requests" "$T/ab.log" || fail "abort count not printed: $(tail -3 "$T/ab.log")"
"$KVB" check "$T/ab/outputs.jsonl" "$T/ab/outputs.jsonl" --base-pass 0 --cand-pass 1 \
	--tolerance fp32 > "$T/ab.check" 2>&1 || fail "victims: $(cat "$T/ab.check")"
grep -q "aborted by the client (left out)" "$T/ab.check" || fail "completeness: $(cat "$T/ab.check")"
ok "aborts: $NA of 12 aborted, victims identical: $(grep completeness "$T/ab.check")"
# the flags are checked
"$KVB" bench -u "$URL" --abort-after 0s > /dev/null 2>&1; [ $? = 2 ] || fail "--abort-after 0s"
"$KVB" bench -u "$URL" --abort-after-tokens 2 > /dev/null 2>&1; [ $? = 2 ] || fail "--abort-after-tokens alone"
unserve
echo "PASS"
