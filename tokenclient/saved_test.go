package tokenclient

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// Tokens saved by one client and restored into a new one (a restart) are
// served while the token service is down, and refreshed in the background
// once it answers; user-grant tokens are never saved.
func TestSavedTokensSurviveARestartDuringAnOutage(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	var down atomic.Bool
	as.setPlan(func(int, seen) reply {
		if down.Load() {
			return reply{Status: 503, Body: `{"error":"temporarily_unavailable"}`}
		}
		return reply{ExpiresIn: 600}
	})
	clk := newFakeClock()
	a := newClient(t, as.secretConfig(), WithClock(clk))
	t1, err := a.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	t2, err := a.Token(bg, Request{Scopes: []string{"b", "a"}})
	g.Expect(err).NotTo(HaveOccurred())
	_, err = a.Token(bg, Request{Grant: GrantPassword, Username: "u", Password: "planted-pw-1"})
	g.Expect(err).NotTo(HaveOccurred())
	saved := a.Saved()
	g.Expect(saved).To(HaveLen(2), "client_credentials tokens only")
	raw, err := json.Marshal(saved)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(raw)).NotTo(ContainSubstring("planted-pw-1"))
	g.Expect(string(raw)).NotTo(ContainSubstring(string(as.secretConfig().ClientSecret)))
	g.Expect(a.Close()).To(Succeed())

	down.Store(true)
	clk.Advance(time.Minute)
	var back []Saved
	g.Expect(json.Unmarshal(raw, &back)).To(Succeed())
	b := newClient(t, as.secretConfig(), WithClock(clk), WithRetry(RetryPolicy{MaxAttempts: 1}))
	g.Expect(b.Restore(back)).To(Equal(2))
	before := as.count()
	got, err := b.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred(), "the saved token is served while the service is down")
	g.Expect(got.AccessToken).To(Equal(t1.AccessToken))
	got, err = b.Token(bg, Request{Scopes: []string{"a", "b"}})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.AccessToken).To(Equal(t2.AccessToken))
	g.Eventually(as.count).Should(BeNumerically(">", before), "a background refresh started")
	waitIdle(g, b)
	got, err = b.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred(), "a failed refresh keeps the saved token (outage rule)")
	g.Expect(got.AccessToken).To(Equal(t1.AccessToken))

	// Once the service is back, the next refresh replaces it.
	down.Store(false)
	clk.Advance(6 * time.Second)
	g.Eventually(func() string {
		tok, _ := b.Token(bg, Request{})
		return tok.AccessToken
	}).ShouldNot(Equal(t1.AccessToken))
}

func TestRestoreSkipsWhatItMustNotServe(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	c := newClient(t, as.secretConfig(), WithClock(clk))
	now := clk.Now()
	ok := Saved{Token: "t", IssuedAt: now.Add(-time.Minute), Expiry: now.Add(10 * time.Minute)}
	bad := func(f func(*Saved)) Saved { s := ok; f(&s); return s }
	g.Expect(c.Restore([]Saved{
		bad(func(s *Saved) { s.Token = "" }),
		bad(func(s *Saved) { s.Expiry = now.Add(-time.Second) }),                // expired
		bad(func(s *Saved) { s.Expiry = now.Add(20 * time.Second) }),            // within the skew
		bad(func(s *Saved) { s.Expiry = now.Add(100 * time.Hour) }),             // implausible
		bad(func(s *Saved) { s.Tenant, s.ZoneID = "a", "b" }),                   // not a valid key
		bad(func(s *Saved) { s.Token = string(make([]byte, maxSavedToken+1)) }), // too large
	})).To(BeZero())
	g.Expect(as.count()).To(BeZero())
	g.Expect(c.Restore([]Saved{ok, ok})).To(Equal(1), "a key that holds a token keeps it")
	tok, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.AccessToken).To(Equal("t"))
}
