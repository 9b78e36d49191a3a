package sidecar

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/testpki"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// plainUpstream is an http:// upstream that echoes what it received as
// JSON, or answers as the path asks (see the handler).
func plainUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		s := seen{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery, Host: r.Host, Header: h, Proto: r.Proto}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Up", "1")
		switch {
		case strings.HasSuffix(r.URL.Path, "/chunked"):
			w.WriteHeader(200)
			for i := range 3 {
				fmt.Fprintf(w, "part %d\n", i)
				w.(http.Flusher).Flush()
			}
			return
		case strings.HasSuffix(r.URL.Path, "/hop"):
			w.Header().Set("Connection", "X-Secret-Hop")
			w.Header().Set("X-Secret-Hop", "1")
			w.Header().Set("Keep-Alive", "timeout=5")
		case strings.HasSuffix(r.URL.Path, "/big"):
			_, _ = io.WriteString(w, strings.Repeat("0123456789abcdef", 10000))
			return
		case strings.HasSuffix(r.URL.Path, "/nocontent"):
			w.WriteHeader(http.StatusNoContent)
			return
		case strings.HasSuffix(r.URL.Path, "/notmodified"):
			w.WriteHeader(http.StatusNotModified)
			return
		case strings.HasSuffix(r.URL.Path, "/early"):
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
		case strings.HasSuffix(r.URL.Path, "/teapot"):
			w.WriteHeader(http.StatusTeapot)
		}
		_ = json.NewEncoder(w).Encode(s)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// fastResult is what a client and the upstream saw of one request.
type fastResult struct {
	Status   int
	Header   http.Header
	Body     string
	Upstream *seen
	Interim  []string // 1xx responses: status and fields
}

func rawRoundTrip(t *testing.T, addr, req string) fastResult {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	method := strings.Fields(req)[0]
	br := bufio.NewReader(c)
	var interim []string
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		if resp.StatusCode >= 200 {
			break
		}
		interim = append(interim, fmt.Sprint(resp.StatusCode, resp.Header))
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: body: %v", req, err)
	}
	res := fastResult{Status: resp.StatusCode, Header: resp.Header, Body: string(b), Interim: interim}
	for _, k := range []string{"Date", "Content-Length"} {
		delete(res.Header, k) // Date differs; Content-Length is checked by ReadAll against the body
	}
	var s seen
	if json.Unmarshal(b, &s) == nil && s.Method != "" {
		s.Header.Del("Accept-Encoding") // not sent by either path; Go's client adds none here
		res.Upstream = &s
		res.Body = ""
	}
	return res
}

// TestFastPathMatchesNetHTTPPath sends the same raw requests through the
// running server (the fast loop) and through the Proxy on a plain net/http
// server (the path every request took before), and compares what the
// upstream received and what the client got back.
func TestFastPathMatchesNetHTTPPath(t *testing.T) {
	g := NewWithT(t)
	up := plainUpstream(t)
	routes := fmt.Sprintf("routes: [{name: open, upstream: '%s', auth: {type: none}},"+
		" {name: tok, upstream: '%s/base?k=v', auth: {type: bearer, binding: b}},"+
		" {name: keep, upstream: '%s', auth: {type: bearer, binding: b, replace_app_credentials: false}},"+
		" {name: tenant, upstream: '%s', auth: {type: bearer, binding: b, tenant_header: X-T}}]\n", up.URL, up.URL, up.URL, up.URL)
	deps := Deps{Tokens: staticTokens{}}
	cfg, err := ParseConfig([]byte(routes), "old path")
	g.Expect(err).NotTo(HaveOccurred())
	p, err := NewProxy(cfg, deps)
	g.Expect(err).NotTo(HaveOccurred())
	old := httptest.NewServer(p)
	t.Cleanup(func() { old.Close(); p.Close() })

	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"+routes), "fast path")
		return c, deps, err
	}, WithMetrics(m))

	for _, req := range []string{
		"GET /open/v1/items?x=1&y=%41 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n",
		"GET /open HTTP/1.1\r\nHost: localhost:1234\r\nX-Forwarded-For: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\n\r\n",
		"HEAD /open/head HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"OPTIONS /open/opt HTTP/1.1\r\nHost: 127.0.0.1\r\nauthorization: Basic app\r\n\r\n",
		"GET /tok/v1?q=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer app-token\r\nx-lower: v \r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n",
		"GET /tok HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /keep/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer app-token\r\n\r\n",
		"GET /keep/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /open/chunked HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /open/hop HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /open/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /open/nocontent HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /open/notmodified HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /open/early HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /open/teapot HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
	} {
		before := fastServed(m)
		fast := rawRoundTrip(t, rs.s.Addr(), req)
		g.Eventually(func() float64 { return fastServed(m) }).Should(Equal(before+1), "served on the fast path: %q", req)
		slow := rawRoundTrip(t, old.Listener.Addr().String(), req)
		if slow.Upstream != nil && fast.Upstream != nil {
			// The Host each path was called with differs by port only.
			g.Expect(fast.Upstream.Header.Get("X-Forwarded-Host")).To(Equal(slow.Upstream.Header.Get("X-Forwarded-Host")))
		}
		g.Expect(fast).To(Equal(slow), "%q", req)
	}
	// Heads of the fast subset that are not for the fast path go to the
	// net/http handler on the same connection, with the same answers.
	for _, req := range []string{
		"GET /tenant/x?y=2 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-T: t1\r\n\r\n",
		"HEAD /tenant/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /tenant/chunked HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /tenant/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /tenant/nocontent HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /tenant/early HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /nothing/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /open/../x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
		"GET /open/x HTTP/1.1\r\nHost: evil.example\r\n\r\n",
		"GET /.credbroker/v1/token?binding=b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
	} {
		before := fastServed(m)
		fast := rawRoundTrip(t, rs.s.Addr(), req)
		slow := rawRoundTrip(t, old.Listener.Addr().String(), req)
		g.Expect(fast).To(Equal(slow), "%q", req)
		g.Expect(fastServed(m)).To(Equal(before), "not on the fast path: %q", req)
	}
	// A connection serves the fast path again after a request for the
	// handler.
	c0, err := net.Dial("tcp", rs.s.Addr())
	g.Expect(err).NotTo(HaveOccurred())
	defer c0.Close()
	before := fastServed(m)
	_, err = io.WriteString(c0, "GET /tenant/1 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /open/2 HTTP/1.1\r\nHost: localhost\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	br0 := bufio.NewReader(c0)
	for range 2 {
		resp, err := http.ReadResponse(br0, nil)
		g.Expect(err).NotTo(HaveOccurred())
		_, _ = io.Copy(io.Discard, resp.Body)
		g.Expect(resp.StatusCode).To(Equal(200))
	}
	g.Eventually(func() float64 { return fastServed(m) }).Should(Equal(before + 1))

	// Pipelined requests on one connection, the second handed to net/http
	// midway (it has a body), the third after it.
	c, err := net.Dial("tcp", rs.s.Addr())
	g.Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	_, err = io.WriteString(c, "GET /open/1 HTTP/1.1\r\nHost: localhost\r\n\r\nPOST /open/2 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhiGET /open/3 HTTP/1.1\r\nHost: localhost\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	br := bufio.NewReader(c)
	for _, want := range []string{"/1", "/2", "/3"} {
		resp, err := http.ReadResponse(br, nil)
		g.Expect(err).NotTo(HaveOccurred())
		var s seen
		g.Expect(json.NewDecoder(resp.Body).Decode(&s)).To(Succeed())
		_, _ = io.Copy(io.Discard, resp.Body)
		g.Expect(s.Path).To(Equal(want))
	}
}

// Every head outside the fast subset is served by net/http as before; a
// few, with the answer they must get.
func TestFastPathHandsOverTheRest(t *testing.T) {
	g := NewWithT(t)
	up := plainUpstream(t)
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nroutes: [{name: open, upstream: '%s', auth: {type: none}, refuse_origin: true}]\n", up.URL)), "t")
		return c, Deps{}, err
	}, WithMetrics(m))
	for _, tc := range []struct {
		req    string
		status int
		reason string
	}{
		{"GET /open/x HTTP/1.1\nHost: localhost\n\n", 400, ReasonBareLF},
		{"GET /open/x HTTP/1.1\r\nHost: localhost\r\nX: 1\r\n folded\r\n\r\n", 400, ReasonObsFold},
		{"GET /open/x HTTP/1.1\r\nHost: localhost\rX: 1\r\n\r\n", 400, ReasonBareCR},
		{"GET /nothing/x HTTP/1.1\r\nHost: localhost\r\n\r\n", 403, ReasonNotARoute},
		{"GET /open/../admin HTTP/1.1\r\nHost: localhost\r\n\r\n", 403, ReasonDotSegment},
		{"GET /open/%2e%2e/admin HTTP/1.1\r\nHost: localhost\r\n\r\n", 403, ReasonDotSegment},
		{"GET /open/x HTTP/1.1\r\nHost: evil.example\r\n\r\n", 403, ReasonHostNotAllowed},
		{"GET /open/x HTTP/1.1\r\nHost: localhost\r\nOrigin: http://a\r\n\r\n", 403, ReasonOriginRefused},
		{"GET /open/x HTTP/1.1\r\nHost: localhost\r\nConnection: Authorization\r\n\r\n", 400, ReasonHopByHopCredential},
		{"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 403, ReasonConnectRefused},
		{"GET /open/x HTTP/1.1\r\nHost: localhost\r\nHost: b\r\n\r\n", 400, ""},
		{"GET /open/x HTTP/1.0\r\n\r\n", 200, ""},
		{"POST /open/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi", 200, ""},
		{"GET /open/%41 HTTP/1.1\r\nHost: localhost\r\n\r\n", 200, ""},
		{"GET /open/a;b HTTP/1.1\r\nHost: localhost\r\n\r\n", 200, ""},
	} {
		c, err := net.Dial("tcp", rs.s.Addr())
		g.Expect(err).NotTo(HaveOccurred())
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.WriteString(c, tc.req)
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		g.Expect(err).NotTo(HaveOccurred(), "%q", tc.req)
		_, _ = io.Copy(io.Discard, resp.Body)
		c.Close()
		g.Expect(resp.StatusCode).To(Equal(tc.status), "%q", tc.req)
		g.Expect(resp.Header.Get(HeaderError)).To(Equal(tc.reason), "%q", tc.req)
	}
	g.Expect(fastServed(m)).To(BeZero(), "none of these took the fast path")
}

// fastServed sums credbroker_proxy_fast_path_requests_total over the
// routes of these tests.
func fastServed(m *Metrics) float64 {
	sum := 0.0
	for _, r := range []string{"open", "tok", "keep", "tenant"} {
		sum += testutil.ToFloat64(m.fastPath.WithLabelValues(r))
	}
	return sum
}

// An https:// upstream takes the fast path once it has answered net/http's
// path in HTTP/1.1; one that speaks HTTP/2 stays on net/http.
func TestFastPathLearnsHTTP1Upstreams(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	h1 := newUpstreamProto(t, ca, false)
	h2 := newUpstreamProto(t, ca, true)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	g.Expect(os.WriteFile(caFile, ca.CertPEM(), 0o600)).To(Succeed())
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nca_file: %s\nroutes: [{name: open, upstream: '%s', auth: {type: none}}, {name: keep, upstream: '%s', auth: {type: none}}]\n", caFile, h1.url, h2.url)), "t")
		return c, Deps{}, err
	}, WithMetrics(m))
	for i := range 3 {
		for _, route := range []string{"open", "keep"} {
			res := rawRoundTrip(t, rs.s.Addr(), "GET /"+route+"/x HTTP/1.1\r\nHost: localhost\r\n\r\n")
			g.Expect(res.Status).To(Equal(200))
			g.Expect(res.Upstream).NotTo(BeNil())
			want := "HTTP/1.1"
			if route == "keep" {
				want = "HTTP/2.0"
			}
			g.Expect(res.Upstream.Proto).To(Equal(want))
		}
		_ = i
	}
	// The fast path counts a request after its response is sent: the
	// client may read it before the counter moves.
	g.Eventually(func() float64 { return testutil.ToFloat64(m.fastPath.WithLabelValues("open")) }, 10*time.Second, 5*time.Millisecond).
		Should(Equal(2.0), "the first request learns HTTP/1.1, the next two are fast")
	g.Expect(testutil.ToFloat64(m.fastPath.WithLabelValues("keep"))).To(BeZero())
}
