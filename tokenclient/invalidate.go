package tokenclient

import (
	"fmt"
	"time"
)

// ReasonInvalidated: a fetch after Invalidate dropped a token an upstream
// rejected.
const ReasonInvalidated FetchReason = "invalidated"

// DefaultInvalidationInterval is the least time between two invalidations
// for one tenant of a client (WithInvalidationInterval).
const DefaultInvalidationInterval = 10 * time.Second

// maxInvalidationTenants bounds the rate limiter's memory: beyond it, the
// entries older than the interval are dropped, then the map is reset.
const maxInvalidationTenants = 4096

// WithInvalidationInterval sets the least time between two invalidations
// (Invalidate) for one tenant (subdomain or zone id) of the client
// (default DefaultInvalidationInterval), so that an upstream that rejects
// every token cannot make the client ask the token service for a new one
// on every request.
func WithInvalidationInterval(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.invalid(fmt.Errorf("%w: WithInvalidationInterval(%v)", ErrInvalidConfig, d))
			return
		}
		o.invalidateEvery = d
	}
}

// InvalidateEvent describes one call of Invalidate that was not stale.
type InvalidateEvent struct {
	Grant   Grant
	Tenant  string // subdomain, or ""
	ZoneID  string
	Limited bool // refused by the rate limit: the token was kept
}

// Invalidate drops the cached token for req when it is still sent — the
// access token the caller sent and the upstream rejected (a 401 with
// error="invalid_token": revoked or invalidated at the auth server) — and
// starts one fetch for a new one. Concurrent callers that saw the same
// rejection share that fetch: the first drops the token, the others find
// a different token or none (a fetch in flight) and get dropped == false;
// all of them then call Token, which waits for the fetch. A token that
// was already replaced is never dropped (dropped == false, nil): retry
// with Token's current one. When a refresh of the rejected token is
// already on its way, the token is dropped and no second fetch starts:
// callers wait for that refresh.
//
// Invalidations are rate-limited per tenant (Tenant or ZoneID) of the
// client, which is one binding: within WithInvalidationInterval of the
// last one, Invalidate keeps the token and returns ErrInvalidationLimited.
// A 403 (forbidden: the token is valid, the permission is missing) must
// not lead here. Invalidate never logs or returns a token.
func (c *Client) Invalidate(req Request, sent string) (dropped bool, err error) {
	if c.isDone.Load() {
		return false, ErrClosed
	}
	if err := req.check(); err != nil {
		return false, err
	}
	var fp string
	if c.fpFunc != nil {
		fp = c.fpFunc()
	}
	var k key
	k.fp = fp
	c.fill(&req, &k)
	e := c.find(&k)
	if e == nil {
		return false, nil
	}
	return c.invalidate(e, sent)
}

// Invalidate is Client.Invalidate for the prepared request.
func (h *Handle) Invalidate(sent string) (dropped bool, err error) {
	c := h.c
	if c.isDone.Load() {
		return false, ErrClosed
	}
	e := h.e.Load()
	if e == nil || e.gone.Load() {
		return false, nil
	}
	return c.invalidate(e, sent)
}

func (c *Client) invalidate(e *entry, sent string) (bool, error) {
	e.mu.Lock()
	s := e.st.Load()
	if s == nil || s.tok == nil || s.tok.AccessToken != sent {
		e.mu.Unlock()
		return false, nil // replaced already, or dropped and a fetch is on its way
	}
	ev := InvalidateEvent{Grant: e.id.grant, Tenant: e.id.tenant, ZoneID: e.id.zone}
	if !c.allowInvalidation(e.id.tenant + "\x00" + e.id.zone) {
		e.mu.Unlock()
		ev.Limited = true
		c.reportInvalidation(ev)
		return false, ErrInvalidationLimited
	}
	// The rejected token is never served again, not even by the outage
	// rule: callers wait for the fetch.
	c.publish(e, &entryState{})
	cl := e.call // a refresh already on its way serves the callers
	if cl == nil {
		cl = c.start(e, ReasonInvalidated)
	}
	e.mu.Unlock()
	c.reportInvalidation(ev)
	if cl == nil {
		return true, ErrClosed
	}
	return true, nil
}

func (c *Client) reportInvalidation(ev InvalidateEvent) {
	log := c.o.log.With("grant", string(ev.Grant), "tenant", ev.Tenant, "zone_id", ev.ZoneID)
	if ev.Limited {
		// Debug: an upstream that rejects every token would otherwise
		// write a line per request (Observer.Invalidate counts them).
		log.Debug("an upstream rejected the token again within the invalidation interval; keeping it")
	} else {
		log.Warn("an upstream rejected the token; dropped it and fetching a new one")
	}
	if c.o.obs.Invalidate != nil {
		c.o.obs.Invalidate(ev)
	}
}

// allowInvalidation takes the rate limiter's slot of key when it is free.
func (c *Client) allowInvalidation(key string) bool {
	now := c.o.clock.Now()
	c.invMu.Lock()
	defer c.invMu.Unlock()
	if last, ok := c.invLast[key]; ok && now.Sub(last) < c.o.invalidateEvery {
		return false
	}
	if c.invLast == nil || len(c.invLast) >= maxInvalidationTenants {
		kept := map[string]time.Time{}
		for k, t := range c.invLast {
			if now.Sub(t) < c.o.invalidateEvery && len(kept) < maxInvalidationTenants/2 {
				kept[k] = t
			}
		}
		c.invLast = kept
	}
	c.invLast[key] = now
	return true
}
