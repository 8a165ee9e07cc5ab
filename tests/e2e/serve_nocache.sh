#!/usr/bin/env bash
# kvserve --no-prefix-cache: repeated prompts never hit, outputs unchanged;
# continuous usage stats in streams; a tiny KV cache preempts and still answers.
. "$(dirname "$0")/lib/serve.sh"

serve_start --no-prefix-cache --num-kv-blocks 12 --max-model-len 180 --threads 1
P='{"prompt":"a prompt long enough to fill a few blocks of the kv cache, twice over","max_tokens":20,"temperature":0,"ignore_eos":true'
req POST /v1/completions "$P}"; cp "$TMP/out" "$TMP/first"
req POST /v1/completions "$P}"
check "no prefix cache: miss, same text" "j['usage']['prompt_tokens_details']['cached_tokens'] == 0 and j['choices'][0]['text'] == json.load(open('$TMP/first'))['choices'][0]['text']"
req POST /v1/completions "$P,\"stream\":true,\"stream_options\":{\"include_usage\":true,\"continuous_usage_stats\":true}}"
check "continuous usage" '(lambda c: all("usage" in x and x["usage"]["prompt_tokens"] == 70 for x in c[:-1]) and c[-2]["usage"]["completion_tokens"] == 20)(sse(s))'
# four requests of 5 blocks each at most in 12 blocks: they queue and preempt, all finish
pids=()
for i in 0 1 2 3; do
	curl -s --max-time 60 -H 'Content-Type: application/json' --data-binary "$P,\"max_tokens\":60}" "$BASE/v1/completions" >"$TMP/p$i" &
	pids+=($!)
done
wait "${pids[@]}" || true
ok=0
for i in 0 1 2 3; do
	python3 -c "import json,sys; j=json.load(open('$TMP/p$i')); sys.exit(0 if j['usage']['completion_tokens'] == 60 and j['choices'][0]['text'][:20] == json.load(open('$TMP/first'))['choices'][0]['text'] else 1)" && ok=$((ok + 1))
done
[ "$ok" = 4 ] && echo "ok   small cache: all finish, same text" || { echo "FAIL small cache: $ok of 4"; FAILS=$((FAILS + 1)); }
req GET /metrics
check "no hits counted" '[l for l in s.splitlines() if l.startswith("vllm:prefix_cache_hits_total{")][0].endswith(" 0")'
serve_stop
finish
