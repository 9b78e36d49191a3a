package sidecar

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credbroker/credbroker/internal/netx"
)

// AuthDestination is the route kind whose upstream and credential come
// from the SAP Destination service (docs/destinations.md).
const AuthDestination = "destination"

// Reasons of destination routes that the proxy decides itself (the
// resolver's errors carry their own, see DestinationError).
const (
	ReasonDestinationUnavailable = "destination-unavailable"
	ReasonNoConnectivity         = "destination-no-connectivity"
	ReasonDestinationPlainHTTP   = "destination-plain-http"
)

// Headers of the Connectivity proxy.
const (
	HeaderConnectivityLocation  = "SAP-Connectivity-SCC-Location_ID"
	HeaderConnectivityPrincipal = "SAP-Connectivity-Authentication"
)

// connectivityPrefix starts every header of the Connectivity proxy; the app
// cannot send any of them.
const connectivityPrefix = "sap-connectivity-"

// DefaultConnectivityProxy is where the Connectivity proxy listens in a
// Kyma cluster (its Kubernetes binding carries no host).
const DefaultConnectivityProxy = "connectivity-proxy.kyma-system.svc.cluster.local:20003"

// Tenant modes of a destination route.
const (
	TenantSubscriberFirst = "subscriber-first"
	TenantSubscriberOnly  = "subscriber-only"
	TenantProviderOnly    = "provider-only"
)

// DestinationsConfig is the top-level destinations: block: the cache of
// every destination route. Zero values mean the defaults of package
// destination (TTL 5m, skew 30s, refresh ahead 1m, 10000 entries).
type DestinationsConfig struct {
	TTL          time.Duration `yaml:"ttl"`
	Skew         time.Duration `yaml:"skew"`
	RefreshAhead time.Duration `yaml:"refresh_ahead"`
	MaxEntries   int           `yaml:"max_entries"`
	// ConnectivityProxy (host:port) is used when a connectivity binding
	// names no proxy host (Kyma); default DefaultConnectivityProxy.
	ConnectivityProxy string `yaml:"connectivity_proxy"`
}

// DestinationRequest is what varies per request of a destination route.
type DestinationRequest struct {
	// Tenant is the subscriber subdomain ("" for the provider).
	Tenant string
	// UserToken is the user's JWT the app sent ("" for none).
	UserToken string
}

// ResolvedDestination is what one request to a destination needs. Header,
// ProxyAuthorization and Certificate are secret. The proxy does not modify
// it.
type ResolvedDestination struct {
	URL         *url.URL
	Header      http.Header
	Query       url.Values
	Certificate *tls.Certificate
	// OnPremise requests go through ProxyURL (the Connectivity proxy) with
	// ProxyAuthorization ("Bearer <token>"), LocationID and, for principal
	// propagation, the user's token.
	OnPremise            bool
	ProxyURL             *url.URL
	ProxyAuthorization   string
	LocationID           string
	PrincipalPropagation bool
	// PrincipalToken, when set, is sent in SAP-Connectivity-Authentication
	// instead of the user's token (principal_exchange). Secret.
	PrincipalToken string
	// Credential is true when the destination adds a credential (any
	// authentication but NoAuthentication): an Internet destination with
	// an http:// URL beyond loopback is then refused unless the route has
	// allow_plain_http.
	Credential bool
}

// DestinationResolver resolves the destination of one route. Resolve must
// be safe for concurrent use and cheap on a cache hit; its errors never
// contain a secret and may implement DestinationError.
type DestinationResolver interface {
	Resolve(ctx context.Context, req DestinationRequest) (*ResolvedDestination, error)
}

// DestinationCredentialChecker is implemented by resolvers that can say,
// for /readyz and /status, whether the credentials of their route's
// bindings can be had now: a token of the destination binding and, on a
// route that names a connectivity binding (it may serve OnPremise
// destinations), a token of that binding — the Connectivity proxy's
// credential — for tenant ("" for the provider). It does not look a
// destination up. Safe for concurrent use; it returns when ctx ends.
type DestinationCredentialChecker interface {
	CheckCredentials(ctx context.Context, tenant string) []CredentialCheck
}

// CredentialCheck is the outcome of one token check of a binding.
type CredentialCheck struct {
	Binding string
	Token   Token
	Err     error
}

// DestinationError is implemented by resolver errors that know the status
// and reason the proxy answers with.
type DestinationError interface {
	error
	HTTPStatus() int
	ReasonCode() string
}

// checkDestinationRoute checks the keys of a destination route and refuses
// destination keys on other routes.
func (c *Config) checkDestinationRoute(errs ConfigErrors, i int, r Route) ConfigErrors {
	a := r.Auth
	f := fmt.Sprintf("routes[%d]", i)
	af := f + ".auth"
	if a.Type != AuthDestination {
		if a.Destination != "" || a.Connectivity != "" || a.UserToken != "" || a.TenantMode != "" || a.PrincipalExchange != "" {
			errs = append(errs, c.errorf(af, r.Name, ErrInvalidValue, "destination, connectivity, user_token, tenant_mode and principal_exchange are for destination routes"))
		}
		return errs
	}
	if r.Upstream != "" {
		errs = append(errs, c.errorf(f+".upstream", r.Name, ErrInvalidValue, "a destination route takes its upstream from the destination: remove upstream"))
	}
	if a.Destination == "" {
		errs = append(errs, c.errorf(af+".destination", r.Name, ErrMissingValue, "the name of the destination"))
	}
	if a.Binding == "" {
		errs = append(errs, c.errorf(af+".binding", r.Name, ErrMissingValue, "the destination service binding"))
	}
	if len(a.Scopes) > 0 || (a.Grant != "" && a.Grant != GrantClientCredentials) {
		errs = append(errs, c.errorf(af, r.Name, ErrInvalidValue, "scopes and grant are not for destination routes (the destination says how to authenticate)"))
	}
	if a.UserToken != "" && !validHeaderName(a.UserToken) {
		errs = append(errs, c.errorf(af+".user_token", r.Name, ErrInvalidValue, "not a valid header name"))
	}
	switch a.TenantMode {
	case "", TenantSubscriberFirst, TenantSubscriberOnly, TenantProviderOnly:
	default:
		errs = append(errs, c.errorf(af+".tenant_mode", r.Name, ErrInvalidValue, "%q: want %s, %s or %s", a.TenantMode, TenantSubscriberFirst, TenantSubscriberOnly, TenantProviderOnly))
	}
	d := c.Destinations
	if d.TTL < 0 || d.Skew < 0 || d.RefreshAhead < 0 || d.MaxEntries < 0 {
		errs = append(errs, c.errorf("destinations", "", ErrInvalidValue, "ttl, skew, refresh_ahead and max_entries must not be negative"))
	}
	if d.ConnectivityProxy != "" {
		if _, _, err := net.SplitHostPort(d.ConnectivityProxy); err != nil {
			errs = append(errs, c.errorf("destinations.connectivity_proxy", "", ErrInvalidValue, "want HOST:PORT"))
		}
	}
	return errs
}

// validateDestinationRoute checks the bindings a destination route names.
func (c *Config) validateDestinationRoute(errs ConfigErrors, i int, r Route, lookup BindingLookup) ConfigErrors {
	if b := r.Auth.PrincipalExchange; b != "" {
		field := fmt.Sprintf("routes[%d].auth.principal_exchange", i)
		info, ok := lookup(b)
		switch {
		case !ok:
			errs = append(errs, c.unknownBinding(field, r.Name, b))
		case !info.Auth:
			errs = append(errs, c.errorf(field, r.Name, ErrInvalidValue, "binding %q is not an xsuaa or identity binding", b))
		}
	}
	for _, b := range []struct{ field, name, kind string }{{"binding", r.Auth.Binding, "destination"}, {"connectivity", r.Auth.Connectivity, "connectivity"}} {
		if b.name == "" {
			continue
		}
		field := fmt.Sprintf("routes[%d].auth.%s", i, b.field)
		info, ok := lookup(b.name)
		switch {
		case !ok:
			errs = append(errs, c.unknownBinding(field, r.Name, b.name))
		case info.Service != b.kind:
			errs = append(errs, c.errorf(field, r.Name, ErrInvalidValue, "binding %q is not a %s service binding", b.name, b.kind))
		}
	}
	return errs
}

// destRoute serves a destination route.
type destRoute struct {
	r        *route
	resolver DestinationResolver
	userHdr  string // canonical
	bearer   bool   // the user token header is Authorization: Bearer …
	rp       *httputil.ReverseProxy
	newTr    func(cert *tls.Certificate, onPremise bool) *http.Transport

	plain, onprem *http.Transport
	mu            sync.Mutex
	certTr        map[[32]byte]*http.Transport
}

// maxCertTransports bounds the transports kept for destination client
// certificates (one per certificate).
const maxCertTransports = 64

type destCallKey struct{}

// destCall is what one request resolved, for Rewrite and the transport.
type destCall struct {
	res       *ResolvedDestination
	decRest   string
	rest      string
	userToken string
}

func newDestRoute(r *route, resolver DestinationResolver, newTr func(*tls.Certificate, bool) *http.Transport, bufs httputil.BufferPool) *destRoute {
	d := &destRoute{r: r, resolver: resolver, newTr: newTr, certTr: map[[32]byte]*http.Transport{}}
	d.userHdr = "Authorization"
	if h := r.cfg.Auth.UserToken; h != "" {
		d.userHdr = textproto.CanonicalMIMEHeaderKey(h)
	}
	d.bearer = d.userHdr == "Authorization"
	d.plain = newTr(nil, false)
	d.onprem = newTr(nil, true)
	d.rp = &httputil.ReverseProxy{
		Rewrite:        d.rewrite,
		Transport:      stripOwnHeaders{d}, // ownheaders.go
		BufferPool:     bufs,
		ModifyResponse: r.modifyResponse,
		ErrorHandler:   r.errorHandler,
	}
	return d
}

// RoundTrip picks the transport of the resolved destination.
func (d *destRoute) RoundTrip(req *http.Request) (*http.Response, error) {
	c, _ := req.Context().Value(destCallKey{}).(*destCall)
	if c == nil {
		return nil, errors.New("destination route: no resolution")
	}
	switch {
	case c.res.Certificate != nil:
		return d.certTransport(c.res.Certificate, c.res.OnPremise).RoundTrip(req)
	case c.res.OnPremise:
		return d.onprem.RoundTrip(req)
	}
	return d.plain.RoundTrip(req)
}

func (d *destRoute) certTransport(cert *tls.Certificate, onPremise bool) *http.Transport {
	var k [32]byte
	if len(cert.Certificate) > 0 {
		k = sha256.Sum256(cert.Certificate[0])
	}
	if onPremise {
		k[0] ^= 0xff
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if t := d.certTr[k]; t != nil {
		return t
	}
	if len(d.certTr) >= maxCertTransports {
		for old, t := range d.certTr {
			t.CloseIdleConnections()
			delete(d.certTr, old)
			break
		}
	}
	t := d.newTr(cert, onPremise)
	d.certTr[k] = t
	return t
}

func (d *destRoute) closeIdle() {
	d.plain.CloseIdleConnections()
	d.onprem.CloseIdleConnections()
	d.mu.Lock()
	for _, t := range d.certTr {
		t.CloseIdleConnections()
	}
	d.mu.Unlock()
}

// destProxy returns the proxy of an on-premise request (for
// http.Transport.Proxy).
//
// For https:// targets the Connectivity headers travel on CONNECT, so a
// tunnel belongs to one tenant, location and principal: the returned URL
// then carries a digest of them as its fragment, which the transport's
// connection pool keys on (the fragment is not sent anywhere), so a tunnel
// is never reused for another tenant or user.
func destProxy(req *http.Request) (*url.URL, error) {
	c, _ := req.Context().Value(destCallKey{}).(*destCall)
	if c == nil || !c.res.OnPremise {
		return nil, nil
	}
	if req.URL.Scheme != "https" {
		return c.res.ProxyURL, nil
	}
	h := sha256.New()
	for _, v := range []string{c.res.ProxyAuthorization, c.res.LocationID, c.userToken, c.res.PrincipalToken} {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	u := *c.res.ProxyURL
	u.Fragment = fmt.Sprintf("%x", h.Sum(nil)[:16])
	return &u, nil
}

// destProxyConnectHeader sends the Connectivity headers on CONNECT (https
// on-premise URLs), so that they never travel inside the tunnel.
func destProxyConnectHeader(ctx context.Context, _ *url.URL, _ string) (http.Header, error) {
	c, _ := ctx.Value(destCallKey{}).(*destCall)
	if c == nil {
		return nil, nil
	}
	h := http.Header{}
	connectivityHeaders(h, c)
	return h, nil
}

func connectivityHeaders(h http.Header, c *destCall) {
	h["Proxy-Authorization"] = []string{c.res.ProxyAuthorization}
	if c.res.LocationID != "" {
		h[HeaderConnectivityLocation] = []string{c.res.LocationID}
	}
	if c.res.PrincipalPropagation {
		tok := c.res.PrincipalToken
		if tok == "" {
			tok = c.userToken
		}
		h[HeaderConnectivityPrincipal] = []string{"Bearer " + tok}
	}
}

// serve resolves the destination and forwards the request.
func (d *destRoute) serve(w http.ResponseWriter, req *http.Request, decRest, rest string) {
	r := d.r
	start := time.Now()
	defer func() { r.metrics.duration.Observe(time.Since(start).Seconds()) }()

	tenant, ok := r.requestTenant(w, req)
	if !ok {
		return
	}
	var user string
	if v := req.Header[d.userHdr]; len(v) > 0 {
		user = strings.TrimSpace(v[0])
		if d.bearer {
			if len(user) > 7 && strings.EqualFold(user[:7], "bearer ") {
				user = strings.TrimSpace(user[7:])
			} else {
				user = ""
			}
		}
	}
	// The user token header is the sidecar's input; the app must not set
	// the Connectivity proxy's headers itself.
	delete(req.Header, d.userHdr)
	delete(req.Header, "Authorization")
	for k := range req.Header {
		if len(k) >= len(connectivityPrefix) && strings.EqualFold(k[:len(connectivityPrefix)], connectivityPrefix) {
			delete(req.Header, k)
		}
	}

	res, err := d.resolver.Resolve(req.Context(), DestinationRequest{Tenant: tenant, UserToken: user})
	if err != nil {
		status, reason := http.StatusServiceUnavailable, ReasonDestinationUnavailable
		var de DestinationError
		if errors.As(err, &de) {
			status, reason = de.HTTPStatus(), de.ReasonCode()
		}
		r.log.Debug("destination unavailable", "destination", r.cfg.Auth.Destination, "tenant", tenant, "err", err)
		r.failCred(w, status, reason, err.Error())
		return
	}
	if !res.OnPremise && res.Credential && res.URL.Scheme == "http" && !r.cfg.AllowPlainHTTP && !netx.LoopbackHost(res.URL.Hostname()) {
		r.failCred(w, http.StatusBadGateway, ReasonDestinationPlainHTTP, "destination "+r.cfg.Auth.Destination+" has an http:// URL: its credential would travel in clear (use https://, or allow_plain_http: true on the route for a trusted service)")
		return
	}
	if res.OnPremise && res.ProxyURL == nil {
		r.fail(w, http.StatusBadGateway, ReasonNoConnectivity, "destination "+r.cfg.Auth.Destination+" is OnPremise but the route names no connectivity binding")
		return
	}
	c := &destCall{res: res, decRest: decRest, rest: rest, userToken: user}
	req = req.WithContext(context.WithValue(req.Context(), destCallKey{}, c))
	noteUpstream(w)
	serveFullDuplex(d.rp, w, req)
}

// rewrite sets the destination's URL, query and headers on the outgoing
// request.
func (d *destRoute) rewrite(pr *httputil.ProxyRequest) {
	rewrite(pr)
	c := pr.Out.Context().Value(destCallKey{}).(*destCall)
	u := c.res.URL
	out := pr.Out.URL
	out.Scheme, out.Host = u.Scheme, u.Host
	base := strings.TrimSuffix(u.Path, "/")
	out.Path = joinPath(base, c.decRest)
	if baseRaw := strings.TrimSuffix(u.EscapedPath(), "/"); pr.In.URL.RawPath != "" || baseRaw != base {
		out.RawPath = joinPath(baseRaw, c.rest)
	} else {
		out.RawPath = ""
	}
	q := u.RawQuery
	if len(c.res.Query) > 0 {
		if q != "" {
			q += "&"
		}
		q += c.res.Query.Encode()
	}
	if app := pr.In.URL.RawQuery; app != "" {
		if q != "" {
			q += "&"
		}
		q += app
	}
	out.RawQuery = q
	for k, v := range c.res.Header {
		// Shared by every request of the entry: capped, so an append
		// anywhere downstream copies instead of writing into it.
		pr.Out.Header[k] = v[:len(v):len(v)]
	}
	if c.res.OnPremise && u.Scheme == "http" {
		connectivityHeaders(pr.Out.Header, c)
	}
}

func newDestinationMetrics() (lookups, hits *prometheus.CounterVec) {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_destination_lookups_total",
			Help: "Calls of the Destination service's find-destination API, by destination binding and outcome (ok or the reason).",
		}, []string{"binding", "outcome"}),
		prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_destination_cache_hits_total",
			Help: "Destinations served from the cache, by destination binding.",
		}, []string{"binding"})
}

// DestinationLookup records one find-destination call; outcome is "ok" or
// a reason.
func (m *Metrics) DestinationLookup(binding, outcome string) {
	m.destLookups.WithLabelValues(binding, outcome).Inc()
}

// DestinationCacheHits returns the cache-hit counter of a destination
// binding (look it up once).
func (m *Metrics) DestinationCacheHits(binding string) prometheus.Counter {
	return m.destHits.WithLabelValues(binding)
}

// newDestinationTransport builds the transports of destination routes.
func newDestinationTransportFactory(cfg *Config, dial func(ctx context.Context, network, addr string) (net.Conn, error), roots *x509.CertPool, now func() time.Time) func(*tls.Certificate, bool) *http.Transport {
	return func(cert *tls.Certificate, onPremise bool) *http.Transport {
		tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, Time: now}
		if cert != nil {
			c := cert
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return c, nil }
		}
		t := &http.Transport{
			DialContext:           dial,
			ForceAttemptHTTP2:     true,
			DisableCompression:    true,
			MaxIdleConnsPerHost:   cfg.MaxIdleConnsPerHost,
			IdleConnTimeout:       cfg.Timeouts.IdleConn,
			TLSHandshakeTimeout:   cfg.Timeouts.TLSHandshake,
			ResponseHeaderTimeout: cfg.Timeouts.ResponseHeader,
			ExpectContinueTimeout: time.Second,
			TLSClientConfig:       tc,
		}
		if onPremise {
			t.Proxy = destProxy
			t.GetProxyConnectHeader = destProxyConnectHeader
			// HTTP/1.1 only: the HTTP/2 pool keys connections by host
			// alone and would share a tunnel between principals.
			t.ForceAttemptHTTP2 = false
			t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		return t
	}
}
