#!/usr/bin/env bash
# Runs every fuzz target of the module for $FUZZTIME each (default 3s).
# New inputs that fail are written under the package's testdata/fuzz and
# fail the run, so they are kept as regression cases.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3s}
count=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  grep -lq '^func Fuzz' "$dir"/*_test.go 2>/dev/null || continue
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $target ($fuzztime)"
    go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; rm -f /tmp/fuzz.$$.log; exit 1; }
    tail -1 /tmp/fuzz.$$.log
    count=$((count+1))
  done
done
rm -f /tmp/fuzz.$$.log
echo "fuzz: $count targets ran"
