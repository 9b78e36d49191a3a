package broker

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/internal/netx"
	"github.com/credbroker/credbroker/internal/trust"
)

// Network is how credbroker reaches servers: the roots that verify them
// (the system roots plus a CA file) and the dial overrides (resolve). Every
// command builds it with NewNetwork, once per configuration generation, and
// every client of the generation shares it: token clients, connector
// clients, the guard's key-set client and the proxy (it implements
// sidecar.Network). Immutable; safe for concurrent use.
type Network struct {
	roots    *x509.CertPool // nil: the system roots
	resolver *netx.Resolver
	key      string // a digest of the settings, part of pool keys
}

// NewNetwork reads caFile (when not "") once and parses the resolve rules
// PATTERN=ADDR. The CA file adds to the system roots; to trust it alone,
// point SSL_CERT_FILE at it. Errors are *NetworkError.
func NewNetwork(caFile string, resolve []string) (*Network, error) {
	rules, err := netx.ParseRules(resolve)
	if err != nil {
		return nil, &NetworkError{Field: "resolve", Err: err}
	}
	h := sha256.New()
	for _, r := range resolve {
		h.Write([]byte(r + "\n"))
	}
	n := &Network{resolver: &netx.Resolver{Rules: rules}}
	if caFile != "" {
		pemData, err := inputfile.Read(caFile)
		if err != nil {
			if u := errors.Unwrap(err); u != nil {
				err = u // the path is in the error's own field
			}
			return nil, &NetworkError{Field: "ca_file", Path: caFile, Err: err}
		}
		n.roots, err = trust.RootsFromPEM("", pemData)
		if err != nil {
			return nil, &NetworkError{Field: "ca_file", Path: caFile, Err: err}
		}
		h.Write([]byte{0})
		h.Write(pemData)
	}
	n.key = hex.EncodeToString(h.Sum(nil)[:8])
	return n, nil
}

// RootCAs returns the roots that verify servers; nil means the system roots.
func (n *Network) RootCAs() *x509.CertPool { return n.roots }

// Dialer returns a DialContext that applies the resolve rules and then
// dials with base (nil: a default dialer). TLS still verifies the name the
// caller asked for.
func (n *Network) Dialer(base *net.Dialer) func(ctx context.Context, network, address string) (net.Conn, error) {
	return n.resolver.Dialer(base)
}

// connectorClient is a connector client that dials and verifies as n.
func (n *Network) connectorClient(log *slog.Logger, extra ...connector.Option) (*connector.Client, error) {
	opts := []connector.Option{connector.WithDialContext(n.resolver.Dialer(nil)), connector.WithLogger(log)}
	if n.roots != nil {
		opts = append(opts, connector.WithRootCAs(n.roots))
	}
	return connector.New(append(opts, extra...)...)
}
