package guard

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/clock/fakeclock"
	"github.com/credbroker/credbroker/internal/syncbuf"

	"github.com/credbroker/credbroker/internal/testpki"
	"github.com/credbroker/credbroker/mockauth"
)

// appSeen is one request the fake app received.
type appSeen struct {
	Method  string
	Path    string
	Query   string
	Header  http.Header
	Body    string
	Trailer http.Header
}

// fakeApp records what reaches it.
type fakeApp struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen []appSeen
}

func newApp(t *testing.T) *fakeApp {
	t.Helper()
	a := &fakeApp{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		a.mu.Lock()
		a.seen = append(a.seen, appSeen{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), string(b), r.Trailer.Clone()})
		a.mu.Unlock()
		w.Header().Set("X-App", "yes")
		_, _ = io.WriteString(w, "app says hi")
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeApp) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seen)
}

func (a *fakeApp) last() appSeen {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seen) == 0 {
		return appSeen{}
	}
	return a.seen[len(a.seen)-1]
}

// countingObserver counts decisions by "method/outcome/reason".
type countingObserver struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *countingObserver) Accepted(m Method) { o.add(string(m) + "/accepted") }
func (o *countingObserver) Refused(m Method, reason string) {
	o.add(string(m) + "/refused/" + reason)
}
func (o *countingObserver) AppUnreachable() { o.add(ReasonAppUnreachable) }
func (o *countingObserver) JWKSFetched(err error) {
	if err != nil {
		o.add("jwks/error")
		return
	}
	o.add("jwks/ok")
}
func (o *countingObserver) add(k string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[k]++
}
func (o *countingObserver) get(k string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[k]
}

func newFakeClock(t time.Time) *fakeclock.Clock { return fakeclock.New(t) }

// env is a guard under test with its app, logs and counters.
type env struct {
	g    *Guard
	app  *fakeApp
	url  string // the guard's base URL
	logs *syncbuf.Buffer
	obs  *countingObserver
}

// startGuard builds a guard for cfg (App is filled in) and serves it on
// 127.0.0.1, over TLS when cfg.TLS is set (server certificate from
// serverLeaf).
func startGuard(t *testing.T, cfg *Config, serverLeaf *testpki.Leaf, opts ...Option) *env {
	t.Helper()
	e := &env{app: newApp(t), logs: &syncbuf.Buffer{}, obs: &countingObserver{}}
	cfg.App = e.app.srv.URL
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	base := []Option{WithLogger(slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))), WithObserver(e.obs)}
	if serverLeaf != nil {
		cert := serverLeaf.TLSCertificate()
		base = append(base, WithGetCertificate(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }))
	}
	g, err := New(cfg, append(base, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = g.Close() })
	e.g = g
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	scheme := "http"
	if tc := g.TLSConfig(); tc != nil {
		ln = tls.NewListener(ln, tc)
		scheme = "https"
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	e.url = scheme + "://" + ln.Addr().String()
	return e
}

// runGuard runs the guard's file watcher until the test ends.
func runGuard(t *testing.T, g *Guard) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
}

// mock starts a mockauth server for the test.
func startMock(t *testing.T, opts mockauth.Options) *mockauth.Server {
	t.Helper()
	return mockauth.StartTest(t, opts)
}

// mockBindings are the guard's view of the mock's xsuaa and IAS bindings.
func mockBindings(srv *mockauth.Server) BindingLookup {
	info := srv.Info()
	return StaticBindings(
		Binding{Name: mockauth.SecretBindingName, Flavor: FlavorXSUAA, ClientID: info.SecretClientID, XSAppName: info.SecretXSAppName, UAADomain: info.UAADomain, URL: info.URL, CertURL: info.CertURL},
		Binding{Name: mockauth.X509BindingName, Flavor: FlavorXSUAA, ClientID: info.X509ClientID, XSAppName: info.X509XSAppName, UAADomain: info.UAADomain, URL: info.URL, CertURL: info.CertURL},
		Binding{Name: mockauth.IASBindingName, Flavor: FlavorIAS, ClientID: info.IASClientID, UAADomain: mockauth.IASDomain, URL: info.IASURL},
	)
}

// fetchToken gets a client_credentials token of the mock's secret binding
// through its real token endpoint.
func fetchToken(t *testing.T, srv *mockauth.Server, ias bool) string {
	t.Helper()
	info := srv.Info()
	var req *http.Request
	if ias {
		req, _ = http.NewRequest("POST", info.IASURL+"/oauth2/token", bytes.NewBufferString("grant_type=client_credentials"))
		req.SetBasicAuth(info.IASClientID, srv.ClientSecret(info.IASClientID))
	} else {
		body := "grant_type=client_credentials&client_id=" + info.SecretClientID + "&client_secret=" + srv.ClientSecret(info.SecretClientID)
		req, _ = http.NewRequest("POST", info.URL+"/oauth/token", bytes.NewBufferString(body))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
		t.Fatalf("token endpoint: status %d, %v", resp.StatusCode, err)
	}
	return tr.AccessToken
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func tempFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, p, data)
	return p
}

// tlsClient trusts roots, presents certs, and sends SNI name.
func tlsClient(roots *x509.CertPool, name string, certs ...tls.Certificate) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: name, Certificates: certs}}}
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func mockOptions() mockauth.Options { return mockauth.Options{} }

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func mustPrefixes(t *testing.T, ss []string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		p, err := parsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func tlsState() *tls.ConnectionState { return &tls.ConnectionState{HandshakeComplete: true} }

func writeFileErr(path, data string) error { return os.WriteFile(path, []byte(data), 0o600) }
