package sidecar_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// Issue 15 item 8: credentials never travel in clear.
var _ = Describe("plain http", func() {
	It("refuses a route that adds a credential to an http:// upstream beyond loopback, and a binding whose token URL is plain http, with exit 2 naming the field", func() {
		e := newEnv(mockauth.Options{})
		// The secret binding with its url switched to plain http.
		var vcap map[string][]map[string]any
		Expect(json.Unmarshal(e.mock.VCAPServices(), &vcap)).To(Succeed())
		for _, b := range vcap["xsuaa"] {
			if b["name"] == "xsuaa-secret" {
				c := b["credentials"].(map[string]any)
				c["url"] = strings.Replace(c["url"].(string), "https://", "http://", 1)
				c["url"] = strings.Replace(c["url"].(string), ".localhost", ".example.com", 1)
			}
		}
		raw, err := json.Marshal(vcap)
		Expect(err).NotTo(HaveOccurred())
		plainVCAP := e.write("plain-vcap.json", raw)

		for _, tc := range []struct {
			name, vcap, config string
			want               []string
		}{
			{"bearer route to a remote http upstream", e.vcapFile,
				"routes:\n  - {name: orders, upstream: http://orders.example.com, auth: {type: bearer, binding: xsuaa-x509}}\n",
				[]string{`routes[0].upstream ("orders")`, "in clear", "allow_plain_http"}},
			{"oauth1 route to a remote http upstream", e.vcapFile,
				fmt.Sprintf("routes:\n  - {name: aps, upstream: http://10.11.12.13:8080, auth: {type: oauth1, key_file: %s, secret_file: %s}}\n", e.keyFile, e.secFile),
				[]string{`routes[0].upstream ("aps")`, "allow_plain_http"}},
			{"binding with an http token url", plainVCAP,
				"routes:\n  - {name: orders, upstream: https://orders.example.com, auth: {type: bearer, binding: xsuaa-secret}}\n",
				[]string{`binding "xsuaa-secret"`, `field "url"`, "in clear"}},
			{"binding with an http token url, used by the token API only", plainVCAP,
				"token_api: {bindings: ['*']}\n",
				[]string{`binding "xsuaa-secret"`, `field "url"`, "in clear"}},
		} {
			By(tc.name)
			cfg := e.write("plain.yaml", []byte(tc.config))
			s := harness.Start(bin, nil, "run", "--config", cfg, "--vcap-file", tc.vcap, "--ca-file", e.caFile,
				"--listen", fmt.Sprintf("127.0.0.1:%d", harness.FreePort()), "--admin-listen", fmt.Sprintf("127.0.0.1:%d", harness.FreePort()))
			DeferCleanup(func() { s.Kill() })
			Eventually(s).WithTimeout(30*time.Second).Should(gexec.Exit(2), tc.name)
			for _, w := range tc.want {
				Expect(string(s.Err.Contents())).To(ContainSubstring(w), tc.name)
			}
			e.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
		}
		Expect(e.mock.Stats().TokenRequests).To(BeZero(), "no token request was made")

		By("bindings reports the plain-http url as a problem")
		s := harness.Start(bin, nil, "bindings", "--json", "--vcap-file", plainVCAP)
		Eventually(s).WithTimeout(30 * time.Second).Should(gexec.Exit())
		var list []struct {
			Name     string   `json:"name"`
			Auth     string   `json:"auth"`
			Problems []string `json:"problems"`
		}
		Expect(json.Unmarshal(s.Out.Contents(), &list)).To(Succeed(), string(s.Out.Contents()))
		found := false
		for _, b := range list {
			if b.Name == "xsuaa-secret" {
				found = true
				Expect(b.Auth).To(Equal("none"))
				Expect(b.Problems).To(ContainElement(And(ContainSubstring(`"url"`), ContainSubstring("in clear"))))
			}
		}
		Expect(found).To(BeTrue())
		e.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())

		By("token exits 2 naming the binding and the field")
		s = harness.Start(bin, nil, "token", "--binding", "xsuaa-secret", "--vcap-file", plainVCAP, "--ca-file", e.caFile)
		Eventually(s).WithTimeout(30 * time.Second).Should(gexec.Exit(2))
		Expect(string(s.Err.Contents())).To(And(ContainSubstring(`binding "xsuaa-secret"`), ContainSubstring(`field "url"`)))
		e.secrets.ExpectNotIn(s.Out.Contents(), s.Err.Contents())
	})

	It("adds credentials to http:// upstreams on loopback and with allow_plain_http, and names every such route in the startup log", func() {
		e := newEnv(mockauth.Options{})
		var mu sync.Mutex
		var auths []string
		plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			auths = append(auths, r.Header.Get("Authorization"))
			mu.Unlock()
			if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
				e.secrets.Add("access token", tok)
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		DeferCleanup(plain.Close)
		port := plain.Listener.Addr().(*net.TCPAddr).Port
		sc := e.startSidecar(fmt.Sprintf(`
resolve: ["*.cluster.test=127.0.0.1"]
routes:
  - {name: local, upstream: "http://127.0.0.1:%[1]d", auth: {type: bearer, binding: xsuaa-secret}}
  - {name: incluster, upstream: "http://proxy.cluster.test:%[1]d", allow_plain_http: true, auth: {type: bearer, binding: xsuaa-secret}}
  - {name: secure, upstream: %[2]s, auth: {type: bearer, binding: xsuaa-secret}}
  - {name: open, upstream: "http://open.cluster.test:%[1]d", auth: {type: none}}
`, port, e.up.url))
		for _, p := range []string{"/local/a", "/incluster/a"} {
			resp, _ := call("GET", sc.proxy+p, nil, nil)
			Expect(resp.StatusCode).To(Equal(http.StatusNoContent), p)
		}
		mu.Lock()
		Expect(auths).To(HaveLen(2))
		Expect(auths).To(HaveEach(HavePrefix("Bearer ")))
		mu.Unlock()
		var logged []string
		for _, line := range strings.Split(string(sc.s.Err.Contents()), "\n") {
			if strings.Contains(line, "plain http") {
				var rec struct {
					Routes []string `json:"routes"`
				}
				Expect(json.Unmarshal([]byte(line), &rec)).To(Succeed(), line)
				logged = rec.Routes
			}
		}
		Expect(logged).To(ConsistOf("local", "incluster"), "the startup log names every route that sends a credential over plain http, and only those")
	})
})
