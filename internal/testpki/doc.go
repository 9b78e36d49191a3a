// Package testpki makes certificates for tests: a CA, intermediates, server
// and client leaves with chosen validity and key types, PEM in every key
// encoding the binding parser must understand, and the Kubernetes secret
// volume layout (a "..data" symlink to a timestamped directory) with atomic
// rotation.
//
// It is for tests only. Its functions panic on failures that cannot happen
// with a working crypto/rand, so tests stay short.
//
//	ca := testpki.NewCA()
//	srv := ca.Issue(testpki.WithDNSNames("localhost"), testpki.WithIPs("127.0.0.1"))
//	cli := ca.Issue(testpki.WithCommonName("app"), testpki.WithValidity(time.Minute))
//	certPEM, keyPEM := cli.CertPEM(), cli.KeyPEM(testpki.PKCS8)
package testpki
