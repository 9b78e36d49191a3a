package guard

import (
	"net/http"
	"strings"
)

// Reasons of the checks every request passes before a rule is tried
// (metric label values and X-Credbroker-Error values).
const (
	// ReasonPathNotCanonical: the raw path has a dot segment (in any
	// encoding, also "..;"), an empty segment ("//"), a backslash, an
	// encoded slash, backslash or ";", or a ";" parameter on a rule
	// without allow_path_params.
	ReasonPathNotCanonical = "path_not_canonical"
	// ReasonConnectionReserved: the Connection header names a reserved
	// X-Credbroker- header or Authorization (it would make a hop remove
	// them).
	ReasonConnectionReserved = "connection_names_reserved"
	// ReasonDuplicateAuthorization: more than one Authorization header.
	ReasonDuplicateAuthorization = "duplicate_authorization"
)

// ReasonAppUnreachable is the X-Credbroker-Error of a 502 for an accepted
// request the app did not answer. It is not a refusal: the request was
// counted as accepted.
const ReasonAppUnreachable = "app_unreachable"

// foldName is how the guard compares header names: ASCII letters lower
// case, digits kept, every other byte (the "_" that CGI, WSGI and many
// frameworks fold into "-", ".", …) counted as "-". Two names that fold to
// the same string are the same header to some app server.
func foldName(k string) string {
	b := make([]byte, len(k))
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		default:
			c = '-'
		}
		b[i] = c
	}
	return string(b)
}

// reservedFolded is HeaderPrefix folded: every request header whose folded
// name starts with it is removed, from every caller.
const reservedFolded = "x-credbroker-"

// callerStripped are request headers (folded names) the guard removes from
// every caller because some front proxy or framework gives them a meaning
// the app could trust: a client certificate, or the "original" URL that
// overrides the path the guard matched (IIS URL Rewrite, Symfony, Zend).
//
// X-Forwarded-Client-Cert is deliberately not here: a trusted front proxy
// may pass it (inbound.trusted_proxies); its handling lives with the
// trusted-proxy check, and only its look-alikes are stripped below.
var callerStripped = []string{
	"x-client-cert",
	"x-original-url",
	"x-rewrite-url",
}

// stripCallerHeaders removes from h (request headers or trailers):
//   - every header whose folded name starts with x-credbroker- (identity
//     headers are set by the guard alone, after hop-by-hop removal);
//   - every header of callerStripped, in any spelling;
//   - look-alikes of the forwarding headers the guard decides about
//     (Forwarded, X-Forwarded-*) — a name that folds to one of them but is
//     not spelt with "-" only, such as X_Forwarded_For. The genuine names
//     are handled by rewrite (replaced, or passed on from trusted proxies).
func stripCallerHeaders(h http.Header) {
	for k := range h {
		f := foldName(k)
		switch {
		case strings.HasPrefix(f, reservedFolded):
			delete(h, k)
		case isCallerStripped(f):
			delete(h, k)
		case (f == "forwarded" || strings.HasPrefix(f, "x-forwarded-")) && f != strings.ToLower(k):
			delete(h, k)
		}
	}
}

// stripUntrustedForwarding removes, from a request of a peer that is not in
// trusted_proxies, every X-Forwarded-* header (-Port, -Prefix, -Ssl,
// -Server, …: frameworks such as Spring's ForwardedHeaderFilter believe
// them) and X-Real-IP; rewrite then sets -For, -Host and -Proto from what
// the guard saw. X-Forwarded-Client-Cert is left to the trusted-proxy
// handling of client certificates.
func stripUntrustedForwarding(h http.Header) {
	for k := range h {
		f := foldName(k)
		if f == "x-real-ip" || strings.HasPrefix(f, "x-forwarded-") && f != "x-forwarded-client-cert" {
			delete(h, k)
		}
	}
}

func isCallerStripped(folded string) bool {
	for _, s := range callerStripped {
		if folded == s {
			return true
		}
	}
	return false
}

// checkHeaders refuses a request whose Connection header names a reserved
// header or Authorization, or that carries more than one Authorization
// header. It runs after stripCallerHeaders.
func checkHeaders(h http.Header) *refusal {
	for _, v := range h.Values("Connection") {
		for _, tok := range strings.Split(v, ",") {
			f := foldName(strings.TrimSpace(tok))
			if strings.HasPrefix(f, reservedFolded) || f == "authorization" {
				return &refusal{method: MethodNone, reason: ReasonConnectionReserved, status: http.StatusBadRequest,
					detail: "the Connection header names " + truncate(quoteSafe(strings.TrimSpace(tok)), 64)}
			}
		}
	}
	if len(h.Values("Authorization")) > 1 {
		return &refusal{method: MethodNone, reason: ReasonDuplicateAuthorization, status: http.StatusBadRequest,
			detail: "more than one Authorization header"}
	}
	return nil
}

// maxDecodes is how many rounds of percent-decoding pathProblem looks
// through (an app or a proxy in front of it may decode more than once).
const maxDecodes = 3

// rawPath is the path of the request target exactly as the client sent it
// (before any decoding), without the query.
func rawPath(r *http.Request) string {
	t := r.RequestURI
	if t == "" { // not a server request (tests calling ServeHTTP directly)
		return r.URL.EscapedPath()
	}
	if !strings.HasPrefix(t, "/") {
		// absolute-form (RFC 9112 §3.2.2): scheme://authority/path?query
		if _, rest, ok := strings.Cut(t, "://"); ok {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				t = rest[i:]
			} else {
				t = "/"
			}
		}
	}
	p, _, _ := strings.Cut(t, "?")
	return p
}

// pathProblem checks a raw path (as sent, still percent-encoded) and
// returns what makes it not canonical, or "". It refuses a "#" (also
// encoded), an empty segment ("//"; a trailing "/" is fine), and in any
// segment, before and after up to maxDecodes rounds of percent-decoding: a backslash, an
// encoded slash, backslash or semicolon, a control character (%00: C
// code truncates there) and a dot segment ("." or "..", also with a ";"
// parameter: "..;" or "..;x"). A raw ";" is not judged here: whether it is
// allowed depends on the rule (allow_path_params).
func pathProblem(raw string) string {
	if !strings.HasPrefix(raw, "/") {
		return "the path does not start with /"
	}
	if strings.Contains(raw, "#") {
		return "the path has a # (a fragment is never sent)"
	}
	segs := strings.Split(raw[1:], "/")
	for i, seg := range segs {
		if seg == "" {
			if i == len(segs)-1 {
				continue // trailing slash
			}
			return "the path has an empty segment (//)"
		}
		if p := segmentProblem(seg); p != "" {
			return p
		}
	}
	return ""
}

func segmentProblem(seg string) string {
	v := seg
	for round := 0; ; round++ {
		if strings.Contains(v, `\`) {
			return "the path has a backslash"
		}
		lv := strings.ToLower(v)
		switch {
		case strings.Contains(lv, "%2f"):
			return "the path has an encoded slash"
		case strings.Contains(lv, "%5c"):
			return "the path has an encoded backslash"
		case strings.Contains(lv, "%3b"):
			return "the path has an encoded ;"
		}
		if round > 0 && strings.Contains(v, "#") {
			// Decoded once or more: an app or proxy that decodes again, or
			// a router that takes the decoded path for a URL, ends the path
			// there, where the guard's rules saw more.
			return "the path has an encoded #"
		}
		name, _, _ := strings.Cut(v, ";")
		if name == "." || name == ".." {
			return "the path has a dot segment"
		}
		if strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return "the path has an encoded control character"
		}
		if overlongUTF8(v) {
			return "the path has an overlong UTF-8 sequence"
		}
		if round == maxDecodes {
			return ""
		}
		d := lenientUnescape(v)
		if d == v {
			return "" // nothing (more) to decode
		}
		v = d
	}
}

// lenientUnescape decodes every valid %XX escape of s and keeps a "%" that
// does not start one, as lenient decoders do: "%252e;%25zz" decodes to
// "%2e;%zz" and then to ".;%zz", where a strict decoder stops at "%zz".
func lenientUnescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && ishex(s[i+1]) && ishex(s[i+2]) {
			b = append(b, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// overlongUTF8 reports an overlong UTF-8 sequence (%c0%ae for ".", %c0%af
// for "/", %e0%80%ae, …): never valid UTF-8, but old or lenient decoders
// read them as the ASCII character they spell.
func overlongUTF8(s string) bool {
	for i := 0; i+1 < len(s); i++ {
		c, n := s[i], s[i+1]
		switch {
		case (c == 0xc0 || c == 0xc1) && n&0xc0 == 0x80,
			c == 0xe0 && 0x80 <= n && n <= 0x9f,
			c == 0xf0 && 0x80 <= n && n <= 0x8f:
			return true
		}
	}
	return false
}

// decodings are the path decoded once more, up to maxDecodes times in all
// (leniently), as an app or a front proxy that decodes more than once
// reads it; the first decoding (r.URL.Path) is not included.
func decodings(raw string) []string {
	var out []string
	p := lenientUnescape(raw)
	for range maxDecodes - 1 {
		d := lenientUnescape(p)
		if d == p {
			break
		}
		out = append(out, d)
		p = d
	}
	return out
}

// stripParams removes the ";" parameters from every segment of a decoded
// path: the path as a servlet container reads it.
func stripParams(p string) string {
	if !strings.Contains(p, ";") {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	return strings.Join(segs, "/")
}
