package guard

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/credbroker/credbroker/oauth1"
)

const (
	apsKey    = "aps-consumer"
	apsSecret = "PLANTED-aps-secret-5c1e" // must never show up in logs or responses
)

type oauthEnv struct {
	*env
	dir string
}

// startOAuth1 serves a plain-HTTP guard with /aps/ (oauth1) and /open/
// (oauth1 behind the same keys), trusting proxies as given.
func startOAuth1(t *testing.T, trusted []string, opts ...Option) *oauthEnv {
	t.Helper()
	dir := t.TempDir()
	keyFile := tempFile(t, dir, "key", []byte(apsKey+"\n"))
	secretFile := tempFile(t, dir, "secret", []byte(apsSecret+"\n"))
	cfg := &Config{TrustedProxies: trusted, Rules: []Rule{
		{Path: "/aps/", Accept: []Method{MethodOAuth1}, OAuth1: &OAuth1{KeyFile: keyFile, SecretFile: secretFile}},
	}}
	return &oauthEnv{env: startGuard(t, cfg, nil, opts...), dir: dir}
}

func signer(t *testing.T, secret string, now func() time.Time) *oauth1.Signer {
	t.Helper()
	s, err := oauth1.NewSigner(apsKey, secret, oauth1.WithClock(now))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signedRequest signs method signedURL (what the client believes it calls)
// and sends it to the guard at sendURL.
func signedRequest(t *testing.T, s *oauth1.Signer, method, signedURL, sendURL, ctype, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, signedURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if err := s.Sign(req); err != nil {
		t.Fatal(err)
	}
	if sendURL != "" {
		u, _ := url.Parse(sendURL)
		req.URL = u
		req.Host = u.Host
	}
	return req
}

func TestOAuth1(t *testing.T) {
	g := NewWithT(t)
	e := startOAuth1(t, nil)
	s := signer(t, apsSecret, time.Now)

	// Valid, JSON body: the app gets the whole body and the identity.
	req := signedRequest(t, s, "POST", e.url+"/aps/events?tenant=t1", "", "application/json", `{"event":"x"}`)
	resp, body := do(t, nil, req)
	g.Expect(resp.StatusCode).To(Equal(200), body)
	seen := e.app.last()
	g.Expect(seen.Body).To(Equal(`{"event":"x"}`))
	g.Expect(seen.Query).To(Equal("tenant=t1"))
	g.Expect(seen.Header.Get(HeaderAuthMethod)).To(Equal("oauth1"))
	g.Expect(seen.Header.Get(HeaderClientID)).To(Equal(apsKey))
	g.Expect(seen.Header.Get(HeaderSubject)).To(Equal(apsKey))

	// Replayed: the same request again.
	replay := signedRequest(t, s, "POST", e.url+"/aps/events?tenant=t1", "", "application/json", `{"event":"x"}`)
	replay.Header.Set("Authorization", req.Header.Get("Authorization"))
	resp, body = do(t, nil, replay)
	g.Expect(resp.StatusCode).To(Equal(401))
	g.Expect(body).To(ContainSubstring(ReasonReplay))
	g.Expect(resp.Header.Get("WWW-Authenticate")).To(Equal(`OAuth realm="credbroker", oauth_problem="nonce_used"`))

	// Valid, form body.
	resp, body = do(t, nil, signedRequest(t, s, "POST", e.url+"/aps/form", "", "application/x-www-form-urlencoded", "a=1&b=two+words"))
	g.Expect(resp.StatusCode).To(Equal(200), body)
	g.Expect(e.app.last().Body).To(Equal("a=1&b=two+words"))

	for _, tc := range []struct {
		name    string
		req     func() *http.Request
		status  int
		reason  string
		problem string
	}{
		{"stale", func() *http.Request {
			old := signer(t, apsSecret, func() time.Time { return time.Now().Add(-10 * time.Minute) })
			return signedRequest(t, old, "GET", e.url+"/aps/x", "", "", "")
		}, 401, ReasonStale, "timestamp_refused"},
		{"tampered body", func() *http.Request {
			r := signedRequest(t, s, "POST", e.url+"/aps/x", "", "application/json", `{"amount":1}`)
			r2, _ := http.NewRequest("POST", r.URL.String(), strings.NewReader(`{"amount":100}`))
			r2.Header = r.Header
			return r2
		}, 401, ReasonBodyHash, "signature_invalid"},
		{"tampered form", func() *http.Request {
			r := signedRequest(t, s, "POST", e.url+"/aps/x", "", "application/x-www-form-urlencoded", "amount=1")
			r2, _ := http.NewRequest("POST", r.URL.String(), strings.NewReader("amount=100"))
			r2.Header = r.Header
			return r2
		}, 401, ReasonBadSignature, "signature_invalid"},
		{"tampered path", func() *http.Request {
			return signedRequest(t, s, "GET", e.url+"/aps/x", e.url+"/aps/y", "", "")
		}, 401, ReasonBadSignature, "signature_invalid"},
		{"wrong secret", func() *http.Request {
			return signedRequest(t, signer(t, "not-the-secret", time.Now), "GET", e.url+"/aps/x", "", "", "")
		}, 401, ReasonBadSignature, "signature_invalid"},
		{"unknown consumer", func() *http.Request {
			o, _ := oauth1.NewSigner("someone", apsSecret)
			return signedRequest(t, o, "GET", e.url+"/aps/x", "", "", "")
		}, 401, ReasonUnknownConsumer, "consumer_key_unknown"},
		{"malformed header", func() *http.Request {
			r, _ := http.NewRequest("GET", e.url+"/aps/x", nil)
			r.Header.Set("Authorization", `OAuth oauth_consumer_key="a", oauth_consumer_key="b"`)
			return r
		}, 401, ReasonMalformed, "parameter_rejected"},
		{"no credentials", func() *http.Request {
			r, _ := http.NewRequest("GET", e.url+"/aps/x", nil)
			return r
		}, 401, ReasonNoCredentials, ""},
		{"bearer on an oauth1 rule", func() *http.Request {
			r, _ := http.NewRequest("GET", e.url+"/aps/x", nil)
			r.Header.Set("Authorization", "Bearer abc")
			return r
		}, 401, ReasonNoCredentials, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			before := e.app.count()
			resp, body := do(t, nil, tc.req())
			g.Expect(resp.StatusCode).To(Equal(tc.status), body)
			g.Expect(body).To(ContainSubstring(tc.reason))
			g.Expect(e.app.count()).To(Equal(before))
			want := `OAuth realm="credbroker"`
			if tc.problem != "" {
				want += `, oauth_problem="` + tc.problem + `"`
			}
			g.Expect(resp.Header.Get("WWW-Authenticate")).To(Equal(want))
		})
	}
	g.Expect(e.logs.String()).NotTo(ContainSubstring(apsSecret))
	g.Expect(e.logs.String()).To(ContainSubstring(`"reason":"replay"`))
	g.Expect(e.obs.get("oauth1/accepted")).To(Equal(2))
	g.Expect(e.obs.get("oauth1/refused/" + ReasonReplay)).To(Equal(1))
}

func TestOAuth1BodyTooLarge(t *testing.T) {
	g := NewWithT(t)
	e := startOAuth1(t, nil, WithMaxBody(16))
	s, _ := oauth1.NewSigner(apsKey, apsSecret, oauth1.WithMaxBody(1<<20))
	resp, body := do(t, nil, signedRequest(t, s, "POST", e.url+"/aps/x", "", "application/json", strings.Repeat("x", 17)))
	g.Expect(resp.StatusCode).To(Equal(http.StatusRequestEntityTooLarge), body)
	g.Expect(e.app.count()).To(Equal(0))
}

// Behind a proxy the client signs the external URL; the guard rebuilds it
// from X-Forwarded-Proto/-Host, but only when the peer is a trusted proxy.
func TestOAuth1ThroughProxy(t *testing.T) {
	s := signer(t, apsSecret, time.Now)
	send := func(t *testing.T, e *oauthEnv) (*http.Response, string) {
		req := signedRequest(t, s, "PUT", "https://API.Example.com/aps/orders/7?x=1", e.url+"/aps/orders/7?x=1", "text/plain", "hello")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-Host", "api.example.com")
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		return do(t, nil, req)
	}
	t.Run("trusted", func(t *testing.T) {
		g := NewWithT(t)
		e := startOAuth1(t, []string{"127.0.0.0/8"})
		resp, body := send(t, e)
		g.Expect(resp.StatusCode).To(Equal(200), body)
		seen := e.app.last()
		g.Expect(seen.Header.Get("X-Forwarded-Host")).To(Equal("api.example.com"))
		g.Expect(seen.Header.Get("X-Forwarded-Proto")).To(Equal("https"))
		g.Expect(seen.Header.Get("X-Forwarded-For")).To(Equal("203.0.113.9, 127.0.0.1"))
	})
	t.Run("untrusted peer", func(t *testing.T) {
		g := NewWithT(t)
		e := startOAuth1(t, []string{"10.0.0.0/8"})
		resp, body := send(t, e)
		g.Expect(resp.StatusCode).To(Equal(401), body)
		g.Expect(body).To(ContainSubstring(ReasonBadSignature))
		g.Expect(e.logs.String()).To(ContainSubstring(`signed URL http://127.0.0.1:`))
		g.Expect(e.app.count()).To(Equal(0))
	})
	t.Run("untrusted peer: forwarded headers replaced", func(t *testing.T) {
		g := NewWithT(t)
		e := startOAuth1(t, nil)
		req := signedRequest(t, s, "GET", e.url+"/aps/x", "", "", "")
		req.Header.Set("X-Forwarded-Host", "spoofed.example.com")
		req.Header.Set("X-Forwarded-For", "198.51.100.1")
		resp, body := do(t, nil, req)
		g.Expect(resp.StatusCode).To(Equal(200), body)
		seen := e.app.last()
		g.Expect(seen.Header.Get("X-Forwarded-Host")).To(Equal(strings.TrimPrefix(e.url, "http://")))
		g.Expect(seen.Header.Get("X-Forwarded-For")).To(Equal("127.0.0.1"))
	})
}

func TestOAuth1SecretRotated(t *testing.T) {
	g := NewWithT(t)
	e := startOAuth1(t, nil, WithResync(time.Hour))
	runGuard(t, e.g)
	writeFile(t, e.dir+"/secret", []byte("rotated-secret"))
	g.Eventually(func() int {
		resp, _ := do(t, nil, signedRequest(t, signer(t, "rotated-secret", time.Now), "GET", e.url+"/aps/x", "", "", ""))
		return resp.StatusCode
	}, 5*time.Second, 20*time.Millisecond).Should(Equal(200))
	resp, _ := do(t, nil, signedRequest(t, signer(t, apsSecret, time.Now), "GET", e.url+"/aps/x", "", "", ""))
	g.Expect(resp.StatusCode).To(Equal(401))
	g.Expect(e.logs.String()).NotTo(ContainSubstring("rotated-secret"))
}

// Identity headers from the caller never reach the app, whatever the path
// and whatever the outcome.
func TestSpoofedIdentityHeadersStripped(t *testing.T) {
	g := NewWithT(t)
	e := startOAuth1(t, nil)
	s := signer(t, apsSecret, time.Now)
	req := signedRequest(t, s, "GET", e.url+"/aps/x", "", "", "")
	for _, h := range []string{HeaderSubject, HeaderClientID, HeaderZone, HeaderTenant, HeaderScopes, HeaderCertSubject, HeaderAuthMethod, "X-Credbroker-Admin"} {
		req.Header.Set(h, "spoofed")
	}
	req.Header["x-credbroker-subject"] = []string{"spoofed-lower"} // non-canonical key
	resp, body := do(t, nil, req)
	g.Expect(resp.StatusCode).To(Equal(200), body)
	seen := e.app.last()
	g.Expect(seen.Header.Get(HeaderSubject)).To(Equal(apsKey))
	g.Expect(seen.Header.Values(HeaderSubject)).To(HaveLen(1))
	g.Expect(seen.Header.Get(HeaderAuthMethod)).To(Equal("oauth1"))
	for _, h := range []string{HeaderZone, HeaderTenant, HeaderScopes, HeaderCertSubject, "X-Credbroker-Admin"} {
		g.Expect(seen.Header.Values(h)).To(BeEmpty(), h)
	}
	for k, v := range seen.Header {
		g.Expect(v).NotTo(ContainElement(ContainSubstring("spoofed")), k)
	}
}

func TestNoRuleAndDotSegments(t *testing.T) {
	g := NewWithT(t)
	e := startOAuth1(t, nil)
	s := signer(t, apsSecret, time.Now)
	// A perfectly signed request outside every rule is still refused.
	resp, body := do(t, nil, signedRequest(t, s, "GET", e.url+"/admin/x", "", "", ""))
	g.Expect(resp.StatusCode).To(Equal(403), body)
	g.Expect(body).To(ContainSubstring(ReasonNoRule))
	g.Expect(resp.Header.Get("WWW-Authenticate")).To(BeEmpty())
	for _, p := range []string{"/aps/../admin/x", "/aps/%2e%2e/admin/x", "/aps/./x", "/aps/..%2fadmin"} {
		req, _ := http.NewRequest("GET", e.url+"/", nil)
		req.URL.Opaque = p // sent as is
		resp, body := do(t, nil, req)
		g.Expect(resp.StatusCode).To(Equal(400), p+" "+body)
	}
	g.Expect(e.app.count()).To(Equal(0))
	g.Expect(e.obs.get("none/refused/" + ReasonNoRule)).To(Equal(1))
}

func TestPrometheusObserver(t *testing.T) {
	g := NewWithT(t)
	reg := prometheus.NewRegistry()
	obs, err := PrometheusObserver(reg)
	g.Expect(err).NotTo(HaveOccurred())
	again, err := PrometheusObserver(reg) // the same collector when registered twice
	g.Expect(err).NotTo(HaveOccurred())
	e := startOAuth1(t, nil, WithObserver(obs))
	s := signer(t, apsSecret, time.Now)
	do(t, nil, signedRequest(t, s, "GET", e.url+"/aps/x", "", "", ""))
	do(t, nil, signedRequest(t, signer(t, "wrong", time.Now), "GET", e.url+"/aps/x", "", "", ""))
	again.Refused(MethodNone, ReasonNoRule)
	g.Expect(testutil.ToFloat64(obs.(promObserver).c.WithLabelValues("oauth1", "accepted", ""))).To(Equal(1.0))
	g.Expect(testutil.ToFloat64(obs.(promObserver).c.WithLabelValues("oauth1", "refused", ReasonBadSignature))).To(Equal(1.0))
	g.Expect(testutil.ToFloat64(obs.(promObserver).c.WithLabelValues("none", "refused", ReasonNoRule))).To(Equal(1.0))
	n, err := testutil.GatherAndCount(reg, "credbroker_inbound_requests_total")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(n).To(Equal(3))
}
