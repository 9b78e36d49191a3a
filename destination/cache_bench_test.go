package destination

import (
	"context"
	"crypto/subtle"
	"strings"
	"testing"
	"time"
)

// benchToken is a user token of a realistic size (about 1.4 KB: an XSUAA
// token with a few scopes and an RS256 signature).
func benchToken(user string) string {
	return jwt(map[string]any{"iss": "https://provider.authentication.example/oauth/token", "zid": "zone-1", "user_id": user,
		"exp": time.Now().Add(time.Hour).Unix(), "scope": []string{"openid", "app.read", "app.write"}, "client_id": "sb-app!t1",
		"padding": strings.Repeat("x", 600)}) + strings.Repeat("s", 342)
}

// BenchmarkCacheGetHit is a cache hit without and with a user token (the
// token is hashed, its entry found and the token compared with the
// entry's copy on every call).
func BenchmarkCacheGetHit(b *testing.B) {
	for _, tc := range []struct{ name, user string }{{"no-user", ""}, {"user", benchToken("alice")}} {
		f := &fakeFinder{answer: echoFinder(time.Now().Add(time.Hour))}
		c, err := NewCache(f, CacheConfig{})
		if err != nil {
			b.Fatal(err)
		}
		req := Request{Name: "d", Tenant: "acme", UserToken: tc.user}
		if _, err := c.Get(context.Background(), req); err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name+"/serial", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Get(context.Background(), req); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Get(context.Background(), req); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
		if n := f.calls.Load(); n != 1 {
			b.Fatalf("%d lookups, want 1", n)
		}
	}
}

// BenchmarkSameToken compares sameToken with crypto/subtle's byte loop on a
// realistic token.
func BenchmarkSameToken(b *testing.B) {
	x := benchToken("alice")
	y := strings.Clone(x)
	b.Run("words", func(b *testing.B) {
		for b.Loop() {
			if !sameToken(x, y) {
				b.Fatal("differ")
			}
		}
	})
	b.Run("subtle", func(b *testing.B) {
		xb, yb := []byte(x), []byte(y)
		for b.Loop() {
			if subtle.ConstantTimeCompare(xb, yb) != 1 {
				b.Fatal("differ")
			}
		}
	})
}
