package mockauth

import (
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// The fake Kyma connector, one concern a file: its CAs, subjects, errors
// and the pairing handler here; one-time tokens in connector_pairing.go,
// CSR checks and signing in connector_csr.go, the mTLS management calls
// and the caller's identity in connector_mtls.go, revocation and the
// issued list in connector_revoke.go, the App Registry and Event gateway
// in connector_gateway.go, injected faults in connectorfaults.go.

const (
	pathSigningInfo  = "/v1/applications/signingRequests/info"
	pathCertificates = "/v1/applications/certificates"
	pathRenewals     = "/v1/applications/certificates/renewals"
	pathRevocations  = "/v1/applications/certificates/revocations"
	pathMgmtInfo     = "/v1/applications/management/info"
)

// The fixed parts of the subject the connector asks for; CN is the
// application and O the connector's organization ("Organization" for the
// central connector, "Runtime" for the runtime connector).
const (
	subjectOU = "OrgUnit"
	subjectL  = "Waldorf"
	subjectST = "Waldorf"
	subjectC  = "DE"
)

// connectorCA is one connector: its CA and where it is served.
type connectorCA struct {
	cas          atomic.Pointer[caSet] // the issuer and every CA trusted (carotation.go)
	organization string
	baseURL      string
	runtime      bool // the phase-2 connector of a two-phase setup
	ecdsa        bool // Options.ECDSAConnectorCA: signs with its own algorithm
}

type pairingToken struct {
	application string
	conn        *connectorCA
	csr         bool // a csrUrl token (else a signingRequests/info token)
	expires     time.Time
	used        bool
}

type issuedCert struct {
	serial      string
	sha256      string
	application string
	subject     string
	conn        *connectorCA
	notBefore   time.Time
	notAfter    time.Time
	renewal     bool
	csr         []byte
}

// IssuedCert describes a client certificate the connector signed.
type IssuedCert struct {
	Serial      string    `json:"serial"` // decimal; constant (2) unless Options.UniqueSerials
	SHA256      string    `json:"sha256"` // fingerprint of the DER: the identity, as RevokeSHA256 takes it
	Application string    `json:"application"`
	Subject     string    `json:"subject"`
	Runtime     bool      `json:"runtime"` // issued by the runtime (phase-2) connector
	Renewal     bool      `json:"renewal"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Revoked     bool      `json:"revoked"`
	// CSR is the DER of the request it was signed from, as the client sent
	// it (the order of its subject's attributes included).
	CSR []byte `json:"csr"`
}

// Received is one request the gateway accepted and recorded.
type Received struct {
	Time        time.Time       `json:"time"`
	Kind        string          `json:"kind"` // "metadata", "event", or the connector's "info", "renewal", "revocation"
	Application string          `json:"application"`
	Method      string          `json:"method"`
	Path        string          `json:"path"`
	Body        json.RawMessage `json:"body,omitempty"`
	CertSerial  string          `json:"cert_serial"`
	CertSHA256  string          `json:"cert_sha256"` // the certificate presented: serials repeat, this does not
}

func newConnectorCA(cn, org string, now time.Time, ecdsaCA bool) (*connectorCA, error) {
	a, err := newConnectorAuthority(cn, now, ecdsaCA)
	if err != nil {
		return nil, err
	}
	c := &connectorCA{organization: org, ecdsa: ecdsaCA}
	c.cas.Store(&caSet{issuer: a, trusted: []*authority{a}})
	return c, nil
}

// newConnectorAuthority is a connector CA: RSA as Kyma's, or ECDSA.
func newConnectorAuthority(cn string, now time.Time, ecdsaCA bool) (*authority, error) {
	if ecdsaCA {
		return newAuthority(cn, now)
	}
	return newRSAAuthority(cn, now)
}

func (c *connectorCA) subject(app string) pkix.Name {
	return pkix.Name{
		Organization:       []string{c.organization},
		OrganizationalUnit: []string{subjectOU},
		Locality:           []string{subjectL},
		Province:           []string{subjectST},
		Country:            []string{subjectC},
		CommonName:         app,
	}
}

func (c *connectorCA) subjectString(app string) string {
	return fmt.Sprintf("O=%s,OU=%s,L=%s,ST=%s,C=%s,CN=%s", c.organization, subjectOU, subjectL, subjectST, subjectC, app)
}

// checkSubject checks a CSR's subject as the Kyma connector does, one
// attribute at a time (CN, C, O, OU, L, ST; the first value of each) with
// one message per attribute; other attributes are not looked at.
func checkSubject(got, want pkix.Name) *connectorError {
	if got.CommonName != want.CommonName {
		return connErr(http.StatusBadRequest, "csr_subject", "CSR: Invalid common name provided.")
	}
	for _, a := range []struct {
		name      string
		got, want []string
	}{
		{"country", got.Country, want.Country},
		{"organization", got.Organization, want.Organization},
		{"organizational unit", got.OrganizationalUnit, want.OrganizationalUnit},
		{"locality", got.Locality, want.Locality},
		{"province", got.Province, want.Province},
	} {
		switch {
		case len(a.got) == 0:
			return connErr(http.StatusBadRequest, "csr_subject", "CSR: No %s provided.", a.name)
		case a.got[0] != a.want[0]:
			return connErr(http.StatusBadRequest, "csr_subject", "CSR: Invalid %s provided.", a.name)
		}
	}
	return nil
}

type connectorError struct {
	status int
	msg    string
	cause  string
}

func connErr(status int, cause, format string, a ...any) *connectorError {
	return &connectorError{status: status, cause: cause, msg: fmt.Sprintf(format, a...)}
}

func (s *Server) writeConnErr(w http.ResponseWriter, e *connectorError) {
	s.countError(e.cause)
	writeJSON(w, e.status, map[string]any{"code": e.status, "error": e.msg})
}

// connectorHandler serves the connector host: the token-protected pairing
// calls. The mTLS calls (management info, renewal, revocation) are on the
// gateway host (managementRoutes).
func (s *Server) connectorHandler(c *connectorCA) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+pathSigningInfo, func(w http.ResponseWriter, r *http.Request) {
		s.bump(&s.stats.PairingInfoRequests)
		p, e := s.checkPairing(c, r.URL.Query().Get("token"), false)
		if e != nil {
			s.writeConnErr(w, e)
			return
		}
		if e := s.usePairing(p); e != nil {
			s.writeConnErr(w, e)
			return
		}
		csrTok := s.mintPairing(c, p.application, true)
		cert := s.certificateInfo(c, p.application)
		switch answerOf(r) {
		case AnswerBadSubject:
			cert["subject"] = "O=Org,CN"
		case AnswerAnnounceOtherSubject:
			cert["subject"] = strings.Replace(cert["subject"], "O="+c.organization+",", "O=Other,", 1)
		}
		writeConnJSON(w, http.StatusOK, map[string]any{
			"csrUrl":      c.baseURL + pathCertificates + "?token=" + csrTok,
			"api":         s.apiURLs(c, p.application),
			"certificate": cert,
		})
	})
	mux.HandleFunc("POST "+pathCertificates, func(w http.ResponseWriter, r *http.Request) {
		p, e := s.checkPairing(c, r.URL.Query().Get("token"), true)
		if e != nil {
			s.writeConnErr(w, e)
			return
		}
		resp, e := s.signCSR(r, c, p.application, false)
		if e != nil {
			s.writeConnErr(w, e) // the token is spent only on success
			return
		}
		if e := s.usePairing(p); e != nil {
			s.writeConnErr(w, e)
			return
		}
		s.bump(&s.stats.CSRSigned)
		writeConnJSON(w, http.StatusCreated, resp)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeConnErr(w, connErr(http.StatusNotFound, "not_found", "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}
