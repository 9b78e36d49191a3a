package oauth1

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
)

// Signer signs outgoing requests with 0-legged OAuth 1.0a (HMAC-SHA1,
// consumer key and secret, no token). It is safe for concurrent use. What
// is fixed per signer is prepared once: the HMAC key schedule (keyed
// HMAC-SHA1 states are pooled with their buffers), the encoded consumer
// key and the header's constant part.
type Signer struct {
	opts    options
	signKey []byte // enc(consumer secret) & (section 3.4.2)
	encKey  []byte // PercentEncode(consumer key)
	baseKey []byte // encoded again, as the base string carries it
	// hdrPrefix is `OAuth [realm="…", ]oauth_consumer_key="…", oauth_nonce="`.
	hdrPrefix []byte
	states    sync.Pool // *signState
}

// NewSigner returns a Signer for a consumer key and secret. Options:
// WithClock, WithNonce, WithRealm, WithMaxBody.
func NewSigner(consumerKey, consumerSecret string, opts ...Option) (*Signer, error) {
	if consumerKey == "" {
		return nil, fmt.Errorf("%w: empty consumer key", ErrMalformed)
	}
	if consumerSecret == "" {
		return nil, fmt.Errorf("%w: empty consumer secret", ErrMalformed)
	}
	o := defaults()
	for _, opt := range opts {
		opt(&o)
	}
	s := &Signer{opts: o, signKey: signingKey(consumerSecret, ""), encKey: []byte(PercentEncode(consumerKey))}
	s.baseKey = appendEncoded(nil, s.encKey)
	h := []byte("OAuth ")
	if o.realm != "" {
		h = append(h, `realm="`...)
		h = appendEncoded(h, o.realm)
		h = append(h, `", `...)
	}
	h = append(h, `oauth_consumer_key="`...)
	h = append(h, s.encKey...)
	s.hdrPrefix = append(h, `", oauth_nonce="`...)
	s.states.New = s.newState
	return s, nil
}

// Sign sets the Authorization header of req. The base string URI is taken
// from req.URL (which must be absolute); req.Host is not used. A body is read
// (at most WithMaxBody bytes) and replaced by a replayable copy: form-encoded
// bodies are signed by their parameters, any other body by oauth_body_hash.
func (s *Signer) Sign(req *http.Request) error {
	body, err := bufferBody(req, s.opts.maxBody)
	if err != nil {
		return err
	}
	h, err := s.Authorization(req.Method, req.URL, req.Header.Get("Content-Type"), body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", h)
	return nil
}

// SignWithBody sets the Authorization header of req for the given complete
// body without reading req.Body (for callers that buffered the body
// themselves, such as a proxy).
func (s *Signer) SignWithBody(req *http.Request, body []byte) error {
	h, err := s.Authorization(req.Method, req.URL, req.Header.Get("Content-Type"), body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", h)
	return nil
}

// Authorization returns the Authorization header value for a request with
// the given method, absolute URL, Content-Type and body.
func (s *Signer) Authorization(method string, u *url.URL, contentType string, body []byte) (string, error) {
	var buf [512]byte
	b, err := s.AppendAuthorization(buf[:0], method, u, contentType, body)
	if err != nil {
		return "", err
	}
	return string(b), nil
}

// bufferBody reads req.Body (bounded) and replaces it with a replayable copy.
func bufferBody(req *http.Request, max int64) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	body, err := readBounded(req.Body, max)
	_ = req.Body.Close()
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	req.ContentLength = int64(len(body))
	return body, nil
}

func readBounded(r io.Reader, max int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("oauth1: reading body: %w", err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrBodyTooLarge, max)
	}
	return body, nil
}
