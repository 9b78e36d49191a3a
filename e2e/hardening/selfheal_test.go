package hardening_test

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/mockauth"
)

// The outage serving rule (docs/reliability.md): once a refresh failed
// because the token service is unavailable, the cached token is served
// until its expiry minus the outage margin (5 s by default) instead of
// until its expiry minus the skew.
var _ = Describe("an auth outage longer than the refresh skew", func() {
	It("keeps serving the cached token past the skew cut-off until expiry minus the margin", func() {
		// A 30 s token: skew min(30s, life/3) = 10 s, so the old rule served
		// it until iat+20s; the outage rule serves it until iat+25s.
		r := newRig(mockauth.Options{TokenTTL: faultTokenTTL})
		p := r.run(fmt.Sprintf("routes:\n  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret}}\n", r.up.url))
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
		resp, err := client.Get(p.proxy + "/orders/first")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(200))
		first := r.up.tokens("/orders/")[0]
		iat := unixClaim(jwtClaims(first), "iat")
		oldCutoff := iat.Add(20 * time.Second)
		faultEnds := iat.Add(23 * time.Second)
		Expect(time.Until(faultEnds)).To(BeNumerically(">", 15*time.Second), "the setup took too long")
		Expect(r.mock.AddFault(mockauth.Fault{Target: mockauth.TargetToken, Status: 503, Duration: time.Until(faultEnds)})).To(Succeed())

		l := startLoad([]string{p.proxy + "/orders/a", p.proxy + "/orders/b"}, 2, 100*time.Millisecond, time.Until(iat.Add(27*time.Second)))
		<-l.Done()

		Expect(l.Failed.Load()).To(BeZero(), "the outage turned into failures while a usable token remained: %s", l.Failures())
		Expect(r.mock.Stats().FaultsApplied).To(BeNumerically(">", 0), "the refresh met the outage")
		// Requests after the old cut-off (and before the fault ended) still
		// carried the first token.
		past := 0
		for _, g := range r.up.all() {
			if g.Header.Get("Authorization") == "Bearer "+first && g.Time.After(oldCutoff.Add(500*time.Millisecond)) {
				past++
			}
		}
		Expect(past).To(BeNumerically(">", 0), "no request used the cached token past the skew cut-off")
		toks := r.up.tokens("/orders/")
		Expect(len(toks)).To(BeNumerically(">=", 2), "a fresh token after the outage")
		GinkgoWriter.Printf("%d ok, %d requests with the first token past the old cut-off, %d tokens\n", l.OK.Load(), past, len(toks))
		p.scan(true)
	})
})

// token_cache_dir: tokens still valid are saved and loaded at start, so a
// restart during an outage of the token service serves them.
var _ = Describe("a restart during an auth outage with token_cache_dir", func() {
	It("serves the saved token with zero failures and counts the snapshot load", func() {
		r := newRig(mockauth.Options{TokenTTL: 10 * time.Minute})
		root := filepath.Join(GinkgoT().TempDir(), "volume")
		Expect(os.Mkdir(root, 0o777)).To(Succeed())
		Expect(os.Chmod(root, 0o777)).To(Succeed()) // a Kubernetes volume root
		cfg := fmt.Sprintf("routes:\n  - {name: orders, upstream: %s/orders, auth: {type: bearer, binding: xsuaa-secret}}\n", r.up.url)

		p := r.run(cfg, "--token-cache-dir", root)
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))
		resp, err := client.Get(p.proxy + "/orders/first")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(200))
		first := r.up.tokens("/orders/")[0]

		sub := filepath.Join(root, "credbroker-tokens")
		var files []string
		Eventually(func() []string { files, _ = filepath.Glob(filepath.Join(sub, "*.json")); return files }).WithTimeout(10 * time.Second).Should(HaveLen(1))
		fi, err := os.Stat(sub)
		Expect(err).NotTo(HaveOccurred())
		Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o700)))
		fi, err = os.Stat(files[0])
		Expect(err).NotTo(HaveOccurred())
		Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)))
		data, err := os.ReadFile(files[0])
		Expect(err).NotTo(HaveOccurred())
		Expect(string(data)).NotTo(ContainSubstring(r.mock.ClientSecret(r.mock.Info().SecretClientID)), "a client secret on disk")
		Expect(string(data)).To(ContainSubstring(first), "the token in use was saved")

		p.s.Terminate()
		Eventually(p.s).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
		before := r.mock.Stats().TokenRequests
		Expect(r.mock.AddFault(mockauth.Fault{Target: mockauth.TargetToken, Status: 503, Duration: 5 * time.Minute})).To(Succeed())

		p = r.run(cfg, "--token-cache-dir", root)
		l := startLoad([]string{p.proxy + "/orders/a", p.proxy + "/orders/b"}, 2, 50*time.Millisecond, 3*time.Second)
		<-l.Done()
		Expect(l.Failed.Load()).To(BeZero(), "requests failed after the restart: %s", l.Failures())
		Expect(l.OK.Load()).To(BeNumerically(">", 10))
		for _, tok := range r.up.tokens("/orders/") {
			Expect(tok).To(Equal(first), "only the saved token can have been used")
		}
		Expect(p.metric(`credbroker_token_snapshot_loads_total{binding="xsuaa-secret",outcome="loaded"}`)).To(BeNumerically(">=", 1))
		Expect(r.mock.Stats().TokenRequests).To(BeNumerically(">", before), "a fresh token was asked for in the background")
		Expect(r.mock.Stats().FaultsApplied).To(BeNumerically(">", 0))
		p.scan(true)
	})
})
