package sidecar_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// accessFields are the documented fields of an access log line, no more
// (docs/observability.md).
var accessFields = []string{"time", "listener", "route", "method", "path", "status", "duration_ms", "upstream_ms",
	"bytes_in", "bytes_out", "auth", "reason", "trace_id"}

// aliceToken gets a password-grant token for alice from the mock: the
// user token an app holds and a jwt-bearer route exchanges.
func aliceToken(e *env) string {
	GinkgoHelper()
	return harness.UserToken(e.mock, e.secrets)
}

// plainUpstream is an http:// upstream that answers 200, except under
// /hang, where it answers only when the caller gives up (or the spec
// ends).
func plainUpstream() *httptest.Server {
	GinkgoHelper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/hang") {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	DeferCleanup(srv.Close)
	DeferCleanup(func() { close(release) }) // runs first
	return srv
}

var _ = Describe("the access log", func() {
	It("writes one JSON line per request with the documented fields, the path without its query, and none of the request's secrets", func() {
		e := newEnv(mockauth.Options{})
		logFile := filepath.Join(e.dir, "access.log")
		sc := e.startSidecar(fmt.Sprintf(`
access_log: {enabled: true, path: %[2]s}
routes:
  - {name: orders, upstream: %[1]s/orders, auth: {type: bearer, binding: xsuaa-secret}}
  - {name: exchange, upstream: %[1]s/exchange, auth: {type: bearer, binding: xsuaa-secret, grant: jwt-bearer}}
`, e.up.url, logFile))
		user := aliceToken(e)
		appAuth := e.secrets.Plant("the app's own Authorization")
		querySecret := e.secrets.Plant("a secret in the query")
		cookie := e.secrets.Plant("a session cookie")
		custom := e.secrets.Plant("a custom header value")
		const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
		const spanID = "00f067aa0ba902b7"
		hostile := map[string]string{
			"Authorization": "Bearer " + appAuth,
			"Cookie":        "session=" + cookie,
			"X-Custom":      custom,
			"User-Agent":    "agent-" + custom,
			"Traceparent":   "00-" + traceID + "-" + spanID + "-01",
		}

		// The fast path: a bodyless GET to a bearer route.
		resp, _ := call("GET", sc.proxy+"/orders/items?api_key="+querySecret+"&x=1", nil, hostile)
		Expect(resp.StatusCode).To(Equal(200))
		// net/http's path: a body.
		resp, _ = call("POST", sc.proxy+"/orders/form?token="+querySecret, strings.NewReader("0123456789"), hostile)
		Expect(resp.StatusCode).To(Equal(200))
		// A user token exchanged (jwt-bearer).
		withUser := map[string]string{"Authorization": "Bearer " + user, "Cookie": "session=" + cookie}
		resp, _ = call("GET", sc.proxy+"/exchange/me?assertion="+querySecret, nil, withUser)
		Expect(resp.StatusCode).To(Equal(200))
		// Refusals: the user token missing; not a route.
		resp, _ = call("GET", sc.proxy+"/exchange/me", nil, map[string]string{"Cookie": "session=" + cookie})
		Expect(resp.StatusCode).To(Equal(401))
		resp, _ = call("GET", sc.proxy+"/nope/x?secret="+querySecret, nil, hostile)
		Expect(resp.StatusCode).To(Equal(403))

		var lines []map[string]any
		Eventually(func() int {
			data, _ := os.ReadFile(logFile)
			lines = nil
			for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				var m map[string]any
				if l != "" && json.Unmarshal([]byte(l), &m) == nil {
					lines = append(lines, m)
				}
			}
			return len(lines)
		}).WithTimeout(20 * time.Second).Should(Equal(5))
		byPath := map[string]map[string]any{}
		for _, l := range lines {
			keys := make([]string, 0, len(l))
			for k := range l {
				keys = append(keys, k)
			}
			Expect(keys).To(ConsistOf(accessFields), "the documented fields and no others")
			byPath[fmt.Sprint(l["path"], " ", l["status"])] = l
			Expect(l["listener"]).To(Equal("proxy"))
			_, err := time.Parse(time.RFC3339Nano, l["time"].(string))
			Expect(err).NotTo(HaveOccurred())
			Expect(l["duration_ms"]).To(BeNumerically(">", 0))
		}
		fast := byPath["/orders/items 200"]
		Expect(fast).To(HaveKeyWithValue("route", "orders"))
		Expect(fast).To(HaveKeyWithValue("method", "GET"))
		Expect(fast).To(HaveKeyWithValue("auth", "bearer"))
		Expect(fast).To(HaveKeyWithValue("reason", ""))
		Expect(fast).To(HaveKeyWithValue("trace_id", traceID))
		Expect(fast["upstream_ms"]).To(BeNumerically(">", 0))
		Expect(fast["bytes_out"]).To(BeNumerically(">", 0))
		post := byPath["/orders/form 200"]
		Expect(post).To(HaveKeyWithValue("method", "POST"))
		Expect(post).To(HaveKeyWithValue("bytes_in", 10.0))
		Expect(post).To(HaveKeyWithValue("trace_id", traceID))
		Expect(post["upstream_ms"]).To(BeNumerically(">", 0))
		Expect(byPath["/exchange/me 200"]).To(HaveKeyWithValue("route", "exchange"))
		Expect(byPath["/exchange/me 200"]).To(HaveKeyWithValue("trace_id", ""))
		refused := byPath["/exchange/me 401"]
		Expect(refused).To(HaveKeyWithValue("reason", "no-user-token"))
		Expect(refused).To(HaveKeyWithValue("upstream_ms", 0.0))
		notRoute := byPath["/nope/x 403"]
		Expect(notRoute).To(HaveKeyWithValue("reason", "not-a-route"))
		Expect(notRoute).To(HaveKeyWithValue("route", ""))

		data, err := os.ReadFile(logFile)
		Expect(err).NotTo(HaveOccurred())
		e.secrets.ExpectNotIn(data)
		for _, v := range []string{"api_key", "secret=", "session=", spanID, "agent-"} {
			Expect(string(data)).NotTo(ContainSubstring(v))
		}
		st, err := os.Stat(logFile)
		Expect(err).NotTo(HaveOccurred())
		Expect(st.Mode().Perm()).To(Equal(os.FileMode(0o600)))
		// Separate from the diagnostic log.
		Expect(string(sc.s.Err.Contents())).NotTo(ContainSubstring(`"path":"/orders/items"`))
	})

	It("counts every answer a route gives itself in credbroker_proxy_refused_total by reason (fast path and net/http path)", func() {
		fast := map[string]float64{}
		sc, refusals := routeRefusals(func(sc *sidecar) {
			for _, route := range []string{"dead", "silent"} {
				fast[route] = fastRequests(sc, route)
			}
		})
		want := map[string]float64{}
		for _, r := range refusals {
			want[r.reason]++
		}
		fams := scrape(sc.admin)
		for reason, n := range want {
			v, ok := value(fams, "credbroker_proxy_refused_total", map[string]string{"reason": reason})
			Expect(ok).To(BeTrue(), "no credbroker_proxy_refused_total{reason=%q}", reason)
			Expect(v).To(Equal(n), reason)
		}
		// The GETs to the dead and silent upstreams took the fast path.
		for _, route := range []string{"dead", "silent"} {
			v, _ := value(fams, "credbroker_proxy_fast_path_requests_total", map[string]string{"route": route})
			Expect(v).To(Equal(fast[route]+1), route)
		}
	})

	It("logs every refusal with its reason (text, standard output, set by flags; sample 0 logs no success)", func() {
		sc, refusals := routeRefusals(nil, "--access-log", "-", "--access-log-format", "text", "--access-log-sample", "0")
		v, ok := value(scrape(sc.admin), "credbroker_access_log_dropped_total", nil)
		Expect(ok).To(BeTrue())
		Expect(v).To(BeZero())

		// The text lines on standard output: one per refusal, none for the
		// successes.
		var lines []string
		Eventually(func() int {
			lines = nil
			for _, l := range strings.Split(string(sc.s.Out.Contents()), "\n") {
				if strings.HasPrefix(l, "time=") && strings.Contains(l, " listener=proxy ") {
					lines = append(lines, l)
				}
			}
			return len(lines)
		}).WithTimeout(20 * time.Second).Should(Equal(len(refusals)))
		var got []string
		for _, l := range lines {
			fields := map[string]string{}
			for _, f := range strings.Fields(l) {
				k, v, ok := strings.Cut(f, "=")
				Expect(ok).To(BeTrue(), l)
				fields[k] = v
			}
			keys := make([]string, 0, len(fields))
			for k := range fields {
				keys = append(keys, k)
			}
			Expect(keys).To(ConsistOf(accessFields), l)
			got = append(got, fields["path"]+" "+fields["status"]+" "+fields["reason"])
		}
		var wantLines []string
		for _, r := range refusals {
			wantLines = append(wantLines, fmt.Sprintf("%s %d %s", r.path, r.status, r.reason))
		}
		Expect(got).To(ConsistOf(wantLines))
		Expect(slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "/tenanted/ok") })).To(BeFalse(), "sample 0 logs no success")
	})
})

// fastRequests is how many requests of route the fast path served.
func fastRequests(sc *sidecar, route string) float64 {
	GinkgoHelper()
	v, _ := value(scrape(sc.admin), "credbroker_proxy_fast_path_requests_total", map[string]string{"route": route})
	return v
}

// refusal is one kind of answer a route gives itself.
type refusal struct {
	name   string
	path   string
	status int
	reason string
	send   func() (int, string)
}

// routeRefusals starts a sidecar (with args) whose routes can be made to
// answer every non-503 refusal, makes successful requests (until the fast
// path serves the dead and silent routes), calls before, then sends one
// request of each refusal kind, and returns them.
func routeRefusals(before func(*sidecar), args ...string) (*sidecar, []refusal) {
	GinkgoHelper()
	e := newEnv(mockauth.Options{})
	info := e.mock.Info()
	// gone answers once (the fast path learns it speaks HTTP/1.1), then
	// goes away; slow answers, but not under /hang.
	gone, slow := plainUpstream(), plainUpstream()
	sc := e.startSidecar(fmt.Sprintf(`
max_signed_body: 16
max_token_keys: 1
timeouts: {response_header: 1s}
routes:
  - {name: exchange, upstream: %[1]s/exchange, auth: {type: bearer, binding: xsuaa-secret, grant: jwt-bearer}}
  - {name: aps, upstream: %[1]s/aps, auth: {type: oauth1, key_file: %[2]s, secret_file: %[3]s}}
  - {name: dead, upstream: %[4]s, auth: {type: none}}
  - {name: silent, upstream: %[5]s, auth: {type: none}}
  - {name: tenanted, upstream: %[1]s/t, auth: {type: bearer, binding: xsuaa-secret, tenant_header: X-Tenant}}
`, e.up.url, e.keyFile, e.secFile, gone.URL, slow.URL), args...)

	// Two successes (not logged at sample 0): the route's own token, and
	// the one key max_token_keys allows beyond it.
	resp, _ := call("GET", sc.proxy+"/tenanted/ok", nil, nil)
	Expect(resp.StatusCode).To(Equal(200))
	resp, _ = call("GET", sc.proxy+"/tenanted/ok", nil, map[string]string{"X-Tenant": info.Tenants[0].Subdomain})
	Expect(resp.StatusCode).To(Equal(200))
	for _, path := range []string{"/dead/ok", "/silent/ok"} {
		Eventually(func() float64 {
			code, _ := raw(sc.proxyHP, "GET "+path+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
			Expect(code).To(Equal(200))
			return fastRequests(sc, path[1:strings.LastIndexByte(path, '/')])
		}).Should(BeNumerically(">", 0), "the fast path takes %s", path)
	}
	gone.Close()

	get := func(path string, hdr map[string]string) func() (int, string) {
		return func() (int, string) {
			resp, _ := call("GET", sc.proxy+path, nil, hdr)
			return resp.StatusCode, resp.Header.Get("X-Credbroker-Error")
		}
	}
	post := func(path, body string) func() (int, string) {
		return func() (int, string) {
			resp, _ := call("POST", sc.proxy+path, strings.NewReader(body), nil)
			return resp.StatusCode, resp.Header.Get("X-Credbroker-Error")
		}
	}
	// A fresh connection each (a client connection net/http served once
	// stays with net/http).
	fresh := func(path string) func() (int, string) {
		return func() (int, string) { return raw(sc.proxyHP, "GET "+path+" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n") }
	}
	refusals := []refusal{
		{"no user token", "/exchange/a", 401, "no-user-token", get("/exchange/a", nil)},
		{"a body over max_signed_body", "/aps/a", 413, "body-too-large", post("/aps/a", strings.Repeat("x", 100))},
		{"a body that cannot be read for signing", "/aps/b", 400, "signing-failed", func() (int, string) {
			return raw(sc.proxyHP, "POST /aps/b HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n")
		}},
		{"a dead upstream (fast path)", "/dead/a", 502, "upstream-unreachable", fresh("/dead/a")},
		{"a dead upstream (net/http path)", "/dead/b", 502, "upstream-unreachable", post("/dead/b", "body")},
		{"a silent upstream (fast path)", "/silent/hang/a", 504, "upstream-timeout", fresh("/silent/hang/a")},
		{"a silent upstream (net/http path)", "/silent/hang/b", 504, "upstream-timeout", post("/silent/hang/b", "body")},
		{"a new tenant beyond max_token_keys", "/tenanted/b", 429, "token-key-limit", get("/tenanted/b", map[string]string{"X-Tenant": info.Tenants[1].Subdomain})},
	}
	if before != nil {
		before(sc)
	}
	for _, r := range refusals {
		code, reason := r.send()
		Expect(code).To(Equal(r.status), r.name)
		Expect(reason).To(Equal(r.reason), r.name)
	}
	return sc, refusals
}
