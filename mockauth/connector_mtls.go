package mockauth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
)

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
		urls := map[string]string{
			"metadataUrl":   api["metadataUrl"],
			"eventsUrl":     api["eventsUrl"],
			"eventsInfoUrl": api["eventsInfoUrl"],
			"renewCertUrl":  s.info.GatewayURL + pathRenewals,
			"revokeCertUrl": s.info.GatewayURL + pathRevocations,
		}
		s.mu.Lock()
		if s.eventsURL != "" {
			urls["eventsUrl"] = s.eventsURL
		}
		s.mu.Unlock()
		if answerOf(r) == AnswerOldRevokeURL {
			urls["revocationCertUrl"] = urls["revokeCertUrl"]
			delete(urls, "revokeCertUrl")
		}
		body := map[string]any{
			"clientIdentity": identity,
			"urls":           urls,
			"certificate":    s.certificateInfo(c, id.app),
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
