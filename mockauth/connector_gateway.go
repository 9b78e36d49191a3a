package mockauth

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
)

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
