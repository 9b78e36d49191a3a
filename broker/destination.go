package broker

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/credbroker/credbroker/destination"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/tokenclient"
	"github.com/credbroker/credbroker/vcap"
)

// Reason of a destination route whose Connectivity token cannot be had.
const (
	reasonConnectivityToken = "connectivity-token-unavailable"
	reasonPrincipalExchange = "principal-exchange-failed"
)

// destinations builds the resolvers of the config's destination routes:
// one cache per (destination binding, tenant mode), one token client per
// destination and connectivity binding (shared through the composer's pool,
// so the Connectivity token cache survives reloads).
func (g *genDeps) destinations(cfg *sidecar.Config) (map[string]sidecar.DestinationResolver, error) {
	out := map[string]sidecar.DestinationResolver{}
	caches := map[string]destCache{}
	for _, r := range cfg.Routes {
		if r.Auth.Type != sidecar.AuthDestination {
			continue
		}
		res, err := g.destinationResolver(cfg, r, caches)
		if err != nil {
			return nil, err
		}
		out[r.Name] = res
	}
	return out, nil
}

// destCache is the cache of one (destination binding, tenant mode) and the
// token client of that binding.
type destCache struct {
	cache  *destination.Cache
	tokens *tokenclient.Client
}

func (g *genDeps) destinationResolver(cfg *sidecar.Config, r sidecar.Route, caches map[string]destCache) (*destResolver, error) {
	dr := &destResolver{name: r.Auth.Destination, binding: r.Auth.Binding, connBinding: r.Auth.Connectivity}
	mode := r.Auth.TenantMode
	if mode == sidecar.TenantProviderOnly {
		dr.providerOnly = true
	}
	key := r.Auth.Binding + "\x00" + mode
	dc, ok := caches[key]
	dr.cache, dr.destTokens = dc.cache, dc.tokens
	if !ok {
		tc, svc, err := g.btpTokens(r.Auth.Binding, vcap.KindDestination)
		if err != nil {
			return nil, err
		}
		d := cfg.Destinations
		// The cache outlives a reload that changes neither the binding nor
		// the cache settings.
		poolKey := fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%v|%v|%v|%d", r.Auth.Binding, mode, g.net.key, svc.Digest(g.c.salt), d.TTL, d.Skew, d.RefreshAhead, d.MaxEntries)
		cache, release, err := g.c.dests.acquire(poolKey, func() (*destination.Cache, func(), error) {
			c, err := g.newDestinationCache(cfg, r, tc, svc)
			return c, func() {}, err
		})
		if err != nil {
			return nil, err
		}
		g.hold(release)
		dr.cache, dr.destTokens = cache, tc
		caches[key] = destCache{cache: cache, tokens: tc}
	}
	if r.Auth.Connectivity != "" {
		tc, svc, err := g.btpTokens(r.Auth.Connectivity, vcap.KindConnectivity)
		if err != nil {
			return nil, err
		}
		hp := cfg.Destinations.ConnectivityProxy
		if svc.ProxyHost != "" && svc.ProxyPort != "" {
			hp = net.JoinHostPort(svc.ProxyHost, svc.ProxyPort)
		}
		if hp == "" {
			hp = sidecar.DefaultConnectivityProxy
		}
		dr.conn = tc
		dr.proxy = &url.URL{Scheme: "http", Host: hp}
	}
	if b := r.Auth.PrincipalExchange; b != "" {
		ts, err := g.Source(b, nil, sidecar.GrantJWTBearer)
		if err != nil {
			return nil, err
		}
		dr.exchange = ts
	}
	return dr, nil
}

// newDestinationCache makes the client and cache of one destination
// binding and tenant mode.
func (g *genDeps) newDestinationCache(cfg *sidecar.Config, r sidecar.Route, tc *tokenclient.Client, svc *vcap.BTPService) (*destination.Cache, error) {
	binding := r.Auth.Binding
	client, err := destination.NewClient(svc.URI, destination.TokenFunc(func(ctx context.Context, tenant string) (destination.Token, error) {
		t, err := tc.Token(ctx, tokenclient.Request{Tenant: tenant})
		if err != nil {
			return destination.Token{}, err
		}
		return destination.Token{Value: t.AccessToken, Expiry: t.Expiry}, nil
	}), destination.WithHTTPClient(g.serviceHTTPClient()), destination.WithLogger(g.c.log.With("binding", binding)))
	if err != nil {
		return nil, fmt.Errorf("binding %q: %w", binding, err)
	}
	obs := destination.Observer{
		Hit: g.c.metrics.DestinationCacheHits(binding).Inc,
		Lookup: func(err error) {
			outcome := "ok"
			if err != nil {
				if outcome, _ = destination.ReasonOf(err); outcome == "" {
					outcome = "error"
				}
			}
			g.c.metrics.DestinationLookup(binding, outcome)
		},
	}
	d := cfg.Destinations
	return destination.NewCache(client, destination.CacheConfig{TTL: d.TTL, Skew: d.Skew, RefreshAhead: d.RefreshAhead,
		MaxEntries: d.MaxEntries, Selection: r.Auth.TenantMode, Observer: obs})
}

// btpTokens returns a token client for a destination or connectivity
// binding.
func (g *genDeps) btpTokens(name, kind string) (*tokenclient.Client, *vcap.BTPService, error) {
	if g.set == nil {
		return nil, nil, configErrorf("binding %q: no bindings were read", name)
	}
	b, err := g.set.ByName(name)
	if err != nil {
		return nil, nil, err
	}
	svc, ok := vcap.ServiceOf(b)
	if !ok || svc.Kind != kind {
		return nil, nil, configErrorf("binding %q (%s): label %q is not a %s service binding", b.Name, b.Source, b.Label, kind)
	}
	if len(svc.Problems) > 0 {
		return nil, nil, configErrorf("binding %q (%s): %s", b.Name, b.Source, svc.Problems[0])
	}
	tb := *b
	tb.Auth = svc.Auth
	tcfg, err := TokenConfig(&tb)
	if err != nil {
		return nil, nil, err
	}
	key := "btp " + name + " " + g.net.key + " " + g.c.bindingDigest(&tb)
	client, release, err := g.c.tokens.acquire(key, func() (*tokenclient.Client, func(), error) {
		cl, err := tokenclient.New(tcfg, g.c.tokenOptions(name, g.net, nil)...)
		if err != nil {
			return nil, nil, err
		}
		return cl, func() { _ = cl.Close() }, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("binding %q: %w", name, err)
	}
	g.hold(release)
	return client, svc, nil
}

// serviceHTTPClient calls the Destination service with the dial override
// and trust of the config.
func (g *genDeps) serviceHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         g.net.resolver.Dialer(nil),
			TLSClientConfig:     &tls.Config{RootCAs: g.net.roots, MinVersion: tls.VersionTLS12, Time: g.c.now},
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// destResolver implements sidecar.DestinationResolver (and
// sidecar.DestinationCredentialChecker) for one route.
type destResolver struct {
	name  string
	cache *destination.Cache
	// destTokens fetches tokens of the destination binding (binding); the
	// cache's client uses the same client.
	destTokens   *tokenclient.Client
	binding      string
	providerOnly bool                // tenant_mode provider-only
	conn         *tokenclient.Client // nil without a connectivity binding
	connBinding  string
	proxy        *url.URL
	// exchange turns the user's token into the principal token
	// (principal_exchange); nil: the user's token is forwarded.
	exchange sidecar.TokenSource
}

// exchangeError is a failed principal token exchange.
type exchangeError struct{ err error }

func (e exchangeError) Error() string {
	return "exchanging the user's token for principal propagation failed: " + e.err.Error()
}
func (e exchangeError) HTTPStatus() int    { return http.StatusBadGateway }
func (e exchangeError) ReasonCode() string { return reasonPrincipalExchange }

// connError is a Connectivity token failure.
type connError struct{ err error }

func (e connError) Error() string {
	return "no token of the connectivity binding: " + e.err.Error()
}
func (e connError) HTTPStatus() int    { return http.StatusServiceUnavailable }
func (e connError) ReasonCode() string { return reasonConnectivityToken }

// CheckCredentials asks for a token of the destination binding and, on a
// route with a connectivity binding, one of the connectivity binding (the
// Connectivity proxy's credential), for tenant ("" for the provider; the
// provider's for a provider-only route). Both come from the token clients'
// caches while valid: a readiness probe costs no token request then.
func (r *destResolver) CheckCredentials(ctx context.Context, tenant string) []sidecar.CredentialCheck {
	if r.providerOnly {
		tenant = ""
	}
	check := func(binding string, tc *tokenclient.Client) sidecar.CredentialCheck {
		t, err := tc.Token(ctx, tokenclient.Request{Tenant: tenant})
		if err != nil {
			return sidecar.CredentialCheck{Binding: binding, Err: err}
		}
		return sidecar.CredentialCheck{Binding: binding, Token: sidecar.Token{AccessToken: t.AccessToken, ExpiresAt: t.Expiry}}
	}
	var out []sidecar.CredentialCheck
	if r.destTokens != nil {
		out = append(out, check(r.binding, r.destTokens))
	}
	if r.conn != nil {
		out = append(out, check(r.connBinding, r.conn))
	}
	return out
}

func (r *destResolver) Resolve(ctx context.Context, req sidecar.DestinationRequest) (*sidecar.ResolvedDestination, error) {
	e, err := r.cache.Get(ctx, destination.Request{Name: r.name, Tenant: req.Tenant, UserToken: req.UserToken})
	if err != nil {
		return nil, err
	}
	res := e.Memo(func() any {
		return &sidecar.ResolvedDestination{URL: e.URL, Header: e.Header, Query: e.Query, Certificate: e.Certificate,
			OnPremise: e.OnPremise(), LocationID: e.LocationID, PrincipalPropagation: e.PrincipalPropagation,
			Credential: e.Authentication != destination.NoAuthentication}
	}).(*sidecar.ResolvedDestination)
	if !res.OnPremise || r.conn == nil {
		return res, nil
	}
	tenant := req.Tenant
	if e.FromProvider {
		tenant = ""
	}
	tok, err := r.conn.Token(ctx, tokenclient.Request{Tenant: tenant})
	if err != nil {
		return nil, connError{err}
	}
	out := *res
	out.ProxyURL = r.proxy
	out.ProxyAuthorization = "Bearer " + tok.AccessToken
	if res.PrincipalPropagation && r.exchange != nil {
		// In the user's own tenant: that is where the token was issued.
		pt, err := r.exchange.Token(ctx, sidecar.TokenRequest{Tenant: req.Tenant, Assertion: req.UserToken})
		if err != nil {
			return nil, exchangeError{err}
		}
		out.PrincipalToken = pt.AccessToken
	}
	return &out, nil
}

// DestinationLookup is what LookupDestination found.
type DestinationLookup struct {
	// Entry is the resolved destination, as a destination route caches it.
	Entry *destination.Entry
	// ConnectivityProxy is the Connectivity proxy's host:port for an
	// on-premise destination with a connectivity binding ("" otherwise).
	ConnectivityProxy string
	// ConnectivityErr is why no token of the connectivity binding could be
	// had for the tenant (nil: one was had, or none was needed).
	ConnectivityErr error
}

// LookupDestination resolves one destination the way a route with
// route.Auth would, with the bindings of set and the network n, and
// releases everything it built before it returns (`credbroker
// destination`). A bad binding or route is an ErrConfig error; the
// Destination service's answers are *destination.Error.
func (c *Broker) LookupDestination(ctx context.Context, set *vcap.Set, n *Network, cfg *sidecar.Config, route sidecar.Route, req destination.Request) (*DestinationLookup, error) {
	g := &genDeps{c: c, set: set, net: n}
	defer g.release()
	r, err := g.destinationResolver(cfg, route, map[string]destCache{})
	if err != nil {
		return nil, err
	}
	entry, err := r.cache.Get(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &DestinationLookup{Entry: entry}
	if entry.OnPremise() && r.conn != nil {
		out.ConnectivityProxy = r.proxy.Host
		_, out.ConnectivityErr = r.Resolve(ctx, sidecar.DestinationRequest{Tenant: req.Tenant, UserToken: req.UserToken})
	}
	return out, nil
}
