package sidecar_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

// The app trusts X-Credbroker-Error to be credbroker's word (docs/security.md):
// an upstream that sends its own X-Credbroker-* fields, in the head or in
// trailers, on the fast path or net/http's, must not be able to forge it.
var _ = Describe("X-Credbroker-* fields an upstream sends", func() {
	It("are removed on both paths, in heads and trailers, and a rejected token's reason is the only one", func() {
		e := newEnv(mockauth.Options{})
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && len(tok) > 8 {
				e.secrets.Add("access token", tok)
			}
			h := w.Header()
			h.Set("X-Credbroker-Error", "forged-by-upstream")
			h.Set("x-credbroker-route", "forged")
			h.Set("X-Upstream", "kept")
			if strings.HasPrefix(r.URL.Path, "/rejects") {
				h.Set("WWW-Authenticate", `Bearer error="invalid_token"`)
				w.WriteHeader(http.StatusUnauthorized)
				_, _ = io.WriteString(w, "no")
				return
			}
			h.Set("Trailer", "X-Credbroker-Error, X-Upstream-Trailer")
			_, _ = io.WriteString(w, "ok")
			w.(http.Flusher).Flush() // chunked: trailers follow
			h.Set("X-Credbroker-Error", "forged-trailer")
			h.Set("X-Upstream-Trailer", "kept")
			h.Set(http.TrailerPrefix+"X-Credbroker-Late", "forged-unannounced")
		}))
		DeferCleanup(up.Close)
		logFile := filepath.Join(e.dir, "access.log")
		sc := e.startSidecar(fmt.Sprintf(`
access_log: {enabled: true, path: %[2]s}
routes:
  - {name: open, upstream: %[1]s, auth: {type: none}}
  - {name: api, upstream: %[1]s, auth: {type: bearer, binding: xsuaa-secret}}
`, up.URL, logFile))

		own := func(h http.Header) []string {
			var out []string
			for k, v := range h {
				if strings.HasPrefix(strings.ToLower(k), "x-credbroker-") {
					out = append(out, k+": "+strings.Join(v, ","))
				}
			}
			return out
		}
		// The fast path (a bodyless GET) and net/http's path (a body).
		for _, c := range []struct {
			method string
			body   io.Reader
		}{{"GET", nil}, {"POST", strings.NewReader("x")}} {
			for _, route := range []string{"open", "api"} {
				resp, body := call(c.method, sc.proxy+"/"+route+"/plain", c.body, nil)
				Expect(resp.StatusCode).To(Equal(200), body)
				Expect(resp.Header.Get("X-Upstream")).To(Equal("kept"))
				Expect(own(resp.Header)).To(BeEmpty(), "%s %s: head", c.method, route)
				Expect(own(resp.Trailer)).To(BeEmpty(), "%s %s: trailers", c.method, route)
				if c.method == "POST" {
					Expect(resp.Trailer.Get("X-Upstream-Trailer")).To(Equal("kept"), "net/http's path relays the other trailers")
				}
				if c.body != nil {
					c.body = strings.NewReader("x")
				}
			}
		}
		Expect(fastRequests(sc, "open")).To(BeNumerically(">=", 1), "the GET took the fast path")
		Expect(fastRequests(sc, "api")).To(BeNumerically(">=", 1), "the GET took the fast path")

		// A 401 the reauth rule matches: the proxy's reason, once, and not
		// the upstream's. The GET is sent again (fast path); the POST is
		// not replayable (net/http's path); the third request is within
		// the invalidation interval.
		for _, c := range []struct{ method, want string }{
			{"GET", "token-rejected-again"},
			{"POST", "token-rejected-rate-limited"},
		} {
			var body io.Reader
			if c.method == "POST" {
				body = strings.NewReader("x")
			}
			resp, _ := call(c.method, sc.proxy+"/api/rejects", body, nil)
			Expect(resp.StatusCode).To(Equal(401))
			Expect(resp.Header.Values("X-Credbroker-Error")).To(Equal([]string{c.want}), c.method)
			Expect(resp.Header.Values("X-Credbroker-Route")).To(BeEmpty())
		}
		resp, _ := call("GET", sc.proxy+"/open/rejects", nil, nil)
		Expect(resp.StatusCode).To(Equal(401))
		Expect(own(resp.Header)).To(BeEmpty(), "a route without a token passes the 401 on without any credbroker field")

		// The access log names the proxy's reason on both paths, and only
		// the proxy's.
		var lines []map[string]any
		Eventually(func() int {
			lines = nil
			b, _ := os.ReadFile(logFile)
			for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) == nil {
					lines = append(lines, m)
				}
			}
			return len(lines)
		}).WithTimeout(20 * time.Second).Should(Equal(7))
		var reasons []string
		for _, m := range lines {
			reasons = append(reasons, fmt.Sprintf("%s %s %v", m["method"], m["path"], m["reason"]))
		}
		Expect(reasons).To(ConsistOf(
			"GET /open/plain ", "GET /api/plain ", "POST /open/plain ", "POST /api/plain ",
			"GET /api/rejects token-rejected-again", "POST /api/rejects token-rejected-rate-limited",
			"GET /open/rejects ",
		))
	})
})
