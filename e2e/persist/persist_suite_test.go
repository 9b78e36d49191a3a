// Package persist_test drives the built credbroker binary with its paired
// identity kept in a Kubernetes Secret (certificates[].persist) against
// mockauth's connector and an in-process fake API server
// (internal/kubesecret/fakeapi): a rescheduled pod starts from the Secret
// without a new one-time token, two replicas renewing at once make one
// renewal and end up with the same certificate, and an API server that is
// briefly down costs the app no request.
package persist_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

var bin string

func TestPersist(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "credbroker persist")
}

var _ = BeforeSuite(func() {
	bin = harness.Build()
})

var _ = AfterSuite(func() {
	gexec.CleanupBuildArtifacts()
})
