package fastforward_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

const day = 24 * time.Hour

// jumpConfig is a bearer route and an mtls route with a paired, renewed
// connector certificate.
func jumpConfig(r *rig, app string) string {
	return fmt.Sprintf(`routes:
  - {name: orders, upstream: %[1]s/orders, auth: {type: bearer, binding: %[2]s}}
  - {name: events, upstream: %[1]s/events, auth: {type: mtls, certificate: connector}}
certificates:
  - {name: connector, dir: %[3]s, pairing_url_file: %[4]s, renew: true}
`, r.up.url, mockauth.SecretBindingName, filepath.Join(r.work, "connector-"+app), r.pairingURLFile(app))
}

// counter reads a counter that may have no sample yet as 0.
func counter(p *proc, name string) float64 { return max(p.metric(name), 0) }

// Issue 21 item 3: a host suspend or a step of the wall clock. Go timers
// run on the monotonic clock, which a jump does not move: only the
// clock-jump check (every second) sees it, and then token expiry, refresh,
// certificate renewal and heartbeats are evaluated again on the wall clock.
// Between the jump and that check (at most one check interval) the load
// is held, as an app that was suspended with the host sends nothing: the
// specs assert that from the check on, nothing expired is served and
// nothing fails (docs/reliability.md, "Clock jumps").
var _ = Describe("a wall-clock jump (host suspend, clock step)", func() {
	It("serves no expired token after a jump past the token's expiry: the next request gets a fresh one", func() {
		r := newRig(mockauth.Options{TokenTTL: time.Hour, CertTTL: 7 * day})
		p := r.run(jumpConfig(r, "jump-token"), nil)
		urls := []string{p.proxy + "/orders/a", p.proxy + "/events/a"}
		l := startLoad(urls, 4, nil)
		l.expectSteady(20)
		first := r.up.distinct("/orders/", func(s seen) string { return s.Token })
		Expect(first).To(HaveLen(1))
		jumps0 := counter(p, `credbroker_clock_jumps_total{component="token_client"}`)
		fetches0 := r.mock.Stats().TokenRequests
		l.Halt()

		r.clk.Jump(2 * time.Hour) // the token (1 h) expired during the "suspend"
		Eventually(func() float64 { return counter(p, `credbroker_clock_jumps_total{component="token_client"}`) }).
			WithTimeout(30*time.Second).Should(BeNumerically(">", jumps0), "the token client noticed the jump")

		l2 := startLoad(urls, 4, nil)
		l2.expectSteady(40)
		l2.Halt()
		Expect(l.Failed.Load()+l2.Failed.Load()).To(BeZero(), "failed app requests: %s %s", l.Failures(), l2.Failures())
		Expect(r.up.expired()).To(BeZero(), "an expired token reached the upstream")
		toks := r.up.distinct("/orders/", func(s seen) string { return s.Token })
		Expect(toks).To(HaveLen(2), "exactly one fresh token after the jump")
		for _, s := range r.up.all() {
			if s.Path == "/orders/a" && s.At.After(r.clk.Now().Add(-time.Hour)) {
				Expect(s.Token).NotTo(Equal(first[0]), "the old token after the jump")
			}
		}
		Expect(r.mock.Stats().TokenRequests-fetches0).To(BeNumerically("<=", 2), "one refetch, not a storm")
	})

	// The load keeps running through the jump, as requests that arrive the
	// moment the host resumes do. Each request carries the epoch it was
	// sent in: every request sent after the jump (epoch 1) must reach the
	// upstream with a token that has not expired, although the clock-jump
	// check has not run yet (before the fix the hit path compared a copy of
	// the wall clock taken once a second and served the expired token until
	// then; the upstream answered 401 and the proxy re-authenticated).
	// Requests in flight at the jump (epoch 0) may carry the old token:
	// those the proxy replays after the upstream's 401, and the app sees no
	// failure either way.
	It("hands out no expired token to a request that arrives right after a jump, with the load running through it", func() {
		r := newRig(mockauth.Options{TokenTTL: time.Hour})
		p := r.run(fmt.Sprintf(`routes:
  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: %s}}
`, r.up.url, mockauth.SecretBindingName), nil)
		var epoch atomic.Int64
		do := func(u string) (*http.Response, error) {
			req, err := http.NewRequest(http.MethodGet, u, nil)
			if err != nil {
				return nil, err
			}
			req.Header.Set("X-Test-Epoch", strconv.FormatInt(epoch.Load(), 10))
			return client.Do(req)
		}
		l := startLoad([]string{p.proxy + "/orders/a", p.proxy + "/orders/b"}, 4, do)
		defer l.Halt()
		l.expectSteady(20)
		first := r.up.distinct("/orders/", func(s seen) string { return s.Token })
		Expect(first).To(HaveLen(1))

		r.clk.Jump(2 * time.Hour) // the token (1 h) expired during the "suspend"
		epoch.Store(1)
		l.expectSteady(200)
		Eventually(func() float64 { return counter(p, `credbroker_clock_jumps_total{component="token_client"}`) }).
			WithTimeout(30*time.Second).Should(BeNumerically(">=", 1), "the token client noticed the jump")
		l.Halt()

		after, expiredAfter := 0, 0
		for _, s := range r.up.all() {
			if s.Epoch == "1" {
				after++
				if s.Expired {
					expiredAfter++
				}
			}
		}
		Expect(after).To(BeNumerically(">=", 200), "requests sent after the jump")
		Expect(expiredAfter).To(BeZero(), "of %d requests sent after the jump, %d reached the upstream with an expired token", after, expiredAfter)
		Expect(l.Failed.Load()).To(BeZero(), "failed app requests: %s", l.Failures())
		Expect(r.up.distinct("/orders/", func(s seen) string { return s.Token })).To(HaveLen(2), "exactly one fresh token after the jump")
	})

	It("renews the certificate when a jump passes its renewal point, with zero failed requests", func() {
		r := newRig(mockauth.Options{TokenTTL: 30 * day, CertTTL: 7 * day})
		p := r.run(jumpConfig(r, "jump-cert"), nil)
		urls := []string{p.proxy + "/orders/a", p.proxy + "/events/a"}
		l := startLoad(urls, 4, nil)
		l.expectSteady(20)
		certs0 := r.up.distinct("/events/", func(s seen) string { return s.Cert })
		Expect(certs0).To(HaveLen(1))
		jumps0 := counter(p, `credbroker_clock_jumps_total{component="certificates"}`)
		renewals0 := r.mock.Stats().Renewals
		l.Halt()

		// Six of seven days: past the renewal point (a third of the
		// validity left), the old certificate still valid.
		r.clk.Jump(6 * day)
		Eventually(func() float64 { return counter(p, `credbroker_clock_jumps_total{component="certificates"}`) }).
			WithTimeout(30*time.Second).Should(BeNumerically(">", jumps0), "the certificate lifecycle noticed the jump")
		l2 := startLoad(urls, 4, nil)
		Eventually(func() int { return r.mock.Stats().Renewals }).WithTimeout(60*time.Second).Should(BeNumerically(">", renewals0), "renewed after the jump")
		Eventually(func() []string { return r.up.distinct("/events/", func(s seen) string { return s.Cert }) }).
			WithTimeout(60*time.Second).Should(HaveLen(2), "the renewed certificate in use")
		l2.expectSteady(20)
		l2.Halt()
		Expect(l.Failed.Load()+l2.Failed.Load()).To(BeZero(), "failed app requests: %s %s", l.Failures(), l2.Failures())
		Expect(r.mock.Stats().Renewals-renewals0).To(Equal(1), "one renewal, not a storm")
		Expect(counter(p, `credbroker_certificate_renewals_total{certificate="connector"}`)).To(BeNumerically(">=", 1))
	})
})
