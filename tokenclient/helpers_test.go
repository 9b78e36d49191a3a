package tokenclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type (
	tlsCertReq = tls.CertificateRequestInfo
	tlsCert    = tls.Certificate
)

var sprintf = fmt.Sprintf

// fakeClock is a manual clock. Advance and Sleep move time and run the
// timers that fall due synchronously; Sleep also records the wait, so
// retries run instantly and their waits can be checked.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	mono   time.Duration // moves with Advance and Sleep, not with Jump
	sleeps []time.Duration
	timers []*fakeTimer
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped atomic.Bool
}

func (t *fakeTimer) Stop() bool { return !t.stopped.Swap(true) }

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now().Truncate(time.Second)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) AfterFunc(d time.Duration, fn func()) Timer {
	t := &fakeTimer{f: fn}
	if d <= 0 {
		t.stopped.Store(true)
		go fn()
		return t
	}
	f.mu.Lock()
	t.at = f.now.Add(d)
	f.timers = append(f.timers, t)
	f.mu.Unlock()
	return t
}

// At is AfterFunc with a channel (clock.Clock).
func (f *fakeClock) At(t time.Time) <-chan time.Time {
	ch := make(chan time.Time, 1)
	f.AfterFunc(t.Sub(f.Now()), func() { ch <- f.Now() })
	return ch
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mono += d
	f.mu.Unlock()
	f.fire()
}

func (f *fakeClock) Monotonic() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mono
}

// Jump moves the wall clock by d without moving the monotonic clock, as a
// host suspend or a clock step does: timers (which run on the monotonic
// clock) move with it, so none fires early or late because of the jump.
func (f *fakeClock) Jump(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
	for _, t := range f.timers {
		t.at = t.at.Add(d)
	}
}

// fire runs due timers, earliest first, outside the lock.
func (f *fakeClock) fire() {
	for {
		f.mu.Lock()
		var next *fakeTimer
		idx := -1
		for i, t := range f.timers {
			if !t.at.After(f.now) && (next == nil || t.at.Before(next.at)) {
				next, idx = t, i
			}
		}
		if next == nil {
			f.mu.Unlock()
			return
		}
		f.timers = append(f.timers[:idx], f.timers[idx+1:]...)
		f.mu.Unlock()
		if !next.stopped.Swap(true) {
			next.f()
		}
	}
}

func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.sleeps = append(f.sleeps, d)
	f.now = f.now.Add(d)
	f.mono += d
	f.mu.Unlock()
	f.fire()
	return ctx.Err()
}

func (f *fakeClock) Sleeps() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.sleeps...)
}

// seen is one request the fake authorization server received.
type seen struct {
	Host       string
	Path       string
	Form       url.Values
	BasicUser  string
	BasicPass  string
	HasBasic   bool
	ZID        string
	CertSerial string // of the client certificate, over mTLS
}

// reply is what the fake server answers; zero Status means 200 with a token.
type reply struct {
	Status     int
	Header     map[string]string
	Body       string
	ExpiresIn  int
	Block      chan struct{} // answer only once closed
	Redirect   string
	NoTokenTTL bool
}

// fakeAS is an httptest authorization server with scripted answers. It
// counts and records requests so tests can assert what was sent.
type fakeAS struct {
	srv   *httptest.Server
	mu    sync.Mutex
	reqs  []seen
	n     atomic.Int64
	plan  func(n int, s seen) reply // nil: always a fresh token
	issue atomic.Int64
}

func newFakeAS(t testing.TB, tlsCfg *tls.Config) *fakeAS {
	as := &fakeAS{}
	as.srv = httptest.NewUnstartedServer(http.HandlerFunc(as.serve))
	// Refused handshakes are the point of some tests: keep them out of the output.
	as.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if tlsCfg != nil {
		as.srv.TLS = tlsCfg
		as.srv.StartTLS()
	} else {
		as.srv.Start()
	}
	t.Cleanup(as.srv.Close)
	return as
}

func (as *fakeAS) setPlan(p func(n int, s seen) reply) {
	as.mu.Lock()
	defer as.mu.Unlock()
	as.plan = p
}

func (as *fakeAS) serve(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	s := seen{Host: r.Host, Path: r.URL.Path, Form: r.PostForm, ZID: r.Header.Get("X-zid")}
	s.BasicUser, s.BasicPass, s.HasBasic = r.BasicAuth()
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		s.CertSerial = r.TLS.PeerCertificates[0].SerialNumber.String()
	}
	n := int(as.n.Add(1))
	as.mu.Lock()
	as.reqs = append(as.reqs, s)
	plan := as.plan
	as.mu.Unlock()
	var rep reply
	if plan != nil {
		rep = plan(n, s)
	}
	if rep.Block != nil {
		<-rep.Block
	}
	for k, v := range rep.Header {
		w.Header().Set(k, v)
	}
	if rep.Redirect != "" {
		http.Redirect(w, r, rep.Redirect, http.StatusFound)
		return
	}
	if rep.Status != 0 && rep.Status != 200 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.Status)
		_, _ = w.Write([]byte(rep.Body))
		return
	}
	if rep.Body != "" {
		_, _ = w.Write([]byte(rep.Body))
		return
	}
	ttl := rep.ExpiresIn
	if ttl == 0 {
		ttl = 3600
	}
	body := map[string]any{
		"access_token": fmt.Sprintf("access-%d", as.issue.Add(1)),
		"token_type":   "bearer",
		"scope":        s.Form.Get("scope"),
		"jti":          fmt.Sprintf("jti-%d", n),
	}
	if !rep.NoTokenTTL {
		body["expires_in"] = ttl
	}
	if g := s.Form.Get("grant_type"); g == "password" || g == string(GrantJWTBearer) {
		body["refresh_token"] = fmt.Sprintf("refresh-%d", n)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
}

func (as *fakeAS) count() int { return int(as.n.Load()) }

func (as *fakeAS) last() seen {
	as.mu.Lock()
	defer as.mu.Unlock()
	return as.reqs[len(as.reqs)-1]
}

func (as *fakeAS) all() []seen {
	as.mu.Lock()
	defer as.mu.Unlock()
	return append([]seen(nil), as.reqs...)
}

// secretConfig is a secret client against as (plain http on loopback).
func (as *fakeAS) secretConfig() Config {
	return Config{ClientID: "sb-client!t1", ClientSecret: "planted-client-secret-7f3a", TokenURL: as.srv.URL}
}

// newClient builds a client and closes it with the test.
func newClient(t testing.TB, cfg Config, opts ...Option) *Client {
	c, err := New(cfg, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
