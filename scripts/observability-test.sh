#!/usr/bin/env bash
# make observability-test: checks docs/observability. Installs promtool (in
# Debian's prometheus package) when it is missing, validates and unit-tests
# the alerting rules with it, then runs the Go module docs/observability/test:
# every PromQL expression of the dashboard and the rules parses with
# Prometheus's parser and names only metrics and labels of a real /metrics
# scrape (credbroker run against credbroker mock, with traffic).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  echo "observability-test: installing prometheus (for promtool) from Debian's packages"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

promtool check rules docs/observability/prometheus-rules.yaml
(cd docs/observability && promtool test rules prometheus-rules.test.yaml)
cd docs/observability/test
go test -count=1 ./...
