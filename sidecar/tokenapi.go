package sidecar

import (
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Reasons the token API refuses a request.
const (
	ReasonTokenAPIOff = "token-api-off"
	ReasonNotLoopback = "not-loopback"
	ReasonBadRequest  = "bad-request"
)

// TokenResponse is the JSON body of GET /.credbroker/v1/token.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresAt   string `json:"expires_at"` // RFC 3339
	Scope       string `json:"scope,omitempty"`
}

type tokenAPI struct {
	cfg     TokenAPI
	tokens  Tokens
	o       options
	hosts   *hostPolicy
	mu      sync.Mutex
	sources map[string]TokenSource // by binding (bounded by token_api.bindings); scopes go per request
}

func newTokenAPI(cfg TokenAPI, tokens Tokens, o options) *tokenAPI {
	return &tokenAPI{cfg: cfg, tokens: tokens, o: o, sources: map[string]TokenSource{}}
}

// source is the binding's one source: a scope set is a per-request choice
// (TokenRequest.Scopes), so callers cannot grow this map, and the token
// client bounds the scope sets and tenants it caches (max_token_keys).
func (t *tokenAPI) source(binding string) (TokenSource, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.sources[binding]; ok {
		return s, nil
	}
	s, err := t.tokens.Source(binding, nil, GrantClientCredentials)
	if err != nil {
		return nil, err
	}
	t.sources[binding] = s
	return s, nil
}

// isLoopbackAddr reports whether a RemoteAddr ("ip:port") is loopback.
func isLoopbackAddr(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

func (t *tokenAPI) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	binding := req.URL.Query().Get("binding")
	code := t.serve(w, req, binding)
	if binding == "" || !t.cfg.Allows(binding) {
		binding = "-" // unknown names do not become label values
	}
	t.o.metrics.tokenAPI.WithLabelValues(binding, strconv.Itoa(code)).Inc()
	if code != http.StatusOK {
		// The reason is one of this package's constants (jsonError's).
		t.o.metrics.apiRefused.WithLabelValues(w.Header().Get(HeaderError)).Inc()
	}
}

func (t *tokenAPI) serve(w http.ResponseWriter, req *http.Request, binding string) int {
	if req.URL.Path != TokenAPIPath {
		return jsonError(w, http.StatusNotFound, ReasonNotARoute, "unknown credbroker endpoint; the token API is GET "+TokenAPIPath)
	}
	if req.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		return jsonError(w, http.StatusMethodNotAllowed, ReasonBadRequest, "use GET")
	}
	if t.hosts != nil {
		if reason, msg := t.hosts.browserRefusal(req); reason != "" {
			t.o.metrics.refused.WithLabelValues(reason).Inc()
			return jsonError(w, http.StatusForbidden, reason, msg)
		}
	}
	if !isLoopbackAddr(req.RemoteAddr) {
		return jsonError(w, http.StatusForbidden, ReasonNotLoopback, "the token API answers loopback callers only")
	}
	if len(t.cfg.Bindings) == 0 || t.tokens == nil {
		return jsonError(w, http.StatusForbidden, ReasonTokenAPIOff, "the token API is off; list the bindings it may serve under token_api.bindings")
	}
	if binding == "" {
		return jsonError(w, http.StatusBadRequest, ReasonBadRequest, "binding is required: "+TokenAPIPath+"?binding=NAME")
	}
	if !t.cfg.Allows(binding) {
		return jsonError(w, http.StatusForbidden, ReasonTokenAPIOff, "the token API does not serve this binding (token_api.bindings)")
	}
	q := req.URL.Query()
	var scopes []string
	for _, s := range q["scope"] {
		scopes = append(scopes, strings.Fields(s)...)
	}
	if scopes != nil {
		slices.Sort(scopes)
		scopes = slices.Compact(scopes)
	}
	src, err := t.source(binding)
	if err != nil {
		return jsonError(w, http.StatusNotFound, ReasonBadRequest, "binding "+binding+": "+err.Error())
	}
	tok, err := src.Token(req.Context(), TokenRequest{Tenant: q.Get("tenant"), Scopes: scopes})
	if t.o.metrics.keyLimited(err, binding, "token_api") {
		w.Header().Set("Retry-After", "60")
		return jsonError(w, keyLimitStatus, ReasonTokenKeyLimit, "binding "+binding+" holds max_token_keys distinct scope sets and tenants; tokens already cached keep working")
	}
	if err != nil {
		t.o.log.Debug("token API: no token", "binding", binding, "err", err)
		return jsonError(w, http.StatusServiceUnavailable, ReasonTokenUnavailable, "no valid token for binding "+binding+": "+err.Error())
	}
	typ := tok.TokenType
	if typ == "" {
		typ = "bearer"
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(TokenResponse{
		AccessToken: tok.AccessToken,
		TokenType:   typ,
		ExpiresAt:   tok.ExpiresAt.UTC().Format(time.RFC3339),
		Scope:       tok.Scope,
	})
	return http.StatusOK
}

func jsonError(w http.ResponseWriter, status int, reason, msg string) int {
	noteReason(w, reason)
	h := w.Header()
	h.Set(HeaderError, reason)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": reason, "error_description": msg})
	return status
}
