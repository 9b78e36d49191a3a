package harness

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/oauth1"
)

// Request is what an Upstream saw of one request.
type Request struct {
	Time     time.Time // when the upstream received it (wall clock)
	Method   string
	URI      string // the request target as sent
	Path     string
	Query    string
	Host     string
	Header   http.Header
	Body     string // at most 1 MiB
	ClientCN string // subject CN of the client certificate, when one was presented
	Issuer   string // its issuer
	Cert     string // its SHA-256 fingerprint (serials repeat: the connector issues serial 2)
	OAuth1   string // "ok" or the verifier's error, for an OAuth 1.0a request (UpstreamOptions.OAuth1Key set)
}

// UpstreamOptions say how StartUpstream's server answers and verifies.
type UpstreamOptions struct {
	CA          *testpki.CA // issues the server certificate for upstream.localhost and 127.0.0.1
	ClientCAPEM []byte      // client certificates are verified against these when presented
	Secrets     *Secrets    // every Bearer token seen is added (the binary must never print one)
	HTTP1Only   bool        // offer HTTP/1.1 only (default: HTTP/2 too)
	// OAuth1Key and OAuth1Secret, when set, verify OAuth 1.0a signatures
	// (the result lands in Request.OAuth1).
	OAuth1Key, OAuth1Secret string
	// Answer writes the response (default: JSON {"path", "client_cn"}).
	Answer func(w http.ResponseWriter, r Request)
}

// Upstream is an HTTPS server for upstream.localhost that records every
// request. Safe for concurrent use.
type Upstream struct {
	URL  string // https://upstream.localhost:PORT
	Host string // upstream.localhost:PORT
	mu   sync.Mutex
	got  []Request
	hold func(*http.Request)
}

// StartUpstream starts an Upstream, closed when the spec ends.
func StartUpstream(o UpstreamOptions) *Upstream {
	GinkgoHelper()
	u := &Upstream{}
	var verifier *oauth1.Verifier
	if o.OAuth1Key != "" {
		v, err := oauth1.NewVerifier(oauth1.StaticSecret(o.OAuth1Key, o.OAuth1Secret))
		Expect(err).NotTo(HaveOccurred())
		verifier = v
	}
	answer := o.Answer
	if answer == nil {
		answer = func(w http.ResponseWriter, r Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"path": r.Path, "client_cn": r.ClientCN})
		}
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer GinkgoRecover()
		rec := Request{Time: time.Now(), Method: r.Method, URI: r.RequestURI, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host, Header: r.Header.Clone()}
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && len(tok) >= 8 && o.Secrets != nil {
			o.Secrets.Add("access token issued by the mock", tok)
		}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			c := r.TLS.PeerCertificates[0]
			sum := sha256.Sum256(c.Raw)
			rec.ClientCN, rec.Issuer, rec.Cert = c.Subject.CommonName, c.Issuer.String(), hex.EncodeToString(sum[:])
		}
		if verifier != nil && strings.HasPrefix(r.Header.Get("Authorization"), "OAuth ") {
			rec.OAuth1 = "ok"
			if _, err := verifier.VerifyRequest(r, oauth1.RequestURL(r, "https", r.Host)); err != nil {
				rec.OAuth1 = err.Error()
			}
		}
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		rec.Body = string(b)
		u.mu.Lock()
		u.got = append(u.got, rec)
		hold := u.hold
		u.mu.Unlock()
		if hold != nil {
			hold(r)
		}
		answer(w, rec)
	}))
	leaf := o.CA.Issue(testpki.WithDNSNames("upstream.localhost"), testpki.WithIPs("127.0.0.1"), testpki.ServerAuth())
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(o.ClientCAPEM)
	srv.TLS = testpki.ServerTLSConfig(leaf, nil)
	srv.TLS.ClientAuth = tls.VerifyClientCertIfGiven
	srv.TLS.ClientCAs = pool
	srv.EnableHTTP2 = !o.HTTP1Only
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	DeferCleanup(srv.Close)
	u.Host = "upstream.localhost:" + strconv.Itoa(srv.Listener.Addr().(*net.TCPAddr).Port)
	u.URL = "https://" + u.Host
	return u
}

// SetHold makes every request call f before it is answered (nil: none);
// drain specs block in it.
func (u *Upstream) SetHold(f func(*http.Request)) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.hold = f
}

// All returns a copy of every request seen so far, in order.
func (u *Upstream) All() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.got...)
}

// Last waits for a request under path (exactly) and returns the last one.
func (u *Upstream) Last(path string) Request {
	GinkgoHelper()
	var r Request
	Eventually(func() bool {
		for _, g := range u.All() {
			if g.Path == path {
				r = g
			}
		}
		return r.Path != ""
	}).Should(BeTrue(), "the upstream never saw %s", path)
	return r
}

// Count returns how many requests were seen under path (exactly).
func (u *Upstream) Count(path string) int {
	n := 0
	for _, g := range u.All() {
		if g.Path == path {
			n++
		}
	}
	return n
}

// Certs returns the distinct client certificates (SHA-256 fingerprints)
// seen under prefix, sorted.
func (u *Upstream) Certs(prefix string) []string {
	seen := map[string]bool{}
	for _, g := range u.All() {
		if g.Cert != "" && strings.HasPrefix(g.Path, prefix) {
			seen[g.Cert] = true
		}
	}
	out := make([]string, 0, len(seen))
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Tokens returns the distinct Bearer tokens seen under prefix, in order.
func (u *Upstream) Tokens(prefix string) []string {
	var out []string
	seen := map[string]bool{}
	for _, g := range u.All() {
		tok, ok := strings.CutPrefix(g.Header.Get("Authorization"), "Bearer ")
		if ok && strings.HasPrefix(g.Path, prefix) && !seen[tok] {
			seen[tok] = true
			out = append(out, tok)
		}
	}
	return out
}
