package tokenclient

import (
	"strings"
	"time"
)

// keyCount is one distinct key (see WithMaxKeys) and how many cache entries
// hold it (several: one per user of a user grant, one per client
// certificate).
type keyCount struct {
	name   string
	n      int  // entries (and reservations) holding the key
	pinned bool // reserved by a Handle: never refused, never counted
}

// keyName is the key of a request as WithMaxKeys counts it.
func keyName(r *Request, scopes []string) string {
	var b strings.Builder
	for _, s := range []string{string(r.grant()), r.Tenant, r.ZoneID, r.Resource, r.AppTID} {
		b.WriteString(s)
		b.WriteByte(0)
	}
	for _, s := range scopes {
		b.WriteString(s)
		b.WriteByte(' ')
	}
	return b.String()
}

// reclaimPause bounds how often a refused key makes the client scan for
// entries whose slot could be freed.
const reclaimPause = 250 * time.Millisecond

// admit reserves a slot of key name for a new entry: at once when the key is
// known or there is room, else after freeing the slots of idle keys (at
// most one scan per reclaimPause). It returns ErrTooManyKeys when the bound
// is reached.
func (c *Client) admit(name string) (*keyCount, error) {
	if kc := c.reserve(name); kc != nil {
		return kc, nil
	}
	now := c.o.clock.Now().UnixNano()
	c.keysMu.Lock()
	scan := now >= c.nextReclaim
	if scan {
		c.nextReclaim = now + int64(reclaimPause)
	}
	c.keysMu.Unlock()
	if scan {
		c.reclaim(now)
		if kc := c.reserve(name); kc != nil {
			return kc, nil
		}
	}
	return nil, ErrTooManyKeys
}

// reserve counts one more holder of key name when the key is known or
// there is room for it, and returns nil otherwise.
func (c *Client) reserve(name string) *keyCount {
	c.keysMu.Lock()
	defer c.keysMu.Unlock()
	if c.keys == nil {
		c.keys = map[string]*keyCount{}
	}
	if kc := c.keys[name]; kc != nil {
		kc.n++
		return kc
	}
	if c.counted >= c.o.maxKeys {
		return nil
	}
	kc := &keyCount{name: name, n: 1}
	c.keys[name] = kc
	c.counted++
	return kc
}

// release drops one holder of kc; the key's slot frees with its last one.
func (c *Client) release(kc *keyCount) {
	if kc == nil {
		return
	}
	c.keysMu.Lock()
	defer c.keysMu.Unlock()
	kc.n--
	if kc.n <= 0 && !kc.pinned && c.keys[kc.name] == kc {
		delete(c.keys, kc.name)
		c.counted--
	}
}

// pin reserves key name for good (a Handle's key): it is never refused and
// does not count against the bound.
func (c *Client) pin(name string) {
	c.keysMu.Lock()
	defer c.keysMu.Unlock()
	if c.keys == nil {
		c.keys = map[string]*keyCount{}
	}
	kc := c.keys[name]
	if kc == nil {
		c.keys[name] = &keyCount{name: name, pinned: true}
		return
	}
	if !kc.pinned {
		kc.pinned = true
		c.counted--
	}
}

// reclaim removes the entries of unpinned keys that hold nothing worth
// keeping: no valid token, no fetch in flight, no remembered refusal or
// failure (those keep their slot until they lapse, or a junk key could be
// asked for again and again).
func (c *Client) reclaim(now int64) {
	var victims []*entry
	for i := range c.shards {
		for _, list := range *c.shards[i].m.Load() {
			for _, e := range list {
				if e.class == nil || e.busy.Load() {
					continue
				}
				s := e.st.Load()
				if s == nil || s.validAt(now) || (s.neg != nil && now < s.negUntil) || (s.fail != nil && now < s.failUntil) {
					continue
				}
				c.keysMu.Lock()
				pinned := e.class.pinned
				c.keysMu.Unlock()
				if !pinned {
					victims = append(victims, e)
				}
			}
		}
	}
	for _, e := range victims {
		e.mu.Lock()
		idle := e.call == nil
		e.mu.Unlock()
		if idle {
			c.remove(e)
		}
	}
}
