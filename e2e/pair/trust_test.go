package pair_test

import (
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// Every command trusts the system roots plus --ca-file (issue 17): pair used
// to trust --ca-file alone. Without network the "system roots" are the mock's
// CA named by SSL_CERT_FILE (SSL_CERT_DIR empty), and --ca-file names a CA
// the mock's certificates do not chain to.
var _ = Describe("credbroker pair: trust roots", func() {
	It("adds --ca-file to the system roots instead of replacing them", func() {
		srv, err := mockauth.Start(mockauth.Options{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Close)
		tmp := GinkgoT().TempDir()
		system := filepath.Join(tmp, "system-roots.pem")
		Expect(os.WriteFile(system, srv.CACertPEM(), 0o644)).To(Succeed())
		other := filepath.Join(tmp, "other-ca.pem")
		Expect(os.WriteFile(other, testpki.NewCA(testpki.WithCommonName("unrelated CA")).CertPEM(), 0o644)).To(Succeed())
		emptyDir := filepath.Join(tmp, "no-system-dir")
		Expect(os.Mkdir(emptyDir, 0o755)).To(Succeed())
		env := harness.Env{"SSL_CERT_FILE": system, "SSL_CERT_DIR": emptyDir}

		u, _, err := srv.NewPairingToken("orders")
		Expect(err).NotTo(HaveOccurred())
		dir := filepath.Join(tmp, "connector")
		s := harness.Start(bin, env, "pair", "--token-url", u, "--cert-dir", dir, "--ca-file", other)
		Eventually(s, 60*time.Second).Should(gexec.Exit())
		Expect(s.ExitCode()).To(Equal(0), "the mock's certificate chains to the system roots: %s", s.Err.Contents())
		Expect(filepath.Join(dir, "tls.crt")).To(BeAnExistingFile())

		By("and without the mock's CA anywhere, TLS verification still fails")
		u, _, err = srv.NewPairingToken("orders")
		Expect(err).NotTo(HaveOccurred())
		s = harness.Start(bin, harness.Env{"SSL_CERT_FILE": other, "SSL_CERT_DIR": emptyDir}, "pair", "--token-url", u, "--cert-dir", filepath.Join(tmp, "second"), "--ca-file", other)
		Eventually(s, 60*time.Second).Should(gexec.Exit())
		Expect(s.ExitCode()).To(Equal(1))
		Expect(string(s.Err.Contents())).To(ContainSubstring("certificate"))
	})
})
