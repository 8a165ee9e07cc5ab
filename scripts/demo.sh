#!/usr/bin/env bash
# The demo: builds kvbench and kvserve, then runs the quickstart suite
# (examples/quickstart.yaml: the built-in CPU engine with and without its KV
# cache) and writes the report. Needs nothing but Debian and 2 CPU cores.
# Usage: scripts/demo.sh [OUTPUT_DIR]   (default results/demo)
set -eu
cd "$(dirname "$0")/.."
bash scripts/build.sh build
out=${1:-results/demo}
rm -rf "$out"
rc=0
./build/kvbench run examples/quickstart.yaml -o "$out" || rc=$?
echo
echo "results: $out   report: $out/report.html  $out/report.pdf"
exit $rc
