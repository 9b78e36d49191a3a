package tokenclient

import (
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// After a host suspend the refresh and expiry timers (monotonic) have not
// fired, but the token's served time has passed on the wall clock: the hit
// path must not serve it once the client has read the wall clock again,
// even when the jump itself goes unnoticed (threshold too high here).
func TestHitPathChecksTheWallClock(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	as.setPlan(func(int, seen) reply { return reply{ExpiresIn: 600} })
	clk := newFakeClock()
	c := newClient(t, as.secretConfig(), WithClock(clk), WithClockCheck(time.Second, 1000*time.Hour))
	first, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())

	clk.Jump(time.Hour) // suspended for an hour: no timer fired
	clk.Advance(time.Second)
	tok, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok).NotTo(BeIdenticalTo(first), "served a token whose time had passed on the wall clock")
	g.Expect(tok.Expiry).To(BeTemporally(">", clk.Now()))
	g.Expect(as.count()).To(Equal(2))
}

// A jump beyond the threshold re-evaluates every schedule at once: a token
// in use that expired during the suspend is fetched again before the next
// request, and the jump is reported.
func TestClockJumpReschedules(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	as.setPlan(func(int, seen) reply { return reply{ExpiresIn: 600} })
	clk := newFakeClock()
	var jumps, last atomic.Int64
	c := newClient(t, as.secretConfig(), WithClock(clk), WithObserver(Observer{ClockJump: func(d time.Duration) {
		jumps.Add(1)
		last.Store(int64(d))
	}}))
	first, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())

	for i := 0; i < 5; i++ { // regular ticks are no jumps
		clk.Advance(time.Second)
	}
	g.Expect(jumps.Load()).To(BeZero())

	clk.Jump(-time.Hour) // a step back: the token stays served
	clk.Advance(time.Second)
	g.Expect(jumps.Load()).To(Equal(int64(1)))
	g.Expect(time.Duration(last.Load())).To(Equal(-time.Hour))
	tok, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok).To(BeIdenticalTo(first))

	clk.Jump(2 * time.Hour) // a suspend past the token's expiry
	clk.Advance(time.Second)
	g.Expect(jumps.Load()).To(Equal(int64(2)))
	g.Eventually(as.count).Should(Equal(2), "the token in use is fetched again on the jump, not on the next request")
	waitIdle(g, c)
	tok, err = c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok).NotTo(BeIdenticalTo(first))
	g.Expect(as.count()).To(Equal(2), "the request found the new token cached")
}

// Issue 21 item 3, the window after a resume: a suspend past the token's
// expiry followed at once by a hit (before any clock check or timer ran)
// must not hand out the expired token, for a plain request and for a
// Handle, whatever the jump threshold. The hit fetches a fresh one.
func TestHitRightAfterAJumpNeverServesTheExpiredToken(t *testing.T) {
	for _, jump := range []time.Duration{10*time.Minute + time.Second, time.Hour, 30 * 24 * time.Hour} {
		t.Run(jump.String(), func(t *testing.T) {
			g := NewWithT(t)
			as := newFakeAS(t, nil)
			as.setPlan(func(int, seen) reply { return reply{ExpiresIn: 600} })
			clk := newFakeClock()
			// The jump check is due in an hour and would not see the jump:
			// the hit alone must notice the wall clock.
			c := newClient(t, as.secretConfig(), WithClock(clk), WithClockCheck(time.Hour, 1000*time.Hour))
			h, err := c.Handle(Request{Scopes: []string{"orders.read"}})
			g.Expect(err).NotTo(HaveOccurred())
			first, err := c.Token(bg, Request{})
			g.Expect(err).NotTo(HaveOccurred())
			firstH, err := h.Token(bg)
			g.Expect(err).NotTo(HaveOccurred())

			clk.Jump(jump) // no Advance: no timer and no clock check has run
			tok, err := c.Token(bg, Request{})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(tok).NotTo(BeIdenticalTo(first), "Token served a token whose time had passed on the wall clock")
			g.Expect(tok.Expiry).To(BeTemporally(">", clk.Now()))
			tokH, err := h.Token(bg)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(tokH).NotTo(BeIdenticalTo(firstH), "Handle.Token served a token whose time had passed on the wall clock")
			g.Expect(tokH.Expiry).To(BeTemporally(">", clk.Now()))
			g.Expect(as.count()).To(Equal(4))
		})
	}
}

// A suspend past a token's refresh point but not its expiry: the token is
// still served, and the hit starts the refresh its late timer would have.
func TestHitAfterAJumpPastTheRefreshPointRefreshes(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	as.setPlan(func(int, seen) reply { return reply{ExpiresIn: 3600} })
	clk := newFakeClock()
	c := newClient(t, as.secretConfig(), WithClock(clk), WithClockCheck(time.Hour, 1000*time.Hour))
	first, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())

	clk.Jump(50 * time.Minute) // past the refresh point (at most 90% of the life), not the expiry
	tok, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok).To(BeIdenticalTo(first), "the token is still valid: served without waiting")
	g.Eventually(as.count).Should(Equal(2), "the hit started the late refresh")
	waitIdle(g, c)
	tok, err = c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok).NotTo(BeIdenticalTo(first))
}

// The hit path reads the wall clock and still allocates nothing, through
// the front table, the index or a Handle.
func TestCacheHitAllocatesNothing(t *testing.T) {
	as := newFakeAS(t, nil)
	c := newClient(t, as.secretConfig())
	req := Request{Scopes: []string{"orders.read", "orders.write"}}
	h, err := c.Handle(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Token(bg, req); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = c.Token(bg, req) }); n != 0 {
		t.Errorf("Client.Token hit: %v allocs", n)
	}
	fresh := Request{Scopes: cloneStrings(req.Scopes)} // misses the front table: the index
	if n := testing.AllocsPerRun(200, func() { _, _ = c.Token(bg, fresh) }); n != 0 {
		t.Errorf("Client.Token hit with fresh strings: %v allocs", n)
	}
	if n := testing.AllocsPerRun(200, func() { _, _ = h.Token(bg) }); n != 0 {
		t.Errorf("Handle.Token hit: %v allocs", n)
	}
}
