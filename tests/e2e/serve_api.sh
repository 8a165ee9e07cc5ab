#!/usr/bin/env bash
# kvserve HTTP API: every endpoint and parameter, error statuses, shutdown.
. "$(dirname "$0")/lib/serve.sh"

# command line
"$KVSERVE" --help >"$TMP/help" && grep -q -- "--max-num-batched-tokens" "$TMP/help" && grep -q -- "--no-prefix-cache\|prefix-cache" "$TMP/help" \
	&& echo "ok   --help" || { echo "FAIL --help"; FAILS=$((FAILS + 1)); }
rc=0; "$KVSERVE" --bogus 2>"$TMP/err" || rc=$?
[ "$rc" = 2 ] && [ "$(wc -l <"$TMP/err")" = 1 ] && echo "ok   bad flag" || { echo "FAIL bad flag rc=$rc"; FAILS=$((FAILS + 1)); }
rc=0; "$KVSERVE" --model kv-nope 2>"$TMP/err" || rc=$?
[ "$rc" = 2 ] && echo "ok   bad model" || { echo "FAIL bad model rc=$rc"; FAILS=$((FAILS + 1)); }

serve_start --max-model-len 256 --max-request-bytes 64k --threads 2

req GET /health;                       check health 'st == 200 and s == ""'
req GET /v1/models;                    check models 'j["data"][0]["id"] == "kv-tiny" and j["data"][0]["max_model_len"] == 256'
req POST /health '{}';                 check "405" 'st == 405 and j["error"]["code"] == 405'
req GET /nope;                         check "404 path" 'st == 404 and "message" in j["error"] and "type" in j["error"] and "param" in j["error"]'

req POST /tokenize '{"prompt":"hé<|user|>","return_token_strs":true}'
check tokenize 'j["tokens"] == [256, 104, 195, 169, 259] and j["count"] == 5 and j["max_model_len"] == 256 and j["token_strs"][1] == "h"'
req POST /v1/tokenize '{"prompt":"ab","add_special_tokens":false}'
check "v1/tokenize" 'j["tokens"] == [97, 98] and j["token_strs"] is None'
req POST /tokenize '{"messages":[{"role":"user","content":"hi"}]}'
check "tokenize chat" 'j["tokens"] == [256, 259, 104, 105, 261, 260]'
req POST /detokenize '{"tokens":[104,195,169,259]}'; check detokenize 'j["prompt"] == "hé<|user|>"'
req POST /detokenize '{"tokens":[99999]}';           check "detokenize range" 'st == 400'

P='{"model":"kv-tiny","prompt":"The cache must never change an answer, whatever the load","max_tokens":12,"temperature":0,"ignore_eos":true'
req POST /v1/completions "$P}"; cp "$TMP/out" "$TMP/first"
check completion 'j["object"] == "text_completion" and j["choices"][0]["finish_reason"] == "length" and j["usage"]["completion_tokens"] == 12 and j["usage"]["prompt_tokens"] == 57 and j["usage"]["total_tokens"] == 69 and j["choices"][0]["logprobs"] is None'
req POST /v1/completions "$P}"
check "greedy repeats, prefix hit" "j['choices'][0]['text'] == json.load(open('$TMP/first'))['choices'][0]['text'] and j['usage']['prompt_tokens_details']['cached_tokens'] == 48"
req POST /v1/completions "$P,\"cache_salt\":\"tenant-2\"}"
check "cache_salt misses" "j['usage']['prompt_tokens_details']['cached_tokens'] == 0 and j['choices'][0]['text'] == json.load(open('$TMP/first'))['choices'][0]['text']"
req POST /v1/completions "$P,\"logprobs\":3,\"echo\":true,\"return_token_ids\":true}"
check "echo logprobs token_ids" 'len(j["choices"][0]["logprobs"]["tokens"]) == 69 and j["choices"][0]["logprobs"]["token_logprobs"][0] is None and j["choices"][0]["logprobs"]["token_logprobs"][47] is None and all(x is not None for x in j["choices"][0]["logprobs"]["token_logprobs"][48:]) and len(j["choices"][0]["logprobs"]["top_logprobs"][-1]) >= 3 and j["choices"][0]["text"].startswith("<|bos|>The cache") and len(j["choices"][0]["token_ids"]) == 12 and len(j["choices"][0]["prompt_token_ids"]) == 57'
req POST /v1/completions '{"prompt":[256,72,105],"max_tokens":3,"temperature":0,"ignore_eos":true}'
check "token id prompt" 'j["usage"]["prompt_tokens"] == 3 and j["usage"]["completion_tokens"] == 3'
req POST /v1/completions '{"prompt":"x","max_tokens":5,"min_tokens":5,"temperature":0.8,"top_p":0.9,"seed":7}'
cp "$TMP/out" "$TMP/seeded"
check "sampling params" 'j["usage"]["completion_tokens"] == 5'
req POST /v1/completions '{"prompt":"x","max_tokens":5,"min_tokens":5,"temperature":0.8,"top_p":0.9,"seed":7}'
check "seed repeats" "j['choices'][0]['text'] == json.load(open('$TMP/seeded'))['choices'][0]['text']"
T=$(python3 -c "import json;print(json.load(open('$TMP/first'))['choices'][0]['text'][3:5])")
req POST /v1/completions "$P,\"stop\":[$(python3 -c "import json;print(json.dumps('$T'))")]}"
check "stop string" "j['choices'][0]['finish_reason'] == 'stop' and j['choices'][0]['stop_reason'] == json.loads(json.dumps('$T')) and '$T' not in j['choices'][0]['text']"

C='{"model":"kv-tiny","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hello there"}],"max_tokens":6,"temperature":0,"ignore_eos":true'
req POST /v1/chat/completions "$C,\"logprobs\":true,\"top_logprobs\":2}"
check chat 'j["object"] == "chat.completion" and j["choices"][0]["message"]["role"] == "assistant" and len(j["choices"][0]["logprobs"]["content"]) == 6 and len(j["choices"][0]["logprobs"]["content"][0]["top_logprobs"]) == 2 and j["usage"]["completion_tokens"] == 6'
req POST /v1/chat/completions "$C,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"return_token_ids\":true}"
check "chat stream" 'st == 200 and (lambda c: c[-1] == "[DONE]" and c[0]["choices"][0]["delta"] == {"role":"assistant","content":""} and c[0]["object"] == "chat.completion.chunk" and c[-2]["choices"] == [] and c[-2]["usage"]["completion_tokens"] == 6 and c[-3]["choices"][0]["finish_reason"] == "length" and all(x["choices"][0]["finish_reason"] is None for x in c[:-3]) and sum(len(x["choices"][0].get("token_ids", [])) for x in c[1:-2]) == 6)(sse(s))'
req POST /v1/completions "$P,\"stream\":true}"
check "completion stream" "(lambda c: c[-1] == '[DONE]' and ''.join(x['choices'][0]['text'] for x in c[:-1]) == json.load(open('$TMP/first'))['choices'][0]['text'] and c[-2]['choices'][0]['finish_reason'] == 'length' and all(x['usage'] is None for x in c[:-1]))(sse(s))"
req POST /v1/completions "$P,\"stream\":true,\"logprobs\":1,\"stream_options\":{\"include_usage\":true}}"
check "completion stream logprobs usage" '(lambda c: c[-2]["usage"]["prompt_tokens"] == 57 and c[-2]["choices"] == [] and sum(len(x["choices"][0]["logprobs"]["tokens"]) for x in c[:-2]) == 12)(sse(s))'

# errors
req POST /v1/completions '{"prompt":"x",';                     check "bad json 400" 'st == 400 and j["error"]["code"] == 400'
req POST /v1/completions '{"prompt":"x","max_tokens":"9"}';    check "wrong type 400" 'st == 400 and j["error"]["param"] == "max_tokens"'
req POST /v1/completions '{"prompt":"x","max_tokens":-1}';     check "negative max_tokens 400" 'st == 400'
req POST /v1/completions '{"prompt":5}';                       check "bad prompt 400" 'st == 400'
req POST /v1/completions '{"prompt":"x","n":2}';               check "n=2 400" 'st == 400 and j["error"]["param"] == "n"'
req POST /v1/completions '{"prompt":"x","temperature":-1}';    check "temperature 400" 'st == 400'
req POST /v1/completions '{"prompt":"x","stop":[1]}';          check "stop type 400" 'st == 400'
req POST /v1/completions '{"model":"gpt-9","prompt":"x"}';     check "unknown model 404" 'st == 404 and "gpt-9" in j["error"]["message"]'
req POST /v1/chat/completions '{"messages":[{"role":"wizard","content":"x"}]}'; check "bad role 400" 'st == 400'
req POST /v1/chat/completions '{"messages":"hi"}';              check "bad messages 400" 'st == 400'
LONG=$(python3 -c "print('a'*300)")
req POST /v1/completions "{\"prompt\":\"$LONG\"}";             check "too long 400" 'st == 400 and "maximum context length" in j["error"]["message"]'
req POST /v1/completions "{\"prompt\":\"abc\",\"max_tokens\":255}"; check "prompt+max_tokens too long 400" 'st == 400'
BIG=$(python3 -c "print('{\"prompt\":\"' + 'a'*70000 + '\"}')")
req POST /v1/completions "$BIG";                               check "too big 413" 'st == 413'

req POST /reset_prefix_cache;                                  check "reset prefix cache" 'st == 200'
req POST /v1/completions "$P}"
check "after reset: miss" 'j["usage"]["prompt_tokens_details"]["cached_tokens"] == 0'

req GET /metrics
check metrics 'all(n in s for n in ["vllm:num_requests_running{", "vllm:num_requests_waiting{", "vllm:kv_cache_usage_perc{", "vllm:prefix_cache_queries_total{", "vllm:prefix_cache_hits_total{", "vllm:prompt_tokens_total{", "vllm:generation_tokens_total{", "vllm:time_to_first_token_seconds_bucket{", "kvserve:kv_cache_blocks_total{"]) and float([l for l in s.splitlines() if l.startswith("vllm:prefix_cache_hits_total")][0].split()[-1]) >= 48'

serve_stop
finish
