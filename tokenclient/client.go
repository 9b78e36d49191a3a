package tokenclient

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/internal/clock"
)

// Client fetches, caches and refreshes tokens for one OAuth client. It is
// safe for concurrent use; create one per binding and share it. Close it to
// stop background refreshes.
type Client struct {
	cfg    Config
	base   endpointBase
	o      options
	http   *http.Client
	own    *http.Transport // nil with WithRoundTripper
	fpFunc func() string

	prefix uint64    // hash of (token URL, client id): part of every key
	seed   [2]uint64 // random keys of the cache key hash (fill)

	shards  [numShards]shard
	front   [frontSize]atomic.Pointer[entry] // entries by their strings' addresses (frontSlot)
	near    [nearSize]atomic.Pointer[entry]  // entries by their key's hash (quickFind)
	count   atomic.Int64
	evictMu sync.Mutex

	keysMu      sync.Mutex
	keys        map[string]*keyCount // distinct keys (WithMaxKeys)
	counted     int                  // keys that count against the bound
	nextReclaim int64                // unix ns: no reclaim scan before

	sem       chan struct{} // bounds fetches across keys
	sessions  *sessionCache
	presented atomic.Pointer[string] // fingerprint of the last certificate the hook returned

	// system: the clock is clock.System, so the hit path reads the wall
	// clock directly (clock.WallNano) instead of through the interface.
	system   bool
	ticker   Timer        // the next tick, under lifeMu
	lastRead clock.Sample // the previous tick's reading, only tick uses it
	monoOK   bool         // the clock implements clock.Monotonic

	invMu   sync.Mutex
	invLast map[string]time.Time // tenant -> last invalidation (Invalidate's rate limit)

	lifeMu sync.Mutex
	closed chan struct{}
	isDone atomic.Bool
	wg     sync.WaitGroup
}

// New validates cfg and returns a client. It does no I/O.
func New(cfg Config, opts ...Option) (*Client, error) {
	base, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		opt(&o)
	}
	if o.err != nil {
		return nil, o.err
	}
	c := &Client{
		cfg:    cfg,
		base:   base,
		o:      o,
		fpFunc: cfg.CertificateFingerprint,
		sem:    make(chan struct{}, o.maxFetches),
		closed: make(chan struct{}),
	}
	seed := maphash.MakeSeed()
	c.prefix = maphash.String(seed, base.u.String()+"\x00"+cfg.ClientID)
	c.seed = [2]uint64{maphash.String(seed, "seed 1"), maphash.String(seed, "seed 2")}
	rt := o.roundTripper
	if rt == nil {
		c.sessions = &sessionCache{inner: tls.NewLRUClientSessionCache(64)}
		empty := ""
		c.sessions.fp.Store(&empty)
		dial := o.dial
		if dial == nil {
			dial = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		}
		tlsCfg := &tls.Config{
			MinVersion:         tls.VersionTLS12,
			RootCAs:            o.roots,
			ClientSessionCache: c.sessions,
			Time:               o.clock.Now, // certificate validity on the client's clock
		}
		if cfg.x509() {
			tlsCfg.GetClientCertificate = cfg.GetClientCertificate
		}
		c.own = &http.Transport{
			Proxy:               o.proxy,
			DialContext:         dial,
			TLSClientConfig:     tlsCfg,
			TLSHandshakeTimeout: 10 * time.Second,
			ForceAttemptHTTP2:   true,
			MaxIdleConns:        16,
			MaxIdleConnsPerHost: o.idleConnsHost,
			IdleConnTimeout:     90 * time.Second,
		}
		rt = c.own
	}
	c.http = &http.Client{
		Transport:     rt,
		CheckRedirect: func(*http.Request, []*http.Request) error { return ErrRedirect },
	}
	for i := range c.shards {
		c.shards[i].setLocked(map[uint64][]*entry{}) // no reader yet
	}
	c.lastRead, c.monoOK = clock.Read(o.clock)
	c.system = o.clock == clock.System
	// Under lifeMu: tick re-arms c.ticker under it, and the first tick may
	// run before this assignment is seen without the lock (a race the
	// detector reported with a short clockCheck).
	c.lifeMu.Lock()
	c.ticker = o.clock.AfterFunc(o.clockCheck, c.tick)
	c.lifeMu.Unlock()
	return c, nil
}

// nowNano reads the client's wall clock in Unix nanoseconds for the hit
// path (see cached).
func (c *Client) nowNano() int64 {
	if c.system {
		return clock.WallNano()
	}
	return c.o.clock.Now().UnixNano()
}

// tick compares the wall clock with the monotonic one and, when they moved
// apart by more than the threshold, evaluates every schedule again: the
// refresh and expiry timers (the hit path needs no tick: it reads the wall
// clock itself).
func (c *Client) tick() {
	now, _ := clock.Read(c.o.clock)
	if d := clock.Jump(c.lastRead, now); c.monoOK && clock.Jumped(d, c.o.jumpThreshold) {
		c.o.log.Warn("the wall clock jumped (suspend, pause or clock step); re-evaluating token refresh and expiry", "jump", d)
		c.reschedule()
		if c.o.obs.ClockJump != nil {
			c.o.obs.ClockJump(d)
		}
	}
	c.lastRead = now
	c.lifeMu.Lock()
	if !c.isDone.Load() {
		c.ticker = c.o.clock.AfterFunc(c.o.clockCheck, c.tick)
	}
	c.lifeMu.Unlock()
}

// reschedule re-arms the refresh and expiry timers of every entry from the
// wall clock, and starts a fetch for a token in use that expired meanwhile,
// so that it is back before the next request asks.
func (c *Client) reschedule() {
	for i := range c.shards {
		for _, list := range *c.shards[i].m.Load() {
			for _, e := range list {
				e.mu.Lock()
				if s := e.st.Load(); s != nil && s.tok != nil && !s.expired.Load() {
					c.publish(e, s)
					if s.expired.Load() && e.used.Load() && e.call == nil {
						c.start(e, ReasonRefresh)
					}
				}
				e.mu.Unlock()
			}
		}
	}
}

// Token returns a valid access token for req.
//
// A cached token is returned while it is valid (until its expiry minus the
// skew), without I/O or allocation for a client_credentials request whose
// Scopes are sorted. Once the refresh point of a cached token has passed, a
// background refresh starts and callers keep getting the cached token.
// Callers block only when there is no valid token; concurrent callers for
// the same key then share one fetch. ctx bounds the wait, not the fetch:
// a fetch that a cancelled caller started still completes for the others.
//
// Errors: ErrInvalidRequest for a bad req; a *TokenError when the service
// refused (replayed for a short while from the negative cache for 4xx);
// an error matching ErrUnavailable when the service could not be reached
// within the retry budget; ErrBadResponse, ErrRedirect, ErrCertificate,
// ErrClosed, or ctx's error.
func (c *Client) Token(ctx context.Context, req Request) (*Token, error) {
	if c.isDone.Load() {
		return nil, ErrClosed
	}
	var fp string
	if c.fpFunc != nil {
		fp = c.fpFunc()
	}
	// The front table first (see frontSlot): for a caller that passes
	// the strings it passed before, a hit reads no byte of them.
	slot := &c.front[frontSlot(&req)]
	f := slot.Load()
	e := f
	if e == nil || !e.mayBeSameStrings(&req) || !e.sameStrings(&req, fp) || e.gone.Load() {
		if e = c.quickFind(&req, fp); e == nil {
			var err error
			if e, err = c.lookup(&req, fp); err != nil {
				return nil, err
			}
			c.remember(e)
		}
		if e != f && e.mayBeSameStrings(&req) && e.sameStrings(&req, fp) {
			slot.Store(e)
		}
	}
	if tok := c.cached(e); tok != nil {
		return tok, nil
	}
	return c.wait(ctx, e)
}

// Handle is a Request prepared once for repeated use: its Token skips
// validating and hashing the request and finds the cache entry through a
// pointer. Use it for requests that do not change, such as a route's
// fixed scopes. It is safe for concurrent use.
type Handle struct {
	c      *Client
	req    Request
	scopes []string
	e      atomic.Pointer[entry]
}

// Handle validates req and prepares it. The Request's slices are copied.
func (c *Client) Handle(req Request) (*Handle, error) {
	if err := req.check(); err != nil {
		return nil, err
	}
	h := &Handle{c: c, req: req}
	h.scopes = append([]string(nil), canonicalScopes(req.Scopes)...)
	h.req.Scopes = h.scopes
	c.pin(keyName(&h.req, h.scopes))
	return h, nil
}

// Token is Client.Token for the prepared request.
func (h *Handle) Token(ctx context.Context) (*Token, error) {
	c := h.c
	if c.isDone.Load() {
		return nil, ErrClosed
	}
	var fp string
	if c.fpFunc != nil {
		fp = c.fpFunc()
	}
	e := h.e.Load()
	if e == nil || e.gone.Load() || e.id.fp != fp {
		var err error
		if e, err = c.lookup(&h.req, fp); err != nil {
			return nil, err
		}
		h.e.Store(e)
	}
	if tok := c.cached(e); tok != nil {
		return tok, nil
	}
	return c.wait(ctx, e)
}

// Close stops background refreshes, waits for fetches in flight and closes
// idle connections. Token then returns ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.lifeMu.Lock()
	if !c.isDone.Load() {
		c.isDone.Store(true)
		close(c.closed)
	}
	if c.ticker != nil {
		c.ticker.Stop()
	}
	c.lifeMu.Unlock()
	for i := range c.shards {
		for _, list := range *c.shards[i].m.Load() {
			for _, e := range list {
				e.mu.Lock()
				e.stopTimers()
				e.mu.Unlock()
			}
		}
	}
	c.wg.Wait()
	if c.own != nil {
		c.own.CloseIdleConnections()
	}
	return nil
}

// checkCertificate asks the certificate hook for the current certificate
// before a fetch. When it differs from the one last presented, idle
// connections (which would resume with the old one) are closed and TLS
// sessions are looked up under the new fingerprint.
func (c *Client) checkCertificate(ctx context.Context) error {
	if !c.cfg.x509() {
		return nil
	}
	// A plausible request, so that hooks which check it with
	// CertificateRequestInfo.SupportsCertificate accept their certificate.
	cert, err := c.cfg.GetClientCertificate(&tls.CertificateRequestInfo{
		Version: tls.VersionTLS13,
		SignatureSchemes: []tls.SignatureScheme{
			tls.ECDSAWithP256AndSHA256, tls.ECDSAWithP384AndSHA384, tls.ECDSAWithP521AndSHA512,
			tls.PSSWithSHA256, tls.PSSWithSHA384, tls.PSSWithSHA512, tls.Ed25519,
			tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512,
		},
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCertificate, err)
	}
	if cert == nil || len(cert.Certificate) == 0 {
		return fmt.Errorf("%w: the hook returned no certificate", ErrCertificate)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	fp := hex.EncodeToString(sum[:])
	if last := c.presented.Load(); last == nil || *last != fp {
		if last != nil && c.own != nil {
			c.own.CloseIdleConnections()
			c.o.log.Debug("client certificate changed; dropped idle connections", "token_url", c.base.u.String())
		}
		c.presented.Store(&fp)
		if c.sessions != nil {
			c.sessions.fp.Store(&fp)
		}
	}
	return nil
}

// sessionCache namespaces TLS session tickets by the client certificate's
// fingerprint, so a resumed session never carries an old certificate.
type sessionCache struct {
	inner tls.ClientSessionCache
	fp    atomic.Pointer[string]
}

func (s *sessionCache) Get(key string) (*tls.ClientSessionState, bool) {
	return s.inner.Get(*s.fp.Load() + "|" + key)
}

func (s *sessionCache) Put(key string, cs *tls.ClientSessionState) {
	s.inner.Put(*s.fp.Load()+"|"+key, cs)
}
