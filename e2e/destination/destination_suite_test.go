// Package destination_test drives the built credbroker binary's destination
// routes and `credbroker destination` against mockauth's Destination
// service and Connectivity proxy: every authentication type, Internet and
// OnPremise, two tenants, two users, a short Connectivity token lifetime,
// an outage of the Destination service, and every secret kept out of what
// the process prints.
package destination_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

var bin string

func TestDestination(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "credbroker destination routes")
}

var _ = BeforeSuite(func() {
	bin = harness.Build()
})

var _ = AfterSuite(func() {
	gexec.CleanupBuildArtifacts()
})
