package certwatch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/internal/clock"
)

// live is one loaded pair with its jitter sample.
type live struct {
	pair *Pair
	u    float64
}

// Watcher owns one live certificate. Its methods are safe for concurrent
// use; GetClientCertificate, GetCertificate and CertPool never block on
// I/O.
type Watcher struct {
	options

	cur atomic.Pointer[live]

	op sync.Mutex // serialises reload and renew

	mu              sync.Mutex // guards the fields below
	renewals        int
	reloads         int
	failures        int
	nextAttempt     time.Time
	lastErr         string
	lastErrAt       time.Time
	revoked         bool
	expiredReported bool
	diskSum         [32]byte
	badSum          [32]byte
	badErr          error
	updated         chan struct{}
	closed          bool
	done            chan struct{}
	running         bool
	wg              sync.WaitGroup

	kick chan struct{}
}

// New builds a Watcher and loads the first pair: from WithDir or WithLoader
// (exactly one is required). A pair that does not load or validate (key
// mismatch, expired, not yet valid, untrusted) is an error, unless
// AllowMissing is given. New does not start watching or renewing: Run does.
func New(ctx context.Context, opts ...Option) (*Watcher, error) {
	w := &Watcher{
		options: options{
			policy:       DefaultPolicy(),
			clock:        clock.System,
			poll:         time.Minute,
			debounce:     100 * time.Millisecond,
			renewTimeout: time.Minute,
			random:       rand.Float64,
		},
		updated: make(chan struct{}),
		done:    make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(&w.options)
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case w.dir == "" && w.loader == nil:
		return nil, fmt.Errorf("%w: neither a directory nor a loader", ErrBadConfig)
	case w.dir != "" && w.loader != nil:
		return nil, fmt.Errorf("%w: both a directory and a loader", ErrBadConfig)
	case w.clock == nil || w.random == nil:
		return nil, fmt.Errorf("%w: nil clock or random source", ErrBadConfig)
	case w.poll < 0 || w.debounce < 0 || w.renewTimeout <= 0:
		return nil, fmt.Errorf("%w: negative interval", ErrBadConfig)
	}
	if w.name == "" {
		w.name = w.source()
	}
	w.log = w.log.With("cert", w.name)
	if err := w.reload(ctx); err != nil {
		if !w.allowMissing {
			return nil, err
		}
		w.log.Info("certwatch: no usable certificate yet; waiting for one", "source", w.source(), "error", err.Error())
	}
	return w, nil
}

func (w *Watcher) source() string {
	if w.dir != "" {
		return w.dir
	}
	return "loader"
}

// GetClientCertificate returns the live pair; use it as
// tls.Config.GetClientCertificate. Each handshake gets the pair live at
// that moment (connections already open keep theirs). Without a pair it
// returns an error wrapping ErrNoPair and the handshake fails.
func (w *Watcher) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return w.Certificate()
}

// GetCertificate returns the live pair; use it as tls.Config.GetCertificate.
func (w *Watcher) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return w.Certificate()
}

// Certificate returns the live pair (do not modify it), or an error
// wrapping ErrNoPair.
func (w *Watcher) Certificate() (*tls.Certificate, error) {
	l := w.cur.Load()
	if l == nil {
		return nil, fmt.Errorf("%w (%s)", ErrNoPair, w.name)
	}
	return &l.pair.cert, nil // immutable: a new pair is a new Pair
}

// Pair returns the live pair, or nil.
func (w *Watcher) Pair() *Pair {
	if l := w.cur.Load(); l != nil {
		return l.pair
	}
	return nil
}

// CertPool returns a pool of the live CA certificates, or nil when there
// are none. The pool is replaced (not modified) when the CA changes: read
// it again after Updated fires.
func (w *Watcher) CertPool() *x509.CertPool {
	if l := w.cur.Load(); l != nil {
		return l.pair.pool
	}
	return nil
}

// Updated returns a channel that is closed the next time the live pair is
// replaced (a reload or a renewal). Call it again for the next change.
func (w *Watcher) Updated() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.updated
}

// Status is a snapshot of a Watcher for health endpoints. It holds no
// secret.
type Status struct {
	Name        string    `json:"name"`
	Source      string    `json:"source"`
	Ready       bool      `json:"ready"` // a pair is live and inside its validity (a revoked one too, until it expires)
	Phase       Phase     `json:"phase"`
	Serial      string    `json:"serial,omitempty"`
	SHA256      string    `json:"sha256,omitempty"` // the fingerprint: what identifies a certificate (serials repeat)
	Subject     string    `json:"subject,omitempty"`
	Issuer      string    `json:"issuer,omitempty"`
	NotBefore   time.Time `json:"not_before,omitzero"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	NextRenewal time.Time `json:"next_renewal,omitzero"`
	Renewals    int       `json:"renewals"`
	Failures    int       `json:"consecutive_failures"`
	Reloads     int       `json:"reloads"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// NeedsToken is true when a new one-time token (or a new binding) is
	// needed: no usable certificate is live (none yet, or expired), or the
	// live one can no longer be renewed (revoked: it serves until expiry).
	NeedsToken bool `json:"needs_token"`
	// Revoked is true when the connector refused renewal for good (revoked
	// or unknown certificate); the certificate stays in use until it expires.
	Revoked bool `json:"revoked"`
}

// Status returns a snapshot of the Watcher's state.
func (w *Watcher) Status() Status {
	now := w.clock.Now()
	l := w.cur.Load()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := Status{
		Name: w.name, Source: w.source(), Phase: PhaseNone,
		Renewals: w.renewals, Failures: w.failures, Reloads: w.reloads,
		LastError: w.lastErr, LastErrorAt: w.lastErrAt, NeedsToken: true,
	}
	if l == nil {
		return s
	}
	leaf := l.pair.Leaf()
	s.Serial, s.SHA256, s.Subject, s.Issuer = l.pair.Serial(), l.pair.SHA256(), leaf.Subject.String(), leaf.Issuer.String()
	s.NotBefore, s.NotAfter = leaf.NotBefore, leaf.NotAfter
	d := Schedule(leaf.NotBefore, leaf.NotAfter, w.policy, now, 0, l.u)
	s.Phase = d.Phase
	// A revoked certificate stays ready until it expires: the Kyma
	// connector refuses it only for renewal, and keeps honouring it
	// everywhere else until then. NeedsToken says that it cannot be renewed.
	s.Ready = d.Phase != PhaseExpired
	s.Revoked = w.revoked
	s.NeedsToken = !s.Ready || w.revoked
	if s.Ready && w.renewer != nil && !w.revoked {
		s.NextRenewal = w.nextLocked(now, l)
	}
	return s
}

// nextLocked returns when the loop must wake for l: the next renewal
// attempt, or expiry. Zero means never. w.mu must be held.
func (w *Watcher) nextLocked(now time.Time, l *live) time.Time {
	if l == nil {
		return time.Time{}
	}
	leaf := l.pair.Leaf()
	if !now.Before(leaf.NotAfter) {
		if w.expiredReported {
			return time.Time{}
		}
		return now
	}
	if w.renewer == nil || w.revoked {
		return leaf.NotAfter
	}
	if w.failures > 0 {
		return w.nextAttempt
	}
	return Schedule(leaf.NotBefore, leaf.NotAfter, w.policy, now, 0, l.u).Next
}

func (w *Watcher) recordErr(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lastErr, w.lastErrAt = err.Error(), w.clock.Now()
}

func (w *Watcher) event(kind EventKind, next time.Time, err error) {
	if w.obs == nil {
		return
	}
	e := Event{Kind: kind, Name: w.name, Next: next, Err: err}
	if l := w.cur.Load(); l != nil {
		e.Serial, e.SHA256, e.NotAfter = l.pair.Serial(), l.pair.SHA256(), l.pair.Leaf().NotAfter
	}
	w.obs.Observe(e)
}

// swap makes p live and resets the per-certificate state; notify then
// wakes Updated waiters, once counters, logs and events are done.
func (w *Watcher) swap(p *Pair) {
	w.cur.Store(&live{pair: p, u: w.random()})
	w.mu.Lock()
	w.failures, w.nextAttempt = 0, time.Time{}
	w.revoked, w.expiredReported = false, false
	w.lastErr, w.lastErrAt = "", time.Time{}
	w.mu.Unlock()
}

func (w *Watcher) notify() {
	w.mu.Lock()
	close(w.updated)
	w.updated = make(chan struct{})
	w.mu.Unlock()
	w.wake()
}

func (w *Watcher) wake() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}
