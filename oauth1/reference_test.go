package oauth1

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what RFC 5849 specifies.
	"encoding/base64"
	"hash"
	"mime"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// macPool hands out HMAC-SHA1 states keyed with one signing key (the
// tests' way to compute a signature independently of the Signer).
type macPool struct{ p sync.Pool }

func newMACPool(key []byte) *macPool {
	k := slices.Clone(key)
	mp := &macPool{}
	mp.p.New = func() any { return hmac.New(sha1.New, k) }
	return mp
}

// sum returns HMAC-SHA1(key, base).
func (mp *macPool) sum(dst, base []byte) []byte {
	h := mp.p.Get().(hash.Hash)
	h.Reset()
	h.Write(base)
	dst = h.Sum(dst)
	mp.p.Put(h)
	return dst
}

// referenceIsForm is isForm without its shortcut: the form type, any
// case, or what mime.ParseMediaType reads as it.
func referenceIsForm(contentType string) bool {
	if contentType == "" {
		return false
	}
	if strings.EqualFold(contentType, formType) {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == formType
}

func encodeSig(sum []byte) string { return base64.StdEncoding.EncodeToString(sum) }

// referenceAuthorization is the Authorization value built the plain way:
// decoded parameters (parseForm), appendBaseString, a fresh HMAC and
// appendAuthorization — what Signer.Authorization returned before it
// prepared its constant parts and pooled its buffers. The tests hold the
// Signer to it byte for byte.
func referenceAuthorization(key, secret, realm, nonce string, now time.Time, method string, u *url.URL, contentType string, body []byte) (string, error) {
	if u == nil {
		return "", ErrMalformed
	}
	params, err := parseForm(make([]param, 0, 16), u.RawQuery)
	if err != nil {
		return "", ErrMalformed
	}
	form := referenceIsForm(contentType)
	if form {
		if params, err = parseForm(params, string(body)); err != nil {
			return "", ErrMalformed
		}
	}
	n := len(params)
	params = append(params,
		param{"oauth_consumer_key", key},
		param{"oauth_nonce", nonce},
		param{"oauth_signature_method", "HMAC-SHA1"},
		param{"oauth_timestamp", strconv.FormatInt(now.Unix(), 10)},
		param{"oauth_version", "1.0"},
	)
	if !form {
		params = append(params, param{"oauth_body_hash", bodyHash(body)})
	}
	base, err := appendBaseString(nil, method, u, params)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha1.New, signingKey(secret, ""))
	mac.Write(base)
	header := params[n:]
	if realm != "" {
		header = append([]param{{"realm", realm}}, header...)
	}
	header = append(header, param{"oauth_signature", encodeSig(mac.Sum(nil))})
	return string(appendAuthorization(nil, header)), nil
}
