package mockauth

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func ccToken(t *testing.T, srv *Server, clientID, subdomain string) string {
	t.Helper()
	u := "https://" + subdomain + "." + UAADomain + ":" + itoa(srv.Info().TokenPort) + "/oauth/token"
	f := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {clientID}, "client_secret": {srv.ClientSecret(clientID)}}
	res := do(t, srv.Client(), formRequest(t, u, f, nil))
	if res.status != 200 {
		t.Fatalf("token: %d %s", res.status, res.raw)
	}
	return res.body["access_token"].(string)
}

func userToken(t *testing.T, srv *Server, subdomain, user string) string {
	t.Helper()
	u := "https://" + subdomain + "." + UAADomain + ":" + itoa(srv.Info().TokenPort) + "/oauth/token"
	f := url.Values{"grant_type": {GrantPassword}, "client_id": {SecretClientID}, "client_secret": {srv.ClientSecret(SecretClientID)}, "username": {user}, "password": {user + "-password"}}
	res := do(t, srv.Client(), formRequest(t, u, f, nil))
	if res.status != 200 {
		t.Fatalf("user token: %d %s", res.status, res.raw)
	}
	return res.body["access_token"].(string)
}

func itoa(n int) string { return strconv.Itoa(n) }

func find(t *testing.T, srv *Server, token, name, user string) result {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.DestinationServiceURL()+"/destination-configuration/v1/destinations/"+name, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if user != "" {
		req.Header.Set("X-user-token", user)
	}
	return do(t, srv.Client(), req)
}

func TestMockDestinationService(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, Options{Destinations: true})
	g.Expect(srv.SeedDestination(Destination{Tenant: "subscriber1", Properties: map[string]string{"Name": "cc", "URL": srv.BackendURL(), "Authentication": "OAuth2ClientCredentials"}, TokenLifetime: flexDuration(90 * time.Second)})).To(Succeed())
	g.Expect(srv.SeedDestination(Destination{Tenant: "subscriber1", Properties: map[string]string{"Name": "ux", "URL": srv.BackendURL(), "Authentication": "OAuth2UserTokenExchange"}})).To(Succeed())
	g.Expect(srv.SeedDestination(Destination{Tenant: "subscriber1", Properties: map[string]string{"Name": "bad", "URL": srv.BackendURL(), "Authentication": "OAuth2ClientCredentials"}, TokenError: "invalid_client"})).To(Succeed())

	tok := ccToken(t, srv, DestinationClientID, "subscriber1")
	res := find(t, srv, tok, "cc", "")
	g.Expect(res.status).To(Equal(200))
	toks := res.body["authTokens"].([]any)
	g.Expect(toks[0].(map[string]any)["expires_in"]).To(Equal("90"))

	// Another tenant's token sees another tenant's destinations.
	g.Expect(find(t, srv, ccToken(t, srv, DestinationClientID, "subscriber2"), "cc", "").status).To(Equal(404))
	// The xsuaa binding's token is not the destination binding's.
	g.Expect(find(t, srv, ccToken(t, srv, SecretClientID, "subscriber1"), "cc", "").status).To(Equal(401))
	// Token exchange needs a user token of that subaccount.
	res = find(t, srv, tok, "ux", userToken(t, srv, "subscriber1", "alice"))
	g.Expect(res.body["authTokens"].([]any)[0].(map[string]any)["error"]).To(BeNil())
	res = find(t, srv, tok, "ux", userToken(t, srv, "subscriber2", "alice"))
	g.Expect(res.body["authTokens"].([]any)[0].(map[string]any)["error"]).To(ContainSubstring("another subaccount"))
	res = find(t, srv, tok, "bad", "")
	g.Expect(res.body["authTokens"].([]any)[0].(map[string]any)["error"]).To(Equal("invalid_client"))

	srv.SetDestinationServiceDown(true)
	g.Expect(find(t, srv, tok, "cc", "").status).To(Equal(503))
	srv.SetDestinationServiceDown(false)
	st := srv.DestinationStats()
	g.Expect(st.LookupsByTenantName).To(HaveKeyWithValue("subscriber1/cc", 1))
	g.Expect(st.Outage).To(Equal(1))
}

func TestMockConnectivityProxy(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, Options{Destinations: true})
	g.Expect(srv.SeedDestination(Destination{Tenant: "subscriber1", Properties: map[string]string{"Name": "erp", "URL": "http://erp.virtual:8000", "ProxyType": "OnPremise", "CloudConnectorLocationId": "loc1"}})).To(Succeed())
	proxyURL, _ := url.Parse("http://" + srv.ConnectivityProxy())
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	send := func(hdr map[string]string) result {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://erp.virtual:8000/sap/x?sap-client=100", nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		return do(t, c, req)
	}
	g.Expect(send(nil).status).To(Equal(http.StatusProxyAuthRequired))
	g.Expect(send(map[string]string{"Proxy-Authorization": "Bearer " + ccToken(t, srv, DestinationClientID, "subscriber1")}).status).To(Equal(http.StatusProxyAuthRequired))
	conn := ccToken(t, srv, ConnectivityClientID, "subscriber1")
	g.Expect(send(map[string]string{"Proxy-Authorization": "Bearer " + conn, headerLocationID: "elsewhere"}).status).To(Equal(http.StatusServiceUnavailable))
	res := send(map[string]string{"Proxy-Authorization": "Bearer " + conn, headerLocationID: "loc1", headerPrincipal: "Bearer " + userToken(t, srv, "subscriber1", "bob")})
	g.Expect(res.status).To(Equal(200))
	g.Expect(res.body).To(HaveKeyWithValue("tenant", "subscriber1"))
	g.Expect(res.body).To(HaveKeyWithValue("location_id", "loc1"))
	g.Expect(res.body).To(HaveKeyWithValue("principal", "bob"))
	g.Expect(res.body).To(HaveKeyWithValue("host", "erp.virtual:8000"))
	g.Expect(res.body).To(HaveKeyWithValue("query", "sap-client=100"))
	g.Expect(res.body).To(HaveKeyWithValue("proxy_header_leaked", false))

	// A short connectivity token lifetime is what the token service issues.
	srv.SetConnectivityTokenTTL(2 * time.Second)
	u := "https://subscriber1." + UAADomain + ":" + itoa(srv.Info().TokenPort) + "/oauth/token"
	f := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {ConnectivityClientID}, "client_secret": {srv.ClientSecret(ConnectivityClientID)}}
	r := do(t, srv.Client(), formRequest(t, u, f, nil))
	g.Expect(r.body["expires_in"]).To(BeEquivalentTo(2))
}
