package vcap

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Kinds of BTP service bindings ServiceOf understands.
const (
	KindDestination  = "destination"
	KindConnectivity = "connectivity"
)

// BTPService is the typed view of a Destination or Connectivity service
// binding: an XSUAA-issued OAuth client (Auth, for tokens per tenant) plus
// the service's own fields. It never changes the binding itself (such
// bindings are not auth bindings for `credbroker bindings` or Set.Select).
type BTPService struct {
	// Kind is KindDestination or KindConnectivity.
	Kind string
	// Auth is the OAuth client of the binding (secret or x509, as for
	// xsuaa); Auth.Auth is AuthNone when it cannot fetch tokens.
	Auth *AuthService
	// URI is the Destination service's REST base ("uri").
	URI string
	// ProxyHost and ProxyPort are the Connectivity proxy
	// ("onpremise_proxy_host", "onpremise_proxy_http_port", else
	// "onpremise_proxy_port"); empty when the binding lacks them (Kyma).
	ProxyHost, ProxyPort string
	// Problems say why the view is not usable (never a secret).
	Problems []string
}

// ServiceOf returns the BTPService view of a destination or connectivity
// binding (by label, type or tag), or ok false for other bindings. A
// binding without "url" uses "token_service_url" (Kubernetes connectivity
// bindings carry only that; a trailing /oauth/token is dropped).
func ServiceOf(b *Binding, opts ...Option) (svc *BTPService, ok bool) {
	kind := ""
	for _, s := range append([]string{b.Label, b.Type}, b.Tags...) {
		switch strings.ToLower(s) {
		case KindDestination:
			kind = KindDestination
		case KindConnectivity:
			kind = KindConnectivity
		}
		if kind != "" {
			break
		}
	}
	if kind == "" {
		return nil, false
	}
	m := b.Credentials.Reveal()
	svc = &BTPService{Kind: kind}
	if s, _ := m["url"].(string); s == "" {
		if ts, _ := m["token_service_url"].(string); ts != "" {
			m["url"] = strings.TrimSuffix(strings.TrimRight(ts, "/"), "/oauth/token")
		}
	}
	tmp := &Binding{Name: b.Name, Label: "xsuaa", Source: b.Source, Credentials: NewCredentials(m)}
	if len(b.errs) == 0 {
		finishBinding(newConfig(opts), nil, tmp)
	}
	svc.Auth = tmp.Auth
	svc.Problems = append(append([]string(nil), b.Problems...), tmp.Problems...)
	str := func(k string) string {
		switch v := m[k].(type) {
		case string:
			return strings.TrimSpace(v)
		case float64:
			return strconv.FormatFloat(v, 'f', -1, 64)
		}
		return ""
	}
	switch kind {
	case KindDestination:
		svc.URI = strings.TrimRight(str("uri"), "/")
		if svc.URI == "" {
			svc.Problems = append(svc.Problems, `field "uri": missing field (the Destination service URL)`)
		} else if err := checkServiceURL(svc.URI); err != nil {
			svc.Problems = append(svc.Problems, `field "uri": `+err.Error())
			svc.URI = ""
		}
	case KindConnectivity:
		svc.ProxyHost = str("onpremise_proxy_host")
		svc.ProxyPort = str("onpremise_proxy_http_port")
		if svc.ProxyPort == "" {
			svc.ProxyPort = str("onpremise_proxy_port")
		}
	}
	if svc.Auth == nil || svc.Auth.Auth == AuthNone {
		if len(svc.Problems) == 0 {
			svc.Problems = append(svc.Problems, "the binding has no usable client credential")
		}
	}
	return svc, true
}

// Digest identifies the service's credentials and URLs without holding
// them (for callers that keep state per binding across reloads): an HMAC
// under key, which the caller keeps secret (a random per-process key), so
// the digest of a secret cannot be checked against guesses elsewhere.
func (s *BTPService) Digest(key []byte) string {
	h := hmac.New(sha256.New, key)
	for _, v := range []string{s.Kind, s.URI, s.ProxyHost, s.ProxyPort} {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	if a := s.Auth; a != nil {
		for _, v := range []string{a.ClientID, a.ClientSecret.Reveal(), a.URL, a.CertURL, string(a.Auth), string(a.CertificatePEM)} {
			h.Write([]byte(v))
			h.Write([]byte{0})
		}
		if a.Key != nil {
			h.Write([]byte(a.Key.PEM().Reveal()))
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
