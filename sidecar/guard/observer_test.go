package guard

import (
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

var _ EventObserver = (*countingObserver)(nil)

// An Observer that is also an EventObserver learns of JWKS fetches (ok and
// failed) and of accepted requests the app could not take.
func TestObserverEvents(t *testing.T) {
	t.Run("JWKS fetched, then the app is gone", func(t *testing.T) {
		g := NewWithT(t)
		e := startJWT(t)
		tok := fetchToken(t, e.mock, false)
		resp, body := e.call(t, "/api/x", tok)
		g.Expect(resp.StatusCode).To(Equal(200), body)
		g.Eventually(func() int { return e.obs.get("jwks/ok") }, 10*time.Second, 10*time.Millisecond).Should(Equal(1))
		g.Expect(e.obs.get("jwks/error")).To(Equal(0))
		g.Expect(e.obs.get(ReasonAppUnreachable)).To(Equal(0))

		e.app.srv.Close()
		resp, _ = e.call(t, "/api/x", tok)
		g.Expect(resp.StatusCode).To(Equal(http.StatusBadGateway))
		g.Expect(resp.Header.Get(HeaderError)).To(Equal(ReasonAppUnreachable))
		g.Expect(e.obs.get(ReasonAppUnreachable)).To(Equal(1))
		g.Expect(e.obs.get("jwt/accepted")).To(Equal(2), "app_unreachable is not a refusal")
	})
	t.Run("JWKS fetch failed", func(t *testing.T) {
		g := NewWithT(t)
		e := startJWT(t)
		tok := fetchToken(t, e.mock, false)
		g.Expect(e.mock.Close()).To(Succeed())
		resp, body := e.call(t, "/api/x", tok)
		g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable), body)
		g.Eventually(func() int { return e.obs.get("jwks/error") }, 10*time.Second, 10*time.Millisecond).Should(BeNumerically(">=", 1))
		g.Expect(e.obs.get("jwks/ok")).To(Equal(0))
	})
}
