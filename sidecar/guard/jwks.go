package guard

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"sync"
	"time"
)

// Defaults of the key cache.
const (
	// DefaultKeyRefresh is the age after which a key set is refreshed in the
	// background (requests keep using the cached keys meanwhile).
	DefaultKeyRefresh = 15 * time.Minute
	// DefaultKeyMinInterval bounds how often an unknown kid makes the guard
	// fetch a key set again.
	DefaultKeyMinInterval = 2 * time.Second
	// maxKeySets bounds the number of key set URLs cached at once (one per
	// tenant host for XSUAA); sets unused for an hour are dropped.
	maxKeySets   = 256
	keySetIdle   = time.Hour
	maxJWKSBytes = 1 << 20
	fetchTimeout = 15 * time.Second
)

var (
	errUnknownKid      = errors.New("no key with this kid")
	errKeysUnavailable = errors.New("verification keys unavailable")
)

// keyCache caches the RSA verification keys of JWKS URLs by kid. One fetch
// per URL is in flight at a time; an unknown kid triggers a fetch at most
// every minInterval; keys older than refreshAfter are refreshed in the
// background.
type keyCache struct {
	client       *http.Client
	now          func() time.Time
	log          *slog.Logger
	refreshAfter time.Duration
	minInterval  time.Duration
	stop         chan struct{}
	wg           sync.WaitGroup

	mu    sync.Mutex
	sets  map[string]*keySet
	fetch int // fetches started, for tests and metrics
}

type keySet struct {
	keys        map[string]*rsa.PublicKey
	fetched     time.Time // last successful fetch
	lastAttempt time.Time
	lastUsed    time.Time
	inflight    chan struct{} // closed when the running fetch ends; nil when none
}

func newKeyCache(client *http.Client, now func() time.Time, log *slog.Logger, refreshAfter, minInterval time.Duration) *keyCache {
	return &keyCache{client: client, now: now, log: log, refreshAfter: refreshAfter, minInterval: minInterval,
		stop: make(chan struct{}), sets: map[string]*keySet{}}
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

// key returns the key with kid from the set at url, fetching as needed.
func (c *keyCache) key(ctx context.Context, url, kid string) (*rsa.PublicKey, error) {
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		now := c.now()
		ks := c.sets[url]
		if ks == nil {
			c.dropIdleLocked(now)
			if len(c.sets) >= maxKeySets {
				c.mu.Unlock()
				return nil, fmt.Errorf("%w: too many key set URLs", errKeysUnavailable)
			}
			ks = &keySet{}
			c.sets[url] = ks
		}
		ks.lastUsed = now
		if k, ok := ks.keys[kid]; ok {
			if ks.inflight == nil && now.Sub(ks.fetched) >= c.refreshAfter && !c.closedLocked() {
				c.startLocked(ks, url, true)
			}
			c.mu.Unlock()
			return k, nil
		}
		if wait := ks.inflight; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if attempt > 0 || (!ks.lastAttempt.IsZero() && now.Sub(ks.lastAttempt) < c.minInterval) {
			empty := ks.keys == nil
			c.mu.Unlock()
			if empty {
				return nil, errKeysUnavailable
			}
			return nil, errUnknownKid
		}
		done := c.startLocked(ks, url, false)
		c.mu.Unlock()
		c.run(ctx, ks, url, done)
	}
}

// startLocked marks a fetch in flight. When background is true it also
// runs it in a goroutine; otherwise the caller runs it with c.run.
func (c *keyCache) startLocked(ks *keySet, url string, background bool) chan struct{} {
	done := make(chan struct{})
	ks.inflight = done
	ks.lastAttempt = c.now()
	c.fetch++
	if background {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
			defer cancel()
			go func() {
				select {
				case <-c.stop:
					cancel()
				case <-ctx.Done():
				}
			}()
			c.run(ctx, ks, url, done)
		}()
	}
	return done
}

func (c *keyCache) run(ctx context.Context, ks *keySet, url string, done chan struct{}) {
	keys, err := fetchJWKS(ctx, c.client, url)
	c.mu.Lock()
	if err == nil {
		ks.keys = keys
		ks.fetched = c.now()
	}
	ks.inflight = nil
	close(done)
	c.mu.Unlock()
	if err != nil {
		c.log.Warn("inbound: fetching verification keys failed", "url", url, "error", err)
		return
	}
	c.log.Debug("inbound: verification keys fetched", "url", url, "keys", len(keys))
}

func (c *keyCache) dropIdleLocked(now time.Time) {
	for u, ks := range c.sets {
		if ks.inflight == nil && now.Sub(ks.lastUsed) > keySetIdle {
			delete(c.sets, u)
		}
	}
}

func (c *keyCache) fetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetch
}

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
