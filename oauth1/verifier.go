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
// whole body. The checks run in this order: header syntax, signature method
// and version, consumer key, signature, body hash, timestamp window, nonce.
// A nonce is recorded only when every other check passed.
func (v *Verifier) Verify(method string, external *url.URL, authorization, contentType string, body []byte) (Result, error) {
	p, err := ParseAuthorization(authorization)
	if err != nil {
		return Result{}, err
	}
	for _, req := range [...]string{"oauth_consumer_key", "oauth_signature_method", "oauth_signature", "oauth_timestamp", "oauth_nonce"} {
		if p[req] == "" {
			return Result{}, fmt.Errorf("%w: %s missing", ErrMalformed, req)
		}
	}
	if p["oauth_signature_method"] != "HMAC-SHA1" {
		return Result{}, fmt.Errorf("%w: signature method (only HMAC-SHA1)", ErrUnsupported)
	}
	if ver, ok := p["oauth_version"]; ok && ver != "1.0" {
		return Result{}, fmt.Errorf("%w: oauth_version (only 1.0)", ErrUnsupported)
	}
	if p["oauth_token"] != "" {
		return Result{}, fmt.Errorf("%w: oauth_token (0-legged only)", ErrUnsupported)
	}
	ts, err := parseTimestamp(p["oauth_timestamp"])
	if err != nil {
		return Result{}, err
	}
	if len(p["oauth_nonce"]) > 256 {
		return Result{}, fmt.Errorf("%w: oauth_nonce longer than 256 bytes", ErrMalformed)
	}
	given, err := base64.StdEncoding.DecodeString(p["oauth_signature"])
	if err != nil || len(given) != 20 {
		return Result{}, fmt.Errorf("%w: oauth_signature is not a base64 HMAC-SHA1 value", ErrBadSignature)
	}
	key := p["oauth_consumer_key"]
	secret, ok := v.secret(key)
	if !ok {
		return Result{}, ErrUnknownKey
	}
	if external == nil {
		return Result{}, fmt.Errorf("%w: no request URL", ErrMalformed)
	}

	params := make([]param, 0, 16)
	if params, err = parseForm(params, external.RawQuery); err != nil {
		return Result{}, fmt.Errorf("%w: query: %v", ErrMalformed, err)
	}
	form := isForm(contentType)
	if form {
		if params, err = parseForm(params, string(body)); err != nil {
			return Result{}, fmt.Errorf("%w: form body: %v", ErrMalformed, err)
		}
	}
	for k, val := range p {
		if k != "realm" && k != "oauth_signature" {
			params = append(params, param{k, val})
		}
	}
	base, err := appendBaseString(make([]byte, 0, 512), method, external, params)
	if err != nil {
		return Result{}, err
	}
	mac := hmac.New(sha1.New, signingKey(secret, ""))
	mac.Write(base)
	if !hmac.Equal(mac.Sum(nil), given) {
		return Result{}, ErrBadSignature
	}

	bh, hasBH := p["oauth_body_hash"]
	switch {
	case form && hasBH:
		return Result{}, fmt.Errorf("%w: oauth_body_hash on a form-encoded body", ErrBodyHash)
	case !form && hasBH:
		if subtle.ConstantTimeCompare([]byte(bh), []byte(bodyHash(body))) != 1 {
			return Result{}, ErrBodyHash
		}
	case !form && len(body) > 0:
		return Result{}, fmt.Errorf("%w: oauth_body_hash missing for a body that is not form-encoded", ErrBodyHash)
	}

	now := v.opts.now()
	if d := now.Sub(ts); d > v.opts.window || d < -v.opts.window {
		return Result{}, ErrStale
	}
	if err := v.cache.add(key, p["oauth_nonce"], ts.Add(v.opts.window), now); err != nil {
		return Result{}, err
	}
	return Result{ConsumerKey: key, Nonce: p["oauth_nonce"], Timestamp: ts}, nil
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
