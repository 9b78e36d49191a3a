package guard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/oauth1"
)

// Identity headers the guard sets on forwarded requests. They are set on
// the outgoing request after hop-by-hop removal, and every request header
// whose name folds to HeaderPrefix + anything (case-insensitive, any byte
// other than a letter or digit counted as "-": X_Credbroker_Subject) is
// removed first, whoever sent it. docs/security.md, "Inbound guard: the
// identity-header contract".
const (
	HeaderPrefix      = "X-Credbroker-"
	HeaderAuthMethod  = "X-Credbroker-Auth-Method" // jwt, mtls or oauth1
	HeaderSubject     = "X-Credbroker-Subject"     // token sub, certificate subject, or consumer key
	HeaderClientID    = "X-Credbroker-Client-Id"   // token client_id/cid/azp, or consumer key
	HeaderZone        = "X-Credbroker-Zone"        // zid (XSUAA) or app_tid (IAS)
	HeaderTenant      = "X-Credbroker-Tenant"      // tenant subdomain
	HeaderScopes      = "X-Credbroker-Scopes"      // space-separated token scopes
	HeaderCertSubject = "X-Credbroker-Cert-Subject"
)

// HeaderError is the response header that names the reason of a refusal
// (one of the Reason* constants), as the egress proxy's header of the same
// name does.
const HeaderError = "X-Credbroker-Error"

// Realm is the realm of the WWW-Authenticate challenges.
const Realm = "credbroker"

// Guard is the inbound guard: an http.Handler that authenticates every
// request by the first rule whose path prefix matches and forwards accepted
// ones to the app. It is safe for concurrent use.
type Guard struct {
	rules   []*rule
	proxy   *httputil.ReverseProxy
	trusted []netip.Prefix
	xfcc    *xfccReader // nil without inbound.xfcc
	log     *slog.Logger
	obs     Observer
	keys    *keyCache
	sources []source
	tls     *tls.Config

	reloadMu sync.Mutex
	prints   map[source][32]byte // fingerprints of what each source last loaded
	resync   time.Duration
	now      func() time.Time
	tracer   trace.Tracer // nil: tracing off (tracing.go)
}

type rule struct {
	index  int
	path   string
	params bool // allow_path_params
	accept []Method
	scopes []string
	jwt    *jwtVerifier
	mtls   *mtlsVerifier
	oauth1 *oauth1Verifier
}

func (r *rule) accepts(m Method) bool {
	for _, a := range r.accept {
		if a == m {
			return true
		}
	}
	return false
}

// source is file-backed material (CA bundle, CRL, consumer key) that Run
// reloads.
type source interface {
	files() []string
	load(now time.Time) error
}

// New builds the guard. cfg must have passed Validate. It loads every file
// the rules name (an error names the rule and field) and checks that jwt
// rules' bindings exist.
func New(cfg *Config, opts ...Option) (*Guard, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := settings{
		jwksClient: http.DefaultClient, now: time.Now, leeway: DefaultLeeway,
		keyRefresh: DefaultKeyRefresh, keyMinInterval: DefaultKeyMinInterval,
		oauthWindow: oauth1.DefaultWindow, resync: DefaultResync,
	}
	for _, o := range opts {
		o(&s)
	}
	lim := cfg.Limits
	if lim.MaxBody == 0 && s.maxBody > 0 {
		lim.MaxBody = s.maxBody
	}
	lim = lim.withDefaults()
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	setupErr := func(field string, err error) error {
		return &FieldError{Field: field, Err: fmt.Errorf("%w: %w", ErrSetup, err)}
	}
	g := &Guard{log: s.log, obs: s.obs, resync: s.resync, now: s.now, prints: map[source][32]byte{}, tracer: s.tracer}
	for _, p := range cfg.TrustedProxies {
		pfx, _ := parsePrefix(p) // checked by Validate
		g.trusted = append(g.trusted, pfx)
	}
	g.keys = newKeyCache(s.jwksClient, s.now, s.log, s.keyRefresh, s.keyMinInterval, lim)
	g.keys.tracer = s.tracer
	bodies := &bodyReader{max: lim.MaxBody, timeout: lim.BodyTimeout, budget: &bodyBudget{max: lim.BodyMemory}}
	if eo, ok := s.obs.(EventObserver); ok {
		g.keys.fetched = eo.JWKSFetched
	}
	hasMTLS := false
	for i, rc := range cfg.Rules {
		f := fmt.Sprintf("rules[%d]", i)
		r := &rule{index: i, path: rc.Path, params: rc.AllowPathParams, accept: rc.Accept, scopes: rc.Scopes}
		if r.accepts(MethodJWT) {
			if s.bindings == nil {
				return nil, setupErr(f+".binding", errors.New("no bindings given to the guard"))
			}
			b, ok := s.bindings(rc.Binding)
			if !ok {
				return nil, setupErr(f+".binding", fmt.Errorf("no binding %q", rc.Binding))
			}
			if b.Flavor != FlavorXSUAA && b.Flavor != FlavorIAS {
				return nil, setupErr(f+".binding", fmt.Errorf("binding %q is not an xsuaa or IAS binding", rc.Binding))
			}
			if b.ClientID == "" || (b.Flavor == FlavorXSUAA && b.UAADomain == "") || (b.Flavor == FlavorIAS && b.URL == "") {
				return nil, setupErr(f+".binding", fmt.Errorf("binding %q lacks clientid, uaadomain or url", rc.Binding))
			}
			r.jwt = &jwtVerifier{binding: rc.Binding, lookup: s.bindings, keys: g.keys, leeway: s.leeway, now: s.now}
		}
		if r.accepts(MethodMTLS) {
			hasMTLS = true
			src := &caSource{caFile: rc.CAFile, crlFile: rc.CRLFile}
			if err := g.loadSource(src); err != nil {
				return nil, setupErr(f, err)
			}
			r.mtls = &mtlsVerifier{src: src, subjects: rc.Subjects, sans: rc.SANs, now: s.now}
		}
		if r.accepts(MethodOAuth1) {
			src := &consumerSource{keyFile: rc.OAuth1.KeyFile, secretFile: rc.OAuth1.SecretFile}
			if err := g.loadSource(src); err != nil {
				return nil, setupErr(f, err)
			}
			v, err := oauth1.NewVerifier(src.secret, oauth1.WithClock(s.now), oauth1.WithWindow(s.oauthWindow), oauth1.WithMaxBody(lim.MaxBody))
			if err != nil {
				return nil, setupErr(f+".oauth1", err)
			}
			r.oauth1 = &oauth1Verifier{v: v, trusted: g.trusted, body: bodies}
		}
		g.rules = append(g.rules, r)
	}
	if err := g.setupXFCC(cfg.XFCC, s.now); err != nil {
		return nil, setupErr("xfcc", err)
	}
	app, _ := url.Parse(cfg.App) // checked by Validate
	rt := s.appTransport
	if rt == nil {
		rt = &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        256,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
			ForceAttemptHTTP2:   false,
		}
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { g.rewrite(pr, app) },
		Transport: rt,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if br, ok := r.Context().Value(bodyErrKey{}).(*bodyErrReader); ok && br.readErr() != nil {
				// The caller's body broke (a malformed chunk), not the app.
				g.log.Info("inbound: bad request body", "path", r.URL.Path, "peer", r.RemoteAddr, "error", br.readErr())
				if d := decisionOf(r.Context()); d != nil {
					d.Reason = ReasonBadRequestBody
				}
				if bo, ok := g.obs.(BodyObserver); ok {
					bo.BadRequestBody()
				}
				w.Header().Set(HeaderError, ReasonBadRequestBody)
				w.Header().Set("Connection", "close")
				http.Error(w, "credbroker: bad request ("+ReasonBadRequestBody+")", http.StatusBadRequest)
				return
			}
			g.log.Warn("inbound: app unreachable", "path", r.URL.Path, "error", err)
			if d := decisionOf(r.Context()); d != nil {
				d.Reason = ReasonAppUnreachable
			}
			if eo, ok := g.obs.(EventObserver); ok {
				eo.AppUnreachable()
			}
			w.Header().Set(HeaderError, ReasonAppUnreachable)
			http.Error(w, "credbroker: the app is not reachable", http.StatusBadGateway)
		},
	}
	if cfg.TLS != nil {
		if s.getCertificate == nil {
			return nil, setupErr("tls.certificate", errors.New("no certificate source given to the guard"))
		}
		g.tls = &tls.Config{
			MinVersion:     tls.VersionTLS12,
			Time:           s.now, // the guard verifies client certificates itself, on the same clock
			GetCertificate: s.getCertificate,
			NextProtos:     []string{"h2", "http/1.1"},
		}
		if hasMTLS {
			// Verified per rule (each has its own CA bundle), so a jwt rule
			// and an mtls rule can share the listener.
			g.tls.ClientAuth = tls.RequestClientCert
		}
	}
	return g, nil
}

// TLSConfig returns the listener's TLS configuration, or nil for plain HTTP.
// Client certificates are requested but verified per rule.
func (g *Guard) TLSConfig() *tls.Config {
	if g.tls == nil {
		return nil
	}
	return g.tls.Clone()
}

// Close stops background key refreshes and waits for them. Idempotent.
func (g *Guard) Close() error {
	g.keys.close()
	return nil
}

// match returns the first rule whose path is a prefix of path. A rule path
// ending in "/" also covers the path without it (/admin/ covers /admin):
// many routers serve /admin with the /admin/ handler (Express, and Spring
// before 6), which would otherwise fall to a weaker rule.
func (g *Guard) match(path string) *rule {
	for _, r := range g.rules {
		if strings.HasPrefix(path, r.path) || (len(r.path) > 1 && strings.HasSuffix(r.path, "/") && path == r.path[:len(r.path)-1]) {
			return r
		}
	}
	return nil
}

// identityKey carries the accepted identity from ServeHTTP to rewrite.
type identityKey struct{}

// ServeHTTP authenticates r and forwards it to the app, or refuses it.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.tracer != nil {
		g.serveTraced(w, r)
		return
	}
	g.serveHTTP(w, r)
}

func (g *Guard) serveHTTP(w http.ResponseWriter, r *http.Request) {
	stripCallerHeaders(r.Header)
	stripCallerHeaders(r.Trailer)
	stripClientCertHeaders(r.Trailer)
	if ref := checkHeaders(r.Header); ref != nil {
		g.refuse(w, r, nil, ref)
		return
	}
	ru, ref := g.route(r)
	if ref != nil {
		g.refuse(w, r, ru, ref)
		return
	}
	id, ref := g.authenticate(w, r, ru)
	if ref != nil {
		g.refuse(w, r, ru, ref)
		return
	}
	g.obs.Accepted(id.method)
	if g.tracer != nil {
		noteDecision(r.Context(), ru, id.method, "")
	}
	if d := decisionOf(r.Context()); d != nil {
		d.Rule, d.Method, d.Reason = ru.path, id.method, ""
		d.AppStart = time.Now()
	}
	g.log.Debug("inbound: accepted", "path", r.URL.Path, "rule", ru.path, "method", string(id.method), "subject", id.subject)
	ctx := context.WithValue(r.Context(), identityKey{}, id)
	var br *bodyErrReader
	if r.Body != nil && r.Body != http.NoBody {
		// The proxy hands the error handler a copy of the request whose
		// body it wrapped: the reader travels in the context.
		br = &bodyErrReader{ReadCloser: r.Body}
		ctx = context.WithValue(ctx, bodyErrKey{}, br)
	}
	r = r.WithContext(ctx)
	if br != nil {
		r.Body = br
	}
	g.proxy.ServeHTTP(w, r)
}

// ReasonBadRequestBody is the X-Credbroker-Error of a 400 for an accepted
// request whose body could not be read (a malformed chunk): the caller's
// fault, not the app's (that is app_unreachable).
const ReasonBadRequestBody = "bad_request_body"

type bodyErrKey struct{}

// bodyErrReader remembers a read error of the caller's body other than
// io.EOF, so the proxy's error handler can tell it from an unreachable app.
// The transport may still be reading when the handler asks (a response
// error while the body is being sent), hence the lock.
type bodyErrReader struct {
	io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *bodyErrReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *bodyErrReader) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

// route checks that the raw path is canonical and picks the rule. A ";"
// parameter is accepted only when the rule matching the path as sent
// allows it and the path without parameters (as a servlet container reads
// it) matches that same rule.
func (g *Guard) route(r *http.Request) (*rule, *refusal) {
	notCanonical := func(detail string) *refusal {
		return &refusal{method: MethodNone, reason: ReasonPathNotCanonical, status: http.StatusBadRequest, detail: detail}
	}
	raw := rawPath(r)
	if p := pathProblem(raw); p != "" {
		return nil, notCanonical(p)
	}
	ru := g.match(r.URL.Path)
	if strings.Contains(raw, ";") {
		switch {
		case ru == nil || !ru.params:
			return nil, notCanonical("the path has a ; parameter and the rule does not allow_path_params")
		case g.match(stripParams(r.URL.Path)) != ru:
			return nil, notCanonical("the path without its ; parameters matches another rule")
		}
	}
	// An app that decodes the path again must not read a path of another
	// rule: /%256Awt/ is /%6Awt/ to the guard and /jwt/ to it.
	for _, d := range decodings(raw) {
		if g.match(d) != ru || (ru != nil && ru.params && g.match(stripParams(d)) != ru) {
			return nil, notCanonical("the path decoded once more matches another rule")
		}
	}
	if ru == nil {
		return nil, &refusal{method: MethodNone, reason: ReasonNoRule, status: http.StatusForbidden, detail: "no rule matches the path"}
	}
	return ru, nil
}

// authenticate tries each accepted method for which the request carries a
// credential; the first that succeeds wins.
func (g *Guard) authenticate(w http.ResponseWriter, r *http.Request, ru *rule) (*identity, *refusal) {
	var first *refusal
	note := func(ref *refusal) {
		if first == nil {
			first = ref
		}
	}
	// Client-certificate headers never reach the app; a trusted proxy's
	// X-Forwarded-Client-Cert stands in for the handshake (xfcc.go).
	xfcc := takeXFCC(r)
	if ru.mtls != nil {
		id, ref, outcome := g.xfcc.authenticate(r, ru, xfcc)
		switch {
		case outcome == xfccRejected:
			return nil, ref
		case outcome == xfccDecided && ref == nil:
			return id, nil
		case outcome == xfccDecided:
			note(ref)
		case r.TLS != nil && len(r.TLS.PeerCertificates) > 0:
			id, ref := ru.mtls.verify(r.TLS.PeerCertificates)
			if ref == nil {
				return id, nil
			}
			note(ref)
		}
	}
	scheme, cred, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	switch {
	case ru.jwt != nil && strings.EqualFold(scheme, "Bearer"):
		id, ref := ru.jwt.verify(r.Context(), strings.TrimSpace(cred), ru.scopes)
		if ref == nil {
			return id, nil
		}
		note(ref)
	case ru.oauth1 != nil && strings.EqualFold(scheme, "OAuth"):
		id, ref := ru.oauth1.verify(w, r)
		if ref == nil {
			return id, nil
		}
		note(ref)
	}
	if first != nil {
		return nil, first
	}
	ref := &refusal{method: MethodNone, reason: ReasonNoCredentials, status: http.StatusUnauthorized, detail: "no credential for " + methodList(ru.accept)}
	if ru.jwt == nil && ru.oauth1 == nil {
		ref.status = http.StatusForbidden // mtls only: there is no HTTP challenge to send
	}
	xfccIgnored(ref, ru, xfcc, r)
	return nil, ref
}

func methodList(ms []Method) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = string(m)
	}
	return strings.Join(s, ", ")
}

func setIdentity(h http.Header, id *identity) {
	set := func(k, v string) {
		if v != "" {
			h.Set(k, sanitizeHeader(v))
		}
	}
	set(HeaderAuthMethod, string(id.method))
	set(HeaderSubject, id.subject)
	set(HeaderClientID, id.clientID)
	set(HeaderZone, id.zone)
	set(HeaderTenant, id.tenant)
	set(HeaderScopes, strings.Join(id.scopes, " "))
	set(HeaderCertSubject, id.certSubject)
}

// sanitizeHeader drops control characters (a claim could carry them).
func sanitizeHeader(v string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, v)
}

func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, ru *rule, ref *refusal) {
	g.obs.Refused(ref.method, ref.reason)
	if g.tracer != nil {
		noteDecision(r.Context(), ru, ref.method, ref.reason)
	}
	decide(r.Context(), ru, ref.method, ref.reason)
	g.log.Info("inbound: refused", "path", r.URL.Path, "method", string(ref.method), "reason", ref.reason,
		"status", ref.status, "peer", r.RemoteAddr, "detail", ref.detail)
	if ref.status == http.StatusUnauthorized || ref.bearerError == "insufficient_scope" {
		for _, c := range challenges(ru, ref) {
			w.Header().Add("WWW-Authenticate", c)
		}
	}
	w.Header().Set(HeaderError, ref.reason)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// A refused connection is closed (HTTP/2: GOAWAY once idle): a caller
	// without a credential could otherwise park every slot of the inbound
	// connection cap in keep-alive for client_idle_timeout, one refused
	// request each. It also means a refused request's body is never read
	// (net/http would first try to drain it, as slowly as the caller sends).
	w.Header().Set("Connection", "close")
	w.WriteHeader(ref.status)
	fmt.Fprintf(w, "credbroker: %s (%s)\n", strings.ToLower(http.StatusText(ref.status)), ref.reason)
}

// challenges builds WWW-Authenticate values: Bearer (RFC 6750) for jwt
// rules, OAuth for oauth1 rules; the error details go to the method that
// failed.
func challenges(ru *rule, ref *refusal) []string {
	if ru == nil {
		return nil
	}
	var out []string
	if ru.jwt != nil {
		c := `Bearer realm="` + Realm + `"`
		if ref.method == MethodJWT && ref.bearerError != "" {
			c += `, error="` + ref.bearerError + `", error_description="` + quoteSafe(ref.detail) + `"`
			if ref.scope != "" {
				c += `, scope="` + quoteSafe(ref.scope) + `"`
			}
		}
		out = append(out, c)
	}
	if ru.oauth1 != nil && ref.status == http.StatusUnauthorized {
		c := `OAuth realm="` + Realm + `"`
		if ref.method == MethodOAuth1 && ref.oauthProblem != "" {
			c += `, oauth_problem="` + ref.oauthProblem + `"`
		}
		out = append(out, c)
	}
	return out
}

func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return '\''
		}
		return r
	}, s)
}

// rewrite points the request at the app and sets the identity headers.
// It runs after httputil.ReverseProxy removed the hop-by-hop headers (also
// those the client's Connection header named), so nothing the client sent
// can remove or replace what is set here.
func (g *Guard) rewrite(pr *httputil.ProxyRequest, app *url.URL) {
	pr.SetURL(app)
	pr.Out.Host = pr.In.Host
	g.forwarded(pr)
	stripCallerHeaders(pr.Out.Header)
	stripCallerHeaders(pr.Out.Trailer)
	stripClientCertHeaders(pr.Out.Trailer)
	if id, ok := pr.In.Context().Value(identityKey{}).(*identity); ok {
		setIdentity(pr.Out.Header, id)
	}
}

// forwarded sets X-Forwarded-*: from a trusted proxy they are passed on
// (with the proxy's address appended to -For); from anyone else they are
// replaced by what the guard saw, and the other forwarding headers
// (untrustedForwarding) are removed.
func (g *Guard) forwarded(pr *httputil.ProxyRequest) {
	if !peerTrusted(pr.In, g.trusted) {
		stripUntrustedForwarding(pr.Out.Header)
		pr.SetXForwarded()
		return
	}
	for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v := pr.In.Header.Values(h); len(v) > 0 {
			pr.Out.Header[h] = v
		}
	}
	prior := strings.Join(pr.In.Header.Values("X-Forwarded-For"), ", ")
	if ip, ok := peerIP(pr.In); ok {
		if prior != "" {
			prior += ", "
		}
		pr.Out.Header.Set("X-Forwarded-For", prior+ip.String())
	}
	if pr.Out.Header.Get("X-Forwarded-Host") == "" || pr.Out.Header.Get("X-Forwarded-Proto") == "" {
		proto := "http"
		if pr.In.TLS != nil {
			proto = "https"
		}
		if pr.Out.Header.Get("X-Forwarded-Host") == "" {
			pr.Out.Header.Set("X-Forwarded-Host", pr.In.Host)
		}
		if pr.Out.Header.Get("X-Forwarded-Proto") == "" {
			pr.Out.Header.Set("X-Forwarded-Proto", proto)
		}
	}
}

// Run watches the files the rules name (CA bundles, revocation lists,
// OAuth 1.0a key and secret) by directory, with a periodic re-read as a
// backstop, and swaps in new material once it is fully valid; a failed
// reload keeps the last good material and is logged. It blocks until ctx
// is done.
func (g *Guard) Run(ctx context.Context) error {
	return g.watch(ctx)
}
