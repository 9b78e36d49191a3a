package tokenclient

import (
	"errors"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// A flood of distinct scope sets or tenants makes at most WithMaxKeys token
// requests; keys cached before keep working, a Handle's key is never
// refused, and a key's slot frees once its entries hold nothing valid.
func TestMaxKeysBoundsFanOut(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	clk := newFakeClock()
	c := newClient(t, as.secretConfig(), WithClock(clk), WithMaxKeys(4))
	h, err := c.Handle(Request{Scopes: []string{"route.read"}}) // a route's key: reserved
	g.Expect(err).NotTo(HaveOccurred())

	_, err = c.Token(bg, Request{Scopes: []string{"real"}})
	g.Expect(err).NotTo(HaveOccurred())
	refused := 0
	for i := range 200 {
		_, err := c.Token(bg, Request{Scopes: []string{fmt.Sprintf("junk%d", i)}})
		if errors.Is(err, ErrTooManyKeys) {
			refused++
			continue
		}
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Expect(refused).To(Equal(197), "3 junk keys fit beside the real key")
	g.Expect(as.count()).To(Equal(4), "one token request per admitted key, none for refused ones")
	for range 5 {
		_, err = c.Token(bg, Request{Scopes: []string{"real"}})
		g.Expect(err).NotTo(HaveOccurred(), "a cached key keeps working")
		_, err = h.Token(bg)
		g.Expect(err).NotTo(HaveOccurred(), "a Handle's key is never refused")
		_, err = c.Token(bg, Request{Scopes: []string{"route.read"}})
		g.Expect(err).NotTo(HaveOccurred(), "nor is the same key asked for directly")
	}
	_, err = c.Token(bg, Request{Scopes: []string{"new-subscriber"}})
	g.Expect(errors.Is(err, ErrTooManyKeys)).To(BeTrue(), "the bound holds while the junk tokens are valid")
	g.Expect(err.Error()).NotTo(ContainSubstring("new-subscriber"))

	// The junk tokens expire (nobody uses them): their slots free up.
	clk.Advance(2 * time.Hour)
	_, err = c.Token(bg, Request{Scopes: []string{"new-subscriber"}})
	g.Expect(err).NotTo(HaveOccurred(), "an expired key's slot is reused")
	_, err = c.Token(bg, Request{Scopes: []string{"real"}})
	g.Expect(err).NotTo(HaveOccurred())
}

// A refused or failed key keeps its slot until its refusal lapses: a junk
// key cannot be asked for again and again by cycling through slots.
func TestMaxKeysRefusalsHoldTheirSlot(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	as.setPlan(func(int, seen) reply {
		return reply{Status: 400, Body: `{"error":"invalid_scope"}`}
	})
	clk := newFakeClock()
	c := newClient(t, as.secretConfig(), WithClock(clk), WithMaxKeys(2), WithNegativeCacheTTL(10*time.Second))
	for i := range 50 {
		clk.Advance(time.Second) // past the reclaim pause each time
		_, err := c.Token(bg, Request{Scopes: []string{fmt.Sprintf("junk%d", i)}})
		g.Expect(err).To(HaveOccurred())
	}
	g.Expect(as.count()).To(BeNumerically("<=", 2*(50/10+1)), "at most 2 keys per negative-cache period")
}

func TestWithMaxKeysValidates(t *testing.T) {
	g := NewWithT(t)
	as := newFakeAS(t, nil)
	_, err := New(as.secretConfig(), WithMaxKeys(0))
	g.Expect(errors.Is(err, ErrInvalidConfig)).To(BeTrue())
}
