package broker

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/credbroker/credbroker/destination"
	"github.com/credbroker/credbroker/internal/clock"
	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/internal/tracing"
	"github.com/credbroker/credbroker/oauth1"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/sidecar/guard"
	"github.com/credbroker/credbroker/tokenclient"
	"github.com/credbroker/credbroker/vcap"
)

// DefaultPollInterval is how often files are re-read when Options leaves
// PollInterval zero.
const DefaultPollInterval = 30 * time.Second

// Options are the settings of `credbroker run` that lay over the config
// file: a non-zero field wins over the file, the file over the default.
type Options struct {
	// ConfigFile is the YAML config (routes, certificates, inbound, …); ""
	// serves the defaults.
	ConfigFile string
	// Listen and AdminListen override listen: and admin_listen:.
	Listen, AdminListen string
	// AllowNonLoopback allows listen addresses beyond loopback.
	AllowNonLoopback bool
	// Resolve are dial overrides PATTERN=ADDR, added to resolve:.
	Resolve []string
	// CAFile overrides ca_file: the PEM CAs trusted, with the system roots,
	// for upstreams, auth servers, key sets and connectors.
	CAFile string
	// DrainTimeout overrides drain_timeout: when positive.
	DrainTimeout time.Duration
	// PollInterval is how often the config, bindings and certificates are
	// re-read in case a file event was missed (default DefaultPollInterval).
	PollInterval time.Duration
	// Bindings say where service bindings come from; the zero value reads
	// none.
	Bindings vcap.Sources
	// KeyFile is the private key of self-managed X.509 bindings.
	KeyFile string
	// TokenCacheDir overrides token_cache_dir: when not empty.
	TokenCacheDir string
	// AccessLog, when not empty, turns access_log: on and names its file
	// ("-": standard output); AccessLogFormat and AccessLogSample, when
	// set, override access_log.format and access_log.sample.
	AccessLog       string
	AccessLogFormat string
	AccessLogSample *float64
	// Kubernetes is the API server of certificates[].persist.kubernetes_secret.
	Kubernetes KubernetesAPI
	// PersistSecret, "[NAMESPACE/]NAME", sets persist.kubernetes_secret of
	// the one certificate that pairs at start (pairing_url_file).
	PersistSecret string
	// Tracing are the OTEL_* variables (tracing.FromEnv); they win over
	// the config file's tracing: block (tracing.go).
	Tracing tracing.Settings
}

// Option configures a Broker.
type Option func(*options)

type options struct {
	log     *slog.Logger
	metrics *sidecar.Metrics
	clock   clock.Clock
	tp      trace.TracerProvider
}

// WithLogger sets the logger of the broker and of everything it builds
// (default: silent).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMetrics sets the metrics the providers report to; pass the same value
// to sidecar.WithMetrics (default: a fresh sidecar.NewMetrics).
func WithMetrics(m *sidecar.Metrics) Option { return func(o *options) { o.metrics = m } }

// Clock is the broker's time source, the module's one clock abstraction
// (the same as tokenclient.Clock).
type Clock = clock.Clock

// WithClock sets the clock of every time decision of the broker and what
// it builds: token expiry and refresh, certificate validity and renewal,
// heartbeats, the clock-jump check, the guard's token, signature and
// certificate checks and tls.Config.Time of every client and listener
// (default: the system clock). The end-to-end suites pass a test clock
// here (docs/testing.md).
func WithClock(c Clock) Option { return func(o *options) { o.clock = c } }

// Broker composes the sidecar: its Load method reads the config and the
// bindings and builds every credential provider of a configuration
// generation. It lives for the whole run: token clients and certificate
// lifecycles (pairing, renewal, heartbeat) are shared between generations
// whose inputs did not change, so a reload keeps the token cache and never
// pairs or renews twice. Safe for concurrent use; Close it when done.
type Broker struct {
	o       Options
	log     *slog.Logger
	metrics *sidecar.Metrics
	now     func() time.Time
	clock   clock.Clock
	// salt keys the digests of credentials in pool keys: they identify a
	// binding's credentials within this process and nowhere else.
	salt   []byte
	tokens refPool[*tokenclient.Client]
	certs  refPool[*liveCert]
	dests  refPool[*destination.Cache] // destination.go: kept across reloads
	// tp makes the spans; nil when tracing is off (tracing.go).
	tp trace.TracerProvider
	// jumps signals wall-clock jumps to certificate renewal and heartbeats
	// (token clients watch for themselves); Run runs it.
	jumps *clock.JumpWatcher

	tokenDirsMu sync.Mutex
	tokenDirs   map[string]*tokenDir // by token_cache_dir: one writer per directory
}

// tokenDir returns the token snapshot directory under root, opening it
// once per run.
func (c *Broker) tokenDir(root string) (*tokenDir, error) {
	c.tokenDirsMu.Lock()
	defer c.tokenDirsMu.Unlock()
	if d := c.tokenDirs[root]; d != nil {
		return d, nil
	}
	d, err := openTokenDir(root, c.log, c.metrics)
	if err != nil {
		return nil, err
	}
	if c.tokenDirs == nil {
		c.tokenDirs = map[string]*tokenDir{}
	}
	c.tokenDirs[root] = d
	return d, nil
}

// New returns a broker for o. It reads nothing yet: Load does.
func New(o Options, opts ...Option) (*Broker, error) {
	op := options{clock: clock.System}
	for _, f := range opts {
		f(&op)
	}
	if op.log == nil {
		op.log = slog.New(slog.DiscardHandler)
	}
	if op.metrics == nil {
		op.metrics = sidecar.NewMetrics()
	}
	if op.clock == nil {
		return nil, configErrorf("broker: nil clock")
	}
	if o.PollInterval < 0 || o.DrainTimeout < 0 {
		return nil, configErrorf("broker: negative poll interval or drain timeout")
	}
	if o.PollInterval == 0 {
		o.PollInterval = DefaultPollInterval
	}
	salt := make([]byte, 32)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	o.Resolve = slices.Clone(o.Resolve)
	c := &Broker{o: o, log: op.log, metrics: op.metrics, now: op.clock.Now, clock: op.clock, salt: salt, tp: op.tp}
	c.jumps = clock.NewJumpWatcher(c.clock, 0, 0, func(d time.Duration) {
		c.log.Warn("the wall clock jumped (suspend, pause or clock step); re-evaluating certificate renewal and heartbeats", "jump", d)
		c.metrics.ClockJumped("certificates")
	})
	return c, nil
}

// Close stops every certificate lifecycle and token client the broker
// still holds and waits for them. Call it after the sidecar stopped.
func (c *Broker) Close() error {
	c.tokens.closeAll()
	c.certs.closeAll()
	c.dests.closeAll()
	return nil
}

// Run serves the sidecar until ctx ends (SIGTERM: in-flight requests
// drain). A value on reload re-reads the config and the bindings (SIGHUP).
func (c *Broker) Run(ctx context.Context, reload <-chan struct{}) error {
	if c.tp == nil {
		p, err := c.startTracing(ctx)
		if err != nil {
			return err
		}
		defer func() {
			fctx, cancel := context.WithTimeout(context.Background(), tracing.Flush)
			defer cancel()
			_ = p.Shutdown(fctx)
		}()
		if p.Enabled() {
			c.tp = p
		}
	}
	srv := sidecar.NewServer(c.Load, sidecar.WithLogger(c.log), sidecar.WithClock(c.now), sidecar.WithMetrics(c.metrics), sidecar.WithPollInterval(c.o.PollInterval), sidecar.WithTracerProvider(c.tp))
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = c.jumps.Run(rctx) }()
	go func() {
		for {
			select {
			case <-rctx.Done():
				return
			case <-reload:
				c.log.Debug("reloading the configuration and bindings")
				srv.TriggerReload()
			}
		}
	}()
	return srv.Run(ctx)
}

// Load is a sidecar.Loader: it reads and checks the config and the
// bindings, then prepares every credential provider of the generation.
// Errors that are bad configuration match ErrConfig, *sidecar.ConfigError
// or *vcap.Error.
func (c *Broker) Load(ctx context.Context) (*sidecar.Config, sidecar.Deps, error) {
	ck, p, err := c.check(ctx)
	if err != nil {
		return nil, sidecar.Deps{}, err
	}
	if err := p.Err(); err != nil {
		return nil, sidecar.Deps{}, err // the errors alone: this generation is not used
	}
	for _, w := range p.Warnings {
		if errors.Is(w, errPlainHTTPRoutes) {
			// One structured line: log collectors pick the routes out.
			c.log.Warn(errPlainHTTPRoutes.Error(), "routes", ck.cfg.PlainHTTPRoutes())
			continue
		}
		c.log.Warn("configuration warning", "warning", w.Error())
	}
	cfg, set, n := ck.cfg, ck.set, ck.net
	lookup := bindingLookup(set)
	g := &genDeps{c: c, set: set, net: n, maxKeys: cfg.MaxTokenKeys, outageMargin: cfg.TokenOutageMargin,
		invalidationInterval: cfg.TokenInvalidationInterval}
	if cfg.TokenCacheDir != "" {
		td, err := c.tokenDir(cfg.TokenCacheDir)
		if err != nil {
			return nil, sidecar.Deps{}, cfg.Problem("token_cache_dir", "", fmt.Errorf("%w: %v", sidecar.ErrInvalidValue, err))
		}
		g.tokenDir = td
	}
	deps := sidecar.Deps{Bindings: lookup, Close: g.release, Watch: c.watchPaths(cfg), Network: n}
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

// loadBindings reads the bindings from the first source that is set; nil
// without a source.
func (c *Broker) loadBindings(ctx context.Context) (*vcap.Set, error) {
	if kind, _ := c.o.Bindings.Chosen(); kind == "" {
		return nil, nil
	}
	vopts := []vcap.Option{vcap.WithLogger(c.log), vcap.WithClock(c.now)}
	if c.o.KeyFile != "" {
		vopts = append(vopts, vcap.WithKeyFile(c.o.KeyFile))
	}
	set, err := vcap.Load(ctx, c.o.Bindings, vopts...)
	if err != nil {
		var ve *vcap.Error
		if errors.As(err, &ve) || errors.Is(err, vcap.ErrNoBindings) {
			return nil, configError(err)
		}
		return nil, err
	}
	c.log.Debug("bindings loaded", "source", set.Source, "count", set.Len())
	return set, nil
}

// inbound builds the inbound guard of the config's inbound: section and
// runs its file watcher until the generation is released.
func (g *genDeps) inbound(cfg *sidecar.Config, certs map[string]sidecar.ClientCertificate) (*guard.Guard, error) {
	lookup := guardBindings(g.set)
	tr := &http.Transport{Proxy: nil, DialContext: g.net.resolver.Dialer(nil), ForceAttemptHTTP2: true, TLSHandshakeTimeout: 10 * time.Second}
	if g.net.roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: g.net.roots, MinVersion: tls.VersionTLS12, Time: g.c.now}
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
		guard.WithClock(g.c.now),
		guard.WithObserver(g.c.metrics.InboundObserver()),
		guard.WithResync(g.c.o.PollInterval),
		guard.WithTracerProvider(g.c.tp),
	}
	if t := cfg.Inbound.TLS; t != nil && t.Certificate != "" {
		lc, ok := certs[t.Certificate].(*liveCert)
		if !ok {
			return nil, &sidecar.ConfigError{Source: cfg.Source(), Field: "inbound.tls.certificate", Err: fmt.Errorf("%w: %q", sidecar.ErrUnknownCertificate, t.Certificate)}
		}
		opts = append(opts, guard.WithGetCertificate(lc.GetCertificate))
	}
	gd, err := guard.New(cfg.Inbound, opts...)
	if err != nil {
		if errors.Is(err, guard.ErrConfig) || errors.Is(err, guard.ErrSetup) {
			return nil, configError(err)
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

// guardBindings is the inbound guard's view of the bindings.
func guardBindings(set *vcap.Set) func(name string) (guard.Binding, bool) {
	return func(name string) (guard.Binding, bool) {
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
}

// watchPaths are the files whose change reloads the sidecar.
func (c *Broker) watchPaths(cfg *sidecar.Config) []string {
	var out []string
	add := func(p string) {
		if p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	add(c.o.ConfigFile)
	src := c.o.Bindings
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

// genDeps are the providers of one configuration generation. It is the
// sidecar.Tokens of the generation and releases what it acquired on Close.
type genDeps struct {
	c       *Broker
	set     *vcap.Set
	net     *Network
	maxKeys int // max_token_keys: distinct token keys per binding
	// outageMargin is token_outage_margin (0: the token client's default).
	outageMargin time.Duration
	// invalidationInterval is token_invalidation_interval (0: the token
	// client's default).
	invalidationInterval time.Duration
	// tokenDir persists tokens (token_cache_dir); nil when off.
	tokenDir *tokenDir

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

// AppendAuthorization makes oauth1Signer a sidecar.HeaderSigner: oauth1
// routes sign bodyless requests on the proxy's fast path.
func (o oauth1Signer) AppendAuthorization(dst []byte, method string, u *url.URL, contentType string, body []byte) ([]byte, error) {
	return o.s.AppendAuthorization(dst, method, u, contentType, body)
}

func newOAuth1Signer(cfg *sidecar.Config, i int, r sidecar.Route) (sidecar.Signer, error) {
	key, cerr := readOAuth1File(cfg, i, r, "key_file", r.Auth.KeyFile)
	if cerr != nil {
		return nil, cerr
	}
	secret, cerr := readOAuth1File(cfg, i, r, "secret_file", r.Auth.SecretFile)
	if cerr != nil {
		return nil, cerr
	}
	s, err := oauth1.NewSigner(key, secret, oauth1.WithMaxBody(cfg.MaxSignedBody))
	if err != nil {
		return nil, cfg.Problem(fmt.Sprintf("routes[%d].auth", i), r.Name, fmt.Errorf("%w: %v", sidecar.ErrInvalidValue, err))
	}
	return oauth1Signer{s: s}, nil
}

// readOAuth1File reads an OAuth 1.0a consumer key or secret file of route
// i. The error names the file, never its content.
func readOAuth1File(cfg *sidecar.Config, i int, r sidecar.Route, field, path string) (string, *sidecar.ConfigError) {
	f := fmt.Sprintf("routes[%d].auth.%s", i, field)
	b, err := inputfile.Read(path)
	if err != nil {
		return "", cfg.Problem(f, r.Name, fmt.Errorf("%w: %v", sidecar.ErrInvalidValue, err))
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", cfg.Problem(f, r.Name, fmt.Errorf("%w: %s is empty", sidecar.ErrMissingValue, path))
	}
	return s, nil
}
