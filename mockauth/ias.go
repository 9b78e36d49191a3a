package mockauth

import (
	"crypto/subtle"
	"net/http"
	"time"
)

// The IAS flavour of the token service: /oauth2/token and the OpenID
// configuration.

func (s *Server) iasBase(r *http.Request) string {
	return "https://" + r.Host
}

func (s *Server) handleOpenIDConfig(w http.ResponseWriter, r *http.Request) {
	base := s.iasBase(r)
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base,
		"token_endpoint":                        base + "/oauth2/token",
		"jwks_uri":                              base + "/oauth2/certs",
		"authorization_endpoint":                base + "/oauth2/authorize",
		"grant_types_supported":                 []string{GrantClientCredentials, GrantPassword, GrantJWTBearer, GrantRefreshToken},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "tls_client_auth"},
		"response_types_supported":              []string{"code", "id_token", "token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

// handleIASToken serves the IAS flavour: /oauth2/token, client secret by
// HTTP Basic (or form), tenant by app_tid (default: the provider).
func (s *Server) handleIASToken(w http.ResponseWriter, r *http.Request, cert bool) {
	grant := ""
	tenantLabel := "unknown"
	fail := func(e *errorResponse) { s.refuseToken(w, "ias:"+grant, tenantLabel, e) }
	if e := s.parseTokenForm(r); e != nil {
		fail(e)
		return
	}
	grant = r.PostForm.Get("grant_type")
	t := s.tenants[0]
	if tid := r.PostForm.Get("app_tid"); tid != "" {
		var ok bool
		if t, ok = s.tenantByZone(tid); !ok {
			fail(oauthErr(http.StatusBadRequest, "invalid_request", "unknown app_tid %q", tid))
			return
		}
	}
	tenantLabel = t.Subdomain
	c, e := s.authenticateClient(r, cert)
	if e != nil {
		fail(e)
		return
	}
	now := s.now()
	var u *testUser
	switch grant {
	case GrantClientCredentials:
	case GrantPassword:
		u = findUser(r.PostForm.Get("username"))
		if u == nil || subtle.ConstantTimeCompare([]byte(u.password), []byte(r.PostForm.Get("password"))) != 1 {
			fail(oauthErr(http.StatusUnauthorized, "invalid_grant", "Bad credentials"))
			return
		}
	case "":
		fail(oauthErr(http.StatusBadRequest, "invalid_request", "missing grant_type"))
		return
	default:
		fail(oauthErr(http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: %s", grant))
		return
	}
	s.mu.Lock()
	ttl := s.tokenTTL
	s.mu.Unlock()
	aud := []string{c.id}
	aud = append(aud, r.PostForm["resource"]...)
	claims := map[string]any{
		"iss":       s.iasBase(r),
		"sub":       c.id,
		"aud":       aud,
		"azp":       c.id,
		"app_tid":   t.ZoneID,
		"zone_uuid": t.ZoneID,
		"iat":       now.Unix(),
		"exp":       now.Add(ttl).Unix(),
		"jti":       randomHex(16),
	}
	if u != nil {
		claims["sub"] = u.id
		claims["user_uuid"] = u.id
		claims["email"] = u.email
		claims["given_name"] = u.given
		claims["family_name"] = u.family
	}
	tok, err := s.MintToken(claims, WithJKU(""))
	if err != nil {
		fail(oauthErr(http.StatusInternalServerError, "server_error", "cannot sign token"))
		return
	}
	s.countToken("ias:"+grant, tenantLabel, true)
	writeJSON(w, http.StatusOK, tokenResponse{AccessToken: tok, TokenType: "Bearer", ExpiresIn: int64(ttl / time.Second)})
}
