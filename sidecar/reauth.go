package sidecar

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// A token the upstream rejects (docs/reliability.md): when an upstream
// answers 401 to a request that carried the route's token, and the
// route's rule says the token itself was refused (by default a Bearer
// challenge with error="invalid_token"), the proxy drops that token from
// the cache (only when it is still the cached one), waits for the one
// fetch of a new token that all such requests share, and sends the
// request once more when it can be replayed. A 403 never leads here.

// Values of reauth.on_401.
const (
	// ReauthInvalidToken reacts to a 401 whose WWW-Authenticate has a
	// Bearer challenge with error="invalid_token" (RFC 6750 §3.1).
	ReauthInvalidToken = "invalid_token"
	// ReauthAny reacts to every 401.
	ReauthAny = "any"
	// ReauthNever never drops a token for an upstream's answer.
	ReauthNever = "never"
)

// DefaultMaxReplayBody bounds the request body a route buffers so that it
// can send it again after a rejected token (reauth.max_replay_body).
const DefaultMaxReplayBody = 64 << 10

// DefaultReauthMethods are the methods a request is sent again with after
// a rejected token unless reauth.retry_methods says otherwise: the
// idempotent ones of RFC 9110 §9.2.2 but TRACE.
var DefaultReauthMethods = []string{http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete}

// Reasons in HeaderError on a 401 the upstream answered and the proxy
// passed on after its rule had matched.
const (
	// ReasonTokenRejectedLimited: the binding's token for this tenant was
	// dropped less than token_invalidation_interval ago; the token was
	// kept and the request not sent again.
	ReasonTokenRejectedLimited = "token-rejected-rate-limited"
	// ReasonTokenRejectedNotReplayable: the token was dropped (the next
	// request gets a new one) but this request was not sent again: its
	// method is not in reauth.retry_methods, or its body was not buffered
	// (larger than reauth.max_replay_body).
	ReasonTokenRejectedNotReplayable = "token-rejected-not-replayable"
	// ReasonTokenRejectedAgain: the request was sent again with a new
	// token and the upstream rejected that one too.
	ReasonTokenRejectedAgain = "token-rejected-again"
	// ReasonTokenRejectedNoToken: no new token could be had to send the
	// request again with.
	ReasonTokenRejectedNoToken = "token-rejected-no-new-token"
)

// Invalidation is what TokenInvalidator.Invalidate did.
type Invalidation string

// Outcomes of TokenInvalidator.Invalidate.
const (
	// InvalidationDropped: the token was the cached one; it was dropped
	// and a fetch for a new one started.
	InvalidationDropped Invalidation = "dropped"
	// InvalidationStale: the token was no longer the cached one (another
	// request dropped it, or it was refreshed): nothing was dropped.
	InvalidationStale Invalidation = "stale"
	// InvalidationLimited: the rate limit refused the drop; the token was
	// kept.
	InvalidationLimited Invalidation = "limited"
)

// TokenInvalidator is implemented by TokenSources that can drop a token an
// upstream rejected. Invalidate must be safe for concurrent use, must not
// block on I/O (it may start a fetch that Token then waits for), must
// rate-limit drops per binding and tenant, and must never log or return
// the token.
type TokenInvalidator interface {
	// Invalidate drops the cached token for req when it is still sent (the
	// access token the rejected request carried).
	Invalidate(req TokenRequest, sent string) (Invalidation, error)
}

// RouteReauth is the reauth: block of a route: what the proxy does when
// the upstream rejects the route's token. Zero values mean the defaults.
type RouteReauth struct {
	// On401 is invalid_token (default), any or never.
	On401 string `yaml:"on_401"`
	// RetryMethods are the methods sent again with the new token (default
	// DefaultReauthMethods). POST and PATCH are not idempotent: name them
	// only for an upstream that is safe to call twice.
	RetryMethods []string `yaml:"retry_methods"`
	// MaxReplayBody bounds the body buffered to send it again (bytes,
	// default DefaultMaxReplayBody); a larger body is streamed and its
	// request not sent again.
	MaxReplayBody int64 `yaml:"max_replay_body"`
}

// checkReauth validates the reauth: block of routes[i].
func (c *Config) checkReauth(errs ConfigErrors, i int, r Route) ConfigErrors {
	ra := r.Reauth
	f := fmt.Sprintf("routes[%d].reauth", i)
	switch ra.On401 {
	case "", ReauthInvalidToken, ReauthAny, ReauthNever:
	default:
		errs = append(errs, c.errorf(f+".on_401", r.Name, ErrInvalidValue, "%q: want %s, %s or %s", ra.On401, ReauthInvalidToken, ReauthAny, ReauthNever))
	}
	for j, m := range ra.RetryMethods {
		if !validHeaderName(m) || strings.ToUpper(m) != m {
			errs = append(errs, c.errorf(fmt.Sprintf("%s.retry_methods[%d]", f, j), r.Name, ErrInvalidValue, "%q: want an upper-case method name such as GET or PUT", m))
		}
	}
	if ra.MaxReplayBody < 0 {
		errs = append(errs, c.errorf(f+".max_replay_body", r.Name, ErrInvalidValue, "must not be negative"))
	}
	set := ra.On401 != "" || ra.RetryMethods != nil || ra.MaxReplayBody != 0
	tokens := r.Auth.Binding != "" && (r.Auth.Type == AuthBearer || r.Auth.Type == AuthMTLS) && r.Auth.Grant != GrantJWTBearer
	if set && !tokens {
		errs = append(errs, c.errorf(f, r.Name, ErrInvalidValue, "reauth is for routes that send a client_credentials token of a binding (bearer, or mtls with a binding)"))
	}
	return errs
}

// reauth is a route's prepared reauth: block; nil when the route sends no
// token that can be dropped.
type reauth struct {
	r       *route
	inv     TokenInvalidator
	any     bool
	methods []string
	maxBody int64
	next    http.RoundTripper // the route's transport (net/http's path)

	invalidations [4]lazyCounter // by outcome: dropped, stale, limited, error
	retries       [4]lazyCounter // by outcome: ok, rejected, failed, not_replayable
}

// lazyCounter is a series created on its first increment, so that routes
// that never see a rejected token add no series to /metrics.
type lazyCounter struct {
	vec    *prometheus.CounterVec
	labels [2]string
	c      atomic.Pointer[prometheus.Counter]
}

func (l *lazyCounter) Inc() {
	p := l.c.Load()
	if p == nil {
		c := l.vec.WithLabelValues(l.labels[0], l.labels[1])
		p = &c
		l.c.Store(p)
	}
	(*p).Inc()
}

// Outcomes of credbroker_proxy_token_retries_total.
const (
	retryOK = iota
	retryRejected
	retryFailed
	retryNotReplayable
)

var retryOutcomes = [4]string{"ok", "rejected", "failed", "not_replayable"}

var invalidationOutcomes = [4]Invalidation{InvalidationDropped, InvalidationStale, InvalidationLimited, "error"}

// newReauth prepares the reauth of route r (its tokens and transport set),
// or returns nil.
func newReauth(r *route, m *Metrics) *reauth {
	cfg := r.cfg.Reauth
	inv, ok := r.tokens.(TokenInvalidator)
	if !ok || r.jwtBearer || cfg.On401 == ReauthNever {
		return nil
	}
	ra := &reauth{r: r, inv: inv, any: cfg.On401 == ReauthAny, methods: cfg.RetryMethods, maxBody: cfg.MaxReplayBody}
	if ra.methods == nil {
		ra.methods = DefaultReauthMethods
	}
	if ra.maxBody == 0 {
		ra.maxBody = DefaultMaxReplayBody
	}
	for i, o := range invalidationOutcomes {
		ra.invalidations[i].vec, ra.invalidations[i].labels = m.reauth.invalidations, [2]string{r.name, string(o)}
	}
	for i, o := range retryOutcomes {
		ra.retries[i].vec, ra.retries[i].labels = m.reauth.retries, [2]string{r.name, o}
	}
	return ra
}

func (ra *reauth) retryable(method string) bool { return slices.Contains(ra.methods, method) }

// rejected reports whether a 401 with these WWW-Authenticate values says
// the token was refused, by the route's rule.
func (ra *reauth) rejected(challenges []string) bool {
	if ra.any {
		return true
	}
	for _, v := range challenges {
		if invalidTokenChallenge(v) {
			return true
		}
	}
	return false
}

// invalidate drops sent for tenant and counts and logs the outcome. ok is
// true when a new token may be fetched for a retry (dropped or stale).
func (ra *reauth) invalidate(tenant, sent string) (reason string, ok bool) {
	out, err := ra.inv.Invalidate(TokenRequest{Tenant: tenant}, sent)
	i := 3
	switch {
	case err != nil:
	case out == InvalidationDropped:
		i = 0
	case out == InvalidationStale:
		i = 1
	case out == InvalidationLimited:
		i = 2
	}
	ra.invalidations[i].Inc()
	r := ra.r
	switch i {
	case 0, 1:
		// The token client logs each drop once (binding, tenant, never
		// the token); the metric names the route.
		return "", true
	case 2:
		return ReasonTokenRejectedLimited, false
	}
	r.log.Debug("dropping a rejected token failed", "binding", r.cfg.Auth.Binding, "tenant", tenant, "err", err)
	return ReasonTokenRejectedNoToken, false
}

// newToken waits for the token that replaces a rejected one (the fetch
// Invalidate started, shared by every caller).
func (ra *reauth) newToken(ctx context.Context, tenant, sent string) (string, bool) {
	tok, err := ra.r.tokens.Token(ctx, TokenRequest{Tenant: tenant})
	if err != nil || tok.AccessToken == sent {
		ra.retries[retryFailed].Inc()
		return "", false
	}
	return tok.AccessToken, true
}

// reauthCallKey carries a reauthCall in a request's context: set by
// route.serve only when the transport cannot know the call from the route
// alone (a tenant header, or the app's own Authorization kept).
type reauthCallKey struct{}

type reauthCall struct {
	tenant string
	skip   bool // the Authorization header is the app's own, not the route's token
}

// RoundTrip sends req (the ReverseProxy's outgoing request) and, when the
// upstream rejects the route's token, sends it once more with a new one
// if it can be replayed.
func (ra *reauth) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := ra.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	tenant := ra.r.tenant
	if c, _ := req.Context().Value(reauthCallKey{}).(*reauthCall); c != nil {
		if c.skip {
			return resp, nil
		}
		tenant = c.tenant
	}
	auth := req.Header["Authorization"]
	if len(auth) != 1 || len(auth[0]) <= len("Bearer ") || auth[0][:len("Bearer ")] != "Bearer " {
		return resp, nil
	}
	if !ra.rejected(resp.Header.Values("Www-Authenticate")) {
		return resp, nil
	}
	sent := auth[0][len("Bearer "):]
	reason, ok := ra.invalidate(tenant, sent)
	if ok && !ra.retryable(req.Method) || ok && req.Body != nil && req.Body != http.NoBody && req.GetBody == nil {
		ra.retries[retryNotReplayable].Inc()
		reason, ok = ReasonTokenRejectedNotReplayable, false
	}
	if !ok {
		resp.Header.Set(HeaderError, reason)
		return resp, nil
	}
	tok, ok := ra.newToken(req.Context(), tenant, sent)
	if !ok {
		resp.Header.Set(HeaderError, ReasonTokenRejectedNoToken)
		return resp, nil
	}
	again := req.Clone(req.Context())
	if req.GetBody != nil {
		body, err := req.GetBody()
		if err != nil {
			ra.retries[retryFailed].Inc()
			resp.Header.Set(HeaderError, ReasonTokenRejectedNoToken)
			return resp, nil
		}
		again.Body = body
	}
	again.Header["Authorization"] = []string{ra.r.bearerValue(tok)}
	// The first answer's body is not read: an upstream that trickles it
	// must not hold the retry up (its connection is closed instead).
	_ = resp.Body.Close()
	resp, err = ra.next.RoundTrip(again)
	switch {
	case err != nil:
		ra.retries[retryFailed].Inc()
	case resp.StatusCode == http.StatusUnauthorized:
		ra.retries[retryRejected].Inc()
		resp.Header.Set(HeaderError, ReasonTokenRejectedAgain)
	default:
		ra.retries[retryOK].Inc()
	}
	return resp, err
}

// prepareBody buffers the body of a request that may be sent again (its
// method is retryable) when it fits in max_replay_body, and sets GetBody.
// A larger body goes on streamed, with what was read put back in front.
func (ra *reauth) prepareBody(req *http.Request) error {
	if req.Body == nil || req.Body == http.NoBody || !ra.retryable(req.Method) {
		return nil
	}
	if req.ContentLength > ra.maxBody {
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(req.Body, ra.maxBody+1))
	if err != nil {
		return &clientBodyError{err}
	}
	if int64(len(b)) > ra.maxBody {
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(b), req.Body), req.Body}
		return nil
	}
	_ = req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(b))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	req.ContentLength = int64(len(b))
	req.TransferEncoding = nil
	if len(b) == 0 {
		req.Body, req.GetBody = http.NoBody, nil
	}
	return nil
}

// reauthFast is the fast path's decision on a 401 from the upstream to a
// request that carried the route's token sent (fastpath.go): it returns
// the header line with a new token to send the request again with, or nil
// and the reason to add to the 401 passed on ("" for none: the rule did
// not match).
func (ra *reauth) reauthFast(fc *fastConn, sent string, method []byte) (line []byte, reason string) {
	if !ra.any && !fastInvalidToken(fc.hdrs) {
		return nil, ""
	}
	reason, ok := ra.invalidate(ra.r.tenant, sent)
	if ok && !ra.retryable(b2s(method)) {
		ra.retries[retryNotReplayable].Inc()
		reason, ok = ReasonTokenRejectedNotReplayable, false
	}
	if !ok {
		return nil, reason
	}
	tok, ok := ra.newToken(fc.ctx, ra.r.tenant, sent)
	if !ok {
		return nil, ReasonTokenRejectedNoToken
	}
	line = ra.r.bearerFor(tok).line
	if line == nil {
		ra.retries[retryFailed].Inc()
		return nil, ReasonTokenRejectedNoToken
	}
	return line, ""
}

// fastInvalidToken looks for the rule's challenge in the WWW-Authenticate
// fields of a response head kept by readRespHead ("Name: value\r\n"
// lines).
func fastInvalidToken(hdrs []byte) bool {
	for len(hdrs) > 0 {
		end := bytes.Index(hdrs, []byte("\r\n"))
		if end < 0 {
			return false
		}
		line := hdrs[:end]
		hdrs = hdrs[end+2:]
		if len(line) > len("www-authenticate:") && equalFold(line[:len("www-authenticate:")], "www-authenticate:") {
			if invalidTokenChallenge(strings.TrimLeft(b2s(line[len("www-authenticate:"):]), " \t")) {
				return true
			}
		}
	}
	return false
}

// invalidTokenChallenge reports whether a WWW-Authenticate field value
// (RFC 9110 §11.6.1: a list of challenges, each a scheme followed by a
// token68 or by auth-params) holds a Bearer challenge (the scheme in any
// case) with the auth-param error="invalid_token" (quoted or not; RFC 6750
// §3). A value that does not parse up to that challenge does not match.
func invalidTokenChallenge(v string) bool {
	p := challengeParser{s: v}
	for {
		scheme, name, value, ok := p.next()
		if !ok {
			return false
		}
		if name == "error" && strings.EqualFold(scheme, "bearer") && strings.EqualFold(value, "invalid_token") {
			return true
		}
	}
}

// challengeParser reads a WWW-Authenticate value one auth-param at a time.
type challengeParser struct {
	s      string
	i      int
	scheme string
}

// next returns the next auth-param (name in lower case) with the scheme of
// its challenge; a challenge with a token68 or without parameters yields
// nothing. ok is false at the end or on a syntax error.
func (p *challengeParser) next() (scheme, name, value string, ok bool) {
	s := p.s
	for {
		// Skip list separators and whitespace.
		for p.i < len(s) && (s[p.i] == ',' || s[p.i] == ' ' || s[p.i] == '\t') {
			p.i++
		}
		if p.i >= len(s) {
			return "", "", "", false
		}
		start := p.i
		for p.i < len(s) && tokenByte[s[p.i]] {
			p.i++
		}
		if p.i == start {
			return "", "", "", false
		}
		tok := s[start:p.i]
		j := p.i
		for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
			j++
		}
		if j < len(s) && s[j] == '=' && p.scheme != "" && !p.token68End(p.i) {
			// name BWS "=" BWS ( token / quoted-string )
			j++
			for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
				j++
			}
			val, end, good := readParamValue(s, j)
			if !good {
				return "", "", "", false
			}
			p.i = end
			return p.scheme, strings.ToLower(tok), val, true
		}
		if j < len(s) && s[j] == '=' {
			// A token68 where no scheme precedes it: skip it.
			for p.i < len(s) && s[p.i] == '=' {
				p.i++
			}
			p.scheme = ""
			continue
		}
		// A new challenge: its scheme, then maybe a token68.
		p.scheme = tok
		p.i = j
		if p.i > start+len(tok) && p.i < len(s) && s[p.i] != ',' {
			if end := p.token68At(p.i); end > 0 {
				p.i = end
				p.scheme = "" // a token68 challenge has no auth-params
			}
		}
	}
}

// token68At returns the end of a token68 starting at i when it is one: its
// characters, then '=' padding, then the end of the value or a comma
// (after whitespace). Otherwise 0 (what follows is an auth-param).
func (p *challengeParser) token68At(i int) int {
	s := p.s
	j := i
	for j < len(s) && token68Byte(s[j]) {
		j++
	}
	if j == i {
		return 0
	}
	for j < len(s) && s[j] == '=' {
		j++
	}
	k := j
	for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
		k++
	}
	if k == len(s) || s[k] == ',' {
		return k
	}
	return 0
}

// token68End reports whether the token ending at i is followed by what
// makes it a token68 rather than a parameter name: '=' padding at the end
// of the value or before a comma ("abc==", "abc=,"). A name followed by
// whitespace before '=' is a parameter.
func (p *challengeParser) token68End(i int) bool {
	s := p.s
	if i >= len(s) || s[i] != '=' {
		return false
	}
	j := i
	for j < len(s) && s[j] == '=' {
		j++
	}
	if j > i+1 {
		return true
	}
	for j < len(s) && (s[j] == ' ' || s[j] == '\t') {
		j++
	}
	return j == len(s) || s[j] == ','
}

func token68Byte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}

// readParamValue reads a token or a quoted-string at i; it returns the
// value (unescaped), the index after it and whether it parsed.
func readParamValue(s string, i int) (string, int, bool) {
	if i < len(s) && s[i] == '"' {
		var b strings.Builder
		for j := i + 1; j < len(s); j++ {
			switch c := s[j]; c {
			case '"':
				return b.String(), j + 1, true
			case '\\':
				j++
				if j == len(s) {
					return "", 0, false
				}
				b.WriteByte(s[j])
			default:
				b.WriteByte(c)
			}
		}
		return "", 0, false // unterminated
	}
	j := i
	for j < len(s) && tokenByte[s[j]] {
		j++
	}
	if j == i {
		return "", 0, false
	}
	return s[i:j], j, true
}

// reauthMetrics count what the proxy did about rejected tokens.
type reauthMetrics struct {
	invalidations *prometheus.CounterVec
	retries       *prometheus.CounterVec
}

func newReauthMetrics(reg *prometheus.Registry) reauthMetrics {
	m := reauthMetrics{
		invalidations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_proxy_token_invalidations_total",
			Help: "401s from an upstream that matched the route's reauth rule, by route and what became of the token: dropped (a new one is fetched), stale (already replaced), limited (dropped less than token_invalidation_interval ago for this binding and tenant: kept), error.",
		}, []string{"route", "outcome"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credbroker_proxy_token_retries_total",
			Help: "Requests sent again with a new token after the upstream rejected the route's token, by route and outcome: ok (answered other than 401), rejected (401 again), failed (no new token, or the upstream failed), not_replayable (not sent again: method or body).",
		}, []string{"route", "outcome"}),
	}
	reg.MustRegister(m.invalidations, m.retries)
	return m
}
