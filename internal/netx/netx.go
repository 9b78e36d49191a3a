// Package netx holds the network plumbing shared by credbroker's commands:
// a dial override that resolves chosen host names to fixed addresses (like
// curl's --resolve), with names under ".localhost" going to loopback as
// RFC 6761 reserves them.
package netx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Rule maps a host name pattern to an IP address. Pattern is an exact host
// name ("auth.example.com") or a wildcard for every name below a domain
// ("*.example.com", which does not match "example.com" itself).
type Rule struct {
	Pattern string
	Addr    netip.Addr
}

// ParseRule parses "PATTERN=ADDR", for example "*.mock.test=127.0.0.1".
func ParseRule(s string) (Rule, error) {
	pat, addr, ok := strings.Cut(strings.TrimSpace(s), "=")
	if !ok || pat == "" || addr == "" {
		return Rule{}, fmt.Errorf("resolve rule %q: want PATTERN=ADDR, for example *.example.test=127.0.0.1", s)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return Rule{}, fmt.Errorf("resolve rule %q: %q is not an IP address", s, addr)
	}
	pat = strings.ToLower(strings.TrimSuffix(pat, "."))
	if strings.Contains(strings.TrimPrefix(pat, "*."), "*") {
		return Rule{}, fmt.Errorf("resolve rule %q: a wildcard is allowed only as the first label (*.domain)", s)
	}
	return Rule{Pattern: pat, Addr: a}, nil
}

// ParseRules parses every rule; the error names the first bad one.
func ParseRules(list []string) ([]Rule, error) {
	var rules []Rule
	for _, s := range list {
		if strings.TrimSpace(s) == "" {
			continue
		}
		r, err := ParseRule(s)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

func (r Rule) match(host string) bool {
	if suffix, ok := strings.CutPrefix(r.Pattern, "*"); ok {
		return strings.HasSuffix(host, suffix) && len(host) > len(suffix)
	}
	return host == r.Pattern
}

// Loopback resolves "localhost" and every name under ".localhost" to
// 127.0.0.1 (RFC 6761, section 6.3). It is always consulted after the
// configured rules.
var Loopback = Rule{Pattern: "*.localhost", Addr: netip.MustParseAddr("127.0.0.1")}

// mockPort443 are the addresses of `credbroker mock` in port-443 mode: each
// host role listens on port 443 of its own loopback address, so that its
// URLs carry no port. Names under these domains (the domain itself and every
// name below it) dialed on port 443 go there; on any other port they go to
// Loopback like every .localhost name. mockauth.Port443Addr is the mock's
// side of this table; a test in cmd/credbroker keeps the two equal.
var mockPort443 = []struct {
	domain string
	exact  bool // only the name itself, not the names below it
	addr   netip.Addr
}{
	{"authentication.cert.localhost", false, netip.MustParseAddr("127.0.0.3")},
	{"authentication.localhost", false, netip.MustParseAddr("127.0.0.2")},
	{"accounts.localhost", false, netip.MustParseAddr("127.0.0.2")},
	{"connector.localhost", true, netip.MustParseAddr("127.0.0.4")},
	{"gateway.localhost", true, netip.MustParseAddr("127.0.0.5")},
	{"runtime-connector.localhost", true, netip.MustParseAddr("127.0.0.6")},
}

// MockPort443Addr returns the loopback address of a host name of
// `credbroker mock` in port-443 mode, and false for any other name.
func MockPort443Addr(host string) (netip.Addr, bool) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	for _, m := range mockPort443 {
		if h == m.domain || !m.exact && strings.HasSuffix(h, "."+m.domain) {
			return m.addr, true
		}
	}
	return netip.Addr{}, false
}

// Resolver rewrites the host of a dial address by the first matching rule.
// The zero value only applies Loopback. It is safe for concurrent use.
type Resolver struct {
	Rules []Rule
}

// Lookup returns the address for host, and false when no rule matches.
func (r *Resolver) Lookup(host string) (netip.Addr, bool) {
	if a, ok := r.ruleLookup(host); ok {
		return a, true
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || Loopback.match(h) {
		return Loopback.Addr, true
	}
	return netip.Addr{}, false
}

// ruleLookup returns the address of the first configured rule matching host.
func (r *Resolver) ruleLookup(host string) (netip.Addr, bool) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	for _, rule := range r.Rules {
		if rule.match(h) {
			return rule.Addr, true
		}
	}
	return netip.Addr{}, false
}

// Rewrite returns address ("host:port") with the host replaced when a rule
// matches. Addresses without a port are returned unchanged. A host name of
// `credbroker mock` on port 443 that no configured rule matches goes to the
// mock's address for it (MockPort443Addr), not to 127.0.0.1.
func (r *Resolver) Rewrite(address string) string {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return address
	}
	if a, ok := r.ruleLookup(host); ok {
		return net.JoinHostPort(a.String(), port)
	}
	if a, ok := MockPort443Addr(host); ok && port == "443" {
		return net.JoinHostPort(a.String(), port)
	}
	if a, ok := r.Lookup(host); ok {
		return net.JoinHostPort(a.String(), port)
	}
	return address
}

// Dialer returns a DialContext for http.Transport that applies the rules.
// TLS still verifies the original host name, because the transport passes
// the name, not the rewritten address, to the TLS handshake.
func (r *Resolver) Dialer(d *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		return d.DialContext(ctx, network, r.Rewrite(address))
	}
}

// LoopbackHost reports whether host (a URL's Hostname(): no port, no
// brackets) names this machine: "localhost" and names under ".localhost"
// (RFC 6761 reserves them for loopback and Resolver sends them there), the
// addresses 127.0.0.0/8 and ::1 (also IPv4-mapped). It is the one test of
// "loopback" for every URL credbroker sends a credential to.
func LoopbackHost(host string) bool {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Unmap().IsLoopback()
}

// ErrPlainHTTP is wrapped by CheckCredentialURL's error for an http:// URL
// to a host other than loopback.
var ErrPlainHTTP = errors.New("plain http:// to a host other than loopback would send credentials in clear; want https://")

// CheckCredentialURL checks the scheme of a URL that a credential travels
// to (a token, cert or connector endpoint): https://, or http:// to a
// loopback host (LoopbackHost) for local tests and mocks. Any other scheme,
// or http:// to any other host, is an error; the error never repeats the
// URL (it may carry a one-time token).
func CheckCredentialURL(u *url.URL) error {
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if LoopbackHost(u.Hostname()) {
			return nil
		}
		return ErrPlainHTTP
	}
	return fmt.Errorf("scheme %q: want https://", u.Scheme)
}

// IsDNSLabel reports whether s is one DNS label (RFC 1123): 1 to 63
// letters, digits and hyphens, not starting or ending with a hyphen. A
// tenant's subdomain is one: it replaces the first label of a token URL
// and names the tenant to the Destination service.
func IsDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > MaxDNSLabel || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// MaxDNSLabel is the longest DNS label.
const MaxDNSLabel = 63
