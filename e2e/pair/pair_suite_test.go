// Package pair_test drives the built credbroker binary's `pair` command
// against mockauth's connector: the files it writes and their modes, the
// connection.json it leaves, the exit codes for a used token (1) and a
// malformed URL (2), and that the one-time token never reaches its output.
package pair_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

var bin string

func TestPair(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "credbroker pair")
}

var _ = BeforeSuite(func() {
	bin = harness.Build()
})

var _ = AfterSuite(func() {
	gexec.CleanupBuildArtifacts()
})
