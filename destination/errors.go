package destination

import (
	"errors"
	"fmt"
	"net/http"
)

// Reasons (stable strings for the proxy's X-Credbroker-Error header and for
// metrics). Every error of this package carries one (see ReasonOf).
const (
	ReasonNotFound           = "destination-not-found"
	ReasonServiceUnavailable = "destination-service-unavailable"
	ReasonServiceRefused     = "destination-service-refused"
	ReasonAuthTokenError     = "destination-auth-token-error"
	ReasonNoURL              = "destination-no-url"
	ReasonBadURL             = "destination-bad-url"
	ReasonUnsupportedType    = "destination-unsupported-authentication"
	ReasonUnsupportedProxy   = "destination-unsupported-proxy-type"
	ReasonCertificate        = "destination-certificate-invalid"
	ReasonNoUserToken        = "no-user-token"
	ReasonBadResponse        = "destination-bad-response"
)

// Sentinel errors; the typed Error wraps one of them.
var (
	ErrNotFound         = errors.New("destination not found")
	ErrUnavailable      = errors.New("destination service unavailable")
	ErrRefused          = errors.New("destination service refused the request")
	ErrAuthToken        = errors.New("destination service could not issue the auth token")
	ErrNoURL            = errors.New("destination has no URL")
	ErrBadURL           = errors.New("destination URL is not an absolute http(s) URL")
	ErrUnsupportedType  = errors.New("authentication type not supported")
	ErrUnsupportedProxy = errors.New("proxy type not supported")
	ErrCertificate      = errors.New("destination client certificate unusable")
	ErrNoUserToken      = errors.New("destination needs a user token")
	ErrBadResponse      = errors.New("destination service answered something unreadable")
)

// Error is what Find and Cache.Get return. Its text names the destination
// and never contains a secret (the service's own error texts are kept, they
// describe why a token could not be issued, not the token).
type Error struct {
	// Name is the destination.
	Name string
	// Reason is one of the Reason constants; Status the HTTP status the
	// proxy answers with.
	Reason string
	Status int
	// Detail is a human-readable addition ("" for none).
	Detail string
	Err    error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("destination %q: %v", e.Name, e.Err)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// HTTPStatus is the status the egress proxy answers with.
func (e *Error) HTTPStatus() int { return e.Status }

// ReasonCode is the stable reason string.
func (e *Error) ReasonCode() string { return e.Reason }

func newError(name string, sentinel error, detail string) *Error {
	e := &Error{Name: name, Err: sentinel, Detail: detail, Status: http.StatusBadGateway}
	switch sentinel {
	case ErrNotFound:
		e.Reason = ReasonNotFound
	case ErrUnavailable:
		e.Reason, e.Status = ReasonServiceUnavailable, http.StatusServiceUnavailable
	case ErrRefused:
		e.Reason = ReasonServiceRefused
	case ErrAuthToken:
		e.Reason = ReasonAuthTokenError
	case ErrNoURL:
		e.Reason = ReasonNoURL
	case ErrBadURL:
		e.Reason = ReasonBadURL
	case ErrUnsupportedType:
		e.Reason = ReasonUnsupportedType
	case ErrUnsupportedProxy:
		e.Reason = ReasonUnsupportedProxy
	case ErrCertificate:
		e.Reason = ReasonCertificate
	case ErrNoUserToken:
		e.Reason, e.Status = ReasonNoUserToken, http.StatusUnauthorized
	default:
		e.Reason = ReasonBadResponse
	}
	return e
}

// ReasonOf returns the reason and status of err ("", 0 for an error that is
// not from this package).
func ReasonOf(err error) (reason string, status int) {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason, e.Status
	}
	return "", 0
}
