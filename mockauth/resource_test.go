package mockauth

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

// The resource server validates the mock's tokens like a real one: a
// revoked (by jti, or every token of a client), expired or foreign token
// gets 401 with a Bearer invalid_token challenge; a valid one 200, or 403
// in forbidden mode; in reject mode everything gets 401.
func TestResourceServer(t *testing.T) {
	g := NewWithT(t)
	clock := newFakeClock()
	srv := startMock(t, Options{Now: clock.Now, ResourceServer: true, TokenTTL: time.Hour})
	c := srv.Client()
	info := srv.Info()
	g.Expect(info.ResourceURL).To(HavePrefix("https://api.localhost:"))
	g.Expect(srv.Hosts()).To(ContainElement("api.localhost"))
	token := func() (string, string) {
		res := postForm(t, c, info.URL+"/oauth/token", ccForm(srv), nil)
		g.Expect(res.status).To(Equal(200))
		return res.body["access_token"].(string), res.body["jti"].(string)
	}
	call := func(tok string) result {
		req, err := http.NewRequest("GET", info.ResourceURL+"/orders", nil)
		g.Expect(err).NotTo(HaveOccurred())
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		return do(t, c, req)
	}
	invalid := func(res result) {
		t.Helper()
		g.Expect(res.status).To(Equal(http.StatusUnauthorized))
		g.Expect(res.header.Get("WWW-Authenticate")).To(HavePrefix(`Bearer realm="mockauth", error="invalid_token"`))
	}

	t1, jti1 := token()
	res := call(t1)
	g.Expect(res.status).To(Equal(200))
	g.Expect(res.body).To(HaveKeyWithValue("client_id", SecretClientID))
	g.Expect(string(res.raw)).NotTo(ContainSubstring(t1), "the answer never echoes the token")

	res = call("")
	g.Expect(res.status).To(Equal(http.StatusUnauthorized))
	g.Expect(res.header.Get("WWW-Authenticate")).To(Equal(`Bearer realm="mockauth"`), "no error code without a token (RFC 6750 §3.1)")

	// One token revoked by jti; a new one works.
	g.Expect(srv.RevokeToken(jti1)).To(Succeed())
	invalid(call(t1))
	t2, _ := token()
	g.Expect(call(t2).status).To(Equal(200))

	// Every token of the client revoked so far; one issued later works.
	t3, _ := token()
	g.Expect(srv.RevokeClientTokens(SecretClientID)).To(Succeed())
	invalid(call(t2))
	invalid(call(t3))
	t4, _ := token()
	g.Expect(call(t4).status).To(Equal(200))
	g.Expect(srv.RevokeClientTokens("nobody")).NotTo(Succeed())
	g.Expect(srv.RevokeClientTokens(IASClientID)).NotTo(Succeed())

	// Expired, and signed by a key the mock does not publish.
	claims, err := srv.Claims("provider")
	g.Expect(err).NotTo(HaveOccurred())
	foreign, err := srv.MintToken(claims, WithForeignKey())
	g.Expect(err).NotTo(HaveOccurred())
	invalid(call(foreign))
	clock.Advance(2 * time.Hour)
	invalid(call(t4))
	t5, _ := token()

	// Forbidden: a valid token gets 403 insufficient_scope, never 401.
	g.Expect(srv.SetResourceMode(ResourceForbidden, "")).To(Succeed())
	res = call(t5)
	g.Expect(res.status).To(Equal(http.StatusForbidden))
	g.Expect(res.header.Get("WWW-Authenticate")).To(ContainSubstring(`error="insufficient_scope"`))
	invalid(call(t4))

	// Reject: every token gets 401, with the challenge asked for.
	g.Expect(srv.SetResourceMode(ResourceReject, `Basic realm="x", bearer error=invalid_token`)).To(Succeed())
	res = call(t5)
	g.Expect(res.status).To(Equal(http.StatusUnauthorized))
	g.Expect(res.header.Get("WWW-Authenticate")).To(Equal(`Basic realm="x", bearer error=invalid_token`))
	g.Expect(srv.SetResourceMode("sometimes", "")).NotTo(Succeed())
	g.Expect(srv.SetResourceMode(ResourceValidate, "a\r\nX-Injected: 1")).NotTo(Succeed())

	st := srv.Stats()
	g.Expect(st.TokensRevoked).To(Equal(2))
	g.Expect(st.Resource.Forbidden).To(Equal(1))
	g.Expect(st.Resource.Accepted).To(Equal(3))
	g.Expect(st.Resource.Requests).To(Equal(st.Resource.Accepted + st.Resource.Rejected + st.Resource.Forbidden))
}

// The control API: POST /mock/revoke-tokens and POST /mock/resource.
func TestResourceControlAPI(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, Options{ResourceServer: true})
	c := srv.Client()
	info := srv.Info()
	post := func(path, body string) int {
		resp, err := http.Post(info.AdminURL+path, "application/json", bytes.NewReader([]byte(body)))
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		return resp.StatusCode
	}
	res := postForm(t, c, info.URL+"/oauth/token", ccForm(srv), nil)
	tok, jti := res.body["access_token"].(string), res.body["jti"].(string)
	get := func() int {
		req, _ := http.NewRequest("GET", info.ResourceURL+"/x", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return do(t, c, req).status
	}
	g.Expect(get()).To(Equal(200))
	g.Expect(post("/mock/revoke-tokens", `{"jti":"`+jti+`"}`)).To(Equal(200))
	g.Expect(get()).To(Equal(401))
	g.Expect(post("/mock/revoke-tokens", `{"client_id":"`+SecretClientID+`"}`)).To(Equal(200))
	g.Expect(post("/mock/revoke-tokens", `{}`)).To(Equal(400))
	g.Expect(post("/mock/revoke-tokens", `{"jti":"a","client_id":"b"}`)).To(Equal(400))
	g.Expect(post("/mock/revoke-tokens", `{"client_id":"nobody"}`)).To(Equal(404))
	g.Expect(post("/mock/resource", `{"mode":"forbidden"}`)).To(Equal(200))
	g.Expect(post("/mock/resource", `{"mode":"maybe"}`)).To(Equal(400))
	g.Expect(strings.Contains(string(srv.JWKS()), tok)).To(BeFalse())

	// Without the option there is no resource server.
	plain := startMock(t, Options{})
	g.Expect(plain.Info().ResourceURL).To(BeEmpty())
	g.Expect(plain.Hosts()).NotTo(ContainElement("api.localhost"))
}
