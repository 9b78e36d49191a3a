package hardening_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

// jwtClaims decodes a JWT's payload without verifying it (the mock issued it).
func jwtClaims(tok string) map[string]any {
	GinkgoHelper()
	parts := strings.Split(tok, ".")
	Expect(parts).To(HaveLen(3), "not a JWT")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	Expect(err).NotTo(HaveOccurred())
	var c map[string]any
	Expect(json.Unmarshal(raw, &c)).To(Succeed())
	return c
}

func unixClaim(c map[string]any, name string) time.Time {
	GinkgoHelper()
	v, ok := c[name].(float64)
	Expect(ok).To(BeTrue(), "claim %s", name)
	return time.Unix(int64(v), 0)
}

// The token client's retry policy as `credbroker run` configures it (the
// tokenclient defaults): at most this many attempts per fetch, and a failed
// background refresh is tried again only after retryGap.
const (
	maxAttempts = 4
	retryGap    = 5 * time.Second
)

// Token lifetime of the fault specs: the token client serves a token until
// a third of its life is left (skew min(30s, life/3)) and refreshes it ahead
// once 2/3 of that served time has passed (minus up to 10 % jitter).
const faultTokenTTL = 30 * time.Second

var _ = Describe("auth server faults under steady proxy load", func() {
	type scenario struct {
		name   string
		fault  func(r *rig, iat time.Time) mockauth.Fault
		verify func(r *rig) // extra checks after the load, optional
	}
	// Every fault starts about a second after the first token was issued and
	// ends 15 s after it: the background refresh (12-13.3 s) meets it, the
	// cached token is still served until 20 s.
	outage := func(f mockauth.Fault) func(*rig, time.Time) mockauth.Fault {
		return func(_ *rig, iat time.Time) mockauth.Fault {
			f.Target = mockauth.TargetToken
			f.Duration = time.Until(iat.Add(15 * time.Second))
			return f
		}
	}
	// A token without expires_in: the next answer (the refresh) is a token
	// whose JWT says it expires 25 s after the first token was issued; it
	// must be taken at that exp (never a default lifetime past it).
	var minted string
	var mintedExp time.Time
	noExpiresIn := func(r *rig, iat time.Time) mockauth.Fault {
		claims, err := r.mock.Claims(r.mock.Info().Tenants[0].Subdomain)
		Expect(err).NotTo(HaveOccurred())
		mintedExp = iat.Add(25 * time.Second)
		claims["iat"], claims["exp"] = time.Now().Unix(), mintedExp.Unix()
		minted, err = r.mock.MintToken(claims)
		Expect(err).NotTo(HaveOccurred())
		r.secrets.Add("minted token without expires_in", minted)
		return mockauth.Fault{Target: mockauth.TargetToken, Count: 1,
			Body: `{"access_token":"` + minted + `","token_type":"bearer","scope":"uaa.resource"}`}
	}
	verifyNoExpiresIn := func(r *rig) {
		Expect(r.up.tokens("/orders/")).To(ContainElement(minted), "the token without expires_in was taken")
		for _, g := range r.up.all() {
			if g.Header.Get("Authorization") == "Bearer "+minted {
				Expect(g.Time).To(BeTemporally("<", mintedExp), "used after its JWT exp: a default lifetime won over exp")
			}
		}
	}
	scenarios := []scenario{
		{"down (503)", outage(mockauth.Fault{Status: 503}), nil},
		{"500", outage(mockauth.Fault{Status: 500}), nil},
		{"429 with Retry-After", outage(mockauth.Fault{Status: 429, RetryAfter: 3 * time.Second}), nil},
		{"slow", outage(mockauth.Fault{Latency: 3 * time.Second}), nil},
		{"connections dropped mid-response", outage(mockauth.Fault{Drop: true}), nil},
		{"invalid JSON", outage(mockauth.Fault{Body: `{"access_token": "abc`}), nil},
		{"a token without expires_in", noExpiresIn, verifyNoExpiresIn},
	}
	if soak() {
		scenarios = append(scenarios,
			scenario{"502 from a gateway with an HTML page", outage(mockauth.Fault{Status: 502, Body: "<html>bad gateway</html>"}), nil},
			scenario{"429 without Retry-After", outage(mockauth.Fault{Status: 429}), nil},
		)
	}

	It("serves the cached token while it is valid, bounds the token requests and recovers by itself", func() {
		type result struct {
			sc        scenario
			r         *rig
			p         *proc
			iat       time.Time
			fault     mockauth.Fault
			before    int // token requests before the fault
			l         *load
			faultEnds time.Time
		}
		var results []*result
		for _, sc := range scenarios {
			r := newRig(mockauth.Options{TokenTTL: faultTokenTTL})
			p := r.run(fmt.Sprintf("routes:\n  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret}}\n", r.up.url))
			results = append(results, &result{sc: sc, r: r, p: p})
		}
		// Start every rig's load, then put each fault in place relative to
		// its first token.
		for _, res := range results {
			Eventually(res.p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
			res.l = startLoad([]string{res.p.proxy + "/orders/a", res.p.proxy + "/orders/b"}, 2, 100*time.Millisecond, time.Duration(scale(33, 120))*time.Second)
			Eventually(func() []string { return res.r.up.tokens("/orders/") }).WithTimeout(20 * time.Second).ShouldNot(BeEmpty())
			res.iat = unixClaim(jwtClaims(res.r.up.tokens("/orders/")[0]), "iat")
			res.before = res.r.mock.Stats().TokenRequests
			res.fault = res.sc.fault(res.r, res.iat)
			if res.fault.Count == 0 {
				Expect(res.fault.Duration).To(BeNumerically(">", 5*time.Second), "the setup took too long to meet the refresh")
			}
			Expect(res.r.mock.AddFault(res.fault)).To(Succeed())
			res.faultEnds = time.Now().Add(res.fault.Duration)
		}
		for _, res := range results {
			<-res.l.Done() // each load ends by its own deadline
		}

		for _, res := range results {
			By(res.sc.name)
			st := res.r.mock.Stats()
			Expect(res.l.Failed.Load()).To(BeZero(), "%s: the app saw failures while the cached token was valid: %s", res.sc.name, res.l.Failures())
			Expect(res.l.OK.Load()).To(BeNumerically(">", 100), res.sc.name)
			Expect(st.FaultsApplied).To(BeNumerically(">", 0), "%s: the refresh met the fault", res.sc.name)
			// Bound: every fetch makes at most maxAttempts requests; while the
			// fault lasts a failed refresh is retried at most every retryGap,
			// and after it one refresh succeeds (and one more may start).
			during := 1 + int(math.Ceil(float64(res.fault.Duration)/float64(retryGap)))
			bound := res.before + maxAttempts*during + 2*maxAttempts
			Expect(st.TokenRequests).To(BeNumerically("<=", bound), "%s: %d token requests, bound %d: a retry storm", res.sc.name, st.TokenRequests, bound)
			// Recovery: a fresh token was issued after the fault and is in use.
			toks := res.r.up.tokens("/orders/")
			Expect(len(toks)).To(BeNumerically(">=", 2), "%s: the token was renewed after the fault", res.sc.name)
			Expect(unixClaim(jwtClaims(toks[len(toks)-1]), "iat")).To(BeTemporally(">=", res.faultEnds.Add(-time.Second).Truncate(time.Second)), res.sc.name)
			Expect(res.p.ready()).To(Equal(200), res.sc.name)
			Expect(res.p.metric(`credbroker_token_fetches_total{binding="xsuaa-secret",outcome="ok"}`)).To(BeNumerically(">=", 2), res.sc.name)
			if res.sc.verify != nil {
				res.sc.verify(res.r)
			}
			GinkgoWriter.Printf("%s: %d requests ok, %d token requests (bound %d), %d faults applied, %d tokens used\n",
				res.sc.name, res.l.OK.Load(), st.TokenRequests, bound, st.FaultsApplied, len(toks))
			res.p.scan(true)
		}
	})
})

var _ = Describe("an auth outage longer than the token's life", func() {
	It("answers 503 token-unavailable once the token is no longer served, without a retry storm, and recovers", func() {
		r := newRig(mockauth.Options{TokenTTL: 6 * time.Second})
		p := r.run(fmt.Sprintf("routes:\n  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret}}\n", r.up.url))
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
		outage := time.Duration(scale(8, 60)) * time.Second
		l := startLoad([]string{p.proxy + "/orders/a", p.proxy + "/orders/b"}, 8, 20*time.Millisecond, outage+8*time.Second)
		Eventually(func() []string { return r.up.tokens("/orders/") }).WithTimeout(20 * time.Second).ShouldNot(BeEmpty())
		before := r.mock.Stats().TokenRequests
		Expect(r.mock.AddFault(mockauth.Fault{Target: mockauth.TargetToken, Status: 503, Duration: outage})).To(Succeed())
		start := time.Now()
		Eventually(func() int64 { return l.Failed.Load() }).WithTimeout(outage).Should(BeNumerically(">", 0), "the token ran out during the outage")
		Eventually(func() bool { return time.Since(start) > outage }).WithTimeout(outage + 5*time.Second).Should(BeTrue())
		during := r.mock.Stats().TokenRequests - before
		<-l.Done()
		GinkgoWriter.Printf("outage %v: %d token requests during it, %d ok, %d failed: %s\n", outage, during, l.OK.Load(), l.Failed.Load(), l.Failures())
		for why := range l.Why() {
			Expect(why).To(ContainSubstring("503 token-unavailable"), "the only failure is the missing token")
		}
		// Without a valid token a failed fetch is replayed to callers for
		// retryGap: at most one fetch (maxAttempts requests) per gap, plus
		// the background refresh that failed before the token ran out.
		bound := maxAttempts * (2 + int(math.Ceil(float64(outage)/float64(retryGap))))
		Expect(during).To(BeNumerically("<=", bound), "a retry storm: %d token requests in %v (bound %d)", during, outage, bound)
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
		resp, err := client.Get(p.proxy + "/orders/after")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(200))
		p.scan(true)
	})
})
