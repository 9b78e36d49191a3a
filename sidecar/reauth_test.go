package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestInvalidTokenChallenge(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{`Bearer error="invalid_token"`, true},
		{`Bearer realm="example", error="invalid_token", error_description="The access token expired"`, true},
		{`bearer error=invalid_token`, true},
		{`BEARER realm="x",error="invalid_token"`, true},
		{`Bearer error = "invalid_token"`, true},
		{`Bearer error="INVALID_TOKEN"`, true},
		{`Basic realm="simple", Bearer error="invalid_token"`, true},
		{`Newauth realm="apps", type=1, title="Login to \"apps\"", Basic realm="simple", Bearer realm="a", error="invalid_token"`, true},
		{`Negotiate abc==, Bearer error="invalid_token"`, true},
		{`Negotiate YWJj, Bearer error="invalid_token"`, true},
		{`Bearer error_description="error=\"invalid_token\"", error="invalid_token"`, true},

		{``, false},
		{`Bearer`, false},
		{`Bearer realm="example"`, false},
		{`Bearer error="insufficient_scope"`, false},
		{`Bearer error="invalid_request"`, false},
		{`Basic error="invalid_token"`, false},
		{`Bearerx error="invalid_token"`, false},
		{`Bearer error_description="error=invalid_token"`, false},
		{`Bearer realm="x\", error=\"invalid_token"`, false},
		{`Bearer error="invalid_token`, false}, // unterminated
		{`error="invalid_token"`, false},       // no scheme
		{`Basic realm="a" error="invalid_token"`, false},
		{`Bearer abc==`, false},
		{`Bearer error=`, false},
		{`Bearer realm=, error="invalid_token"`, false}, // stops at the syntax error
	} {
		if got := invalidTokenChallenge(tc.v); got != tc.want {
			t.Errorf("%q: got %v, want %v", tc.v, got, tc.want)
		}
	}
}

func FuzzInvalidTokenChallenge(f *testing.F) {
	f.Add(`Basic realm="simple", Bearer error="invalid_token"`)
	f.Add(`Negotiate abc==, Bearer error=invalid_token`)
	f.Fuzz(func(t *testing.T, v string) {
		got := invalidTokenChallenge(v)
		// Whatever precedes a complete challenge, a match needs the words.
		if got && !strings.Contains(strings.ToLower(strings.ReplaceAll(v, `\`, "")), "invalid_token") {
			t.Fatalf("%q matched", v)
		}
		if got != fastInvalidToken([]byte("WWW-Authenticate: "+v+"\r\n")) && !strings.ContainsAny(v, "\r\n") {
			t.Fatalf("%q: the fast path's reading differs", v)
		}
	})
}

func TestReauthConfig(t *testing.T) {
	g := NewWithT(t)
	c, err := ParseConfig([]byte("token_invalidation_interval: 30s\nroutes: [{name: a, upstream: 'https://a.example', auth: {type: bearer, binding: b}, reauth: {on_401: any, retry_methods: [GET, POST], max_replay_body: 1024}}]\n"), "t")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.TokenInvalidationInterval.Seconds()).To(Equal(30.0))
	g.Expect(c.Routes[0].Reauth).To(Equal(RouteReauth{On401: ReauthAny, RetryMethods: []string{"GET", "POST"}, MaxReplayBody: 1024}))
	for _, bad := range []string{
		"routes: [{name: a, upstream: 'https://a.example', auth: {type: bearer, binding: b}, reauth: {on_401: sometimes}}]",
		"routes: [{name: a, upstream: 'https://a.example', auth: {type: bearer, binding: b}, reauth: {retry_methods: [get]}}]",
		"routes: [{name: a, upstream: 'https://a.example', auth: {type: bearer, binding: b}, reauth: {max_replay_body: -1}}]",
		"routes: [{name: a, upstream: 'https://a.example', auth: {type: none}, reauth: {on_401: any}}]",
		"routes: [{name: a, upstream: 'https://a.example', auth: {type: bearer, binding: b, grant: jwt-bearer}, reauth: {on_401: any}}]",
		"token_invalidation_interval: -1s",
	} {
		_, err := ParseConfig([]byte(bad+"\n"), "t")
		g.Expect(errors.Is(err, ErrInvalidValue)).To(BeTrue(), bad)
	}
}

// revocable is a token provider whose tokens an upstream may stop
// accepting: tokens are "rv-<tenant>-<gen>"; Invalidate drops the current
// one (gen++, a "fetch") when it is the one sent, unless limit drops per
// tenant were made already.
type revocable struct {
	mu      sync.Mutex
	gen     map[string]int
	drops   map[string]int
	limit   int
	calls   int // Invalidate calls
	fetches atomic.Int64
}

func newRevocable(limit int) *revocable {
	return &revocable{gen: map[string]int{}, drops: map[string]int{}, limit: limit}
}

func (v *revocable) Source(string, []string, string) (TokenSource, error) { return v, nil }

func (v *revocable) Token(_ context.Context, req TokenRequest) (Token, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return Token{AccessToken: fmt.Sprintf("rv-%s-%d", req.Tenant, v.gen[req.Tenant]), TokenType: "bearer"}, nil
}

func (v *revocable) Invalidate(req TokenRequest, sent string) (Invalidation, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.calls++
	if sent != fmt.Sprintf("rv-%s-%d", req.Tenant, v.gen[req.Tenant]) {
		return InvalidationStale, nil
	}
	if v.drops[req.Tenant] >= v.limit {
		return InvalidationLimited, nil
	}
	v.drops[req.Tenant]++
	v.gen[req.Tenant]++
	v.fetches.Add(1)
	return InvalidationDropped, nil
}

func (v *revocable) invalidations() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.calls
}

// guardedUpstream accepts tokens of generation >= min (per tenant) and
// answers 401 invalid_token to others; /forbidden answers 403, /hostile
// 401 to everything, /basic 401 with a Basic challenge.
type guardedUpstream struct {
	min  atomic.Int64
	mu   sync.Mutex
	seen []string // "METHOD path auth body"
}

func (u *guardedUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	auth := r.Header.Get("Authorization")
	u.mu.Lock()
	u.seen = append(u.seen, r.Method+" "+r.URL.Path+" "+auth+" "+string(b))
	u.mu.Unlock()
	gen := -1
	if i := strings.LastIndexByte(auth, '-'); i > 0 {
		gen, _ = strconv.Atoi(auth[i+1:])
	}
	switch {
	case strings.HasSuffix(r.URL.Path, "/forbidden"):
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
		w.WriteHeader(http.StatusForbidden)
	case strings.HasSuffix(r.URL.Path, "/basic"):
		w.Header().Set("WWW-Authenticate", `Basic realm="x"`)
		w.WriteHeader(http.StatusUnauthorized)
	case strings.HasSuffix(r.URL.Path, "/hostile") || int64(gen) < u.min.Load():
		w.Header().Set("WWW-Authenticate", `Basic realm="u", Bearer realm="u", error="invalid_token", error_description="revoked"`)
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid_token"}`)
	default:
		_, _ = io.WriteString(w, "ok "+auth)
	}
}

func (u *guardedUpstream) requests() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}

// The proxy drops a rejected token and sends the request once more with a
// new one, on the fast path (bodyless GET) and on net/http's (a tenant
// header, a PUT with a body); never for a POST, a 403, another challenge or
// the app's own token; and only as often as the invalidator allows.
func TestReauthOnBothPaths(t *testing.T) {
	g := NewWithT(t)
	up := &guardedUpstream{}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	tokens := newRevocable(5)
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf(`listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
routes:
  - {name: tok, upstream: '%[1]s', auth: {type: bearer, binding: b}}
  - {name: ten, upstream: '%[1]s', auth: {type: bearer, binding: b, tenant_header: X-T}}
  - {name: keep, upstream: '%[1]s', auth: {type: bearer, binding: b, replace_app_credentials: false}}
  - {name: off, upstream: '%[1]s', auth: {type: bearer, binding: b}, reauth: {on_401: never}}
  - {name: post, upstream: '%[1]s', auth: {type: bearer, binding: b}, reauth: {retry_methods: [POST], max_replay_body: 8}}
`, srv.URL)), "t")
		return c, Deps{Tokens: tokens}, err
	}, WithMetrics(m))
	base := "http://" + rs.s.Addr()
	do := func(method, path, body string, hdr ...string) (int, string, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, base+path, rd)
		g.Expect(err).NotTo(HaveOccurred())
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get(HeaderError), string(b)
	}
	metric := func(name, route, outcome string) float64 {
		if name == "inv" {
			return testutil.ToFloat64(m.reauth.invalidations.WithLabelValues(route, outcome))
		}
		return testutil.ToFloat64(m.reauth.retries.WithLabelValues(route, outcome))
	}

	// Fast path: the token is revoked; the GET is answered 200 with the
	// new token after one 401.
	code, _, body := do("GET", "/tok/a", "")
	g.Expect(code).To(Equal(200))
	g.Expect(body).To(Equal("ok Bearer rv--0"))
	up.min.Store(1)
	fast := func() float64 { return testutil.ToFloat64(m.fastPath.WithLabelValues("tok")) }
	g.Eventually(fast).Should(Equal(1.0)) // counted once the response is out
	code, reason, body := do("GET", "/tok/b", "")
	g.Expect(code).To(Equal(200), body)
	g.Expect(reason).To(BeEmpty())
	g.Expect(body).To(Equal("ok Bearer rv--1"))
	g.Eventually(fast).Should(Equal(2.0), "served on the fast path")
	g.Expect(tokens.fetches.Load()).To(Equal(int64(1)))
	g.Expect(metric("inv", "tok", "dropped")).To(Equal(1.0))
	g.Expect(metric("retry", "tok", "ok")).To(Equal(1.0))

	// net/http's path: a tenant header.
	code, _, body = do("GET", "/ten/c", "", "X-T", "sub1")
	g.Expect(code).To(Equal(200), body)
	g.Expect(body).To(Equal("ok Bearer rv-sub1-1"))
	g.Expect(metric("retry", "ten", "ok")).To(Equal(1.0))

	// A PUT with a body: buffered, sent again with the new token.
	up.min.Store(2)
	code, _, body = do("PUT", "/tok/put", "payload")
	g.Expect(code).To(Equal(200), body)
	g.Expect(body).To(Equal("ok Bearer rv--2"))
	reqs := up.requests()
	g.Expect(reqs[len(reqs)-2:]).To(Equal([]string{"PUT /put Bearer rv--1 payload", "PUT /put Bearer rv--2 payload"}))

	// A POST is not sent again (the token is dropped all the same).
	up.min.Store(3)
	n := len(up.requests())
	code, reason, _ = do("POST", "/tok/post", "payload")
	g.Expect(code).To(Equal(401))
	g.Expect(reason).To(Equal(ReasonTokenRejectedNotReplayable))
	g.Expect(up.requests()).To(HaveLen(n+1), "sent once")
	g.Expect(metric("retry", "tok", "not_replayable")).To(Equal(1.0))
	code, _, body = do("GET", "/tok/after-post", "")
	g.Expect(code).To(Equal(200))
	g.Expect(body).To(Equal("ok Bearer rv--3"), "the next request has the new token without another 401")

	// A route that allows POST replays a small body, not a large one.
	up.min.Store(4)
	code, _, body = do("POST", "/post/small", "1234")
	g.Expect(code).To(Equal(200), body)
	g.Expect(body).To(Equal("ok Bearer rv--4"))
	up.min.Store(5)
	code, reason, _ = do("POST", "/post/large", "123456789")
	g.Expect(code).To(Equal(401))
	g.Expect(reason).To(Equal(ReasonTokenRejectedNotReplayable))
	reqs = up.requests()
	g.Expect(reqs[len(reqs)-1]).To(HaveSuffix(" 123456789"), "the large body was streamed whole")

	// 403, another challenge, on_401: never and the app's own token never
	// drop anything.
	calls := tokens.invalidations()
	for _, tc := range []struct {
		path string
		code int
		hdr  []string
	}{
		{"/tok/forbidden", 403, nil},
		{"/tok/basic", 401, nil},
		{"/off/hostile", 401, nil},
		{"/keep/x", 401, []string{"Authorization", "Bearer rv--0"}},
	} {
		code, reason, _ := do("GET", tc.path, "", tc.hdr...)
		g.Expect(code).To(Equal(tc.code), tc.path)
		g.Expect(reason).To(BeEmpty(), tc.path)
	}
	g.Expect(tokens.invalidations()).To(Equal(calls), "no invalidation")

	// A hostile upstream: the limit (5 drops for the provider tenant, used
	// up above) holds; every 401 reaches the app with the reason.
	fetches := tokens.fetches.Load()
	for range 5 {
		code, reason, _ := do("GET", "/tok/hostile", "")
		g.Expect(code).To(Equal(401))
		g.Expect(reason).To(Equal(ReasonTokenRejectedLimited))
	}
	g.Expect(tokens.fetches.Load()).To(Equal(fetches))
	g.Expect(metric("inv", "tok", "limited")).To(Equal(5.0))
}

// on_401: any reacts to a 401 without a Bearer challenge; a token source
// that fails to drop passes the 401 on with its reason.
func TestReauthAnyRuleAndFailures(t *testing.T) {
	g := NewWithT(t)
	up := &guardedUpstream{}
	srv := httptest.NewServer(up)
	t.Cleanup(srv.Close)
	tokens := newRevocable(1)
	m := NewMetrics()
	rs := startServer(t, func(context.Context) (*Config, Deps, error) {
		c, err := ParseConfig([]byte(fmt.Sprintf(`listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
routes:
  - {name: any, upstream: '%[1]s', auth: {type: bearer, binding: b}, reauth: {on_401: any}}
  - {name: broken, upstream: '%[1]s', auth: {type: bearer, binding: broken}}
`, srv.URL)), "t")
		return c, Deps{Tokens: failingInvalidator{tokens}}, err
	}, WithMetrics(m))
	for _, tc := range []struct{ path, reason string }{
		{"/any/basic", ReasonTokenRejectedAgain},   // dropped, sent again, 401 again
		{"/any/basic", ReasonTokenRejectedLimited}, // the one drop allowed is used
		{"/broken/hostile", ReasonTokenRejectedNoToken},
		{"/broken/x", ""}, // a 200: nothing to do
	} {
		res := rawRoundTrip(t, rs.s.Addr(), "GET "+tc.path+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
		g.Expect(res.Header.Get(HeaderError)).To(Equal(tc.reason), tc.path)
	}
	g.Expect(tokens.fetches.Load()).To(Equal(int64(1)))
	g.Expect(testutil.ToFloat64(m.reauth.retries.WithLabelValues("any", "rejected"))).To(Equal(1.0))
	g.Expect(testutil.ToFloat64(m.reauth.invalidations.WithLabelValues("broken", "error"))).To(Equal(1.0))
}

// failingInvalidator fails to drop the tokens of binding "broken".
type failingInvalidator struct{ *revocable }

func (f failingInvalidator) Source(binding string, _ []string, _ string) (TokenSource, error) {
	if binding == "broken" {
		return brokenSource{f.revocable}, nil
	}
	return f.revocable, nil
}

type brokenSource struct{ *revocable }

func (brokenSource) Invalidate(TokenRequest, string) (Invalidation, error) {
	return "", errors.New("the token cache is closed")
}
