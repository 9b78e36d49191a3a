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

	"github.com/credbroker/credbroker/internal/clock/fakeclock"
)

type (
	tlsCertReq = tls.CertificateRequestInfo
	tlsCert    = tls.Certificate
)

var sprintf = fmt.Sprintf

// fakeClock is the manual clock of internal/clock/fakeclock (Advance and
// Jump move it; timers fire when it does) whose Sleep moves it by the wait
// and records the wait, so retries run instantly and their waits can be
// checked.
type fakeClock struct {
	*fakeclock.Clock
	mu     sync.Mutex
	sleeps []time.Duration
}

func newFakeClock() *fakeClock {
	return &fakeClock{Clock: fakeclock.NewSynchronous(time.Now().Truncate(time.Second))}
}

// Sleep is clock.Sleeper: it records d and moves the clock by it.
func (f *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	f.mu.Lock()
	f.sleeps = append(f.sleeps, d)
	f.mu.Unlock()
	f.Advance(d)
	return ctx.Err()
}

// Sleeps returns the waits so far, in order.
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
