package sidecar

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/credbroker/credbroker/oauth1"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
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
type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }

// check fails the benchmark unless the proxy answered 200 (a benchmark of
// a refusal measures nothing).
func (d *discardWriter) check(b *testing.B) {
	if d.code != 0 && d.code != http.StatusOK {
		b.Fatalf("status %d (%s)", d.code, d.h.Get(HeaderError))
	}
	d.code = 0
}

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
			req.Host = "127.0.0.1" // the host policy refuses httptest's example.com
			clear(w.h)
			p.ServeHTTP(w, req)
			if w.code != 0 && w.code != http.StatusOK {
				b.Errorf("status %d (%s)", w.code, w.h.Get(HeaderError))
				return
			}
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

// Invalidate makes the routes of the benchmarks carry their reauth hook
// (reauth.go), as every route of a binding does.
func (staticTokens) Invalidate(TokenRequest, string) (Invalidation, error) {
	return InvalidationStale, nil
}

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
			req.Host = "127.0.0.1"
			req.Header.Set("Accept", "application/json")
			b.ReportAllocs()
			for b.Loop() {
				r := *req
				u := *req.URL
				r.URL = &u
				r.Header = http.Header{"Accept": req.Header["Accept"]}
				clear(w.h)
				p.ServeHTTP(w, &r)
				w.check(b)
			}
		})
	}
}

// fixedUpstream is a minimal keep-alive HTTP/1.1 server for bodyless
// requests that answers every request with the same bytes, so that a
// benchmark's CPU and allocations are the proxy's, not the upstream's.
func fixedUpstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 24\r\n\r\nhello from the upstream\n")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 8<<10)
				n := 0
				for {
					m, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += m
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(resp); err != nil {
							return
						}
						n = copy(buf, buf[i+4:n])
					}
					if n == len(buf) {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// readRawResponse reads one response with a Content-Length body from br
// and returns its status code.
func readRawResponse(br *bufio.Reader) (int, error) {
	status := 0
	cl := -1
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if first {
			if len(line) < 12 {
				return 0, fmt.Errorf("status line %q", line)
			}
			status, _ = strconv.Atoi(string(line[9:12]))
			continue
		}
		if len(line) <= 2 {
			break
		}
		if len(line) > 16 && strings.EqualFold(string(line[:15]), "content-length:") {
			cl, _ = strconv.Atoi(strings.TrimSpace(string(line[15:])))
		}
	}
	if cl < 0 {
		return 0, fmt.Errorf("no Content-Length")
	}
	_, err := br.Discard(cl)
	return status, err
}

// BenchmarkDirectLoopback is BenchmarkServerLoopback's client calling the
// upstream directly: its CPU is the harness's share, to subtract.
func BenchmarkDirectLoopback(b *testing.B) {
	up := fixedUpstream(b)
	benchRawClients(b, up, []byte("GET /v1/items?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\nUser-Agent: bench\r\n\r\n"))
}

// benchRawClients drives addr with 16 keep-alive connections sending req.
func benchRawClients(b *testing.B, addr string, req []byte) {
	b.ReportAllocs()
	b.SetParallelism(8) // 16 connections on 2 cores, as make bench's c=16
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for pb.Next() {
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			st, err := readRawResponse(br)
			if err != nil || st != 200 {
				b.Errorf("status %d: %v", st, err)
				return
			}
		}
	})
}

// BenchmarkServerLoopback is the whole proxy as the app sees it: raw
// keep-alive client connections to a running Server over loopback, a
// route to a raw HTTP/1.1 upstream. ns/op and allocs/op are per proxied
// request (the client and upstream allocate nothing per request).
func BenchmarkServerLoopback(b *testing.B) {
	for _, tc := range []struct {
		name, auth string
		deps       Deps
		extra      string // more config
	}{
		{"none", "{type: none}", Deps{}, ""},
		{"bearer", "{type: bearer, binding: b}", Deps{Tokens: staticTokens{}}, ""},
		// The access log on, every line formatted and written (to
		// io.Discard): its cost per request when on.
		{"bearer+accesslog", "{type: bearer, binding: b}", Deps{Tokens: staticTokens{}}, "access_log: {enabled: true}\n"},
		// oauth1: signed on the fast path (a HeaderSigner), and — a signer
		// that only signs an *http.Request — on the net/http path.
		{"oauth1", "{type: oauth1, key_file: /k, secret_file: /s}", Deps{Signers: map[string]Signer{"r": benchSigner(b)}}, ""},
		{"oauth1-nethttp", "{type: oauth1, key_file: /k, secret_file: /s}", Deps{Signers: map[string]Signer{"r": signOnly{benchSigner(b)}}}, ""},
	} {
		b.Run(tc.name, func(b *testing.B) {
			up := fixedUpstream(b)
			cfg, err := ParseConfig([]byte("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n"+tc.extra+"routes: [{name: r, upstream: 'http://"+up+"', auth: "+tc.auth+"}]\n"), "bench")
			if err != nil {
				b.Fatal(err)
			}
			s := NewServer(func(context.Context) (*Config, Deps, error) { return cfg, tc.deps, nil }, WithAccessLogOutput(io.Discard))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			<-s.Started()
			b.Cleanup(func() { cancel(); <-done })
			benchRawClients(b, s.Addr(), []byte("GET /r/v1/items?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\nUser-Agent: bench\r\n\r\n"))
		})
	}
}

// benchSigner is the oauth1 package's signer, as broker adapts it.
func benchSigner(b *testing.B) realSigner {
	s, err := oauth1.NewSigner("consumer-key", "consumer-secret")
	if err != nil {
		b.Fatal(err)
	}
	return realSigner{s}
}

// signOnly hides the HeaderSigner method: the route signs on the net/http
// path.
type signOnly struct{ s Signer }

func (o signOnly) Sign(req *http.Request, body []byte) error { return o.s.Sign(req, body) }
