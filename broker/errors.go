package broker

import (
	"errors"
	"fmt"
)

// ErrConfig is matched (errors.Is) by every error of bad configuration or
// bad input the broker finds itself: a file that cannot be read, a
// certificate entry that cannot work, a refused plain-http binding. The
// sidecar's *sidecar.ConfigError and vcap's *vcap.Error are bad
// configuration too. Anything else is a runtime failure.
var ErrConfig = errors.New("bad configuration")

// configErr carries a message that is bad configuration without repeating
// "bad configuration" in it.
type configErr struct{ err error }

func (e *configErr) Error() string   { return e.err.Error() }
func (e *configErr) Unwrap() []error { return []error{e.err, ErrConfig} }

func configError(err error) error { return &configErr{err: err} }

func configErrorf(format string, a ...any) error { return configError(fmt.Errorf(format, a...)) }

// NetworkError is the error of NewNetwork: Field is "ca_file" (Path is
// the file) or "resolve". It matches ErrConfig.
type NetworkError struct {
	Field string
	Path  string
	Err   error
}

func (e *NetworkError) Error() string {
	if e.Path != "" {
		return e.Field + " " + e.Path + ": " + e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}
func (e *NetworkError) Unwrap() []error { return []error{e.Err, ErrConfig} }
