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

// index is a read-only open-addressed hash table of a shard's map: the hit
// path finds a key's entries with one or two probes of a flat array, not
// a Go map lookup (a profile of Client.Token put the map at a fifth of a
// hit). It is rebuilt on every write, as the map is copied anyway.
type index struct {
	mask  uint64
	slots []slot // at most half full: a probe always ends at an empty slot
}

type slot struct {
	h    uint64
	list []*entry // nil: empty
}

// slotOf picks the first slot for h from bits above those numShards uses
// (all keys of a shard share those).
func (ix *index) slotOf(h uint64) uint64 { return (h >> 16) & ix.mask }

func newIndex(m map[uint64][]*entry) *index {
	n := 8
	for n < 2*len(m) {
		n <<= 1
	}
	ix := &index{mask: uint64(n - 1), slots: make([]slot, n)}
	for h, list := range m {
		i := ix.slotOf(h)
		for ix.slots[i].list != nil {
			i = (i + 1) & ix.mask
		}
		ix.slots[i] = slot{h: h, list: list}
	}
	return ix
}

func (ix *index) get(h uint64) []*entry {
	for i := ix.slotOf(h); ; i = (i + 1) & ix.mask {
		s := &ix.slots[i]
		if s.list == nil || s.h == h {
			return s.list
		}
	}
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
	shape    uint16 // which parts are set (shapeOf): most differ in none
}

// shapeOf tells which parts of a key are set, from lengths alone, so that
// matches compares only those (each string comparison is a call).
func shapeOf(r *Request, scopes []string, fp string) uint16 {
	var m uint16
	if r.Grant != "" && r.Grant != GrantClientCredentials {
		m |= 1
	}
	if r.Tenant != "" {
		m |= 2
	}
	if r.ZoneID != "" {
		m |= 4
	}
	if r.Username != "" {
		m |= 8
	}
	if r.Resource != "" {
		m |= 16
	}
	if r.AppTID != "" {
		m |= 32
	}
	if fp != "" {
		m |= 64
	}
	if len(scopes) != 0 {
		m |= 128
	}
	return m
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

// requestKey checks r and returns what its cache key is made of: the
// canonical scopes, the fingerprint of the client's credential and the
// digest of the grant's secrets (zero for client credentials). Token and
// Invalidate both take it from here: they must find the same entry.
func (c *Client) requestKey(r *Request) (scopes []string, fp string, dg [32]byte, err error) {
	if c.isDone.Load() {
		return nil, "", dg, ErrClosed
	}
	if err := r.check(); err != nil {
		return nil, "", dg, err
	}
	if c.fpFunc != nil {
		fp = c.fpFunc()
	}
	if r.Grant != "" && r.Grant != GrantClientCredentials {
		dg = r.digest()
	}
	return canonicalScopes(r.Scopes), fp, dg, nil
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

// hash spreads the request's identity over the map cheaply. It need not
// resist collisions: find compares the whole identity.
func (c *Client) hash(r *Request, scopes []string, fp string, dg *[32]byte) uint64 {
	h := c.prefix
	if r.Grant != "" && r.Grant != GrantClientCredentials {
		h = fold(h, string(r.Grant))
	}
	// Most parts are empty: test them here, not in a call.
	if r.Tenant != "" {
		h = fold(h, r.Tenant)
	}
	if r.ZoneID != "" {
		h = fold(h, r.ZoneID)
	}
	if r.Username != "" {
		h = fold(h, r.Username)
	}
	if r.Resource != "" {
		h = fold(h, r.Resource)
	}
	if r.AppTID != "" {
		h = fold(h, r.AppTID)
	}
	if fp != "" {
		h = fold(h, fp)
	}
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

// fold folds s into h, eight bytes at a time; the last (partial) word is
// read as the string's last eight bytes, overlapping the word before, so
// no byte loop runs (the length, folded first, tells the overlap apart).
func fold(h uint64, s string) uint64 {
	const p = 0x9E3779B97F4A7C15
	n := len(s)
	if n == 0 {
		return h
	}
	h = (h ^ uint64(n)) * p
	if n >= 8 {
		for i := 0; i+8 < n; i += 8 {
			h = (h ^ le64(s[i:])) * p
		}
		return (h ^ le64(s[n-8:])) * p
	}
	var v uint64
	if n >= 4 {
		v = uint64(le32(s)) | uint64(le32(s[n-4:]))<<32
	} else {
		v = uint64(s[0]) | uint64(s[n/2])<<8 | uint64(s[n-1])<<16
	}
	return (h ^ v) * p
}

func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func le32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

func (id *identity) matches(r *Request, scopes []string, fp string, dg *[32]byte) bool {
	m := shapeOf(r, scopes, fp)
	if id.shape != m {
		return false
	}
	if m == 0 { // client credentials, no tenant, no scopes: nothing else to compare
		return true
	}
	return (m&1 == 0 || (id.grant == r.Grant && id.digest == *dg)) &&
		(m&2 == 0 || id.tenant == r.Tenant) && (m&4 == 0 || id.zone == r.ZoneID) &&
		(m&8 == 0 || id.user == r.Username) && (m&16 == 0 || id.resource == r.Resource) &&
		(m&32 == 0 || id.appTID == r.AppTID) && (m&64 == 0 || id.fp == fp) &&
		(m&128 == 0 || equalStrings(id.scopes, scopes))
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
	for _, e := range sh.idx.Load().get(h) {
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
		shape: shapeOf(r, scopes, fp),
	}}
	e.req.Scopes = e.id.scopes
	old := *sh.m.Load()
	m := make(map[uint64][]*entry, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[h] = append(append([]*entry(nil), old[h]...), e)
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
