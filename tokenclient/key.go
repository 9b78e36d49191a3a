package tokenclient

import (
	"math/bits"
	"unsafe"
)

// The cache key of a request and how Token finds its entry. A hit reads
// the wall clock (see cached), which in a VM is most of its time, and must
// stay under 50 ns in all (docs/performance.md), so finding the entry has
// to cost little. A request whose strings are those of the request that
// found its entry last is found through the front table (frontSlot)
// without reading them; one of the common shape with fresh strings is
// hashed from its fields and found through the near table (quickFind);
// any other is gathered and hashed (fill) and looked up in its shard's
// index (find), with no call to the runtime's string comparison or hash
// on the way, and no allocation. The profile that led
// here: a chain of calls and of dependent loads (the shard's index, the
// slot, the entry, its strings) cost more than the arithmetic.

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
	shape    uint16    // which parts are set (key.shape): most differ in none
	parts    [7]string // the parts set, as in key.parts (in the entry: find loads no slice)
	// The key's strings inline, for quickFind: when the key has no secret
	// and at most four strings, each of 8 to 16 bytes (a tenant and a few
	// scopes), qn is their number, qlen their lengths (16 bits each, in
	// fill's order) and qw their first and last eight bytes, which with the
	// length are the whole string. Else qn is 0.
	qn   uint
	qlen uint64
	qw   [2 * quickMax]uint64
}

// quickMax is how many strings a key may have to be held inline.
const quickMax = 4

func newIdentity(r *Request, k *key) identity {
	id := identity{
		grant: r.grant(), scopes: append([]string(nil), k.scopes...), tenant: r.Tenant, zone: r.ZoneID,
		user: r.Username, resource: r.Resource, appTID: r.AppTID, fp: k.fp, digest: k.dg,
		shape: k.shape, parts: k.parts,
	}
	if k.shape&1 == 0 && k.n+len(k.scopes) <= quickMax {
		q := uint(0)
		for _, list := range [2][]string{k.parts[:k.n], k.scopes} {
			for _, s := range list {
				n := len(s)
				if n < 8 || n > 16 {
					return id
				}
				id.qw[2*q], id.qw[2*q+1] = le64(s), le64(s[n-8:])
				id.qlen |= uint64(n) << (16 * q)
				q++
			}
		}
		id.qn = q
	}
	return id
}

// key is what a request's cache key is made of, gathered once per call
// (fill). It holds the request's strings, not the request: escape
// analysis does not tell a struct's fields apart, and insert's copy of the
// strings would move a Request the key pointed to to the heap.
type key struct {
	// parts are those set of: the grant (other than client credentials),
	// tenant, zone, user, resource, app_tid and the fingerprint of the
	// client's credential, in this order: fill and find run one loop over
	// them and the scopes instead of a test and a call per part.
	parts  [7]string
	n      int      // parts set
	scopes []string // canonical (sorted, unique)
	fp     string   // set by the caller
	dg     [32]byte // digest of the grant's secrets (zero for client credentials)
	shape  uint16   // bit i: part i of the list above is set; bit 7: scopes
	h      uint64
}

// fill gathers r's key into k, whose fp the caller set: the canonical
// scopes, the parts, the digest, the shape and the hash. It checks
// nothing: a request is checked before it makes an entry (insert), and a
// request whose key finds one equals a request that was checked (see
// Token).
//
// The hash spreads keys over the shards and their indexes cheaply: one
// 64×64→128-bit multiply per part set and per scope (up to 16 bytes;
// longer ones take one per 16 bytes), keyed by the client's random prefix
// and seeds and by the string's position. It reads every byte. It need not resist
// collisions (find compares the whole identity), but with secret seeds a
// caller who picks tenants cannot aim at one slot. A string of 8 to 16
// bytes (most: tenants, scopes) is read inline as two words, its first and
// its last eight bytes (overlapping); its length, mixed in too, tells the
// overlap apart. Other lengths take mixOther.
func (c *Client) fill(r *Request, k *key) {
	scopes := r.Scopes
	for i := 1; i < len(scopes); i++ {
		// Sorted? Most scopes of eight bytes or more differ in their
		// first eight: compare those inline.
		a, b := scopes[i-1], scopes[i]
		if len(a) >= 8 && len(b) >= 8 {
			if x, y := be64(a), be64(b); x < y {
				continue
			} else if x > y {
				scopes = canonicalScopes(scopes)
				break
			}
		}
		if a >= b {
			scopes = canonicalScopes(scopes)
			break
		}
	}
	k.scopes = scopes
	var m uint16
	if r.Grant != "" && r.Grant != GrantClientCredentials {
		m |= 1
		k.parts[k.n], k.n = string(r.Grant), k.n+1
		k.dg = r.digest()
	}
	if r.Tenant != "" {
		m |= 2
		k.parts[k.n], k.n = r.Tenant, k.n+1
	}
	if r.ZoneID != "" {
		m |= 4
		k.parts[k.n], k.n = r.ZoneID, k.n+1
	}
	if r.Username != "" {
		m |= 8
		k.parts[k.n], k.n = r.Username, k.n+1
	}
	if r.Resource != "" {
		m |= 16
		k.parts[k.n], k.n = r.Resource, k.n+1
	}
	if r.AppTID != "" {
		m |= 32
		k.parts[k.n], k.n = r.AppTID, k.n+1
	}
	if k.fp != "" {
		m |= 64
		k.parts[k.n], k.n = k.fp, k.n+1
	}
	if len(scopes) != 0 {
		m |= 128
	}
	k.shape = m
	h := c.prefix ^ uint64(m)
	if m == 0 { // client credentials, no tenant, no scopes: the client's one plain key
		k.h = h
		return
	}
	// Each string is mixed on its own, keyed by its position (p), and the
	// results are added up: the multiplies do not wait for each other.
	// One loop for both lists: the body is too large to inline as a
	// function, and a call per string costs what the body does. (An
	// array of the two lists would be read back in wider loads than it
	// was written with, which stalls.)
	p, s2 := c.seed[0], c.seed[1]
	list := k.parts[:k.n]
	for j := 0; j < 2; j, list = j+1, scopes {
		for _, s := range list {
			p += 0x9E3779B97F4A7C15
			if n := len(s); n >= 8 && n <= 16 {
				h += mum(le64(s)^p, le64(s[n-8:])^s2^uint64(n))
			} else {
				h += mixOther(0, s, p, s2)
			}
		}
	}
	if m&1 != 0 {
		p += 0x9E3779B97F4A7C15
		h += mum(le64b(k.dg[0:8])^p, le64b(k.dg[8:16])^s2) ^ mum(le64b(k.dg[16:24])^p, le64b(k.dg[24:32])^s2^1)
	}
	k.h = h
}

// mixOther mixes s into h (see fill) for strings shorter than 8 bytes
// (read as their first and last four, or three of their bytes) or longer
// than 16 (a multiply per 16 bytes before their last 16, read as two
// words).
func mixOther(h uint64, s string, s1, s2 uint64) uint64 {
	n := len(s)
	var a, b uint64
	switch {
	case n > 16:
		for i := 0; i+16 < n; i += 16 {
			h = mum(h^le64(s[i:])^s1, le64(s[i+8:])^s2)
		}
		a, b = le64(s[n-16:]), le64(s[n-8:])
	case n >= 8:
		a, b = le64(s), le64(s[n-8:])
	case n >= 4:
		a, b = uint64(le32(s)), uint64(le32(s[n-4:]))
	case n > 0:
		a = uint64(s[0]) | uint64(s[n/2])<<8 | uint64(s[n-1])<<16
	}
	return mum(h^a^s1, b^s2^uint64(n))
}

// mum is the folded product of x and y (as in wyhash): every bit of each
// reaches the result's low bits, which pick the shard.
func mum(x, y uint64) uint64 {
	hi, lo := bits.Mul64(x, y)
	return hi ^ lo
}

func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func le64b(s []byte) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func le32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}

func be64(s string) uint64 {
	_ = s[7]
	return uint64(s[7]) | uint64(s[6])<<8 | uint64(s[5])<<16 | uint64(s[4])<<24 |
		uint64(s[3])<<32 | uint64(s[2])<<40 | uint64(s[1])<<48 | uint64(s[0])<<56
}

func (c *Client) find(k *key) *entry {
	return c.shards[k.h%numShards].idx.Load().find(k)
}

// find returns the entry whose identity is k, or nil. Equal hashes are
// not enough: it compares the whole identity, the same parts set and each
// equal. Strings of 8 to 16 bytes are compared inline as two words each: a
// call to the runtime's comparison costs more than the comparison, and a
// hit makes a few.
func (ix *index) find(k *key) *entry {
	m := k.shape
next:
	for i := ix.slotOf(k.h); ; i = (i + 1) & ix.mask {
		s := &ix.slots[i]
		e := s.e
		if e == nil {
			return nil
		}
		if s.h != k.h || e.id.shape != m {
			continue
		}
		if m == 0 { // client credentials, no tenant, no scopes: nothing else to compare
			return e
		}
		if m&1 != 0 && e.id.digest != k.dg {
			continue
		}
		list, ids := k.parts[:k.n], e.id.parts[:k.n] // then the scopes (see fill); equal shapes set as many parts
		for j := 0; j < 2; j, list, ids = j+1, k.scopes, e.id.scopes {
			if len(list) != len(ids) {
				continue next
			}
			for x, a := range list {
				b := ids[x]
				n := len(a)
				if n != len(b) {
					continue next
				}
				if n >= 8 && n <= 16 {
					if le64(a) != le64(b) || le64(a[n-8:]) != le64(b[n-8:]) {
						continue next
					}
				} else if a != b {
					continue next
				}
			}
		}
		return e
	}
}

// The front table finds the entry of a request without gathering, hashing
// or comparing its key's bytes, for callers that pass the same strings
// again and again (a route's tenant and scopes from the configuration): a
// slot picked from the addresses of the request's strings holds the entry
// that the last request with those strings found, and sameStrings checks
// that the request's strings are the entry's own (the same address and
// length: equal bytes, as strings are immutable and the entry keeps its
// strings alive, so their memory is not reused for others). A request
// whose strings are copies (a tenant from a header) misses it and takes
// fill and find, and does not write to it: only a request that would hit
// is stored, so the table is written once per key (and when two keys take
// turns in one slot), not once per call.
const frontSize = 64

// frontSlot picks r's slot in the front table from the addresses of the
// strings that keys differ in: tenant, zone and every scope.
func frontSlot(r *Request) uint64 {
	x := addr(r.Tenant) ^ addr(r.ZoneID)<<1
	for _, s := range r.Scopes {
		x = bits.RotateLeft64(x, 7) ^ addr(s)
	}
	return x * 0x9E3779B97F4A7C15 >> (64 - 6) // frontSize = 1 << 6
}

func addr(s string) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.StringData(s)))) }

// sameStrings tells whether r, with fingerprint fp, is e's key by the
// addresses of its strings: a client_credentials request (Grant empty:
// other grants have secrets, whose digest is part of the key) whose every
// part and scope is the entry's string, or empty where the entry's is. It
// implies that fill and find would find e for r, and that r's scopes are
// canonical (as e's are). Only fp, which the certificate hook may return
// as a new string each time, is compared by its bytes when the addresses
// differ.
func (e *entry) sameStrings(r *Request, fp string) bool {
	id := &e.id
	if r.Grant != "" || id.shape&1 != 0 || len(r.Scopes) != len(id.scopes) ||
		!same(r.Tenant, id.tenant) || !same(r.ZoneID, id.zone) || !same(r.Username, id.user) ||
		!same(r.Resource, id.resource) || !same(r.AppTID, id.appTID) || (!same(fp, id.fp) && fp != id.fp) {
		return false
	}
	for i, s := range r.Scopes {
		if !same(s, id.scopes[i]) {
			return false
		}
	}
	return true
}

// mayBeSameStrings is false when r is not e's key by the addresses of its
// strings, as sameStrings tells, looking at the tenant and the first scope
// only and without a call: a request with fresh strings is told so at
// once. True means that sameStrings has to decide.
func (e *entry) mayBeSameStrings(r *Request) bool {
	id := &e.id
	return len(r.Scopes) == len(id.scopes) &&
		(r.Tenant == "" || unsafe.StringData(r.Tenant) == unsafe.StringData(id.tenant)) &&
		(len(r.Scopes) == 0 || r.Scopes[0] == "" || unsafe.StringData(r.Scopes[0]) == unsafe.StringData(id.scopes[0]))
}

// same tells whether a and b are the same string: the same length and,
// unless empty, the same address.
func same(a, b string) bool {
	return len(a) == len(b) && (len(a) == 0 || unsafe.StringData(a) == unsafe.StringData(b))
}

// quickFind finds the entry of a request of the shape most callers use
// without gathering its key: client credentials with a tenant or a zone
// and up to four scopes in canonical order, each string of 8 to 16 bytes
// (nil: another request, or not in the near table; lookup decides). A
// caller that passes fresh copies of its strings each time (a tenant from
// a header) misses the front table and comes here on every call.
//
// It computes the hash fill would, from the request's fields in fill's
// order, keeping each string's first and last eight bytes on the way, and
// looks in the near table: the entry lookup last found with that hash
// (remember), compared with the key's strings held inline in the entry
// (identity.qw: with the length, the whole string). So a hit loads the
// slot, the entry and nothing the entry points to; no key is gathered
// (fill's key is 208 bytes to clear and fill, then to read back), and no
// string costs a call (the compiler does not inline a helper of that
// size, and a call per string cost more than the string's work).
func (c *Client) quickFind(r *Request, fp string) *entry {
	if r.Grant != "" || r.Username != "" || r.Resource != "" || r.AppTID != "" || fp != "" {
		return nil // a fingerprint is longer than 16 bytes
	}
	const golden = 0x9E3779B97F4A7C15
	p, s2 := c.seed[0], c.seed[1]
	var h, lens uint64
	var m uint16
	var w [2 * quickMax]uint64 // the strings' words; those not used stay zero, as in the entry
	q := uint(0)
	t := r.Tenant
	if t != "" {
		m = 2
		if r.ZoneID != "" {
			return nil // refused by check
		}
	} else if t = r.ZoneID; t != "" {
		m = 4
	}
	if t != "" {
		n := len(t)
		if n < 8 || n > 16 {
			return nil
		}
		p += golden
		a, b := le64(t), le64(t[n-8:])
		h += mum(a^p, b^s2^uint64(n))
		w[0], w[1], lens, q = a, b, uint64(n), 1
	}
	// Scopes out of order, or repeated, are taken as they come: their hash
	// is not their canonical key's, and in that order their words cannot
	// equal an entry's (whose scopes are canonical), so such a request
	// finds nothing and lookup sorts them.
	scopes := r.Scopes
	if len(scopes) > quickMax-int(q) {
		return nil
	}
	for _, s := range scopes {
		n := len(s)
		if n < 8 || n > 16 {
			return nil
		}
		p += golden
		a, b := le64(s), le64(s[n-8:])
		h += mum(a^p, b^s2^uint64(n))
		w[2*q&7], w[(2*q+1)&7] = a, b // q < quickMax: the masks only spare a bounds check
		lens |= uint64(n) << (16 * (q & 3))
		q++
	}
	if len(scopes) != 0 {
		m |= 128
	} else if q == 0 {
		return nil // no strings: the front table has it
	}
	h += c.prefix ^ uint64(m)
	e := c.near[h>>24%nearSize].Load()
	if e == nil {
		return nil
	}
	id := &e.id
	if e.hash == h && id.shape == m && id.qn == q && id.qlen == lens &&
		id.qw[0] == w[0] && id.qw[1] == w[1] && id.qw[2] == w[2] && id.qw[3] == w[3] &&
		id.qw[4] == w[4] && id.qw[5] == w[5] && id.qw[6] == w[6] && id.qw[7] == w[7] &&
		!e.gone.Load() {
		return e
	}
	return nil
}

// remember puts e, found by lookup, in the near table when quickFind can
// find it there (its key's strings are held inline).
func (c *Client) remember(e *entry) {
	if e.id.qn == 0 || e.id.shape&^(2|4|128) != 0 { // a grant, user, resource, app_tid or fingerprint: not quickFind's
		return
	}
	if near := &c.near[e.hash>>24%nearSize]; near.Load() != e {
		near.Store(e)
	}
}

// nearSize is the number of slots of the near table (quickFind).
const nearSize = 256
