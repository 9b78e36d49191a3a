package guard

import (
	"crypto/tls"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Option configures New.
type Option func(*settings)

type settings struct {
	bindings       BindingLookup
	jwksClient     *http.Client
	getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	appTransport   http.RoundTripper
	log            *slog.Logger
	obs            Observer
	now            func() time.Time
	leeway         time.Duration
	keyRefresh     time.Duration
	keyMinInterval time.Duration
	oauthWindow    time.Duration
	maxBody        int64
	resync         time.Duration
	tracer         trace.Tracer
}

// WithBindings gives the guard the bindings jwt rules name (required when a
// rule accepts jwt).
func WithBindings(l BindingLookup) Option { return func(s *settings) { s.bindings = l } }

// WithJWKSClient is the HTTP client for fetching verification keys (it
// should dial through the sidecar's resolver and trust its CA pool; it must
// not follow redirects to other hosts). Default: http.DefaultClient.
func WithJWKSClient(c *http.Client) Option { return func(s *settings) { s.jwksClient = c } }

// WithGetCertificate supplies the server certificate of a TLS listener
// (required when the config has tls:), e.g. certwatch's GetCertificate.
func WithGetCertificate(f func(*tls.ClientHelloInfo) (*tls.Certificate, error)) Option {
	return func(s *settings) { s.getCertificate = f }
}

// WithAppTransport is the transport to the app (default: a pooled
// http.Transport without proxy settings).
func WithAppTransport(rt http.RoundTripper) Option { return func(s *settings) { s.appTransport = rt } }

// WithLogger sets the logger (default: discard). Refusals are logged at
// Info with the keys path, method, reason, peer and detail; never a
// credential.
func WithLogger(l *slog.Logger) Option { return func(s *settings) { s.log = l } }

// WithObserver receives a count of every decision (metrics).
func WithObserver(o Observer) Option { return func(s *settings) { s.obs = o } }

// WithClock sets the clock for token times, certificate validity and OAuth
// timestamps (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *settings) {
		if now != nil {
			s.now = now
		}
	}
}

// WithLeeway sets the clock skew allowed on exp/nbf (default DefaultLeeway).
func WithLeeway(d time.Duration) Option {
	return func(s *settings) {
		if d >= 0 {
			s.leeway = d
		}
	}
}

// WithKeyRefresh sets when cached verification keys are refreshed in the
// background and how often an unknown kid may trigger a fetch (defaults
// DefaultKeyRefresh, DefaultKeyMinInterval).
func WithKeyRefresh(refresh, minInterval time.Duration) Option {
	return func(s *settings) {
		if refresh > 0 {
			s.keyRefresh = refresh
		}
		if minInterval >= 0 {
			s.keyMinInterval = minInterval
		}
	}
}

// WithOAuth1Window sets the accepted oauth_timestamp skew (default 5m).
func WithOAuth1Window(d time.Duration) Option { return func(s *settings) { s.oauthWindow = d } }

// WithMaxBody bounds the body buffered to check oauth_body_hash when the
// config's limits.max_body is not set (default DefaultMaxBody); larger
// bodies get 413. Zero or negative keeps the default.
func WithMaxBody(n int64) Option {
	return func(s *settings) {
		if n > 0 {
			s.maxBody = n
		}
	}
}

// WithResync sets the period of the backstop re-read of watched files in
// Run (default DefaultResync; zero or negative keeps the default).
func WithResync(d time.Duration) Option {
	return func(s *settings) {
		if d > 0 {
			s.resync = d
		}
	}
}

// DefaultResync is the backstop period of Run's file re-reads.
const DefaultResync = time.Minute
