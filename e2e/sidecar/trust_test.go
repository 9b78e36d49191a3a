package sidecar_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// run trusts the system roots plus ca_file for pairing at start, token
// fetches and upstreams, as pair and token do (issue 17). The "system
// roots" are the mock's and the upstream's CAs named by SSL_CERT_FILE (no
// network); ca_file names a CA neither chains to.
var _ = Describe("credbroker run: trust roots", func() {
	It("adds ca_file to the system roots for pairing, tokens and upstreams", func() {
		e := newEnv(mockauth.Options{})
		other := e.write("other-ca.pem", testpki.NewCA(testpki.WithCommonName("unrelated CA")).CertPEM())
		emptyDir := filepath.Join(e.dir, "no-system-dir")
		Expect(os.Mkdir(emptyDir, 0o755)).To(Succeed())
		config := fmt.Sprintf(`
certificates:
  - {name: connector, dir: %s, pairing_url_file: %s, renew: true}
routes:
  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: %s}}
  - {name: events, upstream: %s/events, auth: {type: mtls, certificate: connector}}
`, filepath.Join(e.dir, "connector"), e.pairingURLFile("trust"), e.up.url, e.mock.Info().SecretBinding, e.up.url)
		r := harness.StartSidecar(bin, harness.SidecarOptions{
			Dir: e.dir, CAFile: other, VCAPFile: e.vcapFile,
			Env:       harness.Env{"SSL_CERT_FILE": e.caFile, "SSL_CERT_DIR": emptyDir},
			AfterExit: func(r *harness.Sidecar) { e.secrets.ExpectNotIn(r.Session.Out.Contents(), r.Session.Err.Contents()) },
		}, config)
		Eventually(func() int { c, _ := httpGet(r.Admin + "/readyz"); return c }).WithTimeout(60*time.Second).Should(Equal(200), func() string { return string(r.Session.Err.Contents()) })
		for _, path := range []string{"/orders/a", "/events/b"} {
			resp, body := call("GET", r.Proxy+path, nil, nil)
			Expect(resp.StatusCode).To(Equal(200), "%s: %s", path, body)
		}
		Expect(e.up.last("/events/b").ClientCN).To(Equal("trust"), "the certificate paired at start")
	})
})
