package guard

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
)

func TestFoldName(t *testing.T) {
	for in, want := range map[string]string{
		"X-Credbroker-Subject": "x-credbroker-subject",
		"X_Credbroker_Subject": "x-credbroker-subject",
		"x-credbroker_tenant":  "x-credbroker-tenant",
		"X.Credbroker.Scopes":  "x-credbroker-scopes",
		"X-CREDBROKER-ZONE":    "x-credbroker-zone",
		"Authorization":        "authorization",
		"X-Forwarded-For":      "x-forwarded-for",
		"X~Client~Cert9":       "x-client-cert9",
	} {
		if got := foldName(in); got != want {
			t.Errorf("foldName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestStripCallerHeaders(t *testing.T) {
	g := NewWithT(t)
	h := http.Header{}
	stripped := []string{
		"X-Credbroker-Subject", "X_credbroker_subject", "X-Credbroker_tenant", "x-credbroker-zone",
		"X.credbroker.scopes", "X-Credbroker-Anything-New", "X-Credbroker-Error",
		"X-Client-Cert", "X_client_cert", "X-Original-Url", "X-Rewrite-Url", "X_original_url",
		"X_forwarded_for", "X-Forwarded_host", "X_forwarded_client_cert",
	}
	kept := []string{
		"Authorization", "Content-Type", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Client-Cert",
		"X-Credbrokers", "Credbroker-Subject", "X-App_header", "Forwarded_",
	}
	for _, k := range append(append([]string{}, stripped...), kept...) {
		h[k] = []string{"v"}
	}
	stripCallerHeaders(h)
	for _, k := range stripped {
		g.Expect(h).NotTo(HaveKey(k))
	}
	for _, k := range kept {
		g.Expect(h).To(HaveKey(k))
	}
	stripCallerHeaders(nil) // a request without trailers
}

func TestCheckHeaders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header http.Header
		reason string
	}{
		{"plain", http.Header{"Connection": {"keep-alive"}, "Authorization": {"Bearer x"}}, ""},
		{"close and upgrade", http.Header{"Connection": {"close, Upgrade"}}, ""},
		{"names a reserved header", http.Header{"Connection": {"close, X-Credbroker-Subject"}}, ReasonConnectionReserved},
		{"names an underscore look-alike", http.Header{"Connection": {"x_credbroker_tenant"}}, ReasonConnectionReserved},
		{"names Authorization", http.Header{"Connection": {"keep-alive", " authorization "}}, ReasonConnectionReserved},
		{"two Authorization headers", http.Header{"Authorization": {"Bearer a", "Bearer b"}}, ReasonDuplicateAuthorization},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := checkHeaders(tc.header)
			switch {
			case tc.reason == "" && ref != nil:
				t.Fatalf("refused: %v", ref)
			case tc.reason != "" && (ref == nil || ref.reason != tc.reason || ref.status != 400):
				t.Fatalf("got %+v, want 400 %s", ref, tc.reason)
			}
		})
	}
}

func TestPathProblem(t *testing.T) {
	ok := []string{
		"/", "/api/", "/api/orders/7", "/api/a.b", "/api/...", "/api/.well-known/x", "/api/%20x", "/api/100%25",
		"/api/a;b", // ";" is judged by the rule (allow_path_params), not here
		"/api/%2e%2ex", "/api/x%2e",
	}
	bad := []string{
		"", "*", "api",
		"//jwt/secret", "/x//y", "/x/y//",
		"/x/./y", "/x/../y", "/x/..", "/x/.",
		"/x/..;/jwt/secret", "/x/..;a=b/y", "/x/.;/y",
		"/x/%2e%2e/y", "/x/%2E%2e/y", "/x/.%2e/y", "/x/%2e/y", "/x/%252e%252e/y", "/x/%25252e%25252e/y",
		"/x/..%3b/jwt/secret", "/x/..%3B/y", "/jwt%3bx/secret", "/x/%253b",
		`/x\..\y`, "/x%5c..%5cy", "/x%5Cy", "/x/%255c",
		"/jwt%2fsecret", "/jwt%2Fsecret", "/x/%252f",
		"/jwt/secret#/", "/jwt#/secret", "/jwt/secret%00/x", "/x/%0a", "/x/%7F", "/x/%2500",
		"/0%23", "/jwt%23/secret", "/x/%2523",
	}
	for _, p := range ok {
		if got := pathProblem(p); got != "" {
			t.Errorf("pathProblem(%q) = %q, want accepted", p, got)
		}
	}
	for _, p := range bad {
		if got := pathProblem(p); got == "" {
			t.Errorf("pathProblem(%q) accepted it", p)
		}
	}
}

func TestRawPath(t *testing.T) {
	for _, tc := range []struct{ target, want string }{
		{"/x/..%3b/y?a=b", "/x/..%3b/y"},
		{"//jwt/secret", "//jwt/secret"},
		{"http://app.example/x/%2e%2e/y?q", "/x/%2e%2e/y"},
		{"http://app.example", "/"},
		{"*", "*"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RequestURI = tc.target
		if got := rawPath(r); got != tc.want {
			t.Errorf("rawPath(%q) = %q, want %q", tc.target, got, tc.want)
		}
	}
}

// route: a ";" parameter needs allow_path_params on the rule that matches
// the path as sent, and the path without parameters must match that same
// rule.
func TestRouteParams(t *testing.T) {
	strict := &rule{path: "/params/a/b"}
	params := &rule{path: "/params/", params: true}
	catchAll := &rule{path: "/"}
	g := &Guard{rules: []*rule{strict, params, catchAll}}
	for _, tc := range []struct {
		target string
		want   *rule
	}{
		{"/params/doc;jsessionid=1", params},
		{"/params/doc;v=1/page;x", params},
		{"/params/a;x/b", nil}, // a servlet container reads /params/a/b: the strict rule
		{"/params;x/doc", nil}, // as sent it matches the catch-all, which does not allow ;
		{"/jwt;a=b/secret", nil},
		{"/params/..;/x", nil},
		{"/params/x%3bjsessionid=1", nil},
		{"/params/a/b", strict},
		{"/other", catchAll},
	} {
		r := httptest.NewRequest("GET", tc.target, nil)
		ru, ref := g.route(r)
		switch {
		case tc.want == nil && (ref == nil || ref.reason != ReasonPathNotCanonical || ref.status != 400):
			t.Errorf("%s: got rule %v, refusal %v; want 400 %s", tc.target, ru, ref, ReasonPathNotCanonical)
		case tc.want != nil && (ref != nil || ru != tc.want):
			t.Errorf("%s: got rule %v, refusal %v; want rule %s", tc.target, ru, ref, tc.want.path)
		}
	}
}

// rewrite runs after httputil.ReverseProxy's hop-by-hop removal and sets
// exactly the guard's identity, whatever the outgoing request still holds.
func TestRewriteSetsIdentityLast(t *testing.T) {
	g := NewWithT(t)
	gd := &Guard{}
	in := httptest.NewRequest("GET", "/api/x", nil)
	id := &identity{method: MethodJWT, subject: "alice", tenant: "t1"}
	in = in.WithContext(context.WithValue(in.Context(), identityKey{}, id))
	out := in.Clone(in.Context())
	out.Header = http.Header{
		"X-Credbroker-Subject": {"admin"}, "X_credbroker_zone": {"z"}, "X-Credbroker-Scopes": {"all"},
		"X-Original-Url": {"/admin"},
	}
	out.Trailer = http.Header{"X-Credbroker-Subject": nil}
	app, _ := url.Parse("http://127.0.0.1:1")
	gd.rewrite(&httputil.ProxyRequest{In: in, Out: out}, app)
	ids := http.Header{}
	for k, v := range out.Header {
		if f := foldName(k); len(f) > len(reservedFolded) && f[:len(reservedFolded)] == reservedFolded {
			ids[k] = v
		}
	}
	g.Expect(ids).To(Equal(http.Header{
		HeaderAuthMethod: {"jwt"}, HeaderSubject: {"alice"}, HeaderTenant: {"t1"},
	}))
	g.Expect(out.Header).NotTo(HaveKey("X-Original-Url"))
	g.Expect(out.Trailer).To(BeEmpty())
}

// Every refusal names its reason in X-Credbroker-Error and is counted.
func TestRefusalsNameTheirReason(t *testing.T) {
	g := NewWithT(t)
	e := startOAuth1(t, nil)
	for _, tc := range []struct {
		target string
		header http.Header
		status int
		reason string
	}{
		{"/aps/x", http.Header{"Connection": {"X-Credbroker-Subject"}}, 400, ReasonConnectionReserved},
		{"/aps/x", http.Header{"Authorization": {"OAuth a", "OAuth b"}}, 400, ReasonDuplicateAuthorization},
		{"/aps/..;/admin", nil, 400, ReasonPathNotCanonical},
		{"/aps/x", nil, 401, ReasonNoCredentials},
		{"/admin", nil, 403, ReasonNoRule},
	} {
		req, _ := http.NewRequest("GET", e.url+"/", nil)
		req.URL.Opaque = tc.target // sent as is
		for k, v := range tc.header {
			req.Header[k] = v
		}
		resp, body := do(t, nil, req)
		g.Expect(resp.StatusCode).To(Equal(tc.status), tc.target+" "+body)
		g.Expect(resp.Header.Get(HeaderError)).To(Equal(tc.reason))
		g.Expect(e.obs.get("none/refused/"+tc.reason)).To(Equal(1), tc.reason)
	}
	g.Expect(e.app.count()).To(Equal(0))
}

// Over HTTP/2 (the TLS listener offers h2) the same contract holds: header
// names arrive lower-case and may carry "_", the path is :path as sent.
func TestHTTP2SameContract(t *testing.T) {
	g := NewWithT(t)
	e := startMTLS(t)
	leaf := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject))
	c := &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{
		RootCAs: e.serverCA.Pool(), ServerName: "guard.localhost", Certificates: []tls.Certificate{leaf.TLSCertificate()},
	}}}
	req, _ := http.NewRequest("GET", e.url+"/callbacks/x", nil)
	req.Header["x_credbroker_subject"] = []string{"admin"}
	req.Header["x-credbroker_auth_method"] = []string{"jwt"}
	req.Header["x_original_url"] = []string{"/admin"}
	resp, body := do(t, c, req)
	g.Expect(resp.ProtoMajor).To(Equal(2))
	g.Expect(resp.StatusCode).To(Equal(200), body)
	ids := http.Header{}
	for k, v := range e.app.last().Header {
		if f := foldName(k); strings.HasPrefix(f, reservedFolded) || f == "x-original-url" {
			ids[k] = v
		}
	}
	g.Expect(ids).To(Equal(http.Header{
		HeaderAuthMethod: {"mtls"}, HeaderSubject: {"CN=controller,O=Acme"}, HeaderCertSubject: {"CN=controller,O=Acme"},
	}))

	before := e.app.count()
	for _, p := range []string{"/callbacks//x", "/callbacks/..;/admin", "/callbacks;x/y", "/callbacks/%2e%2e/admin"} {
		req, _ = http.NewRequest("GET", e.url+"/", nil)
		req.URL.Opaque = p
		resp, body = do(t, c, req)
		g.Expect(resp.ProtoMajor).To(Equal(2))
		g.Expect(resp.StatusCode).To(Equal(400), p+" "+body)
		g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonPathNotCanonical), p)
	}
	req, _ = http.NewRequest("GET", e.url+"/callbacks/x", nil)
	req.Header["authorization"] = []string{"Bearer a", "Bearer b"}
	resp, _ = do(t, c, req)
	g.Expect(resp.StatusCode).To(Equal(400))
	g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonDuplicateAuthorization))
	g.Expect(e.app.count()).To(Equal(before))
}

// Trailers cannot carry identity headers either (some frameworks merge
// trailers into the headers).
func TestTrailersCannotCarryIdentity(t *testing.T) {
	g := NewWithT(t)
	e := startMTLS(t)
	leaf := e.clientCA.Issue(testpki.ClientAuth(), testpki.WithSubject(controllerSubject))
	conn, err := tls.Dial("tcp", strings.TrimPrefix(e.url, "https://"), &tls.Config{
		RootCAs: e.serverCA.Pool(), ServerName: "guard.localhost", Certificates: []tls.Certificate{leaf.TLSCertificate()},
		NextProtos: []string{"http/1.1"},
	})
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	_, err = io.WriteString(conn, "POST /callbacks/x HTTP/1.1\r\nHost: guard.localhost\r\nTransfer-Encoding: chunked\r\n"+
		"Trailer: X-Credbroker-Subject, X_credbroker_tenant, X-Forwarded-Client-Cert, X-Other\r\n\r\n"+
		"5\r\nhello\r\n0\r\nX-Credbroker-Subject: admin\r\nX_credbroker_tenant: provider\r\nX-Forwarded-Client-Cert: Hash=00;Subject=\"CN=admin\"\r\nX-Other: fine\r\n\r\n")
	g.Expect(err).NotTo(HaveOccurred())
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	g.Expect(resp.StatusCode).To(Equal(200))
	seen := e.app.last()
	g.Expect(seen.Body).To(Equal("hello"))
	g.Expect(seen.Header.Get(HeaderSubject)).To(Equal("CN=controller,O=Acme"))
	for k := range seen.Trailer {
		g.Expect(foldName(k)).NotTo(HavePrefix(reservedFolded), k)
		g.Expect(isClientCertHeader(k)).To(BeFalse(), "a client-certificate trailer reached the app: %s", k)
	}
	for k := range seen.Header {
		g.Expect(k).NotTo(Equal("X_credbroker_tenant"))
	}
}

// FuzzPathProblem: a raw path pathProblem accepts has, after any number of
// decodings up to maxDecodes, no dot segment, no empty segment, no
// backslash and no control character.
func FuzzPathProblem(f *testing.F) {
	for _, s := range []string{"/api/x", "/x/..;/y", "/x/%2e%2e/y", "//a", `/a\b`, "/a%252e%252e/b", "/a;b/c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if pathProblem(raw) != "" {
			return
		}
		p := raw
		for range maxDecodes {
			segs := strings.Split(p, "/")
			for i, seg := range segs[1:] {
				name, _, _ := strings.Cut(seg, ";")
				if name == "." || name == ".." || (seg == "" && i != len(segs)-2) || strings.ContainsAny(seg, "\\\x00\n\r#") {
					t.Fatalf("pathProblem accepted %q, which decodes to %q", raw, p)
				}
			}
			d, err := url.PathUnescape(p)
			if err != nil || d == p {
				return
			}
			p = d
		}
	})
}

// From a peer outside trusted_proxies every forwarding header is the
// guard's or absent; from a trusted proxy they are passed on.
func TestUntrustedForwardingHeaders(t *testing.T) {
	g := NewWithT(t)
	app, _ := url.Parse("http://127.0.0.1:1")
	for _, trusted := range []bool{false, true} {
		gd := &Guard{}
		if trusted {
			gd.trusted = mustPrefixes(t, []string{"192.0.2.1"})
		}
		in := httptest.NewRequest("GET", "/api/x", nil) // RemoteAddr 192.0.2.1:1234
		in.Header = http.Header{
			"X-Forwarded-Port": {"443"}, "X-Forwarded-Prefix": {"/admin"}, "X-Forwarded-Ssl": {"on"},
			"X-Real-Ip": {"10.0.0.1"}, "X-Forwarded-Host": {"api.example.com"}, "X-Forwarded-Client-Cert": {"left to xfcc"},
		}
		out := in.Clone(in.Context())
		gd.rewrite(&httputil.ProxyRequest{In: in, Out: out}, app)
		g.Expect(out.Header.Get("X-Forwarded-Client-Cert")).To(Equal("left to xfcc"))
		if !trusted {
			g.Expect(out.Header).NotTo(HaveKey("X-Forwarded-Port"))
			g.Expect(out.Header).NotTo(HaveKey("X-Forwarded-Prefix"))
			g.Expect(out.Header).NotTo(HaveKey("X-Forwarded-Ssl"))
			g.Expect(out.Header).NotTo(HaveKey("X-Real-Ip"))
			g.Expect(out.Header.Get("X-Forwarded-Host")).To(Equal("example.com"))
			g.Expect(out.Header.Get("X-Forwarded-For")).To(Equal("192.0.2.1"))
			continue
		}
		g.Expect(out.Header.Get("X-Forwarded-Prefix")).To(Equal("/admin"))
		g.Expect(out.Header.Get("X-Forwarded-Host")).To(Equal("api.example.com"))
	}
}

// Even if a Connection header naming identity headers got past
// checkHeaders, the reverse proxy's hop-by-hop removal runs before rewrite
// sets them: the app still gets the guard's values.
func TestIdentitySetAfterHopByHopRemoval(t *testing.T) {
	g := NewWithT(t)
	e := startOAuth1(t, nil)
	req := httptest.NewRequest("GET", "/aps/x", nil)
	req.Header.Set("Connection", "X-Credbroker-Subject, X-Credbroker-Tenant, X-Credbroker-Auth-Method")
	id := &identity{method: MethodOAuth1, subject: "alice", tenant: "t1"}
	req = req.WithContext(context.WithValue(req.Context(), identityKey{}, id))
	w := httptest.NewRecorder()
	e.g.proxy.ServeHTTP(w, req)
	g.Expect(w.Code).To(Equal(200), w.Body.String())
	seen := e.app.last().Header
	g.Expect(seen.Get(HeaderSubject)).To(Equal("alice"))
	g.Expect(seen.Get(HeaderTenant)).To(Equal("t1"))
	g.Expect(seen.Get(HeaderAuthMethod)).To(Equal("oauth1"))
}

// Found by the re-review of issue 15: an app that decodes the path twice
// (or leniently, or with an old UTF-8 decoder) must not read a path of a
// stricter rule than the one the guard matched.
func TestRouteDecodedAgain(t *testing.T) {
	g := &Guard{rules: []*rule{
		{path: "/jwt/secret"},
		{path: "/params/", params: true},
		{path: "/"},
	}}
	for _, tc := range []struct {
		target string
		ok     bool
	}{
		{"/api/x", true},
		{"/api/100%25", true},
		{"/api/100%2525", true}, // %2525 -> %25 -> %: stays under /
		{"/params/doc;jsessionid=1", true},
		{"/%256Awt/secret", false},   // /%6Awt/secret to the guard, /jwt/secret decoded again
		{"/%25256Awt/secret", false}, // three decodings
		{"/%6Awt/secret", true},      // decoded once it is /jwt/secret: the guard matched that rule
		{"/x/%c0%ae%c0%ae/jwt/secret", false},
		{"/x/%e0%80%ae/y", false},
		{"/params/%252e%252e;%25zz/jwt/secret", false}, // ..;%zz after two lenient decodings
		{"/x/%252e%252e%25zz/y", true},                 // ..%zz is not a dot segment
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RequestURI = tc.target
		u, err := url.ParseRequestURI(tc.target)
		if err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		r.URL = u
		ru, ref := g.route(r)
		switch {
		case tc.ok && ref != nil:
			t.Errorf("%s: refused: %s", tc.target, ref.detail)
		case !tc.ok && ref == nil:
			t.Errorf("%s: accepted under rule %q", tc.target, ru.path)
		case !tc.ok && ref.reason != ReasonPathNotCanonical:
			t.Errorf("%s: reason %s", tc.target, ref.reason)
		}
	}
}

func TestLenientUnescape(t *testing.T) {
	for in, want := range map[string]string{
		"abc": "abc", "%2e%2E": "..", "%zz": "%zz", "%2": "%2", "%": "%", "%252e;%25zz": "%2e;%zz", "a%41%4": "aA%4",
	} {
		if got := lenientUnescape(in); got != want {
			t.Errorf("lenientUnescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClientCertHeaderNames(t *testing.T) {
	for _, k := range []string{"X-Forwarded-Client-Cert", "SSL_CLIENT_CERT", "Ssl-Client-Verify", "X-SSL-Client-Cert",
		"X.Ssl.Client.Cert", "X-Client-Verify", "X-ARR-ClientCert", "X-Amzn-Mtls-Clientcert-Leaf", "client_cert"} {
		if !isClientCertHeader(k) {
			t.Errorf("%s is not a client-certificate header", k)
		}
	}
	for _, k := range []string{"Authorization", "X-Client-Id", "Ssl", "Accept"} {
		if isClientCertHeader(k) {
			t.Errorf("%s taken for a client-certificate header", k)
		}
	}
}

// A rule path ending in "/" also covers the path without it.
func TestMatchWithoutTrailingSlash(t *testing.T) {
	g := &Guard{rules: []*rule{{path: "/admin/"}, {path: "/api"}, {path: "/"}}}
	for path, want := range map[string]string{
		"/admin": "/admin/", "/admin/": "/admin/", "/admin/x": "/admin/", "/adminx": "/", "/api": "/api", "/apix": "/api", "/": "/",
	} {
		if ru := g.match(path); ru == nil || ru.path != want {
			t.Errorf("match(%q) = %v, want rule %q", path, ru, want)
		}
	}
}
