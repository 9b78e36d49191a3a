package guard

import (
	"container/list"
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Defaults of the key cache.
const (
	// DefaultKeyRefresh is the age after which a key set is refreshed in the
	// background (requests keep using the cached keys meanwhile).
	DefaultKeyRefresh = 15 * time.Minute
	// DefaultKeyMinInterval bounds how often an unknown kid makes the guard
	// fetch a key set again.
	DefaultKeyMinInterval = 2 * time.Second
	maxJWKSBytes          = 1 << 20
	fetchTimeout          = 15 * time.Second
	// seenPerGeneration bounds the memory of key set URLs asked for once:
	// two generations of this many 64-bit hashes.
	seenPerGeneration = 4096
)

var (
	errUnknownKid      = errors.New("no key with this kid")
	errKeysUnavailable = errors.New("verification keys unavailable")
	errFetchLimited    = errors.New("key set fetches are rate-limited")
)

// keyCache caches the RSA verification keys of JWKS URLs by kid. Nothing a
// caller without a valid token sends can evict or block a key set that
// has verified a token:
//
//   - proven: key sets that verified a valid token for the binding
//     (signature, times, issuer, audience), at most
//     Limits.KeySets, least recently used dropped first (only by another
//     proven set). An unknown kid refetches a proven set at most every
//     minInterval; sets older than refreshAfter are refreshed in the
//     background while their keys stay in use.
//   - unproven: key sets fetched successfully that no valid token has
//     used yet, at most Limits.KeySetsUnproven (least recently used
//     dropped first). A set moves to proven with the first valid
//     token it verifies.
//   - failed: URLs whose fetch failed, at most Limits.KeyFailures; such a
//     URL is not fetched again for Limits.KeyRetry.
//
// A key set slot exists only after a successful fetch. Fetches for URLs
// without a proven set take a token from a bucket (Limits.KeyFetchRate per
// second, Limits.KeyFetchBurst at most); a URL asked for the first time may
// only use the upper half of the bucket, so a flood of one-off junk
// issuers cannot keep a new subscriber, whose callers come back, from
// being fetched. One fetch per URL is in flight at a time.
type keyCache struct {
	client       *http.Client
	now          func() time.Time
	log          *slog.Logger
	fetched      func(error)  // counts each fetch's outcome; nil: none
	tracer       trace.Tracer // nil: no spans
	refreshAfter time.Duration
	minInterval  time.Duration
	lim          Limits
	stop         chan struct{}
	wg           sync.WaitGroup
	seed         maphash.Seed

	mu       sync.Mutex
	proven   *lru[*keySet]
	unproven *lru[*keySet]
	failed   *lru[time.Time] // URL -> not before
	inflight map[string]chan struct{}
	seenCur  map[uint64]struct{}
	seenPrev map[uint64]struct{}
	tokens   float64
	last     time.Time
	fetch    int // fetches started, for tests
}

type keySet struct {
	keys        map[string]*rsa.PublicKey
	fetched     time.Time // last successful fetch
	lastAttempt time.Time
	inflight    chan struct{} // closed when the running refetch ends; nil when none
}

func newKeyCache(client *http.Client, now func() time.Time, log *slog.Logger, refreshAfter, minInterval time.Duration, lim Limits) *keyCache {
	lim = lim.withDefaults()
	return &keyCache{client: client, now: now, log: log, refreshAfter: refreshAfter, minInterval: minInterval, lim: lim,
		stop: make(chan struct{}), seed: maphash.MakeSeed(),
		proven: newLRU[*keySet](lim.KeySets), unproven: newLRU[*keySet](lim.KeySetsUnproven), failed: newLRU[time.Time](lim.KeyFailures),
		inflight: map[string]chan struct{}{}, seenCur: map[uint64]struct{}{}, tokens: float64(lim.KeyFetchBurst)}
}

// close stops background refreshes and waits for them.
func (c *keyCache) close() {
	c.mu.Lock()
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

func (c *keyCache) closedLocked() bool {
	select {
	case <-c.stop:
		return true
	default:
		return false
	}
}

// key returns the key with kid from the set at url, fetching as the
// limits allow.
func (c *keyCache) key(ctx context.Context, url, kid string) (*rsa.PublicKey, error) {
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		now := c.now()
		if ks, ok := c.proven.get(url); ok {
			if k, again, err := c.cachedLocked(ctx, ks, url, kid, now, attempt, true); !again {
				return k, err
			}
			continue
		}
		if ks, ok := c.unproven.get(url); ok {
			if k, again, err := c.cachedLocked(ctx, ks, url, kid, now, attempt, false); !again {
				return k, err
			}
			continue
		}
		if wait := c.inflight[url]; wait != nil {
			c.mu.Unlock()
			if err := waitFor(ctx, wait); err != nil {
				return nil, err
			}
			continue
		}
		if notBefore, ok := c.failed.get(url); ok && (attempt > 0 || now.Before(notBefore)) {
			c.mu.Unlock()
			return nil, fmt.Errorf("%w: the last fetch failed", errKeysUnavailable)
		}
		if attempt > 0 {
			// The fetch this request waited for ended and left nothing
			// (its set was dropped at once): do not loop.
			c.mu.Unlock()
			return nil, errKeysUnavailable
		}
		repeat := c.sawLocked(url)
		if !c.takeLocked(now, repeat) {
			c.mu.Unlock()
			return nil, errFetchLimited
		}
		done := make(chan struct{})
		c.inflight[url] = done
		c.fetch++
		c.mu.Unlock()
		c.fetchNew(ctx, url, done)
	}
}

// cachedLocked answers key from ks, the cached set of url (proven: it has
// verified a token). c.mu is held and is released. again: the set was
// fetched anew or waited for, look again; else the key or the error. An
// unproven set is refetched only within the fetch limit.
func (c *keyCache) cachedLocked(ctx context.Context, ks *keySet, url, kid string, now time.Time, attempt int, proven bool) (k *rsa.PublicKey, again bool, err error) {
	k, wait, refetch, err := c.lookupLocked(ks, kid, now, attempt, proven, url)
	if refetch {
		if !proven && !c.takeLocked(now, true) {
			c.mu.Unlock()
			return nil, false, errFetchLimited
		}
		done := c.startLocked(ks, url, false)
		c.mu.Unlock()
		c.run(ctx, ks, url, done)
		return nil, true, nil
	}
	c.mu.Unlock()
	if wait != nil {
		if err := waitFor(ctx, wait); err != nil {
			return nil, false, err
		}
		return nil, true, nil
	}
	return k, false, err
}

// lookupLocked finds kid in ks. It returns the key, or a channel to wait
// for, or refetch=true when the caller should fetch the set again now, or
// the error to give up with.
func (c *keyCache) lookupLocked(ks *keySet, kid string, now time.Time, attempt int, proven bool, url string) (k *rsa.PublicKey, wait chan struct{}, refetch bool, err error) {
	if k, ok := ks.keys[kid]; ok {
		if proven && ks.inflight == nil && now.Sub(ks.fetched) >= c.refreshAfter && !c.closedLocked() {
			c.startLocked(ks, url, true)
		}
		return k, nil, false, nil
	}
	if ks.inflight != nil {
		return nil, ks.inflight, false, nil
	}
	if attempt > 0 || (!ks.lastAttempt.IsZero() && now.Sub(ks.lastAttempt) < c.minInterval) {
		return nil, nil, false, errUnknownKid
	}
	return nil, nil, true, nil
}

func waitFor(ctx context.Context, ch chan struct{}) error {
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// confirm records that the set at url verified a token the guard
// accepted: an unproven set becomes proven.
func (c *keyCache) confirm(url string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.proven.get(url); ok {
		return
	}
	if ks, ok := c.unproven.get(url); ok {
		c.unproven.remove(url)
		c.proven.put(url, ks)
	}
}

// sawLocked reports whether url was asked for before (in this generation
// or the last) and remembers it.
func (c *keyCache) sawLocked(url string) bool {
	h := maphash.String(c.seed, url)
	_, a := c.seenCur[h]
	_, b := c.seenPrev[h]
	if !a {
		if len(c.seenCur) >= seenPerGeneration {
			c.seenPrev, c.seenCur = c.seenCur, make(map[uint64]struct{}, seenPerGeneration)
		}
		c.seenCur[h] = struct{}{}
	}
	return a || b
}

// takeLocked takes a fetch token from the bucket. A URL asked for the
// first time leaves the lower half of the burst for repeated ones.
func (c *keyCache) takeLocked(now time.Time, repeat bool) bool {
	burst := float64(c.lim.KeyFetchBurst)
	if !c.last.IsZero() && now.After(c.last) {
		c.tokens = min(burst, c.tokens+now.Sub(c.last).Seconds()*c.lim.KeyFetchRate)
	}
	if c.last.IsZero() || now.After(c.last) {
		c.last = now
	}
	need := 1.0
	if !repeat {
		need += float64(c.lim.KeyFetchBurst / 2)
	}
	if c.tokens < need {
		return false
	}
	c.tokens--
	return true
}

// fetchNew fetches a set no cache holds and files it as unproven or
// failed.
func (c *keyCache) fetchNew(ctx context.Context, url string, done chan struct{}) {
	fctx, cancel := c.fetchContext(ctx)
	keys, err := c.fetchKeys(fctx, url)
	cancel()
	c.mu.Lock()
	delete(c.inflight, url)
	now := c.now()
	if err != nil {
		c.failed.put(url, now.Add(c.lim.KeyRetry))
	} else {
		c.failed.remove(url)
		c.unproven.put(url, &keySet{keys: keys, fetched: now, lastAttempt: now})
	}
	close(done)
	c.mu.Unlock()
	c.reportFetch(url, len(keys), err)
}

// fetchContext bounds a fetch by fetchTimeout and by close, not by the
// request that started it: other requests may be waiting for it.
func (c *keyCache) fetchContext(ctx context.Context) (context.Context, context.CancelFunc) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-fctx.Done():
		}
	}()
	return fctx, cancel
}

// startLocked marks a refetch of ks in flight. When background is true it
// also runs it in a goroutine; otherwise the caller runs it with c.run.
func (c *keyCache) startLocked(ks *keySet, url string, background bool) chan struct{} {
	done := make(chan struct{})
	ks.inflight = done
	ks.lastAttempt = c.now()
	c.fetch++
	if background {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.run(context.Background(), ks, url, done)
		}()
	}
	return done
}

// run refetches a cached set; on failure its keys stay as they were.
func (c *keyCache) run(ctx context.Context, ks *keySet, url string, done chan struct{}) {
	fctx, cancel := c.fetchContext(ctx)
	keys, err := c.fetchKeys(fctx, url)
	cancel()
	c.mu.Lock()
	if err == nil {
		ks.keys = keys
		ks.fetched = c.now()
	}
	ks.inflight = nil
	close(done)
	c.mu.Unlock()
	c.reportFetch(url, len(keys), err)
}

func (c *keyCache) fetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetch
}

// lru is a map with a bound, dropping the least recently used entry. Not
// safe for concurrent use.
type lru[V any] struct {
	max   int
	ll    *list.List
	items map[string]*list.Element
}

type lruEntry[V any] struct {
	key string
	val V
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, ll: list.New(), items: map[string]*list.Element{}}
}

func (l *lru[V]) get(k string) (V, bool) {
	if e, ok := l.items[k]; ok {
		l.ll.MoveToFront(e)
		return e.Value.(*lruEntry[V]).val, true
	}
	var zero V
	return zero, false
}

func (l *lru[V]) put(k string, v V) {
	if e, ok := l.items[k]; ok {
		e.Value.(*lruEntry[V]).val = v
		l.ll.MoveToFront(e)
		return
	}
	if l.max <= 0 {
		return
	}
	for l.ll.Len() >= l.max {
		old := l.ll.Back()
		l.ll.Remove(old)
		delete(l.items, old.Value.(*lruEntry[V]).key)
	}
	l.items[k] = l.ll.PushFront(&lruEntry[V]{key: k, val: v})
}

func (l *lru[V]) remove(k string) {
	if e, ok := l.items[k]; ok {
		l.ll.Remove(e)
		delete(l.items, k)
	}
}

func (l *lru[V]) len() int { return l.ll.Len() }

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
}

// fetchJWKS GETs a JWKS document and returns its RSA signing keys by kid.
func fetchJWKS(ctx context.Context, client *http.Client, url string) (map[string]*rsa.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxJWKSBytes))
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("key set larger than %d bytes", maxJWKSBytes)
	}
	return parseJWKS(body)
}

func parseJWKS(body []byte) (map[string]*rsa.PublicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("key set is not JSON: %w", err)
	}
	keys := map[string]*rsa.PublicKey{}
	for _, k := range set.Keys {
		if k.Kty != "RSA" || (k.Use != "" && k.Use != "sig") {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(k.N)
		e, err2 := base64.RawURLEncoding.DecodeString(k.E)
		if err1 != nil || err2 != nil || len(n) < 256 || len(e) == 0 || len(e) > 4 {
			continue // malformed or shorter than 2048 bits
		}
		ev := int(new(big.Int).SetBytes(e).Int64())
		if ev < 3 || ev%2 == 0 {
			continue
		}
		keys[k.Kid] = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: ev}
	}
	if len(keys) == 0 {
		return nil, errors.New("key set holds no usable RSA key")
	}
	return keys, nil
}

// reportFetch tells the fetched hook and the log how a fetch of url ended
// (n keys, or err); c.mu is not held.
func (c *keyCache) reportFetch(url string, n int, err error) {
	if c.fetched != nil {
		c.fetched(err)
	}
	if err != nil {
		c.log.Warn("inbound: fetching verification keys failed", "url", url, "error", err)
		return
	}
	c.log.Debug("inbound: verification keys fetched", "url", url, "keys", n)
}
