package oauth1

import "errors"

// Sentinel errors. Every error returned by this package wraps exactly one of
// them (test with errors.Is). Error texts name parameters, never their
// values, and never contain a secret, a signature or a nonce.
var (
	// ErrNoCredentials: the request carries no OAuth Authorization header
	// (absent, or another scheme such as Bearer).
	ErrNoCredentials = errors.New("oauth1: no OAuth credentials")
	// ErrMalformed: the Authorization header or a request part cannot be
	// parsed, or a required protocol parameter is missing or invalid.
	ErrMalformed = errors.New("oauth1: malformed request")
	// ErrUnsupported: a signature method other than HMAC-SHA1, a version
	// other than 1.0, or a token (this package does 0-legged OAuth only).
	ErrUnsupported = errors.New("oauth1: unsupported")
	// ErrUnknownKey: the consumer key is not known to the verifier.
	ErrUnknownKey = errors.New("oauth1: unknown consumer key")
	// ErrBadSignature: the signature does not match the request.
	ErrBadSignature = errors.New("oauth1: bad signature")
	// ErrBodyHash: oauth_body_hash does not match the body, is missing for
	// a body that is not form-encoded, or is present on a form-encoded body.
	ErrBodyHash = errors.New("oauth1: body hash mismatch")
	// ErrStale: oauth_timestamp is outside the accepted window.
	ErrStale = errors.New("oauth1: timestamp outside the accepted window")
	// ErrReplay: the nonce was already used by this consumer key.
	ErrReplay = errors.New("oauth1: nonce already used")
	// ErrReplayCacheFull: the nonce cache holds its maximum of unexpired
	// entries; the request is refused rather than risking a replay.
	ErrReplayCacheFull = errors.New("oauth1: nonce cache full")
	// ErrBodyTooLarge: the body is larger than the configured maximum.
	ErrBodyTooLarge = errors.New("oauth1: body too large")
)
