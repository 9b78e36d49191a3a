package vcap

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/credbroker/credbroker/internal/netx"
	"github.com/credbroker/credbroker/internal/pemx"
)

// authKind says whether a binding is an auth service: by label or type
// ("xsuaa", "identity"), by tag, or — for directory bindings without any of
// those — by the fields only that service has.
func authKind(b *Binding) (ServiceKind, bool) {
	for _, s := range []string{b.Label, b.Type} {
		switch strings.ToLower(s) {
		case "xsuaa":
			return KindXSUAA, true
		case "identity":
			return KindIdentity, true
		}
	}
	if b.Label != "" || b.Type != "" || !b.viaDir {
		return "", false
	}
	for _, t := range b.Tags {
		switch strings.ToLower(t) {
		case "xsuaa":
			return KindXSUAA, true
		case "identity", "ias":
			return KindIdentity, true
		}
	}
	c := b.Credentials
	if !c.Has("clientid") {
		return "", false
	}
	if c.Has("xsappname") || c.Has("uaadomain") {
		return KindXSUAA, true
	}
	if c.Has("domains") || c.Has("app_tid") {
		return KindIdentity, true
	}
	return "", false
}

// str returns a credentials field as a plain string ("" if absent).
func str(c Credentials, key string) string {
	s, _ := c.Get(key)
	return s.Reveal()
}

// strList reads a field that is a JSON array of strings, a JSON array in a
// string (directory layouts), or a single string.
func strList(c Credentials, key string) []string {
	v, ok := c.m[key]
	if !ok || v == nil {
		return nil
	}
	switch v := v.(type) {
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return append([]string(nil), v...)
	case string:
		t := strings.TrimSpace(v)
		if strings.HasPrefix(t, "[") {
			var out []string
			if json.Unmarshal([]byte(t), &out) == nil {
				return out
			}
		}
		if t == "" {
			return nil
		}
		return []string{t}
	}
	return nil
}

func finishSet(cfg *config, set *Set) {
	var ext *external
	if len(cfg.keyPEM) > 0 {
		ext = parseExternal(cfg)
	}
	seen := map[string][]*Binding{}
	for _, b := range set.Bindings {
		if len(b.errs) == 0 {
			finishBinding(cfg, ext, b)
		}
		seen[b.Name] = append(seen[b.Name], b)
	}
	for _, b := range set.Bindings {
		if n := len(seen[b.Name]); n > 1 {
			b.addProblem("name", fmt.Errorf("%w: %d bindings are called %q", ErrDuplicateName, n, b.Name))
		}
	}
	for _, b := range set.Bindings {
		cfg.log.Debug("vcap: binding", "binding", b, "problems", len(b.Problems))
	}
}

// external is key material supplied from outside the bindings.
type external struct {
	key    crypto.Signer
	certs  []*x509.Certificate
	source string
	err    error
}

func parseExternal(cfg *config) *external {
	x := &external{source: cfg.keySrc}
	k, err := parsePrivateKey(cfg.keyPEM)
	if err != nil {
		x.err = err
		return x
	}
	x.key = k
	if certs, err := parseCertificates(cfg.keyPEM); err == nil {
		x.certs = certs
	}
	return x
}

// finishBinding builds the typed auth view and records problems.
func finishBinding(cfg *config, ext *external, b *Binding) {
	if b.Credentials.Len() == 0 {
		b.addProblem("credentials", ErrNoCredentials)
		return
	}
	kind, ok := authKind(b)
	if !ok {
		if b.viaDir || b.viaMetadata {
			if b.Type == "" && b.Label == "" {
				b.addProblem("type", fmt.Errorf("%w: servicebinding.io requires a \"type\" entry", ErrMissingField))
			}
		}
		return
	}
	c := b.Credentials
	a := &AuthService{
		Kind:           kind,
		ClientID:       str(c, "clientid"),
		URL:            strings.TrimRight(str(c, "url"), "/"),
		CertURL:        strings.TrimRight(str(c, "certurl"), "/"),
		UAADomain:      str(c, "uaadomain"),
		IdentityZone:   str(c, "identityzone"),
		IdentityZoneID: str(c, "identityzoneid"),
		TenantID:       str(c, "tenantid"),
		AppTID:         str(c, "app_tid"),
		Domains:        strList(c, "domains"),
		XSAppName:      str(c, "xsappname"),
		CredentialType: strings.ToLower(strings.TrimSpace(str(c, "credential-type"))),
	}
	a.ClientSecret, _ = c.Get("clientsecret")
	if a.Domains == nil && a.UAADomain != "" && kind == KindXSUAA {
		a.Domains = []string{a.UAADomain}
	}
	b.Auth = a
	if a.ClientID == "" {
		b.addProblem("clientid", ErrMissingField)
	}

	// Certificate and key, when the binding carries them (whatever the
	// credential type says: they are reported and validated either way).
	if pemCert, ok := c.Get("certificate"); ok && strings.TrimSpace(pemCert.Reveal()) != "" {
		certs, err := parseCertificates([]byte(pemCert.Reveal()))
		if err != nil {
			b.addProblem("certificate", err)
		} else {
			a.Certificates = certs
			a.CertificatePEM = pemx.EncodeCertificates(certs)
		}
	}
	if pemKey, ok := c.Get("key"); ok && strings.TrimSpace(pemKey.Reveal()) != "" {
		k, err := parsePrivateKey([]byte(pemKey.Reveal()))
		if err != nil {
			b.addProblem("key", err)
		} else {
			a.Key, _ = NewPrivateKey(k, "binding")
		}
	}
	if leaf := a.Leaf(); leaf != nil {
		a.CertificateExpiresAt = leaf.NotAfter
	} else if s, ok := c.Get("certificate_expires_at"); ok && s.Reveal() != "" {
		if t, err := time.Parse(time.RFC3339, s.Reveal()); err == nil {
			a.CertificateExpiresAt = t
		}
	}

	decideAuth(cfg, ext, b, a)
}

// wantsX509 reports whether the credential type asks for a certificate.
func wantsX509(ct string) bool {
	switch ct {
	case CredX509, CredX509Generated, CredX509Provided, CredX509Attested:
		return true
	}
	return false
}

// decideAuth picks the auth method and token URL.
//
// The binding's credential-type decides: "x509" and the IAS X509_* types mean
// mTLS even when a clientsecret is present too (the service issued the
// certificate on purpose; a secret next to it is a leftover), the secret
// types mean the secret even when a certificate is present. Without a
// credential-type, a secret wins (what XSUAA has always issued by default and
// what SAP's libraries use), and a certificate with its key is used only when
// there is no secret.
func decideAuth(cfg *config, ext *external, b *Binding, a *AuthService) {
	ct := a.CredentialType
	switch ct {
	case "", CredInstanceSecret, CredBindingSecret, CredSecret:
		if !a.ClientSecret.IsZero() {
			a.Auth = AuthSecret
		} else if ct == "" && len(a.Certificates) > 0 {
			useX509(cfg, ext, b, a)
			return
		} else {
			a.Auth = AuthNone
			if ct == "" {
				b.addProblem("clientsecret", fmt.Errorf("%w and no certificate: the binding cannot fetch tokens (a hide-secret binding can only validate them)", ErrNoSecret))
			} else {
				b.addProblem("clientsecret", fmt.Errorf("%w: credential-type %s needs one (hidden with hide-secret?)", ErrNoSecret, ct))
			}
			return
		}
	case CredNone:
		// IAS "NONE" / hide-secret: the binding deliberately carries no
		// credential; it can validate tokens but not fetch them.
		a.Auth = AuthNone
		checkCertValidity(cfg, b, a)
		return
	default:
		if !wantsX509(ct) {
			a.Auth = AuthNone
			b.addProblem("credential-type", fmt.Errorf("%w: want instance-secret, binding-secret, x509, X509_GENERATED, X509_PROVIDED, X509_ATTESTED or NONE (the value is not repeated here: a misplaced secret must not reach a log)", ErrUnknownCredential))
			return
		}
		useX509(cfg, ext, b, a)
		return
	}
	setTokenURL(b, a)
}

func displayCT(ct string) string {
	if ct == "" {
		return "(none)"
	}
	return ct
}

// leafFirst applies pemx.LeafFirst, the one rule of which certificate a key
// belongs to: the certificate the key matches becomes the leaf, wherever the
// binding put it in the chain. It reports false when the key matches none.
func leafFirst(a *AuthService, key crypto.Signer) bool {
	chain, ok := pemx.LeafFirst(a.Certificates, key)
	if !ok {
		return false
	}
	if !chain[0].Equal(a.Certificates[0]) {
		a.Certificates = chain
		a.CertificatePEM = pemx.EncodeCertificates(chain)
		a.CertificateExpiresAt = chain[0].NotAfter
	}
	return true
}

// useX509 completes an X.509 binding: certificate (binding, else external),
// key (binding, else external), key/leaf match, validity, mTLS token URL.
func useX509(cfg *config, ext *external, b *Binding, a *AuthService) {
	a.Auth = AuthMTLS
	if len(a.Certificates) == 0 && ext != nil && ext.err == nil && len(ext.certs) > 0 {
		a.Certificates = ext.certs
		a.CertificatePEM = pemx.EncodeCertificates(ext.certs)
	}
	if len(a.Certificates) == 0 {
		if !hasProblem(b, "certificate") {
			b.addProblem("certificate", fmt.Errorf("%w: credential-type %s needs a \"certificate\"", ErrNoCertificate, displayCT(a.CredentialType)))
		}
		a.Auth = AuthNone
		return
	}
	leaf := a.Certificates[0]
	if a.Key == nil && !hasProblem(b, "key") {
		switch {
		case ext == nil:
			b.addProblem("key", fmt.Errorf("%w: credential-type %s but no \"key\" and no --key-file", ErrNoKey, displayCT(a.CredentialType)))
		case ext.err != nil:
			b.addProblem("key", fmt.Errorf("%s: %w", ext.source, ext.err))
		case !leafFirst(a, ext.key):
			b.addProblem("key", fmt.Errorf("%w: the key from %s belongs to another certificate", ErrKeyMismatch, ext.source))
		default:
			a.Key, _ = NewPrivateKey(ext.key, ext.source)
		}
	} else if a.Key != nil && !leafFirst(a, a.Key.Signer()) {
		b.addProblem("key", fmt.Errorf("%w (leaf %s)", ErrKeyMismatch, describeCert(leaf)))
		a.Auth = AuthNone
	}
	if a.Key == nil {
		a.Auth = AuthNone
	}
	checkCertValidity(cfg, b, a)
	if a.Auth == AuthMTLS {
		setTokenURL(b, a)
	}
}

func hasProblem(b *Binding, field string) bool {
	for _, e := range b.errs {
		if e.Field == field {
			return true
		}
	}
	return false
}

func describeCert(c *x509.Certificate) string {
	return fmt.Sprintf("subject %q, serial %s", c.Subject.String(), c.SerialNumber.String())
}

// checkCertValidity reports an expired or not-yet-valid leaf with its dates.
func checkCertValidity(cfg *config, b *Binding, a *AuthService) {
	leaf := a.Leaf()
	if leaf == nil {
		return
	}
	a.CertificateExpiresAt = leaf.NotAfter
	now := cfg.now()
	switch v := CertificateValidity(leaf.NotBefore, leaf.NotAfter, now); v {
	case Expired:
		b.addProblem("certificate", fmt.Errorf("%w: not after %s (now %s)", ErrCertificateExpired, leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
		a.Auth = AuthNone
	case NotYetValid:
		b.addProblem("certificate", fmt.Errorf("%w: not before %s (now %s)", ErrCertificateNotValid, leaf.NotBefore.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)))
		a.Auth = AuthNone
	}
}

// Validity is where a time lies in a certificate's validity window.
type Validity int

// Validity values.
const (
	Valid Validity = iota
	NotYetValid
	Expired
)

// CertificateValidity is a pure function of the window and now: NotYetValid
// before notBefore, Expired after notAfter, else Valid (both ends inclusive,
// as RFC 5280 defines them).
func CertificateValidity(notBefore, notAfter, now time.Time) Validity {
	switch {
	case now.Before(notBefore):
		return NotYetValid
	case now.After(notAfter):
		return Expired
	}
	return Valid
}

// setTokenURL sets the token endpoint for the chosen auth method.
func setTokenURL(b *Binding, a *AuthService) {
	setTokenURLUnchecked(b, a)
	if a.TokenURL == "" {
		return
	}
	field := "url"
	if a.Kind == KindXSUAA && a.Auth == AuthMTLS {
		field = "certurl"
	}
	if err := checkServiceURL(a.TokenURL); err != nil {
		b.addProblem(field, err)
		a.TokenURL = ""
		a.Auth = AuthNone
	}
}

// checkServiceURL accepts an absolute https URL with a host and without
// user information, and http only to a loopback host (local tests and
// mocks): the client secret or the token must not travel in clear. The
// value itself is never repeated in the error: a misplaced secret must not
// reach a log.
func checkServiceURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("%w: not a URL", ErrMalformed)
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Errorf("%w: want an absolute https URL", ErrMalformed)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%w: the URL has no host", ErrMalformed)
	case u.User != nil:
		return fmt.Errorf("%w: the URL carries user information", ErrMalformed)
	}
	if netx.CheckCredentialURL(u) != nil {
		return fmt.Errorf("%w; want https:// (http:// only to loopback hosts)", ErrPlainHTTP)
	}
	return nil
}

func setTokenURLUnchecked(b *Binding, a *AuthService) {
	switch a.Kind {
	case KindIdentity:
		if a.URL == "" {
			b.addProblem("url", ErrMissingField)
			a.Auth = AuthNone
			return
		}
		a.TokenURL = a.URL + "/oauth2/token"
	case KindXSUAA:
		if a.Auth == AuthMTLS {
			if a.CertURL == "" {
				a.CertURL = deriveCertURL(a.URL)
			}
			if a.CertURL == "" {
				b.addProblem("certurl", fmt.Errorf("%w: credential-type %s needs \"certurl\"", ErrMissingField, displayCT(a.CredentialType)))
				a.Auth = AuthNone
				return
			}
			a.TokenURL = a.CertURL + "/oauth/token"
			return
		}
		if a.URL == "" {
			b.addProblem("url", ErrMissingField)
			a.Auth = AuthNone
			return
		}
		a.TokenURL = a.URL + "/oauth/token"
	}
}

// deriveCertURL inserts "cert." after "authentication." in url's host, the
// way SAP's libraries build the mTLS endpoint when a binding has no certurl.
// It returns "" when the host has no "authentication." label.
func deriveCertURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	const marker = ".authentication."
	h := "." + u.Host
	i := strings.Index(h, marker)
	if i < 0 || strings.Contains(h, ".authentication.cert.") {
		return ""
	}
	u.Host = (h[:i] + marker + "cert." + h[i+len(marker):])[1:]
	return strings.TrimRight(u.String(), "/")
}
