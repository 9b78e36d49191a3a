package tokenclient

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/internal/clock"
)

// Clock is the client's source of time, the module's one clock
// abstraction (internal/clock). Now stamps tokens and decides the negative
// cache; AfterFunc schedules refresh-ahead and expiry (the cache hit path
// reads flags those timers set, so it never reads the clock); waits between
// retries use the clock's Sleep when it has one (clock.Sleeper), else At.
// When the clock also implements clock.Monotonic, the client compares the
// two to notice a host suspend or a step of the wall clock. A fake clock
// makes all of it deterministic in tests. Implementations must be safe for
// concurrent use.
type Clock = clock.Clock

// Timer is a scheduled call; Stop cancels it if it has not run.
// *time.Timer implements it.
type Timer = clock.Timer

// RetryPolicy bounds the retries of one fetch. Network errors, 408, 429 and
// 5xx are retried with full-jitter exponential backoff (a random wait in
// [0, min(MaxDelay, BaseDelay·2^n)]); a Retry-After on 429/503 is honoured
// as a minimum wait. A fetch gives up after MaxAttempts attempts or when the
// next wait would pass MaxElapsed since its start.
type RetryPolicy struct {
	MaxAttempts int           // at least 1; default 4
	BaseDelay   time.Duration // default 200ms
	MaxDelay    time.Duration // default 5s
	MaxElapsed  time.Duration // default 30s
}

// FetchReason says why a fetch ran.
type FetchReason string

// Fetch reasons.
const (
	ReasonMiss    FetchReason = "miss"    // a caller had no valid token and waited
	ReasonRefresh FetchReason = "refresh" // refresh ahead in the background
)

// FetchEvent describes one completed fetch (all its attempts).
type FetchEvent struct {
	Reason     FetchReason
	Grant      Grant
	Tenant     string // subdomain, or "" (mind label cardinality)
	ZoneID     string
	Attempts   int
	StatusCode int // of the last answer; 0 when none arrived
	Duration   time.Duration
	Err        error // nil on success; never holds a credential
}

// Observer receives metrics events. Every field is optional. Hooks are called
// synchronously from the caller's or the fetching goroutine and must be fast
// and safe for concurrent use; Hit is on the hot path (an atomic add).
type Observer struct {
	Hit   func()           // a valid cached token was returned
	Miss  func()           // a caller had to wait for a fetch (or a negative-cache replay)
	Fetch func(FetchEvent) // a fetch finished
	Evict func()           // an entry was dropped to keep the cache bounded
	// ClockJump: the wall clock moved this much beside the monotonic clock
	// (a suspend, a VM pause, a step of the system clock) and every
	// token's refresh and expiry was evaluated again (WithClockCheck).
	ClockJump func(time.Duration)
	// Invalidate: Invalidate dropped a token an upstream rejected, or was
	// refused by the rate limit (InvalidateEvent.Limited).
	Invalidate func(InvalidateEvent)
	// Replay: a caller got a cached failure instead of a new fetch —
	// refused is true for a refusal of the auth server held for
	// WithNegativeCacheTTL, false for an outage's failure held until the
	// retry pause ends. Miss is called too.
	Replay func(refused bool)
}

// Option configures a Client.
type Option func(*options)

type options struct {
	dial            func(ctx context.Context, network, addr string) (net.Conn, error)
	proxy           func(*http.Request) (*url.URL, error)
	roots           *x509.CertPool
	roundTripper    http.RoundTripper
	clock           Clock
	log             *slog.Logger
	obs             Observer
	pol             policy
	retry           RetryPolicy
	maxEntries      int
	maxKeys         int
	maxFetches      int
	negativeTTL     time.Duration
	timeout         time.Duration
	idleConnsHost   int
	clockCheck      time.Duration
	jumpThreshold   time.Duration
	invalidateEvery time.Duration
	tracer          trace.Tracer // nil: no spans (WithTracerProvider)
	err             error        // the first invalid option; New returns it
}

func defaultOptions() options {
	return options{
		clock:           clock.System,
		log:             slog.New(slog.DiscardHandler),
		pol:             policy{refreshFraction: 2.0 / 3, jitter: 0.1, skew: 30 * time.Second, margin: DefaultOutageMargin, defaultLife: 5 * time.Minute},
		retry:           RetryPolicy{MaxAttempts: 4, BaseDelay: 200 * time.Millisecond, MaxDelay: 5 * time.Second, MaxElapsed: 30 * time.Second},
		maxEntries:      10000,
		maxKeys:         DefaultMaxKeys,
		maxFetches:      16,
		negativeTTL:     10 * time.Second,
		timeout:         10 * time.Second,
		idleConnsHost:   4,
		clockCheck:      clock.DefaultJumpCheck,
		jumpThreshold:   clock.DefaultJumpThreshold,
		invalidateEvery: DefaultInvalidationInterval,
	}
}

// WithDialContext sets how connections are dialled (for example through
// a resolver that maps host names to fixed addresses). TLS still verifies
// the host name of the token URL.
func WithDialContext(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *options) { o.dial = dial }
}

// WithProxy routes token requests through an HTTP proxy. There is no proxy
// by default: the environment's HTTP_PROXY is deliberately ignored, since a
// sidecar shares it with the app it proxies for.
func WithProxy(proxy func(*http.Request) (*url.URL, error)) Option {
	return func(o *options) { o.proxy = proxy }
}

// WithRootCAs sets the CAs that verify the token service (default: the
// system pool).
func WithRootCAs(pool *x509.CertPool) Option {
	return func(o *options) { o.roots = pool }
}

// WithRoundTripper replaces the client's own transport, for instrumentation
// or tests. The caller's transport must then present the client certificate
// itself; WithDialContext, WithProxy and WithRootCAs are ignored. Redirects
// are still refused.
func WithRoundTripper(rt http.RoundTripper) Option {
	return func(o *options) { o.roundTripper = rt }
}

// WithClock injects the clock (default: the system clock).
func WithClock(c Clock) Option {
	return func(o *options) {
		if c == nil {
			o.invalid(fmt.Errorf("%w: WithClock(nil)", ErrInvalidConfig))
			return
		}
		o.clock = c
	}
}

// WithLogger sets the logger (default: silent). The client logs fetch
// failures at warn, retries and refreshes at debug, with the keys
// token_url, grant, tenant, zone_id, reason, attempt, status, error_code,
// duration and error. It never logs a credential or token.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithObserver installs metrics hooks.
func WithObserver(obs Observer) Option {
	return func(o *options) { o.obs = obs }
}

// WithRefreshAhead sets when a token is refreshed in the background: once
// fraction (0 < fraction <= 1, default 2/3) of the time it is served (its
// life minus the expiry skew) has passed, moved
// earlier by a random share of up to jitter (0 <= jitter < 1, default 0.1)
// so that many clients do not refresh in step.
func WithRefreshAhead(fraction, jitter float64) Option {
	return func(o *options) {
		if !(fraction > 0 && fraction <= 1) || !(jitter >= 0 && jitter < 1) {
			o.invalid(fmt.Errorf("%w: WithRefreshAhead(%v, %v): want 0 < fraction <= 1 and 0 <= jitter < 1", ErrInvalidConfig, fraction, jitter))
			return
		}
		o.pol.refreshFraction, o.pol.jitter = fraction, jitter
	}
}

// WithExpirySkew sets how long before its expiry a token stops being served
// (default 30s; never more than a third of a token's life).
func WithExpirySkew(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.invalid(fmt.Errorf("%w: WithExpirySkew(%v)", ErrInvalidConfig, d))
			return
		}
		o.pol.skew = d
	}
}

// WithClockCheck sets how often the client compares the wall clock with
// the monotonic clock (default 1s) and how far they may move apart between
// two checks before every token's refresh and expiry timer is evaluated
// again (default 2s): after a host suspend the timers, which run on the
// monotonic clock, would otherwise fire late, and a token in use that
// expired meanwhile is fetched again at once. The hit path does not depend
// on the check: it reads the wall clock itself and never hands out a token
// whose served time (validUntil) has passed. The monotonic reading comes
// from the Clock when it implements Monotonic() time.Duration (the system
// clock does); without it, no jump is detected.
func WithClockCheck(every, threshold time.Duration) Option {
	return func(o *options) {
		if every <= 0 || threshold <= 0 {
			o.invalid(fmt.Errorf("%w: WithClockCheck(%v, %v)", ErrInvalidConfig, every, threshold))
			return
		}
		o.clockCheck, o.jumpThreshold = every, threshold
	}
}

// DefaultOutageMargin is how long before its expiry a cached token stops
// being served during an outage of the token service (WithOutageMargin).
const DefaultOutageMargin = 5 * time.Second

// WithOutageMargin sets the outage serving rule. Normally a token is served
// until its expiry minus the skew (WithExpirySkew) and refreshed before.
// Once a fetch for it failed because the service was unavailable (a network
// error, 429, 5xx or a garbled answer), the token is served until its expiry
// minus d instead, so an outage turns into errors only when no usable token
// remains. d is capped at the skew applied to the token (default
// DefaultOutageMargin); d equal to the skew turns the rule off.
func WithOutageMargin(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.invalid(fmt.Errorf("%w: WithOutageMargin(%v)", ErrInvalidConfig, d))
			return
		}
		o.pol.margin = d
	}
}

// WithDefaultLifetime sets the lifetime assumed when a response has neither
// expires_in nor a JWT exp (default 5m).
func WithDefaultLifetime(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.invalid(fmt.Errorf("%w: WithDefaultLifetime(%v)", ErrInvalidConfig, d))
			return
		}
		o.pol.defaultLife = d
	}
}

// WithRetry sets the retry policy; zero fields keep their defaults.
func WithRetry(p RetryPolicy) Option {
	return func(o *options) {
		if p.MaxAttempts < 0 || p.BaseDelay < 0 || p.MaxDelay < 0 || p.MaxElapsed < 0 {
			o.invalid(fmt.Errorf("%w: WithRetry: negative value", ErrInvalidConfig))
			return
		}
		if p.MaxAttempts > 0 {
			o.retry.MaxAttempts = p.MaxAttempts
		}
		if p.BaseDelay > 0 {
			o.retry.BaseDelay = p.BaseDelay
		}
		if p.MaxDelay > 0 {
			o.retry.MaxDelay = p.MaxDelay
		}
		if p.MaxElapsed > 0 {
			o.retry.MaxElapsed = p.MaxElapsed
		}
	}
}

// WithMaxEntries bounds the cache (default 10000). When it is full, expired
// entries go first, then the least recently used.
func WithMaxEntries(n int) Option {
	return func(o *options) {
		if n < 1 {
			o.invalid(fmt.Errorf("%w: WithMaxEntries(%d)", ErrInvalidConfig, n))
			return
		}
		o.maxEntries = n
	}
}

// DefaultMaxKeys is the default of WithMaxKeys.
const DefaultMaxKeys = 1000

// WithMaxKeys bounds the distinct keys the cache holds at once (default
// DefaultMaxKeys). A key is what selects a token apart from the user and
// the client certificate: grant, scope set, tenant, zone, resource and
// app_tid. A request that would add a key beyond the bound fails with
// ErrTooManyKeys without a token request, so callers that pick scopes or
// tenants cannot make the client fan out. Keys already cached keep working,
// keys of a Handle are reserved and never refused, and a key's slot frees
// once none of its entries holds a valid token, a fetch in flight or a
// remembered failure. It does not evict: junk keys cannot push out keys in
// use.
func WithMaxKeys(n int) Option {
	return func(o *options) {
		if n < 1 {
			o.invalid(fmt.Errorf("%w: WithMaxKeys(%d)", ErrInvalidConfig, n))
			return
		}
		o.maxKeys = n
	}
}

// WithMaxConcurrentFetches bounds the token requests in flight across all
// cache keys (default 16). Fetches beyond it wait for a slot.
func WithMaxConcurrentFetches(n int) Option {
	return func(o *options) {
		if n < 1 {
			o.invalid(fmt.Errorf("%w: WithMaxConcurrentFetches(%d)", ErrInvalidConfig, n))
			return
		}
		o.maxFetches = n
	}
}

// WithNegativeCacheTTL sets how long a 4xx refusal (other than 408 and 429)
// is replayed without asking the server again (default 10s; 0 disables).
func WithNegativeCacheTTL(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.invalid(fmt.Errorf("%w: WithNegativeCacheTTL(%v)", ErrInvalidConfig, d))
			return
		}
		o.negativeTTL = d
	}
}

// WithTimeout bounds each HTTP attempt, from dial to the end of the body
// (default 10s). The retry policy's MaxElapsed bounds the whole fetch.
func WithTimeout(d time.Duration) Option {
	return func(o *options) {
		if d <= 0 {
			o.invalid(fmt.Errorf("%w: WithTimeout(%v)", ErrInvalidConfig, d))
			return
		}
		o.timeout = d
	}
}

// invalid records the first invalid option; New returns it.
func (o *options) invalid(err error) {
	if o.err == nil {
		o.err = err
	}
}
