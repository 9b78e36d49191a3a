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
	// A CA file is judged by the rules of the inbound guard's ca_file
	// (internal/trust.Bundle): a bundle holding a leaf beside the mock's CA,
	// or a block that does not parse, is refused with exit 2 naming the file
	// and the block, where it used to be taken as long as one block parsed.
	It("refuses a --ca-file with a leaf or a broken block, naming the file and the block", func() {
		tmp := GinkgoT().TempDir()
		mockCA, err := os.ReadFile(filepath.Join(mockDir, "ca.crt"))
		Expect(err).NotTo(HaveOccurred())
		leaf := testpki.NewCA().Issue(testpki.WithCommonName("not a CA"))
		broken := "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
		for name, bundle := range map[string]string{
			"with-leaf.pem": string(mockCA) + string(leaf.CertPEM()),
			"broken.pem":    string(mockCA) + broken,
		} {
			file := filepath.Join(tmp, name)
			Expect(os.WriteFile(file, []byte(bundle), 0o644)).To(Succeed())
			s := harness.Start(bin, harness.Env{"CREDBROKER_VCAP_FILE": filepath.Join(mockDir, "vcap.json")}, "token", "--ca-file", file)
			Eventually(s).WithTimeout(60*time.Second).Should(gexec.Exit(2), name)
			Expect(string(s.Err.Contents())).To(And(ContainSubstring(file), ContainSubstring("certificate 2")), name)
		}
	})
})
