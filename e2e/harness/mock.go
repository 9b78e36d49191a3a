package harness

import (
	"encoding/json"
	"io"
	"net/url"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// StartMock starts mockauth with opts (closed when the spec ends) and adds
// the secrets its bindings hold to secrets: the client secrets and every
// binding's private key.
func StartMock(opts mockauth.Options, secrets *Secrets) *mockauth.Server {
	GinkgoHelper()
	m, err := mockauth.Start(opts)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(m.Close)
	info := m.Info()
	secrets.Add("client secret", m.ClientSecret(info.SecretClientID))
	if s := m.ClientSecret(info.IASClientID); len(s) >= 8 {
		secrets.Add("IAS client secret", s)
	}
	var vcap map[string][]struct {
		Name        string         `json:"name"`
		Credentials map[string]any `json:"credentials"`
	}
	Expect(json.Unmarshal(m.VCAPServices(), &vcap)).To(Succeed())
	for _, list := range vcap {
		for _, b := range list {
			if k, ok := b.Credentials["key"].(string); ok && k != "" {
				secrets.Add("private key of binding "+b.Name, k)
			}
		}
	}
	return m
}

// PairingURLFile mints a one-time pairing token for app, remembers it as a
// secret and writes its URL to dir/pairing-url-APP.
func PairingURLFile(m *mockauth.Server, secrets *Secrets, dir, app string) string {
	GinkgoHelper()
	u, tok, err := m.NewPairingToken(app)
	Expect(err).NotTo(HaveOccurred())
	secrets.Add("one-time token of "+app, tok)
	return WriteFile(dir, "pairing-url-"+app, []byte(u+"\n"))
}

// UserToken gets a password-grant token for the mock's user alice: the
// user token an app holds and a jwt-bearer route exchanges. The password,
// the refresh token and the token itself are remembered as secrets.
func UserToken(m *mockauth.Server, secrets *Secrets) string {
	GinkgoHelper()
	info := m.Info()
	form := url.Values{"grant_type": {"password"}, "client_id": {info.SecretClientID},
		"client_secret": {m.ClientSecret(info.SecretClientID)}, "username": {"alice"}, "password": {"alice-password"}}
	resp, err := m.Client().PostForm(info.URL+"/oauth/token", form)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var tr struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
	}
	b, _ := io.ReadAll(resp.Body)
	Expect(resp.StatusCode).To(Equal(200), string(b))
	Expect(json.Unmarshal(b, &tr)).To(Succeed())
	secrets.Add("user password", "alice-password")
	if tr.RefreshToken != "" {
		secrets.Add("refresh token", tr.RefreshToken)
	}
	secrets.Add("alice's user token", tr.AccessToken)
	return tr.AccessToken
}

// WriteInputs writes the files `credbroker run` reads from the mock into
// dir: vcap.json (its bindings) and ca.crt (its CA and upstreamCA, which
// issued the upstream's certificate). It returns their paths.
func WriteInputs(dir string, m *mockauth.Server, upstreamCA *testpki.CA) (vcapFile, caFile string) {
	GinkgoHelper()
	vcapFile = WriteFile(dir, "vcap.json", m.VCAPServices())
	caFile = WriteFile(dir, "ca.crt", append(append([]byte{}, m.CACertPEM()...), upstreamCA.CertPEM()...))
	return vcapFile, caFile
}
