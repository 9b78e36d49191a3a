package mockauth

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Fault targets.
const (
	TargetToken     = "token"     // the secret token host (XSUAA and IAS endpoints)
	TargetCertToken = "certtoken" // the mTLS cert token host
	TargetConnector = "connector" // every connector endpoint (central and runtime)
	TargetCSR       = "csr"       // only the CSR endpoints (certificates, renewals): refused CSRs
	TargetEvents    = "events"    // the gateway (metadata and events)
)

// Fault breaks the next requests to a target on purpose. Count and Duration
// bound it (whichever ends first); with neither it lasts until ClearFaults.
// The first active fault of a target applies to a request.
type Fault struct {
	Target string
	// Status, when not 0, is answered instead of the real response, with
	// Body (default: an error body in the target's format).
	Status int
	// RetryAfter is sent as a Retry-After header (whole seconds) with Status.
	RetryAfter time.Duration
	// Latency delays the request before it is answered (or failed).
	Latency time.Duration
	// Drop closes the connection in the middle of the response.
	Drop bool
	// Count is how many requests the fault applies to; 0 means unbounded.
	Count int
	// Duration is how long (on the mock's clock) the fault lasts from when
	// it is added; 0 means unbounded.
	Duration time.Duration
	// Body replaces the response body; with Status 0 it is served with 200
	// (for example invalid JSON).
	Body string
}

type activeFault struct {
	Fault
	until time.Time
	left  int
}

var faultTargets = []string{TargetToken, TargetCertToken, TargetConnector, TargetCSR, TargetEvents}

// AddFault adds a fault. It fails on an unknown target or a fault that does
// nothing.
func (s *Server) AddFault(f Fault) error {
	if !slices.Contains(faultTargets, f.Target) {
		return fmt.Errorf("mockauth: fault target %q: want one of %s", f.Target, strings.Join(faultTargets, ", "))
	}
	if f.Status == 0 && f.Latency <= 0 && !f.Drop && f.Body == "" {
		return fmt.Errorf("mockauth: fault for %q does nothing: set status, latency, drop or body", f.Target)
	}
	if f.Status != 0 && (f.Status < 100 || f.Status > 599) {
		return fmt.Errorf("mockauth: fault status %d out of range", f.Status)
	}
	if f.Count < 0 || f.Duration < 0 || f.Latency < 0 || f.RetryAfter < 0 {
		return fmt.Errorf("mockauth: fault count, duration, latency and retry_after must not be negative")
	}
	a := &activeFault{Fault: f, left: f.Count}
	if f.Duration > 0 {
		a.until = s.now().Add(f.Duration)
	}
	s.mu.Lock()
	s.faults = append(s.faults, a)
	s.mu.Unlock()
	return nil
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	s.faults = nil
	s.mu.Unlock()
}

// takeFault returns the fault to apply to a request of the given targets,
// using one of its count.
func (s *Server) takeFault(targets ...string) *Fault {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.faults[:0]
	var hit *Fault
	for _, f := range s.faults {
		if !f.until.IsZero() && !now.Before(f.until) {
			continue
		}
		if hit == nil && slices.Contains(targets, f.Target) {
			c := f.Fault
			hit = &c
			if f.Count > 0 {
				f.left--
				if f.left == 0 {
					continue
				}
			}
		}
		live = append(live, f)
	}
	s.faults = live
	if hit != nil {
		s.stats.FaultsApplied++
	}
	return hit
}

const (
	listenerToken     = "token"
	listenerCertToken = "certtoken"
	listenerConnector = "connector"
	listenerGateway   = "gateway"
)

// Stats counts what the mock has seen; GET /mock/stats serves the same JSON.
type Stats struct {
	TokenRequests         int            `json:"token_requests"`
	TokensIssued          int            `json:"tokens_issued"`
	TokenRequestsByGrant  map[string]int `json:"token_requests_by_grant"`
	TokenRequestsByTenant map[string]int `json:"token_requests_by_tenant"`
	TokenRequestsByHost   map[string]int `json:"token_requests_by_host"`
	JWKSRequests          int            `json:"jwks_requests"`
	PairingInfoRequests   int            `json:"pairing_info_requests"`
	CSRSigned             int            `json:"csr_signed"`
	Renewals              int            `json:"renewals"`
	Revocations           int            `json:"revocations"`
	InfoRequests          int            `json:"info_requests"`
	MetadataReceived      int            `json:"metadata_received"`
	EventsReceived        int            `json:"events_received"`
	FaultsApplied         int            `json:"faults_applied"`
	Errors                map[string]int `json:"errors"`
	LastRequests          []RequestLog   `json:"last_requests"`
}

// RequestLog is one request the mock saw, secrets redacted.
type RequestLog struct {
	Time     time.Time         `json:"time"`
	Listener string            `json:"listener"`
	Method   string            `json:"method"`
	Host     string            `json:"host"`
	Path     string            `json:"path"`
	Query    string            `json:"query,omitempty"`
	Form     map[string]string `json:"form,omitempty"`
	XZid     string            `json:"x_zid,omitempty"`
	Status   int               `json:"status"`
	Fault    bool              `json:"fault,omitempty"`
}

const lastRequestsKept = 50

func newStats() Stats {
	return Stats{
		TokenRequestsByGrant:  map[string]int{},
		TokenRequestsByTenant: map[string]int{},
		TokenRequestsByHost:   map[string]int{},
		Errors:                map[string]int{},
	}
}

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.TokenRequestsByGrant = maps.Clone(s.stats.TokenRequestsByGrant)
	st.TokenRequestsByTenant = maps.Clone(s.stats.TokenRequestsByTenant)
	st.TokenRequestsByHost = maps.Clone(s.stats.TokenRequestsByHost)
	st.Errors = maps.Clone(s.stats.Errors)
	st.LastRequests = slices.Clone(s.stats.LastRequests)
	return st
}

func (s *Server) countToken(grant, tenant string, ok bool) {
	if grant == "" {
		grant = "none"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.TokenRequestsByGrant[grant]++
	s.stats.TokenRequestsByTenant[tenant]++
	if ok {
		s.stats.TokensIssued++
	}
}

func (s *Server) countError(cause string) {
	s.mu.Lock()
	s.stats.Errors[cause]++
	s.mu.Unlock()
}

func (s *Server) countJWKS() {
	s.mu.Lock()
	s.stats.JWKSRequests++
	s.mu.Unlock()
}

func (s *Server) bump(field *int) {
	s.mu.Lock()
	*field++
	s.mu.Unlock()
}

var secretFields = map[string]bool{
	"client_secret": true, "password": true, "assertion": true, "refresh_token": true,
	"token": true, "code": true, "client_assertion": true,
}

func redactValues(v url.Values) map[string]string {
	if len(v) == 0 {
		return nil
	}
	out := map[string]string{}
	for k, vs := range v {
		if secretFields[strings.ToLower(k)] {
			out[k] = "REDACTED"
			continue
		}
		out[k] = strings.Join(vs, " ")
	}
	return out
}

func redactQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	c := url.Values{}
	for k, vs := range q {
		if secretFields[strings.ToLower(k)] {
			c.Set(k, "REDACTED")
			continue
		}
		c[k] = vs
	}
	return c.Encode()
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// wrap records every request of a listener (secrets redacted), counts it and
// applies the faults of its targets.
func (s *Server) wrap(listener string, h http.Handler) http.Handler {
	h = noRedirect(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var targets []string
		isToken := false
		switch listener {
		case listenerToken:
			targets = []string{TargetToken}
			isToken = r.URL.Path == "/oauth/token" || r.URL.Path == "/oauth2/token"
		case listenerCertToken:
			targets = []string{TargetCertToken}
			isToken = r.URL.Path == "/oauth/token" || r.URL.Path == "/oauth2/token"
		case listenerConnector:
			targets = []string{TargetConnector}
			if r.Method == http.MethodPost && (r.URL.Path == pathCertificates || r.URL.Path == pathRenewals) {
				targets = append(targets, TargetCSR)
			}
		case listenerGateway:
			targets = []string{TargetEvents}
			if strings.HasPrefix(r.URL.Path, "/v1/applications/") {
				// The connector's mTLS calls live on the gateway host.
				targets = []string{TargetConnector}
				if r.Method == http.MethodPost && r.URL.Path == pathRenewals {
					targets = append(targets, TargetCSR)
				}
			}
		}
		if isToken {
			s.mu.Lock()
			s.stats.TokenRequests++
			s.stats.TokenRequestsByHost[listener]++
			s.mu.Unlock()
		}
		rec := RequestLog{
			Time:     s.now(),
			Listener: listener,
			Method:   r.Method,
			Host:     r.Host,
			Path:     r.URL.Path,
			Query:    redactQuery(r.URL.Query()),
			XZid:     r.Header.Get("X-zid"),
		}
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if r.PostForm != nil {
				rec.Form = redactValues(r.PostForm)
			}
			rec.Status = sw.status
			s.log.Debug("mockauth: request", "listener", listener, "method", r.Method, "host", r.Host,
				"path", r.URL.Path, "status", sw.status, "fault", rec.Fault)
			s.mu.Lock()
			s.stats.LastRequests = append(s.stats.LastRequests, rec)
			if n := len(s.stats.LastRequests); n > lastRequestsKept {
				s.stats.LastRequests = slices.Delete(s.stats.LastRequests, 0, n-lastRequestsKept)
			}
			s.mu.Unlock()
		}()
		if f := s.takeFault(targets...); f != nil {
			rec.Fault = true
			if isToken {
				// Read the form before the fault delays or answers the request:
				// faulted token requests count by grant and tenant too.
				r.Body = http.MaxBytesReader(nil, r.Body, 1<<16)
				_ = r.ParseForm()
			}
			if s.applyFault(sw, r, listener, f) {
				if isToken {
					s.countToken(s.grantLabel(r), s.tenantLabel(r, listener), false)
				}
				return
			}
		}
		h.ServeHTTP(sw, r)
	})
}

// applyFault applies f and reports whether the request has been answered.
func (s *Server) applyFault(w *statusWriter, r *http.Request, listener string, f *Fault) bool {
	s.countError("fault")
	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return true
		}
	}
	if f.Drop {
		hj, ok := w.ResponseWriter.(http.Hijacker)
		if !ok {
			panic(http.ErrAbortHandler)
		}
		conn, buf, err := hj.Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		w.status = -1
		// Promise a body and close the connection half way through it.
		_, _ = buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{\"access_tok")
		_ = buf.Flush()
		_ = conn.Close()
		return true
	}
	if f.Status == 0 && f.Body == "" {
		return false
	}
	status := f.Status
	if status == 0 {
		status = http.StatusOK
	}
	if f.RetryAfter > 0 {
		secs := int((f.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(status)
	if f.Body != "" {
		_, _ = w.Write([]byte(f.Body))
		return true
	}
	var body any
	switch listener {
	case listenerToken, listenerCertToken:
		body = map[string]string{"error": "fault_injected", "error_description": "mockauth: injected fault " + strconv.Itoa(status)}
	default:
		body = map[string]any{"code": status, "error": "mockauth: injected fault"}
	}
	_ = json.NewEncoder(w).Encode(body)
	return true
}

// flexDuration decodes a JSON duration given as a Go duration string
// ("200ms", "30s") or a number of seconds.
type flexDuration time.Duration

func (d *flexDuration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case float64:
		*d = flexDuration(time.Duration(x * float64(time.Second)))
	case string:
		p, err := time.ParseDuration(x)
		if err != nil {
			return fmt.Errorf("duration %q: %w", x, err)
		}
		*d = flexDuration(p)
	case nil:
		*d = 0
	default:
		return fmt.Errorf("duration must be a string like \"30s\" or a number of seconds")
	}
	return nil
}

// FaultRequest is the JSON body of POST /mock/faults.
type faultRequest struct {
	Target     string       `json:"target"`
	Status     int          `json:"status"`
	RetryAfter flexDuration `json:"retry_after"`
	Latency    flexDuration `json:"latency"`
	Drop       bool         `json:"drop"`
	Count      int          `json:"count"`
	Duration   flexDuration `json:"duration"`
	Body       string       `json:"body"`
}

func decodeStrict(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<16))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("mockauth: request body: %w", err)
	}
	return nil
}

func adminError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// adminHandler serves the control API under /mock/ (plain HTTP on loopback).
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /mock/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Stats())
	})
	mux.HandleFunc("GET /mock/info", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Info())
	})
	mux.HandleFunc("GET /mock/vcap", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(s.VCAPServices())
	})
	mux.HandleFunc("GET /mock/ca.crt", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.CACertPEM())
	})
	mux.HandleFunc("GET /mock/received", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Received())
	})
	mux.HandleFunc("GET /mock/certificates", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Issued())
	})
	mux.HandleFunc("POST /mock/faults", func(w http.ResponseWriter, r *http.Request) {
		var fr faultRequest
		if err := decodeStrict(r, &fr); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		f := Fault{Target: fr.Target, Status: fr.Status, RetryAfter: time.Duration(fr.RetryAfter), Latency: time.Duration(fr.Latency),
			Drop: fr.Drop, Count: fr.Count, Duration: time.Duration(fr.Duration), Body: fr.Body}
		if err := s.AddFault(f); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]string{"status": "added"})
	})
	mux.HandleFunc("DELETE /mock/faults", func(w http.ResponseWriter, r *http.Request) {
		s.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /mock/tokens", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Application string `json:"application"`
		}
		if err := decodeStrict(r, &req); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		u, tok, err := s.NewPairingToken(req.Application)
		if err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]string{"url": u, "token": tok})
	})
	mux.HandleFunc("POST /mock/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			SHA256 string `json:"sha256"`
			Serial string `json:"serial"`
		}
		if err := decodeStrict(r, &req); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		var err error
		switch {
		case (req.SHA256 == "") == (req.Serial == ""):
			adminError(w, http.StatusBadRequest, fmt.Errorf("give one of \"sha256\" (the certificate's fingerprint) and \"serial\""))
			return
		case req.SHA256 != "":
			err = s.RevokeSHA256(req.SHA256)
		default:
			err = s.Revoke(req.Serial)
		}
		if err != nil {
			adminError(w, http.StatusNotFound, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"revoked": req.SHA256 + req.Serial})
	})
	mux.HandleFunc("POST /mock/rotate-keys", func(w http.ResponseWriter, r *http.Request) {
		if err := s.RotateKeys(); err != nil {
			adminError(w, http.StatusInternalServerError, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"kid": s.KeyID()})
	})
	mux.HandleFunc("POST /mock/ttl", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Token flexDuration `json:"token"`
			Cert  flexDuration `json:"cert"`
		}
		if err := decodeStrict(r, &req); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		if req.Token < 0 || req.Cert < 0 {
			adminError(w, http.StatusBadRequest, fmt.Errorf("mockauth: ttl must not be negative"))
			return
		}
		s.SetTTL(time.Duration(req.Token), time.Duration(req.Cert))
		s.mu.Lock()
		tok, cert := s.tokenTTL, s.certTTL
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]string{"token": tok.String(), "cert": cert.String()})
	})
	s.destinationAdmin(mux)
	s.caRotationAdmin(mux)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		adminError(w, http.StatusNotFound, fmt.Errorf("mockauth: no such control endpoint: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (s *Server) grantLabel(r *http.Request) string {
	g := r.PostForm.Get("grant_type")
	if r.URL.Path == "/oauth2/token" {
		return "ias:" + g
	}
	return g
}

func (s *Server) tenantLabel(r *http.Request, listener string) string {
	if r.URL.Path == "/oauth2/token" {
		if tid := r.PostForm.Get("app_tid"); tid != "" {
			if t, ok := s.tenantByZone(tid); ok {
				return t.Subdomain
			}
			return "unknown"
		}
		return s.tenants[0].Subdomain
	}
	domain := UAADomain
	if listener == listenerCertToken {
		domain = CertUAADomain
	}
	if t, e := s.resolveTenant(r, domain); e == nil {
		return t.Subdomain
	}
	return "unknown"
}

// noRedirect answers 404 to paths that are not clean ("//oauth/token",
// "/a/../oauth/token"), which http.ServeMux would otherwise redirect: the
// mock never redirects, and token clients must never follow redirects.
func noRedirect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "" || p[0] != '/' || path.Clean(p) != p && path.Clean(p)+"/" != p {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "not_found", "error_description": "no such endpoint"})
			return
		}
		h.ServeHTTP(w, r)
	})
}
