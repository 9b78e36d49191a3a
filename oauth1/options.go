package oauth1

import (
	"crypto/rand"
	"encoding/base64"
	"time"
)

// Option configures a Signer or a Verifier. Each option says which it
// applies to; the other one ignores it.
type Option func(*options)

type options struct {
	now   func() time.Time
	nonce func() string
	// customNonce: nonce was set by WithNonce (else a Signer draws 128
	// random bits itself, without allocating).
	customNonce bool
	realm       string
	maxBody     int64
	window      time.Duration
	cacheSize   int
}

// Defaults.
const (
	DefaultMaxBody   = 8 << 20 // bytes buffered to hash or parse a body
	DefaultWindow    = 5 * time.Minute
	DefaultCacheSize = 100_000
)

func defaults() options {
	return options{
		now:       time.Now,
		nonce:     randomNonce,
		maxBody:   DefaultMaxBody,
		window:    DefaultWindow,
		cacheSize: DefaultCacheSize,
	}
}

// WithClock sets the clock (Signer: oauth_timestamp; Verifier: the window
// and the nonce cache). Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// WithNonce sets the nonce source of a Signer. It must return a value that
// is unique per consumer key for at least the verifier's window; it is
// percent-encoded as needed. Default: 128 random bits, base64url.
func WithNonce(nonce func() string) Option {
	return func(o *options) {
		if nonce != nil {
			o.nonce, o.customNonce = nonce, true
		}
	}
}

// WithRealm adds realm="…" to the Authorization headers a Signer writes.
func WithRealm(realm string) Option { return func(o *options) { o.realm = realm } }

// WithMaxBody bounds how many body bytes a Signer or Verifier buffers
// (default DefaultMaxBody); a larger body is ErrBodyTooLarge.
func WithMaxBody(n int64) Option {
	return func(o *options) {
		if n > 0 {
			o.maxBody = n
		}
	}
}

// WithWindow sets how far oauth_timestamp may be from the Verifier's clock,
// either way (default DefaultWindow).
func WithWindow(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.window = d
		}
	}
}

// WithReplayCacheSize bounds the Verifier's nonce cache (default
// DefaultCacheSize entries). When it is full of unexpired nonces, requests
// are refused with ErrReplayCacheFull.
func WithReplayCacheSize(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.cacheSize = n
		}
	}
}

func randomNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
