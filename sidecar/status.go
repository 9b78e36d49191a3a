package sidecar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"sort"
	"sync"
	"time"
)

// Status is the JSON body of the admin /status endpoint. Nothing in it is
// secret: names, times, counts and error messages (which never carry a
// credential).
type Status struct {
	Ready   bool     `json:"ready"`
	Reasons []string `json:"reasons"`
	// Warnings do not make the sidecar unready but need an operator: a
	// certificate that can no longer be renewed (needs_token) while it is
	// still valid.
	Warnings     []string            `json:"warnings,omitempty"`
	Draining     bool                `json:"draining,omitempty"`
	Config       ConfigStatus        `json:"config"`
	Routes       []RouteStatus       `json:"routes"`
	Bindings     []BindingStatus     `json:"bindings"`
	Certificates []CertificateStatus `json:"certificates"`
}

// ConfigStatus says which configuration is served.
type ConfigStatus struct {
	Source     string    `json:"source"`
	Generation int       `json:"generation"`
	LoadedAt   time.Time `json:"loaded_at"`
	LastReload string    `json:"last_reload_error,omitempty"`
}

// RouteStatus describes one route.
type RouteStatus struct {
	Name        string `json:"name"`
	Upstream    string `json:"upstream"`
	Auth        string `json:"auth"`
	Binding     string `json:"binding,omitempty"`
	Certificate string `json:"certificate,omitempty"`
}

// BindingStatus is one binding that routes or the token API use.
type BindingStatus struct {
	Name     string   `json:"name"`
	Usable   bool     `json:"usable"`
	Problems []string `json:"problems,omitempty"`
	// TokenExpiresAt is the expiry of the token last handed out for the
	// binding's routes (zero when none was checked).
	TokenExpiresAt *time.Time `json:"token_expires_at,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
}

// CertificateStatus is one certificate of the certificates section.
type CertificateStatus struct {
	Name        string     `json:"name"`
	Loaded      bool       `json:"loaded"`
	Subject     string     `json:"subject,omitempty"`
	Serial      string     `json:"serial,omitempty"`
	SHA256      string     `json:"sha256,omitempty"` // fingerprint of the leaf's DER: what identifies it (serials repeat)
	NotBefore   *time.Time `json:"not_before,omitempty"`
	NotAfter    *time.Time `json:"not_after,omitempty"`
	Expired     bool       `json:"expired"`
	NextRenewal *time.Time `json:"next_renewal,omitempty"`
	LastRenewal *time.Time `json:"last_renewal,omitempty"`
	Renewals    int        `json:"renewals"`
	LastError   string     `json:"last_error,omitempty"`
	NeedsToken  bool       `json:"needs_token"`
	Revoked     bool       `json:"revoked"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// certificateState merges what the certificate itself says with its
// provider's state.
func certificateState(c ClientCertificate) CertificateState {
	var st CertificateState
	if s, ok := c.(CertificateStater); ok {
		st = s.State()
	}
	if cur := c.Current(); cur != nil && cur.Leaf != nil {
		st.Subject = cur.Leaf.Subject.String()
		st.Serial = cur.Leaf.SerialNumber.String()
		sum := sha256.Sum256(cur.Leaf.Raw)
		st.SHA256 = hex.EncodeToString(sum[:])
		st.NotBefore, st.NotAfter = cur.Leaf.NotBefore, cur.Leaf.NotAfter
	}
	return st
}

// judgeCertificate decides whether a certificate is usable at now. A reason
// with ok true is a warning: usable, but a new one-time token is needed.
func judgeCertificate(name string, loaded bool, st CertificateState, now time.Time) (ok bool, reason string) {
	switch {
	case !loaded:
		why := "not loaded yet"
		if st.LastError != "" {
			why += " (" + st.LastError + ")"
		}
		return false, fmt.Sprintf("certificate %q: %s", name, why)
	case !st.NotAfter.IsZero() && !now.Before(st.NotAfter):
		return false, fmt.Sprintf("certificate %q expired at %s; a new one-time token is needed", name, st.NotAfter.UTC().Format(time.RFC3339))
	case !st.NotBefore.IsZero() && now.Before(st.NotBefore):
		return false, fmt.Sprintf("certificate %q is not valid before %s", name, st.NotBefore.UTC().Format(time.RFC3339))
	case st.NeedsToken:
		// Still valid but no longer renewable (revoked): the connector keeps
		// honouring it until it expires, so it stays in use and ready; the
		// reason is a warning.
		why := "can no longer be renewed; it stays in use until it expires"
		if !st.NotAfter.IsZero() {
			why += " at " + st.NotAfter.UTC().Format(time.RFC3339)
		}
		why += "; a new one-time token is needed"
		if st.LastError != "" {
			why += " (" + st.LastError + ")"
		}
		return true, fmt.Sprintf("certificate %q %s", name, why)
	}
	return true, ""
}

// judgeBinding decides whether a binding is usable.
func judgeBinding(name string, info BindingInfo, found bool) (ok bool, reason string) {
	switch {
	case !found:
		return false, fmt.Sprintf("binding %q: not found", name)
	case len(info.Problems) > 0:
		return false, fmt.Sprintf("binding %q is unusable: %s", name, info.Problems[0])
	}
	return true, ""
}

// judgeToken decides whether a token check succeeded at now.
func judgeToken(binding string, tok Token, err error, now time.Time) (ok bool, reason string) {
	switch {
	case err != nil:
		return false, fmt.Sprintf("binding %q: no valid token: %v", binding, err)
	case tok.AccessToken == "":
		return false, fmt.Sprintf("binding %q: empty token", binding)
	case !tok.ExpiresAt.IsZero() && !now.Before(tok.ExpiresAt):
		return false, fmt.Sprintf("binding %q: token expired", binding)
	}
	return true, ""
}

// redactURL returns u without its query string, fragment and user
// information: an API key in an upstream's query (or a password in its
// user information) must not reach /status. A query that was there shows as
// "?redacted".
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.Fragment, c.RawFragment = "", ""
	c.ForceQuery = false
	if c.RawQuery != "" {
		c.RawQuery = "redacted"
	}
	return c.String()
}

// status gathers the state of every credential of a proxy. It fetches (or
// reads from the cache) one token per distinct route token source.
func (p *Proxy) status(ctx context.Context, now time.Time) Status {
	st := Status{Reasons: []string{}, Routes: []RouteStatus{}, Bindings: []BindingStatus{}, Certificates: []CertificateStatus{}}
	for _, r := range p.routes {
		st.Routes = append(st.Routes, RouteStatus{Name: r.name, Upstream: redactURL(r.target), Auth: r.cfg.Auth.Type, Binding: r.cfg.Auth.Binding, Certificate: r.cfg.Auth.Certificate})
	}
	// Certificates, in config order.
	var names []string
	for _, cc := range p.cfg.Certificates {
		names = append(names, cc.Name)
		if cc.RuntimeDir != "" {
			names = append(names, cc.RuntimeName())
		}
	}
	for _, name := range names {
		cs := CertificateStatus{Name: name}
		c := p.deps.Certificates[name]
		var state CertificateState
		loaded := false
		if c != nil {
			state = certificateState(c)
			cur := c.Current()
			loaded = cur != nil
		}
		cs.Loaded = loaded
		cs.Subject, cs.Serial, cs.SHA256 = state.Subject, state.Serial, state.SHA256
		cs.NotBefore, cs.NotAfter = timePtr(state.NotBefore), timePtr(state.NotAfter)
		cs.Expired = loaded && !state.NotAfter.IsZero() && !now.Before(state.NotAfter)
		cs.NextRenewal, cs.LastRenewal = timePtr(state.NextRenewal), timePtr(state.LastRenewal)
		cs.Renewals, cs.LastError, cs.NeedsToken, cs.Revoked = state.Renewals, state.LastError, state.NeedsToken, state.Revoked
		if ok, why := judgeCertificate(name, loaded, state, now); !ok {
			st.Reasons = append(st.Reasons, why)
		} else if why != "" {
			st.Warnings = append(st.Warnings, why)
		}
		st.Certificates = append(st.Certificates, cs)
	}
	// Bindings: usability, then one token per route source.
	byName := map[string]*BindingStatus{}
	for _, b := range p.cfg.usedBindings() {
		bs := &BindingStatus{Name: b, Usable: true}
		if p.deps.Bindings != nil {
			info, found := p.deps.Bindings(b)
			bs.Problems = info.Problems
			if ok, why := judgeBinding(b, info, found); !ok {
				bs.Usable = false
				st.Reasons = append(st.Reasons, why)
			}
		}
		byName[b] = bs
	}
	// One token per distinct route source, asked for concurrently and
	// bounded together: a token service that hangs must not hang /readyz.
	type probe struct {
		r   *route
		tok Token
		err error
		// destination routes: the checks of their bindings
		checker DestinationCredentialChecker
		checks  []CredentialCheck
	}
	var probes []*probe
	seen := map[TokenSource]bool{}
	for _, r := range p.routes {
		if r.dest != nil {
			// A destination route: its destination binding's token and, if
			// it names one, its connectivity binding's (the proxy's
			// credential). Destinations themselves are not looked up.
			ch, ok := r.dest.resolver.(DestinationCredentialChecker)
			if !ok || !usable(byName, r.cfg.Auth.Binding) || !usable(byName, r.cfg.Auth.Connectivity) {
				continue
			}
			probes = append(probes, &probe{r: r, checker: ch})
			continue
		}
		if r.tokens == nil || r.jwtBearer || seen[r.tokens] {
			continue
		}
		seen[r.tokens] = true
		if bs := byName[r.cfg.Auth.Binding]; bs == nil || !bs.Usable {
			continue
		}
		probes = append(probes, &probe{r: r})
	}
	tctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	var wg sync.WaitGroup
	for _, pr := range probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if pr.checker != nil {
				pr.checks = pr.checker.CheckCredentials(tctx, pr.r.tenant)
				return
			}
			pr.tok, pr.err = pr.r.tokens.Token(tctx, TokenRequest{Tenant: pr.r.tenant})
		}()
	}
	wg.Wait()
	cancel()
	reasons := map[string]bool{} // one line per binding and cause, however many routes share it
	judge := func(binding string, tok Token, err error) {
		bs := byName[binding]
		if bs == nil {
			return
		}
		if ok, why := judgeToken(binding, tok, err, now); !ok {
			if !reasons[why] {
				reasons[why] = true
				st.Reasons = append(st.Reasons, why)
			}
			if err != nil {
				bs.LastError = err.Error()
			} else {
				bs.LastError = why
			}
			return
		}
		if bs.TokenExpiresAt == nil || tok.ExpiresAt.Before(*bs.TokenExpiresAt) {
			bs.TokenExpiresAt = timePtr(tok.ExpiresAt)
		}
	}
	for _, pr := range probes {
		if pr.checker != nil {
			for _, c := range pr.checks {
				judge(c.Binding, c.Token, c.Err)
			}
			continue
		}
		judge(pr.r.cfg.Auth.Binding, pr.tok, pr.err)
	}
	bnames := make([]string, 0, len(byName))
	for n := range byName {
		bnames = append(bnames, n)
	}
	sort.Strings(bnames)
	for _, n := range bnames {
		st.Bindings = append(st.Bindings, *byName[n])
	}
	st.Ready = len(st.Reasons) == 0
	return st
}

// usable reports whether binding b ("" for none) is not known to be
// unusable.
func usable(byName map[string]*BindingStatus, b string) bool {
	if b == "" {
		return true
	}
	bs := byName[b]
	return bs != nil && bs.Usable
}

// certificateStates reports every certificate's state for the metrics.
func (p *Proxy) certificateStates() map[string]CertificateState {
	out := make(map[string]CertificateState, len(p.deps.Certificates))
	for name, c := range p.deps.Certificates {
		if c != nil {
			out[name] = certificateState(c)
		}
	}
	return out
}
