package sidecar_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

var _ = Describe("credbroker run", func() {
	Describe("routes", func() {
		var (
			e    *env
			sc   *sidecar
			info mockauth.Info
		)
		BeforeEach(func() {
			e = newEnv(mockauth.Options{})
			info = e.mock.Info()
			up := e.up.url
			sc = e.startSidecar(fmt.Sprintf(`
token_api: {bindings: [xsuaa-secret]}
certificates:
  - {name: connector, dir: %[2]s, pairing_url_file: %[3]s, renew: true}
routes:
  - {name: orders, upstream: %[1]s/orders, auth: {type: bearer, binding: xsuaa-secret, tenant_header: X-Tenant}}
  - {name: x509, upstream: %[1]s/x509, auth: {type: bearer, binding: xsuaa-x509}}
  - {name: events, upstream: %[1]s/events, auth: {type: mtls, certificate: connector}}
  - {name: both, upstream: %[1]s/both, auth: {type: mtls, certificate: connector, binding: xsuaa-secret}}
  - {name: controller, upstream: %[1]s/controller, auth: {type: oauth1, key_file: %[4]s, secret_file: %[5]s}}
  - {name: public, upstream: %[1]s/public, auth: {type: none}}
  - {name: keep, upstream: %[1]s/keep, auth: {type: bearer, binding: xsuaa-secret, replace_app_credentials: false}}
`, up, filepath.Join(e.dir, "connector"), e.pairingURLFile("app-e2e"), e.keyFile, e.secFile))
			Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))
		})

		It("adds a token for the binding and tenant, replacing the app's credential and the tenant header", func() {
			appToken := e.secrets.Plant("app's own token")
			resp, _ := call("GET", sc.proxy+"/orders/items?x=1", nil, map[string]string{"Authorization": "Bearer " + appToken, "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil.example"})
			Expect(resp.StatusCode).To(Equal(200))
			r := e.up.last("/orders/items")
			Expect(r.Query).To(Equal("x=1"))
			c := claims(r.Header.Get("Authorization"))
			Expect(c["client_id"]).To(Equal(info.SecretClientID))
			Expect(c["zid"]).To(Equal(info.Tenants[0].ZoneID))
			Expect(r.Header.Get("X-Forwarded-For")).To(Equal("127.0.0.1"), "the app's X-Forwarded-For is not trusted")
			Expect(r.Header.Get("X-Forwarded-Host")).To(Equal(sc.proxyHP))

			resp, _ = call("GET", sc.proxy+"/orders/tenant", nil, map[string]string{"X-Tenant": info.Tenants[1].Subdomain})
			Expect(resp.StatusCode).To(Equal(200))
			r = e.up.last("/orders/tenant")
			Expect(claims(r.Header.Get("Authorization"))["zid"]).To(Equal(info.Tenants[1].ZoneID))
			Expect(r.Header.Get("X-Tenant")).To(BeEmpty(), "the tenant header is removed before forwarding")

			resp, _ = call("GET", sc.proxy+"/x509/a", nil, nil)
			Expect(resp.StatusCode).To(Equal(200))
			Expect(claims(e.up.last("/x509/a").Header.Get("Authorization"))["client_id"]).To(Equal(info.X509ClientID), "an x509 binding's token comes over mTLS")

			resp, _ = call("GET", sc.proxy+"/keep/a", nil, map[string]string{"Authorization": "Bearer " + appToken})
			Expect(resp.StatusCode).To(Equal(200))
			Expect(e.up.last("/keep/a").Header.Get("Authorization")).To(Equal("Bearer "+appToken), "replace_app_credentials: false keeps the app's")
		})

		It("presents the paired client certificate, signs with OAuth 1.0a, and adds nothing on a none route", func() {
			resp, _ := call("GET", sc.proxy+"/events/topics", nil, nil)
			Expect(resp.StatusCode).To(Equal(200))
			r := e.up.last("/events/topics")
			Expect(r.ClientCN).To(Equal("app-e2e"))
			Expect(r.Header.Get("Authorization")).To(BeEmpty())

			resp, _ = call("GET", sc.proxy+"/both/x", nil, nil)
			Expect(resp.StatusCode).To(Equal(200))
			r = e.up.last("/both/x")
			Expect(r.ClientCN).To(Equal("app-e2e"))
			Expect(claims(r.Header.Get("Authorization"))["client_id"]).To(Equal(info.SecretClientID))

			resp, _ = call("POST", sc.proxy+"/controller/jobs?run=1", strings.NewReader(`{"job":"sync"}`), map[string]string{"Content-Type": "application/json"})
			Expect(resp.StatusCode).To(Equal(200))
			r = e.up.last("/controller/jobs")
			Expect(r.OAuth1).To(Equal("ok"), "the upstream verified the signature and the body hash")
			Expect(r.Body).To(Equal(`{"job":"sync"}`))
			resp, _ = call("POST", sc.proxy+"/controller/form", strings.NewReader("a=1&b=two"), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
			Expect(resp.StatusCode).To(Equal(200))
			Expect(e.up.last("/controller/form").OAuth1).To(Equal("ok"))

			resp, _ = call("GET", sc.proxy+"/public/hello", nil, map[string]string{"Authorization": "Basic YXBwOmFwcA=="})
			Expect(resp.StatusCode).To(Equal(200))
			Expect(e.up.last("/public/hello").Header.Get("Authorization")).To(Equal("Basic YXBwOmFwcA=="))
		})

		It("works as the app's HTTP proxy for plain http:// URLs of a route's host", func() {
			pu, _ := url.Parse(sc.proxy)
			pc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
			resp, err := pc.Get("http://" + e.up.host + "/orders/via-proxy?q=2")
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(200))
			r := e.up.last("/orders/via-proxy")
			Expect(r.Query).To(Equal("q=2"))
			Expect(claims(r.Header.Get("Authorization"))["client_id"]).To(Equal(info.SecretClientID))

			resp, err = pc.Get("http://" + e.up.host + "/events/via-proxy")
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(200))
			Expect(e.up.last("/events/via-proxy").ClientCN).To(Equal("app-e2e"))

			resp, err = pc.Get("http://example.com/")
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(http.StatusForbidden), "never an open proxy")
		})

		It("refuses what is not a route: other paths, CONNECT, traversal, other hosts", func() {
			before := len(e.up.all())
			for _, tc := range []struct {
				req    string
				status int
				reason string
			}{
				{"GET /admin HTTP/1.1\r\nHost: x\r\n\r\n", 403, "not-a-route"},
				{"GET /orders/../admin HTTP/1.1\r\nHost: x\r\n\r\n", 403, "dot-segment"},
				{"GET /orders/%2e%2e/%2e%2e/admin HTTP/1.1\r\nHost: x\r\n\r\n", 403, "dot-segment"},
				{"GET /orders%2F..%2F..%2Fadmin HTTP/1.1\r\nHost: x\r\n\r\n", 403, "dot-segment"},
				{"CONNECT " + e.up.host + " HTTP/1.1\r\nHost: " + e.up.host + "\r\n\r\n", 403, "connect-refused"},
				{"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 403, "connect-refused"},
				{"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 403, "not-a-route"},
				{"GET " + e.up.url + "/orders/x HTTP/1.1\r\nHost: " + e.up.host + "\r\n\r\n", 403, "scheme-refused"},
			} {
				status, reason := raw(sc.proxyHP, tc.req)
				Expect(status).To(Equal(tc.status), tc.req)
				Expect(reason).To(Equal(tc.reason), tc.req)
			}
			Expect(e.up.all()).To(HaveLen(before), "nothing refused reached the upstream")
			Expect(string(sc.get("/metrics"))).To(ContainSubstring(`credbroker_proxy_refused_total{reason="dot-segment"} 3`))
		})

		It("hands out tokens on the token API only for the bindings it lists", func() {
			code, body := httpGet(sc.proxy + "/.credbroker/v1/token?binding=xsuaa-secret&tenant=" + info.Tenants[1].Subdomain)
			Expect(code).To(Equal(200))
			var tr struct {
				AccessToken string `json:"access_token"`
				TokenType   string `json:"token_type"`
				ExpiresAt   string `json:"expires_at"`
			}
			Expect(json.Unmarshal([]byte(body), &tr)).To(Succeed())
			e.secrets.Add("token from the token API", tr.AccessToken)
			Expect(claims("Bearer " + tr.AccessToken)["zid"]).To(Equal(info.Tenants[1].ZoneID))
			_, err := time.Parse(time.RFC3339, tr.ExpiresAt)
			Expect(err).NotTo(HaveOccurred())

			code, body = httpGet(sc.proxy + "/.credbroker/v1/token?binding=xsuaa-x509")
			Expect(code).To(Equal(http.StatusForbidden))
			Expect(body).To(ContainSubstring("token-api-off"))
		})

		It("reports readiness, status and metrics without secrets", func() {
			for _, p := range []string{"/orders/m", "/events/m", "/controller/m", "/public/m"} {
				resp, _ := call("GET", sc.proxy+p, nil, nil)
				Expect(resp.StatusCode).To(Equal(200))
			}
			code, body := httpGet(sc.admin + "/readyz")
			Expect(code).To(Equal(200))
			Expect(body).To(Equal("ready\n"))
			st := sc.status()
			Expect(st["ready"]).To(BeTrue())
			certs := st["certificates"].([]any)
			Expect(certs).To(HaveLen(1))
			c0 := certs[0].(map[string]any)
			Expect(c0["subject"]).To(ContainSubstring("CN=app-e2e"))
			Expect(c0).To(HaveKey("next_renewal"))
			metrics := string(sc.get("/metrics"))
			for _, m := range []string{
				`credbroker_proxy_requests_total{code="200",route="orders"}`,
				`credbroker_proxy_requests_total{code="200",route="events"}`,
				`credbroker_proxy_request_duration_seconds_bucket{route="controller"`,
				`credbroker_token_fetches_total{binding="xsuaa-secret",outcome="ok"}`,
				`credbroker_token_cache_hits_total{binding="xsuaa-secret"}`,
				`credbroker_certificate_not_after_seconds{certificate="connector"}`,
				`credbroker_certificate_renewals_total{certificate="connector"} 0`,
				`credbroker_connector_heartbeats_total{certificate="connector"}`,
				`credbroker_ready 1`,
			} {
				Expect(metrics).To(ContainSubstring(m))
			}
		})
	})

	It("answers 503 while no token can be had, says why in /readyz, and recovers", func() {
		e := newEnv(mockauth.Options{TokenTTL: 6 * time.Second})
		sc := e.startSidecar(fmt.Sprintf("routes:\n  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret}}\n", e.up.url))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))
		resp, _ := call("GET", sc.proxy+"/orders/a", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))

		Expect(e.mock.AddFault(mockauth.Fault{Target: mockauth.TargetToken, Status: 503})).To(Succeed())
		Eventually(func() string {
			resp, _ := call("GET", sc.proxy+"/orders/b", nil, nil)
			return fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("X-Credbroker-Error"))
		}).WithTimeout(60*time.Second).WithPolling(500*time.Millisecond).Should(Equal("503 token-unavailable"), "once the cached token expired")
		seen := e.up.count("/orders/b")
		code, body := httpGet(sc.admin + "/readyz")
		Expect(code).To(Equal(503))
		Expect(body).To(ContainSubstring(`binding "xsuaa-secret": no valid token`))
		resp, body = call("GET", sc.proxy+"/orders/b", nil, nil)
		Expect(resp.StatusCode).To(Equal(503))
		Expect(body).To(ContainSubstring("no valid token for binding xsuaa-secret"))
		Expect(e.up.count("/orders/b")).To(Equal(seen), "a request without a credential is not forwarded")

		e.mock.ClearFaults()
		Eventually(func() int { resp, _ := call("GET", sc.proxy+"/orders/c", nil, nil); return resp.StatusCode }).WithTimeout(30 * time.Second).Should(Equal(200))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))
		Expect(string(sc.get("/metrics"))).To(MatchRegexp(`credbroker_proxy_credential_errors_total\{reason="token-unavailable",route="orders"\} [1-9]`))
	})

	It("is not ready and answers 503 once its client certificate expired", func() {
		e := newEnv(mockauth.Options{CertTTL: 4 * time.Second})
		sc := e.startSidecar(fmt.Sprintf(`
certificates:
  - {name: connector, dir: %s, pairing_url_file: %s}
routes:
  - {name: events, upstream: %s/events, auth: {type: mtls, certificate: connector}}
`, filepath.Join(e.dir, "connector"), e.pairingURLFile("short-lived"), e.up.url))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))
		Eventually(func() string {
			resp, _ := call("GET", sc.proxy+"/events/x", nil, nil)
			return fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("X-Credbroker-Error"))
		}).WithTimeout(30 * time.Second).WithPolling(200 * time.Millisecond).Should(Equal("503 certificate-expired"))
		code, body := httpGet(sc.admin + "/readyz")
		Expect(code).To(Equal(503))
		Expect(body).To(ContainSubstring(`certificate "connector" expired at`))
		Expect(body).To(ContainSubstring("one-time token"))
	})

	It("reloads on SIGHUP and on a changed config, and keeps the old config when the new one is bad", func() {
		e := newEnv(mockauth.Options{})
		one := fmt.Sprintf("routes:\n  - {name: one, upstream: %s/one, auth: {type: none}}\n", e.up.url)
		sc := e.startSidecar(one)
		gen := func() float64 { return sc.status()["config"].(map[string]any)["generation"].(float64) }
		Expect(gen()).To(Equal(1.0))

		sc.s.Signal(syscall.SIGHUP)
		Eventually(gen).WithTimeout(20 * time.Second).Should(Equal(2.0))
		Eventually(sc.s.Err).Should(gbytes.Say("SIGHUP"))

		sc.rewrite(one + fmt.Sprintf("  - {name: two, upstream: %s/two, auth: {type: bearer, binding: xsuaa-secret}}\n", e.up.url))
		sc.s.Signal(syscall.SIGHUP)
		Eventually(func() int { resp, _ := call("GET", sc.proxy+"/two/x", nil, nil); return resp.StatusCode }).WithTimeout(20 * time.Second).Should(Equal(200))

		// A reload keeps the token cache of an unchanged binding.
		fetched := e.mock.Stats().TokenRequests
		g := gen()
		sc.s.Signal(syscall.SIGHUP)
		Eventually(gen).WithTimeout(20 * time.Second).Should(Equal(g + 1))
		resp, _ := call("GET", sc.proxy+"/two/again", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))
		Expect(e.mock.Stats().TokenRequests).To(Equal(fetched), "no new token request after a reload")

		sc.rewrite(one + "  - {name: three, upstream: https://x.example, auth: {type: bearer, binding: no-such-binding}}\n")
		sc.s.Signal(syscall.SIGHUP)
		Eventually(func() string {
			st := sc.status()["config"].(map[string]any)
			s, _ := st["last_reload_error"].(string)
			return s
		}).WithTimeout(20 * time.Second).Should(ContainSubstring(`unknown binding: "no-such-binding"`))
		resp, _ = call("GET", sc.proxy+"/two/y", nil, nil)
		Expect(resp.StatusCode).To(Equal(200), "the running configuration is kept")
		Expect(string(sc.s.Err.Contents())).To(ContainSubstring("reload refused"))
	})

	It("picks up a rotated binding without a restart", func() {
		e := newEnv(mockauth.Options{})
		good := e.mock.VCAPServices()
		secret := e.mock.ClientSecret(e.mock.Info().SecretClientID)
		wrong := e.secrets.Plant("wrong client secret")
		Expect(os.WriteFile(e.vcapFile, []byte(strings.ReplaceAll(string(good), secret, wrong)), 0o600)).To(Succeed())
		sc := e.startSidecar(fmt.Sprintf("routes:\n  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret}}\n", e.up.url))
		resp, body := call("GET", sc.proxy+"/orders/x", nil, nil)
		Expect(resp.StatusCode).To(Equal(503))
		Expect(body).To(ContainSubstring("401"), "the token service's refusal is in the body")
		code, _ := httpGet(sc.admin + "/readyz")
		Expect(code).To(Equal(503))

		tmp := e.vcapFile + ".new"
		Expect(os.WriteFile(tmp, good, 0o600)).To(Succeed())
		Expect(os.Rename(tmp, e.vcapFile)).To(Succeed()) // the platform rotates the binding
		Eventually(func() int { resp, _ := call("GET", sc.proxy+"/orders/y", nil, nil); return resp.StatusCode }).WithTimeout(30 * time.Second).Should(Equal(200))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))
	})

	It("drains in-flight requests on SIGTERM and exits 0", func() {
		e := newEnv(mockauth.Options{})
		release := make(chan struct{})
		e.up.setHold(func(r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/slow/") {
				<-release
			}
		})
		sc := e.startSidecar(fmt.Sprintf("drain_timeout: 30s\nroutes:\n  - {name: slow, upstream: %s/slow, auth: {type: bearer, binding: xsuaa-secret}}\n", e.up.url))
		const inflight = 5
		results := make(chan int, inflight)
		for i := range inflight {
			go func() {
				defer GinkgoRecover()
				resp, err := client.Get(fmt.Sprintf("%s/slow/%d", sc.proxy, i))
				if err != nil {
					results <- 0
					return
				}
				resp.Body.Close()
				results <- resp.StatusCode
			}()
		}
		Eventually(func() int { return len(e.up.all()) }).WithTimeout(30 * time.Second).Should(Equal(inflight))
		sc.s.Signal(syscall.SIGTERM)
		Eventually(func() error {
			c, err := net.DialTimeout("tcp", sc.proxyHP, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		}).WithTimeout(20*time.Second).Should(HaveOccurred(), "no new connections while draining")
		Consistently(sc.s).WithTimeout(500 * time.Millisecond).ShouldNot(gexec.Exit())
		close(release)
		for range inflight {
			Eventually(results).WithTimeout(20 * time.Second).Should(Receive(Equal(200)))
		}
		Eventually(sc.s).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
	})

	It("rotates the client certificate while requests flow, without a failed request", func() {
		e := newEnv(mockauth.Options{CertTTL: 9 * time.Second})
		sc := e.startSidecar(fmt.Sprintf(`
certificates:
  - {name: connector, dir: %s, pairing_url_file: %s, renew: true}
routes:
  - {name: events, upstream: %s/events, auth: {type: mtls, certificate: connector}}
`, filepath.Join(e.dir, "connector"), e.pairingURLFile("rotating"), e.up.url))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))

		var ok, failed atomic.Int64
		var failures sync.Map
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					resp, err := client.Get(fmt.Sprintf("%s/events/w%d", sc.proxy, w))
					if err != nil {
						failed.Add(1)
						failures.Store(err.Error(), true)
						continue
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						failed.Add(1)
						failures.Store(fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("X-Credbroker-Error")), true)
						continue
					}
					ok.Add(1)
				}
			}()
		}
		certs := func() int {
			seen := map[string]bool{}
			for _, r := range e.up.all() {
				if r.Cert != "" {
					seen[r.Cert] = true
				}
			}
			return len(seen)
		}
		Eventually(certs).WithTimeout(90*time.Second).WithPolling(250*time.Millisecond).Should(BeNumerically(">=", 3), "two renewals while requests flow")
		close(stop)
		wg.Wait()
		var why []string
		failures.Range(func(k, _ any) bool { why = append(why, k.(string)); return true })
		Expect(failed.Load()).To(BeZero(), "failed requests: %v", why)
		Expect(ok.Load()).To(BeNumerically(">", 50))
		Expect(e.mock.Stats().Renewals).To(BeNumerically(">=", 2))
		Expect(sc.status()["certificates"].([]any)[0].(map[string]any)["renewals"]).To(BeNumerically(">=", 2))
	})

	It("pairs a second time with a two-phase connector and keeps both certificates", func() {
		e := newEnv(mockauth.Options{TwoPhase: true})
		runtimeDir := filepath.Join(e.dir, "runtime")
		sc := e.startSidecar(fmt.Sprintf(`
certificates:
  - {name: connector, dir: %s, pairing_url_file: %s, renew: true, runtime_dir: %s}
routes:
  - {name: registry, upstream: %s/registry, auth: {type: mtls, certificate: connector}}
  - {name: events, upstream: %s/events, auth: {type: mtls, certificate: connector-runtime}}
`, filepath.Join(e.dir, "connector"), e.pairingURLFile("two-phase"), runtimeDir, e.up.url, e.up.url))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))
		resp, _ := call("GET", sc.proxy+"/registry/x", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))
		resp, _ = call("GET", sc.proxy+"/events/x", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))
		central, runtime := e.up.last("/registry/x"), e.up.last("/events/x")
		Expect(central.ClientCN).To(Equal("two-phase"))
		Expect(runtime.Issuer).NotTo(BeEmpty())
		Expect(runtime.Issuer).NotTo(Equal(central.Issuer), "the runtime connector has a CA of its own")
		Expect(filepath.Join(runtimeDir, "tls.key")).To(BeAnExistingFile())
		Expect(filepath.Join(runtimeDir, "connection.json")).To(BeAnExistingFile())
		names := []string{}
		for _, c := range sc.status()["certificates"].([]any) {
			m := c.(map[string]any)
			Expect(m["loaded"]).To(BeTrue())
			names = append(names, m["name"].(string))
		}
		Expect(names).To(ConsistOf("connector", "connector-runtime"))
		Expect(e.mock.Stats().CSRSigned).To(Equal(2))
	})

	It("refuses a bad configuration with exit code 2 and a precise message", func() {
		e := newEnv(mockauth.Options{})
		for _, tc := range []struct {
			config string
			args   []string
			want   string
		}{
			{"routes:\n  - {name: o, upstream: https://o.example, auth: {type: bearer, binding: nope}}\n", nil, `routes[0].auth.binding ("o"): unknown binding: "nope"`},
			{"routes:\n  - {name: o, upstream: https://o.example, auth: {type: bearer, binding: xsuaa-secret, scope: [x]}}\n", nil, "unknown key"},
			{"", []string{"--listen", "0.0.0.0:0"}, "not loopback"},
		} {
			cfg := e.write("bad.yaml", []byte(tc.config))
			s := harness.Start(bin, nil, append([]string{"run", "--config", cfg, "--vcap-file", e.vcapFile, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"}, tc.args...)...)
			Eventually(s).WithTimeout(30 * time.Second).Should(gexec.Exit(2))
			Expect(string(s.Err.Contents())).To(ContainSubstring(tc.want))
			e.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
		}
	})
})

var _ = Describe("the fast path (issue 16)", func() {
	It("serves bodyless requests of bearer and none routes to an HTTP/1.1 upstream without net/http, with the credential, and the rest with net/http", func() {
		e := newEnv(mockauth.Options{})
		info := e.mock.Info()
		up := newUpstreamProto(e.upCA, e.clientCAs, e.oauthSec, e.secrets, false)
		sc := e.startSidecar(fmt.Sprintf(`
routes:
  - {name: orders, upstream: %[1]s/orders, auth: {type: bearer, binding: xsuaa-secret, tenant_header: X-Tenant}}
  - {name: x509, upstream: %[1]s/x509, auth: {type: bearer, binding: xsuaa-x509}}
  - {name: public, upstream: %[1]s/public, auth: {type: none}}
`, up.url))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))
		// A tenant_header route is served by the net/http handler; its
		// request also tells the pool that this https:// upstream answers
		// in HTTP/1.1. The client's keep-alive connection carries on.
		resp, _ := call("GET", sc.proxy+"/orders/slow", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))
		appToken := e.secrets.Plant("app's own token")
		for i := range 3 {
			resp, _ := call("GET", sc.proxy+fmt.Sprintf("/x509/fast/%d?q=%d", i, i), nil, map[string]string{"Authorization": "Bearer " + appToken, "X-Forwarded-For": "6.6.6.6"})
			Expect(resp.StatusCode).To(Equal(200))
			r := up.last(fmt.Sprintf("/x509/fast/%d", i))
			Expect(r.Query).To(Equal(fmt.Sprintf("q=%d", i)))
			Expect(claims(r.Header.Get("Authorization"))["client_id"]).To(Equal(info.X509ClientID), "the route's token replaced the app's")
			Expect(r.Header.Get("X-Forwarded-For")).To(Equal("127.0.0.1"))
			Expect(r.Header.Get("X-Forwarded-Host")).To(Equal(sc.proxyHP))
		}
		resp, _ = call("HEAD", sc.proxy+"/public/fast", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))
		Expect(up.last("/public/fast").Header.Get("Authorization")).To(BeEmpty())
		// The fast path counts a request after writing its response.
		Eventually(func() string { return string(sc.get("/metrics")) }).Should(And(
			MatchRegexp(`credbroker_proxy_fast_path_requests_total\{route="x509"\} 3\n`),
			MatchRegexp(`credbroker_proxy_fast_path_requests_total\{route="public"\} 1\n`)))
		metrics := string(sc.get("/metrics"))
		Expect(metrics).To(ContainSubstring("credbroker_proxy_fast_path_requests_total{route=\"orders\"} 0\n"))
		Expect(metrics).To(MatchRegexp(`credbroker_proxy_requests_total\{code="200",route="orders"\} 1\n`))
	})
})
