package sidecar

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/testpki"
	. "github.com/onsi/gomega"
)

// fileLoader reads the config file on every load, with the fakes as
// providers. Bindings "b" (usable) and "bad" (with a problem) exist.
func fileLoader(path string, deps Deps) Loader {
	return func(ctx context.Context) (*Config, Deps, error) {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, Deps{}, err
		}
		cfg, err := ParseConfig(data, "config "+path)
		if err != nil {
			return nil, Deps{}, err
		}
		d := deps
		d.Bindings = func(name string) (BindingInfo, bool) {
			switch name {
			case "b":
				return BindingInfo{Auth: true}, true
			case "bad":
				return BindingInfo{Auth: true, Problems: []string{"certificate expired at 2026-01-01T00:00:00Z"}}, true
			}
			return BindingInfo{}, false
		}
		if err := cfg.Validate(d.Bindings); err != nil {
			return nil, Deps{}, err
		}
		d.Watch = []string{path}
		return cfg, d, nil
	}
}

type runningServer struct {
	s      *Server
	cancel context.CancelFunc
	done   chan error
}

func startServer(t *testing.T, load Loader, opts ...Option) *runningServer {
	t.Helper()
	s := NewServer(load, append([]Option{WithPollInterval(100 * time.Millisecond)}, opts...)...)
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningServer{s: s, cancel: cancel, done: make(chan error, 1)}
	go func() { rs.done <- s.Run(ctx) }()
	select {
	case <-s.Started():
	case err := <-rs.done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-rs.done:
		case <-time.After(30 * time.Second):
			t.Error("server did not stop")
		}
	})
	return rs
}

func getBody(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestServerAdminAndReadiness(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	g.Expect(os.WriteFile(caFile, ca.CertPEM(), 0o600)).To(Succeed())
	leaf := ca.Issue(testpki.WithCommonName("app"), testpki.ClientAuth()).TLSCertificate()
	cert := newFakeCert(nil)
	tokens := &fakeTokens{}
	tokens.setErr(errors.New("auth server down"))
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, fmt.Sprintf(`
listen: 127.0.0.1:0
admin_listen: 127.0.0.1:0
ca_file: %s
certificates: [{name: connector, dir: /unused}]
routes:
  - {name: orders, upstream: %s, auth: {type: bearer, binding: b}}
  - {name: events, upstream: %s, auth: {type: mtls, certificate: connector}}
`, caFile, up.url, up.url))
	rs := startServer(t, fileLoader(path, Deps{Tokens: tokens, Certificates: map[string]ClientCertificate{"connector": cert}}))
	admin := "http://" + rs.s.AdminAddr()
	proxy := "http://" + rs.s.Addr()

	code, body := getBody(t, admin+"/healthz")
	g.Expect(code).To(Equal(200))
	g.Expect(body).To(Equal("ok\n"))

	code, body = getBody(t, admin+"/readyz")
	g.Expect(code).To(Equal(503))
	g.Expect(body).To(ContainSubstring(`binding "b": no valid token: auth server down`))
	g.Expect(body).To(ContainSubstring(`certificate "connector": not loaded yet`))

	tokens.setErr(nil)
	code, body = getBody(t, admin+"/readyz")
	g.Expect(code).To(Equal(503))
	g.Expect(body).NotTo(ContainSubstring(`binding "b"`))

	cert.cur.Store(&leaf)
	cert.mu.Lock()
	cert.state = CertificateState{NextRenewal: leaf.Leaf.NotAfter.Add(-time.Hour), Renewals: 2}
	cert.mu.Unlock()
	code, body = getBody(t, admin+"/readyz")
	g.Expect(code).To(Equal(200), body)
	g.Expect(body).To(Equal("ready\n"))

	code, _ = getBody(t, proxy+"/orders/x")
	g.Expect(code).To(Equal(200))
	code, _ = getBody(t, proxy+"/events/x")
	g.Expect(code).To(Equal(200))
	g.Expect(up.last(t).Header.Get("Authorization")).To(HavePrefix("Bearer tok-b-"))
	g.Expect(up.last(t).ClientCN).To(Equal("app"))

	code, body = getBody(t, admin+"/status")
	g.Expect(code).To(Equal(200))
	var st Status
	g.Expect(json.Unmarshal([]byte(body), &st)).To(Succeed())
	g.Expect(st.Ready).To(BeTrue())
	g.Expect(st.Config.Generation).To(Equal(1))
	g.Expect(st.Routes).To(HaveLen(2))
	g.Expect(st.Bindings).To(HaveLen(1))
	g.Expect(st.Bindings[0].Name).To(Equal("b"))
	g.Expect(st.Bindings[0].TokenExpiresAt).NotTo(BeNil())
	g.Expect(st.Certificates).To(HaveLen(1))
	g.Expect(st.Certificates[0].Subject).To(Equal("CN=app"))
	g.Expect(st.Certificates[0].Renewals).To(Equal(2))
	g.Expect(st.Certificates[0].NextRenewal).NotTo(BeNil())
	g.Expect(body).NotTo(ContainSubstring("tok-"), "no token in /status")

	code, body = getBody(t, admin+"/metrics")
	g.Expect(code).To(Equal(200))
	for _, m := range []string{
		`credbroker_proxy_requests_total{code="200",route="orders"} 1`,
		`credbroker_proxy_request_duration_seconds_bucket{route="events"`,
		`credbroker_certificate_not_after_seconds{certificate="connector"}`,
		`credbroker_certificate_renewals_total{certificate="connector"} 2`,
		`credbroker_ready 1`,
		`credbroker_config_reloads_total{outcome="ok"} 1`,
	} {
		g.Expect(body).To(ContainSubstring(m))
	}
	g.Expect(body).NotTo(ContainSubstring("tok-"))

	// Expiry makes the sidecar unready.
	expired := ca.Issue(testpki.WithCommonName("old"), testpki.WithNotBeforeAfter(time.Now().Add(-time.Hour), time.Now().Add(-time.Minute))).TLSCertificate()
	cert.cur.Store(&expired)
	code, body = getBody(t, admin+"/readyz")
	g.Expect(code).To(Equal(503))
	g.Expect(body).To(ContainSubstring(`certificate "connector" expired at`))
}

func TestServerUnusableBindingIsNotReady(t *testing.T) {
	g := NewWithT(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nroutes: [{name: o, upstream: https://o.example, auth: {type: bearer, binding: bad}}]\n")
	tokens := &fakeTokens{}
	rs := startServer(t, fileLoader(path, Deps{Tokens: tokens}))
	code, body := getBody(t, "http://"+rs.s.AdminAddr()+"/readyz")
	g.Expect(code).To(Equal(503))
	g.Expect(body).To(ContainSubstring(`binding "bad" is unusable: certificate expired`))
}

func TestServerRefusesBadConfigAtStart(t *testing.T) {
	g := NewWithT(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nroutes: [{name: o, upstream: https://o.example, auth: {type: bearer, binding: nope}}]\n")
	err := NewServer(fileLoader(path, Deps{Tokens: &fakeTokens{}})).Run(context.Background())
	g.Expect(errors.Is(err, ErrUnknownBinding)).To(BeTrue(), "%v", err)
}

func TestServerReload(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	g.Expect(os.WriteFile(caFile, ca.CertPEM(), 0o600)).To(Succeed())
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	base := fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nca_file: %s\nroutes:\n  - {name: one, upstream: %s, auth: {type: none}}\n", caFile, up.url)
	writeConfig(t, path, base)
	rs := startServer(t, fileLoader(path, Deps{Tokens: &fakeTokens{}}))
	proxy := "http://" + rs.s.Addr()
	code, _ := getBody(t, proxy+"/two/x")
	g.Expect(code).To(Equal(403))

	// A change of the file is picked up without a signal.
	writeConfig(t, path, base+fmt.Sprintf("  - {name: two, upstream: %s, auth: {type: none}}\n", up.url))
	g.Eventually(func() int { c, _ := getBody(t, proxy+"/two/x"); return c }, 10*time.Second, 50*time.Millisecond).Should(Equal(200))

	// A bad configuration is refused and the running one kept.
	writeConfig(t, path, base+"  - {name: three, upstream: https://x.example, auth: {type: bearer, binding: nope}}\n")
	err := rs.s.Reload(context.Background())
	g.Expect(errors.Is(err, ErrUnknownBinding)).To(BeTrue())
	code, _ = getBody(t, proxy+"/two/x")
	g.Expect(code).To(Equal(200))
	st := rs.s.Status(context.Background())
	g.Expect(st.Config.LastReload).To(ContainSubstring("unknown binding"))

	// Listen addresses cannot change.
	writeConfig(t, path, strings.Replace(base, "listen: 127.0.0.1:0\nadmin", "listen: 127.0.0.1:1\nadmin", 1))
	g.Expect(errors.Is(rs.s.Reload(context.Background()), ErrReloadListen)).To(BeTrue())

	// TriggerReload (SIGHUP) applies a good one.
	writeConfig(t, path, base)
	rs.s.TriggerReload()
	g.Eventually(func() int { c, _ := getBody(t, proxy+"/two/x"); return c }, 10*time.Second, 50*time.Millisecond).Should(Equal(403))
	g.Eventually(func() string { return rs.s.Status(context.Background()).Config.LastReload }, 10*time.Second).Should(BeEmpty())
}

func TestServerDrainsInFlightRequests(t *testing.T) {
	g := NewWithT(t)
	ca := testpki.NewCA()
	up := newUpstream(t, ca)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	up.extra = func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	g.Expect(os.WriteFile(caFile, ca.CertPEM(), 0o600)).To(Succeed())
	path := filepath.Join(t.TempDir(), "config.yaml")
	writeConfig(t, path, fmt.Sprintf("listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ndrain_timeout: 20s\nca_file: %s\nroutes: [{name: slow, upstream: %s, auth: {type: none}}]\n", caFile, up.url))
	s := NewServer(fileLoader(path, Deps{}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	g.Eventually(s.Started(), 10*time.Second).Should(BeClosed())
	proxy := "http://" + s.Addr()

	type result struct {
		code int
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get(proxy + "/slow/x")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		res <- result{code: resp.StatusCode, body: string(b)}
	}()
	g.Eventually(entered, 10*time.Second).Should(Receive())
	cancel() // SIGTERM
	// New connections are refused while the request drains.
	probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	g.Eventually(func() error {
		resp, err := probe.Get(proxy + "/slow/y")
		if err == nil {
			resp.Body.Close()
		}
		return err
	}, 10*time.Second, 20*time.Millisecond).Should(HaveOccurred())
	g.Consistently(done, 200*time.Millisecond).ShouldNot(Receive())
	close(release)
	var r result
	g.Eventually(res, 10*time.Second).Should(Receive(&r))
	g.Expect(r.err).NotTo(HaveOccurred())
	g.Expect(r.code).To(Equal(200))
	g.Expect(r.body).To(Equal("done"))
	g.Eventually(done, 10*time.Second).Should(Receive(BeNil()))
}

// fakeInbound answers with its own name, so a reload's swap is visible.
type fakeInbound struct{ name string }

func (f fakeInbound) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, f.name+" "+r.URL.Path)
}

func (f fakeInbound) TLSConfig() *tls.Config { return nil }

func TestServerInboundListener(t *testing.T) {
	g := NewWithT(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	base := "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\ninbound:\n  listen: 127.0.0.1:0\n  app: http://127.0.0.1:1\n  rules: [{path: /, accept: [oauth1], oauth1: {key_file: /k, secret_file: /s}}]\n"
	writeConfig(t, path, base)
	n := 0
	load := func(ctx context.Context) (*Config, Deps, error) {
		cfg, deps, err := fileLoader(path, Deps{})(ctx)
		if err != nil {
			return nil, Deps{}, err
		}
		n++
		deps.Inbound = fakeInbound{name: fmt.Sprintf("guard-%d", n)}
		return cfg, deps, nil
	}
	rs := startServer(t, load)
	g.Expect(rs.s.InboundAddr()).NotTo(BeEmpty())
	code, body := getBody(t, "http://"+rs.s.InboundAddr()+"/api/x")
	g.Expect(code).To(Equal(200))
	g.Expect(body).To(Equal("guard-1 /api/x"))

	g.Expect(rs.s.Reload(context.Background())).To(Succeed())
	_, body = getBody(t, "http://"+rs.s.InboundAddr()+"/api/x")
	g.Expect(body).To(Equal("guard-2 /api/x"), "a reload swaps the guard behind the same listener")

	writeConfig(t, path, "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\n")
	g.Expect(errors.Is(rs.s.Reload(context.Background()), ErrReloadListen)).To(BeTrue(), "removing the inbound listener needs a restart")
}
