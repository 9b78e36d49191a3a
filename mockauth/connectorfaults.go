package mockauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"slices"
	"time"
)

// Answers: malformed but well-formed-HTTP answers of the connector, set as
// Fault.Answer. Each names the one thing that is wrong, so that a client's
// check for it can be tested; everything else of the answer is right.
const (
	// On TargetCSR (pairing and renewal CSRs): the certificate answer.
	AnswerOtherKey        = "other-key"          // a certificate of the right CA and subject for another key
	AnswerOtherCA         = "other-ca"           // a certificate for the key from a CA the client does not know
	AnswerExpired         = "expired"            // a certificate that expired an hour ago
	AnswerOtherSubject    = "other-subject"      // a certificate for the key with CN "someone-else"
	AnswerCrtNotBase64    = "crt-not-base64"     // "crt" is not base64
	AnswerCrtNotPEM       = "crt-not-pem"        // "crt" is base64 of something that is not PEM
	AnswerNoCrt           = "no-crt"             // neither "crt" nor "clientCrt"
	AnswerNoCA            = "no-ca"              // no "caCrt"
	AnswerClientCrtDiffer = "client-crt-differs" // "clientCrt" is another certificate than the first of "crt"
	AnswerClientCrtOnly   = "client-crt-only"    // only "clientCrt" (no chain in "crt"), as some connectors answer
	// On TargetPairing (the signing-request info).
	AnswerBadSubject           = "bad-subject"            // certificate.subject does not parse ("O=Org,CN")
	AnswerAnnounceOtherSubject = "announce-other-subject" // announces O=Other; the CSR check still wants the real subject
	// On TargetInfo (the management info).
	AnswerOldRevokeURL = "old-revoke-url" // urls.revocationCertUrl, the older spelling of revokeCertUrl
)

var answerTargets = map[string]string{
	AnswerOtherKey: TargetCSR, AnswerOtherCA: TargetCSR, AnswerExpired: TargetCSR, AnswerOtherSubject: TargetCSR,
	AnswerCrtNotBase64: TargetCSR, AnswerCrtNotPEM: TargetCSR, AnswerNoCrt: TargetCSR, AnswerNoCA: TargetCSR,
	AnswerClientCrtDiffer: TargetCSR, AnswerClientCrtOnly: TargetCSR,
	AnswerBadSubject: TargetPairing, AnswerAnnounceOtherSubject: TargetPairing,
	AnswerOldRevokeURL: TargetInfo,
}

// checkFaultShape checks what AddFault cannot check field by field: an
// Answer on its target, Refuse on a host, a content type with a body.
func checkFaultShape(f Fault) error {
	if f.Answer != "" {
		want, ok := answerTargets[f.Answer]
		if !ok {
			return fmt.Errorf("mockauth: unknown fault answer %q", f.Answer)
		}
		if f.Target != want {
			return fmt.Errorf("mockauth: fault answer %q goes with target %q", f.Answer, want)
		}
	}
	if f.Refuse && !slices.Contains([]string{TargetToken, TargetCertToken, TargetConnector, TargetEvents}, f.Target) {
		return fmt.Errorf("mockauth: refuse closes connections to a host: target %q is a kind of request", f.Target)
	}
	if f.ContentType != "" && f.Status == 0 && f.Body == "" {
		return fmt.Errorf("mockauth: fault content type goes with status or body")
	}
	return nil
}

type answerKey struct{}

// withAnswer hands a fault's Answer to the handler of the request.
func withAnswer(r *http.Request, answer string) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), answerKey{}, answer))
}

func answerOf(r *http.Request) string {
	a, _ := r.Context().Value(answerKey{}).(string)
	return a
}

// malformedCertificate answers a CSR with the certificate Answer a asks for,
// signed for csr by issuer, the connector's CA (or by a stranger CA for
// AnswerOtherCA); tmpl and leafDER are the right certificate's.
func (s *Server) malformedCertificate(a string, issuer *authority, csr *x509.CertificateRequest, tmpl *x509.Certificate, leafDER []byte) (map[string]string, *connectorError) {
	var failed error
	// resign signs a variant of the right certificate; a stranger signs
	// with its own key's algorithm.
	resign := func(signer *authority, mod func(t *x509.Certificate), pub any) []byte {
		t := *tmpl
		t.SerialNumber = nil
		if signer != issuer {
			t.SignatureAlgorithm = 0
		}
		if mod != nil {
			mod(&t)
		}
		cert, err := signer.sign(&t, pub)
		if err != nil {
			failed = err
			return nil
		}
		return pemCert(cert.Raw)
	}
	enc := base64.StdEncoding.EncodeToString
	leaf, ca := pemCert(leafDER), issuer.pem
	chain := func(l []byte) string { return enc(append(slices.Clone(l), ca...)) }
	var answer map[string]string
	switch a {
	case AnswerOtherKey:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			failed = err
			break
		}
		answer = map[string]string{"crt": chain(resign(issuer, nil, k.Public())), "caCrt": enc(ca)}
	case AnswerOtherCA:
		stranger, err := newAuthority("mockauth stranger CA", s.now())
		if err != nil {
			failed = err
			break
		}
		answer = map[string]string{"crt": enc(append(resign(stranger, nil, csr.PublicKey), stranger.pem...)), "caCrt": enc(ca)}
	case AnswerExpired:
		now := s.now()
		l := resign(issuer, func(t *x509.Certificate) { t.NotBefore, t.NotAfter = now.Add(-2*time.Hour), now.Add(-time.Hour) }, csr.PublicKey)
		answer = map[string]string{"crt": chain(l), "caCrt": enc(ca)}
	case AnswerOtherSubject:
		l := resign(issuer, func(t *x509.Certificate) { t.Subject.CommonName = "someone-else" }, csr.PublicKey)
		answer = map[string]string{"crt": chain(l), "caCrt": enc(ca)}
	case AnswerCrtNotBase64:
		answer = map[string]string{"crt": "%%%", "caCrt": enc(ca)}
	case AnswerCrtNotPEM:
		answer = map[string]string{"crt": enc([]byte("hello")), "caCrt": enc(ca)}
	case AnswerNoCrt:
		answer = map[string]string{"caCrt": enc(ca)}
	case AnswerNoCA:
		answer = map[string]string{"crt": chain(leaf), "clientCrt": enc(leaf)}
	case AnswerClientCrtDiffer:
		answer = map[string]string{"crt": chain(leaf), "clientCrt": enc(resign(issuer, nil, csr.PublicKey)), "caCrt": enc(ca)}
	case AnswerClientCrtOnly:
		answer = map[string]string{"clientCrt": enc(leaf), "caCrt": enc(ca)}
	}
	if failed != nil {
		return nil, connErr(http.StatusInternalServerError, "sign_failed", "Error while creating certificate: %s", failed)
	}
	return answer, nil
}

// SetKeyAlgorithm sets the certificate.key-algorithm the connectors announce
// (default "rsa2048", as Kyma's); any string, "" included, is announced as
// it is.
func (s *Server) SetKeyAlgorithm(alg string) {
	s.mu.Lock()
	s.keyAlgorithm = alg
	s.mu.Unlock()
}

// SetEventsURL makes the management info announce u as every application's
// eventsUrl (a connector that moved its events service); "" restores the
// gateway's.
func (s *Server) SetEventsURL(u string) {
	s.mu.Lock()
	s.eventsURL = u
	s.mu.Unlock()
}

// certificateInfo is the "certificate" object of the signing-request and
// management info.
func (s *Server) certificateInfo(c *connectorCA, app string) map[string]string {
	s.mu.Lock()
	alg := s.keyAlgorithm
	s.mu.Unlock()
	return map[string]string{"subject": c.subjectString(app), "extensions": "", "key-algorithm": alg}
}

// countingListener counts the connections a listener accepts (Stats.
// Connections) and closes at once, before the TLS handshake, those a Refuse
// fault of its targets claims.
type countingListener struct {
	net.Listener
	s       *Server
	name    string
	targets []string
}

// listenerTargets are the fault targets whose Refuse closes connections to
// a listener: the connector's mTLS calls live on the gateway host.
func listenerTargets(listener string) []string {
	switch listener {
	case listenerToken:
		return []string{TargetToken}
	case listenerCertToken:
		return []string{TargetCertToken}
	case listenerConnector:
		return []string{TargetConnector}
	case listenerGateway:
		return []string{TargetConnector, TargetEvents}
	}
	return nil
}

func (s *Server) counting(name string, ln net.Listener) net.Listener {
	return &countingListener{Listener: ln, s: s, name: name, targets: listenerTargets(name)}
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.s.mu.Lock()
		l.s.stats.Connections[l.name]++
		l.s.mu.Unlock()
		if l.s.takeFault(true, l.targets...) != nil {
			_ = c.Close()
			continue
		}
		return c, nil
	}
}
