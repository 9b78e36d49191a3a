package sidecar_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

// Issue 15 item 9: the token API and bearer routes cannot make a binding
// fan out into a token request per scope set or tenant.
var _ = Describe("bounded token fan-out", func() {
	It("answers 429 token-key-limit beyond max_token_keys, makes no token request for it, and keeps serving the keys it has", func() {
		e := newEnv(mockauth.Options{})
		info := e.mock.Info()
		sc := e.startSidecar(fmt.Sprintf(`
max_token_keys: 4
token_api: {bindings: [xsuaa-secret]}
routes:
  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret, tenant_header: X-Tenant}}
`, e.up.url))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))

		// The keys the app really uses, cached before the flood.
		legit := func() {
			resp, _ := call("GET", sc.proxy+"/orders/a", nil, nil)
			Expect(resp.StatusCode).To(Equal(200), "the route's own key")
			resp, _ = call("GET", sc.proxy+"/orders/b", nil, map[string]string{"X-Tenant": info.Tenants[1].Subdomain})
			Expect(resp.StatusCode).To(Equal(200), "a subscriber seen before")
			code, body := httpGet(sc.proxy + "/.credbroker/v1/token?binding=xsuaa-secret&tenant=" + info.Tenants[1].Subdomain)
			Expect(code).To(Equal(200), body)
		}
		legit()
		before := e.mock.Stats().TokenRequests

		const flood = 300
		var ok, limited, other atomic.Int64
		var wg sync.WaitGroup
		next := make(chan int)
		for range 8 {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				for i := range next {
					var resp *http.Response
					var err error
					if i%2 == 0 {
						resp, err = client.Get(fmt.Sprintf("%s/.credbroker/v1/token?binding=xsuaa-secret&scope=junk%d", sc.proxy, i))
					} else {
						req, _ := http.NewRequest("GET", sc.proxy+"/orders/x", nil)
						req.Header.Set("X-Tenant", fmt.Sprintf("junk%d", i))
						resp, err = client.Do(req)
					}
					if err != nil {
						other.Add(1)
						continue
					}
					resp.Body.Close()
					switch {
					case resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("X-Credbroker-Error") == "token-key-limit":
						limited.Add(1)
					case resp.StatusCode == 200:
						ok.Add(1)
					default:
						other.Add(1) // a junk tenant the mock refuses: 503, but it took a slot
					}
				}
			}()
		}
		for i := range flood {
			next <- i
		}
		close(next)
		wg.Wait()

		fetched := e.mock.Stats().TokenRequests - before
		Expect(fetched).To(BeNumerically("<=", 4), "at most max_token_keys token requests for the whole flood")
		Expect(limited.Load()).To(BeNumerically(">=", flood-4), "everything beyond the bound got 429 token-key-limit")
		legit() // keys cached before the flood keep working
		Expect(e.mock.Stats().TokenRequests-before).To(Equal(fetched), "and come from the cache")

		metrics := string(sc.get("/metrics"))
		Expect(metrics).To(MatchRegexp(`credbroker_token_key_limit_total\{binding="xsuaa-secret",via="token_api"\} \d+`))
		Expect(metrics).To(MatchRegexp(`credbroker_token_key_limit_total\{binding="xsuaa-secret",via="route"\} \d+`))
		Expect(metrics).NotTo(ContainSubstring("junk"), "no caller-chosen value becomes a label")
	})
})

// Issue 15 item 10: run pairs into a directory it creates 0700.
var _ = Describe("certificate directories", func() {
	It("creates a missing pairing directory 0700 and keeps the generations private", func() {
		e := newEnv(mockauth.Options{})
		dir := filepath.Join(e.dir, "run", "connector")
		sc := e.startSidecar(fmt.Sprintf(`
certificates:
  - {name: connector, dir: %s, pairing_url_file: %s, renew: true}
routes:
  - {name: events, upstream: %s/events, auth: {type: mtls, certificate: connector}}
`, dir, e.pairingURLFile("app-dir"), e.up.url))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))
		for _, p := range []string{dir, filepath.Join(dir, "..data")} {
			fi, err := os.Stat(p)
			Expect(err).NotTo(HaveOccurred())
			Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o700)), p)
		}
		resp, _ := call("GET", sc.proxy+"/events/x", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))
		Expect(strings.HasPrefix(e.up.last("/events/x").ClientCN, "app-dir")).To(BeTrue())
	})
})
