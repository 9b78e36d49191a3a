package mockauth

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Port443Mode says whether the mock serves its HTTPS hosts on port 443, so
// that url, certurl, uaadomain and the connector URLs carry no port — the
// only form every token client accepts: SAP's clients derive the key
// endpoint as https://{uaadomain}/token_keys (port 443), and some compare
// the host of a token's jku with uaadomain (a host never carries a port).
type Port443Mode int

const (
	// Port443Off serves every listener on a random port of Options.Host:
	// the URLs carry ports. The default of [Options], so that many mocks
	// can run in parallel (in-process tests).
	Port443Off Port443Mode = iota
	// Port443Auto serves on port 443 of the role addresses when the process
	// may bind them (root or CAP_NET_BIND_SERVICE, and no other mock holds
	// them), and falls back to Port443Off otherwise. The default of
	// `credbroker mock`.
	Port443Auto
	// Port443On serves on port 443 of the role addresses, or Start fails.
	Port443On
)

// ParsePort443Mode parses "auto", "on" or "off".
func ParsePort443Mode(s string) (Port443Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "off", "":
		return Port443Off, nil
	case "auto":
		return Port443Auto, nil
	case "on":
		return Port443On, nil
	}
	return Port443Off, fmt.Errorf("port-443 mode %q: want auto, on or off", s)
}

func (m Port443Mode) String() string {
	switch m {
	case Port443Auto:
		return "auto"
	case Port443On:
		return "on"
	}
	return "off"
}

// The loopback address of each host role in port-443 mode: each role has
// its own TLS configuration (client certificates required or not, which
// CAs), so each has its own address. On Linux all of 127.0.0.0/8 is
// loopback; elsewhere (macOS) only 127.0.0.1 is, binding fails and
// Port443Auto falls back to ports. internal/netx dials the same addresses
// for these names on port 443 (a test in cmd/credbroker keeps the two
// tables equal).
var (
	addrToken     = netip.MustParseAddr("127.0.0.2") // UAADomain, its tenants, IAS (the secret token listener)
	addrCert      = netip.MustParseAddr("127.0.0.3") // CertUAADomain and its tenants (mTLS token listener)
	addrConnector = netip.MustParseAddr("127.0.0.4") // connectorHost
	addrGateway   = netip.MustParseAddr("127.0.0.5") // gatewayHost
	addrRuntime   = netip.MustParseAddr("127.0.0.6") // runtimeHost (two-phase)
)

// Port443Addr returns the loopback address that serves host (a name the
// mock serves, any case, no port) in port-443 mode, and false for any other
// name.
func Port443Addr(host string) (netip.Addr, bool) {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	under := func(domain string) bool { return h == domain || strings.HasSuffix(h, "."+domain) }
	switch {
	case under(CertUAADomain):
		return addrCert, true
	case under(UAADomain), under(IASDomain):
		return addrToken, true
	case h == connectorHost:
		return addrConnector, true
	case h == gatewayHost:
		return addrGateway, true
	case h == runtimeHost:
		return addrRuntime, true
	}
	return netip.Addr{}, false
}

// HostAddr is one line of a hosts file: a host name the mock serves and the
// address that serves it.
type HostAddr struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
}

// HostAddrs returns every host name of [Server.Hosts] with the address that
// serves it: the role address in port-443 mode, the listen address
// otherwise. `credbroker mock --hosts-file` writes them; mock.json carries
// them as "resolve" (NAME=ADDR, credbroker's --resolve form).
func (s *Server) HostAddrs() []HostAddr {
	var out []HostAddr
	for _, n := range s.Hosts() {
		a := s.listenAddr
		if ip, ok := Port443Addr(n); ok && s.info.Port443 {
			a = ip.String() // the other hosts listen on random ports of the host
		}
		out = append(out, HostAddr{Name: n, Addr: a})
	}
	return out
}

// httpsURL is https://host[:port], without the port when it is 443.
func httpsURL(host string, port int) string {
	if port == 443 {
		return "https://" + host
	}
	return fmt.Sprintf("https://%s:%d", host, port)
}

// DialContext dials like net.Dialer, except that "localhost" and every name
// under ".localhost" go to loopback (RFC 6761), so that clients reach the
// mock's tenant hosts without touching /etc/hosts: a name the mock serves,
// on port 443, to its role address ([Port443Addr]), every other one to
// 127.0.0.1. TLS still verifies the name. Use it as
// http.Transport.DialContext.
func DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil && isLocalhostName(host) {
		ip := "127.0.0.1"
		if a, ok := Port443Addr(host); ok && port == "443" {
			ip = a.String()
		}
		addr = net.JoinHostPort(ip, port)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}
