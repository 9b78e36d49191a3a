package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/testpki"
	. "github.com/onsi/gomega"
)

// fakeResolver answers with res (or err) and records the requests.
type fakeResolver struct {
	mu   sync.Mutex
	res  *ResolvedDestination
	err  error
	reqs []DestinationRequest
}

func (f *fakeResolver) Resolve(_ context.Context, req DestinationRequest) (*ResolvedDestination, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	return f.res, f.err
}

type destErr struct{ status int }

func (e destErr) Error() string      { return `destination "d": not found` }
func (e destErr) HTTPStatus() int    { return e.status }
func (e destErr) ReasonCode() string { return "destination-not-found" }

const destYAML = `routes:
  - name: erp
    auth: {type: destination, destination: d, binding: dest, connectivity: conn, tenant_header: X-Tenant}
`

func TestDestinationRouteInternet(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	u, _ := url.Parse(up.url + "/base?fixed=1")
	fr := &fakeResolver{res: &ResolvedDestination{URL: u, Header: http.Header{"Authorization": {"Bearer dest-token"}, "X-Dest-Custom": {"v"}}, Query: url.Values{"sap-client": {"100"}}}}
	tp := newTestProxy(t, ca, destYAML, Deps{Destinations: map[string]DestinationResolver{"erp": fr}})
	resp, _ := do(t, "GET", tp.srv.URL+"/erp/orders/1?x=2", nil, map[string]string{
		"X-Tenant": "acme", "Authorization": "Bearer user-jwt",
		HeaderConnectivityPrincipal: "Bearer forged", HeaderConnectivityLocation: "forged",
	})
	g.Expect(resp.StatusCode).To(Equal(200))
	s := up.last(t)
	g.Expect(s.Path).To(Equal("/base/orders/1"))
	g.Expect(s.Query).To(Equal("fixed=1&sap-client=100&x=2"))
	g.Expect(s.Header.Get("Authorization")).To(Equal("Bearer dest-token"))
	g.Expect(s.Header.Get("X-Dest-Custom")).To(Equal("v"))
	g.Expect(s.Header.Get("X-Tenant")).To(BeEmpty())
	g.Expect(s.Header.Get(HeaderConnectivityPrincipal)).To(BeEmpty())
	g.Expect(s.Header.Get(HeaderConnectivityLocation)).To(BeEmpty())
	g.Expect(s.Header.Get("Proxy-Authorization")).To(BeEmpty())
	g.Expect(fr.reqs).To(Equal([]DestinationRequest{{Tenant: "acme", UserToken: "user-jwt"}}))
}

func TestDestinationRouteOnPremise(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	// A forward proxy that echoes what it received.
	type got struct {
		URL, ProxyAuth, Location, Principal, Auth string
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(got{r.URL.String(), r.Header.Get("Proxy-Authorization"), r.Header.Get(HeaderConnectivityLocation), r.Header.Get(HeaderConnectivityPrincipal), r.Header.Get("Authorization")})
	}))
	t.Cleanup(proxy.Close)
	pu, _ := url.Parse(proxy.URL)
	u, _ := url.Parse("http://erp.virtual:8000/sap")
	fr := &fakeResolver{res: &ResolvedDestination{URL: u, Header: http.Header{}, OnPremise: true, ProxyURL: pu, ProxyAuthorization: "Bearer conn-token", LocationID: "loc1", PrincipalPropagation: true}}
	tp := newTestProxy(t, ca, destYAML, Deps{Destinations: map[string]DestinationResolver{"erp": fr}})
	resp, body := do(t, "GET", tp.srv.URL+"/erp/x", nil, map[string]string{"Authorization": "Bearer user-jwt"})
	g.Expect(resp.StatusCode).To(Equal(200))
	var gt got
	g.Expect(json.Unmarshal([]byte(body), &gt)).To(Succeed())
	g.Expect(gt).To(Equal(got{URL: "http://erp.virtual:8000/sap/x", ProxyAuth: "Bearer conn-token", Location: "loc1", Principal: "Bearer user-jwt"}))

	fr.res = &ResolvedDestination{URL: u, Header: http.Header{}, OnPremise: true}
	resp, _ = do(t, "GET", tp.srv.URL+"/erp/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadGateway))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonNoConnectivity))
}

func TestDestinationRouteErrors(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	fr := &fakeResolver{err: destErr{status: http.StatusBadGateway}}
	tp := newTestProxy(t, ca, destYAML, Deps{Destinations: map[string]DestinationResolver{"erp": fr}})
	resp, body := do(t, "GET", tp.srv.URL+"/erp/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadGateway))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal("destination-not-found"))
	g.Expect(body).To(ContainSubstring(`"d"`))
	// A credential over plain http to a host beyond loopback is refused.
	u, _ := url.Parse("http://backend.example:8080/x")
	fr.err, fr.res = nil, &ResolvedDestination{URL: u, Header: http.Header{"Authorization": {"Basic x"}}, Credential: true}
	resp, _ = do(t, "GET", tp.srv.URL+"/erp/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusBadGateway))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonDestinationPlainHTTP))
	fr.err = errors.New("boom")
	resp, _ = do(t, "GET", tp.srv.URL+"/erp/x", nil, nil)
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonDestinationUnavailable))
	// Not reachable in forward-proxy mode.
	st, reason := raw(t, tp.srv.Listener.Addr().String(), "GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n")
	g.Expect(st).To(Equal(403))
	g.Expect(reason).To(Equal(ReasonNotARoute))
}

func TestDestinationRouteConfig(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"routes:\n  - {name: a, auth: {type: destination, binding: d}}\n", "auth.destination"},
		{"routes:\n  - {name: a, auth: {type: destination, destination: x}}\n", "auth.binding"},
		{"routes:\n  - {name: a, upstream: https://x, auth: {type: destination, destination: x, binding: d}}\n", "upstream"},
		{"routes:\n  - {name: a, auth: {type: destination, destination: x, binding: d, tenant_mode: both}}\n", "tenant_mode"},
		{"routes:\n  - {name: a, auth: {type: destination, destination: x, binding: d, scopes: [s]}}\n", "scopes"},
		{"routes:\n  - {name: a, upstream: https://x, auth: {type: none, destination: x}}\n", "destination routes"},
		{"routes:\n  - {name: a, upstream: https://x, auth: {type: none, principal_exchange: x}}\n", "destination routes"},
		{"destinations: {connectivity_proxy: nope}\nroutes:\n  - {name: a, auth: {type: destination, destination: x, binding: d}}\n", "connectivity_proxy"},
	} {
		_, err := ParseConfig([]byte(tc.yaml), "config t")
		if err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want an error naming %q", tc.yaml, err, tc.want)
		}
	}
	cfg, err := ParseConfig([]byte("routes:\n  - {name: a, auth: {type: destination, destination: x, binding: d, connectivity: c, tenant_header: X-T, user_token: X-User}}\n"), "config t")
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(kinds map[string]string) BindingLookup {
		return func(n string) (BindingInfo, bool) { k, ok := kinds[n]; return BindingInfo{Service: k}, ok }
	}
	if err := cfg.Validate(lookup(map[string]string{"d": "destination", "c": "connectivity"})); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(lookup(map[string]string{"d": "connectivity", "c": "connectivity"})); err == nil || !contains(err.Error(), "not a destination service binding") {
		t.Fatalf("got %v", err)
	}
	if err := cfg.Validate(lookup(map[string]string{"d": "destination"})); err == nil || !contains(err.Error(), `"c"`) {
		t.Fatalf("got %v", err)
	}
	cfg, err = ParseConfig([]byte("routes:\n  - {name: a, auth: {type: destination, destination: x, binding: d, principal_exchange: x}}\n"), "config t")
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate(func(n string) (BindingInfo, bool) {
		return map[string]BindingInfo{"d": {Service: "destination"}, "x": {Service: "connectivity"}}[n], n == "d" || n == "x"
	})
	if err == nil || !contains(err.Error(), "not an xsuaa or identity binding") {
		t.Fatalf("got %v", err)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

// TestDestinationRouteOnPremiseHTTPS: for https:// on-premise URLs the
// Connectivity headers travel on CONNECT only, never inside the tunnel.
func TestDestinationRouteOnPremiseHTTPS(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	var mu sync.Mutex
	var connectHdr http.Header
	var principals []string
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "want CONNECT", http.StatusMethodNotAllowed)
			return
		}
		mu.Lock()
		connectHdr = r.Header.Clone()
		principals = append(principals, r.Header.Get(HeaderConnectivityPrincipal))
		mu.Unlock()
		back, err := net.Dial("tcp", "127.0.0.1"+strings.TrimPrefix(up.url, "https://localhost"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			back.Close()
			return
		}
		go func() { _, _ = io.Copy(back, brw); back.Close() }()
		_, _ = io.Copy(conn, back)
		conn.Close()
	}))
	t.Cleanup(proxy.Close)
	pu, _ := url.Parse(proxy.URL)
	u, _ := url.Parse(up.url + "/tls")
	fr := &fakeResolver{res: &ResolvedDestination{URL: u, Header: http.Header{}, OnPremise: true, ProxyURL: pu, ProxyAuthorization: "Bearer conn-token", LocationID: "loc1", PrincipalPropagation: true}}
	tp := newTestProxy(t, ca, destYAML, Deps{Destinations: map[string]DestinationResolver{"erp": fr}})
	resp, body := do(t, "GET", tp.srv.URL+"/erp/x", nil, map[string]string{"Authorization": "Bearer user-jwt"})
	g.Expect(resp.StatusCode).To(Equal(200), body)
	s := up.last(t)
	g.Expect(s.Path).To(Equal("/tls/x"))
	for _, h := range []string{"Proxy-Authorization", HeaderConnectivityLocation, HeaderConnectivityPrincipal, "Authorization"} {
		g.Expect(s.Header.Get(h)).To(BeEmpty(), h)
	}
	// Another user, then the first again: a tunnel is never shared
	// between principals (a new CONNECT for bob; alice's tunnel reused).
	resp, body = do(t, "GET", tp.srv.URL+"/erp/x", nil, map[string]string{"Authorization": "Bearer bob-jwt"})
	g.Expect(resp.StatusCode).To(Equal(200), body)
	up.last(t)
	resp, body = do(t, "GET", tp.srv.URL+"/erp/x", nil, map[string]string{"Authorization": "Bearer user-jwt"})
	g.Expect(resp.StatusCode).To(Equal(200), body)
	up.last(t)
	mu.Lock()
	defer mu.Unlock()
	g.Expect(principals).To(Equal([]string{"Bearer user-jwt", "Bearer bob-jwt"}))
	g.Expect(connectHdr.Get("Proxy-Authorization")).To(Equal("Bearer conn-token"))
	g.Expect(connectHdr.Get(HeaderConnectivityLocation)).To(Equal("loc1"))
	g.Expect(connectHdr.Get(HeaderConnectivityPrincipal)).To(Equal("Bearer bob-jwt"))
}

// checkingResolver is a fakeResolver that also answers credential checks.
type checkingResolver struct {
	fakeResolver
	checks  []CredentialCheck
	tenants []string
}

func (c *checkingResolver) CheckCredentials(_ context.Context, tenant string) []CredentialCheck {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tenants = append(c.tenants, tenant)
	return c.checks
}

// TestDestinationRouteReadiness: a destination route is ready when its
// bindings are usable and their tokens can be had; a failed connectivity
// token makes the proxy unready with the binding named, once per binding
// however many routes share it; an unusable connectivity binding is a
// reason of its own (and is not asked for a token).
func TestDestinationRouteReadiness(t *testing.T) {
	exp := time.Now().Add(time.Hour)
	ok := CredentialCheck{Binding: "dest", Token: Token{AccessToken: "t", ExpiresAt: exp}}
	connOK := CredentialCheck{Binding: "conn", Token: Token{AccessToken: "c", ExpiresAt: exp}}
	connFail := CredentialCheck{Binding: "conn", Err: errors.New("tokenclient: 401 invalid_client")}
	twoRoutes := destYAML + "  - name: erp2\n    auth: {type: destination, destination: d2, binding: dest, connectivity: conn, tenant: acme}\n"
	lookup := func(problems map[string][]string) BindingLookup {
		return func(name string) (BindingInfo, bool) {
			switch name {
			case "dest":
				return BindingInfo{Service: "destination", Problems: problems[name]}, true
			case "conn":
				return BindingInfo{Service: "connectivity", Problems: problems[name]}, true
			}
			return BindingInfo{}, false
		}
	}
	for _, tc := range []struct {
		name        string
		yaml        string
		checks      []CredentialCheck
		problems    map[string][]string
		wantReasons []string
		wantAsked   bool
	}{
		{"both tokens", destYAML, []CredentialCheck{ok, connOK}, nil, []string{}, true},
		{"no connectivity token", twoRoutes, []CredentialCheck{ok, connFail}, nil,
			[]string{`binding "conn": no valid token: tokenclient: 401 invalid_client`}, true},
		{"connectivity binding unusable", destYAML, []CredentialCheck{ok, connOK}, map[string][]string{"conn": {"the binding has no usable client credential"}},
			[]string{`binding "conn" is unusable: the binding has no usable client credential`}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cr := &checkingResolver{checks: tc.checks}
			deps := Deps{Bindings: lookup(tc.problems), Destinations: map[string]DestinationResolver{"erp": cr, "erp2": cr}}
			tp := newTestProxy(t, testpki.NewCA(), tc.yaml, deps)
			st := tp.p.status(context.Background(), time.Now())
			g.Expect(st.Reasons).To(Equal(tc.wantReasons))
			g.Expect(st.Ready).To(Equal(len(tc.wantReasons) == 0))
			if tc.wantAsked {
				g.Expect(cr.tenants).To(ContainElement(""), "the route's tenant: the provider")
			} else {
				g.Expect(cr.tenants).To(BeEmpty())
			}
			for _, b := range st.Bindings {
				if b.Name == "conn" && len(tc.wantReasons) == 0 {
					g.Expect(b.TokenExpiresAt).NotTo(BeNil())
				}
			}
			g.Expect(st.Bindings).To(ContainElement(HaveField("Name", "conn")), "the connectivity binding is listed")
		})
	}
}
