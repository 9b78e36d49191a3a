package persist_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/kubesecret/fakeapi"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

const (
	namespace  = "apps"
	secretName = "credbroker-identity"
)

// env is one mock connector, a fake API server with its service-account
// directory, an upstream that records the client certificate of every
// request, and the planted secrets of one spec.
type env struct {
	mock     *mockauth.Server
	api      *fakeapi.Server
	dir      string
	saDir    string
	vcapFile string
	caFile   string
	upURL    string
	secrets  *harness.Secrets

	mu  sync.Mutex
	got map[string][]string // path prefix ("a", "b") -> client certificate fingerprints seen
}

func newEnv(certTTL time.Duration) *env {
	GinkgoHelper()
	m, err := mockauth.Start(mockauth.Options{CertTTL: certTTL})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(m.Close)
	e := &env{mock: m, dir: GinkgoT().TempDir(), secrets: &harness.Secrets{}, got: map[string][]string{}}

	ca := testpki.NewCA()
	// The fake API server, with the pod's service-account directory.
	token := e.secrets.Plant("service account token")
	apiCert := ca.Issue(testpki.WithIPs("127.0.0.1"), testpki.ServerAuth())
	e.api = fakeapi.Start(testpki.ServerTLSConfig(apiCert, nil), token)
	DeferCleanup(e.api.Close)
	e.saDir = filepath.Join(e.dir, "serviceaccount")
	Expect(os.MkdirAll(e.saDir, 0o700)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(e.saDir, "token"), []byte(token), 0o600)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(e.saDir, "ca.crt"), ca.CertPEM(), 0o600)).To(Succeed())
	Expect(os.WriteFile(filepath.Join(e.saDir, "namespace"), []byte(namespace+"\n"), 0o600)).To(Succeed())
	e.api.Put(namespace, secretName, nil) // the chart pre-creates it empty

	// The upstream: verifies the connector's client certificates and
	// remembers whose was presented under which path.
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "no client certificate", http.StatusUnauthorized)
			return
		}
		sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
		who, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/events/"), "/")
		e.mu.Lock()
		e.got[who] = append(e.got[who], hex.EncodeToString(sum[:]))
		e.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(m.ConnectorCAPEM())
	up.TLS = testpki.ServerTLSConfig(ca.Issue(testpki.WithDNSNames("upstream.localhost"), testpki.WithIPs("127.0.0.1"), testpki.ServerAuth()), nil)
	up.TLS.ClientAuth = tls.RequireAndVerifyClientCert
	up.TLS.ClientCAs = pool
	up.Config.ErrorLog = log.New(io.Discard, "", 0)
	up.StartTLS()
	DeferCleanup(up.Close)
	e.upURL = up.URL

	e.vcapFile, e.caFile = harness.WriteInputs(e.dir, m, ca)
	return e
}

func (e *env) write(name string, data []byte) string {
	GinkgoHelper()
	return harness.WriteFile(e.dir, name, data)
}

// pairingURLFile mints a one-time token and writes its URL to a file.
func (e *env) pairingURLFile(app string) string {
	GinkgoHelper()
	return harness.PairingURLFile(e.mock, e.secrets, e.dir, app)
}

// seen returns the fingerprints the upstream saw under /events/<who>/.
func (e *env) seen(who string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.got[who]...)
}

func (e *env) lastSeen(who string) string {
	s := e.seen(who)
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// secretSHA256 is the fingerprint of the leaf certificate in the Secret
// ("" when it holds none); it also plants the key as a secret.
func (e *env) secretSHA256() string {
	data, _ := e.api.Data(namespace, secretName)
	if len(data["tls.key"]) > 0 {
		e.secrets.Add("private key in the Secret", string(data["tls.key"]))
	}
	b, _ := pem.Decode(data["tls.crt"])
	if b == nil {
		return ""
	}
	sum := sha256.Sum256(b.Bytes)
	return hex.EncodeToString(sum[:])
}

// replica is one `credbroker run` process with its own (emptyDir) state
// directory.
type replica struct {
	sc  *harness.Sidecar
	dir string
}

// start runs a replica with a fresh certificate directory; pairingFile is
// the pairing_url_file (the same for every replica, as the chart mounts it).
func (e *env) start(name, pairingFile string, persist bool) *replica {
	GinkgoHelper()
	dir := filepath.Join(e.dir, name, "connector")
	p := ""
	if persist {
		p = fmt.Sprintf(", persist: {kubernetes_secret: {name: %s, poll_interval: 1s, request_timeout: 2s, lock_duration: 90s, start_timeout: 20s}}", secretName)
	}
	host, port := e.api.HostPort()
	var args []string
	if persist {
		args = []string{"--service-account-dir", e.saDir}
	}
	sc := harness.StartSidecar(bin, harness.SidecarOptions{
		Dir: e.dir, CAFile: e.caFile, VCAPFile: e.vcapFile,
		Args: args,
		Env:  harness.Env{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port},
		AfterExit: func(s *harness.Sidecar) {
			e.secretSHA256() // plants the Secret's key
			e.secrets.ExpectNotIn(s.Session.Out.Contents(), s.Session.Err.Contents())
		},
	}, fmt.Sprintf(`
certificates:
  - {name: connector, dir: %s, pairing_url_file: %s, renew: true%s}
routes:
  - {name: events, upstream: %s/events, auth: {type: mtls, certificate: connector}}
`, dir, pairingFile, p, e.upURL))
	return &replica{sc: sc, dir: dir}
}

func (r *replica) ready() {
	GinkgoHelper()
	Eventually(func() int { c, _ := get(r.sc.Admin + "/readyz"); return c }).WithTimeout(60*time.Second).Should(Equal(200),
		func() string { return string(r.sc.Session.Err.Contents()) })
}

// metric returns the value of the metric line that starts with prefix (0
// when there is none).
func (r *replica) metric(prefix string) float64 {
	return max(0, harness.Metric(r.sc.Admin, prefix))
}

func persistEvent(event string) string {
	return fmt.Sprintf(`credbroker_identity_persist_events_total{certificate="connector",event="%s"}`, event)
}

var client = harness.Client

func get(u string) (int, string) {
	c, b := harness.Get(u)
	return c, string(b)
}

// load sends requests through each replica until stop is closed and counts
// the failures (with their reasons).
type load struct {
	ok, failed atomic.Int64
	why        sync.Map
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(rs map[string]*replica) *load {
	l := &load{stop: make(chan struct{})}
	for who, r := range rs {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := client.Get(r.sc.Proxy + "/events/" + who + "/x")
				if err != nil {
					l.failed.Add(1)
					l.why.Store(err.Error(), true)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					l.failed.Add(1)
					l.why.Store(fmt.Sprintf("%d %s", resp.StatusCode, resp.Header.Get("X-Credbroker-Error")), true)
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

func (l *load) finish() {
	GinkgoHelper()
	close(l.stop)
	l.wg.Wait()
	var why []string
	l.why.Range(func(k, _ any) bool { why = append(why, k.(string)); return true })
	Expect(l.failed.Load()).To(BeZero(), "failed app requests: %v", why)
	Expect(l.ok.Load()).To(BeNumerically(">", 20))
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

var _ = Describe("a paired identity kept in a Kubernetes Secret", func() {
	It("lets a rescheduled pod with an empty directory serve mTLS from the Secret, without a new one-time token", func() {
		e := newEnv(0)
		pairing := e.pairingURLFile("restart")
		a := e.start("pod-a", pairing, true)
		a.ready()
		code, _ := get(a.sc.Proxy + "/events/a/x")
		Expect(code).To(Equal(200))
		first := e.lastSeen("a")
		Expect(first).To(MatchRegexp(hex64.String()))
		Eventually(e.secretSHA256).WithTimeout(20*time.Second).Should(Equal(first), "the pair reached the Secret")
		_, rv := e.api.Data(namespace, secretName)
		Expect(e.api.Labels(namespace, secretName)).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"), "an update keeps what it does not own; resourceVersion %s", rv)

		// The pod is rescheduled: the process ends, its emptyDir is gone,
		// and the one-time token in the mounted file is used up.
		a.sc.Session.Terminate()
		Eventually(a.sc.Session).WithTimeout(40 * time.Second).Should(gexec.Exit())
		Expect(os.RemoveAll(filepath.Dir(a.dir))).To(Succeed())
		signed := e.mock.Stats().CSRSigned

		b := e.start("pod-b", pairing, true)
		b.ready()
		code, _ = get(b.sc.Proxy + "/events/b/x")
		Expect(code).To(Equal(200))
		Expect(e.lastSeen("b")).To(Equal(first), "the same identity, from the Secret")
		Expect(e.mock.Stats().CSRSigned).To(Equal(signed), "no pairing: the token was not needed")
		Expect(b.metric(persistEvent("loaded"))).To(Equal(1.0))
		Expect(string(b.sc.Session.Err.Contents())).To(ContainSubstring("paired identity loaded from the Kubernetes Secret"))
	})

	It("waits for an API server that is down when a rescheduled pod starts, then loads the identity", func() {
		e := newEnv(0)
		pairing := e.pairingURLFile("restart-outage")
		a := e.start("pod-a", pairing, true)
		a.ready()
		Eventually(e.secretSHA256).WithTimeout(20 * time.Second).ShouldNot(BeEmpty())
		first := e.secretSHA256()
		a.sc.Session.Terminate()
		Eventually(a.sc.Session).WithTimeout(40 * time.Second).Should(gexec.Exit())

		e.api.SetDown(true)
		b := e.start("pod-b", pairing, true)
		Eventually(func() int { return e.api.Counts().Refused }).WithTimeout(20*time.Second).Should(BeNumerically(">=", 2), "retried with backoff")
		Consistently(func() int { c, _ := get(b.sc.Admin + "/readyz"); return c }).WithTimeout(time.Second).ShouldNot(Equal(200))
		e.api.SetDown(false)
		b.ready()
		code, _ := get(b.sc.Proxy + "/events/b/x")
		Expect(code).To(Equal(200))
		Expect(e.lastSeen("b")).To(Equal(first))
		Expect(b.metric(persistEvent("error"))).To(BeNumerically(">=", 2))
		Expect(b.metric(persistEvent("loaded"))).To(Equal(1.0))
	})

	It("without persistence, the same rescheduled pod cannot start: its one-time token is used up", func() {
		e := newEnv(0)
		pairing := e.pairingURLFile("restart-baseline")
		a := e.start("pod-a", pairing, false)
		a.ready()
		a.sc.Session.Terminate()
		Eventually(a.sc.Session).WithTimeout(40 * time.Second).Should(gexec.Exit())
		b := e.start("pod-b", pairing, false)
		Eventually(b.sc.Session).WithTimeout(60*time.Second).Should(gexec.Exit(), "pairing with a used token fails the start")
		Expect(b.sc.Session.ExitCode()).NotTo(BeZero())
	})

	It("has two replicas that start at once with one one-time token share the identity one of them paired", func() {
		e := newEnv(0)
		pairing := e.pairingURLFile("together")
		signed := e.mock.Stats().CSRSigned
		a := e.start("pod-a", pairing, true)
		b := e.start("pod-b", pairing, true)
		a.ready()
		b.ready()
		for _, who := range []string{"a", "b"} {
			r := map[string]*replica{"a": a, "b": b}[who]
			code, _ := get(r.sc.Proxy + "/events/" + who + "/x")
			Expect(code).To(Equal(200))
		}
		Expect(e.lastSeen("a")).To(MatchRegexp(hex64.String()))
		Expect(e.lastSeen("b")).To(Equal(e.lastSeen("a")), "one identity")
		Expect(e.secretSHA256()).To(Equal(e.lastSeen("a")))
		Expect(e.mock.Stats().CSRSigned-signed).To(Equal(1), "the token was spent once")
	})

	It("has two replicas that renew at the same moment make one renewal at the connector and present the same new certificate", func() {
		e := newEnv(12 * time.Second)
		pairing := e.pairingURLFile("replicas")
		a := e.start("pod-a", pairing, true)
		a.ready()
		b := e.start("pod-b", pairing, true)
		b.ready()
		Eventually(e.secretSHA256).WithTimeout(20 * time.Second).ShouldNot(BeEmpty())
		first := e.secretSHA256()
		// Renewed certificates last long (one renewal in this spec), and a
		// renewal takes 3 s at the connector: both replicas' renewal
		// points (the same certificate: within the 5 % jitter) fall in it.
		e.mock.SetTTL(0, time.Hour)
		Expect(e.mock.AddFault(mockauth.Fault{Target: mockauth.TargetCSR, Latency: 3 * time.Second})).To(Succeed())
		renewals := e.mock.Stats().Renewals

		l := startLoad(map[string]*replica{"a": a, "b": b})
		Eventually(func() []string { return []string{e.lastSeen("a"), e.lastSeen("b")} }).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).
			Should(HaveExactElements(Not(BeElementOf(first, "")), Not(BeElementOf(first, ""))), "both replicas present a renewed certificate")
		Expect(e.lastSeen("a")).To(Equal(e.lastSeen("b")), "one shared identity")
		Expect(e.secretSHA256()).To(Equal(e.lastSeen("a")))
		Consistently(func() int { return e.mock.Stats().Renewals - renewals }).WithTimeout(3*time.Second).Should(Equal(1), "exactly one renewal at the connector")
		l.finish()
		waits := a.metric(persistEvent("lock_wait")) + b.metric(persistEvent("lock_wait")) + a.metric(persistEvent("conflict")) + b.metric(persistEvent("conflict"))
		adopted := a.metric(persistEvent("adopted")) + b.metric(persistEvent("adopted"))
		Expect(adopted).To(BeNumerically(">=", 1), "the replica that did not renew took the other's pair")
		GinkgoWriter.Printf("lock waits and conflicts: %v, adoptions: %v, API counts: %+v\n", waits, adopted, e.api.Counts())
	})

	It("costs the app no request when the API server is down during a renewal, and writes the pair once it is back", func() {
		e := newEnv(10 * time.Second)
		pairing := e.pairingURLFile("outage")
		a := e.start("pod-a", pairing, true)
		a.ready()
		Eventually(e.secretSHA256).WithTimeout(20 * time.Second).ShouldNot(BeEmpty())
		first := e.secretSHA256()
		e.mock.SetTTL(0, time.Hour)

		l := startLoad(map[string]*replica{"a": a})
		e.api.SetDown(true)
		// The renewal (at two thirds of 10 s) meets the outage: it is
		// retried with backoff, and counted.
		Eventually(func() float64 { return a.metric(persistEvent("error")) }).WithTimeout(30 * time.Second).Should(BeNumerically(">=", 2))
		Eventually(func() int { return e.api.Counts().Refused }).Should(BeNumerically(">=", 2))
		Expect(e.lastSeen("a")).To(Equal(first), "no replica presents a pair the Secret does not hold")
		e.api.SetDown(false)

		Eventually(func() string { return e.lastSeen("a") }).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).ShouldNot(Equal(first))
		Expect(e.secretSHA256()).To(Equal(e.lastSeen("a")), "the renewed pair is in the Secret")
		l.finish()
		Expect(a.metric(persistEvent("saved"))).To(BeNumerically(">=", 2))

		var st map[string]any
		_, body := get(a.sc.Admin + "/status")
		Expect(json.Unmarshal([]byte(body), &st)).To(Succeed())
	})
})
