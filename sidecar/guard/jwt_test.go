package guard

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/clock/fakeclock"
	"github.com/credbroker/credbroker/mockauth"
)

type jwtEnv struct {
	*env
	mock  *mockauth.Server
	clock *fakeclock.Clock
}

// startJWT serves a guard with /api/ (xsuaa-secret, scope read), /admin/
// (scope admin), /ias/ (the IAS binding) and /any/ (xsuaa, no scopes), on
// one clock shared with the mock.
func startJWT(t *testing.T) *jwtEnv {
	t.Helper()
	clock := newFakeClock(time.Now())
	srv := startMock(t, mockauth.Options{Now: clock.Now})
	cfg := &Config{Rules: []Rule{
		{Path: "/api/", Accept: []Method{MethodJWT}, Binding: mockauth.SecretBindingName, Scopes: []string{"read"}},
		{Path: "/admin/", Accept: []Method{MethodJWT}, Binding: mockauth.SecretBindingName, Scopes: []string{"admin"}},
		{Path: "/ias/", Accept: []Method{MethodJWT}, Binding: mockauth.IASBindingName},
		{Path: "/any/", Accept: []Method{MethodJWT}, Binding: mockauth.SecretBindingName},
	}}
	e := startGuard(t, cfg, nil, WithBindings(mockBindings(srv)), WithJWKSClient(srv.Client()), WithClock(clock.Now))
	return &jwtEnv{env: e, mock: srv, clock: clock}
}

func (e *jwtEnv) call(t *testing.T, path, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", e.url+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, nil, req)
}

func (e *jwtEnv) claims(t *testing.T) map[string]any {
	t.Helper()
	c, err := e.mock.Claims("provider")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *jwtEnv) mint(t *testing.T, claims map[string]any, opts ...mockauth.MintOption) string {
	t.Helper()
	tok, err := e.mock.MintToken(claims, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestJWTAcceptedWithIdentity(t *testing.T) {
	g := NewWithT(t)
	e := startJWT(t)
	tok := fetchToken(t, e.mock, false)
	resp, body := e.call(t, "/api/orders?x=1", tok)
	g.Expect(resp.StatusCode).To(Equal(200), body)
	g.Expect(body).To(Equal("app says hi"))
	seen := e.app.last()
	g.Expect(seen.Path).To(Equal("/api/orders"))
	g.Expect(seen.Query).To(Equal("x=1"))
	info := e.mock.Info()
	g.Expect(seen.Header.Get(HeaderAuthMethod)).To(Equal("jwt"))
	g.Expect(seen.Header.Get(HeaderClientID)).To(Equal(info.SecretClientID))
	g.Expect(seen.Header.Get(HeaderSubject)).To(Equal(info.SecretClientID))
	g.Expect(seen.Header.Get(HeaderZone)).To(Equal(info.Tenants[0].ZoneID))
	g.Expect(seen.Header.Get(HeaderTenant)).To(Equal(info.Tenants[0].Subdomain))
	g.Expect(strings.Fields(seen.Header.Get(HeaderScopes))).To(ContainElement(info.SecretXSAppName + ".read"))
	g.Expect(e.obs.get("jwt/accepted")).To(Equal(1))
	// The token never shows up in the guard's logs.
	g.Expect(e.logs.String()).NotTo(ContainSubstring(tok))
	g.Expect(e.logs.String()).NotTo(ContainSubstring(strings.Split(tok, ".")[2]))
}

func TestJWTIAS(t *testing.T) {
	g := NewWithT(t)
	e := startJWT(t)
	tok := fetchToken(t, e.mock, true)
	resp, body := e.call(t, "/ias/x", tok)
	g.Expect(resp.StatusCode).To(Equal(200), body)
	g.Expect(e.app.last().Header.Get(HeaderClientID)).To(Equal(e.mock.Info().IASClientID))
	g.Expect(e.app.last().Header.Get(HeaderZone)).To(Equal(e.mock.Info().Tenants[0].ZoneID))
	// An XSUAA token is not an IAS token, and the other way round.
	resp, _ = e.call(t, "/ias/x", fetchToken(t, e.mock, false))
	g.Expect(resp.StatusCode).To(Equal(401))
	resp, _ = e.call(t, "/any/x", tok)
	g.Expect(resp.StatusCode).To(Equal(401))
}

func TestJWTRefused(t *testing.T) {
	e := startJWT(t)
	info := e.mock.Info()
	now := e.clock.Now()
	port := strings.TrimPrefix(info.URL[strings.LastIndex(info.URL, ":"):], ":")

	// A JWKS server outside the binding's domain that must never be asked.
	attacker := startMock(t, mockauth.Options{})
	attackerTok, _ := attacker.MintToken(map[string]any{})
	_ = attackerTok

	hs256 := func(t *testing.T) string {
		// Algorithm confusion: HS256 keyed with the RSA public key (PEM, as
		// the JWKS "value" publishes it).
		var set struct {
			Keys []struct{ Value string } `json:"keys"`
		}
		if err := json.Unmarshal(e.mock.JWKS(), &set); err != nil || len(set.Keys) == 0 {
			t.Fatal("jwks", err)
		}
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(e.claims(t)))
		tok.Header["kid"] = e.mock.KeyID()
		tok.Header["jku"] = info.TokenKeysURL
		s, err := tok.SignedString([]byte(set.Keys[0].Value))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	b64 := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}

	for _, tc := range []struct {
		name   string
		path   string
		token  func(t *testing.T) string
		status int
		reason string
		errStr string // expected in WWW-Authenticate
	}{
		{"no token", "/api/x", func(*testing.T) string { return "" }, 401, ReasonNoCredentials, `Bearer realm="credbroker"`},
		{"other instance", "/any/x", func(t *testing.T) string {
			c := e.claims(t)
			c["client_id"], c["cid"], c["azp"], c["sub"] = info.X509ClientID, info.X509ClientID, info.X509ClientID, info.X509ClientID
			c["aud"] = []string{info.X509ClientID, info.X509XSAppName}
			c["scope"] = []string{info.X509XSAppName + ".read"}
			return e.mint(t, c)
		}, 401, ReasonWrongAudience, `error="invalid_token"`},
		{"wrong audience", "/any/x", func(t *testing.T) string {
			c := e.claims(t)
			c["client_id"], c["cid"], c["azp"] = "someone", "someone", "someone"
			c["aud"] = []string{"someone", "other-app!t9"}
			return e.mint(t, c)
		}, 401, ReasonWrongAudience, `error="invalid_token"`},
		{"expired", "/api/x", func(t *testing.T) string {
			c := e.claims(t)
			c["iat"], c["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
			return e.mint(t, c)
		}, 401, ReasonExpired, `error="invalid_token", error_description="token expired"`},
		{"not yet valid", "/api/x", func(t *testing.T) string {
			c := e.claims(t)
			c["nbf"] = now.Add(time.Hour).Unix()
			return e.mint(t, c)
		}, 401, ReasonNotYetValid, `error="invalid_token"`},
		{"issued in the future", "/api/x", func(t *testing.T) string {
			c := e.claims(t)
			c["iat"] = now.Add(time.Hour).Unix()
			return e.mint(t, c)
		}, 401, ReasonNotYetValid, `error_description="token issued in the future (iat)"`},
		{"no exp", "/api/x", func(t *testing.T) string {
			c := e.claims(t)
			delete(c, "exp")
			return e.mint(t, c)
		}, 401, ReasonMalformed, `error="invalid_token"`},
		{"wrong issuer", "/api/x", func(t *testing.T) string {
			c := e.claims(t)
			c["iss"] = "https://provider.evil.localhost:" + port + "/oauth/token"
			return e.mint(t, c)
		}, 401, ReasonWrongIssuer, `error="invalid_token"`},
		{"issuer on another port", "/api/x", func(t *testing.T) string {
			c := e.claims(t)
			c["iss"] = "https://provider." + info.UAADomain + ":1/oauth/token"
			return e.mint(t, c)
		}, 401, ReasonWrongIssuer, ``},
		{"foreign jku", "/api/x", func(t *testing.T) string {
			return e.mint(t, e.claims(t), mockauth.WithJKU(attacker.Info().IASURL+"/token_keys"))
		}, 401, ReasonWrongIssuer, ``},
		{"jku with another path", "/api/x", func(t *testing.T) string {
			return e.mint(t, e.claims(t), mockauth.WithJKU(info.URL+"/evil/token_keys"))
		}, 401, ReasonWrongIssuer, ``},
		{"tampered payload", "/api/x", func(t *testing.T) string {
			parts := strings.Split(e.mint(t, e.claims(t)), ".")
			c := e.claims(t)
			c["scope"] = []string{info.SecretXSAppName + ".read", info.SecretXSAppName + ".admin"}
			parts[1] = b64(c)
			return strings.Join(parts, ".")
		}, 401, ReasonBadSignature, `error="invalid_token"`},
		{"signed by a foreign key", "/api/x", func(t *testing.T) string {
			return e.mint(t, e.claims(t), mockauth.WithForeignKey())
		}, 401, ReasonBadSignature, ``},
		{"alg none", "/api/x", func(t *testing.T) string {
			return b64(map[string]any{"alg": "none", "typ": "JWT", "kid": e.mock.KeyID()}) + "." + b64(e.claims(t)) + "."
		}, 401, ReasonBadAlgorithm, `error="invalid_token"`},
		{"HS256 with the RSA public key", "/api/x", hs256, 401, ReasonBadAlgorithm, ``},
		{"garbage", "/api/x", func(*testing.T) string { return "not.a.jwt" }, 401, ReasonMalformed, ``},
		{"insufficient scope", "/admin/x", func(t *testing.T) string { return e.mint(t, e.claims(t)) }, 403, ReasonInsufficientScope,
			`error="insufficient_scope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			before := e.app.count()
			tok := tc.token(t)
			resp, body := e.call(t, tc.path, tok)
			g.Expect(resp.StatusCode).To(Equal(tc.status), body)
			g.Expect(body).To(ContainSubstring(tc.reason))
			g.Expect(e.app.count()).To(Equal(before), "a refused request reached the app")
			g.Expect(resp.Header.Get("WWW-Authenticate")).To(HavePrefix(`Bearer realm="credbroker"`))
			g.Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring(tc.errStr))
			method := "jwt"
			if tc.reason == ReasonNoCredentials {
				method = "none"
			}
			g.Expect(e.obs.get(method + "/refused/" + tc.reason)).To(BeNumerically(">=", 1))
			if tok != "" {
				g.Expect(e.logs.String()).NotTo(ContainSubstring(tok))
			}
		})
	}
	g := NewWithT(t)
	g.Expect(attacker.Stats().JWKSRequests).To(Equal(0), "a key set outside the binding's domain was fetched")
	g.Expect(e.mock.Stats().JWKSRequests).To(Equal(1), "one key set fetch served every request")
	resp, _ := e.call(t, "/admin/x", e.mint(t, e.claims(t)))
	g.Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring(`scope="` + info.SecretXSAppName + `.admin"`))
}

func TestJWTLeeway(t *testing.T) {
	g := NewWithT(t)
	e := startJWT(t)
	c := e.claims(t)
	c["exp"] = e.clock.Now().Add(-10 * time.Second).Unix() // inside the 30s leeway
	resp, _ := e.call(t, "/api/x", e.mint(t, c))
	g.Expect(resp.StatusCode).To(Equal(200))
	e.clock.Advance(30 * time.Second)
	resp, _ = e.call(t, "/api/x", e.mint(t, c))
	g.Expect(resp.StatusCode).To(Equal(401))

	// iat: up to the leeway in the future is clock skew; beyond it is refused.
	c = e.claims(t)
	c["iat"] = e.clock.Now().Add(DefaultLeeway).Unix()
	resp, body := e.call(t, "/api/x", e.mint(t, c))
	g.Expect(resp.StatusCode).To(Equal(200), body)
	c["iat"] = e.clock.Now().Add(DefaultLeeway + time.Second).Unix()
	resp, body = e.call(t, "/api/x", e.mint(t, c))
	g.Expect(resp.StatusCode).To(Equal(401), body)
	g.Expect(body).To(ContainSubstring(ReasonNotYetValid))
}

// A rotated signing key is picked up: the unknown kid triggers one refresh
// of the key set; further unknown kids wait for the rate limit.
func TestJWTKeyRotation(t *testing.T) {
	g := NewWithT(t)
	e := startJWT(t)
	resp, _ := e.call(t, "/api/x", fetchToken(t, e.mock, false))
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Expect(e.mock.Stats().JWKSRequests).To(Equal(1))

	e.clock.Advance(DefaultKeyMinInterval)
	g.Expect(e.mock.RotateKeys()).To(Succeed())
	tok := fetchToken(t, e.mock, false)
	resp, body := e.call(t, "/api/x", tok)
	g.Expect(resp.StatusCode).To(Equal(200), body)
	g.Expect(e.mock.Stats().JWKSRequests).To(Equal(2))

	// Unknown kids do not make the guard hammer the auth server: the key set
	// was just fetched, so they wait for the rate limit.
	for i := 0; i < 5; i++ {
		resp, body = e.call(t, "/api/x", e.mint(t, e.claims(t), mockauth.WithKeyID("unknown-kid")))
		g.Expect(resp.StatusCode).To(Equal(401))
		g.Expect(body).To(ContainSubstring(ReasonUnknownKey))
	}
	g.Expect(e.mock.Stats().JWKSRequests).To(Equal(2), "rate-limited")
	e.clock.Advance(DefaultKeyMinInterval)
	for i := 0; i < 3; i++ {
		_, _ = e.call(t, "/api/x", e.mint(t, e.claims(t), mockauth.WithKeyID("unknown-kid")))
	}
	g.Expect(e.mock.Stats().JWKSRequests).To(Equal(3), "one refresh per interval")

	// Keys older than the refresh age are refreshed in the background while
	// requests keep being served from the cache.
	e.clock.Advance(DefaultKeyRefresh)
	resp, _ = e.call(t, "/api/x", tok)
	g.Expect(resp.StatusCode).To(Equal(200))
	g.Eventually(func() int { return e.mock.Stats().JWKSRequests }).Should(Equal(4))
}

func TestJWTKeysUnavailable(t *testing.T) {
	g := NewWithT(t)
	e := startJWT(t)
	tok := fetchToken(t, e.mock, false)
	g.Expect(e.mock.Close()).To(Succeed())
	resp, body := e.call(t, "/api/x", tok)
	g.Expect(resp.StatusCode).To(Equal(http.StatusServiceUnavailable), body)
	g.Expect(body).To(ContainSubstring(ReasonKeysUnavailable))
	g.Expect(e.app.count()).To(Equal(0))
}

// XSUAA may name its mTLS host as the issuer of tokens fetched with a
// certificate; the keys then come from the matching non-cert host.
func TestJWTIssuerOnCertDomain(t *testing.T) {
	g := NewWithT(t)
	e := startJWT(t)
	info := e.mock.Info()
	c := e.claims(t)
	c["iss"] = info.CertURL + "/oauth/token"
	resp, body := e.call(t, "/api/x", e.mint(t, c, mockauth.WithJKU("")))
	g.Expect(resp.StatusCode).To(Equal(200), body)
	resp, body = e.call(t, "/api/x", e.mint(t, c))
	g.Expect(resp.StatusCode).To(Equal(200), body)
	g.Expect(e.mock.Stats().JWKSRequests).To(Equal(1))
}
