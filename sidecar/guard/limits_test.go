package guard

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// jwksServer serves a key set under /ok/… and fails under /fail/…,
// counting requests.
func jwksServer(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if strings.HasPrefix(r.URL.Path, "/fail/") {
			http.Error(w, "no such zone", http.StatusNotFound)
			return
		}
		_, _ = w.Write(jwksJSON("k1", &testRSAKey().PublicKey))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

// Junk URLs never evict or block a key set that verified a token; they
// fill only their own bounded caches and cost at most the fetch budget.
func TestKeyCacheJunkCannotEvictProven(t *testing.T) {
	g := NewWithT(t)
	srv, hits := jwksServer(t)
	clock := newFakeClock(time.Now())
	lim := Limits{KeySets: 2, KeySetsUnproven: 3, KeyFailures: 4, KeyFetchBurst: 4, KeyFetchRate: 1, KeyRetry: time.Minute}
	c := newKeyCache(srv.Client(), clock.Now, discardLogger(), time.Hour, time.Second, lim)
	defer c.close()
	good := srv.URL + "/ok/tenant"
	_, err := c.key(context.Background(), good, "k1")
	g.Expect(err).NotTo(HaveOccurred())
	c.confirm(good)
	g.Expect(hits.Load()).To(Equal(int32(1)))

	limited, unavailable := 0, 0
	for i := range 1000 {
		if i%10 == 0 {
			clock.Advance(time.Second) // one more token
		}
		path := "/ok/junk"
		if i%2 == 0 {
			path = "/fail/junk"
		}
		_, err := c.key(context.Background(), fmt.Sprintf("%s%s%d", srv.URL, path, i), "k1")
		switch {
		case errors.Is(err, errFetchLimited):
			limited++
		case errors.Is(err, errKeysUnavailable):
			unavailable++
		case err != nil:
			t.Fatalf("junk %d: %v", i, err)
		}
		// The proven set answers throughout, without a fetch.
		before := hits.Load()
		_, err = c.key(context.Background(), good, "k1")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(hits.Load()).To(Equal(before))
	}
	// 1000 one-off URLs over 100 s: the budget (half the burst for URLs
	// seen once, then 1/s) and nothing more.
	g.Expect(int(hits.Load()) - 1).To(BeNumerically("<=", 2+100))
	g.Expect(limited).To(BeNumerically(">=", 1000-102))
	c.mu.Lock()
	g.Expect(c.proven.len()).To(Equal(1))
	g.Expect(c.unproven.len()).To(BeNumerically("<=", 3))
	g.Expect(c.failed.len()).To(BeNumerically("<=", 4))
	g.Expect(len(c.seenCur) + len(c.seenPrev)).To(BeNumerically("<=", 2*seenPerGeneration))
	c.mu.Unlock()
}

// A failed URL is not fetched again before the retry interval.
func TestKeyCacheNegativeRetry(t *testing.T) {
	g := NewWithT(t)
	srv, hits := jwksServer(t)
	clock := newFakeClock(time.Now())
	c := newKeyCache(srv.Client(), clock.Now, discardLogger(), time.Hour, time.Second, Limits{KeyRetry: 30 * time.Second})
	defer c.close()
	bad := srv.URL + "/fail/zone"
	for range 5 {
		_, err := c.key(context.Background(), bad, "k1")
		g.Expect(err).To(MatchError(errKeysUnavailable))
	}
	g.Expect(hits.Load()).To(Equal(int32(1)))
	clock.Advance(31 * time.Second)
	_, err := c.key(context.Background(), bad, "k1")
	g.Expect(err).To(MatchError(errKeysUnavailable))
	g.Expect(hits.Load()).To(Equal(int32(2)))
}

// URLs asked for the first time use only the upper half of the bucket: a
// URL asked for again (a new subscriber whose callers retry) gets a fetch
// although one-off URLs drained what they may.
func TestKeyCacheRepeatedURLHasPriority(t *testing.T) {
	g := NewWithT(t)
	srv, hits := jwksServer(t)
	clock := newFakeClock(time.Now())
	c := newKeyCache(srv.Client(), clock.Now, discardLogger(), time.Hour, time.Second, Limits{KeyFetchBurst: 4, KeyFetchRate: 0.001})
	defer c.close()
	newcomer := srv.URL + "/ok/newcomer"
	fetched := 0
	for i := range 20 {
		if _, err := c.key(context.Background(), fmt.Sprintf("%s/ok/junk%d", srv.URL, i), "k1"); err == nil {
			fetched++
		} else {
			g.Expect(err).To(MatchError(errFetchLimited))
		}
		if i == 10 {
			_, err := c.key(context.Background(), newcomer, "k1")
			g.Expect(err).To(MatchError(errFetchLimited), "first sighting, upper half drained")
		}
	}
	g.Expect(fetched).To(Equal(2))
	_, err := c.key(context.Background(), newcomer, "k1")
	g.Expect(err).NotTo(HaveOccurred(), "second sighting takes from the reserve")
	g.Expect(hits.Load()).To(Equal(int32(3)))
}

// Proven sets are bounded too, least recently used first, and only a set
// that verified a token gets in.
func TestKeyCacheProvenLRU(t *testing.T) {
	g := NewWithT(t)
	srv, _ := jwksServer(t)
	c := newKeyCache(srv.Client(), time.Now, discardLogger(), time.Hour, time.Second, Limits{KeySets: 2})
	defer c.close()
	for _, u := range []string{"/ok/a", "/ok/b", "/ok/c"} {
		_, err := c.key(context.Background(), srv.URL+u, "k1")
		g.Expect(err).NotTo(HaveOccurred())
		c.confirm(srv.URL + u)
	}
	c.confirm(srv.URL + "/ok/never-fetched")
	c.mu.Lock()
	defer c.mu.Unlock()
	g.Expect(c.proven.len()).To(Equal(2))
	_, ok := c.proven.get(srv.URL + "/ok/a")
	g.Expect(ok).To(BeFalse())
	_, ok = c.proven.get(srv.URL + "/ok/never-fetched")
	g.Expect(ok).To(BeFalse())
}

func TestBodyBudget(t *testing.T) {
	g := NewWithT(t)
	b := &bodyBudget{max: 100}
	g.Expect(b.tryAcquire(50, false)).To(BeTrue())
	g.Expect(b.tryAcquire(1, false)).To(BeFalse(), "unauthenticated reads get half")
	g.Expect(b.tryAcquire(50, true)).To(BeTrue())
	g.Expect(b.tryAcquire(1, true)).To(BeFalse())
	b.release(50, false)
	g.Expect(b.tryAcquire(30, false)).To(BeTrue())
	b.release(30, false)
	b.release(50, true)
	g.Expect(b.inUse()).To(BeZero())
}

func TestReadAtMost(t *testing.T) {
	g := NewWithT(t)
	for _, tc := range []struct {
		body       string
		limit, max int64
		err        error
	}{
		{"hello", 5, 10, nil},
		{"hello", 10, 10, nil},
		{strings.Repeat("x", 10), 10, 10, nil},
		{strings.Repeat("x", 11), 10, 10, errBodyTooLarge},
		{strings.Repeat("x", 20000), 30000, 30000, nil},
		{strings.Repeat("x", 30001), 30000, 30000, errBodyTooLarge},
	} {
		b, err := readAtMost(io.MultiReader(strings.NewReader(tc.body)), tc.limit, tc.max)
		if tc.err != nil {
			g.Expect(err).To(MatchError(tc.err))
			continue
		}
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(string(b)).To(Equal(tc.body))
		g.Expect(int64(cap(b))).To(BeNumerically("<=", tc.limit))
	}
}

// startOAuth1Limits is startOAuth1 with inbound limits.
func startOAuth1Limits(t *testing.T, lim Limits) *oauthEnv {
	t.Helper()
	dir := t.TempDir()
	keyFile := tempFile(t, dir, "key", []byte(apsKey+"\n"))
	secretFile := tempFile(t, dir, "secret", []byte(apsSecret+"\n"))
	cfg := &Config{Limits: lim, Rules: []Rule{
		{Path: "/aps/", Accept: []Method{MethodOAuth1}, OAuth1: &OAuth1{KeyFile: keyFile, SecretFile: secretFile}},
	}}
	return &oauthEnv{env: startGuard(t, cfg, nil), dir: dir}
}

// blockedBody is a request body that sends nothing until released.
type blockedBody struct{ release chan struct{} }

func (b *blockedBody) Read(p []byte) (int, error) { <-b.release; return 0, io.EOF }

// The Authorization header is checked before a byte of the body is read:
// a request with a bad header is answered while its body is still held
// back.
func TestOAuth1HeaderBeforeBody(t *testing.T) {
	e := startOAuth1Limits(t, Limits{})
	s := signer(t, "not-the-secret", time.Now)
	for _, tc := range []struct {
		name   string
		req    func() *http.Request
		status int
		reason string
	}{
		{"no OAuth parameters", func() *http.Request {
			r, _ := http.NewRequest("POST", e.url+"/aps/x", nil)
			r.Header.Set("Authorization", `OAuth oauth_consumer_key="x"`)
			return r
		}, 401, ReasonMalformed},
		{"forged signature on a JSON body", func() *http.Request {
			return signedRequest(t, s, "POST", e.url+"/aps/x", "", "application/json", `{}`)
		}, 401, ReasonBadSignature},
		{"stale timestamp", func() *http.Request {
			return signedRequest(t, signer(t, apsSecret, func() time.Time { return time.Now().Add(-time.Hour) }), "POST", e.url+"/aps/x", "", "application/json", `{}`)
		}, 401, ReasonStale},
		{"announced body over max_body", func() *http.Request {
			r := signedRequest(t, signer(t, apsSecret, time.Now), "POST", e.url+"/aps/x", "", "application/x-www-form-urlencoded", "a=b")
			return r
		}, 413, ReasonBodyTooLarge},
	} {
		// 10 MiB: net/http would not drain it anyway; 1000 bytes: it would
		// try to, unless the refusal closes the connection.
		for _, size := range []int64{10 << 20, 1000} {
			if tc.status == 413 && size <= DefaultMaxBody {
				continue
			}
			t.Run(fmt.Sprintf("%s, %d bytes announced", tc.name, size), func(t *testing.T) {
				g := NewWithT(t)
				req := tc.req()
				body := &blockedBody{release: make(chan struct{})}
				defer close(body.release)
				req.Body = io.NopCloser(body)
				req.ContentLength = size
				resp, text := do(t, nil, req)
				g.Expect(resp.StatusCode).To(Equal(tc.status), text)
				g.Expect(text).To(ContainSubstring(tc.reason))
				g.Expect(e.obs.get("oauth1/refused/" + tc.reason)).To(BeNumerically(">=", 1))
			})
		}
	}
	NewWithT(t).Expect(e.app.count()).To(BeZero())
}

// A body that does not arrive within body_timeout is refused with 408; a
// body that does not fit into body_memory with 503; signed requests with
// small bodies pass meanwhile.
func TestOAuth1BodyTimeoutAndMemory(t *testing.T) {
	g := NewWithT(t)
	e := startOAuth1Limits(t, Limits{BodyTimeout: 300 * time.Millisecond, MaxBody: 1000, BodyMemory: 2000})
	good := signer(t, apsSecret, time.Now)

	slow := func() (*http.Request, *blockedBody) {
		req := signedRequest(t, good, "POST", e.url+"/aps/form", "", "application/x-www-form-urlencoded", "a=b")
		body := &blockedBody{release: make(chan struct{})}
		req.Body = io.NopCloser(body)
		req.ContentLength = 1000
		return req, body
	}
	// Form bodies are read before the signature can be checked: they may
	// take half of body_memory, one 1000-byte body.
	req1, b1 := slow()
	defer close(b1.release)
	done := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req1)
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	g.Eventually(func() int64 { return e.g.rules[0].oauth1.body.budget.inUse() }).Should(Equal(int64(1000)))
	req2, b2 := slow()
	defer close(b2.release)
	resp, text := do(t, nil, req2)
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable), text)
	g.Expect(text).To(ContainSubstring(ReasonBodyMemory))
	// A signed JSON body passes meanwhile (its signature was checked before
	// its body was read, so it may use the other half).
	resp, text = do(t, nil, signedRequest(t, good, "POST", e.url+"/aps/json", "", "application/json", `{"ok":true}`))
	g.Expect(resp.StatusCode).To(Equal(200), text)
	g.Eventually(done, 10*time.Second).Should(Receive(Equal(http.StatusRequestTimeout)))
	g.Expect(e.obs.get("oauth1/refused/" + ReasonBodyTimeout)).To(Equal(1))
	g.Eventually(func() int64 { return e.g.rules[0].oauth1.body.budget.inUse() }).Should(BeZero())
	g.Expect(e.app.last().Body).To(Equal(`{"ok":true}`))
}

func TestLimitsValidate(t *testing.T) {
	g := NewWithT(t)
	base := func(l Limits) *Config {
		return &Config{Listen: "127.0.0.1:0", App: "http://127.0.0.1:1", Limits: l,
			Rules: []Rule{{Path: "/", Accept: []Method{MethodOAuth1}, OAuth1: &OAuth1{KeyFile: "k", SecretFile: "s"}}}}
	}
	g.Expect(base(Limits{}).Validate()).To(Succeed())
	err := base(Limits{KeySets: -1, BodyTimeout: -time.Second}).Validate()
	g.Expect(err).To(MatchError(ErrConfig))
	g.Expect(err.Error()).To(And(ContainSubstring("inbound.limits.key_sets"), ContainSubstring("inbound.limits.body_timeout")))
	err = base(Limits{MaxBody: 2 << 20, BodyMemory: 1 << 20}).Validate()
	g.Expect(err).To(MatchError(ContainSubstring("inbound.limits.body_memory")))
	d := Limits{}.withDefaults()
	g.Expect(d).To(Equal(Limits{KeySets: DefaultKeySets, KeySetsUnproven: DefaultKeySetsUnproven, KeyFailures: DefaultKeyFailures,
		KeyRetry: DefaultKeyRetry, KeyFetchRate: DefaultKeyFetchRate, KeyFetchBurst: DefaultKeyFetchBurst,
		MaxBody: DefaultMaxBody, BodyTimeout: DefaultBodyTimeout, BodyMemory: DefaultBodyMemory}))
}
