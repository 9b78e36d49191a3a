package sidecar

import (
	"net/http"
	"net/netip"
	"strings"
)

// Reasons a loopback listener refuses a browser-shaped request.
const (
	// ReasonHostNotAllowed: the Host header names a DNS name other than
	// localhost or an allowed_hosts entry (DNS rebinding).
	ReasonHostNotAllowed = "host-not-allowed"
	// ReasonCrossSite: a browser marked the request Sec-Fetch-Site:
	// cross-site (or same-site, on the token API and admin).
	ReasonCrossSite = "cross-site"
	// ReasonOriginRefused: the request carries an Origin header where none
	// is accepted (token API, admin, routes with refuse_origin).
	ReasonOriginRefused = "origin-refused"
	// ReasonHopByHopCredential: the Connection header names Authorization,
	// which would remove the credential credbroker adds.
	ReasonHopByHopCredential = "hop-by-hop-credential"
)

// hostPolicy decides which Host header values a loopback listener serves:
// IP literals (kubelet probes and Prometheus use the pod IP; a browser
// page whose origin is an IP literal cannot rebind it), localhost, and the
// names of allowed_hosts. Any other DNS name is what a page of a DNS
// rebinding attack sends. Built once per configuration; allowed does not
// allocate.
type hostPolicy struct {
	exact    []string // names, as configured
	suffixes []string // ".example.com" for "*.example.com"
}

func newHostPolicy(allowed []string) *hostPolicy {
	p := &hostPolicy{}
	for _, a := range allowed {
		a = strings.TrimSuffix(a, ".")
		if rest, ok := strings.CutPrefix(a, "*."); ok {
			p.suffixes = append(p.suffixes, "."+rest)
		} else {
			p.exact = append(p.exact, a)
		}
	}
	return p
}

// allowed reports whether a request with this Host header may be served.
// An empty Host (HTTP/1.0) is allowed: no browser sends one.
func (p *hostPolicy) allowed(host string) bool {
	name, ok := hostOnly(host)
	if !ok {
		return false
	}
	if name == "" || name == "127.0.0.1" || name == "localhost" {
		return true // the common cases, without parsing (once per request)
	}
	if name[0] == '[' {
		_, err := netip.ParseAddr(name[1 : len(name)-1])
		return err == nil
	}
	if name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	if isIPv4Literal(name) {
		_, err := netip.ParseAddr(name)
		return err == nil
	}
	if strings.EqualFold(name, "localhost") {
		return true
	}
	for _, e := range p.exact {
		if strings.EqualFold(name, e) {
			return true
		}
	}
	for _, s := range p.suffixes {
		if len(name) > len(s) && strings.EqualFold(name[len(name)-len(s):], s) {
			return true
		}
	}
	return false
}

// hostOnly strips the port from a Host header value. ok is false for a
// value that is not host[:port] (an unterminated IPv6 literal, a bad port).
// A bracketed IPv6 literal keeps its brackets.
func hostOnly(host string) (string, bool) {
	if host != "" && host[0] == '[' {
		i := strings.IndexByte(host, ']')
		if i < 0 {
			return "", false
		}
		if rest := host[i+1:]; rest != "" && (rest[0] != ':' || !allDigits(rest[1:])) {
			return "", false
		}
		return host[:i+1], i > 1
	}
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		if !allDigits(host[i+1:]) || strings.IndexByte(host[:i], ':') >= 0 {
			return "", false
		}
		host = host[:i]
	}
	return host, true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isIPv4Literal reports whether s has the shape of a dotted IPv4 address
// (digits and dots only; no top-level domain is all digits).
func isIPv4Literal(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' && (c < '0' || c > '9') {
			return false
		}
	}
	return s != ""
}

// fetchSite returns the Sec-Fetch-Site header a browser sets ("" without).
func fetchSite(h http.Header) string {
	if v := h["Sec-Fetch-Site"]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// browserRefusal checks a request to the token API or admin: a Host that
// fails the policy, any Origin, or Sec-Fetch-Site cross-site or same-site.
// It returns the reason and message of a refusal, or "".
func (p *hostPolicy) browserRefusal(req *http.Request) (reason, msg string) {
	if !p.allowed(req.Host) {
		return ReasonHostNotAllowed, "the Host header names neither localhost, an IP address nor a name in allowed_hosts"
	}
	if _, ok := req.Header["Origin"]; ok {
		return ReasonOriginRefused, "requests carrying an Origin header (made by a web page) are refused here"
	}
	if s := fetchSite(req.Header); strings.EqualFold(s, "cross-site") || strings.EqualFold(s, "same-site") {
		return ReasonCrossSite, "a browser marked this request Sec-Fetch-Site: " + strings.ToLower(s) + "; refused"
	}
	return "", ""
}

// namesAuthorization reports whether a Connection header lists
// Authorization as a hop-by-hop field.
func namesAuthorization(conn []string) bool {
	for _, v := range conn {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(tok), "Authorization") {
				return true
			}
		}
	}
	return false
}

// validAllowedHost reports whether an allowed_hosts entry is a DNS name,
// optionally with a leading "*." (no port, no scheme, no IP literal needed).
func validAllowedHost(s string) bool {
	s = strings.TrimPrefix(s, "*.")
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
