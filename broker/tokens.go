package broker

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/sidecar"
	"github.com/credbroker/credbroker/tokenclient"
	"github.com/credbroker/credbroker/vcap"
)

// failingSource answers every request with the reason the binding cannot
// give tokens: the proxy then answers 503 and /readyz says why.
type failingSource struct{ err error }

func (f failingSource) Token(context.Context, sidecar.TokenRequest) (sidecar.Token, error) {
	return sidecar.Token{}, f.err
}

// Source implements sidecar.Tokens with a token client per binding.
func (g *genDeps) Source(binding string, scopes []string, grant string) (sidecar.TokenSource, error) {
	b, err := g.set.ByName(binding)
	if err != nil {
		return nil, err
	}
	if err := b.Err(); err != nil {
		return failingSource{err: err}, nil
	}
	tcfg, err := TokenConfig(b)
	if err != nil {
		return failingSource{err: err}, nil
	}
	td := g.tokenDir
	var dirKey string
	if td != nil {
		dirKey = td.path
	}
	key := fmt.Sprintf("binding %s %s %s keys=%d margin=%v inv=%v dir=%q", binding, g.net.key, g.c.bindingDigest(b), g.maxKeys, g.outageMargin, g.invalidationInterval, dirKey)
	client, release, err := g.c.tokens.acquire(key, func() (*tokenclient.Client, func(), error) {
		var self atomic.Pointer[tokenclient.Client]
		var persist func()
		if td != nil {
			persist = func() {
				if cl := self.Load(); cl != nil {
					td.save(binding, tcfg, cl)
				}
			}
		}
		opts := g.c.tokenOptions(binding, g.net, persist)
		if g.maxKeys > 0 {
			opts = append(opts, tokenclient.WithMaxKeys(g.maxKeys))
		}
		if g.outageMargin > 0 {
			opts = append(opts, tokenclient.WithOutageMargin(g.outageMargin))
		}
		if g.invalidationInterval > 0 {
			opts = append(opts, tokenclient.WithInvalidationInterval(g.invalidationInterval))
		}
		cl, err := tokenclient.New(tcfg, opts...)
		if err != nil {
			return nil, nil, err
		}
		self.Store(cl)
		if td != nil {
			td.load(binding, tcfg, cl)
		}
		return cl, func() { _ = cl.Close() }, nil
	})
	if err != nil {
		return nil, fmt.Errorf("binding %q: %w", binding, err)
	}
	g.hold(release)
	scopes = slices.Clone(scopes)
	slices.Sort(scopes)
	s := &tokenSource{c: client, scopes: scopes, jwt: grant == sidecar.GrantJWTBearer}
	if !s.jwt {
		s.h, err = client.Handle(tokenclient.Request{Scopes: scopes})
		if err != nil {
			return nil, fmt.Errorf("binding %q: %w", binding, err)
		}
	}
	return s, nil
}

// tokenOptions are the options of a binding's token client; persist, when
// not nil, runs after every successful fetch (token_cache_dir).
func (c *Broker) tokenOptions(binding string, n *Network, persist func()) []tokenclient.Option {
	hits := c.metrics.TokenCacheHits(binding)
	replayRefused, replayUnavailable := c.metrics.TokenReplays(binding)
	opts := []tokenclient.Option{
		tokenclient.WithDialContext(n.resolver.Dialer(nil)),
		tokenclient.WithClock(c.clock),
		// A proxied request waits at most this long for a token the cache
		// does not have before the proxy answers 503.
		tokenclient.WithRetry(tokenclient.RetryPolicy{MaxElapsed: 10 * time.Second}),
		tokenclient.WithLogger(c.log.With("binding", binding)),
		tokenclient.WithObserver(tokenclient.Observer{
			Hit:       hits.Inc,
			ClockJump: func(time.Duration) { c.metrics.ClockJumped("token_client") },
			Fetch: func(ev tokenclient.FetchEvent) {
				c.metrics.TokenFetched(binding, ev.Err, ev.Duration)
				if ev.Err == nil && persist != nil {
					persist()
				}
				if ev.Reason == tokenclient.ReasonRefresh {
					c.metrics.TokenRefreshed(binding, ev.Err)
				}
			},
			Replay: func(refused bool) {
				if refused {
					replayRefused.Inc()
				} else {
					replayUnavailable.Inc()
				}
			},
		}),
	}
	if n.roots != nil {
		opts = append(opts, tokenclient.WithRootCAs(n.roots))
	}
	if c.tp != nil {
		opts = append(opts, tokenclient.WithTracerProvider(c.tp))
	}
	return opts
}

// bindingDigest identifies a binding's credentials within this process
// without holding them: an HMAC keyed with the broker's random salt, so
// the digest of a secret cannot be checked against guesses elsewhere (a
// heap dump, a log line that carried a key by mistake).
func (c *Broker) bindingDigest(b *vcap.Binding) string {
	h := hmac.New(sha256.New, c.salt)
	if a := b.Auth; a != nil {
		for _, s := range []string{a.ClientID, a.ClientSecret.Reveal(), a.URL, a.CertURL, a.UAADomain, string(a.Auth), string(a.CertificatePEM), a.Key.PEM().Reveal()} {
			h.Write([]byte(s))
			h.Write([]byte{0})
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// tokenSource adapts a token client to sidecar.TokenSource: a prepared
// handle for the provider tenant, the client for other tenants and the
// jwt-bearer exchange.
type tokenSource struct {
	c      *tokenclient.Client
	h      *tokenclient.Handle
	scopes []string
	jwt    bool
}

func (s *tokenSource) Token(ctx context.Context, req sidecar.TokenRequest) (sidecar.Token, error) {
	var t *tokenclient.Token
	var err error
	switch {
	case s.jwt:
		t, err = s.c.Token(ctx, tokenclient.Request{Grant: tokenclient.GrantJWTBearer, Scopes: s.scopes, Tenant: req.Tenant, Assertion: tokenclient.Secret(req.Assertion)})
	case req.Scopes != nil:
		t, err = s.c.Token(ctx, tokenclient.Request{Scopes: req.Scopes, Tenant: req.Tenant})
	case req.Tenant == "":
		t, err = s.h.Token(ctx)
	default:
		t, err = s.c.Token(ctx, tokenclient.Request{Scopes: s.scopes, Tenant: req.Tenant})
	}
	if errors.Is(err, tokenclient.ErrTooManyKeys) {
		return sidecar.Token{}, fmt.Errorf("%w: %w", sidecar.ErrTokenKeyLimit, err)
	}
	if err != nil {
		return sidecar.Token{}, err
	}
	return sidecar.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, ExpiresAt: t.Expiry, Scope: t.Scope}, nil
}

// Invalidate implements sidecar.TokenInvalidator: it drops the cached
// token of req when it is still sent (docs/reliability.md). A jwt-bearer
// source (a token per user) drops nothing.
func (s *tokenSource) Invalidate(req sidecar.TokenRequest, sent string) (sidecar.Invalidation, error) {
	var dropped bool
	var err error
	switch {
	case s.jwt:
		return sidecar.InvalidationStale, nil
	case req.Scopes != nil:
		dropped, err = s.c.Invalidate(tokenclient.Request{Scopes: req.Scopes, Tenant: req.Tenant}, sent)
	case req.Tenant == "":
		dropped, err = s.h.Invalidate(sent)
	default:
		dropped, err = s.c.Invalidate(tokenclient.Request{Scopes: s.scopes, Tenant: req.Tenant}, sent)
	}
	switch {
	case errors.Is(err, tokenclient.ErrInvalidationLimited):
		return sidecar.InvalidationLimited, nil
	case err != nil:
		return "", err
	case dropped:
		return sidecar.InvalidationDropped, nil
	}
	return sidecar.InvalidationStale, nil
}
