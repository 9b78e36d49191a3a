package tokenclient

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// Invalidate drops the token an upstream rejected only while it is still
// the cached one, fetches once for all callers, and is rate-limited per
// tenant.
func TestInvalidateComparesSingleFlightsAndIsRateLimited(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	release := make(chan struct{})
	var hold atomic.Bool
	as.setPlan(func(int, seen) reply {
		if hold.Load() {
			return reply{ExpiresIn: 600, Block: release}
		}
		return reply{ExpiresIn: 600}
	})
	clk := newFakeClock()
	var events []InvalidateEvent
	var mu sync.Mutex
	c := newClient(t, as.secretConfig(), WithClock(clk), WithInvalidationInterval(10*time.Second),
		WithObserver(Observer{Invalidate: func(ev InvalidateEvent) { mu.Lock(); events = append(events, ev); mu.Unlock() }}))
	h, err := c.Handle(Request{})
	g.Expect(err).NotTo(HaveOccurred())
	t1, err := h.Token(bg)
	g.Expect(err).NotTo(HaveOccurred())

	// Twenty callers saw t1 rejected at once: one drop, one fetch, and all
	// get the new token.
	hold.Store(true)
	var dropped atomic.Int64
	var wg sync.WaitGroup
	got := make(chan string, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := h.Invalidate(t1.AccessToken)
			if err == nil && d {
				dropped.Add(1)
			}
			tok, err := h.Token(bg)
			if err == nil {
				got <- tok.AccessToken
			}
		}()
	}
	g.Eventually(as.count).Should(Equal(2))
	hold.Store(false)
	close(release)
	wg.Wait()
	close(got)
	g.Expect(dropped.Load()).To(Equal(int64(1)), "the token is dropped once")
	g.Expect(as.count()).To(Equal(2), "one fetch for all callers")
	var t2 string
	for s := range got {
		g.Expect(s).NotTo(Equal(t1.AccessToken), "the rejected token was served again")
		t2 = s
	}
	g.Expect(t2).NotTo(BeEmpty())

	// A stale rejection (t1 again) drops nothing.
	d, err := c.Invalidate(Request{}, t1.AccessToken)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d).To(BeFalse())
	g.Expect(as.count()).To(Equal(2))

	// t2 rejected within the interval: limited, kept.
	_, err = c.Invalidate(Request{}, t2)
	g.Expect(errors.Is(err, ErrInvalidationLimited)).To(BeTrue())
	tok, err := h.Token(bg)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.AccessToken).To(Equal(t2))

	// After the interval it is dropped and replaced.
	clk.Advance(10 * time.Second)
	d, err = c.Invalidate(Request{}, t2)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d).To(BeTrue())
	tok, err = h.Token(bg)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.AccessToken).NotTo(Equal(t2))
	g.Expect(as.count()).To(Equal(3))

	mu.Lock()
	defer mu.Unlock()
	g.Expect(events).To(HaveLen(3))
	g.Expect(events[1].Limited).To(BeTrue())
}

// The limit is per tenant: another tenant's key is not held back by it.
func TestInvalidationLimitIsPerTenant(t *testing.T) {
	g := NewWithT(t)
	c := newClient(t, Config{ClientID: "c", ClientSecret: "s", TokenURL: "https://provider.authentication.invalid"})
	g.Expect(c.allowInvalidation("a\x00")).To(BeTrue())
	g.Expect(c.allowInvalidation("a\x00")).To(BeFalse())
	g.Expect(c.allowInvalidation("b\x00")).To(BeTrue())
	for i := range maxInvalidationTenants + 10 {
		c.allowInvalidation(sprintf("t%d\x00", i))
	}
	c.invMu.Lock()
	n := len(c.invLast)
	c.invMu.Unlock()
	g.Expect(n).To(BeNumerically("<=", maxInvalidationTenants), "bounded")
}

// A rejected token whose refresh is already on its way is dropped all the
// same (it is not served again), and callers wait for that refresh: no
// second fetch.
func TestInvalidateDuringARefresh(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // a failure must not leave the fake server blocked
	var hold atomic.Bool
	as.setPlan(func(int, seen) reply {
		if hold.Load() {
			return reply{ExpiresIn: 600, Block: release}
		}
		return reply{ExpiresIn: 600}
	})
	clk := newFakeClock()
	c := newClient(t, as.secretConfig(), WithClock(clk))
	h, err := c.Handle(Request{})
	g.Expect(err).NotTo(HaveOccurred())
	t1, err := h.Token(bg)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = h.Token(bg) // a hit: the token is in use, so it is refreshed ahead
	g.Expect(err).NotTo(HaveOccurred())
	hold.Store(true)
	clk.Advance(500 * time.Second) // past the refresh point, before the served time ends
	g.Eventually(as.count).Should(Equal(2), "the refresh is on its way")

	d, err := h.Invalidate(t1.AccessToken)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(d).To(BeTrue())
	got := make(chan string, 1)
	go func() {
		tok, err := h.Token(bg)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- tok.AccessToken
	}()
	g.Consistently(got).ShouldNot(Receive(), "the rejected token is not served while the refresh runs")
	free()
	var t2 string
	g.Eventually(got).Should(Receive(&t2))
	g.Expect(t2).NotTo(Equal(t1.AccessToken))
	g.Expect(t2).NotTo(HavePrefix("error"))
	g.Expect(as.count()).To(Equal(2), "no second fetch")
}
