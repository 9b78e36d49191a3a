package certwatch

import (
	"context"
	"crypto/tls"
	"time"
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
