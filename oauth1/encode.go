package oauth1

import (
	"errors"
	"net/url"
	"strings"
)

const upperhex = "0123456789ABCDEF"

// unreservedTable marks the RFC 3986 unreserved bytes.
var unreservedTable = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~'
	}
	return t
}()

func unreserved(c byte) bool { return unreservedTable[c] }

// PercentEncode encodes s as RFC 5849 section 3.6 says: every byte of its
// UTF-8 form except ALPHA, DIGIT, "-", ".", "_" and "~" becomes %XX with
// upper-case hex digits.
func PercentEncode(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	return string(appendEncoded(make([]byte, 0, len(s)+2*n), s))
}

// appendEncoded appends PercentEncode(s): runs of unreserved bytes are
// copied whole.
func appendEncoded[S ~string | ~[]byte](dst []byte, s S) []byte {
	run := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			continue
		}
		dst = append(dst, s[run:i]...)
		dst = append(dst, '%', upperhex[c>>4], upperhex[c&15])
		run = i + 1
	}
	return append(dst, s[run:]...)
}

var errBadEscape = errors.New("bad percent-encoding")

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// percentDecode reverses PercentEncode strictly: "+" stays "+", a "%" must be
// followed by two hex digits.
func percentDecode(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errBadEscape
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return "", errBadEscape
		}
		b = append(b, hi<<4|lo)
		i += 2
	}
	return string(b), nil
}

// parseForm splits an application/x-www-form-urlencoded string (a query or
// a form body) into decoded name/value pairs, keeping duplicates and order,
// as RFC 5849 section 3.4.1.3.1 says. Empty segments are skipped.
func parseForm(dst []param, s string) ([]param, error) {
	for s != "" {
		var seg string
		seg, s, _ = strings.Cut(s, "&")
		if seg == "" {
			continue
		}
		k, v, _ := strings.Cut(seg, "=")
		dk, err := url.QueryUnescape(k)
		if err != nil {
			return dst, errBadEscape
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return dst, errBadEscape
		}
		dst = append(dst, param{dk, dv})
	}
	return dst, nil
}
