package hardening_test

import (
	"fmt"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/mockauth"
)

// Behaviour the real Kyma connector showed (issue 19), through the binary
// against the conforming mock.
var _ = Describe("against a connector that behaves like Kyma's", func() {
	start := func(r *rig, app string) (*proc, string) {
		dir := filepath.Join(r.work, "connector-"+app)
		p := r.run(fmt.Sprintf(`
certificates:
  - {name: connector, dir: %[2]s, pairing_url_file: %[3]s, renew: true}
routes:
  - {name: events, upstream: %[1]s/events, auth: {type: mtls, certificate: connector}}
`, r.up.url, dir, r.pairingURLFile(app)))
		Eventually(p.ready).WithTimeout(60*time.Second).Should(Equal(200), func() string { return string(p.s.Err.Contents()) })
		return p, dir
	}

	It("proves a renewed certificate at once: the first management info call after a renewal presents the new certificate", func() {
		r := newRig(mockauth.Options{CertTTL: 9 * time.Second})
		p, _ := start(r, "heartbeat")
		first := fmt.Sprint(p.cert("connector")["sha256"])
		Expect(first).To(HaveLen(64))

		// Renewed at two thirds of 9 s.
		var renewed string
		Eventually(func() string {
			renewed = fmt.Sprint(p.cert("connector")["sha256"])
			return renewed
		}).WithTimeout(30*time.Second).ShouldNot(Equal(first), "renewed")

		// The heartbeat beats right after the renewal (not a minute later),
		// on a new connection that presents the new certificate: a gateway
		// checks client certificates only in the handshake.
		infoCalls := func() []string {
			var out []string
			for _, rec := range r.mock.Received() {
				if rec.Kind == "info" {
					out = append(out, rec.CertSHA256)
				}
			}
			return out
		}
		Eventually(infoCalls).WithTimeout(20*time.Second).Should(ContainElement(renewed), "a management info call presented the renewed certificate")
		calls := infoCalls()
		Expect(calls[0]).To(Equal(first), "the heartbeat at start presented the first certificate")
		for i, fp := range calls {
			if fp == renewed {
				Expect(calls[i:]).To(HaveEach(Not(Equal(first))), "no call after the first with the renewed certificate presented the old one")
				break
			}
		}
	})

	It("keeps a revoked certificate ready and serving until it expires, reporting needs_token loudly", func() {
		// Renewal at two thirds of 30 s leaves 10 s to look before expiry.
		r := newRig(mockauth.Options{CertTTL: 30 * time.Second})
		p, _ := start(r, "revoked")
		st := p.cert("connector")
		fp := fmt.Sprint(st["sha256"])
		Expect(r.mock.RevokeSHA256(fp)).To(Succeed())

		// The renewal (at two thirds) is refused for good.
		Eventually(func() any { return p.cert("connector")["revoked"] }).WithTimeout(30*time.Second).Should(Equal(true), func() string { return string(p.s.Err.Contents()) })
		st = p.cert("connector")
		Expect(st["needs_token"]).To(Equal(true))
		Expect(st["expired"]).To(Equal(false))
		code, body := p.get("/readyz")
		Expect(code).To(Equal(200), "still ready: the connector honours a revoked certificate until it expires: %s", body)
		Expect(string(body)).To(ContainSubstring(`warning: certificate "connector" can no longer be renewed; it stays in use until it expires`))
		Expect(p.metric(`credbroker_certificate_needs_token{certificate="connector"}`)).To(Equal(1.0))
		Expect(p.metric("credbroker_ready")).To(Equal(1.0))
		resp, err := client.Get(p.proxy + "/events/still-served")
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(200), "still served before expiry")
		Expect(string(p.s.Err.Contents())).To(ContainSubstring("renewal refused for good; the certificate stays in use until it expires"))

		// At expiry: unready, and the route refuses.
		Eventually(p.ready).WithTimeout(30 * time.Second).Should(Equal(503))
		code, body = p.get("/readyz")
		Expect(code).To(Equal(503))
		Expect(string(body)).To(ContainSubstring(`certificate "connector" expired`))
	})
})
