package tokenclient

import (
	"strings"
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
