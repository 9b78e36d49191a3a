package fastforward_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/clock/testclock"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// year is the validity of the test's own certificates (upstream, guard,
// callers): longer than any simulated run.
const year = 365 * 24 * time.Hour

// rig is a test clock, the mock auth server on it (in this process, with
// ConnectorCARotation), a recording upstream on it and the input files of
// `credbroker run`.
type rig struct {
	clk      *testclock.Control
	mock     *mockauth.Server
	up       *upstream
	ca       *testpki.CA // signs the upstream's and the guard's server certificates
	in, work string
	vcapFile string
	caFile   string
}

func newRig(opts mockauth.Options) *rig {
	GinkgoHelper()
	dir := GinkgoT().TempDir()
	clk, err := testclock.Create(filepath.Join(dir, "clock"))
	Expect(err).NotTo(HaveOccurred())
	opts.Now = clk.Now
	opts.ConnectorCARotation = true
	m, err := mockauth.Start(opts)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(m.Close)
	r := &rig{clk: clk, mock: m, ca: testpki.NewCA(testpki.WithValidity(2 * year)), in: filepath.Join(dir, "in"), work: filepath.Join(dir, "work")}
	Expect(os.MkdirAll(r.in, 0o755)).To(Succeed())
	Expect(os.MkdirAll(r.work, 0o755)).To(Succeed())
	r.up = newUpstream(r)
	r.vcapFile, r.caFile = harness.WriteInputs(r.in, m, r.ca)
	return r
}

func (r *rig) input(name string, data []byte) string {
	GinkgoHelper()
	return harness.WriteFile(r.in, name, data)
}

// pairingURLFile mints a one-time token for app and writes its URL to a file.
func (r *rig) pairingURLFile(app string) string {
	GinkgoHelper()
	u, _, err := r.mock.NewPairingToken(app)
	Expect(err).NotTo(HaveOccurred())
	return r.input("pairing-url-"+app, []byte(u+"\n"))
}

// seen is what the upstream saw of one request.
type seen struct {
	At      time.Time // the test clock when it arrived
	Path    string
	Token   string
	Exp     time.Time // the token's exp claim
	Cert    string    // SHA-256 of the client certificate
	Expired bool      // the token had expired by the test clock: refused with 401
	Epoch   string    // the request's X-Test-Epoch header (set by the spec's load)
}

// upstream is an HTTPS server for upstream.localhost on the test clock. It
// refuses a Bearer token whose exp has passed on the test clock (401
// invalid_token, as a resource server does) and, under /events/, a request
// without a client certificate from a CA the connector trusts now.
type upstream struct {
	url string
	mu  sync.Mutex
	got []seen
}

func newUpstream(r *rig) *upstream {
	GinkgoHelper()
	u := &upstream{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s := seen{At: r.clk.Now(), Path: req.URL.Path, Epoch: req.Header.Get("X-Test-Epoch")}
		if tok, ok := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer "); ok {
			s.Token, s.Exp = tok, tokenExp(tok)
			s.Expired = !s.At.Before(s.Exp)
		}
		if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
			sum := sha256.Sum256(req.TLS.PeerCertificates[0].Raw)
			s.Cert = hex.EncodeToString(sum[:])
		}
		u.mu.Lock()
		u.got = append(u.got, s)
		u.mu.Unlock()
		switch {
		case s.Expired:
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			http.Error(w, "token expired", http.StatusUnauthorized)
		case strings.HasPrefix(s.Path, "/events/") && s.Cert == "":
			http.Error(w, "client certificate required", http.StatusForbidden)
		default:
			_, _ = io.WriteString(w, "ok")
		}
	}))
	leaf := r.ca.Issue(testpki.WithDNSNames("upstream.localhost"), testpki.WithIPs("127.0.0.1"), testpki.ServerAuth(), testpki.WithValidity(year))
	base := testpki.ServerTLSConfig(leaf, nil)
	base.Time = r.clk.Now
	base.ClientAuth = tls.VerifyClientCertIfGiven
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: base.Certificates, Time: r.clk.Now,
		// The connector's trusted CAs change during a rotation.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := base.Clone()
			c.ClientCAs = x509.NewCertPool()
			c.ClientCAs.AppendCertsFromPEM(r.mock.ConnectorCAsPEM())
			return c, nil
		}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	DeferCleanup(srv.Close)
	u.url = "https://upstream.localhost:" + strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	return u
}

func tokenExp(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var c struct {
		Exp int64 `json:"exp"`
	}
	if json.Unmarshal(b, &c) != nil {
		return time.Time{}
	}
	return time.Unix(c.Exp, 0)
}

func (u *upstream) all() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.got...)
}

// distinct returns the distinct values of f over the requests under prefix,
// in order of first use.
func (u *upstream) distinct(prefix string, f func(seen) string) []string {
	var out []string
	had := map[string]bool{}
	for _, s := range u.all() {
		if v := f(s); v != "" && strings.HasPrefix(s.Path, prefix) && !had[v] {
			had[v] = true
			out = append(out, v)
		}
	}
	return out
}

// lastExp returns the expiry of the token of the latest request under
// prefix.
func (u *upstream) lastExp(prefix string) time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i := len(u.got) - 1; i >= 0; i-- {
		if strings.HasPrefix(u.got[i].Path, prefix) && u.got[i].Token != "" {
			return u.got[i].Exp
		}
	}
	return time.Time{}
}

func (u *upstream) expired() int {
	n := 0
	for _, s := range u.all() {
		if s.Expired {
			n++
		}
	}
	return n
}

// proc is a running `credbroker run` on the rig's test clock.
type proc struct {
	s     *gexec.Session
	proxy string
	admin string
}

// run starts `credbroker run` with config on the test clock and waits
// until it is ready.
func (r *rig) run(config string, env harness.Env) *proc {
	GinkgoHelper()
	return r.runWith(func() string { return config }, env)
}

// runWith is run for a config with ports of its own
// (harness.StartSidecarWith): config picks them, again on a retry.
func (r *rig) runWith(config func() string, env harness.Env) *proc {
	GinkgoHelper()
	all := harness.Env{testclock.Env: r.clk.Path()}
	for k, v := range env {
		all[k] = v
	}
	var p *proc
	sc := harness.StartSidecarWith(bin, harness.SidecarOptions{Dir: r.in, CAFile: r.caFile, VCAPFile: r.vcapFile, Env: all,
		AfterExit: func(sc *harness.Sidecar) { expectNoCrash(sc.Session.Out.Contents(), sc.Session.Err.Contents()) }}, config)
	p = &proc{s: sc.Session, proxy: sc.Proxy, admin: sc.Admin}
	Eventually(p.ready).WithTimeout(90*time.Second).Should(Equal(200), func() string { return string(p.s.Err.Contents()) })
	return p
}

var client = harness.Client

func (p *proc) get(path string) (int, []byte) { return harness.Get(p.admin + path) }

func (p *proc) ready() int { c, _ := p.get("/readyz"); return c }

// metric returns the value of the first sample whose name and labels
// start with prefix, or -1 (harness.Metric).
func (p *proc) metric(prefix string) float64 { return harness.Metric(p.admin, prefix) }

// rssKiB reads the process's resident memory from /proc.
func rssKiB(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return -1
}

// load is harness.Load: requests to urls from workers goroutines, one
// after another, until halted; do makes one request (nil: GET through
// client).
type load struct{ *harness.Load }

func startLoad(urls []string, workers int, do func(url string) (*http.Response, error)) *load {
	if do == nil {
		do = client.Get
	}
	return &load{harness.StartLoad(urls, harness.LoadOptions{Workers: workers, Do: do})}
}

// expectSteady waits until the load made n more successful requests: the
// sidecar keeps serving at the current point of the simulated time.
func (l *load) expectSteady(n int64) {
	GinkgoHelper()
	from := l.OK.Load()
	Eventually(l.OK.Load).WithTimeout(60*time.Second).Should(BeNumerically(">=", from+n), func() string { return l.Failures() })
}
