package hardening_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// diskPair loads dir's tls.crt and tls.key and checks that they match.
// fingerprint is the SHA-256 of a certificate's DER, as /status and the
// connector identify certificates.
func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func diskPair(dir string) (*x509.Certificate, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, "tls.crt"))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "tls.key"))
	if err != nil {
		return nil, err
	}
	kp, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(kp.Certificate[0])
}

func statusTime(m map[string]any, key string) time.Time {
	GinkgoHelper()
	s, ok := m[key].(string)
	Expect(ok).To(BeTrue(), "%s in %v", key, m)
	t, err := time.Parse(time.RFC3339Nano, s)
	Expect(err).NotTo(HaveOccurred())
	return t
}

// firstUse returns when the upstream first saw the certificate with
// fingerprint fp (zero if never).
func firstUse(u *upstream, fp string) time.Time {
	for _, g := range u.all() {
		if g.Cert == fp {
			return g.Time
		}
	}
	return time.Time{}
}

// lastUse returns when the upstream last saw the certificate with
// fingerprint fp (zero if never).
func lastUse(u *upstream, fp string) time.Time {
	var t time.Time
	for _, g := range u.all() {
		if g.Cert == fp {
			t = g.Time
		}
	}
	return t
}

const faultCertTTL = 30 * time.Second

var _ = Describe("certificates under connector faults, rotation and a broken certificate directory", func() {
	It("keeps the old certificate in use, renews when the connector returns, rotates under load without a failed request, and reports expiry", func() {
		type rigCase struct {
			name string
			r    *rig
			p    *proc
			dir  string
			l    *load
			// set up after pairing, before the first renewal
			arm func(c *rigCase)
			// checks after the load
			check func(c *rigCase)
			// state the checks use
			cert0      string
			notAfter0  time.Time
			faultStart time.Time
			faultEnd   time.Time
			runFor     time.Duration
		}
		connectorFault := func(f mockauth.Fault) func(c *rigCase) {
			return func(c *rigCase) {
				next := statusTime(c.p.cert("connector"), "next_renewal")
				f.Duration = time.Until(next.Add(2500 * time.Millisecond))
				Expect(f.Duration).To(BeNumerically(">", 2*time.Second), "%s: the setup ran past the renewal", c.name)
				Expect(c.r.mock.AddFault(f)).To(Succeed())
				c.faultStart, c.faultEnd = time.Now(), time.Now().Add(f.Duration)
			}
		}
		// The old certificate served through the fault, the new one only
		// after the connector was back; nothing failed.
		renewedAfterFault := func(c *rigCase) {
			serials := c.r.up.certs("/events/")
			Expect(len(serials)).To(BeNumerically(">=", 2), "%s: renewed", c.name)
			Expect(lastUse(c.r.up, c.cert0)).To(BeTemporally(">", c.faultStart.Add(time.Second)), "%s: the old certificate stayed in use during the fault", c.name)
			for _, s := range serials {
				if s != c.cert0 {
					Expect(firstUse(c.r.up, s)).To(BeTemporally(">", c.faultEnd.Add(-time.Second)), "%s: a renewal only once the connector was back", c.name)
				}
			}
			Expect(c.r.mock.Stats().Renewals).To(BeNumerically(">=", 1))
			Expect(c.p.ready()).To(Equal(200))
		}
		// A directory that cannot be written: renewals live in memory, the
		// failure is reported, the original pair stays on disk and the app
		// never notices, past the original certificate's expiry.
		unwritable := func(c *rigCase) {
			Expect(c.r.mock.Stats().Renewals).To(BeNumerically(">=", 1), c.name)
			Expect(lastUse(c.r.up, c.cert0)).To(BeTemporally("<=", c.notAfter0))
			Expect(c.r.up.all()[len(c.r.up.all())-1].Time).To(BeTemporally(">", c.notAfter0), "%s: requests went on past the original expiry", c.name)
			onDisk, err := diskPair(c.dir)
			Expect(err).NotTo(HaveOccurred(), "%s: the pair on disk still matches", c.name)
			Expect(fingerprint(onDisk)).To(Equal(c.cert0))
			Expect(string(c.p.s.Err.Contents())).To(Or(ContainSubstring("persist"), ContainSubstring("could not be written")), "%s: the write failure is logged", c.name)
			// (a renewal clears last_error for an instant before its own
			// write fails again)
			Eventually(func() string { return fmt.Sprint(c.p.cert("connector")["last_error"]) }).WithTimeout(10*time.Second).
				Should(ContainSubstring("persist to "+c.dir), "%s: /status says why", c.name)
		}

		var cases []*rigCase
		add := func(name string, opts mockauth.Options, arm, check func(c *rigCase), runFor time.Duration) {
			cases = append(cases, &rigCase{name: name, arm: arm, check: check, runFor: runFor, r: newRig(opts)})
		}
		ttl := mockauth.Options{CertTTL: faultCertTTL}
		run := time.Duration(scale(36, 120)) * time.Second
		add("connector down", ttl, connectorFault(mockauth.Fault{Target: mockauth.TargetConnector, Status: 503}), renewedAfterFault, run)
		// A 401/403 on renewal is final (only a new one-time token helps): the
		// revoked case below covers it. A refusal with a server error is not.
		add("connector refusing the CSR (500)", ttl, connectorFault(mockauth.Fault{Target: mockauth.TargetCSR, Status: 500}), renewedAfterFault, run)
		add("connector dropping connections", ttl, connectorFault(mockauth.Fault{Target: mockauth.TargetConnector, Drop: true}), renewedAfterFault, run)
		add("connector slow", ttl, connectorFault(mockauth.Fault{Target: mockauth.TargetConnector, Latency: 4 * time.Second}), func(c *rigCase) {
			Expect(len(c.r.up.certs("/events/"))).To(BeNumerically(">=", 2), "renewed despite the latency")
			Expect(c.p.ready()).To(Equal(200))
		}, run)
		add("certificate revoked", ttl, func(c *rigCase) {
			Expect(c.r.mock.RevokeSHA256(c.cert0)).To(Succeed())
		}, func(c *rigCase) {
			// Renewal is refused for good: the certificate runs out, and
			// that is reported everywhere, never silent.
			Expect(c.r.up.certs("/events/")).To(ConsistOf(c.cert0), "no renewal with a revoked certificate")
			Expect(lastUse(c.r.up, c.cert0)).To(BeTemporally("<=", c.notAfter0.Add(time.Second)), "never used after its expiry")
			code, body := c.p.get("/readyz")
			Expect(code).To(Equal(503))
			Expect(string(body)).To(ContainSubstring(`certificate "connector" expired`))
			st := c.p.cert("connector")
			Expect(st["expired"]).To(BeTrue())
			Expect(st["needs_token"]).To(BeTrue())
			Expect(c.p.metric("credbroker_ready")).To(Equal(0.0))
			Expect(string(c.p.s.Err.Contents())).To(ContainSubstring("expired"))
			resp, err := client.Get(c.p.proxy + "/events/after-expiry")
			Expect(err).NotTo(HaveOccurred())
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(503))
			Expect(resp.Header.Get("X-Credbroker-Error")).To(Equal("certificate-expired"))
		}, run)
		add("read-only certificate directory (chattr +i)", ttl, func(c *rigCase) {
			if out, err := exec.Command("chattr", "+i", c.dir).CombinedOutput(); err != nil {
				skipOrFail("chattr +i is not available here: " + string(out))
			}
			DeferCleanup(func() { _ = exec.Command("chattr", "-i", c.dir).Run() })
		}, unwritable, run)
		add("full certificate directory (16 KiB tmpfs)", ttl, func(c *rigCase) {
			fill(c.dir)
		}, unwritable, run)

		// Rotation under load: connector certificates of 8 s and x509 binding
		// certificates of 15 s rotated every 6 s, tokens of 9 s fetched over
		// the mTLS cert host with the binding's certificate, requests through
		// an mTLS route that also carries that token.
		bca := testpki.NewCA()
		var bindingLeaves []*testpki.Leaf
		rotation := &rigCase{name: "rotation under load", runFor: run,
			r: newRig(mockauth.Options{CertTTL: 8 * time.Second, TokenTTL: 9 * time.Second, ClientCAs: bca.Pool()})}
		rotateBinding := func(c *rigCase) {
			leaf := bca.Issue(testpki.ClientAuth(), testpki.WithNotBeforeAfter(time.Now().Add(-time.Second), time.Now().Add(15*time.Second)))
			bindingLeaves = append(bindingLeaves, leaf)
			c.r.secrets.Add("rotated binding key", string(leaf.KeyPEM(testpki.PKCS8)))
			var doc map[string][]map[string]any
			Expect(json.Unmarshal(c.r.mock.VCAPServices(), &doc)).To(Succeed())
			for _, b := range doc["xsuaa"] {
				if b["name"] == mockauth.X509BindingName {
					creds := b["credentials"].(map[string]any)
					creds["certificate"], creds["key"] = string(leaf.CertPEM()), string(leaf.KeyPEM(testpki.PKCS8))
				}
			}
			data, err := json.Marshal(doc)
			Expect(err).NotTo(HaveOccurred())
			tmp := c.r.vcapFile + ".tmp"
			Expect(os.WriteFile(tmp, data, 0o600)).To(Succeed())
			Expect(os.Rename(tmp, c.r.vcapFile)).To(Succeed())
		}
		rotation.arm = func(c *rigCase) {}
		rotation.check = func(c *rigCase) {
			Expect(len(c.r.up.certs("/events/"))).To(BeNumerically(">=", 4), "the connector certificate was renewed several times")
			Expect(len(c.r.up.tokens("/events/"))).To(BeNumerically(">=", 3), "tokens were refreshed over the cert host")
			Expect(c.r.mock.Stats().TokenRequestsByHost).To(HaveKeyWithValue(mockauth.TargetCertToken, BeNumerically(">=", 3)), "over the mTLS cert host")
			Expect(len(bindingLeaves)).To(BeNumerically(">=", 4))
		}
		rotateBinding(rotation)
		cases = append(cases, rotation)

		// Start every process, then wait for each to be ready.
		for i, c := range cases {
			c.dir = filepath.Join(c.r.work, "connector")
			if strings.HasPrefix(c.name, "full") {
				Expect(os.MkdirAll(c.dir, 0o755)).To(Succeed())
				if err := syscall.Mount("tmpfs", c.dir, "tmpfs", 0, "size=16k"); err != nil {
					GinkgoWriter.Printf("cannot mount a tmpfs (%v): the full directory is not simulated\n", err)
					cases = append(cases[:i:i], cases[i+1:]...)
					continue
				}
				dir := c.dir
				DeferCleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
			}
			route := "{name: events, upstream: %[1]s/events, auth: {type: mtls, certificate: connector}}"
			if c == rotation {
				route = "{name: events, upstream: %[1]s/events, auth: {type: mtls, certificate: connector, binding: " + mockauth.X509BindingName + "}}"
			}
			c.p = c.r.start(fmt.Sprintf(`
certificates:
  - {name: connector, dir: %[2]s, pairing_url_file: %[3]s, renew: true}
routes:
  - `+route+"\n", c.r.up.url, c.dir, c.r.pairingURLFile("app-"+fmt.Sprint(i))))
		}
		for _, c := range cases {
			Eventually(c.p.ready).WithTimeout(60*time.Second).Should(Equal(200), func() string { return c.name + ": " + string(c.p.s.Err.Contents()) })
			st := c.p.cert("connector")
			c.cert0, c.notAfter0 = fmt.Sprint(st["sha256"]), statusTime(st, "not_after")
			c.arm(c)
			c.l = startLoad([]string{c.p.proxy + "/events/a", c.p.proxy + "/events/b"}, 2, 100*time.Millisecond, c.runFor)
		}
		// The binding certificate rotates while the load runs.
		rotations := time.NewTicker(6 * time.Second)
		defer rotations.Stop()
		for rotation.l.OK.Load()+rotation.l.Failed.Load() == 0 || !loadDone(rotation.l) {
			select {
			case <-rotations.C:
				if !loadDone(rotation.l) {
					rotateBinding(rotation)
				}
			case <-rotation.l.Done():
			}
		}
		for _, c := range cases {
			<-c.l.Done()
		}
		for _, c := range cases {
			By(c.name)
			if c.name == "certificate revoked" {
				// Only requests before the expiry must succeed.
				for why := range c.l.Why() {
					Expect(why).To(ContainSubstring("503 certificate-expired"), "only refusals after the expiry")
				}
				Expect(c.l.First()).To(BeTemporally(">=", c.notAfter0.Add(-2*time.Second)), "no failure while the certificate was valid")
			} else {
				Expect(c.l.Failed.Load()).To(BeZero(), "%s: failed requests: %s", c.name, c.l.Failures())
			}
			Expect(c.l.OK.Load()).To(BeNumerically(">", 100), c.name)
			c.check(c)
			GinkgoWriter.Printf("%s: %d ok, %d failed, %d serials, %d renewals\n", c.name, c.l.OK.Load(), c.l.Failed.Load(), len(c.r.up.certs("/events/")), c.r.mock.Stats().Renewals)
			c.p.scan(true)
		}
	})
})

// fill writes into dir until its file system is full.
func fill(dir string) {
	GinkgoHelper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	buf := make([]byte, 1024)
	for {
		if _, err := f.Write(buf); err != nil {
			return
		}
	}
}

// loadDone reports whether every worker of l has returned.
func loadDone(l *load) bool {
	select {
	case <-l.Done():
		return true
	default:
		return false
	}
}
