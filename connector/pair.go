package connector

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/credbroker/credbroker/internal/pemx"
)

// API holds the URLs the connector announces when a one-time token is
// redeemed ("api" of the signing-request info).
type API struct {
	MetadataURL     string `json:"metadataUrl,omitempty"`
	EventsURL       string `json:"eventsUrl,omitempty"`
	EventsInfoURL   string `json:"eventsInfoUrl,omitempty"`
	InfoURL         string `json:"infoUrl,omitempty"`
	CertificatesURL string `json:"certificatesUrl,omitempty"`
}

// CertificateInfo describes the certificate the connector will issue.
type CertificateInfo struct {
	Subject      string `json:"subject"`
	Extensions   string `json:"extensions,omitempty"`
	KeyAlgorithm string `json:"key-algorithm,omitempty"`
}

// SigningRequestInfo is the answer to GET <one-time token URL>. CSRURL
// carries a fresh one-time token: never log it.
type SigningRequestInfo struct {
	CSRURL      string          `json:"csrUrl"`
	API         API             `json:"api"`
	Certificate CertificateInfo `json:"certificate"`
}

// Certificate is a key with the certificate chain the connector issued for
// it and the connector's CA.
type Certificate struct {
	Key      crypto.Signer
	KeyPEM   []byte              // PKCS#8
	Chain    []*x509.Certificate // the issued certificate first
	ChainPEM []byte              // Chain in PEM, as the connector sent it (its "crt")
	CA       []*x509.Certificate
	CAPEM    []byte
}

// Leaf returns the issued certificate.
func (c *Certificate) Leaf() *x509.Certificate { return c.Chain[0] }

// TLSCertificate returns the certificate for a tls.Config.
func (c *Certificate) TLSCertificate() tls.Certificate {
	t := tls.Certificate{PrivateKey: c.Key, Leaf: c.Chain[0]}
	for _, cert := range c.Chain {
		t.Certificate = append(t.Certificate, cert.Raw)
	}
	return t
}

// CAPool returns the connector's CA as a pool.
func (c *Certificate) CAPool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, ca := range c.CA {
		p.AddCert(ca)
	}
	return p
}

// Pairing is the result of a successful pairing.
type Pairing struct {
	Certificate
	// Subject is the subject the connector asked for, in its order.
	Subject Subject
	// API holds the URLs the connector announced.
	API API
	// KeyAlgorithm is the connector's "key-algorithm" (informational).
	KeyAlgorithm string
	// TokenURL is the one-time token URL without its query (no token).
	TokenURL string
}

type csrRequest struct {
	CSR string `json:"csr"`
}

type crtResponse struct {
	CRT       string `json:"crt"`
	ClientCRT string `json:"clientCrt"`
	CACRT     string `json:"caCrt"`
}

// Pair redeems a one-time token URL: it reads the signing-request info,
// generates a key, sends a CSR with exactly the announced subject and checks
// what comes back (the chain verifies against the CA sent along, the
// certificate matches the key and the subject). The token is never retried
// once the connector may have received it; ErrTokenInvalid means a new
// one-time token is needed.
func (c *Client) Pair(ctx context.Context, tokenURL string) (*Pairing, error) {
	if _, err := checkURL("one-time token URL", tokenURL); err != nil {
		return nil, err
	}
	var info SigningRequestInfo
	if err := c.do(ctx, call{op: opPair, method: http.MethodGet, url: tokenURL, client: c.plain, oneShot: true, wantCode: []int{200}}, &info); err != nil {
		return nil, err
	}
	red := RedactURL(tokenURL)
	if _, err := checkURL("csrUrl", info.CSRURL); err != nil {
		return nil, fmt.Errorf("%w: pair %s: %v", ErrInvalidResponse, red, err)
	}
	subject, err := ParseSubject(info.Certificate.Subject)
	if err != nil {
		return nil, fmt.Errorf("%w: pair %s: certificate.subject: %v", ErrInvalidResponse, red, err)
	}
	kt := c.keyType
	if kt == "" {
		if k, err := ParseKeyType(info.Certificate.KeyAlgorithm); err == nil {
			kt = k
		} else {
			kt = RSA2048
		}
	}
	mismatch := keyMismatch(kt, info.Certificate.KeyAlgorithm)
	if mismatch {
		// The Kyma connector signs with its CA's key using the CSR's
		// signature algorithm: an ECDSA CSR fails (HTTP 500) against an RSA CA.
		c.log.Warn("connector: the key type differs from the connector's key-algorithm; the connector may refuse the CSR",
			"url", red, "key_type", string(kt), "key_algorithm", info.Certificate.KeyAlgorithm)
	}
	c.log.Info("connector pairing", "url", red, "subject", subject.String(), "key_type", string(kt))
	cert, err := c.requestCertificate(ctx, opCSR, info.CSRURL, c.plain, true, subject, kt)
	var ce *Error
	if err != nil && errors.As(err, &ce) && c.rsaFallback && kt == ECDSAP256 && ce.StatusCode >= 500 {
		// The connector answered, so by its rules the CSR token is unspent
		// (it is spent only on 200/201): the same csrUrl takes an RSA CSR.
		c.log.Warn("connector refused the ECDSA CSR; retrying the same CSR token with an RSA 2048 key",
			"url", RedactURL(info.CSRURL), "status", ce.StatusCode, "error", ce.Message)
		kt = RSA2048
		cert, err = c.requestCertificate(ctx, opCSR, info.CSRURL, c.plain, true, subject, kt)
	}
	if err != nil {
		if errors.As(err, &ce) && !errors.Is(err, ErrTokenInvalid) {
			return nil, &CSRError{Err: err, KeyType: kt, KeyAlgorithm: info.Certificate.KeyAlgorithm, KeyMismatch: mismatch || (kt == ECDSAP256 && ce.StatusCode >= 500)}
		}
		return nil, err
	}
	return &Pairing{
		Certificate:  *cert,
		Subject:      subject,
		API:          info.API,
		KeyAlgorithm: info.Certificate.KeyAlgorithm,
		TokenURL:     red,
	}, nil
}

// requestCertificate generates a key, posts a CSR to u and verifies the
// answer.
func (c *Client) requestCertificate(ctx context.Context, op, u string, hc *http.Client, oneShot bool, subject Subject, kt KeyType) (*Certificate, error) {
	key, err := newKey(kt)
	if err != nil {
		return nil, err
	}
	csrPEM, err := newCSR(subject, key)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(csrRequest{CSR: base64.StdEncoding.EncodeToString(csrPEM)})
	var resp crtResponse
	if err := c.do(ctx, call{op: op, method: http.MethodPost, url: u, body: body, client: hc, oneShot: oneShot, wantCode: []int{201, 200}}, &resp); err != nil {
		return nil, err
	}
	cert, err := c.verifyIssued(resp, key, subject)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, RedactURL(u), err)
	}
	return cert, nil
}

// decodeB64PEM decodes a base64 field holding PEM certificates. Plain PEM is
// accepted too.
func decodeB64PEM(field, v string) ([]byte, []*x509.Certificate, error) {
	v = strings.TrimSpace(v)
	var data []byte
	if strings.HasPrefix(v, "-----BEGIN") {
		data = []byte(v)
	} else {
		d, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %q is not base64: %v", ErrInvalidResponse, field, err)
		}
		data = d
	}
	certs, err := parseCerts(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %q: %v", ErrInvalidResponse, field, err)
	}
	return pemx.EncodeCertificates(certs), certs, nil
}

func (c *Client) verifyIssued(resp crtResponse, key crypto.Signer, subject Subject) (*Certificate, error) {
	crt := resp.CRT
	field := "crt"
	if strings.TrimSpace(crt) == "" {
		crt, field = resp.ClientCRT, "clientCrt"
	}
	if strings.TrimSpace(crt) == "" {
		return nil, fmt.Errorf("%w: no \"crt\" and no \"clientCrt\" in the answer", ErrInvalidResponse)
	}
	chainPEM, chain, err := decodeB64PEM(field, crt)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(resp.ClientCRT) != "" && field == "crt" {
		_, client, err := decodeB64PEM("clientCrt", resp.ClientCRT)
		if err != nil {
			return nil, err
		}
		if !client[0].Equal(chain[0]) {
			return nil, fmt.Errorf("%w: \"clientCrt\" is not the first certificate of \"crt\"", ErrInvalidResponse)
		}
	}
	if strings.TrimSpace(resp.CACRT) == "" {
		return nil, fmt.Errorf("%w: no \"caCrt\" in the answer", ErrInvalidResponse)
	}
	caPEM, cas, err := decodeB64PEM("caCrt", resp.CACRT)
	if err != nil {
		return nil, err
	}
	leaf := chain[0]
	if !pemx.KeyMatches(leaf, key) {
		return nil, fmt.Errorf("%w: the issued certificate does not match the key sent in the CSR", ErrInvalidResponse)
	}
	if !subject.Matches(leaf.RawSubject) {
		return nil, fmt.Errorf("%w: issued for %q, requested %q", ErrSubjectMismatch, leaf.Subject.String(), subject.String())
	}
	if err := verifyChain(chain, cas, c.now()); err != nil {
		return nil, err
	}
	keyPEM, err := pemx.EncodeKey(key)
	if err != nil {
		return nil, fmt.Errorf("connector: %w", err)
	}
	return &Certificate{Key: key, KeyPEM: keyPEM, Chain: chain, ChainPEM: chainPEM, CA: cas, CAPEM: caPEM}, nil
}

// verifyChain checks that chain[0] chains to one of cas (through chain[1:])
// at now, for client authentication.
func verifyChain(chain, cas []*x509.Certificate, now time.Time) error {
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("%w: the issued certificate does not verify against \"caCrt\": %v", ErrInvalidResponse, err)
	}
	return nil
}

// keyMismatch reports whether a key of type kt differs in family (RSA or
// ECDSA) from the connector's announced key-algorithm; an unknown or empty
// announcement is no mismatch.
func keyMismatch(kt KeyType, announced string) bool {
	ak, err := ParseKeyType(announced)
	if err != nil {
		return false
	}
	return (kt == ECDSAP256) != (ak == ECDSAP256)
}

// CSRError is a CSR the connector answered with an error while pairing. The
// one-time token URL that was given is used up (the connector answered its
// info call), but the CSR token of its csrUrl is not: a Kyma connector spends
// a token only on a 200 or 201 answer. That CSR token lives only inside the
// failed call, so pairing again needs a new one-time token unless the
// client retries at once (WithRSAFallback does for ECDSA keys).
type CSRError struct {
	Err error
	// KeyType is the key that was sent; KeyAlgorithm the connector's
	// announced "key-algorithm".
	KeyType      KeyType
	KeyAlgorithm string
	// KeyMismatch is true when the key type is the likely cause: it
	// differs from the announced algorithm, or an ECDSA CSR got a 5xx (a
	// connector with an RSA CA cannot sign it).
	KeyMismatch bool
}

func (e *CSRError) Error() string {
	msg := e.Err.Error() + "; the one-time token URL is used up (its info call succeeded) and the connector did not spend the CSR token, but that token is known only to this call: pairing again needs a new one-time token"
	if e.KeyMismatch {
		alg := e.KeyAlgorithm
		if alg == "" {
			alg = "none"
		}
		msg += fmt.Sprintf("; the key type %s is the likely cause (announced key-algorithm: %s; a connector whose CA signs with RSA refuses ECDSA CSRs): pair with an RSA key", e.KeyType, alg)
	}
	return msg
}

func (e *CSRError) Unwrap() error { return e.Err }
