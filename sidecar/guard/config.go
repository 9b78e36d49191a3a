package guard

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Method is an authentication method a rule accepts.
type Method string

// Methods.
const (
	MethodJWT    Method = "jwt"    // Bearer token of the bound xsuaa or IAS instance
	MethodMTLS   Method = "mtls"   // client certificate from the rule's CA bundle
	MethodOAuth1 Method = "oauth1" // RFC 5849 0-legged HMAC-SHA1 signature
)

// Config is the inbound: section of the credbroker configuration (DESIGN.md
// "The inbound guard"). Decode it with go.yaml.in/yaml/v3 (KnownFields) and
// call Validate; New loads the files it names.
//
//	inbound:
//	  listen: 0.0.0.0:8443
//	  tls: {certificate: server}      # omit for plain HTTP behind a platform router
//	  app: http://127.0.0.1:8080
//	  trusted_proxies: [10.0.0.0/8]   # may set X-Forwarded-Proto/-Host (oauth1)
//	  rules:                          # first matching path prefix wins; no match: 403
//	    - {path: /api/, accept: [jwt], binding: my-xsuaa, scopes: [read]}
//	    - {path: /aps/, accept: [oauth1], oauth1: {key_file: /etc/aps/key, secret_file: /etc/aps/secret}}
//	    - {path: /callbacks/, accept: [mtls], ca_file: /etc/controller/ca.crt, subjects: ["CN=controller"]}
type Config struct {
	// Listen is the guard's own listener, HOST:PORT. It is meant to be
	// reachable from outside: it is not restricted to loopback.
	Listen string `yaml:"listen"`
	// TLS makes the listener HTTPS with a certificate from certificates:.
	TLS *TLS `yaml:"tls"`
	// App is the application's local base URL, http://127.0.0.1:PORT.
	App string `yaml:"app"`
	// Rules are tried in order; the first whose path prefix matches decides.
	Rules []Rule `yaml:"rules"`
	// TrustedProxies are IP addresses or CIDR prefixes whose
	// X-Forwarded-Proto and X-Forwarded-Host headers are believed when the
	// OAuth 1.0a signature base URL is rebuilt. Headers from any other peer
	// are ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// XFCC lets mtls rules take the client certificate from a trusted front
	// proxy's X-Forwarded-Client-Cert (see XFCC); nil: never.
	XFCC *XFCC `yaml:"xfcc"`
	// Limits bound what callers can make the guard fetch, cache and buffer
	// before they are authenticated; zero values take the defaults.
	Limits Limits `yaml:"limits"`
}

// Limits of the inbound guard (docs/security.md, "Inbound guard: key sets,
// nonces and bodies are bounded"). Zero means the default.
type Limits struct {
	// KeySets is how many key sets that have verified a token are kept
	// (least recently used dropped first). Default DefaultKeySets.
	KeySets int `yaml:"key_sets"`
	// KeySetsUnproven is how many fetched key sets that have not verified
	// a token yet are kept. Default DefaultKeySetsUnproven.
	KeySetsUnproven int `yaml:"key_sets_unproven"`
	// KeyFailures is how many key set URLs whose fetch failed are
	// remembered. Default DefaultKeyFailures.
	KeyFailures int `yaml:"key_failures"`
	// KeyRetry is how long a key set URL whose fetch failed is not fetched
	// again. Default DefaultKeyRetry.
	KeyRetry time.Duration `yaml:"key_retry"`
	// KeyFetchRate and KeyFetchBurst bound fetches of key sets that have
	// not verified a token (per second, and at once). Defaults
	// DefaultKeyFetchRate, DefaultKeyFetchBurst.
	KeyFetchRate  float64 `yaml:"key_fetch_rate"`
	KeyFetchBurst int     `yaml:"key_fetch_burst"`
	// MaxBody is the largest body an oauth1 rule buffers to check it
	// (bytes); larger ones get 413. Default DefaultMaxBody.
	MaxBody int64 `yaml:"max_body"`
	// BodyTimeout is how long reading such a body may take. Default
	// DefaultBodyTimeout.
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// BodyMemory bounds the bytes all requests together may hold in bodies
	// being buffered; beyond it requests get 503. Default DefaultBodyMemory.
	BodyMemory int64 `yaml:"body_memory"`
}

// Defaults of Limits.
const (
	DefaultKeySets         = 256
	DefaultKeySetsUnproven = 64
	DefaultKeyFailures     = 1024
	DefaultKeyRetry        = 30 * time.Second
	DefaultKeyFetchRate    = 20.0
	DefaultKeyFetchBurst   = 40
	DefaultMaxBody         = 1 << 20
	DefaultBodyTimeout     = 10 * time.Second
	DefaultBodyMemory      = 32 << 20
)

// withDefaults returns l with zero fields set to their defaults.
func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.KeySets, DefaultKeySets)
	def(&l.KeySetsUnproven, DefaultKeySetsUnproven)
	def(&l.KeyFailures, DefaultKeyFailures)
	def(&l.KeyFetchBurst, DefaultKeyFetchBurst)
	if l.KeyRetry == 0 {
		l.KeyRetry = DefaultKeyRetry
	}
	if l.KeyFetchRate == 0 {
		l.KeyFetchRate = DefaultKeyFetchRate
	}
	if l.MaxBody == 0 {
		l.MaxBody = DefaultMaxBody
	}
	if l.BodyTimeout == 0 {
		l.BodyTimeout = DefaultBodyTimeout
	}
	if l.BodyMemory == 0 {
		l.BodyMemory = DefaultBodyMemory
	}
	return l
}

func (l Limits) validate(add func(field, format string, a ...any)) {
	for _, x := range []struct {
		field string
		neg   bool
	}{
		{"key_sets", l.KeySets < 0}, {"key_sets_unproven", l.KeySetsUnproven < 0}, {"key_failures", l.KeyFailures < 0},
		{"key_retry", l.KeyRetry < 0}, {"key_fetch_rate", l.KeyFetchRate < 0}, {"key_fetch_burst", l.KeyFetchBurst < 0},
		{"max_body", l.MaxBody < 0}, {"body_timeout", l.BodyTimeout < 0}, {"body_memory", l.BodyMemory < 0},
	} {
		if x.neg {
			add("limits."+x.field, "must not be negative (0 or absent: the default)")
		}
	}
	d := l.withDefaults()
	if d.BodyMemory < d.MaxBody {
		add("limits.body_memory", "%d is less than max_body (%d): no body could ever be read", d.BodyMemory, d.MaxBody)
	}
}

// TLS configures the listener's server certificate.
type TLS struct {
	// Certificate names an entry of the top-level certificates: list.
	Certificate string `yaml:"certificate"`
}

// Rule is one path prefix and what it accepts.
type Rule struct {
	// Path is a path prefix ("/api/"); "/" matches everything. It is
	// compared case-sensitively with the percent-decoded request path, and
	// must itself be canonical (no ";", backslash, "//" or dot segment).
	Path string `yaml:"path"`
	// AllowPathParams lets requests under this rule carry ";" path
	// parameters (jsessionid=…, matrix parameters), which are otherwise
	// refused with 400. The rule must match both the path as sent and the
	// path with every ";…" parameter removed (how servlet containers read
	// it). Encoded ";" (%3B) and "..;" stay refused.
	AllowPathParams bool `yaml:"allow_path_params"`
	// Accept lists the methods of which any one suffices.
	Accept []Method `yaml:"accept"`

	// Binding names the xsuaa or IAS binding whose tokens are accepted (jwt).
	Binding string `yaml:"binding"`
	// Scopes must all be in the token (jwt). For XSUAA they are given
	// without the xsappname prefix ("read" means "<xsappname>.read").
	Scopes []string `yaml:"scopes"`

	// OAuth1 holds the consumer key and secret files (oauth1).
	OAuth1 *OAuth1 `yaml:"oauth1"`

	// CAFile is a PEM bundle of the CAs client certificates must chain to
	// (mtls). It is reloaded when it changes.
	CAFile string `yaml:"ca_file"`
	// Subjects, when set, is the allowlist of certificate subjects, in the
	// RFC 2253 form Go prints ("CN=controller,O=Acme").
	Subjects []string `yaml:"subjects"`
	// SANs, when set, is the allowlist of subject alternative names (DNS
	// names, URIs, e-mail addresses or IPs); one match suffices.
	SANs []string `yaml:"sans"`
	// CRLFile is a certificate revocation list (PEM or DER) signed by a CA
	// of CAFile; certificates whose serial it lists are refused. Reloaded
	// when it changes.
	CRLFile string `yaml:"crl_file"`
}

// OAuth1 names the files of an OAuth 1.0a consumer key and secret.
type OAuth1 struct {
	KeyFile    string `yaml:"key_file"`
	SecretFile string `yaml:"secret_file"`
}

// FieldError is one problem of the configuration, with the field path
// relative to the inbound: section ("rules[1].oauth1.key_file").
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return "guard: inbound." + e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// FieldErrors is every problem Validate found.
type FieldErrors []*FieldError

func (m FieldErrors) Error() string {
	s := make([]string, len(m))
	for i, e := range m {
		s[i] = e.Error()
	}
	return strings.Join(s, "; ")
}

// Unwrap lets errors.Is and errors.As see every problem.
func (m FieldErrors) Unwrap() []error {
	out := make([]error, len(m))
	for i, e := range m {
		out[i] = e
	}
	return out
}

// Validate checks the section without touching files or bindings. It
// returns nil or FieldErrors (each wrapping ErrConfig).
func (c *Config) Validate() error {
	var errs FieldErrors
	add := func(field, format string, a ...any) {
		errs = append(errs, &FieldError{Field: field, Err: fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...)})
	}
	if c.Listen == "" {
		add("listen", "required (HOST:PORT)")
	} else if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		add("listen", "%q: want HOST:PORT", c.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		add("listen", "%q: bad port", c.Listen)
	}
	if c.TLS != nil && c.TLS.Certificate == "" {
		add("tls.certificate", "required when tls is set (a name from certificates:)")
	}
	if c.App == "" {
		add("app", "required (the app's local URL, e.g. http://127.0.0.1:8080)")
	} else if u, err := url.Parse(c.App); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		add("app", "%q: want an absolute http:// or https:// URL", c.App)
	} else if u.RawQuery != "" || u.Fragment != "" {
		add("app", "%q: must not have a query or fragment", c.App)
	}
	for i, p := range c.TrustedProxies {
		if _, err := parsePrefix(p); err != nil {
			add(fmt.Sprintf("trusted_proxies[%d]", i), "%q: want an IP address or a CIDR prefix", p)
		}
	}
	c.Limits.validate(add)
	if len(c.Rules) == 0 {
		add("rules", "at least one rule is required (requests matching no rule are refused)")
	}
	paths := map[string]int{}
	for i, r := range c.Rules {
		f := fmt.Sprintf("rules[%d]", i)
		switch {
		case r.Path == "":
			add(f+".path", "required (a path prefix such as /api/)")
		case !strings.HasPrefix(r.Path, "/"):
			add(f+".path", "%q: must start with /", r.Path)
		case strings.Contains(r.Path, ";") || pathProblem(r.Path) != "":
			add(f+".path", "%q: not a canonical path (no ;, backslash, // or . and .. segments): no request could match it", r.Path)
		default:
			if j, dup := paths[r.Path]; dup {
				add(f+".path", "%q: also rules[%d] (only the first would ever match)", r.Path, j)
			}
			paths[r.Path] = i
		}
		if len(r.Accept) == 0 {
			add(f+".accept", "required: one or more of jwt, mtls, oauth1")
		}
		has := map[Method]bool{}
		for j, m := range r.Accept {
			switch m {
			case MethodJWT, MethodMTLS, MethodOAuth1:
				if has[m] {
					add(fmt.Sprintf("%s.accept[%d]", f, j), "%q listed twice", m)
				}
				has[m] = true
			default:
				add(fmt.Sprintf("%s.accept[%d]", f, j), "%q: want jwt, mtls or oauth1", m)
			}
		}
		if has[MethodJWT] && r.Binding == "" {
			add(f+".binding", "required for accept jwt (the xsuaa or IAS binding whose tokens are accepted)")
		}
		if !has[MethodJWT] {
			if r.Binding != "" {
				add(f+".binding", "only used with accept jwt")
			}
			if len(r.Scopes) > 0 {
				add(f+".scopes", "only used with accept jwt")
			}
		}
		for j, s := range r.Scopes {
			if s == "" || strings.ContainsAny(s, " \t") {
				add(fmt.Sprintf("%s.scopes[%d]", f, j), "%q: a scope is one non-empty word", s)
			}
		}
		if has[MethodOAuth1] {
			switch {
			case r.OAuth1 == nil:
				add(f+".oauth1", "required for accept oauth1 ({key_file, secret_file})")
			default:
				if r.OAuth1.KeyFile == "" {
					add(f+".oauth1.key_file", "required for accept oauth1")
				}
				if r.OAuth1.SecretFile == "" {
					add(f+".oauth1.secret_file", "required for accept oauth1")
				}
			}
		} else if r.OAuth1 != nil {
			add(f+".oauth1", "only used with accept oauth1")
		}
		if has[MethodMTLS] {
			if r.CAFile == "" {
				add(f+".ca_file", "required for accept mtls (the CA bundle client certificates must chain to)")
			}
			if c.TLS == nil && c.XFCC == nil {
				add(f+".accept", "mtls needs a TLS listener (inbound.tls) or a front proxy's certificate (inbound.xfcc)")
			}
		} else {
			for _, x := range []struct {
				field string
				set   bool
			}{{"ca_file", r.CAFile != ""}, {"subjects", len(r.Subjects) > 0}, {"sans", len(r.SANs) > 0}, {"crl_file", r.CRLFile != ""}} {
				if x.set {
					add(f+"."+x.field, "only used with accept mtls")
				}
			}
		}
	}
	if c.XFCC != nil {
		c.XFCC.validate(c.TLS != nil, c.hasMTLS(), add)
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

func (c *Config) hasMTLS() bool {
	for _, r := range c.Rules {
		for _, m := range r.Accept {
			if m == MethodMTLS {
				return true
			}
		}
	}
	return false
}

// JWTBindings returns the binding names jwt rules refer to, each once, so
// the caller can check they exist and are xsuaa or IAS bindings.
func (c *Config) JWTBindings() []string {
	var out []string
	seen := map[string]bool{}
	for _, r := range c.Rules {
		for _, m := range r.Accept {
			if m == MethodJWT && r.Binding != "" && !seen[r.Binding] {
				seen[r.Binding] = true
				out = append(out, r.Binding)
			}
		}
	}
	return out
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
