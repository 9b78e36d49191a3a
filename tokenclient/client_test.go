package tokenclient

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/syncbuf"

	. "github.com/onsi/gomega"
)

var bg = context.Background()

func TestGrantsAndForms(t *testing.T) {
	as := newFakeAS(t, nil)
	for _, tc := range []struct {
		name      string
		cfg       func(Config) Config
		req       Request
		path      string
		form      map[string]string
		absent    []string
		basic     bool
		refreshed bool
	}{
		{
			name: "client_credentials, secret in form",
			req:  Request{Scopes: []string{"orders.read", "orders.write"}},
			path: "/oauth/token",
			form: map[string]string{"grant_type": "client_credentials", "client_id": "sb-client!t1",
				"client_secret": "planted-client-secret-7f3a", "scope": "orders.read orders.write"},
		},
		{
			name:   "client_credentials, HTTP Basic",
			cfg:    func(c Config) Config { c.AuthStyle = AuthStyleInHeader; return c },
			path:   "/oauth/token",
			form:   map[string]string{"grant_type": "client_credentials"},
			absent: []string{"client_secret", "client_id", "scope"},
			basic:  true,
		},
		{
			name:      "password",
			req:       Request{Grant: GrantPassword, Username: "alice", Password: "planted-user-password"},
			path:      "/oauth/token",
			form:      map[string]string{"grant_type": "password", "username": "alice", "password": "planted-user-password"},
			refreshed: true,
		},
		{
			name:      "jwt-bearer",
			req:       Request{Grant: GrantJWTBearer, Assertion: "planted.assertion.jwt"},
			path:      "/oauth/token",
			form:      map[string]string{"grant_type": string(GrantJWTBearer), "assertion": "planted.assertion.jwt"},
			refreshed: true,
		},
		{
			name: "refresh_token",
			req:  Request{Grant: GrantRefreshToken, RefreshToken: "planted-refresh-token"},
			path: "/oauth/token",
			form: map[string]string{"grant_type": "refresh_token", "refresh_token": "planted-refresh-token"},
		},
		{
			name:   "IAS: oauth2 path, Basic, app_tid and resource",
			cfg:    func(c Config) Config { c.Flavor = IAS; return c },
			req:    Request{AppTID: "tid-9", Resource: "urn:sap:identity:application:provider:name:orders"},
			path:   "/oauth2/token",
			form:   map[string]string{"grant_type": "client_credentials", "app_tid": "tid-9", "resource": "urn:sap:identity:application:provider:name:orders"},
			absent: []string{"client_secret"},
			basic:  true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			cfg := as.secretConfig()
			if tc.cfg != nil {
				cfg = tc.cfg(cfg)
			}
			c := newClient(t, cfg)
			tok, err := c.Token(bg, tc.req)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(tok.AccessToken).To(HavePrefix("access-"))
			g.Expect(tok.TokenType).To(Equal("bearer"))
			g.Expect(tok.ExpiresIn).To(Equal(time.Hour))
			g.Expect(tok.URL).To(Equal(as.srv.URL + tc.path))
			g.Expect(tok.RefreshToken != "").To(Equal(tc.refreshed))
			s := as.last()
			g.Expect(s.Path).To(Equal(tc.path))
			for k, v := range tc.form {
				g.Expect(s.Form.Get(k)).To(Equal(v), k)
			}
			for _, k := range tc.absent {
				g.Expect(s.Form).NotTo(HaveKey(k))
			}
			g.Expect(s.HasBasic).To(Equal(tc.basic))
			if tc.basic {
				g.Expect(s.BasicUser).To(Equal("sb-client%21t1"), "RFC 6749 2.3.1: form-encoded before Basic")
				g.Expect(s.BasicPass).To(Equal("planted-client-secret-7f3a"))
			}
		})
	}
}

func TestCacheKeys(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	c := newClient(t, as.secretConfig())
	get := func(r Request) *Token {
		tok, err := c.Token(bg, r)
		g.Expect(err).NotTo(HaveOccurred())
		return tok
	}
	a := get(Request{Scopes: []string{"b", "a"}})
	g.Expect(get(Request{Scopes: []string{"a", "b"}})).To(BeIdenticalTo(a), "scope order does not matter")
	g.Expect(get(Request{Scopes: []string{"a", "b", "a"}})).To(BeIdenticalTo(a), "duplicates do not matter")
	g.Expect(as.count()).To(Equal(1))

	distinct := []Request{
		{},
		{Scopes: []string{"a"}},
		{Grant: GrantPassword, Username: "alice", Password: "pw-1-planted"},
		{Grant: GrantPassword, Username: "alice", Password: "pw-2-planted"},
		{Grant: GrantPassword, Username: "bob", Password: "pw-1-planted"},
		{Grant: GrantJWTBearer, Assertion: "assertion-1-planted"},
		{Grant: GrantJWTBearer, Assertion: "assertion-2-planted"},
		{Resource: "r1"},
		{AppTID: "t1"},
	}
	seenTok := map[string]bool{a.AccessToken: true}
	for _, r := range distinct {
		tok := get(r)
		g.Expect(seenTok).NotTo(HaveKey(tok.AccessToken), "%+v shares a key", r)
		seenTok[tok.AccessToken] = true
		g.Expect(get(r)).To(BeIdenticalTo(tok), "%+v is cached", r)
	}
	g.Expect(as.count()).To(Equal(1 + len(distinct)))

	// No key holds a secret: only digests of the grant's secret material.
	for i := range c.shards {
		for _, list := range *c.shards[i].m.Load() {
			for _, e := range list {
				dump := sprintf("%#v", e.id)
				for _, secret := range []string{"planted", "pw-1", "assertion-1"} {
					g.Expect(dump).NotTo(ContainSubstring(secret))
				}
			}
		}
	}
}

func TestRefreshAheadServesCachedToken(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	release := make(chan struct{})
	as.setPlan(func(n int, _ seen) reply {
		if n == 2 {
			return reply{Block: release}
		}
		return reply{}
	})
	var refreshes atomic.Int64
	c := newClient(t, as.secretConfig(), WithClock(clk), WithRefreshAhead(0.5, 0),
		WithObserver(Observer{Fetch: func(ev FetchEvent) {
			if ev.Reason == ReasonRefresh && ev.Err == nil {
				refreshes.Add(1)
			}
		}}))
	first, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())

	clk.Advance(29 * time.Minute)
	g.Expect(c.Token(bg, Request{})).To(BeIdenticalTo(first))
	g.Expect(as.count()).To(Equal(1), "no refresh before half the life")

	clk.Advance(2 * time.Minute) // past the refresh point
	// The refresh request blocks at the server, yet callers get the cached
	// token at once.
	for range 50 {
		g.Expect(c.Token(bg, Request{})).To(BeIdenticalTo(first))
	}
	g.Eventually(as.count).Should(Equal(2))
	g.Consistently(as.count, 100*time.Millisecond).Should(Equal(2), "one refresh in flight, not one per call")
	close(release)
	g.Eventually(func() string {
		tok, _ := c.Token(bg, Request{})
		return tok.AccessToken
	}).ShouldNot(Equal(first.AccessToken))
	g.Expect(refreshes.Load()).To(BeEquivalentTo(1))
}

func TestExpiryWhileServerDown(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	var down atomic.Bool
	as.setPlan(func(int, seen) reply {
		if down.Load() {
			return reply{Status: 503, Body: `{"error":"temporarily_unavailable"}`}
		}
		return reply{ExpiresIn: 600}
	})
	var failed atomic.Int64
	c := newClient(t, as.secretConfig(), WithClock(clk), WithRefreshAhead(0.5, 0), WithExpirySkew(30*time.Second),
		WithRetry(RetryPolicy{MaxAttempts: 2}),
		WithObserver(Observer{Fetch: func(ev FetchEvent) {
			if ev.Err != nil {
				failed.Add(1)
			}
		}}))
	tok, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	down.Store(true)

	clk.Advance(6 * time.Minute) // past refresh (5m), before expiry-skew (9m30s)
	g.Expect(c.Token(bg, Request{})).To(BeIdenticalTo(tok))
	g.Eventually(failed.Load).Should(BeEquivalentTo(1), "the background refresh ran and failed")
	g.Expect(c.Token(bg, Request{})).To(BeIdenticalTo(tok), "the valid token is still served")

	clk.Advance(3*time.Minute + 31*time.Second) // 9m31s: within the skew, served by the outage rule
	g.Expect(c.Token(bg, Request{})).To(BeIdenticalTo(tok), "served until expiry minus the outage margin")
	clk.Advance(25 * time.Second) // 9m56s: within the outage margin, no longer served
	_, err = c.Token(bg, Request{})
	g.Expect(err).To(HaveOccurred())
	g.Expect(errors.Is(err, ErrUnavailable)).To(BeTrue())
	var te *TokenError
	g.Expect(errors.As(err, &te)).To(BeTrue())
	g.Expect(te.StatusCode).To(Equal(503))
	g.Expect(te.ErrorCode).To(Equal("temporarily_unavailable"))
	g.Expect(err.Error()).To(ContainSubstring(as.srv.URL + "/oauth/token"))

	down.Store(false)
	clk.Advance(10 * time.Second)
	tok2, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred(), "recovers once the server is back")
	g.Expect(tok2.AccessToken).NotTo(Equal(tok.AccessToken))
}

func TestRetryHonoursRetryAfter(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	as.setPlan(func(n int, _ seen) reply {
		switch n {
		case 1:
			return reply{Status: 429, Header: map[string]string{"Retry-After": "3"}, Body: `{"error":"slow_down"}`}
		case 2:
			return reply{Status: 503, Header: map[string]string{"Retry-After": "2"}}
		case 3:
			return reply{Status: 502}
		}
		return reply{}
	})
	c := newClient(t, as.secretConfig(), WithClock(clk),
		WithRetry(RetryPolicy{MaxAttempts: 5, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}))
	tok, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.AccessToken).To(HavePrefix("access-"))
	g.Expect(as.count()).To(Equal(4))
	sleeps := clk.Sleeps()
	g.Expect(sleeps).To(HaveLen(3))
	g.Expect(sleeps[0]).To(Equal(3*time.Second), "Retry-After on 429")
	g.Expect(sleeps[1]).To(Equal(2*time.Second), "Retry-After on 503")
	g.Expect(sleeps[2]).To(BeNumerically("<=", 400*time.Millisecond), "jittered backoff, third attempt")
}

func TestRetryIsBounded(t *testing.T) {
	t.Run("by attempts", func(t *testing.T) {
		g := NewWithT(t)
		as := newFakeAS(t, nil)
		as.setPlan(func(int, seen) reply { return reply{Status: 500, Body: `{"error":"server_error"}`} })
		c := newClient(t, as.secretConfig(), WithClock(newFakeClock()), WithRetry(RetryPolicy{MaxAttempts: 3}))
		_, err := c.Token(bg, Request{})
		g.Expect(errors.Is(err, ErrUnavailable)).To(BeTrue())
		g.Expect(as.count()).To(Equal(3))
	})
	t.Run("by time", func(t *testing.T) {
		g := NewWithT(t)
		as := newFakeAS(t, nil)
		as.setPlan(func(int, seen) reply { return reply{Status: 503, Header: map[string]string{"Retry-After": "60"}} })
		clk := newFakeClock()
		c := newClient(t, as.secretConfig(), WithClock(clk), WithRetry(RetryPolicy{MaxAttempts: 10, MaxElapsed: 30 * time.Second}))
		_, err := c.Token(bg, Request{})
		g.Expect(errors.Is(err, ErrUnavailable)).To(BeTrue())
		g.Expect(as.count()).To(Equal(1), "a Retry-After beyond the budget ends the fetch")
		g.Expect(clk.Sleeps()).To(BeEmpty())
		var te *TokenError
		g.Expect(errors.As(err, &te)).To(BeTrue())
		g.Expect(te.RetryAfter).To(Equal(time.Minute))
	})
	t.Run("refusals are not retried", func(t *testing.T) {
		g := NewWithT(t)
		as := newFakeAS(t, nil)
		as.setPlan(func(int, seen) reply { return reply{Status: 400, Body: `{"error":"invalid_scope"}`} })
		c := newClient(t, as.secretConfig(), WithClock(newFakeClock()))
		_, err := c.Token(bg, Request{Scopes: []string{"nope"}})
		g.Expect(errors.Is(err, ErrUnavailable)).To(BeFalse())
		g.Expect(as.count()).To(Equal(1))
	})
}

func TestNegativeCache(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	as.setPlan(func(int, seen) reply {
		return reply{Status: 401, Body: `{"error":"invalid_client","error_description":"Bad credentials","error_uri":"https://docs/x"}`}
	})
	var replays [2]atomic.Int32 // refused, unavailable
	c := newClient(t, as.secretConfig(), WithClock(clk), WithNegativeCacheTTL(10*time.Second),
		WithObserver(Observer{Replay: func(refused bool) {
			if refused {
				replays[0].Add(1)
			} else {
				replays[1].Add(1)
			}
		}}))
	_, err := c.Token(bg, Request{})
	var te *TokenError
	g.Expect(errors.As(err, &te)).To(BeTrue())
	g.Expect(*te).To(Equal(TokenError{StatusCode: 401, ErrorCode: "invalid_client", Description: "Bad credentials",
		ErrorURI: "https://docs/x", URL: as.srv.URL + "/oauth/token"}))
	g.Expect(err.Error()).To(Equal("tokenclient: " + as.srv.URL + "/oauth/token: status 401: invalid_client: Bad credentials"))

	for range 20 {
		_, err = c.Token(bg, Request{})
		g.Expect(errors.As(err, &te)).To(BeTrue())
		g.Expect(te.Cached).To(BeTrue())
	}
	g.Expect(as.count()).To(Equal(1), "a refusal is replayed, not re-asked")
	g.Expect(replays[0].Load()).To(BeEquivalentTo(20), "every replay is observed")
	g.Expect(replays[1].Load()).To(BeZero())

	clk.Advance(11 * time.Second)
	_, err = c.Token(bg, Request{})
	g.Expect(errors.As(err, &te)).To(BeTrue())
	g.Expect(te.Cached).To(BeFalse())
	g.Expect(as.count()).To(Equal(2))
}

// During an outage with no token left, callers get the failure until the
// retry pause ends: each such answer is observed as a replay.
func TestOutageFailureReplayIsObserved(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	as.setPlan(func(int, seen) reply { return reply{Status: 503, Body: `{"error":"temporarily_unavailable"}`} })
	var refused, unavailable atomic.Int32
	c := newClient(t, as.secretConfig(), WithClock(clk), WithRetry(RetryPolicy{MaxAttempts: 1}),
		WithObserver(Observer{Replay: func(r bool) {
			if r {
				refused.Add(1)
			} else {
				unavailable.Add(1)
			}
		}}))
	_, err := c.Token(bg, Request{})
	g.Expect(errors.Is(err, ErrUnavailable)).To(BeTrue())
	g.Expect(unavailable.Load()).To(BeZero(), "the fetch itself is no replay")
	for range 3 {
		_, err = c.Token(bg, Request{})
		g.Expect(errors.Is(err, ErrUnavailable)).To(BeTrue())
	}
	g.Expect(as.count()).To(Equal(1))
	g.Expect(unavailable.Load()).To(BeEquivalentTo(3))
	g.Expect(refused.Load()).To(BeZero())
}

func TestNothingSecretInErrorsOrLogs(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	var fail atomic.Bool
	as.setPlan(func(n int, s seen) reply {
		if fail.Load() {
			// A hostile server echoing the request must not make us print it.
			return reply{Status: 400, Body: `{"error":"invalid_grant","error_description":"bad"}`}
		}
		return reply{}
	})
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clk := newFakeClock()
	c := newClient(t, as.secretConfig(), WithLogger(log), WithClock(clk), WithRefreshAhead(0.5, 0))
	req := Request{Grant: GrantJWTBearer, Assertion: "planted-assertion-9c1d"}
	tok, err := c.Token(bg, req)
	g.Expect(err).NotTo(HaveOccurred())
	clk.Advance(40 * time.Minute)
	fail.Store(true)
	g.Expect(c.Token(bg, req)).To(BeIdenticalTo(tok)) // triggers a failing refresh
	g.Eventually(as.count).Should(Equal(2))
	g.Eventually(logs.String).Should(ContainSubstring("token refresh failed"))
	_, err = c.Token(bg, Request{Grant: GrantPassword, Username: "u", Password: "planted-password-4e"})
	g.Expect(err).To(HaveOccurred())
	c.Close()

	out := logs.String() + err.Error() + sprintf("%v %+v", c.cfg, req)
	for _, s := range []string{"planted-client-secret-7f3a", "planted-assertion-9c1d", "planted-password-4e", tok.AccessToken, tok.RefreshToken} {
		g.Expect(out).NotTo(ContainSubstring(s))
	}
	g.Expect(logs.String()).To(ContainSubstring("token_url="))
}

func TestRedirectIsRefused(t *testing.T) {
	g := NewWithT(t)
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	as := newFakeAS(t, nil)
	as.setPlan(func(int, seen) reply { return reply{Redirect: other.URL + "/steal"} })
	c := newClient(t, as.secretConfig(), WithClock(newFakeClock()))
	_, err := c.Token(bg, Request{})
	g.Expect(errors.Is(err, ErrRedirect)).To(BeTrue())
	g.Expect(err.Error()).To(ContainSubstring("302"))
	g.Expect(elsewhere.Load()).To(BeZero())
	g.Expect(as.count()).To(Equal(1), "not retried")
}

func TestBadResponses(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`not json planted-token-in-body`, "not a JSON object"},
		{`{"token_type":"bearer"}`, "no access_token"},
		{`{"access_token":"planted-token-in-body","expires_in":"soon"}`, "expires_in"},
	} {
		g := NewWithT(t)
		as := newFakeAS(t, nil)
		as.setPlan(func(int, seen) reply { return reply{Body: tc.body} })
		c := newClient(t, as.secretConfig(), WithClock(newFakeClock()))
		_, err := c.Token(bg, Request{})
		g.Expect(errors.Is(err, ErrBadResponse)).To(BeTrue())
		g.Expect(err.Error()).To(ContainSubstring(tc.want))
		g.Expect(err.Error()).NotTo(ContainSubstring("planted"))
	}
}

func TestExpiresInStringAndMissing(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	jwt := fakeJWT(sprintf(`{"exp":%d}`, clk.Now().Add(10*time.Minute).Unix()))
	as.setPlan(func(n int, _ seen) reply {
		switch n {
		case 1:
			return reply{Body: `{"access_token":"a","expires_in":"120"}`}
		case 2:
			return reply{Body: `{"access_token":"` + jwt + `","expires_in":43199}`}
		}
		return reply{Body: `{"access_token":"c"}`}
	})
	c := newClient(t, as.secretConfig(), WithClock(clk), WithDefaultLifetime(7*time.Minute))
	tok, err := c.Token(bg, Request{Tenant: ""})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Expiry).To(Equal(clk.Now().Add(2 * time.Minute)))
	tok, err = c.Token(bg, Request{Scopes: []string{"x"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Expiry).To(Equal(clk.Now().Add(10*time.Minute)), "the JWT's earlier exp wins")
	tok, err = c.Token(bg, Request{Scopes: []string{"y"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.Expiry).To(Equal(clk.Now().Add(7*time.Minute)), "default lifetime")
}

func TestAttemptTimeout(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	release := make(chan struct{})
	defer close(release)
	as.setPlan(func(int, seen) reply { return reply{Block: release} })
	c := newClient(t, as.secretConfig(), WithTimeout(100*time.Millisecond), WithRetry(RetryPolicy{MaxAttempts: 1}))
	_, err := c.Token(bg, Request{})
	g.Expect(err).To(MatchError(ContainSubstring("no answer within 100ms")))
	g.Expect(errors.Is(err, ErrUnavailable)).To(BeTrue())
}

func TestOneFetchForManyCallers(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	release := make(chan struct{})
	as.setPlan(func(int, seen) reply { return reply{Block: release} })
	var misses atomic.Int64
	c := newClient(t, as.secretConfig(), WithObserver(Observer{Miss: func() { misses.Add(1) }}))
	const n = 1000
	toks := make([]*Token, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			toks[i], errs[i] = c.Token(bg, Request{Scopes: []string{"s"}})
		}()
	}
	g.Eventually(misses.Load).Should(BeEquivalentTo(n), "every caller waits on the fetch")
	close(release)
	wg.Wait()
	g.Expect(as.count()).To(Equal(1))
	for i := range n {
		g.Expect(errs[i]).NotTo(HaveOccurred())
		g.Expect(toks[i]).To(BeIdenticalTo(toks[0]))
	}
}

func TestBoundedConcurrentFetches(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	release := make(chan struct{})
	var inflight, peak atomic.Int64
	as.setPlan(func(int, seen) reply {
		v := inflight.Add(1)
		for {
			p := peak.Load()
			if v <= p || peak.CompareAndSwap(p, v) {
				break
			}
		}
		<-release
		inflight.Add(-1)
		return reply{}
	})
	c := newClient(t, as.secretConfig(), WithMaxConcurrentFetches(2))
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Token(bg, Request{Scopes: []string{sprintf("scope-%d", i)}})
			g.Expect(err).NotTo(HaveOccurred())
		}()
	}
	g.Eventually(inflight.Load).Should(BeEquivalentTo(2))
	g.Consistently(inflight.Load, 100*time.Millisecond).Should(BeEquivalentTo(2))
	close(release)
	wg.Wait()
	g.Expect(peak.Load()).To(BeEquivalentTo(2))
	g.Expect(as.count()).To(Equal(6))
}

func TestBoundedEntries(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	var evictions atomic.Int64
	c := newClient(t, as.secretConfig(), WithClock(clk), WithMaxEntries(3),
		WithObserver(Observer{Evict: func() { evictions.Add(1) }}))
	user := func(i int) Request {
		return Request{Grant: GrantPassword, Username: sprintf("user-%d", i), Password: "pw-planted"}
	}
	get := func(i int) {
		_, err := c.Token(bg, user(i))
		g.Expect(err).NotTo(HaveOccurred())
	}
	get(0)
	for i := 1; i < 10; i++ {
		get(0) // user-0 stays in use
		get(i)
	}
	g.Expect(c.count.Load()).To(BeEquivalentTo(3))
	g.Expect(evictions.Load()).To(BeEquivalentTo(7))
	before := as.count()
	get(0)
	get(9)
	g.Expect(as.count()).To(Equal(before), "the user in use and the newest are still cached")

}

func TestEvictionPrefersExpired(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	c := newClient(t, as.secretConfig(), WithClock(clk), WithMaxEntries(3))
	get := func(scope string) {
		_, err := c.Token(bg, Request{Scopes: []string{scope}})
		g.Expect(err).NotTo(HaveOccurred())
	}
	get("old-1")
	get("old-2")
	clk.Advance(2 * time.Hour) // both expire (not in use, so not refreshed)
	get("recent")
	for range 20 {
		get("recent") // "recent" is hot, but so is nothing else
	}
	get("new-1")
	get("new-2")
	before := as.count()
	get("recent")
	get("new-1")
	get("new-2")
	g.Expect(as.count()).To(Equal(before), "the expired entries went, the valid ones stayed")
	g.Expect(c.count.Load()).To(BeEquivalentTo(3))
}

func TestCallerContextEndsOnlyItsWait(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	release := make(chan struct{})
	as.setPlan(func(int, seen) reply { return reply{Block: release} })
	c := newClient(t, as.secretConfig())
	ctx, cancel := context.WithCancel(bg)
	errc := make(chan error, 1)
	go func() { _, err := c.Token(ctx, Request{}); errc <- err }()
	g.Eventually(as.count).Should(Equal(1))
	cancel()
	g.Eventually(errc).Should(Receive(MatchError(context.Canceled)))
	close(release)
	tok, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.AccessToken).To(Equal("access-1"), "the cancelled caller's fetch completed for the next")
	g.Expect(as.count()).To(Equal(1))
}

func TestClose(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	release := make(chan struct{})
	defer close(release)
	as.setPlan(func(int, seen) reply { return reply{Block: release} })
	c, err := New(as.secretConfig())
	g.Expect(err).NotTo(HaveOccurred())
	errc := make(chan error, 1)
	go func() { _, err := c.Token(bg, Request{}); errc <- err }()
	g.Eventually(as.count).Should(Equal(1))
	g.Expect(c.Close()).To(Succeed()) // cancels the fetch in flight and waits for it
	g.Eventually(errc).Should(Receive(MatchError(ErrClosed)))
	g.Expect(c.Close()).To(Succeed())
	_, err = c.Token(bg, Request{})
	g.Expect(err).To(MatchError(ErrClosed))
}

func TestInvalidRequests(t *testing.T) {
	as := newFakeAS(t, nil)
	c := newClient(t, as.secretConfig())
	for _, r := range []Request{
		{Grant: "implicit"},
		{Grant: GrantPassword, Username: "u"},
		{Grant: GrantJWTBearer},
		{Grant: GrantRefreshToken},
		{Tenant: "a", ZoneID: "b"},
		{Tenant: "bad.tenant"},
	} {
		g := NewWithT(t)
		_, err := c.Token(bg, r)
		g.Expect(errors.Is(err, ErrInvalidRequest)).To(BeTrue(), "%+v: %v", r, err)
	}
	NewWithT(t).Expect(as.count()).To(BeZero())
}

func TestOptionsValidate(t *testing.T) {
	cfg := Config{ClientID: "id", ClientSecret: "s", TokenURL: "https://a.b"}
	for _, o := range []Option{
		WithRefreshAhead(0, 0), WithRefreshAhead(1.5, 0), WithRefreshAhead(0.5, 1),
		WithMaxEntries(0), WithMaxConcurrentFetches(0), WithTimeout(0), WithClock(nil),
		WithNegativeCacheTTL(-1), WithRetry(RetryPolicy{MaxAttempts: -1}), WithExpirySkew(-1), WithDefaultLifetime(0),
	} {
		_, err := New(cfg, o)
		NewWithT(t).Expect(errors.Is(err, ErrInvalidConfig)).To(BeTrue())
	}
}

func TestAdapters(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	c := newClient(t, as.secretConfig())
	var gotAuth atomic.Value
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		_, _ = io.WriteString(w, "ok")
	}))
	defer api.Close()
	hc := &http.Client{Transport: c.Transport(nil, Request{Scopes: []string{"api"}})}
	orig, _ := http.NewRequest("GET", api.URL, nil)
	resp, err := hc.Do(orig)
	g.Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	g.Expect(gotAuth.Load()).To(Equal("Bearer access-1"))
	g.Expect(orig.Header.Get("Authorization")).To(BeEmpty(), "the caller's request is not modified")

	ot, err := c.TokenSource(bg, Request{Scopes: []string{"api"}}).Token()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(ot.AccessToken).To(Equal("access-1"))
	g.Expect(ot.Valid()).To(BeTrue())
	g.Expect(as.count()).To(Equal(1))

	// A failing token lookup fails the round trip without calling upstream.
	bad := &http.Client{Transport: c.Transport(nil, Request{Grant: "nope"})}
	_, err = bad.Get(api.URL)
	g.Expect(errors.Is(err, ErrInvalidRequest)).To(BeTrue())
	g.Expect(strings.Count(sprintf("%v", gotAuth.Load()), "Bearer")).To(Equal(1))
}

func TestHandle(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	c := newClient(t, as.secretConfig(), WithMaxEntries(1))
	scopes := []string{"b", "a"}
	h, err := c.Handle(Request{Scopes: scopes})
	g.Expect(err).NotTo(HaveOccurred())
	scopes[0] = "changed" // the handle keeps its own copy
	a, err := h.Token(bg)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(as.last().Form.Get("scope")).To(Equal("a b"))
	g.Expect(h.Token(bg)).To(BeIdenticalTo(a))
	g.Expect(c.Token(bg, Request{Scopes: []string{"a", "b"}})).To(BeIdenticalTo(a), "shares the cache with Token")
	g.Expect(as.count()).To(Equal(1))

	// Evicted by another key: the handle looks its entry up again.
	_, err = c.Token(bg, Request{Scopes: []string{"other"}})
	g.Expect(err).NotTo(HaveOccurred())
	b, err := h.Token(bg)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(b.AccessToken).NotTo(Equal(a.AccessToken))
	g.Expect(as.count()).To(Equal(3))

	_, err = c.Handle(Request{Grant: GrantJWTBearer})
	g.Expect(errors.Is(err, ErrInvalidRequest)).To(BeTrue())
	c.Close()
	_, err = h.Token(bg)
	g.Expect(err).To(MatchError(ErrClosed))
}

// Many goroutines, few cache slots, a moving clock, a flaky server and a
// Close at the end: every call ends with a token or a typed error, the cache
// stays bounded, and the race detector stays quiet.
func TestConcurrentStress(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	as.setPlan(func(n int, _ seen) reply {
		switch n % 7 {
		case 3:
			return reply{Status: 503}
		case 5:
			return reply{Status: 400, Body: `{"error":"invalid_scope"}`}
		}
		return reply{ExpiresIn: 120}
	})
	clk := newFakeClock()
	c, err := New(as.secretConfig(), WithClock(clk), WithMaxEntries(5), WithRetry(RetryPolicy{MaxAttempts: 2}),
		WithNegativeCacheTTL(time.Second))
	g.Expect(err).NotTo(HaveOccurred())
	stop := make(chan struct{})
	var ticks sync.WaitGroup
	ticks.Add(1)
	go func() {
		defer ticks.Done()
		for {
			select {
			case <-stop:
				return
			default:
				clk.Advance(700 * time.Millisecond)
			}
		}
	}()
	var wg sync.WaitGroup
	var ok, refused, unavailable atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				req := Request{Scopes: []string{sprintf("s%d", (w*31+i)%20)}}
				var tok *Token
				var err error
				if i%2 == 0 {
					tok, err = c.Token(bg, req)
				} else {
					h, herr := c.Handle(req)
					if herr != nil {
						t.Error(herr)
						return
					}
					tok, err = h.Token(bg)
				}
				var te *TokenError
				switch {
				case err == nil && tok.AccessToken != "":
					ok.Add(1)
				case errors.Is(err, ErrUnavailable):
					unavailable.Add(1)
				case errors.As(err, &te) && te.StatusCode == 400:
					refused.Add(1)
				default:
					t.Errorf("unexpected result: %v %v", tok, err)
					return
				}
				if n := c.count.Load(); n > 5+8 { // bound plus the entries being inserted right now
					t.Errorf("cache holds %d entries", n)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	ticks.Wait()
	g.Expect(c.Close()).To(Succeed())
	g.Expect(ok.Load()).To(BeNumerically(">", 0))
	g.Expect(refused.Load()).To(BeNumerically(">", 0))
	g.Expect(c.count.Load()).To(BeNumerically("<=", 5))
	_, err = c.Token(bg, Request{})
	g.Expect(err).To(MatchError(ErrClosed))
}
