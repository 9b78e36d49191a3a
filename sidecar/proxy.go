package sidecar

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// HeaderError is the response header that carries the reason when the
// proxy answers a request itself (403, 503, 502, …).
const HeaderError = "X-Credbroker-Error"

// Reasons in HeaderError.
const (
	ReasonNotARoute              = "not-a-route"
	ReasonConnectRefused         = "connect-refused"
	ReasonDotSegment             = "dot-segment"
	ReasonSchemeRefused          = "scheme-refused"
	ReasonTokenUnavailable       = "token-unavailable"
	ReasonCertificateUnavailable = "certificate-unavailable"
	ReasonCertificateExpired     = "certificate-expired"
	ReasonSigningFailed          = "signing-failed"
	ReasonNoUserToken            = "no-user-token"
	ReasonBodyTooLarge           = "body-too-large"
	ReasonUpstreamUnreachable    = "upstream-unreachable"
	ReasonUpstreamTimeout        = "upstream-timeout"
)

// TokenAPIPath is the token endpoint on the proxy listener.
const TokenAPIPath = "/.credbroker/v1/token"

// Option configures a Proxy or a Server.
type Option func(*options)

type options struct {
	log     *slog.Logger
	now     func() time.Time
	metrics *Metrics
	poll    time.Duration // Server: the file watcher's backstop (WithPollInterval)
	tp      trace.TracerProvider
	tracer  trace.Tracer // nil: tracing off (WithTracerProvider)
	sampler sdktrace.Sampler
	// accessOut is where an access log without a path goes (default
	// standard output).
	accessOut io.Writer
}

func buildOptions(opts []Option) options {
	o := options{}
	for _, f := range opts {
		f(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.metrics == nil {
		o.metrics = NewMetrics()
	}
	if o.accessOut == nil {
		o.accessOut = os.Stdout
	}
	return o
}

// WithAccessLogOutput sets where an access log without a path is written
// (default standard output).
func WithAccessLogOutput(w io.Writer) Option { return func(o *options) { o.accessOut = w } }

// WithLogger sets the logger (silent by default). Nothing secret is logged,
// and nothing per request at info level.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithClock sets the clock that judges certificate expiry (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithMetrics sets the metrics (a fresh set by default).
func WithMetrics(m *Metrics) Option { return func(o *options) { o.metrics = m } }

// Proxy is the egress proxy and token API for one configuration. It is an
// http.Handler; safe for concurrent use.
type Proxy struct {
	cfg        *Config
	deps       Deps
	o          options
	router     *router
	routes     []*route
	transports []*h1Transport
	tokenAPI   *tokenAPI
	hosts      *hostPolicy
	access     *accessLog // nil: access log off
}

// route is one configured route, prepared for the hot path.
type route struct {
	name        string
	cfg         Route
	target      *url.URL
	basePath    string // upstream path, decoded, without trailing slash
	baseRawPath string // the same, escaped
	port        string // the upstream's effective port
	replace     bool
	tenantHdr   string // canonical header name, "" for none
	tenant      string
	jwtBearer   bool
	tokens      TokenSource
	cert        ClientCertificate
	signer      Signer
	fastSigner  HeaderSigner // r.signer, when it signs without an *http.Request (the fast path)
	maxBody     int64
	crossSite   bool // allow_cross_site
	noOrigin    bool // refuse_origin
	transport   *h1Transport
	rp          *httputil.ReverseProxy
	metrics     *routeMetrics
	log         *slog.Logger

	dest *destRoute // destination routes only

	// reauth drops a token the upstream rejected and sends the request
	// again (reauth.go); nil when the route's token cannot be dropped.
	reauth *reauth

	lastLeaf atomic.Pointer[x509.Certificate]
	bearer   atomic.Pointer[bearerHeader]

	// fast: requests to this route may take the fast path (fastpath.go).
	fast   bool
	fastUp atomic.Pointer[h1Host] // the upstream's connection pool
}

// bearerHeader is the Authorization value built for the last token, as a
// string (net/http's path) and as a complete header line (the fast path).
// A token with bytes a field value cannot hold has no line.
type bearerHeader struct {
	token, value string
	line         []byte
}

// NewProxy prepares the routes of cfg with the providers in deps. cfg must
// come from ParseConfig; deps must hold a source for every credential the
// routes name.
func NewProxy(cfg *Config, deps Deps, opts ...Option) (*Proxy, error) {
	o := buildOptions(opts)
	p := &Proxy{cfg: cfg, deps: deps, o: o}
	nw, err := deps.network(cfg) // ca_file and resolve, read by the composition
	if err != nil {
		return nil, err
	}
	roots := nw.RootCAs()
	dial := nw.Dialer(&net.Dialer{Timeout: cfg.Timeouts.Dial, KeepAlive: 30 * time.Second})
	bufs := newBufferPool()

	transports := map[string]*h1Transport{}
	transportFor := func(certName string, cert ClientCertificate) *h1Transport {
		if t, ok := transports[certName]; ok {
			return t
		}
		tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, Time: o.now}
		if cert != nil {
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if c := cert.Current(); c != nil {
					return c, nil
				}
				return &tls.Certificate{}, nil // no certificate: the server decides
			}
		}
		std := &http.Transport{
			Proxy:                 nil, // never the environment's HTTP_PROXY: the app's proxy is us
			DialContext:           dial,
			ForceAttemptHTTP2:     true,
			DisableCompression:    true, // pass Accept-Encoding and bodies through as they are
			MaxIdleConns:          0,
			MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
			IdleConnTimeout:       cfg.Timeouts.IdleConn,
			TLSHandshakeTimeout:   cfg.Timeouts.TLSHandshake,
			ResponseHeaderTimeout: cfg.Timeouts.ResponseHeader,
			ExpectContinueTimeout: time.Second,
			TLSClientConfig:       tc,
		}
		// HTTP/1.1 upstreams take a faster in-line path for most requests
		// (h1transport.go); the std transport serves the rest.
		t := newH1Transport(std, dial, tc, cfg)
		transports[certName] = t
		p.transports = append(p.transports, t)
		return t
	}

	destTransport := newDestinationTransportFactory(cfg, dial, roots, o.now)
	var errs ConfigErrors
	for i, rc := range cfg.Routes {
		field := fmt.Sprintf("routes[%d]", i)
		target, err := url.Parse(rc.Upstream)
		if err != nil {
			errs = append(errs, cfg.errorf(field+".upstream", rc.Name, ErrInvalidValue, "does not parse"))
			continue
		}
		r := &route{
			name:        rc.Name,
			cfg:         rc,
			target:      target,
			basePath:    strings.TrimSuffix(target.Path, "/"),
			baseRawPath: strings.TrimSuffix(target.EscapedPath(), "/"),
			port:        effectivePort(target),
			replace:     rc.Auth.Replace(),
			tenant:      rc.Auth.Tenant,
			jwtBearer:   rc.Auth.Grant == GrantJWTBearer,
			maxBody:     cfg.MaxSignedBody,
			crossSite:   rc.AllowCrossSite,
			noOrigin:    rc.RefuseOrigin,
			metrics:     o.metrics.route(rc.Name),
			log:         o.log.With("route", rc.Name),
		}
		if rc.Auth.TenantHeader != "" {
			r.tenantHdr = textproto.CanonicalMIMEHeaderKey(rc.Auth.TenantHeader)
		}
		if rc.Auth.Type == AuthDestination {
			res := deps.Destinations[rc.Name]
			if res == nil {
				errs = append(errs, cfg.errorf(field+".auth", rc.Name, ErrMissingValue, "no destination resolver"))
				continue
			}
			r.dest = newDestRoute(r, res, destTransport, bufs)
			p.routes = append(p.routes, r)
			continue
		}
		if rc.Auth.Binding != "" {
			if deps.Tokens == nil {
				errs = append(errs, cfg.errorf(field+".auth.binding", rc.Name, ErrUnknownBinding, "%q: no token provider", rc.Auth.Binding))
				continue
			}
			ts, err := deps.Tokens.Source(rc.Auth.Binding, rc.Auth.Scopes, rc.Auth.Grant)
			if err != nil {
				errs = append(errs, cfg.errorf(field+".auth.binding", rc.Name, ErrInvalidValue, "%q: %v", rc.Auth.Binding, err))
				continue
			}
			r.tokens = ts
		}
		certName := ""
		if rc.Auth.Type == AuthMTLS {
			c, ok := deps.Certificates[rc.Auth.Certificate]
			if !ok || c == nil {
				errs = append(errs, cfg.errorf(field+".auth.certificate", rc.Name, ErrUnknownCertificate, "%q", rc.Auth.Certificate))
				continue
			}
			r.cert, certName = c, rc.Auth.Certificate
		}
		if rc.Auth.Type == AuthOAuth1 {
			s, ok := deps.Signers[rc.Name]
			if !ok || s == nil {
				errs = append(errs, cfg.errorf(field+".auth", rc.Name, ErrMissingValue, "no OAuth 1.0a signer"))
				continue
			}
			r.signer = s
		}
		var cert ClientCertificate
		if certName != "" {
			cert = r.cert
		}
		r.transport = transportFor(certName, cert)
		if hs, ok := r.signer.(HeaderSigner); ok {
			r.fastSigner = hs
		}
		r.fast = r.tenantHdr == "" && !r.jwtBearer && (r.signer == nil || r.fastSigner != nil) && r.basePath == r.baseRawPath &&
			(target.Scheme == "http" || target.Scheme == "https") && target.User == nil && fastQuery(target.RawQuery)
		var rt http.RoundTripper = stripOwnHeaders{r.transport} // ownheaders.go
		if r.tokens != nil {
			if r.reauth = newReauth(r, o.metrics); r.reauth != nil {
				r.reauth.next = rt
				rt = r.reauth
			}
		}
		r.rp = &httputil.ReverseProxy{
			Rewrite:        rewrite,
			Transport:      rt,
			BufferPool:     bufs,
			ModifyResponse: r.modifyResponse,
			ErrorHandler:   r.errorHandler,
			ErrorLog:       slog.NewLogLogger(o.log.Handler(), slog.LevelDebug),
		}
		p.routes = append(p.routes, r)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	p.router = newRouter(p.routes)
	p.hosts = newHostPolicy(cfg.AllowedHosts)
	p.tokenAPI = newTokenAPI(cfg.TokenAPI, deps.Tokens, o)
	p.tokenAPI.hosts = p.hosts
	if p.access, err = openAccessLog(cfg.AccessLog, o.accessOut, o.metrics, o.log); err != nil {
		p.Close()
		return nil, ConfigErrors{cfg.errorf("access_log.path", "", ErrInvalidValue, "%v", err)}
	}
	return p, nil
}

// Close releases idle upstream connections. In-flight requests finish.
func (p *Proxy) Close() {
	for _, t := range p.transports {
		t.CloseIdleConnections()
	}
	for _, r := range p.routes {
		if r.dest != nil {
			r.dest.closeIdle()
		}
	}
	p.access.close()
}

// Config returns the configuration the proxy serves.
func (p *Proxy) Config() *Config { return p.cfg }

// rewrite runs inside ReverseProxy on the outgoing copy: the URL was set by
// ServeHTTP; the X-Forwarded-* headers the app sent were removed by
// ReverseProxy and are set afresh here.
func rewrite(pr *httputil.ProxyRequest) {
	// As ProxyRequest.SetXForwarded, with one allocation for the values.
	// ReverseProxy already removed every X-Forwarded-* and Forwarded header
	// the app sent.
	h := pr.Out.Header
	vals := make([]string, 2)
	if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
		vals[0] = ip
		h["X-Forwarded-For"] = vals[0:1:1]
	}
	vals[1] = pr.In.Host
	h["X-Forwarded-Host"] = vals[1:2:2]
	h["X-Forwarded-Proto"] = []string{"http"}
	if pr.In.TLS != nil {
		h["X-Forwarded-Proto"] = []string{"https"}
	}
	pr.Out.Host = "" // Host: the upstream's
}

// ServeHTTP routes one request: the token API, a route by path, or (for
// absolute-form http:// requests) a route by upstream host. Anything else is
// refused with 403.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if p.o.tracer != nil {
		p.serveTraced(w, req)
		return
	}
	p.serveHTTP(w, req)
}

func (p *Proxy) serveHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method == http.MethodConnect {
		p.refuse(w, http.StatusForbidden, ReasonConnectRefused, "CONNECT is refused: credbroker is not an open proxy; use http:// URLs of a configured route")
		return
	}
	var r *route
	forward := req.URL.IsAbs() || req.URL.Host != ""
	if forward {
		if req.URL.Scheme != "http" {
			p.refuse(w, http.StatusForbidden, ReasonSchemeRefused, "only http:// URLs can be proxied (credbroker originates TLS upstream)")
			return
		}
		if hasDotSegment(req.URL.Path) {
			p.refuse(w, http.StatusForbidden, ReasonDotSegment, "paths with . or .. segments are refused")
			return
		}
		r = p.router.forward(req.URL)
		if r == nil {
			p.refuse(w, http.StatusForbidden, ReasonNotARoute, "host is not the upstream of a configured route")
			return
		}
		noteRoute(w, r)
		if p.refuseBrowser(w, req, r) {
			return
		}
		req.URL.Scheme, req.URL.Host = r.target.Scheme, r.target.Host
	} else {
		esc := req.URL.EscapedPath()
		if strings.HasPrefix(esc, "/.credbroker/") {
			p.tokenAPI.ServeHTTP(w, req)
			return
		}
		if hasDotSegment(req.URL.Path) {
			p.refuse(w, http.StatusForbidden, ReasonDotSegment, "paths with . or .. segments are refused")
			return
		}
		var rest string
		r, rest = p.router.byPath(esc)
		if r == nil {
			p.refuse(w, http.StatusForbidden, ReasonNotARoute, "not a configured route")
			return
		}
		noteRoute(w, r)
		if !p.hosts.allowed(req.Host) {
			p.refuse(w, http.StatusForbidden, ReasonHostNotAllowed, "the Host header names neither localhost, an IP address nor a name in allowed_hosts (a route is called as http://127.0.0.1:PORT/"+r.name+"/ or http://localhost:PORT/"+r.name+"/)")
			return
		}
		if p.refuseBrowser(w, req, r) {
			return
		}
		// The escaped first segment equals the route name, which has no
		// escapes, so the decoded path starts with it too.
		decRest := req.URL.Path[len(r.name)+1:]
		if r.dest != nil {
			r.dest.serve(w, req, decRest, rest)
			return
		}
		req.URL.Scheme, req.URL.Host = r.target.Scheme, r.target.Host
		req.URL.Path = joinPath(r.basePath, decRest)
		if req.URL.RawPath != "" || r.baseRawPath != r.basePath {
			req.URL.RawPath = joinPath(r.baseRawPath, rest)
		} else {
			req.URL.RawPath = ""
		}
		if r.target.RawQuery != "" {
			if req.URL.RawQuery == "" {
				req.URL.RawQuery = r.target.RawQuery
			} else {
				req.URL.RawQuery = r.target.RawQuery + "&" + req.URL.RawQuery
			}
		}
	}
	r.serve(w, req, p.o.now)
}

// refuseBrowser answers requests to route r that a browser page made
// cross-site (unless allow_cross_site), that carry Origin on a route with
// refuse_origin, and that name Authorization in Connection (hop-by-hop
// removal would strip the credential added for the upstream). It reports
// whether it answered.
func (p *Proxy) refuseBrowser(w http.ResponseWriter, req *http.Request, r *route) bool {
	h := req.Header
	if !r.crossSite && strings.EqualFold(fetchSite(h), "cross-site") {
		p.refuse(w, http.StatusForbidden, ReasonCrossSite, "route "+r.name+": a browser marked this request Sec-Fetch-Site: cross-site (allow_cross_site: true accepts it)")
		return true
	}
	if _, ok := h["Origin"]; ok && r.noOrigin {
		p.refuse(w, http.StatusForbidden, ReasonOriginRefused, "route "+r.name+": requests carrying an Origin header are refused (refuse_origin)")
		return true
	}
	if c, ok := h["Connection"]; ok && namesAuthorization(c) {
		p.refuse(w, http.StatusBadRequest, ReasonHopByHopCredential, "route "+r.name+": Connection names Authorization, which would remove the credential sent upstream")
		return true
	}
	return false
}

func (p *Proxy) refuse(w http.ResponseWriter, status int, reason, msg string) {
	p.o.metrics.refused.WithLabelValues(reason).Inc()
	writeError(w, status, reason, msg)
}

func writeError(w http.ResponseWriter, status int, reason, msg string) {
	noteReason(w, reason)
	h := w.Header()
	h.Set(HeaderError, reason)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, "credbroker: "+msg+"\n")
}

// serve adds the route's credential and forwards the request.
func (r *route) serve(w http.ResponseWriter, req *http.Request, now func() time.Time) {
	start := time.Now()
	defer func() { r.metrics.duration.Observe(time.Since(start).Seconds()) }()

	tenant, ok := r.requestTenant(w, req)
	if !ok {
		return
	}
	appAuth := req.Header["Authorization"]
	var assertion string
	if r.jwtBearer {
		if len(appAuth) > 0 && len(appAuth[0]) > 7 && strings.EqualFold(appAuth[0][:7], "bearer ") {
			assertion = strings.TrimSpace(appAuth[0][7:])
		}
		if assertion == "" {
			r.fail(w, http.StatusUnauthorized, ReasonNoUserToken, "this route exchanges the app's user token (jwt-bearer): send Authorization: Bearer <user token>")
			return
		}
		delete(req.Header, "Authorization")
	} else if len(appAuth) > 0 && r.replace && (r.tokens != nil || r.signer != nil) {
		delete(req.Header, "Authorization") // replaced below
	}
	inject := r.replace || len(appAuth) == 0 || r.jwtBearer

	if r.cert != nil {
		c := r.cert.Current()
		if c == nil {
			r.fail(w, http.StatusServiceUnavailable, ReasonCertificateUnavailable, "no client certificate is loaded yet")
			return
		}
		if c.Leaf != nil {
			if !now().Before(c.Leaf.NotAfter) {
				r.fail(w, http.StatusServiceUnavailable, ReasonCertificateExpired, "the client certificate expired at "+c.Leaf.NotAfter.UTC().Format(time.RFC3339)+"; a new one-time token is needed")
				return
			}
			r.noteLeaf(c)
		}
	}
	if r.tokens != nil && inject {
		tok, err := r.tokens.Token(req.Context(), TokenRequest{Tenant: tenant, Assertion: assertion})
		if r.metrics.m.keyLimited(err, r.cfg.Auth.Binding, "route") {
			w.Header().Set("Retry-After", "60")
			r.fail(w, keyLimitStatus, ReasonTokenKeyLimit, "binding "+r.cfg.Auth.Binding+" holds max_token_keys distinct scope sets and tenants; tokens already cached keep working")
			return
		}
		if err != nil {
			r.log.Debug("no token", "binding", r.cfg.Auth.Binding, "tenant", tenant, "err", err)
			r.fail(w, http.StatusServiceUnavailable, ReasonTokenUnavailable, "no valid token for binding "+r.cfg.Auth.Binding+": "+err.Error())
			return
		}
		req.Header["Authorization"] = []string{r.bearerValue(tok.AccessToken)}
	}
	if ra := r.reauth; ra != nil {
		switch {
		case !inject:
			// The app's own Authorization goes upstream: a 401 is its.
			req = req.WithContext(context.WithValue(req.Context(), reauthCallKey{}, &reauthCall{skip: true}))
		case r.tenantHdr != "":
			req = req.WithContext(context.WithValue(req.Context(), reauthCallKey{}, &reauthCall{tenant: tenant}))
		}
		if inject {
			if err := ra.prepareBody(req); err != nil {
				r.metrics.m.refused.WithLabelValues(ReasonBadRequestBody).Inc()
				r.fail(w, http.StatusBadRequest, ReasonBadRequestBody, "the request body could not be read (malformed chunked encoding or cut short)")
				return
			}
		}
	}
	if r.signer != nil && inject {
		var body []byte
		if req.Body != nil && req.Body != http.NoBody && req.ContentLength != 0 {
			b, err := io.ReadAll(io.LimitReader(req.Body, r.maxBody+1))
			if err != nil {
				r.fail(w, http.StatusBadRequest, ReasonSigningFailed, "reading the request body failed")
				return
			}
			if int64(len(b)) > r.maxBody {
				r.fail(w, http.StatusRequestEntityTooLarge, ReasonBodyTooLarge, fmt.Sprintf("an oauth1 route signs the body; bodies over %d bytes are refused (max_signed_body)", r.maxBody))
				return
			}
			body = b
			req.Body = io.NopCloser(bytes.NewReader(b))
			req.ContentLength = int64(len(b))
			req.Header.Del("Transfer-Encoding")
			req.TransferEncoding = nil
		}
		if err := r.signer.Sign(req, body); err != nil {
			r.log.Debug("signing failed", "err", err)
			r.fail(w, http.StatusServiceUnavailable, ReasonSigningFailed, "signing the request failed: "+err.Error())
			return
		}
	}
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = clientBody{req.Body}
	}
	noteUpstream(w)
	serveFullDuplex(r.rp, w, req)
}

// serveFullDuplex proxies req with rp, streaming a request body while the
// response streams back (an HTTP/1 server otherwise stops reading the body
// once the handler writes the response).
//
// In full-duplex mode net/http no longer drains the body before the
// response; it closes the body only after it has stopped its
// background read of the connection, and that close, reading to the end
// of the body, starts the background read again: the next request on the
// connection then panics "invalid concurrent Body.Read call"
// (golang/go#68560). ReverseProxy never closes the inbound body (it hands
// the transport a copy whose Close does nothing), so a request whose body
// was never read — the upstream could not be reached, or answered without
// reading it — hit exactly that. Closing the body here, before the handler
// returns, finishes it while net/http still expects reads.
func serveFullDuplex(rp http.Handler, w http.ResponseWriter, req *http.Request) {
	if req.ContentLength == 0 || req.ProtoMajor != 1 || req.Body == nil || req.Body == http.NoBody {
		rp.ServeHTTP(w, req)
		return
	}
	_ = http.NewResponseController(w).EnableFullDuplex()
	body := req.Body
	rp.ServeHTTP(w, req)
	_ = body.Close()
}

// noteLeaf retires the route's upstream connections when the client
// certificate has rotated, so that the next request presents the new one
// (an HTTP/2 connection busy with other requests included).
func (r *route) noteLeaf(c *tls.Certificate) {
	if old := r.lastLeaf.Load(); old != c.Leaf {
		if r.lastLeaf.CompareAndSwap(old, c.Leaf) && old != nil {
			r.transport.retire()
		}
	}
}

// bearer returns the header for token, built once per token and swapped in
// atomically when the token changes: nothing is formatted or allocated per
// request.
func (r *route) bearerFor(token string) *bearerHeader {
	if c := r.bearer.Load(); c != nil && c.token == token {
		return c
	}
	c := &bearerHeader{token: token, value: "Bearer " + token}
	if validFieldValue(token) {
		c.line = []byte("Authorization: Bearer " + token + "\r\n")
	}
	r.bearer.Store(c)
	return c
}

// bearerValue returns "Bearer <token>".
func (r *route) bearerValue(token string) string { return r.bearerFor(token).value }

// fail answers a request of the route itself: a 503 is a credential error
// (credbroker_proxy_credential_errors_total), any other status a refusal
// (credbroker_proxy_refused_total), both by reason.
func (r *route) fail(w http.ResponseWriter, status int, reason, msg string) {
	if status == http.StatusServiceUnavailable {
		r.failCred(w, status, reason, msg)
		return
	}
	r.metrics.m.refused.WithLabelValues(reason).Inc()
	r.metrics.count(status)
	writeError(w, status, reason, "route "+r.name+": "+msg)
}

// failCred answers with a credential error of any status.
func (r *route) failCred(w http.ResponseWriter, status int, reason, msg string) {
	r.metrics.m.credErrors.WithLabelValues(r.name, reason).Inc()
	r.metrics.count(status)
	writeError(w, status, reason, "route "+r.name+": "+msg)
}

func (r *route) modifyResponse(resp *http.Response) error {
	r.metrics.count(resp.StatusCode)
	return nil
}

func (r *route) errorHandler(w http.ResponseWriter, req *http.Request, err error) {
	if req.Context().Err() != nil {
		r.metrics.count(499) // the app went away; nobody reads an answer
		return
	}
	status, reason, msg := http.StatusBadGateway, ReasonUpstreamUnreachable, "upstream request failed"
	var ne net.Error
	var cbe *clientBodyError
	if errors.As(err, &cbe) {
		// The app's request body could not be read (a malformed chunked
		// encoding, a body cut short): the client's fault, not the
		// upstream's.
		status, reason, msg = http.StatusBadRequest, ReasonBadRequestBody, "the request body could not be read (malformed chunked encoding or cut short)"
	} else if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		status, reason, msg = http.StatusGatewayTimeout, ReasonUpstreamTimeout, "upstream did not answer in time"
	}
	r.metrics.m.refused.WithLabelValues(reason).Inc()
	r.log.Debug("upstream failed", "err", err)
	r.metrics.count(status)
	writeError(w, status, reason, "route "+r.name+": "+msg)
}

// clientBody is the app's request body on its way upstream; a failure to
// read it comes out of the transport as a *clientBodyError.
type clientBody struct{ io.ReadCloser }

func (b clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = &clientBodyError{err}
	}
	return n, err
}

// clientBodyError is a failure to read the app's request body.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// bufferPool recycles the 32 KiB copy buffers of ReverseProxy. The pool
// holds *[]byte; the boxes themselves are recycled through a second pool so
// that Put does not allocate either.
type bufferPool struct{ bufs, boxes sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{
		bufs:  sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }},
		boxes: sync.Pool{New: func() any { return new([]byte) }},
	}
}

func (b *bufferPool) Get() []byte {
	box := b.bufs.Get().(*[]byte)
	s := *box
	*box = nil
	b.boxes.Put(box)
	return s
}

func (b *bufferPool) Put(s []byte) {
	box := b.boxes.Get().(*[]byte)
	*box = s
	b.bufs.Put(box)
}
