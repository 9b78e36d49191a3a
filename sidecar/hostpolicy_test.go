package sidecar

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
)

func TestHostPolicy(t *testing.T) {
	p := newHostPolicy([]string{"credbroker.internal", "*.svc.cluster.local", "trailing.dot."})
	for _, tc := range []struct {
		host string
		ok   bool
	}{
		{"", true},
		{"127.0.0.1", true},
		{"127.0.0.1:8411", true},
		{"10.1.2.3:8411", true}, // the pod IP (kubelet probes)
		{"[::1]:8411", true},
		{"[::1]", true},
		{"localhost", true},
		{"LocalHost:8411", true},
		{"localhost.:8411", true},
		{"credbroker.internal:8411", true},
		{"CREDBROKER.INTERNAL", true},
		{"app.ns.svc.cluster.local:9411", true},
		{"trailing.dot", true},
		{"svc.cluster.local", false}, // the wildcard needs a label in front
		{"evil.example", false},
		{"evil.example:8411", false},
		{"x", false},
		{"app.localhost", false}, // not by default (docs/security.md)
		{"localhost.evil.example", false},
		{"credbroker.internal.evil.example", false},
		{"127.0.0.1.evil.example", false},
		{"127.1", false},           // not an address net/netip accepts
		{"999.0.0.1", false},       // digits, but no address
		{"[::1", false},            // unterminated
		{"[::1]x", false},          // junk after the literal
		{"localhost:80:80", false}, // two ports
		{"localhost:http", false},
	} {
		if got := p.allowed(tc.host); got != tc.ok {
			t.Errorf("allowed(%q) = %v, want %v", tc.host, got, tc.ok)
		}
	}
	// The hot path does not allocate.
	for _, h := range []string{"127.0.0.1:8411", "localhost:8411", "evil.example:80", "[::1]:1", "app.ns.svc.cluster.local"} {
		if n := testing.AllocsPerRun(100, func() { p.allowed(h) }); n != 0 {
			t.Errorf("allowed(%q) allocates %v times", h, n)
		}
	}
}

func TestValidAllowedHost(t *testing.T) {
	g := NewWithT(t)
	for _, ok := range []string{"localhost", "a.b", "*.svc.cluster.local", "my_host.internal", "x."} {
		g.Expect(validAllowedHost(ok)).To(BeTrue(), ok)
	}
	for _, bad := range []string{"", "*.", "a..b", "host:8080", "http://host", "a/b", "*", "**.a", strings.Repeat("a", 64) + ".b"} {
		g.Expect(validAllowedHost(bad)).To(BeFalse(), bad)
	}
}

func TestNamesAuthorization(t *testing.T) {
	g := NewWithT(t)
	g.Expect(namesAuthorization([]string{"Authorization"})).To(BeTrue())
	g.Expect(namesAuthorization([]string{"keep-alive, authorization"})).To(BeTrue())
	g.Expect(namesAuthorization([]string{"close", " AUTHORIZATION ,x"})).To(BeTrue())
	g.Expect(namesAuthorization([]string{"keep-alive, X-Authorization", "Proxy-Authorization"})).To(BeFalse())
	g.Expect(namesAuthorization(nil)).To(BeFalse())
}

// The token API refuses what a browser page can send: a foreign Host (DNS
// rebinding), an Origin, Sec-Fetch-Site cross-site or same-site.
func TestTokenAPIBrowserPolicy(t *testing.T) {
	g := NewWithT(t)
	tokens := &fakeTokens{}
	tp := newTestProxy(t, testpki.NewCA(), "allowed_hosts: [sidecar.internal]\ntoken_api: {bindings: [b]}\n", Deps{Tokens: tokens})
	for _, tc := range []struct {
		name   string
		hdr    map[string]string
		status int
		reason string
	}{
		{"IP literal", nil, 200, ""},
		{"localhost", map[string]string{"Host": "localhost:8411"}, 200, ""},
		{"allowed name", map[string]string{"Host": "sidecar.internal:8411"}, 200, ""},
		{"same-origin", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200, ""},
		{"user typed it", map[string]string{"Sec-Fetch-Site": "none"}, 200, ""},
		{"DNS rebinding", map[string]string{"Host": "evil.example:8411"}, 403, ReasonHostNotAllowed},
		{"Origin", map[string]string{"Origin": "https://attacker.example"}, 403, ReasonOriginRefused},
		{"Origin null", map[string]string{"Origin": "null"}, 403, ReasonOriginRefused},
		{"cross-site", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, ReasonCrossSite},
		{"same-site", map[string]string{"Sec-Fetch-Site": "Same-Site"}, 403, ReasonCrossSite},
	} {
		resp, body := do(t, "GET", tp.srv.URL+TokenAPIPath+"?binding=b", nil, tc.hdr)
		g.Expect(resp.StatusCode).To(Equal(tc.status), tc.name)
		g.Expect(resp.Header.Get(HeaderError)).To(Equal(tc.reason), tc.name)
		if tc.status != 200 {
			g.Expect(body).NotTo(ContainSubstring("tok-"), tc.name)
		}
	}
}

// Route requests: a foreign Host on an origin-form request is refused, the
// absolute form keeps its upstream Host; a cross-site browser request is
// refused unless the route allows it; Origin is forwarded unless the route
// refuses it; Connection: Authorization is refused on the fast path (GET)
// and the std transport path (POST) alike.
func TestRouteBrowserPolicyAndHopByHopCredential(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	tokens := &fakeTokens{}
	tp := newTestProxy(t, ca, fmt.Sprintf(`
routes:
  - {name: r, upstream: %[1]s, auth: {type: bearer, binding: b}}
  - {name: open, upstream: %[1]s, auth: {type: none}, allow_cross_site: true, refuse_origin: true}
`, up.url), Deps{Tokens: tokens})
	for _, tc := range []struct {
		name, method, path string
		hdr                map[string]string
		status             int
		reason             string
	}{
		{"IP literal", "GET", "/r/a", nil, 200, ""},
		{"foreign Host", "GET", "/r/a", map[string]string{"Host": "evil.example:8411"}, 403, ReasonHostNotAllowed},
		{"cross-site", "GET", "/r/a", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403, ReasonCrossSite},
		{"same-site is not refused on routes", "GET", "/r/a", map[string]string{"Sec-Fetch-Site": "same-site"}, 200, ""},
		{"cross-site allowed", "GET", "/open/a", map[string]string{"Sec-Fetch-Site": "cross-site"}, 200, ""},
		{"Origin forwarded", "GET", "/r/a", map[string]string{"Origin": "https://app.example"}, 200, ""},
		{"Origin refused", "GET", "/open/a", map[string]string{"Origin": "https://app.example"}, 403, ReasonOriginRefused},
		{"Connection: Authorization, fast path", "GET", "/r/a", map[string]string{"Connection": "keep-alive, Authorization"}, 400, ReasonHopByHopCredential},
		{"Connection: Authorization, std path", "POST", "/r/a", map[string]string{"Connection": "authorization"}, 400, ReasonHopByHopCredential},
		{"Connection: Authorization, no credential route", "GET", "/open/a", map[string]string{"Connection": "Authorization"}, 400, ReasonHopByHopCredential},
	} {
		var body *strings.Reader
		if tc.method == "POST" {
			body = strings.NewReader("payload")
		}
		var resp *http.Response
		if body != nil {
			resp, _ = do(t, tc.method, tp.srv.URL+tc.path, body, tc.hdr)
		} else {
			resp, _ = do(t, tc.method, tp.srv.URL+tc.path, nil, tc.hdr)
		}
		g.Expect(resp.StatusCode).To(Equal(tc.status), tc.name)
		g.Expect(resp.Header.Get(HeaderError)).To(Equal(tc.reason), tc.name)
		if tc.status == 200 {
			s := up.last(t)
			if tc.path == "/r/a" {
				g.Expect(s.Header.Get("Authorization")).To(HavePrefix("Bearer tok-"), tc.name)
			}
			if o := tc.hdr["Origin"]; o != "" {
				g.Expect(s.Header.Get("Origin")).To(Equal(o), "Origin is passed on")
			}
		}
	}
	g.Consistently(up.seen).ShouldNot(Receive(), "no refused request reached the upstream")

	// Absolute form (forward-proxy mode): the Host is the upstream's.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", up.url+"/x", nil)
	req.URL.Scheme = "http"
	req.Host = req.URL.Host
	req.RemoteAddr = "127.0.0.1:5555"
	tp.p.ServeHTTP(rec, req)
	g.Expect(rec.Code).To(Equal(http.StatusOK), rec.Header().Get(HeaderError))
	g.Expect(up.last(t).Header.Get("Authorization")).To(HavePrefix("Bearer tok-"))
}

func TestConfigLoopbackAndConnectionKeys(t *testing.T) {
	g := NewWithT(t)
	cfg, err := ParseConfig([]byte("routes: [{name: a, upstream: 'https://a.example', auth: {type: none}}]\n"), "config test")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.MaxConnections).To(Equal(MaxConnections{Proxy: DefaultMaxProxyConnections, Admin: DefaultMaxAdminConnections, Inbound: DefaultMaxInboundConnections}))
	g.Expect(cfg.ClientIdleTimeout).To(Equal(DefaultClientIdleTimeout))
	g.Expect(cfg.Routes[0].AllowCrossSite).To(BeFalse())
	g.Expect(cfg.Routes[0].RefuseOrigin).To(BeFalse())

	cfg, err = ParseConfig([]byte("allowed_hosts: [a.internal, '*.svc']\nmax_connections: {proxy: 7}\nclient_idle_timeout: 5s\nroutes: [{name: a, upstream: 'https://a.example', auth: {type: none}, allow_cross_site: true, refuse_origin: true}]\n"), "config test")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cfg.MaxConnections.Proxy).To(Equal(7))
	g.Expect(cfg.MaxConnections.Admin).To(Equal(DefaultMaxAdminConnections))
	g.Expect(cfg.Routes[0].AllowCrossSite).To(BeTrue())
	g.Expect(cfg.Routes[0].RefuseOrigin).To(BeTrue())

	for _, tc := range []struct{ yaml, field string }{
		{"allowed_hosts: ['evil.example:80']\n", "allowed_hosts[0]"},
		{"allowed_hosts: [ok.example, 'http://x']\n", "allowed_hosts[1]"},
		{"max_connections: {admin: -1}\n", "max_connections.admin"},
		{"client_idle_timeout: -1s\n", "client_idle_timeout"},
	} {
		_, err := ParseConfig([]byte(tc.yaml), "config test")
		g.Expect(err).To(MatchError(ContainSubstring(tc.field)), tc.yaml)
		g.Expect(err).To(MatchError(ErrInvalidValue), tc.yaml)
	}
}
