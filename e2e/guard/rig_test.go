package guard_test

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// guardRig is what every spec of this suite starts from: the mock, the app
// the guard protects (recording what reaches it) and a directory with the
// mock's bindings and CA for `credbroker run`. All of it ends with the
// spec (or the Ordered container).
type guardRig struct {
	srv    *mockauth.Server
	app    *recorder
	appURL string
	dir    string
	vcap   string // the mock's bindings (vcap.json)
	mockCA string // the mock's CA (mock-ca.crt)
}

func newGuardRig() *guardRig {
	GinkgoHelper()
	srv, err := mockauth.Start(mockauth.Options{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(srv.Close)
	r := &guardRig{srv: srv, app: &recorder{}, dir: GinkgoT().TempDir()}
	appSrv := httptest.NewServer(r.app)
	DeferCleanup(appSrv.Close)
	r.appURL = appSrv.URL
	r.vcap = r.write("vcap.json", srv.VCAPServices())
	r.mockCA = r.write("mock-ca.crt", srv.CACertPEM())
	return r
}

// write writes name (parents made) under the rig's directory, private,
// and returns its path.
func (r *guardRig) write(name string, data []byte) string {
	GinkgoHelper()
	return harness.WriteFile(r.dir, name, data)
}

// sidecarOptions runs `credbroker run` in the rig's directory with the
// mock's bindings and CA.
func (r *guardRig) sidecarOptions() harness.SidecarOptions {
	return harness.SidecarOptions{Dir: r.dir, CAFile: r.mockCA, VCAPFile: r.vcap}
}

// clientToken posts the token request form to tokenURL with c and returns
// the access token, remembered in secrets (nil: not remembered).
func clientToken(c *http.Client, tokenURL string, form url.Values, secrets *harness.Secrets) string {
	GinkgoHelper()
	resp, err := c.PostForm(tokenURL, form)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	Expect(json.NewDecoder(resp.Body).Decode(&tr)).To(Succeed())
	Expect(tr.AccessToken).NotTo(BeEmpty())
	if secrets != nil {
		secrets.Add("access token", tr.AccessToken)
	}
	return tr.AccessToken
}

// secretGrant is the client-credentials form of the mock's secret binding.
func secretGrant(srv *mockauth.Server) url.Values {
	info := srv.Info()
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {info.SecretClientID},
		"client_secret": {srv.ClientSecret(info.SecretClientID)}}
}

// waitListening waits until hostPort accepts connections.
func waitListening(hostPort string) {
	GinkgoHelper()
	Eventually(func() error {
		c, err := net.Dial("tcp", hostPort)
		if err == nil {
			c.Close()
		}
		return err
	}, 30*time.Second, 100*time.Millisecond).Should(Succeed(), "the inbound listener did not come up")
}
