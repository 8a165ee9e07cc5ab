#!/usr/bin/env python3
"""TTFT of one long prompt served cold and from each offload tier.

Usage: offload_ttft.py BUILD_DIR [--model kv-small] [--tokens 4096] [--reps 3]
Starts kvserve (prefix cache off, so every hit comes from the connector) and,
for the remote case, `kvserve cache`, all on 127.0.0.1. TTFT is the time of a
streaming request to its first token. Prints a Markdown table.
"""
import argparse
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("build")
ap.add_argument("--model", default="kv-tiny")
ap.add_argument("--tokens", type=int, default=4096)
ap.add_argument("--reps", type=int, default=3)
ap.add_argument("--threads", type=int, default=os.cpu_count() or 2)
a = ap.parse_args()
KVSERVE = os.path.join(a.build, "kvserve")
TMP = tempfile.mkdtemp(prefix="kvo-ttft-")
procs = []


def _pdeathsig():
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # children die with us
    except Exception:
        pass


def _on_term(sig, frame):
    raise SystemExit("signal %d" % sig)


signal.signal(signal.SIGTERM, _on_term)


def start(args, pat):
    log = open(os.path.join(TMP, "log%d" % len(procs)), "w+")
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, preexec_fn=_pdeathsig)
    procs.append(p)
    for _ in range(1200):
        log.seek(0)
        m = re.search(pat, log.read())
        if m:
            return p, int(m.group(1))
        if p.poll() is not None:
            log.seek(0)
            raise SystemExit("died: %s\n%s" % (args, log.read()))
        time.sleep(0.05)
    raise SystemExit("did not start: %s" % args)


def ttft(port, toks):
    body = {"prompt": toks, "max_tokens": 2, "temperature": 0, "ignore_eos": True, "stream": True}
    req = urllib.request.Request("http://127.0.0.1:%d/v1/completions" % port,
                                 json.dumps(body).encode(), {"Content-Type": "application/json"})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=600) as r:
        for line in r:
            if line.startswith(b"data: {") and b'"text"' in line:
                return time.monotonic() - t0
    raise SystemExit("no token")


def metric(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=30) as r:
        m = re.search("^" + re.escape(name) + r" ([0-9.e+-]+)$", r.read().decode(), re.M)
    return float(m.group(1)) if m else 0.0


def prompt(seed, n):
    x = seed or 1
    out = []
    for _ in range(n):
        x = (x * 1103515245 + 12345) % 2**31
        out.append(32 + (x >> 8) % 90)
    return out


def run(case, extra):
    base = [KVSERVE, "serve", "--port", "0", "--model", a.model, "--threads", str(a.threads),
            "--no-prefix-cache", "--max-model-len", str(a.tokens + 64), "--max-num-batched-tokens",
            "512"]
    p, port = start(base + extra, r"on http://127\.0\.0\.1:(\d+)")
    times = []
    for r in range(a.reps):
        toks = prompt(100 + r, a.tokens)
        if case != "cold":
            ttft(port, toks)          # stores the chunks
        times.append(ttft(port, toks))
    tier = {"cpu": "cpu", "disk": "disk", "remote": "remote"}.get(case)
    hit = metric(port, 'kvserve:offload_hit_tokens_total{tier="%s"}' % tier) if tier else 0
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    return min(times), hit


try:
    rows = []
    cold, _ = run("cold", [])
    rows.append(("cold (no connector)", cold, 0))
    t, h = run("cpu", ["--kv-cpu-bytes", "4GiB"])
    rows.append(("CPU tier", t, h))
    dd = os.path.join(TMP, "disk")
    t, h = run("disk", ["--kv-cpu-bytes", "0", "--kv-disk-dir", dd, "--kv-disk-bytes", "8GiB"])
    rows.append(("disk tier (page cache)", t, h))
    cache, cport = start([KVSERVE, "cache", "--port", "0", "--max-bytes", "4GiB"],
                         r"listening on 127\.0\.0\.1:(\d+)")
    t, h = run("remote", ["--kv-cpu-bytes", "0", "--kv-remote-url", "kv://127.0.0.1:%d" % cport,
                          "--kv-remote-timeout", "10"])
    rows.append(("remote tier (loopback)", t, h))
    print("| served from | TTFT (s, best of %d) | speed-up vs cold | tokens loaded (all reps) |" % a.reps)
    print("|---|---|---|---|")
    for name, t, h in rows:
        print("| %s | %.3f | %.1fx | %d |" % (name, t, cold / t, h))
finally:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    shutil.rmtree(TMP, ignore_errors=True)
