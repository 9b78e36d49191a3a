package sidecar

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors of the configuration; *ConfigError wraps them so callers
// can branch with errors.Is.
var (
	ErrConfigSyntax       = errors.New("malformed YAML")
	ErrUnknownKey         = errors.New("unknown key")
	ErrInvalidValue       = errors.New("invalid value")
	ErrMissingValue       = errors.New("missing value")
	ErrDuplicateName      = errors.New("duplicate name")
	ErrUnknownBinding     = errors.New("unknown binding")
	ErrUnusableBinding    = errors.New("unusable binding")
	ErrUnknownCertificate = errors.New("unknown certificate")
	ErrNonLoopback        = errors.New("listen address is not loopback; set allow_non_loopback (or --allow-non-loopback) to allow it")
	ErrReloadListen       = errors.New("listen addresses cannot change on reload; restart credbroker")
	ErrPlainHTTP          = errors.New("http:// upstream that is not loopback")
)

// ErrNotStarted is returned by Reload before Run has loaded a
// configuration (or after it stopped).
var ErrNotStarted = errors.New("sidecar: not started")

// ConfigError is one problem with the configuration. It names the source
// (file), the line when known, and the field path ("routes[1].auth.binding").
// It never carries a secret: only names, positions and the sentinel cause.
type ConfigError struct {
	Source string // "config /etc/credbroker/config.yaml" or "--listen"
	Line   int    // 1-based; 0 when unknown
	Field  string // "routes[1].auth.binding"
	Name   string // the route or certificate name, when the field is inside one
	Err    error  // one of the Err* sentinels, possibly wrapped with detail
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString("sidecar: ")
	if e.Source != "" {
		b.WriteString(e.Source)
	} else {
		b.WriteString("config")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
		if e.Name != "" {
			fmt.Fprintf(&b, " (%q)", e.Name)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ConfigError) Unwrap() error { return e.Err }

// ConfigErrors is every problem found in one configuration.
type ConfigErrors []*ConfigError

func (m ConfigErrors) Error() string {
	if len(m) == 1 {
		return m[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems in the configuration:", len(m))
	for _, e := range m {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap exposes every error to errors.Is and errors.As.
func (m ConfigErrors) Unwrap() []error {
	out := make([]error, len(m))
	for i, e := range m {
		out[i] = e
	}
	return out
}

// ErrTokenKeyLimit is wrapped by a TokenSource's error when the request
// would add a new distinct token cache key (a scope set or tenant) to a
// binding that holds max_token_keys of them: the proxy and the token API
// answer 429 token-key-limit.
var ErrTokenKeyLimit = errors.New("too many distinct token keys (scope sets, tenants) for this binding (max_token_keys)")
