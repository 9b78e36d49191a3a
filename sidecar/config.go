package sidecar

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/internal/httpx"
	"github.com/credbroker/credbroker/internal/netx"
	"github.com/credbroker/credbroker/sidecar/guard"
)

// Auth types of a route.
const (
	AuthBearer = "bearer"
	AuthMTLS   = "mtls"
	AuthOAuth1 = "oauth1"
	AuthNone   = "none"
)

// Grants a bearer route may use.
const (
	GrantClientCredentials = "client_credentials"
	// GrantJWTBearer exchanges the user token the app sent (its
	// Authorization: Bearer header) for a token of the route's binding.
	GrantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
)

// Defaults applied by ParseConfig to keys that are absent.
const (
	DefaultListen              = "127.0.0.1:8411"
	DefaultAdminListen         = "127.0.0.1:9411"
	DefaultDrainTimeout        = 20 * time.Second
	DefaultDialTimeout         = 10 * time.Second
	DefaultTLSHandshakeTimeout = 10 * time.Second
	DefaultResponseHeader      = 60 * time.Second
	DefaultIdleConnTimeout     = 90 * time.Second
	DefaultMaxIdleConnsPerHost = 256
	DefaultMaxSignedBody       = 10 << 20
	// Client connection limits per listener (max_connections) and the
	// keep-alive idle timeout of client connections (client_idle_timeout).
	DefaultMaxProxyConnections   = 512
	DefaultMaxAdminConnections   = 64
	DefaultMaxInboundConnections = 1024
	DefaultClientIdleTimeout     = 120 * time.Second
	// DefaultClientHeaderTimeout bounds a client's request head, from its
	// first byte to its end (client_header_timeout).
	DefaultClientHeaderTimeout = 10 * time.Second
	// DefaultMaxTokenKeys bounds the distinct token cache keys (scope sets
	// × tenants) per binding.
	DefaultMaxTokenKeys = 1000
)

// Config is the sidecar configuration (the YAML file of `credbroker run`;
// see DESIGN.md "The egress proxy"). The zero value of every optional key
// means its default.
type Config struct {
	// Listen is the proxy and token API address (loopback by default).
	Listen string `yaml:"listen"`
	// AdminListen serves /healthz, /readyz, /metrics and /status.
	AdminListen string `yaml:"admin_listen"`
	// AllowNonLoopback permits listen addresses beyond loopback.
	AllowNonLoopback bool `yaml:"allow_non_loopback"`
	// CAFile holds extra PEM CA certificates trusted (with the system pool)
	// for upstreams, auth servers and connectors.
	CAFile string `yaml:"ca_file"`
	// Resolve are dial overrides "PATTERN=ADDR" (like curl --resolve).
	Resolve []string `yaml:"resolve"`
	// DrainTimeout bounds how long SIGTERM waits for in-flight requests.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// Timeouts of upstream calls.
	Timeouts Timeouts `yaml:"timeouts"`
	// MaxIdleConnsPerHost is the upstream keep-alive pool size per host.
	MaxIdleConnsPerHost int `yaml:"max_idle_conns_per_host"`
	// MaxSignedBody bounds the request body an oauth1 route buffers to
	// compute oauth_body_hash (bytes; larger bodies get 413).
	MaxSignedBody int64 `yaml:"max_signed_body"`
	// AllowedHosts are the DNS names (exact, or "*.suffix") the proxy
	// listener (token API, /<route>/ requests) and admin accept in the Host
	// header besides localhost and IP literals (docs/security.md).
	AllowedHosts []string `yaml:"allowed_hosts"`
	// MaxConnections caps the open client connections per listener.
	MaxConnections MaxConnections `yaml:"max_connections"`
	// ClientIdleTimeout closes client keep-alive connections idle this long.
	ClientIdleTimeout time.Duration `yaml:"client_idle_timeout"`
	// ClientHeaderTimeout is the time a client has to send a request head,
	// from its first byte to its end; exceeded: 408 header-timeout.
	ClientHeaderTimeout time.Duration `yaml:"client_header_timeout"`
	// MaxTokenKeys bounds the distinct token cache keys (scope set, tenant,
	// grant) each binding holds; a request for a new key beyond it gets 429
	// token-key-limit (token API and bearer routes), keys already cached
	// keep working.
	MaxTokenKeys int `yaml:"max_token_keys"`
	// TokenOutageMargin: while the token service is unavailable a cached
	// token is served until its expiry minus this margin (0: the default,
	// tokenclient.DefaultOutageMargin; docs/reliability.md).
	TokenOutageMargin time.Duration `yaml:"token_outage_margin"`
	// TokenInvalidationInterval is the least time between two drops of a
	// token an upstream rejected, per binding and tenant (0: the default,
	// tokenclient.DefaultInvalidationInterval; routes' reauth:).
	TokenInvalidationInterval time.Duration `yaml:"token_invalidation_interval"`
	// TokenCacheDir, when set, keeps the tokens still valid in files under
	// its credbroker-tokens subdirectory and loads them at start
	// (docs/reliability.md; opt-in).
	TokenCacheDir string `yaml:"token_cache_dir"`
	// TokenAPI configures GET /.credbroker/v1/token.
	TokenAPI TokenAPI `yaml:"token_api"`
	// Routes are the egress routes.
	Routes []Route `yaml:"routes"`
	// Certificates are the client certificates routes (and the inbound
	// guard) refer to by name.
	Certificates []Certificate `yaml:"certificates"`

	// Inbound is the optional inbound guard in front of the app (package
	// sidecar/guard owns its format).
	Inbound *guard.Config `yaml:"inbound"`

	// Destinations configures the cache of destination routes.
	Destinations DestinationsConfig `yaml:"destinations"`

	// Tracing mirrors the OTEL_* variables, which win over its keys
	// (docs/observability.md); read at start, not on reload.
	Tracing TracingConfig `yaml:"tracing"`
	// AccessLog configures the per-request access log, separate from the
	// diagnostic log (docs/observability.md).
	AccessLog AccessLog `yaml:"access_log"`

	// source names where the config came from, for messages.
	source string
	// lines maps field paths ("routes[1].auth") to their line.
	lines map[string]int
	// bindingNames are the bindings that exist, for "did you mean" (set by
	// ValidateBindings).
	bindingNames []string
}

// Timeouts of upstream calls. Zero means the default.
type Timeouts struct {
	Dial           time.Duration `yaml:"dial"`
	TLSHandshake   time.Duration `yaml:"tls_handshake"`
	ResponseHeader time.Duration `yaml:"response_header"`
	IdleConn       time.Duration `yaml:"idle_conn"`
}

// MaxConnections caps the open client connections of each listener; a
// connection beyond the cap is accepted and closed at once (a 503 written
// first on plain-HTTP listeners). Zero means the default.
type MaxConnections struct {
	Proxy   int `yaml:"proxy"`
	Admin   int `yaml:"admin"`
	Inbound int `yaml:"inbound"`
}

// TokenAPI configures the token endpoint on the proxy listener. It is off
// unless Bindings names the bindings it may hand out tokens for ("*" for
// every auth binding): any local process can ask it for a token.
type TokenAPI struct {
	Bindings []string `yaml:"bindings"`
}

// Allows reports whether the token API serves binding.
func (t TokenAPI) Allows(binding string) bool {
	for _, b := range t.Bindings {
		if b == "*" || b == binding {
			return true
		}
	}
	return false
}

// Route maps /<name>/… (and, in forward-proxy mode, http://<upstream host>/…)
// to Upstream with a credential.
type Route struct {
	Name     string    `yaml:"name"`
	Upstream string    `yaml:"upstream"`
	Auth     RouteAuth `yaml:"auth"`
	// AllowCrossSite accepts requests a browser marked Sec-Fetch-Site:
	// cross-site (refused by default); RefuseOrigin refuses requests that
	// carry an Origin header (forwarded by default).
	AllowCrossSite bool `yaml:"allow_cross_site"`
	RefuseOrigin   bool `yaml:"refuse_origin"`
	// AllowPlainHTTP lets a route add its credential to an http:// upstream
	// that is not loopback (an in-cluster service such as the Connectivity
	// proxy); without it such a route is refused.
	AllowPlainHTTP bool `yaml:"allow_plain_http"`
	// Reauth says what the route does when the upstream rejects its token
	// (docs/reliability.md).
	Reauth RouteReauth `yaml:"reauth"`
}

// SendsCredential reports whether the route adds a credential to what it
// forwards (a token, a signature or a client certificate).
func (r Route) SendsCredential() bool {
	return r.Auth.Type == AuthBearer || r.Auth.Type == AuthOAuth1 || r.Auth.Type == AuthMTLS || r.Auth.Binding != ""
}

// PlainHTTPRoutes names the routes that add a credential to an http://
// upstream (loopback, or allowed with allow_plain_http): the startup log
// lists them.
func (c *Config) PlainHTTPRoutes() []string {
	var out []string
	for _, r := range c.Routes {
		if u, err := url.Parse(r.Upstream); err == nil && u.Scheme == "http" && r.SendsCredential() {
			out = append(out, r.Name)
		}
	}
	return out
}

// RouteAuth says which credential a route adds.
type RouteAuth struct {
	// Type is bearer, mtls, oauth1 or none.
	Type string `yaml:"type"`
	// Binding is the auth binding tokens come from (bearer; optional for
	// mtls, which then also sends a bearer token).
	Binding string   `yaml:"binding"`
	Scopes  []string `yaml:"scopes"`
	// Grant is client_credentials (default) or jwt-bearer (the app's own
	// Bearer token is exchanged).
	Grant string `yaml:"grant"`
	// Tenant is a fixed subscriber subdomain; TenantHeader a request header
	// carrying it (removed before forwarding; it wins over Tenant).
	Tenant       string `yaml:"tenant"`
	TenantHeader string `yaml:"tenant_header"`
	// Certificate names an entry of certificates (mtls).
	Certificate string `yaml:"certificate"`
	// KeyFile and SecretFile hold the OAuth 1.0a consumer key and secret.
	KeyFile    string `yaml:"key_file"`
	SecretFile string `yaml:"secret_file"`
	// ReplaceAppCredentials (default true) removes an Authorization header
	// the app sent and adds the route's credential; false forwards the app's
	// own Authorization untouched and adds nothing when there is one. Routes
	// that add no Authorization (none, mtls without binding) always pass the
	// app's header through.
	ReplaceAppCredentials *bool `yaml:"replace_app_credentials"`
	// Destination routes (docs/destinations.md): the destination's name,
	// the connectivity binding for OnPremise destinations, the header that
	// carries the user's JWT (default Authorization: Bearer) and the tenant
	// mode (subscriber-first, subscriber-only, provider-only).
	Destination  string `yaml:"destination"`
	Connectivity string `yaml:"connectivity"`
	UserToken    string `yaml:"user_token"`
	TenantMode   string `yaml:"tenant_mode"`
	// PrincipalExchange names an xsuaa or IAS binding: for principal
	// propagation the user's token is first exchanged (jwt-bearer) for a
	// token of that binding. Default: the user's token is forwarded.
	PrincipalExchange string `yaml:"principal_exchange"`
}

// Replace reports the effective replace_app_credentials.
func (a RouteAuth) Replace() bool { return a.ReplaceAppCredentials == nil || *a.ReplaceAppCredentials }

// Certificate is a client certificate kept alive by certwatch: from a
// directory (tls.crt, tls.key, ca.crt, connection.json), paired at start
// from a one-time token URL file, renewed through the connector; or the
// certificate and key of an x509 binding.
type Certificate struct {
	Name           string `yaml:"name"`
	Dir            string `yaml:"dir"`
	PairingURLFile string `yaml:"pairing_url_file"`
	Renew          bool   `yaml:"renew"`
	// KeyType is the key algorithm for pairing: rsa2048, rsa4096 or
	// ecdsa-p256 (default: what the connector asks for, else rsa2048).
	// Renewals keep the algorithm of the current key.
	KeyType string `yaml:"key_type"`
	Binding string `yaml:"binding"`
	// RuntimeDir keeps the second-phase certificate of a two-phase connector:
	// when the central connector's management info carries runtime.tokenUrl,
	// credbroker pairs with it into RuntimeDir (once, when it holds no valid
	// pair) and keeps that certificate alive too, under the name
	// RuntimeName() ("<name>-runtime").
	RuntimeDir string `yaml:"runtime_dir"`
	// Persist keeps the pair and connection.json in a Kubernetes Secret as
	// well, shared by replicas (persist_config.go); nil: off.
	Persist *CertificatePersist `yaml:"persist"`
}

// RuntimeName is the name routes use for the second-phase certificate.
func (c Certificate) RuntimeName() string { return c.Name + "-runtime" }

// Source returns where the configuration came from.
func (c *Config) Source() string { return c.source }

// ParseConfig decodes a YAML configuration strictly (an unknown key is an
// error naming the key and its line), applies defaults and checks what can
// be checked without bindings (Validate checks the rest). source names the
// file in messages ("config /etc/credbroker.yaml"). The error, when not nil,
// is ConfigErrors holding every problem found (see ParseConfigAll).
func ParseConfig(data []byte, source string) (*Config, error) {
	cfg, errs := ParseConfigAll(data, source)
	if len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// ParseConfigAll is ParseConfig that keeps going: it returns every problem
// of the file at once — unknown keys (with the key it probably meant and the
// keys that exist there), values of the wrong type, and everything the
// checks find in what did decode — sorted by line. The configuration is
// returned as far as it decoded (nil only for malformed YAML), so that the
// bindings, files and CA bundles it names can be checked too (credbroker
// validate); it must not be served when errs is not empty.
func ParseConfigAll(data []byte, source string) (*Config, ConfigErrors) {
	cfg := &Config{source: source}
	var errs ConfigErrors
	// Paths that had a type error (their checks would only repeat it), and
	// the keys an unknown key probably meant (a "missing value" there is
	// the same mistake).
	bad := map[string]bool{}
	suggested := map[string]bool{}
	if len(bytes.TrimSpace(data)) > 0 {
		var root yaml.Node
		if err := yaml.Unmarshal(data, &root); err != nil {
			return nil, syntaxError(source, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return nil, syntaxError(source, err)
			}
			found := valueErrors(&root, reflect.TypeOf(*cfg), "", source)
			if len(found) == 0 { // the library saw a problem the walk did not
				found = ConfigErrors{{Source: source, Err: fmt.Errorf("%w: a value of the wrong type", ErrInvalidValue)}}
			}
			for _, e := range found {
				if e.Field != "" {
					bad[e.Field] = true
				}
				errs = append(errs, e)
			}
		}
		var extra yaml.Node
		if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
			errs = append(errs, &ConfigError{Source: source, Line: extra.Line, Err: fmt.Errorf("%w: more than one YAML document", ErrConfigSyntax)})
		}
		cfg.lines = map[string]int{}
		indexLines(&root, "", cfg.lines)
		errs = append(errs, unknownKeys(&root, reflect.TypeOf(*cfg), "", source, suggested)...)
	}
	cfg.applyDefaults()
	for _, e := range cfg.check() {
		if underAny(e.Field, bad) || suggested[e.Field] {
			continue
		}
		errs = append(errs, e)
	}
	sortByLine(errs)
	return cfg, errs
}

// underAny reports whether field is one of paths or inside one of them.
func underAny(field string, paths map[string]bool) bool {
	for f := field; f != ""; {
		if paths[f] {
			return true
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			return false
		}
		f = f[:i]
	}
	return false
}

// sortByLine orders problems by line; those without a line keep their
// order after the others.
func sortByLine(errs ConfigErrors) {
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i].Line, errs[j].Line
		if a == 0 || b == 0 {
			return a != 0 && b == 0
		}
		return a < b
	})
}

// indexLines records the line of every mapping key and sequence item under
// its dotted path ("routes[0].auth.type").
func indexLines(n *yaml.Node, path string, out map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			indexLines(c, path, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if path != "" {
				p = path + "." + p
			}
			out[p] = n.Content[i].Line
			indexLines(n.Content[i+1], p, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			out[p] = c.Line
			indexLines(c, p, out)
		}
	}
}

// line returns the line of field, or of its closest parent that has one.
func (c *Config) line(field string) int {
	for f := field; f != ""; {
		if l, ok := c.lines[f]; ok {
			return l
		}
		i := strings.LastIndexAny(f, ".[")
		if i < 0 {
			break
		}
		f = f[:i]
	}
	return 0
}

// Problem returns a *ConfigError about field (a dotted path such as
// "certificates[0].dir") of the route or certificate name, with the line
// of the field (or of its closest parent) in the file. err must carry no
// secret.
func (c *Config) Problem(field, name string, err error) *ConfigError {
	return &ConfigError{Source: c.source, Line: c.line(field), Field: field, Name: name, Err: err}
}

func (c *Config) errorf(field, name string, sentinel error, format string, a ...any) *ConfigError {
	err := sentinel
	if format != "" {
		err = fmt.Errorf("%w: "+format, append([]any{sentinel}, a...)...)
	}
	return &ConfigError{Source: c.source, Line: c.line(field), Field: field, Name: name, Err: err}
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.AdminListen == "" {
		c.AdminListen = DefaultAdminListen
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	t := &c.Timeouts
	for _, d := range []struct {
		p   *time.Duration
		def time.Duration
	}{{&t.Dial, DefaultDialTimeout}, {&t.TLSHandshake, DefaultTLSHandshakeTimeout}, {&t.ResponseHeader, DefaultResponseHeader}, {&t.IdleConn, DefaultIdleConnTimeout}} {
		if *d.p == 0 {
			*d.p = d.def
		}
	}
	if c.MaxIdleConnsPerHost == 0 {
		c.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if c.MaxSignedBody == 0 {
		c.MaxSignedBody = DefaultMaxSignedBody
	}
	for _, d := range []struct {
		p   *int
		def int
	}{{&c.MaxConnections.Proxy, DefaultMaxProxyConnections}, {&c.MaxConnections.Admin, DefaultMaxAdminConnections}, {&c.MaxConnections.Inbound, DefaultMaxInboundConnections}} {
		if *d.p == 0 {
			*d.p = d.def
		}
	}
	if c.ClientIdleTimeout == 0 {
		c.ClientIdleTimeout = DefaultClientIdleTimeout
	}
	if c.ClientHeaderTimeout == 0 {
		c.ClientHeaderTimeout = DefaultClientHeaderTimeout
	}
	if c.MaxTokenKeys == 0 {
		c.MaxTokenKeys = DefaultMaxTokenKeys
	}
	for i := range c.Routes {
		if c.Routes[i].Auth.Type == AuthBearer && c.Routes[i].Auth.Grant == "" {
			c.Routes[i].Auth.Grant = GrantClientCredentials
		}
		c.Routes[i].Auth.Grant = canonicalGrant(c.Routes[i].Auth.Grant)
	}
}

// canonicalGrant maps the spellings of a grant (client_credentials or
// client-credentials, jwt-bearer, jwt_bearer or its URN, in any case) to
// the names the sidecar uses; anything else is returned as given, for check
// to refuse.
func canonicalGrant(g string) string {
	switch strings.ReplaceAll(strings.ToLower(strings.TrimSpace(g)), "_", "-") {
	case "client-credentials":
		return GrantClientCredentials
	case "jwt-bearer", "urn:ietf:params:oauth:grant-type:jwt-bearer":
		return GrantJWTBearer
	}
	return g
}

// Override sets the listen addresses and the non-loopback permission from
// flags (a non-empty value wins over the file) and re-checks them.
func (c *Config) Override(listen, adminListen string, allowNonLoopback bool) error {
	if listen != "" {
		c.Listen = listen
		delete(c.lines, "listen")
	}
	if adminListen != "" {
		c.AdminListen = adminListen
		delete(c.lines, "admin_listen")
	}
	if allowNonLoopback {
		c.AllowNonLoopback = true
	}
	var errs ConfigErrors
	errs = c.checkListen(errs)
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// routeName is what may follow the first slash of a proxy path.
var routeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._~-]*$`)

// check validates everything that does not need the bindings.
func (c *Config) check() ConfigErrors {
	var errs ConfigErrors
	errs = c.checkListen(errs)
	errs = c.checkTracing(errs)
	if c.DrainTimeout < 0 {
		errs = append(errs, c.errorf("drain_timeout", "", ErrInvalidValue, "must not be negative"))
	}
	if c.MaxIdleConnsPerHost < 0 {
		errs = append(errs, c.errorf("max_idle_conns_per_host", "", ErrInvalidValue, "must not be negative"))
	}
	if c.MaxSignedBody < 0 {
		errs = append(errs, c.errorf("max_signed_body", "", ErrInvalidValue, "must not be negative"))
	}
	for i, h := range c.AllowedHosts {
		if !validAllowedHost(h) {
			errs = append(errs, c.errorf(fmt.Sprintf("allowed_hosts[%d]", i), "", ErrInvalidValue, "%q: want a DNS name or *.suffix, without port or scheme", h))
		}
	}
	for _, m := range []struct {
		f string
		n int
	}{{"max_connections.proxy", c.MaxConnections.Proxy}, {"max_connections.admin", c.MaxConnections.Admin}, {"max_connections.inbound", c.MaxConnections.Inbound}} {
		if m.n < 0 {
			errs = append(errs, c.errorf(m.f, "", ErrInvalidValue, "must not be negative"))
		}
	}
	if c.ClientIdleTimeout < 0 {
		errs = append(errs, c.errorf("client_idle_timeout", "", ErrInvalidValue, "must not be negative"))
	}
	if c.ClientHeaderTimeout < 0 {
		errs = append(errs, c.errorf("client_header_timeout", "", ErrInvalidValue, "must not be negative"))
	}
	if c.MaxTokenKeys < 0 {
		errs = append(errs, c.errorf("max_token_keys", "", ErrInvalidValue, "must not be negative"))
	}
	if c.TokenOutageMargin < 0 {
		errs = append(errs, c.errorf("token_outage_margin", "", ErrInvalidValue, "must not be negative"))
	}
	if c.TokenInvalidationInterval < 0 {
		errs = append(errs, c.errorf("token_invalidation_interval", "", ErrInvalidValue, "must not be negative"))
	}
	errs = c.checkAccessLog(errs)
	for _, r := range c.Resolve {
		if _, _, ok := strings.Cut(r, "="); !ok {
			errs = append(errs, c.errorf("resolve", "", ErrInvalidValue, "%q: want PATTERN=ADDR", r))
		}
	}
	certs := map[string]int{}
	for i, ct := range c.Certificates {
		f := fmt.Sprintf("certificates[%d]", i)
		switch {
		case ct.Name == "":
			errs = append(errs, c.errorf(f+".name", "", ErrMissingValue, ""))
		default:
			if j, dup := certs[ct.Name]; dup {
				errs = append(errs, c.errorf(f+".name", ct.Name, ErrDuplicateName, "also certificates[%d]", j))
			}
			certs[ct.Name] = i
		}
		switch {
		case ct.Dir == "" && ct.Binding == "":
			errs = append(errs, c.errorf(f, ct.Name, ErrMissingValue, "want dir or binding"))
		case ct.Dir != "" && ct.Binding != "":
			errs = append(errs, c.errorf(f, ct.Name, ErrInvalidValue, "dir and binding are exclusive"))
		case ct.Binding != "" && (ct.Renew || ct.PairingURLFile != "" || ct.RuntimeDir != ""):
			errs = append(errs, c.errorf(f, ct.Name, ErrInvalidValue, "renew, pairing_url_file and runtime_dir need dir (a binding's certificate is rotated by the platform)"))
		case ct.RuntimeDir != "" && filepath.Clean(ct.RuntimeDir) == filepath.Clean(ct.Dir):
			errs = append(errs, c.errorf(f+".runtime_dir", ct.Name, ErrInvalidValue, "must differ from dir"))
		}
		switch strings.ToLower(strings.ReplaceAll(ct.KeyType, "-", "")) {
		case "", "rsa", "rsa2048", "rsa4096", "ecdsa", "p256", "ecdsap256":
		default:
			errs = append(errs, c.errorf(f+".key_type", ct.Name, ErrInvalidValue, "%q: want rsa2048, rsa4096 or ecdsa-p256", ct.KeyType))
		}
		if ct.KeyType != "" && ct.PairingURLFile == "" && ct.RuntimeDir == "" {
			errs = append(errs, c.errorf(f+".key_type", ct.Name, ErrInvalidValue, "key_type is for pairing: set pairing_url_file or runtime_dir"))
		}
		errs = c.checkPersist(errs, f, &c.Certificates[i])
		if ct.RuntimeDir != "" && ct.Name != "" {
			if j, dup := certs[ct.RuntimeName()]; dup {
				errs = append(errs, c.errorf(f+".runtime_dir", ct.Name, ErrDuplicateName, "%q is also certificates[%d]", ct.RuntimeName(), j))
			}
			certs[ct.RuntimeName()] = i
		}
	}
	if c.Inbound != nil {
		if err := c.Inbound.Validate(); err != nil {
			var fes guard.FieldErrors
			if errors.As(err, &fes) {
				for _, fe := range fes {
					f := "inbound"
					if fe.Field != "" {
						f += "." + fe.Field
					}
					errs = append(errs, &ConfigError{Source: c.source, Line: c.line(f), Field: f, Err: fe.Err})
				}
			} else {
				errs = append(errs, &ConfigError{Source: c.source, Line: c.line("inbound"), Field: "inbound", Err: err})
			}
		}
		if t := c.Inbound.TLS; t != nil && t.Certificate != "" {
			if _, ok := certs[t.Certificate]; !ok {
				errs = append(errs, c.errorf("inbound.tls.certificate", "", ErrUnknownCertificate, "%q is not in certificates%s", t.Certificate, hint(t.Certificate, "certificates", sortedKeys(certs))))
			}
		}
	}
	names := map[string]int{}
	for i, r := range c.Routes {
		f := fmt.Sprintf("routes[%d]", i)
		switch {
		case r.Name == "":
			errs = append(errs, c.errorf(f+".name", "", ErrMissingValue, ""))
		case !routeName.MatchString(r.Name):
			errs = append(errs, c.errorf(f+".name", r.Name, ErrInvalidValue, "a route name is one path segment of letters, digits and . _ ~ - (not starting with a dot)"))
		default:
			if j, dup := names[r.Name]; dup {
				errs = append(errs, c.errorf(f+".name", r.Name, ErrDuplicateName, "also routes[%d]", j))
			}
			names[r.Name] = i
		}
		if r.Upstream == "" {
			if r.Auth.Type != AuthDestination {
				errs = append(errs, c.errorf(f+".upstream", r.Name, ErrMissingValue, "a route needs an upstream URL"))
			}
		} else if u, err := url.Parse(r.Upstream); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.Fragment != "" {
			errs = append(errs, c.errorf(f+".upstream", r.Name, ErrInvalidValue, "want an http:// or https:// URL with a host (no user info, no fragment)"))
		} else if u.Scheme == "http" && r.SendsCredential() && r.Auth.Type != AuthMTLS && !r.AllowPlainHTTP && !netx.LoopbackHost(u.Hostname()) {
			errs = append(errs, c.errorf(f+".upstream", r.Name, ErrPlainHTTP, "the route's credential would travel in clear: use https://, or set allow_plain_http: true on the route for a trusted in-cluster service (such as the Connectivity proxy)"))
		}
		a := r.Auth
		af := f + ".auth"
		needBinding, needCert, needOAuth1 := false, false, false
		switch a.Type {
		case AuthBearer:
			needBinding = true
		case AuthMTLS:
			needCert = true
		case AuthOAuth1:
			needOAuth1 = true
		case AuthNone, AuthDestination:
		case "":
			errs = append(errs, c.errorf(af+".type", r.Name, ErrMissingValue, "want bearer, mtls, oauth1, destination or none"))
		default:
			errs = append(errs, c.errorf(af+".type", r.Name, ErrInvalidValue, "%q: want bearer, mtls, oauth1, destination or none", a.Type))
		}
		errs = c.checkDestinationRoute(errs, i, r)
		errs = c.checkReauth(errs, i, r)
		if needBinding && a.Binding == "" {
			errs = append(errs, c.errorf(af+".binding", r.Name, ErrMissingValue, "a bearer route needs a binding"))
		}
		tokens := a.Binding != "" && (a.Type == AuthBearer || a.Type == AuthMTLS || a.Type == AuthDestination)
		if !tokens && a.Type != AuthBearer && (len(a.Scopes) > 0 || a.Grant != "" || a.Tenant != "" || a.TenantHeader != "") {
			errs = append(errs, c.errorf(af, r.Name, ErrInvalidValue, "scopes, grant, tenant and tenant_header need a bearer route (or an mtls route with a binding)"))
		}
		if a.Binding != "" && !tokens {
			errs = append(errs, c.errorf(af+".binding", r.Name, ErrInvalidValue, "binding is for bearer and mtls routes"))
		}
		if tokens && a.Type != AuthDestination {
			switch a.Grant {
			case "", GrantClientCredentials, GrantJWTBearer:
			default:
				errs = append(errs, c.errorf(af+".grant", r.Name, ErrInvalidValue, "%q: want client_credentials or jwt-bearer (- and _ are alike; the jwt-bearer URN works too)", a.Grant))
			}
		}
		if a.TenantHeader != "" && !validHeaderName(a.TenantHeader) {
			errs = append(errs, c.errorf(af+".tenant_header", r.Name, ErrInvalidValue, "not a valid header name"))
		}
		if needCert {
			if a.Certificate == "" {
				errs = append(errs, c.errorf(af+".certificate", r.Name, ErrMissingValue, "an mtls route needs a certificate (a name from certificates)"))
			} else if _, ok := certs[a.Certificate]; !ok {
				errs = append(errs, c.errorf(af+".certificate", r.Name, ErrUnknownCertificate, "%q is not in certificates%s", a.Certificate, hint(a.Certificate, "certificates", sortedKeys(certs))))
			}
			if u, err := url.Parse(r.Upstream); err == nil && u.Scheme == "http" {
				errs = append(errs, c.errorf(f+".upstream", r.Name, ErrInvalidValue, "an mtls route needs an https:// upstream"))
			}
		} else if a.Certificate != "" {
			errs = append(errs, c.errorf(af+".certificate", r.Name, ErrInvalidValue, "certificate is for mtls routes"))
		}
		if needOAuth1 {
			if a.KeyFile == "" {
				errs = append(errs, c.errorf(af+".key_file", r.Name, ErrMissingValue, "an oauth1 route needs key_file"))
			}
			if a.SecretFile == "" {
				errs = append(errs, c.errorf(af+".secret_file", r.Name, ErrMissingValue, "an oauth1 route needs secret_file"))
			}
		} else if a.KeyFile != "" || a.SecretFile != "" {
			errs = append(errs, c.errorf(af, r.Name, ErrInvalidValue, "key_file and secret_file are for oauth1 routes"))
		}
	}
	return errs
}

// validHeaderName: an RFC 9110 token (internal/httpx).
func validHeaderName(s string) bool { return httpx.IsToken(s) }

func (c *Config) checkListen(errs ConfigErrors) ConfigErrors {
	for _, l := range []struct{ field, addr string }{{"listen", c.Listen}, {"admin_listen", c.AdminListen}} {
		host, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			errs = append(errs, c.errorf(l.field, "", ErrInvalidValue, "%q: want HOST:PORT", l.addr))
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			errs = append(errs, c.errorf(l.field, "", ErrInvalidValue, "%q: bad port", l.addr))
			continue
		}
		if !c.AllowNonLoopback && !isLoopbackHost(host) {
			errs = append(errs, c.errorf(l.field, "", ErrNonLoopback, "%q", l.addr))
		}
	}
	return errs
}

// isLoopbackHost reports whether a listen host is loopback ("localhost",
// 127.0.0.0/8, ::1). An empty host (all interfaces) is not.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// BindingInfo is what validation needs to know about one binding.
type BindingInfo struct {
	// Auth is true for an auth service binding (xsuaa, identity) tokens can
	// be fetched with.
	Auth bool
	// Certificate is true when the binding carries a certificate and key.
	Certificate bool
	// Problems say why the binding is not usable (empty when it is).
	Problems []string
	// Service is "destination" or "connectivity" for those BTP service
	// bindings, "" otherwise.
	Service string
}

// BindingLookup finds a binding by name for validation. ok is false when no
// binding of that name exists.
type BindingLookup func(name string) (info BindingInfo, ok bool)

// ValidateBindings is Validate with the names of the bindings that exist:
// an unknown binding's message then lists them and suggests the closest.
func (c *Config) ValidateBindings(lookup BindingLookup, names []string) error {
	c.bindingNames = names
	return c.Validate(lookup)
}

// unknownBinding is the error of a reference to a binding that does not
// exist: `unknown binding: "my-xsuaaa"; did you mean "my-xsuaa"? (bindings: …)`.
func (c *Config) unknownBinding(field, name, binding string) *ConfigError {
	if c.bindingNames == nil {
		return c.errorf(field, name, ErrUnknownBinding, "%q", binding)
	}
	return c.errorf(field, name, ErrUnknownBinding, "%q%s", binding, hint(binding, "bindings", c.bindingNames))
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Validate checks the references from routes, certificates and the token
// API to bindings. Call it after ParseConfig with the bindings the sidecar
// will use.
func (c *Config) Validate(lookup BindingLookup) error {
	var errs ConfigErrors
	check := func(field, name, binding string, wantAuth, wantCert bool) {
		info, ok := lookup(binding)
		switch {
		case !ok:
			errs = append(errs, c.unknownBinding(field, name, binding))
		case wantAuth && !info.Auth:
			errs = append(errs, c.errorf(field, name, ErrInvalidValue, "binding %q is not an xsuaa or identity binding", binding))
		case wantCert && !info.Certificate:
			errs = append(errs, c.errorf(field, name, ErrInvalidValue, "binding %q carries no certificate and key", binding))
		}
	}
	for i, r := range c.Routes {
		if r.Auth.Type == AuthDestination {
			errs = c.validateDestinationRoute(errs, i, r, lookup)
			continue
		}
		if r.Auth.Binding != "" {
			check(fmt.Sprintf("routes[%d].auth.binding", i), r.Name, r.Auth.Binding, true, false)
		}
	}
	for i, ct := range c.Certificates {
		if ct.Binding != "" {
			check(fmt.Sprintf("certificates[%d].binding", i), ct.Name, ct.Binding, false, true)
		}
	}
	for i, b := range c.TokenAPI.Bindings {
		if b != "*" {
			check(fmt.Sprintf("token_api.bindings[%d]", i), "", b, true, false)
		}
	}
	if c.Inbound != nil {
		for _, b := range c.Inbound.JWTBindings() {
			check("inbound.rules", "", b, true, false)
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// usedBindings returns the auth bindings routes and the token API use.
func (c *Config) usedBindings() []string {
	seen := map[string]bool{}
	var out []string
	add := func(b string) {
		if b != "" && b != "*" && !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	for _, r := range c.Routes {
		add(r.Auth.Binding)
		add(r.Auth.Connectivity)      // destination routes
		add(r.Auth.PrincipalExchange) // destination routes
	}
	for _, b := range c.TokenAPI.Bindings {
		add(b)
	}
	if c.Inbound != nil {
		for _, b := range c.Inbound.JWTBindings() {
			add(b)
		}
	}
	return out
}
