#!/usr/bin/env bash
# kvserve under load: 64 concurrent streaming requests sharing prefixes all
# finish, prefix hits are counted, client disconnects abort requests and free
# their blocks, and the server exits cleanly (ASan builds check leaks here).
. "$(dirname "$0")/lib/serve.sh"

serve_start --threads 2 --max-num-seqs 32 --max-num-batched-tokens 96 --num-kv-blocks 512

PREFIX=()
for p in 0 1 2 3; do
	PREFIX[$p]=$(python3 -c "import random; r=random.Random($p); print(''.join(r.choice('abcdefghij klmnop') for _ in range(180)))")
done
# one request per prefix first, so that the 64 below can hit
for p in 0 1 2 3; do
	req POST /v1/completions "{\"prompt\":\"${PREFIX[$p]}\",\"max_tokens\":1}"
done
cpids=()
for i in $(seq 0 63); do
	body="{\"prompt\":\"${PREFIX[$((i % 4))]} question $i?\",\"max_tokens\":16,\"temperature\":0,\"ignore_eos\":true,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
	curl -sN --max-time 120 -H 'Content-Type: application/json' --data-binary "$body" "$BASE/v1/completions" >"$TMP/s$i" &
	cpids+=($!)
done
wait "${cpids[@]}" || true
ok=0
for i in $(seq 0 63); do
	if tail -c 20 "$TMP/s$i" | grep -q 'data: \[DONE\]' && grep -q '"completion_tokens":16' "$TMP/s$i"; then
		ok=$((ok + 1))
	else
		echo "stream $i incomplete: $(tail -c 300 "$TMP/s$i")"
	fi
done
[ "$ok" = 64 ] && echo "ok   64 streams finished" || { echo "FAIL only $ok of 64 streams finished"; FAILS=$((FAILS + 1)); }

req GET /metrics
check "prefix hits counted" '(lambda m: m("vllm:prefix_cache_hits_total") >= 64 * 176 and m("vllm:num_requests_running") == 0 and m("vllm:generation_tokens_total") == 64 * 16 + 4)(lambda n: float([l for l in s.splitlines() if l.startswith(n + "{")][0].split()[-1]))'

# disconnects: long requests whose clients go away are aborted
pids=()
for i in $(seq 0 7); do
	curl -sN --max-time 60 -H 'Content-Type: application/json' \
		--data-binary "{\"prompt\":\"abort $i\",\"max_tokens\":4000,\"ignore_eos\":true,\"stream\":true}" \
		"$BASE/v1/completions" >/dev/null &
	pids+=($!)
done
sleep 1
kill "${pids[@]}" 2>/dev/null || true
wait "${pids[@]}" 2>/dev/null || true
for _ in $(seq 1 100); do
	req GET /metrics
	grep -q '^vllm:num_requests_running{[^}]*} 0$' "$TMP/out" && break
	sleep 0.1
done
check "disconnects abort" '(lambda m: m("vllm:num_requests_running") == 0 and m("kvserve:kv_cache_blocks_used") == 0 and [l for l in s.splitlines() if "finished_reason=\"abort\"" in l][0].endswith(" 8"))(lambda n: float([l for l in s.splitlines() if l.startswith(n + "{")][0].split()[-1]))'

serve_stop
finish
