package certwatch

import (
	"context"
	"fmt"
	"time"
)

// Renew renews the certificate now, whatever the schedule says: one attempt
// through the Renewer. The new pair is validated, persisted (with a
// directory) and only then made live; on failure the current pair stays
// and the error (a *RenewError) is recorded and returned.
func (w *Watcher) Renew(ctx context.Context) error {
	err := w.renew(ctx)
	w.wake()
	return err
}

func (w *Watcher) renew(ctx context.Context) error {
	if w.renewer == nil {
		return ErrNoRenewer
	}
	w.op.Lock()
	defer w.op.Unlock()
	cur := w.cur.Load()
	if cur == nil {
		return fmt.Errorf("%w (%s)", ErrNoPair, w.name)
	}
	rctx, cancel := context.WithTimeout(ctx, w.renewTimeout)
	certPEM, keyPEM, caPEM, err := w.renewer.Renew(rctx, cur.pair.cert)
	cancel()
	var p *Pair
	if err == nil {
		ca := caPEM
		if len(ca) == 0 {
			ca = cur.pair.caPEM
		}
		p, err = ParsePEM(certPEM, keyPEM, ca)
		if err == nil {
			err = p.Verify(w.clock.Now())
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err() // shutting down: not a failure of the connector
		}
		return w.renewFailed(cur, err)
	}
	persistErr := error(nil)
	if w.dir != "" && !w.noPersist {
		persistErr = Persist(ctx, w.dir, Files{CertPEM: p.certPEM, KeyPEM: p.keyPEM, CAPEM: caPEM})
		if persistErr == nil {
			if raw, err := readDirRaw(w.dir); err == nil {
				w.mu.Lock()
				w.diskSum = raw.sum()
				w.mu.Unlock()
			}
		}
	}
	w.swap(p)
	w.mu.Lock()
	w.renewals++
	next := w.nextLocked(w.clock.Now(), w.cur.Load())
	w.mu.Unlock()
	leaf := p.Leaf()
	w.log.Info("certwatch: certificate renewed", "old_serial", cur.pair.Serial(), "old_sha256", cur.pair.SHA256(), "serial", p.Serial(), "sha256", p.SHA256(),
		"not_after", leaf.NotAfter, "next", next)
	w.event(EventRenewed, next, nil)
	if persistErr != nil {
		w.recordErr(persistErr)
		w.log.Error("certwatch: renewed certificate is live but could not be written; a restart would use the previous one",
			"dir", w.dir, "serial", p.Serial(), "sha256", p.SHA256(), "error", persistErr.Error())
		w.event(EventPersistFailed, next, persistErr)
	}
	w.notify()
	return nil
}

func (w *Watcher) renewFailed(cur *live, err error) error {
	now := w.clock.Now()
	leaf := cur.pair.Leaf()
	w.mu.Lock()
	attempt := w.failures + 1 // renewals are serialised by w.op
	w.mu.Unlock()
	d := Schedule(leaf.NotBefore, leaf.NotAfter, w.policy, now, attempt, cur.u)
	revoked := needsToken(err)
	next := d.Next
	if revoked || d.Phase == PhaseExpired || next.Equal(leaf.NotAfter) {
		next = time.Time{}
	}
	rerr := &RenewError{Attempt: attempt, Next: next, Err: err}
	args := []any{"serial", cur.pair.Serial(), "sha256", cur.pair.SHA256(), "attempt", attempt, "not_after", leaf.NotAfter, "phase", string(d.Phase), "error", err.Error()}
	switch {
	case revoked:
		w.log.Error("certwatch: renewal refused for good; the certificate stays in use until it expires, then a new one-time token is needed", args...)
	case next.IsZero():
		w.log.Error("certwatch: renewal failed and no attempt is left before expiry", args...)
	case d.Phase == PhaseEmergency:
		w.log.Error("certwatch: renewal failed close to expiry", append(args, "next", next)...)
	default:
		w.log.Warn("certwatch: renewal failed; will retry", append(args, "next", next)...)
	}
	w.event(EventRenewFailed, next, rerr)
	// The state changes last, so that whoever sees it sees the log and
	// the event too.
	w.mu.Lock()
	w.failures, w.nextAttempt = attempt, d.Next
	w.revoked = w.revoked || revoked
	w.lastErr, w.lastErrAt = rerr.Error(), now
	w.mu.Unlock()
	return rerr
}

// expire reports the live certificate's expiry once.
func (w *Watcher) expire(l *live) {
	leaf := l.pair.Leaf()
	err := &ValidityError{Serial: l.pair.Serial(), SHA256: l.pair.SHA256(), NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter, Now: w.clock.Now()}
	w.log.Error("certwatch: certificate expired; a new one-time token is needed",
		"serial", l.pair.Serial(), "sha256", l.pair.SHA256(), "not_after", leaf.NotAfter)
	w.event(EventExpired, time.Time{}, err)
	w.mu.Lock()
	w.expiredReported = true
	w.lastErr, w.lastErrAt = err.Error(), err.Now
	w.mu.Unlock()
}

// onTimer handles the wake-up for a renewal attempt or expiry.
func (w *Watcher) onTimer(ctx context.Context) {
	now := w.clock.Now()
	l := w.cur.Load()
	if l == nil {
		return
	}
	w.mu.Lock()
	at := w.nextLocked(now, l)
	reported := w.expiredReported
	revoked := w.revoked
	w.mu.Unlock()
	if at.IsZero() || now.Before(at) {
		return // a stale timer
	}
	if !now.Before(l.pair.Leaf().NotAfter) {
		if !reported {
			w.expire(l)
		}
		return
	}
	if w.renewer != nil && !revoked {
		_ = w.renew(ctx)
	}
}
