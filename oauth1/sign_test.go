package oauth1

import (
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// signCases are requests whose signatures exercise every part of the base
// string: query and form parameters that sort before, between and after
// the protocol ones (oauth_* names included), duplicates, "+" and
// percent-escapes of any case, empty segments and values, ports, IPv6,
// upper-case schemes and hosts, paths with escapes and sub-delimiters.
var signCases = []struct{ method, url, ctype, body string }{
	{"GET", "https://controller.example.com/v1/applications/app1/info?tenant=t1&x=y", "", ""},
	{"GET", "http://example.com", "", ""},
	{"get", "HTTP://Example.COM:80/a%2fb/%7Ec?", "", ""},
	{"POST", "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b", formType, "c2&a3=2+q"},
	{"POST", "https://api.example.com:8443/x?a=1&a=0&a=%41&b=%20", "application/json", `{"a":1}`},
	{"PUT", "https://[::1]:443/p;x=1/[q]@!$'()*+,=:?&&k&=v&&", "application/x-www-form-urlencoded; charset=utf-8", "z=1&&a=%e2%82%ac+x&oauth_a=1"},
	{"DELETE", "https://h/?oauth_nonce=zzz&oauth_nonce=&oauth_version=0.9&oauth_version=2&oauth_body_hash=~&oauth_zz=1&oauth_=0&OAUTH_A=1", "", ""},
	{"PATCH", "https://h/?%7E=%7e&-=.&_=_&~=~&%2B=%2b&%00=%ff&%c3%a9=%C3%A9", "text/plain", "\x00\xffbody"},
	{"POST", "https://h/form", " Application/X-WWW-Form-URLEncoded ;q=1", "oauth_consumer_key=other&oauth_signature_method=PLAINTEXT&+=+"},
	{"POST", "https://h/notform", "application/x-www-form-urlencoded;", "a=1"},
	{"MKCOL", "https://h/", "multipart/form-data; boundary=x", "--x--"},
	{"gEt\u00e9", "https://h/", "", ""},
}

// TestSignerMatchesReference holds Authorization to the plain
// construction of RFC 5849 (referenceAuthorization), byte for byte, with
// and without a realm, with nonces that need encoding.
func TestSignerMatchesReference(t *testing.T) {
	g := NewWithT(t)
	now := time.Unix(1_800_000_000, 0)
	for _, realm := range []string{"", "Photos & Videos"} {
		for _, nonce := range []string{"fixed", "n+/= é%"} {
			for _, key := range []string{testKey, "key with spaces/&=+"} {
				opts := []Option{WithClock(func() time.Time { return now }), WithNonce(func() string { return nonce })}
				if realm != "" {
					opts = append(opts, WithRealm(realm))
				}
				s, err := NewSigner(key, testSecret, opts...)
				g.Expect(err).NotTo(HaveOccurred())
				for _, tc := range signCases {
					u, err := url.Parse(tc.url)
					g.Expect(err).NotTo(HaveOccurred(), tc.url)
					want, err := referenceAuthorization(key, testSecret, realm, nonce, now, tc.method, u, tc.ctype, []byte(tc.body))
					g.Expect(err).NotTo(HaveOccurred(), tc.url)
					got, err := s.Authorization(tc.method, u, tc.ctype, []byte(tc.body))
					g.Expect(err).NotTo(HaveOccurred(), tc.url)
					g.Expect(got).To(Equal(want), "%s %s realm %q nonce %q", tc.method, tc.url, realm, nonce)
					app, err := s.AppendAuthorization([]byte("Authorization: "), tc.method, u, tc.ctype, []byte(tc.body))
					g.Expect(err).NotTo(HaveOccurred())
					g.Expect(string(app)).To(Equal("Authorization: " + want))
				}
			}
		}
	}
}

// TestSignerLargeFormThenSmall: a form body too large for the pooled
// buffers to keep signs right, and so does the next small request.
func TestSignerLargeFormThenSmall(t *testing.T) {
	g := NewWithT(t)
	now := time.Unix(1_800_000_000, 0)
	s, err := NewSigner(testKey, testSecret, WithClock(func() time.Time { return now }), WithNonce(func() string { return "n" }))
	g.Expect(err).NotTo(HaveOccurred())
	u, _ := url.Parse("https://h/upload?z=1")
	big := []byte("a=" + strings.Repeat("%2B", 40<<10) + "&b=" + strings.Repeat("x", 40<<10))
	for _, body := range [][]byte{big, []byte("a=1"), big, nil} {
		want, err := referenceAuthorization(testKey, testSecret, "", "n", now, "POST", u, formType, body)
		g.Expect(err).NotTo(HaveOccurred())
		got, err := s.Authorization("POST", u, formType, body)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(got).To(Equal(want))
	}
}

// TestSignerRandomNonce: the default nonce is 128 fresh random bits
// (22 base64url characters, different every time), and the signature over
// it is the reference one.
func TestSignerRandomNonce(t *testing.T) {
	g := NewWithT(t)
	now := time.Unix(1_800_000_000, 0)
	s, err := NewSigner(testKey, testSecret, WithClock(func() time.Time { return now }))
	g.Expect(err).NotTo(HaveOccurred())
	u, _ := url.Parse("https://h/v1?x=1")
	seen := map[string]bool{}
	for range 200 {
		h, err := s.Authorization("GET", u, "", nil)
		g.Expect(err).NotTo(HaveOccurred())
		p, err := ParseAuthorization(h)
		g.Expect(err).NotTo(HaveOccurred())
		n := p["oauth_nonce"]
		raw, err := base64.RawURLEncoding.DecodeString(n)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(raw).To(HaveLen(16))
		g.Expect(seen).NotTo(HaveKey(n), "a nonce repeated")
		seen[n] = true
		want, err := referenceAuthorization(testKey, testSecret, "", n, now, "GET", u, "", nil)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(h).To(Equal(want))
	}
}

// TestSignerErrors: malformed input is refused with ErrMalformed, as
// before, and the error names no secret or parameter value.
func TestSignerErrors(t *testing.T) {
	g := NewWithT(t)
	s, err := NewSigner(testKey, testSecret)
	g.Expect(err).NotTo(HaveOccurred())
	for _, tc := range []struct{ url, ctype, body, says string }{
		{"https://h/?a=%zz-SECRETVALUE", "", "", "query"},
		{"https://h/?a=%4", "", "", "query"},
		{"https://h/", formType, "a=%g0-SECRETVALUE", "form body"},
		{"https://h/", formType, "%", "form body"},
		{"/relative", "", "", "absolute"},
	} {
		u, err := url.Parse(tc.url)
		g.Expect(err).NotTo(HaveOccurred())
		_, err = s.Authorization("GET", u, tc.ctype, []byte(tc.body))
		g.Expect(err).To(MatchError(ErrMalformed), tc.url)
		g.Expect(err.Error()).To(ContainSubstring(tc.says))
		g.Expect(err.Error()).NotTo(Or(ContainSubstring("SECRETVALUE"), ContainSubstring(testSecret)))
		b, err := s.AppendAuthorization([]byte("x"), "GET", u, tc.ctype, []byte(tc.body))
		g.Expect(err).To(HaveOccurred())
		g.Expect(string(b)).To(Equal("x"), "nothing appended on an error")
	}
	_, err = s.Authorization("GET", nil, "", nil)
	g.Expect(err).To(MatchError(ErrMalformed))
}

// TestSignGETAllocations: a bodyless signature appended to a buffer that
// has room allocates nothing.
func TestSignGETAllocations(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under -cover and -race")
	}
	s, err := NewSigner(testKey, testSecret)
	NewWithT(t).Expect(err).NotTo(HaveOccurred())
	u, _ := url.Parse("https://controller.example.com/v1/applications/app1/info?tenant=t1&x=y")
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := s.AppendAuthorization(buf[:0], "GET", u, "", nil); err != nil {
			t.Fatal(err)
		}
	})
	NewWithT(t).Expect(allocs).To(BeZero())
}

// FuzzSignMatchesReference: for any request the Signer signs, the
// Authorization value is the reference construction's, byte for byte;
// what it refuses, the reference refuses too.
func FuzzSignMatchesReference(f *testing.F) {
	for _, tc := range signCases {
		f.Add(tc.method, tc.url, tc.ctype, []byte(tc.body), "n", "")
	}
	f.Add("GET", "https://h/?a=%zz", "", []byte(nil), "", "r")
	now := time.Unix(1_800_000_000, 0)
	f.Fuzz(func(t *testing.T, method, rawURL, ctype string, body []byte, nonce, realm string) {
		u, err := url.Parse(rawURL)
		if err != nil {
			return
		}
		opts := []Option{WithClock(func() time.Time { return now }), WithNonce(func() string { return nonce })}
		if realm != "" {
			opts = append(opts, WithRealm(realm))
		}
		s, err := NewSigner(testKey, testSecret, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if isForm(ctype) != referenceIsForm(ctype) {
			t.Fatalf("isForm(%q) = %v, mime.ParseMediaType says otherwise", ctype, isForm(ctype))
		}
		want, werr := referenceAuthorization(testKey, testSecret, realm, nonce, now, method, u, ctype, body)
		got, gerr := s.Authorization(method, u, ctype, body)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("reference error %v, signer error %v", werr, gerr)
		}
		if gerr != nil {
			if !errors.Is(gerr, ErrMalformed) {
				t.Fatalf("unexpected signer error: %v", gerr)
			}
			return
		}
		if got != want {
			t.Fatalf("signer and reference differ:\n%s\n%s", got, want)
		}
		if !strings.HasPrefix(got, "OAuth ") {
			t.Fatalf("not an OAuth header: %s", got)
		}
	})
}
