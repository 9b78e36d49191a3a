package main

import (
	"testing"

	. "github.com/onsi/gomega"
)

func TestValidateExitCodes(t *testing.T) {
	g := NewWithT(t)
	clearBindingsEnv(t)

	code, out, errOut := runCmd("validate")
	g.Expect(code).To(Equal(exitOK), errOut)
	g.Expect(out).To(Equal("config (defaults: no --config): ok (no bindings), 1 warning above\n"))
	g.Expect(errOut).To(HavePrefix("credbroker validate: warning: sidecar: config (defaults: no --config): routes: no routes"))

	code, _, errOut = runCmd("validate", "--bogus")
	g.Expect(code).To(Equal(exitInput), errOut)
	code, _, errOut = runCmd("validate", "extra")
	g.Expect(code).To(Equal(exitInput))
	g.Expect(errOut).To(ContainSubstring(`unexpected argument "extra"`))
	code, _, errOut = runCmd("validate", "--poll-interval", "0s")
	g.Expect(code).To(Equal(exitInput))
	g.Expect(errOut).To(ContainSubstring("--poll-interval"))
	code, out, errOut = runCmd("validate", "--vcap-file", "/nonexistent/vcap.json")
	g.Expect(code).To(Equal(exitInput))
	g.Expect(out).To(BeEmpty())
	g.Expect(errOut).To(ContainSubstring("/nonexistent/vcap.json"))
}
