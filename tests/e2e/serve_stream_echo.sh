#!/usr/bin/env bash
# Streaming with echo: the echoed prompt (and its logprobs) ride on the first
# chunk that is sent, even when the request waits in the queue longer than
# the stream's first poll (100 ms). It used to be dropped then: the echoed text
# depended on timing.
. "$(dirname "$0")/lib/serve.sh"

serve_start --max-num-seqs 1 --threads 1

# keeps the one sequence slot busy for a while
curl -s -o "$TMP/busy" --max-time 120 -H 'Content-Type: application/json' \
	--data-binary '{"prompt":"busy","max_tokens":3000,"temperature":0,"ignore_eos":true}' \
	"$BASE/v1/completions" &
BUSY=$!
for _ in $(seq 1 100); do
	req GET /metrics
	grep -q '^vllm:num_requests_running{[^}]*} 1' "$TMP/out" && break
	sleep 0.02
done
check "busy request running" 'any(l.startswith("vllm:num_requests_running{") and l.split()[-1] == "1" for l in s.splitlines())'

P='{"prompt":"Echo me back, please","max_tokens":4,"temperature":0,"ignore_eos":true,"logprobs":1,"echo":true,"stream":true}'
req POST /v1/completions "$P"
check "queued: prompt is echoed" '(lambda c: c[-1] == "[DONE]" and "".join(x["choices"][0]["text"] for x in c[:-1]).startswith("<|bos|>Echo me back, please") and sum(len(x["choices"][0]["logprobs"]["tokens"]) for x in c[:-1]) == 21 + 4)(sse(s))'
wait "$BUSY"

req POST /v1/completions "$P"
check "idle: prompt is echoed once" '(lambda t: t.startswith("<|bos|>Echo me back, please") and t.count("Echo me back") == 1)("".join(x["choices"][0]["text"] for x in sse(s)[:-1]))'

serve_stop
finish
