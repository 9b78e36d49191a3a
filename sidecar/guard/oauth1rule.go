package guard

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/oauth1"
)

// consumer is an OAuth 1.0a consumer key and secret read from files.
type consumer struct{ key, secret string }

// consumerSource loads a rule's key_file and secret_file.
type consumerSource struct {
	keyFile, secretFile string
	cur                 atomic.Pointer[consumer]
}

func (s *consumerSource) files() []string { return []string{s.keyFile, s.secretFile} }

func (s *consumerSource) load(time.Time) error {
	key, err := readTrimmed(s.keyFile, "oauth1.key_file")
	if err != nil {
		return err
	}
	secret, err := readTrimmed(s.secretFile, "oauth1.secret_file")
	if err != nil {
		return err
	}
	s.cur.Store(&consumer{key: key, secret: secret})
	return nil
}

// secret is the oauth1.SecretFunc over the current files.
func (s *consumerSource) secret(key string) (string, bool) {
	c := s.cur.Load()
	if c == nil {
		return "", false
	}
	return oauth1.StaticSecret(c.key, c.secret)(key)
}

func readTrimmed(path, field string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return "", fmt.Errorf("%s: %s: %w", field, pe.Path, pe.Err)
		}
		return "", fmt.Errorf("%s: %w", field, err)
	}
	s := string(bytes.TrimSpace(b))
	if s == "" {
		return "", fmt.Errorf("%s: %s is empty", field, path)
	}
	return s, nil
}

// oauth1Verifier checks OAuth 1.0a signatures for one rule.
type oauth1Verifier struct {
	v       *oauth1.Verifier
	trusted []netip.Prefix
	body    *bodyReader
}

func oauthRefusal(reason, problem, detail string) *refusal {
	return &refusal{method: MethodOAuth1, reason: reason, status: 401, oauthProblem: problem, detail: detail}
}

// verify checks the Authorization header before it reads any body: scheme,
// syntax, consumer key, timestamp window, nonce format and replay, and —
// unless the body is form-encoded and therefore part of the signature —
// the signature itself. Only then is the body read (bounded in size, time
// and shared memory) to check oauth_body_hash or the form signature.
func (o *oauth1Verifier) verify(w http.ResponseWriter, r *http.Request) (*identity, *refusal) {
	ext := externalURL(r, o.trusted)
	// The oauth1 package's errors carry no secret, signature or nonce.
	detail := func(err error) string {
		return err.Error() + " (signed URL " + ext.Scheme + "://" + ext.Host + ext.EscapedPath() + ")"
	}
	pd, err := o.v.Begin(r.Method, ext, r.Header.Get("Authorization"), r.Header.Get("Content-Type"))
	if err != nil {
		return nil, oauth1ErrRefusal(err, detail(err))
	}
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody && !pd.BodyAllowed() {
		pd.Abandon()
		err := fmt.Errorf("%w: a body without oauth_body_hash that is not form-encoded, or a form body with one", oauth1.ErrBodyHash)
		return nil, oauth1ErrRefusal(err, detail(err))
	}
	var body []byte
	if hasBody {
		body, err = o.body.read(w, r, pd.SignatureChecked())
		if err != nil {
			pd.Abandon()
			return nil, bodyRefusal(w, err)
		}
	}
	res, err := pd.Finish(body)
	if err != nil {
		return nil, oauth1ErrRefusal(err, detail(err))
	}
	return &identity{method: MethodOAuth1, subject: res.ConsumerKey, clientID: res.ConsumerKey}, nil
}

// bodyRefusal answers a body that could not be buffered (refuse closes
// the HTTP/1 connection: the rest of the body is never read).
func bodyRefusal(w http.ResponseWriter, err error) *refusal {
	ref := &refusal{method: MethodOAuth1, detail: err.Error()}
	switch {
	case errors.Is(err, errBodyTooLarge):
		ref.reason, ref.status = ReasonBodyTooLarge, http.StatusRequestEntityTooLarge
	case errors.Is(err, errBodyMemory):
		ref.reason, ref.status = ReasonBodyMemory, http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, errBodyTimeout):
		ref.reason, ref.status = ReasonBodyTimeout, http.StatusRequestTimeout
	default:
		ref.reason, ref.status = ReasonMalformed, http.StatusBadRequest
	}
	return ref
}

func oauth1ErrRefusal(err error, detail string) *refusal {
	switch {
	case errors.Is(err, oauth1.ErrBadSignature):
		return oauthRefusal(ReasonBadSignature, "signature_invalid", detail)
	case errors.Is(err, oauth1.ErrStale):
		return oauthRefusal(ReasonStale, "timestamp_refused", detail)
	case errors.Is(err, oauth1.ErrReplay):
		return oauthRefusal(ReasonReplay, "nonce_used", detail)
	case errors.Is(err, oauth1.ErrReplayCacheFull):
		ref := oauthRefusal(ReasonBusy, "", detail)
		ref.status = http.StatusServiceUnavailable
		return ref
	case errors.Is(err, oauth1.ErrBodyHash):
		return oauthRefusal(ReasonBodyHash, "signature_invalid", detail)
	case errors.Is(err, oauth1.ErrBodyTooLarge):
		ref := oauthRefusal(ReasonBodyTooLarge, "", detail)
		ref.status = http.StatusRequestEntityTooLarge
		return ref
	case errors.Is(err, oauth1.ErrUnknownKey):
		return oauthRefusal(ReasonUnknownConsumer, "consumer_key_unknown", detail)
	case errors.Is(err, oauth1.ErrUnsupported):
		return oauthRefusal(ReasonUnsupported, "signature_method_rejected", detail)
	}
	return oauthRefusal(ReasonMalformed, "parameter_rejected", detail)
}

// externalURL is the URL the client signed: the scheme and host it
// connected to — taken from X-Forwarded-Proto and X-Forwarded-Host only when
// the immediate peer is a trusted proxy — and the path and query as received.
func externalURL(r *http.Request, trusted []netip.Prefix) *url.URL {
	scheme, host := "", ""
	if peerTrusted(r, trusted) {
		if p := firstForwarded(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstForwarded(r.Header.Get("X-Forwarded-Host")); h != "" && !strings.ContainsAny(h, "/?#@ \\") {
			host = h
		}
	}
	return oauth1.RequestURL(r, scheme, host)
}

func firstForwarded(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.ToLower(strings.TrimSpace(first))
}

func peerIP(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		a, err2 := netip.ParseAddr(r.RemoteAddr)
		if err2 != nil {
			return netip.Addr{}, false
		}
		return a.Unmap(), true
	}
	return ap.Addr().Unmap(), true
}

func peerTrusted(r *http.Request, trusted []netip.Prefix) bool {
	if len(trusted) == 0 {
		return false
	}
	a, ok := peerIP(r)
	if !ok {
		return false
	}
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
