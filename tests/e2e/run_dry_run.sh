#!/usr/bin/env bash
# The GPU suites, validated without a GPU: `kvbench run --dry-run` prints the
# argv and environment each engine would get; they must carry the flags vLLM,
# LMCache, PegaFlow document (REFERENCE.md 1.2, 1.4, 2.4, 5). Nothing starts.
. "$(dirname "$0")/../helpers/e2e_lib.sh"
export MODEL=meta-llama/Llama-3.1-8B-Instruct
export MMLU_DIR=$KV_FIXTURES/data/mmlu GSM8K_DATA=$KV_FIXTURES/data/gsm8k.jsonl
export SHAREGPT_DATA=$KV_FIXTURES/data/sharegpt.json RAG_DATA=$KV_FIXTURES/data/rag.jsonl
E=$KV_SRC/examples
LMC="--kv-transfer-config '{\"kv_connector\":\"LMCacheConnectorV1\",\"kv_role\":\"kv_both\"}'"
PEGA="--kv-transfer-config '{\"kv_connector\":\"PegaKVConnector\",\"kv_role\":\"kv_both\",\"kv_connector_module_path\":\"pegaflow.connector\"}'"

dry() { "$KVBENCH" run --dry-run "$@" -o "$T/dry" >"$T/out" 2>"$T/err" || fail "$*: $(cat "$T/err")"; }
has() { grep -qF -- "$1" "$T/out" || fail "$2: missing [$1] in: $(cat "$T/out")"; }
hasnt() { grep -qF -- "$1" "$T/out" && fail "$2: unexpected [$1]"; true; }

dry "$E/lmcache-mmlu.yaml"
has "argv:   vllm serve $MODEL --host 127.0.0.1 --port " mmlu
has "--no-enable-prefix-caching --max-model-len 8192 $LMC" mmlu
has "env:    LMCACHE_CHUNK_SIZE=256" mmlu
has "env:    LMCACHE_LOCAL_CPU=true" mmlu
has "env:    LMCACHE_MAX_LOCAL_CPU_SIZE=5.0" mmlu
has "env:    LMCACHE_REMOTE_SERDE=naive" mmlu
[ "$(grep -c -- '--no-enable-prefix-caching' "$T/out")" -eq 2 ] || fail "mmlu: both engines without vLLM prefix caching"
[ "$(grep -c -- 'kv-transfer-config' "$T/out")" -eq 1 ] || fail "mmlu: only one engine has LMCache"

dry "$E/lmcache-tests.yaml" -f local_disk
has "env:    LMCACHE_LOCAL_DISK=file:///tmp/kvbench-lmcache-disk/" tests
has "env:    LMCACHE_MAX_LOCAL_DISK_SIZE=20" tests
hasnt "engine lmcache-cpu" "tests -f local_disk"
LMCACHE_DISK=/scratch/lmc dry "$E/lmcache-tests.yaml" -f local_disk
has "LMCACHE_LOCAL_DISK=file:///scratch/lmc/" "tests with LMCACHE_DISK"

dry "$E/cacheblend.yaml"
has "env:    LMCACHE_ENABLE_BLENDING=true" blend
has "env:    LMCACHE_USE_LAYERWISE=true" blend
has "env:    LMCACHE_BLEND_RECOMPUTE_RATIOS=0.15" blend
has "env:    'LMCACHE_BLEND_SPECIAL_STR= # # '" blend

dry "$E/pegaflow-ci.yaml"
has "argv:   pegaflow-server --http-addr 127.0.0.1:9091 --addr 127.0.0.1:50055 --devices 0 --pool-size 50gb" pega
has "argv:   vllm serve $MODEL --host 127.0.0.1 --port 8000 --no-enable-prefix-caching $PEGA" pega
has "argv:   vllm serve $MODEL --host 127.0.0.1 --port 9000 --gpu-memory-utilization" pega-baseline
has "env:    PEGAFLOW_PORT=50055" pega
VLLM_PORT=8100 PEGA_PORT=50100 MAX_PEGAFLOW_TTFT=0.3 dry "$E/pegaflow-ci.yaml" --quick
has "--port 8100 --no-enable-prefix-caching" "pega VLLM_PORT"
has "--addr 127.0.0.1:50100" "pega PEGA_PORT"
hasnt "engine vllm-baseline" "pega --quick"
has "vllm-baseline(skipped)" "pega --quick"

# -m wins over MODEL; no model at all is a config error naming the engine
dry "$E/pegaflow-ci.yaml" -m Qwen/Qwen2.5-7B
has "vllm serve Qwen/Qwen2.5-7B " "-m"
env -u MODEL "$KVBENCH" run --dry-run "$E/pegaflow-ci.yaml" >/dev/null 2>"$T/err"; rc=$?
[ $rc -eq 2 ] || fail "no model: exit $rc"
grep -q "pegaflow-ci.yaml:[0-9]*: engines.vllm-pegaflow: no model" "$T/err" || fail "no model: $(cat "$T/err")"

# quickstart: kvserve argv
dry "$E/quickstart.yaml"
has "--model kv-tiny --no-prefix-cache --threads 1" quickstart
[ -e "$T/dry" ] && fail "--dry-run created the results folder"
no_leftovers "dry runs"
echo ok
