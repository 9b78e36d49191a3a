package broker

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/tokenclient"
)

// tokenSource.Invalidate maps the token client's answers onto the
// sidecar's outcomes: stale for a token no longer cached, dropped for the
// cached one, limited within the interval.
func TestTokenSourceInvalidate(t *testing.T) {
	g := NewWithT(t)
	refuse := func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no token service here")
	}
	c, err := tokenclient.New(tokenclient.Config{ClientID: "sb-app!t1", ClientSecret: "s", TokenURL: "https://provider.authentication.invalid"},
		tokenclient.WithDialContext(refuse), tokenclient.WithRetry(tokenclient.RetryPolicy{MaxAttempts: 1}), tokenclient.WithInvalidationInterval(time.Hour))
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = c.Close() })
	restore := func(tok string) {
		g.Expect(c.Restore([]tokenclient.Saved{{Token: tok, TokenType: "bearer", IssuedAt: time.Now(), Expiry: time.Now().Add(time.Hour)}})).To(Equal(1))
	}
	restore("tok-1")
	h, err := c.Handle(tokenclient.Request{})
	g.Expect(err).NotTo(HaveOccurred())
	var ts sidecar.TokenSource = &tokenSource{c: c, h: h}
	inv, ok := ts.(sidecar.TokenInvalidator)
	g.Expect(ok).To(BeTrue())
	tok, err := ts.Token(context.Background(), sidecar.TokenRequest{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.AccessToken).To(Equal("tok-1"))

	out, err := inv.Invalidate(sidecar.TokenRequest{}, "tok-0")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(Equal(sidecar.InvalidationStale))
	out, err = inv.Invalidate(sidecar.TokenRequest{}, "tok-1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(Equal(sidecar.InvalidationDropped))
	_, err = ts.Token(context.Background(), sidecar.TokenRequest{})
	g.Expect(err).To(HaveOccurred(), "the rejected token is not served again (and no new one can be had here)")

	restore("tok-2")
	out, err = inv.Invalidate(sidecar.TokenRequest{}, "tok-2")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(Equal(sidecar.InvalidationLimited))
	tok, err = ts.Token(context.Background(), sidecar.TokenRequest{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(tok.AccessToken).To(Equal("tok-2"), "kept within the interval")

	// A jwt-bearer source drops nothing.
	out, err = (&tokenSource{c: c, jwt: true}).Invalidate(sidecar.TokenRequest{}, "tok-2")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(Equal(sidecar.InvalidationStale))
}
