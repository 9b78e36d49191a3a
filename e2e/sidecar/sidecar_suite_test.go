// Package sidecar_test drives the built credbroker binary's `run` command
// as a process against mockauth (started inside the test): every route kind,
// tenants, forward-proxy mode, refusals, the token API, readiness, metrics,
// SIGHUP reload, SIGTERM drain and certificate rotation under load. Every
// spec scans everything the process printed, and its /metrics and /status,
// for the secrets it planted.
package sidecar_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

var bin string

func TestSidecar(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "credbroker run")
}

var _ = BeforeSuite(func() {
	bin = harness.Build()
})

var _ = AfterSuite(func() {
	gexec.CleanupBuildArtifacts()
})
