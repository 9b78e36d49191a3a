package sidecar

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"

	"github.com/credbroker/credbroker/internal/netx"
	"github.com/credbroker/credbroker/internal/trust"
)

// Network is the trust and the dialling of the proxy's upstream
// connections. Whoever composes the sidecar builds it once per
// configuration generation and hands it over in Deps.Network, so the proxy
// reads neither ca_file nor resolve itself (package broker's *Network).
// Implementations are safe for concurrent use.
type Network interface {
	// RootCAs verify upstream servers; nil means the system roots.
	RootCAs() *x509.CertPool
	// Dialer returns a DialContext that applies the dial overrides and
	// dials with base.
	Dialer(base *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error)
}

// configNetwork is the Network of a config when Deps carry none: ca_file
// read by internal/trust (the system roots plus the file), resolve parsed
// by internal/netx.
type configNetwork struct {
	roots    *x509.CertPool
	resolver *netx.Resolver
}

func (n *configNetwork) RootCAs() *x509.CertPool { return n.roots }

func (n *configNetwork) Dialer(base *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error) {
	return n.resolver.Dialer(base)
}

// network returns deps.Network, or else builds one from cfg.
func (d Deps) network(cfg *Config) (Network, error) {
	if d.Network != nil {
		return d.Network, nil
	}
	roots, err := trust.Roots(cfg.CAFile)
	if err != nil {
		return nil, &ConfigError{Source: cfg.source, Line: cfg.line("ca_file"), Field: "ca_file", Err: fmt.Errorf("%w: %v", ErrInvalidValue, err)}
	}
	rules, err := netx.ParseRules(cfg.Resolve)
	if err != nil {
		return nil, &ConfigError{Source: cfg.source, Line: cfg.line("resolve"), Field: "resolve", Err: fmt.Errorf("%w: %v", ErrInvalidValue, err)}
	}
	return &configNetwork{roots: roots, resolver: &netx.Resolver{Rules: rules}}, nil
}
