#!/usr/bin/env bash
# prompt_format=ids against kvserve: ttft-sweep and long-doc-qa build their
# prompts from kvserve's /tokenize and send token ids; usage.prompt_tokens
# in requests.csv equals the requested lengths exactly. Without a reachable
# /tokenize the run fails with one line naming the URL.
. "$(dirname "$0")/lib/serve.sh"
KVBENCH="$KV_BUILD/kvbench"

serve_start --max-model-len 1024 --threads 2
"$KVBENCH" bench --url "$BASE" --workload ttft-sweep --set prompt_format=ids \
	--set lengths=33,100,257 --set trials=1 --set output_len=2 -o "$TMP/sweep" \
	>"$TMP/o1" 2>"$TMP/e1" || { cat "$TMP/e1"; echo "FAIL ttft-sweep ids exit $?"; exit 1; }
"$KVBENCH" bench --url "$BASE/v1" --workload long-doc-qa --set prompt_format=ids \
	--set num_documents=2 --set document_length=150 --set repeat_count=1 \
	--set pre_warmup=false --set output_len=2 -o "$TMP/ldqa" \
	>"$TMP/o2" 2>"$TMP/e2" || { cat "$TMP/e2"; echo "FAIL long-doc-qa ids exit $?"; exit 1; }
python3 - "$TMP" <<'PY' || FAILS=$((FAILS + 1))
import csv, glob, sys
t = sys.argv[1]
def rows(d):
    f = glob.glob(t + "/" + d + "/**/requests.csv", recursive=True)
    assert len(f) == 1, f
    return list(csv.DictReader(open(f[0])))
r = rows("sweep")
assert len(r) == 6, len(r)
for x in r:
    want = int(x["key"].split("/")[0].split("=")[1])
    assert x["status"] == "ok", x
    assert int(x["prompt_tokens"]) == want, (x["key"], x["prompt_tokens"])
r = rows("ldqa")
assert len(r) == 4, len(r)
assert all(x["status"] == "ok" and int(x["prompt_tokens"]) == 150 for x in r), [(x["key"], x["prompt_tokens"]) for x in r]
print("ok   exact prompt_tokens")
PY

# kvbench run: the suite's engine (preset url) tokenizes
cat >"$TMP/suite.yaml" <<EOS
engines:
  running:
    url: $BASE
workloads:
  w: {type: ttft-sweep, prompt_format: ids, lengths: "48,130", trials: 1, output_len: 2}
tests:
  sweep:
    workload: w
    engines: [running]
    checks:
      - type: max_error_rate
        max: 0
EOS
"$KVBENCH" run "$TMP/suite.yaml" --no-report -o "$TMP/run" >"$TMP/o5" 2>"$TMP/e5" ||
	{ cat "$TMP/e5"; echo "FAIL kvbench run exit $?"; exit 1; }
python3 - "$TMP/run/sweep/requests.csv" <<'PY' || FAILS=$((FAILS + 1))
import csv, sys
r = list(csv.DictReader(open(sys.argv[1])))
assert len(r) == 4, len(r)
for x in r:
    assert x["status"] == "ok" and int(x["prompt_tokens"]) == int(x["key"].split("/")[0][4:]), x
print("ok   kvbench run exact prompt_tokens")
PY

# a length shorter than the tag: one error line, exit 2
rc=0; "$KVBENCH" bench --url "$BASE" --workload ttft-sweep --set prompt_format=ids \
	--set lengths=16 --set trials=1 -o "$TMP/short" >/dev/null 2>"$TMP/e3" || rc=$?
[ "$rc" = 2 ] && [ "$(wc -l <"$TMP/e3")" = 1 ] && grep -q "tag" "$TMP/e3" &&
	echo "ok   length below the tag" || { echo "FAIL short rc=$rc: $(cat "$TMP/e3")"; FAILS=$((FAILS + 1)); }
serve_stop

# nothing listening: one line naming the /tokenize URL
rc=0; "$KVBENCH" bench --url "http://127.0.0.1:$PORT" --workload ttft-sweep --set prompt_format=ids \
	--set lengths=64 --set trials=1 -o "$TMP/down" >/dev/null 2>"$TMP/e4" || rc=$?
[ "$rc" = 2 ] && [ "$(wc -l <"$TMP/e4")" = 1 ] && grep -q "127.0.0.1:$PORT/tokenize" "$TMP/e4" &&
	echo "ok   unreachable /tokenize" || { echo "FAIL down rc=$rc: $(cat "$TMP/e4")"; FAILS=$((FAILS + 1)); }
finish
