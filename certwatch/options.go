package certwatch

import (
	"log/slog"
	"time"
)

// Option configures New.
type Option func(*options)

// options are what the Options set; New validates them.
type options struct {
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
	jumps        ClockJumps
}

// WithDir loads the pair from dir (CertFile, KeyFile, CAFile: the layout of
// `credbroker pair` and Persist, a Kubernetes secret mount, or plain files),
// watches dir and writes renewed pairs into it.
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// WithLoader loads the pair through f instead of a directory.
func WithLoader(f LoaderFunc) Option { return func(o *options) { o.loader = f } }

// WithRenewer renews the certificate through r on the schedule of the
// Policy. Without it the certificate is only watched (and its expiry
// reported).
func WithRenewer(r Renewer) Option { return func(o *options) { o.renewer = r } }

// WithPolicy sets the renewal policy (default DefaultPolicy()).
func WithPolicy(p Policy) Option { return func(o *options) { o.policy = p.withDefaults() } }

// WithClock sets the clock (default: the system clock).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// ClockJumps signals that the wall clock jumped (a host suspend, a VM
// pause, a step of the system clock): Changed returns a channel that is
// closed at the next jump. *clock.JumpWatcher implements it.
type ClockJumps interface{ Changed() <-chan struct{} }

// WithClockJumps makes Run evaluate its renewal schedule again at every
// jump j signals: waits run on the monotonic clock, which stops during a
// suspend, so a renewal due during one would otherwise fire late.
func WithClockJumps(j ClockJumps) Option { return func(o *options) { o.jumps = j } }

// WithLogger sets the logger (default: discard everything).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithObserver receives every event (metrics).
func WithObserver(obs Observer) Option { return func(o *options) { o.obs = obs } }

// WithName names the certificate in logs, events and Status.
func WithName(name string) Option { return func(o *options) { o.name = name } }

// WithPollInterval sets the backstop re-read interval (default 1 min); 0
// disables it.
func WithPollInterval(d time.Duration) Option {
	return func(o *options) { o.poll = d }
}

// WithDebounce sets how long to wait after a file event before reading
// the directory, so that a writer has finished (default 100 ms).
func WithDebounce(d time.Duration) Option { return func(o *options) { o.debounce = d } }

// WithoutFSNotify relies on the backstop re-read alone.
func WithoutFSNotify() Option { return func(o *options) { o.noNotify = true } }

// WithoutPersist keeps renewed pairs in memory only (a read-only mount).
func WithoutPersist() Option { return func(o *options) { o.noPersist = true } }

// WithRenewTimeout bounds one renewal attempt (default 1 min).
func WithRenewTimeout(d time.Duration) Option { return func(o *options) { o.renewTimeout = d } }

// WithRandom sets the source of jitter samples in [0, 1) (tests make it
// constant).
func WithRandom(f func() float64) Option { return func(o *options) { o.random = f } }

// AllowMissing lets New succeed without a usable pair (pairing will write
// one): Status says so, NeedsToken is true, and the pair is picked up when
// it appears.
func AllowMissing() Option { return func(o *options) { o.allowMissing = true } }
