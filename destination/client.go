package destination

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Token is an access token of the destination binding.
type Token struct {
	Value  string
	Expiry time.Time
}

// TokenSource hands out tokens of the destination binding (client
// credentials) per tenant: "" is the provider (the binding's own
// subaccount), anything else a subscriber subdomain. It must be safe for
// concurrent use, cache its tokens, and never put a secret in an error.
type TokenSource interface {
	Token(ctx context.Context, tenant string) (Token, error)
}

// TokenFunc adapts a function to TokenSource.
type TokenFunc func(ctx context.Context, tenant string) (Token, error)

// Token calls f.
func (f TokenFunc) Token(ctx context.Context, tenant string) (Token, error) { return f(ctx, tenant) }

// Finder looks a destination up (Client, or a fake in tests).
type Finder interface {
	// Find calls the Destination service once. userToken is the user's
	// JWT ("" for none), sent as X-user-token. Safe for concurrent use.
	Find(ctx context.Context, name, tenant, userToken string) (*Destination, error)
}

// Client calls the Destination service's find-destination API.
type Client struct {
	base   string
	tokens TokenSource
	options
}

type options struct {
	hc      *http.Client
	now     func() time.Time
	maxBody int64
	log     *slog.Logger
}

// Option configures a Client.
type Option func(*options)

// WithHTTPClient sets the client used for the service (default: a client
// with a 30 s timeout that follows no redirect).
func WithHTTPClient(hc *http.Client) Option { return func(o *options) { o.hc = hc } }

// WithClock sets the clock that turns expires_in into an expiry.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithMaxResponse bounds the response body (default 1 MiB).
func WithMaxResponse(n int64) Option { return func(o *options) { o.maxBody = n } }

// WithLogger sets the logger (silent by default; nothing secret is logged).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// DefaultMaxResponse bounds a find-destination response.
const DefaultMaxResponse = 1 << 20

// NewClient returns a client for the service at serviceURL (the binding's
// "uri").
func NewClient(serviceURL string, tokens TokenSource, opts ...Option) (*Client, error) {
	u, err := url.Parse(serviceURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return nil, errors.New("destination: service URL must be an absolute http(s) URL without user information")
	}
	if tokens == nil {
		return nil, errors.New("destination: no token source")
	}
	c := &Client{base: strings.TrimRight(serviceURL, "/"), tokens: tokens, options: options{now: time.Now, maxBody: DefaultMaxResponse}}
	for _, o := range opts {
		o(&c.options)
	}
	if c.now == nil || c.maxBody <= 0 {
		return nil, errors.New("destination: WithClock needs a clock and WithMaxResponse a positive size")
	}
	if c.hc == nil {
		c.hc = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// UserTokenHeader carries the user's JWT to the find-destination API.
const UserTokenHeader = "X-user-token"

// Find implements Finder.
func (c *Client) Find(ctx context.Context, name, tenant, userToken string) (*Destination, error) {
	tok, err := c.tokens.Token(ctx, tenant)
	if err != nil {
		return nil, newError(name, ErrUnavailable, "no token of the destination binding: "+err.Error())
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/destination-configuration/v1/destinations/"+url.PathEscape(name), nil)
	if err != nil {
		return nil, newError(name, ErrBadResponse, "building the request failed")
	}
	req.Header.Set("Authorization", "Bearer "+tok.Value)
	req.Header.Set("Accept", "application/json")
	if userToken != "" {
		req.Header.Set(UserTokenHeader, userToken)
	}
	start := c.now()
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, newError(name, ErrUnavailable, "the request was cancelled")
		}
		return nil, newError(name, ErrUnavailable, "the service did not answer")
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, newError(name, ErrUnavailable, "reading the answer failed")
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return nil, newError(name, ErrNotFound, fmt.Sprintf("the Destination service has no destination %q for this tenant", name))
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, newError(name, ErrRefused, fmt.Sprintf("HTTP %d", resp.StatusCode))
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return nil, newError(name, ErrUnavailable, fmt.Sprintf("HTTP %d", resp.StatusCode))
	case resp.StatusCode != http.StatusOK:
		return nil, newError(name, ErrRefused, fmt.Sprintf("HTTP %d", resp.StatusCode))
	}
	if int64(len(body)) > c.maxBody {
		return nil, newError(name, ErrBadResponse, fmt.Sprintf("the answer is over %d bytes", c.maxBody))
	}
	var raw findResponse
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, newError(name, ErrBadResponse, "not the JSON of a find-destination answer")
	}
	return build(name, &raw, userToken, start)
}

// Destination is a resolved destination: what a request to it needs. The
// Header values and Certificate are secret; String and LogValue show
// neither.
type Destination struct {
	// Name as the service returned it.
	Name string
	// URL is the destination's URL.
	URL *url.URL
	// Authentication is the destination's authentication type.
	Authentication string
	// ProxyType is Internet or OnPremise.
	ProxyType string
	// LocationID is CloudConnectorLocationId ("" for none).
	LocationID string
	// Header holds the authentication header (from authTokens) and the
	// URL.headers.* properties. Secret.
	Header http.Header
	// Query holds URL.queries.* and sap-client.
	Query url.Values
	// Certificate is the client certificate of ClientCertificateAuthentication.
	Certificate *tls.Certificate
	// PrincipalPropagation: the user's token goes to the Connectivity proxy
	// in SAP-Connectivity-Authentication.
	PrincipalPropagation bool
	// UserDependent is true when the result depends on the user token.
	UserDependent bool
	// Expiry is when the auth token (or certificate) expires; zero for
	// none.
	Expiry time.Time
	// Owner is the subaccount (and instance) the destination belongs to.
	OwnerSubaccount, OwnerInstance string
}

// OnPremise reports ProxyType OnPremise.
func (d *Destination) OnPremise() bool { return strings.EqualFold(d.ProxyType, ProxyOnPremise) }

// HeaderNames lists the names of the headers the destination adds (values
// are secret).
func (d *Destination) HeaderNames() []string {
	var out []string
	for k := range d.Header {
		out = append(out, k)
	}
	return out
}

// String shows no secret.
func (d *Destination) String() string {
	return fmt.Sprintf("destination %q (%s, %s, %s)", d.Name, d.URL.Redacted(), d.Authentication, d.ProxyType)
}

// LogValue shows no secret.
func (d *Destination) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", d.Name), slog.String("url", d.URL.Redacted()), slog.String("authentication", d.Authentication), slog.String("proxy_type", d.ProxyType))
}

// Proxy types.
const (
	ProxyInternet  = "Internet"
	ProxyOnPremise = "OnPremise"
)

// Authentication types.
const (
	NoAuthentication                = "NoAuthentication"
	BasicAuthentication             = "BasicAuthentication"
	OAuth2ClientCredentials         = "OAuth2ClientCredentials"
	OAuth2UserTokenExchange         = "OAuth2UserTokenExchange"
	OAuth2JWTBearer                 = "OAuth2JWTBearer"
	OAuth2Password                  = "OAuth2Password"
	ClientCertificateAuthentication = "ClientCertificateAuthentication"
	PrincipalPropagation            = "PrincipalPropagation"
)

// UserDependent reports whether an authentication type needs the user's
// token.
func UserDependent(authentication string) bool {
	switch authentication {
	case OAuth2UserTokenExchange, OAuth2JWTBearer, PrincipalPropagation:
		return true
	}
	return false
}

type findResponse struct {
	Owner struct {
		SubaccountID string `json:"SubaccountId"`
		InstanceID   string `json:"InstanceId"`
	} `json:"owner"`
	Config       map[string]any `json:"destinationConfiguration"`
	AuthTokens   []authToken    `json:"authTokens"`
	Certificates []struct {
		Name    string `json:"Name"`
		Type    string `json:"Type"`
		Content string `json:"Content"`
	} `json:"certificates"`
}

type authToken struct {
	Type       string `json:"type"`
	Value      string `json:"value"`
	HTTPHeader struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"http_header"`
	ExpiresIn flexInt `json:"expires_in"`
	Error     string  `json:"error"`
}

// flexInt reads a JSON number or a string holding one (the service sends
// expires_in as a string).
type flexInt int64

func (f *flexInt) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*f = 0
		return nil
	}
	var n json.Number = json.Number(s)
	v, err := n.Int64()
	if err != nil {
		fl, ferr := n.Float64()
		if ferr != nil {
			return errors.New("expires_in is not a number")
		}
		v = int64(fl)
	}
	*f = flexInt(v)
	return nil
}

func prop(cfg map[string]any, key string) string {
	if v, ok := cfg[key]; ok {
		switch t := v.(type) {
		case string:
			return t
		case float64, bool:
			return fmt.Sprint(t)
		}
	}
	return ""
}
