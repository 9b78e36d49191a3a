package sidecar

import (
	"net/url"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestSplitRoute(t *testing.T) {
	cases := []struct {
		path, name, rest string
		ok               bool
	}{
		{"/orders", "orders", "", true},
		{"/orders/", "orders", "/", true},
		{"/orders/v1/items", "orders", "/v1/items", true},
		{"/orders%2Fx/y", "orders%2Fx", "/y", true},
		{"/", "", "", false},
		{"", "", "", false},
		{"orders", "", "", false},
		{"//orders", "", "/orders", false},
	}
	for _, tc := range cases {
		name, rest, ok := splitRoute(tc.path)
		if name != tc.name || rest != tc.rest || ok != tc.ok {
			t.Errorf("splitRoute(%q) = %q, %q, %v; want %q, %q, %v", tc.path, name, rest, ok, tc.name, tc.rest, tc.ok)
		}
	}
}

func TestHasDotSegment(t *testing.T) {
	cases := map[string]bool{
		"/orders/../admin":  true,
		"/orders/./x":       true,
		"/orders/..":        true,
		"/..":               true,
		"/orders/..\\admin": true,
		"/orders\\..\\x":    true,
		"/orders/..x":       false,
		"/orders/x..":       false,
		"/orders/.well":     false,
		"/orders/...":       false,
		"/orders":           false,
		"":                  false,
	}
	for p, want := range cases {
		if got := hasDotSegment(p); got != want {
			t.Errorf("hasDotSegment(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestJoinPath(t *testing.T) {
	cases := []struct{ base, rest, want string }{
		{"", "", "/"},
		{"", "/x", "/x"},
		{"/api", "", "/api"},
		{"/api", "/", "/api/"},
		{"/api/", "/x", "/api/x"},
	}
	for _, tc := range cases {
		if got := joinPath(tc.base, tc.rest); got != tc.want {
			t.Errorf("joinPath(%q, %q) = %q, want %q", tc.base, tc.rest, got, tc.want)
		}
	}
}

func testRouter(t testing.TB, upstreams map[string]string) *router {
	var routes []*route
	for name, up := range upstreams {
		u, err := url.Parse(up)
		if err != nil {
			t.Fatal(err)
		}
		routes = append(routes, &route{name: name, target: u, basePath: strings.TrimSuffix(u.Path, "/"), port: effectivePort(u)})
	}
	return newRouter(routes)
}

func TestRouterForward(t *testing.T) {
	rt := testRouter(t, map[string]string{
		"orders":  "https://orders.example.com",
		"api":     "https://gw.example.com/api",
		"events":  "https://gw.example.com/events/v1",
		"custom":  "https://custom.example.com:8443",
		"plain":   "http://plain.example.com:8080/",
		"rootgw":  "https://gw2.example.com/",
		"deepgw2": "https://gw2.example.com/deep",
	})
	cases := []struct{ url, want string }{
		{"http://orders.example.com/v1/x", "orders"},
		{"http://ORDERS.example.com/", "orders"},
		{"http://orders.example.com:80/x", "orders"},
		{"http://orders.example.com:443/x", "orders"},
		{"http://orders.example.com:8080/x", ""},
		{"http://gw.example.com/api/x", "api"},
		{"http://gw.example.com/api", "api"},
		{"http://gw.example.com/apix", ""},
		{"http://gw.example.com/events/v1/topic", "events"},
		{"http://gw.example.com/events/v2", ""},
		{"http://gw.example.com/", ""},
		{"http://custom.example.com:8443/x", "custom"},
		{"http://custom.example.com/x", "custom"},
		{"http://custom.example.com:9443/x", ""},
		{"http://plain.example.com:8080/a", "plain"},
		{"http://gw2.example.com/deep/x", "deepgw2"},
		{"http://gw2.example.com/other", "rootgw"},
		{"http://evil.example.com/", ""},
		{"http://orders.example.com.evil.com/", ""},
	}
	for _, tc := range cases {
		u, _ := url.Parse(tc.url)
		got := ""
		if r := rt.forward(u); r != nil {
			got = r.name
		}
		if got != tc.want {
			t.Errorf("forward(%s) = %q, want %q", tc.url, got, tc.want)
		}
	}
}

func TestRouterByPath(t *testing.T) {
	g := NewWithT(t)
	rt := testRouter(t, map[string]string{"orders": "https://orders.example.com"})
	r, rest := rt.byPath("/orders/a/b")
	g.Expect(r).NotTo(BeNil())
	g.Expect(rest).To(Equal("/a/b"))
	r, _ = rt.byPath("/ordersx/a")
	g.Expect(r).To(BeNil())
	r, _ = rt.byPath("/ord%65rs/a")
	g.Expect(r).To(BeNil(), "an escaped route name is not the route")
	r, _ = rt.byPath("/admin")
	g.Expect(r).To(BeNil())
}

// FuzzRouteMatch checks the invariants of path routing on arbitrary request
// targets: no panic; a matched route's name is exactly the first escaped
// segment; a path with dot segments is never forwarded; the forwarded path
// stays under the upstream's path.
func FuzzRouteMatch(f *testing.F) {
	for _, s := range []string{"/orders/x", "/orders/../admin", "/orders/%2e%2e/admin", "/orders%2F..%2Fadmin", "/orders/..%5Cadmin", "//orders", "/orders?x=1", "/api/a%2Fb", "/", "/.credbroker/v1/token", "/orders/./x"} {
		f.Add(s)
	}
	rt := testRouter(f, map[string]string{"orders": "https://orders.example.com/base", "api": "https://api.example.com"})
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || u.IsAbs() || u.Host != "" {
			return
		}
		if hasDotSegment(u.Path) {
			return // refused before routing
		}
		esc := u.EscapedPath()
		r, rest := rt.byPath(esc)
		if r == nil {
			return
		}
		name, _, _ := splitRoute(esc)
		if name != r.name {
			t.Fatalf("%q routed to %q but its first segment is %q", target, r.name, name)
		}
		if !strings.HasPrefix(u.Path, "/"+r.name) {
			t.Fatalf("%q: decoded path %q does not start with the route", target, u.Path)
		}
		out := joinPath(r.basePath, u.Path[len(r.name)+1:])
		if !underPath(out, r.basePath) {
			t.Fatalf("%q: forwarded path %q escapes the upstream path %q", target, out, r.basePath)
		}
		if hasDotSegment(out) {
			t.Fatalf("%q: forwarded path %q has dot segments", target, out)
		}
		if rest != "" && rest[0] != '/' {
			t.Fatalf("%q: rest %q does not start with /", target, rest)
		}
	})
}
