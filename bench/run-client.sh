#!/usr/bin/env bash
# Client overhead of kvbench against bench/kvb_fast_server (loopback):
#   CPU time per request and per streamed token, the highest open-loop rate
#   one core sustains with p99 dispatch lag under 1 ms, and memory per open
#   stream at 1,000 and 10,000 concurrent streams.
# usage: bench/run-client.sh [BUILD_DIR]   (build first: scripts/build.sh)
# The client is pinned to one core (taskset), the server to another when the
# machine has one. Prints the figures; docs/PERFORMANCE.md records them.
set -eu
B=$(cd "${1:-build}" && pwd)
KVBENCH=$B/kvbench
SERVER=$B/bench/kvb_fast_server
[ -x "$SERVER" ] || { echo "no $SERVER: build first" >&2; exit 2; }
ulimit -n "$(ulimit -Hn)"
W=$(mktemp -d)
SPID=""
trap '[ -n "$SPID" ] && kill $SPID 2>/dev/null; wait 2>/dev/null; rm -rf "$W"' EXIT
NCPU=$(nproc)
CL="taskset -c 0"
SV=""
[ "$NCPU" -ge 2 ] && SV="taskset -c 1"

serve() { # serve TOKENS HOLD_MS
	[ -n "$SPID" ] && { kill $SPID; wait $SPID 2>/dev/null || true; }
	rm -f "$W/port"
	$SV "$SERVER" --tokens "$1" --hold-ms "$2" --port-file "$W/port" --max-seconds 900 &
	SPID=$!
	for _ in $(seq 100); do [ -s "$W/port" ] && break; sleep 0.05; done
	URL=http://127.0.0.1:$(cat "$W/port")
}
# run NAME ARGS...: kvbench under /usr/bin/time; sets CPU (s) and RSS (KiB)
run() {
	local name=$1; shift
	/usr/bin/time -f "%U %S %M" -o "$W/$name.time" $CL "$KVBENCH" bench --url "$URL" --model fast \
		--input-len 16 --no-progress -o "$W/$name" "$@" >/dev/null 2>"$W/$name.err" || true
	read -r u s m <"$W/$name.time" || true
	CPU=$(calc "$u + $s"); RSS=$m
}
calc() { python3 -c "print($1)"; }
j() { python3 -c "import json,sys; g=json.load(open('$W/$1/summary.json'))['groups'][0]; print($2)"; }

echo "machine: $NCPU cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

serve 1 0
run req -n 20000 -c 64 --output-len 1
N=$(j req 'g["completed"]')
printf "cpu per request (1-token streams, c=64): %.1f us  (%d requests, %.2f s cpu)\n" \
	"$(calc "$CPU / $N * 1000000")" "$N" "$CPU"
REQCPU=$(calc "$CPU / $N")

serve 256 0
run tok -n 2000 -c 64 --output-len 256
N=$(j tok 'g["completed"]')
T=$(calc "$N * 256")
printf "cpu per streamed token (256-token streams): %.2f us  -> %.0f tokens/s per core\n" \
	"$(calc "($CPU - $N * $REQCPU) / $T * 1000000")" "$(calc "$T / $CPU")"

serve 1 0
best=0
for R in 1000 2000 3000 5000 7000 10000 14000; do
	run rate$R --rate "$R" --arrival constant -n $((R * 2)) --output-len 1
	p99=$(j rate$R 'g["dispatch_lag"]["p99"]')
	ach=$(j rate$R 'g["achieved_rate"]')
	ok=$(python3 -c "print(int($p99 < 0.001 and $ach > 0.99 * $R))")
	printf "open loop %5d req/s: achieved %.0f, dispatch lag p99 %.3f ms, cpu %.2f s -> %s\n" \
		"$R" "$ach" "$(calc "$p99 * 1000")" "$CPU" "$([ "$ok" = 1 ] && echo ok || echo MISSED)"
	[ "$ok" = 1 ] && best=$R
	[ "$ok" = 1 ] || break
done
echo "highest rate with p99 dispatch lag < 1 ms on one core: $best req/s"

serve 4 4000
run base -n 10 -c 10 --output-len 4
BASE=$RSS
for C in 1000 10000; do
	run mem$C -n "$C" -c "$C" --output-len 4 --connect-timeout 30
	done_n=$(j mem$C 'g["completed"]')
	printf "memory at %5d open streams: peak RSS %d KiB, %.1f KiB per stream (completed %d)\n" \
		"$C" "$RSS" "$(calc "($RSS - $BASE) / ($C - 10)")" "$done_n"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
