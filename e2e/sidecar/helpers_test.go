package sidecar_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// env is one mock auth server, a sample upstream, the files credbroker
// reads (VCAP_SERVICES, CA bundle, OAuth 1.0a key and secret) and the
// planted secrets of one spec.
type env struct {
	mock     *mockauth.Server
	up       *upstream
	dir      string
	vcapFile string
	caFile   string
	keyFile  string
	secFile  string
	secrets  *harness.Secrets
	// upCA issued the upstream's certificate (the sidecar trusts it).
	upCA      *testpki.CA
	clientCAs []byte
	oauthSec  string
}

const consumerKey = "e2e-consumer"

func newEnv(opts mockauth.Options) *env {
	GinkgoHelper()
	e := &env{dir: GinkgoT().TempDir(), secrets: &harness.Secrets{}}
	e.mock = harness.StartMock(opts, e.secrets)
	m := e.mock
	oauthSecret := e.secrets.Plant("oauth1 consumer secret")
	ca := testpki.NewCA()
	clientCAs := append(append([]byte{}, m.ConnectorCAPEM()...), m.RuntimeConnectorCAPEM()...)
	e.up = newUpstream(ca, clientCAs, oauthSecret, e.secrets)
	e.upCA, e.clientCAs, e.oauthSec = ca, clientCAs, oauthSecret
	e.vcapFile, e.caFile = harness.WriteInputs(e.dir, m, ca)
	e.keyFile = e.write("oauth1-key", []byte(consumerKey+"\n"))
	e.secFile = e.write("oauth1-secret", []byte(oauthSecret+"\n"))
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

// received is what the upstream saw of one request.
type received = harness.Request

// upstream is the recording upstream (harness.Upstream, answering with
// what it saw, verifying client certificates of the connector CAs and
// OAuth 1.0a signatures of consumerKey) under the names the specs use.
type upstream struct {
	*harness.Upstream
	url  string // https://upstream.localhost:PORT
	host string // upstream.localhost:PORT
}

func newUpstream(ca *testpki.CA, clientCAPEM []byte, oauthSecret string, secrets *harness.Secrets) *upstream {
	GinkgoHelper()
	return newUpstreamProto(ca, clientCAPEM, oauthSecret, secrets, true)
}

// newUpstreamProto is newUpstream offering HTTP/2 or, with h2 false,
// HTTP/1.1 only.
func newUpstreamProto(ca *testpki.CA, clientCAPEM []byte, oauthSecret string, secrets *harness.Secrets, h2 bool) *upstream {
	GinkgoHelper()
	u := harness.StartUpstream(harness.UpstreamOptions{CA: ca, ClientCAPEM: clientCAPEM, Secrets: secrets, HTTP1Only: !h2,
		OAuth1Key: consumerKey, OAuth1Secret: oauthSecret})
	return &upstream{Upstream: u, url: u.URL, host: u.Host}
}

func (u *upstream) setHold(f func(*http.Request)) { u.SetHold(f) }
func (u *upstream) all() []received               { return u.All() }
func (u *upstream) last(path string) received     { GinkgoHelper(); return u.Last(path) }
func (u *upstream) count(path string) int         { return u.Count(path) }

// sidecar is a running `credbroker run` process.
type sidecar struct {
	e       *env
	s       *gexec.Session
	cfg     string
	proxy   string // http://127.0.0.1:PORT
	admin   string
	proxyHP string
}

// startSidecar writes config (with listen, admin_listen and ca_file
// prepended) and runs `credbroker run` on it with the env's bindings. It
// waits for /healthz. At the end of the spec it scans the output and the
// admin endpoints for planted secrets, then stops the process.
func (e *env) startSidecar(config string, args ...string) *sidecar {
	GinkgoHelper()
	return e.startSidecarWith(func() string { return config }, args...)
}

// startSidecarWith is startSidecar for a config with ports of its own
// (harness.StartSidecarWith): config picks them, again on a retry.
func (e *env) startSidecarWith(config func() string, args ...string) *sidecar {
	GinkgoHelper()
	r := harness.StartSidecarWith(bin, harness.SidecarOptions{
		Dir: e.dir, CAFile: e.caFile, VCAPFile: e.vcapFile, Args: args,
		AfterExit: func(r *harness.Sidecar) { e.secrets.ExpectNotIn(r.Session.Out.Contents(), r.Session.Err.Contents()) },
	}, config)
	sc := &sidecar{e: e, s: r.Session, cfg: r.Config, proxy: r.Proxy, admin: r.Admin, proxyHP: r.ProxyHP}
	DeferCleanup(func() { // runs first: the process still serves
		e.secrets.ExpectNotIn(sc.s.Out.Contents(), sc.s.Err.Contents(), sc.get("/metrics"), sc.get("/status"))
	})
	Eventually(func() int { c, _ := httpGet(sc.admin + "/healthz"); return c }).WithTimeout(60*time.Second).Should(Equal(200), func() string { return string(sc.s.Err.Contents()) })
	return sc
}

// rewrite replaces the route part of the config (listen lines stay).
func (sc *sidecar) rewrite(config string) {
	GinkgoHelper()
	data, err := os.ReadFile(sc.cfg)
	Expect(err).NotTo(HaveOccurred())
	lines := strings.SplitN(string(data), "\n", 4)
	tmp := sc.cfg + ".tmp"
	Expect(os.WriteFile(tmp, []byte(strings.Join(lines[:3], "\n")+"\n"+config), 0o600)).To(Succeed())
	Expect(os.Rename(tmp, sc.cfg)).To(Succeed())
}

func (sc *sidecar) get(path string) []byte {
	_, body := httpGet(sc.admin + path)
	return []byte(body)
}

func (sc *sidecar) status() map[string]any {
	GinkgoHelper()
	var st map[string]any
	Expect(json.Unmarshal(sc.get("/status"), &st)).To(Succeed())
	return st
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}

func httpGet(u string) (int, string) {
	c, b := harness.Get(u)
	return c, string(b)
}

// call sends a request through the proxy and returns the response with its
// body read.
func call(method, u string, body io.Reader, hdr map[string]string) (*http.Response, string) {
	GinkgoHelper()
	req, err := http.NewRequest(method, u, body)
	Expect(err).NotTo(HaveOccurred())
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// raw writes a request as given on a fresh connection and returns the
// status and the X-Credbroker-Error header.
func raw(addr, request string) (int, string) {
	GinkgoHelper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	Expect(err).NotTo(HaveOccurred())
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	_, err = io.WriteString(c, request)
	Expect(err).NotTo(HaveOccurred())
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	Expect(err).NotTo(HaveOccurred())
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("X-Credbroker-Error")
}

// claims decodes a Bearer JWT's payload (no verification: the mock issued it).
func claims(authorization string) map[string]any {
	GinkgoHelper()
	tok, ok := strings.CutPrefix(authorization, "Bearer ")
	Expect(ok).To(BeTrue(), "not a Bearer header")
	parts := strings.Split(tok, ".")
	Expect(parts).To(HaveLen(3))
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	Expect(err).NotTo(HaveOccurred())
	var c map[string]any
	Expect(json.Unmarshal(payload, &c)).To(Succeed())
	return c
}
