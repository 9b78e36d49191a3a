package tokenclient

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"strings"

	"github.com/credbroker/credbroker/internal/netx"
)

// Secret is a string that never prints itself: String, GoString, LogValue
// and MarshalText all give "[redacted]". Convert it with string(s) where the
// value is really needed.
type Secret string

const redacted = "[redacted]"

// String returns "[redacted]" (or "" for an empty secret).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString is String, so %#v does not print the value either.
func (s Secret) GoString() string { return `tokenclient.Secret("` + s.String() + `")` }

// LogValue keeps the value out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps the value out of JSON, YAML and other encoders.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Flavor selects the token service dialect.
type Flavor int

const (
	// XSUAA posts to <base>/oauth/token and sends a client secret as form
	// fields by default.
	XSUAA Flavor = iota
	// IAS posts to <base>/oauth2/token, sends a client secret with HTTP Basic
	// by default and understands the app_tid and resource parameters.
	IAS
)

func (f Flavor) String() string {
	switch f {
	case XSUAA:
		return "xsuaa"
	case IAS:
		return "ias"
	}
	return fmt.Sprintf("Flavor(%d)", int(f))
}

func (f Flavor) path() string {
	if f == IAS {
		return "/oauth2/token"
	}
	return "/oauth/token"
}

// AuthStyle says how a client secret travels.
type AuthStyle int

const (
	// AuthStyleAuto is form fields for XSUAA and HTTP Basic for IAS.
	AuthStyleAuto AuthStyle = iota
	// AuthStyleInParams sends client_id and client_secret as form fields.
	AuthStyleInParams
	// AuthStyleInHeader sends them as HTTP Basic credentials (RFC 6749 2.3.1).
	AuthStyleInHeader
)

// Config describes one OAuth client: the credentials of one service
// binding. The client authenticates with ClientSecret on TokenURL, or, when
// GetClientCertificate is set, with that certificate over mutual TLS on
// CertURL. Config holds no behaviour; see Option for that.
type Config struct {
	// ClientID is the OAuth client id (required).
	ClientID string
	// ClientSecret authenticates a secret client. Unused for X.509 clients.
	ClientSecret Secret
	// TokenURL is the base URL of the token service for secret clients, as
	// the binding's "url" gives it: https://provider.authentication.example.com.
	// A URL that already ends in the token path is accepted as is.
	TokenURL string
	// CertURL is the base URL for mutual TLS (the binding's "certurl",
	// https://provider.authentication.cert.example.com). When empty for an
	// X.509 client it is derived from TokenURL by inserting "cert." after
	// the "authentication." label.
	CertURL string
	// UAADomain is the tenant-agnostic host ("authentication.example.com")
	// that requests with a zone id go to. When empty it is TokenURL's (or
	// CertURL's) host without its first label.
	UAADomain string
	// Flavor selects XSUAA (the default) or IAS.
	Flavor Flavor
	// AuthStyle says how a client secret is sent.
	AuthStyle AuthStyle
	// GetClientCertificate makes this an X.509 client. It is installed as
	// tls.Config.GetClientCertificate and so is called at every handshake:
	// return the current certificate and a rotated one is used on the next
	// connection with nothing rebuilt. It is also called once before each
	// token fetch to notice a rotation (idle connections and TLS sessions of
	// the previous certificate are then dropped). It must be safe for
	// concurrent use.
	GetClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// CertificateFingerprint, when set, is called on every Token call and its
	// result becomes part of the cache key, so tokens fetched with one
	// certificate are not served for another. It must be cheap, allocation
	// free and safe for concurrent use (return a value computed when the
	// certificate was loaded).
	CertificateFingerprint func() string
}

func (c *Config) x509() bool { return c.GetClientCertificate != nil }

func (c *Config) authStyle() AuthStyle {
	if c.AuthStyle != AuthStyleAuto {
		return c.AuthStyle
	}
	if c.Flavor == IAS {
		return AuthStyleInHeader
	}
	return AuthStyleInParams
}

// endpointBase is the validated base URL requests go to before tenant
// rewriting: CertURL for X.509 clients, TokenURL otherwise.
type endpointBase struct {
	u *url.URL // scheme, host (with port), path without the token path
}

func (c *Config) validate() (endpointBase, error) {
	if strings.TrimSpace(c.ClientID) == "" {
		return endpointBase{}, configErr("ClientID", "is empty")
	}
	if c.Flavor != XSUAA && c.Flavor != IAS {
		return endpointBase{}, configErr("Flavor", fmt.Sprintf("unknown value %d", int(c.Flavor)))
	}
	if c.AuthStyle < AuthStyleAuto || c.AuthStyle > AuthStyleInHeader {
		return endpointBase{}, configErr("AuthStyle", fmt.Sprintf("unknown value %d", int(c.AuthStyle)))
	}
	field, raw := "TokenURL", c.TokenURL
	if c.x509() {
		if c.CertURL != "" {
			field, raw = "CertURL", c.CertURL
		} else if c.TokenURL != "" {
			field, raw = "TokenURL", deriveCertURL(c.TokenURL)
		} else {
			return endpointBase{}, configErr("CertURL", "is empty (and no TokenURL to derive it from)")
		}
	} else if c.ClientSecret == "" {
		return endpointBase{}, configErr("ClientSecret", "is empty and GetClientCertificate is not set")
	}
	if raw == "" {
		return endpointBase{}, configErr(field, "is empty")
	}
	u, err := parseBase(raw, c.Flavor)
	if err != nil {
		return endpointBase{}, configErr(field, err.Error())
	}
	return endpointBase{u: u}, nil
}

// parseBase checks a base URL and strips a trailing token path.
func parseBase(raw string, f Flavor) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL", raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host", raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("URL must not carry user information")
	}
	if err := netx.CheckCredentialURL(u); err != nil {
		return nil, fmt.Errorf("%q: %w", u.Redacted(), err)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("%q: no query or fragment allowed", u.Redacted())
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.Path = strings.TrimSuffix(u.Path, f.path())
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// deriveCertURL inserts "cert." after the first "authentication." label:
// https://p.authentication.eu10.example.com -> https://p.authentication.cert.eu10.example.com.
// A URL that has it already, or has no such label, is returned unchanged.
func deriveCertURL(raw string) string {
	if strings.Contains(raw, ".authentication.cert.") {
		return raw
	}
	return strings.Replace(raw, ".authentication.", ".authentication.cert.", 1)
}
