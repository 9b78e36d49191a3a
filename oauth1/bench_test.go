package oauth1

import (
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSignGET is the signature of a bodyless GET as the proxy's fast
// path makes it: the header appended to a reused buffer. make bench
// reports it as the oauth1 route's signing cost per request.
func BenchmarkSignGET(b *testing.B) {
	s, _ := NewSigner(testKey, testSecret)
	u, _ := url.Parse("https://controller.example.com/v1/applications/app1/info?tenant=t1&x=y")
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = s.AppendAuthorization(buf[:0], "GET", u, "", nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSignGETString is the same signature returned as a string
// (Authorization, what Sign sets on an *http.Request).
func BenchmarkSignGETString(b *testing.B) {
	s, _ := NewSigner(testKey, testSecret)
	u, _ := url.Parse("https://controller.example.com/v1/applications/app1/info?tenant=t1&x=y")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Authorization("GET", u, "", nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignJSON1KiB(b *testing.B) {
	s, _ := NewSigner(testKey, testSecret)
	u, _ := url.Parse("https://controller.example.com/v1/events")
	body := []byte(strings.Repeat("x", 1024))
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := s.Authorization("POST", u, "application/json", body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyJSON1KiB(b *testing.B) {
	var n atomic.Int64
	now := time.Now()
	s, _ := NewSigner(testKey, testSecret, WithClock(func() time.Time { return now }),
		WithNonce(func() string { return strconv.FormatInt(n.Add(1), 10) }))
	v, _ := NewVerifier(StaticSecret(testKey, testSecret), WithClock(func() time.Time { return now }), WithReplayCacheSize(1<<30))
	u, _ := url.Parse("https://controller.example.com/v1/events")
	body := []byte(strings.Repeat("x", 1024))
	hs := make([]string, 0, 1024)
	for range 1024 {
		h, _ := s.Authorization("POST", u, "application/json", body)
		hs = append(hs, h)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i == len(hs) {
			b.StopTimer()
			v, _ = NewVerifier(StaticSecret(testKey, testSecret), WithClock(func() time.Time { return now }))
			i = 0
			b.StartTimer()
		}
		if _, err := v.Verify("POST", u, hs[i], "application/json", body); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
