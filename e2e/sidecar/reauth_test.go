package sidecar_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

// A token the upstream rejects (docs/reliability.md): mockauth's resource
// server validates every token; the specs revoke the sidecar's token at
// the mock and watch what the app sees, how often the sidecar asks the
// token service, and what it counts.
var _ = Describe("a token the upstream rejects", func() {
	var (
		e  *env
		sc *sidecar
	)
	BeforeEach(func() {
		e = newEnv(mockauth.Options{ResourceServer: true})
		sc = e.startSidecar(fmt.Sprintf(`
routes:
  - {name: api, upstream: %s, auth: {type: bearer, binding: xsuaa-secret}}
`, e.mock.Info().ResourceURL))
		Eventually(func() int { c, _ := httpGet(sc.admin + "/readyz"); return c }).WithTimeout(30 * time.Second).Should(Equal(200))
		resp, body := call("GET", sc.proxy+"/api/warm-up", nil, nil)
		Expect(resp.StatusCode).To(Equal(200), body)
		Expect(e.mock.Stats().TokenRequests).To(Equal(1))
	})
	AfterEach(func() {
		out := string(sc.s.Out.Contents()) + string(sc.s.Err.Contents())
		Expect(out).NotTo(ContainSubstring("eyJhbGciOiJSUzI1NiIs"), "no access token in the log")
		Expect(out).NotTo(ContainSubstring("DATA RACE"), "the binary is built with -race")
	})
	tokenRequests := func() int { return e.mock.Stats().TokenRequests }
	resource := func() mockauth.ResourceStats { return e.mock.ResourceStats() }
	metric := func(name string, labels map[string]string) float64 {
		v, _ := value(scrape(sc.admin), name, labels)
		return v
	}
	drops := func() int {
		return strings.Count(string(sc.s.Err.Contents())+string(sc.s.Out.Contents()), "an upstream rejected the token; dropped it and fetching a new one")
	}
	// burst sends n concurrent requests and returns their status codes and
	// X-Credbroker-Error reasons.
	burst := func(n int, method, path string) (codes []int, reasons []string) {
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				<-start
				req, err := http.NewRequest(method, fmt.Sprintf("%s%s/%d", sc.proxy, path, i), nil)
				Expect(err).NotTo(HaveOccurred())
				resp, err := client.Do(req)
				Expect(err).NotTo(HaveOccurred())
				resp.Body.Close()
				mu.Lock()
				codes = append(codes, resp.StatusCode)
				reasons = append(reasons, resp.Header.Get("X-Credbroker-Error"))
				mu.Unlock()
			}()
		}
		close(start)
		wg.Wait()
		return codes, reasons
	}

	It("retries the GETs of the app transparently when the token is revoked while they flow", func() {
		stop := make(chan struct{})
		done := make(chan []int, 1)
		var made atomic.Int64
		go func() {
			var codes []int
			for i := 0; ; i++ {
				select {
				case <-stop:
					done <- codes
					return
				default:
				}
				code := 0 // a transport error
				if resp, err := client.Get(fmt.Sprintf("%s/api/steady/%d", sc.proxy, i)); err == nil {
					resp.Body.Close()
					code = resp.StatusCode
				}
				codes = append(codes, code)
				made.Add(1)
			}
		}()
		var once sync.Once
		halt := func() []int {
			var codes []int
			once.Do(func() { close(stop); codes = <-done })
			return codes
		}
		DeferCleanup(halt) // also when the spec fails half way
		Eventually(func() int { return resource().Accepted }).WithTimeout(30 * time.Second).Should(BeNumerically(">=", 5))
		Expect(e.mock.RevokeClientTokens(e.mock.Info().SecretClientID)).To(Succeed())
		Eventually(func() int { return resource().Rejected }).WithTimeout(30*time.Second).Should(BeNumerically(">=", 1), "the upstream refused the revoked token")
		after := made.Load()
		Eventually(made.Load).WithTimeout(30*time.Second).Should(BeNumerically(">=", after+5), "the app goes on")
		codes := halt()
		Expect(codes).NotTo(BeEmpty())
		Expect(codes).To(HaveEach(200), "zero failed requests for the app")
		Expect(resource().Rejected).To(Equal(1), "one request met the revoked token; later ones had the new one")
		Expect(tokenRequests()).To(Equal(2), "one new token")
		Expect(metric("credbroker_proxy_token_invalidations_total", map[string]string{"route": "api", "outcome": "dropped"})).To(Equal(1.0))
		Expect(metric("credbroker_proxy_token_retries_total", map[string]string{"route": "api", "outcome": "ok"})).To(Equal(1.0))
		Eventually(drops).Should(Equal(1), "one log line per invalidation")
		Consistently(drops, "300ms").Should(Equal(1))
		Expect(metric("credbroker_proxy_fast_path_requests_total", map[string]string{"route": "api"})).To(BeNumerically(">", 0), "the GETs took the fast path")
	})

	It("makes one token request for a burst of concurrent GETs that all met the revoked token", func() {
		Expect(e.mock.RevokeClientTokens(e.mock.Info().SecretClientID)).To(Succeed())
		codes, reasons := burst(40, "GET", "/api/burst")
		Expect(codes).To(HaveLen(40))
		Expect(codes).To(HaveEach(200), "zero failed requests: %v", reasons)
		Expect(tokenRequests()).To(Equal(2), "single flight: one new token for the whole burst")
		Expect(resource().Rejected).To(BeNumerically(">=", 1))
		// Every request that met the revoked token was sent once more.
		Expect(metric("credbroker_proxy_token_retries_total", map[string]string{"route": "api", "outcome": "ok"})).To(Equal(float64(resource().Rejected)))
		Expect(metric("credbroker_proxy_token_invalidations_total", map[string]string{"route": "api", "outcome": "dropped"})).To(Equal(1.0))
		Eventually(drops).Should(Equal(1))
		Consistently(drops, "300ms").Should(Equal(1))
	})

	It("does not send a POST with a body again, but the next request has a new token", func() {
		Expect(e.mock.RevokeClientTokens(e.mock.Info().SecretClientID)).To(Succeed())
		before := resource()
		resp, _ := call("POST", sc.proxy+"/api/orders", strings.NewReader(`{"item":1}`), map[string]string{"Content-Type": "application/json"})
		Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized), "a POST is not idempotent: the app decides")
		Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("token-rejected-not-replayable"))
		Expect(resp.Header.Get("WWW-Authenticate")).To(ContainSubstring(`error="invalid_token"`), "the upstream's answer as it was")
		Expect(resource().Requests).To(Equal(before.Requests+1), "sent once")
		Eventually(tokenRequests).Should(Equal(2), "the rejected token was dropped all the same (its fetch runs in the background)")

		resp, _ = call("GET", sc.proxy+"/api/after", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))
		Expect(resource().Rejected).To(Equal(before.Rejected+1), "the GET after it went out with the new token")
		Expect(metric("credbroker_proxy_token_retries_total", map[string]string{"route": "api", "outcome": "not_replayable"})).To(Equal(1.0))
	})

	It("re-authenticates on 401 invalid_token and never on 403", func() {
		Expect(e.mock.RevokeClientTokens(e.mock.Info().SecretClientID)).To(Succeed())
		resp, _ := call("GET", sc.proxy+"/api/revoked", nil, nil)
		Expect(resp.StatusCode).To(Equal(200))
		Expect(tokenRequests()).To(Equal(2))

		Expect(e.mock.SetResourceMode(mockauth.ResourceForbidden, "")).To(Succeed())
		codes, reasons := burst(20, "GET", "/api/forbidden")
		Expect(codes).To(HaveEach(http.StatusForbidden))
		Expect(reasons).To(HaveEach(BeEmpty()), "the upstream's 403 as it was")
		Expect(tokenRequests()).To(Equal(2), "a 403 never leads to a token request")
		Expect(metric("credbroker_proxy_token_invalidations_total", map[string]string{"route": "api"})).To(Equal(1.0), "the 401 only")
	})

	It("asks the token service at most once per token_invalidation_interval when the upstream refuses every token", func() {
		Expect(e.mock.SetResourceMode(mockauth.ResourceReject, "")).To(Succeed())
		began := time.Now()
		var reasons []string
		for range 30 {
			resp, _ := call("GET", sc.proxy+"/api/hostile", nil, nil)
			Expect(resp.StatusCode).To(Equal(http.StatusUnauthorized))
			reasons = append(reasons, resp.Header.Get("X-Credbroker-Error"))
		}
		_, more := burst(30, "GET", "/api/hostile-burst")
		reasons = append(reasons, more...)
		elapsed := time.Since(began)
		Expect(reasons[0]).To(Equal("token-rejected-again"), "the first 401 dropped the token; the new one was refused too")
		Expect(reasons).To(HaveEach(BeElementOf("token-rejected-again", "token-rejected-rate-limited")))
		// The default interval is 10 s per binding and tenant: the first
		// rejection may drop the token, then one more per interval passed.
		allowed := 1 + 1 + int(elapsed/(10*time.Second))
		Expect(tokenRequests()).To(BeNumerically(">=", 2), "the first rejection dropped the token")
		Expect(tokenRequests()).To(BeNumerically("<=", allowed), "bounded by the rate limit (%v elapsed)", elapsed)
		again := 0
		for _, r := range reasons {
			if r == "token-rejected-again" {
				again++
			}
		}
		Expect(again).To(Equal(tokenRequests()-1), "each drop sent its request once more; the limit kept the token for the others")
		Expect(metric("credbroker_proxy_token_invalidations_total", map[string]string{"route": "api", "outcome": "limited"})).To(BeNumerically(">=", 50))
		Eventually(drops).Should(Equal(tokenRequests()-1), "one warning per drop, none per refused drop")
		Consistently(drops, "300ms").Should(Equal(tokenRequests() - 1))
	})
})
