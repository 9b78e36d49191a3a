// Package harness is shared by the e2e suites, one home for what they all
// need: it builds the credbroker binary (with the race detector) and starts
// it as a process with captured output (Build, Start, StartSidecar); starts
// mockauth with the secrets its bindings hold (StartMock), writes the inputs
// `credbroker run` reads (WriteInputs, WriteFile, PairingURLFile) and gets a
// user token (UserToken); runs a recording HTTPS upstream (StartUpstream);
// reads the admin endpoints (Get, Metric); drives a load (StartLoad);
// checks that nothing the binary printed holds a planted secret (Secrets) or
// a crash (ExpectNoCrash); and sizes runs for make test or make soak (Soak,
// Scale). `make unit` builds the binary once and names it in
// $CREDBROKER_E2E_BIN, so the suites do not build seven copies.
//
//	bin := harness.Build()                 // in SynchronizedBeforeSuite or BeforeSuite
//	s := harness.Start(bin, harness.Env{"VCAP_SERVICES": vcap}, "bindings", "--json")
//	Eventually(s).Should(gexec.Exit(0))
//	secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
package harness
