#!/usr/bin/env bash
# Installs the Debian packages that building and testing kvbench needs.
# Quiet and quick when everything is already there. Usage: scripts/install-deps.sh [--test]
#   --test   also the packages only the tests use (poppler-utils, chromium, curl, clang).
set -eu
build_pkgs="build-essential cmake pkg-config libcurl4-openssl-dev libjansson-dev libyaml-dev
  libcairo2-dev libmicrohttpd-dev libopenblas-dev libcmocka-dev libssl-dev"
test_pkgs="poppler-utils chromium curl procps python3 clang libclang-rt-14-dev"
pkgs=$build_pkgs
[ "${1:-}" = "--test" ] && pkgs="$pkgs $test_pkgs"

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "kvbench: installing Debian packages:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
