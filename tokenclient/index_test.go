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
