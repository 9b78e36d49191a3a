package sidecar

import "unsafe"

// fastReq is a request head read by the fast path (fastpath.go). Its
// slices point into the connection's read buffer and are valid until the
// next read.
type fastReq struct {
	method []byte
	path   []byte // escaped origin-form path, no '%', starts with "/x"
	query  []byte // after '?', "" when none
	host   []byte
	auth   bool // an Authorization field is present
	n      int  // fields in hdr
	hdr    [maxFastFields]fastField
}

// fastField is one header line of a fastReq. drop marks the fields the
// proxy never forwards (Forwarded, X-Forwarded-*: it sets its own).
type fastField struct {
	name []byte
	val  []byte
	drop bool
	auth bool
}

const maxFastFields = 40

// Verdicts of parseFastHead.
const (
	headMore = iota // the head is not complete in b
	headFast        // the head is in the fast path's strict subset
	headSlow        // anything else: net/http (behind strictConn) decides
)

// parseFastHead reads one request head from the start of b. It accepts
// only a strict subset of HTTP/1.1 that net/http reads the same way (the
// differential fuzz target FuzzFastHeadDifferential holds it to that):
// a GET, HEAD or OPTIONS request line in origin form with HTTP/1.1; CRLF
// line ends only; header names that are tokens, values without control
// characters; exactly one Host; no body (no Content-Length, no
// Transfer-Encoding); none of the fields that need net/http's or the
// ReverseProxy's handling (Connection and the other hop-by-hop fields,
// Upgrade, Expect, Origin, Sec-Fetch-Site). Every other head, valid or
// not, gets headSlow and is served (or refused, with the same reasons as
// before) by net/http. It returns the verdict and, for headFast, the
// length of the head.
func parseFastHead(b []byte, q *fastReq) (int, int) {
	q.method, q.path, q.query, q.host, q.auth, q.n = nil, nil, nil, nil, false, 0
	i := 0
	// Request line: method.
	switch {
	case hasPrefix(b, "GET "):
		i = 4
	case hasPrefix(b, "HEAD "):
		i = 5
	case hasPrefix(b, "OPTIONS "):
		i = 8
	default:
		if len(b) < 8 && isPrefixOfMethod(b) {
			return headMore, 0
		}
		return headSlow, 0
	}
	q.method = b[:i-1]
	// Target: "/" then path bytes, optional "?query", then SP.
	start := i
	if i >= len(b) {
		return headMore, 0
	}
	if b[i] != '/' {
		return headSlow, 0
	}
	qs := -1
	for ; i < len(b); i++ {
		c := b[i]
		if c == ' ' {
			break
		}
		if qs < 0 {
			if c == '?' {
				qs = i
				continue
			}
			if !pathByte[c] {
				return headSlow, 0
			}
			continue
		}
		switch {
		case c == '%':
			if i+2 >= len(b) {
				return headMore, 0
			}
			if !isHex(b[i+1]) || !isHex(b[i+2]) {
				return headSlow, 0
			}
			i += 2
		case !queryByte[c]:
			return headSlow, 0
		}
	}
	if i >= len(b) {
		return headMore, 0
	}
	if qs < 0 {
		q.path = b[start:i]
	} else {
		q.path, q.query = b[start:qs], b[qs+1:i]
		if len(q.query) == 0 {
			return headSlow, 0 // "?" alone: net/http keeps it (ForceQuery)
		}
	}
	if len(q.path) < 2 || q.path[1] == '/' {
		return headSlow, 0
	}
	i++ // SP
	const proto = "HTTP/1.1\r\n"
	if len(b)-i < len(proto) {
		if proto[:len(b)-i] == string(b[i:]) {
			return headMore, 0
		}
		return headSlow, 0
	}
	if string(b[i:i+len(proto)]) != proto {
		return headSlow, 0
	}
	i += len(proto)
	hosts := 0
	for {
		if i >= len(b) {
			return headMore, 0
		}
		if b[i] == '\r' {
			if i+1 >= len(b) {
				return headMore, 0
			}
			if b[i+1] != '\n' {
				return headSlow, 0
			}
			if hosts != 1 {
				return headSlow, 0
			}
			return headFast, i + 2
		}
		// name
		ls := i
		for i < len(b) && tokenByte[b[i]] {
			i++
		}
		if i >= len(b) {
			return headMore, 0
		}
		if i == ls || b[i] != ':' {
			return headSlow, 0
		}
		name := b[ls:i]
		i++
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		vs := i
		for i < len(b) && valueByte[b[i]] {
			i++
		}
		if i+1 >= len(b) {
			return headMore, 0
		}
		if b[i] != '\r' || b[i+1] != '\n' {
			return headSlow, 0
		}
		ve := i
		for ve > vs && (b[ve-1] == ' ' || b[ve-1] == '\t') {
			ve--
		}
		val := b[vs:ve]
		i += 2
		if q.n == maxFastFields {
			return headSlow, 0
		}
		f := &q.hdr[q.n]
		*f = fastField{name: name, val: val}
		switch fieldKind(name) {
		case fkHost:
			hosts++
			if len(val) == 0 || !validHostBytes(val) {
				return headSlow, 0
			}
			q.host = val
			continue // sent as X-Forwarded-Host; Host is the upstream's
		case fkDrop:
			f.drop = true
		case fkAuth:
			if q.auth {
				return headSlow, 0
			}
			q.auth, f.auth = true, true
		case fkSlow:
			return headSlow, 0
		}
		q.n++
	}
}

// Field kinds of the fast path.
const (
	fkOther = iota
	fkHost
	fkDrop // Forwarded, X-Forwarded-For, -Host, -Proto: replaced
	fkAuth
	fkSlow // needs net/http's handling
)

func fieldKind(name []byte) int {
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			return fkSlow
		}
	case 4:
		if equalFold(name, "host") {
			return fkHost
		}
	case 6:
		if equalFold(name, "expect") || equalFold(name, "origin") {
			return fkSlow
		}
	case 7:
		if equalFold(name, "upgrade") || equalFold(name, "trailer") {
			return fkSlow
		}
	case 9:
		if equalFold(name, "forwarded") {
			return fkDrop
		}
	case 10:
		if equalFold(name, "connection") || equalFold(name, "keep-alive") {
			return fkSlow
		}
	case 13:
		if equalFold(name, "authorization") {
			return fkAuth
		}
	case 14:
		if equalFold(name, "content-length") || equalFold(name, "sec-fetch-site") {
			return fkSlow
		}
	case 15:
		if equalFold(name, "x-forwarded-for") {
			return fkDrop
		}
	case 16:
		if equalFold(name, "x-forwarded-host") {
			return fkDrop
		}
		if equalFold(name, "proxy-connection") {
			return fkSlow
		}
	case 17:
		if equalFold(name, "x-forwarded-proto") {
			return fkDrop
		}
		if equalFold(name, "transfer-encoding") {
			return fkSlow
		}
	case 18:
		if equalFold(name, "proxy-authenticate") {
			return fkSlow
		}
	case 19:
		if equalFold(name, "proxy-authorization") {
			return fkSlow
		}
	}
	return fkOther
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }

func isPrefixOfMethod(b []byte) bool {
	for _, m := range []string{"GET ", "HEAD ", "OPTIONS "} {
		if len(b) < len(m) && m[:len(b)] == string(b) {
			return true
		}
	}
	return false
}

// equalFold compares b with the lower-case ASCII string s.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// validHostBytes accepts host names, IPv4 and bracketed IPv6 literals with
// an optional port: letters, digits, '.', '-', ':', '[' and ']'.
func validHostBytes(h []byte) bool {
	for _, c := range h {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// b2s views b as a string for a lookup that does not keep it. Never pass
// such a string to the token client (tokenclient.Request): its cache finds
// entries by the addresses of a request's strings, and b's buffer is
// reused for the next request, another tenant's maybe.
func b2s(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

var pathByte, queryByte, tokenByte, valueByte [256]bool

func init() {
	// Path bytes that net/url keeps as they are in both Path and the
	// re-escaped path: unreserved and the sub-delims it does not escape.
	for _, c := range []byte("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~$&+,/:;=@") {
		pathByte[c] = true
	}
	pathByte[';'] = false // net/url keeps it, but keep path parameters on net/http
	// Query bytes the ReverseProxy forwards unchanged (cleanQueryParams
	// re-encodes a query with ';' or a bad escape; '%' is checked apart).
	for c := 0x21; c < 0x7f; c++ {
		queryByte[c] = c != '#' && c != ';' && c != '%'
	}
	for _, c := range []byte("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") {
		tokenByte[c] = true
	}
	for c := 0; c < 256; c++ {
		valueByte[c] = c == '\t' || (c >= 0x20 && c != 0x7f)
	}
}
