package sidecar_test

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// scrape parses the admin listener's /metrics.
func scrape(admin string) map[string]*dto.MetricFamily {
	GinkgoHelper()
	resp, err := client.Get(admin + "/metrics")
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	Expect(resp.StatusCode).To(Equal(200))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	Expect(err).NotTo(HaveOccurred())
	return fams
}

// value sums the series of family name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	sum, found := 0.0, false
series:
	for _, m := range f.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue series
			}
		}
		found = true
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}

var _ = Describe("metrics of every refusal and credential event", func() {
	It("counts each refusal kind by its reason, with only bounded label values", func() {
		e := newEnv(mockauth.Options{})
		info := e.mock.Info()
		var inbound int
		// The app behind the guard: a port that refuses connections, so an
		// accepted request ends in 502 app_unreachable.
		deadApp := fmt.Sprintf("http://127.0.0.1:%d", harness.ClosedPort())

		pairing := e.pairingURLFile("app-metrics")
		sc := e.startSidecarWith(func() string {
			inbound = harness.FreePort()
			return fmt.Sprintf(`
token_api: {bindings: [xsuaa-secret, xsuaa-x509]}
max_token_keys: 2
max_connections: {inbound: 1}
certificates:
  - {name: connector, dir: %[2]s, pairing_url_file: %[3]s, renew: true}
routes:
  - {name: orders, upstream: %[1]s/orders, auth: {type: bearer, binding: xsuaa-secret, tenant_header: X-Tenant}, refuse_origin: true}
  - {name: events, upstream: %[1]s/events, auth: {type: mtls, certificate: connector}}
  - {name: x509, upstream: %[1]s/x509, auth: {type: bearer, binding: xsuaa-x509, tenant_header: X-Tenant}}
inbound:
  listen: 127.0.0.1:%[4]d
  app: %[5]s
  rules:
    - {path: /api/, accept: [jwt], binding: xsuaa-secret}
`, e.up.url, filepath.Join(e.dir, "connector"), pairing, inbound, deadApp)
		})
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))
		guardAddr := fmt.Sprintf("127.0.0.1:%d", inbound)
		// guard sends one request on a fresh connection once the last one
		// gave its slot back (max_connections.inbound is 1).
		guardOpen := func(n int) {
			GinkgoHelper()
			Eventually(func() float64 {
				v, _ := value(scrape(sc.admin), "credbroker_connections_open", map[string]string{"listener": "inbound"})
				return v
			}).WithTimeout(20 * time.Second).Should(BeNumerically("==", n))
		}
		guard := func(request string) (int, string) {
			GinkgoHelper()
			guardOpen(0)
			return raw(guardAddr, request)
		}

		// Traffic that succeeds: a token fetch, a certificate in use.
		resp, _ := call("GET", sc.proxy+"/orders/a", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))
		resp, _ = call("GET", sc.proxy+"/events/a", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))

		// Egress refusals; a hostile value goes into each caller-controlled
		// place (Host, path, header) and must not become a label value.
		const hostile = "evil-label-value.example"
		egress := []struct{ request, reason string }{
			{"GET /" + hostile + "/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "not-a-route"},
			{"GET /orders/../" + hostile + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", "dot-segment"},
			{"CONNECT " + hostile + ":443 HTTP/1.1\r\nHost: " + hostile + ":443\r\n\r\n", "connect-refused"},
			{"GET https://" + hostile + "/x HTTP/1.1\r\nHost: " + hostile + "\r\n\r\n", "scheme-refused"},
			{"GET /orders/a HTTP/1.1\r\nHost: " + hostile + "\r\n\r\n", "host-not-allowed"},
			{"GET /orders/a HTTP/1.1\r\nHost: 127.0.0.1\r\nSec-Fetch-Site: cross-site\r\n\r\n", "cross-site"},
			{"GET /orders/a HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Authorization\r\nAuthorization: Bearer x\r\n\r\n", "hop-by-hop-credential"},
			{"GET /orders/a HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://" + hostile + "\r\n\r\n", "origin-refused"},
		}
		for _, r := range egress {
			code, reason := raw(sc.proxyHP, r.request)
			Expect(reason).To(Equal(r.reason), "%q answered %d", r.request, code)
		}
		// Malformed request heads, closed with 400 by the listener.
		heads := []struct{ request, reason string }{
			{"GET /orders/a HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\n " + hostile + "\r\n\r\n", "obs-fold"},
			{"GET /orders/a HTTP/1.1\nHost: 127.0.0.1\r\n\r\n", "bare-lf"},
		}
		for _, r := range heads {
			code, reason := raw(sc.proxyHP, r.request)
			Expect(code).To(Equal(400))
			Expect(reason).To(Equal(r.reason))
		}

		// Token API refusals, the key bound and a failing fetch.
		api := sc.proxy + "/.credbroker/v1/token"
		tokenAPI := []struct{ url, reason string }{
			{api, "bad-request"},
			{api + "?binding=" + hostile, "token-api-off"},
			{sc.proxy + "/.credbroker/v1/" + hostile, "not-a-route"},
		}
		for _, r := range tokenAPI {
			resp, _ := call("GET", r.url, nil, nil)
			Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal(r.reason), r.url)
		}
		resp, body := call("GET", api+"?binding=xsuaa-secret", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))
		limited := ""
		for i := 0; i < 4 && limited == ""; i++ {
			resp, _ = call("GET", fmt.Sprintf("%s?binding=xsuaa-secret&tenant=%s&scope=s%d", api, info.Tenants[1].Subdomain, i), nil, nil)
			if resp.StatusCode == 429 {
				limited = resp.Header.Get("X-Credbroker-Error")
			}
		}
		Expect(limited).To(Equal("token-key-limit"), "max_token_keys: 2 holds")
		Expect(e.mock.AddFault(mockauth.Fault{Target: mockauth.TargetCertToken, Status: 503})).To(Succeed())
		// A key the sidecar has not cached yet (the binding's own one may be).
		resp, body = call("GET", api+"?binding=xsuaa-x509&tenant="+info.Tenants[1].Subdomain, nil, nil)
		Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("token-unavailable"), "status %d", resp.StatusCode)
		// The same failing key through a route: a credential error of the
		// route.
		resp, _ = call("GET", sc.proxy+"/x509/a", nil, map[string]string{"X-Tenant": info.Tenants[1].Subdomain})
		Expect(resp.StatusCode).To(Equal(503))
		Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("token-unavailable"))
		e.mock.ClearFaults()

		// Admin refusals.
		code, reason := raw(strings.TrimPrefix(sc.admin, "http://"), "GET /metrics HTTP/1.1\r\nHost: "+hostile+"\r\n\r\n")
		Expect(reason).To(Equal("host-not-allowed"), "admin answered %d", code)

		// Inbound guard: refusals, an accepted request the app cannot
		// take (which fetched the JWKS first), and the connection limit.
		code, reason = guard("GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		Expect(code).To(Equal(401))
		Expect(reason).To(Equal("no_credentials"))
		code, reason = guard("GET /" + hostile + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		Expect(reason).To(Equal("no_rule"), "guard answered %d", code)
		resp, body = call("GET", api+"?binding=xsuaa-secret", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))
		access := regexp.MustCompile(`"access_token":"([^"]+)"`).FindStringSubmatch(body)
		Expect(access).To(HaveLen(2))
		e.secrets.Add("token from the token API", access[1])
		code, reason = guard("GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + access[1] + "\r\n\r\n")
		Expect(code).To(Equal(502))
		Expect(reason).To(Equal("app_unreachable"))

		guardOpen(0)
		hold, err := net.DialTimeout("tcp", guardAddr, 10*time.Second)
		Expect(err).NotTo(HaveOccurred())
		guardOpen(1)
		code, reason = raw(guardAddr, "GET /api/x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		Expect(code).To(Equal(503))
		Expect(reason).To(Equal("connection-limit"))
		Expect(hold.Close()).To(Succeed())

		// Credential events: the pairing at start, heartbeats, the
		// certificate loaded from its directory, the failed token replayed
		// to the route (the token API's fetch failed a moment before).
		Eventually(func() bool {
			_, ok := value(scrape(sc.admin), "credbroker_connector_heartbeat_results_total", map[string]string{"certificate": "connector", "outcome": "ok"})
			return ok
		}).WithTimeout(30*time.Second).Should(BeTrue(), "a heartbeat is counted")
		fams := scrape(sc.admin)
		expect := []struct {
			name   string
			labels map[string]string
		}{
			{"credbroker_proxy_requests_total", map[string]string{"route": "orders", "code": "200"}},
			{"credbroker_token_fetches_total", map[string]string{"binding": "xsuaa-secret", "outcome": "ok"}},
			{"credbroker_token_fetches_total", map[string]string{"binding": "xsuaa-x509", "outcome": "error"}},
			{"credbroker_token_key_limit_total", map[string]string{"binding": "xsuaa-secret", "via": "token_api"}},
			{"credbroker_token_api_refused_total", map[string]string{"reason": "token-key-limit"}},
			{"credbroker_token_api_refused_total", map[string]string{"reason": "token-unavailable"}},
			{"credbroker_proxy_credential_errors_total", map[string]string{"route": "x509", "reason": "token-unavailable"}},
			{"credbroker_admin_refused_total", map[string]string{"reason": "host-not-allowed"}},
			{"credbroker_inbound_requests_total", map[string]string{"method": "none", "outcome": "refused", "reason": "no_credentials"}},
			{"credbroker_inbound_requests_total", map[string]string{"outcome": "refused", "reason": "no_rule"}},
			{"credbroker_inbound_requests_total", map[string]string{"method": "jwt", "outcome": "accepted"}},
			{"credbroker_inbound_app_unreachable_total", nil},
			{"credbroker_inbound_jwks_fetches_total", map[string]string{"outcome": "ok"}},
			{"credbroker_connections_refused_total", map[string]string{"listener": "inbound"}},
			{"credbroker_certificate_loaded", map[string]string{"certificate": "connector"}},
			{"credbroker_connector_pairings_total", map[string]string{"certificate": "connector", "outcome": "ok"}},
			{"credbroker_connector_heartbeat_results_total", map[string]string{"certificate": "connector", "outcome": "ok"}},
			{"credbroker_certificate_reloads_total", map[string]string{"certificate": "connector", "outcome": "ok"}},
			{"credbroker_token_negative_cache_replays_total", map[string]string{"binding": "xsuaa-x509", "cause": "unavailable"}},
			{"credbroker_config_reloads_total", map[string]string{"outcome": "ok"}},
			{"credbroker_ready", nil},
		}
		for _, r := range egress {
			expect = append(expect, struct {
				name   string
				labels map[string]string
			}{"credbroker_proxy_refused_total", map[string]string{"reason": r.reason}})
		}
		for _, r := range heads {
			expect = append(expect, struct {
				name   string
				labels map[string]string
			}{"credbroker_request_head_refused_total", map[string]string{"listener": "proxy", "reason": r.reason}})
		}
		for _, r := range tokenAPI {
			expect = append(expect, struct {
				name   string
				labels map[string]string
			}{"credbroker_token_api_refused_total", map[string]string{"reason": r.reason}})
		}
		for _, x := range expect {
			v, ok := value(fams, x.name, x.labels)
			Expect(ok).To(BeTrue(), "no series %s%v in /metrics", x.name, x.labels)
			if !strings.HasPrefix(x.name, "credbroker_certificate_") && x.name != "credbroker_ready" || x.name == "credbroker_certificate_reloads_total" {
				Expect(v).To(BeNumerically(">=", 1), "%s%v", x.name, x.labels)
			}
		}
		// The certificate gauges of a healthy certificate.
		for name, want := range map[string]float64{"credbroker_certificate_loaded": 1, "credbroker_certificate_needs_token": 0, "credbroker_certificate_revoked": 0, "credbroker_certificate_failing": 0} {
			v, ok := value(fams, name, map[string]string{"certificate": "connector"})
			Expect(ok).To(BeTrue(), name)
			Expect(v).To(Equal(want), name)
		}

		// Bounded labels: every label of every credbroker_ series takes a
		// value from a fixed set or a configured name — never what a caller
		// sent.
		reasons := regexp.MustCompile(`^[a-z0-9_-]{0,40}$`)
		allowed := map[string]func(string) bool{
			"route":       func(v string) bool { return slices.Contains([]string{"orders", "events", "x509"}, v) },
			"binding":     func(v string) bool { return slices.Contains([]string{"xsuaa-secret", "xsuaa-x509", "-"}, v) },
			"certificate": func(v string) bool { return v == "connector" },
			"listener":    func(v string) bool { return slices.Contains([]string{"proxy", "admin", "inbound"}, v) },
			"outcome": func(v string) bool {
				return slices.Contains([]string{"ok", "error", "refused", "accepted",
					"dropped", "stale", "limited", "rejected", "failed", "not_replayable"}, v) // the last six: reauth (reauth_test.go)
			},
			"method": func(v string) bool { return slices.Contains([]string{"jwt", "mtls", "oauth1", "none"}, v) },
			"via":    func(v string) bool { return slices.Contains([]string{"route", "token_api"}, v) },
			"code":   regexp.MustCompile(`^[1-5][0-9][0-9]$`).MatchString,
			"reason": func(v string) bool { return reasons.MatchString(v) && !strings.Contains(v, "evil") },
			"cause":  func(v string) bool { return slices.Contains([]string{"refused", "unavailable"}, v) },
			"le":     func(string) bool { return true }, // histogram buckets
			// credbroker_build_info: constants of the build.
			"version":   func(v string) bool { return v != "" && !strings.Contains(v, "evil") },
			"commit":    func(v string) bool { return !strings.Contains(v, "evil") },
			"goversion": func(v string) bool { return strings.HasPrefix(v, "go") },
		}
		seen := 0
		for name, f := range fams {
			if !strings.HasPrefix(name, "credbroker_") {
				continue
			}
			Expect(f.GetHelp()).NotTo(BeEmpty(), name)
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					ok := allowed[l.GetName()]
					Expect(ok).NotTo(BeNil(), "%s has a label %q nobody bounded", name, l.GetName())
					Expect(ok(l.GetValue())).To(BeTrue(), "%s{%s=%q} is not a bounded value", name, l.GetName(), l.GetValue())
					seen++
				}
			}
		}
		Expect(seen).To(BeNumerically(">", 40))
		Expect(string(sc.get("/metrics"))).NotTo(ContainSubstring(hostile))
		Expect(string(sc.get("/metrics"))).NotTo(ContainSubstring(access[1]))
	})
})
