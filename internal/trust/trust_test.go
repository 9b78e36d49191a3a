package trust_test

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/internal/trust"
)

// The CA file is added to the system roots, never in their place. The
// "system roots" are a testpki CA named by SSL_CERT_FILE (crypto/x509 reads
// it once per process: this is the only test of the package that asks).
func TestRootsAddTheFileToTheSystemRoots(t *testing.T) {
	g := NewWithT(t)
	dir := t.TempDir()
	system, extra := testpki.NewCA(testpki.WithCommonName("system root")), testpki.NewCA(testpki.WithCommonName("extra root"))
	sysFile, caFile := filepath.Join(dir, "system.pem"), filepath.Join(dir, "extra.pem")
	g.Expect(os.WriteFile(sysFile, system.CertPEM(), 0o600)).To(Succeed())
	g.Expect(os.WriteFile(caFile, extra.CertPEM(), 0o600)).To(Succeed())
	t.Setenv("SSL_CERT_FILE", sysFile)
	t.Setenv("SSL_CERT_DIR", t.TempDir())

	pool, err := trust.Roots(caFile)
	g.Expect(err).NotTo(HaveOccurred())
	for _, ca := range []*testpki.CA{system, extra} {
		leaf := ca.Issue(testpki.WithDNSNames("server.localhost"), testpki.ServerAuth())
		_, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: "server.localhost"})
		g.Expect(err).NotTo(HaveOccurred(), "a server of %s", ca.Cert.Subject)
	}

	nilPool, err := trust.Roots("")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(nilPool).To(BeNil(), "no file: the system roots (nil for crypto/tls)")

	empty := filepath.Join(dir, "empty.pem")
	g.Expect(os.WriteFile(empty, []byte("no pem here"), 0o600)).To(Succeed())
	_, err = trust.Roots(empty)
	g.Expect(errors.Is(err, trust.ErrNoCertificate)).To(BeTrue())
	g.Expect(err).To(MatchError(ContainSubstring(empty)))

	_, err = trust.Roots(filepath.Join(dir, "missing.pem"))
	g.Expect(errors.Is(err, os.ErrNotExist)).To(BeTrue())
}

// Bundle names the file and the block that is wrong, never the content.
func TestBundleNamesTheFileAndTheBlock(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	leaf := ca.Issue(testpki.WithCommonName("a leaf"))
	_, err := trust.Bundle("/etc/ca.pem", append(ca.CertPEM(), leaf.CertPEM()...))
	g.Expect(errors.Is(err, trust.ErrNotCA)).To(BeTrue())
	g.Expect(err.Error()).To(Equal("/etc/ca.pem holds a certificate that is not a CA: certificate 2 (CN=a leaf)"))
	_, err = trust.Bundle("/etc/ca.pem", append(ca.CertPEM(), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"...))
	g.Expect(errors.Is(err, trust.ErrBadCertificate)).To(BeTrue())
	g.Expect(err.Error()).To(HavePrefix("/etc/ca.pem holds a certificate that does not parse: certificate 2: "))
	_, err = trust.Bundle("", nil)
	g.Expect(err).To(MatchError(trust.ErrNoCertificate))
	cas, err := trust.Bundle("x", []byte(`"`+strings.ReplaceAll(string(ca.CertPEM()), "\n", `\n`)+`"`))
	g.Expect(err).NotTo(HaveOccurred(), "PEM as bindings carry it is repaired by pemx")
	g.Expect(cas).To(HaveLen(1))
}
