package tokenclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/trace"
)

type call struct {
	done chan struct{}
	tok  *Token
	err  error
	span trace.Span // the fetch's span; nil when tracing is off (tracing.go)
}

// wait returns a valid token for e, joining or starting its fetch.
func (c *Client) wait(ctx context.Context, e *entry) (*Token, error) {
	e.mu.Lock()
	now := c.o.clock.Now().UnixNano()
	if s := e.st.Load(); s != nil {
		if s.validAt(now) {
			e.mu.Unlock()
			return s.tok, nil
		}
		if s.neg != nil && now < s.negUntil {
			e.mu.Unlock()
			c.replayed(true)
			return nil, s.neg
		}
		if s.fail != nil && now < s.failUntil {
			e.mu.Unlock()
			c.replayed(false)
			return nil, s.fail
		}
	}
	cl := e.call
	if cl == nil {
		cl = c.startFor(ctx, e, ReasonMiss)
	} else if cl.span != nil {
		linkJoined(ctx, cl.span)
	}
	e.mu.Unlock()
	if cl == nil {
		return nil, ErrClosed
	}
	if c.o.obs.Miss != nil {
		c.o.obs.Miss()
	}
	select {
	case <-cl.done:
		if cl.err != nil {
			// The failed fetch may have left a token that is still served
			// under the outage rule (WithOutageMargin).
			if s := e.st.Load(); s.validAt(c.o.clock.Now().UnixNano()) {
				return s.tok, nil
			}
		}
		return cl.tok, cl.err
	case <-ctx.Done():
		return nil, fmt.Errorf("tokenclient: waiting for a token: %w", context.Cause(ctx))
	}
}

// replayed reports a cached failure handed to a caller.
func (c *Client) replayed(refused bool) {
	if c.o.obs.Miss != nil {
		c.o.obs.Miss()
	}
	if c.o.obs.Replay != nil {
		c.o.obs.Replay(refused)
	}
}

// refresh starts a background fetch for e unless one is running.
func (c *Client) refresh(e *entry) {
	e.mu.Lock()
	if e.call == nil && e.st.Load() != nil && e.st.Load().due.Load() {
		c.start(e, ReasonRefresh)
	}
	e.mu.Unlock()
}

// publish installs a new state for e and arms its timers; e.mu is held.
func (c *Client) publish(e *entry, ns *entryState) {
	e.stopTimers()
	e.st.Store(ns)
	if ns.tok == nil || c.isDone.Load() {
		return
	}
	now := c.o.clock.Now().UnixNano()
	if d := ns.validUntil - now; d > 0 {
		e.timers[1] = c.o.clock.AfterFunc(time.Duration(d), func() { ns.expired.Store(true) })
	} else {
		ns.expired.Store(true)
		return
	}
	e.timers[0] = c.o.clock.AfterFunc(time.Duration(max(ns.refreshAt-now, 0)), func() {
		if e.st.Load() != ns || c.isDone.Load() {
			return
		}
		ns.due.Store(true)
		if e.used.Load() { // refresh ahead only tokens in use; others refresh on their next hit
			c.refresh(e)
		}
	})
}

// start launches a fetch for e; e.mu must be held. It returns nil once the
// client is closed.
func (c *Client) start(e *entry, reason FetchReason) *call {
	return c.startFor(context.Background(), e, reason)
}

// startFor is start for a fetch the caller with ctx waits for: its span
// (when tracing) is a child of the caller's.
func (c *Client) startFor(parent context.Context, e *entry, reason FetchReason) *call {
	c.lifeMu.Lock()
	if c.isDone.Load() {
		c.lifeMu.Unlock()
		return nil
	}
	c.wg.Add(1)
	c.lifeMu.Unlock()
	cl := &call{done: make(chan struct{})}
	if c.o.tracer != nil {
		cl.span = c.startSpan(parent, e, reason)
	}
	e.call = cl
	e.busy.Store(true)
	go c.run(e, cl, reason)
	return cl
}

// run performs one fetch for e and publishes its outcome.
func (c *Client) run(e *entry, cl *call, reason FetchReason) {
	defer c.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if cl.span != nil {
		ctx = trace.ContextWithSpan(ctx, cl.span)
	}
	go func() {
		select {
		case <-c.closed:
			cancel()
		case <-ctx.Done():
		}
	}()

	start := c.o.clock.Now()
	var (
		tok      *Token
		attempts int
		status   int
		err      error
	)
	select {
	case c.sem <- struct{}{}:
		tok, attempts, status, err = c.fetch(ctx, &e.req)
		<-c.sem
	case <-ctx.Done():
		err = ErrClosed
	}
	if c.isDone.Load() && err != nil {
		err = ErrClosed
	}
	now := c.o.clock.Now()
	dur := now.Sub(start)

	e.mu.Lock()
	old := e.st.Load()
	ns := &entryState{}
	if err == nil {
		refreshAt, validUntil := schedule(tok.IssuedAt, tok.Expiry, c.o.pol, rand.Float64())
		ns.tok, ns.refreshAt, ns.validUntil = tok, refreshAt.UnixNano(), validUntil.UnixNano()
		ns.outageEnd = outageUntil(tok.IssuedAt, tok.Expiry, c.o.pol).UnixNano()
		e.used.Store(false)
	} else {
		unavailable := errors.Is(err, ErrUnavailable) || errors.Is(err, ErrBadResponse)
		switch {
		case old == nil || old.tok == nil:
		case unavailable && now.UnixNano() < old.outageEnd:
			// The outage rule: serve the token until its expiry minus the
			// margin rather than minus the skew.
			ns.tok, ns.validUntil, ns.outageEnd = old.tok, old.outageEnd, old.outageEnd
		case old.validAt(now.UnixNano()): // keep serving the token we have
			ns.tok, ns.validUntil, ns.outageEnd = old.tok, old.validUntil, old.outageEnd
		}
		gap := c.o.retry.MaxDelay
		var te *TokenError
		if errors.As(err, &te) && te.negative() && c.o.negativeTTL > 0 {
			cached := *te
			cached.Cached = true
			ns.neg, ns.negUntil = &cached, now.Add(c.o.negativeTTL).UnixNano()
			gap = c.o.negativeTTL
		}
		// A failed refresh is tried again after a pause, not on every hit;
		// without a valid token, waiting callers get the failure for that
		// pause instead of starting fetch after fetch.
		ns.refreshAt = now.Add(gap).UnixNano()
		if ns.tok == nil && ns.neg == nil && unavailable {
			ns.fail, ns.failUntil = err, now.Add(gap).UnixNano()
		}
	}
	c.publish(e, ns)
	e.call = nil
	e.busy.Store(false)
	e.mu.Unlock()
	cl.tok, cl.err = tok, err
	if cl.span != nil {
		endSpan(cl.span, attempts, status, err)
	}
	close(cl.done)

	if c.o.obs.Fetch != nil {
		c.o.obs.Fetch(FetchEvent{Reason: reason, Grant: e.id.grant, Tenant: e.id.tenant, ZoneID: e.id.zone,
			Attempts: attempts, StatusCode: status, Duration: dur, Err: err})
	}
	log := c.o.log.With("grant", string(e.id.grant), "tenant", e.id.tenant, "zone_id", e.id.zone,
		"reason", string(reason), "attempts", attempts, "duration", dur)
	switch {
	case err == nil:
		log.Debug("token fetched", "token_url", tok.URL, "expiry", tok.Expiry)
	case ns.tok != nil && reason == ReasonRefresh:
		log.Warn("token refresh failed; serving the cached token", "until", time.Unix(0, ns.validUntil).UTC(), "status", status, "error", err)
	case ns.tok != nil:
		log.Warn("token fetch failed; serving the cached token", "until", time.Unix(0, ns.validUntil).UTC(), "status", status, "error", err)
	default:
		log.Warn("token fetch failed", "status", status, "error", err)
	}
}
