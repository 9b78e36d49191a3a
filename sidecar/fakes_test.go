package sidecar

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fakeTokens hands out tokens "tok-<binding>-<tenant>-<n>" (n bumps with
// rotate) or fails with err. It records every request.
type fakeTokens struct {
	mu       sync.Mutex
	err      error
	gen      int
	expires  time.Time
	requests []fakeTokenCall
	sources  []fakeSourceArgs
}

type fakeTokenCall struct {
	Binding, Grant string
	Scopes         []string
	Req            TokenRequest
}

type fakeSourceArgs struct {
	Binding, Grant string
	Scopes         []string
}

func (f *fakeTokens) Source(binding string, scopes []string, grant string) (TokenSource, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if binding == "broken" {
		return nil, errors.New("binding broken is unusable")
	}
	f.sources = append(f.sources, fakeSourceArgs{binding, grant, scopes})
	return &fakeSource{f: f, binding: binding, scopes: scopes, grant: grant}, nil
}

func (f *fakeTokens) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeTokens) rotate() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
}

func (f *fakeTokens) calls() []fakeTokenCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeTokenCall(nil), f.requests...)
}

type fakeSource struct {
	f       *fakeTokens
	binding string
	scopes  []string
	grant   string
}

func (s *fakeSource) Token(ctx context.Context, req TokenRequest) (Token, error) {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	scopes := s.scopes
	if req.Scopes != nil {
		scopes = req.Scopes
	}
	s.f.requests = append(s.f.requests, fakeTokenCall{Binding: s.binding, Grant: s.grant, Scopes: scopes, Req: req})
	if s.f.err != nil {
		return Token{}, s.f.err
	}
	exp := s.f.expires
	if exp.IsZero() {
		exp = time.Now().Add(time.Hour)
	}
	tenant := req.Tenant
	if tenant == "" {
		tenant = "provider"
	}
	return Token{
		AccessToken: fmt.Sprintf("tok-%s-%s-%d", s.binding, tenant, s.f.gen),
		TokenType:   "bearer",
		ExpiresAt:   exp,
		Scope:       strings.Join(scopes, " "),
	}, nil
}

// fakeCert is a swappable client certificate with a settable state.
type fakeCert struct {
	cur   atomic.Pointer[tls.Certificate]
	mu    sync.Mutex
	state CertificateState
}

func newFakeCert(c *tls.Certificate) *fakeCert {
	f := &fakeCert{}
	if c != nil {
		f.cur.Store(c)
	}
	return f
}

func (f *fakeCert) Current() *tls.Certificate { return f.cur.Load() }

func (f *fakeCert) State() CertificateState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// fakeSigner writes a recognisable Authorization header from the method,
// URL and body it was given (the real OAuth 1.0a signer has its own tests).
type fakeSigner struct {
	mu     sync.Mutex
	bodies [][]byte
	urls   []string
	err    error
}

func (s *fakeSigner) Sign(req *http.Request, body []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.bodies = append(s.bodies, append([]byte(nil), body...))
	s.urls = append(s.urls, req.URL.String())
	req.Header.Set("Authorization", fmt.Sprintf(`OAuth oauth_consumer_key="fake", oauth_signature="%s %s %d"`, req.Method, req.URL.String(), len(body)))
	return nil
}
