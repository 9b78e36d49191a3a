#!/usr/bin/env bash
# Runs every fuzz target of the module for $FUZZTIME each (default 3s).
#
# New inputs that fail are written under the package's testdata/fuzz by
# `go test` itself and fail the run, so they are kept as regression cases.
#
# KEEP_CORPUS=1 (make fuzz) also keeps the interesting inputs the fuzzer
# found — the ones that reached new code, which Go caches under
# $(go env GOCACHE)/fuzz/<import path>/<FuzzName>/ — by copying them into
# <pkg>/testdata/fuzz/<FuzzName>/, where every plain `go test` replays them.
# At most $MAX_CORPUS files (default 50) per target are kept, smallest
# first; files already there are never removed.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-3s}
keep=${KEEP_CORPUS:-0}
max_corpus=${MAX_CORPUS:-50}
cache="$(go env GOCACHE)/fuzz"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
count=0
kept=0

# keep_corpus PKG DIR TARGET copies new cached inputs of TARGET into DIR's testdata.
keep_corpus() {
  local pkg=$1 dir=$2 target=$3
  local from="$cache/$pkg/$target" to="$dir/testdata/fuzz/$target"
  [ -d "$from" ] || return 0
  mkdir -p "$to"
  local have
  have=$(find "$to" -maxdepth 1 -type f | wc -l)
  local added=0 f name
  # Smallest first: small inputs replay fast and are easy to read.
  while IFS= read -r f; do
    [ "$have" -lt "$max_corpus" ] || break
    name=$(basename "$f")
    [ -e "$to/$name" ] && continue
    head -c 16 "$f" | grep -q '^go test fuzz v1' || continue
    cp "$f" "$to/$name"
    have=$((have+1)); added=$((added+1))
  done < <(find "$from" -maxdepth 1 -type f -printf '%s %p\n' | sort -n | cut -d' ' -f2-)
  rmdir "$to" 2>/dev/null || true
  echo "fuzz: kept $added new input(s) of $target in ${to#./} ($have in all)"
  kept=$((kept+added))
}

# deadline_flake says whether a failed run is only Go's fuzzing coordinator
# racing its own -fuzztime deadline (go.dev/issue/75804, fixed in Go 1.27):
# "context deadline exceeded" with no failing input written and no panic or
# test failure of the target. A real finding always writes its input.
deadline_flake() {
  grep -q 'context deadline exceeded' "$log" &&
    ! grep -qiE 'failing input|panic:|_test\.go:[0-9]+:' "$log"
}

# fuzz_one PKG TARGET runs one target, once more after a deadline flake; a
# second flake is reported and tolerated (the corpus replay of every
# `go test` is the deterministic gate).
fuzz_one() {
  local pkg=$1 target=$2 try
  for try in 1 2; do
    if go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg" >"$log" 2>&1; then
      tail -1 "$log"
      return 0
    fi
    if ! deadline_flake; then
      cat "$log"
      return 1
    fi
    echo "fuzz: $target hit Go's -fuzztime deadline race without a finding (try $try)"
  done
  flaked=$((flaked+1))
  return 0
}

flaked=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  grep -lq '^func Fuzz' "$dir"/*_test.go 2>/dev/null || continue
  for target in $(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true); do
    echo "fuzz: $pkg $target ($fuzztime)"
    fuzz_one "$pkg" "$target" || exit 1
    count=$((count+1))
    if [ "$keep" = 1 ]; then
      keep_corpus "$pkg" "$dir" "$target"
    fi
  done
done
echo "fuzz: $count targets ran ($flaked only hit the deadline race twice)"
if [ "$keep" = 1 ]; then
  echo "fuzz: $kept new corpus input(s) kept under testdata/fuzz; commit them"
fi
