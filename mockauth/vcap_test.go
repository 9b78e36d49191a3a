package mockauth

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestVCAPServicesBindingsWork(t *testing.T) {
	g := NewWithT(t)
	srv := startMock(t, Options{})
	info := srv.Info()
	var vcap map[string][]struct {
		Name, Label, Plan string
		Credentials       map[string]any
	}
	g.Expect(json.Unmarshal(srv.VCAPServices(), &vcap)).To(Succeed())
	g.Expect(vcap["xsuaa"]).To(HaveLen(2))
	g.Expect(vcap["identity"]).To(HaveLen(1))

	sec := vcap["xsuaa"][0]
	g.Expect(sec.Name).To(Equal(SecretBindingName))
	g.Expect(sec.Label).To(Equal("xsuaa"))
	g.Expect(sec.Credentials).To(And(
		HaveKeyWithValue("credential-type", "binding-secret"),
		HaveKeyWithValue("clientid", SecretClientID),
		HaveKeyWithValue("url", info.URL),
		HaveKeyWithValue("uaadomain", UAADomain),
		HaveKeyWithValue("identityzone", "provider"),
		HaveKeyWithValue("tenantid", info.Tenants[0].ZoneID),
		HaveKeyWithValue("xsappname", "xsuaa-secret!t1"),
		HaveKeyWithValue("verificationkey", ContainSubstring("BEGIN PUBLIC KEY")),
	))
	res := postForm(t, srv.Client(), sec.Credentials["url"].(string)+"/oauth/token", url.Values{
		"grant_type": {GrantClientCredentials}, "client_id": {sec.Credentials["clientid"].(string)},
		"client_secret": {sec.Credentials["clientsecret"].(string)},
	}, nil)
	g.Expect(res.status).To(Equal(http.StatusOK))

	x := vcap["xsuaa"][1]
	g.Expect(x.Name).To(Equal(X509BindingName))
	g.Expect(x.Credentials).To(And(
		HaveKeyWithValue("credential-type", "x509"),
		HaveKeyWithValue("certurl", info.CertURL),
		HaveKeyWithValue("clientid", X509ClientID),
		Not(HaveKey("clientsecret")),
	))
	pair, err := tls.X509KeyPair([]byte(x.Credentials["certificate"].(string)), []byte(x.Credentials["key"].(string)))
	g.Expect(err).NotTo(HaveOccurred())
	exp, err := time.Parse(time.RFC3339, x.Credentials["certificate_expires_at"].(string))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(exp).To(BeTemporally("~", srv.BindingCertificate().Leaf.NotAfter, time.Second))
	res = postForm(t, srv.Client(pair), x.Credentials["certurl"].(string)+"/oauth/token", url.Values{
		"grant_type": {GrantClientCredentials}, "client_id": {X509ClientID},
	}, nil)
	g.Expect(res.status).To(Equal(http.StatusOK))

	ias := vcap["identity"][0]
	g.Expect(ias.Name).To(Equal(IASBindingName))
	g.Expect(ias.Label).To(Equal("identity"))
	req := formRequest(t, ias.Credentials["url"].(string)+"/oauth2/token", url.Values{"grant_type": {GrantClientCredentials}}, nil)
	req.SetBasicAuth(ias.Credentials["clientid"].(string), ias.Credentials["clientsecret"].(string))
	g.Expect(do(t, srv.Client(), req).status).To(Equal(http.StatusOK))

	// Info carries no secret.
	infoJSON, err := json.Marshal(info)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(infoJSON)).NotTo(ContainSubstring(srv.ClientSecret(SecretClientID)))
	g.Expect(string(infoJSON)).NotTo(ContainSubstring(srv.ClientSecret(IASClientID)))
}
