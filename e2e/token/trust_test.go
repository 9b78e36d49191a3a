package token_test

import (
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
)

// token trusts the system roots plus --ca-file, as pair and run do (issue
// 17). The "system roots" are the mock's CA named by SSL_CERT_FILE (no
// network); --ca-file names a CA the mock's certificates do not chain to.
var _ = Describe("credbroker token: trust roots", func() {
	It("adds --ca-file to the system roots", func() {
		tmp := GinkgoT().TempDir()
		other := filepath.Join(tmp, "other-ca.pem")
		Expect(os.WriteFile(other, testpki.NewCA(testpki.WithCommonName("unrelated CA")).CertPEM(), 0o644)).To(Succeed())
		emptyDir := filepath.Join(tmp, "no-system-dir")
		Expect(os.Mkdir(emptyDir, 0o755)).To(Succeed())
		env := harness.Env{
			"SSL_CERT_FILE":        filepath.Join(mockDir, "ca.crt"),
			"SSL_CERT_DIR":         emptyDir,
			"CREDBROKER_VCAP_FILE": filepath.Join(mockDir, "vcap.json"),
		}
		s := harness.Start(bin, env, "token", "--ca-file", other)
		Eventually(s).WithTimeout(60 * time.Second).Should(gexec.Exit())
		Expect(s.ExitCode()).To(Equal(0), "the mock chains to the system roots: %s", s.Err.Contents())
		Expect(claims(string(s.Out.Contents()))).To(HaveKey("client_id"))

		env["SSL_CERT_FILE"] = other
		s = harness.Start(bin, env, "token", "--ca-file", other)
		Eventually(s).WithTimeout(60*time.Second).Should(gexec.Exit(1), "no root for the mock anywhere")
	})
})
