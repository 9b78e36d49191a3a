package hardening_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// rig is one mock auth server, one recording upstream, the input files
// credbroker reads and the planted secrets of a spec. Inputs live in
// dir/in; everything the binary writes lives in dir/work, which is scanned
// for secrets at the end (except private key files).
type rig struct {
	mock     *mockauth.Server
	up       *upstream
	dir      string
	in, work string
	vcapFile string
	caFile   string
	keyFile  string // OAuth 1.0a consumer key
	secFile  string // OAuth 1.0a consumer secret
	secrets  *harness.Secrets
}

const oauthConsumerKey = "hardening-consumer"

func newRig(opts mockauth.Options) *rig {
	GinkgoHelper()
	r := &rig{dir: GinkgoT().TempDir(), secrets: &harness.Secrets{}}
	r.mock = harness.StartMock(opts, r.secrets)
	r.in, r.work = filepath.Join(r.dir, "in"), filepath.Join(r.dir, "work")
	Expect(os.MkdirAll(r.in, 0o755)).To(Succeed())
	Expect(os.MkdirAll(r.work, 0o755)).To(Succeed())
	ca := testpki.NewCA()
	up := harness.StartUpstream(harness.UpstreamOptions{CA: ca, ClientCAPEM: r.mock.ConnectorCAPEM(), Secrets: r.secrets,
		Answer: func(w http.ResponseWriter, rc rec) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = io.WriteString(w, "ok "+rc.Path)
		}})
	r.up = &upstream{Upstream: up, url: up.URL, host: up.Host}
	r.vcapFile, r.caFile = harness.WriteInputs(r.in, r.mock, ca)
	r.keyFile = r.input("oauth1-key", []byte(oauthConsumerKey+"\n"))
	r.secFile = r.input("oauth1-secret", []byte(r.secrets.Plant("oauth1 consumer secret")+"\n"))
	return r
}

func (r *rig) input(name string, data []byte) string {
	GinkgoHelper()
	return harness.WriteFile(r.in, name, data)
}

// pairingURLFile mints a one-time token for app and writes its URL to a file.
func (r *rig) pairingURLFile(app string) string {
	GinkgoHelper()
	return harness.PairingURLFile(r.mock, r.secrets, r.in, app)
}

// rec is what the upstream saw of one request.
type rec = harness.Request

// upstream is the recording upstream (harness.Upstream) under the names
// the specs use.
type upstream struct {
	*harness.Upstream
	url, host string
}

func (u *upstream) setHold(f func(*http.Request)) { u.SetHold(f) }
func (u *upstream) all() []rec                    { return u.All() }
func (u *upstream) certs(prefix string) []string  { return u.Certs(prefix) }
func (u *upstream) tokens(prefix string) []string { return u.Tokens(prefix) }

// proc is a running `credbroker run`.
type proc struct {
	r       *rig
	s       *gexec.Session
	cfg     string
	proxy   string // http://127.0.0.1:PORT
	proxyHP string
	admin   string
}

// run writes config (listen, admin_listen and ca_file prepended) and starts
// `credbroker run` with the rig's bindings, JSON logs at debug level (the
// most there is to leak) and a 1 s poll interval. It waits for /healthz. When
// the spec ends it scans stdout, stderr, /metrics, /status and every file
// under the work dir but private keys for planted secrets, and stops the
// process.
func (r *rig) run(config string, args ...string) *proc {
	GinkgoHelper()
	p := r.start(config, args...)
	Eventually(func() int { c, _ := p.get("/healthz"); return c }).WithTimeout(60*time.Second).Should(Equal(200), func() string { return string(p.s.Err.Contents()) })
	return p
}

func (r *rig) start(config string, args ...string) *proc {
	GinkgoHelper()
	var p *proc
	sc := harness.StartSidecar(bin, harness.SidecarOptions{
		Dir: r.in, CAFile: r.caFile, VCAPFile: r.vcapFile, Args: args,
		AfterExit: func(*harness.Sidecar) { p.scan(false) },
	}, config)
	p = &proc{r: r, s: sc.Session, cfg: sc.Config, proxy: sc.Proxy, admin: sc.Admin, proxyHP: sc.ProxyHP}
	return p
}

// scan checks everything the process wrote so far for planted secrets and
// crashes; live adds /metrics and /status.
func (p *proc) scan(live bool) {
	GinkgoHelper()
	outs := [][]byte{p.s.Out.Contents(), p.s.Err.Contents()}
	if live {
		_, m := p.get("/metrics")
		_, st := p.get("/status")
		_, rd := p.get("/readyz")
		outs = append(outs, m, st, rd)
	}
	outs = append(outs, harness.ReadTree(p.r.work, "tls.key")...)
	expectNoCrash(outs[0], outs[1])
	p.r.secrets.ExpectNotIn(outs...)
}

var client = harness.Client

func (p *proc) get(path string) (int, []byte) { return harness.Get(p.admin + path) }

func (p *proc) status() map[string]any {
	GinkgoHelper()
	_, b := p.get("/status")
	var st map[string]any
	Expect(json.Unmarshal(b, &st)).To(Succeed(), string(b))
	return st
}

// cert returns the /status entry of the named certificate.
func (p *proc) cert(name string) map[string]any {
	GinkgoHelper()
	for _, c := range p.status()["certificates"].([]any) {
		if m := c.(map[string]any); m["name"] == name {
			return m
		}
	}
	Fail("no certificate " + name + " in /status")
	return nil
}

// metric returns the value of the first sample whose name and labels
// start with prefix, or -1 (harness.Metric).
func (p *proc) metric(prefix string) float64 { return harness.Metric(p.admin, prefix) }

func (p *proc) ready() int { c, _ := p.get("/readyz"); return c }

// load is harness.Load: requests to urls from workers goroutines, each at
// most one per every, until halted or until limit has passed.
type load = harness.Load

func startLoad(urls []string, workers int, every, limit time.Duration) *load {
	return harness.StartLoad(urls, harness.LoadOptions{Workers: workers, Every: every, For: limit})
}
