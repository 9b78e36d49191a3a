package netx

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
)

func TestParseRule(t *testing.T) {
	for _, tc := range []struct {
		in      string
		pattern string
		bad     bool
	}{
		{in: "*.mock.test=127.0.0.1", pattern: "*.mock.test"},
		{in: "Auth.Example.COM.=::1", pattern: "auth.example.com"},
		{in: "auth.example.com", bad: true},
		{in: "=127.0.0.1", bad: true},
		{in: "a.b=not-an-ip", bad: true},
		{in: "a.*.b=127.0.0.1", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			g := NewWithT(t)
			r, err := ParseRule(tc.in)
			if tc.bad {
				g.Expect(err).To(MatchError(ContainSubstring(tc.in)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(r.Pattern).To(Equal(tc.pattern))
		})
	}
}

func TestRewrite(t *testing.T) {
	rules, err := ParseRules([]string{"*.mock.test=127.0.0.2", "exact.test=10.1.2.3"})
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	r := &Resolver{Rules: rules}
	// A configured rule wins over the mock's port-443 addresses.
	own := &Resolver{Rules: []Rule{{Pattern: "*.authentication.localhost", Addr: netip.MustParseAddr("127.0.0.9")}}}
	NewWithT(t).Expect(own.Rewrite("p.authentication.localhost:443")).To(Equal("127.0.0.9:443"))
	for in, want := range map[string]string{
		"sub.mock.test:443":                 "127.0.0.2:443",
		"a.b.mock.test:8080":                "127.0.0.2:8080",
		"mock.test:443":                     "mock.test:443",
		"exact.test:1":                      "10.1.2.3:1",
		"sub.exact.test:1":                  "sub.exact.test:1",
		"tenant.authentication.localhost:9": "127.0.0.1:9",
		// credbroker mock in port-443 mode: each role on its own address.
		"tenant.authentication.localhost:443":      "127.0.0.2:443",
		"Authentication.localhost.:443":            "127.0.0.2:443",
		"tenant.authentication.cert.localhost:443": "127.0.0.3:443",
		"authentication.cert.localhost:443":        "127.0.0.3:443",
		"p.accounts.localhost:443":                 "127.0.0.2:443",
		"connector.localhost:443":                  "127.0.0.4:443",
		"x.connector.localhost:443":                "127.0.0.1:443",
		"gateway.localhost:443":                    "127.0.0.5:443",
		"runtime-connector.localhost:443":          "127.0.0.6:443",
		"other.localhost:443":                      "127.0.0.1:443",
		"authentication.localhost.evil.test:443":   "authentication.localhost.evil.test:443",
		"localhost:9":                              "127.0.0.1:9",
		"example.com:443":                          "example.com:443",
		"no-port":                                  "no-port",
	} {
		NewWithT(t).Expect(r.Rewrite(in)).To(Equal(want), in)
	}
}

// The override dials loopback while TLS still checks the original name.
func TestDialerKeepsTLSName(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Host)
	}))
	srv.TLS = testpki.ServerTLSConfig(ca.Issue(testpki.WithDNSNames("*.auth.localhost")), nil)
	srv.StartTLS()
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	r := &Resolver{}
	client := &http.Client{Transport: &http.Transport{
		DialContext:     r.Dialer(nil),
		TLSClientConfig: &tls.Config{RootCAs: ca.Pool()},
	}}
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "https://tenant1.auth.localhost:"+port+"/", nil)
	resp, err := client.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	g.Expect(string(body)).To(Equal("tenant1.auth.localhost:" + port))

	// A name the certificate does not cover is still refused.
	req, _ = http.NewRequestWithContext(context.Background(), "GET", "https://other.localhost:"+port+"/", nil)
	_, err = client.Do(req)
	g.Expect(err).To(MatchError(ContainSubstring("certificate")))
}

func TestIsDNSLabel(t *testing.T) {
	for s, want := range map[string]bool{
		"subscriber1": true, "a": true, "A-b-9": true, strings.Repeat("a", 63): true,
		"": false, "-a": false, "a-": false, "a.b": false, "a_b": false, "ä": false,
		strings.Repeat("a", 64): false, "a b": false, "a\n": false,
	} {
		if got := IsDNSLabel(s); got != want {
			t.Errorf("IsDNSLabel(%q) = %v, want %v", s, got, want)
		}
	}
}
