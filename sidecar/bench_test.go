package sidecar

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/internal/testpki"
)

// benchProxy serves a Proxy with one route of the given auth in front of a
// TLS upstream that answers "ok".
func benchProxy(b *testing.B, auth string, deps Deps) (*Proxy, *httptest.Server) {
	return benchProxyOver(b, auth, deps, upstreamH2)
}

// upstreamKind is how the benchmark upstream speaks.
type upstreamKind int

const (
	upstreamH2    upstreamKind = iota // TLS, HTTP/2 offered
	upstreamTLSH1                     // TLS, HTTP/1.1 only
	upstreamPlain                     // http://
)

func benchProxyOver(b *testing.B, auth string, deps Deps, kind upstreamKind) (*Proxy, *httptest.Server) {
	b.Helper()
	ca := testpki.NewCA()
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	switch kind {
	case upstreamPlain:
		up.Start()
	default:
		up.TLS = testpki.ServerTLSConfig(ca.Issue(testpki.WithDNSNames("localhost"), testpki.WithIPs("127.0.0.1")), nil)
		up.EnableHTTP2 = kind == upstreamH2
		up.StartTLS()
	}
	b.Cleanup(up.Close)
	caFile := filepath.Join(b.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		b.Fatal(err)
	}
	upURL := up.URL
	if kind != upstreamPlain {
		upURL = strings.Replace(up.URL, "127.0.0.1", "localhost", 1)
	}
	cfg, err := ParseConfig([]byte("ca_file: "+caFile+"\nroutes: [{name: r, upstream: '"+upURL+"', auth: "+auth+"}]\n"), "bench")
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewProxy(cfg, deps)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p, up
}

// discardWriter is a ResponseWriter that keeps nothing, so the benchmark
// measures the proxy (and the upstream round trip), not a recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

func benchmarkRoute(b *testing.B, auth string, deps Deps) {
	benchmarkRouteOver(b, auth, deps, upstreamH2)
}

func benchmarkRouteOver(b *testing.B, auth string, deps Deps, kind upstreamKind) {
	p, _ := benchProxyOver(b, auth, deps, kind)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			req := httptest.NewRequest("GET", "/r/v1/items?x=1", nil)
			req.RemoteAddr = "127.0.0.1:40000"
			clear(w.h)
			p.ServeHTTP(w, req)
		}
	})
}

// BenchmarkProxyNone is the proxy's own cost over a pooled HTTP/2 upstream
// connection: routing, rewriting, hop-by-hop handling, metrics.
func BenchmarkProxyNone(b *testing.B) { benchmarkRoute(b, "{type: none}", Deps{}) }

// BenchmarkProxyNoneHTTP1 is BenchmarkProxyNone over HTTP/1.1 upstreams:
// plain http:// and TLS without HTTP/2.
func BenchmarkProxyNoneHTTP1(b *testing.B) {
	b.Run("http", func(b *testing.B) { benchmarkRouteOver(b, "{type: none}", Deps{}, upstreamPlain) })
	b.Run("https", func(b *testing.B) { benchmarkRouteOver(b, "{type: none}", Deps{}, upstreamTLSH1) })
}

// BenchmarkProxyBearer adds a cached token per request.
func BenchmarkProxyBearer(b *testing.B) {
	benchmarkRoute(b, "{type: bearer, binding: b}", Deps{Tokens: staticTokens{}})
}

// BenchmarkRouteMatch is the routing decision alone.
func BenchmarkRouteMatch(b *testing.B) {
	rt := testRouter(b, map[string]string{"orders": "https://orders.example.com", "events": "https://gw.example.com/events", "api": "https://api.example.com"})
	b.ReportAllocs()
	for b.Loop() {
		r, _ := rt.byPath("/orders/v1/items/42")
		if r == nil || hasDotSegment("/orders/v1/items/42") {
			b.Fatal("no route")
		}
	}
}

// cannedTransport answers every request with a fixed response, so that
// BenchmarkProxyOverhead measures the proxy's own work only.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
	return &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{"Content-Type": {"text/plain"}}, Body: http.NoBody, ContentLength: 0, Request: r}, nil
}

// staticTokens hands out one token without locking (the real token
// client's cache hit is lock-free too).
type staticTokens struct{}

func (staticTokens) Source(string, []string, string) (TokenSource, error) { return staticTokens{}, nil }
func (staticTokens) Token(context.Context, TokenRequest) (Token, error) {
	return Token{AccessToken: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", TokenType: "bearer"}, nil
}

// BenchmarkProxyOverhead is the proxy's per-request work without the
// network: routing, URL rewriting, the credential, header handling, the
// ReverseProxy machinery and metrics. Allocations here are the proxy's own
// (plus the canned response).
func BenchmarkProxyOverhead(b *testing.B) {
	for _, tc := range []struct {
		name, auth string
		deps       Deps
	}{
		{"none", "{type: none}", Deps{}},
		{"bearer", "{type: bearer, binding: b}", Deps{Tokens: staticTokens{}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p, _ := benchProxy(b, tc.auth, tc.deps)
			for _, r := range p.routes {
				r.rp.Transport = cannedTransport{}
			}
			w := &discardWriter{h: http.Header{}}
			req := httptest.NewRequest("GET", "/r/v1/items?x=1", nil)
			req.RemoteAddr = "127.0.0.1:40000"
			req.Header.Set("Accept", "application/json")
			b.ReportAllocs()
			for b.Loop() {
				r := *req
				u := *req.URL
				r.URL = &u
				r.Header = http.Header{"Accept": req.Header["Accept"]}
				clear(w.h)
				p.ServeHTTP(w, &r)
			}
		})
	}
}
