package tokenclient

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Errors returned by the client wrap one of these or are a
// *TokenError; branch with errors.Is and errors.As.
var (
	// ErrInvalidConfig: New was given an unusable Config or option.
	ErrInvalidConfig = errors.New("tokenclient: invalid config")
	// ErrInvalidRequest: a Request is incomplete or contradicts itself.
	ErrInvalidRequest = errors.New("tokenclient: invalid request")
	// ErrClosed: the client was closed.
	ErrClosed = errors.New("tokenclient: client closed")
	// ErrUnavailable: the token service could not be reached or kept
	// answering with 5xx/429 until the retry budget ran out, and there is no
	// valid cached token.
	ErrUnavailable = errors.New("tokenclient: token service unavailable")
	// ErrBadResponse: the service answered 2xx with something that is not a
	// token response.
	ErrBadResponse = errors.New("tokenclient: bad token response")
	// ErrRedirect: the service answered with a redirect. Token requests never
	// follow redirects (the credentials would go to another host).
	ErrRedirect = errors.New("tokenclient: redirect refused")
	// ErrCertificate: the client certificate hook failed.
	ErrCertificate = errors.New("tokenclient: client certificate")
	// ErrTooManyKeys: the request would add a new distinct cache key (a
	// scope set, tenant, zone or grant not cached yet) while the client
	// already holds WithMaxKeys of them. Keys already cached keep working;
	// a slot frees when all entries of a key have expired.
	ErrTooManyKeys = errors.New("tokenclient: too many distinct token keys (scope sets, tenants) for this client")
	// ErrInvalidationLimited: Invalidate was called for a tenant of this
	// client again within the invalidation interval (WithInvalidationInterval).
	// The cached token is kept; do not retry the request with it.
	ErrInvalidationLimited = errors.New("tokenclient: token invalidation rate-limited")
)

// isOwn reports whether err already carries this package's identity (a
// sentinel above or a *TokenError), so that it is not wrapped twice.
func isOwn(err error) bool {
	var te *TokenError
	if errors.As(err, &te) {
		return true
	}
	for _, s := range []error{ErrInvalidConfig, ErrInvalidRequest, ErrClosed, ErrUnavailable, ErrBadResponse, ErrRedirect, ErrCertificate} {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// TokenError is a token endpoint's refusal: an HTTP status other than 2xx,
// with the RFC 6749 section 5.2 fields when the body had them. It never
// holds a credential. A 4xx TokenError (except 429) is remembered for a
// short time (see WithNegativeCacheTTL); Cached tells such a replay apart.
type TokenError struct {
	StatusCode  int    // HTTP status
	ErrorCode   string // "error", for example "invalid_client"
	Description string // "error_description", shortened and stripped of control characters
	ErrorURI    string // "error_uri"
	// RetryAfter is the server's Retry-After on 429 and 503 (0 when absent).
	RetryAfter time.Duration
	// URL is the token endpoint that answered (it never contains credentials).
	URL string
	// Cached is true when the error is replayed from the negative cache
	// without a new request.
	Cached bool
}

func (e *TokenError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "tokenclient: %s: status %d", e.URL, e.StatusCode)
	if e.ErrorCode != "" {
		b.WriteString(": ")
		b.WriteString(e.ErrorCode)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	if e.Cached {
		b.WriteString(" (cached)")
	}
	return b.String()
}

// Is makes errors.Is(err, ErrUnavailable) true for 5xx and 429 answers.
func (e *TokenError) Is(target error) bool {
	return target == ErrUnavailable && e.temporary()
}

func (e *TokenError) temporary() bool {
	return e.StatusCode >= 500 || e.StatusCode == 429 || e.StatusCode == 408
}

// negative reports whether the error is a definite refusal worth caching.
func (e *TokenError) negative() bool {
	return e.StatusCode >= 400 && e.StatusCode < 500 && !e.temporary()
}

func configErr(field, msg string) error {
	return fmt.Errorf("%w: %s %s", ErrInvalidConfig, field, msg)
}

func requestErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, a...))
}

// sanitize shortens a server-provided string and drops control characters
// so it is safe in one log line.
func sanitize(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > max {
		cut := max
		for cut > 0 && (s[cut]&0xC0) == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
