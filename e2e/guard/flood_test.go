package guard_test

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
	"github.com/credbroker/credbroker/oauth1"
)

// floodSoak and floodScale: the full-scale floods of make soak
// (harness.Soak, harness.Scale); the default run is sized for make test.
var (
	floodSoak  = harness.Soak
	floodScale = harness.Scale
)

// vmRSS reads the resident set size of a process from /proc (bytes).
func vmRSS(pid int) int64 {
	GinkgoHelper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	Expect(err).NotTo(HaveOccurred())
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	Expect(m).NotTo(BeNil(), "no VmRSS in /proc/%d/status", pid)
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// rssWatch samples a process's VmRSS until stopped and keeps the peak.
type rssWatch struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func watchRSS(pid int) *rssWatch {
	w := &rssWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer GinkgoRecover()
		defer close(w.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
				if m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(b); m != nil {
					kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
					if kb<<10 > w.peak.Load() {
						w.peak.Store(kb << 10)
					}
				}
			}
			select {
			case <-w.stop:
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *rssWatch) finish() int64 {
	close(w.stop)
	<-w.done
	return w.peak.Load()
}

// metricSum adds up the credbroker_inbound_requests_total series of /metrics
// whose labels contain every given label="value".
func metricSum(adminURL string, labels ...string) float64 {
	GinkgoHelper()
	resp, err := http.Get(adminURL + "/metrics")
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "credbroker_inbound_requests_total{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

var _ = Describe("the inbound guard under a flood (issue 15 items 2 and 3)", func() {
	var (
		srv      *mockauth.Server
		sc       *harness.Sidecar
		guardURL string
		apsKey   = "aps-flood"
		apsSec   string
		secrets  *harness.Secrets
	)

	// start runs a mock, an app and `credbroker run` with a plain-HTTP
	// inbound listener and the given inbound limits.
	start := func(limits string) {
		rig := newGuardRig()
		srv = rig.srv
		secrets = &harness.Secrets{}
		apsSec = secrets.Plant("oauth1 consumer secret")
		keyFile, secretFile := rig.write("key", []byte(apsKey)), rig.write("secret", []byte(apsSec))
		var inbound int
		cfg := func() string {
			inbound = harness.FreePort()
			guardURL = fmt.Sprintf("http://127.0.0.1:%d", inbound)
			return fmt.Sprintf(`
inbound:
  listen: 127.0.0.1:%d
  app: %s
  limits: {%s}
  rules:
    - {path: /api/, accept: [jwt], binding: %s}
    - {path: /aps/, accept: [oauth1], oauth1: {key_file: %s, secret_file: %s}}
`, inbound, rig.appURL, limits, mockauth.SecretBindingName, keyFile, secretFile)
		}
		opts := rig.sidecarOptions()
		opts.AfterExit = func(s *harness.Sidecar) {
			secrets.ExpectNotIn(s.Session.Out.Contents(), s.Session.Err.Contents())
		}
		sc = harness.StartSidecarWith(bin, opts, cfg)
		// Wait for this process's own listener (another process on the
		// machine could answer on a port that was free a moment ago).
		Eventually(func() string { return string(sc.Session.Out.Contents()) + string(sc.Session.Err.Contents()) }, 60*time.Second, 100*time.Millisecond).
			Should(ContainSubstring(fmt.Sprintf(`"inbound":"127.0.0.1:%d"`, inbound)), "the inbound listener did not come up")
	}

	// tenantToken fetches a client-credentials token of the secret binding
	// for a tenant (its subdomain as the first host label).
	tenantToken := func(subdomain string) string {
		GinkgoHelper()
		info := srv.Info()
		u := strings.Replace(info.URL, "://"+info.Tenants[0].Subdomain+".", "://"+subdomain+".", 1)
		return clientToken(srv.Client(), u+"/oauth/token", secretGrant(srv), secrets)
	}

	// client is a keep-alive client for the guard.
	client := func(conns int) *http.Client {
		return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns}}
	}
	bearer := func(c *http.Client, token string) (int, string) {
		req, _ := http.NewRequest("GET", guardURL+"/api/orders", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	It("keeps validating known tenants and admits a new subscriber while thousands of junk issuers arrive", func() {
		start("")
		info := srv.Info()
		c := client(32)
		known := []string{tenantToken(info.Tenants[0].Subdomain), tenantToken(info.Tenants[1].Subdomain)}
		for _, tok := range known {
			code, body := bearer(c, tok)
			Expect(code).To(Equal(200), body)
		}
		newcomer := tenantToken(info.Tenants[2].Subdomain)

		// Junk: RS256 with the real kid but no jku (the keys then come from
		// the issuer's host), the real token's claims (right audience, valid
		// exp) under an issuer host of its own, and a signature of random
		// bytes.
		parts := strings.Split(known[0], ".")
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		Expect(err).NotTo(HaveOccurred())
		rawHeader, err := base64.RawURLEncoding.DecodeString(parts[0])
		Expect(err).NotTo(HaveOccurred())
		var header map[string]any
		Expect(json.Unmarshal(rawHeader, &header)).To(Succeed())
		delete(header, "jku")
		hb, _ := json.Marshal(header)
		junkHeader := base64.RawURLEncoding.EncodeToString(hb)
		var claims map[string]any
		Expect(json.Unmarshal(payload, &claims)).To(Succeed())
		junk := func(i int64) string {
			c := make(map[string]any, len(claims))
			for k, v := range claims {
				c[k] = v
			}
			c["iss"] = fmt.Sprintf("https://junk%d.%s:%d/oauth/token", i, info.UAADomain, info.TokenPort)
			p, _ := json.Marshal(c)
			sig := make([]byte, 256)
			_, _ = rand.Read(sig)
			return junkHeader + "." + base64.RawURLEncoding.EncodeToString(p) + "." + base64.RawURLEncoding.EncodeToString(sig)
		}
		n := int64(floodScale(600, 10000))
		jwksBefore := srv.Stats().JWKSRequests
		rss := watchRSS(sc.Session.Command.Process.Pid)
		began := time.Now()

		// The flood runs until it has sent n junk tokens, each with an issuer
		// of its own, and the newcomer got in, so that the newcomer is tested
		// during the flood.
		var (
			next, sent, junkOK, junkOther atomic.Int64
			newcomerIn                    atomic.Bool
			wg                            sync.WaitGroup
			badMu                         sync.Mutex
			bad                           []string
		)
		workers := 16
		fc := client(workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= n && newcomerIn.Load() {
						return
					}
					code, _ := bearer(fc, junk(i))
					sent.Add(1)
					switch code {
					case 200:
						junkOK.Add(1)
					case 401, 503:
					default:
						junkOther.Add(1)
					}
				}
			}()
		}
		// The known tenants, throughout: every request must succeed.
		legit := 0
		legitDone := make(chan struct{})
		go func() {
			defer GinkgoRecover()
			defer close(legitDone)
			for i := 0; sent.Load() < n || !newcomerIn.Load(); i++ {
				code, body := bearer(c, known[i%2])
				legit++
				if code != 200 {
					badMu.Lock()
					bad = append(bad, fmt.Sprintf("%d %s", code, body))
					badMu.Unlock()
				}
			}
		}()
		Eventually(func() int64 { return sent.Load() }, 60*time.Second, 10*time.Millisecond).Should(BeNumerically(">=", 300),
			"the flood did not get going")
		// The new subscriber retries as a client would; it must get in
		// within seconds although the flood goes on.
		Eventually(func() int {
			code, _ := bearer(c, newcomer)
			return code
		}, 20*time.Second, 200*time.Millisecond).Should(Equal(200), "a new subscriber was locked out by the flood")
		newcomerIn.Store(true)
		Eventually(legitDone, 180*time.Second).Should(BeClosed())
		wg.Wait()
		elapsed := time.Since(began)
		peak := rss.finish()

		Expect(bad).To(BeEmpty(), "requests of known tenants failed during the flood")
		Expect(legit).To(BeNumerically(">", 0))
		Expect(junkOK.Load()).To(BeZero(), "a junk token was accepted")
		Expect(junkOther.Load()).To(BeZero(), "junk got an answer other than 401 or 503")
		// The known tenants still validate after the flood, and the newcomer too.
		for _, tok := range append(known, newcomer) {
			code, body := bearer(c, tok)
			Expect(code).To(Equal(200), body)
		}
		// Junk cannot make a key fetch per request: at most the burst plus
		// the rate over the flood's duration (defaults 40 and 20/s), and the
		// newcomer's.
		fetched := srv.Stats().JWKSRequests - jwksBefore
		Expect(float64(fetched)).To(BeNumerically("<=", 40+20*elapsed.Seconds()+5),
			"key fetches during a flood of %d junk tokens in %s", sent.Load(), elapsed)
		// Every refusal is counted with its reason.
		refused := metricSum(sc.Admin, `method="jwt"`, `outcome="refused"`)
		Expect(refused).To(BeNumerically(">=", float64(sent.Load())))
		Expect(metricSum(sc.Admin, `reason="key_fetch_limited"`) + metricSum(sc.Admin, `reason="bad_signature"`)).To(Equal(refused))
		// Memory stays bounded (race detector build: generous).
		Expect(peak).To(BeNumerically("<", 400<<20), "peak VmRSS during the flood")
		GinkgoWriter.Printf("jwks flood: %d junk requests, %d known-tenant requests, %d key fetches, peak VmRSS %d MiB, %s\n",
			sent.Load(), legit, fetched, peak>>20, elapsed)
	})

	// signedReq signs a request for the guard with the flood rule's consumer.
	signedReq := func(method, path, ctype, body string) *http.Request {
		GinkgoHelper()
		s, err := oauth1.NewSigner(apsKey, apsSec)
		Expect(err).NotTo(HaveOccurred())
		req, err := http.NewRequest(method, guardURL+path, strings.NewReader(body))
		Expect(err).NotTo(HaveOccurred())
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		Expect(s.Sign(req)).To(Succeed())
		return req
	}

	It("does not buffer slow oauth1 bodies beyond its limits, and signed callers keep getting through", func() {
		start("body_timeout: 3s, body_memory: 8388608")
		pid := sc.Session.Command.Process.Pid
		c := client(8)
		// Warm up: one signed request with a body, so the baseline includes
		// what serving costs anyway.
		resp, err := c.Do(signedReq("POST", "/aps/warm", "application/json", `{"warm":true}`))
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(200))
		baseline := vmRSS(pid)

		// The attack of the issue: connections that announce a 10 MiB body
		// and send all of it but the last byte, then wait. Three kinds of
		// Authorization: none worth the name, the known consumer key with a
		// forged signature (a JSON body: the signature is checked first),
		// and the same as a form body (the signature covers the form, so
		// that body is read — within max_body, body_memory and body_timeout).
		conns := floodScale(12, 40)
		hostport := strings.TrimPrefix(guardURL, "http://")
		fresh := func() string {
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			nonce := make([]byte, 8)
			_, _ = rand.Read(nonce)
			return fmt.Sprintf(`OAuth oauth_consumer_key="%s", oauth_signature_method="HMAC-SHA1", oauth_timestamp="%s", oauth_nonce="%x", oauth_version="1.0", oauth_signature="%s"`,
				apsKey, ts, nonce, oauth1.PercentEncode(base64.StdEncoding.EncodeToString(make([]byte, 20))))
		}
		type attackResult struct {
			kind   int
			status int // 0: no response before the connection ended
		}
		results := make(chan attackResult, conns)
		var attackers sync.WaitGroup
		rss := watchRSS(pid)
		for i := 0; i < conns; i++ {
			kind := i % 3
			attackers.Add(1)
			go func() {
				defer GinkgoRecover()
				defer attackers.Done()
				conn, err := net.Dial("tcp", hostport)
				Expect(err).NotTo(HaveOccurred())
				defer conn.Close()
				size := 10 << 20
				var auth, ctype string
				switch kind {
				case 0:
					auth, ctype = `OAuth oauth_consumer_key="x"`, "application/octet-stream"
				case 1:
					auth, ctype = fresh(), "application/json"
				case 2:
					auth, ctype, size = fresh(), "application/x-www-form-urlencoded", 1<<20
				}
				head := fmt.Sprintf("POST /aps/upload HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nAuthorization: %s\r\n\r\n",
					hostport, ctype, size, auth)
				if _, err := conn.Write([]byte(head)); err != nil {
					results <- attackResult{kind, 0}
					return
				}
				// Read the answer while sending: a guard that refuses early
				// answers and closes before the body is through.
				status := make(chan int, 1)
				go func() {
					_ = conn.SetReadDeadline(time.Now().Add(60 * time.Second))
					resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
					if err != nil {
						status <- 0
						return
					}
					resp.Body.Close()
					status <- resp.StatusCode
				}()
				// Send all but the last byte, then wait (write errors end
				// the sending: the guard closed the connection).
				chunk := []byte(strings.Repeat("a", 64<<10))
				for left := size - 1; left > 0; left -= len(chunk) {
					if left < len(chunk) {
						chunk = chunk[:left]
					}
					if _, err := conn.Write(chunk); err != nil {
						break
					}
				}
				results <- attackResult{kind, <-status}
			}()
		}
		// Wait until the guard has turned away the connections it refuses at
		// once, so the signed callers below run during the attack; memory
		// must stay bounded meanwhile (the old guard buffered every body).
		Eventually(func(g Gomega) {
			g.Expect(rss.peak.Load()-baseline).To(BeNumerically("<", 48<<20), "VmRSS grew from %d MiB to %d MiB", baseline>>20, rss.peak.Load()>>20)
			g.Expect(metricSum(sc.Admin, `method="oauth1"`, `outcome="refused"`)).To(BeNumerically(">=", float64(conns/3)))
		}, 60*time.Second, 50*time.Millisecond).Should(Succeed())
		// Signed callers during the attack: JSON bodies and GETs, every one
		// must succeed.
		legit := floodScale(30, 200)
		for i := 0; i < legit; i++ {
			var req *http.Request
			if i%2 == 0 {
				req = signedReq("POST", "/aps/orders", "application/json", fmt.Sprintf(`{"order":%d}`, i))
			} else {
				req = signedReq("GET", fmt.Sprintf("/aps/orders/%d", i), "", "")
			}
			resp, err := c.Do(req)
			Expect(err).NotTo(HaveOccurred())
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			Expect(resp.StatusCode).To(Equal(200), "signed request %d during the attack: %s", i, b)
		}
		done := make(chan struct{})
		go func() { attackers.Wait(); close(done) }()
		Eventually(done, 90*time.Second).Should(BeClosed(), "attack connections were held without an answer")
		peak := rss.finish()
		close(results)
		byKind := map[int][]int{}
		for r := range results {
			byKind[r.kind] = append(byKind[r.kind], r.status)
		}
		GinkgoWriter.Printf("slow-body attack: %d connections, VmRSS %d -> %d MiB, results %v\n", conns, baseline>>20, peak>>20, byKind)
		// No useful credential, or a forged signature on a JSON body:
		// refused before a body byte is read.
		for _, st := range byKind[0] {
			Expect(st).To(BeElementOf(401, 413), "junk Authorization")
		}
		for _, st := range byKind[1] {
			Expect(st).To(Equal(401), "forged signature, JSON body")
		}
		// Form bodies within max_body: read until body_timeout (408), or
		// refused at once when body_memory's unauthenticated half is taken (503).
		for _, st := range byKind[2] {
			Expect(st).To(BeElementOf(408, 503), "slow form body")
		}
		// The guard held at most body_memory for bodies; the rest is the race
		// detector's and the connections' overhead. The old guard buffered
		// every announced 10 MiB body.
		Expect(peak-baseline).To(BeNumerically("<", 48<<20), "VmRSS grew from %d MiB to %d MiB", baseline>>20, peak>>20)
		Expect(metricSum(sc.Admin, `reason="body_timeout"`) + metricSum(sc.Admin, `reason="body_memory"`)).To(BeNumerically(">=", float64(len(byKind[2]))))
		Expect(metricSum(sc.Admin, `method="oauth1"`, `outcome="accepted"`)).To(BeNumerically(">=", float64(legit+1)))
	})
})
