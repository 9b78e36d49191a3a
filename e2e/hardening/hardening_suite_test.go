// Package hardening_test tries to break the built credbroker binary the way
// production will: hostile bindings and flags for every command, auth-server
// and connector faults under load, certificate rotation under load, process
// kills during a certificate write, hostile requests at the proxy, and a
// search for every planted secret in everything the binary wrote.
//
// The default run is sized for CI (make test). CREDBROKER_SOAK=1 (make soak)
// runs the long variants: more iterations, longer loads, more kills.
package hardening_test

import (
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

var bin string

func TestHardening(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "credbroker hardening")
}

var _ = BeforeSuite(func() {
	bin = harness.Build()
})

var _ = AfterSuite(func() {
	gexec.CleanupBuildArtifacts()
})

// soak and scale: the make soak variants (harness.Soak, harness.Scale).
var (
	soak  = harness.Soak
	scale = harness.Scale
)

// maxOutput bounds what a command may print for one bad input: a hostile
// binding must not turn into megabytes of error text.
const maxOutput = 64 << 10

// runBounded runs the binary to its end within limit and checks what every
// hostile input must give: no panic, no goroutine dump, bounded output, and
// none of the planted secrets.
func runBounded(secrets *harness.Secrets, limit time.Duration, env harness.Env, args ...string) *gexec.Session {
	GinkgoHelper()
	s := harness.Start(bin, env, args...)
	Eventually(s).WithTimeout(limit).Should(gexec.Exit(), "credbroker %v must finish within %s", args, limit)
	expectNoCrash(s.Out.Contents(), s.Err.Contents())
	Expect(len(s.Out.Contents())+len(s.Err.Contents())).To(BeNumerically("<", maxOutput), "output is bounded")
	if secrets != nil {
		secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
	}
	return s
}

// expectNoCrash fails when any output holds a Go panic, goroutine dump or
// data race.
var expectNoCrash = harness.ExpectNoCrash
