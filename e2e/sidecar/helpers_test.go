package sidecar_test

import (
	"bufio"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
	"github.com/credbroker/credbroker/oauth1"
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
	m, err := mockauth.Start(opts)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(m.Close)
	e := &env{mock: m, dir: GinkgoT().TempDir(), secrets: &harness.Secrets{}}
	info := m.Info()
	e.secrets.Add("client secret", m.ClientSecret(info.SecretClientID))
	if s := m.ClientSecret(info.IASClientID); s != "" {
		e.secrets.Add("IAS client secret", s)
	}
	// The x509 binding's private key.
	var vcap map[string][]struct {
		Name        string         `json:"name"`
		Credentials map[string]any `json:"credentials"`
	}
	Expect(json.Unmarshal(m.VCAPServices(), &vcap)).To(Succeed())
	for _, list := range vcap {
		for _, b := range list {
			if k, ok := b.Credentials["key"].(string); ok && k != "" {
				e.secrets.Add("private key of "+b.Name, k)
			}
		}
	}
	oauthSecret := e.secrets.Plant("oauth1 consumer secret")
	ca := testpki.NewCA()
	clientCAs := append(append([]byte{}, m.ConnectorCAPEM()...), m.RuntimeConnectorCAPEM()...)
	e.up = newUpstream(ca, clientCAs, oauthSecret, e.secrets)
	e.upCA, e.clientCAs, e.oauthSec = ca, clientCAs, oauthSecret
	e.vcapFile = e.write("vcap.json", m.VCAPServices())
	e.caFile = e.write("ca.crt", append(append([]byte{}, m.CACertPEM()...), ca.CertPEM()...))
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
	u, tok, err := e.mock.NewPairingToken(app)
	Expect(err).NotTo(HaveOccurred())
	e.secrets.Add("one-time token", tok)
	return e.write("pairing-url-"+app, []byte(u+"\n"))
}

// received is what the upstream saw of one request.
type received struct {
	Method   string
	Path     string
	Query    string
	Header   http.Header
	Body     string
	ClientCN string
	Issuer   string
	SHA256   string // fingerprint of the client certificate (serials repeat: the connector issues serial 2)
	OAuth1   string // "ok" or the verifier's error
}

// upstream is an HTTPS server for upstream.localhost that records every
// request (remembering each Bearer token as a secret) and answers with what
// it saw. It verifies client certificates of
// the connector CA and OAuth 1.0a signatures of consumerKey.
type upstream struct {
	srv  *httptest.Server
	url  string // https://upstream.localhost:PORT
	host string // upstream.localhost:PORT
	mu   sync.Mutex
	got  []received
	// hold, when set, is called before answering (drain specs block in it).
	hold func(r *http.Request)
}

func newUpstream(ca *testpki.CA, clientCAPEM []byte, oauthSecret string, secrets *harness.Secrets) *upstream {
	GinkgoHelper()
	return newUpstreamProto(ca, clientCAPEM, oauthSecret, secrets, true)
}

// newUpstreamProto is newUpstream offering HTTP/2 or, with h2 false,
// HTTP/1.1 only.
func newUpstreamProto(ca *testpki.CA, clientCAPEM []byte, oauthSecret string, secrets *harness.Secrets, h2 bool) *upstream {
	GinkgoHelper()
	u := &upstream{}
	verifier, err := oauth1.NewVerifier(oauth1.StaticSecret(consumerKey, oauthSecret))
	Expect(err).NotTo(HaveOccurred())
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer GinkgoRecover()
		rec := received{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone()}
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && len(tok) >= 8 {
			secrets.Add("access token issued by the mock", tok) // every issued token is checked for too
		}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			rec.ClientCN = r.TLS.PeerCertificates[0].Subject.CommonName
			sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
			rec.SHA256 = hex.EncodeToString(sum[:])
			rec.Issuer = r.TLS.PeerCertificates[0].Issuer.String()
		}
		if strings.HasPrefix(r.Header.Get("Authorization"), "OAuth ") {
			if _, err := verifier.VerifyRequest(r, oauth1.RequestURL(r, "https", r.Host)); err != nil {
				rec.OAuth1 = err.Error()
			} else {
				rec.OAuth1 = "ok"
			}
		}
		b, _ := io.ReadAll(r.Body)
		rec.Body = string(b)
		u.mu.Lock()
		u.got = append(u.got, rec)
		hold := u.hold
		u.mu.Unlock()
		if hold != nil {
			hold(r)
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"path": rec.Path, "client_cn": rec.ClientCN})
	}))
	leaf := ca.Issue(testpki.WithDNSNames("upstream.localhost"), testpki.WithIPs("127.0.0.1"), testpki.ServerAuth())
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(clientCAPEM)
	u.srv.TLS = testpki.ServerTLSConfig(leaf, nil)
	u.srv.TLS.ClientAuth = tls.VerifyClientCertIfGiven
	u.srv.TLS.ClientCAs = pool
	u.srv.EnableHTTP2 = h2
	u.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	u.srv.StartTLS()
	DeferCleanup(u.srv.Close)
	port := strconv.Itoa(u.srv.Listener.Addr().(*net.TCPAddr).Port)
	u.host = "upstream.localhost:" + port
	u.url = "https://" + u.host
	return u
}

func (u *upstream) setHold(f func(*http.Request)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.hold = f
}

func (u *upstream) all() []received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]received(nil), u.got...)
}

// last returns the last request the upstream saw under path.
func (u *upstream) last(path string) received {
	GinkgoHelper()
	var r received
	Eventually(func() bool {
		for _, g := range u.all() {
			if g.Path == path {
				r = g
			}
		}
		return r.Path != ""
	}).Should(BeTrue(), "the upstream never saw %s", path)
	return r
}

func (u *upstream) count(path string) int {
	n := 0
	for _, g := range u.all() {
		if g.Path == path {
			n++
		}
	}
	return n
}

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
	r := harness.StartSidecar(bin, harness.SidecarOptions{
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
	resp, err := client.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
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
