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

// The outage serving rule: once a refresh failed because the service was
// unavailable, the cached token is served until expiry minus the outage
// margin, not only until expiry minus the skew; a refusal (4xx) does not
// extend it.
func TestOutageServesUntilExpiryMinusMargin(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		opts     []Option
		untilEnd time.Duration // served until this long before expiry
	}{
		{"503: default margin", 503, nil, DefaultOutageMargin},
		{"500: margin 2s", 500, []Option{WithOutageMargin(2 * time.Second)}, 2 * time.Second},
		{"margin above the skew is capped", 503, []Option{WithOutageMargin(time.Hour)}, 30 * time.Second},
		{"400 invalid_client: only until the skew", 400, nil, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			as := newFakeAS(t, nil)
			clk := newFakeClock()
			var down atomic.Bool
			as.setPlan(func(int, seen) reply {
				if down.Load() {
					return reply{Status: tc.status, Body: `{"error":"invalid_client"}`}
				}
				return reply{ExpiresIn: 600}
			})
			opts := append([]Option{WithClock(clk), WithRefreshAhead(0.5, 0), WithNegativeCacheTTL(time.Second),
				WithRetry(RetryPolicy{MaxAttempts: 1, MaxDelay: time.Second})}, tc.opts...)
			c := newClient(t, as.secretConfig(), opts...)
			first, err := c.Token(bg, Request{})
			g.Expect(err).NotTo(HaveOccurred())
			down.Store(true)
			// Walk up to the expiry a second at a time: each hit past the
			// refresh point sees a failed refresh and keeps the token.
			end := first.Expiry.Add(-tc.untilEnd)
			for clk.Now().Add(time.Second).Before(end) {
				clk.Advance(time.Second)
				tok, err := c.Token(bg, Request{})
				g.Expect(err).NotTo(HaveOccurred(), "at %v before expiry", first.Expiry.Sub(clk.Now()))
				g.Expect(tok).To(BeIdenticalTo(first))
				waitIdle(g, c)
			}
			clk.Advance(end.Sub(clk.Now()))
			waitIdle(g, c)
			_, err = c.Token(bg, Request{})
			g.Expect(err).To(HaveOccurred(), "served past expiry minus %v", tc.untilEnd)
			g.Expect(as.count()).To(BeNumerically(">", 2), "refreshes were attempted during the outage")
		})
	}
}

// waitIdle waits until no fetch of c is in flight (fetches run in their own
// goroutines even with a fake clock).
func waitIdle(g Gomega, c *Client) {
	g.Eventually(func() bool {
		for i := range c.shards {
			for _, list := range *c.shards[i].m.Load() {
				for _, e := range list {
					if e.busy.Load() {
						return false
					}
				}
			}
		}
		return true
	}).Should(BeTrue())
}
