package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/vcap"
)

// liveCert is a certificate kept by certwatch (and, for a connector
// certificate, a heartbeat). Its watcher is set once the watcher exists:
// until then (the connector client that renews through it is built first)
// every method answers "no certificate yet" rather than dereferencing nil.
type liveCert struct {
	name string
	w    atomic.Pointer[certwatch.Watcher]
	hb   *connector.Heartbeat // nil without connection.json; set before w
}

func (l *liveCert) watcher() *certwatch.Watcher { return l.w.Load() }

// GetClientCertificate is the live pair, for the tls.Config of the clients
// that present it (renewal, heartbeat, the runtime pairing).
func (l *liveCert) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	w := l.watcher()
	if w == nil {
		return nil, fmt.Errorf("certificate %q: %w", l.name, certwatch.ErrNoPair)
	}
	return w.Certificate()
}

// GetCertificate is the live pair, for the inbound listener.
func (l *liveCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return l.GetClientCertificate(nil)
}

func (l *liveCert) Current() *tls.Certificate {
	w := l.watcher()
	if w == nil || w.Pair() == nil {
		return nil
	}
	c, err := w.Certificate()
	if err != nil {
		return nil
	}
	return c
}

func (l *liveCert) State() sidecar.CertificateState {
	w := l.watcher()
	if w == nil {
		return sidecar.CertificateState{LastError: "not loaded yet"}
	}
	st := w.Status()
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
		key = fmt.Sprintf("binding %s %s %s", ce.Name, ce.Binding, g.c.bindingDigest(b))
		start = func() (*liveCert, func(), error) { return g.c.startBindingCert(ctx, ce, b) }
	} else {
		key = fmt.Sprintf("dir %s %s renew=%v pairing=%s key=%s %s", ce.Name, filepath.Clean(ce.Dir), ce.Renew, ce.PairingURLFile, ce.KeyType, g.net.key)
		dc := dirCert{name: ce.Name, dir: ce.Dir, renew: ce.Renew, keyType: ce.KeyType}
		if ce.Persist != nil && ce.Persist.KubernetesSecret != nil {
			ks := *ce.Persist.KubernetesSecret
			dc.persist = &ks
			key += fmt.Sprintf(" persist=%+v", ks)
		}
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

func (c *Broker) startBindingCert(ctx context.Context, ce sidecar.Certificate, b *vcap.Binding) (*liveCert, func(), error) {
	if b.Auth == nil || b.Auth.Key == nil || len(b.Auth.CertificatePEM) == 0 {
		return nil, nil, configErrorf("binding %q carries no certificate and key", b.Name)
	}
	certPEM, keyPEM := b.Auth.CertificatePEM, []byte(b.Auth.Key.PEM().Reveal())
	w, err := certwatch.New(ctx,
		certwatch.WithName(ce.Name),
		certwatch.WithLoader(func(context.Context) ([]byte, []byte, []byte, error) { return certPEM, keyPEM, nil, nil }),
		certwatch.WithPollInterval(0),
		certwatch.WithLogger(c.log),
		certwatch.WithObserver(c.certObserver()),
	)
	if err != nil {
		return nil, nil, err
	}
	lc := &liveCert{name: ce.Name}
	lc.w.Store(w)
	return lc, c.runInBackground(w, nil, nil), nil
}

// runInBackground runs the watcher (and heartbeat) until the returned
// release function is called; release waits for them.
// onUpdate, when not nil, runs after every change of the live pair.
func (c *Broker) runInBackground(w *certwatch.Watcher, hb *connector.Heartbeat, onUpdate func(context.Context)) func() {
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

// dirCert says how to keep one certificate directory alive.
type dirCert struct {
	name    string
	dir     string
	renew   bool
	keyType string // for pairing; "" follows the connector
	// pairingURL returns the one-time token URL to pair with when dir holds
	// no valid pair; nil when pairing is not configured.
	pairingURL func(ctx context.Context) (string, error)
	// persist keeps the pair in a Kubernetes Secret too (persist.go); nil:
	// off.
	persist *sidecar.KubernetesSecret
}

// startDirCert pairs the directory when it holds no valid pair and a
// pairing URL is configured, then watches it and, with renew, renews it
// through the connector named in connection.json and heartbeats its info
// endpoint.
func (c *Broker) startDirCert(ctx context.Context, dc dirCert, n *Network) (*liveCert, func(), error) {
	var store *identityStore
	if dc.persist != nil {
		var err error
		if store, err = c.newIdentityStore(dc.name, dc.dir, *dc.persist); err != nil {
			return nil, nil, err
		}
		if err := checkCertDir(c.log, fmt.Sprintf("certificate %q: dir", dc.name), dc.dir); err != nil {
			return nil, nil, err
		}
		if err := store.load(ctx); err != nil {
			return nil, nil, err
		}
	}
	pair, err := certwatch.LoadDir(ctx, dc.dir)
	valid := err == nil && pair.Verify(c.now()) == nil
	if !valid && dc.pairingURL != nil {
		u, err := dc.pairingURL(ctx)
		if err != nil {
			return nil, nil, err
		}
		req := PairRequest{Name: dc.name, TokenURL: u, Dir: dc.dir, Now: c.now}
		if dc.keyType != "" {
			kt, err := connector.ParseKeyType(dc.keyType)
			if err != nil {
				return nil, nil, configErrorf("certificate %q: key_type %q: want rsa2048, rsa4096 or ecdsa-p256", dc.name, dc.keyType)
			}
			req.KeyType = kt
		}
		pctx, endPair := c.pairSpan(ctx, dc.name)
		conn, err := Pair(pctx, req, n, c.log)
		endPair(err)
		c.metrics.Paired(dc.name, err)
		switch {
		case err == nil:
			c.log.Info("paired", "certificate", dc.name, "subject", conn.ConnectionInfo.Subject, "sha256", conn.ConnectionInfo.SHA256, "not_after", conn.ConnectionInfo.NotAfter)
		case store != nil && !errors.Is(err, ErrConfig) && store.waitForPair(ctx):
			// Another replica spent the one-time token and shared the pair.
		default:
			return nil, nil, err
		}
	}
	if store != nil {
		if err := store.publish(ctx); err != nil {
			return nil, nil, err
		}
	}
	opts := []certwatch.Option{
		certwatch.WithDir(dc.dir),
		certwatch.WithName(dc.name),
		certwatch.WithLogger(c.log),
		certwatch.WithPollInterval(c.o.PollInterval),
		certwatch.WithClockJumps(c.jumps),
		certwatch.WithObserver(c.certObserver()),
		certwatch.WithClock(c.clock),
	}
	lc := &liveCert{name: dc.name}
	var hb *connector.Heartbeat
	ciPath := filepath.Join(dc.dir, certwatch.ConnectionFile)
	var ci *connector.ConnectionInfo // with renew: what connection.json holds
	var ciMu sync.Mutex
	if dc.renew {
		loaded, err := connector.LoadConnectionInfo(ciPath)
		ci = &loaded
		if err != nil {
			return nil, nil, configErrorf("certificate %q: renew: true needs %s (written by credbroker pair): %v", dc.name, ciPath, err)
		}
		if ci.RenewCertURL == "" {
			return nil, nil, configErrorf("certificate %q: renew: true but %s has no renew_cert_url", dc.name, ciPath)
		}
		// The connector's mTLS calls present the watcher's live
		// certificate (none until the watcher below exists).
		client, err := n.connectorClient(c.log, connector.WithGetClientCertificate(lc.GetClientCertificate), connector.WithClock(c.now))
		if err != nil {
			return nil, nil, err
		}
		renewer, err := connector.NewRenewer(client, ci.RenewCertURL)
		if err != nil {
			return nil, nil, err
		}
		var rn certwatch.Renewer = renewer
		if t := c.tracer(); t != nil {
			rn = tracedRenewer{Renewer: renewer, tracer: t, name: dc.name}
		}
		if store != nil {
			rn = &persistRenewer{inner: rn, s: store}
		}
		opts = append(opts, certwatch.WithRenewer(rn))
		if ci.InfoURL != "" {
			hb, err = connector.NewHeartbeat(client, ci.InfoURL,
				connector.InitialInfo(ci.ManagementInfo()),
				connector.HeartbeatJumps(c.jumps.Changed),
				connector.HeartbeatClock(c.clock),
				connector.HeartbeatTracerProvider(c.tp),
				connector.OnResult(func(r connector.HeartbeatResult) {
					c.metrics.HeartbeatDone(dc.name, r.Err)
					// Loud, every beat: a revoked certificate still works
					// (the connector honours it until it expires), so
					// nothing else would remind anyone before it runs out.
					w := lc.watcher()
					if w == nil {
						return
					}
					if st := w.Status(); st.Revoked && st.Ready {
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
	lc.hb = hb
	lc.w.Store(w)
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
	release := c.runInBackground(w, hb, onUpdate)
	if store != nil {
		pctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); store.poll(pctx, w, dc.renew) }()
		inner := release
		release = func() { cancel(); <-done; inner() }
	}
	return lc, release, nil
}

// pairingURLFile reads a one-time token URL from a file.
func pairingURLFile(path string) func(context.Context) (string, error) {
	return func(context.Context) (string, error) {
		b, err := inputfile.Read(path)
		if err != nil {
			return "", configErrorf("pairing_url_file %s: %v", path, errors.Unwrap(err))
		}
		u := strings.TrimSpace(string(b))
		if u == "" {
			return "", configErrorf("pairing_url_file %s is empty", path)
		}
		return u, nil
	}
}

// runtimeTokenURL asks the central connector (with the central
// certificate) for the runtime connector's one-time token URL.
func (c *Broker) runtimeTokenURL(central *liveCert, centralDir string, n *Network) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		ciPath := filepath.Join(centralDir, certwatch.ConnectionFile)
		ci, err := connector.LoadConnectionInfo(ciPath)
		if err != nil || ci.InfoURL == "" {
			return "", configErrorf("runtime_dir needs the central connection's %s with an info_url: %v", ciPath, err)
		}
		client, err := n.connectorClient(c.log, connector.WithGetClientCertificate(central.GetClientCertificate))
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
			return "", configErrorf("runtime_dir is set but the connector announced no runtime.tokenUrl (a standalone connector: route to the certificate itself)")
		}
		return u, nil
	}
}

// certObserver counts the loads of certificate files (at start and after
// every rotation) and the refused ones.
func (c *Broker) certObserver() certwatch.Observer {
	return certwatch.ObserverFunc(func(e certwatch.Event) {
		switch e.Kind {
		case certwatch.EventLoaded:
			c.metrics.CertificateReloaded(e.Name, nil)
		case certwatch.EventReloadFailed:
			c.metrics.CertificateReloaded(e.Name, e.Err)
		}
	})
}
