#!/usr/bin/env bash
# make bench / make bench-smoke: installs the load tools it needs (nginx, wrk,
# valgrind, and perf if it can, from Debian's packages), builds credbroker
# without the race detector and the fasthttp reference proxy (bench/fasthttpref,
# its own Go module), and runs bench/runner, which writes docs/benchmarks.md
# (or, with --smoke, a throwaway report under $TMPDIR that proves the harness
# still works).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v valgrind >/dev/null 2>&1 || need+=(valgrind) # callgrind: instructions per request
if [ ${#need[@]} -gt 0 ]; then
  echo "bench: installing ${need[*]} from Debian's packages"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# perf counts system calls per request (the "Where the CPU goes" section).
# Optional: without it, or when the kernel refuses its tracepoints, the report
# says so and the bench goes on.
if ! command -v perf >/dev/null 2>&1; then
  echo "bench: installing linux-perf from Debian's packages (optional)"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  { $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends linux-perf >/dev/null; } ||
    echo "bench: linux-perf could not be installed; system calls per request will not be measured"
fi
export PATH="$PATH:/usr/sbin"

mkdir -p bin
# Built without cgo, as the release binaries are (internal/tools/release): a
# cgo build links libc dynamically, which costs about 1.8 MiB of resident
# memory (libc's pages and its per-thread arenas) that no release has.
CGO_ENABLED=0 go build -o bin/credbroker ./cmd/credbroker
go build -o bin/benchrunner ./bench/runner
# The fasthttp reference proxy: a reference point in the report, not part of
# credbroker. Its module needs the Go module proxy; without it the bench goes on.
ref=()
rm -f bin/fasthttpref
if (cd bench/fasthttpref && go build -o ../../bin/fasthttpref .); then
  ref=(--fasthttp-ref bin/fasthttpref)
else
  echo "bench: the fasthttp reference proxy (bench/fasthttpref) did not build; the report leaves it out"
fi
bin/benchrunner --credbroker bin/credbroker "${ref[@]}" "$@"

# The inbound guard under the slow-body attack and the proxy under an
# idle-connection flood (issue 15): memory figures, appended to the report.
smoke=0
for a in "$@"; do [ "$a" = "--smoke" ] && smoke=1; done
go build -o bin/guardflood ./bench/guardflood
if [ "$smoke" = 1 ]; then
  bin/guardflood --credbroker bin/credbroker --smoke --out "${TMPDIR:-/tmp}/guardflood-smoke.md"
else
  bin/guardflood --credbroker bin/credbroker --out bin/guardflood.md
  { echo; echo "## Floods: memory under attack"; echo; cat bin/guardflood.md; } >> docs/benchmarks.md
fi
