package mockauth

import (
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

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

// NewPairingToken mints a one-time token for application on the central
// connector and returns its signingRequests/info URL and the token. The
// token is a secret: never log it.
func (s *Server) NewPairingToken(application string) (tokenURL, token string, err error) {
	if application == "" || strings.ContainsAny(application, "/?#,=+ ") {
		return "", "", fmt.Errorf("mockauth: invalid application name %q", application)
	}
	token = s.mintPairing(s.central, application, false)
	return s.central.baseURL + pathSigningInfo + "?token=" + token, token, nil
}

func (s *Server) mintPairing(c *connectorCA, app string, csr bool) string {
	tok := randomHex(24)
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pairing[tok] = &pairingToken{application: app, conn: c, csr: csr, expires: now.Add(s.pairingTTL)}
	// Forget long-dead tokens so the map does not grow without bound.
	for k, p := range s.pairing {
		if now.Sub(p.expires) > time.Hour {
			delete(s.pairing, k)
		}
	}
	return tok
}

// checkPairing validates a one-time token without using it up. As the Kyma
// connector: 403 "Token not provided." without one, and 403 "Invalid
// token." for an unknown, used or expired one (it forgets used and expired
// tokens).
func (s *Server) checkPairing(c *connectorCA, tok string, csr bool) (*pairingToken, *connectorError) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pairing[tok]
	switch {
	case tok == "":
		return nil, connErr(http.StatusForbidden, "token_missing", "Token not provided.")
	case p == nil || p.conn != c || p.csr != csr:
		return nil, connErr(http.StatusForbidden, "token_unknown", "Invalid token.")
	case p.used:
		return nil, connErr(http.StatusForbidden, "token_used", "Invalid token.")
	case !now.Before(p.expires):
		return nil, connErr(http.StatusForbidden, "token_expired", "Invalid token.")
	}
	return p, nil
}

// usePairing consumes a token after a successful call; it fails when a
// concurrent call used it first.
func (s *Server) usePairing(p *pairingToken) *connectorError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.used {
		return connErr(http.StatusForbidden, "token_used", "Invalid token.")
	}
	p.used = true
	return nil
}

// apiURLs are the URLs of the signing-request info. As in Kyma, the
// management info (and renewal and revocation) live on the mTLS gateway
// host, not on the connector host.
func (s *Server) apiURLs(c *connectorCA, app string) map[string]string {
	gw := s.info.GatewayURL + "/" + url.PathEscape(app) + "/v1"
	return map[string]string{
		"metadataUrl":     gw + "/metadata/services",
		"eventsUrl":       gw + "/events",
		"eventsInfoUrl":   gw + "/events/subscribed",
		"infoUrl":         s.info.GatewayURL + pathMgmtInfo,
		"certificatesUrl": c.baseURL + pathCertificates,
	}
}

func (c *connectorCA) certificateInfo(app string) map[string]string {
	return map[string]string{"subject": c.subjectString(app), "extensions": "", "key-algorithm": "rsa2048"}
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
		writeConnJSON(w, http.StatusOK, map[string]any{
			"csrUrl":      c.baseURL + pathCertificates + "?token=" + csrTok,
			"api":         s.apiURLs(c, p.application),
			"certificate": c.certificateInfo(p.application),
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

// managementRoutes adds the connector's mTLS calls to the gateway's mux.
// The TLS layer already required a certificate from a connector CA; the
// connector it belongs to is the one whose CA verified it.
func (s *Server) managementRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+pathMgmtInfo, func(w http.ResponseWriter, r *http.Request) {
		id, e := s.clientIdentity(r, s.strictRevocation)
		if e != nil {
			s.writeConnErr(w, e)
			return
		}
		s.bump(&s.stats.InfoRequests)
		s.recordCall(r, "info", id, nil)
		c := id.conn
		api := s.apiURLs(c, id.app)
		identity := map[string]string{"application": id.app}
		if s.runtime != s.central {
			// credbroker's two-phase extension names group and tenant too.
			identity["group"], identity["tenant"] = "default", s.tenants[0].ZoneID
		}
		body := map[string]any{
			"clientIdentity": identity,
			"urls": map[string]string{
				"metadataUrl":   api["metadataUrl"],
				"eventsUrl":     api["eventsUrl"],
				"eventsInfoUrl": api["eventsInfoUrl"],
				"renewCertUrl":  s.info.GatewayURL + pathRenewals,
				"revokeCertUrl": s.info.GatewayURL + pathRevocations,
			},
			"certificate": c.certificateInfo(id.app),
		}
		if c == s.central && s.runtime != s.central {
			tok := s.mintPairing(s.runtime, id.app, false)
			body["runtime"] = map[string]string{"tokenUrl": s.runtime.baseURL + pathSigningInfo + "?token=" + tok}
		}
		writeConnJSON(w, http.StatusOK, body)
	})
	mux.HandleFunc("POST "+pathRenewals, func(w http.ResponseWriter, r *http.Request) {
		// Revocation blocks renewal (and only renewal, unless
		// Options.StrictRevocation).
		id, e := s.clientIdentity(r, true)
		if e != nil {
			s.writeConnErr(w, e)
			return
		}
		s.recordCall(r, "renewal", id, nil)
		resp, e := s.signCSR(r, id.conn, id.app, true)
		if e != nil {
			s.writeConnErr(w, e)
			return
		}
		s.bump(&s.stats.Renewals)
		writeConnJSON(w, http.StatusCreated, resp)
	})
	mux.HandleFunc("POST "+pathRevocations, func(w http.ResponseWriter, r *http.Request) {
		id, e := s.clientIdentity(r, false)
		if e != nil {
			s.writeConnErr(w, e)
			return
		}
		s.recordCall(r, "revocation", id, nil)
		s.mu.Lock()
		s.revoked[id.sha256] = true
		s.stats.Revocations++
		s.mu.Unlock()
		// As the Kyma connector: 201, a JSON content type, no body.
		w.Header().Set("Content-Type", connectorContentType)
		w.WriteHeader(http.StatusCreated)
	})
}

// connectorContentType is what the Kyma connector sends with every answer.
const connectorContentType = "application/json;charset=UTF-8"

func writeConnJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", connectorContentType)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// peerIdentity is the verified client certificate of an mTLS request.
type peerIdentity struct {
	app    string // its CN
	serial string
	sha256 string
	conn   *connectorCA // whose CA verified it
	leaf   *x509.Certificate
}

// clientIdentity returns the verified client certificate of an mTLS
// request; with checkRevoked, a revoked one is refused with 403.
func (s *Server) clientIdentity(r *http.Request, checkRevoked bool) (peerIdentity, *connectorError) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		// The gateway refuses a handshake without a certificate; this is
		// what the real connector says behind a gateway that sent nothing.
		return peerIdentity{}, connErr(http.StatusInternalServerError, "no_client_cert", "Certificate header is empty")
	}
	chain := r.TLS.VerifiedChains[0]
	leaf := chain[0]
	id := peerIdentity{app: leaf.Subject.CommonName, serial: leaf.SerialNumber.String(), sha256: fingerprint(leaf.Raw), conn: s.central, leaf: leaf}
	if s.runtime != s.central && s.runtime.trusts(chain[len(chain)-1]) {
		id.conn = s.runtime
	}
	if checkRevoked {
		s.mu.Lock()
		revoked := s.revoked[id.sha256]
		s.mu.Unlock()
		if revoked {
			return peerIdentity{}, connErr(http.StatusForbidden, "cert_revoked", "Certificate has been revoked.")
		}
	}
	return id, nil
}

func fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// recordCall records a connector management call in Received.
func (s *Server) recordCall(r *http.Request, kind string, id peerIdentity, body []byte) {
	rec := Received{Time: s.now(), Kind: kind, Application: id.app, Method: r.Method, Path: r.URL.Path, CertSerial: id.serial, CertSHA256: id.sha256}
	if len(body) > 0 {
		rec.Body = json.RawMessage(body)
	}
	s.mu.Lock()
	s.appendReceived(rec)
	s.mu.Unlock()
}

// appendReceived keeps the last receivedKept records. s.mu must be held.
func (s *Server) appendReceived(rec Received) {
	s.received = append(s.received, rec)
	if n := len(s.received); n > receivedKept {
		s.received = slices.Delete(s.received, 0, n-receivedKept)
	}
}

// receivedKept bounds Received.
const receivedKept = 10000

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
		notBefore: cert.NotBefore, notAfter: cert.NotAfter, renewal: renewal,
	})
	s.mu.Unlock()
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
			Renewal: c.renewal, NotBefore: c.notBefore, NotAfter: c.notAfter, Revoked: s.revoked[c.sha256],
		})
	}
	return out
}

// Received returns what the gateway recorded (metadata, events and the
// connector's management info, renewal and revocation calls, each with the
// presented certificate's fingerprint), oldest first; the last 10000 are
// kept.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.received)
}

// gatewayHandler serves the App Registry (metadataUrl) and the Event
// service (eventsUrl, eventsInfoUrl) of every application. The TLS layer
// requires a client certificate from a connector CA; this checks that its
// CN is the application of the path, and in two-phase mode that metadata
// uses a central (phase-1) and events a runtime (phase-2) certificate. As
// in Kyma, a revoked certificate is accepted until it expires (refused
// with Options.StrictRevocation). The connector's own mTLS calls are here
// too (managementRoutes).
func (s *Server) gatewayHandler() http.Handler {
	mux := http.NewServeMux()
	s.managementRoutes(mux)
	check := func(w http.ResponseWriter, r *http.Request, need *connectorCA) (peerIdentity, bool) {
		id, e := s.clientIdentity(r, s.strictRevocation)
		if e == nil && id.app != r.PathValue("app") {
			e = connErr(http.StatusForbidden, "wrong_application", "Certificate does not belong to application %q.", r.PathValue("app"))
		}
		if e == nil && need != nil && !need.trusts(r.TLS.VerifiedChains[0][len(r.TLS.VerifiedChains[0])-1]) {
			phase := "central (phase-1)"
			if need.runtime {
				phase = "runtime (phase-2)"
			}
			e = connErr(http.StatusForbidden, "wrong_connector", "This endpoint requires a %s connector certificate.", phase)
		}
		if e != nil {
			s.writeConnErr(w, e)
			return peerIdentity{}, false
		}
		return id, true
	}
	record := func(r *http.Request, kind string, id peerIdentity, body []byte) {
		rec := Received{Time: s.now(), Kind: kind, Application: r.PathValue("app"), Method: r.Method, Path: r.URL.Path, CertSerial: id.serial, CertSHA256: id.sha256}
		if len(body) > 0 {
			rec.Body = json.RawMessage(body)
		}
		s.mu.Lock()
		s.appendReceived(rec)
		if kind == "event" {
			s.stats.EventsReceived++
		} else {
			s.stats.MetadataReceived++
		}
		s.mu.Unlock()
	}
	readJSON := func(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
		raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		var v map[string]any
		if err != nil || json.Unmarshal(raw, &v) != nil {
			s.writeConnErr(w, connErr(http.StatusBadRequest, "invalid_json", "Body must be a JSON object."))
			return nil, false
		}
		return raw, true
	}
	services := func(w http.ResponseWriter, r *http.Request) {
		id, ok := check(w, r, s.central)
		if !ok {
			return
		}
		var body []byte
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			if body, ok = readJSON(w, r); !ok {
				return
			}
		}
		record(r, "metadata", id, body)
		switch r.Method {
		case http.MethodPost:
			writeJSON(w, http.StatusOK, map[string]string{"id": randomHex(8)})
		case http.MethodGet:
			if r.PathValue("id") != "" {
				writeJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id")})
				return
			}
			writeJSON(w, http.StatusOK, []any{})
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.HandleFunc("GET /{app}/v1/metadata/services", services)
	mux.HandleFunc("POST /{app}/v1/metadata/services", services)
	mux.HandleFunc("GET /{app}/v1/metadata/services/{id}", services)
	mux.HandleFunc("PUT /{app}/v1/metadata/services/{id}", services)
	mux.HandleFunc("DELETE /{app}/v1/metadata/services/{id}", services)
	mux.HandleFunc("POST /{app}/v1/events", func(w http.ResponseWriter, r *http.Request) {
		peer, ok := check(w, r, s.runtime)
		if !ok {
			return
		}
		body, ok := readJSON(w, r)
		if !ok {
			return
		}
		var ev map[string]any
		_ = json.Unmarshal(body, &ev)
		if ev["event-type"] == nil && ev["type"] == nil {
			s.writeConnErr(w, connErr(http.StatusBadRequest, "invalid_event", `Event needs "event-type".`))
			return
		}
		record(r, "event", peer, body)
		id, _ := ev["event-id"].(string)
		if id == "" {
			id = randomHex(8)
		}
		writeJSON(w, http.StatusOK, map[string]string{"event-id": id})
	})
	mux.HandleFunc("GET /{app}/v1/events/subscribed", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := check(w, r, nil); !ok {
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"eventsInfo": []any{}})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeConnErr(w, connErr(http.StatusNotFound, "not_found", "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}
