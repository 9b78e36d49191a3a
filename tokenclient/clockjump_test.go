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
