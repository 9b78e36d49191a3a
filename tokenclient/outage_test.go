package tokenclient

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// During an outage with no valid token, callers get the last failure for a
// pause (RetryPolicy.MaxDelay) instead of each starting a fetch: the token
// service is asked once per pause, not once per waiting caller.
func TestOutageIsAskedAboutOncePerPause(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	var down atomic.Bool
	down.Store(true)
	as.setPlan(func(int, seen) reply {
		if down.Load() {
			return reply{Status: 503, Body: `{"error":"temporarily_unavailable"}`}
		}
		return reply{ExpiresIn: 600}
	})
	c := newClient(t, as.secretConfig(), WithClock(clk), WithRetry(RetryPolicy{MaxAttempts: 2, MaxDelay: 5 * time.Second}))
	for i := 0; i < 20; i++ {
		_, err := c.Token(bg, Request{})
		g.Expect(errors.Is(err, ErrUnavailable)).To(BeTrue(), "call %d: %v", i, err)
	}
	g.Expect(as.count()).To(Equal(2), "one fetch of two attempts for twenty callers")

	clk.Advance(5*time.Second + time.Millisecond)
	_, err := c.Token(bg, Request{})
	g.Expect(errors.Is(err, ErrUnavailable)).To(BeTrue())
	g.Expect(as.count()).To(Equal(4), "after the pause, one more fetch")

	down.Store(false)
	_, err = c.Token(bg, Request{})
	g.Expect(errors.Is(err, ErrUnavailable)).To(BeTrue(), "within the pause the failure is replayed")
	g.Expect(as.count()).To(Equal(4))
	clk.Advance(5*time.Second + time.Millisecond)
	tok, err := c.Token(bg, Request{})
	g.Expect(err).NotTo(HaveOccurred(), "recovers after the pause")
	g.Expect(tok.AccessToken).NotTo(BeEmpty())
	g.Expect(as.count()).To(Equal(5))
}
