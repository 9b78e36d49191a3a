package charttest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
	corev1 "k8s.io/api/core/v1"
)

// repoRoot is the main module, whose cmd/credbroker the image runs.
const repoRoot = "../../.."

// buildCredbroker builds the binary the way the Dockerfile does (static,
// CGO_ENABLED=0) from the main module. The chart tests stay a module of their
// own: this is a `go build` in the main module, not an import.
func buildCredbroker(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "credbroker")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./cmd/credbroker")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/credbroker: %v\n%s", err, b)
	}
	return out
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startSidecar runs the rendered sidecar container's command line outside
// Kubernetes: its args with the config path pointing at the rendered
// ConfigMap's file, its env with the binding root replaced by bindingRoot.
func startSidecar(t *testing.T, bin string, sc *corev1.Container, config, bindingRoot string) *gexec.Session {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string(nil), sc.Args...)
	for i, a := range args {
		if a == "/etc/credbroker/config/config.yaml" {
			args[i] = cfgPath
		}
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for _, e := range sc.Env {
		v := e.Value
		if e.Name == "SERVICE_BINDING_ROOT" {
			v = bindingRoot
		}
		env = append(env, e.Name+"="+v)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	s, err := gexec.Start(cmd, gexec.NewPrefixedWriter("[credbroker] ", os.Stderr), gexec.NewPrefixedWriter("[credbroker] ", os.Stderr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Kill()
		select {
		case <-s.Exited:
		case <-time.After(10 * time.Second):
			t.Errorf("credbroker did not exit after SIGKILL")
		}
	})
	return s
}

// nonLoopbackIPv4 returns an IPv4 address of this machine that is not
// loopback, or "" when it has none.
func nonLoopbackIPv4() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}

type trustFiles struct{ ca, crl, key, secret, certRoot string }

// writeTrustFiles writes a CA certificate, a CRL it signed and an OAuth 1.0a
// consumer key and secret, for the config keys that name files.
func writeTrustFiles(t *testing.T) trustFiles {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "chart test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(time.Hour)}, ca, key)
	if err != nil {
		t.Fatal(err)
	}
	// A server pair from that CA, as the directory of a certificate named
	// "server" under certRoot.
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "shop.example.com"},
		DNSNames:     []string{"shop.example.com"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, ca, &srvKey.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	srvKeyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	certRoot := filepath.Join(dir, "certs")
	if err := os.MkdirAll(filepath.Join(certRoot, "server"), 0o700); err != nil {
		t.Fatal(err)
	}
	f := trustFiles{ca: filepath.Join(dir, "ca.crt"), crl: filepath.Join(dir, "ca.crl"), key: filepath.Join(dir, "consumer-key"), secret: filepath.Join(dir, "consumer-secret"), certRoot: certRoot}
	for path, data := range map[string][]byte{
		f.ca:     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		f.crl:    pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl}),
		f.key:    []byte("chart-consumer\n"),
		f.secret: []byte("chart-consumer-secret\n"),
		filepath.Join(certRoot, "server", "tls.crt"): pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		filepath.Join(certRoot, "server", "tls.key"): pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: srvKeyDER}),
		filepath.Join(certRoot, "server", "ca.crt"):  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// httpsStatus is httpStatus over TLS, verifying the server as serverName
// against the CA in caFile.
func httpsStatus(caFile, serverName, url string) func() (int, error) {
	return func() (int, error) {
		pemData, err := os.ReadFile(caFile)
		if err != nil {
			return 0, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemData) {
			return 0, fmt.Errorf("no CA in %s", caFile)
		}
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: serverName}}}
		resp, err := c.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
}

func httpStatus(url string) func() (int, error) {
	return func() (int, error) {
		c := &http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
}

// TestRenderedConfigRunsWithCredbroker starts the real binary with what the
// chart renders: the sidecar's args and env and the ConfigMap's config.yaml.
// It proves the config keys the chart owns (listen, admin_listen,
// allow_non_loopback, certificates) are the ones credbroker accepts, and that
// the probes' endpoints answer on the admin port.
func TestRenderedConfigRunsWithCredbroker(t *testing.T) {
	bin := buildCredbroker(t)

	t.Run("the binary is static, as the distroless/static image needs", func(t *testing.T) {
		g := NewWithT(t)
		f, err := elf.Open(bin)
		g.Expect(err).NotTo(HaveOccurred())
		defer f.Close()
		for _, p := range f.Progs {
			g.Expect(p.Type).NotTo(Equal(elf.PT_INTERP), "a dynamic loader is requested")
		}
		libs, err := f.ImportedLibraries()
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(libs).To(BeEmpty())
	})

	render := func(t *testing.T, values string) (*corev1.Container, string, int, int) {
		listen, admin := freePort(t), freePort(t)
		m := mustRender(t, fmt.Sprintf("sidecar:\n  listenPort: %d\n  adminPort: %d\n%s", listen, admin, values))
		sc := containerByName(m.deployment(t).Spec.Template.Spec.InitContainers, sidecarName)
		if sc == nil {
			t.Fatal("no sidecar container")
		}
		return sc, m.configMap(t).Data["config.yaml"], listen, admin
	}

	t.Run("defaults: ready, probes answer on the admin port, SIGTERM exits 0", func(t *testing.T) {
		g := NewWithT(t)
		sc, cfg, listen, admin := render(t, "")
		s := startSidecar(t, bin, sc, cfg, "")
		base := fmt.Sprintf("http://127.0.0.1:%d", admin)
		g.Eventually(httpStatus(base+"/readyz"), 20*time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK))
		g.Expect(httpStatus(base + "/healthz")()).To(Equal(http.StatusOK))
		// The kubelet probes the pod IP: the admin listener answers on a
		// non-loopback address too.
		g.Expect(sc.ReadinessProbe.HTTPGet.Port.IntValue()).To(Equal(admin))
		if ip := nonLoopbackIPv4(); ip != "" {
			g.Expect(httpStatus(fmt.Sprintf("http://%s:%d/healthz", ip, admin))()).To(Equal(http.StatusOK))
		} else {
			t.Log("this machine has no non-loopback IPv4 address: the pod-IP probe check is left out")
		}
		// The proxy is on loopback and is no open proxy.
		g.Expect(httpStatus(fmt.Sprintf("http://127.0.0.1:%d/nowhere/", listen))()).To(Equal(http.StatusForbidden))
		s.Signal(syscall.SIGTERM)
		g.Eventually(s, 30*time.Second).Should(gexec.Exit(0))
	})

	t.Run("the access log on standard output and traces to the OTLP endpoint, as the values say", func(t *testing.T) {
		g := NewWithT(t)
		spans := make(chan string, 16)
		otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case spans <- r.Method + " " + r.URL.Path:
			default:
			}
		}))
		t.Cleanup(otlp.Close)
		sc, cfg, listen, admin := render(t, fmt.Sprintf("  accessLog: {enabled: true, format: json, sample: 0}\n  tracing: {endpoint: %q, serviceName: chart-test}\n", otlp.URL))
		s := startSidecar(t, bin, sc, cfg, "")
		g.Eventually(httpStatus(fmt.Sprintf("http://127.0.0.1:%d/readyz", admin)), 20*time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK))
		g.Expect(httpStatus(fmt.Sprintf("http://127.0.0.1:%d/nowhere/x?secret=1", listen))()).To(Equal(http.StatusForbidden))
		g.Eventually(s.Out, 20*time.Second).Should(gbytes.Say(`"listener":"proxy","route":"","method":"GET","path":"/nowhere/x","status":403,.*"reason":"not-a-route"`))
		g.Eventually(spans, 30*time.Second).Should(Receive(Equal("POST /v1/traces")))
		g.Expect(string(s.Out.Contents())).NotTo(ContainSubstring("secret=1"))
		s.Signal(syscall.SIGTERM)
		g.Eventually(s, 30*time.Second).Should(gexec.Exit(0))
	})

	t.Run("without allow_non_loopback the admin address is refused", func(t *testing.T) {
		g := NewWithT(t)
		sc, cfg, _, _ := render(t, "")
		g.Expect(cfg).To(ContainSubstring("allow_non_loopback: true\n"))
		s := startSidecar(t, bin, sc, strings.Replace(cfg, "allow_non_loopback: true\n", "", 1), "")
		g.Eventually(s, 20*time.Second).Should(gexec.Exit(2))
		g.Expect(s.Err).To(gbytes.Say("allow_non_loopback"))
	})

	t.Run("pairing at start, then the pair as an existing Secret", func(t *testing.T) {
		g := NewWithT(t)
		mockDir := t.TempDir()
		mock, err := gexec.Start(exec.Command(bin, "mock", "--dir", mockDir), gexec.NewPrefixedWriter("[mock] ", os.Stderr), gexec.NewPrefixedWriter("[mock] ", os.Stderr))
		g.Expect(err).NotTo(HaveOccurred())
		t.Cleanup(func() {
			mock.Kill()
			<-mock.Exited
		})
		g.Eventually(func() error { _, err := os.Stat(filepath.Join(mockDir, "mock.json")); return err }, 30*time.Second, 50*time.Millisecond).Should(Succeed())
		pairingURL, err := os.ReadFile(filepath.Join(mockDir, "pairing-url"))
		g.Expect(err).NotTo(HaveOccurred())

		// The pod's mounts, as directories: the memory-backed emptyDir for the
		// pair, and the pairing Secret's key as a file.
		tmp := t.TempDir()
		certRoot := filepath.Join(tmp, "certs")
		g.Expect(os.MkdirAll(filepath.Join(certRoot, "connector"), 0o700)).To(Succeed())
		pairingRoot := filepath.Join(tmp, "pairing")
		g.Expect(os.MkdirAll(filepath.Join(pairingRoot, "connector"), 0o700)).To(Succeed())
		g.Expect(os.WriteFile(filepath.Join(pairingRoot, "connector", "pairing-url"), pairingURL, 0o600)).To(Succeed())

		sc, cfg, _, admin := render(t, fmt.Sprintf(`
  certificateRoot: %s
  certificates:
    - {name: connector, pairing: {secretName: connector-pairing}}
  config:
    ca_file: %s
    routes:
      - {name: events, upstream: "https://gateway.example.com", auth: {type: mtls, certificate: connector}}
`, certRoot, filepath.Join(mockDir, "ca.crt")))
		g.Expect(cfg).To(ContainSubstring("/etc/credbroker/pairing/connector/pairing-url"))
		cfg = strings.ReplaceAll(cfg, "/etc/credbroker/pairing", pairingRoot)
		s := startSidecar(t, bin, sc, cfg, "")
		g.Eventually(httpStatus(fmt.Sprintf("http://127.0.0.1:%d/readyz", admin)), 30*time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK))
		for _, f := range []string{"tls.crt", "tls.key", "ca.crt", "connection.json"} {
			g.Expect(filepath.Join(certRoot, "connector", f)).To(BeARegularFile())
		}
		fi, err := os.Stat(filepath.Join(certRoot, "connector", "tls.key"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(fi.Mode().Perm()).To(Equal(os.FileMode(0o600)))
		s.Signal(syscall.SIGTERM)
		g.Eventually(s, 30*time.Second).Should(gexec.Exit(0))
		token := strings.TrimSpace(string(pairingURL))
		if i := strings.Index(token, "token="); i >= 0 {
			token = token[i+len("token="):]
		}
		g.Expect(len(token)).To(BeNumerically(">=", 8), "the one-time token in %s", mockDir)
		g.Expect(string(s.Out.Contents()) + string(s.Err.Contents())).NotTo(ContainSubstring(token))

		// The same pair as an existing Secret (renew: false), as a new pod
		// would read it.
		sc, cfg, _, admin = render(t, fmt.Sprintf(`
  certificateRoot: %s
  certificates:
    - {name: connector, existingSecret: connector-pair}
  config:
    ca_file: %s
    routes:
      - {name: events, upstream: "https://gateway.example.com", auth: {type: mtls, certificate: connector}}
`, certRoot, filepath.Join(mockDir, "ca.crt")))
		g.Expect(cfg).To(ContainSubstring("renew: false"))
		s = startSidecar(t, bin, sc, cfg, "")
		g.Eventually(httpStatus(fmt.Sprintf("http://127.0.0.1:%d/readyz", admin)), 30*time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK))
		s.Signal(syscall.SIGTERM)
		g.Eventually(s, 30*time.Second).Should(gexec.Exit(0))
	})

	t.Run("two-phase pairing: both certificates land in their emptyDirs", func(t *testing.T) {
		g := NewWithT(t)
		mockDir := t.TempDir()
		mock, err := gexec.Start(exec.Command(bin, "mock", "--two-phase", "--dir", mockDir), gexec.NewPrefixedWriter("[mock] ", os.Stderr), gexec.NewPrefixedWriter("[mock] ", os.Stderr))
		g.Expect(err).NotTo(HaveOccurred())
		t.Cleanup(func() {
			mock.Kill()
			<-mock.Exited
		})
		g.Eventually(func() error { _, err := os.Stat(filepath.Join(mockDir, "mock.json")); return err }, 30*time.Second, 50*time.Millisecond).Should(Succeed())
		pairingURL, err := os.ReadFile(filepath.Join(mockDir, "pairing-url"))
		g.Expect(err).NotTo(HaveOccurred())

		tmp := t.TempDir()
		certRoot := filepath.Join(tmp, "certs")
		for _, d := range []string{"connector", "connector-runtime"} {
			g.Expect(os.MkdirAll(filepath.Join(certRoot, d), 0o700)).To(Succeed())
		}
		pairingRoot := filepath.Join(tmp, "pairing")
		g.Expect(os.MkdirAll(filepath.Join(pairingRoot, "connector"), 0o700)).To(Succeed())
		g.Expect(os.WriteFile(filepath.Join(pairingRoot, "connector", "pairing-url"), pairingURL, 0o600)).To(Succeed())

		sc, cfg, _, admin := render(t, fmt.Sprintf(`
  certificateRoot: %s
  certificates:
    - {name: connector, pairing: {secretName: connector-pairing}, twoPhase: true}
  config:
    ca_file: %s
    routes:
      - {name: events, upstream: "https://gateway.example.com", auth: {type: mtls, certificate: connector-runtime}}
`, certRoot, filepath.Join(mockDir, "ca.crt")))
		s := startSidecar(t, bin, sc, strings.ReplaceAll(cfg, "/etc/credbroker/pairing", pairingRoot), "")
		g.Eventually(httpStatus(fmt.Sprintf("http://127.0.0.1:%d/readyz", admin)), 30*time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK))
		for _, d := range []string{"connector", "connector-runtime"} {
			g.Expect(filepath.Join(certRoot, d, "tls.crt")).To(BeARegularFile())
			g.Expect(filepath.Join(certRoot, d, "tls.key")).To(BeARegularFile())
		}
		s.Signal(syscall.SIGTERM)
		g.Eventually(s, 30*time.Second).Should(gexec.Exit(0))
	})

	t.Run("destination routes against the mock's Destination service and Connectivity proxy: ready and serving", func(t *testing.T) {
		g := NewWithT(t)
		mockDir := t.TempDir()
		mock, err := gexec.Start(exec.Command(bin, "mock", "--destinations", "--dir", mockDir), gexec.NewPrefixedWriter("[mock] ", os.Stderr), gexec.NewPrefixedWriter("[mock] ", os.Stderr))
		g.Expect(err).NotTo(HaveOccurred())
		t.Cleanup(func() {
			mock.Kill()
			<-mock.Exited
		})
		g.Eventually(func() error { _, err := os.Stat(filepath.Join(mockDir, "mock.json")); return err }, 30*time.Second, 50*time.Millisecond).Should(Succeed())
		var info struct {
			AdminURL string `json:"admin_url"`
		}
		raw, err := os.ReadFile(filepath.Join(mockDir, "mock.json"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(json.Unmarshal(raw, &info)).To(Succeed())

		// The destination's target: a plain-HTTP server on loopback.
		seen := make(chan string, 4)
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen <- r.URL.Path
			_, _ = io.WriteString(w, "ok")
		}))
		t.Cleanup(up.Close)
		seed := `{"tenant": "provider", "properties": {"Name": "web", "URL": "` + up.URL + `/base", "Authentication": "NoAuthentication"}}`
		resp, err := http.Post(info.AdminURL+"/mock/destinations", "application/json", strings.NewReader(seed))
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusCreated))

		sc, cfg, listen, admin := render(t, fmt.Sprintf(`
  extraArgs: [--vcap-file, %q]
  config:
    ca_file: %q
  destinations:
    routes:
      - {name: web, destination: web, binding: destination, connectivity: connectivity, tenant_header: X-Tenant, tenant_mode: subscriber-first}
    connectivityProxy: {host: 127.0.0.1, port: 1}
    cache: {ttl: 2m, skew: 10s, refresh_ahead: 30s, max_entries: 100}
`, filepath.Join(mockDir, "vcap.json"), filepath.Join(mockDir, "ca.crt")))
		g.Expect(cfg).To(ContainSubstring("type: destination"))
		s := startSidecar(t, bin, sc, cfg, "")
		// Ready: tokens of the destination and the connectivity binding were had.
		g.Eventually(httpStatus(fmt.Sprintf("http://127.0.0.1:%d/readyz", admin)), 30*time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK))
		g.Expect(httpStatus(fmt.Sprintf("http://127.0.0.1:%d/web/hello", listen))()).To(Equal(http.StatusOK))
		g.Expect(<-seen).To(Equal("/base/hello"))
		s.Signal(syscall.SIGTERM)
		g.Eventually(s, 30*time.Second).Should(gexec.Exit(0))
	})

	t.Run("bindings, every config key and the inbound guard over TLS: accepted and serving", func(t *testing.T) {
		g := NewWithT(t)
		const planted = "planted-client-secret-7f3a9c"
		root := t.TempDir()
		b := filepath.Join(root, "my-xsuaa")
		g.Expect(os.Mkdir(b, 0o700)).To(Succeed())
		for k, v := range map[string]string{
			"type":         "xsuaa",
			"plan":         "application",
			"clientid":     "sb-shop!t1",
			"clientsecret": planted,
			"url":          "https://shop.authentication.localhost:1",
			"uaadomain":    "authentication.localhost:1",
			"xsappname":    "shop!t1",
		} {
			g.Expect(os.WriteFile(filepath.Join(b, k), []byte(v+"\n"), 0o600)).To(Succeed())
		}
		// Every key values.schema.json lets through in sidecar.config and
		// sidecar.inbound, so a key the schema accepts but credbroker does not
		// know fails here (credbroker refuses unknown keys with exit 2).
		files := writeTrustFiles(t)
		inbound := freePort(t)
		sc, cfg, _, admin := render(t, fmt.Sprintf(`
  bindings: [{name: my-xsuaa, secretName: xsuaa-binding}]
  certificateRoot: %[6]q
  certificates: [{name: server, existingSecret: server-tls}]
  inbound:
    enabled: true
    port: %[1]d
    appPort: 8080
    tlsCertificate: server
    trustedProxies: [10.0.0.0/8]
    rules:
      - {path: /api/, accept: [jwt], binding: my-xsuaa, scopes: [read], allow_path_params: true}
      - {path: /aps/, accept: [oauth1], oauth1: {key_file: %[2]q, secret_file: %[3]q}}
      - {path: /callbacks/, accept: [mtls], ca_file: %[4]q, subjects: ["CN=controller"], sans: [controller.example.com], crl_file: %[5]q}
  config:
    ca_file: %[4]q
    resolve: ["orders.example.com=127.0.0.1"]
    drain_timeout: 5s
    timeouts: {dial: 2s, tls_handshake: 2s, response_header: 10s, idle_conn: 30s}
    max_idle_conns_per_host: 8
    max_signed_body: 65536
    token_api: {bindings: ["*"]}
    routes:
      - {name: orders, upstream: "https://orders.example.com", auth: {type: bearer, binding: my-xsuaa, scopes: [orders.read], grant: client_credentials, tenant: shop, tenant_header: X-Tenant, replace_app_credentials: false}}
      - {name: users, upstream: "https://users.example.com", auth: {type: bearer, binding: my-xsuaa, grant: jwt-bearer}}
      - {name: aps, upstream: "https://aps.example.com", auth: {type: oauth1, key_file: %[2]q, secret_file: %[3]q}}
      - {name: plain, upstream: "http://plain.example.com", auth: {type: none}}
`, inbound, files.key, files.secret, files.ca, files.crl, files.certRoot))
		g.Expect(sc.Env).To(ContainElement(HaveField("Name", "SERVICE_BINDING_ROOT")))
		s := startSidecar(t, bin, sc, cfg, root)
		g.Eventually(httpStatus(fmt.Sprintf("http://127.0.0.1:%d/healthz", admin)), 20*time.Second, 50*time.Millisecond).Should(Equal(http.StatusOK))
		g.Consistently(s, time.Second).ShouldNot(gexec.Exit(), "a config or binding error would exit 2")
		// The inbound guard listens on the port the Service targets and
		// refuses calls without a credential, and paths no rule covers.
		guard := fmt.Sprintf("https://127.0.0.1:%d", inbound)
		g.Eventually(httpsStatus(files.ca, "shop.example.com", guard+"/api/orders"), 20*time.Second, 50*time.Millisecond).Should(Equal(http.StatusUnauthorized))
		g.Expect(httpsStatus(files.ca, "shop.example.com", guard+"/elsewhere")()).To(Equal(http.StatusForbidden))
		// No token service: not ready, so in native mode the app would not start yet.
		g.Eventually(httpStatus(fmt.Sprintf("http://127.0.0.1:%d/readyz", admin)), 20*time.Second, 50*time.Millisecond).Should(Equal(http.StatusServiceUnavailable))
		s.Signal(syscall.SIGTERM)
		g.Eventually(s, 30*time.Second).Should(gexec.Exit())
		g.Expect(string(s.Out.Contents()) + string(s.Err.Contents())).NotTo(ContainSubstring(planted))
	})
}
