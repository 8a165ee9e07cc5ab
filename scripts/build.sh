#!/usr/bin/env bash
# Configures and builds kvbench and kvserve. Usage: scripts/build.sh [BUILD_DIR] [cmake args...]
# BUILD_DIR defaults to build/. Installs missing Debian packages first.
set -eu
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
dir=${1:-build}; [ $# -gt 0 ] && shift
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
cmake --build "$dir" -j "$(nproc)" -- --no-print-directory >/dev/null
