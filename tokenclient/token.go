package tokenclient

import (
	"crypto/sha256"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Grant is an OAuth 2.0 grant type.
type Grant string

// The grants the client speaks.
const (
	GrantClientCredentials Grant = "client_credentials"
	GrantPassword          Grant = "password"
	GrantJWTBearer         Grant = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	GrantRefreshToken      Grant = "refresh_token"
)

// Request says which token a caller wants. The zero value asks for a
// client_credentials token for the provider tenant with the client's
// default scopes. Token does not keep the Request or its slices beyond the
// call, except a copy kept with a cache entry to refresh it.
//
// The strings of a Request must never change, as Go requires of every
// string: a string made with unsafe.String (or similar) over a buffer that
// is reused later is not one. The cache keeps the strings of the request
// that made an entry, and finds the entry of a later request with the very
// same strings by their addresses (Client.Token): a buffer reused for
// another tenant under an old string would be taken for the old tenant.
type Request struct {
	// Grant defaults to GrantClientCredentials.
	Grant Grant
	// Scopes are sent space-separated; their order does not matter to the
	// cache.
	Scopes []string
	// Tenant is a subscriber subdomain: the first host label of the token
	// URL is replaced with it. Mutually exclusive with ZoneID.
	Tenant string
	// ZoneID is a subscriber zone (tenant) id, sent as X-zid to the
	// tenant-agnostic host.
	ZoneID string
	// Username and Password are for GrantPassword.
	Username string
	Password Secret
	// Assertion is the user's JWT for GrantJWTBearer.
	Assertion Secret
	// RefreshToken is for GrantRefreshToken.
	RefreshToken Secret
	// Resource and AppTID are IAS parameters ("resource", "app_tid").
	Resource string
	AppTID   string
}

func (r *Request) grant() Grant {
	if r.Grant == "" {
		return GrantClientCredentials
	}
	return r.Grant
}

// check validates a request without allocating when it is fine.
func (r *Request) check() error {
	if r.Grant == "" { // the common case, without comparing the grant's name
		if r.Tenant != "" && r.ZoneID != "" {
			return requestErr("Tenant and ZoneID are mutually exclusive")
		}
		return nil
	}
	switch r.Grant {
	case GrantClientCredentials:
	case GrantPassword:
		if r.Username == "" || r.Password == "" {
			return requestErr("grant password needs Username and Password")
		}
	case GrantJWTBearer:
		if r.Assertion == "" {
			return requestErr("grant jwt-bearer needs an Assertion")
		}
	case GrantRefreshToken:
		if r.RefreshToken == "" {
			return requestErr("grant refresh_token needs a RefreshToken")
		}
	default:
		return requestErr("unknown grant %q", sanitize(string(r.Grant), 80))
	}
	if r.Tenant != "" && r.ZoneID != "" {
		return requestErr("Tenant and ZoneID are mutually exclusive")
	}
	return nil
}

// digest is a hash of the grant's secret material, so a cache key tells two
// users (or two assertions) apart without holding the secret.
func (r *Request) digest() (d [32]byte) {
	var tag byte
	var s Secret
	switch r.grant() {
	case GrantPassword:
		tag, s = 'p', r.Password
	case GrantJWTBearer:
		tag, s = 'a', r.Assertion
	case GrantRefreshToken:
		tag, s = 'r', r.RefreshToken
	default:
		return d
	}
	h := sha256.New()
	h.Write([]byte{tag, 0})
	h.Write([]byte(s))
	h.Sum(d[:0])
	return d
}

// canonicalScopes returns scopes sorted and without duplicates. Already
// canonical input is returned as is (no allocation).
func canonicalScopes(scopes []string) []string {
	ok := true
	for i := 1; i < len(scopes); i++ {
		if scopes[i-1] >= scopes[i] {
			ok = false
			break
		}
	}
	if ok {
		return scopes
	}
	s := slices.Clone(scopes)
	slices.Sort(s)
	return slices.Compact(s)
}

// Token is an access token with its metadata. Tokens returned by the client
// are shared between callers: do not modify them. String and LogValue do not
// print the token values.
type Token struct {
	AccessToken  string
	TokenType    string // usually "bearer"
	RefreshToken string // only for user grants
	Scope        string // as granted, space-separated
	JTI          string
	// ExpiresIn is the lifetime the server stated (0 when it did not).
	ExpiresIn time.Duration
	// IssuedAt is the client's clock when the response arrived.
	IssuedAt time.Time
	// Expiry is when the token expires: IssuedAt+ExpiresIn, or the JWT's exp
	// claim when that is earlier, or a default lifetime when neither is given.
	Expiry time.Time
	// URL is the token endpoint that issued it.
	URL string
}

// String describes the token without its values.
func (t *Token) String() string {
	if t == nil {
		return "<nil>"
	}
	return fmt.Sprintf("tokenclient.Token{type: %s, scope: %q, expiry: %s, url: %s, access_token: %s}",
		t.TokenType, t.Scope, t.Expiry.UTC().Format(time.RFC3339), t.URL, redacted)
}

// GoString is String, so %#v does not print the values either.
func (t *Token) GoString() string { return t.String() }

// LogValue describes the token in slog output without its values.
func (t *Token) LogValue() slog.Value {
	if t == nil {
		return slog.StringValue("<nil>")
	}
	return slog.GroupValue(slog.String("type", t.TokenType), slog.String("scope", t.Scope),
		slog.Time("expiry", t.Expiry), slog.String("url", t.URL))
}
