package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/destination"
	"github.com/credbroker/credbroker/internal/netx"
	"github.com/credbroker/credbroker/oauth1"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/sidecar/guard"
	"github.com/credbroker/credbroker/tokenclient"
	"github.com/credbroker/credbroker/vcap"
)

// composer builds the sidecar's providers from the config, the bindings and
// the real packages (tokenclient, certwatch, connector, oauth1). It lives for
// the whole run: token clients and certificate watchers are shared between
// configuration generations when their inputs did not change, so a reload
// keeps the token cache and never pairs or renews twice.
type composer struct {
	o       *RunOptions
	log     *slog.Logger
	metrics *sidecar.Metrics
	tokens  refPool[*tokenclient.Client]
	certs   refPool[*liveCert]
	dests   refPool[*destination.Cache] // run_destination.go: kept across reloads
	now     func() time.Time
}

func newComposer(o *RunOptions, log *slog.Logger, m *sidecar.Metrics) *composer {
	return &composer{o: o, log: log, metrics: m, now: time.Now}
}

func (c *composer) close() {
	c.tokens.closeAll()
	c.certs.closeAll()
	c.dests.closeAll()
}

// load is the sidecar.Loader: read and check the config and the bindings,
// then prepare every credential provider.
func (c *composer) load(ctx context.Context) (*sidecar.Config, sidecar.Deps, error) {
	var data []byte
	source := "config (defaults: no --config)"
	if c.o.Config != "" {
		b, err := readInputFile(c.o.Config)
		if err != nil {
			return nil, sidecar.Deps{}, badInputf("--config %s: %v", c.o.Config, errors.Unwrap(err))
		}
		data, source = b, "config "+c.o.Config
	}
	cfg, err := sidecar.ParseConfig(data, source)
	if err != nil {
		return nil, sidecar.Deps{}, err
	}
	if err := cfg.Override(c.o.Listen, c.o.AdminListen, c.o.AllowNonLoopback); err != nil {
		return nil, sidecar.Deps{}, err
	}
	cfg.Resolve = append(cfg.Resolve, c.o.Resolve...)
	if c.o.CAFile != "" {
		cfg.CAFile = c.o.CAFile
	}
	if c.o.DrainTimeout > 0 {
		cfg.DrainTimeout = c.o.DrainTimeout
	}

	var set *vcap.Set
	if kind, _ := c.o.sources().Chosen(); kind != "" {
		set, err = loadBindings(ctx, c.o.BindingSourceOptions, c.log)
		if err != nil {
			return nil, sidecar.Deps{}, err
		}
	}
	lookup := bindingLookup(set)
	if err := cfg.Validate(lookup); err != nil {
		if set == nil {
			return nil, sidecar.Deps{}, fmt.Errorf("%w (no bindings were read: set --vcap-file, VCAP_SERVICES, VCAP_SERVICES_FILE_PATH, --bindings-dir or SERVICE_BINDING_ROOT)", err)
		}
		return nil, sidecar.Deps{}, err
	}
	if err := checkPlainHTTP(cfg, set, c.log); err != nil {
		return nil, sidecar.Deps{}, err
	}

	n, err := newNetSettings(cfg)
	if err != nil {
		return nil, sidecar.Deps{}, err
	}
	g := &genDeps{c: c, set: set, net: n, maxKeys: cfg.MaxTokenKeys}
	deps := sidecar.Deps{Bindings: lookup, Close: g.release, Watch: c.watchPaths(cfg)}
	if set != nil {
		deps.Tokens = g
	}
	deps.Certificates = map[string]sidecar.ClientCertificate{}
	for i, ce := range cfg.Certificates {
		lc, err := g.certificate(ctx, i, ce)
		if err != nil {
			g.release()
			return nil, sidecar.Deps{}, err
		}
		deps.Certificates[ce.Name] = lc
		if ce.RuntimeDir != "" {
			rc, err := g.runtimeCertificate(ctx, i, ce, lc)
			if err != nil {
				g.release()
				return nil, sidecar.Deps{}, err
			}
			deps.Certificates[ce.RuntimeName()] = rc
		}
	}
	deps.Signers = map[string]sidecar.Signer{}
	for i, r := range cfg.Routes {
		if r.Auth.Type != sidecar.AuthOAuth1 {
			continue
		}
		s, err := newOAuth1Signer(cfg, i, r)
		if err != nil {
			g.release()
			return nil, sidecar.Deps{}, err
		}
		deps.Signers[r.Name] = s
	}
	if deps.Destinations, err = g.destinations(cfg); err != nil {
		g.release()
		return nil, sidecar.Deps{}, err
	}
	if cfg.Inbound != nil {
		in, err := g.inbound(cfg, deps.Certificates)
		if err != nil {
			g.release()
			return nil, sidecar.Deps{}, err
		}
		deps.Inbound = in
	}
	return cfg, deps, nil
}

// inbound builds the inbound guard of the config's inbound: section and
// runs its file watcher until the generation is released.
func (g *genDeps) inbound(cfg *sidecar.Config, certs map[string]sidecar.ClientCertificate) (*guard.Guard, error) {
	set := g.set
	lookup := func(name string) (guard.Binding, bool) {
		if set == nil {
			return guard.Binding{}, false
		}
		b, err := set.ByName(name)
		if err != nil {
			return guard.Binding{}, false
		}
		gb, err := guard.BindingFromVCAP(b)
		return gb, err == nil
	}
	tr := &http.Transport{Proxy: nil, DialContext: g.net.resolver.Dialer(nil), ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second}
	if g.net.roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: g.net.roots, MinVersion: tls.VersionTLS12}
	}
	jwks := &http.Client{
		Transport: tr,
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // keys come from the host the guard asked
		},
	}
	opts := []guard.Option{
		guard.WithBindings(lookup),
		guard.WithJWKSClient(jwks),
		guard.WithLogger(g.c.log),
		guard.WithObserver(g.c.metrics.InboundObserver()),
		guard.WithResync(g.c.o.PollInterval),
	}
	if t := cfg.Inbound.TLS; t != nil && t.Certificate != "" {
		lc, ok := certs[t.Certificate].(*liveCert)
		if !ok {
			return nil, &sidecar.ConfigError{Source: cfg.Source(), Field: "inbound.tls.certificate", Err: fmt.Errorf("%w: %q", sidecar.ErrUnknownCertificate, t.Certificate)}
		}
		opts = append(opts, guard.WithGetCertificate(lc.w.GetCertificate))
	}
	gd, err := guard.New(cfg.Inbound, opts...)
	if err != nil {
		if errors.Is(err, guard.ErrConfig) || errors.Is(err, guard.ErrSetup) {
			return nil, badInput(err)
		}
		return nil, err
	}
	bctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = gd.Run(bctx) }()
	g.hold(func() {
		cancel()
		<-done
		_ = gd.Close()
		tr.CloseIdleConnections()
	})
	return gd, nil
}

// watchPaths are the files whose change reloads the sidecar.
func (c *composer) watchPaths(cfg *sidecar.Config) []string {
	var out []string
	add := func(p string) {
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	add(c.o.Config)
	src := c.o.sources()
	switch kind, _ := src.Chosen(); kind {
	case "":
	default:
		add(src.VCAPFile)
		if src.VCAPFile == "" && src.VCAPServices == "" {
			add(src.VCAPServicesFilePath)
			if src.VCAPServicesFilePath == "" {
				add(src.BindingsDir)
			}
		}
	}
	add(c.o.KeyFile)
	for _, r := range cfg.Routes {
		add(r.Auth.KeyFile)
		add(r.Auth.SecretFile)
	}
	return out
}

// bindingLookup describes the bindings of set for validation and /readyz.
func bindingLookup(set *vcap.Set) sidecar.BindingLookup {
	return func(name string) (sidecar.BindingInfo, bool) {
		if set == nil {
			return sidecar.BindingInfo{}, false
		}
		b, err := set.ByName(name)
		if errors.Is(err, vcap.ErrAmbiguous) {
			return sidecar.BindingInfo{Problems: []string{"more than one binding has this name"}}, true
		}
		if err != nil {
			return sidecar.BindingInfo{}, false
		}
		info := sidecar.BindingInfo{Auth: b.Auth != nil, Problems: b.Problems}
		if svc, ok := vcap.ServiceOf(b); ok {
			info.Service, info.Problems = svc.Kind, svc.Problems
		}
		if b.Auth != nil && b.Auth.Leaf() != nil && b.Auth.Key != nil {
			info.Certificate = true
		}
		return info, true
	}
}

// netSettings are the dial override and trust every client shares.
type netSettings struct {
	resolver *netx.Resolver
	roots    *x509.CertPool // nil: the system roots
	key      string         // a digest of the settings, part of pool keys
}

func newNetSettings(cfg *sidecar.Config) (*netSettings, error) {
	rules, err := netx.ParseRules(cfg.Resolve)
	if err != nil {
		return nil, &sidecar.ConfigError{Source: cfg.Source(), Field: "resolve", Err: fmt.Errorf("%w: %v", sidecar.ErrInvalidValue, err)}
	}
	h := sha256.New()
	for _, r := range cfg.Resolve {
		h.Write([]byte(r + "\n"))
	}
	n := &netSettings{resolver: &netx.Resolver{Rules: rules}}
	if cfg.CAFile != "" {
		pemData, err := readInputFile(cfg.CAFile)
		if err != nil {
			return nil, &sidecar.ConfigError{Source: cfg.Source(), Field: "ca_file", Err: fmt.Errorf("%w: %v", sidecar.ErrInvalidValue, errors.Unwrap(err))}
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pemData) {
			return nil, &sidecar.ConfigError{Source: cfg.Source(), Field: "ca_file", Err: fmt.Errorf("%w: %s holds no PEM certificate", sidecar.ErrInvalidValue, cfg.CAFile)}
		}
		n.roots = pool
		h.Write(pemData)
	}
	n.key = hex.EncodeToString(h.Sum(nil)[:8])
	return n, nil
}

// genDeps are the providers of one configuration generation. It is the
// sidecar.Tokens of the generation and releases what it acquired on Close.
type genDeps struct {
	c       *composer
	set     *vcap.Set
	net     *netSettings
	maxKeys int // max_token_keys: distinct token keys per binding

	mu   sync.Mutex
	held []func()
}

func (g *genDeps) hold(release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held = append(g.held, release)
}

func (g *genDeps) release() {
	g.mu.Lock()
	held := g.held
	g.held = nil
	g.mu.Unlock()
	for _, f := range held {
		f()
	}
}

// failingSource answers every request with the reason the binding cannot
// give tokens: the proxy then answers 503 and /readyz says why.
type failingSource struct{ err error }

func (f failingSource) Token(context.Context, sidecar.TokenRequest) (sidecar.Token, error) {
	return sidecar.Token{}, f.err
}

// Source implements sidecar.Tokens with a token client per binding.
func (g *genDeps) Source(binding string, scopes []string, grant string) (sidecar.TokenSource, error) {
	b, err := g.set.ByName(binding)
	if err != nil {
		return nil, err
	}
	if err := b.Err(); err != nil {
		return failingSource{err: err}, nil
	}
	tcfg, err := tokenConfig(b)
	if err != nil {
		return failingSource{err: err}, nil
	}
	key := fmt.Sprintf("binding %s %s %s keys=%d", binding, g.net.key, bindingDigest(b), g.maxKeys)
	client, release, err := g.c.tokens.acquire(key, func() (*tokenclient.Client, func(), error) {
		opts := g.c.tokenOptions(binding, g.net)
		if g.maxKeys > 0 {
			opts = append(opts, tokenclient.WithMaxKeys(g.maxKeys))
		}
		cl, err := tokenclient.New(tcfg, opts...)
		if err != nil {
			return nil, nil, err
		}
		return cl, func() { _ = cl.Close() }, nil
	})
	if err != nil {
		return nil, fmt.Errorf("binding %q: %w", binding, err)
	}
	g.hold(release)
	scopes = slices.Clone(scopes)
	slices.Sort(scopes)
	s := &tokenSource{c: client, scopes: scopes, jwt: grant == sidecar.GrantJWTBearer}
	if !s.jwt {
		s.h, err = client.Handle(tokenclient.Request{Scopes: scopes})
		if err != nil {
			return nil, fmt.Errorf("binding %q: %w", binding, err)
		}
	}
	return s, nil
}

func (c *composer) tokenOptions(binding string, n *netSettings) []tokenclient.Option {
	hits := c.metrics.TokenCacheHits(binding)
	opts := []tokenclient.Option{
		tokenclient.WithDialContext(n.resolver.Dialer(nil)),
		// A proxied request waits at most this long for a token the cache
		// does not have before the proxy answers 503.
		tokenclient.WithRetry(tokenclient.RetryPolicy{MaxElapsed: 10 * time.Second}),
		tokenclient.WithLogger(c.log.With("binding", binding)),
		tokenclient.WithObserver(tokenclient.Observer{
			Hit: hits.Inc,
			Fetch: func(ev tokenclient.FetchEvent) {
				c.metrics.TokenFetched(binding, ev.Err, ev.Duration)
				if ev.Reason == tokenclient.ReasonRefresh {
					c.metrics.TokenRefreshed(binding, ev.Err)
				}
			},
		}),
	}
	if n.roots != nil {
		opts = append(opts, tokenclient.WithRootCAs(n.roots))
	}
	return opts
}

// bindingDigest identifies a binding's credentials without holding them.
func bindingDigest(b *vcap.Binding) string {
	h := sha256.New()
	if a := b.Auth; a != nil {
		for _, s := range []string{a.ClientID, a.ClientSecret.Reveal(), a.URL, a.CertURL, a.UAADomain, string(a.Auth), string(a.CertificatePEM), a.Key.PEM().Reveal()} {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// tokenSource adapts a token client to sidecar.TokenSource: a prepared
// handle for the provider tenant, the client for other tenants and the
// jwt-bearer exchange.
type tokenSource struct {
	c      *tokenclient.Client
	h      *tokenclient.Handle
	scopes []string
	jwt    bool
}

func (s *tokenSource) Token(ctx context.Context, req sidecar.TokenRequest) (sidecar.Token, error) {
	var t *tokenclient.Token
	var err error
	switch {
	case s.jwt:
		t, err = s.c.Token(ctx, tokenclient.Request{Grant: tokenclient.GrantJWTBearer, Scopes: s.scopes, Tenant: req.Tenant, Assertion: tokenclient.Secret(req.Assertion)})
	case req.Scopes != nil:
		t, err = s.c.Token(ctx, tokenclient.Request{Scopes: req.Scopes, Tenant: req.Tenant})
	case req.Tenant == "":
		t, err = s.h.Token(ctx)
	default:
		t, err = s.c.Token(ctx, tokenclient.Request{Scopes: s.scopes, Tenant: req.Tenant})
	}
	if errors.Is(err, tokenclient.ErrTooManyKeys) {
		return sidecar.Token{}, fmt.Errorf("%w: %w", sidecar.ErrTokenKeyLimit, err)
	}
	if err != nil {
		return sidecar.Token{}, err
	}
	return sidecar.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, ExpiresAt: t.Expiry, Scope: t.Scope}, nil
}

// oauth1Signer adapts oauth1.Signer to sidecar.Signer.
type oauth1Signer struct{ s *oauth1.Signer }

func (o oauth1Signer) Sign(req *http.Request, body []byte) error {
	auth, err := o.s.Authorization(req.Method, req.URL, req.Header.Get("Content-Type"), body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", auth)
	return nil
}

func newOAuth1Signer(cfg *sidecar.Config, i int, r sidecar.Route) (sidecar.Signer, error) {
	read := func(field, path string) (string, error) {
		b, err := readInputFile(path)
		if err != nil {
			return "", &sidecar.ConfigError{Source: cfg.Source(), Field: fmt.Sprintf("routes[%d].auth.%s", i, field), Name: r.Name, Err: fmt.Errorf("%w: %v", sidecar.ErrInvalidValue, err)}
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			return "", &sidecar.ConfigError{Source: cfg.Source(), Field: fmt.Sprintf("routes[%d].auth.%s", i, field), Name: r.Name, Err: fmt.Errorf("%w: %s is empty", sidecar.ErrMissingValue, path)}
		}
		return s, nil
	}
	key, err := read("key_file", r.Auth.KeyFile)
	if err != nil {
		return nil, err
	}
	secret, err := read("secret_file", r.Auth.SecretFile)
	if err != nil {
		return nil, err
	}
	s, err := oauth1.NewSigner(key, secret, oauth1.WithMaxBody(cfg.MaxSignedBody))
	if err != nil {
		return nil, &sidecar.ConfigError{Source: cfg.Source(), Field: fmt.Sprintf("routes[%d].auth", i), Name: r.Name, Err: fmt.Errorf("%w: %v", sidecar.ErrInvalidValue, err)}
	}
	return oauth1Signer{s: s}, nil
}

// liveCert is a certificate kept by certwatch (and, for a connector
// certificate, a heartbeat).
type liveCert struct {
	w  *certwatch.Watcher
	hb *connector.Heartbeat // nil without connection.json
}

func (l *liveCert) Current() *tls.Certificate {
	if l.w.Pair() == nil {
		return nil
	}
	c, err := l.w.Certificate()
	if err != nil {
		return nil
	}
	return c
}

func (l *liveCert) State() sidecar.CertificateState {
	st := l.w.Status()
	out := sidecar.CertificateState{
		NextRenewal: st.NextRenewal,
		Renewals:    st.Renewals,
		LastError:   st.LastError,
		NeedsToken:  st.NeedsToken,
		Revoked:     st.Revoked,
	}
	if l.hb != nil {
		hs := l.hb.Status()
		out.Heartbeats = hs.Successes
		if hs.LastError != nil && out.LastError == "" {
			out.LastError = "heartbeat: " + hs.LastError.Error()
		}
	}
	return out
}

// certificate starts (or shares) the watcher of one certificates entry.
func (g *genDeps) certificate(ctx context.Context, i int, ce sidecar.Certificate) (*liveCert, error) {
	var key string
	var start func() (*liveCert, func(), error)
	if ce.Binding != "" {
		b, err := g.set.ByName(ce.Binding)
		if err != nil {
			return nil, err
		}
		key = fmt.Sprintf("binding %s %s %s", ce.Name, ce.Binding, bindingDigest(b))
		start = func() (*liveCert, func(), error) { return g.c.startBindingCert(ctx, ce, b) }
	} else {
		key = fmt.Sprintf("dir %s %s renew=%v pairing=%s key=%s %s", ce.Name, filepath.Clean(ce.Dir), ce.Renew, ce.PairingURLFile, ce.KeyType, g.net.key)
		dc := dirCert{name: ce.Name, dir: ce.Dir, renew: ce.Renew, keyType: ce.KeyType}
		if ce.PairingURLFile != "" {
			dc.pairingURL = pairingURLFile(ce.PairingURLFile)
		}
		start = func() (*liveCert, func(), error) { return g.c.startDirCert(ctx, dc, g.net) }
	}
	lc, release, err := g.c.certs.acquire(key, start)
	if err != nil {
		return nil, fmt.Errorf("certificates[%d] %q: %w", i, ce.Name, err)
	}
	g.hold(release)
	return lc, nil
}

// runtimeCertificate starts (or shares) the second-phase certificate of a
// certificates entry with runtime_dir: paired with the runtime connector's
// one-time token URL from the central connector's management info.
func (g *genDeps) runtimeCertificate(ctx context.Context, i int, ce sidecar.Certificate, central *liveCert) (*liveCert, error) {
	name := ce.RuntimeName()
	key := fmt.Sprintf("dir %s %s renew=%v runtime-of=%s %s", name, filepath.Clean(ce.RuntimeDir), ce.Renew, filepath.Clean(ce.Dir), g.net.key)
	dc := dirCert{name: name, dir: ce.RuntimeDir, renew: ce.Renew, keyType: ce.KeyType, pairingURL: g.c.runtimeTokenURL(central, ce.Dir, g.net)}
	lc, release, err := g.c.certs.acquire(key, func() (*liveCert, func(), error) { return g.c.startDirCert(ctx, dc, g.net) })
	if err != nil {
		return nil, fmt.Errorf("certificates[%d] %q (runtime_dir): %w", i, ce.Name, err)
	}
	g.hold(release)
	return lc, nil
}

func (c *composer) startBindingCert(ctx context.Context, ce sidecar.Certificate, b *vcap.Binding) (*liveCert, func(), error) {
	if b.Auth == nil || b.Auth.Key == nil || len(b.Auth.CertificatePEM) == 0 {
		return nil, nil, badInputf("binding %q carries no certificate and key", b.Name)
	}
	certPEM, keyPEM := b.Auth.CertificatePEM, []byte(b.Auth.Key.PEM().Reveal())
	w, err := certwatch.New(ctx,
		certwatch.WithName(ce.Name),
		certwatch.WithLoader(func(context.Context) ([]byte, []byte, []byte, error) { return certPEM, keyPEM, nil, nil }),
		certwatch.WithPollInterval(0),
		certwatch.WithLogger(c.log),
	)
	if err != nil {
		return nil, nil, err
	}
	lc := &liveCert{w: w}
	return lc, c.runInBackground(w, nil, nil), nil
}

// runInBackground runs the watcher (and heartbeat) until the returned
// release function is called; release waits for them.
// onUpdate, when not nil, runs after every change of the live pair.
func (c *composer) runInBackground(w *certwatch.Watcher, hb *connector.Heartbeat, onUpdate func(context.Context)) func() {
	bctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(bctx) }()
	if hb != nil {
		wg.Add(1)
		go func() { defer wg.Done(); _ = hb.Run(bctx) }()
	}
	if onUpdate != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			updated := w.Updated()
			for {
				select {
				case <-bctx.Done():
					return
				case <-updated:
					updated = w.Updated()
					onUpdate(bctx)
				}
			}
		}()
	}
	return func() {
		cancel()
		_ = w.Close()
		wg.Wait()
	}
}

func (c *composer) connectorClient(n *netSettings, extra ...connector.Option) (*connector.Client, error) {
	opts := []connector.Option{connector.WithDialContext(n.resolver.Dialer(nil)), connector.WithLogger(c.log)}
	if n.roots != nil {
		opts = append(opts, connector.WithRootCAs(n.roots))
	}
	return connector.New(append(opts, extra...)...)
}

// dirCert says how to keep one certificate directory alive.
type dirCert struct {
	name    string
	dir     string
	renew   bool
	keyType string // for pairing; "" follows the connector
	// pairingURL returns the one-time token URL to pair with when dir holds
	// no valid pair; nil when pairing is not configured.
	pairingURL func(ctx context.Context) (string, error)
}

// startDirCert pairs the directory when it holds no valid pair and a
// pairing URL is configured, then watches it and, with renew, renews it
// through the connector named in connection.json and heartbeats its info
// endpoint.
func (c *composer) startDirCert(ctx context.Context, dc dirCert, n *netSettings) (*liveCert, func(), error) {
	pair, err := certwatch.LoadDir(ctx, dc.dir)
	valid := err == nil && pair.Verify(c.now()) == nil
	if !valid && dc.pairingURL != nil {
		u, err := dc.pairingURL(ctx)
		if err != nil {
			return nil, nil, err
		}
		if err := c.pairDir(ctx, dc.name, dc.dir, dc.keyType, u, n); err != nil {
			return nil, nil, err
		}
	}
	opts := []certwatch.Option{
		certwatch.WithDir(dc.dir),
		certwatch.WithName(dc.name),
		certwatch.WithLogger(c.log),
		certwatch.WithPollInterval(c.o.PollInterval),
	}
	var lc liveCert
	// The connector's mTLS calls present the watcher's live certificate.
	getCert := func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) { return lc.w.GetClientCertificate(cri) }
	var hb *connector.Heartbeat
	ciPath := filepath.Join(dc.dir, certwatch.ConnectionFile)
	var ci *connector.ConnectionInfo // with renew: what connection.json holds
	var ciMu sync.Mutex
	if dc.renew {
		loaded, err := connector.LoadConnectionInfo(ciPath)
		ci = &loaded
		if err != nil {
			return nil, nil, badInputf("certificate %q: renew: true needs %s (written by credbroker pair): %v", dc.name, ciPath, err)
		}
		if ci.RenewCertURL == "" {
			return nil, nil, badInputf("certificate %q: renew: true but %s has no renew_cert_url", dc.name, ciPath)
		}
		client, err := c.connectorClient(n, connector.WithGetClientCertificate(getCert))
		if err != nil {
			return nil, nil, err
		}
		renewer, err := connector.NewRenewer(client, ci.RenewCertURL)
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, certwatch.WithRenewer(renewer))
		if ci.InfoURL != "" {
			hb, err = connector.NewHeartbeat(client, ci.InfoURL,
				connector.InitialInfo(ci.ManagementInfo()),
				connector.OnResult(func(connector.HeartbeatResult) {
					// Loud, every beat: a revoked certificate still works
					// (the connector honours it until it expires), so
					// nothing else would remind anyone before it runs out.
					if st := lc.w.Status(); st.Revoked && st.Ready {
						c.log.Error("certificate can no longer be renewed (revoked); it stays in use until it expires, then a new one-time token is needed",
							"certificate", dc.name, "sha256", st.SHA256, "not_after", st.NotAfter, "error", st.LastError)
					}
				}),
				connector.OnChange(func(info connector.ManagementInfo) {
					ciMu.Lock()
					defer ciMu.Unlock()
					if !ci.ApplyInfo(info, c.now()) {
						return
					}
					if u := info.URLs.RenewCertURL; u != "" {
						_ = renewer.SetURL(u)
					}
					if data, err := ci.Marshal(); err == nil {
						if err := certwatch.WriteExtra(context.Background(), dc.dir, map[string][]byte{certwatch.ConnectionFile: data}); err != nil {
							c.log.Warn("connector info changed but connection.json could not be written", "certificate", dc.name, "err", err)
						}
					}
					c.log.Info("connector info changed", "certificate", dc.name, "events_url", info.URLs.EventsURL)
				}))
			if err != nil {
				return nil, nil, err
			}
		}
	}
	w, err := certwatch.New(ctx, opts...)
	if err != nil {
		return nil, nil, err
	}
	lc.w, lc.hb = w, hb
	var onUpdate func(context.Context)
	if ci != nil {
		onUpdate = func(ctx context.Context) {
			// connection.json names the certificate in use (by fingerprint:
			// serials repeat), and the heartbeat proves the new one at once
			// rather than in up to a minute.
			if p := w.Pair(); p != nil {
				ciMu.Lock()
				if ci.SHA256 != p.SHA256() {
					ci.SetCertificate(p.Leaf(), c.now())
					if data, err := ci.Marshal(); err == nil {
						if err := certwatch.WriteExtra(context.Background(), dc.dir, map[string][]byte{certwatch.ConnectionFile: data}); err != nil {
							c.log.Warn("certificate changed but connection.json could not be written", "certificate", dc.name, "err", err)
						}
					}
				}
				ciMu.Unlock()
			}
			if hb != nil {
				hb.Beat(ctx)
			}
		}
	}
	return &lc, c.runInBackground(w, hb, onUpdate), nil
}

// pairingURLFile reads a one-time token URL from a file.
func pairingURLFile(path string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		b, err := readInputFile(path)
		if err != nil {
			return "", badInputf("pairing_url_file %s: %v", path, errors.Unwrap(err))
		}
		u := strings.TrimSpace(string(b))
		if u == "" {
			return "", badInputf("pairing_url_file %s is empty", path)
		}
		return u, nil
	}
}

// runtimeTokenURL asks the central connector (with the central
// certificate) for the runtime connector's one-time token URL.
func (c *composer) runtimeTokenURL(central *liveCert, centralDir string, n *netSettings) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		ciPath := filepath.Join(centralDir, certwatch.ConnectionFile)
		ci, err := connector.LoadConnectionInfo(ciPath)
		if err != nil || ci.InfoURL == "" {
			return "", badInputf("runtime_dir needs the central connection's %s with an info_url: %v", ciPath, err)
		}
		client, err := c.connectorClient(n, connector.WithGetClientCertificate(central.w.GetClientCertificate))
		if err != nil {
			return "", err
		}
		defer client.CloseIdleConnections()
		info, err := client.Info(ctx, ci.InfoURL)
		if err != nil {
			return "", fmt.Errorf("reading the central connector's management info: %w", err)
		}
		u := info.RuntimeTokenURL()
		if u == "" {
			return "", badInputf("runtime_dir is set but the connector announced no runtime.tokenUrl (a standalone connector: route to the certificate itself)")
		}
		return u, nil
	}
}

// pairDir redeems a one-time token URL and persists the pair and
// connection.json into dir (as `credbroker pair`).
func (c *composer) pairDir(ctx context.Context, name, dir, keyType, tokenURL string, n *netSettings) error {
	var extra []connector.Option
	if keyType != "" {
		kt, err := connector.ParseKeyType(keyType)
		if err != nil {
			return badInputf("certificate %q: key_type %q: want rsa2048, rsa4096 or ecdsa-p256", name, keyType)
		}
		extra = append(extra, connector.WithKeyType(kt))
	}
	if err := checkCertDir(c.log, fmt.Sprintf("certificate %q: dir", name), dir); err != nil {
		return err
	}
	client, err := c.connectorClient(n, extra...)
	if err != nil {
		return err
	}
	defer client.CloseIdleConnections()
	c.log.Info("pairing with the connector", "certificate", name, "url", connector.RedactURL(tokenURL))
	conn, err := client.Connect(ctx, tokenURL)
	if err != nil {
		return fmt.Errorf("pairing with %s: %w", connector.RedactURL(tokenURL), err)
	}
	if conn.InfoErr != nil {
		c.log.Warn("paired, but the management info call failed", "certificate", name, "err", conn.InfoErr.Error())
	}
	data, err := conn.ConnectionInfo.Marshal()
	if err != nil {
		return err
	}
	p := conn.Pairing
	if err := certwatch.Persist(ctx, dir, certwatch.Files{CertPEM: p.ChainPEM, KeyPEM: p.KeyPEM, CAPEM: p.CAPEM, Extra: map[string][]byte{certwatch.ConnectionFile: data}}); err != nil {
		return fmt.Errorf("paired, but writing %s failed (the one-time token is used up): %w", dir, err)
	}
	c.log.Info("paired", "certificate", name, "subject", conn.ConnectionInfo.Subject, "sha256", conn.ConnectionInfo.SHA256, "not_after", conn.ConnectionInfo.NotAfter)
	return nil
}

// refPool shares values between configuration generations by key. A value
// is created on the first acquire and closed when its last holder releases
// it. Safe for concurrent use.
type refPool[T any] struct {
	mu    sync.Mutex
	items map[string]*refItem[T]
}

type refItem[T any] struct {
	v      T
	refs   int
	close  func()
	closed bool // by closeAll: later releases do nothing
}

// acquire returns the value for key (creating it with mk) and a release
// function to call exactly once.
func (p *refPool[T]) acquire(key string, mk func() (T, func(), error)) (T, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.items == nil {
		p.items = map[string]*refItem[T]{}
	}
	it, ok := p.items[key]
	if !ok {
		v, closeFn, err := mk()
		if err != nil {
			var zero T
			return zero, nil, err
		}
		it = &refItem[T]{v: v, close: closeFn}
		p.items[key] = it
	}
	it.refs++
	var once sync.Once
	return it.v, func() { once.Do(func() { p.release(key, it) }) }, nil
}

func (p *refPool[T]) release(key string, it *refItem[T]) {
	p.mu.Lock()
	it.refs--
	last := it.refs == 0 && !it.closed
	if last {
		it.closed = true
		if p.items[key] == it {
			delete(p.items, key)
		}
	}
	p.mu.Unlock()
	if last && it.close != nil {
		it.close()
	}
}

func (p *refPool[T]) closeAll() {
	p.mu.Lock()
	items := p.items
	p.items = nil
	for _, it := range items {
		it.closed = true
	}
	p.mu.Unlock()
	for _, it := range items {
		if it.close != nil {
			it.close()
		}
	}
}
