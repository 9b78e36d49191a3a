package sidecar

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/testpki"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// seen is what the test upstream received.
type seen struct {
	Method   string
	Path     string
	RawPath  string
	Query    string
	Host     string
	Header   http.Header
	Body     string
	ClientCN string
	Proto    string
}

// upstream is a TLS server on 127.0.0.1 (certificate for localhost) that
// echoes what it received as JSON. Client certificates from the CA are
// verified when given.
type upstream struct {
	srv   *httptest.Server
	ca    *testpki.CA
	url   string // https://localhost:PORT
	seen  chan seen
	extra http.HandlerFunc // optional: replaces the echo
}

func newUpstream(t *testing.T, ca *testpki.CA) *upstream {
	t.Helper()
	return newUpstreamProto(t, ca, true)
}

func newUpstreamProto(t *testing.T, ca *testpki.CA, h2 bool) *upstream {
	t.Helper()
	u := &upstream{ca: ca, seen: make(chan seen, 100)}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u.extra != nil {
			u.extra(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		s := seen{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery, Host: r.Host, Header: r.Header.Clone(), Body: string(body), Proto: r.Proto}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			s.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		u.seen <- s
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s)
	}))
	leaf := ca.Issue(testpki.WithDNSNames("localhost"), testpki.WithIPs("127.0.0.1"), testpki.ServerAuth())
	u.srv.TLS = testpki.ServerTLSConfig(leaf, nil)
	u.srv.TLS.ClientAuth = tls.VerifyClientCertIfGiven
	u.srv.TLS.ClientCAs = ca.Pool()
	u.srv.EnableHTTP2 = h2
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	u.srv.StartTLS()
	t.Cleanup(u.srv.Close)
	_, port, _ := net.SplitHostPort(u.srv.Listener.Addr().String())
	u.url = "https://localhost:" + port
	return u
}

func (u *upstream) last(t *testing.T) seen {
	t.Helper()
	select {
	case s := <-u.seen:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("upstream received nothing")
	}
	return seen{}
}

// testProxy serves a Proxy for yaml (with ca_file set to the CA) on a plain
// loopback listener.
type testProxy struct {
	p       *Proxy
	srv     *httptest.Server
	metrics *Metrics
}

func newTestProxy(t *testing.T, ca *testpki.CA, yaml string, deps Deps, opts ...Option) *testProxy {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte("ca_file: "+caFile+"\n"+yaml), "config test")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	p, err := NewProxy(cfg, deps, append([]Option{WithMetrics(m)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p)
	t.Cleanup(func() { srv.Close(); p.Close() })
	return &testProxy{p: p, srv: srv, metrics: m}
}

func do(t *testing.T, method, u string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// raw sends a request line and headers as written and returns the status
// line, the X-Credbroker-Error header and the body start.
func raw(t *testing.T, addr, request string) (status int, reason string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header.Get(HeaderError)
}

func TestProxyBearer(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	tokens := &fakeTokens{}
	tp := newTestProxy(t, ca, fmt.Sprintf(`
routes:
  - name: orders
    upstream: %s/base
    auth: {type: bearer, binding: my-xsuaa, scopes: [orders.read], tenant: fixed, tenant_header: X-Tenant}
`, up.url), Deps{Tokens: tokens})

	resp, _ := do(t, "GET", tp.srv.URL+"/orders/v1/items?x=1&y=%2F", nil, map[string]string{
		"Authorization":     "Basic YXBwOmFwcHNlY3JldA==",
		"X-Tenant":          "t1",
		"X-Forwarded-For":   "6.6.6.6",
		"X-Forwarded-Host":  "evil.example.com",
		"X-Forwarded-Proto": "https",
		"Forwarded":         "for=6.6.6.6",
		"X-App":             "kept",
	})
	g.Expect(resp.StatusCode).To(Equal(200))
	s := up.last(t)
	g.Expect(s.Path).To(Equal("/base/v1/items"))
	g.Expect(s.Query).To(Equal("x=1&y=%2F"))
	g.Expect(s.Host).To(Equal(strings.TrimPrefix(up.url, "https://")))
	g.Expect(s.Header.Get("Authorization")).To(Equal("Bearer tok-my-xsuaa-t1-0"), "the app's credential is replaced")
	g.Expect(s.Header.Values("Authorization")).To(HaveLen(1))
	g.Expect(s.Header.Get("X-Tenant")).To(BeEmpty(), "the tenant header is removed")
	g.Expect(s.Header.Get("X-Forwarded-For")).To(Equal("127.0.0.1"), "the app's X-Forwarded-For is not trusted")
	g.Expect(s.Header.Get("X-Forwarded-Host")).To(Equal(strings.TrimPrefix(tp.srv.URL, "http://")))
	g.Expect(s.Header.Get("X-Forwarded-Proto")).To(Equal("http"))
	g.Expect(s.Header.Get("Forwarded")).To(BeEmpty())
	g.Expect(s.Header.Get("X-App")).To(Equal("kept"))
	g.Expect(s.Proto).To(Equal("HTTP/2.0"), "HTTP/2 is used where the upstream offers it")

	// Without the header: the fixed tenant.
	resp, _ = do(t, "POST", tp.srv.URL+"/orders", strings.NewReader("payload"), nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	s = up.last(t)
	g.Expect(s.Path).To(Equal("/base"))
	g.Expect(s.Body).To(Equal("payload"))
	g.Expect(s.Header.Get("Authorization")).To(Equal("Bearer tok-my-xsuaa-fixed-0"))

	// Escaped characters in the path survive.
	resp, _ = do(t, "GET", tp.srv.URL+"/orders/a%2Fb/c%20d", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	s = up.last(t)
	g.Expect(s.Path).To(Equal("/base/a/b/c d"))
	g.Expect(s.RawPath).To(Equal("/base/a%2Fb/c%20d"))

	calls := tokens.calls()
	g.Expect(calls).NotTo(BeEmpty())
	g.Expect(calls[0].Scopes).To(Equal([]string{"orders.read"}))
	g.Expect(calls[0].Grant).To(Equal(GrantClientCredentials))
	g.Expect(calls[0].Req.Tenant).To(Equal("t1"))

	// A rotated token is used on the next request.
	tokens.rotate()
	do(t, "GET", tp.srv.URL+"/orders/x", nil, nil)
	g.Expect(up.last(t).Header.Get("Authorization")).To(Equal("Bearer tok-my-xsuaa-fixed-1"))

	g.Expect(testutil.ToFloat64(tp.metrics.requests.WithLabelValues("orders", "200"))).To(BeNumerically("==", 4))
	g.Expect(testutil.CollectAndCount(tp.metrics.duration)).To(Equal(1))
}

func TestProxyKeepsAppCredentialsWhenConfigured(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	tp := newTestProxy(t, ca, fmt.Sprintf(`
routes:
  - {name: keep, upstream: %[1]s, auth: {type: bearer, binding: b, replace_app_credentials: false}}
  - {name: open, upstream: %[1]s, auth: {type: none}}
`, up.url), Deps{Tokens: &fakeTokens{}})
	do(t, "GET", tp.srv.URL+"/keep/x", nil, map[string]string{"Authorization": "Bearer app-own"})
	g.Expect(up.last(t).Header.Get("Authorization")).To(Equal("Bearer app-own"))
	do(t, "GET", tp.srv.URL+"/keep/x", nil, nil)
	g.Expect(up.last(t).Header.Get("Authorization")).To(Equal("Bearer tok-b-provider-0"))
	do(t, "GET", tp.srv.URL+"/open/x", nil, map[string]string{"Authorization": "Bearer app-own"})
	g.Expect(up.last(t).Header.Get("Authorization")).To(Equal("Bearer app-own"), "a none route adds nothing and takes nothing away")
}

func TestProxyJWTBearer(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	tokens := &fakeTokens{}
	tp := newTestProxy(t, ca, fmt.Sprintf(`
routes:
  - {name: user, upstream: %s, auth: {type: bearer, binding: b, grant: jwt-bearer}}
`, up.url), Deps{Tokens: tokens})
	resp, _ := do(t, "GET", tp.srv.URL+"/user/x", nil, map[string]string{"Authorization": "Bearer user-jwt-abc"})
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(up.last(t).Header.Get("Authorization")).To(Equal("Bearer tok-b-provider-0"))
	calls := tokens.calls()
	g.Expect(calls[len(calls)-1].Req.Assertion).To(Equal("user-jwt-abc"))
	g.Expect(calls[len(calls)-1].Grant).To(Equal(GrantJWTBearer))

	resp, _ = do(t, "GET", tp.srv.URL+"/user/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonNoUserToken))
}

func TestProxyMTLS(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	first := ca.Issue(testpki.WithCommonName("app-1"), testpki.ClientAuth()).TLSCertificate()
	cert := newFakeCert(&first)
	now := time.Now()
	clock := func() time.Time { return now }
	tp := newTestProxy(t, ca, fmt.Sprintf(`
certificates: [{name: connector, dir: /unused}]
routes:
  - {name: events, upstream: %[1]s, auth: {type: mtls, certificate: connector}}
  - {name: both, upstream: %[1]s, auth: {type: mtls, certificate: connector, binding: b}}
`, up.url), Deps{Tokens: &fakeTokens{}, Certificates: map[string]ClientCertificate{"connector": cert}}, WithClock(clock))

	resp, _ := do(t, "GET", tp.srv.URL+"/events/x", nil, map[string]string{"Authorization": "Bearer app-own"})
	g.Expect(resp.StatusCode).To(Equal(200))
	s := up.last(t)
	g.Expect(s.ClientCN).To(Equal("app-1"))
	g.Expect(s.Header.Get("Authorization")).To(Equal("Bearer app-own"), "mtls alone adds no Authorization")

	do(t, "GET", tp.srv.URL+"/both/x", nil, map[string]string{"Authorization": "Bearer app-own"})
	s = up.last(t)
	g.Expect(s.ClientCN).To(Equal("app-1"))
	g.Expect(s.Header.Get("Authorization")).To(Equal("Bearer tok-b-provider-0"))

	// Rotation: the next request presents the new certificate.
	second := ca.Issue(testpki.WithCommonName("app-2"), testpki.ClientAuth()).TLSCertificate()
	cert.cur.Store(&second)
	resp, _ = do(t, "GET", tp.srv.URL+"/events/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(up.last(t).ClientCN).To(Equal("app-2"))

	// Expired: 503, not forwarded.
	now = second.Leaf.NotAfter.Add(time.Second)
	resp, body := do(t, "GET", tp.srv.URL+"/events/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonCertificateExpired))
	g.Expect(body).To(ContainSubstring("one-time token"))
	g.Expect(up.seen).To(BeEmpty())

	// None loaded: 503.
	cert.cur.Store(nil)
	resp, _ = do(t, "GET", tp.srv.URL+"/events/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonCertificateUnavailable))
	g.Expect(testutil.ToFloat64(tp.metrics.credErrors.WithLabelValues("events", ReasonCertificateUnavailable))).To(BeNumerically("==", 1))
}

func TestProxyOAuth1(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	signer := &fakeSigner{}
	tp := newTestProxy(t, ca, fmt.Sprintf(`
max_signed_body: 64
routes:
  - {name: ctl, upstream: %s/api, auth: {type: oauth1, key_file: /k, secret_file: /s}}
`, up.url), Deps{Signers: map[string]Signer{"ctl": signer}})

	resp, _ := do(t, "POST", tp.srv.URL+"/ctl/things?a=1", strings.NewReader(`{"x":1}`), map[string]string{"Content-Type": "application/json", "Authorization": "Bearer app-own"})
	g.Expect(resp.StatusCode).To(Equal(200))
	s := up.last(t)
	g.Expect(s.Body).To(Equal(`{"x":1}`))
	g.Expect(s.Header.Get("Authorization")).To(Equal(fmt.Sprintf(`OAuth oauth_consumer_key="fake", oauth_signature="POST %s/api/things?a=1 7"`, up.url)))
	g.Expect(string(signer.bodies[0])).To(Equal(`{"x":1}`))

	// A streamed body of unknown length is buffered for signing.
	pr, pw := io.Pipe()
	go func() { _, _ = pw.Write([]byte("chunked")); pw.Close() }()
	resp, _ = do(t, "PUT", tp.srv.URL+"/ctl/t", pr, nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(up.last(t).Body).To(Equal("chunked"))

	// GET without body.
	do(t, "GET", tp.srv.URL+"/ctl/t", nil, nil)
	g.Expect(up.last(t).Header.Get("Authorization")).To(ContainSubstring("GET " + up.url + "/api/t 0"))

	resp, _ = do(t, "POST", tp.srv.URL+"/ctl/big", strings.NewReader(strings.Repeat("x", 65)), nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusRequestEntityTooLarge))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonBodyTooLarge))

	signer.err = errors.New("key file unreadable")
	resp, _ = do(t, "GET", tp.srv.URL+"/ctl/t", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonSigningFailed))
	g.Expect(up.seen).To(BeEmpty())
}

func TestProxyRefusesNonRoutes(t *testing.T) {
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	tp := newTestProxy(t, ca, fmt.Sprintf(`
routes:
  - {name: orders, upstream: %s, auth: {type: none}}
`, up.url), Deps{})
	addr := strings.TrimPrefix(tp.srv.URL, "http://")
	host := strings.TrimPrefix(up.url, "https://")
	cases := []struct {
		name, request string
		status        int
		reason        string
	}{
		{"not a route", "GET /admin HTTP/1.1\r\nHost: x\r\n\r\n", 403, ReasonNotARoute},
		{"root", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 403, ReasonNotARoute},
		{"prefix of a route", "GET /ordersx/a HTTP/1.1\r\nHost: x\r\n\r\n", 403, ReasonNotARoute},
		{"CONNECT", "CONNECT " + host + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n", 403, ReasonConnectRefused},
		{"CONNECT elsewhere", "CONNECT evil.example.com:443 HTTP/1.1\r\nHost: evil.example.com:443\r\n\r\n", 403, ReasonConnectRefused},
		{"traversal", "GET /orders/../admin HTTP/1.1\r\nHost: x\r\n\r\n", 403, ReasonDotSegment},
		{"encoded traversal", "GET /orders/%2e%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n", 403, ReasonDotSegment},
		{"encoded slash traversal", "GET /orders%2F..%2Fadmin HTTP/1.1\r\nHost: x\r\n\r\n", 403, ReasonDotSegment},
		{"backslash traversal", "GET /orders/..%5Cadmin HTTP/1.1\r\nHost: x\r\n\r\n", 403, ReasonDotSegment},
		{"dot", "GET /orders/./x HTTP/1.1\r\nHost: x\r\n\r\n", 403, ReasonDotSegment},
		{"open proxy", "GET http://evil.example.com/ HTTP/1.1\r\nHost: evil.example.com\r\n\r\n", 403, ReasonNotARoute},
		{"https absolute form", "GET https://" + host + "/ HTTP/1.1\r\nHost: " + host + "\r\n\r\n", 403, ReasonSchemeRefused},
		{"forward traversal", "GET http://" + host + "/a/../b HTTP/1.1\r\nHost: " + host + "\r\n\r\n", 403, ReasonDotSegment},
		{"unknown credbroker endpoint", "GET /.credbroker/v1/other HTTP/1.1\r\nHost: x\r\n\r\n", 404, ReasonNotARoute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			status, reason := raw(t, addr, tc.request)
			g.Expect(status).To(Equal(tc.status))
			g.Expect(reason).To(Equal(tc.reason))
		})
	}
	NewWithT(t).Expect(up.seen).To(BeEmpty(), "nothing refused reached the upstream")
	NewWithT(t).Expect(testutil.ToFloat64(tp.metrics.refused.WithLabelValues(ReasonDotSegment))).To(BeNumerically("==", 6))
}

func TestProxyForwardProxyMode(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	tp := newTestProxy(t, ca, fmt.Sprintf(`
routes:
  - {name: orders, upstream: %s/api, auth: {type: bearer, binding: b}}
`, up.url), Deps{Tokens: &fakeTokens{}})
	proxyURL, _ := url.Parse(tp.srv.URL)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	plain := strings.Replace(up.url, "https://", "http://", 1)
	resp, err := client.Get(plain + "/api/v1/x?q=1")
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(200))
	s := up.last(t)
	g.Expect(s.Path).To(Equal("/api/v1/x"))
	g.Expect(s.Query).To(Equal("q=1"))
	g.Expect(s.Header.Get("Authorization")).To(Equal("Bearer tok-b-provider-0"))
	g.Expect(s.Header.Get("Proxy-Connection")).To(BeEmpty())

	resp, err = client.Get(plain + "/other")
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(403), "a path outside the upstream's is not the route")
}

func TestProxyHopByHopHeaders(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstreamProto(t, ca, false) // HTTP/2 has no Connection header
	tp := newTestProxy(t, ca, fmt.Sprintf(`
routes:
  - {name: r, upstream: %s, auth: {type: none}}
`, up.url), Deps{})
	up.extra = func(w http.ResponseWriter, r *http.Request) {
		up.seen <- seen{Header: r.Header.Clone()}
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Resp-End", "1")
	}
	addr := strings.TrimPrefix(tp.srv.URL, "http://")
	c, err := net.Dial("tcp", addr)
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	_, err = io.WriteString(c, "GET /r/x HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic cHJveHk6c2VjcmV0\r\nProxy-Connection: keep-alive\r\nTe: trailers\r\nX-End: 1\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	s := up.last(t)
	for _, h := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection"} {
		g.Expect(s.Header.Get(h)).To(BeEmpty(), h)
	}
	g.Expect(s.Header.Get("X-End")).To(Equal("1"))
	g.Expect(resp.Header.Get("X-Resp-Hop")).To(BeEmpty())
	g.Expect(resp.Header.Get("Keep-Alive")).To(BeEmpty())
	g.Expect(resp.Header.Get("X-Resp-End")).To(Equal("1"))
}

func TestProxyStreamsBothWays(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	tp := newTestProxy(t, ca, fmt.Sprintf(`
routes:
  - {name: s, upstream: %s, auth: {type: none}}
`, up.url), Deps{})
	gotFirst := make(chan string, 1)
	release := make(chan struct{})
	up.extra = func(w http.ResponseWriter, r *http.Request) {
		// Request streaming: the first part arrives before the app ends it.
		buf := make([]byte, 5)
		_, _ = io.ReadFull(r.Body, buf)
		gotFirst <- string(buf)
		// Response streaming: the first line reaches the app before the
		// upstream finishes.
		_, _ = io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		rest, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, "second:"+string(rest)+"\n")
	}
	pr, pw := io.Pipe()
	respCh := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("POST", tp.srv.URL+"/s/stream", pr)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			respCh <- resp
		}
	}()
	_, err := pw.Write([]byte("part1"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(gotFirst, 10*time.Second).Should(Receive(Equal("part1")))
	var resp *http.Response
	g.Eventually(respCh, 10*time.Second).Should(Receive(&resp))
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(line).To(Equal("first\n"))
	_, _ = pw.Write([]byte("part2"))
	pw.Close()
	close(release)
	line, err = br.ReadString('\n')
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(line).To(Equal("second:part2\n"))
}

func TestProxyAnswers503WithoutToken(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	tokens := &fakeTokens{}
	tokens.setErr(errors.New("tokenclient: auth server unavailable (503)"))
	tp := newTestProxy(t, ca, fmt.Sprintf(`
routes:
  - {name: orders, upstream: %s, auth: {type: bearer, binding: b}}
`, up.url), Deps{Tokens: tokens})
	resp, body := do(t, "GET", tp.srv.URL+"/orders/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonTokenUnavailable))
	g.Expect(body).To(ContainSubstring(`route orders: no valid token for binding b: tokenclient: auth server unavailable (503)`))
	g.Expect(up.seen).To(BeEmpty())

	tokens.setErr(nil)
	resp, _ = do(t, "GET", tp.srv.URL+"/orders/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(testutil.ToFloat64(tp.metrics.requests.WithLabelValues("orders", "503"))).To(BeNumerically("==", 1))
}

func TestProxyUpstreamErrors(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	closedPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	slow := newUpstream(t, ca)
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	slow.extra = func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}
	tp := newTestProxy(t, ca, fmt.Sprintf(`
timeouts: {response_header: 200ms}
routes:
  - {name: down, upstream: "https://localhost:%d", auth: {type: none}}
  - {name: slow, upstream: "%s", auth: {type: none}}
`, closedPort, slow.url), Deps{})
	resp, _ := do(t, "GET", tp.srv.URL+"/down/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadGateway))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonUpstreamUnreachable))
	resp, _ = do(t, "GET", tp.srv.URL+"/slow/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusGatewayTimeout))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonUpstreamTimeout))
}

func TestProxyRefusesUntrustedUpstream(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	other := testpki.NewCA()
	up := newUpstream(t, other) // a certificate from a CA the proxy does not trust
	tp := newTestProxy(t, ca, fmt.Sprintf(`
routes:
  - {name: r, upstream: %s, auth: {type: none}}
`, up.url), Deps{})
	resp, _ := do(t, "GET", tp.srv.URL+"/r/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadGateway), "TLS verification is never switched off")
}

func TestTokenAPI(t *testing.T) {
	ca := testpki.NewCA()
	tokens := &fakeTokens{expires: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}

	t.Run("off by default", func(t *testing.T) {
		g := NewWithT(t)
		tp := newTestProxy(t, ca, "", Deps{Tokens: tokens})
		resp, body := do(t, "GET", tp.srv.URL+TokenAPIPath+"?binding=b", nil, nil)
		g.Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
		g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonTokenAPIOff))
		g.Expect(body).NotTo(ContainSubstring("tok-"))
	})

	g := NewWithT(t)
	tp := newTestProxy(t, ca, "token_api: {bindings: [b]}\n", Deps{Tokens: tokens})
	resp, body := do(t, "GET", tp.srv.URL+TokenAPIPath+"?binding=b&tenant=t2&scope=s1&scope=s2", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(resp.Header.Get("Cache-Control")).To(Equal("no-store"))
	var tr TokenResponse
	g.Expect(json.Unmarshal([]byte(body), &tr)).To(Succeed())
	g.Expect(tr).To(Equal(TokenResponse{AccessToken: "tok-b-t2-0", TokenType: "bearer", ExpiresAt: "2030-01-02T03:04:05Z", Scope: "s1 s2"}))

	resp, _ = do(t, "GET", tp.srv.URL+TokenAPIPath+"?binding=other", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusForbidden))
	resp, _ = do(t, "GET", tp.srv.URL+TokenAPIPath, nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadRequest))
	resp, _ = do(t, "POST", tp.srv.URL+TokenAPIPath+"?binding=b", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusMethodNotAllowed))

	// A caller that is not on loopback (the listener was opened wider).
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", TokenAPIPath+"?binding=b", nil)
	req.RemoteAddr = "10.1.2.3:5555"
	req.Host = "10.0.0.7:8411" // the pod IP
	tp.p.ServeHTTP(rec, req)
	g.Expect(rec.Code).To(Equal(http.StatusForbidden))
	g.Expect(rec.Header().Get(HeaderError)).To(Equal(ReasonNotLoopback))
	g.Expect(rec.Body.String()).NotTo(ContainSubstring("tok-"))

	tokens.setErr(errors.New("tokenclient: invalid_client"))
	resp, body = do(t, "GET", tp.srv.URL+TokenAPIPath+"?binding=b", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
	g.Expect(body).To(ContainSubstring("invalid_client"))
	g.Expect(testutil.ToFloat64(tp.metrics.tokenAPI.WithLabelValues("b", "200"))).To(BeNumerically("==", 1))
	g.Expect(testutil.ToFloat64(tp.metrics.tokenAPI.WithLabelValues("-", "403"))).To(BeNumerically("==", 1))
}

func TestNewProxyNeedsEveryProvider(t *testing.T) {
	ca := testpki.NewCA()
	cases := []struct{ yaml, want string }{
		{"routes: [{name: a, upstream: https://a.example, auth: {type: bearer, binding: b}}]\n", "no token provider"},
		{"certificates: [{name: c, dir: /x}]\nroutes: [{name: a, upstream: https://a.example, auth: {type: mtls, certificate: c}}]\n", "unknown certificate"},
		{"routes: [{name: a, upstream: https://a.example, auth: {type: oauth1, key_file: /k, secret_file: /s}}]\n", "no OAuth 1.0a signer"},
		{"routes: [{name: a, upstream: https://a.example, auth: {type: bearer, binding: broken}}]\n", "unusable"},
	}
	for _, tc := range cases {
		g := NewWithT(t)
		cfg, err := ParseConfig([]byte(tc.yaml), "x")
		g.Expect(err).NotTo(HaveOccurred())
		deps := Deps{}
		if strings.Contains(tc.yaml, "broken") {
			deps.Tokens = &fakeTokens{}
		}
		_, err = NewProxy(cfg, deps)
		g.Expect(err).To(MatchError(ContainSubstring(tc.want)))
	}
	g := NewWithT(t)
	cfg, _ := ParseConfig([]byte("ca_file: /nonexistent/ca.crt\n"), "x")
	_, err := NewProxy(cfg, Deps{})
	g.Expect(err).To(MatchError(ContainSubstring("ca_file")))
	_ = ca
	_ = bytes.MinRead
}

func TestProxyPassesEncodingThrough(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	up.extra = func(w http.ResponseWriter, r *http.Request) {
		up.seen <- seen{Header: r.Header.Clone()}
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write([]byte("not really gzip"))
	}
	tp := newTestProxy(t, ca, fmt.Sprintf("routes: [{name: r, upstream: %s, auth: {type: none}}]\n", up.url), Deps{})
	req, _ := http.NewRequest("GET", tp.srv.URL+"/r/x", nil)
	tr := &http.Transport{DisableCompression: true}
	resp, err := tr.RoundTrip(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	g.Expect(up.last(t).Header.Get("Accept-Encoding")).To(BeEmpty(), "the proxy asks for no encoding the app did not ask for")
	g.Expect(resp.Header.Get("Content-Encoding")).To(Equal("gzip"))
	g.Expect(string(body)).To(Equal("not really gzip"), "bodies pass through undecoded")
}
