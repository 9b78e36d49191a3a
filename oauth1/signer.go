package oauth1

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
)

// Signer signs outgoing requests with 0-legged OAuth 1.0a (HMAC-SHA1,
// consumer key and secret, no token). It is safe for concurrent use; the
// signing key is derived once, HMAC states and buffers are pooled.
type Signer struct {
	key   string
	mac   *macPool
	opts  options
	bufs  sync.Pool
	realm string
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
	s := &Signer{key: consumerKey, mac: newMACPool(signingKey(consumerSecret, "")), opts: o, realm: o.realm}
	s.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
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
	if u == nil {
		return "", fmt.Errorf("%w: no request URL", ErrMalformed)
	}
	params := make([]param, 0, 16)
	params, err := parseForm(params, u.RawQuery)
	if err != nil {
		return "", fmt.Errorf("%w: query: %v", ErrMalformed, err)
	}
	form := isForm(contentType)
	if form {
		if params, err = parseForm(params, string(body)); err != nil {
			return "", fmt.Errorf("%w: form body: %v", ErrMalformed, err)
		}
	}
	n := len(params)
	params = append(params,
		param{"oauth_consumer_key", s.key},
		param{"oauth_nonce", s.opts.nonce()},
		param{"oauth_signature_method", "HMAC-SHA1"},
		param{"oauth_timestamp", strconv.FormatInt(s.opts.now().Unix(), 10)},
		param{"oauth_version", "1.0"},
	)
	if !form {
		params = append(params, param{"oauth_body_hash", bodyHash(body)})
	}
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	base, err := appendBaseString((*bp)[:0], method, u, params)
	*bp = base[:0]
	if err != nil {
		return "", err
	}
	var sum [20]byte
	sig := encodeSig(s.mac.sum(sum[:0], base))
	header := params[n:]
	if s.realm != "" {
		header = append([]param{{"realm", s.realm}}, header...)
	}
	header = append(header, param{"oauth_signature", sig})
	return string(appendAuthorization(make([]byte, 0, 256), header)), nil
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

func encodeSig(sum []byte) string { return base64.StdEncoding.EncodeToString(sum) }
