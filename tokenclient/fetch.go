package tokenclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/internal/clock"
)

const maxBody = 1 << 20

// fetch asks the token service for a token, retrying temporary failures
// within the retry policy. It returns the number of attempts and the last
// HTTP status (0 when no answer arrived).
func (c *Client) fetch(ctx context.Context, r *Request) (tok *Token, attempts, status int, err error) {
	ep, err := buildEndpoint(c.base.u, c.cfg.UAADomain, c.cfg.Flavor, c.cfg.x509(), r.Tenant, r.ZoneID)
	if err != nil {
		return nil, 0, 0, err
	}
	body := c.form(r).Encode()
	p := c.o.retry
	start := c.o.clock.Now()
	for attempts = 1; ; attempts++ {
		// An attempt ends when the policy's MaxElapsed does: a hanging
		// server then yields its URL and phase, not the caller's bare deadline.
		timeout := c.o.timeout
		if left := p.MaxElapsed - c.o.clock.Now().Sub(start); left > 0 && left < timeout {
			timeout = left
		}
		tok, status, err = c.attempt(ctx, ep, body, r, timeout)
		if err == nil || !retryable(err) || attempts >= p.MaxAttempts || ctx.Err() != nil {
			break
		}
		wait := backoff(p, attempts, rand.Float64())
		var te *TokenError
		if errors.As(err, &te) && te.RetryAfter > wait {
			wait = te.RetryAfter
		}
		if c.o.clock.Now().Add(wait).Sub(start) > p.MaxElapsed {
			break
		}
		c.o.log.Debug("token request failed; retrying", "token_url", ep.url, "attempt", attempts,
			"status", status, "wait", wait, "error", err)
		if clock.Sleep(ctx, c.o.clock, wait) != nil {
			break
		}
	}
	if err != nil {
		if retryable(err) {
			err = fmt.Errorf("%w after %d attempt(s): %w", ErrUnavailable, attempts, err)
		} else if !isOwn(err) {
			err = fmt.Errorf("tokenclient: %w", err)
		}
	}
	return tok, attempts, status, err
}

// backoff is full-jitter exponential backoff: a wait in [0, min(MaxDelay,
// BaseDelay·2^(attempt-1))]; u in [0,1) is the random draw.
func backoff(p RetryPolicy, attempt int, u float64) time.Duration {
	ceil := p.BaseDelay
	for i := 1; i < attempt && ceil < p.MaxDelay; i++ {
		ceil *= 2
	}
	if ceil > p.MaxDelay {
		ceil = p.MaxDelay
	}
	return time.Duration(u * float64(ceil))
}

// retryable: network errors and 408/429/5xx answers; not refusals, bad
// responses, redirects, certificate hook failures or invalid requests.
func retryable(err error) bool {
	var te *TokenError
	if errors.As(err, &te) {
		return te.temporary()
	}
	var verr *tls.CertificateVerificationError
	if errors.As(err, &verr) {
		return false // the server's certificate will not change by asking again
	}
	return !errors.Is(err, ErrBadResponse) && !errors.Is(err, ErrRedirect) &&
		!errors.Is(err, ErrCertificate) && !errors.Is(err, ErrInvalidRequest) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed)
}

func (c *Client) form(r *Request) url.Values {
	v := url.Values{}
	g := r.grant()
	v.Set("grant_type", string(g))
	secretInForm := !c.cfg.x509() && c.cfg.authStyle() == AuthStyleInParams
	if c.cfg.x509() || secretInForm {
		v.Set("client_id", c.cfg.ClientID)
	}
	if secretInForm {
		v.Set("client_secret", string(c.cfg.ClientSecret))
	}
	switch g {
	case GrantPassword:
		v.Set("username", r.Username)
		v.Set("password", string(r.Password))
	case GrantJWTBearer:
		v.Set("assertion", string(r.Assertion))
	case GrantRefreshToken:
		v.Set("refresh_token", string(r.RefreshToken))
	}
	if len(r.Scopes) > 0 {
		v.Set("scope", strings.Join(r.Scopes, " "))
	}
	if r.Resource != "" {
		v.Set("resource", r.Resource)
	}
	if r.AppTID != "" {
		v.Set("app_tid", r.AppTID)
	}
	return v
}

// attempt makes one token request.
func (c *Client) attempt(ctx context.Context, ep endpoint, body string, r *Request, timeout time.Duration) (*Token, int, error) {
	if err := c.checkCertificate(ctx); err != nil {
		return nil, 0, err
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var ph phase
	actx = httptrace.WithClientTrace(actx, ph.trace())
	req, err := http.NewRequestWithContext(actx, http.MethodPost, ep.url, strings.NewReader(body))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", ep.url, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if ep.zoneID != "" {
		req.Header.Set("X-zid", ep.zoneID)
	}
	if !c.cfg.x509() && c.cfg.authStyle() == AuthStyleInHeader {
		req.SetBasicAuth(url.QueryEscape(c.cfg.ClientID), url.QueryEscape(string(c.cfg.ClientSecret)))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, ErrRedirect) && resp != nil {
			return nil, resp.StatusCode, fmt.Errorf("%w: %s answered %d", ErrRedirect, ep.url, resp.StatusCode)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL
		}
		if ctx.Err() == nil && actx.Err() != nil {
			err = fmt.Errorf("no answer within %v (timed out waiting for the %s): %w", timeout.Round(time.Millisecond), ph.String(), err)
		}
		return nil, 0, fmt.Errorf("POST %s: %w", ep.url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("POST %s: reading the answer: %w", ep.url, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, resp.StatusCode, c.tokenError(ep.url, resp, raw)
	}
	tok, err := c.parseToken(ep.url, raw)
	return tok, resp.StatusCode, err
}

// phase is how far one request got, for the message of a timeout: a hanging
// token server is told apart from an unreachable one.
type phase struct{ n atomic.Int32 }

const (
	phaseDial int32 = iota
	phaseTLS
	phaseHeaders
)

func (p *phase) trace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		ConnectDone:       func(string, string, error) { p.n.Store(phaseTLS) },
		TLSHandshakeStart: func() { p.n.Store(phaseTLS) },
		GotConn:           func(httptrace.GotConnInfo) { p.n.Store(phaseHeaders) },
	}
}

func (p *phase) String() string {
	switch p.n.Load() {
	case phaseTLS:
		return "TLS handshake"
	case phaseHeaders:
		return "response headers"
	}
	return "connection (dial)"
}

func (c *Client) tokenError(u string, resp *http.Response, raw []byte) *TokenError {
	te := &TokenError{StatusCode: resp.StatusCode, URL: u}
	var body struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
		URI         string `json:"error_uri"`
	}
	if json.Unmarshal(raw, &body) == nil {
		te.ErrorCode = sanitize(body.Error, 100)
		te.Description = sanitize(body.Description, 300)
		te.ErrorURI = sanitize(body.URI, 300)
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		te.RetryAfter = retryAfter(resp.Header.Get("Retry-After"), c.o.clock.Now())
	}
	return te
}

// retryAfter parses a Retry-After value: seconds or an HTTP date. Absurd
// values are capped at an hour.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > 3600 {
			n = 3600
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d < 0 {
		return 0
	}
	if d > time.Hour {
		d = time.Hour
	}
	return d
}

func (c *Client) parseToken(u string, raw []byte) (*Token, error) {
	var body struct {
		AccessToken  string          `json:"access_token"`
		TokenType    string          `json:"token_type"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		Scope        string          `json:"scope"`
		JTI          string          `json:"jti"`
		RefreshToken string          `json:"refresh_token"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		// The body may hold a token: say what is wrong, not what it is.
		return nil, fmt.Errorf("%w from %s: not a JSON object", ErrBadResponse, u)
	}
	if body.AccessToken == "" {
		return nil, fmt.Errorf("%w from %s: no access_token", ErrBadResponse, u)
	}
	var in time.Duration
	if raw := strings.Trim(string(body.ExpiresIn), `"`); raw != "" && raw != "null" {
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil || f < 0 || f != f {
			return nil, fmt.Errorf("%w from %s: expires_in is not a number of seconds", ErrBadResponse, u)
		}
		if f > 10*365*24*3600 {
			f = 10 * 365 * 24 * 3600
		}
		in = time.Duration(f * float64(time.Second))
	}
	now := c.o.clock.Now()
	exp := expiry(now, in, jwtExpiry(body.AccessToken), c.o.pol.defaultLife)
	if !exp.After(now) {
		return nil, fmt.Errorf("%w from %s: the token expired on arrival (expires_in 0 or a JWT exp in the past: check the clocks)", ErrBadResponse, u)
	}
	return &Token{
		AccessToken:  body.AccessToken,
		TokenType:    body.TokenType,
		RefreshToken: body.RefreshToken,
		Scope:        body.Scope,
		JTI:          body.JTI,
		ExpiresIn:    in,
		IssuedAt:     now,
		Expiry:       exp,
		URL:          u,
	}, nil
}
