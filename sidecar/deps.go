package sidecar

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/url"
	"time"
)

// Token is an access token as the proxy and the token API hand it out.
type Token struct {
	AccessToken string
	TokenType   string
	ExpiresAt   time.Time
	Scope       string
}

// TokenRequest is what varies per request for a prepared TokenSource.
type TokenRequest struct {
	// Tenant is the subscriber subdomain; "" for the binding's own tenant.
	Tenant string
	// Assertion is the user token exchanged by the jwt-bearer grant.
	Assertion string
	// Scopes, when not nil, replace the source's scopes for this request
	// (the token API's scope parameter): sorted, without duplicates.
	Scopes []string
}

// TokenSource returns access tokens for one binding, scope set and grant.
//
// Token must be safe for concurrent use and cheap on a cache hit (the proxy
// calls it for every request). It never returns an expired token: when no
// valid token can be had it returns an error (the proxy then answers 503).
// The error must not contain a secret.
type TokenSource interface {
	Token(ctx context.Context, req TokenRequest) (Token, error)
}

// Tokens prepares token sources. It is called when a configuration is
// loaded, never per request. Implementations should share caches between
// sources of the same binding.
type Tokens interface {
	Source(binding string, scopes []string, grant string) (TokenSource, error)
}

// ClientCertificate is a live client certificate for mTLS routes.
type ClientCertificate interface {
	// Current returns the certificate in use, with Leaf set, or nil when
	// there is none yet. Safe for concurrent use and cheap; the caller must
	// not modify the result.
	Current() *tls.Certificate
}

// CertificateState is what /status and /readyz report about a
// certificate. Nothing in it is secret.
type CertificateState struct {
	Subject     string
	Serial      string
	SHA256      string // fingerprint of the leaf's DER
	NotBefore   time.Time
	NotAfter    time.Time
	NextRenewal time.Time
	LastRenewal time.Time
	Renewals    int
	Heartbeats  int
	LastError   string
	// NeedsToken is true when the certificate can no longer be renewed (it
	// expired or was revoked) and a new one-time token is needed.
	NeedsToken bool
	// Revoked is true when the connector refused renewal for good while
	// the certificate is still valid: it stays in use until it expires.
	Revoked bool
}

// CertificateStater is implemented by certificates that know more than the
// current pair (renewal schedule, last error).
type CertificateStater interface {
	State() CertificateState
}

// Signer signs a request with OAuth 1.0a (0-legged HMAC-SHA1).
type Signer interface {
	// Sign sets req's Authorization header from its method, URL and body.
	// body is the complete request body (nil for none); req.Body is not
	// read. Safe for concurrent use.
	Sign(req *http.Request, body []byte) error
}

// HeaderSigner is a Signer that can also produce the Authorization value
// for a request given by its parts, without an *http.Request: an oauth1
// route whose signer is one serves bodyless requests on the fast path.
// The value must be what Sign would set for the same request. Safe for
// concurrent use.
type HeaderSigner interface {
	Signer
	// AppendAuthorization appends the Authorization header value for a
	// request with this method, absolute URL, Content-Type and complete
	// body to dst. It must not retain u, contentType, body or dst's
	// contents: the fast path passes views of buffers it reuses.
	AppendAuthorization(dst []byte, method string, u *url.URL, contentType string, body []byte) ([]byte, error)
}

// Deps are the credential providers one configuration is served with.
type Deps struct {
	// Tokens prepares token sources for bearer routes and the token API.
	Tokens Tokens
	// Certificates by the names of the config's certificates section.
	Certificates map[string]ClientCertificate
	// Signers by route name, for oauth1 routes.
	Signers map[string]Signer
	// Destinations by route name, for destination routes.
	Destinations map[string]DestinationResolver
	// Bindings describe the app's bindings for validation, /readyz and
	// /status (nil when no route uses a binding).
	Bindings BindingLookup
	// Inbound is the inbound guard of the config's inbound: section (nil
	// without one), served on its own listener.
	Inbound InboundHandler
	// Watch are files and directories whose change triggers a reload (the
	// config file, the bindings, oauth1 key and secret files).
	Watch []string
	// Network is the trust (roots) and dial overrides of every upstream
	// connection of the generation, built once by the composition; nil:
	// the proxy builds them from the config's ca_file and resolve.
	Network Network
	// Close releases what the providers hold (watchers, renewers). Called
	// once when the configuration is replaced or the sidecar stops.
	Close func()
}

// InboundHandler is the inbound guard as the server runs it (a
// *guard.Guard): the handler in front of the app and the TLS configuration
// of its listener (nil for plain HTTP).
type InboundHandler interface {
	http.Handler
	TLSConfig() *tls.Config
}
