# credbroker — run `make` for the list of targets.
.DEFAULT_GOAL := help
SHELL := /usr/bin/env bash
GO ?= go
FUZZTIME ?= 3s
export GOFLAGS := -buildvcs=false

.PHONY: help run test unit e2e e2e-bin docs lint check-deps fuzz fuzz-smoke chart-test bench bench-smoke pgo soak build clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/credbroker
	$(GO) build -o bin/credbroker ./cmd/credbroker

run: ## the demo on the embedded mock: mock auth server, sample upstream and the sidecar, no setup
	$(GO) run ./cmd/credbroker demo

test: lint check-deps unit fuzz-smoke chart-test bench-smoke ## everything CI runs: lint, import rules, unit + e2e (race), fuzz smoke, chart, bench smoke

# The e2e suites share one race-enabled binary instead of building seven.
E2E_BIN := $(CURDIR)/bin/credbroker-race

e2e-bin:
	$(GO) build -race -o $(E2E_BIN) ./cmd/credbroker

unit: e2e-bin ## unit tests and Ginkgo e2e suites, with the race detector
	CREDBROKER_E2E_BIN=$(E2E_BIN) $(GO) test -race -count=1 -timeout 12m ./...

e2e: e2e-bin ## only the Ginkgo e2e suites against the real binary
	CREDBROKER_E2E_BIN=$(E2E_BIN) $(GO) test -race -count=1 -timeout 10m ./e2e/...

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

check-deps: ## fail when an import breaks the layering rules of DESIGN.md
	$(GO) run ./internal/tools/checkdeps

fuzz-smoke: ## run every fuzz target for FUZZTIME (default 3s)
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

fuzz: ## run every fuzz target for a minute and keep the new corpus in testdata/fuzz
	KEEP_CORPUS=1 FUZZTIME=60s scripts/fuzz.sh

chart-test: ## helm lint, helm template and strict decoding of the chart
	@if [ -f charts/credbroker/test/go.mod ]; then cd charts/credbroker/test && $(GO) test -count=1 ./...; else echo "chart-test: no chart tests yet"; fi

bench: ## Go benchmarks and load runs against nginx; writes docs/benchmarks.md
	@if [ -x bench/run.sh ]; then bench/run.sh; else $(GO) test -run='^$$' -bench=. -benchmem ./...; fi

bench-smoke: ## a tiny run of the benchmark harness so it cannot rot
	@if [ -x bench/run.sh ]; then bench/run.sh --smoke; else $(GO) test -run='^$$' -bench=. -benchtime=1x ./...; fi

pgo: ## refresh cmd/credbroker/default.pgo (profile-guided optimisation) from the proxy benchmarks
	$(GO) test -run '^$$' -bench 'ServerLoopback|ProxyNoneHTTP1/http$$|ProxyOverhead' -benchtime 3s \
	  -o $${TMPDIR:-/tmp}/credbroker-pgo.test -cpuprofile $(CURDIR)/cmd/credbroker/default.pgo ./sidecar

soak: e2e-bin ## long fault and rotation runs of the hardening suite
	CREDBROKER_E2E_BIN=$(E2E_BIN) CREDBROKER_SOAK=1 $(GO) test -count=1 -timeout 60m ./e2e/hardening/...

docs: ## regenerate docs/cli.md from --help
	UPDATE_CLI_DOC=1 $(GO) test -count=1 -run '^TestCLIDocIsCurrent$$' ./cmd/credbroker

clean: ## remove build output
	rm -rf bin
