package mockauth

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
	ca           *authority
	organization string
	baseURL      string
	runtime      bool // the phase-2 connector of a two-phase setup
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
	application string
	subject     string
	conn        *connectorCA
	notBefore   time.Time
	notAfter    time.Time
	renewal     bool
}

// IssuedCert describes a client certificate the connector signed.
type IssuedCert struct {
	Serial      string    `json:"serial"` // decimal, as Revoke takes it
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
	Kind        string          `json:"kind"` // "metadata" or "event"
	Application string          `json:"application"`
	Method      string          `json:"method"`
	Path        string          `json:"path"`
	Body        json.RawMessage `json:"body,omitempty"`
	CertSerial  string          `json:"cert_serial"`
}

func newConnectorCA(cn, org string, now time.Time) (*connectorCA, error) {
	a, err := newAuthority(cn, now)
	if err != nil {
		return nil, err
	}
	return &connectorCA{ca: a, organization: org}, nil
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

// sameSubject compares O, OU, L, ST, C and CN exactly, and refuses any
// other attribute.
func sameSubject(got, want pkix.Name) bool {
	eq := slices.Equal[[]string]
	if !eq(got.Organization, want.Organization) || !eq(got.OrganizationalUnit, want.OrganizationalUnit) ||
		!eq(got.Locality, want.Locality) || !eq(got.Province, want.Province) ||
		!eq(got.Country, want.Country) || got.CommonName != want.CommonName {
		return false
	}
	return len(got.StreetAddress) == 0 && len(got.PostalCode) == 0 && got.SerialNumber == "" && len(got.ExtraNames) == 0
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

// checkPairing validates a one-time token without using it up.
func (s *Server) checkPairing(c *connectorCA, tok string, csr bool) (*pairingToken, *connectorError) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.pairing[tok]
	switch {
	case tok == "" || p == nil || p.conn != c || p.csr != csr:
		return nil, connErr(http.StatusForbidden, "token_unknown", "Invalid token.")
	case p.used:
		return nil, connErr(http.StatusForbidden, "token_used", "Token has already been used.")
	case !now.Before(p.expires):
		return nil, connErr(http.StatusForbidden, "token_expired", "Token has expired.")
	}
	return p, nil
}

// usePairing consumes a token after a successful call; it fails when a
// concurrent call used it first.
func (s *Server) usePairing(p *pairingToken) *connectorError {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p.used {
		return connErr(http.StatusForbidden, "token_used", "Token has already been used.")
	}
	p.used = true
	return nil
}

func (s *Server) apiURLs(c *connectorCA, app string) map[string]string {
	gw := s.info.GatewayURL + "/" + url.PathEscape(app) + "/v1"
	return map[string]string{
		"metadataUrl":     gw + "/metadata/services",
		"eventsUrl":       gw + "/events",
		"eventsInfoUrl":   gw + "/events/subscribed",
		"infoUrl":         c.baseURL + pathMgmtInfo,
		"certificatesUrl": c.baseURL + pathCertificates,
	}
}

func (c *connectorCA) certificateInfo(app string) map[string]string {
	return map[string]string{"subject": c.subjectString(app), "extensions": "", "key-algorithm": "rsa2048"}
}

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
		writeJSON(w, http.StatusOK, map[string]any{
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
			s.writeConnErr(w, e)
			return
		}
		if e := s.usePairing(p); e != nil {
			s.writeConnErr(w, e)
			return
		}
		s.bump(&s.stats.CSRSigned)
		writeJSON(w, http.StatusCreated, resp)
	})
	mux.HandleFunc("GET "+pathMgmtInfo, func(w http.ResponseWriter, r *http.Request) {
		app, _, e := s.clientIdentity(r)
		if e != nil {
			s.writeConnErr(w, e)
			return
		}
		s.bump(&s.stats.InfoRequests)
		api := s.apiURLs(c, app)
		body := map[string]any{
			"clientIdentity": map[string]string{"application": app, "group": "default", "tenant": s.tenants[0].ZoneID},
			"urls": map[string]string{
				"metadataUrl":   api["metadataUrl"],
				"eventsUrl":     api["eventsUrl"],
				"eventsInfoUrl": api["eventsInfoUrl"],
				"renewCertUrl":  c.baseURL + pathRenewals,
				"revokeCertUrl": c.baseURL + pathRevocations,
			},
			"certificate": c.certificateInfo(app),
		}
		if c == s.central && s.runtime != s.central {
			tok := s.mintPairing(s.runtime, app, false)
			body["runtime"] = map[string]string{"tokenUrl": s.runtime.baseURL + pathSigningInfo + "?token=" + tok}
		}
		writeJSON(w, http.StatusOK, body)
	})
	mux.HandleFunc("POST "+pathRenewals, func(w http.ResponseWriter, r *http.Request) {
		app, _, e := s.clientIdentity(r)
		if e != nil {
			s.writeConnErr(w, e)
			return
		}
		resp, e := s.signCSR(r, c, app, true)
		if e != nil {
			s.writeConnErr(w, e)
			return
		}
		s.bump(&s.stats.Renewals)
		writeJSON(w, http.StatusCreated, resp)
	})
	mux.HandleFunc("POST "+pathRevocations, func(w http.ResponseWriter, r *http.Request) {
		_, serial, e := s.clientIdentity(r)
		if e != nil {
			s.writeConnErr(w, e)
			return
		}
		s.mu.Lock()
		s.revoked[serial] = true
		s.stats.Revocations++
		s.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeConnErr(w, connErr(http.StatusNotFound, "not_found", "no such endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

// clientIdentity returns the application and serial of the verified,
// unrevoked client certificate of an mTLS request.
func (s *Server) clientIdentity(r *http.Request) (app, serial string, e *connectorError) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return "", "", connErr(http.StatusForbidden, "no_client_cert", "A client certificate from the connector CA is required.")
	}
	leaf := r.TLS.VerifiedChains[0][0]
	serial = leaf.SerialNumber.String()
	s.mu.Lock()
	revoked := s.revoked[serial]
	s.mu.Unlock()
	if revoked {
		return "", "", connErr(http.StatusForbidden, "cert_revoked", "Certificate has been revoked.")
	}
	return leaf.Subject.CommonName, serial, nil
}

type csrBody struct {
	CSR string `json:"csr"`
}

// parseCSRBody decodes {"csr": base64(PEM CSR)}, checks the CSR's signature
// and its key (RSA of at least 2048 bits, or EC).
func parseCSRBody(raw []byte) (*x509.CertificateRequest, *connectorError) {
	var body csrBody
	if err := json.Unmarshal(raw, &body); err != nil || body.CSR == "" {
		return nil, connErr(http.StatusBadRequest, "csr_invalid", `Body must be {"csr": "<base64 PEM>"}.`)
	}
	pemBytes, err := base64.StdEncoding.DecodeString(body.CSR)
	if err != nil {
		return nil, connErr(http.StatusBadRequest, "csr_invalid", "csr is not valid base64.")
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, connErr(http.StatusBadRequest, "csr_invalid", "csr is not a PEM CERTIFICATE REQUEST.")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, connErr(http.StatusBadRequest, "csr_invalid", "Cannot parse the CSR.")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, connErr(http.StatusBadRequest, "csr_invalid", "CSR signature is invalid.")
	}
	switch k := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, connErr(http.StatusBadRequest, "csr_key", "RSA keys must have at least 2048 bits.")
		}
	case *ecdsa.PublicKey:
	default:
		return nil, connErr(http.StatusBadRequest, "csr_key", "Only RSA and EC keys are accepted.")
	}
	return csr, nil
}

func (s *Server) signCSR(r *http.Request, c *connectorCA, app string, renewal bool) (map[string]string, *connectorError) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		return nil, connErr(http.StatusBadRequest, "csr_invalid", "Cannot read request body.")
	}
	csr, e := parseCSRBody(raw)
	if e != nil {
		return nil, e
	}
	if !sameSubject(csr.Subject, c.subject(app)) {
		return nil, connErr(http.StatusBadRequest, "csr_subject", "CSR subject does not match: want %s.", c.subjectString(app))
	}
	now := s.now()
	s.mu.Lock()
	ttl := s.certTTL
	s.mu.Unlock()
	backdate := min(time.Minute, ttl/10).Truncate(time.Second)
	cert, err := c.ca.sign(&x509.Certificate{
		Subject:     c.subject(app),
		NotBefore:   now.Truncate(time.Second).Add(-backdate),
		NotAfter:    ceilSecond(now.Add(ttl)),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, csr.PublicKey)
	if err != nil {
		return nil, connErr(http.StatusInternalServerError, "sign_failed", "Cannot sign the certificate.")
	}
	s.mu.Lock()
	s.issued = append(s.issued, &issuedCert{
		serial: cert.SerialNumber.String(), application: app, subject: c.subjectString(app), conn: c,
		notBefore: cert.NotBefore, notAfter: cert.NotAfter, renewal: renewal,
	})
	s.mu.Unlock()
	leaf := pemCert(cert.Raw)
	enc := base64.StdEncoding.EncodeToString
	return map[string]string{
		"crt":       enc(append(slices.Clone(leaf), c.ca.pem...)),
		"clientCrt": enc(leaf),
		"caCrt":     enc(c.ca.pem),
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

// ErrUnknownSerial is returned by Revoke for a serial the connector never
// issued.
var ErrUnknownSerial = errors.New("mockauth: no certificate with this serial was issued")

// Revoke revokes the connector certificate with the given decimal serial:
// every mTLS endpoint (connector and gateway) refuses it from now on.
func (s *Server) Revoke(serial string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.issued {
		if c.serial == serial {
			s.revoked[serial] = true
			s.stats.Revocations++
			return nil
		}
	}
	return ErrUnknownSerial
}

// Issued lists the connector certificates signed so far, oldest first.
func (s *Server) Issued() []IssuedCert {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]IssuedCert, 0, len(s.issued))
	for _, c := range s.issued {
		out = append(out, IssuedCert{
			Serial: c.serial, Application: c.application, Subject: c.subject, Runtime: c.conn.runtime,
			Renewal: c.renewal, NotBefore: c.notBefore, NotAfter: c.notAfter, Revoked: s.revoked[c.serial],
		})
	}
	return out
}

// Received returns what the gateway recorded (metadata and events), oldest
// first.
func (s *Server) Received() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.received)
}

// gatewayHandler serves the App Registry (metadataUrl) and the Event
// service (eventsUrl, eventsInfoUrl) of every application. The TLS layer
// requires a client certificate from a connector CA; this checks that it is
// unrevoked, that its CN is the application of the path, and in two-phase
// mode that metadata uses a central (phase-1) and events a runtime
// (phase-2) certificate.
func (s *Server) gatewayHandler() http.Handler {
	mux := http.NewServeMux()
	check := func(w http.ResponseWriter, r *http.Request, need *connectorCA) (string, bool) {
		app, serial, e := s.clientIdentity(r)
		if e == nil && app != r.PathValue("app") {
			e = connErr(http.StatusForbidden, "wrong_application", "Certificate does not belong to application %q.", r.PathValue("app"))
		}
		if e == nil && need != nil && !r.TLS.VerifiedChains[0][len(r.TLS.VerifiedChains[0])-1].Equal(need.ca.cert) {
			phase := "central (phase-1)"
			if need.runtime {
				phase = "runtime (phase-2)"
			}
			e = connErr(http.StatusForbidden, "wrong_connector", "This endpoint requires a %s connector certificate.", phase)
		}
		if e != nil {
			s.writeConnErr(w, e)
			return "", false
		}
		return serial, true
	}
	record := func(r *http.Request, kind, serial string, body []byte) {
		rec := Received{Time: s.now(), Kind: kind, Application: r.PathValue("app"), Method: r.Method, Path: r.URL.Path, CertSerial: serial}
		if len(body) > 0 {
			rec.Body = json.RawMessage(body)
		}
		s.mu.Lock()
		s.received = append(s.received, rec)
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
		serial, ok := check(w, r, s.central)
		if !ok {
			return
		}
		var body []byte
		if r.Method == http.MethodPost || r.Method == http.MethodPut {
			if body, ok = readJSON(w, r); !ok {
				return
			}
		}
		record(r, "metadata", serial, body)
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
		serial, ok := check(w, r, s.runtime)
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
		record(r, "event", serial, body)
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
