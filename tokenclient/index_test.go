package tokenclient

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"
)

// The index finds every key of the map and nothing else, also when the
// keys share the low bits (all keys of a shard share those numShards
// picks) and collide in the bits it probes from.
func TestIndexFindsEveryKey(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 5, 100, 1000} {
		m := map[uint64][]*entry{}
		for len(m) < n {
			h := rand.Uint64()&^0xf | 0x3 // one shard's keys
			if len(m)%7 == 0 {
				h &^= 0xffff0000 // same probe start as others
			}
			m[h] = []*entry{{hash: h}}
		}
		ix := newIndex(m)
		if len(ix.slots) < 2*n {
			t.Fatalf("%d keys in %d slots: more than half full", n, len(ix.slots))
		}
		for h, list := range m {
			if got := ix.find(&key{h: h}); got != list[0] {
				t.Fatalf("n=%d: key %#x not found", n, h)
			}
		}
		for range 1000 {
			h := rand.Uint64()
			if _, ok := m[h]; !ok && ix.find(&key{h: h}) != nil {
				t.Fatalf("n=%d: absent key %#x found", n, h)
			}
		}
	}
}

// Entries whose hashes are equal take a slot each: find returns the one
// whose identity is the key's, whichever was indexed first.
func TestIndexTellsEqualHashesApart(t *testing.T) {
	const h = 0x1234_5678_9abc_def3
	var c Client
	m := map[uint64][]*entry{}
	var keys []key
	for _, tenant := range []string{"a", "b", "c"} {
		r := &Request{Tenant: tenant}
		var k key
		c.fill(r, &k)
		k.h = h // force the collision
		keys = append(keys, k)
		m[h] = append(m[h], &entry{hash: h, id: newIdentity(r, &k)})
	}
	ix := newIndex(m)
	for i := range keys {
		if got := ix.find(&keys[i]); got != m[h][i] {
			t.Fatalf("tenant %q: found %v, want entry %d", keys[i].parts[0], got, i)
		}
	}
	var other key
	c.fill(&Request{Tenant: "d"}, &other)
	other.h = h
	if got := ix.find(&other); got != nil {
		t.Fatalf("a tenant with no entry found one (tenant %q)", got.id.tenant)
	}
}

func TestShardIsOneCacheLine(t *testing.T) {
	if s := unsafe.Sizeof(shard{}); s != 64 {
		t.Fatalf("shard is %d bytes, want 64", s)
	}
}

// matches compares only the parts its shape says are set: a request that
// differs from the entry's in any one part, set or unset, never matches,
// however its hash compares: find compares strings of every length (inline
// as words from 8 to 16 bytes, by the runtime otherwise) in every byte.
func TestIdentityMatchesEveryPart(t *testing.T) {
	base := Request{}
	variants := map[string]func(*Request, *string){
		"grant":    func(r *Request, _ *string) { r.Grant, r.Assertion = GrantJWTBearer, "a" },
		"tenant":   func(r *Request, _ *string) { r.Tenant = "t" },
		"zone":     func(r *Request, _ *string) { r.ZoneID = "z" },
		"user":     func(r *Request, _ *string) { r.Grant, r.Username, r.Password = GrantPassword, "u", "p" },
		"resource": func(r *Request, _ *string) { r.Resource = "res" },
		"app_tid":  func(r *Request, _ *string) { r.AppTID = "tid" },
		"fp":       func(_ *Request, fp *string) { *fp = "f" },
		"scopes":   func(r *Request, _ *string) { r.Scopes = []string{"s"} },
	}
	// Strings that differ in one byte, first, middle or last, of lengths
	// around the inline comparison's bounds.
	for _, n := range []int{7, 8, 9, 12, 16, 17, 40} {
		a := strings.Repeat("x", n)
		variants[fmt.Sprintf("tenant-%d", n)] = func(r *Request, _ *string) { r.Tenant = a }
		for _, at := range []int{0, n / 2, n - 1} {
			b := []byte(a)
			b[at] = 'y'
			name := fmt.Sprintf("%d/%d", n, at)
			variants["tenant-b"+name] = func(r *Request, _ *string) { r.Tenant = string(b) }
			variants["scope-b"+name] = func(r *Request, _ *string) { r.Scopes = []string{"aaa", string(b)} }
			variants["fp-b"+name] = func(_ *Request, fp *string) { *fp = string(b) }
		}
	}
	var c Client
	keyOf := func(r Request, fp string) (identity, *key) {
		k := &key{fp: fp}
		c.fill(&r, k)
		return newIdentity(&r, k), k
	}
	reqs := map[string]Request{"none": base}
	fps := map[string]string{"none": ""}
	for name, set := range variants {
		r, fp := base, ""
		set(&r, &fp)
		reqs[name], fps[name] = r, fp
	}
	// The same part set to another value.
	other := base
	other.Tenant = "u"
	reqs["tenant2"], fps["tenant2"] = other, ""
	pw := Request{Grant: GrantPassword, Username: "u", Password: "other"}
	reqs["password2"], fps["password2"] = pw, ""
	cc := Request{Grant: GrantClientCredentials}
	reqs["cc-explicit"], fps["cc-explicit"] = cc, ""

	for a, ra := range reqs {
		id, _ := keyOf(ra, fps[a])
		for b, rb := range reqs {
			_, k := keyOf(rb, fps[b])
			want := a == b || (a == "none" && b == "cc-explicit") || (a == "cc-explicit" && b == "none")
			k.h = 0x42 // whatever the hash, find compares the identity
			ix := newIndex(map[uint64][]*entry{k.h: {{hash: k.h, id: id}}})
			if got := ix.find(k) != nil; got != want {
				t.Errorf("entry %s, request %s: matches %v, want %v", a, b, got, want)
			}
		}
	}
}

// The hash reads every byte of every length: parts that differ in one byte
// (at any position, for lengths around the word sizes and the 16-byte
// blocks, inline or in mixOther) hash differently, and so do a part and its
// prefix.
func TestHashReadsEveryByte(t *testing.T) {
	c := Client{prefix: 7, seed: [2]uint64{0x243f6a8885a308d3, 0x13198a2e03707344}}
	hash := func(s string) uint64 {
		var k key
		c.fill(&Request{Scopes: []string{s}}, &k)
		return k.h
	}
	for n := 1; n <= 50; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + i)
		}
		base := hash(string(b))
		for i := range b {
			c := append([]byte(nil), b...)
			c[i] ^= 0x20
			if hash(string(c)) == base {
				t.Errorf("len %d: a change at byte %d does not change the hash", n, i)
			}
		}
		if hash(string(b[:n-1])) == base {
			t.Errorf("len %d: equal to its prefix", n)
		}
	}
}

// The hash reads every part a key can set: keys that differ in any one
// part (each part of TestIdentityMatchesEveryPart) hash differently.
func TestHashReadsEveryPart(t *testing.T) {
	c := Client{prefix: 7, seed: [2]uint64{0x243f6a8885a308d3, 0x13198a2e03707344}}
	reqs := map[string]Request{
		"none":     {},
		"tenant":   {Tenant: "t"},
		"zone":     {ZoneID: "t"},
		"resource": {Resource: "t"},
		"app_tid":  {AppTID: "t"},
		"scopes":   {Scopes: []string{"t"}},
		"scopes2":  {Scopes: []string{"t", "u"}},
		"scopes3":  {Scopes: []string{"tu"}},
		"jwt":      {Grant: GrantJWTBearer, Assertion: "a"},
		"jwt2":     {Grant: GrantJWTBearer, Assertion: "b"},
		"password": {Grant: GrantPassword, Username: "t", Password: "p"},
		"refresh":  {Grant: GrantRefreshToken, RefreshToken: "a"},
	}
	seen := map[uint64]string{}
	for name, r := range reqs {
		for _, fp := range []string{"", "t"} {
			k := key{fp: fp}
			c.fill(&r, &k)
			if prev, dup := seen[k.h]; dup {
				t.Errorf("%s (fp %q) hashes as %s", name, fp, prev)
			}
			seen[k.h] = name + "/" + fp
		}
	}
}
