package guard_test

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// inboundAccessFields are the documented fields of an access log line
// (docs/observability.md), the same on both listeners.
var inboundAccessFields = []string{"time", "listener", "route", "method", "path", "status", "duration_ms", "upstream_ms",
	"bytes_in", "bytes_out", "auth", "reason", "trace_id"}

// jsonLines reads the JSON lines of file whose listener is listener.
func jsonLines(file, listener string) []map[string]any {
	data, _ := os.ReadFile(file)
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var m map[string]any
		if l != "" && json.Unmarshal([]byte(l), &m) == nil && m["listener"] == listener {
			out = append(out, m)
		}
	}
	return out
}

var _ = Describe("the access log of the inbound guard", func() {
	It("writes one line per inbound request with the guard's own rule, method and reason, and no identity of the caller", func() {
		rig := newGuardRig()
		srv := rig.srv
		secrets := &harness.Secrets{}
		secrets.Add("client secret", srv.ClientSecret(srv.Info().SecretClientID))
		// The app behind the guard sets an X-Credbroker-Error of its own: it
		// must not become the line's reason.
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("X-Credbroker-Error", "app-planted-reason")
			_, _ = io.WriteString(w, "from the app")
		}))
		DeferCleanup(app.Close)
		serverCA, clientCA := testpki.NewCA(), testpki.NewCA()
		leaf := serverCA.Issue(testpki.ServerAuth(), testpki.WithDNSNames("guard.localhost"), testpki.WithIPs("127.0.0.1"))
		rig.write("server/tls.crt", leaf.CertPEM())
		rig.write("server/tls.key", leaf.KeyPEM(testpki.PKCS8))
		rig.write("server/ca.crt", serverCA.CertPEM())
		caFile := rig.write("callers/ca.crt", clientCA.CertPEM())
		logFile := filepath.Join(rig.dir, "access.log")
		var inboundHP string
		opts := rig.sidecarOptions()
		opts.AfterExit = func(sc *harness.Sidecar) {
			secrets.ExpectNotIn(sc.Session.Out.Contents(), sc.Session.Err.Contents())
		}
		harness.StartSidecarWith(bin, opts, func() string {
			inboundHP = fmt.Sprintf("127.0.0.1:%d", harness.FreePort())
			return fmt.Sprintf(`
access_log: {enabled: true, path: %s}
certificates:
  - name: server
    dir: %s
inbound:
  listen: %s
  tls: {certificate: server}
  app: %s
  rules:
    - {path: /api/, accept: [jwt], binding: %s}
    - {path: /callbacks/, accept: [mtls], ca_file: %s}
`, logFile, filepath.Join(rig.dir, "server"), inboundHP, app.URL, mockauth.SecretBindingName, caFile)
		})
		waitListening(inboundHP)

		// The caller's identities: its JWT (and the client id and zone in
		// it), the subject of its client certificate.
		jwt := clientToken(srv.Client(), srv.Info().URL+"/oauth/token", secretGrant(srv), secrets)
		// Subjects are identities, not secrets: the diagnostic log may name
		// them (docs/security.md), the access log never does.
		identities := &harness.Secrets{}
		subjectCN := identities.Plant("client certificate subject")
		callerCert := clientCA.Issue(testpki.ClientAuth(), testpki.WithCommonName(subjectCN))
		strangerCN := identities.Plant("untrusted certificate subject")
		stranger := testpki.NewCA().Issue(testpki.ClientAuth(), testpki.WithCommonName(strangerCN))
		querySecret := secrets.Plant("a secret in the query")
		cookie := secrets.Plant("a session cookie")
		badToken := secrets.Plant("a bad bearer token")
		const traceID = "5bf92f3577b34da6a3ce929d0e0e4736"
		const spanID = "10f067aa0ba902b7"

		send := func(method, path, body, token string, certs ...tls.Certificate) *http.Response {
			GinkgoHelper()
			c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: serverCA.Pool(), ServerName: "guard.localhost", Certificates: certs},
			}}
			req, err := http.NewRequest(method, "https://"+inboundHP+path, strings.NewReader(body))
			Expect(err).NotTo(HaveOccurred())
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			req.Header.Set("Cookie", "session="+cookie)
			req.Header.Set("X-Credbroker-Subject", "spoofed-"+cookie)
			req.Header.Set("Traceparent", "00-"+traceID+"-"+spanID+"-01")
			resp, err := c.Do(req)
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp
		}
		ok := send("GET", "/api/orders?token="+querySecret, "", jwt)
		Expect(ok.StatusCode).To(Equal(200))
		Expect(ok.Header.Get("X-Credbroker-Error")).To(Equal("app-planted-reason"), "the app's header reaches the caller")
		Expect(send("POST", "/api/form", "0123456789", jwt).StatusCode).To(Equal(200))
		bad := send("GET", "/api/x?sig="+querySecret, "", badToken)
		Expect(bad.StatusCode).To(Equal(401))
		Expect(send("GET", "/nope/x?secret="+querySecret, "", jwt).StatusCode).To(Equal(403))
		Expect(send("GET", "/callbacks/ping", "", "", callerCert.TLSCertificate()).StatusCode).To(Equal(200))
		Expect(send("GET", "/callbacks/pong", "", "", stranger.TLSCertificate()).StatusCode).To(Equal(403))

		var lines []map[string]any
		Eventually(func() int {
			lines = jsonLines(logFile, "inbound")
			return len(lines)
		}).WithTimeout(20 * time.Second).Should(Equal(6))
		byPath := map[string]map[string]any{}
		for _, l := range lines {
			keys := make([]string, 0, len(l))
			for k := range l {
				keys = append(keys, k)
			}
			Expect(keys).To(ConsistOf(inboundAccessFields), "the documented fields and no others")
			Expect(l["trace_id"]).To(Equal(traceID), "the caller's trace (tracing off)")
			Expect(l["duration_ms"]).To(BeNumerically(">", 0))
			byPath[fmt.Sprint(l["path"])] = l
		}
		Expect(byPath).To(HaveLen(6))
		accepted := byPath["/api/orders"]
		Expect(accepted).To(HaveKeyWithValue("route", "/api/"))
		Expect(accepted).To(HaveKeyWithValue("method", "GET"))
		Expect(accepted).To(HaveKeyWithValue("auth", "jwt"))
		Expect(accepted).To(HaveKeyWithValue("status", 200.0))
		Expect(accepted).To(HaveKeyWithValue("reason", ""), "the app's X-Credbroker-Error is not the guard's reason")
		Expect(accepted).To(HaveKeyWithValue("bytes_out", float64(len("from the app"))))
		Expect(accepted["upstream_ms"]).To(BeNumerically(">", 0))
		Expect(byPath["/api/form"]).To(HaveKeyWithValue("bytes_in", 10.0))
		Expect(byPath["/api/form"]).To(HaveKeyWithValue("method", "POST"))
		refused := byPath["/api/x"]
		Expect(refused).To(HaveKeyWithValue("status", 401.0))
		Expect(refused).To(HaveKeyWithValue("auth", "jwt"))
		Expect(refused).To(HaveKeyWithValue("reason", bad.Header.Get("X-Credbroker-Error")))
		Expect(refused).To(HaveKeyWithValue("upstream_ms", 0.0))
		Expect(byPath["/nope/x"]).To(And(HaveKeyWithValue("route", ""), HaveKeyWithValue("auth", "none"), HaveKeyWithValue("reason", "no_rule")))
		Expect(byPath["/callbacks/ping"]).To(And(HaveKeyWithValue("route", "/callbacks/"), HaveKeyWithValue("auth", "mtls"), HaveKeyWithValue("reason", "")))
		Expect(byPath["/callbacks/pong"]).To(And(HaveKeyWithValue("status", 403.0), HaveKeyWithValue("auth", "mtls"), HaveKeyWithValue("reason", "untrusted_certificate")))

		data, err := os.ReadFile(logFile)
		Expect(err).NotTo(HaveOccurred())
		secrets.ExpectNotIn(data)
		identities.ExpectNotIn(data)
		info := srv.Info()
		for _, v := range []string{info.SecretClientID, info.Tenants[0].ZoneID, info.Tenants[0].Subdomain, "spoofed-", "session=", "secret=", spanID, "app-planted-reason"} {
			Expect(string(data)).NotTo(ContainSubstring(v))
		}
	})

	It("follows the same settings: text to standard output, sample 0 logs only refusals, and the span's trace id with tracing on", func() {
		rig := newGuardRig()
		// A receiver that takes whatever is exported: tracing is on.
		otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
		}))
		DeferCleanup(otlp.Close)
		var inboundHP string
		opts := rig.sidecarOptions()
		opts.Args = []string{"--access-log", "-", "--access-log-format", "text", "--access-log-sample", "0"}
		opts.Env = harness.Env{"OTEL_EXPORTER_OTLP_ENDPOINT": otlp.URL}
		sc := harness.StartSidecarWith(bin, opts, func() string {
			inboundHP = fmt.Sprintf("127.0.0.1:%d", harness.FreePort())
			return fmt.Sprintf(`
inbound:
  listen: %s
  app: %s
  rules:
    - {path: /, accept: [jwt], binding: %s}
`, inboundHP, rig.appURL, mockauth.SecretBindingName)
		})
		waitListening(inboundHP)
		jwt := clientToken(rig.srv.Client(), rig.srv.Info().URL+"/oauth/token", secretGrant(rig.srv), nil)
		get := func(path, token, traceparent string) int {
			GinkgoHelper()
			req, _ := http.NewRequest("GET", "http://"+inboundHP+path, nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			if traceparent != "" {
				req.Header.Set("Traceparent", traceparent)
			}
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		const traceID = "6bf92f3577b34da6a3ce929d0e0e4736"
		Expect(get("/ok", jwt, "")).To(Equal(200))
		Expect(get("/no-token", "", "00-"+traceID+"-20f067aa0ba902b7-01")).To(Equal(401))
		Expect(get("/no-token-fresh", "", "")).To(Equal(401))

		inbound := func() []string {
			var out []string
			for _, l := range strings.Split(string(sc.Session.Out.Contents()), "\n") {
				if strings.HasPrefix(l, "time=") && strings.Contains(l, " listener=inbound ") {
					out = append(out, l)
				}
			}
			return out
		}
		// One writer writes lines in the order the requests ended: the
		// success came first and would be there before the refusals.
		Eventually(inbound).WithTimeout(20*time.Second).Should(HaveLen(2), "sample 0 writes the refusals and no success")
		fields := map[string]map[string]string{}
		for _, l := range inbound() {
			f := map[string]string{}
			for _, kv := range strings.Fields(l) {
				k, v, ok := strings.Cut(kv, "=")
				Expect(ok).To(BeTrue(), l)
				f[k] = v
			}
			Expect(f).To(HaveLen(len(inboundAccessFields)), l)
			Expect(f).To(HaveKeyWithValue("route", "/"))
			Expect(f).To(HaveKeyWithValue("reason", "no_credentials"))
			Expect(f).To(HaveKeyWithValue("status", "401"))
			fields[f["path"]] = f
		}
		Expect(fields["/no-token"]).To(HaveKeyWithValue("trace_id", traceID), "the caller's trace, continued by the guard's span")
		fresh := fields["/no-token-fresh"]["trace_id"]
		Expect(fresh).To(MatchRegexp(`^[0-9a-f]{32}$`), "a new trace of the guard's span")
		Expect(fresh).NotTo(Equal(strings.Repeat("0", 32)))
		Expect(regexp.MustCompile(`listener=inbound .*path=/ok `).MatchString(string(sc.Session.Out.Contents()))).To(BeFalse())
	})

	It("counts an accepted request whose body broke (400 bad_request_body) and logs the guard's reason", func() {
		rig := newGuardRig()
		var inboundHP string
		opts := rig.sidecarOptions()
		opts.Args = []string{"--access-log", "-"}
		sc := harness.StartSidecarWith(bin, opts, func() string {
			inboundHP = fmt.Sprintf("127.0.0.1:%d", harness.FreePort())
			return fmt.Sprintf(`
inbound:
  listen: %s
  app: %s
  rules:
    - {path: /, accept: [jwt], binding: %s}
`, inboundHP, rig.appURL, mockauth.SecretBindingName)
		})
		waitListening(inboundHP)
		conn, err := net.DialTimeout("tcp", inboundHP, 5*time.Second)
		Expect(err).NotTo(HaveOccurred())
		defer conn.Close()
		Expect(conn.SetDeadline(time.Now().Add(30 * time.Second))).To(Succeed())
		_, err = io.WriteString(conn, "POST /api/x HTTP/1.1\r\nHost: app.example\r\nAuthorization: Bearer "+mintFor(rig.srv)+
			"\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\nabc\r\n0\r\n\r\n")
		Expect(err).NotTo(HaveOccurred())
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(400))
		Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("bad_request_body"))

		metrics := func() string {
			r, err := http.Get(sc.Admin + "/metrics")
			if err != nil {
				return ""
			}
			defer r.Body.Close()
			b, _ := io.ReadAll(r.Body)
			return string(b)
		}
		Expect(metrics()).To(ContainSubstring("\ncredbroker_inbound_bad_request_body_total 1\n"))
		Expect(metrics()).To(ContainSubstring(`credbroker_inbound_requests_total{method="jwt",outcome="accepted",reason=""} 1`))
		Eventually(sc.Session.Out).WithTimeout(20 * time.Second).Should(gbytes.Say(
			`"listener":"inbound","route":"/","method":"POST","path":"/api/x","status":400,.*"auth":"jwt","reason":"bad_request_body"`))
	})
})
