// Package bindings_test drives the built credbroker binary's `bindings`
// command against every binding source, checks its table and JSON output,
// its exit code 2 on each kind of bad input, and that no planted secret ever
// reaches stdout or stderr; and the commands that need no mock: `validate`
// (against `run` on the same input) and the shell completion scripts.
package bindings_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

var bin string

func TestBindings(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "credbroker bindings")
}

var _ = BeforeSuite(func() {
	bin = harness.Build()
})

var _ = AfterSuite(func() {
	gexec.CleanupBuildArtifacts()
})
