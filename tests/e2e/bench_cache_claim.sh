#!/usr/bin/env bash
# kvbench bench: warm passes claim cache reuse by default (cache_path and
# silent_miss from /metrics snapshots before the first warm request and
# after the run, usage cached_tokens as fallback):
# - kvserve with its prefix cache, and with the KV connector: pass;
# - kvserve --no-prefix-cache without a connector: cache_path fails with
#   "cache path never exercised", exit 1, summary.json says so;
# - the same with --no-claim-reuse: pass (a baseline engine);
# - a server without /metrics (404): the verdict rests on usage;
# - a workload without warm passes: no cache checks.
E2E_PREFIX=kvb_claim
. "$(dirname "$0")/lib/kvserve_procs.bash"
SRV=$KV_BUILD/tests/kvb_script_server

# sweep NAME ARGS...: a small ttft-sweep (cold + warm); exit status in $RC
sweep() {
	local name=$1
	shift
	timeout 120 "$KVB" bench -u "$URL" --no-progress -w ttft-sweep --set lengths=64,96 \
		--set trials=2 --set output_len=2 -o "$T/$name" "$@" > "$T/$name.out" 2>&1
	RC=$?
}
check_of() { grep "^[A-Z]* $2:" "$T/$1.out"; }

serve apc
sweep apc
[ $RC = 0 ] || fail "prefix cache: exit $RC: $(tail -4 "$T/apc.out")"
check_of apc cache_path | grep -q '^PASS' || fail "prefix cache: $(check_of apc cache_path)"
ok "prefix cache: $(check_of apc cache_path)"
unserve

serve conn --no-prefix-cache --kv-cpu-bytes 64MiB --kv-chunk-size 16
sweep conn
[ $RC = 0 ] || fail "connector: exit $RC: $(tail -4 "$T/conn.out")"
check_of conn cache_path | grep -q -E '^PASS.*hits of .* in (lmcache|external) counters' ||
	fail "connector: $(check_of conn cache_path)"
check_of conn silent_miss | grep -q '^PASS' || fail "connector: $(check_of conn silent_miss)"
ok "connector: $(check_of conn cache_path)"
ok "connector: $(check_of conn silent_miss)"
unserve

serve off --no-prefix-cache
sweep off
[ $RC = 1 ] || fail "no cache: exit $RC, want 1: $(tail -4 "$T/off.out")"
check_of off cache_path | grep -q '^FAIL cache_path.*cache path never exercised' ||
	fail "no cache: $(check_of off cache_path)"
python3 - "$T/off/summary.json" <<'PY' || fail "summary.json checks"
import json, sys
s = json.load(open(sys.argv[1]))
c = {x["name"]: x for x in s["checks"]}
assert not c["cache_path"]["passed"] and "never exercised" in c["cache_path"]["reason"], c
assert "silent_miss" in c and s["config"]["claim_reuse"] is True
PY
ok "no cache: exit 1, $(check_of off cache_path)"
sweep base --no-claim-reuse
[ $RC = 0 ] || fail "--no-claim-reuse: exit $RC: $(tail -4 "$T/base.out")"
check_of base cache_path | grep -q '^PASS.*no claim' || fail "--no-claim-reuse: $(check_of base cache_path)"
ok "--no-claim-reuse: $(check_of base cache_path)"
# no warm pass: no claim, no cache checks
timeout 60 "$KVB" bench -u "$URL" --no-progress -n 3 --input-len 32 --output-len 2 \
	-o "$T/syn" > "$T/syn.out" 2>&1 || fail "synthetic: $(tail -3 "$T/syn.out")"
python3 -c "import json,sys; sys.exit('checks' in json.load(open('$T/syn/summary.json')))" ||
	fail "synthetic has cache checks"
ok "no warm pass: no cache checks"
"$KVB" bench -u "$URL" --cache-family nope > /dev/null 2>&1; [ $? = 2 ] || fail "--cache-family nope"
unserve

# a server without /metrics (404): usage decides (cached 5 -> pass, 0 -> fail);
# a /metrics that resets the connection: a warning, and "not measured" unless usage hits
for v in 5:404 0:404 5:reset 0:reset; do
	cached=${v%%:*} how=${v#*:} n=$(echo "$v" | tr : _)
	{
		echo 'on GET /v1/models'
		echo 'header Content-Type: application/json'
		echo 'body {"data":[{"id":"scripted"}]}'
		[ "$how" = reset ] && printf 'on GET /metrics\nreset\n'
		echo 'on POST /v1/completions'
		echo 'header Content-Type: text/event-stream'
		echo "send data: {\"choices\":[{\"index\":0,\"text\":\"ok\",\"finish_reason\":\"length\"}],\"usage\":{\"prompt_tokens\":64,\"completion_tokens\":1,\"prompt_tokens_details\":{\"cached_tokens\":$cached}}}\\n\\n"
		echo 'send data: [DONE]\n\n'
	} > "$T/s$n.script"
	"$SRV" --port-file "$T/port$n" --max-seconds 60 "$T/s$n.script" &
	PIDS="$PIDS $!"
	for _ in $(seq 100); do [ -s "$T/port$n" ] && break; sleep 0.05; done
	URL=http://127.0.0.1:$(cat "$T/port$n")
	sweep m$n
	line=$(check_of m$n cache_path)
	case $v in
	5:404) [ $RC = 0 ] && echo "$line" | grep -q '^PASS.*usage' ;;
	0:404) [ $RC = 1 ] && echo "$line" | grep -q '^FAIL.*never exercised.*no /metrics: http 404' ;;
	5:reset) [ $RC = 0 ] && echo "$line" | grep -q '^PASS.*usage' &&
		grep -q 'warning: bench: /metrics not read' "$T/m$n.out" ;;
	0:reset) [ $RC = 1 ] && echo "$line" | grep -q '^FAIL.*not measured: /metrics not read' ;;
	esac || fail "/metrics $how, usage cached $cached: exit $RC: $line $(grep -i warn "$T/m$n.out")"
	ok "/metrics $how, usage cached $cached: $line"
done
echo PASS
