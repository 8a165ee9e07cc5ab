#!/usr/bin/env bash
# Detection matrix (issue 9): for each KV connector fault kvserve implements, run a
# cold+warm workload on kvserve with the fault on, compare the warm pass with a
# reference engine's cold pass using `kvbench check`, and record which checks fire.
# Clean rows (no fault, numerics-only changes) must show no alarm.
#
# usage: bench/detect-matrix.sh BUILD_DIR [OUT_DIR]
# env:   DETECT_BENCH_ARGS="--no-stream"  extra kvbench bench flags
#        DETECT_REPS=N      repetitions of each clean row (default 3)
#        DETECT_REDUCED=1   one fault per class + clean rows (CI)
# Writes OUT_DIR/matrix.csv and OUT_DIR/matrix.json; exit 0 when every fault row is
# detected and every clean row passes, 1 otherwise, 2 on usage errors.
# Starts kvserve on 127.0.0.1 only and kills what it started on exit.
set -u

BUILD=${1:-}
OUT=${2:-detect-out}
REPS=${DETECT_REPS:-3}
REDUCED=${DETECT_REDUCED:-0}
if [ -z "$BUILD" ] || [ ! -x "$BUILD/kvserve" ] || [ ! -x "$BUILD/kvbench" ]; then
	echo "usage: bench/detect-matrix.sh BUILD_DIR [OUT_DIR]  (BUILD_DIR holds kvserve and kvbench)" >&2
	exit 2
fi
KVSERVE=$BUILD/kvserve
KVBENCH=$BUILD/kvbench
mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/detect-XXXXXX")
SPID=

cleanup() {
	if [ -n "$SPID" ]; then
		kill "$SPID" 2>/dev/null
		wait "$SPID" 2>/dev/null
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

CHUNK=48         # connector chunk (tokens) != block 16
# prompt lengths (bytes = tokens on kv-tiny) around chunk and block multiples
LENGTHS=47,48,49,97,120
TRIALS=2
WL=(-w ttft-sweep --set lengths=$LENGTHS --set trials=$TRIALS --set output_len=8
    --set logprobs=5 --set echo=true --return-token-ids --no-progress)
# DETECT_BENCH_ARGS: extra kvbench bench flags (e.g. --no-stream), split on spaces.
# --no-claim-reuse: this script judges the cache path itself (kvbench check with
# the /metrics it saves), on the reference engine without any cache as well.
read -r -a XARGS <<<"--no-claim-reuse ${DETECT_BENCH_ARGS:-}"
WL+=("${XARGS[@]}")
WL_ECHO=("${WL[@]}")
# without echo: kvserve recomputes the last loaded row when prompt logprobs are asked
# for, which hides a corrupted tail row (zero-tail), so some rows also run without echo
WL_NOECHO=(-w ttft-sweep --set lengths=$LENGTHS --set trials=$TRIALS --set output_len=8
    --set logprobs=5 --return-token-ids --no-progress "${XARGS[@]}")
BASE=(--port 0 --threads 1 --no-prefix-cache)
CONN=(--kv-chunk-size $CHUNK --kv-cpu-bytes 64MiB)

# start_engine LOG ARGS...: starts kvserve, sets SPID and URL
start_engine() {
	local log=$1 i port
	shift
	"$KVSERVE" serve "$@" 2>"$log" &
	SPID=$!
	for ((i = 0; i < 300; i++)); do
		port=$(grep -o 'on http://127\.0\.0\.1:[0-9]*' "$log" 2>/dev/null | head -1 | sed 's/.*://')
		[ -n "$port" ] && break
		if ! kill -0 "$SPID" 2>/dev/null; then
			echo "detect-matrix: kvserve died: $*" >&2
			cat "$log" >&2
			SPID=
			return 1
		fi
		sleep 0.1
	done
	if [ -z "$port" ]; then
		echo "detect-matrix: kvserve did not start: $*" >&2
		return 1
	fi
	URL=http://127.0.0.1:$port
}

stop_engine() {
	[ -n "$SPID" ] || return 0
	kill "$SPID" 2>/dev/null
	wait "$SPID" 2>/dev/null
	SPID=
}

# bench DIR: runs the workload against URL, /metrics around it
bench() {
	local d=$1
	mkdir -p "$d"
	curl -s --max-time 30 "$URL/metrics" >"$d/m0" || return 1
	"$KVBENCH" bench -u "$URL" "${WL[@]}" -o "$d" >"$d/bench.log" 2>&1 || return 1
	curl -s --max-time 30 "$URL/metrics" >"$d/m1" || return 1
}

ROWS=()
FAILS=0

# row FAULT CLASS EXPECT(detect|clean) DIR NOTES: runs kvbench check, appends a row
row() {
	local fault=${1//,/;} class=$2 expect=$3 d=$4 notes=${5//,/;} rc checks first req det ok
	"$KVBENCH" check "$REFX/outputs.jsonl" "$d/outputs.jsonl" --base-pass 0 --cand-pass 1 \
		--tolerance fp32 --metrics-before "$d/m0" --metrics-after "$d/m1" --claims-reuse \
		--divergences "$d/div.jsonl" --json "$d/check.json" >"$d/check.txt" 2>&1
	rc=$?
	checks=$(grep -o '^FAIL [a-z_]*' "$d/check.txt" | cut -c6- | paste -sd'+' -)
	req=$(grep -c '"pass":1' "$d/outputs.jsonl" 2>/dev/null)
	first=$(head -1 "$d/div.jsonl" 2>/dev/null | grep -o '"key":"[^"]*"' | head -1 | cut -d'"' -f4)
	if [ "$rc" -eq 1 ]; then det=yes; elif [ "$rc" -eq 0 ]; then det=no; else det=error; fi
	if [ "$expect" = unchanged ]; then
		[ "$det" = no ] && ok="not detected (expected)" || ok=UNEXPECTED
	elif [ "$expect" = clean ]; then
		[ "$det" = no ] && ok=pass || ok=FALSE_ALARM
	else
		[ "$det" = yes ] && ok=pass || ok=MISSED
	fi
	case $ok in pass | "not detected (expected)") ;; *) FAILS=$((FAILS + 1)) ;; esac
	ROWS+=("$fault,$class,ttft-sweep(${LENGTHS//,/ } B;chunk $CHUNK;$([ "$REFX" = "$REF" ] && echo echo || echo no echo)),$req,$det,${checks:--},${first:--},$ok: $notes")
	echo "detect-matrix: $fault [$class] detected=$det checks=${checks:--} first=${first:--} -> $ok" >&2
}

# fault_row FAULT CLASS [EXTRA ENGINE ARGS...]
fault_row() {
	local f=$1 cls=$2 d
	shift 2
	d=$WORK/$(echo "$f" | tr ':' '_')
	start_engine "$d.log" "${BASE[@]}" "${CONN[@]}" --kv-fault "$f" "$@" && bench "$d"
	stop_engine
	row "$f" "$cls" "${EXPECT:-detect}" "$d" "${NOTE:-cold pass stores, warm pass loads via connector}"
}

# revision-style faults: stored under other weights (--perturb 1:1.5) on disk, served
# to this model
stale_row() {
	local f=$1 cls=$2 d dd
	d=$WORK/$(echo "$f" | tr ':' '_')
	dd=$WORK/disk-$(echo "$f" | tr ':' '_')
	mkdir -p "$dd"
	start_engine "$d-w.log" "${BASE[@]}" "${CONN[@]}" --perturb 1:1.5 --kv-fault "$f" \
		--kv-disk-dir "$dd" --kv-disk-bytes 64MiB && bench "$d-w"
	stop_engine
	start_engine "$d.log" "${BASE[@]}" "${CONN[@]}" --kv-fault "$f" \
		--kv-disk-dir "$dd" --kv-disk-bytes 64MiB && bench "$d"
	stop_engine
	row "$f" "$cls" detect "$d" "chunks stored by an engine with --perturb 1:1.5, then served"
}

# encoding dropped from the key: int8 chunks stored on disk, then served to an fp32 engine
enc_row() {
	local f=drop-key:encoding cls=K1 d=$WORK/enc dd=$WORK/disk-enc
	mkdir -p "$dd"
	start_engine "$d-w.log" "${BASE[@]}" "${CONN[@]}" --kv-encoding int8 --kv-fault "$f" \
		--kv-disk-dir "$dd" --kv-disk-bytes 64MiB && bench "$d-w"
	stop_engine
	start_engine "$d.log" "${BASE[@]}" "${CONN[@]}" --kv-fault "$f" \
		--kv-disk-dir "$dd" --kv-disk-bytes 64MiB && bench "$d"
	stop_engine
	row "$f (int8 stored; fp32 served)" "$cls" detect "$d" "int8 chunks on disk served to an fp32 engine"
}

# noecho ROW-FUNCTION ARGS...: runs a row with the workload without echo
noecho() {
	WL=("${WL_NOECHO[@]}")
	REFX=$REF_NOECHO
	"$@"
	WL=("${WL_ECHO[@]}")
	REFX=$REF
}

# key-isolation probe: same tokens, two cache_salt values; any cross hit is a leak
salt_row() {
	local f=$1 cls=$2 d h0 h1 cached det ok req=2
	d=$WORK/salt-$(echo "${f:-clean}" | tr ':' '_')
	mkdir -p "$d"
	if [ -n "$f" ]; then
		start_engine "$d.log" "${BASE[@]}" "${CONN[@]}" --kv-fault "$f" || return
	else
		start_engine "$d.log" "${BASE[@]}" "${CONN[@]}" || return
	fi
	local p='{"prompt":"key isolation probe: the same tokens under two tenants, 97 bytes long, padded ....","max_tokens":1,"temperature":0'
	curl -s --max-time 60 "$URL/v1/completions" -H 'Content-Type: application/json' \
		-d "$p,\"cache_salt\":\"tenant-a\"}" >"$d/a.json"
	h0=$(curl -s --max-time 30 "$URL/metrics" | awk '$1 ~ /^lmcache:num_hit_tokens(_total)?$/ {s += $2} END {print s + 0}')
	curl -s --max-time 60 "$URL/v1/completions" -H 'Content-Type: application/json' \
		-d "$p,\"cache_salt\":\"tenant-b\"}" >"$d/b.json"
	h1=$(curl -s --max-time 30 "$URL/metrics" | awk '$1 ~ /^lmcache:num_hit_tokens(_total)?$/ {s += $2} END {print s + 0}')
	stop_engine
	cached=$(grep -o '"cached_tokens":[0-9]*' "$d/b.json" | head -1 | cut -d: -f2)
	cached=${cached:-0}
	if [ "$((h1 - h0))" -gt 0 ] || [ "$cached" -gt 0 ]; then det=yes; else det=no; fi
	if [ -n "$f" ]; then
		[ "$det" = yes ] && ok=pass || ok=MISSED
	else
		[ "$det" = no ] && ok=pass || ok=FALSE_ALARM
	fi
	[ "$ok" = pass ] || FAILS=$((FAILS + 1))
	local chk=-
	[ "$det" = yes ] && chk=key_isolation
	ROWS+=("${f:-none (salt probe)},$cls,salt-probe(97B;2 tenants),$req,$det,$chk,$([ "$det" = yes ] && echo 1 || echo -),$ok: cross-tenant hit tokens $((h1 - h0)) (usage cached $cached)")
	echo "detect-matrix: ${f:-clean salt probe} [$cls] detected=$det -> $ok" >&2
}

# clean_row NAME CLASS ENGINE ARGS...
clean_row() {
	local name=$1 cls=$2 d i
	shift 2
	for ((i = 1; i <= REPS; i++)); do
		d=$WORK/clean-$(echo "$name" | tr ' :=' '___')-$i
		start_engine "$d.log" "${BASE[@]}" "$@" && bench "$d"
		stop_engine
		row "$name" "$cls" clean "$d" "clean rep $i/$REPS"
	done
}

echo "detect-matrix: reference engine (no connector)" >&2
REF=$WORK/ref
start_engine "$REF.log" "${BASE[@]}" && bench "$REF" || { echo "detect-matrix: reference run failed" >&2; exit 1; }
stop_engine
WL=("${WL_NOECHO[@]}")
REF_NOECHO=$WORK/ref-noecho
start_engine "$REF_NOECHO.log" "${BASE[@]}" && bench "$REF_NOECHO" || { echo "detect-matrix: reference run failed" >&2; exit 1; }
stop_engine
WL=("${WL_ECHO[@]}")
REFX=$REF

clean_row "none (connector fp32)" - "${CONN[@]}"
clean_row "none (--matmul blas)" N "${CONN[@]}" --matmul blas
clean_row "none (--max-num-batched-tokens 32)" N "${CONN[@]}" --max-num-batched-tokens 32
salt_row "" -

# connector off although the run claims reuse: cache_path must fail
d=$WORK/off
start_engine "$d.log" "${BASE[@]}" && bench "$d"
stop_engine
row "none (no connector; reuse claimed)" - detect "$d" "connector flags missing: cache_path must fail"

# cache configured but never exercised: chunk larger than every prompt -> no hits
d=$WORK/never
start_engine "$d.log" "${BASE[@]}" --kv-chunk-size 256 --kv-cpu-bytes 64MiB && bench "$d"
stop_engine
row "none (chunk 256 > prompts: never exercised)" - detect "$d" "connector configured but warm pass gets no hits: cache_path must fail"

if [ "$REDUCED" = 1 ]; then
	fault_row bitflip R/E
	fault_row truncate F
	fault_row wrong-key K2
	stale_row stale S
	salt_row drop-key:salt K1
	fault_row offset B
	noecho fault_row zero-tail B
	fault_row swap-kv L
	fault_row lossy Q
else
	fault_row bitflip R/E
	fault_row truncate F
	fault_row poison F
	fault_row wrong-key K2
	fault_row truncate-key:2 K2
	EXPECT=unchanged NOTE="16-bit keys over ~12 chunks: no collision, so the right KV is served (fault fires, data unchanged)" fault_row truncate-key:16 K2
	stale_row stale S
	stale_row drop-key:revision K1
	salt_row drop-key:salt K1
	EXPECT=unchanged NOTE="one encoding in the run: the dropped dimension changes nothing (see the int8/fp32 row)" fault_row drop-key:encoding K1
	enc_row
	fault_row offset B
	NOTE="echo (prompt logprobs) makes kvserve recompute the last loaded row, which repairs the zeroed row: a blind spot of echo runs" fault_row zero-tail B
	noecho fault_row zero-tail B
	noecho clean_row "none (connector fp32; no echo)" - "${CONN[@]}"
	fault_row swap-kv L
	fault_row layer-shift L
	fault_row lossy Q
	EXPECT=unchanged NOTE="latency fault: output unchanged by design; output checks cannot see it (a ttft_ratio/speedup check would)" fault_row delay:50 -
fi

{
	echo "fault,class,workload,requests,detected,detecting_checks,first_detected_key,notes"
	printf '%s\n' "${ROWS[@]}"
} >"$OUT/matrix.csv"
python3 - "$OUT/matrix.csv" "$OUT/matrix.json" <<'EOF' 2>/dev/null || true
import csv, json, sys
rows = list(csv.DictReader(open(sys.argv[1])))
json.dump(rows, open(sys.argv[2], "w"), indent=1)
EOF
cp -r "$WORK" "$OUT/runs" 2>/dev/null
echo "detect-matrix: $((${#ROWS[@]})) rows, $FAILS unexpected; $OUT/matrix.csv" >&2
[ "$FAILS" -eq 0 ]
