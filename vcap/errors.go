package vcap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors. vcap returns them wrapped in *Error (whose message starts
// with "vcap: " and names the source, binding and field), so callers branch
// with errors.Is and errors.As.
var (
	ErrNoBindings = errors.New("no bindings found")
	ErrNotFound   = errors.New("no matching binding")
	ErrAmbiguous  = errors.New("more than one binding matches")
	ErrMalformed  = errors.New("malformed input")
	// ErrPlainHTTP: a token URL is http:// to a host other than loopback;
	// the client secret would travel in clear.
	ErrPlainHTTP           = errors.New("an http:// URL to a host other than loopback would send credentials in clear")
	ErrUnreadable          = errors.New("unreadable")
	ErrNoCredentials       = errors.New("no credentials")
	ErrMissingField        = errors.New("missing field")
	ErrUnknownCredential   = errors.New("unknown credential-type")
	ErrDuplicateName       = errors.New("duplicate binding name")
	ErrNoCertificate       = errors.New("no certificate")
	ErrBadCertificate      = errors.New("certificate does not parse")
	ErrNoKey               = errors.New("no private key")
	ErrBadKey              = errors.New("private key does not parse")
	ErrKeyMismatch         = errors.New("private key does not match the certificate")
	ErrCertificateExpired  = errors.New("certificate expired")
	ErrCertificateNotValid = errors.New("certificate not yet valid")
	ErrNoSecret            = errors.New("no client secret")
)

// Error is a problem with one source, binding and field. It never carries a
// secret: only names, positions and the sentinel cause.
type Error struct {
	// Source is "VCAP_SERVICES", "file /path" or "dir /path" ("" if unknown).
	Source string
	// Binding is the binding name ("" for source-level errors).
	Binding string
	// Field is the credentials field or layout entry ("" if not specific).
	Field string
	// Offset is the byte offset of malformed JSON (-1 or 0 when not applicable;
	// see HasOffset).
	Offset    int64
	HasOffset bool
	// Err is the cause (one of the Err* sentinels, possibly wrapped with detail).
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("vcap: ")
	if e.Source != "" {
		b.WriteString(e.Source)
		if e.HasOffset {
			b.WriteString(" (byte " + strconv.FormatInt(e.Offset, 10) + ")")
		}
		b.WriteString(": ")
	}
	b.WriteString(e.detail())
	return b.String()
}

// detail is the message without the package and source prefix (used in Problems).
func (e *Error) detail() string {
	var parts []string
	if e.Binding != "" {
		parts = append(parts, fmt.Sprintf("binding %q", e.Binding))
	}
	if e.Field != "" {
		parts = append(parts, fmt.Sprintf("field %q", e.Field))
	}
	msg := "<nil>"
	if e.Err != nil {
		msg = e.Err.Error()
	}
	if len(parts) == 0 {
		return msg
	}
	return strings.Join(parts, ": ") + ": " + msg
}

func (e *Error) Unwrap() error { return e.Err }

// MultiError holds several *Error values (a binding with several problems).
type MultiError struct{ Errs []*Error }

func (m *MultiError) Error() string {
	s := make([]string, len(m.Errs))
	for i, e := range m.Errs {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// Unwrap exposes every error to errors.Is / errors.As.
func (m *MultiError) Unwrap() []error {
	out := make([]error, len(m.Errs))
	for i, e := range m.Errs {
		out[i] = e
	}
	return out
}
