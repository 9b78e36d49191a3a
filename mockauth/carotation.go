package mockauth

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// caSet is a connector's CAs: the one that signs new certificates and every
// one the gateway accepts client certificates from (the issuer among them).
type caSet struct {
	issuer  *authority
	trusted []*authority
}

func (c *connectorCA) issuer() *authority { return c.cas.Load().issuer }

// trusts reports whether root is one of the connector's trusted CAs.
func (c *connectorCA) trusts(root *x509.Certificate) bool {
	for _, a := range c.cas.Load().trusted {
		if a.cert.Equal(root) {
			return true
		}
	}
	return false
}

// connectorPool is every CA the gateway trusts now (both connectors).
func (s *Server) connectorPool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range []*connectorCA{s.central, s.runtime} {
		for _, a := range c.cas.Load().trusted {
			p.AddCert(a.cert)
		}
	}
	return p
}

// ErrCARotation is returned by the connector CA rotation methods when the
// mock was started without Options.ConnectorCARotation, or when a step
// does not apply (nothing to switch to, nothing to remove).
var ErrCARotation = errors.New("mockauth: connector CA rotation")

// ConnectorCAStep is one step of a connector CA rotation, in the order a
// real rotation takes them.
type ConnectorCAStep string

const (
	// CAAdd creates a new CA that the gateway trusts beside the current
	// ones; certificates are still issued by the old one.
	CAAdd ConnectorCAStep = "add"
	// CASwitch makes the newest trusted CA the issuer of new certificates
	// (pairing and renewal); the old one stays trusted.
	CASwitch ConnectorCAStep = "switch"
	// CARemoveOld drops every CA but the issuer: certificates the old CA
	// issued no longer authenticate at the gateway.
	CARemoveOld ConnectorCAStep = "remove-old"
)

// RotateConnectorCA applies one step of a rotation of the central
// connector's CA (in a two-phase setup the runtime connector keeps its
// own). It needs Options.ConnectorCARotation.
func (s *Server) RotateConnectorCA(step ConnectorCAStep) error {
	if !s.caRotation {
		return fmt.Errorf("%w: not enabled (Options.ConnectorCARotation)", ErrCARotation)
	}
	s.caMu.Lock()
	defer s.caMu.Unlock()
	c := s.central
	cur := c.cas.Load()
	next := &caSet{issuer: cur.issuer, trusted: slices.Clone(cur.trusted)}
	switch step {
	case CAAdd:
		a, err := newConnectorAuthority(fmt.Sprintf("mockauth central connector CA %d", s.caGeneration+1), s.now(), c.ecdsa)
		if err != nil {
			return err
		}
		s.caGeneration++
		next.trusted = append(next.trusted, a)
	case CASwitch:
		newest := next.trusted[len(next.trusted)-1]
		if newest == cur.issuer {
			return fmt.Errorf("%w: no new CA to switch to (add one first)", ErrCARotation)
		}
		next.issuer = newest
	case CARemoveOld:
		if len(next.trusted) == 1 {
			return fmt.Errorf("%w: only the issuer is trusted", ErrCARotation)
		}
		next.trusted = []*authority{cur.issuer}
	default:
		return fmt.Errorf("%w: unknown step %q (want add, switch or remove-old)", ErrCARotation, step)
	}
	c.cas.Store(next)
	return nil
}

// ConnectorCAsPEM returns every CA the central connector's gateway trusts
// now, the issuer first: what an upstream that accepts the connector's
// client certificates should trust during a rotation.
func (s *Server) ConnectorCAsPEM() []byte {
	cur := s.central.cas.Load()
	out := slices.Clone(cur.issuer.pem)
	for _, a := range cur.trusted {
		if a != cur.issuer {
			out = append(out, a.pem...)
		}
	}
	return out
}

// caRotationAdmin serves POST /mock/connector-ca {"step": "add" | "switch"
// | "remove-old"} → {"trusted": PEM} when rotation is enabled.
func (s *Server) caRotationAdmin(mux *http.ServeMux) {
	if !s.caRotation {
		return
	}
	mux.HandleFunc("POST /mock/connector-ca", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Step string `json:"step"`
		}
		if err := decodeStrict(r, &req); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		if err := s.RotateConnectorCA(ConnectorCAStep(strings.TrimSpace(req.Step))); err != nil {
			adminError(w, http.StatusConflict, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"trusted": string(s.ConnectorCAsPEM())})
	})
}
