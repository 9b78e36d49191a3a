package tokenclient

import "time"

// Limits on what Restore accepts: a saved token is data from a file, not
// from the token service.
const (
	maxSavedToken = 64 << 10       // bytes of an access token
	maxSavedLife  = 48 * time.Hour // a saved token's expiry from now
)

// Saved is a cached token in a form to persist: the cache key it belongs
// to and the token with its expiry. It holds no client secret and no user
// credential: only client_credentials tokens are saved (a user grant's key
// holds a digest of the user's secret, which must not reach a disk). The
// AccessToken is a credential: store it like one.
type Saved struct {
	Scopes     []string  `json:"scopes,omitempty"`
	Tenant     string    `json:"tenant,omitempty"`
	ZoneID     string    `json:"zone_id,omitempty"`
	Resource   string    `json:"resource,omitempty"`
	AppTID     string    `json:"app_tid,omitempty"`
	CertSHA256 string    `json:"cert_sha256,omitempty"` // the client certificate the token was fetched with
	Token      string    `json:"access_token"`
	TokenType  string    `json:"token_type,omitempty"`
	Scope      string    `json:"scope,omitempty"`
	IssuedAt   time.Time `json:"issued_at"`
	Expiry     time.Time `json:"expiry"`
	URL        string    `json:"token_url,omitempty"`
}

// Saved returns the client_credentials tokens the cache holds and still
// serves, to persist them (Restore loads them into a new client).
func (c *Client) Saved() []Saved {
	now := c.o.clock.Now().UnixNano()
	var out []Saved
	for i := range c.shards {
		for _, list := range *c.shards[i].m.Load() {
			for _, e := range list {
				s := e.st.Load()
				if e.id.grant != GrantClientCredentials || !s.validAt(now) {
					continue
				}
				t := s.tok
				out = append(out, Saved{
					Scopes: append([]string(nil), e.id.scopes...), Tenant: e.id.tenant, ZoneID: e.id.zone,
					Resource: e.id.resource, AppTID: e.id.appTID, CertSHA256: e.id.fp,
					Token: t.AccessToken, TokenType: t.TokenType, Scope: t.Scope,
					IssuedAt: t.IssuedAt, Expiry: t.Expiry, URL: t.URL,
				})
			}
		}
	}
	return out
}

// Restore installs saved tokens (read at start from a snapshot Saved
// wrote) into the cache, for keys that hold no token yet. A token is
// installed only while it is still served by the client's schedule (its
// expiry minus the skew, recomputed here) and is due for refresh at once:
// the first request that uses it gets it and starts a background refresh,
// so a restart during an outage of the token service serves the saved
// token (by the outage rule) until a fresh one arrives. Entries that are
// malformed, expired, too long-lived (over 48 hours from now) or beyond
// the key bound are skipped. It returns how many were installed.
func (c *Client) Restore(saved []Saved) int {
	if c.isDone.Load() {
		return 0
	}
	now := c.o.clock.Now()
	n := 0
	for i := range saved {
		sv := &saved[i]
		if sv.Token == "" || len(sv.Token) > maxSavedToken || !sv.Expiry.After(now) || sv.Expiry.Sub(now) > maxSavedLife {
			continue
		}
		req := Request{Scopes: sv.Scopes, Tenant: sv.Tenant, ZoneID: sv.ZoneID, Resource: sv.Resource, AppTID: sv.AppTID}
		if req.check() != nil {
			continue
		}
		issued := sv.IssuedAt
		if issued.IsZero() || issued.After(now) || !issued.Before(sv.Expiry) {
			issued = now
		}
		_, validUntil := schedule(issued, sv.Expiry, c.o.pol, 0)
		if !now.Before(validUntil) {
			continue
		}
		e, err := c.lookup(&req, sv.CertSHA256)
		if err != nil {
			continue
		}
		tok := &Token{AccessToken: sv.Token, TokenType: sv.TokenType, Scope: sv.Scope,
			ExpiresIn: sv.Expiry.Sub(issued), IssuedAt: issued, Expiry: sv.Expiry, URL: sv.URL}
		e.mu.Lock()
		if s := e.st.Load(); (s == nil || s.tok == nil) && e.call == nil {
			ns := &entryState{tok: tok, refreshAt: now.UnixNano(), validUntil: validUntil.UnixNano(),
				outageEnd: outageUntil(issued, sv.Expiry, c.o.pol).UnixNano()}
			ns.due.Store(true)
			c.publish(e, ns)
			n++
		}
		e.mu.Unlock()
	}
	return n
}
