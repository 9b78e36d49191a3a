package guard_test

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// cfXFCC is what the Cloud Foundry router (forwarded_client_cert:
// sanitize_set) puts in X-Forwarded-Client-Cert: the base64 of the DER.
func cfXFCC(l *testpki.Leaf) string { return base64.StdEncoding.EncodeToString(l.Cert.Raw) }

// envoyXFCC is one element as Envoy writes it with Cert, Subject and URI
// details: the PEM percent-encoded, the subject quoted.
func envoyXFCC(by string, l *testpki.Leaf) string {
	var pemEnc strings.Builder
	for _, c := range testpki.EncodeCerts(l.Cert) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			pemEnc.WriteByte(c)
		} else {
			fmt.Fprintf(&pemEnc, "%%%02X", c)
		}
	}
	sum := sha256.Sum256(l.Cert.Raw)
	return fmt.Sprintf(`By=%s;Hash=%s;Cert="%s";Subject="%s";URI=`, by, hex.EncodeToString(sum[:]), pemEnc.String(), l.Cert.Subject)
}

// clientCertHeaderSeen reports a client-certificate header (any spelling)
// among what reached the app.
func clientCertHeaderSeen(h http.Header) []string {
	var out []string
	for k := range h {
		n := strings.ReplaceAll(strings.ToLower(k), "_", "-")
		if n == "x-forwarded-client-cert" || n == "client-cert" || n == "x-client-cert" || strings.HasPrefix(n, "x-ssl-client") {
			out = append(out, k)
		}
	}
	return out
}

// gatewayURI is the Istio ingress gateway's identity, which the pod's
// sidecar records as URI= of the element it appends.
const gatewayURI = "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"

var _ = Describe("credbroker run: inbound mtls from a front proxy's X-Forwarded-Client-Cert", Ordered, func() {
	var (
		srv               *mockauth.Server
		app               *recorder
		clientCA, proxyCA *testpki.CA
		serverCA          *testpki.CA
		dir               string
		caFile            string
		plain             *harness.Sidecar // plain HTTP behind a router: xfcc from 127.0.0.1, format auto
		plainURL, tlsURL  string
		ctrl              *testpki.Leaf
	)

	// dial returns a client whose connections come from the local address
	// from (127.0.0.1 is a trusted proxy, 127.0.0.2 is not), with the TLS
	// client certificates certs when the guard is TLS.
	dial := func(from string, certs ...tls.Certificate) *http.Client {
		d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: d.DialContext,
			TLSClientConfig: &tls.Config{RootCAs: serverCA.Pool(), ServerName: "guard.localhost", Certificates: certs}}}
	}
	// call sends GET base+path from the address from with the XFCC lines
	// and an underscore look-alike, plus extra headers.
	call := func(c *http.Client, base, path string, xfcc []string, extra map[string]string) (int, string) {
		GinkgoHelper()
		req, err := http.NewRequest("GET", base+path, nil)
		Expect(err).NotTo(HaveOccurred())
		for _, v := range xfcc {
			req.Header.Add("X-Forwarded-Client-Cert", v)
		}
		req.Header.Set("X_Forwarded_Client_Cert", "look-alike")
		req.Header.Set("X-SSL-Client-Subject-DN", "CN=admin")
		for k, v := range extra {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitUp := func(sc *harness.Sidecar, c *http.Client, url string) {
		GinkgoHelper()
		Eventually(func() error {
			if code := sc.Session.ExitCode(); code != -1 {
				return StopTrying(fmt.Sprintf("credbroker run exited with %d: %s", code, sc.Session.Err.Contents()))
			}
			resp, err := c.Get(url + "/nothing-here")
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		}, 30*time.Second, 100*time.Millisecond).Should(Succeed(), "the inbound listener did not come up")
	}
	metrics := func(sc *harness.Sidecar) string {
		GinkgoHelper()
		resp, err := http.Get(sc.Admin + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}

	BeforeAll(func() {
		rig := newGuardRig()
		srv, app, dir = rig.srv, rig.app, rig.dir
		write := rig.write
		serverCA, clientCA, proxyCA = testpki.NewCA(), testpki.NewCA(), testpki.NewCA()
		ctrl = clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controller))
		leaf := serverCA.Issue(testpki.ServerAuth(), testpki.WithDNSNames("guard.localhost"))
		write("server/tls.crt", leaf.CertPEM())
		write("server/tls.key", leaf.KeyPEM(testpki.PKCS8))
		write("server/ca.crt", serverCA.CertPEM())
		caFile = write("controller/ca.crt", clientCA.CertPEM())
		proxyCAFile := write("gateway/ca.crt", proxyCA.CertPEM())
		opts := rig.sidecarOptions()

		// Cloud Foundry: the router terminates TLS and speaks plain HTTP to
		// the container; the guard believes XFCC from the router only.
		plain = harness.StartSidecarWith(bin, opts, func() string {
			pp := harness.FreePort()
			plainURL = fmt.Sprintf("http://127.0.0.1:%d", pp)
			return fmt.Sprintf(`
inbound:
  listen: 127.0.0.1:%d
  app: %s
  xfcc: {trusted_proxies: [127.0.0.1/32]}
  rules:
    - {path: /api/, accept: [jwt], binding: %s}
    - {path: /callbacks/, accept: [mtls], ca_file: %s, subjects: ["CN=controller,O=Acme"]}
`, pp, rig.appURL, mockauth.SecretBindingName, caFile)
		})

		// Kyma/Istio: the ingress gateway (SANITIZE_SET) and the pod's
		// sidecar (APPEND_FORWARD) each add an element; the sidecar talks
		// mTLS to the guard with its own certificate.
		tlsSC := harness.StartSidecarWith(bin, opts, func() string {
			tp := harness.FreePort()
			tlsURL = fmt.Sprintf("https://127.0.0.1:%d", tp)
			return fmt.Sprintf(`
certificates:
  - name: server
    dir: %s
inbound:
  listen: 127.0.0.1:%d
  tls: {certificate: server}
  app: %s
  xfcc:
    trusted_proxies: [127.0.0.1]
    format: envoy
    hops: 2
    proxy_ca_file: %s
    proxy_subjects: ["CN=sidecar"]
    proxy_uris: [%s]
  rules:
    - {path: /callbacks/, accept: [mtls], ca_file: %s, subjects: ["CN=controller,O=Acme"]}
`, filepath.Join(dir, "server"), tp, rig.appURL, proxyCAFile, gatewayURI, caFile)
		})

		waitUp(plain, dial("127.0.0.1"), plainURL)
		waitUp(tlsSC, dial("127.0.0.1"), tlsURL)
	})

	Describe("behind a router on plain HTTP (SAP BTP Cloud Foundry)", func() {
		DescribeTable("accepts a certificate from a trusted proxy with the certificate's identity",
			func(value func() string) {
				before := app.count()
				code, body := call(dial("127.0.0.1"), plainURL, "/callbacks/ping", []string{value()}, nil)
				Expect(code).To(Equal(200), body)
				Expect(app.count()).To(Equal(before + 1))
				got := app.last()
				Expect(got.Header.Get("X-Credbroker-Auth-Method")).To(Equal("mtls"))
				Expect(got.Header.Get("X-Credbroker-Cert-Subject")).To(Equal("CN=controller,O=Acme"))
				Expect(clientCertHeaderSeen(got.Header)).To(BeEmpty(), "a client-certificate header reached the app")
			},
			Entry("Cloud Foundry format (base64 DER)", func() string { return cfXFCC(ctrl) }),
			Entry("Envoy format", func() string { return envoyXFCC("spiffe://cluster.local/ns/istio-system/sa/gateway", ctrl) }),
		)

		DescribeTable("refuses",
			func(from string, value func() string, status int, reason string) {
				before := app.count()
				code, body := call(dial(from), plainURL, "/callbacks/ping", []string{value()}, nil)
				Expect(code).To(Equal(status), body)
				Expect(body).To(ContainSubstring(reason))
				Expect(app.count()).To(Equal(before), "a refused request reached the app")
			},
			Entry("a valid certificate from an untrusted peer (XFCC ignored)", "127.0.0.2", func() string { return cfXFCC(ctrl) }, 403, "xfcc_untrusted_peer"),
			Entry("a certificate from another CA", "127.0.0.1", func() string {
				return cfXFCC(testpki.NewCA().Issue(testpki.ClientAuth(), testpki.WithSubject(controller)))
			}, 403, "untrusted_certificate"),
			Entry("an expired certificate", "127.0.0.1", func() string {
				return envoyXFCC("", clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controller),
					testpki.WithNotBeforeAfter(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))))
			}, 403, "certificate_expired"),
			Entry("a subject outside the allowlist", "127.0.0.1", func() string {
				return cfXFCC(clientCA.Issue(testpki.ClientAuth(), testpki.WithCommonName("intruder")))
			}, 403, "subject_not_allowed"),
			Entry("a malformed header from a trusted proxy", "127.0.0.1", func() string { return `Cert="-----BEGIN%20CERT` }, 400, "xfcc_malformed"),
			Entry("base64 that is not a certificate", "127.0.0.1", func() string { return base64.StdEncoding.EncodeToString([]byte("not a cert")) }, 400, "xfcc_malformed"),
			Entry("an element without the certificate", "127.0.0.1", func() string { return `By=spiffe://gw;Hash=00;Subject="CN=controller,O=Acme"` }, 400, "xfcc_no_certificate"),
			Entry("a header over the size limit", "127.0.0.1", func() string { return strings.Repeat("A", 40<<10) }, 431, "xfcc_too_large"),
		)

		It("never passes a caller's client-certificate headers to the app, trusted peer or not", func() {
			token := clientToken(srv.Client(), srv.Info().URL+"/oauth/token", secretGrant(srv), nil)
			for _, from := range []string{"127.0.0.1", "127.0.0.2"} {
				code, body := call(dial(from), plainURL, "/api/orders", []string{cfXFCC(ctrl)}, map[string]string{
					"Authorization": "Bearer " + token, "Client-Cert": ":" + cfXFCC(ctrl) + ":"})
				Expect(code).To(Equal(200), body)
				Expect(app.last().Header.Get("X-Credbroker-Auth-Method")).To(Equal("jwt"))
				Expect(clientCertHeaderSeen(app.last().Header)).To(BeEmpty(), "from %s a client-certificate header reached the app", from)
			}
		})

		It("counts XFCC refusals by reason in /metrics and logs why", func() {
			m := metrics(plain)
			for _, reason := range []string{"xfcc_untrusted_peer", "xfcc_malformed", "xfcc_no_certificate", "xfcc_too_large", "untrusted_certificate"} {
				Expect(m).To(ContainSubstring(`credbroker_inbound_requests_total{method="mtls",outcome="refused",reason="` + reason + `"}`))
			}
			Expect(m).To(ContainSubstring(`credbroker_inbound_requests_total{method="mtls",outcome="accepted",reason=""} 2`))
			Expect(string(plain.Session.Err.Contents()) + string(plain.Session.Out.Contents())).To(ContainSubstring("not in inbound.xfcc.trusted_proxies"))
		})
	})

	Describe("behind an Istio ingress gateway and sidecar (Kyma), TLS with the proxy's certificate", func() {
		var sidecarCert tls.Certificate
		BeforeAll(func() {
			sidecarCert = proxyCA.Issue(testpki.ClientAuth(), testpki.WithCommonName("sidecar")).TLSCertificate()
		})
		gatewayLeaf := func() *testpki.Leaf { return proxyCA.Issue(testpki.ClientAuth(), testpki.WithCommonName("gateway")) }

		It("takes the client's element (the gateway's), not one the caller put before it", func() {
			forged := clientCA.Issue(testpki.ClientAuth(), testpki.WithCommonName("forged"))
			// What the caller sent, what the gateway appended (the client's
			// certificate), then what the sidecar appended (the gateway's).
			lines := []string{envoyXFCC("", forged) + "," + envoyXFCC("", ctrl), envoyXFCC("spiffe://cluster.local/ns/app/sa/app", gatewayLeaf()) + gatewayURI}
			code, body := call(dial("127.0.0.1", sidecarCert), tlsURL, "/callbacks/ping", lines, nil)
			Expect(code).To(Equal(200), body)
			Expect(app.last().Header.Get("X-Credbroker-Cert-Subject")).To(Equal("CN=controller,O=Acme"))
			Expect(clientCertHeaderSeen(app.last().Header)).To(BeEmpty())

			// The forged element in the client's place is verified, and fails.
			lines = []string{envoyXFCC("", ctrl) + "," + envoyXFCC("", forged), envoyXFCC("spiffe://cluster.local/ns/app/sa/app", gatewayLeaf()) + gatewayURI}
			code, body = call(dial("127.0.0.1", sidecarCert), tlsURL, "/callbacks/ping", lines, nil)
			Expect(code).To(Equal(403), body)
			Expect(body).To(ContainSubstring("subject_not_allowed"))
		})

		DescribeTable("refuses",
			func(from string, certs func() []tls.Certificate, lines func() []string, reason string) {
				before := app.count()
				code, body := call(dial(from, certs()...), tlsURL, "/callbacks/ping", lines(), nil)
				Expect(code).To(BeNumerically(">=", 400), body)
				Expect(body).To(ContainSubstring(reason))
				Expect(app.count()).To(Equal(before))
			},
			Entry("the trusted address without the proxy's certificate", "127.0.0.1",
				func() []tls.Certificate { return nil },
				func() []string { return []string{envoyXFCC("", ctrl), envoyXFCC("spiffe://s", gatewayLeaf())} }, "xfcc_proxy_not_allowed"),
			Entry("a proxy certificate with another subject", "127.0.0.1",
				func() []tls.Certificate { return []tls.Certificate{gatewayLeaf().TLSCertificate()} },
				func() []string { return []string{envoyXFCC("", ctrl), envoyXFCC("spiffe://s", gatewayLeaf())} }, "xfcc_proxy_not_allowed"),
			Entry("the proxy's certificate from an untrusted address (XFCC ignored)", "127.0.0.2",
				func() []tls.Certificate { return []tls.Certificate{sidecarCert} },
				func() []string { return []string{envoyXFCC("", ctrl), envoyXFCC("spiffe://s", gatewayLeaf())} }, "untrusted_certificate"),
			Entry("a client element passed on by a workload other than the gateway", "127.0.0.1",
				func() []tls.Certificate { return []tls.Certificate{sidecarCert} },
				func() []string {
					return []string{envoyXFCC("", ctrl), envoyXFCC("spiffe://cluster.local/ns/app/sa/app", gatewayLeaf()) + "spiffe://cluster.local/ns/other/sa/intruder"}
				}, "xfcc_proxy_not_allowed"),
			Entry("only one element for two hops", "127.0.0.1",
				func() []tls.Certificate { return []tls.Certificate{sidecarCert} },
				func() []string { return []string{envoyXFCC("", ctrl)} }, "xfcc_malformed"),
		)
	})
})
