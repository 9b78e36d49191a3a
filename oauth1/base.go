package oauth1

import (
	"cmp"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what RFC 5849 specifies.
	"encoding/base64"
	"fmt"
	"mime"
	"net/url"
	"slices"
	"strings"
)

// param is one decoded name/value pair of the signature base.
type param struct{ k, v string }

const formType = "application/x-www-form-urlencoded"

// isForm reports whether a Content-Type header names a form-encoded body
// (RFC 5849 section 3.4.1.3.1: its parameters are signed, it has no
// oauth_body_hash).
func isForm(contentType string) bool {
	if contentType == "" {
		return false
	}
	if strings.EqualFold(contentType, formType) {
		return true
	}
	// ParseMediaType's media type is the part before ";", trimmed and
	// lower-cased: unless that is the form type, it cannot be (and the
	// common application/json is decided without allocating).
	if mt, _, _ := strings.Cut(contentType, ";"); !strings.EqualFold(strings.TrimSpace(mt), formType) {
		return false
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == formType
}

// appendBaseURI appends the base string URI of RFC 5849 section 3.4.1.2:
// lower-case scheme and host, the port only when it is not the scheme's
// default, the path as sent ("/" when empty), no query and no fragment.
func appendBaseURI(dst []byte, u *url.URL) ([]byte, error) {
	dst, err := appendBaseAuthority(dst, u)
	if err != nil {
		return dst, err
	}
	return appendBasePath(dst, u), nil
}

// appendBaseAuthority appends the base string URI up to its path:
// "scheme://host[:port]".
func appendBaseAuthority(dst []byte, u *url.URL) ([]byte, error) {
	if u == nil || u.Scheme == "" || u.Host == "" {
		return dst, fmt.Errorf("%w: request URL must be absolute (scheme and host)", ErrMalformed)
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Hostname())
	if host == "" {
		return dst, fmt.Errorf("%w: request URL has no host", ErrMalformed)
	}
	port := u.Port()
	if scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		port = ""
	}
	dst = append(dst, scheme...)
	dst = append(dst, "://"...)
	if strings.IndexByte(host, ':') >= 0 {
		dst = append(dst, '[')
		dst = append(dst, host...)
		dst = append(dst, ']')
	} else {
		dst = append(dst, host...)
	}
	if port != "" {
		dst = append(dst, ':')
		dst = append(dst, port...)
	}
	return dst, nil
}

// appendBasePath appends the base string URI's path: as sent, "/" when
// empty.
func appendBasePath(dst []byte, u *url.URL) []byte {
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return append(dst, path...)
}

// appendBaseString appends the signature base string of RFC 5849 section
// 3.4.1.1: METHOD & enc(base URI) & enc(normalized parameters). params are
// decoded pairs; they are encoded and sorted here (section 3.4.1.3.2).
func appendBaseString(dst []byte, method string, u *url.URL, params []param) ([]byte, error) {
	uri, err := appendBaseURI(make([]byte, 0, 128), u)
	if err != nil {
		return dst, err
	}
	enc := make([]param, len(params))
	for i, p := range params {
		enc[i] = param{PercentEncode(p.k), PercentEncode(p.v)}
	}
	slices.SortFunc(enc, func(a, b param) int {
		if c := cmp.Compare(a.k, b.k); c != 0 {
			return c
		}
		return cmp.Compare(a.v, b.v)
	})
	dst = append(dst, strings.ToUpper(method)...)
	dst = append(dst, '&')
	dst = appendEncoded(dst, string(uri))
	dst = append(dst, '&')
	for i, p := range enc {
		if i > 0 {
			dst = append(dst, "%26"...)
		}
		dst = appendEncoded(dst, p.k)
		dst = append(dst, "%3D"...)
		dst = appendEncoded(dst, p.v)
	}
	return dst, nil
}

// signingKey is enc(consumer secret) & enc(token secret) (section 3.4.2).
func signingKey(consumerSecret, tokenSecret string) []byte {
	return []byte(PercentEncode(consumerSecret) + "&" + PercentEncode(tokenSecret))
}

// bodyHash is base64(SHA1(body)), the oauth_body_hash value.
func bodyHash(body []byte) string {
	sum := sha1.Sum(body) //nolint:gosec // specified by the body hash extension.
	return base64.StdEncoding.EncodeToString(sum[:])
}

// SignatureBaseString returns the RFC 5849 signature base string of a
// request: method, absolute URL (its query parameters are included), the
// decoded form-body parameters (nil when the body is not form-encoded) and
// the decoded protocol parameters (without oauth_signature and realm). It is
// exported for diagnostics and tests; signers and verifiers build it
// themselves.
func SignatureBaseString(method string, u *url.URL, form url.Values, protocol map[string]string) (string, error) {
	if u == nil {
		return "", fmt.Errorf("%w: no request URL", ErrMalformed)
	}
	params, err := parseForm(nil, u.RawQuery)
	if err != nil {
		return "", fmt.Errorf("%w: query: %v", ErrMalformed, err)
	}
	for k, vs := range form {
		for _, v := range vs {
			params = append(params, param{k, v})
		}
	}
	for k, v := range protocol {
		if k == "realm" || k == "oauth_signature" {
			continue
		}
		params = append(params, param{k, v})
	}
	b, err := appendBaseString(nil, method, u, params)
	return string(b), err
}
