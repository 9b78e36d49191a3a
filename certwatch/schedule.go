package certwatch

import (
	"time"
)

// Policy says when to renew and how to retry. The zero value of each field
// means its default (see DefaultPolicy).
type Policy struct {
	// RenewAfter is the fraction of the validity that must have passed
	// before the first renewal attempt: 2/3 renews when a third is left.
	RenewAfter float64
	// Jitter is the largest fraction of the validity by which the first
	// attempt is moved earlier, so that many instances with certificates
	// issued at the same moment do not renew at the same moment. Negative
	// disables it.
	Jitter float64
	// MinBackoff is the wait after the first failed attempt; it doubles
	// with every further failure up to MaxBackoff.
	MinBackoff time.Duration
	// MaxBackoff caps the wait between attempts.
	MaxBackoff time.Duration
	// Emergency is the fraction of the validity left under which the
	// certificate is in danger: attempts are then at most
	// EmergencyBackoff apart and failures are logged as errors.
	Emergency float64
	// EmergencyBackoff caps the wait between attempts in the emergency
	// window.
	EmergencyBackoff time.Duration
}

// DefaultPolicy renews once two thirds of the validity have passed (up to
// 5 % of it earlier, at random), retries after 1 s, 2 s, 4 s … up to 5 min,
// and at most 10 s apart once less than a tenth of the validity is left.
func DefaultPolicy() Policy {
	return Policy{
		RenewAfter:       2.0 / 3.0,
		Jitter:           0.05,
		MinBackoff:       time.Second,
		MaxBackoff:       5 * time.Minute,
		Emergency:        0.1,
		EmergencyBackoff: 10 * time.Second,
	}
}

// withDefaults fills the zero fields from DefaultPolicy and clamps the
// fractions into [0, 1].
func (p Policy) withDefaults() Policy {
	d := DefaultPolicy()
	if p.RenewAfter <= 0 || p.RenewAfter > 1 {
		p.RenewAfter = d.RenewAfter
	}
	switch {
	case p.Jitter == 0:
		p.Jitter = d.Jitter
	case p.Jitter > p.RenewAfter:
		p.Jitter = p.RenewAfter
	}
	if p.MinBackoff <= 0 {
		p.MinBackoff = d.MinBackoff
	}
	if p.MaxBackoff <= 0 {
		p.MaxBackoff = d.MaxBackoff
	}
	if p.MaxBackoff < p.MinBackoff {
		p.MaxBackoff = p.MinBackoff
	}
	if p.Emergency <= 0 || p.Emergency > 1 {
		p.Emergency = d.Emergency
	}
	if p.EmergencyBackoff <= 0 {
		p.EmergencyBackoff = d.EmergencyBackoff
	}
	return p
}

// Phase is where a certificate is in its life.
type Phase string

// Phases, in order.
const (
	PhaseNone      Phase = "none"      // no certificate loaded
	PhaseValid     Phase = "valid"     // before the renewal point
	PhaseRenewing  Phase = "renewing"  // past the renewal point
	PhaseEmergency Phase = "emergency" // less than Policy.Emergency of the validity left
	PhaseExpired   Phase = "expired"   // past notAfter (or not yet valid)
)

// Decision is the outcome of Schedule.
type Decision struct {
	// Phase of the certificate at now.
	Phase Phase
	// RenewAt is the renewal point of this certificate (jitter applied).
	RenewAt time.Time
	// Next is when to attempt a renewal; when it is notAfter no attempt
	// is left (the next event is expiry); zero when expired.
	Next time.Time
	// Backoff is the wait before Next after failures (0 without).
	Backoff time.Duration
}

// Schedule decides when to try to renew a certificate valid from notBefore
// to notAfter, at now, after failures consecutive failed attempts. u in
// [0, 1) is the jitter sample: draw it once per certificate so the renewal
// point stays put. It is a pure function.
//
// Before the renewal point the next attempt is at the renewal point. Past
// it, the first attempt is now; after n failures the next one is
// MinBackoff·2^(n-1) later, capped at MaxBackoff, or at EmergencyBackoff in
// the emergency window. No attempt is scheduled at or after notAfter: when
// the backoff would reach it, the last attempt is MinBackoff before it, and
// when even that has passed, Next is notAfter itself.
func Schedule(notBefore, notAfter time.Time, p Policy, now time.Time, failures int, u float64) Decision {
	p = p.withDefaults()
	if !now.Before(notAfter) || now.Before(notBefore) {
		return Decision{Phase: PhaseExpired}
	}
	life := notAfter.Sub(notBefore)
	if u < 0 {
		u = 0
	} else if u >= 1 {
		u = 0.999999
	}
	frac := func(f float64) time.Duration { // rounded so that tables can state exact times
		return time.Duration(float64(life) * f).Round(time.Millisecond)
	}
	renewAt := notBefore.Add(frac(p.RenewAfter) - frac(max(p.Jitter, 0)*u))
	emergencyAt := notAfter.Add(-frac(p.Emergency))
	if emergencyAt.Before(renewAt) {
		renewAt = emergencyAt // the emergency window is always a renewal window
	}
	d := Decision{RenewAt: renewAt}
	switch {
	case now.Before(renewAt):
		d.Phase = PhaseValid
	case now.Before(emergencyAt):
		d.Phase = PhaseRenewing
	default:
		d.Phase = PhaseEmergency
	}
	if failures <= 0 {
		d.Next = renewAt
		if now.After(renewAt) {
			d.Next = now
		}
		return d
	}
	limit := p.MaxBackoff
	if d.Phase == PhaseEmergency && p.EmergencyBackoff < limit {
		limit = p.EmergencyBackoff
	}
	backoff := p.MinBackoff
	for i := 1; i < failures && backoff < limit; i++ {
		backoff *= 2
	}
	if backoff > limit {
		backoff = limit
	}
	next := now.Add(backoff)
	if !next.Before(emergencyAt) && now.Before(emergencyAt) && p.EmergencyBackoff < backoff {
		// The wait would cross into the emergency window: try again as
		// soon as it starts.
		next = emergencyAt
	}
	if last := notAfter.Add(-p.MinBackoff); !next.Before(last) {
		next = last
		if !next.After(now) {
			next = notAfter
		}
	}
	d.Next, d.Backoff = next, next.Sub(now)
	return d
}
