package mockauth

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestClientCredentialsOnSecretHost(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	srv := startMock(t, Options{Now: clock.Now, TokenTTL: 10 * time.Minute})
	c := srv.Client()
	info := srv.Info()
	g.Expect(info.URL).To(MatchRegexp(`^https://provider\.authentication\.localhost:\d+$`))

	for _, basic := range []bool{false, true} {
		form := ccForm(srv)
		req := formRequest(t, info.URL+"/oauth/token", form, nil)
		if basic {
			form.Del("client_secret")
			req = formRequest(t, info.URL+"/oauth/token", form, nil)
			req.SetBasicAuth(SecretClientID, srv.ClientSecret(SecretClientID))
		}
		res := do(t, c, req)
		g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
		g.Expect(res.body).To(HaveKeyWithValue("token_type", "bearer"))
		g.Expect(res.body).To(HaveKeyWithValue("expires_in", BeNumerically("==", 600)))
		g.Expect(res.body).To(HaveKeyWithValue("scope", "xsuaa-secret!t1.read xsuaa-secret!t1.write uaa.resource"))
		g.Expect(res.body).To(HaveKey("jti"))
		g.Expect(res.body).NotTo(HaveKey("refresh_token"))

		hdr, claims, err := verifyWithJWKS(t, c, info.URL+"/token_keys", res.body["access_token"].(string), clock.Now())
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(hdr).To(HaveKeyWithValue("alg", "RS256"))
		g.Expect(hdr).To(HaveKeyWithValue("kid", srv.KeyID()))
		g.Expect(hdr).To(HaveKeyWithValue("jku", info.URL+"/token_keys"))
		g.Expect(claims).To(HaveKeyWithValue("iss", info.URL+"/oauth/token"))
		g.Expect(claims).To(HaveKeyWithValue("zid", info.Tenants[0].ZoneID))
		g.Expect(claims).To(HaveKeyWithValue("client_id", SecretClientID))
		g.Expect(claims).To(HaveKeyWithValue("cid", SecretClientID))
		g.Expect(claims).To(HaveKeyWithValue("azp", SecretClientID))
		g.Expect(claims).To(HaveKeyWithValue("sub", SecretClientID))
		g.Expect(claims).To(HaveKeyWithValue("grant_type", GrantClientCredentials))
		g.Expect(claims).To(HaveKeyWithValue("jti", res.body["jti"]))
		g.Expect(claims).To(HaveKeyWithValue("iat", BeNumerically("==", clock.Now().Unix())))
		g.Expect(claims).To(HaveKeyWithValue("exp", BeNumerically("==", clock.Now().Add(10*time.Minute).Unix())))
		g.Expect(claims["aud"]).To(ConsistOf(SecretClientID, "xsuaa-secret!t1", "uaa"))
		g.Expect(claims["scope"]).To(ConsistOf("xsuaa-secret!t1.read", "xsuaa-secret!t1.write", "uaa.resource"))
		g.Expect(claims["ext_attr"]).To(And(HaveKeyWithValue("enhancer", "XSUAA"), HaveKeyWithValue("zdn", "provider")))
		g.Expect(claims).NotTo(HaveKey("user_name"))
	}
	st := srv.Stats()
	g.Expect(st.TokenRequests).To(Equal(2))
	g.Expect(st.TokensIssued).To(Equal(2))
	g.Expect(st.TokenRequestsByGrant).To(HaveKeyWithValue(GrantClientCredentials, 2))
	g.Expect(st.TokenRequestsByTenant).To(HaveKeyWithValue("provider", 2))
}

func TestClientCredentialsOnCertHost(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	own, err := newAuthority("a test's own CA", clock.Now())
	g.Expect(err).NotTo(HaveOccurred())
	ownCert, _, _, err := own.clientCert(pkix.Name{CommonName: "own binding"}, clock.Now().Add(-time.Hour), clock.Now().Add(time.Hour))
	g.Expect(err).NotTo(HaveOccurred())
	stranger, err := newAuthority("stranger CA", clock.Now())
	g.Expect(err).NotTo(HaveOccurred())
	strangerCert, _, _, err := stranger.clientCert(pkix.Name{CommonName: "stranger"}, clock.Now().Add(-time.Hour), clock.Now().Add(time.Hour))
	g.Expect(err).NotTo(HaveOccurred())

	srv := startMock(t, Options{Now: clock.Now, ClientCAs: own.pool()})
	info := srv.Info()
	g.Expect(info.CertURL).To(MatchRegexp(`^https://provider\.authentication\.cert\.localhost:\d+$`))
	form := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {X509ClientID}}

	res := postForm(t, withCert(srv, srv.BindingCertificate()), info.CertURL+"/oauth/token", form, nil)
	g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
	_, claims, err := verifyWithJWKS(t, srv.Client(), info.URL+"/token_keys", res.body["access_token"].(string), clock.Now())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(claims).To(HaveKeyWithValue("client_id", X509ClientID))
	g.Expect(claims).To(HaveKeyWithValue("iss", info.URL+"/oauth/token"))

	// A certificate from Options.ClientCAs authenticates as any client id.
	res = postForm(t, withCert(srv, ownCert), info.CertURL+"/oauth/token",
		url.Values{"grant_type": {GrantClientCredentials}, "client_id": {SecretClientID}}, nil)
	g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))

	// The binding's certificate belongs to the x509 client only.
	res = postForm(t, withCert(srv, srv.BindingCertificate()), info.CertURL+"/oauth/token",
		url.Values{"grant_type": {GrantClientCredentials}, "client_id": {SecretClientID}}, nil)
	g.Expect(res.status).To(Equal(http.StatusUnauthorized))
	g.Expect(res.body).To(HaveKeyWithValue("error", "invalid_client"))

	// No certificate, or one from a CA the cert host does not trust: the
	// TLS handshake fails.
	for _, c := range []*http.Client{srv.Client(), withCert(srv, strangerCert)} {
		_, err := c.Do(formRequest(t, info.CertURL+"/oauth/token", form, nil))
		g.Expect(err).To(HaveOccurred())
		var opErr *net.OpError
		g.Expect(errors.As(err, &opErr) || strings.Contains(err.Error(), "tls")).To(BeTrue(), err.Error())
	}
	// The secret host does not accept a certificate instead of a secret.
	res = postForm(t, withCert(srv, srv.BindingCertificate()), info.URL+"/oauth/token", form, nil)
	g.Expect(res.status).To(Equal(http.StatusUnauthorized))
	g.Expect(res.body).To(HaveKeyWithValue("error", "unauthorized"))
	g.Expect(srv.Stats().TokenRequestsByHost).To(And(HaveKeyWithValue("certtoken", 3), HaveKeyWithValue("token", 1)))
}

func TestTenantSelection(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	srv := startMock(t, Options{Now: clock.Now})
	c := srv.Client()
	info := srv.Info()
	sub1 := info.Tenants[1]

	check := func(res result, want Tenant) {
		t.Helper()
		g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
		_, claims, err := verifyWithJWKS(t, c, info.URL+"/token_keys", res.body["access_token"].(string), clock.Now())
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(claims).To(HaveKeyWithValue("zid", want.ZoneID))
		g.Expect(claims).To(HaveKeyWithValue("iss", tenantURL(info.URL, want.Subdomain)+"/oauth/token"))
		g.Expect(claims["ext_attr"]).To(HaveKeyWithValue("zdn", want.Subdomain))
	}
	// Subdomain as the first host label, on both hosts.
	check(postForm(t, c, tenantURL(info.URL, sub1.Subdomain)+"/oauth/token", ccForm(srv), nil), sub1)
	x509Form := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {X509ClientID}}
	check(postForm(t, withCert(srv, srv.BindingCertificate()), tenantURL(info.CertURL, sub1.Subdomain)+"/oauth/token", x509Form, nil), sub1)
	// X-zid on the tenant-agnostic hosts.
	g.Expect(agnosticURL(info.URL)).To(HavePrefix("https://authentication.localhost:"))
	check(postForm(t, c, agnosticURL(info.URL)+"/oauth/token", ccForm(srv), map[string]string{"X-zid": sub1.ZoneID}), sub1)
	check(postForm(t, withCert(srv, srv.BindingCertificate()), agnosticURL(info.CertURL)+"/oauth/token", x509Form,
		map[string]string{"X-zid": info.Tenants[2].ZoneID}), info.Tenants[2])

	// Unknown tenants are refused.
	res := postForm(t, c, tenantURL(info.URL, "nosuchtenant")+"/oauth/token", ccForm(srv), nil)
	g.Expect(res.status).To(Equal(http.StatusNotFound))
	g.Expect(res.body["error_description"]).To(ContainSubstring("nosuchtenant"))
	res = postForm(t, c, agnosticURL(info.URL)+"/oauth/token", ccForm(srv), map[string]string{"X-zid": "no-such-zone"})
	g.Expect(res.status).To(Equal(http.StatusNotFound))
	res = postForm(t, c, agnosticURL(info.URL)+"/oauth/token", ccForm(srv), nil)
	g.Expect(res.status).To(Equal(http.StatusUnauthorized))

	st := srv.Stats()
	g.Expect(st.TokenRequestsByTenant).To(And(HaveKeyWithValue("subscriber1", 3), HaveKeyWithValue("subscriber2", 1), HaveKeyWithValue("unknown", 3)))
	g.Expect(st.TokensIssued).To(Equal(4))
}

func TestDialContextMapsLocalhostNames(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, Options{})
	// A client with the plain system dialer cannot be assumed to resolve
	// *.localhost; the mock's client does through DialContext.
	tr := &http.Transport{DialContext: DialContext, TLSClientConfig: &tls.Config{RootCAs: srv.CAPool()}}
	c := &http.Client{Transport: tr}
	res := getJSON(t, c, tenantURL(srv.Info().URL, "subscriber2")+"/token_keys")
	g.Expect(res.status).To(Equal(http.StatusOK))
	g.Expect(res.body["keys"]).To(HaveLen(1))
	// TLS still verifies the name: a CA pool without the mock's CA fails.
	bad := &http.Client{Transport: &http.Transport{DialContext: DialContext, TLSClientConfig: &tls.Config{RootCAs: x509.NewCertPool()}}}
	_, err := bad.Get(srv.Info().URL + "/token_keys")
	g.Expect(err).To(HaveOccurred())
}

func TestCustomTenants(t *testing.T) {
	g := NewWithT(t)
	for _, bad := range [][]Tenant{
		{{Subdomain: "", ZoneID: "z"}},
		{{Subdomain: "Upper", ZoneID: "z"}},
		{{Subdomain: "a.b", ZoneID: "z"}},
		{{Subdomain: "a", ZoneID: "z"}, {Subdomain: "a", ZoneID: "y"}},
		{{Subdomain: "a", ZoneID: "z"}, {Subdomain: "b", ZoneID: "z"}},
	} {
		_, err := Start(Options{Tenants: bad})
		g.Expect(err).To(MatchError(ContainSubstring("mockauth: tenant")), "%v", bad)
	}
	srv := startMock(t, Options{Tenants: []Tenant{{Subdomain: "acme", ZoneID: "zone-acme"}, {Subdomain: "beta-2", ZoneID: "zone-beta"}}})
	info := srv.Info()
	g.Expect(info.URL).To(HavePrefix("https://acme.authentication.localhost:"))
	res := postForm(t, srv.Client(), tenantURL(info.URL, "beta-2")+"/oauth/token", ccForm(srv), nil)
	g.Expect(res.status).To(Equal(http.StatusOK))
	g.Expect(postForm(t, srv.Client(), tenantURL(info.URL, "provider")+"/oauth/token", ccForm(srv), nil).status).To(Equal(http.StatusNotFound))
}
