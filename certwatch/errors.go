package certwatch

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Errors returned by this package wrap one of them (or are
// one of the typed errors below), so callers branch with errors.Is / As.
// No error text ever contains key material.
var (
	// ErrNoPair: there is no certificate yet (the directory or a file is
	// missing). New returns it unless AllowMissing is set.
	ErrNoPair = errors.New("certwatch: no certificate and key yet")
	// ErrNoCertificate: the certificate PEM holds no CERTIFICATE block.
	ErrNoCertificate = errors.New("certwatch: no certificate in PEM")
	// ErrNoKey: the key PEM holds no private key block.
	ErrNoKey = errors.New("certwatch: no private key in PEM")
	// ErrBadCertificate: a CERTIFICATE block does not parse.
	ErrBadCertificate = errors.New("certwatch: certificate does not parse")
	// ErrBadKey: the private key does not parse, is encrypted, or is of a
	// kind TLS cannot use.
	ErrBadKey = errors.New("certwatch: private key does not parse")
	// ErrKeyMismatch: the private key does not belong to the leaf
	// certificate.
	ErrKeyMismatch = errors.New("certwatch: private key does not match the certificate")
	// ErrUntrusted: the chain does not verify against the CA.
	ErrUntrusted = errors.New("certwatch: certificate does not verify against the CA")
	// ErrExpired and ErrNotYetValid are matched by *ValidityError.
	ErrExpired     = errors.New("certwatch: certificate expired")
	ErrNotYetValid = errors.New("certwatch: certificate not yet valid")
	// ErrNoRenewer: Renew was called on a Watcher without a Renewer.
	ErrNoRenewer = errors.New("certwatch: no renewer configured")
	// ErrBadConfig: New was given contradictory or missing options.
	ErrBadConfig = errors.New("certwatch: bad configuration")
	// ErrClosed: the Watcher was closed.
	ErrClosed = errors.New("certwatch: closed")
)

// ValidityError reports a certificate used outside its validity window.
// errors.Is(err, ErrExpired) or errors.Is(err, ErrNotYetValid) tells which.
type ValidityError struct {
	Serial    string
	SHA256    string // the fingerprint; shown when set (serials repeat)
	NotBefore time.Time
	NotAfter  time.Time
	Now       time.Time
}

func (e *ValidityError) Error() string {
	id := e.Serial
	if e.SHA256 != "" {
		id = "serial " + e.Serial + " sha256 " + e.SHA256
	}
	if e.Now.Before(e.NotBefore) {
		return fmt.Sprintf("certwatch: certificate %s not yet valid: valid from %s, now %s",
			id, e.NotBefore.UTC().Format(time.RFC3339), e.Now.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("certwatch: certificate %s expired at %s, now %s",
		id, e.NotAfter.UTC().Format(time.RFC3339), e.Now.UTC().Format(time.RFC3339))
}

// Is matches ErrExpired or ErrNotYetValid.
func (e *ValidityError) Is(target error) bool {
	if e.Now.Before(e.NotBefore) {
		return target == ErrNotYetValid
	}
	return target == ErrExpired
}

// LoadError says which source (a file path, or "loader") failed to load.
type LoadError struct {
	Source string
	Err    error
}

func (e *LoadError) Error() string { return fmt.Sprintf("certwatch: load %s: %v", e.Source, e.Err) }

// Unwrap returns the cause.
func (e *LoadError) Unwrap() error { return e.Err }

// RenewError reports a failed renewal: Attempt counts the consecutive
// failures, Next is when the next attempt is scheduled (zero when none is:
// the certificate expired or a new one-time token is needed).
type RenewError struct {
	Attempt int
	Next    time.Time
	Err     error
}

func (e *RenewError) Error() string {
	return fmt.Sprintf("certwatch: renewal attempt %d failed: %v", e.Attempt, e.Err)
}

// Unwrap returns the cause.
func (e *RenewError) Unwrap() error { return e.Err }

// needsToken reports whether err (or an error it wraps) says that the
// current certificate can no longer be renewed (revoked, unknown): such an
// error has a method NeedsToken() bool that returns true. The connector
// package's errors implement it without either package importing the other.
func needsToken(err error) bool {
	var nt interface{ NeedsToken() bool }
	return errors.As(err, &nt) && nt.NeedsToken()
}
