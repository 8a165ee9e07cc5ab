#!/usr/bin/env python3
"""End-to-end checks of kvserve's low-rank adapters (--adapter, docs/kvserve.md).

Env: KV_BUILD (build folder). Starts kvserve on 127.0.0.1 with free ports and
kills every process it started, also on failure. Exit 0 when every check
passed, 1 otherwise.

Covers: /v1/models, model selection and echo (completions, chat, stream),
the 404 for an unknown model, adapters in the prefix-cache keys and in the
connector keys (no cross hits, own hits), the faults drop-key:adapter and
drop-key:model (hits appear and the output differs from the cold run), and
bad --adapter specs.
"""
import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

BUILD = os.environ.get("KV_BUILD", "build")
KVSERVE = os.path.join(BUILD, "kvserve")
TMP = tempfile.mkdtemp(prefix="kvs-adapter-")
PROCS = []
FAILS = []
CHUNK = 48  # connector chunk != block size (16)
ADAPTERS = ["--adapter", "lora-a=11", "--adapter", "lora-b=12,rank=4,alpha=3"]


def _pdeathsig():
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(TMP, ignore_errors=True)


atexit.register(cleanup)


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else ": " + str(detail)), flush=True)
    if not ok:
        FAILS.append(name)


class Engine:
    def __init__(self, *args, log="serve.log"):
        self.log = os.path.join(TMP, log)
        f = open(self.log, "w+")
        argv = [KVSERVE, "serve", "--port", "0", "--threads", "1"] + list(args)
        self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=f, preexec_fn=_pdeathsig)
        PROCS.append(self.p)
        for _ in range(600):
            f.seek(0)
            m = re.search(r"on http://127\.0\.0\.1:(\d+)", f.read())
            if m:
                break
            if self.p.poll() is not None:
                f.seek(0)
                raise SystemExit("kvserve died: %s\n%s" % (" ".join(argv), f.read()))
            time.sleep(0.05)
        else:
            raise SystemExit("kvserve did not start: " + " ".join(argv))
        self.base = "http://127.0.0.1:%s" % m.group(1)

    def post(self, path, body, timeout=60):
        req = urllib.request.Request(self.base + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def get(self, path):
        with urllib.request.urlopen(self.base + path, timeout=30) as r:
            return r.read().decode()

    def complete(self, toks, model=None, max_tokens=8):
        body = {"prompt": toks, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True,
                "logprobs": 1, "return_token_ids": True}
        if model:
            body["model"] = model
        st, txt = self.post("/v1/completions", body)
        if st != 200:
            raise SystemExit("completion failed: %d %s" % (st, txt))
        j = json.loads(txt)
        c = j["choices"][0]
        return {"ids": c["token_ids"], "lps": c["logprobs"]["token_logprobs"], "model": j["model"],
                "cached": j["usage"]["prompt_tokens_details"]["cached_tokens"]}

    def metric(self, name):
        m = re.search("^" + re.escape(name) + r" ([0-9.e+-]+)$", self.get("/metrics"), re.M)
        return float(m.group(1)) if m else None

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = -9
        check("%s exits cleanly on SIGTERM" % os.path.basename(self.log), rc == 0, "rc=%s" % rc)


def prompt(seed, n):
    x = seed * 2654435761 % 2**31 or 1
    out = []
    for _ in range(n):
        x = (x * 1103515245 + 12345) % 2**31
        out.append(32 + (x >> 8) % 90)
    return out


P = prompt(1, 97)


def same(a, b):
    return a["ids"] == b["ids"] and a["lps"] == b["lps"]


def cold_runs():
    """Each model's output with no cache at all: the references."""
    e = Engine("--no-prefix-cache", *ADAPTERS, log="cold.log")
    ref = {m: e.complete(P, m) for m in ("kv-tiny", "lora-a", "lora-b")}
    e.stop()
    check("cold: lora-a and lora-b change the output of kv-tiny",
          not same(ref["kv-tiny"], ref["lora-a"]) and not same(ref["kv-tiny"], ref["lora-b"])
          and not same(ref["lora-a"], ref["lora-b"]))
    worst = max(abs(x - y) for x, y in zip(ref["kv-tiny"]["lps"], ref["lora-a"]["lps"]))
    print("     max |dlogprob| kv-tiny vs lora-a over 8 greedy tokens: %.3f" % worst)
    return ref


def api():
    e = Engine(*ADAPTERS, log="api.log")
    models = json.loads(e.get("/v1/models"))["data"]
    check("/v1/models lists the base then each adapter",
          [m["id"] for m in models] == ["kv-tiny", "lora-a", "lora-b"], models)
    check("/v1/models: adapters have parent = base and root = their spec",
          models[0]["parent"] is None and models[1]["parent"] == "kv-tiny"
          and models[2]["parent"] == "kv-tiny" and models[1]["root"] == "lora-a=11,rank=8,alpha=2"
          and models[2]["root"] == "lora-b=12,rank=4,alpha=3", models)
    st, txt = e.post("/v1/completions", {"model": "lora-c", "prompt": "hi"})
    want = {"error": {"message": "The model `lora-c` does not exist.", "type": "NotFoundError",
                      "param": "model", "code": 404}}
    check("unknown model: 404 with vLLM's error object", st == 404 and json.loads(txt) == want,
          "%d %s" % (st, txt))
    st, txt = e.post("/v1/chat/completions", {"model": "lora-b", "max_tokens": 4, "temperature": 0,
                                              "messages": [{"role": "user", "content": "hello"}]})
    check("chat with model lora-b: 200 and the model echoed",
          st == 200 and json.loads(txt)["model"] == "lora-b", "%d %s" % (st, txt[:200]))
    st, txt = e.post("/v1/completions", {"model": "lora-a", "prompt": "hello", "max_tokens": 4,
                                         "stream": True, "stream_options": {"include_usage": True}})
    chunks = [json.loads(l[6:]) for l in txt.splitlines() if l.startswith("data: {")]
    check("stream with model lora-a: every chunk names lora-a",
          st == 200 and chunks and all(c["model"] == "lora-a" for c in chunks), txt[:300])
    info = re.search(r'^vllm:lora_requests_info\{max_lora="2",waiting_lora_adapters="[^"]*",'
                     r'running_lora_adapters="[^"]*"\} [0-9.e+]+$', e.get("/metrics"), re.M)
    check("/metrics has vllm:lora_requests_info", bool(info))
    e.stop()


def apc(ref):
    e = Engine(*ADAPTERS, log="apc.log")
    r0 = e.complete(P, "kv-tiny")
    h0 = e.metric('vllm:prefix_cache_hits_total{model_name="kv-tiny",engine="0"}')
    r1 = e.complete(P, "lora-a")
    h1 = e.metric('vllm:prefix_cache_hits_total{model_name="kv-tiny",engine="0"}')
    check("APC: base then lora-a on the same tokens: no cross hit (cached %d, hits delta %s)"
          % (r1["cached"], h1 - h0), r1["cached"] == 0 and h1 == h0)
    check("APC: lora-a after base equals its cold output, echoes its name",
          same(r1, ref["lora-a"]) and r1["model"] == "lora-a" and same(r0, ref["kv-tiny"]))
    r2 = e.complete(P, "lora-a")
    check("APC: lora-a twice: hits (%d cached) and the cold output" % r2["cached"],
          r2["cached"] == 96 and same(r2, ref["lora-a"]))
    r3 = e.complete(P, "lora-b")
    check("APC: lora-b after lora-a: no cross hit, its cold output",
          r3["cached"] == 0 and same(r3, ref["lora-b"]))
    e.stop()


CONN = ["--no-prefix-cache", "--kv-cpu-bytes", "64MiB", "--kv-chunk-size", str(CHUNK)]
EXT = 'vllm:external_prefix_cache_hits_total{model_name="kv-tiny",engine="0"}'
FAULT = 'kvserve:kv_faults_injected_total{type="drop-key"}'
FULL = (len(P) - 1) // CHUNK * CHUNK


def connector(ref):
    e = Engine(*CONN, *ADAPTERS, log="conn.log")
    e.complete(P, "kv-tiny")
    x0 = e.metric(EXT)
    r1 = e.complete(P, "lora-a")
    x1 = e.metric(EXT)
    check("connector: base then lora-a: no cross hit (cached %d, hits delta %s)"
          % (r1["cached"], x1 - x0), r1["cached"] == 0 and x1 == x0 and same(r1, ref["lora-a"]))
    r2 = e.complete(P, "lora-a")
    check("connector: lora-a twice: %d tokens loaded, the cold output" % r2["cached"],
          r2["cached"] == FULL and same(r2, ref["lora-a"]))
    check("connector: no fault counted", e.metric(FAULT) == 0)
    e.stop()

    e = Engine(*CONN, *ADAPTERS, "--kv-fault", "drop-key:adapter", log="drop-adapter.log")
    e.complete(P, "kv-tiny")
    r = e.complete(P, "lora-a")
    n = e.metric(FAULT)
    check("drop-key:adapter: lora-a hits the base's chunks (%d cached) and its output differs "
          "from its cold output" % r["cached"], r["cached"] == FULL and not same(r, ref["lora-a"]))
    check("drop-key:adapter counted in /metrics (%s)" % n, bool(n))
    e.stop()


def model_drop():
    """Two engines of different models (same shapes) share a disk tier."""
    dd = os.path.join(TMP, "disk")
    disk = ["--kv-disk-dir", dd, "--kv-disk-bytes", "64MiB", "--served-model-name", "m"]
    cold = Engine("--no-prefix-cache", "--served-model-name", "m", log="cold-m.log")
    want = cold.complete(P)
    cold.stop()
    for fault in ([], ["--kv-fault", "drop-key:model"]):
        shutil.rmtree(dd, ignore_errors=True)
        w = Engine(*CONN, *disk, "--model", "random:seed=5", *fault, log="writer.log")
        other = w.complete(P)
        w.stop()
        e = Engine(*CONN, *disk, *fault, log="reader.log")
        r = e.complete(P)
        n = e.metric(FAULT)
        if fault:
            check("drop-key:model: kv-tiny hits random:seed=5's chunks on disk (%d cached) and its "
                  "output differs from its cold output" % r["cached"],
                  r["cached"] == FULL and not same(r, want) and not same(other, want))
            check("drop-key:model counted in /metrics (%s)" % n, bool(n))
        else:
            check("no fault: kv-tiny gets no hit from random:seed=5's chunks on disk, its cold output",
                  r["cached"] == 0 and same(r, want))
        e.stop()


def adapter_version(ref):
    """FAULTS.md row 2: the same adapter name re-served with another seed is another version."""
    dd = os.path.join(TMP, "disk-v")
    disk = ["--kv-disk-dir", dd, "--kv-disk-bytes", "64MiB"]
    for fault in ([], ["--kv-fault", "drop-key:adapter"]):
        shutil.rmtree(dd, ignore_errors=True)
        w = Engine(*CONN, *disk, "--adapter", "lora-a=12", *fault, log="writer-v.log")
        w.complete(P, "lora-a")
        w.stop()
        e = Engine(*CONN, *disk, *ADAPTERS, *fault, log="reader-v.log")
        r = e.complete(P, "lora-a")
        if fault:
            check("drop-key:adapter: lora-a=11 hits the chunks of lora-a=12 (%d cached), output "
                  "differs from its cold output" % r["cached"],
                  r["cached"] == FULL and not same(r, ref["lora-a"]))
        else:
            check("lora-a=11 gets no hit from the chunks lora-a=12 left on disk, its cold output",
                  r["cached"] == 0 and same(r, ref["lora-a"]))
        e.stop()


def usage_errors():
    cases = [
        (["--adapter", "lora"], "--adapter: 'lora': expected NAME=SEED"),
        (["--adapter", "a=x"], "seed: expected a non-negative integer"),
        (["--adapter", "a=1,rank=0"], "rank: expected an integer in 1..64"),
        (["--adapter", "a=1,alpha=0"], "alpha"),
        (["--adapter", "a=1,bogus=2"], "unknown key 'bogus'"),
        (["--adapter", "a b=1"], "the name"),
        (["--adapter", "a=1", "--adapter", "a=2"], "'a' is given twice"),
        (["--adapter", "kv-tiny=1"], "'kv-tiny' is the served model's name"),
        (["--served-model-name", "m", "--adapter", "m=1"], "'m' is the served model's name"),
        (["--model", "random:dim=32,heads=4,kv_heads=2", "--adapter", "a=1,rank=40"],
         "rank 40 is larger than the model dim 32"),
        ([x for i in range(17) for x in ("--adapter", "a%d=%d" % (i, i))], "at most 16 adapters"),
    ]
    for args, want in cases:
        p = subprocess.run([KVSERVE, "serve", "--port", "0"] + args, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=60, preexec_fn=_pdeathsig)
        err = p.stderr.decode().strip().splitlines()
        check("kvserve %s: exit 2, one error line" % " ".join(args[:4]),
              p.returncode == 2 and len(err) == 1 and "error" in err[0] and want in err[0],
              "rc=%d stderr=%r" % (p.returncode, p.stderr.decode()[-300:]))


if __name__ == "__main__":
    if not os.access(KVSERVE, os.X_OK):
        raise SystemExit("no kvserve at %s" % KVSERVE)
    usage_errors()
    REF = cold_runs()
    api()
    apc(REF)
    connector(REF)
    adapter_version(REF)
    model_drop()
    print("%d check(s) failed" % len(FAILS) if FAILS else "all checks passed")
    sys.exit(1 if FAILS else 0)
