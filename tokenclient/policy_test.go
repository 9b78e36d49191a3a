package tokenclient

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func fakeJWT(claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(claims)) + ".c2ln"
}

func TestExpiry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		expiresIn time.Duration
		jwtExp    time.Time
		want      time.Time
	}{
		{"expires_in only", time.Hour, time.Time{}, t0.Add(time.Hour)},
		{"jwt exp earlier wins", time.Hour, t0.Add(10 * time.Minute), t0.Add(10 * time.Minute)},
		{"jwt exp later is ignored", time.Hour, t0.Add(2 * time.Hour), t0.Add(time.Hour)},
		{"jwt exp without expires_in", 0, t0.Add(20 * time.Minute), t0.Add(20 * time.Minute)},
		{"neither: default", 0, time.Time{}, t0.Add(5 * time.Minute)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			NewWithT(t).Expect(expiry(t0, tc.expiresIn, tc.jwtExp, 5*time.Minute)).To(Equal(tc.want))
		})
	}
}

func TestSchedule(t *testing.T) {
	p := policy{refreshFraction: 2.0 / 3, jitter: 0.1, skew: 30 * time.Second}
	for _, tc := range []struct {
		name                   string
		life                   time.Duration
		p                      policy
		u                      float64
		wantRefresh, wantUntil time.Duration // after issue
	}{
		{"one hour, no jitter draw", time.Hour, p, 0, 39*time.Minute + 40*time.Second, time.Hour - 30*time.Second},
		{"one hour, full jitter draw", time.Hour, p, 1, 35*time.Minute + 42*time.Second, time.Hour - 30*time.Second},
		// A short life keeps a third of its served time for retrying a failed
		// refresh while the cached token is still served.
		{"skew capped at a third of a short life", 60 * time.Second, p, 0, 26*time.Second + 666666666*time.Nanosecond, 40 * time.Second},
		{"12s life: refresh well before the token stops being served", 12 * time.Second, p, 0, 5*time.Second + 333333333*time.Nanosecond, 8 * time.Second},
		{"refresh never after validUntil", 60 * time.Second, policy{refreshFraction: 1, skew: 30 * time.Second}, 0, 40 * time.Second, 40 * time.Second},
		{"no skew", 10 * time.Minute, policy{refreshFraction: 0.5}, 0, 5 * time.Minute, 10 * time.Minute},
		{"expired at issue", 0, p, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			r, v := schedule(t0, t0.Add(tc.life), tc.p, tc.u)
			g.Expect(r.Sub(t0)).To(Equal(tc.wantRefresh), "refreshAt")
			g.Expect(v.Sub(t0)).To(Equal(tc.wantUntil), "validUntil")
		})
	}
}

func TestValidAndDue(t *testing.T) {
	refreshAt, validUntil := schedule(t0, t0.Add(time.Hour), policy{refreshFraction: 0.5, skew: time.Minute}, 0)
	for _, tc := range []struct {
		at         time.Duration
		valid, due bool
	}{
		{0, true, false},
		{29 * time.Minute, true, false},
		{30 * time.Minute, true, true},
		{58*time.Minute + 59*time.Second, true, true},
		{59 * time.Minute, false, true},
		{2 * time.Hour, false, true},
	} {
		now := t0.Add(tc.at)
		g := NewWithT(t)
		g.Expect(valid(now, validUntil)).To(Equal(tc.valid), "valid at %v", tc.at)
		g.Expect(dueForRefresh(now, refreshAt)).To(Equal(tc.due), "due at %v", tc.at)
	}
}

func TestJWTExpiry(t *testing.T) {
	for _, tc := range []struct {
		tok  string
		want time.Time
	}{
		{fakeJWT(`{"exp":1795000000}`), time.Unix(1795000000, 0)},
		{fakeJWT(`{"exp":1795000000.5}`), time.Unix(1795000000, 0)},
		{fakeJWT(`{"sub":"x"}`), time.Time{}},
		{fakeJWT(`{"exp":"soon"}`), time.Time{}},
		{fakeJWT(`{"exp":-5}`), time.Time{}},
		{"opaque-token", time.Time{}},
		{"a.!!!.c", time.Time{}},
		{"a.b.c.d", time.Time{}},
	} {
		NewWithT(t).Expect(jwtExpiry(tc.tok)).To(Equal(tc.want), tc.tok)
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 10, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	for _, tc := range []struct {
		attempt int
		u       float64
		want    time.Duration
	}{
		{1, 0.999999, 100 * time.Millisecond},
		{2, 0.999999, 200 * time.Millisecond},
		{3, 0.5, 200 * time.Millisecond},
		{4, 0.999999, 800 * time.Millisecond},
		{5, 0.999999, time.Second},
		{30, 0.999999, time.Second},
		{3, 0, 0},
	} {
		got := backoff(p, tc.attempt, tc.u)
		NewWithT(t).Expect(got).To(BeNumerically("~", tc.want, time.Millisecond), fmt.Sprint(tc))
	}
}

func TestRetryAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"":       0,
		"3":      3 * time.Second,
		" 0 ":    0,
		"-1":     0,
		"999999": time.Hour,
		"soon":   0,
		t0.Add(7 * time.Second).Format(http.TimeFormat): 7 * time.Second,
		t0.Add(-time.Minute).Format(http.TimeFormat):    0,
	} {
		NewWithT(t).Expect(retryAfter(in, t0)).To(Equal(want), in)
	}
}

func TestCanonicalScopes(t *testing.T) {
	g := NewWithT(t)
	sorted := []string{"a", "b", "c"}
	g.Expect(&canonicalScopes(sorted)[0]).To(BeIdenticalTo(&sorted[0]), "sorted input is not copied")
	in := []string{"c", "a", "c", "b"}
	g.Expect(canonicalScopes(in)).To(Equal([]string{"a", "b", "c"}))
	g.Expect(in).To(Equal([]string{"c", "a", "c", "b"}), "input untouched")
	g.Expect(canonicalScopes(nil)).To(BeEmpty())
}
