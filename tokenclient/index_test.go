package tokenclient

import (
	"math/rand/v2"
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
			if got := ix.get(h); len(got) != 1 || got[0] != list[0] {
				t.Fatalf("n=%d: key %#x not found", n, h)
			}
		}
		for range 1000 {
			h := rand.Uint64()
			if _, ok := m[h]; !ok && ix.get(h) != nil {
				t.Fatalf("n=%d: absent key %#x found", n, h)
			}
		}
	}
}

func TestShardIsOneCacheLine(t *testing.T) {
	if s := unsafe.Sizeof(shard{}); s != 64 {
		t.Fatalf("shard is %d bytes, want 64", s)
	}
}

// matches compares only the parts its shape says are set: a request that
// differs from the entry's in any one part, set or unset, never matches.
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
	key := func(r Request, fp string) (identity, Request, []string, string, [32]byte) {
		var dg [32]byte
		if r.grant() != GrantClientCredentials {
			dg = r.digest()
		}
		sc := canonicalScopes(r.Scopes)
		return identity{grant: r.grant(), scopes: sc, tenant: r.Tenant, zone: r.ZoneID, user: r.Username,
			resource: r.Resource, appTID: r.AppTID, fp: fp, digest: dg, shape: shapeOf(&r, sc, fp)}, r, sc, fp, dg
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
		id, _, _, _, _ := key(ra, fps[a])
		for b, rb := range reqs {
			_, r, sc, fp, dg := key(rb, fps[b])
			want := a == b || (a == "none" && b == "cc-explicit") || (a == "cc-explicit" && b == "none")
			if got := id.matches(&r, sc, fp, &dg); got != want {
				t.Errorf("entry %s, request %s: matches %v, want %v", a, b, got, want)
			}
		}
	}
}

// fold reads every byte of every length: strings that differ in one byte
// (at any position, for lengths around the word sizes) fold differently.
func TestFoldReadsEveryByte(t *testing.T) {
	for n := 1; n <= 33; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + i)
		}
		base := fold(1, string(b))
		for i := range b {
			c := append([]byte(nil), b...)
			c[i] ^= 0x20
			if fold(1, string(c)) == base {
				t.Errorf("len %d: a change at byte %d does not change the hash", n, i)
			}
		}
		if fold(1, string(b[:n-1])) == base {
			t.Errorf("len %d: equal to its prefix", n)
		}
	}
}
