package connector

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
)

// Sentinel errors. Every error this package returns that is caused by the
// connector's answer wraps one of these or is an *Error; branch with
// errors.Is and errors.As.
var (
	// ErrTokenInvalid: the connector refused the one-time token (unknown,
	// already used or expired). Retrying with the same token cannot work: a
	// new one-time token is needed.
	ErrTokenInvalid = errors.New("connector: the one-time token is invalid, used or expired: a new one-time token is needed")
	// ErrTokenMaybeUsed: the request carrying the one-time token was sent but
	// no answer came back, so the connector may have consumed the token. It
	// is not retried; try once more and request a new token if that fails.
	ErrTokenMaybeUsed = errors.New("connector: no answer after the one-time token was sent: the token may be used up")
	// ErrSubjectMismatch: the connector refused the CSR (its subject must
	// equal the one the connector announced), or the certificate issued does
	// not carry the requested subject.
	ErrSubjectMismatch = errors.New("connector: certificate subject mismatch")
	// ErrUnauthorized: the connector refused the client certificate on an
	// mTLS call (unknown, expired or not presented).
	ErrUnauthorized = errors.New("connector: client certificate refused")
	// ErrRevoked: the client certificate was revoked. Errors that match
	// ErrRevoked also match ErrUnauthorized. A new one-time token is needed.
	ErrRevoked = errors.New("connector: client certificate revoked: a new one-time token is needed")
	// ErrInvalidResponse: the connector's answer could not be used (bad JSON,
	// missing fields, certificates that do not verify or do not match the key).
	ErrInvalidResponse = errors.New("connector: invalid response")
	// ErrInvalidInput: a URL, subject or option given to this package is
	// unusable.
	ErrInvalidInput = errors.New("connector: invalid input")
)

// Error is an HTTP error answer of the connector, decoded from its
// {"code": …, "error": "…"} body. It matches the sentinel that fits the
// operation and status (ErrTokenInvalid, ErrSubjectMismatch, ErrUnauthorized,
// ErrRevoked) through errors.Is.
type Error struct {
	// Op is what was being done: "pair", "csr", "info", "renew", "revoke".
	Op string
	// URL is the endpoint without query, fragment or user info (one-time
	// tokens live in the query).
	URL string
	// StatusCode is the HTTP status.
	StatusCode int
	// Code is the "code" field of the body (0 when absent).
	Code int
	// Message is the "error" field of the body, or a short excerpt of a body
	// that was not JSON.
	Message string

	kind error // the sentinel this error matches, or nil
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "connector: %s %s: HTTP %d", e.Op, e.URL, e.StatusCode)
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	switch e.kind {
	case ErrTokenInvalid:
		b.WriteString(" (the one-time token is invalid, used or expired: a new one-time token is needed)")
	case ErrRevoked:
		b.WriteString(" (the certificate is revoked: a new one-time token is needed)")
	case ErrUnauthorized:
		b.WriteString(" (the client certificate was refused)")
	case ErrSubjectMismatch:
		b.WriteString(" (the CSR subject was refused)")
	}
	return b.String()
}

// Is reports whether target is the sentinel this error stands for.
func (e *Error) Is(target error) bool {
	if e.kind == nil {
		return false
	}
	if target == e.kind {
		return true
	}
	return e.kind == ErrRevoked && target == ErrUnauthorized
}

// NeedsToken reports whether only a new one-time token can help: the token
// was refused, or the client certificate was revoked or refused (certwatch
// stops renewing on such errors).
func (e *Error) NeedsToken() bool {
	return e.kind == ErrTokenInvalid || e.kind == ErrRevoked || e.kind == ErrUnauthorized
}

// Temporary reports whether the status suggests that a later attempt may
// succeed (5xx, 429, 408).
func (e *Error) Temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == 429 || e.StatusCode == 408
}

// classify picks the sentinel for an HTTP error of op.
func classify(op string, status int, msg string) error {
	switch op {
	case opPair, opCSR:
		switch status {
		case 401, 403:
			return ErrTokenInvalid
		case 400:
			if op == opCSR {
				return ErrSubjectMismatch
			}
		}
	case opInfo, opRenew, opRevoke:
		switch status {
		case 401, 403:
			if strings.Contains(strings.ToLower(msg), "revoked") {
				return ErrRevoked
			}
			return ErrUnauthorized
		case 400:
			if op == opRenew {
				return ErrSubjectMismatch
			}
		}
	}
	return nil
}

// transportError is a failure before any HTTP answer arrived. Its message
// carries the redacted URL only: the *url.Error of net/http would carry the
// full URL, one-time token included.
type transportError struct {
	op  string
	url string
	err error
}

func (e *transportError) Error() string {
	return fmt.Sprintf("connector: %s %s: %v", e.op, e.url, e.err)
}

func (e *transportError) Unwrap() error { return e.err }

// tlsRefusal maps a TLS alert sent by the server (it refused our client
// certificate during or right after the handshake) to a sentinel.
func tlsRefusal(err error) error {
	alert, ok := remoteAlert(err)
	if !ok {
		return nil
	}
	switch alert {
	case 44: // certificate_revoked
		return ErrRevoked
	case 42, 43, 45, 46, 48, 116: // bad, unsupported, expired, unknown certificate, unknown CA, certificate required
		return ErrUnauthorized
	}
	return nil
}

// remoteAlert returns the TLS alert in err, by type, never by message:
// crypto/tls reports an alert the peer sent as a *net.OpError with Op
// "remote error" whose Err is its unexported alert type (a uint8), and
// QUIC and some paths as a tls.AlertError.
func remoteAlert(err error) (uint8, bool) {
	var ae tls.AlertError
	if errors.As(err, &ae) {
		return uint8(ae), true
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "remote error" && oe.Err != nil {
		if v := reflect.ValueOf(oe.Err); v.Kind() == reflect.Uint8 {
			return uint8(v.Uint()), true
		}
	}
	return 0, false
}

// refusedError is a TLS-level refusal of the client certificate.
type refusedError struct {
	*transportError
	kind error
}

// NeedsToken: a certificate refused in the handshake cannot be renewed.
func (e *refusedError) NeedsToken() bool { return true }

func (e *refusedError) Is(target error) bool {
	return target == e.kind || (e.kind == ErrRevoked && target == ErrUnauthorized)
}
