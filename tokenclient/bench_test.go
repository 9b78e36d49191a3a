package tokenclient

import (
	"crypto/tls"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/credbroker/credbroker/internal/testpki"
)

// BenchmarkCacheHit measures Token for a cached client_credentials token
// (the sidecar's hot path): target < 50 ns in all, the wall-clock read
// included, and 0 allocs (docs/performance.md). "fresh strings" passes
// copies of the strings the entry was made with, as a tenant taken from
// a header each time would: it misses the front table and takes the
// shard index.
func BenchmarkCacheHit(b *testing.B) {
	as, ca := newTLSFakeAS(b, nil)
	cfg := as.secretConfig()
	cfg.TokenURL = as.hostURL("provider.authentication.localhost")
	c := newClient(b, cfg, WithRootCAs(ca.Pool()), WithDialContext(loopbackDial))
	for _, tc := range []struct {
		name string
		req  Request
	}{
		{"provider", Request{}},
		{"tenant+scopes", Request{Scopes: []string{"orders.read", "orders.write"}, Tenant: "subscriber-1"}},
		{"tenant+scopes+fresh-strings", Request{Scopes: []string{"orders.read", "orders.write"}, Tenant: "subscriber-1"}},
	} {
		if _, err := c.Token(bg, tc.req); err != nil {
			b.Fatal(err)
		}
		if strings.HasSuffix(tc.name, "fresh-strings") {
			tc.req = Request{Scopes: []string{strings.Clone("orders.read"), strings.Clone("orders.write")}, Tenant: strings.Clone("subscriber-1")}
		}
		b.Run(tc.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Token(bg, tc.req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Token(bg, tc.req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
	h, err := c.Handle(Request{Scopes: []string{"orders.read"}, Tenant: "subscriber-1"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := h.Token(bg); err != nil {
		b.Fatal(err)
	}
	b.Run("handle/serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := h.Token(bg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("handle/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := h.Token(bg); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	if n := as.count(); n != 3 {
		b.Fatalf("token requests: %d, want 3", n)
	}
}

// BenchmarkColdBurst: 1,000 concurrent callers ask for one cold key; each
// iteration uses a new key. Reports token requests per burst (want 1).
func BenchmarkColdBurst(b *testing.B) {
	as := newFakeAS(b, nil)
	// A new key per burst: lift the bound on distinct keys (WithMaxKeys)
	// above what a long run makes.
	c := newClient(b, as.secretConfig(), WithMaxKeys(1<<30))
	const callers = 1000
	i := 0
	for b.Loop() {
		req := Request{Scopes: []string{fmt.Sprintf("burst-%d", i)}}
		i++
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if _, err := c.Token(bg, req); err != nil {
					b.Error(err)
				}
			}()
		}
		close(start)
		wg.Wait()
	}
	b.ReportMetric(float64(as.count())/float64(i), "requests/burst")
}

// BenchmarkFetchMTLS fetches a new token per iteration over mutual TLS and
// reports TLS handshakes per fetch (connections are reused: want ~0).
func BenchmarkFetchMTLS(b *testing.B) {
	ca := testpki.NewCA()
	var handshakes atomic.Int64
	srvCfg := testpki.ServerTLSConfig(ca.Issue(testpki.WithDNSNames("provider.authentication.cert.localhost")), ca.Pool())
	srvCfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		handshakes.Add(1)
		return nil, nil
	}
	as := newFakeAS(b, srvCfg)
	leaf := ca.Issue(testpki.WithCommonName("app"), testpki.ClientAuth())
	cert := leaf.TLSCertificate()
	c := newClient(b, mtlsConfig(as, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }),
		WithRootCAs(ca.Pool()), WithDialContext(loopbackDial), WithMaxKeys(1<<30)) // a new key per fetch
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := c.Token(bg, Request{Scopes: []string{fmt.Sprintf("s%d", i)}}); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(handshakes.Load())/float64(i), "handshakes/fetch")
}
