package hardening_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// userToken gets a password-grant token for alice from the mock: an
// assertion the app would hold and a jwt-bearer route exchanges.
func userToken(r *rig) string {
	GinkgoHelper()
	return harness.UserToken(r.mock, r.secrets)
}

var _ = Describe("secrets", func() {
	for _, format := range []string{"json", "text"} {
		It("never leave the process through stdout, stderr, logs, /metrics, /status, /readyz or the files it writes ("+format+" logs at debug level)", func() {
			r := newRig(mockauth.Options{TokenTTL: 20 * time.Second, CertTTL: 20 * time.Second})
			assertion := userToken(r)
			r.secrets.Add("assertion (the app's user token)", assertion)
			appToken := r.secrets.Plant("the app's own bearer token")
			p := r.run(fmt.Sprintf(`
token_api: {bindings: [xsuaa-secret, xsuaa-x509]}
certificates:
  - {name: connector, dir: %[2]s, pairing_url_file: %[3]s, renew: true}
  - {name: x509, binding: xsuaa-x509}
routes:
  - {name: secret, upstream: %[1]s/secret, auth: {type: bearer, binding: xsuaa-secret, tenant_header: X-Tenant}}
  - {name: x509, upstream: %[1]s/x509, auth: {type: bearer, binding: xsuaa-x509}}
  - {name: ias, upstream: %[1]s/ias, auth: {type: bearer, binding: ias}}
  - {name: exchange, upstream: %[1]s/exchange, auth: {type: bearer, binding: xsuaa-secret, grant: jwt-bearer}}
  - {name: events, upstream: %[1]s/events, auth: {type: mtls, certificate: connector, binding: xsuaa-secret}}
  - {name: controller, upstream: %[1]s/controller, auth: {type: oauth1, key_file: %[4]s, secret_file: %[5]s}}
`, r.up.url, filepath.Join(r.work, "connector"), r.pairingURLFile("secret-app"), r.keyFile, r.secFile), "--log-format", format)
			Eventually(p.ready).WithTimeout(60*time.Second).Should(Equal(200), func() string { _, b := p.get("/readyz"); return string(b) })

			info := r.mock.Info()
			calls := []struct {
				method, path, body string
				hdr                map[string]string
			}{
				{"GET", "/secret/a", "", map[string]string{"Authorization": "Bearer " + appToken}},
				{"GET", "/secret/b", "", map[string]string{"X-Tenant": info.Tenants[1].Subdomain}},
				{"GET", "/x509/a", "", nil},
				{"GET", "/ias/a", "", nil},
				{"GET", "/exchange/a", "", map[string]string{"Authorization": "Bearer " + assertion}},
				{"GET", "/events/a", "", nil},
				{"POST", "/controller/a", `{"order":"` + r.secrets.Plant("request body") + `"}`, map[string]string{"Content-Type": "application/json"}},
				{"POST", "/controller/b", "a=1&b=" + r.secrets.Plant("form value"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"}},
			}
			// With JSON logs, requests go on until the mock has seen a token
			// refresh and a certificate renewal (at least span, at most
			// limit), so the logs of both are scanned; the text variant runs
			// one round in CI.
			span := time.Duration(scale(14, 60)) * time.Second
			limit := 90 * time.Second
			if format == "text" && !soak() {
				span, limit = 0, 0
			}
			startRenewals := r.mock.Stats().Renewals
			afterFirst := -1 // tokens issued once every call had its token
			renewedAndRefreshed := func() bool {
				st := r.mock.Stats()
				return afterFirst >= 0 && st.Renewals > startRenewals && st.TokensIssued > afterFirst
			}
			begin := time.Now()
			for n := 0; n == 0 || time.Since(begin) < span || (time.Since(begin) < limit && !renewedAndRefreshed()); n++ {
				if n == 1 {
					afterFirst = r.mock.Stats().TokensIssued
				}
				for _, c := range calls {
					req, err := http.NewRequest(c.method, p.proxy+c.path, strings.NewReader(c.body))
					Expect(err).NotTo(HaveOccurred())
					for k, v := range c.hdr {
						req.Header.Set(k, v)
					}
					resp, err := client.Do(req)
					Expect(err).NotTo(HaveOccurred())
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					Expect(resp.StatusCode).To(Equal(200), "%s %s: %s", c.method, c.path, resp.Header.Get("X-Credbroker-Error"))
				}
				for _, q := range []string{"binding=xsuaa-secret", "binding=xsuaa-x509", "binding=xsuaa-secret&tenant=" + info.Tenants[2].Subdomain} {
					resp, err := client.Get(p.proxy + "/.credbroker/v1/token?" + q)
					Expect(err).NotTo(HaveOccurred())
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					Expect(resp.StatusCode).To(Equal(200), string(b))
					var tr struct {
						AccessToken string `json:"access_token"`
					}
					Expect(json.Unmarshal(b, &tr)).To(Succeed())
					r.secrets.Add("token from the token API", tr.AccessToken)
				}
				// Hostile and refused calls log too.
				for _, u := range []string{"/nope?token=" + appToken, "/secret/../x?client_secret=" + appToken, "/.credbroker/v1/token?binding=ias"} {
					resp, err := client.Get(p.proxy + u)
					Expect(err).NotTo(HaveOccurred())
					resp.Body.Close()
				}
			}
			Expect(r.mock.Stats().TokensIssued).To(BeNumerically(">=", 6))
			if limit > 0 {
				Expect(renewedAndRefreshed()).To(BeTrue(), "the calls spanned a token refresh and a certificate renewal: %+v", r.mock.Stats())
			}
			Expect(len(r.up.tokens("/"))).To(BeNumerically(">=", 5), "issued tokens were collected as secrets")
			Expect(r.up.all()).To(ContainElement(HaveField("Path", "/exchange/a")))
			for _, g := range r.up.all() {
				if g.Path == "/exchange/a" {
					Expect(g.Header.Get("Authorization")).NotTo(Equal("Bearer "+assertion), "the assertion was exchanged, not forwarded")
				}
			}
			// SIGHUP reload logs the configuration again.
			p.s.Signal(syscall.SIGHUP)
			Eventually(func() float64 { return p.status()["config"].(map[string]any)["generation"].(float64) }).WithTimeout(20 * time.Second).Should(BeNumerically(">=", 2))
			p.scan(true)
			p.s.Terminate()
			Eventually(p.s).WithTimeout(40 * time.Second).Should(gexec.Exit(0))
			p.scan(false)
		})
	}

	It("never leave the other commands (bindings, token, pair) at debug level", func() {
		r := newRig(mockauth.Options{})
		u, tok, err := r.mock.NewPairingToken("cli")
		Expect(err).NotTo(HaveOccurred())
		r.secrets.Add("one-time token for pair", tok)
		dir := filepath.Join(r.work, "paired")
		for _, args := range [][]string{
			{"bindings", "--vcap-file", r.vcapFile, "--json"},
			{"bindings", "--vcap-file", r.vcapFile},
			{"token", "--vcap-file", r.vcapFile, "--binding", mockauth.SecretBindingName, "--ca-file", r.caFile, "--json"},
			{"token", "--vcap-file", r.vcapFile, "--binding", mockauth.X509BindingName, "--ca-file", r.caFile, "--json"},
			{"token", "--vcap-file", r.vcapFile, "--binding", mockauth.SecretBindingName, "--ca-file", r.caFile, "--tenant", r.mock.Info().Tenants[1].Subdomain},
			{"pair", "--token-url", u, "--cert-dir", dir, "--ca-file", r.caFile},
		} {
			for _, format := range []string{"json", "text"} {
				s := runBounded(nil, 60*time.Second, harness.Env{}, append(args, "--log-level", "debug", "--log-format", format)...)
				Expect(s).To(gexec.Exit(0), "%v: %s", args, s.Err.Contents())
				if args[0] == "token" {
					// The token is the command's output: it is a secret
					// everywhere else (stderr, the other runs).
					out := strings.TrimSpace(string(s.Out.Contents()))
					if strings.HasPrefix(out, "{") {
						var tr struct {
							AccessToken string `json:"access_token"`
						}
						Expect(json.Unmarshal([]byte(out), &tr)).To(Succeed())
						out = tr.AccessToken
					}
					r.secrets.ExpectNotIn(s.Err.Contents())
					r.secrets.Add("token printed by credbroker token", out)
					Expect(string(s.Err.Contents())).NotTo(ContainSubstring(out))
					continue
				}
				r.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
				if args[0] == "pair" {
					break // the token is used up
				}
			}
		}
		r.secrets.ExpectNotIn(harness.ReadTree(r.work, "tls.key")...)
	})
})
