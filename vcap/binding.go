package vcap

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"
)

// Source names where bindings came from, as Binding.Source and errors print it.
const (
	SourceVCAPServices = "VCAP_SERVICES"
)

// Binding is one service binding, whatever layout it came from.
type Binding struct {
	// Name is the binding name (VCAP "name", or the directory name).
	Name string
	// Label is the service offering ("xsuaa", "identity", …). For directory
	// bindings it is the "label" entry, else the "type" entry.
	Label string
	// Plan is the service plan ("application", "broker", …).
	Plan string
	// Tags are the binding's tags.
	Tags []string
	// InstanceName and InstanceGUID identify the service instance.
	InstanceName string
	InstanceGUID string
	// Provider and Type are the servicebinding.io entries (Type defaults to
	// Label for VCAP bindings).
	Provider string
	Type     string
	// Source says where the binding came from: "VCAP_SERVICES",
	// "file /x/y.json" or "dir /bindings/name".
	Source string
	// Path is the file (VCAP file sources) or the binding directory
	// (directory sources) the binding was read from, for callers that watch
	// it for rotation; "" for the VCAP_SERVICES variable.
	Path string
	// Credentials are the raw credentials, behind a redacting type.
	Credentials Credentials
	// Auth is the typed view for auth services (xsuaa, identity); nil for
	// other services.
	Auth *AuthService
	// Problems are human-readable reasons the binding is not usable (empty
	// when it is). They never contain a secret. Err returns them as typed errors.
	Problems []string

	errs        []*Error
	viaDir      bool // read from a directory without .metadata (type may be inferred)
	viaMetadata bool // read from a service-operator .metadata layout
}

// Err returns the binding's problems as one error (each an *Error naming the
// source, binding and field), or nil when the binding is usable.
func (b *Binding) Err() error {
	if b == nil || len(b.errs) == 0 {
		return nil
	}
	if len(b.errs) == 1 {
		return b.errs[0]
	}
	return &MultiError{Errs: append([]*Error(nil), b.errs...)}
}

// Errors returns the typed problems (copy).
func (b *Binding) Errors() []*Error { return append([]*Error(nil), b.errs...) }

// HasTag reports whether the binding carries tag (case-insensitive).
func (b *Binding) HasTag(tag string) bool {
	for _, t := range b.Tags {
		if strings.EqualFold(t, tag) {
			return true
		}
	}
	return false
}

func (b *Binding) addProblem(field string, err error) {
	e := &Error{Source: b.Source, Binding: b.Name, Field: field, Err: err}
	b.errs = append(b.errs, e)
	b.Problems = append(b.Problems, e.detail())
}

// LogValue lets a *Binding be logged safely: identity only, never credentials.
func (b *Binding) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("name", b.Name), slog.String("label", b.Label), slog.String("plan", b.Plan),
		slog.String("source", b.Source),
	}
	if b.Auth != nil {
		attrs = append(attrs, slog.String("auth", string(b.Auth.Auth)), slog.String("token_url", b.Auth.TokenURL))
	}
	return slog.GroupValue(attrs...)
}

// ServiceKind is the kind of auth service behind a binding.
type ServiceKind string

// Auth service kinds.
const (
	KindXSUAA    ServiceKind = "xsuaa"
	KindIdentity ServiceKind = "identity" // SAP Cloud Identity Services (IAS)
)

// AuthMethod is how credbroker authenticates to the token endpoint.
type AuthMethod string

// Auth methods (the "auth" column of `credbroker bindings`).
const (
	AuthSecret AuthMethod = "secret" // client id + secret to URL
	AuthMTLS   AuthMethod = "mtls"   // certificate + key as TLS client certificate to CertURL
	AuthNone   AuthMethod = "none"   // no usable credential (see Binding.Problems)
)

// Credential types as bindings spell them (lower-cased).
const (
	CredInstanceSecret = "instance-secret"
	CredBindingSecret  = "binding-secret"
	CredX509           = "x509"
	CredX509Generated  = "x509_generated" // IAS
	CredX509Provided   = "x509_provided"  // IAS, self-managed key
	CredX509Attested   = "x509_attested"  // IAS, platform-attested (e.g. SPIFFE) certificate
	CredSecret         = "secret"         // IAS
	CredNone           = "none"           // IAS "NONE": the binding carries no credential (hide-secret)
)

// AuthService is the typed view of an xsuaa or identity (IAS) binding.
type AuthService struct {
	Kind         ServiceKind
	ClientID     string
	ClientSecret Secret
	// URL is the tenant's auth server URL ("url").
	URL string
	// CertURL is the mTLS variant ("certurl"; derived for xsuaa x509
	// bindings that lack it, see TokenURL).
	CertURL   string
	UAADomain string
	// IdentityZone, IdentityZoneID, TenantID, AppTID: the provider tenant
	// ("identityzone", "identityzoneid", "tenantid", "app_tid").
	IdentityZone   string
	IdentityZoneID string
	TenantID       string
	AppTID         string
	// Domains are the IAS domains ("domains"; xsuaa: [uaadomain]).
	Domains   []string
	XSAppName string
	// CredentialType is "credential-type" as the binding says, lower-cased,
	// "" when absent.
	CredentialType string
	// Certificates is the parsed certificate chain, leaf first; CertificatePEM
	// the same chain as normalised PEM (public material).
	Certificates   []*x509.Certificate
	CertificatePEM []byte
	// Key is the private key (nil when absent). It prints as a mask.
	Key *PrivateKey
	// CertificateExpiresAt is the leaf's NotAfter, or the binding's
	// "certificate_expires_at" when no certificate could be parsed; zero when
	// neither is known.
	CertificateExpiresAt time.Time
	// Auth is what credbroker will use; TokenURL the endpoint it will call.
	Auth     AuthMethod
	TokenURL string
}

// Leaf returns the leaf certificate, or nil.
func (a *AuthService) Leaf() *x509.Certificate {
	if a == nil || len(a.Certificates) == 0 {
		return nil
	}
	return a.Certificates[0]
}

// TLSCertificate returns the binding's certificate chain and key as a
// tls.Certificate for mTLS. It fails with ErrNoCertificate or ErrNoKey.
func (a *AuthService) TLSCertificate() (tls.Certificate, error) {
	if a == nil || len(a.Certificates) == 0 {
		return tls.Certificate{}, &Error{Field: "certificate", Err: ErrNoCertificate}
	}
	if a.Key == nil {
		return tls.Certificate{}, &Error{Field: "key", Err: ErrNoKey}
	}
	c := tls.Certificate{PrivateKey: a.Key.Signer(), Leaf: a.Certificates[0]}
	for _, x := range a.Certificates {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// Credentials are a binding's raw credentials. They print as key names with
// masked values; Reveal returns a copy of the values.
type Credentials struct {
	m map[string]any
}

// NewCredentials wraps a decoded credentials object (it is copied shallowly).
func NewCredentials(m map[string]any) Credentials {
	c := Credentials{m: make(map[string]any, len(m))}
	for k, v := range m {
		c.m[k] = v
	}
	return c
}

// Len returns the number of entries.
func (c Credentials) Len() int { return len(c.m) }

// Keys returns the entry names, sorted (names are not secret).
func (c Credentials) Keys() []string {
	ks := make([]string, 0, len(c.m))
	for k := range c.m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Has reports whether the entry exists.
func (c Credentials) Has(key string) bool { _, ok := c.m[key]; return ok }

// Get returns a string entry behind Secret; numbers and booleans are
// formatted, objects and arrays are returned as JSON text. ok is false when
// the entry is absent or null.
func (c Credentials) Get(key string) (s Secret, ok bool) {
	v, ok := c.m[key]
	if !ok || v == nil {
		return "", false
	}
	switch v := v.(type) {
	case string:
		return Secret(v), true
	case json.Number:
		return Secret(v.String()), true
	case float64, bool:
		return Secret(fmt.Sprint(v)), true
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return "", false
		}
		return Secret(b), true
	}
}

// Reveal returns a shallow copy of the raw values. Never print it.
func (c Credentials) Reveal() map[string]any {
	m := make(map[string]any, len(c.m))
	for k, v := range c.m {
		m[k] = v
	}
	return m
}

func (c Credentials) masked() string {
	ks := c.Keys()
	parts := make([]string, len(ks))
	for i, k := range ks {
		parts[i] = k + ":" + Mask
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// GoString returns the key names with masked values.
func (c Credentials) GoString() string { return "vcap.Credentials" + c.masked() }

// Format prints key names with masked values, for every verb.
func (c Credentials) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		_, _ = f.Write([]byte(c.GoString()))
		return
	}
	_, _ = f.Write([]byte(c.masked()))
}

// MarshalJSON encodes {"key":"[REDACTED]",…}.
func (c Credentials) MarshalJSON() ([]byte, error) {
	m := make(map[string]string, len(c.m))
	for k := range c.m {
		m[k] = Mask
	}
	return json.Marshal(m)
}

// MarshalText encodes the masked form.
func (c Credentials) MarshalText() ([]byte, error) { return []byte(c.masked()), nil }

// LogValue prints the key names only.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.masked()) }
