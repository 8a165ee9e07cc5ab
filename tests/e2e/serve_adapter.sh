#!/usr/bin/env bash
# kvserve --adapter end to end (tests/e2e/adapter_e2e.py kills what it starts).
set -eu
exec python3 "${KV_SRC:-$(dirname "$0")/../..}/tests/e2e/adapter_e2e.py"
