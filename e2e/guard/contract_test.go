package guard_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// fold is how the guard compares header names (docs/security.md): case
// folded, every byte other than a letter or digit counted as "-".
func fold(k string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case 'A' <= r && r <= 'Z':
			return r + 'a' - 'A'
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			return r
		}
		return '-'
	}, k)
}

// identityOf is every header the app saw whose name folds to
// x-credbroker-*, keyed by the folded name.
func identityOf(h http.Header) map[string][]string {
	out := map[string][]string{}
	for k, v := range h {
		if f := fold(k); strings.HasPrefix(f, "x-credbroker-") {
			out[f] = append(out[f], v...)
		}
	}
	return out
}

// The inbound guard's request contract (issue 15 items 1, 4 and 13): what a
// caller sends can never change the identity the app is told, the path the
// app routes on is the path the guard matched, and headers a front proxy
// would vouch for cannot be passed through. Requests are written on raw TCP
// sockets, because Go's HTTP client would normalise most of these shapes.
var _ = Describe("the inbound guard's request contract", Ordered, func() {
	var (
		srv       *mockauth.Server
		app       *recorder
		secrets   *harness.Secrets
		sc        *harness.Sidecar
		inboundHP string
	)

	// raw writes one HTTP/1.1 request (request line, header lines, no body)
	// and reads the response.
	raw := func(target string, headers ...string) (*http.Response, string) {
		GinkgoHelper()
		conn, err := net.DialTimeout("tcp", inboundHP, 5*time.Second)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		Expect(conn.SetDeadline(time.Now().Add(30 * time.Second))).To(Succeed())
		var b strings.Builder
		fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: app.example\r\n", target)
		for _, h := range headers {
			b.WriteString(h + "\r\n")
		}
		b.WriteString("\r\n")
		_, err = io.WriteString(conn, b.String())
		Expect(err).NotTo(HaveOccurred())
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		Expect(err).NotTo(HaveOccurred())
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body)
	}
	mint := func(mutate func(c map[string]any)) string {
		GinkgoHelper()
		c, err := srv.Claims("provider")
		Expect(err).NotTo(HaveOccurred())
		if mutate != nil {
			mutate(c)
		}
		tok, err := srv.MintToken(c)
		Expect(err).NotTo(HaveOccurred())
		secrets.Add("minted token", tok)
		return tok
	}
	bearer := func(tok string) string { return "Authorization: Bearer " + tok }
	expectRefused := func(resp *http.Response, body string, status int, reason string, appBefore int) {
		GinkgoHelper()
		Expect(resp.StatusCode).To(Equal(status), body)
		Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal(reason), body)
		Expect(body).To(ContainSubstring(reason))
		Expect(app.count()).To(Equal(appBefore), "a refused request reached the app")
	}

	BeforeAll(func() {
		rig := newGuardRig()
		srv, app = rig.srv, rig.app
		secrets = &harness.Secrets{}
		secrets.Add("client secret", srv.ClientSecret(srv.Info().SecretClientID))

		// /jwt/secret and /params/a/b need the admin scope, which the minted
		// tokens lack; everything else needs read. A path the app would read
		// as /jwt/secret while the guard matched the catch-all is the
		// escalation the path checks prevent.
		b := mockauth.SecretBindingName
		opts := rig.sidecarOptions()
		opts.AfterExit = func(sc *harness.Sidecar) {
			secrets.ExpectNotIn(sc.Session.Out.Contents(), sc.Session.Err.Contents())
		}
		sc = harness.StartSidecarWith(bin, opts, func() string {
			inboundHP = fmt.Sprintf("127.0.0.1:%d", harness.FreePort())
			return fmt.Sprintf(`
inbound:
  listen: %s
  app: %s
  rules:
    - {path: /jwt/secret, accept: [jwt], binding: %s, scopes: [admin]}
    - {path: /params/a/b, accept: [jwt], binding: %s, scopes: [admin]}
    - {path: /params/, accept: [jwt], binding: %s, scopes: [read], allow_path_params: true}
    - {path: /, accept: [jwt], binding: %s, scopes: [read]}
`, inboundHP, rig.appURL, b, b, b, b)
		})
		waitListening(inboundHP)
	})

	Describe("identity headers (item 1)", func() {
		It("refuses a Connection header that names an identity header or Authorization", func() {
			tok := mint(nil)
			for _, conn := range []string{
				"close, X-Credbroker-Subject, X-Credbroker-Tenant",
				"X-Credbroker-Scopes",
				"keep-alive, x_credbroker_zone",
				"Authorization",
			} {
				before := app.count()
				resp, body := raw("/api/x", bearer(tok), "Connection: "+conn)
				expectRefused(resp, body, 400, "connection_names_reserved", before)
			}
		})

		It("passes exactly the guard's identity values, whatever look-alikes the caller sent", func() {
			tok := mint(nil)
			resp, body := raw("/api/whoami", bearer(tok))
			Expect(resp.StatusCode).To(Equal(200), body)
			want := identityOf(app.last().Header)
			info := srv.Info()
			Expect(want).To(HaveKeyWithValue("x-credbroker-auth-method", []string{"jwt"}))
			Expect(want).To(HaveKeyWithValue("x-credbroker-tenant", []string{info.Tenants[0].Subdomain}))
			Expect(want).To(HaveKeyWithValue("x-credbroker-client-id", []string{info.SecretClientID}))
			Expect(want).To(HaveKey("x-credbroker-subject"))

			resp, body = raw("/api/whoami", bearer(tok),
				"X_Credbroker_Subject: admin",
				"X-Credbroker_Tenant: provider",
				"x-credbroker-zone: spoofed-zone",
				"X.Credbroker.Scopes: spoofed.admin",
				"X-CREDBROKER-AUTH-METHOD: mtls",
				"X-Credbroker-Cert_Subject: CN=root",
				"X-Credbroker-Impersonate: admin",
			)
			Expect(resp.StatusCode).To(Equal(200), body)
			Expect(identityOf(app.last().Header)).To(Equal(want))
		})
	})

	Describe("path canonicalisation (item 4)", func() {
		DescribeTable("refuses a path the app could read differently from the guard",
			func(target string) {
				before := app.count()
				resp, body := raw(target, bearer(mint(nil)))
				expectRefused(resp, body, 400, "path_not_canonical", before)
			},
			Entry("..; (servlet containers resolve it)", "/x/..;/jwt/secret"),
			Entry("..%3b", "/x/..%3b/jwt/secret"),
			Entry("a ; parameter on a rule without allow_path_params", "/jwt;a=b/secret"),
			Entry("an empty segment", "//jwt/secret"),
			Entry("%2e%2e", "/x/%2e%2e/jwt/secret"),
			Entry("%2E%2e", "/x/%2E%2e/jwt/secret"),
			Entry(".%2e", "/x/.%2e/jwt/secret"),
			Entry("double-encoded dots", "/x/%252e%252e/jwt/secret"),
			Entry("a raw backslash", `/x\..\jwt/secret`),
			Entry("an encoded backslash", "/x%5c..%5cjwt/secret"),
			Entry("an encoded slash", "/jwt%2fsecret"),
			Entry("a # (a fragment, which clients never send)", "/jwt#/secret"),
			Entry("an encoded NUL (C code truncates there)", "/jwt%00/secret"),
			Entry("..; on a rule with allow_path_params", "/params/..;/jwt/secret"),
			Entry("an encoded ; on a rule with allow_path_params", "/params/doc%3bjsessionid=1"),
			Entry("a ; parameter that changes the rule (a servlet reads /params/a/b)", "/params/a;x=1/b"),
			// Found by the re-review of issue 15: an app that decodes twice
			// reads these as /jwt/secret, but the guard matched the catch-all.
			Entry("a double-encoded letter (a twice-decoding app reads /jwt/secret)", "/%256Awt/secret"),
			Entry("a triple-encoded letter", "/%25256Awt/secret"),
			Entry("overlong UTF-8 dots (%c0%ae)", "/x/%c0%ae%c0%ae/jwt/secret"),
			Entry("dots behind an escape that does not decode (..;%zz after two decodings)", "/params/%252e%252e;%25zz/jwt/secret"),
		)

		It("forwards ; parameters under a rule with allow_path_params, as sent", func() {
			resp, body := raw("/params/doc;jsessionid=abc?q=1", bearer(mint(nil)))
			Expect(resp.StatusCode).To(Equal(200), body)
			Expect(app.last().Path).To(Equal("/params/doc;jsessionid=abc"))
		})
	})

	Describe("headers a caller cannot pass through (item 13)", func() {
		It("refuses a second Authorization header", func() {
			before := app.count()
			resp, body := raw("/api/x", bearer(mint(nil)), bearer(mint(nil)))
			expectRefused(resp, body, 400, "duplicate_authorization", before)
		})

		It("strips X-Client-Cert, X-Original-URL, X-Rewrite-URL, look-alikes of X-Forwarded-*, and untrusted forwarding headers", func() {
			resp, body := raw("/api/x", bearer(mint(nil)),
				"X-Client-Cert: MIIBfake",
				"X_Client_Cert: MIIBfake",
				"X-Original-URL: /jwt/secret",
				"X-Rewrite-URL: /jwt/secret",
				"X_Original_URL: /jwt/secret",
				"X_Forwarded_For: 6.6.6.6",
				"X-Forwarded_Host: evil.example",
				"X-Forwarded-Prefix: /admin",
				"X-Forwarded-Port: 8443",
				"X-Real-IP: 10.0.0.1",
			)
			Expect(resp.StatusCode).To(Equal(200), body)
			seen := app.last().Header
			for k := range seen {
				f := fold(k)
				Expect(f).NotTo(BeElementOf("x-client-cert", "x-original-url", "x-rewrite-url"), k)
				if strings.HasPrefix(f, "x-forwarded-") {
					Expect(k).NotTo(ContainSubstring("_"), k)
				}
			}
			// The peer is not in trusted_proxies: forwarding headers are the guard's or absent.
			Expect(seen).NotTo(HaveKey("X-Forwarded-Prefix"))
			Expect(seen).NotTo(HaveKey("X-Forwarded-Port"))
			Expect(seen).NotTo(HaveKey("X-Real-Ip"))
			Expect(seen.Get("X-Forwarded-For")).To(Equal("127.0.0.1"))
			Expect(seen.Get("X-Forwarded-Host")).To(Equal("app.example"))
		})

		It("strips the client-certificate headers other front proxies use (nginx, IIS ARR, AWS ALB)", func() {
			resp, body := raw("/api/x", bearer(mint(nil)),
				"SSL_CLIENT_CERT: MIIBfake",
				"Ssl-Client-Cert: MIIBfake",
				"Ssl-Client-Verify: SUCCESS",
				"X-Client-Verify: SUCCESS",
				"X-ARR-ClientCert: MIIBfake",
				"X-Amzn-Mtls-Clientcert: MIIBfake",
				"X-Amzn-Mtls-Clientcert-Leaf: MIIBfake",
				"X.SSL.Client.Cert: MIIBfake",
			)
			Expect(resp.StatusCode).To(Equal(200), body)
			for k := range app.last().Header {
				f := fold(k)
				Expect(f).NotTo(Or(HavePrefix("ssl-client-"), HavePrefix("x-ssl-client"), Equal("x-client-verify"),
					Equal("x-arr-clientcert"), HavePrefix("x-amzn-mtls-clientcert")), k)
			}
		})

		It("refuses a token issued in the future beyond the leeway", func() {
			before := app.count()
			resp, body := raw("/api/x", bearer(mint(func(c map[string]any) { c["iat"] = time.Now().Add(time.Hour).Unix() })))
			expectRefused(resp, body, 401, "not_yet_valid", before)
			Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring("issued in the future"))
		})
	})

	It("names the reason of every refusal and counts it in /metrics", func() {
		before := app.count()
		resp, body := raw("/api/x")
		expectRefused(resp, body, 401, "no_credentials", before)

		mresp, err := http.Get(sc.Admin + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		defer mresp.Body.Close()
		m, _ := io.ReadAll(mresp.Body)
		for _, reason := range []string{"connection_names_reserved", "path_not_canonical", "duplicate_authorization"} {
			Expect(string(m)).To(MatchRegexp(`credbroker_inbound_requests_total\{method="none",outcome="refused",reason="%s"\} [1-9]`, reason))
		}
		Expect(string(m)).To(MatchRegexp(`credbroker_inbound_requests_total\{method="jwt",outcome="refused",reason="not_yet_valid"\} [1-9]`))
	})
})
