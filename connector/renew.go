package connector

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
)

// RenewCertificate asks the connector for a new certificate (mTLS POST to
// urls.renewCertUrl presenting current) with a fresh key and a CSR carrying
// the subject of current's leaf. The new key has the algorithm of current's
// key. The old certificate stays valid until it expires.
func (c *Client) RenewCertificate(ctx context.Context, renewURL string, current tls.Certificate) (*Certificate, error) {
	leaf, err := leafOf(current)
	if err != nil {
		return nil, err
	}
	subject, err := SubjectOf(leaf)
	if err != nil {
		return nil, err
	}
	kt, ok := keyTypeOf(current.PrivateKey)
	if !ok {
		kt = c.keyType
	}
	// A connection pool of its own that presents exactly current; renewals
	// are rare, so it is closed right after.
	hc := c.httpClient(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &current, nil })
	defer hc.CloseIdleConnections()
	c.log.Info("connector renewing", "url", RedactURL(renewURL), "subject", subject.String(), "serial", leaf.SerialNumber.String(), "sha256", Fingerprint(leaf))
	return c.requestCertificate(ctx, opRenew, renewURL, hc, false, subject, kt)
}

func leafOf(cert tls.Certificate) (*x509.Certificate, error) {
	if cert.Leaf != nil {
		return cert.Leaf, nil
	}
	if len(cert.Certificate) == 0 {
		return nil, fmt.Errorf("%w: no current certificate", ErrInvalidInput)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%w: current certificate: %v", ErrInvalidInput, err)
	}
	return leaf, nil
}

// SubjectOf returns the subject of a certificate in its encoded order.
func SubjectOf(cert *x509.Certificate) (Subject, error) {
	var n = cert.Subject.ToRDNSequence()
	var seq []RDN
	raw, err := rdnSequence(cert.RawSubject)
	if err == nil {
		n = raw
	}
	for _, rdn := range n {
		var r RDN
		for _, a := range rdn {
			v, ok := a.Value.(string)
			if !ok {
				return nil, fmt.Errorf("%w: subject attribute %s is not a string", ErrInvalidInput, a.Type)
			}
			r = append(r, Attribute{Type: typeName(a.Type.String()), Value: v})
		}
		seq = append(seq, r)
	}
	if len(seq) == 0 {
		return nil, fmt.Errorf("%w: the certificate has an empty subject", ErrInvalidInput)
	}
	return seq, nil
}

// typeName maps an OID back to its short name when it has one.
func typeName(oid string) string {
	for name, o := range attrOIDs {
		if o.String() == oid {
			return name
		}
	}
	return oid
}

// Renewer renews a certificate through a connector's renewCertUrl. Its Renew
// method is the one certwatch calls. It is safe for concurrent use; SetURL
// changes the URL for later renewals (for example when the heartbeat sees a
// new renewCertUrl).
type Renewer struct {
	client *Client
	url    atomic.Pointer[string]
}

// NewRenewer returns a Renewer that posts to renewURL.
func NewRenewer(c *Client, renewURL string) (*Renewer, error) {
	if _, err := checkURL("renewCertUrl", renewURL); err != nil {
		return nil, err
	}
	r := &Renewer{client: c}
	r.url.Store(&renewURL)
	return r, nil
}

// SetURL replaces the renewCertUrl.
func (r *Renewer) SetURL(renewURL string) error {
	if _, err := checkURL("renewCertUrl", renewURL); err != nil {
		return err
	}
	r.url.Store(&renewURL)
	return nil
}

// URL returns the renewCertUrl in use.
func (r *Renewer) URL() string { return *r.url.Load() }

// Renew generates a fresh key, sends a CSR with current's subject to the
// renewCertUrl presenting current over mTLS, and returns the new chain PEM,
// the new key as PKCS#8 PEM and the CA PEM. Errors match ErrRevoked,
// ErrUnauthorized, ErrSubjectMismatch or are *Error / network errors; those
// after which only a new one-time token helps have a NeedsToken() method
// that returns true.
func (r *Renewer) Renew(ctx context.Context, current tls.Certificate) (certPEM, keyPEM, caPEM []byte, err error) {
	cert, err := r.client.RenewCertificate(ctx, r.URL(), current)
	if err != nil {
		return nil, nil, nil, err
	}
	return cert.ChainPEM, cert.KeyPEM, cert.CAPEM, nil
}
