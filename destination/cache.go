package destination

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	clk "github.com/credbroker/credbroker/internal/clock"
)

// Tenant selection modes: which Destination service instance a request for
// a subscriber tenant asks.
const (
	// SubscriberFirst asks the subscriber's instance and, when it has no
	// such destination, the provider's (what SAP's SDKs do).
	SubscriberFirst = "subscriber-first"
	// SubscriberOnly asks the subscriber's instance only.
	SubscriberOnly = "subscriber-only"
	// ProviderOnly always asks the provider's instance.
	ProviderOnly = "provider-only"
)

// Defaults of CacheConfig.
const (
	DefaultTTL          = 5 * time.Minute
	DefaultSkew         = 30 * time.Second
	DefaultRefreshAhead = time.Minute
	DefaultMaxEntries   = 10000
	DefaultFetchTimeout = 30 * time.Second
	// refreshRetry is the pause after a failed background refresh.
	refreshRetry = 5 * time.Second
)

// CacheConfig configures a Cache. Zero values mean the defaults.
type CacheConfig struct {
	// TTL caps how long an entry lives (also for destinations whose auth
	// token does not expire).
	TTL time.Duration
	// Skew is taken off every expiry.
	Skew time.Duration
	// RefreshAhead: a hit this close to the expiry (at most half the
	// entry's lifetime) starts a background refresh.
	RefreshAhead time.Duration
	// MaxEntries bounds the cache.
	MaxEntries int
	// Selection is SubscriberFirst (default), SubscriberOnly or ProviderOnly.
	Selection string
	// FetchTimeout bounds one lookup that no caller waits on (background
	// refresh) or that several callers share.
	FetchTimeout time.Duration
	// Now is the clock (default: the system wall clock). Its monotonic
	// reading, if any, is dropped: expiries are wall-clock times, so a host
	// suspend counts.
	Now func() time.Time
	// Observer is told about hits and lookups (for metrics); optional.
	Observer Observer
}

// Observer receives cache events. Its functions must be cheap and safe
// for concurrent use; nil functions are skipped.
type Observer struct {
	// Hit is called for every request served from the cache.
	Hit func()
	// Lookup is called after every call of the service with its error
	// (nil for success; use ReasonOf for a bounded label).
	Lookup func(err error)
}

// Request is one resolution.
type Request struct {
	// Name is the destination name.
	Name string
	// Tenant is the subscriber subdomain ("" for the provider).
	Tenant string
	// UserToken is the user's JWT ("" for none).
	UserToken string
}

// Entry is a cached resolution. It must not be modified.
type Entry struct {
	*Destination
	// Expiry is when the cache stops serving the entry.
	Expiry time.Time
	// FromProvider is true when a subscriber request was answered by the
	// provider's instance (subscriber-first fallback, provider-only).
	FromProvider bool

	memoOnce sync.Once
	memo     any
	// userBound: the user token's exp decides the expiry, so a refresh
	// cannot extend it (and is not started).
	userBound bool
}

// Memo returns what f returns, calling f once per entry: callers keep a
// value derived from the entry (a prepared request template) as long as
// the entry lives.
func (e *Entry) Memo(f func() any) any {
	e.memoOnce.Do(func() { e.memo = f() })
	return e.memo
}

// Key identifies a cache entry. It holds no secret.
type Key struct {
	Tenant, User, Name string
}

// Stats are the cache's counters.
type Stats struct {
	Hits, Misses, Lookups, LookupErrors, Refreshes, Bypassed, Evictions, StaleServed int64
	Entries                                                                          int
}

// Cache resolves destinations through a Finder and caches them. Safe for
// concurrent use.
//
// A user-dependent entry belongs to the exact user token that fetched it
// (the Destination service checked that token; the cache does not check
// signatures), so it is never served to another token, even one that
// claims the same user. A hit finds the entry by a fast hash of the token
// (maphash, a random seed per cache) and then compares the token with the
// entry's own copy in constant time: a hash collision costs a slower
// lookup, never another user's entry. The copy lives as long as the entry
// (at most until the token's exp); see docs/destinations.md for the threat
// model.
type Cache struct {
	f    Finder
	cfg  CacheConfig
	mac  []byte
	seed maphash.Seed
	// fastHash is maphash.String with seed (a seam for tests that force
	// collisions).
	fastHash func(string) uint64

	macs sync.Pool // of hash.Hash (HMAC-SHA256 with mac)

	mu       sync.Mutex
	entries  map[Key]*entry
	byToken  map[tokenKey]*entry // user entries by the fast hash of the token that fetched them
	inflight map[string]*call

	hits, misses, lookups, lookupErrs, refreshes, bypassed, evictions, stale atomic.Int64
}

// tokenKey finds a user entry from the request alone (no token parsing or
// MAC on a hit). h is the fast hash of the token: the entry's token is
// compared before it is served.
type tokenKey struct {
	h            uint64
	tenant, name string
}

type entry struct {
	e *Entry
	// token is the user token that fetched the entry ("" for none): the
	// entry is served to this token only.
	token     string
	tk        tokenKey
	k         Key
	refreshAt time.Time
	retryAt   time.Time
	busy      bool
}

type call struct {
	done chan struct{}
	e    *Entry
	err  error
}

// NewCache returns a cache in front of f.
func NewCache(f Finder, cfg CacheConfig) (*Cache, error) {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Skew <= 0 {
		cfg.Skew = DefaultSkew
	}
	if cfg.RefreshAhead <= 0 {
		cfg.RefreshAhead = DefaultRefreshAhead
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	// Every time the cache keeps or compares is a wall-clock reading
	// without a monotonic one: Go compares two times that both carry one
	// on the monotonic clock, which stops while the host is suspended, so
	// an expiry computed as Now().Add(TTL) would outlive a suspend by its
	// length. The default reads the wall clock alone (clock.WallNano: one
	// clock read, not time.Now's two).
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return time.Unix(0, clk.WallNano()) }
	} else {
		now := cfg.Now
		cfg.Now = func() time.Time { return now().Round(0) }
	}
	switch cfg.Selection {
	case "":
		cfg.Selection = SubscriberFirst
	case SubscriberFirst, SubscriberOnly, ProviderOnly:
	default:
		return nil, fmt.Errorf("destination: selection %q: want %s, %s or %s", cfg.Selection, SubscriberFirst, SubscriberOnly, ProviderOnly)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	c := &Cache{f: f, cfg: cfg, mac: key, seed: maphash.MakeSeed(), entries: map[Key]*entry{}, byToken: map[tokenKey]*entry{}, inflight: map[string]*call{}}
	c.fastHash = func(s string) uint64 { return maphash.String(c.seed, s) }
	c.macs.New = func() any { return hmac.New(sha256.New, c.mac) }
	return c, nil
}

// sameToken reports whether a and b are the same token, in a time that
// depends on their lengths only (never on where they differ): 32 bytes a
// round, in four independent words.
func sameToken(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	x := unsafe.Slice(unsafe.StringData(a), len(a))
	y := unsafe.Slice(unsafe.StringData(b), len(b))
	var v0, v1, v2, v3 uint64
	for len(x) >= 32 && len(y) >= 32 {
		v0 |= binary.LittleEndian.Uint64(x[0:8]) ^ binary.LittleEndian.Uint64(y[0:8])
		v1 |= binary.LittleEndian.Uint64(x[8:16]) ^ binary.LittleEndian.Uint64(y[8:16])
		v2 |= binary.LittleEndian.Uint64(x[16:24]) ^ binary.LittleEndian.Uint64(y[16:24])
		v3 |= binary.LittleEndian.Uint64(x[24:32]) ^ binary.LittleEndian.Uint64(y[24:32])
		x, y = x[32:], y[32:]
	}
	for len(x) >= 8 && len(y) >= 8 {
		v0 |= binary.LittleEndian.Uint64(x) ^ binary.LittleEndian.Uint64(y)
		x, y = x[8:], y[8:]
	}
	for i := 0; i < len(x) && i < len(y); i++ {
		v1 |= uint64(x[i] ^ y[i])
	}
	return v0|v1|v2|v3 == 0
}

// macOf is the keyed MAC of a user token.
func (c *Cache) macOf(token string) (out [32]byte) {
	h := c.macs.Get().(hash.Hash)
	h.Reset()
	// The hash neither keeps nor changes its input: no copy of the token.
	_, _ = h.Write(unsafe.Slice(unsafe.StringData(token), len(token)))
	h.Sum(out[:0])
	c.macs.Put(h)
	return out
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	n := len(c.entries)
	c.mu.Unlock()
	return Stats{Hits: c.hits.Load(), Misses: c.misses.Load(), Lookups: c.lookups.Load(), LookupErrors: c.lookupErrs.Load(),
		Refreshes: c.refreshes.Load(), Bypassed: c.bypassed.Load(), Evictions: c.evictions.Load(), StaleServed: c.stale.Load(), Entries: n}
}

// Get resolves req from the cache or the service.
func (c *Cache) Get(ctx context.Context, req Request) (*Entry, error) {
	// The hit path: no parsing, no MAC, no allocation.
	now := c.cfg.Now()
	var h uint64
	if req.UserToken != "" {
		h = c.fastHash(req.UserToken) // outside the lock
	}
	c.mu.Lock()
	var ent *entry
	if req.UserToken != "" {
		ent = c.byToken[tokenKey{h: h, tenant: req.Tenant, name: req.Name}]
	} else {
		ent = c.entries[Key{Tenant: req.Tenant, Name: req.Name}]
	}
	if e, ok := c.hit(ent, now, req, UserInfo{}); ok {
		c.mu.Unlock()
		c.hits.Add(1)
		if c.cfg.Observer.Hit != nil {
			c.cfg.Observer.Hit()
		}
		return e, nil
	}
	c.mu.Unlock()
	return c.get(ctx, req)
}

// get is Get after a miss of the token index: a miss, or a fast-hash
// collision (the token is then found by its user key).
func (c *Cache) get(ctx context.Context, req Request) (*Entry, error) {
	var info UserInfo
	var mac [32]byte
	if req.UserToken != "" {
		mac = c.macOf(req.UserToken)
		var ok bool
		info, ok = ParseUserToken(req.UserToken)
		if !ok || info.Key == "" {
			// No user to key on: never shared with another token (SAP's
			// SDK learnt this the hard way: cloud-sdk-js #1765). The entry
			// belongs to this exact token (its MAC, never its text), so a
			// flood with one such token still makes one lookup.
			c.bypassed.Add(1)
			info.Key = fmt.Sprintf("token|%x", mac[:16])
		}
	}
	k := Key{Tenant: req.Tenant, User: info.Key, Name: req.Name}
	now := c.cfg.Now()
	c.mu.Lock()
	if ent := c.entries[k]; ent != nil {
		if e, ok := c.hit(ent, now, req, info); ok {
			if ent.token != "" {
				// Found past a fast-hash collision: the index points at
				// the entry in use again.
				c.byToken[ent.tk] = ent
			}
			c.mu.Unlock()
			c.hits.Add(1)
			if c.cfg.Observer.Hit != nil {
				c.cfg.Observer.Hit()
			}
			return e, nil
		}
	}
	c.misses.Add(1)
	ck := fmt.Sprintf("%d:%s|%d:%s|%d:%s|%x", len(k.Tenant), k.Tenant, len(k.User), k.User, len(k.Name), k.Name, mac)
	cl := c.inflight[ck]
	if cl == nil {
		cl = &call{done: make(chan struct{})}
		c.inflight[ck] = cl
		go func() {
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.FetchTimeout)
			defer cancel()
			cl.e, cl.err = c.fetch(fctx, req, info)
			c.mu.Lock()
			delete(c.inflight, ck)
			if cl.err == nil {
				c.store(k, req.UserToken, cl.e)
			}
			c.mu.Unlock()
			close(cl.done)
		}()
	}
	c.mu.Unlock()
	select {
	case <-cl.done:
		return cl.e, cl.err
	case <-ctx.Done():
		return nil, newError(req.Name, ErrUnavailable, "the request ended while the destination was being looked up")
	}
}

// hit returns ent's Entry when it is valid and belongs to the request's
// user token (compared in constant time), and starts a refresh when one is
// due (c.mu held). info may be empty: the refresh then parses the token
// itself.
func (c *Cache) hit(ent *entry, now time.Time, req Request, info UserInfo) (*Entry, bool) {
	if ent == nil || ent.k.Tenant != req.Tenant || ent.k.Name != req.Name || !sameToken(ent.token, req.UserToken) || !now.Before(ent.e.Expiry) {
		return nil, false
	}
	if !now.Before(ent.refreshAt) && !ent.busy && !now.Before(ent.retryAt) {
		ent.busy = true
		if req.UserToken != "" && info.Key == "" {
			info, _ = ParseUserToken(req.UserToken)
		}
		go c.refresh(ent.k, req, info)
	}
	return ent.e, true
}

// refresh looks an entry up again in the background.
func (c *Cache) refresh(k Key, req Request, info UserInfo) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.FetchTimeout)
	defer cancel()
	c.refreshes.Add(1)
	e, err := c.fetch(ctx, req, info)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		c.store(k, req.UserToken, e)
		return
	}
	if ent := c.entries[k]; ent != nil && sameToken(ent.token, req.UserToken) {
		ent.busy = false
		ent.retryAt = c.cfg.Now().Add(refreshRetry)
		c.stale.Add(1)
	}
}

// store caches e for the user token that fetched it (c.mu held). An entry
// whose expiry has already passed is not stored.
func (c *Cache) store(k Key, token string, e *Entry) {
	now := c.cfg.Now()
	if !now.Before(e.Expiry) {
		return
	}
	if old, ok := c.entries[k]; ok {
		c.drop(k, old)
	} else if len(c.entries) >= c.cfg.MaxEntries {
		c.evict(now)
	}
	life := e.Expiry.Sub(now)
	ahead := c.cfg.RefreshAhead
	if ahead > life/2 {
		ahead = life / 2
	}
	// A copy: the request's header must not be kept alive by the entry.
	ent := &entry{e: e, token: strings.Clone(token), k: k, refreshAt: e.Expiry.Add(-ahead)}
	if e.userBound {
		ent.refreshAt = e.Expiry
	}
	if token != "" {
		// On a fast-hash collision the later entry takes the index; the
		// other is still found by its user key.
		ent.tk = tokenKey{h: c.fastHash(token), tenant: k.Tenant, name: k.Name}
		c.byToken[ent.tk] = ent
	}
	c.entries[k] = ent
}

// drop removes an entry and its token index (c.mu held).
func (c *Cache) drop(k Key, ent *entry) {
	delete(c.entries, k)
	if ent.token != "" && c.byToken[ent.tk] == ent {
		delete(c.byToken, ent.tk)
	}
}

// evict drops expired entries, or else the one that expires first
// (c.mu held).
func (c *Cache) evict(now time.Time) {
	for k, ent := range c.entries {
		if !now.Before(ent.e.Expiry) {
			c.drop(k, ent)
			c.evictions.Add(1)
		}
	}
	if len(c.entries) < c.cfg.MaxEntries {
		return
	}
	var victim Key
	var first time.Time
	for k, ent := range c.entries {
		if first.IsZero() || ent.e.Expiry.Before(first) {
			victim, first = k, ent.e.Expiry
		}
	}
	c.drop(victim, c.entries[victim])
	c.evictions.Add(1)
}

func (c *Cache) observeLookup(err error) {
	if c.cfg.Observer.Lookup != nil {
		c.cfg.Observer.Lookup(err)
	}
}

// fetch asks the service, with the tenant selection applied, and computes
// the entry's expiry.
func (c *Cache) fetch(ctx context.Context, req Request, info UserInfo) (*Entry, error) {
	tenant, fromProvider := req.Tenant, false
	if c.cfg.Selection == ProviderOnly && tenant != "" {
		tenant, fromProvider = "", true
	}
	c.lookups.Add(1)
	d, err := c.f.Find(ctx, req.Name, tenant, req.UserToken)
	c.observeLookup(err)
	if err != nil && errors.Is(err, ErrNotFound) && c.cfg.Selection == SubscriberFirst && tenant != "" {
		c.lookups.Add(1)
		d, err = c.f.Find(ctx, req.Name, "", req.UserToken)
		c.observeLookup(err)
		fromProvider = true
	}
	if err != nil {
		c.lookupErrs.Add(1)
		return nil, err
	}
	now := c.cfg.Now()
	exp := now.Add(c.cfg.TTL)
	if !d.Expiry.IsZero() && d.Expiry.Before(exp) {
		exp = d.Expiry
	}
	userBound := false
	if !info.Expiry.IsZero() && info.Expiry.Before(exp) {
		exp, userBound = info.Expiry, true
	}
	return &Entry{Destination: d, Expiry: exp.Add(-c.cfg.Skew), FromProvider: fromProvider, userBound: userBound}, nil
}
