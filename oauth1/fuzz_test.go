package oauth1

import (
	"errors"
	"net/url"
	"sort"
	"testing"
	"time"
)

func FuzzParseAuthorization(f *testing.F) {
	for _, s := range []string{
		`OAuth oauth_consumer_key="k", oauth_nonce="n", oauth_signature="a%2Bb%3D"`,
		`OAuth realm="Example", oauth_nonce="7d8f3e4a"`,
		"oauth\toauth_x=\"\"",
		`OAuth oauth_nonce="a", oauth_nonce="b"`,
		`OAuth oauth_nonce="a\"`,
		`OAuth oauth_nonce="%zz"`,
		`OAuth ,`,
		`Bearer x`,
		``,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		p, err := ParseAuthorization(h)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNoCredentials) {
				t.Fatalf("unexpected error class: %v", err)
			}
			if p != nil {
				t.Fatal("params returned with an error")
			}
			return
		}
		// What parses formats back to something that parses to the same.
		names := make([]string, 0, len(p))
		for k := range p {
			names = append(names, k)
		}
		sort.Strings(names)
		ps := make([]param, 0, len(p))
		for _, k := range names {
			ps = append(ps, param{k, p[k]})
		}
		again, err := ParseAuthorization(string(appendAuthorization(nil, ps)))
		if err != nil {
			t.Fatalf("formatted header does not parse: %v", err)
		}
		if len(again) != len(p) {
			t.Fatalf("round trip changed the parameter count")
		}
		for k, v := range p {
			if again[k] != v {
				t.Fatalf("round trip changed %q", k)
			}
		}
	})
}

// FuzzVerify feeds arbitrary requests to the verifier (it must refuse them
// without panicking) and checks that whatever the signer can sign, the
// verifier accepts once and refuses as a replay.
func FuzzVerify(f *testing.F) {
	f.Add("POST", "https://api.example.com/v1/x?a=1&b=%20", "application/json", []byte(`{"a":1}`), `OAuth oauth_consumer_key="k"`)
	f.Add("POST", "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b", "application/x-www-form-urlencoded", []byte("c2&a3=2+q"), rfcAuthorization)
	f.Add("GET", "http://[::1]:80/", "", []byte(nil), `OAuth oauth_consumer_key="k", oauth_signature_method="HMAC-SHA1", oauth_signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA=", oauth_timestamp="1", oauth_nonce="n"`)
	f.Add("put", "HTTPS://A.EXAMPLE:443/%7e?x", "multipart/form-data", []byte("--x--"), `OAuth realm=""`)
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	signer, err := NewSigner("k", "secret", WithClock(clock), WithNonce(func() string { return "fixed" }))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, method, rawURL, ctype string, body []byte, auth string) {
		v, err := NewVerifier(StaticSecret("k", "secret"), WithClock(clock))
		if err != nil {
			t.Fatal(err)
		}
		u, perr := url.Parse(rawURL)
		if perr != nil {
			u = nil
		}
		if _, err := v.Verify(method, u, auth, ctype, body); err == nil {
			t.Fatalf("an unsigned request was accepted")
		}
		if u == nil || method == "" {
			return
		}
		h, err := signer.Authorization(method, u, ctype, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unexpected signer error: %v", err)
			}
			return
		}
		if _, err := v.Verify(method, u, h, ctype, body); err != nil {
			t.Fatalf("signed request refused: %v", err)
		}
		if _, err := v.Verify(method, u, h, ctype, body); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay not detected: %v", err)
		}
	})
}
