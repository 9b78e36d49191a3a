package guard

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/internal/inputfile"
	"github.com/credbroker/credbroker/internal/pemx"
	"github.com/credbroker/credbroker/internal/trust"
)

// caMaterial is what one mtls rule verifies against: the CA bundle and the
// revocation list, loaded together and swapped atomically.
type caMaterial struct {
	roots   *x509.CertPool
	cas     []*x509.Certificate
	revoked map[string]map[string]bool // issuer (raw subject) → serial (decimal) → revoked
}

// caSource loads a rule's ca_file and crl_file, and keeps the last good
// material when a reload fails.
type caSource struct {
	caFile, crlFile string
	cur             atomic.Pointer[caMaterial]
}

func (s *caSource) files() []string {
	if s.crlFile == "" {
		return []string{s.caFile}
	}
	return []string{s.caFile, s.crlFile}
}

// load reads and validates both files, then swaps them in.
func (s *caSource) load(now time.Time) error {
	m, err := loadCAMaterial(s.caFile, s.crlFile, now)
	if err != nil {
		return err
	}
	s.cur.Store(m)
	return nil
}

func loadCAMaterial(caFile, crlFile string, now time.Time) (*caMaterial, error) {
	data, err := inputfile.Read(caFile)
	if err != nil {
		return nil, fmt.Errorf("ca_file: %w", err)
	}
	// One set of rules for every CA bundle: the guard's and the trust roots'.
	cas, err := trust.Bundle(caFile, data)
	if err != nil {
		return nil, fmt.Errorf("ca_file %w", err)
	}
	m := &caMaterial{roots: x509.NewCertPool(), cas: cas}
	for _, c := range cas {
		m.roots.AddCert(c)
	}
	if crlFile == "" {
		return m, nil
	}
	crlData, err := inputfile.Read(crlFile)
	if err != nil {
		return nil, fmt.Errorf("crl_file: %w", err)
	}
	m.revoked = map[string]map[string]bool{}
	blocks := [][]byte{}
	if bytes.Contains(crlData, []byte("-----BEGIN")) {
		blocks = pemx.Blocks(crlData, "X509 CRL")
		if len(blocks) == 0 {
			return nil, fmt.Errorf("crl_file %s: no PEM X509 CRL block", crlFile)
		}
	} else {
		blocks = append(blocks, crlData)
	}
	for i, der := range blocks {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("crl_file %s: list %d: %w", crlFile, i+1, err)
		}
		var signer *x509.Certificate
		for _, ca := range m.cas {
			if bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
				signer = ca
				break
			}
		}
		if signer == nil {
			return nil, fmt.Errorf("crl_file %s: list %d (issuer %s) is not signed by a CA of ca_file", crlFile, i+1, crl.Issuer)
		}
		set := m.revoked[string(crl.RawIssuer)]
		if set == nil {
			set = map[string]bool{}
			m.revoked[string(crl.RawIssuer)] = set
		}
		for _, e := range crl.RevokedCertificateEntries {
			set[e.SerialNumber.String()] = true
		}
	}
	return m, nil
}

func (m *caMaterial) isRevoked(issuer []byte, serial *big.Int) bool {
	if m.revoked == nil {
		return false
	}
	return m.revoked[string(issuer)][serial.String()]
}

// mtlsVerifier checks the client certificate of a request against a rule.
type mtlsVerifier struct {
	src      *caSource
	subjects []string
	sans     []string
	now      func() time.Time
}

var errNoMaterial = errors.New("CA bundle not loaded")

func mtlsRefusal(reason, detail string) *refusal {
	return &refusal{method: MethodMTLS, reason: reason, status: 403, detail: detail}
}

func (v *mtlsVerifier) verify(peer []*x509.Certificate) (*identity, *refusal) {
	m := v.src.cur.Load()
	if m == nil {
		return nil, mtlsRefusal(ReasonKeysUnavailable, errNoMaterial.Error())
	}
	leaf := peer[0]
	inter := x509.NewCertPool()
	for _, c := range peer[1:] {
		inter.AddCert(c)
	}
	now := v.now()
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: m.roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return nil, mtlsRefusal(ReasonCertExpired, fmt.Sprintf("client certificate %q (serial %s) is expired or not yet valid", leaf.Subject, leaf.SerialNumber))
		}
		return nil, mtlsRefusal(ReasonUntrustedCert, fmt.Sprintf("client certificate %q (issuer %q) does not chain to ca_file", leaf.Subject, leaf.Issuer))
	}
	// Revocation: every certificate of the chain except the root.
	for _, chain := range chains {
		for _, c := range chain[:len(chain)-1] {
			if m.isRevoked(c.RawIssuer, c.SerialNumber) {
				return nil, mtlsRefusal(ReasonRevoked, fmt.Sprintf("certificate %q serial %s is revoked", c.Subject, c.SerialNumber))
			}
		}
	}
	subject := leaf.Subject.String()
	if len(v.subjects) > 0 && !slices.Contains(v.subjects, subject) {
		return nil, mtlsRefusal(ReasonSubjectNotAllowed, fmt.Sprintf("subject %q not in the rule's subjects", subject))
	}
	if len(v.sans) > 0 && !sanAllowed(leaf, v.sans) {
		return nil, mtlsRefusal(ReasonSANNotAllowed, fmt.Sprintf("no SAN of %q in the rule's sans", subject))
	}
	return &identity{method: MethodMTLS, subject: subject, certSubject: subject}, nil
}

func sanAllowed(c *x509.Certificate, allow []string) bool {
	var names []string
	names = append(names, c.DNSNames...)
	names = append(names, c.EmailAddresses...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	for _, u := range c.URIs {
		names = append(names, u.String())
	}
	for _, n := range names {
		for _, a := range allow {
			if strings.EqualFold(n, a) {
				return true
			}
		}
	}
	return false
}
