package tokenclient

import (
	"sync"
	"sync/atomic"
)

const numShards = 16

type shard struct {
	mu  sync.Mutex                          // serialises writers
	m   atomic.Pointer[map[uint64][]*entry] // copy on write: readers never lock
	idx atomic.Pointer[index]               // m as an open-addressed table, for find
	_   [40]byte                            // keep shards on their own cache lines
}

// setLocked publishes a new copy of the shard's map and its index (sh.mu
// held). Readers load one or the other, never both, so they need not agree
// for an instant.
func (sh *shard) setLocked(m map[uint64][]*entry) {
	sh.m.Store(&m)
	sh.idx.Store(newIndex(m))
}

// index is a read-only open-addressed hash table of a shard's entries: the
// hit path finds a key's entry with one or two probes of a flat array that
// holds the entries themselves, not a Go map lookup and not a list per
// hash (a profile of Client.Token put the map at a fifth of a hit, and the
// list at another load per hit). It is rebuilt on every write, as the map
// is copied anyway. Entries whose hashes collide take a slot each.
type index struct {
	mask  uint64
	slots []slot // at most half full: a probe always ends at an empty slot
}

type slot struct {
	h uint64
	e *entry // nil: empty
}

// slotOf picks the first slot for h from bits above those numShards uses
// (all keys of a shard share those).
func (ix *index) slotOf(h uint64) uint64 { return (h >> 16) & ix.mask }

func newIndex(m map[uint64][]*entry) *index {
	total := 0
	for _, list := range m {
		total += len(list)
	}
	n := 8
	for n < 2*total {
		n <<= 1
	}
	ix := &index{mask: uint64(n - 1), slots: make([]slot, n)}
	for h, list := range m {
		for _, e := range list {
			i := ix.slotOf(h)
			for ix.slots[i].e != nil {
				i = (i + 1) & ix.mask
			}
			ix.slots[i] = slot{h: h, e: e}
		}
	}
	return ix
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
	outageEnd  int64 // unix ns: once the service is unavailable, serve tok until here
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

// lookup finds or creates the cache entry for r, with fingerprint fp.
// It checks r only when it makes an entry: a request that finds one equals
// the request that made it, which was checked, so a hit skips the check
// (see insert). Creating one may fail with ErrInvalidRequest or
// ErrTooManyKeys.
func (c *Client) lookup(r *Request, fp string) (*entry, error) {
	var k key
	k.fp = fp
	c.fill(r, &k)
	if e := c.find(&k); e != nil {
		return e, nil
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return c.insert(r, &k)
}

// cached returns e's token while its expiry timer has not fired and the
// wall clock, read now, is before its validUntil, starting a background
// refresh when its refresh timer has fired or the wall clock passed
// refreshAt. The timers alone are not enough: they run on the monotonic
// clock, which stops while the host is suspended, so after a resume they
// fire late by the length of the suspend. The wall clock counts the
// suspend: reading it on every hit means no token is handed out after its
// time, however long the suspend and however soon the call comes after the
// resume. It allocates nothing.
func (c *Client) cached(e *entry) *Token {
	s := e.st.Load()
	if s == nil || s.tok == nil || s.expired.Load() {
		return nil
	}
	now := c.nowNano()
	if now >= s.validUntil {
		return nil
	}
	if !s.due.Load() && now >= s.refreshAt {
		s.due.Store(true) // the refresh timer is late (a suspend)
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

// insert adds an entry for r (key k) unless another caller did first. A
// new entry needs a slot of its key (WithMaxKeys).
//
// r was checked (Request.check): lookup, the only caller, checks before.
// A hit relies on it to skip the check: a request whose key finds an
// entry has the same grant, tenant, zone and user as the request that
// made it, and the same secret for its grant (equal SHA-256 digests),
// which is everything check reads, so it passes as that one did.
func (c *Client) insert(r *Request, k *key) (*entry, error) {
	kc, err := c.admit(keyName(r, k.scopes))
	if err != nil {
		return nil, err
	}
	sh := &c.shards[k.h%numShards]
	sh.mu.Lock()
	if e := sh.idx.Load().find(k); e != nil {
		sh.mu.Unlock()
		c.release(kc)
		return e, nil
	}
	e := &entry{hash: k.h, req: *r, class: kc, id: newIdentity(r, k)}
	e.req.Scopes = e.id.scopes
	old := *sh.m.Load()
	m := make(map[uint64][]*entry, len(old)+1)
	for h, v := range old {
		m[h] = v
	}
	m[k.h] = append(append([]*entry(nil), old[k.h]...), e)
	sh.setLocked(m)
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
	sh.setLocked(m)
	sh.mu.Unlock()
	c.count.Add(-1)
	if !victim.gone.Swap(true) {
		c.release(victim.class)
	}
	for i := range c.front { // a Token call would pass over it; it need not keep it alive
		c.front[i].CompareAndSwap(victim, nil)
	}
	c.near[victim.hash>>24%nearSize].CompareAndSwap(victim, nil)
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
