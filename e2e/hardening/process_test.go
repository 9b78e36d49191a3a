package hardening_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/certwatch"
	"github.com/credbroker/credbroker/mockauth"
)

var _ = Describe("process faults", func() {
	It("SIGKILL at random moments around certificate renewals leaves a matching pair on disk, and the next start uses it", func() {
		// ECDSA keys: an RSA key generated under the race detector on a busy
		// machine can take long enough that every kill lands before a
		// renewal finished and the 9 s certificate on disk runs out.
		r := newRig(mockauth.Options{CertTTL: 9 * time.Second, ECDSAConnectorCA: true})
		dir := filepath.Join(r.work, "connector")
		config := fmt.Sprintf(`
certificates:
  - {name: connector, dir: %s, pairing_url_file: %s, renew: true, key_type: ecdsa-p256}
routes:
  - {name: events, upstream: %s/events, auth: {type: mtls, certificate: connector}}
`, dir, r.pairingURLFile("killed"), r.up.url)
		iterations := scale(3, 25)
		for i := range iterations {
			By(fmt.Sprintf("iteration %d", i))
			p := r.start(config)
			Eventually(p.ready).WithTimeout(60*time.Second).Should(Equal(200), func() string { return string(p.s.Err.Contents()) })
			resp, err := client.Get(p.proxy + "/events/alive")
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(200))
			// Kill somewhere from just before the next renewal to a little
			// after it: the CSR, the new key, the write, the swap.
			next := statusTime(p.cert("connector"), "next_renewal")
			at := next.Add(time.Duration(rand.Int64N(int64(400*time.Millisecond))) - 100*time.Millisecond)
			Eventually(func() bool { return time.Now().After(at) }).WithTimeout(30 * time.Second).WithPolling(2 * time.Millisecond).Should(BeTrue())
			p.s.Kill()
			Eventually(p.s).WithTimeout(20 * time.Second).Should(gexec.Exit())
			expectNoCrash(p.s.Out.Contents(), p.s.Err.Contents())

			onDisk, err := diskPair(dir)
			Expect(err).NotTo(HaveOccurred(), "iteration %d: the top-level tls.crt and tls.key match", i)
			pair, err := certwatch.LoadDir(context.Background(), dir)
			Expect(err).NotTo(HaveOccurred(), "iteration %d: certwatch loads the directory", i)
			Expect(fingerprint(pair.Leaf())).To(Equal(fingerprint(onDisk)))
			Expect(pair.Verify(time.Now())).To(Succeed(), "iteration %d: the pair on disk is still valid", i)
			GinkgoWriter.Printf("iteration %d: killed %v after the planned renewal, certificate on disk %s, renewals so far %d\n",
				i, time.Since(next).Round(time.Millisecond), fingerprint(onDisk), r.mock.Stats().Renewals)
		}
		// The last start uses what is on disk: it never paired again.
		p := r.start(config)
		Eventually(p.ready).WithTimeout(60 * time.Second).Should(Equal(200))
		resp, err := client.Get(p.proxy + "/events/after-kills")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(200))
		Expect(r.mock.Stats().PairingInfoRequests).To(Equal(1), "every restart used the pair on disk (pairing again would need a new one-time token)")
		// The kills may all have landed before a renewal finished; the
		// process started from the surviving pair renews it in turn.
		Eventually(func() int { return r.mock.Stats().Renewals }).WithTimeout(30*time.Second).Should(BeNumerically(">=", 1), "the pair on disk is renewed")
		p.scan(true)
	})

	It("SIGTERM drains in-flight requests (a slow upstream, an upload still being sent) and exits 0", func() {
		r := newRig(mockauth.Options{})
		release := make(chan struct{})
		r.up.setHold(func(req *http.Request) {
			if strings.Contains(req.URL.Path, "/slow/") {
				<-release
			}
		})
		p := r.run(fmt.Sprintf(`drain_timeout: 30s
certificates:
  - {name: connector, dir: %[2]s, pairing_url_file: %[3]s}
routes:
  - {name: orders, upstream: %[1]s/orders, auth: {type: bearer, binding: xsuaa-secret}}
  - {name: events, upstream: %[1]s/events, auth: {type: mtls, certificate: connector}}
`, r.up.url, filepath.Join(r.work, "connector"), r.pairingURLFile("drained")))
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(200))

		type result struct {
			code int
			err  error
		}
		results := make(chan result, 8)
		do := func(req *http.Request) {
			defer GinkgoRecover()
			resp, err := client.Do(req)
			if err != nil {
				results <- result{err: err}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			results <- result{code: resp.StatusCode}
		}
		for _, path := range []string{"/orders/slow/1", "/orders/slow/2", "/events/slow/3", "/events/slow/4"} {
			req, err := http.NewRequest("GET", p.proxy+path, nil)
			Expect(err).NotTo(HaveOccurred())
			go do(req)
		}
		// An upload whose body is still being written when SIGTERM arrives.
		pr, pw := io.Pipe()
		upload, err := http.NewRequest("POST", p.proxy+"/orders/upload", pr)
		Expect(err).NotTo(HaveOccurred())
		go do(upload)
		_, err = io.WriteString(pw, "first half,")
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() int { return len(r.up.all()) }).WithTimeout(30 * time.Second).Should(BeNumerically(">=", 4))

		p.s.Signal(syscall.SIGTERM)
		Consistently(p.s).WithTimeout(time.Second).ShouldNot(gexec.Exit(), "in-flight requests hold the exit")
		_, err = io.WriteString(pw, "second half")
		Expect(err).NotTo(HaveOccurred())
		Expect(pw.Close()).To(Succeed())
		close(release)
		for range 5 {
			var res result
			Eventually(results).WithTimeout(30 * time.Second).Should(Receive(&res))
			Expect(res.err).NotTo(HaveOccurred())
			Expect(res.code).To(Equal(200))
		}
		Eventually(p.s).WithTimeout(30 * time.Second).Should(gexec.Exit(0))
		var body string
		for _, g := range r.up.all() {
			if g.Path == "/orders/upload" {
				body = g.Body
			}
		}
		Expect(body).To(Equal("first half,second half"), "the upload arrived whole")
	})
})
