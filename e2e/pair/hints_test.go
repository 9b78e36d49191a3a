package pair_test

import (
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// Issue 18: a connector whose CA is not trusted gets the same hint as token.
var _ = Describe("credbroker pair without the connector's CA", func() {
	It("suggests --ca-file", func() {
		srv, err := mockauth.Start(mockauth.Options{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(srv.Close)
		u, tok, err := srv.NewPairingToken("orders")
		Expect(err).NotTo(HaveOccurred())
		s := harness.Start(bin, nil, "pair", "--token-url", u, "--cert-dir", filepath.Join(GinkgoT().TempDir(), "c"))
		Eventually(s).WithTimeout(60 * time.Second).Should(gexec.Exit(1))
		Expect(string(s.Err.Contents())).To(ContainSubstring("certificate signed by unknown authority"))
		Expect(string(s.Err.Contents())).To(ContainSubstring("(trust the connector's CA with --ca-file)"))
		Expect(string(s.Err.Contents())).NotTo(ContainSubstring(tok))
	})
})
