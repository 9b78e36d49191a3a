package fastforward_test

import (
	"fmt"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

// Issue 21 item 6: a long life in fast-forward. The test clock advances in
// steps of a quarter of an hour under a steady load of app requests: token
// refreshes (2 h tokens), certificate renewals (7-day certificates),
// heartbeats (every minute) and connector CA rotations all happen as they
// would over the simulated time. make test runs 8 days with one rotation;
// CREDBROKER_SOAK=1 (make soak) runs 30 days with two.
var _ = Describe("a long life in fast-forward", func() {
	It("keeps every request working with bounded memory and request counts", func() {
		const (
			step     = 15 * time.Minute
			tokenTTL = 2 * time.Hour
			certTTL  = 7 * day
		)
		days, rotations := 8, []int{1}
		if soak() {
			days, rotations = 30, []int{8, 19}
		}
		total := time.Duration(days) * day
		r := newRig(mockauth.Options{TokenTTL: tokenTTL, CertTTL: certTTL})
		dir := filepath.Join(r.work, "connector")
		p := r.run(fmt.Sprintf(`routes:
  - {name: orders, upstream: %[1]s/orders, auth: {type: bearer, binding: %[2]s}}
  - {name: events, upstream: %[1]s/events, auth: {type: mtls, certificate: connector}}
certificates:
  - {name: connector, dir: %[3]s, pairing_url_file: %[4]s, renew: true}
`, r.up.url, mockauth.SecretBindingName, dir, r.pairingURLFile("soak")), nil)
		pid := p.s.Command.Process.Pid
		l := startLoad([]string{p.proxy + "/orders/a", p.proxy + "/events/a", p.proxy + "/orders/b", p.proxy + "/events/b"}, 4, nil)
		DeferCleanup(l.Halt)
		l.expectSteady(40)
		stats0 := r.mock.Stats()

		// A rotation: add the new CA at its day, switch the issuer half a
		// day later, remove the old CA half a day after the first renewal
		// under the new issuer.
		type rotation struct {
			at              time.Duration
			added, switched bool
			issuer          string // before the switch
			renewedAt       time.Duration
			removed         bool
		}
		var rots []*rotation
		for _, d := range rotations {
			rots = append(rots, &rotation{at: time.Duration(d) * day})
		}
		var rssBase, rssPeak, goBase, goPeak int
		steps := 0
		for t := time.Duration(0); t < total; t += step {
			r.clk.Advance(step)
			steps++
			now := t + step
			for _, ro := range rots {
				switch {
				case !ro.added && now >= ro.at:
					Expect(r.mock.RotateConnectorCA(mockauth.CAAdd)).To(Succeed())
					ro.added = true
				case ro.added && !ro.switched && now >= ro.at+day/2:
					ro.issuer = issuerCN(filepath.Join(dir, "tls.crt"))
					Expect(r.mock.RotateConnectorCA(mockauth.CASwitch)).To(Succeed())
					ro.switched = true
				case ro.switched && ro.renewedAt == 0 && issuerCN(filepath.Join(dir, "tls.crt")) != ro.issuer:
					ro.renewedAt = now
				case ro.renewedAt != 0 && !ro.removed && now >= ro.renewedAt+day/2:
					Expect(r.mock.RotateConnectorCA(mockauth.CARemoveOld)).To(Succeed())
					ro.removed = true
				}
			}
			// The sidecar keeps serving at this point of the simulated
			// time before the clock moves on.
			l.expectSteady(4)
			// Simulated time moves on only once the token in use outlives
			// the next step: a refresh that is due has completed (in real
			// time a fetch takes milliseconds, not a quarter of an hour).
			Eventually(func() time.Duration { return r.up.lastExp("/orders/").Sub(r.clk.Now()) }).WithTimeout(60*time.Second).
				Should(BeNumerically(">", step+time.Minute), "the token was not refreshed before its expiry")
			if steps%16 == 0 { // every 4 simulated hours
				rss, gor := rssKiB(pid), int(p.metric("go_goroutines"))
				if now == 24*time.Hour {
					rssBase, goBase = rss, gor
				}
				rssPeak, goPeak = max(rssPeak, rss), max(goPeak, gor)
			}
			if l.Failed.Load() > 0 {
				break // reported below
			}
		}
		l.Halt()
		st := r.mock.Stats()
		fetches, renewals, beats := st.TokenRequests-stats0.TokenRequests, st.Renewals-stats0.Renewals, st.InfoRequests-stats0.InfoRequests
		GinkgoWriter.Printf("%d simulated days in %d steps: %d ok requests, %d token fetches, %d renewals, %d heartbeats, RSS %d KiB at day 1, peak %d KiB, goroutines %d → peak %d\n",
			days, steps, l.OK.Load(), fetches, renewals, beats, rssBase, rssPeak, goBase, goPeak)

		for _, s := range r.up.all() {
			if s.Expired {
				GinkgoWriter.Printf("expired token at the upstream: at %s, exp %s\n", s.At.Format(time.RFC3339Nano), s.Exp.Format(time.RFC3339))
			}
		}
		Expect(l.Failed.Load()).To(BeZero(), "failed app requests: %s", l.Failures())
		Expect(r.up.expired()).To(BeZero(), "an expired token reached the upstream")
		for i, ro := range rots {
			Expect(ro.removed).To(BeTrue(), "rotation %d did not complete (renewed under the new CA at %v)", i+1, ro.renewedAt)
		}
		// A token is refreshed after 60-67 % of its 2 h life, the step
		// rounding that up by less than a step: one fetch per 72-95 min.
		Expect(fetches).To(BeNumerically(">=", int(total/(95*time.Minute))-1), "token refreshes")
		Expect(fetches).To(BeNumerically("<=", int(total/(72*time.Minute))+2), "token fetches bounded")
		// A certificate is renewed after 62-67 % of its 7 days.
		Expect(renewals).To(BeNumerically(">=", int(total/(certTTL*2/3+step))), "certificate renewals")
		Expect(renewals).To(BeNumerically("<=", int(total/(certTTL*62/100))+1), "renewals bounded")
		// At most one heartbeat per step (the interval, a minute, is
		// shorter than a step; a step taken while a beat is in flight
		// makes none) and one after each renewal.
		Expect(beats).To(BeNumerically(">=", steps*9/10), "heartbeats")
		Expect(beats).To(BeNumerically("<=", steps+2*renewals+4), "heartbeats bounded")
		Expect(counter(p, "credbroker_clock_jumps_total")).To(BeZero(), "time that passed is not a jump")
		// Memory: nothing grows with the simulated time (race-detector build).
		Expect(rssPeak).To(BeNumerically("<=", rssBase+48*1024), "RSS grew by more than 48 MiB after day 1")
		Expect(goPeak).To(BeNumerically("<=", goBase+40), "goroutines grew")
		Expect(p.ready()).To(Equal(200))
	})
})
