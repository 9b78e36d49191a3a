package certwatch_test

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/certwatch"
)

func TestSchedule(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	h := func(d time.Duration) time.Time { return t0.Add(d) }
	end := h(30 * time.Hour) // 30 h of validity: 2/3 is 20 h, the last tenth starts at 27 h
	def := certwatch.Policy{}

	tests := []struct {
		name      string
		notAfter  time.Time
		policy    certwatch.Policy
		now       time.Time
		failures  int
		u         float64
		phase     certwatch.Phase
		renewAt   time.Time
		next      time.Time
		backoffIs time.Duration
	}{
		{name: "fresh: wait for two thirds", notAfter: end, policy: def, now: h(time.Hour),
			phase: certwatch.PhaseValid, renewAt: h(20 * time.Hour), next: h(20 * time.Hour)},
		{name: "jitter moves the point earlier, by half of 5 % here", notAfter: end, policy: def, now: h(time.Hour), u: 0.5,
			phase: certwatch.PhaseValid, renewAt: h(19*time.Hour + 15*time.Minute), next: h(19*time.Hour + 15*time.Minute)},
		{name: "past the point: now", notAfter: end, policy: def, now: h(21 * time.Hour),
			phase: certwatch.PhaseRenewing, renewAt: h(20 * time.Hour), next: h(21 * time.Hour)},
		{name: "first failure: MinBackoff", notAfter: end, policy: def, now: h(21 * time.Hour), failures: 1,
			phase: certwatch.PhaseRenewing, renewAt: h(20 * time.Hour), next: h(21*time.Hour + time.Second), backoffIs: time.Second},
		{name: "fourth failure: doubled three times", notAfter: end, policy: def, now: h(21 * time.Hour), failures: 4,
			phase: certwatch.PhaseRenewing, renewAt: h(20 * time.Hour), next: h(21*time.Hour + 8*time.Second), backoffIs: 8 * time.Second},
		{name: "many failures: capped at MaxBackoff", notAfter: end, policy: def, now: h(21 * time.Hour), failures: 40,
			phase: certwatch.PhaseRenewing, renewAt: h(20 * time.Hour), next: h(21*time.Hour + 5*time.Minute), backoffIs: 5 * time.Minute},
		{name: "emergency window: capped at EmergencyBackoff", notAfter: end, policy: def, now: h(28 * time.Hour), failures: 40,
			phase: certwatch.PhaseEmergency, renewAt: h(20 * time.Hour), next: h(28*time.Hour + 10*time.Second), backoffIs: 10 * time.Second},
		{name: "a long wait that crosses into the emergency window stops at it", notAfter: end, policy: def, now: h(27*time.Hour - 2*time.Minute), failures: 40,
			phase: certwatch.PhaseRenewing, renewAt: h(20 * time.Hour), next: h(27 * time.Hour), backoffIs: 2 * time.Minute},
		{name: "the last attempt is MinBackoff before expiry", notAfter: end, policy: def, now: end.Add(-5 * time.Second), failures: 40,
			phase: certwatch.PhaseEmergency, renewAt: h(20 * time.Hour), next: end.Add(-time.Second), backoffIs: 4 * time.Second},
		{name: "no attempt left: the next event is expiry", notAfter: end, policy: def, now: end.Add(-500 * time.Millisecond), failures: 3,
			phase: certwatch.PhaseEmergency, renewAt: h(20 * time.Hour), next: end, backoffIs: 500 * time.Millisecond},
		{name: "expired", notAfter: end, policy: def, now: end,
			phase: certwatch.PhaseExpired},
		{name: "not yet valid", notAfter: end, policy: def, now: h(-time.Minute),
			phase: certwatch.PhaseExpired},
		{name: "renew at half", notAfter: end, policy: certwatch.Policy{RenewAfter: 0.5, Jitter: -1}, now: h(time.Hour), u: 0.9,
			phase: certwatch.PhaseValid, renewAt: h(15 * time.Hour), next: h(15 * time.Hour)},
		{name: "negative jitter disables it", notAfter: end, policy: certwatch.Policy{Jitter: -1}, now: h(time.Hour), u: 0.9,
			phase: certwatch.PhaseValid, renewAt: h(20 * time.Hour), next: h(20 * time.Hour)},
		{name: "a renewal point inside the emergency window moves to its start", notAfter: end, policy: certwatch.Policy{RenewAfter: 0.95, Jitter: -1}, now: h(time.Hour),
			phase: certwatch.PhaseValid, renewAt: h(27 * time.Hour), next: h(27 * time.Hour)},
		{name: "30 s certificate of the mock: renews at 20 s", notAfter: h(30 * time.Second), policy: certwatch.Policy{Jitter: -1}, now: h(time.Second),
			phase: certwatch.PhaseValid, renewAt: h(20 * time.Second), next: h(20 * time.Second)},
		{name: "30 s certificate, third failure in its emergency window", notAfter: h(30 * time.Second), policy: certwatch.Policy{Jitter: -1}, now: h(27 * time.Second), failures: 3,
			phase: certwatch.PhaseEmergency, renewAt: h(20 * time.Second), next: h(29 * time.Second), backoffIs: 2 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			d := certwatch.Schedule(t0, tc.notAfter, tc.policy, tc.now, tc.failures, tc.u)
			g.Expect(d.Phase).To(Equal(tc.phase))
			g.Expect(d.RenewAt).To(Equal(tc.renewAt))
			g.Expect(d.Next).To(Equal(tc.next))
			g.Expect(d.Backoff).To(Equal(tc.backoffIs))
		})
	}
}

// TestScheduleNeverPastExpiry walks a certificate's life failing every
// attempt and checks that attempts stay before notAfter, never go backwards
// and end with expiry.
func TestScheduleNeverPastExpiry(t *testing.T) {
	g := NewWithT(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := t0.Add(time.Hour)
	now, failures, attempts := t0, 0, 0
	for {
		d := certwatch.Schedule(t0, end, certwatch.Policy{}, now, failures, 0.3)
		if d.Phase == certwatch.PhaseExpired {
			break
		}
		g.Expect(d.Next).NotTo(BeTemporally("<", now))
		g.Expect(d.Next).NotTo(BeTemporally(">", end))
		if d.Next.Equal(end) {
			now = end
			continue
		}
		now = d.Next
		failures++
		attempts++
		g.Expect(attempts).To(BeNumerically("<", 1000))
	}
	g.Expect(attempts).To(BeNumerically(">", 10))
}
