package token_test

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
)

// Issue 18: a hanging token server is named with the phase that timed out.
var _ = Describe("credbroker token against a token server that hangs", func() {
	tokenAgainst := func(url, caFile string) string {
		GinkgoHelper()
		vcap := editedVCAP(mock.SecretBinding, func(c map[string]any) { c["url"] = url })
		s := harness.Start(bin, harness.Env{"CREDBROKER_VCAP_FILE": vcap},
			"token", "--binding", mock.SecretBinding, "--ca-file", caFile, "--timeout", "2s")
		Eventually(s).WithTimeout(60 * time.Second).Should(gexec.Exit(1))
		return string(s.Err.Contents())
	}

	It("says the TLS handshake timed out when the server accepts and stays silent", func() {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(l.Close)
		go func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				held = append(held, c)
			}
		}()
		url := fmt.Sprintf("https://auth.localhost:%d", l.Addr().(*net.TCPAddr).Port)
		out := tokenAgainst(url, filepath.Join(mockDir, "ca.crt"))
		Expect(out).To(ContainSubstring("POST " + url + "/oauth/token: no answer within"))
		Expect(out).To(ContainSubstring("(timed out waiting for the TLS handshake)"))
	})

	It("says the response headers timed out when the server takes the request and never answers", func() {
		ca := testpki.NewCA()
		leaf := ca.Issue(testpki.ServerAuth(), testpki.WithDNSNames("auth.localhost"))
		release := make(chan struct{})
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
		srv.TLS = testpki.ServerTLSConfig(leaf, nil)
		srv.StartTLS()
		DeferCleanup(srv.Close)
		DeferCleanup(func() { close(release) })
		caFile := filepath.Join(GinkgoT().TempDir(), "ca.crt")
		Expect(os.WriteFile(caFile, ca.CertPEM(), 0o600)).To(Succeed())
		url := fmt.Sprintf("https://auth.localhost:%d", srv.Listener.Addr().(*net.TCPAddr).Port)
		out := tokenAgainst(url, caFile)
		Expect(out).To(ContainSubstring("POST " + url + "/oauth/token: no answer within"))
		Expect(out).To(ContainSubstring("(timed out waiting for the response headers)"))
	})
})
