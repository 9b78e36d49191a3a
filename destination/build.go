package destination

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// maxServiceText bounds how much of an authToken error text is kept.
const maxServiceText = 300

// build turns a find-destination answer into a Destination. fetched is when
// the request was sent (expires_in counts from then).
func build(name string, raw *findResponse, userToken string, fetched time.Time) (*Destination, error) {
	cfg := raw.Config
	if cfg == nil {
		return nil, newError(name, ErrBadResponse, "no destinationConfiguration")
	}
	d := &Destination{
		Name:            prop(cfg, "Name"),
		Authentication:  prop(cfg, "Authentication"),
		ProxyType:       prop(cfg, "ProxyType"),
		LocationID:      prop(cfg, "CloudConnectorLocationId"),
		Header:          http.Header{},
		Query:           url.Values{},
		OwnerSubaccount: raw.Owner.SubaccountID,
		OwnerInstance:   raw.Owner.InstanceID,
	}
	if d.Name == "" {
		d.Name = name
	}
	if d.Authentication == "" {
		d.Authentication = NoAuthentication
	}
	switch {
	case d.ProxyType == "" || strings.EqualFold(d.ProxyType, ProxyInternet):
		d.ProxyType = ProxyInternet
	case strings.EqualFold(d.ProxyType, ProxyOnPremise):
		d.ProxyType = ProxyOnPremise
	default:
		return nil, newError(name, ErrUnsupportedProxy, fmt.Sprintf("ProxyType %q (want Internet or OnPremise)", clip(d.ProxyType, 40)))
	}
	if t := prop(cfg, "Type"); t != "" && !strings.EqualFold(t, "HTTP") {
		return nil, newError(name, ErrUnsupportedType, fmt.Sprintf("destination Type %q: only HTTP destinations can be proxied", clip(t, 40)))
	}
	rawURL := strings.TrimSpace(prop(cfg, "URL"))
	if rawURL == "" {
		return nil, newError(name, ErrNoURL, "the destination has no URL property")
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.Fragment != "" {
		return nil, newError(name, ErrBadURL, "want http:// or https:// with a host, without user information or fragment")
	}
	d.URL = u
	if v := strings.TrimSpace(prop(cfg, "sap-client")); v != "" {
		d.Query.Set("sap-client", v)
	}
	for k := range cfg {
		switch {
		case strings.HasPrefix(k, "URL.headers."):
			h := strings.TrimPrefix(k, "URL.headers.")
			v := prop(cfg, k)
			if !validHeaderName(h) || !validHeaderValue(v) || reservedHeader(h) {
				return nil, newError(name, ErrBadResponse, fmt.Sprintf("property %q is not a usable header", clip(k, 80)))
			}
			d.Header.Set(h, v)
		case strings.HasPrefix(k, "URL.queries."):
			q := strings.TrimPrefix(k, "URL.queries.")
			if q == "" {
				continue
			}
			d.Query.Set(q, prop(cfg, k))
		}
	}
	d.UserDependent = UserDependent(d.Authentication)
	if d.UserDependent && userToken == "" {
		return nil, newError(name, ErrNoUserToken, d.Authentication+" needs the user's token (send it in the route's user_token header)")
	}

	// authTokens: any entry with an error fails the destination.
	for _, t := range raw.AuthTokens {
		if t.Error != "" {
			return nil, newError(name, ErrAuthToken, clip(sanitize(t.Error), maxServiceText))
		}
	}
	switch d.Authentication {
	case NoAuthentication:
	case PrincipalPropagation:
		if !d.OnPremise() {
			return nil, newError(name, ErrUnsupportedType, "PrincipalPropagation needs ProxyType OnPremise")
		}
		d.PrincipalPropagation = true
	case BasicAuthentication:
		if len(raw.AuthTokens) == 0 {
			user, pass := prop(cfg, "User"), prop(cfg, "Password")
			if user == "" {
				return nil, newError(name, ErrAuthToken, "BasicAuthentication without authTokens and without User")
			}
			d.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pass)))
			break
		}
		if err := applyTokens(name, d, raw.AuthTokens, fetched); err != nil {
			return nil, err
		}
	case OAuth2ClientCredentials, OAuth2UserTokenExchange, OAuth2JWTBearer, OAuth2Password:
		if len(raw.AuthTokens) == 0 {
			return nil, newError(name, ErrAuthToken, d.Authentication+": the service returned no authTokens")
		}
		if err := applyTokens(name, d, raw.AuthTokens, fetched); err != nil {
			return nil, err
		}
	case ClientCertificateAuthentication:
		if err := applyCertificate(name, d, cfg, raw); err != nil {
			return nil, err
		}
		if len(raw.AuthTokens) > 0 {
			// Some setups add a token next to the certificate.
			if err := applyTokens(name, d, raw.AuthTokens, fetched); err != nil {
				return nil, err
			}
		}
	default:
		return nil, newError(name, ErrUnsupportedType, fmt.Sprintf("Authentication %q is not supported (supported: NoAuthentication, BasicAuthentication, OAuth2ClientCredentials, OAuth2UserTokenExchange, OAuth2JWTBearer, OAuth2Password, ClientCertificateAuthentication, PrincipalPropagation)", clip(d.Authentication, 60)))
	}
	return d, nil
}

func applyTokens(name string, d *Destination, toks []authToken, fetched time.Time) error {
	for _, t := range toks {
		key, val := t.HTTPHeader.Key, t.HTTPHeader.Value
		if key == "" {
			if t.Value == "" {
				return newError(name, ErrAuthToken, "an authToken has neither http_header nor value")
			}
			key, val = "Authorization", tokenScheme(t.Type)+" "+t.Value
		}
		if !validHeaderName(key) || !validHeaderValue(val) || strings.TrimSpace(val) == "" {
			return newError(name, ErrBadResponse, "an authToken's http_header is not a usable header")
		}
		d.Header.Set(key, val)
		if t.ExpiresIn > 0 {
			exp := fetched.Add(time.Duration(t.ExpiresIn) * time.Second)
			if d.Expiry.IsZero() || exp.Before(d.Expiry) {
				d.Expiry = exp
			}
		}
	}
	return nil
}

func tokenScheme(t string) string {
	switch strings.ToLower(t) {
	case "", "bearer":
		return "Bearer"
	case "basic":
		return "Basic"
	}
	return t
}

// applyCertificate loads the keystore KeyStoreLocation names from the
// answer's certificates: PKCS#12 (.p12, .pfx) or PEM (.pem with certificate
// and key). JKS is refused with a hint.
func applyCertificate(name string, d *Destination, cfg map[string]any, raw *findResponse) error {
	loc := prop(cfg, "KeyStoreLocation")
	if loc == "" {
		return newError(name, ErrCertificate, "ClientCertificateAuthentication without KeyStoreLocation")
	}
	var content string
	found := false
	for _, c := range raw.Certificates {
		if c.Name == loc {
			content, found = c.Content, true
			break
		}
	}
	if !found {
		return newError(name, ErrCertificate, fmt.Sprintf("keystore %q is not among the answer's certificates", clip(loc, 80)))
	}
	data, err := base64.StdEncoding.DecodeString(strings.TrimSpace(content))
	if err != nil {
		return newError(name, ErrCertificate, fmt.Sprintf("keystore %q is not base64", clip(loc, 80)))
	}
	lower := strings.ToLower(loc)
	var cert tls.Certificate
	switch {
	case strings.HasSuffix(lower, ".jks"):
		return newError(name, ErrCertificate, fmt.Sprintf("keystore %q is JKS, which is not supported: upload it as PKCS#12 (.p12) or PEM", clip(loc, 80)))
	case strings.HasSuffix(lower, ".pem"):
		cert, err = tls.X509KeyPair(data, data)
		if err != nil {
			return newError(name, ErrCertificate, fmt.Sprintf("keystore %q: no matching PEM certificate and key", clip(loc, 80)))
		}
	default:
		key, leaf, chain, derr := pkcs12.DecodeChain(data, prop(cfg, "KeyStorePassword"))
		if derr != nil {
			detail := "not a PKCS#12 keystore, or the KeyStorePassword does not open it"
			if errors.Is(derr, pkcs12.ErrIncorrectPassword) {
				detail = "KeyStorePassword does not open it"
			}
			return newError(name, ErrCertificate, fmt.Sprintf("keystore %q: %s", clip(loc, 80), detail))
		}
		cert = tls.Certificate{PrivateKey: key, Leaf: leaf, Certificate: [][]byte{leaf.Raw}}
		for _, c := range chain {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
	}
	if cert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return newError(name, ErrCertificate, "the keystore's certificate does not parse")
		}
		cert.Leaf = leaf
	}
	if d.Expiry.IsZero() || cert.Leaf.NotAfter.Before(d.Expiry) {
		d.Expiry = cert.Leaf.NotAfter
	}
	d.Certificate = &cert
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", ch) >= 0) {
			return false
		}
	}
	return true
}

func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// reservedHeader refuses URL.headers.* that would change how the request
// is framed or routed, or smuggle proxy credentials.
func reservedHeader(h string) bool {
	switch textproto.CanonicalMIMEHeaderKey(h) {
	case "Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade", "Te", "Trailer",
		"Proxy-Authorization", "Proxy-Connection", "Keep-Alive",
		"Sap-Connectivity-Authentication", "Sap-Connectivity-Scc-Location_id":
		return true
	}
	return strings.HasPrefix(strings.ToLower(h), "x-credbroker-")
}

// sanitize keeps printable ASCII of a service text (no control characters
// in headers or logs).
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
