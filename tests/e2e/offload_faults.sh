#!/usr/bin/env bash
# KV offload end-to-end: faults (tests/e2e/offload_e2e.py kills what it starts).
set -eu
exec python3 "${KV_SRC:-$(dirname "$0")/../..}/tests/e2e/offload_e2e.py" faults
