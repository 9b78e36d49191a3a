// Package fastforward_test drives the built credbroker binary (and the
// mock auth server) on a test clock the spec moves: the binary is built
// with the credbroker_testclock tag (harness.BuildTestClock) and reads its
// clock from a file the spec owns (internal/clock/testclock). Time can pass
// (Advance: wall and monotonic clocks, timers fire) or jump (Jump: the wall
// clock alone, as a host suspend or a clock step), so the specs cover clock
// jumps, trust-anchor rotations and a month of certificate and token life
// in minutes, with a steady load of app requests that must all succeed.
//
// The default run is sized for make test; CREDBROKER_SOAK=1 (make soak)
// runs the full 30-day soak.
package fastforward_test

import (
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
)

var bin string

func TestFastForward(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "credbroker on a test clock")
}

var _ = BeforeSuite(func() {
	bin = harness.BuildTestClock()
})

var _ = AfterSuite(func() {
	gexec.CleanupBuildArtifacts()
})

// soak reports whether the long variants run (harness.Soak).
var soak = harness.Soak

// expectNoCrash fails when any output holds a Go panic, goroutine dump or
// data race.
var expectNoCrash = harness.ExpectNoCrash
