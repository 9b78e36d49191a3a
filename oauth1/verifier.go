package oauth1

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // RFC 5849 HMAC-SHA1.
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// SecretFunc returns the consumer secret of a consumer key, and false when
// the key is unknown. It is called once per request and must be safe for
// concurrent use.
type SecretFunc func(consumerKey string) (secret string, ok bool)

// StaticSecret is a SecretFunc that knows exactly one consumer key.
func StaticSecret(consumerKey, consumerSecret string) SecretFunc {
	return func(k string) (string, bool) {
		if subtle.ConstantTimeCompare([]byte(k), []byte(consumerKey)) != 1 {
			return "", false
		}
		return consumerSecret, true
	}
}

// Result describes a verified request.
type Result struct {
	ConsumerKey string
	Nonce       string
	Timestamp   time.Time
}

// Verifier checks 0-legged OAuth 1.0a HMAC-SHA1 signatures: the signature
// over the external URL the caller gives, oauth_body_hash over the real
// body, the timestamp window and the nonce replay cache. It is safe for
// concurrent use.
type Verifier struct {
	secret SecretFunc
	opts   options
	cache  *nonceCache
}

// NewVerifier returns a Verifier. Options: WithClock, WithWindow,
// WithReplayCacheSize, WithMaxBody.
func NewVerifier(secret SecretFunc, opts ...Option) (*Verifier, error) {
	if secret == nil {
		return nil, fmt.Errorf("%w: no secret lookup", ErrMalformed)
	}
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	return &Verifier{secret: secret, opts: o, cache: newNonceCache(o.cacheSize)}, nil
}

// VerifyRequest verifies r as received. external is the URL the client
// signed (scheme and host as the client saw them, r's path and query); when
// nil it is built from r.URL, r.Host and r.TLS. The body is read (at most
// WithMaxBody bytes) and r.Body is replaced by a copy the next handler can
// read.
func (v *Verifier) VerifyRequest(r *http.Request, external *url.URL) (Result, error) {
	if external == nil {
		external = RequestURL(r, "", "")
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		b, err := readBounded(r.Body, v.opts.maxBody)
		_ = r.Body.Close()
		if err != nil {
			return Result{}, err
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.ContentLength = int64(len(b))
	}
	return v.Verify(r.Method, external, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body)
}

// RequestURL rebuilds the absolute URL of a server-side request: scheme
// (scheme, or "https" when r.TLS is set, else "http"), host (host, or
// r.Host) and the path and query exactly as received (r.RequestURI).
func RequestURL(r *http.Request, scheme, host string) *url.URL {
	if scheme == "" {
		scheme = "http"
		if r.TLS != nil {
			scheme = "https"
		}
	}
	if host == "" {
		host = r.Host
	}
	u := &url.URL{Scheme: scheme, Host: host, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}
	if r.RequestURI != "" {
		if p, err := url.ParseRequestURI(r.RequestURI); err == nil && p.Host == "" {
			u.Path, u.RawPath, u.RawQuery = p.Path, p.RawPath, p.RawQuery
		}
	}
	return u
}

// Verify verifies a request given by parts: method, the external URL the
// client signed, the Authorization and Content-Type header values and the
// whole body. It is Begin followed by Finish.
func (v *Verifier) Verify(method string, external *url.URL, authorization, contentType string, body []byte) (Result, error) {
	p, err := v.Begin(method, external, authorization, contentType)
	if err != nil {
		return Result{}, err
	}
	return p.Finish(body)
}

// Pending is a request whose Authorization header passed Begin; Finish
// completes its verification with the body. A Pending is used once, by one
// goroutine.
type Pending struct {
	v        *Verifier
	method   string
	external *url.URL
	p        map[string]string
	key      string
	secret   string
	ts       time.Time
	given    []byte
	form     bool
	recorded bool // signature checked and nonce recorded by Begin
}

// Begin runs every check that needs no body, so that a server can refuse a
// request before reading (and buffering) its body. In this order: header
// syntax, signature method and version, no token, timestamp format and
// window, nonce format, signature format, consumer key, nonce not used yet.
// When the body is not form-encoded the signature does not cover it (the
// signed oauth_body_hash does), so Begin also checks the signature and
// records the nonce; should Finish then find a body that does not match,
// the nonce is forgotten again. A form-encoded body is part of the
// signature base string: Finish checks the signature and records the nonce.
func (v *Verifier) Begin(method string, external *url.URL, authorization, contentType string) (*Pending, error) {
	p, err := ParseAuthorization(authorization)
	if err != nil {
		return nil, err
	}
	for _, req := range [...]string{"oauth_consumer_key", "oauth_signature_method", "oauth_signature", "oauth_timestamp", "oauth_nonce"} {
		if p[req] == "" {
			return nil, fmt.Errorf("%w: %s missing", ErrMalformed, req)
		}
	}
	if p["oauth_signature_method"] != "HMAC-SHA1" {
		return nil, fmt.Errorf("%w: signature method (only HMAC-SHA1)", ErrUnsupported)
	}
	if ver, ok := p["oauth_version"]; ok && ver != "1.0" {
		return nil, fmt.Errorf("%w: oauth_version (only 1.0)", ErrUnsupported)
	}
	if p["oauth_token"] != "" {
		return nil, fmt.Errorf("%w: oauth_token (0-legged only)", ErrUnsupported)
	}
	ts, err := parseTimestamp(p["oauth_timestamp"])
	if err != nil {
		return nil, err
	}
	now := v.opts.now()
	if d := now.Sub(ts); d > v.opts.window || d < -v.opts.window {
		return nil, ErrStale
	}
	if err := checkNonce(p["oauth_nonce"]); err != nil {
		return nil, err
	}
	given, err := base64.StdEncoding.DecodeString(p["oauth_signature"])
	if err != nil || len(given) != 20 {
		return nil, fmt.Errorf("%w: oauth_signature is not a base64 HMAC-SHA1 value", ErrBadSignature)
	}
	key := p["oauth_consumer_key"]
	secret, ok := v.secret(key)
	if !ok {
		return nil, ErrUnknownKey
	}
	if external == nil {
		return nil, fmt.Errorf("%w: no request URL", ErrMalformed)
	}
	if v.cache.has(key, p["oauth_nonce"], now) {
		return nil, ErrReplay
	}
	pd := &Pending{v: v, method: method, external: external, p: p, key: key, secret: secret, ts: ts, given: given, form: isForm(contentType)}
	if !pd.form {
		if err := pd.checkSignature(nil); err != nil {
			return nil, err
		}
		if err := pd.record(); err != nil {
			return nil, err
		}
		pd.recorded = true
	}
	return pd, nil
}

// SignatureChecked reports whether Begin already verified the signature
// (the body is not form-encoded): only the caller who holds the consumer
// secret gets this far.
func (pd *Pending) SignatureChecked() bool { return pd.recorded }

// BodyAllowed reports whether a non-empty body can pass Finish: false for
// a body that is not form-encoded and has no oauth_body_hash, and for a
// form-encoded body with one.
func (pd *Pending) BodyAllowed() bool {
	_, hasBH := pd.p["oauth_body_hash"]
	return pd.form != hasBH
}

// Abandon forgets the nonce Begin recorded, for a request given up before
// Finish (its body could not be read). Finish must not be called after it.
func (pd *Pending) Abandon() {
	if pd.recorded {
		pd.v.cache.remove(pd.key, pd.p["oauth_nonce"])
		pd.recorded = false
	}
}

// Finish checks the body: the signature and nonce for a form-encoded body,
// oauth_body_hash for any other.
func (pd *Pending) Finish(body []byte) (Result, error) {
	res := Result{ConsumerKey: pd.key, Nonce: pd.p["oauth_nonce"], Timestamp: pd.ts}
	if pd.form {
		if err := pd.checkSignature(body); err != nil {
			return Result{}, err
		}
		if _, hasBH := pd.p["oauth_body_hash"]; hasBH {
			return Result{}, fmt.Errorf("%w: oauth_body_hash on a form-encoded body", ErrBodyHash)
		}
		if err := pd.record(); err != nil {
			return Result{}, err
		}
		return res, nil
	}
	bh, hasBH := pd.p["oauth_body_hash"]
	switch {
	case hasBH && subtle.ConstantTimeCompare([]byte(bh), []byte(bodyHash(body))) != 1:
		pd.Abandon()
		return Result{}, ErrBodyHash
	case !hasBH && len(body) > 0:
		pd.Abandon()
		return Result{}, fmt.Errorf("%w: oauth_body_hash missing for a body that is not form-encoded", ErrBodyHash)
	}
	return res, nil
}

func (pd *Pending) checkSignature(formBody []byte) error {
	params := make([]param, 0, 16)
	var err error
	if params, err = parseForm(params, pd.external.RawQuery); err != nil {
		return fmt.Errorf("%w: query: %v", ErrMalformed, err)
	}
	if pd.form {
		if params, err = parseForm(params, string(formBody)); err != nil {
			return fmt.Errorf("%w: form body: %v", ErrMalformed, err)
		}
	}
	for k, val := range pd.p {
		if k != "realm" && k != "oauth_signature" {
			params = append(params, param{k, val})
		}
	}
	base, err := appendBaseString(make([]byte, 0, 512), pd.method, pd.external, params)
	if err != nil {
		return err
	}
	mac := hmac.New(sha1.New, signingKey(pd.secret, ""))
	mac.Write(base)
	if !hmac.Equal(mac.Sum(nil), pd.given) {
		return ErrBadSignature
	}
	return nil
}

// record enters the nonce into the replay cache (the window is checked
// again: time passed while the body was read).
func (pd *Pending) record() error {
	now := pd.v.opts.now()
	if d := now.Sub(pd.ts); d > pd.v.opts.window || d < -pd.v.opts.window {
		return ErrStale
	}
	return pd.v.cache.add(pd.key, pd.p["oauth_nonce"], pd.ts.Add(pd.v.opts.window), now)
}

// checkNonce: 1 to 256 bytes without control characters.
func checkNonce(n string) error {
	if len(n) > 256 {
		return fmt.Errorf("%w: oauth_nonce longer than 256 bytes", ErrMalformed)
	}
	for i := 0; i < len(n); i++ {
		if n[i] < 0x20 || n[i] == 0x7f {
			return fmt.Errorf("%w: oauth_nonce contains a control character", ErrMalformed)
		}
	}
	return nil
}

func parseTimestamp(s string) (time.Time, error) {
	if len(s) > 18 {
		return time.Time{}, fmt.Errorf("%w: oauth_timestamp out of range", ErrMalformed)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, fmt.Errorf("%w: oauth_timestamp is not a number of seconds", ErrMalformed)
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: oauth_timestamp is not a number of seconds", ErrMalformed)
	}
	return time.Unix(n, 0), nil
}
