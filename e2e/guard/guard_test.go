package guard_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
	"github.com/credbroker/credbroker/oauth1"
)

// seen is one request that reached the app behind the guard.
type seen struct {
	Path   string
	Header http.Header
	Body   string
}

type recorder struct {
	mu   sync.Mutex
	reqs []seen
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs = append(r.reqs, seen{req.URL.Path, req.Header.Clone(), string(b)})
	r.mu.Unlock()
	_, _ = io.WriteString(w, "from the app")
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}

func (r *recorder) last() seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	Expect(r.reqs).NotTo(BeEmpty())
	return r.reqs[len(r.reqs)-1]
}

var controller = pkix.Name{CommonName: "controller", Organization: []string{"Acme"}}

var _ = Describe("credbroker run with an inbound: section", Ordered, func() {
	var (
		srv       *mockauth.Server
		app       *recorder
		secrets   *harness.Secrets
		session   *gexec.Session
		guardURL  string
		adminURL  string
		serverCA  *testpki.CA
		clientCA  *testpki.CA
		apsSecret string
		caFile    string
		crlFile   string
	)
	const apsKey = "aps-controller"

	// client talks TLS to the guard (server name guard.localhost), from
	// source address from (127.0.0.1 when empty), with optional client
	// certificates.
	client := func(from string, certs ...tls.Certificate) *http.Client {
		d := &net.Dialer{Timeout: 5 * time.Second}
		if from != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
		}
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DialContext:     d.DialContext,
			TLSClientConfig: &tls.Config{RootCAs: serverCA.Pool(), ServerName: "guard.localhost", Certificates: certs},
		}}
	}
	send := func(c *http.Client, req *http.Request) (int, http.Header, string) {
		GinkgoHelper()
		if c == nil {
			c = client("")
		}
		resp, err := c.Do(req)
		Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	bearer := func(path, token string) (int, http.Header, string) {
		GinkgoHelper()
		req, _ := http.NewRequest("GET", guardURL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return send(nil, req)
	}
	secretToken := func() string {
		return clientToken(srv.Client(), srv.Info().URL+"/oauth/token", secretGrant(srv), secrets)
	}
	mint := func(mutate func(c map[string]any), opts ...mockauth.MintOption) string {
		GinkgoHelper()
		c, err := srv.Claims("provider")
		Expect(err).NotTo(HaveOccurred())
		if mutate != nil {
			mutate(c)
		}
		tok, err := srv.MintToken(c, opts...)
		Expect(err).NotTo(HaveOccurred())
		secrets.Add("minted token", tok)
		return tok
	}
	signer := func(secret string, now func() time.Time) *oauth1.Signer {
		GinkgoHelper()
		s, err := oauth1.NewSigner(apsKey, secret, oauth1.WithClock(now))
		Expect(err).NotTo(HaveOccurred())
		return s
	}
	signed := func(s *oauth1.Signer, method, signURL, sendURL, ctype, body string) *http.Request {
		GinkgoHelper()
		req, err := http.NewRequest(method, signURL, strings.NewReader(body))
		Expect(err).NotTo(HaveOccurred())
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		Expect(s.Sign(req)).To(Succeed())
		if sendURL != "" {
			req2, err := http.NewRequest(method, sendURL, strings.NewReader(body))
			Expect(err).NotTo(HaveOccurred())
			req2.Header = req.Header
			return req2
		}
		return req
	}
	writeCRL := func(serials ...*big.Int) {
		var entries []x509.RevocationListEntry
		for _, s := range serials {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
		}
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
			Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour),
			RevokedCertificateEntries: entries,
		}, clientCA.Cert, clientCA.Key)
		Expect(err).NotTo(HaveOccurred())
		tmp := crlFile + ".tmp"
		Expect(os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), 0o644)).To(Succeed())
		Expect(os.Rename(tmp, crlFile)).To(Succeed())
	}

	BeforeAll(func() {
		rig := newGuardRig()
		srv, app = rig.srv, rig.app
		secrets = &harness.Secrets{}
		secrets.Add("client secret", srv.ClientSecret(srv.Info().SecretClientID))
		dir, write := rig.dir, rig.write
		serverCA, clientCA = testpki.NewCA(), testpki.NewCA()
		leaf := serverCA.Issue(testpki.ServerAuth(), testpki.WithDNSNames("guard.localhost"), testpki.WithIPs("127.0.0.1"))
		write("server/tls.crt", leaf.CertPEM())
		write("server/tls.key", leaf.KeyPEM(testpki.PKCS8))
		write("server/ca.crt", serverCA.CertPEM())
		caFile = write("controller/ca.crt", clientCA.CertPEM())
		crlFile = filepath.Join(dir, "controller", "crl.pem")
		writeCRL()
		apsSecret = secrets.Plant("oauth1 consumer secret")
		keyFile := write("aps/key", []byte(apsKey+"\n"))
		secretFile := write("aps/secret", []byte(apsSecret+"\n"))
		vcap, mockCA := rig.vcap, rig.mockCA

		// Ports picked again when one was taken before credbroker bound it.
		session = harness.RetryTakenPort(func() *gexec.Session {
			inbound := harness.FreePort()
			admin := harness.FreePort()
			guardURL = fmt.Sprintf("https://127.0.0.1:%d", inbound)
			adminURL = fmt.Sprintf("http://127.0.0.1:%d", admin)
			cfg := fmt.Sprintf(`
listen: 127.0.0.1:%d
admin_listen: 127.0.0.1:%d
ca_file: %s
certificates:
  - name: server
    dir: %s
inbound:
  listen: 127.0.0.1:%d
  tls: {certificate: server}
  app: %s
  trusted_proxies: [127.0.0.1]
  rules:
    - {path: /api/, accept: [jwt], binding: %s, scopes: [read]}
    - {path: /admin/, accept: [jwt], binding: %s, scopes: [admin]}
    - {path: /aps/, accept: [oauth1], oauth1: {key_file: %s, secret_file: %s}}
    - {path: /callbacks/, accept: [mtls], ca_file: %s, crl_file: %s, subjects: ["CN=controller,O=Acme"]}
`, harness.FreePort(), admin, mockCA, filepath.Join(dir, "server"), inbound, rig.appURL,
				mockauth.SecretBindingName, mockauth.SecretBindingName, keyFile, secretFile, caFile, crlFile)
			cfgFile := write("credbroker.yaml", []byte(cfg))
			return harness.Start(bin, nil, "run", "--config", cfgFile, "--vcap-file", vcap, "--log-format", "json", "--log-level", "debug")
		})
		DeferCleanup(func() {
			if session.ExitCode() == -1 {
				session.Signal(syscall.SIGTERM)
				Eventually(session, 30*time.Second).Should(gexec.Exit())
			}
		})
		Eventually(func() error {
			req, _ := http.NewRequest("GET", guardURL+"/nothing-here", nil)
			resp, err := client("").Do(req)
			if err != nil {
				return err
			}
			resp.Body.Close()
			return nil
		}, 30*time.Second, 100*time.Millisecond).Should(Succeed(), "the inbound listener did not come up")
	})

	Describe("jwt", func() {
		It("forwards a token of the bound instance with the caller's identity", func() {
			tok := secretToken()
			before := app.count()
			status, _, body := bearer("/api/orders", tok)
			Expect(status).To(Equal(200), body)
			Expect(body).To(Equal("from the app"))
			Expect(app.count()).To(Equal(before + 1))
			got := app.last()
			info := srv.Info()
			Expect(got.Path).To(Equal("/api/orders"))
			Expect(got.Header.Get("X-Credbroker-Auth-Method")).To(Equal("jwt"))
			Expect(got.Header.Get("X-Credbroker-Client-Id")).To(Equal(info.SecretClientID))
			Expect(got.Header.Get("X-Credbroker-Zone")).To(Equal(info.Tenants[0].ZoneID))
			Expect(got.Header.Get("X-Credbroker-Tenant")).To(Equal(info.Tenants[0].Subdomain))
			Expect(got.Header.Get("X-Credbroker-Scopes")).To(ContainSubstring(info.SecretXSAppName + ".read"))
		})

		DescribeTable("refuses",
			func(path string, token func() string, status int, reason string) {
				before := app.count()
				code, hdr, body := bearer(path, token())
				Expect(code).To(Equal(status), body)
				Expect(body).To(ContainSubstring(reason))
				Expect(hdr.Get("WWW-Authenticate")).To(HavePrefix(`Bearer realm="credbroker"`))
				Expect(app.count()).To(Equal(before), "a refused request reached the app")
			},
			Entry("no token", "/api/x", func() string { return "" }, 401, "no_credentials"),
			Entry("a token of another instance", "/api/x", func() string {
				info := srv.Info()
				c := srv.Client(srv.BindingCertificate())
				return clientToken(c, info.CertURL+"/oauth/token", url.Values{"grant_type": {"client_credentials"}, "client_id": {info.X509ClientID}}, secrets)
			}, 401, "wrong_audience"),
			Entry("expired", "/api/x", func() string {
				return mint(func(c map[string]any) {
					c["iat"], c["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
				})
			}, 401, "expired"),
			Entry("not yet valid", "/api/x", func() string {
				return mint(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() })
			}, 401, "not_yet_valid"),
			Entry("wrong issuer", "/api/x", func() string {
				return mint(func(c map[string]any) { c["iss"] = "https://provider.evil.localhost/oauth/token" })
			}, 401, "wrong_issuer"),
			Entry("wrong audience", "/api/x", func() string {
				return mint(func(c map[string]any) {
					c["client_id"], c["cid"], c["azp"], c["aud"] = "other", "other", "other", []string{"other", "other!t1"}
				})
			}, 401, "wrong_audience"),
			Entry("tampered", "/api/x", func() string {
				parts := strings.Split(mint(nil), ".")
				payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
				payload = bytes.Replace(payload, []byte(".read"), []byte(".admi"), 1)
				parts[1] = base64.RawURLEncoding.EncodeToString(payload)
				return strings.Join(parts, ".")
			}, 401, "bad_signature"),
			Entry("alg none", "/api/x", func() string {
				parts := strings.Split(mint(nil), ".")
				return base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + parts[1] + "."
			}, 401, "bad_algorithm"),
			Entry("signed by a key the auth server does not publish", "/api/x", func() string {
				return mint(nil, mockauth.WithForeignKey())
			}, 401, "bad_signature"),
			Entry("missing a required scope", "/admin/x", func() string { return secretToken() }, 403, "insufficient_scope"),
		)

		It("picks up a rotated signing key", func() {
			status, _, _ := bearer("/api/x", secretToken())
			Expect(status).To(Equal(200))
			Expect(srv.RotateKeys()).To(Succeed())
			tok := secretToken()
			Eventually(func() int {
				code, _, _ := bearer("/api/x", tok)
				return code
			}, 15*time.Second, 250*time.Millisecond).Should(Equal(200))
		})
	})

	Describe("mtls", func() {
		get := func(certs ...tls.Certificate) (int, string) {
			req, _ := http.NewRequest("GET", guardURL+"/callbacks/ping", nil)
			code, _, body := send(client("", certs...), req)
			return code, body
		}
		It("forwards a certificate from the trusted CA with its subject", func() {
			leaf := clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controller))
			code, body := get(leaf.TLSCertificate())
			Expect(code).To(Equal(200), body)
			Expect(app.last().Header.Get("X-Credbroker-Cert-Subject")).To(Equal("CN=controller,O=Acme"))
			Expect(app.last().Header.Get("X-Credbroker-Auth-Method")).To(Equal("mtls"))
		})
		DescribeTable("refuses",
			func(leaf func() *testpki.Leaf, reason string) {
				before := app.count()
				var certs []tls.Certificate
				if l := leaf(); l != nil {
					certs = append(certs, l.TLSCertificate())
				}
				code, body := get(certs...)
				Expect(code).To(Equal(403), body)
				Expect(body).To(ContainSubstring(reason))
				Expect(app.count()).To(Equal(before))
			},
			Entry("no certificate", func() *testpki.Leaf { return nil }, "no_credentials"),
			Entry("a certificate from another CA", func() *testpki.Leaf {
				return testpki.NewCA().Issue(testpki.ClientAuth(), testpki.WithSubject(controller))
			}, "untrusted_certificate"),
			Entry("an expired certificate", func() *testpki.Leaf {
				return clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controller),
					testpki.WithNotBeforeAfter(time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)))
			}, "certificate_expired"),
			Entry("a subject not in the allowlist", func() *testpki.Leaf {
				return clientCA.Issue(testpki.ClientAuth(), testpki.WithCommonName("intruder"))
			}, "subject_not_allowed"),
		)
		It("refuses a certificate once the revocation list on disk names it", func() {
			leaf := clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controller))
			code, _ := get(leaf.TLSCertificate())
			Expect(code).To(Equal(200))
			writeCRL(leaf.Cert.SerialNumber)
			Eventually(func() string {
				_, body := get(leaf.TLSCertificate())
				return body
			}, 15*time.Second, 100*time.Millisecond).Should(ContainSubstring("revoked"))
		})
	})

	Describe("oauth1", func() {
		It("forwards a valid signature and the whole body, and refuses its replay", func() {
			s := signer(apsSecret, time.Now)
			req := signed(s, "POST", guardURL+"/aps/events", "", "application/json", `{"event":"created"}`)
			code, _, body := send(nil, req)
			Expect(code).To(Equal(200), body)
			Expect(app.last().Body).To(Equal(`{"event":"created"}`))
			Expect(app.last().Header.Get("X-Credbroker-Auth-Method")).To(Equal("oauth1"))
			Expect(app.last().Header.Get("X-Credbroker-Client-Id")).To(Equal(apsKey))

			again, _ := http.NewRequest("POST", guardURL+"/aps/events", strings.NewReader(`{"event":"created"}`))
			again.Header = req.Header.Clone()
			before := app.count()
			code, hdr, body := send(nil, again)
			Expect(code).To(Equal(401), body)
			Expect(body).To(ContainSubstring("replay"))
			Expect(hdr.Get("WWW-Authenticate")).To(ContainSubstring(`oauth_problem="nonce_used"`))
			Expect(app.count()).To(Equal(before))
		})
		DescribeTable("refuses",
			func(req func() *http.Request, reason string) {
				before := app.count()
				code, hdr, body := send(nil, req())
				Expect(code).To(Equal(401), body)
				Expect(body).To(ContainSubstring(reason))
				Expect(hdr.Get("WWW-Authenticate")).To(HavePrefix(`OAuth realm="credbroker"`))
				Expect(app.count()).To(Equal(before))
			},
			Entry("a stale timestamp", func() *http.Request {
				old := signer(apsSecret, func() time.Time { return time.Now().Add(-20 * time.Minute) })
				return signed(old, "GET", guardURL+"/aps/x", "", "", "")
			}, "stale"),
			Entry("a tampered body", func() *http.Request {
				r := signed(signer(apsSecret, time.Now), "POST", guardURL+"/aps/x", "", "application/json", `{"amount":1}`)
				r2, _ := http.NewRequest("POST", guardURL+"/aps/x", strings.NewReader(`{"amount":9}`))
				r2.Header = r.Header
				return r2
			}, "body_hash"),
			Entry("a wrong secret", func() *http.Request {
				return signed(signer("not-the-secret", time.Now), "GET", guardURL+"/aps/x", "", "", "")
			}, "bad_signature"),
		)
		It("verifies the external URL from a trusted proxy's X-Forwarded headers, and not from anyone else", func() {
			s := signer(apsSecret, time.Now)
			viaProxy := func(from string) (int, string) {
				req := signed(s, "PUT", "https://api.example.com/aps/orders/7?x=1", guardURL+"/aps/orders/7?x=1", "text/plain", "hi")
				req.Header.Set("X-Forwarded-Proto", "https")
				req.Header.Set("X-Forwarded-Host", "api.example.com")
				code, _, body := send(client(from), req)
				return code, body
			}
			code, body := viaProxy("127.0.0.1")
			Expect(code).To(Equal(200), body)
			Expect(app.last().Header.Get("X-Forwarded-Host")).To(Equal("api.example.com"))
			code, body = viaProxy("127.0.0.2") // not in trusted_proxies
			Expect(code).To(Equal(401), body)
			Expect(body).To(ContainSubstring("bad_signature"))
		})
	})

	It("strips identity headers the caller sent, on every path", func() {
		spoof := func(req *http.Request) {
			for _, h := range []string{"X-Credbroker-Subject", "X-Credbroker-Client-Id", "X-Credbroker-Zone", "X-Credbroker-Tenant",
				"X-Credbroker-Scopes", "X-Credbroker-Cert-Subject", "X-Credbroker-Auth-Method"} {
				req.Header.Set(h, "spoofed")
			}
		}
		req := signed(signer(apsSecret, time.Now), "GET", guardURL+"/aps/whoami", "", "", "")
		spoof(req)
		code, _, body := send(nil, req)
		Expect(code).To(Equal(200), body)
		for k, v := range app.last().Header {
			Expect(v).NotTo(ContainElement("spoofed"), k)
		}
		Expect(app.last().Header.Get("X-Credbroker-Subject")).To(Equal(apsKey))

		before := app.count()
		req, _ = http.NewRequest("GET", guardURL+"/no-rule/here", nil)
		spoof(req)
		code, _, body = send(nil, req)
		Expect(code).To(Equal(403), body)
		Expect(body).To(ContainSubstring("no_rule"))
		Expect(app.count()).To(Equal(before))
	})

	// Each spec of this Ordered container stands on its own: counters are
	// read as deltas of requests the spec makes itself.
	It("counts decisions in /metrics", func() {
		metric := func(series string) float64 {
			GinkgoHelper()
			resp, err := http.Get(adminURL + "/metrics")
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, series+" "); ok {
					f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
					Expect(err).NotTo(HaveOccurred(), line)
					return f
				}
			}
			return 0
		}
		const (
			jwtAccepted  = `credbroker_inbound_requests_total{method="jwt",outcome="accepted",reason=""}`
			replay       = `credbroker_inbound_requests_total{method="oauth1",outcome="refused",reason="replay"}`
			untrustedTLS = `credbroker_inbound_requests_total{method="mtls",outcome="refused",reason="untrusted_certificate"}`
		)
		before := map[string]float64{}
		for _, m := range []string{jwtAccepted, replay, untrustedTLS} {
			before[m] = metric(m)
		}

		code, _, body := bearer("/api/x", secretToken())
		Expect(code).To(Equal(200), body)
		req := signed(signer(apsSecret, time.Now), "GET", guardURL+"/aps/count", "", "", "")
		code, _, body = send(nil, req)
		Expect(code).To(Equal(200), body)
		again, _ := http.NewRequest("GET", guardURL+"/aps/count", nil)
		again.Header = req.Header.Clone()
		code, _, body = send(nil, again)
		Expect(code).To(Equal(401), body)
		foreign := testpki.NewCA().Issue(testpki.ClientAuth(), testpki.WithSubject(controller))
		req, _ = http.NewRequest("GET", guardURL+"/callbacks/ping", nil)
		code, _, body = send(client("", foreign.TLSCertificate()), req)
		Expect(code).To(Equal(403), body)

		Expect(metric(jwtAccepted)).To(Equal(before[jwtAccepted] + 1))
		Expect(metric(replay)).To(Equal(before[replay] + 1))
		Expect(metric(untrustedTLS)).To(Equal(before[untrustedTLS] + 1))
	})

	It("never logs a token, the consumer secret or the client secret, and stops cleanly on SIGTERM", func() {
		// A refusal of its own, so that the log line below does not depend on
		// the specs before.
		req, _ := http.NewRequest("GET", guardURL+"/no-rule/sigterm", nil)
		code, _, body := send(nil, req)
		Expect(code).To(Equal(403), body)
		session.Signal(syscall.SIGTERM)
		Eventually(session, 30*time.Second).Should(gexec.Exit(0))
		Expect(string(session.Err.Contents()) + string(session.Out.Contents())).To(ContainSubstring("inbound: refused"))
		secrets.ExpectNotIn(session.Out.Contents(), session.Err.Contents())
	})
})
