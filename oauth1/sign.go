package oauth1

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // HMAC-SHA1 is what RFC 5849 specifies.
	"encoding/base64"
	"fmt"
	"hash"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unsafe"
)

// signState is the scratch of one signature: a keyed HMAC-SHA1 state and
// the buffers the base string and the parameters are built in. A Signer
// pools them, so a signature allocates nothing in the steady state.
type signState struct {
	mac   hash.Hash // keyed with the Signer's signing key; Reset restores the key schedule
	enc   []byte    // the request's parameters, percent-encoded
	spans []span    // each one's key and value in enc
	uri   []byte    // the base string URI's parts
	// auth is the base string URI's "scheme://host[:port]", encoded, of
	// the URL scheme and host it was built from (a signer signs for one
	// upstream, mostly).
	scheme, host string
	auth         []byte
	base         []byte   // the signature base string
	nonce        []byte   // a custom oauth_nonce, percent-encoded
	bnonce       []byte   // and encoded again
	bh           []byte   // oauth_body_hash, percent-encoded
	bbh          []byte   // and encoded again
	sum          []byte   // the HMAC
	rnd          [16]byte // the random nonce's bits
	ts           [24]byte // oauth_timestamp
	b64          [28]byte // base64 of a 20-byte digest
}

// span locates one encoded parameter in signState.enc: the key is
// enc[k:v], the value enc[v:end].
type span struct{ k, v, end int }

func (s *Signer) newState() any {
	return &signState{
		mac:   hmac.New(sha1.New, s.signKey),
		enc:   make([]byte, 0, 256),
		spans: make([]span, 0, 16),
		uri:   make([]byte, 0, 128),
		auth:  make([]byte, 0, 128),
		base:  make([]byte, 0, 512),
		nonce: make([]byte, 0, 32),
		bh:    make([]byte, 0, 40),
		bbh:   make([]byte, 0, 60),
		sum:   make([]byte, 0, sha1.Size),
	}
}

// The constant protocol parameters (their values need no encoding).
const (
	sigMethod = "HMAC-SHA1"
	version   = "1.0"
)

// The same as bytes, so the protocol parameter table stays on the stack.
var sigMethodBytes, versionBytes = []byte(sigMethod), []byte(version)

// emptyBodyHash is oauth_body_hash of an empty body, percent-encoded;
// emptyBodyHashBase that encoded again, as the base string carries it.
var emptyBodyHash, emptyBodyHashBase = func() ([]byte, []byte) {
	sum := sha1.Sum(nil) //nolint:gosec // specified by the body hash extension.
	v := PercentEncode(base64.StdEncoding.EncodeToString(sum[:]))
	return []byte(v), []byte(PercentEncode(v))
}()

// AppendAuthorization appends the Authorization header value for a
// request with the given method, absolute URL, Content-Type and body to
// dst, as Authorization returns it. The arguments are not retained.
func (s *Signer) AppendAuthorization(dst []byte, method string, u *url.URL, contentType string, body []byte) ([]byte, error) {
	if u == nil {
		return dst, fmt.Errorf("%w: no request URL", ErrMalformed)
	}
	st := s.states.Get().(*signState)
	defer s.putState(st)
	st.enc, st.spans = st.enc[:0], st.spans[:0]
	if err := st.addForm(u.RawQuery); err != nil {
		return dst, fmt.Errorf("%w: query: %v", ErrMalformed, err)
	}
	form := isForm(contentType)
	if form {
		if err := st.addForm(unsafe.String(unsafe.SliceData(body), len(body))); err != nil {
			return dst, fmt.Errorf("%w: form body: %v", ErrMalformed, err)
		}
	}
	enc := st.enc
	slices.SortFunc(st.spans, func(a, b span) int {
		if c := bytes.Compare(enc[a.k:a.v], enc[b.k:b.v]); c != 0 {
			return c
		}
		return bytes.Compare(enc[a.v:a.end], enc[b.v:b.end])
	})

	// The protocol parameters, in the order their names sort: each value
	// percent-encoded (v, what the header carries and what sorts) and
	// encoded once more (bv, what the base string carries). Most of them
	// are unreserved characters, the same both ways, or prepared once.
	var nonce, bnonce []byte
	if s.opts.customNonce {
		nonce = appendEncoded(st.nonce[:0], s.opts.nonce())
		bnonce = appendEncoded(st.bnonce[:0], nonce)
		st.nonce, st.bnonce = nonce[:0], bnonce[:0]
	} else {
		_, _ = rand.Read(st.rnd[:]) // never fails (crypto/rand since Go 1.24)
		nonce = base64.RawURLEncoding.AppendEncode(st.nonce[:0], st.rnd[:])
		bnonce = nonce // base64url is unreserved
	}
	ts := strconv.AppendInt(st.ts[:0], s.opts.now().Unix(), 10) // digits and "-"
	var bh, bbh []byte
	if !form {
		if len(body) == 0 {
			bh, bbh = emptyBodyHash, emptyBodyHashBase
		} else {
			sum := sha1.Sum(body) //nolint:gosec // specified by the body hash extension.
			base64.StdEncoding.Encode(st.b64[:], sum[:])
			bh = appendEncoded(st.bh[:0], st.b64[:])
			bbh = appendEncoded(st.bbh[:0], bh)
			st.bh, st.bbh = bh[:0], bbh[:0]
		}
	}
	proto := [...]struct {
		k     string // the name and "%3D", in the base string
		v, bv []byte
	}{
		{"oauth_body_hash%3D", bh, bbh},
		{"oauth_consumer_key%3D", s.encKey, s.baseKey},
		{"oauth_nonce%3D", nonce, bnonce},
		{"oauth_signature_method%3D", sigMethodBytes, sigMethodBytes},
		{"oauth_timestamp%3D", ts, ts},
		{"oauth_version%3D", versionBytes, versionBytes},
	}
	pp := proto[:]
	if form {
		pp = pp[1:]
	}

	// The base string (section 3.4.1.1), the request's parameters merged
	// with the protocol ones in sorted order (section 3.4.1.3.2).
	b := appendUpper(st.base[:0], method)
	b = append(b, '&')
	if u.Scheme != st.scheme || u.Host != st.host || len(st.auth) == 0 {
		auth, err := appendBaseAuthority(st.uri[:0], u)
		st.uri = auth[:0]
		if err != nil {
			return dst, err
		}
		st.auth = appendEncoded(st.auth[:0], auth)
		st.scheme, st.host = strings.Clone(u.Scheme), strings.Clone(u.Host)
	}
	b = append(b, st.auth...)
	st.uri = appendBasePath(st.uri[:0], u)
	b = appendEncoded(b, st.uri)
	b = append(b, '&')
	sp := st.spans
	for n := 0; len(sp) > 0 || len(pp) > 0; n++ {
		if n > 0 {
			b = append(b, "%26"...)
		}
		if len(sp) > 0 && (len(pp) == 0 || lessParam(enc[sp[0].k:sp[0].v], enc[sp[0].v:sp[0].end], pp[0].k[:len(pp[0].k)-3], pp[0].v)) {
			b = appendEncoded(b, enc[sp[0].k:sp[0].v])
			b = append(b, "%3D"...)
			b = appendEncoded(b, enc[sp[0].v:sp[0].end])
			sp = sp[1:]
		} else {
			b = append(b, pp[0].k...)
			b = append(b, pp[0].bv...)
			pp = pp[1:]
		}
	}
	st.base = b

	st.mac.Reset()
	st.mac.Write(b)
	st.sum = st.mac.Sum(st.sum[:0])
	base64.StdEncoding.Encode(st.b64[:], st.sum)

	// The header, in the order Authorization has always written it.
	dst = append(dst, s.hdrPrefix...)
	dst = append(dst, nonce...)
	dst = append(dst, `", oauth_signature_method="`+sigMethod+`", oauth_timestamp="`...)
	dst = append(dst, ts...)
	dst = append(dst, `", oauth_version="`+version+`"`...)
	if !form {
		dst = append(dst, `, oauth_body_hash="`...)
		dst = append(dst, bh...)
		dst = append(dst, '"')
	}
	dst = append(dst, `, oauth_signature="`...)
	dst = appendEncoded(dst, st.b64[:])
	return append(dst, '"'), nil
}

// maxPooledBuf bounds the buffers a pooled signState keeps: one signed a
// large form body drops them instead.
const maxPooledBuf = 64 << 10

func (s *Signer) putState(st *signState) {
	if cap(st.enc) > maxPooledBuf || cap(st.base) > maxPooledBuf || cap(st.uri) > maxPooledBuf ||
		cap(st.spans) > maxPooledBuf/16 || cap(st.nonce) > maxPooledBuf || cap(st.bnonce) > maxPooledBuf {
		return
	}
	s.states.Put(st)
}

// lessParam orders an encoded request parameter before an encoded
// protocol one: by name, then by value (section 3.4.1.3.2).
func lessParam(k, v []byte, pk string, pv []byte) bool {
	if c := strings.Compare(unsafe.String(unsafe.SliceData(k), len(k)), pk); c != 0 {
		return c < 0
	}
	return bytes.Compare(v, pv) < 0
}

// appendUpper appends strings.ToUpper(s) without allocating for ASCII.
func appendUpper(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return append(dst, strings.ToUpper(s)...)
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// addForm adds the parameters of a form-encoded string (a query or a form
// body) to st, each name and value decoded as url.QueryUnescape does and
// percent-encoded as section 3.6 says, as parseForm and PercentEncode
// would; empty segments are skipped.
func (st *signState) addForm(s string) error {
	for s != "" {
		var seg string
		seg, s, _ = strings.Cut(s, "&")
		if seg == "" {
			continue
		}
		k, v, _ := strings.Cut(seg, "=")
		var err error
		p := span{k: len(st.enc)}
		if st.enc, err = appendReencoded(st.enc, k); err != nil {
			return err
		}
		p.v = len(st.enc)
		if st.enc, err = appendReencoded(st.enc, v); err != nil {
			return err
		}
		p.end = len(st.enc)
		st.spans = append(st.spans, p)
	}
	return nil
}

// appendReencoded appends PercentEncode(url.QueryUnescape(s)): "+" is a
// space, "%" must be followed by two hex digits (errBadEscape).
func appendReencoded(dst []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '+':
			c = ' '
		case '%':
			if i+2 >= len(s) {
				return dst, errBadEscape
			}
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if !ok1 || !ok2 {
				return dst, errBadEscape
			}
			c = hi<<4 | lo
			i += 2
		}
		if unreserved(c) {
			dst = append(dst, c)
			continue
		}
		dst = append(dst, '%', upperhex[c>>4], upperhex[c&15])
	}
	return dst, nil
}
