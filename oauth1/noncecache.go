package oauth1

import (
	"container/heap"
	"crypto/sha256"
	"sync"
	"time"
)

// nonceCache remembers (consumer key, nonce) pairs until their timestamp
// leaves the window. It holds at most max entries; expired ones are evicted
// first, and when it is still full the new request is refused (failing
// closed rather than forgetting a nonce that could be replayed).
type nonceCache struct {
	mu   sync.Mutex
	max  int
	seen map[[16]byte]time.Time // id -> expiry of the entry in exp
	exp  expHeap
}

type nonceEntry struct {
	id  [16]byte
	exp time.Time
}

type expHeap []nonceEntry

func (h expHeap) Len() int           { return len(h) }
func (h expHeap) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h expHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expHeap) Push(x any)        { *h = append(*h, x.(nonceEntry)) }
func (h *expHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func newNonceCache(max int) *nonceCache {
	return &nonceCache{max: max, seen: make(map[[16]byte]time.Time)}
}

func nonceID(key, nonce string) [16]byte {
	h := sha256.New()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(nonce))
	var id [16]byte
	copy(id[:], h.Sum(nil))
	return id
}

// add records the nonce until exp, or returns ErrReplay if it is known, or
// ErrReplayCacheFull if no room can be made.
func (c *nonceCache) add(key, nonce string, exp, now time.Time) error {
	id := nonceID(key, nonce)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
	if _, ok := c.seen[id]; ok {
		return ErrReplay
	}
	if len(c.seen) >= c.max || len(c.exp) >= 2*c.max {
		return ErrReplayCacheFull
	}
	c.seen[id] = exp
	heap.Push(&c.exp, nonceEntry{id: id, exp: exp})
	return nil
}

// has reports whether the nonce is recorded (and unexpired) without
// recording it.
func (c *nonceCache) has(key, nonce string, now time.Time) bool {
	id := nonceID(key, nonce)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expireLocked(now)
	_, ok := c.seen[id]
	return ok
}

// remove forgets a nonce recorded by add (a request that failed a later
// check does not use up its nonce). Its heap entry stays until it expires.
func (c *nonceCache) remove(key, nonce string) {
	id := nonceID(key, nonce)
	c.mu.Lock()
	delete(c.seen, id)
	c.mu.Unlock()
}

func (c *nonceCache) expireLocked(now time.Time) {
	for len(c.exp) > 0 && !c.exp[0].exp.After(now) {
		e := heap.Pop(&c.exp).(nonceEntry)
		// The id may have been removed and added again with a later expiry.
		if exp, ok := c.seen[e.id]; ok && exp.Equal(e.exp) {
			delete(c.seen, e.id)
		}
	}
}

// len is for tests.
func (c *nonceCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
