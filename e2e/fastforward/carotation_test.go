package fastforward_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// issuerCN returns the issuer of the first certificate in a PEM file.
func issuerCN(path string) string {
	GinkgoHelper()
	b, err := os.ReadFile(path)
	Expect(err).NotTo(HaveOccurred())
	blk, _ := pem.Decode(b)
	Expect(blk).NotTo(BeNil())
	c, err := x509.ParseCertificate(blk.Bytes)
	Expect(err).NotTo(HaveOccurred())
	return c.Issuer.CommonName
}

// swapFile replaces path atomically (a temporary file in the same
// directory renamed over it): the watcher sees real file-system events.
func swapFile(path string, data []byte) {
	GinkgoHelper()
	tmp := path + ".tmp"
	Expect(os.WriteFile(tmp, data, 0o644)).To(Succeed())
	Expect(os.Rename(tmp, path)).To(Succeed())
}

// Issue 21 item 5: trust anchors rotate in four steps — add the new CA
// (both trusted), switch the issuer, let certificates roll over, remove
// the old one — and no app request may fail on the way.
var _ = Describe("trust-anchor rotation under load", func() {
	It("rotates the connector CA: renewal across the CA change works and no request fails", func() {
		r := newRig(mockauth.Options{TokenTTL: 60 * day, CertTTL: 7 * day})
		dir := filepath.Join(r.work, "connector")
		p := r.run(fmt.Sprintf(`routes:
  - {name: events, upstream: %s/events, auth: {type: mtls, certificate: connector}}
certificates:
  - {name: connector, dir: %s, pairing_url_file: %s, renew: true}
`, r.up.url, dir, r.pairingURLFile("rotate-ca")), nil)
		l := startLoad([]string{p.proxy + "/events/a", p.proxy + "/events/b"}, 4, nil)
		DeferCleanup(l.Halt)
		l.expectSteady(20)
		oldIssuer := issuerCN(filepath.Join(dir, "tls.crt"))
		oldPair, err := tls.LoadX509KeyPair(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
		Expect(err).NotTo(HaveOccurred())
		renewals0 := r.mock.Stats().Renewals

		By("adding the new CA: both trusted")
		Expect(r.mock.RotateConnectorCA(mockauth.CAAdd)).To(Succeed())
		l.expectSteady(20)

		By("switching the issuer, then letting the renewal come due (5 of 7 days)")
		Expect(r.mock.RotateConnectorCA(mockauth.CASwitch)).To(Succeed())
		r.clk.Advance(5 * day)
		Eventually(func() int { return r.mock.Stats().Renewals }).WithTimeout(60*time.Second).Should(BeNumerically(">", renewals0), "renewed")
		Eventually(func() string { return issuerCN(filepath.Join(dir, "tls.crt")) }).WithTimeout(30*time.Second).
			ShouldNot(Equal(oldIssuer), "the renewed certificate is issued by the new CA")
		Eventually(func() []string { return r.up.distinct("/events/", func(s seen) string { return s.Cert }) }).
			WithTimeout(60*time.Second).Should(HaveLen(2), "the new certificate in use")
		l.expectSteady(20)

		By("removing the old CA")
		Expect(r.mock.RotateConnectorCA(mockauth.CARemoveOld)).To(Succeed())
		l.expectSteady(20)
		// The removal took effect: the old certificate no longer gets in.
		old := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: r.ca.Pool(), Certificates: []tls.Certificate{oldPair}, Time: r.clk.Now}}}
		_, err = old.Get(r.up.url + "/events/old")
		Expect(err).To(HaveOccurred(), "the upstream still accepts a certificate of the removed CA")

		By("renewing again with a certificate of the new CA only")
		renewals1 := r.mock.Stats().Renewals
		r.clk.Advance(5 * day)
		Eventually(func() int { return r.mock.Stats().Renewals }).WithTimeout(60*time.Second).Should(BeNumerically(">", renewals1), "renewed under the new CA")
		Eventually(func() []string { return r.up.distinct("/events/", func(s seen) string { return s.Cert }) }).
			WithTimeout(60 * time.Second).Should(HaveLen(3))
		l.expectSteady(20)
		l.Halt()
		Expect(l.Failed.Load()).To(BeZero(), "failed app requests: %s", l.Failures())
		Expect(p.ready()).To(Equal(200))
	})

	It("rotates the inbound guard's client CA bundle with real file events and no failed request", func() {
		r := newRig(mockauth.Options{})
		oldCA := testpki.NewCA(testpki.WithValidity(2 * year))
		callerOld := oldCA.Issue(testpki.WithCommonName("controller"), testpki.ClientAuth(), testpki.WithValidity(year))

		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("app")) }))
		DeferCleanup(app.Close)
		serverDir := filepath.Join(r.in, "server")
		Expect(os.MkdirAll(serverDir, 0o755)).To(Succeed())
		srv := r.ca.Issue(testpki.WithDNSNames("localhost"), testpki.WithIPs("127.0.0.1"), testpki.ServerAuth(), testpki.WithValidity(year))
		Expect(os.WriteFile(filepath.Join(serverDir, "tls.crt"), srv.CertPEM(), 0o644)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(serverDir, "tls.key"), srv.KeyPEM(testpki.PKCS8), 0o600)).To(Succeed())
		bundleDir := filepath.Join(r.in, "callers")
		Expect(os.MkdirAll(bundleDir, 0o755)).To(Succeed())
		bundle := filepath.Join(bundleDir, "ca.crt")
		Expect(os.WriteFile(bundle, oldCA.CertPEM(), 0o644)).To(Succeed())

		var inbound int
		// A poll interval of an hour: only file events can pick the
		// bundle up within the spec.
		p := r.runWith(func() string {
			inbound = harness.FreePort()
			return fmt.Sprintf(`certificates:
  - {name: server, dir: %s}
inbound:
  listen: 127.0.0.1:%d
  tls: {certificate: server}
  app: %s
  rules:
    - {path: /callbacks/, accept: [mtls], ca_file: %s, subjects: ["CN=controller"]}
`, serverDir, inbound, app.URL, bundle)
		}, harness.Env{"CREDBROKER_POLL_INTERVAL": "1h"})

		var caller atomic.Pointer[tls.Certificate]
		oldCert := callerOld.TLSCertificate()
		caller.Store(&oldCert)
		callerClient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true, // every request a new handshake with the caller's current certificate
			TLSClientConfig: &tls.Config{RootCAs: r.ca.Pool(), Time: r.clk.Now,
				GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return caller.Load(), nil }}}}
		guardURL := fmt.Sprintf("https://127.0.0.1:%d", inbound)
		Eventually(func() error {
			resp, err := callerClient.Get(guardURL + "/callbacks/up")
			if err == nil {
				resp.Body.Close()
			}
			return err
		}).WithTimeout(30 * time.Second).Should(Succeed())
		reloads := func() int {
			return bytes.Count(p.s.Err.Contents(), []byte(`inbound: reloaded`)) + bytes.Count(p.s.Out.Contents(), []byte(`inbound: reloaded`))
		}
		l := startLoad([]string{guardURL + "/callbacks/a", guardURL + "/callbacks/b"}, 4, callerClient.Get)
		DeferCleanup(l.Halt)
		l.expectSteady(20)

		By("three days later, a new CA and new caller certificates, valid from now on the test clock")
		r.clk.Advance(3 * day)
		now := r.clk.Now()
		newCA := testpki.NewCA(testpki.WithNotBeforeAfter(now.Add(-time.Minute), now.Add(2*year)))
		callerNew := newCA.Issue(testpki.WithCommonName("controller"), testpki.ClientAuth(), testpki.WithNotBeforeAfter(now.Add(-time.Minute), now.Add(year)))
		newCert := callerNew.TLSCertificate()
		l.expectSteady(20)

		By("adding the new CA to the bundle: both trusted")
		n := reloads()
		swapFile(bundle, append(oldCA.CertPEM(), newCA.CertPEM()...))
		Eventually(reloads).WithTimeout(30*time.Second).Should(BeNumerically(">", n), "the guard reloaded the bundle on the file event")
		l.expectSteady(20)

		By("switching the callers to certificates of the new CA")
		caller.Store(&newCert)
		l.expectSteady(20)

		By("removing the old CA from the bundle")
		n = reloads()
		swapFile(bundle, newCA.CertPEM())
		Eventually(reloads).WithTimeout(30 * time.Second).Should(BeNumerically(">", n))
		l.expectSteady(20)
		l.Halt()
		Expect(l.Failed.Load()).To(BeZero(), "failed caller requests: %s", l.Failures())

		// The removal took effect: a caller with the old CA's certificate is refused.
		caller.Store(&oldCert)
		resp, err := callerClient.Get(guardURL + "/callbacks/old")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusForbidden), "the old CA is still trusted")
	})
})
