package destination

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// fakeFinder answers from a function and counts calls; release gates them.
type fakeFinder struct {
	calls   atomic.Int64
	mu      sync.Mutex
	answer  func(name, tenant, user string) (*Destination, error)
	release chan struct{}
}

func (f *fakeFinder) Find(ctx context.Context, name, tenant, user string) (*Destination, error) {
	f.calls.Add(1)
	if f.release != nil {
		<-f.release
	}
	f.mu.Lock()
	a := f.answer
	f.mu.Unlock()
	return a(name, tenant, user)
}

func (f *fakeFinder) set(a func(name, tenant, user string) (*Destination, error)) {
	f.mu.Lock()
	f.answer = a
	f.mu.Unlock()
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func newClock() *clock { return &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)} }

// echoFinder returns a destination whose header names the caller.
func echoFinder(expiry time.Time) func(name, tenant, user string) (*Destination, error) {
	return func(name, tenant, user string) (*Destination, error) {
		d := &Destination{Name: name, Authentication: OAuth2UserTokenExchange, Expiry: expiry, Header: map[string][]string{}}
		d.Header.Set("Authorization", fmt.Sprintf("Bearer for-%s-%s", tenant, user))
		return d, nil
	}
}

func TestCacheExpiryIsTheEarliest(t *testing.T) {
	clk := newClock()
	t0 := clk.now()
	for _, tc := range []struct {
		name               string
		authExp, userExp   time.Duration // 0: none
		ttl, skew, wantExp time.Duration
	}{
		{"ttl only", 0, 0, 5 * time.Minute, 30 * time.Second, 4*time.Minute + 30*time.Second},
		{"auth token first", time.Minute, time.Hour, 5 * time.Minute, 10 * time.Second, 50 * time.Second},
		{"user token first", time.Hour, 2 * time.Minute, 5 * time.Minute, 10 * time.Second, 110 * time.Second},
		{"ttl first", time.Hour, time.Hour, 3 * time.Minute, time.Second, 3*time.Minute - time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			var exp time.Time
			if tc.authExp > 0 {
				exp = t0.Add(tc.authExp)
			}
			f := &fakeFinder{answer: echoFinder(exp)}
			c, err := NewCache(f, CacheConfig{TTL: tc.ttl, Skew: tc.skew, Now: clk.now})
			g.Expect(err).NotTo(HaveOccurred())
			claims := map[string]any{"iss": "https://x", "zid": "z", "user_id": "u"}
			if tc.userExp > 0 {
				claims["exp"] = t0.Add(tc.userExp).Unix()
			}
			e, err := c.Get(context.Background(), Request{Name: "d", UserToken: jwt(claims)})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(e.Expiry).To(BeTemporally("==", t0.Add(tc.wantExp)))
		})
	}
}

func TestCacheNeverServesAnotherUser(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	f := &fakeFinder{answer: echoFinder(time.Time{})}
	c, _ := NewCache(f, CacheConfig{Now: clk.now})
	alice := jwt(map[string]any{"iss": "https://x", "zid": "z", "user_id": "alice"})
	bob := jwt(map[string]any{"iss": "https://x", "zid": "z", "user_id": "bob"})
	ctx := context.Background()
	ea, err := c.Get(ctx, Request{Name: "d", Tenant: "t1", UserToken: alice})
	g.Expect(err).NotTo(HaveOccurred())
	eb, err := c.Get(ctx, Request{Name: "d", Tenant: "t1", UserToken: bob})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(f.calls.Load()).To(BeEquivalentTo(2))
	g.Expect(ea.Header.Get("Authorization")).To(ContainSubstring(alice))
	g.Expect(eb.Header.Get("Authorization")).To(ContainSubstring(bob))

	// Alice again: a hit.
	ea2, _ := c.Get(ctx, Request{Name: "d", Tenant: "t1", UserToken: alice})
	g.Expect(ea2).To(BeIdenticalTo(ea))
	g.Expect(f.calls.Load()).To(BeEquivalentTo(2))

	// A forged token that claims to be alice (other bytes) is not served
	// alice's entry: it is looked up (and the service would refuse it).
	forged := jwt(map[string]any{"iss": "https://x", "zid": "z", "user_id": "alice", "x": 1})
	ef, _ := c.Get(ctx, Request{Name: "d", Tenant: "t1", UserToken: forged})
	g.Expect(f.calls.Load()).To(BeEquivalentTo(3))
	g.Expect(ef.Header.Get("Authorization")).To(ContainSubstring(forged))

	// Another tenant, same user: its own entry.
	_, _ = c.Get(ctx, Request{Name: "d", Tenant: "t2", UserToken: bob})
	g.Expect(f.calls.Load()).To(BeEquivalentTo(4))

	// A token without a user claim (or no JWT at all) is cached for that
	// exact token only.
	anon := jwt(map[string]any{"iss": "https://x", "zid": "z"})
	anon2 := jwt(map[string]any{"iss": "https://x", "zid": "z", "n": 2})
	for _, tok := range []string{anon, anon, anon2, "opaque-token", "opaque-token"} {
		e, err := c.Get(ctx, Request{Name: "d", Tenant: "t1", UserToken: tok})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(e.Header.Get("Authorization")).To(ContainSubstring(tok))
	}
	g.Expect(f.calls.Load()).To(BeEquivalentTo(7))
	g.Expect(c.Stats().Bypassed).To(BeEquivalentTo(3))
}

func TestUserKey(t *testing.T) {
	g := NewWithT(t)
	xs, _ := ParseUserToken(jwt(map[string]any{"iss": "i", "zid": "z", "user_id": "u", "sub": "s"}))
	xsSub, _ := ParseUserToken(jwt(map[string]any{"iss": "i", "zid": "z", "sub": "s"}))
	ias, _ := ParseUserToken(jwt(map[string]any{"iss": "i", "app_tid": "z", "user_uuid": "u", "sub": "s"}))
	otherZone, _ := ParseUserToken(jwt(map[string]any{"iss": "i", "zid": "z2", "user_id": "u"}))
	g.Expect(xs.Key).NotTo(Equal(xsSub.Key))
	g.Expect(xs.Key).NotTo(Equal(ias.Key))
	g.Expect(xs.Key).NotTo(Equal(otherZone.Key))
	g.Expect(xs.Key).To(ContainSubstring("u"))
	g.Expect(ias.Key).To(ContainSubstring("u"))
	_, ok := ParseUserToken("not-a-jwt")
	g.Expect(ok).To(BeFalse())
	// Length prefixes: ("ab","c") and ("a","bc") differ.
	a, _ := ParseUserToken(jwt(map[string]any{"iss": "i", "zid": "ab", "user_id": "c"}))
	b, _ := ParseUserToken(jwt(map[string]any{"iss": "i", "zid": "a", "user_id": "bc"}))
	g.Expect(a.Key).NotTo(Equal(b.Key))
}

func TestCacheColdBurstIsOneLookup(t *testing.T) {
	g := NewWithT(t)
	f := &fakeFinder{answer: echoFinder(time.Time{}), release: make(chan struct{})}
	c, _ := NewCache(f, CacheConfig{})
	user := jwt(map[string]any{"iss": "https://x", "zid": "z", "user_id": "u"})
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Get(context.Background(), Request{Name: "d", Tenant: "t", UserToken: user})
			errs <- err
		}()
	}
	g.Eventually(func() int64 { return c.Stats().Misses + c.Stats().Hits }).Should(BeEquivalentTo(n))
	close(f.release)
	wg.Wait()
	close(errs)
	for err := range errs {
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(f.calls.Load()).To(BeEquivalentTo(1))
}

func TestCacheServesValidEntryDuringOutage(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	f := &fakeFinder{answer: echoFinder(clk.now().Add(10 * time.Minute))}
	c, _ := NewCache(f, CacheConfig{Now: clk.now, TTL: 10 * time.Minute, Skew: 30 * time.Second, RefreshAhead: time.Minute})
	ctx := context.Background()
	first, err := c.Get(ctx, Request{Name: "d"})
	g.Expect(err).NotTo(HaveOccurred())
	f.set(func(name, _, _ string) (*Destination, error) { return nil, newError(name, ErrUnavailable, "HTTP 503") })
	// Inside the refresh-ahead window: served, one background refresh fails.
	clk.add(9 * time.Minute)
	for i := 0; i < 50; i++ {
		e, err := c.Get(ctx, Request{Name: "d"})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(e).To(BeIdenticalTo(first))
	}
	g.Eventually(func() int64 { return c.Stats().StaleServed }).Should(BeEquivalentTo(1))
	g.Expect(f.calls.Load()).To(BeEquivalentTo(2))
	// Past the expiry: the outage shows.
	clk.add(time.Minute)
	_, err = c.Get(ctx, Request{Name: "d"})
	r, st := ReasonOf(err)
	g.Expect(r).To(Equal(ReasonServiceUnavailable))
	g.Expect(st).To(Equal(503))
}

func TestCacheRefreshAhead(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	var n atomic.Int64
	f := &fakeFinder{}
	f.set(func(name, _, _ string) (*Destination, error) {
		d := &Destination{Name: name, Expiry: clk.now().Add(2 * time.Minute), Header: map[string][]string{}}
		d.Header.Set("Authorization", fmt.Sprint("Bearer v", n.Add(1)))
		return d, nil
	})
	c, _ := NewCache(f, CacheConfig{Now: clk.now, Skew: 10 * time.Second, RefreshAhead: 30 * time.Second})
	e1, _ := c.Get(context.Background(), Request{Name: "d"})
	g.Expect(e1.Header.Get("Authorization")).To(Equal("Bearer v1"))
	clk.add(80 * time.Second) // expiry at 110 s, refresh from 80 s
	e2, _ := c.Get(context.Background(), Request{Name: "d"})
	g.Expect(e2).To(BeIdenticalTo(e1))
	g.Eventually(func() string {
		e, _ := c.Get(context.Background(), Request{Name: "d"})
		return e.Header.Get("Authorization")
	}).Should(Equal("Bearer v2"))
	g.Expect(f.calls.Load()).To(BeEquivalentTo(2))
}

func TestCacheIsBounded(t *testing.T) {
	g := NewWithT(t)
	f := &fakeFinder{answer: echoFinder(time.Time{})}
	c, _ := NewCache(f, CacheConfig{MaxEntries: 3})
	for i := 0; i < 20; i++ {
		u := jwt(map[string]any{"iss": "https://x", "zid": "z", "user_id": fmt.Sprint("u", i)})
		_, err := c.Get(context.Background(), Request{Name: "d", UserToken: u})
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(c.Stats().Entries).To(BeNumerically("<=", 3))
	}
	g.Expect(c.Stats().Evictions).To(BeEquivalentTo(17))
}

func TestCacheTenantSelection(t *testing.T) {
	notFound := func(name string) error { return newError(name, ErrNotFound, "") }
	onlyProvider := func(name, tenant, _ string) (*Destination, error) {
		if tenant != "" {
			return nil, notFound(name)
		}
		return &Destination{Name: name, OwnerSubaccount: "provider"}, nil
	}
	for _, tc := range []struct {
		mode         string
		wantErr      bool
		wantProvider bool
		wantCalls    int64
	}{
		{SubscriberFirst, false, true, 2},
		{SubscriberOnly, true, false, 1},
		{ProviderOnly, false, true, 1},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			g := NewWithT(t)
			f := &fakeFinder{answer: onlyProvider}
			c, err := NewCache(f, CacheConfig{Selection: tc.mode})
			g.Expect(err).NotTo(HaveOccurred())
			e, err := c.Get(context.Background(), Request{Name: "d", Tenant: "acme"})
			g.Expect(f.calls.Load()).To(Equal(tc.wantCalls))
			if tc.wantErr {
				g.Expect(errors.Is(err, ErrNotFound)).To(BeTrue())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(e.FromProvider).To(Equal(tc.wantProvider))
		})
	}
	_, err := NewCache(&fakeFinder{}, CacheConfig{Selection: "both"})
	NewWithT(t).Expect(err).To(HaveOccurred())
}

// TestCacheNoRefreshPastTheUserToken: an entry bounded by the user token's
// exp is not refreshed ahead (a refresh could not extend it).
func TestCacheNoRefreshPastTheUserToken(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	f := &fakeFinder{answer: echoFinder(time.Time{})}
	c, _ := NewCache(f, CacheConfig{Now: clk.now, Skew: 10 * time.Second, RefreshAhead: time.Minute})
	user := jwt(map[string]any{"iss": "https://x", "zid": "z", "user_id": "u", "exp": clk.now().Add(2 * time.Minute).Unix()})
	_, err := c.Get(context.Background(), Request{Name: "d", UserToken: user})
	g.Expect(err).NotTo(HaveOccurred())
	clk.add(100 * time.Second) // 10 s before the entry's expiry
	for i := 0; i < 20; i++ {
		_, err = c.Get(context.Background(), Request{Name: "d", UserToken: user})
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Consistently(f.calls.Load).WithTimeout(100 * time.Millisecond).Should(BeEquivalentTo(1))
	g.Expect(c.Stats().Refreshes).To(BeZero())
	clk.add(10 * time.Second) // expired: the next request is a lookup
	_, _ = c.Get(context.Background(), Request{Name: "d", UserToken: user})
	g.Expect(f.calls.Load()).To(BeEquivalentTo(2))
}

func TestSameToken(t *testing.T) {
	g := NewWithT(t)
	base := strings.Repeat("abcdefghijklmnopqrstuvwxyz0123456789", 40) // 1440 bytes
	g.Expect(sameToken("", "")).To(BeTrue())
	g.Expect(sameToken("a", "")).To(BeFalse())
	for _, n := range []int{1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 1439, 1440} {
		a := base[:n]
		g.Expect(sameToken(a, strings.Clone(a))).To(BeTrue(), "length %d", n)
		g.Expect(sameToken(a, base[:n-1])).To(BeFalse(), "length %d vs %d", n, n-1)
		for _, i := range []int{0, n / 2, n - 1} {
			b := []byte(a)
			b[i] ^= 0x01
			g.Expect(sameToken(a, string(b))).To(BeFalse(), "length %d, differs at %d", n, i)
		}
	}
}

// TestCacheFastHashCollisionNeverServesAnotherToken forces every token to
// one fast hash: each token still gets its own entry (found by its user
// key after the comparison fails), never another's.
func TestCacheFastHashCollisionNeverServesAnotherToken(t *testing.T) {
	g := NewWithT(t)
	f := &fakeFinder{answer: echoFinder(time.Time{})}
	c, _ := NewCache(f, CacheConfig{})
	c.fastHash = func(string) uint64 { return 42 }
	ctx := context.Background()
	// One length for all three: only the bytes tell them apart.
	alice := jwt(map[string]any{"iss": "https://x", "zid": "z", "user_id": "alice"})
	bob := jwt(map[string]any{"iss": "https://x", "zid": "z", "user_id": "bobby"})
	forged := strings.TrimSuffix(alice, "c2ln") + "c2lo" // alice's claims, another signature
	g.Expect(len(bob)).To(Equal(len(alice)))
	for round := 0; round < 3; round++ {
		for _, tok := range []string{alice, bob, alice, forged, bob} {
			e, err := c.Get(ctx, Request{Name: "d", Tenant: "t1", UserToken: tok})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(e.Header.Get("Authorization")).To(Equal("Bearer for-t1-"+tok), "round %d", round)
			c.mu.Lock()
			g.Expect(c.byToken[tokenKey{h: 42, tenant: "t1", name: "d"}].token).To(Equal(tok), "the index points at the entry last used")
			c.mu.Unlock()
		}
	}
	// alice and bob keep their entries across rounds; the forged token
	// (alice's user key, other bytes) replaces alice's entry each time it
	// comes and is replaced again by alice: never shared.
	g.Expect(c.Stats().Entries).To(Equal(2))
}

// TestCacheHitChecksTheEntryExpiry: a hit through the token index still
// honours the user token's exp (the entry's expiry).
func TestCacheHitChecksTheEntryExpiry(t *testing.T) {
	g := NewWithT(t)
	clk := newClock()
	f := &fakeFinder{answer: echoFinder(time.Time{})}
	c, _ := NewCache(f, CacheConfig{Now: clk.now, Skew: time.Second})
	tok := jwt(map[string]any{"iss": "https://x", "zid": "z", "user_id": "u", "exp": clk.now().Add(time.Minute).Unix()})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		_, err := c.Get(ctx, Request{Name: "d", UserToken: tok})
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(f.calls.Load()).To(BeEquivalentTo(1))
	clk.add(59 * time.Second) // within the skew of exp
	_, _ = c.Get(ctx, Request{Name: "d", UserToken: tok})
	g.Expect(f.calls.Load()).To(BeEquivalentTo(2))
}

// Issue 21 item 3: an entry's expiry is a wall-clock time. Go compares two
// times that both carry a monotonic reading on the monotonic clock, which
// stops while the host is suspended: an expiry of time.Now().Add(TTL)
// would be served for the whole TTL of monotonic time after a resume,
// however long the suspend. Neither the expiry nor the time a hit compares
// it with may carry one.
func TestCacheExpiryIsAWallClockTime(t *testing.T) {
	for _, tc := range []struct {
		name string
		now  func() time.Time
	}{
		{"default clock", nil},
		{"injected time.Now", time.Now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			f := &fakeFinder{answer: echoFinder(time.Time{})} // no auth token expiry: the TTL decides
			c, err := NewCache(f, CacheConfig{TTL: time.Minute, Now: tc.now})
			g.Expect(err).NotTo(HaveOccurred())
			e, err := c.Get(context.Background(), Request{Name: "d"})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(e.Expiry.String()).NotTo(ContainSubstring("m="), "the expiry carries a monotonic reading")
			g.Expect(c.cfg.Now().String()).NotTo(ContainSubstring("m="), "the hit path's clock carries a monotonic reading")
			g.Expect(e.Expiry).To(BeTemporally("~", time.Now().Add(time.Minute-DefaultSkew), 5*time.Second))
		})
	}
}
