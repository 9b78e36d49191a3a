package mockauth

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func passwordForm(srv *Server, user, password string) url.Values {
	f := ccForm(srv)
	f.Set("grant_type", GrantPassword)
	f.Set("username", user)
	f.Set("password", password)
	return f
}

func TestUserGrants(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	srv := startMock(t, Options{Now: clock.Now, TokenTTL: time.Minute})
	c := srv.Client()
	info := srv.Info()
	tokenURL := info.URL + "/oauth/token"

	// password
	res := postForm(t, c, tokenURL, passwordForm(srv, "alice", "alice-password"), nil)
	g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
	g.Expect(res.body).To(HaveKeyWithValue("scope", "openid xsuaa-secret!t1.read xsuaa-secret!t1.write"))
	g.Expect(res.body).To(HaveKeyWithValue("refresh_token", Not(BeEmpty())))
	_, claims, err := verifyWithJWKS(t, c, info.TokenKeysURL, res.body["access_token"].(string), clock.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims).To(HaveKeyWithValue("user_name", "alice"))
	g.Expect(claims).To(HaveKeyWithValue("user_id", Users()[0].ID))
	g.Expect(claims).To(HaveKeyWithValue("sub", Users()[0].ID))
	g.Expect(claims).To(HaveKeyWithValue("email", "alice@example.com"))
	g.Expect(claims).To(HaveKeyWithValue("origin", "sap.default"))
	g.Expect(claims).To(HaveKeyWithValue("grant_type", GrantPassword))
	g.Expect(claims).To(HaveKeyWithValue("client_id", SecretClientID))
	aliceToken := res.body["access_token"].(string)
	refresh := res.body["refresh_token"].(string)

	// password with narrowing, bob, wrong password
	res = postForm(t, c, tokenURL, func() url.Values {
		f := passwordForm(srv, "bob", "bob-password")
		f.Set("scope", "xsuaa-secret!t1.read")
		return f
	}(), nil)
	g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
	g.Expect(res.body).To(HaveKeyWithValue("scope", "xsuaa-secret!t1.read"))
	res = postForm(t, c, tokenURL, func() url.Values {
		f := passwordForm(srv, "bob", "bob-password")
		f.Set("scope", "xsuaa-secret!t1.write")
		return f
	}(), nil)
	g.Expect(res.status).To(Equal(http.StatusBadRequest))
	g.Expect(res.body).To(HaveKeyWithValue("error", "invalid_scope"))
	res = postForm(t, c, tokenURL, passwordForm(srv, "alice", "wrong"), nil)
	g.Expect(res.status).To(Equal(http.StatusUnauthorized))
	g.Expect(res.body).To(HaveKeyWithValue("error", "unauthorized"))

	// jwt-bearer with alice's token as assertion
	bearer := ccForm(srv)
	bearer.Set("grant_type", GrantJWTBearer)
	bearer.Set("assertion", aliceToken)
	res = postForm(t, c, tokenURL, bearer, nil)
	g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
	_, claims, err = verifyWithJWKS(t, c, info.TokenKeysURL, res.body["access_token"].(string), clock.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims).To(HaveKeyWithValue("user_name", "alice"))
	g.Expect(claims).To(HaveKeyWithValue("grant_type", GrantJWTBearer))

	// jwt-bearer from another tenant, a client token, garbage, a token
	// signed with a foreign key, and an expired assertion are invalid_grant.
	ccTok := postForm(t, c, tokenURL, ccForm(srv), nil).body["access_token"].(string)
	foreign, err := srv.MintToken(map[string]any{"user_name": "alice", "zid": info.Tenants[0].ZoneID, "exp": clock.Now().Add(time.Hour).Unix()}, WithForeignKey())
	g.Expect(err).NotTo(HaveOccurred())
	for name, tc := range map[string]struct {
		assertion string
		host      string
	}{
		"other tenant": {aliceToken, tenantURL(info.URL, "subscriber1")},
		"client token": {ccTok, info.URL},
		"garbage":      {"not-a-jwt", info.URL},
		"foreign key":  {foreign, info.URL},
	} {
		f := ccForm(srv)
		f.Set("grant_type", GrantJWTBearer)
		f.Set("assertion", tc.assertion)
		res = postForm(t, c, tc.host+"/oauth/token", f, nil)
		g.Expect(res.status).To(Equal(http.StatusUnauthorized), name)
		g.Expect(res.body).To(HaveKeyWithValue("error", "invalid_grant"), name)
	}

	// refresh_token: works for the same client and tenant, not for another.
	rf := ccForm(srv)
	rf.Set("grant_type", GrantRefreshToken)
	rf.Set("refresh_token", refresh)
	res = postForm(t, c, tokenURL, rf, nil)
	g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
	_, claims, err = verifyWithJWKS(t, c, info.TokenKeysURL, res.body["access_token"].(string), clock.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims).To(HaveKeyWithValue("user_name", "alice"))
	g.Expect(claims).To(HaveKeyWithValue("grant_type", GrantRefreshToken))
	res = postForm(t, c, tenantURL(info.URL, "subscriber2")+"/oauth/token", rf, nil)
	g.Expect(res.status).To(Equal(http.StatusUnauthorized))
	g.Expect(res.body).To(HaveKeyWithValue("error", "invalid_grant"))
	rf.Set("refresh_token", "unknown")
	res = postForm(t, c, tokenURL, rf, nil)
	g.Expect(res.body).To(HaveKeyWithValue("error", "invalid_grant"))

	// The assertion expires with the mock's clock.
	clock.Advance(2 * time.Minute)
	res = postForm(t, c, tokenURL, bearer, nil)
	g.Expect(res.status).To(Equal(http.StatusUnauthorized))
	g.Expect(res.body).To(HaveKeyWithValue("error", "invalid_grant"))

	st := srv.Stats()
	g.Expect(st.TokenRequestsByGrant).To(HaveKeyWithValue(GrantPassword, 4))
	g.Expect(st.TokenRequestsByGrant).To(HaveKeyWithValue(GrantJWTBearer, 6))
	g.Expect(st.TokenRequestsByGrant).To(HaveKeyWithValue(GrantRefreshToken, 3))
	g.Expect(st.Errors).To(And(HaveKeyWithValue("invalid_grant", 7), HaveKeyWithValue("invalid_scope", 1)))
	// Secrets never reach the request log.
	for _, r := range st.LastRequests {
		for _, k := range []string{"client_secret", "password", "assertion", "refresh_token"} {
			if v, ok := r.Form[k]; ok {
				g.Expect(v).To(Equal("REDACTED"))
			}
		}
	}
	g.Expect(st.LastRequests).NotTo(BeEmpty())
}

func TestTokenErrors(t *testing.T) {
	srv := startMock(t, Options{})
	c := srv.Client()
	tokenURL := srv.Info().URL + "/oauth/token"
	with := func(mod func(url.Values)) url.Values {
		f := ccForm(srv)
		mod(f)
		return f
	}
	for _, tc := range []struct {
		name   string
		form   url.Values
		status int
		code   string
	}{
		{"wrong secret", with(func(f url.Values) { f.Set("client_secret", "nope") }), 401, "unauthorized"},
		{"unknown client", with(func(f url.Values) { f.Set("client_id", "sb-nobody!t1") }), 401, "unauthorized"},
		{"no client", with(func(f url.Values) { f.Del("client_id") }), 401, "unauthorized"},
		{"x509 client with a secret", with(func(f url.Values) { f.Set("client_id", X509ClientID) }), 401, "unauthorized"},
		{"IAS client on XSUAA", with(func(f url.Values) {
			f.Set("client_id", IASClientID)
			f.Set("client_secret", srv.ClientSecret(IASClientID))
		}), 401, "invalid_client"},
		{"unknown scope", with(func(f url.Values) { f.Set("scope", "xsuaa-secret!t1.admin") }), 400, "invalid_scope"},
		{"missing grant", with(func(f url.Values) { f.Del("grant_type") }), 400, "invalid_request"},
		{"unknown grant", with(func(f url.Values) { f.Set("grant_type", "authorization_code") }), 400, "unsupported_grant_type"},
		{"jwt-bearer without assertion", with(func(f url.Values) { f.Set("grant_type", GrantJWTBearer) }), 400, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			res := postForm(t, c, tokenURL, tc.form, nil)
			g.Expect(res.status).To(Equal(tc.status), string(res.raw))
			g.Expect(res.body).To(HaveKeyWithValue("error", tc.code))
			g.Expect(res.body).To(HaveKeyWithValue("error_description", Not(BeEmpty())))
			g.Expect(string(res.raw)).NotTo(ContainSubstring(srv.ClientSecret(SecretClientID)))
		})
	}
	t.Run("scope narrowing", func(t *testing.T) {
		g := NewWithT(t)
		res := postForm(t, c, tokenURL, with(func(f url.Values) { f.Set("scope", "uaa.resource") }), nil)
		g.Expect(res.status).To(Equal(http.StatusOK))
		g.Expect(res.body).To(HaveKeyWithValue("scope", "uaa.resource"))
	})
	t.Run("not a form", func(t *testing.T) {
		g := NewWithT(t)
		req := formRequest(t, tokenURL, ccForm(srv), map[string]string{"Content-Type": "application/json"})
		res := do(t, c, req)
		g.Expect(res.status).To(Equal(http.StatusBadRequest))
		g.Expect(res.body).To(HaveKeyWithValue("error", "invalid_request"))
	})
	t.Run("GET is refused, never redirected", func(t *testing.T) {
		g := NewWithT(t)
		for _, p := range []string{"/oauth/token", "/oauth/token/", "/login", "/", "//oauth/token", "/x/../oauth/token", "/oauth/./token"} {
			res := getJSON(t, c, srv.Info().URL+p)
			g.Expect(res.status).To(BeNumerically(">=", 400), p)
			g.Expect(res.header.Get("Location")).To(BeEmpty(), p)
			res = do(t, c, formRequest(t, srv.Info().URL+p, ccForm(srv), nil))
			g.Expect(res.header.Get("Location")).To(BeEmpty(), p)
			g.Expect(res.status).NotTo(BeNumerically("~", 300, 99), p)
		}
		// The connector and the control API never redirect either.
		g.Expect(getJSON(t, c, srv.Info().ConnectorURL+"//v1/applications/signingRequests/info?token=x").header.Get("Location")).To(BeEmpty())
		noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		g.Expect(getJSON(t, noFollow, srv.Info().AdminURL+"/mock/../mock/stats").status).To(Equal(http.StatusNotFound))
	})
}

func TestJWKSAndKeyRotation(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	srv := startMock(t, Options{Now: clock.Now})
	c := srv.Client()
	info := srv.Info()
	old := postForm(t, c, info.URL+"/oauth/token", ccForm(srv), nil).body["access_token"].(string)
	oldKid := srv.KeyID()

	g.Expect(srv.RotateKeys()).To(Succeed())
	g.Expect(srv.KeyID()).NotTo(Equal(oldKid))
	jwks := getJSON(t, c, info.TokenKeysURL)
	g.Expect(jwks.body["keys"]).To(HaveLen(2))
	g.Expect(jwks.body["keys"].([]any)[0]).To(And(HaveKeyWithValue("kid", srv.KeyID()), HaveKeyWithValue("value", ContainSubstring("BEGIN PUBLIC KEY"))))

	fresh := postForm(t, c, info.URL+"/oauth/token", ccForm(srv), nil).body["access_token"].(string)
	hdr, _, err := verifyWithJWKS(t, c, info.TokenKeysURL, fresh, clock.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(hdr).To(HaveKeyWithValue("kid", srv.KeyID()))
	_, _, err = verifyWithJWKS(t, c, info.TokenKeysURL, old, clock.Now())
	g.Expect(err).NotTo(HaveOccurred(), "the previous key stays published")

	// A second rotation drops the first key.
	g.Expect(srv.RotateKeys()).To(Succeed())
	_, _, err = verifyWithJWKS(t, c, info.TokenKeysURL, old, clock.Now())
	g.Expect(err).To(HaveOccurred())
	g.Expect(srv.Stats().JWKSRequests).To(Equal(4))
}

func TestMintToken(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	srv := startMock(t, Options{Now: clock.Now})
	c := srv.Client()
	info := srv.Info()
	claims, err := srv.Claims("subscriber1")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims).To(HaveKeyWithValue("zid", info.Tenants[1].ZoneID))
	claims["aud"] = []string{"someone-else"}
	claims["exp"] = clock.Now().Add(-time.Minute).Unix()
	tok, err := srv.MintToken(claims)
	g.Expect(err).NotTo(HaveOccurred())
	_, _, err = verifyWithJWKS(t, c, info.TokenKeysURL, tok, clock.Now())
	g.Expect(err).To(MatchError(ContainSubstring("expired")))
	_, got, err := verifyWithJWKS(t, c, info.TokenKeysURL, tok, clock.Now().Add(-2*time.Minute))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got["aud"]).To(ConsistOf("someone-else"))

	tok, err = srv.MintToken(map[string]any{"sub": "x"}, WithKeyID("nope"))
	g.Expect(err).NotTo(HaveOccurred())
	_, _, err = verifyWithJWKS(t, c, info.TokenKeysURL, tok, clock.Now())
	g.Expect(err).To(HaveOccurred())
	_, err = srv.Claims("nosuch")
	g.Expect(err).To(HaveOccurred())
}

func TestIASFlavour(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	srv := startMock(t, Options{Now: clock.Now, TokenTTL: 90 * time.Second})
	c := srv.Client()
	info := srv.Info()
	g.Expect(info.IASURL).To(MatchRegexp(`^https://provider\.accounts\.localhost:\d+$`))

	cfg := getJSON(t, c, info.IASURL+"/.well-known/openid-configuration")
	g.Expect(cfg.status).To(Equal(http.StatusOK))
	g.Expect(cfg.body).To(HaveKeyWithValue("issuer", info.IASURL))
	g.Expect(cfg.body).To(HaveKeyWithValue("token_endpoint", info.IASURL+"/oauth2/token"))
	g.Expect(cfg.body).To(HaveKeyWithValue("jwks_uri", info.IASURL+"/oauth2/certs"))

	req := formRequest(t, info.IASURL+"/oauth2/token", url.Values{
		"grant_type": {GrantClientCredentials},
		"app_tid":    {info.Tenants[2].ZoneID},
		"resource":   {"urn:sap:identity:application:provider:name:orders"},
	}, nil)
	req.SetBasicAuth(IASClientID, srv.ClientSecret(IASClientID))
	res := do(t, c, req)
	g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
	g.Expect(res.body).To(HaveKeyWithValue("token_type", "Bearer"))
	g.Expect(res.body).To(HaveKeyWithValue("expires_in", BeNumerically("==", 90)))
	_, claims, err := verifyWithJWKS(t, c, info.IASURL+"/oauth2/certs", res.body["access_token"].(string), clock.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims).To(HaveKeyWithValue("iss", info.IASURL))
	g.Expect(claims).To(HaveKeyWithValue("app_tid", info.Tenants[2].ZoneID))
	g.Expect(claims["aud"]).To(ConsistOf(IASClientID, "urn:sap:identity:application:provider:name:orders"))

	// Wrong secret, unknown app_tid.
	req = formRequest(t, info.IASURL+"/oauth2/token", url.Values{"grant_type": {GrantClientCredentials}}, nil)
	req.SetBasicAuth(IASClientID, "wrong")
	g.Expect(do(t, c, req).status).To(Equal(http.StatusUnauthorized))
	req = formRequest(t, info.IASURL+"/oauth2/token", url.Values{"grant_type": {GrantClientCredentials}, "app_tid": {"nope"}}, nil)
	req.SetBasicAuth(IASClientID, srv.ClientSecret(IASClientID))
	res = do(t, c, req)
	g.Expect(res.status).To(Equal(http.StatusBadRequest))
	g.Expect(res.body).To(HaveKeyWithValue("error", "invalid_request"))
	g.Expect(srv.Stats().TokenRequestsByGrant).To(HaveKeyWithValue("ias:"+GrantClientCredentials, 3))
}
