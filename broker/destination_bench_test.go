package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credbroker/credbroker/destination"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/sidecar"
)

// benchFinder answers every lookup with a destination to up and counts.
type benchFinder struct {
	up      *url.URL
	lookups atomic.Int64
	gate    chan struct{}
}

func (f *benchFinder) Find(_ context.Context, name, _, user string) (*destination.Destination, error) {
	f.lookups.Add(1)
	if f.gate != nil {
		<-f.gate
	}
	d := &destination.Destination{Name: name, URL: f.up, Authentication: destination.OAuth2ClientCredentials, ProxyType: destination.ProxyInternet,
		Header: http.Header{"Authorization": {"Bearer dest-token"}}, Query: url.Values{}, Expiry: time.Now().Add(time.Hour)}
	if user != "" {
		d.Authentication, d.UserDependent = destination.OAuth2UserTokenExchange, true
	}
	return d, nil
}

type benchTokens struct{}

func (benchTokens) Source(string, []string, string) (sidecar.TokenSource, error) {
	return benchTokens{}, nil
}
func (benchTokens) Token(context.Context, sidecar.TokenRequest) (sidecar.Token, error) {
	return sidecar.Token{AccessToken: "bearer-token", ExpiresAt: time.Now().Add(time.Hour)}, nil
}

func benchUserToken(user string) string {
	c, _ := json.Marshal(map[string]any{"iss": "https://provider.authentication.example/oauth/token", "zid": "zone-1", "user_id": user,
		"exp": time.Now().Add(time.Hour).Unix(), "scope": []string{"openid", "app.read", "app.write"}, "client_id": "sb-app!t1", "padding": strings.Repeat("x", 600)})
	return "eyJhbGciOiJSUzI1NiJ9." + base64.RawURLEncoding.EncodeToString(c) + "." + strings.Repeat("s", 342)
}

// benchRouteProxy serves one route r (bearer or destination) in front of a
// TLS upstream.
func benchRouteProxy(b *testing.B, kind string) (*sidecar.Proxy, *benchFinder) {
	b.Helper()
	ca := testpki.NewCA()
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	up.TLS = testpki.ServerTLSConfig(ca.Issue(testpki.WithDNSNames("localhost"), testpki.WithIPs("127.0.0.1")), nil)
	up.StartTLS()
	b.Cleanup(up.Close)
	caFile := filepath.Join(b.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		b.Fatal(err)
	}
	upURL, _ := url.Parse(strings.Replace(up.URL, "127.0.0.1", "localhost", 1))
	route := "{name: r, upstream: '" + upURL.String() + "', auth: {type: bearer, binding: b}}"
	if kind == "destination" {
		route = "{name: r, auth: {type: destination, destination: d, binding: dest}}"
	}
	cfg, err := sidecar.ParseConfig([]byte("ca_file: "+caFile+"\nroutes: ["+route+"]\n"), "bench")
	if err != nil {
		b.Fatal(err)
	}
	f := &benchFinder{up: upURL}
	cache, err := destination.NewCache(f, destination.CacheConfig{})
	if err != nil {
		b.Fatal(err)
	}
	deps := sidecar.Deps{Tokens: benchTokens{}, Destinations: map[string]sidecar.DestinationResolver{"r": &destResolver{name: "d", cache: cache}}}
	p, err := sidecar.NewProxy(cfg, deps)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p, f
}

// discard is a ResponseWriter that keeps only the status.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }

func runRouteBench(b *testing.B, p *sidecar.Proxy, user string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discard{h: http.Header{}}
		for pb.Next() {
			req := httptest.NewRequest("GET", "/r/v1/items?x=1", nil)
			req.RemoteAddr = "127.0.0.1:40000"
			req.Host = "127.0.0.1" // the host policy refuses httptest's example.com
			if user != "" {
				req.Header.Set("Authorization", "Bearer "+user)
			}
			clear(w.h)
			w.code = http.StatusOK
			p.ServeHTTP(w, req)
			if w.code != http.StatusOK {
				// A refusal is not the route's cost: measure nothing else.
				b.Errorf("status %d (%s), want 200", w.code, w.h.Get(sidecar.HeaderError))
				return
			}
		}
	})
}

// BenchmarkRouteBearerVsDestination compares a bearer route with a
// destination route whose destination is cached, over the same TLS
// upstream: the difference is the destination route's own cost (cache hit,
// request template, header and query rewrite). "user" adds a user token
// (hashed and compared with the entry's copy on every request). The
// requests must succeed: a refusal would measure nothing.
func BenchmarkRouteBearerVsDestination(b *testing.B) {
	b.Run("bearer", func(b *testing.B) {
		p, _ := benchRouteProxy(b, "bearer")
		runRouteBench(b, p, "")
	})
	b.Run("destination", func(b *testing.B) {
		p, f := benchRouteProxy(b, "destination")
		runRouteBench(b, p, "")
		if f.lookups.Load() != 1 {
			b.Fatalf("%d lookups, want 1 (cached)", f.lookups.Load())
		}
	})
	b.Run("destination-user", func(b *testing.B) {
		p, f := benchRouteProxy(b, "destination")
		runRouteBench(b, p, benchUserToken("alice"))
		if f.lookups.Load() != 1 {
			b.Fatalf("%d lookups, want 1 (cached)", f.lookups.Load())
		}
	})
}

// BenchmarkDestinationResolveHit is the resolver alone on a cache hit.
func BenchmarkDestinationResolveHit(b *testing.B) {
	for _, tc := range []struct{ name, user string }{{"no-user", ""}, {"user", benchUserToken("alice")}} {
		b.Run(tc.name, func(b *testing.B) {
			f := &benchFinder{up: &url.URL{Scheme: "https", Host: "x"}}
			cache, _ := destination.NewCache(f, destination.CacheConfig{})
			r := &destResolver{name: "d", cache: cache}
			req := sidecar.DestinationRequest{Tenant: "acme", UserToken: tc.user}
			if _, err := r.Resolve(context.Background(), req); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := r.Resolve(context.Background(), req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkDestinationColdBurst sends bursts of 1,000 concurrent requests
// for one fresh (tenant, user, destination) each and fails unless every
// burst made exactly one lookup.
func BenchmarkDestinationColdBurst(b *testing.B) {
	const burst = 1000
	f := &benchFinder{up: &url.URL{Scheme: "https", Host: "x"}}
	for i := 0; b.Loop(); i++ {
		cache, _ := destination.NewCache(f, destination.CacheConfig{})
		r := &destResolver{name: "d", cache: cache}
		f.gate = make(chan struct{})
		before := f.lookups.Load()
		user := benchUserToken("user-" + time.Now().String())
		var wg sync.WaitGroup
		var started sync.WaitGroup
		started.Add(burst)
		for j := 0; j < burst; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				started.Done()
				if _, err := r.Resolve(context.Background(), sidecar.DestinationRequest{Tenant: "acme", UserToken: user}); err != nil {
					b.Error(err)
				}
			}()
		}
		started.Wait()
		close(f.gate)
		wg.Wait()
		if n := f.lookups.Load() - before; n != 1 {
			b.Fatalf("burst %d: %d lookups, want 1", i, n)
		}
	}
	b.ReportMetric(1, "lookups/burst")
}
