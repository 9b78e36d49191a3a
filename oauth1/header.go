package oauth1

import (
	"fmt"
	"strings"
)

// MaxAuthorizationLen bounds the Authorization header the parser accepts.
const MaxAuthorizationLen = 8 << 10

// ParseAuthorization parses an "OAuth" Authorization header (RFC 5849
// section 3.5.1) into its decoded parameters, realm included. It is strict:
// the scheme must be OAuth (any case; anything else is ErrNoCredentials),
// every value must be double-quoted without backslash escapes, parameters are
// separated by one comma with optional spaces or tabs, names must be "realm"
// or start with "oauth_", a name may appear only once, and percent-encoding
// must be well-formed. Every other deviation is ErrMalformed. Errors never
// contain parameter values.
func ParseAuthorization(header string) (map[string]string, error) {
	h := strings.TrimLeft(header, " \t")
	if h == "" {
		return nil, ErrNoCredentials
	}
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "OAuth") {
		return nil, ErrNoCredentials
	}
	if len(header) > MaxAuthorizationLen {
		return nil, fmt.Errorf("%w: Authorization header longer than %d bytes", ErrMalformed, MaxAuthorizationLen)
	}
	params := make(map[string]string, 8)
	s := skipOWS(rest)
	if s == "" {
		return nil, fmt.Errorf("%w: OAuth Authorization header has no parameters", ErrMalformed)
	}
	for n := 1; ; n++ {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("%w: Authorization parameter %d has no name=\"value\" form", ErrMalformed, n)
		}
		rawName := s[:eq]
		for i := 0; i < len(rawName); i++ {
			if c := rawName[i]; !unreserved(c) && c != '%' {
				return nil, fmt.Errorf("%w: Authorization parameter %d has an invalid name", ErrMalformed, n)
			}
		}
		name, err := percentDecode(rawName)
		if err != nil {
			return nil, fmt.Errorf("%w: Authorization parameter %d: name: %v", ErrMalformed, n, err)
		}
		if name != "realm" && !strings.HasPrefix(name, "oauth_") {
			return nil, fmt.Errorf("%w: Authorization parameter %d is neither realm nor oauth_*", ErrMalformed, n)
		}
		s = s[eq+1:]
		if s == "" || s[0] != '"' {
			return nil, fmt.Errorf("%w: Authorization parameter %q is not quoted", ErrMalformed, name)
		}
		end := strings.IndexByte(s[1:], '"')
		if end < 0 {
			return nil, fmt.Errorf("%w: Authorization parameter %q has no closing quote", ErrMalformed, name)
		}
		raw := s[1 : 1+end]
		if strings.IndexByte(raw, '\\') >= 0 {
			return nil, fmt.Errorf("%w: Authorization parameter %q contains a backslash", ErrMalformed, name)
		}
		val, err := percentDecode(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: Authorization parameter %q: %v", ErrMalformed, name, err)
		}
		if _, dup := params[name]; dup {
			return nil, fmt.Errorf("%w: Authorization parameter %q appears more than once", ErrMalformed, name)
		}
		params[name] = val
		s = skipOWS(s[2+end:])
		if s == "" {
			return params, nil
		}
		if s[0] != ',' {
			return nil, fmt.Errorf("%w: Authorization parameter %q is not followed by a comma", ErrMalformed, name)
		}
		s = skipOWS(s[1:])
		if s == "" {
			return nil, fmt.Errorf("%w: Authorization header ends with a comma", ErrMalformed)
		}
	}
}

func skipOWS(s string) string { return strings.TrimLeft(s, " \t") }

// appendAuthorization appends `OAuth name="value", …` with names and values
// percent-encoded, in the order given.
func appendAuthorization(dst []byte, params []param) []byte {
	dst = append(dst, "OAuth "...)
	for i, p := range params {
		if i > 0 {
			dst = append(dst, ", "...)
		}
		dst = appendEncoded(dst, p.k)
		dst = append(dst, '=', '"')
		dst = appendEncoded(dst, p.v)
		dst = append(dst, '"')
	}
	return dst
}
