#!/usr/bin/env bash
# make interop-deps: installs the clients of the interop test (e2e/interop):
# Node's jose from e2e/interop/node/package-lock.json (npm ci), and Debian's
# python3-jwt (PyJWT) and python3-requests for the system interpreter
# /usr/bin/python3 (apt-get). Does nothing when both are in place.
set -euo pipefail
cd "$(dirname "$0")/.."

node_dir=e2e/interop/node
# npm ci writes node_modules/.package-lock.json: newer than the lock means
# this lock is installed.
if [ ! -f "$node_dir/node_modules/.package-lock.json" ] || [ "$node_dir/package-lock.json" -nt "$node_dir/node_modules/.package-lock.json" ]; then
  echo "interop-deps: npm ci in $node_dir"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

installed=$(dpkg-query -W -f='${Status}\n' python3-jwt python3-requests 2>/dev/null | grep -c 'install ok installed' || true)
if [ "$installed" -ne 2 ]; then
  echo "interop-deps: installing python3-jwt python3-requests from Debian's packages"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends python3-jwt python3-requests >/dev/null
fi
