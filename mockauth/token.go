package mockauth

import (
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Grant types the token service understands.
const (
	GrantClientCredentials = "client_credentials"
	GrantPassword          = "password"
	GrantJWTBearer         = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	GrantRefreshToken      = "refresh_token"
)

// User is one of the fixed test users of the password grant.
type User struct {
	Name     string   `json:"user_name"`
	Password string   `json:"-"`
	ID       string   `json:"user_id"`
	Email    string   `json:"email"`
	Roles    []string `json:"roles"` // scopes are "<xsappname>.<role>"
}

type testUser struct {
	name, password, id, email, given, family string
	roles                                    []string
}

// The fixed user set of the password grant (documented in docs/testing.md).
var testUsers = []testUser{
	{"alice", "alice-password", "a11ce000-0000-4000-8000-00000000a11c", "alice@example.com", "Alice", "Tester", []string{"read", "write"}},
	{"bob", "bob-password", "b0b00000-0000-4000-8000-000000000b0b", "bob@example.com", "Bob", "Tester", []string{"read"}},
}

// Users returns the fixed test users of the password grant, with their
// passwords: alice/alice-password (roles read, write) and bob/bob-password
// (role read).
func Users() []User {
	var us []User
	for _, u := range testUsers {
		us = append(us, User{Name: u.name, Password: u.password, ID: u.id, Email: u.email, Roles: slices.Clone(u.roles)})
	}
	return us
}

type refreshGrant struct {
	clientID string
	zoneID   string
	user     *testUser
	scopes   []string
	expires  time.Time
}

// SetTTL changes the access-token lifetime and the connector certificate
// lifetime for what is issued from now on; a zero value leaves one unchanged.
func (s *Server) SetTTL(token, cert time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if token > 0 {
		s.tokenTTL = token
	}
	if cert > 0 {
		s.certTTL = cert
	}
}

// Claims returns the claims the mock would put in a client_credentials
// token of the secret binding for the tenant with the given subdomain, as a
// starting point for [Server.MintToken].
func (s *Server) Claims(subdomain string) (map[string]any, error) {
	t, ok := s.tenantBySubdomain(subdomain)
	if !ok {
		return nil, fmt.Errorf("mockauth: unknown tenant %q", subdomain)
	}
	c := s.clients[SecretClientID]
	return s.xsuaaClaims(t, c, nil, GrantClientCredentials, clientScopes(c), s.now()), nil
}

func clientScopes(c *client) []string {
	return []string{c.xsappname + ".read", c.xsappname + ".write", "uaa.resource"}
}

func userScopes(c *client, u *testUser) []string {
	out := []string{"openid"}
	for _, r := range u.roles {
		out = append(out, c.xsappname+"."+r)
	}
	return out
}

func (s *Server) tenantBySubdomain(sub string) (Tenant, bool) {
	for _, t := range s.tenants {
		if t.Subdomain == sub {
			return t, true
		}
	}
	return Tenant{}, false
}

func (s *Server) tenantByZone(zid string) (Tenant, bool) {
	for _, t := range s.tenants {
		if t.ZoneID == zid {
			return t, true
		}
	}
	return Tenant{}, false
}

func isLocalhostName(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

func hostOnly(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		h = hostport
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// errorResponse is an OAuth error: status, error code and description.
type errorResponse struct {
	status      int
	code        string
	description string
}

func (e *errorResponse) Error() string { return e.code + ": " + e.description }

func oauthErr(status int, code, format string, a ...any) *errorResponse {
	return &errorResponse{status: status, code: code, description: fmt.Sprintf(format, a...)}
}

// resolveTenant picks the tenant of a token request from the first host
// label under domain, or from X-zid on the tenant-agnostic host.
func (s *Server) resolveTenant(r *http.Request, domain string) (Tenant, *errorResponse) {
	host := hostOnly(r.Host)
	if host == domain || !strings.HasSuffix(host, "."+domain) {
		zid := r.Header.Get("X-zid")
		if zid == "" {
			return Tenant{}, oauthErr(http.StatusUnauthorized, "unauthorized", "no identity zone: use a tenant subdomain host or send X-zid")
		}
		t, ok := s.tenantByZone(zid)
		if !ok {
			return Tenant{}, oauthErr(http.StatusNotFound, "not_found", "Cannot find identity zone for id %q", zid)
		}
		return t, nil
	}
	sub := strings.TrimSuffix(host, "."+domain)
	t, ok := s.tenantBySubdomain(sub)
	if !ok {
		return Tenant{}, oauthErr(http.StatusNotFound, "not_found", "Cannot find identity zone for subdomain %q", sub)
	}
	return t, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// refuseToken answers a refused token request with e, counted by grant,
// tenant and cause.
func (s *Server) refuseToken(w http.ResponseWriter, grant, tenant string, e *errorResponse) {
	s.countToken(grant, tenant, false)
	s.countError(e.code)
	writeOAuthError(w, e)
}

func writeOAuthError(w http.ResponseWriter, e *errorResponse) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mockauth", error="`+e.code+`"`)
	}
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.description})
}

// tokenHandler serves one token host: the secret host (cert=false) or the
// mTLS cert host (cert=true).
func (s *Server) tokenHandler(cert bool) http.Handler {
	domain := UAADomain
	if cert {
		domain = CertUAADomain
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/oauth/token", func(w http.ResponseWriter, r *http.Request) {
		s.handleXSUAAToken(w, r, cert, domain)
	})
	mux.HandleFunc("/token_keys", s.handleJWKS)
	mux.HandleFunc("/oauth2/token", func(w http.ResponseWriter, r *http.Request) {
		s.handleIASToken(w, r, cert)
	})
	mux.HandleFunc("/oauth2/certs", s.handleJWKS)
	mux.HandleFunc("/.well-known/openid-configuration", s.handleOpenIDConfig)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.countError("not_found")
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "not_found", "error_description": "no such endpoint"})
	})
	return mux
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	IDToken      string `json:"id_token,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	JTI          string `json:"jti,omitempty"`
}

func (s *Server) parseTokenForm(r *http.Request) *errorResponse {
	if r.Method != http.MethodPost {
		return oauthErr(http.StatusMethodNotAllowed, "method_not_allowed", "Request method %q not supported", r.Method)
	}
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return oauthErr(http.StatusBadRequest, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 1<<16)
	if err := r.ParseForm(); err != nil {
		return oauthErr(http.StatusBadRequest, "invalid_request", "malformed form body")
	}
	return nil
}

// authenticateClient checks the client of a token request: id and secret
// (form or HTTP Basic) on the secret host, the verified client certificate
// on the cert host.
func (s *Server) authenticateClient(r *http.Request, cert bool) (*client, *errorResponse) {
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" {
		return nil, oauthErr(http.StatusUnauthorized, "unauthorized", "Full authentication is required to access this resource")
	}
	c := s.clients[id]
	if cert {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
			return nil, oauthErr(http.StatusUnauthorized, "unauthorized", "client certificate required")
		}
		if c == nil {
			return nil, oauthErr(http.StatusUnauthorized, "invalid_client", "Bad credentials")
		}
		if s.fromBindingCA(r.TLS.VerifiedChains) {
			if !c.x509 {
				return nil, oauthErr(http.StatusUnauthorized, "invalid_client", "client certificate does not belong to client %q", id)
			}
			return c, nil
		}
		// A certificate from Options.ClientCAs: a test's own binding, any client id.
		return c, nil
	}
	if c == nil || c.secret == "" || subtle.ConstantTimeCompare([]byte(c.secret), []byte(secret)) != 1 {
		return nil, oauthErr(http.StatusUnauthorized, "unauthorized", "Bad credentials")
	}
	return c, nil
}

func (s *Server) fromBindingCA(chains [][]*x509.Certificate) bool {
	for _, ch := range chains {
		if len(ch) > 0 && ch[len(ch)-1].Equal(s.clientCA.cert) {
			return true
		}
	}
	return false
}

// narrowScopes applies the scope parameter: every requested scope must be
// granted; no scope parameter means all granted scopes.
func narrowScopes(granted []string, requested string) ([]string, *errorResponse) {
	req := strings.Fields(requested)
	if len(req) == 0 {
		return granted, nil
	}
	for _, sc := range req {
		if !slices.Contains(granted, sc) {
			return nil, oauthErr(http.StatusBadRequest, "invalid_scope", "Invalid scope: %s. Did you know that you can get default scopes by simply sending no value?", sc)
		}
	}
	return req, nil
}

func (s *Server) handleXSUAAToken(w http.ResponseWriter, r *http.Request, cert bool, domain string) {
	grant := ""
	tenantLabel := "unknown"
	fail := func(e *errorResponse) { s.refuseToken(w, grant, tenantLabel, e) }
	if e := s.parseTokenForm(r); e != nil {
		fail(e)
		return
	}
	grant = r.PostForm.Get("grant_type")
	t, e := s.resolveTenant(r, domain)
	if e != nil {
		fail(e)
		return
	}
	tenantLabel = t.Subdomain
	c, e := s.authenticateClient(r, cert)
	if e != nil {
		fail(e)
		return
	}
	if c.ias {
		fail(oauthErr(http.StatusUnauthorized, "invalid_client", "client %q is not an XSUAA client", c.id))
		return
	}
	resp, e := s.grant(r, t, c, grant)
	if e != nil {
		fail(e)
		return
	}
	s.countToken(grant, tenantLabel, true)
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) grant(r *http.Request, t Tenant, c *client, grant string) (*tokenResponse, *errorResponse) {
	now := s.now()
	switch grant {
	case GrantClientCredentials:
		scopes, e := narrowScopes(clientScopes(c), r.PostForm.Get("scope"))
		if e != nil {
			return nil, e
		}
		return s.issueXSUAA(t, c, nil, grant, scopes, now, false)
	case GrantPassword:
		u := findUser(r.PostForm.Get("username"))
		if u == nil || subtle.ConstantTimeCompare([]byte(u.password), []byte(r.PostForm.Get("password"))) != 1 {
			return nil, oauthErr(http.StatusUnauthorized, "unauthorized", "Bad credentials")
		}
		return s.issueForUser(r, t, c, u, grant, now)
	case GrantJWTBearer:
		assertion := r.PostForm.Get("assertion")
		if assertion == "" {
			return nil, oauthErr(http.StatusBadRequest, "invalid_request", "missing assertion")
		}
		claims, err := s.verify(assertion, now)
		if err != nil {
			return nil, oauthErr(http.StatusUnauthorized, "invalid_grant", "invalid assertion: %v", err)
		}
		if zid, _ := claims["zid"].(string); zid != t.ZoneID {
			return nil, oauthErr(http.StatusUnauthorized, "invalid_grant", "assertion belongs to another identity zone")
		}
		name, _ := claims["user_name"].(string)
		u := findUser(name)
		if u == nil {
			return nil, oauthErr(http.StatusUnauthorized, "invalid_grant", "assertion is not a user token")
		}
		return s.issueForUser(r, t, c, u, grant, now)
	case GrantRefreshToken:
		rt := r.PostForm.Get("refresh_token")
		s.mu.Lock()
		g := s.refresh[rt]
		s.mu.Unlock()
		if rt == "" || g == nil || g.clientID != c.id || g.zoneID != t.ZoneID || !now.Before(g.expires) {
			return nil, oauthErr(http.StatusUnauthorized, "invalid_grant", "Invalid refresh token")
		}
		scopes, e := narrowScopes(g.scopes, r.PostForm.Get("scope"))
		if e != nil {
			return nil, e
		}
		return s.issueXSUAA(t, c, g.user, grant, scopes, now, true)
	case "":
		return nil, oauthErr(http.StatusBadRequest, "invalid_request", "missing grant_type")
	default:
		return nil, oauthErr(http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: %s", grant)
	}
}

func findUser(name string) *testUser {
	for i := range testUsers {
		if testUsers[i].name == name {
			return &testUsers[i]
		}
	}
	return nil
}

// issueForUser issues a user's token (password and jwt-bearer grants) with
// the scopes the request narrows the user's to, and a refresh token.
func (s *Server) issueForUser(r *http.Request, t Tenant, c *client, u *testUser, grant string, now time.Time) (*tokenResponse, *errorResponse) {
	scopes, e := narrowScopes(userScopes(c, u), r.PostForm.Get("scope"))
	if e != nil {
		return nil, e
	}
	return s.issueXSUAA(t, c, u, grant, scopes, now, true)
}

func (s *Server) issuer(t Tenant) string {
	return httpsURL(t.Subdomain+"."+UAADomain, s.info.TokenPort) + "/oauth/token"
}

func (s *Server) jku(t Tenant) string {
	return httpsURL(t.Subdomain+"."+UAADomain, s.info.TokenPort) + "/token_keys"
}

func audiences(c *client, scopes []string) []string {
	aud := []string{c.id}
	for _, sc := range scopes {
		if i := strings.LastIndex(sc, "."); i > 0 {
			if a := sc[:i]; !slices.Contains(aud, a) {
				aud = append(aud, a)
			}
		}
	}
	return aud
}

func (s *Server) xsuaaClaims(t Tenant, c *client, u *testUser, grant string, scopes []string, now time.Time) map[string]any {
	ttl := s.ttlFor(c, false)
	claims := map[string]any{
		"jti":        randomHex(16),
		"ext_attr":   map[string]any{"enhancer": "XSUAA", "subaccountid": t.ZoneID, "zdn": t.Subdomain},
		"sub":        c.id,
		"scope":      scopes,
		"client_id":  c.id,
		"cid":        c.id,
		"azp":        c.id,
		"grant_type": grant,
		"rev_sig":    s.clientRevSig(c.id),
		"iat":        now.Unix(),
		"exp":        now.Add(ttl).Unix(),
		"iss":        s.issuer(t),
		"zid":        t.ZoneID,
		"aud":        audiences(c, scopes),
	}
	if u != nil {
		claims["sub"] = u.id
		claims["user_id"] = u.id
		claims["user_name"] = u.name
		claims["origin"] = "sap.default"
		claims["email"] = u.email
		claims["given_name"] = u.given
		claims["family_name"] = u.family
		claims["xs.user.attributes"] = map[string]any{}
		claims["xs.system.attributes"] = map[string]any{"xs.rolecollections": []string{}}
		claims["auth_time"] = now.Unix()
	}
	return claims
}

func (s *Server) issueXSUAA(t Tenant, c *client, u *testUser, grant string, scopes []string, now time.Time, withRefresh bool) (*tokenResponse, *errorResponse) {
	claims := s.xsuaaClaims(t, c, u, grant, scopes, now)
	tok, err := s.MintToken(claims, WithJKU(s.jku(t)))
	if err != nil {
		return nil, oauthErr(http.StatusInternalServerError, "server_error", "cannot sign token")
	}
	ttl := s.ttlFor(c, true)
	resp := &tokenResponse{
		AccessToken: tok,
		TokenType:   "bearer",
		ExpiresIn:   int64(ttl / time.Second),
		Scope:       strings.Join(scopes, " "),
		JTI:         claims["jti"].(string),
	}
	if withRefresh && u != nil {
		rt := randomHex(16) + "-r"
		s.mu.Lock()
		s.refresh[rt] = &refreshGrant{clientID: c.id, zoneID: t.ZoneID, user: u, scopes: scopes, expires: now.Add(30 * 24 * time.Hour)}
		s.mu.Unlock()
		resp.RefreshToken = rt
	}
	return resp, nil
}
