package sidecar

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/credbroker/credbroker/internal/dirwatch"
)

// Loader produces a configuration and its credential providers. The
// Server calls it at start and on every reload; the returned Config must
// come from ParseConfig (and be validated against the bindings). An error
// that wraps *ConfigError or ConfigErrors is bad configuration.
type Loader func(ctx context.Context) (*Config, Deps, error)

// Server runs the proxy and admin listeners for configurations produced by
// a Loader, reloads on request or when watched files change, and drains on
// shutdown.
type Server struct {
	load Loader
	o    options

	mu         sync.Mutex // serialises loads
	gen        atomic.Pointer[generation]
	genN       int
	lastReload atomic.Pointer[string]
	draining   atomic.Bool
	retire     sync.WaitGroup

	started  chan struct{}
	addr     string
	admin    string
	inbound  string
	watchCtx context.Context
	reloadCh chan struct{}
	// limits are the listeners' connection caps (proxy, admin, inbound).
	limits [3]*limitListener
	// poll is the watcher's backstop interval.
	poll time.Duration
	// fastPipelined is the fast loop's test hook (fastServer.pipelined).
	fastPipelined func(*fastConn)
}

type generation struct {
	n        int
	cfg      *Config
	deps     Deps
	proxy    *Proxy
	loadedAt time.Time
	stop     context.CancelFunc // the file watcher
}

// NewServer returns a server for load. Options: WithLogger, WithClock,
// WithMetrics, WithPollInterval.
func NewServer(load Loader, opts ...Option) *Server {
	s := &Server{load: load, o: buildOptions(opts), started: make(chan struct{}), reloadCh: make(chan struct{}, 1), poll: 30 * time.Second}
	if s.o.poll > 0 {
		s.poll = s.o.poll
	}
	return s
}

// WithPollInterval sets how often a Server re-reads its watched files as a
// backstop for missed file events (default 30s; 0 or less keeps the
// default).
func WithPollInterval(d time.Duration) Option { return func(o *options) { o.poll = d } }

// Metrics returns the server's metrics.
func (s *Server) Metrics() *Metrics { return s.o.metrics }

// Started is closed once both listeners are bound.
func (s *Server) Started() <-chan struct{} { return s.started }

// Addr returns the proxy listener's address ("" before Started).
func (s *Server) Addr() string { return s.addr }

// AdminAddr returns the admin listener's address ("" before Started).
func (s *Server) AdminAddr() string { return s.admin }

// InboundAddr returns the inbound guard's address ("" without one or before
// Started).
func (s *Server) InboundAddr() string { return s.inbound }

// Run loads the configuration, listens, and serves until ctx is done; then
// it stops accepting, drains in-flight requests within the configuration's
// drain_timeout and returns nil. It returns the loader's error (bad
// configuration) or a listen error without serving.
func (s *Server) Run(ctx context.Context) error {
	g, err := s.build(ctx)
	if err != nil {
		s.o.metrics.reloads.WithLabelValues("refused").Inc()
		return err
	}
	s.o.metrics.reloads.WithLabelValues("ok").Inc()
	ln, err := net.Listen("tcp", g.cfg.Listen)
	if err != nil {
		g.close()
		return fmt.Errorf("sidecar: listen %s: %w", g.cfg.Listen, err)
	}
	aln, err := net.Listen("tcp", g.cfg.AdminListen)
	if err != nil {
		ln.Close()
		g.close()
		return fmt.Errorf("sidecar: admin listen %s: %w", g.cfg.AdminListen, err)
	}
	var inLn net.Listener
	if in := g.cfg.Inbound; in != nil {
		if g.deps.Inbound == nil {
			ln.Close()
			aln.Close()
			g.close()
			return errors.New("sidecar: inbound: configured but the loader built no guard")
		}
		if inLn, err = net.Listen("tcp", in.Listen); err != nil {
			ln.Close()
			aln.Close()
			g.close()
			return fmt.Errorf("sidecar: inbound listen %s: %w", in.Listen, err)
		}
		tlsIn := g.deps.Inbound.TLSConfig() != nil
		s.limits[2] = newLimitListener(inLn, g.cfg.MaxConnections.Inbound, s.o.metrics, "inbound", !tlsIn)
		inLn = s.limits[2]
		if tlsIn {
			// The guard of the current generation decides (its certificate
			// rotates, a reload replaces the guard).
			inLn = tls.NewListener(inLn, &tls.Config{
				MinVersion: tls.VersionTLS12,
				Time:       s.o.now,
				GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
					return s.gen.Load().deps.Inbound.TLSConfig(), nil
				},
			})
		}
		s.inbound = inLn.Addr().String()
	}
	s.addr, s.admin = ln.Addr().String(), aln.Addr().String()
	s.limits[0] = newLimitListener(ln, g.cfg.MaxConnections.Proxy, s.o.metrics, "proxy", true)
	s.limits[1] = newLimitListener(aln, g.cfg.MaxConnections.Admin, s.o.metrics, "admin", true)
	// The proxy listener's heads are checked by the fast loop, which hands
	// every request it does not serve itself to proxySrv behind strictConn.
	s.limits[0].strict = false
	// Every request head, on every listener, has client_header_timeout
	// from its first byte to its end (strictConn, the fast loop).
	hdrTimeout := g.cfg.ClientHeaderTimeout
	for _, l := range s.limits {
		if l != nil {
			l.headerTimeout = hdrTimeout
		}
	}
	fast := newFastServer(s, s.limits[0], g.cfg.ClientIdleTimeout, hdrTimeout)
	fast.pipelined = s.fastPipelined
	aln = s.limits[1]
	errLog := slog.NewLogLogger(s.o.log.Handler(), slog.LevelDebug)
	proxySrv := &http.Server{
		Handler:           http.HandlerFunc(s.serveProxy),
		ReadHeaderTimeout: hdrTimeout,
		IdleTimeout:       g.cfg.ClientIdleTimeout,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          errLog,
	}
	adminSrv := &http.Server{
		Handler:           s.adminHandler(),
		ReadHeaderTimeout: hdrTimeout,
		IdleTimeout:       g.cfg.ClientIdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
	// Probes and scrapes open a connection each time; a keep-alive admin
	// connection only lets a client that can reach admin_listen (0.0.0.0 in
	// the chart) hold a slot of max_connections.admin while idle, until
	// probes are refused. Every admin answer closes its connection.
	adminSrv.SetKeepAlivesEnabled(false)
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWatch()
	s.watchCtx = watchCtx
	s.activate(g)
	s.o.metrics.setCertificates(func() map[string]CertificateState {
		if g := s.gen.Load(); g != nil {
			return g.proxy.certificateStates()
		}
		return nil
	})

	// Return the start-up garbage (config parsing, certificates, the
	// first generation's providers) to the OS before serving: without a
	// forced collection the runtime keeps those pages resident until the
	// heap grows past its goal, which at idle it never does (issue 16).
	debug.FreeOSMemory()

	serveErr := make(chan error, 4)
	go func() { serveErr <- fast.serve() }()
	go func() { serveErr <- proxySrv.Serve(fast.slow) }()
	go func() { serveErr <- adminSrv.Serve(aln) }()
	var inSrv *http.Server
	if inLn != nil {
		inSrv = &http.Server{
			Handler:           http.HandlerFunc(s.serveInbound),
			ReadHeaderTimeout: hdrTimeout,
			IdleTimeout:       g.cfg.ClientIdleTimeout,
			MaxHeaderBytes:    1 << 20,
			ErrorLog:          errLog,
		}
		go func() { serveErr <- inSrv.Serve(inLn) }()
	}
	go func() {
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-s.reloadCh:
				if err := s.Reload(watchCtx); err != nil {
					s.o.log.Error("reload refused; keeping the running configuration", "err", err)
				}
			}
		}
	}()
	s.o.log.Info("credbroker sidecar listening", "proxy", s.addr, "admin", s.admin, "inbound", s.inbound, "routes", len(g.cfg.Routes), "config", g.cfg.source)
	close(s.started)
	go s.warm(watchCtx)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("sidecar: serve: %w", err)
	}
	s.draining.Store(true)
	grace := s.gen.Load().cfg.DrainTimeout
	s.o.log.Info("shutting down: draining in-flight requests", "grace", grace.String())
	dctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range []*http.Server{proxySrv, inSrv} {
		if srv == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(dctx); err != nil {
				s.o.log.Warn("drain grace period over; closing remaining connections", "err", err)
				srv.Close()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := fast.Shutdown(dctx); err != nil {
			s.o.log.Warn("drain grace period over; closing remaining connections", "err", err)
		}
	}()
	wg.Wait()
	actx, acancel := context.WithTimeout(context.Background(), time.Second)
	defer acancel()
	if err := adminSrv.Shutdown(actx); err != nil {
		adminSrv.Close()
	}
	stopWatch()
	s.retire.Wait()
	if g := s.gen.Swap(nil); g != nil {
		g.close()
	}
	s.o.log.Info("stopped")
	return runErr
}

// warm fetches every credential once so the first requests do not wait.
func (s *Server) warm(ctx context.Context) {
	if g := s.gen.Load(); g != nil {
		st := g.proxy.status(ctx, s.o.now())
		s.setReady(st.Ready)
		if !st.Ready {
			s.o.log.Warn("not ready yet", "reasons", strings.Join(st.Reasons, "; "))
		}
	}
}

func (s *Server) setReady(ready bool) {
	if ready {
		s.o.metrics.ready.Set(1)
	} else {
		s.o.metrics.ready.Set(0)
	}
}

// build loads and prepares one generation.
func (s *Server) build(ctx context.Context) (*generation, error) {
	cfg, deps, err := s.load(ctx)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		if deps.Close != nil {
			deps.Close()
		}
		return nil, errors.New("sidecar: loader returned no configuration")
	}
	p, err := NewProxy(cfg, deps, WithLogger(s.o.log), WithClock(s.o.now), WithMetrics(s.o.metrics), WithTracerProvider(s.o.tp), WithAccessLogOutput(s.o.accessOut))
	if err != nil {
		if deps.Close != nil {
			deps.Close()
		}
		return nil, err
	}
	return &generation{cfg: cfg, deps: deps, proxy: p, loadedAt: s.o.now()}, nil
}

func (g *generation) close() {
	if g.stop != nil {
		g.stop()
	}
	g.proxy.Close()
	if g.deps.Close != nil {
		g.deps.Close()
	}
}

// activate makes g the served generation and starts its file watcher.
func (s *Server) activate(g *generation) {
	s.genN++
	g.n = s.genN
	wctx, stop := context.WithCancel(s.watchCtx)
	g.stop = stop
	w := dirwatch.New(g.deps.Watch, dirwatch.WithDebounce(200*time.Millisecond), dirwatch.WithPollInterval(s.poll), dirwatch.WithLogger(s.o.log))
	go w.Run(wctx, s.TriggerReload)
	s.gen.Store(g)
	// Connection caps follow the configuration (a lower cap closes
	// nothing: connections above it finish as they are).
	for i, n := range []int{g.cfg.MaxConnections.Proxy, g.cfg.MaxConnections.Admin, g.cfg.MaxConnections.Inbound} {
		if l := s.limits[i]; l != nil {
			l.SetLimit(n)
		}
	}
}

// TriggerReload asks the running server to reload soon (for SIGHUP). It
// never blocks; reloads requested while one is pending are merged.
func (s *Server) TriggerReload() {
	select {
	case s.reloadCh <- struct{}{}:
	default:
	}
}

// Reload loads the configuration again and swaps it in when it is valid.
// A bad configuration is refused and the running one kept (the error says
// why). Listen addresses cannot change on reload. The replaced
// configuration's providers are closed after its drain timeout, so requests
// in flight finish with them.
func (s *Server) Reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.gen.Load()
	if old == nil {
		return ErrNotStarted
	}
	g, err := s.build(ctx)
	if err == nil && (g.cfg.Listen != old.cfg.Listen || g.cfg.AdminListen != old.cfg.AdminListen || !sameInbound(old, g)) {
		g.close()
		g, err = nil, &ConfigError{Source: old.cfg.source, Field: "listen", Err: ErrReloadListen}
	}
	if err != nil {
		msg := err.Error()
		s.lastReload.Store(&msg)
		s.o.metrics.reloads.WithLabelValues("refused").Inc()
		return err
	}
	s.lastReload.Store(nil)
	s.o.metrics.reloads.WithLabelValues("ok").Inc()
	old.stop()
	s.activate(g)
	s.o.log.Info("configuration reloaded", "generation", g.n, "routes", len(g.cfg.Routes))
	s.retire.Add(1)
	go func() {
		defer s.retire.Done()
		t := time.NewTimer(old.cfg.DrainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.watchCtx.Done():
		}
		old.close()
	}()
	go s.warm(s.watchCtx)
	return nil
}

func (s *Server) serveProxy(w http.ResponseWriter, r *http.Request) {
	closeAfterChunked(w, r)
	p := s.gen.Load().proxy
	if p.access != nil {
		p.serveLogged(w, r)
		return
	}
	p.ServeHTTP(w, r)
}

func (s *Server) serveInbound(w http.ResponseWriter, r *http.Request) {
	closeAfterChunked(w, r)
	g := s.gen.Load()
	if a := g.proxy.access; a != nil {
		a.serveInboundLogged(g.deps.Inbound, w, r)
		return
	}
	g.deps.Inbound.ServeHTTP(w, r)
}

// closeAfterChunked closes the connection after answering a request with a
// Transfer-Encoding. net/http drops a Content-Length sent next to it and
// keeps the connection open, but the pair is the classic request-smuggling
// shape: RFC 9112 §6.3 says to close the connection after responding, so
// that nothing pipelined behind the body is read as a request of its own.
func closeAfterChunked(w http.ResponseWriter, r *http.Request) {
	if len(r.TransferEncoding) > 0 {
		w.Header().Set("Connection", "close")
	}
}

// sameInbound reports whether a reload keeps the inbound listener as it is
// (present or not, address, TLS or plain).
func sameInbound(old, g *generation) bool {
	a, b := old.cfg.Inbound, g.cfg.Inbound
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	if b != nil && g.deps.Inbound == nil {
		return false
	}
	return a.Listen == b.Listen && (a.TLS == nil) == (b.TLS == nil)
}

// Status computes the current status (as /status serves it).
func (s *Server) Status(ctx context.Context) Status {
	g := s.gen.Load()
	if g == nil {
		return Status{Reasons: []string{"not started"}}
	}
	st := g.proxy.status(ctx, s.o.now())
	st.Config = ConfigStatus{Source: g.cfg.source, Generation: g.n, LoadedAt: g.loadedAt.UTC()}
	if m := s.lastReload.Load(); m != nil {
		st.Config.LastReload = *m
	}
	if s.draining.Load() {
		st.Draining = true
		st.Ready = false
		st.Reasons = append(st.Reasons, "draining: shutting down")
	}
	s.setReady(st.Ready)
	return st
}

// adminHandler serves /healthz, /readyz, /status and /metrics to callers
// that pass the loopback Host and Origin policy (docs/security.md).
func (s *Server) adminHandler() http.Handler {
	mux := s.adminMux()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		closeAfterChunked(w, r)
		if g := s.gen.Load(); g != nil {
			if reason, msg := g.proxy.hosts.browserRefusal(r); reason != "" {
				s.o.metrics.adminRefused.WithLabelValues(reason).Inc()
				writeError(w, http.StatusForbidden, reason, msg)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) adminMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		st := s.Status(r.Context())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if st.Ready {
			_, _ = io.WriteString(w, textList("ready", "warning: ", st.Warnings))
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, textList("not ready:", "- ", st.Reasons))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		st := s.Status(r.Context())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.o.metrics.reg, promhttp.HandlerOpts{}))
	return mux
}

// textList is head and then each line with prefix, one a line: the plain
// text of /readyz.
func textList(head, prefix string, lines []string) string {
	var b strings.Builder
	b.WriteString(head)
	b.WriteByte('\n')
	for _, l := range lines {
		b.WriteString(prefix)
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String()
}
