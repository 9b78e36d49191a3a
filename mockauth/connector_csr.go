package mockauth

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"slices"
	"time"
)

type csrBody struct {
	CSR string `json:"csr"`
}

// parseCSRBody decodes {"csr": base64(PEM CSR)} and checks the CSR's
// signature, with the Kyma connector's messages and codes (every failure
// here is a 500 there).
func parseCSRBody(raw []byte) (*x509.CertificateRequest, *connectorError) {
	var body csrBody
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, connErr(http.StatusInternalServerError, "csr_invalid", "Error while unmarshalling request body: %s", err)
	}
	pemBytes, err := base64.StdEncoding.DecodeString(body.CSR)
	if err != nil {
		return nil, connErr(http.StatusInternalServerError, "csr_invalid", "There was an error while parsing the base64 content. An incorrect value was provided.")
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, connErr(http.StatusInternalServerError, "csr_invalid", "Error while decoding pem block.")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, connErr(http.StatusInternalServerError, "csr_invalid", "Error while parsing CSR: %s", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, connErr(http.StatusInternalServerError, "csr_invalid", "CSR signature invalid: %s", err)
	}
	return csr, nil
}

// connectorSerial is the serial the Kyma connector gives every certificate.
var connectorSerial = big.NewInt(2)

func (s *Server) signCSR(r *http.Request, c *connectorCA, app string, renewal bool) (map[string]string, *connectorError) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		return nil, connErr(http.StatusInternalServerError, "csr_invalid", "Error while reading request body: %s", err)
	}
	csr, e := parseCSRBody(raw)
	if e != nil {
		return nil, e
	}
	if e := checkSubject(csr.Subject, c.subject(app)); e != nil {
		return nil, e
	}
	now := s.now()
	s.mu.Lock()
	ttl := s.certTTL
	s.mu.Unlock()
	// As the Kyma connector: valid from the second of issue for the TTL,
	// serial 2, signed with the CSR's signature algorithm (which an RSA CA
	// cannot do for an ECDSA CSR).
	notBefore := now.Truncate(time.Second)
	tmpl := &x509.Certificate{
		Subject:     c.subject(app),
		NotBefore:   notBefore,
		NotAfter:    ceilSecond(now.Add(ttl)),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if !s.uniqueSerials {
		tmpl.SerialNumber = new(big.Int).Set(connectorSerial)
	}
	if !c.ecdsa {
		tmpl.SignatureAlgorithm = csr.SignatureAlgorithm
	}
	issuer := c.issuer()
	cert, err := issuer.sign(tmpl, csr.PublicKey)
	if err != nil {
		return nil, connErr(http.StatusInternalServerError, "sign_failed", "Error while creating certificate: %s", err)
	}
	s.mu.Lock()
	s.issued = append(s.issued, &issuedCert{
		serial: cert.SerialNumber.String(), sha256: fingerprint(cert.Raw), application: app, subject: c.subjectString(app), conn: c,
		notBefore: cert.NotBefore, notAfter: cert.NotAfter, renewal: renewal, csr: csr.Raw,
	})
	s.mu.Unlock()
	if a := answerOf(r); a != "" {
		return s.malformedCertificate(a, issuer, csr, tmpl, cert.Raw)
	}
	leaf := pemCert(cert.Raw)
	enc := base64.StdEncoding.EncodeToString
	return map[string]string{
		"crt":       enc(append(slices.Clone(leaf), issuer.pem...)),
		"clientCrt": enc(leaf),
		"caCrt":     enc(issuer.pem),
	}, nil
}

// ceilSecond rounds t up to a whole second: certificates store whole
// seconds, and a certificate must live at least its TTL.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); r.Before(t) {
		return r.Add(time.Second)
	}
	return t
}
