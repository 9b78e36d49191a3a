package tokenclient

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FuzzParseToken feeds arbitrary bodies to the token response parser: it
// must never panic, and never echo a body it rejects.
func FuzzParseToken(f *testing.F) {
	for _, s := range []string{
		`{"access_token":"a","token_type":"bearer","expires_in":3600}`,
		`{"access_token":"a","expires_in":"60"}`,
		`{"access_token":"` + fakeJWT(`{"exp":1795000000}`) + `"}`,
		`{"access_token":"` + fakeJWT(`{"exp":4102444800}`) + `","expires_in":60}`,
		`{"access_token":""}`, `[]`, `null`, `{"expires_in":-1,"access_token":"x"}`, `{"expires_in":1e400,"access_token":"x"}`,
	} {
		f.Add([]byte(s))
	}
	c := &Client{o: defaultOptions()}
	f.Fuzz(func(t *testing.T, body []byte) {
		tok, err := c.parseToken("https://auth.example/oauth/token", body)
		if err != nil {
			if len(body) > 12 && strings.Contains(err.Error(), string(body)) {
				t.Fatalf("error echoes the body: %v", err)
			}
			return
		}
		if tok.AccessToken == "" || !tok.Expiry.After(tok.IssuedAt) {
			t.Fatalf("accepted a bad token: %+v", tok)
		}
	})
}

// FuzzEndpoint builds endpoints for arbitrary tenants and zones: no panic,
// and a host that keeps the base's domain.
func FuzzEndpoint(f *testing.F) {
	f.Add("sub1", "", "https://p.authentication.cert.example.com:443", "authentication.example.com", true)
	f.Add("", "zone-1", "https://p.authentication.example.com", "", false)
	f.Add("a..b", "z\r\n", "https://x", "https://y:1", false)
	f.Fuzz(func(t *testing.T, tenant, zone, base, uaa string, x509 bool) {
		u, err := parseBase(base, XSUAA)
		if err != nil {
			return
		}
		ep, err := buildEndpoint(u, uaa, XSUAA, x509, tenant, zone)
		if err != nil {
			return
		}
		if strings.ContainsAny(ep.zoneID, "\r\n") {
			t.Fatalf("header injection through zone %q", zone)
		}
		if tenant != "" && !strings.HasPrefix(ep.url, u.Scheme+"://"+strings.ToLower(tenant)+".") {
			t.Fatalf("tenant %q gave %q", tenant, ep.url)
		}
	})
}

// FuzzRetryAfter: any header value gives a wait in [0, 1h].
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"1", "120", "-3", "Wed, 21 Oct 2015 07:28:00 GMT", "Fri, 02 Jan 2026 00:00:00 GMT", "x", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, now); d < 0 || d > time.Hour {
			t.Fatalf("retryAfter(%q) = %v", v, d)
		}
	})
}

// keyRT is a token service in a RoundTripper for FuzzTokenKeys: every
// fetch issues a new token, recorded with the key the caller asked for
// (cur, set before each Token call: a fetch runs within the call).
type keyRT struct {
	mu     sync.Mutex
	cur    string
	n      int
	issued map[string]string // access token -> the key it was fetched for
}

func (rt *keyRT) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		_, _ = io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
	}
	rt.mu.Lock()
	rt.n++
	tok := "tok-" + strconv.Itoa(rt.n)
	rt.issued[tok] = rt.cur
	rt.mu.Unlock()
	body := `{"access_token":"` + tok + `","token_type":"bearer","expires_in":3600}`
	return &http.Response{
		StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: req,
	}, nil
}

func (rt *keyRT) keyOf(tok string) string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return rt.issued[tok]
}

func (rt *keyRT) setCur(k string) {
	rt.mu.Lock()
	rt.cur = k
	rt.mu.Unlock()
}

// fuzzStrings are the tenants, zones, users, scopes and fingerprints
// FuzzTokenKeys builds requests from: lengths around quickFind's inline
// bounds (0, 1, 7, 8, 9, 12, 16, 17) and strings that differ only in
// their first or last byte, or only in case.
var fuzzStrings = [16]string{
	"", "a", "abcdefg", "abcdefgh", "abcdefgi", "bbcdefgh", "abcdefghi", "abcdefghijkl",
	"abcdefgh-jklmnop", "abcdefgh-jklmnoq", "abcdefgh-jklmnopq", "ABCDEFGH",
	"abcdefghabcdefgh", "abcdefgh12345678", "zz-zone-1", "subscriber-1",
}

// refKey is the reference cache key of a request: what tells two tokens
// apart, written out plainly.
func refKey(r *Request, fp string) string {
	sc := slices.Clone(r.Scopes)
	slices.Sort(sc)
	sc = slices.Compact(sc)
	return strings.Join([]string{string(r.grant()), r.Tenant, r.ZoneID, r.Username, fp, strings.Join(sc, "\x00")}, "\x01") +
		"\x01" + strconv.Itoa(len(sc))
}

// FuzzTokenKeys drives Client.Token with requests built from the input
// (each op: tenant, zone or both, an explicit client_credentials grant or
// none, a user, a fingerprint, up to five scopes in any order with
// repeats; the very same strings again or fresh copies) and checks every
// answer against a reference map of keys: a token is only ever returned
// for the key it was fetched for (no token of another tenant, zone, user,
// scope set or fingerprint), a key gets the same token until its entry is
// removed and never the removed entry's token after, and a request with a
// tenant and a zone is refused. An op may first plant the entry of an
// earlier op (maybe removed) in the request's front slot and a copy of it
// with the request's hash in its near slot, as if their addresses or hashes
// collided, and may remove the key's entry after. Before each op,
// quickFind is asked for the request with every earlier entry in its near
// slot, with the request's hash: it may take only an entry of the same key
// that was not removed.
func FuzzTokenKeys(f *testing.F) {
	// Tenants abcdefghabcdefgh and abcdefgh: the same first and last eight
	// bytes, told apart by their lengths only.
	f.Add([]byte{0x01, 0x0c, 0x00, 0x01, 0x03, 0x00})
	f.Add([]byte{0x01, 0x0f, 0x02, 0x03, 0x04, 0x09, 0x0f, 0x02, 0x02, 0x04, 0x03})
	f.Add([]byte{0x02, 0xf3, 0x01, 0x05, 0x0a, 0x03, 0x01, 0x08, 0x02, 0x28, 0x03, 0x02, 0x03, 0x09})
	f.Add([]byte{0x09, 0x03, 0x01, 0x03, 0x29, 0x04, 0x09, 0x04, 0x49, 0x03, 0x00, 0x8a, 0x3d, 0x01, 0x0c})
	f.Add([]byte{0x03, 0x34, 0x00, 0x0d, 0x3f, 0x00, 0x19, 0x23, 0x02, 0x07, 0x07})
	f.Fuzz(func(t *testing.T, in []byte) {
		rt := &keyRT{issued: map[string]string{}}
		var fp atomic.Pointer[string]
		none := ""
		fp.Store(&none)
		cfg := Config{
			ClientID: "sb-client!t1", ClientSecret: "fuzz-client-secret", TokenURL: "https://provider.authentication.example.com",
			UAADomain: "authentication.example.com", CertificateFingerprint: func() string { return *fp.Load() },
		}
		c, err := New(cfg, WithRoundTripper(rt), WithClock(newFakeClock()))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ref := map[string]*Token{}   // key -> its current token
		removed := map[*Token]bool{} // tokens of removed entries
		var entries []*entry         // of the ops so far, and their keys
		var keys []string
		for ops := 0; len(in) >= 3 && ops < 48; ops++ {
			b0, b1, b2 := in[0], in[1], in[2]
			in = in[3:]
			var r Request
			switch b0 & 3 {
			case 1:
				r.Tenant = fuzzStrings[b1&15]
			case 2:
				r.ZoneID = fuzzStrings[b1&15]
			case 3:
				r.Tenant, r.ZoneID = fuzzStrings[b1&15], fuzzStrings[b1>>4]
			}
			extra := b0 >> 2 & 7 // mostly none: the shape quickFind serves
			if extra == 5 {
				r.Grant = GrantClientCredentials
			}
			if extra == 6 {
				r.Username = fuzzStrings[b1>>4]
			}
			for range int(b2 % 6) {
				if len(in) == 0 {
					break
				}
				r.Scopes = append(r.Scopes, fuzzStrings[in[0]&15])
				in = in[1:]
			}
			if b0&32 != 0 { // fresh copies: misses the front table
				r.Tenant, r.ZoneID, r.Username = strings.Clone(r.Tenant), strings.Clone(r.ZoneID), strings.Clone(r.Username)
				r.Scopes = cloneStrings(r.Scopes)
			}
			fpv := ""
			if extra == 7 {
				fpv = strings.Clone(fuzzStrings[b2>>4])
			}
			fp.Store(&fpv)
			k := refKey(&r, fpv)
			var forged *entry
			if b0&64 != 0 && len(entries) > 0 {
				// As if another key's entry shared this request's slots.
				var kk key
				kk.fp = fpv
				c.fill(&r, &kk)
				e := entries[int(b2>>3)%len(entries)]
				c.front[frontSlot(&r)].Store(e)
				// In the near slot, with this request's hash (as if the
				// keyed hashes of two keys were equal): only the inline
				// comparison of the key's strings tells them apart.
				forged = &entry{hash: kk.h, id: e.id, req: e.req, class: e.class}
				forged.st.Store(e.st.Load())
				forged.gone.Store(e.gone.Load())
				c.near[kk.h>>24%nearSize].Store(forged)
			}
			if r.Tenant == "" || r.ZoneID == "" {
				// Every earlier entry, with this request's hash, in its
				// near slot: quickFind finds it only for the same key.
				var kk key
				kk.fp = fpv
				c.fill(&r, &kk)
				slot := &c.near[kk.h>>24%nearSize]
				was := slot.Load()
				for i, e := range entries {
					forged := &entry{hash: kk.h, id: e.id}
					forged.gone.Store(e.gone.Load())
					slot.Store(forged)
					if got := c.quickFind(&r, fpv); got != nil && (keys[i] != k || e.gone.Load()) {
						t.Fatalf("op %d: quickFind took the entry of %q (removed: %v) for %q", ops, keys[i], e.gone.Load(), k)
					}
				}
				slot.Store(was)
			}
			rt.setCur(k)
			tok, err := c.Token(bg, r)
			if forged != nil {
				// The copy is no entry of the cache (remove does not know
				// it): it must not outlive this op.
				for i := range c.near {
					c.near[i].CompareAndSwap(forged, nil)
				}
				for i := range c.front {
					c.front[i].CompareAndSwap(forged, nil)
				}
			}
			if r.Tenant != "" && r.ZoneID != "" {
				if !errors.Is(err, ErrInvalidRequest) {
					t.Fatalf("op %d: a request with a tenant and a zone: %v, want ErrInvalidRequest", ops, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("op %d: %q: %v", ops, k, err)
			}
			if got := rt.keyOf(tok.AccessToken); got != k {
				t.Fatalf("op %d: asked for key %q, got the token fetched for %q", ops, k, got)
			}
			if removed[tok] {
				t.Fatalf("op %d: %q: served the token of a removed entry", ops, k)
			}
			if old, ok := ref[k]; ok && old != tok {
				t.Fatalf("op %d: %q: a new token while its entry was cached", ops, k)
			}
			ref[k] = tok
			e, err := c.lookup(&r, fpv)
			if err != nil {
				t.Fatal(err)
			}
			entries, keys = append(entries, e), append(keys, k)
			if b0&192 == 128 {
				c.remove(e)
				delete(ref, k)
				removed[tok] = true
			}
		}
	})
}
