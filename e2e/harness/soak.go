package harness

import (
	"bytes"
	"os"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// SoakEnv set to 1 (make soak) runs the full-scale variants of floods,
// fault and rotation runs; without it the suites run at the size make test
// affords (CONTRIBUTING.md, "What runs where").
const SoakEnv = "CREDBROKER_SOAK"

// Soak reports whether the full-scale variants run.
func Soak() bool { return os.Getenv(SoakEnv) == "1" }

// Scale picks the make test or the make soak size of a run.
func Scale(test, soak int) int {
	if Soak() {
		return soak
	}
	return test
}

// ExpectNoCrash fails when any output holds a Go panic, a goroutine dump
// or a data race report.
func ExpectNoCrash(outputs ...[]byte) {
	GinkgoHelper()
	for _, out := range outputs {
		Expect(bytes.Contains(out, []byte("panic:"))).To(BeFalse(), "panic in output:\n%s", out)
		Expect(bytes.Contains(out, []byte("goroutine "))).To(BeFalse(), "goroutine dump in output:\n%s", out)
		Expect(bytes.Contains(out, []byte("DATA RACE"))).To(BeFalse(), "data race:\n%s", out)
	}
}
