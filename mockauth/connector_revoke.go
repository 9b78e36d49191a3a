package mockauth

import (
	"strings"
)

// RevokeSHA256 revokes the connector certificate with the given SHA-256
// fingerprint (hex of the DER, as the Kyma connector identifies
// certificates): renewal refuses it from now on (and, with
// Options.StrictRevocation, every mTLS endpoint).
func (s *Server) RevokeSHA256(sha256Hex string) error {
	fp := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(sha256Hex), ":", ""))
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.issued {
		if c.sha256 == fp {
			s.revoked[fp] = true
			s.stats.Revocations++
			return nil
		}
	}
	return ErrUnknownCertificate
}

// Revoke revokes every connector certificate with the given decimal
// serial. Serials are constant (2) as in the Kyma connector unless
// Options.UniqueSerials, so without it this revokes every certificate
// issued so far: use RevokeSHA256.
func (s *Server) Revoke(serial string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	found := false
	for _, c := range s.issued {
		if c.serial == serial {
			s.revoked[c.sha256] = true
			found = true
		}
	}
	if !found {
		return ErrUnknownSerial
	}
	s.stats.Revocations++
	return nil
}

// Issued lists the connector certificates signed so far, oldest first.
func (s *Server) Issued() []IssuedCert {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]IssuedCert, 0, len(s.issued))
	for _, c := range s.issued {
		out = append(out, IssuedCert{
			Serial: c.serial, SHA256: c.sha256, Application: c.application, Subject: c.subject, Runtime: c.conn.runtime,
			Renewal: c.renewal, NotBefore: c.notBefore, NotAfter: c.notAfter, Revoked: s.revoked[c.sha256], CSR: c.csr,
		})
	}
	return out
}
