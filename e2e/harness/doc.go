// Package harness is shared by the e2e suites: it builds the credbroker
// binary (with the race detector), starts it as a process with captured
// output, and checks that nothing it printed contains a planted secret.
// `make unit` builds the binary once and names it in $CREDBROKER_E2E_BIN,
// so the suites do not build seven copies.
//
//	bin := harness.Build()                 // in SynchronizedBeforeSuite or BeforeSuite
//	s := harness.Start(bin, harness.Env{"VCAP_SERVICES": vcap}, "bindings", "--json")
//	Eventually(s).Should(gexec.Exit(0))
//	secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
package harness
