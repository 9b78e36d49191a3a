package mockauth

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// resourceHost is the resource server's host name (Options.ResourceServer).
const resourceHost = "api.localhost"

const listenerResource = "resource"

// Modes of the resource server ([Server.SetResourceMode], POST
// /mock/resource).
const (
	// ResourceValidate (the default) answers 200 to a request with a valid
	// token and 401 with WWW-Authenticate: Bearer error="invalid_token" to
	// one whose token is revoked, expired, not signed by the mock, or
	// missing (then without error, RFC 6750 §3.1).
	ResourceValidate = "validate"
	// ResourceForbidden answers 403 error="insufficient_scope" to a valid
	// token (the token is good, the permission missing); invalid tokens
	// still get 401.
	ResourceForbidden = "forbidden"
	// ResourceReject answers 401 invalid_token to every request, valid
	// token or not (an upstream that never accepts anything).
	ResourceReject = "reject"
)

// DefaultResourceChallenge is the WWW-Authenticate value of the resource
// server's 401 for a token it refuses.
const DefaultResourceChallenge = `Bearer realm="mockauth", error="invalid_token", error_description="The access token is not valid"`

// ResourceStats count the resource server's answers.
type ResourceStats struct {
	Requests  int `json:"requests"`
	Accepted  int `json:"accepted"`
	Rejected  int `json:"rejected"`  // 401
	Forbidden int `json:"forbidden"` // 403
}

// resourceState is the resource server's mode and counters, under s.mu.
type resourceState struct {
	mode      string
	challenge string
	stats     ResourceStats
}

// SetResourceMode sets how the resource server answers (ResourceValidate,
// ResourceForbidden, ResourceReject) and, when challenge is not "", the
// WWW-Authenticate value of its 401 for a refused token (default
// DefaultResourceChallenge).
func (s *Server) SetResourceMode(mode, challenge string) error {
	switch mode {
	case ResourceValidate, ResourceForbidden, ResourceReject:
	default:
		return fmt.Errorf("mockauth: resource mode %q: want %s, %s or %s", mode, ResourceValidate, ResourceForbidden, ResourceReject)
	}
	if strings.ContainsAny(challenge, "\r\n") {
		return errors.New("mockauth: the challenge must be one line")
	}
	if challenge == "" {
		challenge = DefaultResourceChallenge
	}
	s.mu.Lock()
	s.resource.mode, s.resource.challenge = mode, challenge
	s.mu.Unlock()
	return nil
}

// ResourceStats returns the resource server's counters.
func (s *Server) ResourceStats() ResourceStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resource.stats
}

// RevokeToken revokes the access token with the given jti (the jti field
// of the token response): the resource server refuses it from now on.
// The token service does not check revocation (as XSUAA's does not for a
// client_credentials grant); only resource servers do.
func (s *Server) RevokeToken(jti string) error {
	if jti == "" {
		return errors.New("mockauth: revoke: empty jti")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revokedTokens[jti] = true
	s.stats.TokensRevoked++
	return nil
}

// RevokeClientTokens revokes every XSUAA-style token issued so far to a
// client id (as UAA's "revoke all tokens of a client": the client's
// revocation signature, the rev_sig claim, changes; tokens issued from
// now on carry the new one). IAS tokens carry no rev_sig: revoke them one
// by one with RevokeToken.
func (s *Server) RevokeClientTokens(clientID string) error {
	c := s.clients[clientID]
	if c == nil {
		return fmt.Errorf("mockauth: revoke: unknown client id %q", clientID)
	}
	if c.ias {
		return fmt.Errorf("mockauth: revoke: IAS tokens carry no rev_sig; revoke them by jti")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.revSig[clientID] = randomHex(4)
	s.stats.TokensRevoked++
	return nil
}

// clientRevSig is the rev_sig put in the client's tokens.
func (s *Server) clientRevSig(clientID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	sig, ok := s.revSig[clientID]
	if !ok {
		sig = randomHex(4)
		s.revSig[clientID] = sig
	}
	return sig
}

// resourceHandler is the resource server: it validates the Bearer token of
// every request as a real one does (signature by a published key of the
// mock, expiry, revocation) and answers with what it saw (no token).
func (s *Server) resourceHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, http.MaxBytesReader(nil, r.Body, 1<<20))
		s.mu.Lock()
		mode, challenge := s.resource.mode, s.resource.challenge
		s.resource.stats.Requests++
		s.mu.Unlock()
		count := func(f func(*ResourceStats)) {
			s.mu.Lock()
			f(&s.resource.stats)
			s.mu.Unlock()
		}
		refuse := func(desc string) {
			count(func(st *ResourceStats) { st.Rejected++ })
			v := challenge
			if desc != "" && challenge == DefaultResourceChallenge {
				v = `Bearer realm="mockauth", error="invalid_token", error_description="` + desc + `"`
			}
			w.Header().Set("WWW-Authenticate", v)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": desc})
		}
		auth := r.Header.Get("Authorization")
		if len(auth) < 7 || !strings.EqualFold(auth[:7], "bearer ") {
			count(func(st *ResourceStats) { st.Rejected++ })
			w.Header().Set("WWW-Authenticate", `Bearer realm="mockauth"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized", "error_description": "no Bearer token"})
			return
		}
		if mode == ResourceReject {
			refuse("The resource server accepts no token")
			return
		}
		claims, err := s.verify(strings.TrimSpace(auth[7:]), s.now())
		if err != nil {
			refuse("The access token is expired or not signed by a known key")
			return
		}
		jti, _ := claims["jti"].(string)
		cid, _ := claims["cid"].(string)
		sig, _ := claims["rev_sig"].(string)
		s.mu.Lock()
		revoked := s.revokedTokens[jti]
		if cur, ok := s.revSig[cid]; ok && sig != "" && sig != cur {
			revoked = true
		}
		s.mu.Unlock()
		if revoked {
			refuse("The access token was revoked")
			return
		}
		if mode == ResourceForbidden {
			count(func(st *ResourceStats) { st.Forbidden++ })
			w.Header().Set("WWW-Authenticate", `Bearer realm="mockauth", error="insufficient_scope", error_description="The token lacks the scope for this resource"`)
			writeJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope"})
			return
		}
		count(func(st *ResourceStats) { st.Accepted++ })
		clientID, _ := claims["client_id"].(string)
		if clientID == "" {
			clientID, _ = claims["azp"].(string)
		}
		zid, _ := claims["zid"].(string)
		writeJSON(w, http.StatusOK, map[string]string{"method": r.Method, "path": r.URL.Path, "client_id": clientID, "zid": zid, "jti": jti})
	})
}
