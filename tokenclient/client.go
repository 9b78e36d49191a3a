package tokenclient

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
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

	prefix uint64 // hash of (token URL, client id): part of every key

	shards  [numShards]shard
	count   atomic.Int64
	evictMu sync.Mutex

	keysMu      sync.Mutex
	keys        map[string]*keyCount // distinct keys (WithMaxKeys)
	counted     int                  // keys that count against the bound
	nextReclaim int64                // unix ns: no reclaim scan before

	sem       chan struct{} // bounds fetches across keys
	sessions  *sessionCache
	presented atomic.Pointer[string] // fingerprint of the last certificate the hook returned

	lifeMu sync.Mutex
	closed chan struct{}
	isDone atomic.Bool
	wg     sync.WaitGroup
}

const numShards = 16

type shard struct {
	mu sync.Mutex                          // serialises writers
	m  atomic.Pointer[map[uint64][]*entry] // copy on write: readers never lock
	_  [48]byte                            // keep shards on their own cache lines
}

// identity is what a cache key stands for. It holds no secret: the grant's
// secret material is only present as a SHA-256 digest.
type identity struct {
	grant    Grant
	scopes   []string // sorted, unique
	tenant   string
	zone     string
	user     string
	resource string
	appTID   string
	fp       string
	digest   [32]byte
}

type entry struct {
	hash  uint64
	id    identity
	req   Request   // replayed by background refreshes; never logged
	class *keyCount // the key this entry holds a slot of (WithMaxKeys)

	st   atomic.Pointer[entryState]
	busy atomic.Bool // a fetch is in flight
	gone atomic.Bool // evicted: a Handle must look up again
	ref  atomic.Bool // used since the last eviction sweep (CLOCK bit)
	used atomic.Bool // used since the token was fetched (refresh only what is in use)

	mu     sync.Mutex
	call   *call    // the fetch in flight, under mu
	timers [2]Timer // refresh and expiry of the current state, under mu
}

// entryState is immutable once published, except for the two flags its
// timers set: the hit path reads them instead of a clock.
type entryState struct {
	tok        *Token
	refreshAt  int64 // unix ns: start a background refresh from here
	validUntil int64 // unix ns: serve tok until here
	neg        *TokenError
	negUntil   int64
	// fail is the last fetch's failure when the service was unavailable or
	// answered garbage and no valid token is left: callers get it without
	// a new fetch until failUntil, so an outage is asked about once per
	// pause, not once per waiting caller.
	fail      error
	failUntil int64

	due     atomic.Bool // refreshAt has passed
	expired atomic.Bool // validUntil has passed
}

func (s *entryState) validAt(now int64) bool {
	return s != nil && s.tok != nil && !s.expired.Load() && now < s.validUntil
}

type call struct {
	done chan struct{}
	tok  *Token
	err  error
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
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	c := &Client{
		cfg:    cfg,
		base:   base,
		o:      o,
		fpFunc: cfg.CertificateFingerprint,
		sem:    make(chan struct{}, o.maxFetches),
		closed: make(chan struct{}),
	}
	c.prefix = maphash.String(maphash.MakeSeed(), base.u.String()+"\x00"+cfg.ClientID)
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
		m := map[uint64][]*entry{}
		c.shards[i].m.Store(&m)
	}
	return c, nil
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
	if err := req.check(); err != nil {
		return nil, err
	}
	scopes := canonicalScopes(req.Scopes)
	var fp string
	if c.fpFunc != nil {
		fp = c.fpFunc()
	}
	var dg [32]byte
	if req.grant() != GrantClientCredentials {
		dg = req.digest()
	}
	e, err := c.lookup(&req, scopes, fp, &dg)
	if err != nil {
		return nil, err
	}
	if tok := c.cached(e); tok != nil {
		return tok, nil
	}
	return c.wait(ctx, e)
}

// lookup finds or creates the cache entry for a checked request. Creating
// one may fail with ErrTooManyKeys.
func (c *Client) lookup(r *Request, scopes []string, fp string, dg *[32]byte) (*entry, error) {
	h := c.hash(r, scopes, fp, dg)
	sh := &c.shards[h%numShards]
	if e := sh.find(h, r, scopes, fp, dg); e != nil {
		return e, nil
	}
	return c.insert(sh, h, r, scopes, fp, dg)
}

// Handle is a Request prepared once for repeated use: its Token skips
// validating and hashing the request and finds the cache entry through a
// pointer. Use it for requests that do not change, such as a route's
// fixed scopes. It is safe for concurrent use.
type Handle struct {
	c      *Client
	req    Request
	scopes []string
	dg     [32]byte
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
	if req.grant() != GrantClientCredentials {
		h.dg = req.digest()
	}
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
		if e, err = c.lookup(&h.req, h.scopes, fp, &h.dg); err != nil {
			return nil, err
		}
		h.e.Store(e)
	}
	if tok := c.cached(e); tok != nil {
		return tok, nil
	}
	return c.wait(ctx, e)
}

// cached returns e's token while its expiry timer has not fired, starting
// a background refresh when its refresh timer has fired. It reads no clock
// and allocates nothing.
func (c *Client) cached(e *entry) *Token {
	s := e.st.Load()
	if s == nil || s.tok == nil || s.expired.Load() {
		return nil
	}
	if s.due.Load() && !e.busy.Load() {
		c.refresh(e)
	}
	// Load before store: a store on every call would make all cores fight
	// over the cache line.
	if !e.ref.Load() {
		e.ref.Store(true)
	}
	if !e.used.Load() {
		e.used.Store(true)
	}
	if c.o.obs.Hit != nil {
		c.o.obs.Hit()
	}
	return s.tok
}

// hash spreads the request's identity over the map cheaply. It need not
// resist collisions: find compares the whole identity.
func (c *Client) hash(r *Request, scopes []string, fp string, dg *[32]byte) uint64 {
	h := c.prefix
	if r.Grant != "" && r.Grant != GrantClientCredentials {
		h = fold(h, string(r.Grant))
	}
	h = fold(h, r.Tenant)
	h = fold(h, r.ZoneID)
	h = fold(h, r.Username)
	h = fold(h, r.Resource)
	h = fold(h, r.AppTID)
	h = fold(h, fp)
	for _, s := range scopes {
		h = fold(h, s)
	}
	if *dg != ([32]byte{}) {
		h = fold(h, string(dg[:]))
	}
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	return h ^ h>>33
}

// fold folds s into h, eight bytes at a time.
func fold(h uint64, s string) uint64 {
	if len(s) == 0 {
		return h
	}
	const p = 0x9E3779B97F4A7C15
	h = (h ^ uint64(len(s))) * p
	for len(s) >= 8 {
		h = (h ^ (uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56)) * p
		s = s[8:]
	}
	if len(s) > 0 {
		var v uint64
		for i := 0; i < len(s); i++ {
			v |= uint64(s[i]) << (8 * i)
		}
		h = (h ^ v) * p
	}
	return h
}

func (id *identity) matches(r *Request, scopes []string, fp string, dg *[32]byte) bool {
	return id.grant == r.grant() && id.tenant == r.Tenant && id.zone == r.ZoneID &&
		id.user == r.Username && id.resource == r.Resource && id.appTID == r.AppTID &&
		id.fp == fp && id.digest == *dg && equalStrings(id.scopes, scopes)
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (sh *shard) find(h uint64, r *Request, scopes []string, fp string, dg *[32]byte) *entry {
	for _, e := range (*sh.m.Load())[h] {
		if e.id.matches(r, scopes, fp, dg) {
			return e
		}
	}
	return nil
}

// insert adds an entry for the request unless another caller did first.
// A new entry needs a slot of its key (WithMaxKeys).
func (c *Client) insert(sh *shard, h uint64, r *Request, scopes []string, fp string, dg *[32]byte) (*entry, error) {
	kc, err := c.admit(keyName(r, scopes))
	if err != nil {
		return nil, err
	}
	sh.mu.Lock()
	if e := sh.find(h, r, scopes, fp, dg); e != nil {
		sh.mu.Unlock()
		c.release(kc)
		return e, nil
	}
	e := &entry{hash: h, req: *r, class: kc, id: identity{
		grant: r.grant(), scopes: append([]string(nil), scopes...), tenant: r.Tenant, zone: r.ZoneID,
		user: r.Username, resource: r.Resource, appTID: r.AppTID, fp: fp, digest: *dg,
	}}
	e.req.Scopes = e.id.scopes
	old := *sh.m.Load()
	m := make(map[uint64][]*entry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[h] = append(append([]*entry(nil), old[h]...), e)
	sh.m.Store(&m)
	sh.mu.Unlock()
	if c.count.Add(1) > int64(c.o.maxEntries) {
		c.evict(e)
	}
	return e, nil
}

// evict drops entries until the cache is within its bound: first entries
// without a valid token, then, by the CLOCK algorithm, entries not used
// since the previous sweep (an approximation of least recently used that
// costs the hit path nothing). Entries with a fetch in flight and keep are
// spared.
func (c *Client) evict(keep *entry) {
	c.evictMu.Lock()
	defer c.evictMu.Unlock()
	now := c.o.clock.Now().UnixNano()
	for c.count.Load() > int64(c.o.maxEntries) {
		var victim, fallback *entry
	scan:
		for pass := 0; pass < 3 && victim == nil; pass++ {
			for i := range c.shards {
				for _, list := range *c.shards[i].m.Load() {
					for _, e := range list {
						if e == keep || e.busy.Load() {
							continue
						}
						if fallback == nil {
							fallback = e
						}
						switch {
						case pass == 0 && !e.st.Load().validAt(now):
							victim = e
						case pass > 0 && !e.ref.Swap(false):
							victim = e
						}
						if victim != nil {
							break scan
						}
					}
				}
			}
		}
		if victim == nil {
			victim = fallback
		}
		if victim == nil {
			return
		}
		c.remove(victim)
		if c.o.obs.Evict != nil {
			c.o.obs.Evict()
		}
	}
}

func (c *Client) remove(victim *entry) {
	sh := &c.shards[victim.hash%numShards]
	sh.mu.Lock()
	old := *sh.m.Load()
	m := make(map[uint64][]*entry, len(old))
	found := false
	for k, v := range old {
		if k != victim.hash {
			m[k] = v
			continue
		}
		var rest []*entry
		for _, e := range v {
			if e != victim {
				rest = append(rest, e)
			} else {
				found = true
			}
		}
		if len(rest) > 0 {
			m[k] = rest
		}
	}
	if !found { // removed already (by eviction and reclaim at once)
		sh.mu.Unlock()
		return
	}
	sh.m.Store(&m)
	sh.mu.Unlock()
	c.count.Add(-1)
	if !victim.gone.Swap(true) {
		c.release(victim.class)
	}
	victim.mu.Lock()
	victim.stopTimers()
	victim.mu.Unlock()
}

func (e *entry) stopTimers() {
	for i, t := range e.timers {
		if t != nil {
			t.Stop()
			e.timers[i] = nil
		}
	}
}

// wait returns a valid token for e, joining or starting its fetch.
func (c *Client) wait(ctx context.Context, e *entry) (*Token, error) {
	e.mu.Lock()
	now := c.o.clock.Now().UnixNano()
	if s := e.st.Load(); s != nil {
		if s.validAt(now) {
			e.mu.Unlock()
			return s.tok, nil
		}
		if s.neg != nil && now < s.negUntil {
			e.mu.Unlock()
			if c.o.obs.Miss != nil {
				c.o.obs.Miss()
			}
			return nil, s.neg
		}
		if s.fail != nil && now < s.failUntil {
			e.mu.Unlock()
			if c.o.obs.Miss != nil {
				c.o.obs.Miss()
			}
			return nil, s.fail
		}
	}
	cl := e.call
	if cl == nil {
		cl = c.start(e, ReasonMiss)
	}
	e.mu.Unlock()
	if cl == nil {
		return nil, ErrClosed
	}
	if c.o.obs.Miss != nil {
		c.o.obs.Miss()
	}
	select {
	case <-cl.done:
		return cl.tok, cl.err
	case <-ctx.Done():
		return nil, fmt.Errorf("tokenclient: waiting for a token: %w", context.Cause(ctx))
	}
}

// refresh starts a background fetch for e unless one is running.
func (c *Client) refresh(e *entry) {
	e.mu.Lock()
	if e.call == nil && e.st.Load() != nil && e.st.Load().due.Load() {
		c.start(e, ReasonRefresh)
	}
	e.mu.Unlock()
}

// publish installs a new state for e and arms its timers; e.mu is held.
func (c *Client) publish(e *entry, ns *entryState) {
	e.stopTimers()
	e.st.Store(ns)
	if ns.tok == nil || c.isDone.Load() {
		return
	}
	now := c.o.clock.Now().UnixNano()
	if d := ns.validUntil - now; d > 0 {
		e.timers[1] = c.o.clock.AfterFunc(time.Duration(d), func() { ns.expired.Store(true) })
	} else {
		ns.expired.Store(true)
		return
	}
	e.timers[0] = c.o.clock.AfterFunc(time.Duration(max(ns.refreshAt-now, 0)), func() {
		if e.st.Load() != ns || c.isDone.Load() {
			return
		}
		ns.due.Store(true)
		if e.used.Load() { // refresh ahead only tokens in use; others refresh on their next hit
			c.refresh(e)
		}
	})
}

// start launches a fetch for e; e.mu must be held. It returns nil once the
// client is closed.
func (c *Client) start(e *entry, reason FetchReason) *call {
	c.lifeMu.Lock()
	if c.isDone.Load() {
		c.lifeMu.Unlock()
		return nil
	}
	c.wg.Add(1)
	c.lifeMu.Unlock()
	cl := &call{done: make(chan struct{})}
	e.call = cl
	e.busy.Store(true)
	go c.run(e, cl, reason)
	return cl
}

// run performs one fetch for e and publishes its outcome.
func (c *Client) run(e *entry, cl *call, reason FetchReason) {
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.closed:
			cancel()
		case <-ctx.Done():
		}
	}()

	start := c.o.clock.Now()
	var (
		tok      *Token
		attempts int
		status   int
		err      error
	)
	select {
	case c.sem <- struct{}{}:
		tok, attempts, status, err = c.fetch(ctx, &e.req)
		<-c.sem
	case <-ctx.Done():
		err = ErrClosed
	}
	if c.isDone.Load() && err != nil {
		err = ErrClosed
	}
	now := c.o.clock.Now()
	dur := now.Sub(start)

	e.mu.Lock()
	old := e.st.Load()
	ns := &entryState{}
	if err == nil {
		refreshAt, validUntil := schedule(tok.IssuedAt, tok.Expiry, c.o.pol, rand.Float64())
		ns.tok, ns.refreshAt, ns.validUntil = tok, refreshAt.UnixNano(), validUntil.UnixNano()
		e.used.Store(false)
	} else {
		if old.validAt(now.UnixNano()) { // keep serving the token we have
			ns.tok, ns.validUntil = old.tok, old.validUntil
		}
		gap := c.o.retry.MaxDelay
		var te *TokenError
		if errors.As(err, &te) && te.negative() && c.o.negativeTTL > 0 {
			cached := *te
			cached.Cached = true
			ns.neg, ns.negUntil = &cached, now.Add(c.o.negativeTTL).UnixNano()
			gap = c.o.negativeTTL
		}
		// A failed refresh is tried again after a pause, not on every hit;
		// without a valid token, waiting callers get the failure for that
		// pause instead of starting fetch after fetch.
		ns.refreshAt = now.Add(gap).UnixNano()
		if ns.tok == nil && ns.neg == nil && (errors.Is(err, ErrUnavailable) || errors.Is(err, ErrBadResponse)) {
			ns.fail, ns.failUntil = err, now.Add(gap).UnixNano()
		}
	}
	c.publish(e, ns)
	e.call = nil
	e.busy.Store(false)
	e.mu.Unlock()
	cl.tok, cl.err = tok, err
	close(cl.done)

	if c.o.obs.Fetch != nil {
		c.o.obs.Fetch(FetchEvent{Reason: reason, Grant: e.id.grant, Tenant: e.id.tenant, ZoneID: e.id.zone,
			Attempts: attempts, StatusCode: status, Duration: dur, Err: err})
	}
	log := c.o.log.With("grant", string(e.id.grant), "tenant", e.id.tenant, "zone_id", e.id.zone,
		"reason", string(reason), "attempts", attempts, "duration", dur)
	switch {
	case err == nil:
		log.Debug("token fetched", "token_url", tok.URL, "expiry", tok.Expiry)
	case reason == ReasonRefresh && old != nil && old.tok != nil && now.UnixNano() < old.validUntil:
		log.Warn("token refresh failed; serving the cached token until it expires", "status", status, "error", err)
	default:
		log.Warn("token fetch failed", "status", status, "error", err)
	}
}

// Close stops background refreshes, waits for fetches in flight and closes
// idle connections. Token then returns ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.lifeMu.Lock()
	if !c.isDone.Load() {
		c.isDone.Store(true)
		close(c.closed)
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
