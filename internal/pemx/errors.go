package pemx

import (
	"errors"
	"fmt"
)

// Sentinel errors; every error of this package wraps one of them.
var (
	ErrNoCertificate  = errors.New("no certificate")
	ErrBadCertificate = errors.New("certificate does not parse")
	ErrNoKey          = errors.New("no private key")
	ErrBadKey         = errors.New("private key does not parse")
)

// Error is a PEM problem: Kind is one of the sentinels, Detail says what was
// wrong without quoting the input. Packages with their own sentinels map Kind
// onto them and keep Detail.
type Error struct {
	Kind   error
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Kind.Error()
	}
	return e.Kind.Error() + ": " + e.Detail
}

func (e *Error) Unwrap() error { return e.Kind }

// Sentinels are a package's own errors for the four kinds of this package,
// for packages whose API promises their own (vcap, certwatch).
type Sentinels struct{ NoCertificate, BadCertificate, NoKey, BadKey error }

// Wrap returns err with its kind replaced by the caller's sentinel of the
// same meaning and the detail kept; other errors come back as they are.
func (s Sentinels) Wrap(err error) error {
	var pe *Error
	if !errors.As(err, &pe) {
		return err
	}
	kind := s.BadKey
	switch pe.Kind {
	case ErrNoCertificate:
		kind = s.NoCertificate
	case ErrBadCertificate:
		kind = s.BadCertificate
	case ErrNoKey:
		kind = s.NoKey
	}
	if pe.Detail == "" {
		return kind
	}
	return fmt.Errorf("%w: %s", kind, pe.Detail)
}

func fail(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Detail: fmt.Sprintf(format, args...)}
}
