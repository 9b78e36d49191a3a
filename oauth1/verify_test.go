package oauth1

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/clock/fakeclock"
)

const (
	testKey    = "connector-42"
	testSecret = "PLANTED-oauth1-secret-7f3a" // must never show up in an error
)

func newClock(t time.Time) *fakeclock.Clock { return fakeclock.New(t) }

func counterNonce() func() string {
	var n atomic.Int64
	return func() string { return fmt.Sprintf("nonce-%d", n.Add(1)) }
}

func newPair(t *testing.T, clock *fakeclock.Clock, vopts ...Option) (*Signer, *Verifier) {
	t.Helper()
	s, err := NewSigner(testKey, testSecret, WithClock(clock.Now), WithNonce(counterNonce()))
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(StaticSecret(testKey, testSecret), append([]Option{WithClock(clock.Now)}, vopts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// signed is a request as it travels: the parts the verifier sees.
type signed struct {
	method, url, auth, ctype string
	body                     []byte
}

func sign(t *testing.T, s *Signer, method, rawURL, ctype, body string) signed {
	t.Helper()
	req, err := http.NewRequest(method, rawURL, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == "" {
		req.Body = http.NoBody
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if err := s.Sign(req); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(req.Body)
	if err != nil || string(got) != body {
		t.Fatalf("Sign did not leave a replayable body: %q %v", got, err)
	}
	return signed{method, rawURL, req.Header.Get("Authorization"), ctype, []byte(body)}
}

func (r signed) verify(v *Verifier) (Result, error) {
	u, err := url.Parse(r.url)
	if err != nil {
		return Result{}, err
	}
	return v.Verify(r.method, u, r.auth, r.ctype, r.body)
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range []struct{ name, method, url, ctype, body string }{
		{"GET with query", "GET", "https://api.example.com/v1/items?b=2&a=1&a=0&sp=a%20b&plus=a+b", "", ""},
		{"form body", "POST", "https://api.example.com/v1/form?q=x", "application/x-www-form-urlencoded; charset=utf-8", "c2&a3=2+q&name=J%C3%BCrgen"},
		{"JSON body", "POST", "https://api.example.com/v1/events", "application/json", `{"event":"order.created","n":1}`},
		{"empty POST", "POST", "http://127.0.0.1:8080/", "", ""},
		{"encoded path", "PUT", "http://Example.COM:80/a%2Fb/c%20d", "text/plain", "x"},
		{"IPv6 host", "DELETE", "https://[::1]:8443/x", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			clock := newClock(time.Unix(1_800_000_000, 0))
			s, v := newPair(t, clock)
			r := sign(t, s, tc.method, tc.url, tc.ctype, tc.body)
			res, err := r.verify(v)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(res.ConsumerKey).To(Equal(testKey))
			g.Expect(res.Timestamp).To(Equal(clock.Now()))
			p, err := ParseAuthorization(r.auth)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(p).To(HaveKeyWithValue("oauth_signature_method", "HMAC-SHA1"))
			g.Expect(p).To(HaveKeyWithValue("oauth_version", "1.0"))
			if isForm(tc.ctype) {
				g.Expect(p).NotTo(HaveKey("oauth_body_hash"))
			} else {
				g.Expect(p).To(HaveKeyWithValue("oauth_body_hash", bodyHash([]byte(tc.body))))
			}
		})
	}
}

// replaceParam rewrites one parameter of an Authorization header.
func replaceParam(t *testing.T, auth, name, value string) string {
	t.Helper()
	p, err := ParseAuthorization(auth)
	if err != nil {
		t.Fatal(err)
	}
	var out []param
	for _, k := range []string{"realm", "oauth_consumer_key", "oauth_nonce", "oauth_signature_method", "oauth_timestamp", "oauth_version", "oauth_body_hash", "oauth_signature", "oauth_token"} {
		v, ok := p[k]
		if k == name {
			v, ok = value, value != "\x00drop"
		}
		if ok {
			out = append(out, param{k, v})
		}
	}
	return string(appendAuthorization(nil, out))
}

func TestTampering(t *testing.T) {
	clock := newClock(time.Unix(1_800_000_000, 0))
	s, _ := newPair(t, clock)
	jsonReq := sign(t, s, "POST", "https://api.example.com:8443/v1/events?tenant=t1", "application/json", `{"amount":10}`)
	formReq := sign(t, s, "POST", "https://api.example.com/v1/form", "application/x-www-form-urlencoded", "amount=10&to=alice")

	for _, tc := range []struct {
		name   string
		mutate func(r signed) signed
		want   error
	}{
		{"method", func(r signed) signed { r.method = "PUT"; return r }, ErrBadSignature},
		{"scheme", func(r signed) signed { r.url = strings.Replace(r.url, "https:", "http:", 1); return r }, ErrBadSignature},
		{"host", func(r signed) signed { r.url = strings.Replace(r.url, "api.example", "evil.example", 1); return r }, ErrBadSignature},
		{"port", func(r signed) signed { r.url = strings.Replace(r.url, ":8443", ":9443", 1); return r }, ErrBadSignature},
		{"path", func(r signed) signed { r.url = strings.Replace(r.url, "/v1/", "/v2/", 1); return r }, ErrBadSignature},
		{"query value", func(r signed) signed { r.url = strings.Replace(r.url, "tenant=t1", "tenant=t2", 1); return r }, ErrBadSignature},
		{"query added", func(r signed) signed { r.url += "&admin=1"; return r }, ErrBadSignature},
		{"body", func(r signed) signed { r.body = []byte(`{"amount":1000}`); return r }, ErrBodyHash},
		{"body hash and body", func(r signed) signed {
			r.body = []byte(`{"amount":1000}`)
			r.auth = replaceParam(t, r.auth, "oauth_body_hash", bodyHash(r.body))
			return r
		}, ErrBadSignature},
		{"body hash dropped", func(r signed) signed { r.auth = replaceParam(t, r.auth, "oauth_body_hash", "\x00drop"); return r }, ErrBadSignature},
		{"content type to form", func(r signed) signed { r.ctype = "application/x-www-form-urlencoded"; return r }, ErrBadSignature},
		{"consumer key", func(r signed) signed {
			r.auth = replaceParam(t, r.auth, "oauth_consumer_key", "someone-else")
			return r
		}, ErrUnknownKey},
		{"timestamp", func(r signed) signed { r.auth = replaceParam(t, r.auth, "oauth_timestamp", "1800000001"); return r }, ErrBadSignature},
		{"nonce", func(r signed) signed { r.auth = replaceParam(t, r.auth, "oauth_nonce", "other"); return r }, ErrBadSignature},
		{"signature", func(r signed) signed {
			r.auth = replaceParam(t, r.auth, "oauth_signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
			return r
		}, ErrBadSignature},
		{"signature not base64", func(r signed) signed { r.auth = replaceParam(t, r.auth, "oauth_signature", "%%%"); return r }, ErrBadSignature},
		{"signature method", func(r signed) signed {
			r.auth = replaceParam(t, r.auth, "oauth_signature_method", "PLAINTEXT")
			return r
		}, ErrUnsupported},
		{"version", func(r signed) signed { r.auth = replaceParam(t, r.auth, "oauth_version", "2.0"); return r }, ErrUnsupported},
		{"token added", func(r signed) signed { r.auth = replaceParam(t, r.auth, "oauth_token", "tok"); return r }, ErrUnsupported},
		{"nonce missing", func(r signed) signed { r.auth = replaceParam(t, r.auth, "oauth_nonce", "\x00drop"); return r }, ErrMalformed},
		{"timestamp not a number", func(r signed) signed { r.auth = replaceParam(t, r.auth, "oauth_timestamp", "12a"); return r }, ErrMalformed},
		{"realm added (not signed)", func(r signed) signed { r.auth = replaceParam(t, r.auth, "realm", "x"); return r }, nil},
	} {
		t.Run("json/"+tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, v := newPair(t, clock)
			_, err := tc.mutate(jsonReq).verify(v)
			if tc.want == nil {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(tc.want))
			g.Expect(err.Error()).NotTo(ContainSubstring(testSecret))
		})
	}
	for _, tc := range []struct {
		name   string
		mutate func(r signed) signed
		want   error
	}{
		{"form param value", func(r signed) signed { r.body = []byte("amount=1000&to=alice"); return r }, ErrBadSignature},
		{"form param added", func(r signed) signed { r.body = []byte("amount=10&to=alice&to=mallory"); return r }, ErrBadSignature},
		{"form reordered (same parameters)", func(r signed) signed { r.body = []byte("to=alice&amount=10"); return r }, nil},
		{"form as JSON", func(r signed) signed { r.ctype = "application/json"; return r }, ErrBadSignature},
		{"body hash on a form", func(r signed) signed {
			r.auth = replaceParam(t, r.auth, "oauth_body_hash", bodyHash(r.body))
			return r
		}, ErrBadSignature},
	} {
		t.Run("form/"+tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, v := newPair(t, clock)
			_, err := tc.mutate(formReq).verify(v)
			if tc.want == nil {
				g.Expect(err).NotTo(HaveOccurred())
				return
			}
			g.Expect(err).To(MatchError(tc.want))
		})
	}
}

// A client that signs a body hash over a form body is refused even with a
// correct signature: form bodies are covered by their parameters only.
func TestBodyHashOnFormRefused(t *testing.T) {
	g := NewWithT(t)
	clock := newClock(time.Unix(1_800_000_000, 0))
	_, v := newPair(t, clock)
	u, _ := url.Parse("https://api.example.com/f")
	body := []byte("a=1")
	ps := []param{{"a", "1"}, {"oauth_consumer_key", testKey}, {"oauth_nonce", "n"}, {"oauth_signature_method", "HMAC-SHA1"},
		{"oauth_timestamp", "1800000000"}, {"oauth_body_hash", bodyHash(body)}}
	base, err := appendBaseString(nil, "POST", u, ps)
	g.Expect(err).NotTo(HaveOccurred())
	sig := encodeSig(newMACPool(signingKey(testSecret, "")).sum(nil, base))
	auth := string(appendAuthorization(nil, append(ps[1:], param{"oauth_signature", sig})))
	_, err = v.Verify("POST", u, auth, formType, body)
	g.Expect(err).To(MatchError(ErrBodyHash))
}

// A request without oauth_body_hash and without a body (as many clients
// send GETs) is accepted; with a body it is not.
func TestNoBodyHash(t *testing.T) {
	g := NewWithT(t)
	clock := newClock(time.Unix(1_800_000_000, 0))
	_, v := newPair(t, clock)
	u, _ := url.Parse("https://api.example.com/g?x=1")
	mk := func(nonce string) string {
		ps := []param{{"x", "1"}, {"oauth_consumer_key", testKey}, {"oauth_nonce", nonce}, {"oauth_signature_method", "HMAC-SHA1"}, {"oauth_timestamp", "1800000000"}}
		base, err := appendBaseString(nil, "GET", u, ps)
		g.Expect(err).NotTo(HaveOccurred())
		sig := encodeSig(newMACPool(signingKey(testSecret, "")).sum(nil, base))
		return string(appendAuthorization(nil, append(ps[1:], param{"oauth_signature", sig})))
	}
	_, err := v.Verify("GET", u, mk("a"), "", nil)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = v.Verify("GET", u, mk("b"), "application/json", []byte("{}"))
	g.Expect(err).To(MatchError(ErrBodyHash))
}

func TestWrongSecretAndUnknownKey(t *testing.T) {
	g := NewWithT(t)
	clock := newClock(time.Unix(1_800_000_000, 0))
	other, err := NewSigner(testKey, "not-the-secret", WithClock(clock.Now))
	g.Expect(err).NotTo(HaveOccurred())
	_, v := newPair(t, clock)
	_, err = sign(t, other, "GET", "https://a.example/x", "", "").verify(v)
	g.Expect(err).To(MatchError(ErrBadSignature))

	stranger, _ := NewSigner("stranger", testSecret, WithClock(clock.Now))
	_, err = sign(t, stranger, "GET", "https://a.example/x", "", "").verify(v)
	g.Expect(err).To(MatchError(ErrUnknownKey))
}

func TestTimestampWindow(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	for _, tc := range []struct {
		name string
		skew time.Duration // verifier clock minus signer clock
		want error
	}{
		{"same second", 0, nil},
		{"just inside (past)", 5 * time.Minute, nil},
		{"just inside (future)", -5 * time.Minute, nil},
		{"too old", 5*time.Minute + time.Second, ErrStale},
		{"from the future", -5*time.Minute - time.Second, ErrStale},
		{"a day old", 24 * time.Hour, ErrStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			sc, vc := newClock(start), newClock(start.Add(tc.skew))
			s, _ := newPair(t, sc)
			_, v := newPair(t, vc, WithWindow(5*time.Minute))
			_, err := sign(t, s, "GET", "https://a.example/x", "", "").verify(v)
			if tc.want == nil {
				g.Expect(err).NotTo(HaveOccurred())
			} else {
				g.Expect(err).To(MatchError(tc.want))
			}
		})
	}
}

func TestReplay(t *testing.T) {
	g := NewWithT(t)
	clock := newClock(time.Unix(1_800_000_000, 0))
	s, v := newPair(t, clock, WithWindow(time.Minute))
	r := sign(t, s, "POST", "https://a.example/x", "application/json", `{}`)
	_, err := r.verify(v)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = r.verify(v)
	g.Expect(err).To(MatchError(ErrReplay))
	clock.Advance(30 * time.Second)
	_, err = r.verify(v)
	g.Expect(err).To(MatchError(ErrReplay))
	// Once the timestamp has left the window the nonce is forgotten, and the
	// replay is refused as stale instead.
	clock.Advance(31 * time.Second)
	_, err = r.verify(v)
	g.Expect(err).To(MatchError(ErrStale))

	// A failed request does not burn its nonce.
	r2 := sign(t, s, "POST", "https://a.example/x", "application/json", `{}`)
	bad := r2
	bad.body = []byte(`{"x":1}`)
	_, err = bad.verify(v)
	g.Expect(err).To(MatchError(ErrBodyHash))
	_, err = r2.verify(v)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(v.cache.len()).To(Equal(1)) // the first nonce was evicted
}

func TestReplayCacheBounded(t *testing.T) {
	g := NewWithT(t)
	clock := newClock(time.Unix(1_800_000_000, 0))
	s, v := newPair(t, clock, WithWindow(time.Minute), WithReplayCacheSize(2))
	for i := 0; i < 2; i++ {
		_, err := sign(t, s, "GET", "https://a.example/x", "", "").verify(v)
		g.Expect(err).NotTo(HaveOccurred())
	}
	_, err := sign(t, s, "GET", "https://a.example/x", "", "").verify(v)
	g.Expect(err).To(MatchError(ErrReplayCacheFull))
	clock.Advance(61 * time.Second)
	_, err = sign(t, s, "GET", "https://a.example/x", "", "").verify(v)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(v.cache.len()).To(Equal(1))
}

func TestNonceCacheEvictsInExpiryOrder(t *testing.T) {
	g := NewWithT(t)
	c := newNonceCache(10)
	t0 := time.Unix(1000, 0)
	g.Expect(c.add("k", "late", t0.Add(3*time.Second), t0)).To(Succeed())
	g.Expect(c.add("k", "early", t0.Add(1*time.Second), t0)).To(Succeed())
	g.Expect(c.add("k2", "early", t0.Add(2*time.Second), t0)).To(Succeed()) // other key, same nonce
	g.Expect(c.add("k", "early", t0.Add(5*time.Second), t0)).To(MatchError(ErrReplay))
	g.Expect(c.add("k", "x", t0.Add(5*time.Second), t0.Add(2*time.Second))).To(Succeed())
	g.Expect(c.len()).To(Equal(2)) // "late" and "x"; both "early" evicted
	g.Expect(c.add("k", "early", t0.Add(5*time.Second), t0.Add(2*time.Second))).To(Succeed())
}

func TestBodyTooLargeAndReplayedBody(t *testing.T) {
	g := NewWithT(t)
	clock := newClock(time.Unix(1_800_000_000, 0))
	s, err := NewSigner(testKey, testSecret, WithClock(clock.Now), WithMaxBody(8))
	g.Expect(err).NotTo(HaveOccurred())
	req, _ := http.NewRequest("POST", "https://a.example/x", strings.NewReader("123456789"))
	g.Expect(s.Sign(req)).To(MatchError(ErrBodyTooLarge))

	_, v := newPair(t, clock, WithMaxBody(8))
	req, _ = http.NewRequest("POST", "https://a.example/x", strings.NewReader("123456789"))
	req.Header.Set("Authorization", `OAuth oauth_consumer_key="x"`)
	_, err = v.VerifyRequest(req, req.URL)
	g.Expect(err).To(MatchError(ErrBodyTooLarge))
}

// Through a real socket: the client signs with Sign, the server verifies
// with VerifyRequest over the URL it was reached at, and the handler after it
// still reads the whole body.
func TestOverHTTP(t *testing.T) {
	g := NewWithT(t)
	clock := newClock(time.Now())
	s, v := newPair(t, clock)
	type outcome struct {
		err  error
		body string
	}
	got := make(chan outcome, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := v.VerifyRequest(r, nil)
		b, _ := io.ReadAll(r.Body)
		got <- outcome{err, string(b)}
	}))
	defer srv.Close()

	for _, tc := range []struct{ path, ctype, body string }{
		{"/v1/events?tenant=a%20b&x=%2B", "application/json", `{"n":1}`},
		{"/v1/form/a%2Fb", "application/x-www-form-urlencoded", "a=1&b=x+y"},
		{"/", "", ""},
	} {
		req, err := http.NewRequest("POST", srv.URL+tc.path, bytes.NewBufferString(tc.body))
		g.Expect(err).NotTo(HaveOccurred())
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		g.Expect(s.Sign(req)).To(Succeed())
		resp, err := http.DefaultClient.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		o := <-got
		g.Expect(o.err).NotTo(HaveOccurred(), tc.path)
		g.Expect(o.body).To(Equal(tc.body))
	}
}

func TestConstructorsRefuseEmpty(t *testing.T) {
	g := NewWithT(t)
	_, err := NewSigner("", "s")
	g.Expect(err).To(MatchError(ErrMalformed))
	_, err = NewSigner("k", "")
	g.Expect(err).To(MatchError(ErrMalformed))
	_, err = NewVerifier(nil)
	g.Expect(err).To(MatchError(ErrMalformed))
}

// Every refusal names what is wrong but never the secret, the signature or
// the nonce.
func TestErrorsCarryNoSecrets(t *testing.T) {
	g := NewWithT(t)
	clock := newClock(time.Unix(1_800_000_000, 0))
	s, err := NewSigner(testKey, testSecret, WithClock(clock.Now), WithNonce(func() string { return "PLANTED-nonce-913" }))
	g.Expect(err).NotTo(HaveOccurred())
	_, v := newPair(t, clock)
	r := sign(t, s, "POST", "https://a.example/x?q="+testSecret, "application/json", testSecret)
	p, _ := ParseAuthorization(r.auth)
	sig := p["oauth_signature"]
	var errs []error
	for _, mut := range []func(signed) signed{
		func(r signed) signed { return r },
		func(r signed) signed { return r },
		func(r signed) signed { r.body = []byte("x" + testSecret); return r },
		func(r signed) signed { r.method = "GET"; return r },
		func(r signed) signed { r.auth = strings.Replace(r.auth, `", `, `",, `, 1); return r },
		func(r signed) signed {
			r.auth = strings.Replace(r.auth, `oauth_nonce="`, `oauth_nonce="%zz`, 1)
			return r
		},
		func(r signed) signed { r.auth += `, oauth_nonce="` + testSecret + `"`; return r },
		func(r signed) signed { r.auth += `, ` + testSecret + `="x"`; return r },
	} {
		_, err := mut(r).verify(v)
		errs = append(errs, err)
	}
	g.Expect(errs[0]).NotTo(HaveOccurred())
	for _, err := range errs[1:] {
		g.Expect(err).To(HaveOccurred())
		for _, planted := range []string{testSecret, sig, PercentEncode(sig), "PLANTED-nonce-913"} {
			g.Expect(err.Error()).NotTo(ContainSubstring(planted))
		}
	}
	g.Expect(errors.Is(errs[1], ErrReplay)).To(BeTrue())
}

func TestSignWithBody(t *testing.T) {
	g := NewWithT(t)
	clock := newClock(time.Unix(1_800_000_000, 0))
	s, v := newPair(t, clock)
	body := []byte(`{"x":1}`)
	req, _ := http.NewRequest("POST", "https://a.example/x?y=2", nil) // body not attached
	req.Header.Set("Content-Type", "application/json")
	g.Expect(s.SignWithBody(req, body)).To(Succeed())
	_, err := v.Verify("POST", req.URL, req.Header.Get("Authorization"), "application/json", body)
	g.Expect(err).NotTo(HaveOccurred())
	_, v2 := newPair(t, clock) // a verifier that has not seen the nonce
	_, err = v2.Verify("POST", req.URL, req.Header.Get("Authorization"), "application/json", nil)
	g.Expect(err).To(MatchError(ErrBodyHash)) // the same header with another body
}

// Begin decides everything it can without the body; for a body that is not
// form-encoded that includes the signature, and Abandon gives the nonce
// back.
func TestBeginBeforeBody(t *testing.T) {
	g := NewWithT(t)
	clock := newClock(time.Unix(1_800_000_000, 0))
	s, v := newPair(t, clock, WithWindow(time.Minute))
	parse := func(r signed) *url.URL { u, _ := url.Parse(r.url); return u }

	js := sign(t, s, "POST", "https://a.example/x", "application/json", `{"a":1}`)
	p, err := v.Begin(js.method, parse(js), js.auth, js.ctype)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.SignatureChecked()).To(BeTrue())
	g.Expect(p.BodyAllowed()).To(BeTrue())
	_, err = v.Begin(js.method, parse(js), js.auth, js.ctype)
	g.Expect(err).To(MatchError(ErrReplay), "the nonce is taken while the body is read")
	p.Abandon()
	p, err = v.Begin(js.method, parse(js), js.auth, js.ctype)
	g.Expect(err).NotTo(HaveOccurred(), "an abandoned request gives its nonce back")
	_, err = p.Finish([]byte(`{"a":2}`))
	g.Expect(err).To(MatchError(ErrBodyHash))
	p, err = v.Begin(js.method, parse(js), js.auth, js.ctype)
	g.Expect(err).NotTo(HaveOccurred(), "a body that failed its hash gives the nonce back")
	_, err = p.Finish(js.body)
	g.Expect(err).NotTo(HaveOccurred())

	forged := js
	forged.auth = replaceParam(t, js.auth, "oauth_nonce", "other")
	_, err = v.Begin(forged.method, parse(forged), forged.auth, forged.ctype)
	g.Expect(err).To(MatchError(ErrBadSignature), "checked before any body")

	form := sign(t, s, "POST", "https://a.example/x", "application/x-www-form-urlencoded", "a=1")
	p, err = v.Begin(form.method, parse(form), form.auth, form.ctype)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(p.SignatureChecked()).To(BeFalse(), "the form body is part of the signature")
	_, err = p.Finish([]byte("a=2"))
	g.Expect(err).To(MatchError(ErrBadSignature))

	stale := sign(t, s, "GET", "https://a.example/x", "", "")
	clock.Advance(2 * time.Minute)
	_, err = v.Begin(stale.method, parse(stale), stale.auth, "")
	g.Expect(err).To(MatchError(ErrStale))
	_, err = v.Begin("GET", parse(stale), `OAuth oauth_consumer_key="k", oauth_signature_method="HMAC-SHA1", oauth_signature="x", oauth_timestamp="1800000120", oauth_nonce="a%0Ab"`, "")
	g.Expect(err).To(MatchError(ErrMalformed), "a control character in the nonce")
}
