package tokenclient

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// A hit skips Request.check: the request that made the entry was checked,
// and a request that finds it equals that one. So a request that differs
// from a cached valid one only in what makes it invalid is still refused,
// whether it passes the very strings of the cached one (the front table)
// or copies of them (the shard index), and nothing is fetched for it.
func TestInvalidNeighbourOfCachedKeyIsRefused(t *testing.T) {
	as, c := newTenantClient(t)
	tenant, scopes := "subscriber-1", []string{"orders.read", "orders.write"}
	for _, tc := range []struct {
		name           string
		valid, invalid Request
	}{
		{"a zone next to the tenant",
			Request{Tenant: tenant, Scopes: scopes},
			Request{Tenant: tenant, ZoneID: "zone-1", Scopes: scopes}},
		{"an explicit client_credentials grant with a zone next to the tenant",
			Request{Grant: GrantClientCredentials, Tenant: tenant},
			Request{Grant: GrantClientCredentials, Tenant: tenant, ZoneID: "zone-1"}},
		{"an unknown grant",
			Request{Tenant: tenant, Scopes: scopes},
			Request{Grant: "implicit", Tenant: tenant, Scopes: scopes}},
		{"a password grant without the password",
			Request{Grant: GrantPassword, Username: "alice", Password: "pw-planted", Scopes: scopes},
			Request{Grant: GrantPassword, Username: "alice", Scopes: scopes}},
		{"a password grant without the user",
			Request{Grant: GrantPassword, Username: "alice", Password: "pw-planted"},
			Request{Grant: GrantPassword, Password: "pw-planted"}},
		{"a jwt-bearer grant without the assertion",
			Request{Grant: GrantJWTBearer, Assertion: "assertion-planted", Scopes: scopes},
			Request{Grant: GrantJWTBearer, Scopes: scopes}},
		{"a refresh_token grant without the token",
			Request{Grant: GrantRefreshToken, RefreshToken: "refresh-planted"},
			Request{Grant: GrantRefreshToken}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			first, err := c.Token(bg, tc.valid)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(c.Token(bg, tc.valid)).To(BeIdenticalTo(first), "cached")
			before := as.count()
			// Put the valid request's entry where the invalid one looks
			// first, as if their slots were one.
			if e := c.front[frontSlot(&tc.valid)].Load(); e != nil {
				c.front[frontSlot(&tc.invalid)].Store(e)
			}
			copied := tc.invalid
			copied.Tenant, copied.Username = strings.Clone(copied.Tenant), strings.Clone(copied.Username)
			copied.Scopes = cloneStrings(copied.Scopes)
			for _, r := range []Request{tc.invalid, copied} {
				_, err := c.Token(bg, r)
				g.Expect(errors.Is(err, ErrInvalidRequest)).To(BeTrue(), "%v", err)
			}
			g.Expect(as.count()).To(Equal(before), "nothing fetched for an invalid request")
			g.Expect(c.Token(bg, tc.valid)).To(BeIdenticalTo(first), "the valid one is still cached")
		})
	}
}

// The front table tells keys apart, also when more keys than it has
// slots take turns and when keys share a slot: each key gets its own
// token, the one fetched for it, every time; a request with copies of a
// key's strings, or its scopes in another order, gets the same token.
func TestFrontTableTellsKeysApart(t *testing.T) {
	g := NewWithT(t)
	as, c := newTenantClient(t)
	const n = 3 * frontSize
	reqs := make([]Request, n)
	var tenant string
	for i := range reqs {
		// Three requests per tenant: one without scopes, two with scopes
		// that differ only in the second (so they share a front slot).
		if i%3 == 0 {
			tenant = "tenant-" + strconv.Itoa(i/3) // one string for the three
		}
		reqs[i] = Request{Tenant: tenant}
		switch i % 3 {
		case 1:
			reqs[i].Scopes = []string{"orders.read", "orders.write-" + strconv.Itoa(i)}
		case 2:
			reqs[i].Scopes = []string{"orders.read", "orders.x-" + strconv.Itoa(i)}
		}
	}
	toks := make([]*Token, n)
	for round := range 3 {
		for i, r := range reqs {
			tok, err := c.Token(bg, r)
			g.Expect(err).NotTo(HaveOccurred())
			if round == 0 {
				toks[i] = tok
			}
			g.Expect(tok).To(BeIdenticalTo(toks[i]), "round %d, request %d", round, i)
		}
	}
	g.Expect(as.count()).To(Equal(n))
	// Each token was fetched for its own request's tenant and scopes.
	sent := as.all()
	for i, tok := range toks {
		k, err := strconv.Atoi(strings.TrimPrefix(tok.AccessToken, "access-"))
		g.Expect(err).NotTo(HaveOccurred())
		s := sent[k-1]
		g.Expect(s.Host).To(HavePrefix(reqs[i].Tenant+".authentication.localhost:"), "request %d", i)
		g.Expect(s.Form.Get("scope")).To(Equal(strings.Join(reqs[i].Scopes, " ")), "request %d", i)
	}
	// Whatever entry a request's slot holds (as if any two keys shared a
	// slot), the request gets its own token.
	entries := make([]*entry, n)
	for i := range reqs {
		e, err := c.lookup(&reqs[i], "")
		g.Expect(err).NotTo(HaveOccurred())
		entries[i] = e
	}
	for i, e := range entries {
		for j := range reqs {
			c.front[frontSlot(&reqs[j])].Store(e)
			g.Expect(c.Token(bg, reqs[j])).To(BeIdenticalTo(toks[j]), "request %d with the entry of %d in its slot", j, i)
		}
	}
	// Copies of the strings, and scopes out of order, find the same entries.
	for i, r := range reqs {
		cp := Request{Tenant: strings.Clone(r.Tenant), Scopes: cloneStrings(r.Scopes)}
		if len(cp.Scopes) == 2 {
			cp.Scopes[0], cp.Scopes[1] = cp.Scopes[1], cp.Scopes[0]
		}
		g.Expect(c.Token(bg, cp)).To(BeIdenticalTo(toks[i]), "a copy of request %d", i)
	}
	g.Expect(as.count()).To(Equal(n))
}

// An entry that was removed (evicted) is not served from the front table:
// the next request with its strings makes a new entry and fetches.
func TestFrontTableDropsRemovedEntries(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	c := newClient(t, as.secretConfig())
	r := Request{Scopes: []string{"orders.read", "orders.write"}}
	first, err := c.Token(bg, r)
	g.Expect(err).NotTo(HaveOccurred())
	e := c.front[frontSlot(&r)].Load()
	g.Expect(e).NotTo(BeNil(), "the first request put its entry in the front table")
	g.Expect(c.Token(bg, r)).To(BeIdenticalTo(first))

	c.remove(e)
	for i := range c.front {
		g.Expect(c.front[i].Load()).NotTo(BeIdenticalTo(e), "slot %d still holds the removed entry", i)
	}
	// Also when the slot still held it (a remove racing with a Token that
	// stored it again): Token sees that the entry is gone.
	c.front[frontSlot(&r)].Store(e)
	tok, err := c.Token(bg, r)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok).NotTo(BeIdenticalTo(first), "served the removed entry's token")
	g.Expect(as.count()).To(Equal(2))
	g.Expect(c.front[frontSlot(&r)].Load()).NotTo(BeIdenticalTo(e))
}

// A hit through the front table reads the wall clock like any other: after
// a suspend (the wall clock jumped, no timer fired, the jump itself went
// unnoticed) its token's time has passed, and it is not served.
func TestFrontTableHitChecksTheWallClock(t *testing.T) {
	g := NewWithT(t)
	clk := newFakeClock()
	as, c := newTenantClient(t, WithClock(clk), WithClockCheck(time.Second, 1000*time.Hour))
	as.setPlan(func(int, seen) reply { return reply{ExpiresIn: 600} })
	r := Request{Tenant: "subscriber-1", Scopes: []string{"orders.read", "orders.write"}}
	first, err := c.Token(bg, r)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(c.front[frontSlot(&r)].Load()).NotTo(BeNil(), "the next hit goes through the front table")

	clk.Jump(time.Hour)
	clk.Advance(time.Second)
	tok, err := c.Token(bg, r)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok).NotTo(BeIdenticalTo(first), "served a token whose time had passed on the wall clock")
	g.Expect(tok.Expiry).To(BeTemporally(">", clk.Now()))
	g.Expect(as.count()).To(Equal(2))
}

// Under concurrent use with evictions (more keys than entries), through
// the front table and the index, every call gets a token fetched for its
// own key.
func TestFrontTableUnderEvictionServesOwnKeys(t *testing.T) {
	as := newFakeAS(t, nil)
	c := newClient(t, as.secretConfig(), WithMaxEntries(3))
	reqs := make([]Request, 10)
	for i := range reqs {
		reqs[i] = Request{Scopes: []string{"orders.read", "orders.write-" + strconv.Itoa(i)}}
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				r := reqs[(w*7+i)%len(reqs)]
				if i%3 == 0 { // fresh strings: the index
					r = Request{Scopes: cloneStrings(r.Scopes)}
				}
				tok, err := c.Token(bg, r)
				if err != nil {
					t.Error(err)
					return
				}
				if want := strings.Join(r.Scopes, " "); tok.Scope != want {
					t.Errorf("asked for %q, got a token for %q", want, tok.Scope)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// newTenantClient is a client of a fake authorization server on TLS whose
// tenant host names (*.authentication.localhost) reach it over loopback.
func newTenantClient(t *testing.T, opts ...Option) (*fakeAS, *Client) {
	as, ca := newTLSFakeAS(t, nil)
	cfg := as.secretConfig()
	cfg.TokenURL = as.hostURL("provider.authentication.localhost")
	return as, newClient(t, cfg, append([]Option{WithRootCAs(ca.Pool()), WithDialContext(loopbackDial)}, opts...)...)
}

func cloneStrings(s []string) []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = strings.Clone(v)
	}
	return out
}
