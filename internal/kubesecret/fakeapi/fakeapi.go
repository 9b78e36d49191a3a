// Package fakeapi is an in-process fake of the Kubernetes API server's
// Secret endpoints for tests: GET, PUT and POST on
// /api/v1/namespaces/NS/secrets[/NAME] with resourceVersion semantics
// (a PUT with a stale version is 409 Conflict, a POST of an existing name
// is 409 AlreadyExists), a bearer token check, and a switch that takes it
// down (every connection is closed at once) and up again. It shares no code
// with internal/kubesecret, which it tests.
package fakeapi

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
)

// Counts are what the server saw.
type Counts struct {
	Gets, Puts, Posts int
	Conflicts         int // 409 answers
	Refused           int // requests dropped while down
	Unauthorized      int
}

// Server is the fake API server. Safe for concurrent use.
type Server struct {
	srv *httptest.Server

	mu      sync.Mutex
	tokens  map[string]bool
	objects map[string]map[string]any // "ns/name" -> the Secret object
	version int
	down    bool
	counts  Counts
	onPut   func() // called before a PUT is applied (tests hold it)
}

// Start serves on 127.0.0.1 with TLS from cfg (a server certificate for
// 127.0.0.1). token is the bearer token accepted; more can be added.
func Start(cfg *tls.Config, token string) *Server {
	s := &Server{tokens: map[string]bool{token: true}, objects: map[string]map[string]any{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.TLS = cfg
	s.srv.EnableHTTP2 = true
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.StartTLS()
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// HostPort returns the host and the port (KUBERNETES_SERVICE_HOST/PORT).
func (s *Server) HostPort() (string, string) {
	a := s.srv.Listener.Addr().(*net.TCPAddr)
	return a.IP.String(), strconv.Itoa(a.Port)
}

// AddToken accepts another bearer token (a rotated service-account token).
func (s *Server) AddToken(t string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[t] = true
}

// RemoveToken stops accepting t.
func (s *Server) RemoveToken(t string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, t)
}

// SetDown takes the server down (every request's connection is closed
// without an answer) or brings it back.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = down
	if down {
		s.srv.CloseClientConnections()
	}
}

// OnPut sets a function called before each PUT is applied (nil: none).
func (s *Server) OnPut(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onPut = f
}

// Counts returns what the server saw so far.
func (s *Server) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// Put stores a Secret as kubectl would (an empty data map makes the
// pre-created Secret of the chart); it returns its new resourceVersion.
func (s *Server) Put(ns, name string, data map[string][]byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj := map[string]any{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{"app.kubernetes.io/managed-by": "Helm"}}}
	if data != nil {
		obj["data"] = data
	}
	return s.store(ns+"/"+name, obj)
}

// Data returns the decoded data of a Secret, and its resourceVersion
// ("" when it does not exist).
func (s *Server) Data(ns, name string) (map[string][]byte, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, ok := s.objects[ns+"/"+name]
	if !ok {
		return nil, ""
	}
	b, _ := json.Marshal(obj)
	var out struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Data map[string][]byte `json:"data"`
	}
	_ = json.Unmarshal(b, &out)
	return out.Data, out.Metadata.ResourceVersion
}

// Labels returns the labels of a Secret (to see that an update kept them).
func (s *Server) Labels(ns, name string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	obj, ok := s.objects[ns+"/"+name]
	if !ok {
		return nil
	}
	l, _ := obj["metadata"].(map[string]any)["labels"].(map[string]any)
	return l
}

func (s *Server) store(key string, obj map[string]any) string {
	s.version++
	rv := strconv.Itoa(s.version)
	obj["metadata"].(map[string]any)["resourceVersion"] = rv
	// Round-trip through JSON so that stored objects share nothing with
	// the caller and hold data as base64 strings, as the API server does.
	b, _ := json.Marshal(obj)
	var clean map[string]any
	_ = json.Unmarshal(b, &clean)
	s.objects[key] = clean
	return rv
}

func status(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.down {
		s.counts.Refused++
		s.mu.Unlock()
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				_ = c.Close()
				return
			}
		}
		panic(http.ErrAbortHandler) // HTTP/2: reset the stream
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !s.tokens[tok] {
		s.counts.Unauthorized++
		s.mu.Unlock()
		status(w, http.StatusUnauthorized, "Unauthorized")
		return
	}
	onPut := s.onPut
	s.mu.Unlock()

	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/namespaces/")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) < 2 || len(parts) > 3 || parts[1] != "secrets" {
		status(w, http.StatusNotFound, "NotFound")
		return
	}
	ns := parts[0]
	body, err := io.ReadAll(io.LimitReader(r.Body, 3<<20))
	if err != nil {
		status(w, http.StatusBadRequest, "BadRequest")
		return
	}
	var in map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &in); err != nil {
			status(w, http.StatusBadRequest, "BadRequest")
			return
		}
	}
	meta := func() map[string]any {
		m, _ := in["metadata"].(map[string]any)
		if m == nil {
			m = map[string]any{}
			in["metadata"] = m
		}
		return m
	}

	if onPut != nil && r.Method == http.MethodPut {
		onPut()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && len(parts) == 3:
		s.counts.Gets++
		obj, ok := s.objects[ns+"/"+parts[2]]
		if !ok {
			status(w, http.StatusNotFound, "NotFound")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(obj)
	case r.Method == http.MethodPut && len(parts) == 3:
		s.counts.Puts++
		key := ns + "/" + parts[2]
		cur, ok := s.objects[key]
		if !ok {
			status(w, http.StatusNotFound, "NotFound")
			return
		}
		m := meta()
		if m["name"] != parts[2] {
			status(w, http.StatusBadRequest, "BadRequest")
			return
		}
		if rv, _ := m["resourceVersion"].(string); rv != cur["metadata"].(map[string]any)["resourceVersion"] {
			s.counts.Conflicts++
			status(w, http.StatusConflict, "Conflict")
			return
		}
		s.store(key, in)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.objects[key])
	case r.Method == http.MethodPost && len(parts) == 2:
		s.counts.Posts++
		m := meta()
		name, _ := m["name"].(string)
		key := ns + "/" + name
		if _, exists := s.objects[key]; exists {
			s.counts.Conflicts++
			status(w, http.StatusConflict, "AlreadyExists")
			return
		}
		delete(m, "resourceVersion")
		s.store(key, in)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(s.objects[key])
	default:
		status(w, http.StatusMethodNotAllowed, "MethodNotAllowed")
	}
}
