# credbroker — run `make` for the list of targets.
.DEFAULT_GOAL := help
SHELL := /usr/bin/env bash
GO ?= go
FUZZTIME ?= 3s
# Build targets stamp version, commit and commit time with -ldflags, from git
# (internal/tools/release/stamp): Go's own VCS stamping misses git worktrees,
# tarballs and Docker contexts. Tests need no stamp. Evaluated only when used.
RELEASE := internal/tools/release
STAMP = $(shell cd $(RELEASE) && $(GO) run ./cmd/stamp)

.PHONY: help run test unit e2e e2e-bin docs lint check-deps fuzz fuzz-smoke chart-test release-test bench bench-smoke pgo soak build stamp stamp-tag chart version dist image clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/credbroker, stamped with the version, commit and commit time
	$(GO) build -buildvcs=auto -ldflags "$(STAMP)" -o bin/credbroker ./cmd/credbroker

stamp: ## print the -ldflags that stamp the version (for docker build --build-arg STAMP=…)
	@echo '$(STAMP)'

stamp-tag: ## print the image tag (and chart appVersion) of the version
	@cd $(RELEASE) && $(GO) run ./cmd/stamp -tag

chart: ## package the chart into dist/ with appVersion = the image tag of this version (as make image tags it)
	cd charts/credbroker/test && $(GO) run ./cmd/chartpkg -chart .. -o ../../../dist -app-version "$$(cd ../../../$(RELEASE) && $(GO) run ./cmd/stamp -tag)"

version: ## print the version the build targets stamp (the tag, or a Go pseudo-version)
	@cd $(RELEASE) && $(GO) run ./cmd/stamp -version

dist: ## release archives for linux and darwin (amd64, arm64), CycloneDX SBOMs and SHA256SUMS in dist/ (reproducible)
	rm -rf dist/credbroker_* dist/SHA256SUMS
	cd $(RELEASE) && $(GO) run ./cmd/dist -o ../../../dist

image: ## the OCI image (linux/amd64 + linux/arm64) without a Docker daemon: dist/image (OCI layout), dist/image.tar; PUSH=registry/repo pushes it
	cd $(RELEASE) && $(GO) run ./cmd/mkimage -o ../../../dist/image -tar ../../../dist/image.tar $(if $(PUSH),-push $(PUSH))

run: ## the demo on the embedded mock: mock auth server, sample upstream and the sidecar, no setup
	$(GO) run ./cmd/credbroker demo

test: lint check-deps unit fuzz-smoke chart-test release-test observability-test bench-smoke ## everything CI runs: lint, import rules, unit + e2e (race), fuzz smoke, chart, release artefacts, bench smoke

# The e2e suites share one race-enabled binary instead of building seven,
# and e2e/fastforward a second one with the test clock (build tag
# credbroker_testclock, docs/testing.md); release builds never set the tag.
E2E_BIN := $(CURDIR)/bin/credbroker-race
E2E_TESTCLOCK_BIN := $(CURDIR)/bin/credbroker-race-testclock
E2E_ENV = CREDBROKER_E2E_BIN=$(E2E_BIN) CREDBROKER_E2E_TESTCLOCK_BIN=$(E2E_TESTCLOCK_BIN)

e2e-bin:
	$(GO) build -race -o $(E2E_BIN) ./cmd/credbroker
	$(GO) build -race -tags credbroker_testclock -o $(E2E_TESTCLOCK_BIN) ./cmd/credbroker

unit: e2e-bin interop-deps shell-deps ## unit tests and Ginkgo e2e suites, with the race detector
	CREDBROKER_INTEROP=1 $(E2E_ENV) $(GO) test -race -count=1 -timeout 12m ./...

e2e: e2e-bin interop-deps shell-deps ## only the Ginkgo e2e suites against the real binary
	CREDBROKER_INTEROP=1 $(E2E_ENV) $(GO) test -race -count=1 -timeout 10m ./e2e/...

.PHONY: interop-deps shell-deps
interop-deps: ## the Node (jose, npm ci) and Python (Debian's python3-jwt, python3-requests) clients of the interop test e2e/interop
	scripts/interop-deps.sh

shell-deps: ## zsh and fish (Debian's packages), for the test of the zsh and fish completion scripts
	scripts/shell-deps.sh

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd $(RELEASE) && $(GO) vet ./...

check-deps: ## fail when an import breaks the layering rules of DESIGN.md
	$(GO) run ./internal/tools/checkdeps

fuzz-smoke: ## run every fuzz target for FUZZTIME (default 3s)
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

fuzz: ## run every fuzz target for a minute and keep the new corpus in testdata/fuzz
	KEEP_CORPUS=1 FUZZTIME=60s scripts/fuzz.sh

chart-test: ## helm lint, helm template and strict decoding of the chart
	@if [ -f charts/credbroker/test/go.mod ]; then cd charts/credbroker/test && $(GO) test -count=1 ./...; else echo "chart-test: no chart tests yet"; fi

release-test: ## make dist and make image for this machine's platform: archive, checksums, SBOM, reproducibility, image contents, push and pull
	cd $(RELEASE) && $(GO) test -count=1 -timeout 15m ./...

.PHONY: observability-test
observability-test: e2e-bin ## promtool check/test of the alert rules; the dashboard's and rules' PromQL against a real /metrics scrape
	CREDBROKER_E2E_BIN=$(E2E_BIN) scripts/observability-test.sh

bench: ## Go benchmarks and load runs against nginx; writes docs/benchmarks.md
	@if [ -x bench/run.sh ]; then bench/run.sh; else $(GO) test -run='^$$' -bench=. -benchmem ./...; fi

bench-smoke: ## a tiny run of the benchmark harness so it cannot rot
	@if [ -x bench/run.sh ]; then bench/run.sh --smoke; else $(GO) test -run='^$$' -bench=. -benchtime=1x ./...; fi

pgo: ## refresh cmd/credbroker/default.pgo (profile-guided optimisation) from the proxy benchmarks
	$(GO) test -run '^$$' -bench 'ServerLoopback|ProxyNoneHTTP1/http$$|ProxyOverhead' -benchtime 3s \
	  -o $${TMPDIR:-/tmp}/credbroker-pgo.test -cpuprofile $(CURDIR)/cmd/credbroker/default.pgo ./sidecar

soak: e2e-bin ## full-scale floods (guard, destination), long fault and rotation runs of the hardening suite, and 30 simulated days on the test clock (e2e/fastforward)
	$(E2E_ENV) CREDBROKER_SOAK=1 $(GO) test -count=1 -timeout 60m ./e2e/hardening/... ./e2e/fastforward/... ./e2e/guard/... ./e2e/destination/...

docs: ## regenerate docs/cli.md from --help
	UPDATE_CLI_DOC=1 $(GO) test -count=1 -run '^TestCLIDocIsCurrent$$' ./cmd/credbroker

clean: ## remove build output
	rm -rf bin dist
