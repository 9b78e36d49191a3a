package certwatch

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/internal/atomicfile"
	"github.com/credbroker/credbroker/internal/clock"
	"github.com/credbroker/credbroker/internal/dirwatch"
)

// Renewer gets a new certificate for the current one: it makes a fresh key,
// sends a CSR with the same subject over mutual TLS with current, and
// returns the PEM of the issued chain (leaf first), of the new private key
// and of the CA (nil keeps the current CA). The connector package
// implements it. Renew is called from one goroutine at a time; current must
// not be modified. An error that has a method NeedsToken() bool returning
// true (the certificate was revoked or is unknown) stops renewal: a new
// one-time token is needed.
type Renewer interface {
	Renew(ctx context.Context, current tls.Certificate) (certPEM, keyPEM, caPEM []byte, err error)
}

// RenewerFunc adapts a function to Renewer.
type RenewerFunc func(ctx context.Context, current tls.Certificate) (certPEM, keyPEM, caPEM []byte, err error)

// Renew calls f.
func (f RenewerFunc) Renew(ctx context.Context, current tls.Certificate) ([]byte, []byte, []byte, error) {
	return f(ctx, current)
}

// LoaderFunc returns the PEM of a certificate chain, its key and (may be
// nil) the CA, for sources that are not a directory: an xsuaa binding's
// "certificate" and "key", for example. It is called at New, on every
// backstop re-read and on Reload; when the binding rotates, the next call
// returns the new pair.
type LoaderFunc func(ctx context.Context) (certPEM, keyPEM, caPEM []byte, err error)

// EventKind names what happened to a Watcher's certificate.
type EventKind string

// Event kinds. Every swap is EventLoaded or EventRenewed; every failure has
// its own kind; EventExpired fires once per certificate when it expires.
const (
	EventLoaded        EventKind = "loaded"         // first load or a reload picked up a new pair
	EventReloadFailed  EventKind = "reload_failed"  // a new pair on disk was refused; the old one is kept
	EventRenewed       EventKind = "renewed"        // a renewal succeeded and is live
	EventRenewFailed   EventKind = "renew_failed"   // a renewal attempt failed; Next says when the next one is
	EventPersistFailed EventKind = "persist_failed" // a renewed pair is live but could not be written to the directory
	EventExpired       EventKind = "expired"        // the live certificate expired: a new one-time token is needed
)

// Event is what an Observer sees. Err never contains key material.
type Event struct {
	Kind     EventKind
	Name     string    // the Watcher's name
	Serial   string    // serial of the live certificate after the event (decimal)
	SHA256   string    // its SHA-256 fingerprint (hex of the DER): serials need not be unique
	NotAfter time.Time // its notAfter
	Next     time.Time // next renewal attempt, when one is scheduled
	Err      error
}

// Observer receives events, for metrics. Observe is called synchronously
// from the Watcher's goroutines: it must be fast and safe for concurrent use.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f.
func (f ObserverFunc) Observe(e Event) { f(e) }

// Option configures New.
type Option func(*Watcher)

// WithDir loads the pair from dir (CertFile, KeyFile, CAFile: the layout of
// `credbroker pair` and Persist, a Kubernetes secret mount, or plain files),
// watches dir and writes renewed pairs into it.
func WithDir(dir string) Option { return func(w *Watcher) { w.dir = dir } }

// WithLoader loads the pair through f instead of a directory.
func WithLoader(f LoaderFunc) Option { return func(w *Watcher) { w.loader = f } }

// WithRenewer renews the certificate through r on the schedule of the
// Policy. Without it the certificate is only watched (and its expiry
// reported).
func WithRenewer(r Renewer) Option { return func(w *Watcher) { w.renewer = r } }

// WithPolicy sets the renewal policy (default DefaultPolicy()).
func WithPolicy(p Policy) Option { return func(w *Watcher) { w.policy = p.withDefaults() } }

// WithClock sets the clock (default: the system clock).
func WithClock(c Clock) Option { return func(w *Watcher) { w.clock = c } }

// WithLogger sets the logger (default: discard everything).
func WithLogger(l *slog.Logger) Option { return func(w *Watcher) { w.log = l } }

// WithObserver receives every event (metrics).
func WithObserver(o Observer) Option { return func(w *Watcher) { w.obs = o } }

// WithName names the certificate in logs, events and Status.
func WithName(name string) Option { return func(w *Watcher) { w.name = name } }

// WithPollInterval sets the backstop re-read interval (default 1 min); 0
// disables it.
func WithPollInterval(d time.Duration) Option {
	return func(w *Watcher) { w.poll = d }
}

// WithDebounce sets how long to wait after a file event before reading
// the directory, so that a writer has finished (default 100 ms).
func WithDebounce(d time.Duration) Option { return func(w *Watcher) { w.debounce = d } }

// WithoutFSNotify relies on the backstop re-read alone.
func WithoutFSNotify() Option { return func(w *Watcher) { w.noNotify = true } }

// WithoutPersist keeps renewed pairs in memory only (a read-only mount).
func WithoutPersist() Option { return func(w *Watcher) { w.noPersist = true } }

// WithRenewTimeout bounds one renewal attempt (default 1 min).
func WithRenewTimeout(d time.Duration) Option { return func(w *Watcher) { w.renewTimeout = d } }

// WithRandom sets the source of jitter samples in [0, 1) (tests make it
// constant).
func WithRandom(f func() float64) Option { return func(w *Watcher) { w.random = f } }

// AllowMissing lets New succeed without a usable pair (pairing will write
// one): Status says so, NeedsToken is true, and the pair is picked up when
// it appears.
func AllowMissing() Option { return func(w *Watcher) { w.allowMissing = true } }

// ErrBadConfig is returned by New for contradictory or missing options.
var ErrBadConfig = errors.New("certwatch: bad configuration")

// live is one loaded pair with its jitter sample.
type live struct {
	pair *Pair
	u    float64
}

// Watcher owns one live certificate. Its methods are safe for concurrent
// use; GetClientCertificate, GetCertificate and CertPool never block on
// I/O.
type Watcher struct {
	name         string
	dir          string
	loader       LoaderFunc
	renewer      Renewer
	policy       Policy
	clock        Clock
	log          *slog.Logger
	obs          Observer
	poll         time.Duration
	debounce     time.Duration
	renewTimeout time.Duration
	noNotify     bool
	noPersist    bool
	allowMissing bool
	random       func() float64

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
		policy:       DefaultPolicy(),
		clock:        clock.System,
		poll:         time.Minute,
		debounce:     100 * time.Millisecond,
		renewTimeout: time.Minute,
		random:       rand.Float64,
		updated:      make(chan struct{}),
		done:         make(chan struct{}),
		kick:         make(chan struct{}, 1),
	}
	for _, o := range opts {
		o(w)
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

// rawSet is the bytes of a pair as read, before parsing.
type rawSet struct{ cert, key, ca []byte }

func (r rawSet) sum() [32]byte {
	h := sha256.New()
	for _, b := range [][]byte{r.cert, r.key, r.ca} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// readDirRaw reads the pair's files from dir. Missing cert or key: ErrNoPair.
func readDirRaw(dir string) (rawSet, error) {
	var r rawSet
	for _, f := range []struct {
		name     string
		dst      *[]byte
		optional bool
	}{{CertFile, &r.cert, false}, {KeyFile, &r.key, false}, {CAFile, &r.ca, true}} {
		p := filepath.Join(dir, f.name)
		b, err := os.ReadFile(p)
		switch {
		case err == nil:
			*f.dst = b
		case errors.Is(err, fs.ErrNotExist) && f.optional:
		case errors.Is(err, fs.ErrNotExist):
			return r, &LoadError{Source: p, Err: ErrNoPair}
		default:
			return r, &LoadError{Source: p, Err: err}
		}
	}
	return r, nil
}

// read loads the source: the raw bytes (for change detection) and the
// parsed pair. A directory whose top-level names disagree falls back to its
// "..data" generation (see LoadDir).
func (w *Watcher) read(ctx context.Context) (rawSet, *Pair, error) {
	if w.loader != nil {
		var r rawSet
		var err error
		r.cert, r.key, r.ca, err = w.loader(ctx)
		if err != nil {
			return r, nil, &LoadError{Source: "loader", Err: err}
		}
		p, err := ParsePEM(r.cert, r.key, r.ca)
		if err != nil {
			return r, nil, &LoadError{Source: "loader", Err: err}
		}
		return r, p, nil
	}
	r, err := readDirRaw(w.dir)
	if err != nil {
		return r, nil, err
	}
	p, err := ParsePEM(r.cert, r.key, r.ca)
	if err == nil {
		return r, p, nil
	}
	if data := atomicfile.DataDir(w.dir); data != "" {
		if r2, err2 := readDirRaw(data); err2 == nil {
			if p2, err2 := ParsePEM(r2.cert, r2.key, r2.ca); err2 == nil {
				return r, p2, nil
			}
		}
	}
	return r, nil, &LoadError{Source: w.dir, Err: err}
}

// Reload reads the source now and makes its pair live when it changed and
// is valid. A pair that fails validation is refused and the live one kept;
// the error is returned, logged once and recorded in Status.
func (w *Watcher) Reload(ctx context.Context) error {
	err := w.reload(ctx)
	w.wake()
	return err
}

func (w *Watcher) reload(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.op.Lock()
	defer w.op.Unlock()
	raw, p, err := w.read(ctx)
	sum := raw.sum()
	cur := w.cur.Load()
	w.mu.Lock()
	unchanged := sum == w.diskSum && cur != nil
	sameBad := sum == w.badSum && w.badErr != nil
	badErr := w.badErr
	w.mu.Unlock()
	if unchanged && err == nil {
		return nil
	}
	if sameBad {
		return badErr // reported already
	}
	now := w.clock.Now()
	if err == nil {
		err = p.Verify(now)
	}
	if err != nil {
		if cur != nil {
			w.log.Warn("certwatch: new certificate refused; keeping the current one",
				"source", w.source(), "serial", cur.pair.Serial(), "sha256", cur.pair.SHA256(), "error", err.Error())
		} else {
			w.log.Warn("certwatch: no usable certificate", "source", w.source(), "error", err.Error())
		}
		w.event(EventReloadFailed, time.Time{}, err)
		w.mu.Lock()
		w.badSum, w.badErr = sum, err
		w.mu.Unlock()
		w.recordErr(err)
		return err
	}
	w.mu.Lock()
	w.diskSum, w.badSum, w.badErr = sum, [32]byte{}, nil
	w.mu.Unlock()
	if cur != nil && cur.pair.same(p) {
		return nil
	}
	w.swap(p)
	w.mu.Lock()
	w.reloads++
	w.mu.Unlock()
	leaf := p.Leaf()
	w.log.Info("certwatch: certificate loaded", "source", w.source(), "serial", p.Serial(), "sha256", p.SHA256(),
		"subject", leaf.Subject.String(), "not_after", leaf.NotAfter)
	w.event(EventLoaded, time.Time{}, nil)
	w.notify()
	return nil
}

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

// Run watches the source and renews the certificate until ctx is done or
// Close is called; it then returns nil. File events on the directory (not
// the files: a Kubernetes "..data" swap replaces them) trigger a re-read
// after the debounce; the backstop re-reads every poll interval in case an
// event was missed. Run may be called once.
func (w *Watcher) Run(ctx context.Context) error {
	w.mu.Lock()
	switch {
	case w.closed:
		w.mu.Unlock()
		return ErrClosed
	case w.running:
		w.mu.Unlock()
		return fmt.Errorf("%w: Run called twice", ErrBadConfig)
	}
	w.running = true
	w.wg.Add(1)
	w.mu.Unlock()
	defer w.wg.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-w.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	// A directory source is watched by internal/dirwatch (events on the
	// directory, debounced, and the backstop re-read); a loader source is
	// re-read every poll interval.
	var watchers sync.WaitGroup
	defer watchers.Wait()
	defer cancel()
	if w.dir != "" {
		dopts := []dirwatch.Option{dirwatch.WithDebounce(w.debounce), dirwatch.WithPollInterval(w.poll), dirwatch.WithClock(w.clock), dirwatch.WithLogger(w.log)}
		if w.noNotify {
			dopts = append(dopts, dirwatch.WithoutFSNotify())
		}
		dw := dirwatch.New([]string{w.dir}, dopts...)
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			dw.Run(ctx, func() { _ = w.Reload(ctx) })
		}()
	}

	_ = w.reload(ctx) // catch what changed between New and Run

	var pollC <-chan time.Time
	for {
		now := w.clock.Now()
		l := w.cur.Load()
		w.mu.Lock()
		at := w.nextLocked(now, l)
		w.mu.Unlock()
		var timerC <-chan time.Time
		if !at.IsZero() {
			timerC = w.clock.At(at)
		}
		if pollC == nil && w.poll > 0 && w.dir == "" {
			pollC = w.clock.At(now.Add(w.poll))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.kick:
		case <-pollC:
			pollC = nil
			_ = w.reload(ctx)
		case <-timerC:
			w.onTimer(ctx)
		}
	}
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

// Close stops Run and waits for it to return. It is idempotent.
func (w *Watcher) Close() error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.done)
	}
	w.mu.Unlock()
	w.wg.Wait()
	return nil
}
