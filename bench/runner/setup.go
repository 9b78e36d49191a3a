package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/credbroker/credbroker/internal/testpki"
)

// body is the upstream's fixed small response.
var body = []byte("hello from the upstream\n")

func upstreamHandler(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// serve starts an upstream on loopback; with tlsConf it speaks TLS.
func serve(tlsConf *tls.Config) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: http.HandlerFunc(upstreamHandler), ReadHeaderTimeout: 10 * time.Second}
	if tlsConf != nil {
		go func() { _ = srv.Serve(tls.NewListener(l, tlsConf)) }()
	} else {
		go func() { _ = srv.Serve(l) }()
	}
	return l.Addr().String(), nil
}

func setUp(ctx context.Context, o options, tmp string, procs *procList) (*env, error) {
	bin, err := filepath.Abs(o.credbroker)
	if err != nil {
		return nil, err
	}
	plainAddr, err := serve(nil)
	if err != nil {
		return nil, err
	}

	// 1. The mock auth server: token service and connector.
	mockDir := filepath.Join(tmp, "mock")
	mock := exec.CommandContext(ctx, bin, "mock", "--dir", mockDir, "--token-ttl", "1h", "--cert-ttl", "24h")
	mock.Stderr, mock.Stdout = logWriter("mock"), logWriter("mock")
	if err := procs.start(mock); err != nil {
		return nil, fmt.Errorf("start credbroker mock: %w", err)
	}
	if err := waitFor(ctx, "mock.json", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(mockDir, "mock.json"))
		return err == nil
	}); err != nil {
		return nil, err
	}

	// 2. A client certificate from the mock connector, for the mtls route.
	certDir := filepath.Join(tmp, "connector")
	tokenURL, err := os.ReadFile(filepath.Join(mockDir, "pairing-url"))
	if err != nil {
		return nil, err
	}
	pair := exec.CommandContext(ctx, bin, "pair", "--token-url", strings.TrimSpace(string(tokenURL)),
		"--cert-dir", certDir, "--ca-file", filepath.Join(mockDir, "ca.crt")) // the key type the connector announces (RSA, as Kyma's)
	if out, err := pair.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("credbroker pair: %v\n%s", err, out)
	}

	// 3. The mTLS upstream: its own server certificate, client certificates
	// from the connector's CA.
	upCA := testpki.NewCA()
	// One CA bundle for credbroker: the upstream's CA and the mock's.
	mockCA, err := os.ReadFile(filepath.Join(mockDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	caBundle := filepath.Join(tmp, "ca-bundle.crt")
	if err := os.WriteFile(caBundle, append(upCA.CertPEM(), mockCA...), 0o644); err != nil {
		return nil, err
	}
	connectorCA, err := os.ReadFile(filepath.Join(certDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM(connectorCA) {
		return nil, fmt.Errorf("no certificate in %s", filepath.Join(certDir, "ca.crt"))
	}
	tlsAddr, err := serve(testpki.ServerTLSConfig(upCA.Issue(testpki.WithIPs("127.0.0.1"), testpki.WithDNSNames("localhost")), clientCAs))
	if err != nil {
		return nil, err
	}

	// 4. OAuth 1.0a consumer key and secret.
	keyFile, secretFile := filepath.Join(tmp, "oauth1.key"), filepath.Join(tmp, "oauth1.secret")
	if err := os.WriteFile(keyFile, []byte("bench-consumer"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(secretFile, []byte("bench-consumer-secret"), 0o600); err != nil {
		return nil, err
	}

	// 5. credbroker run.
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	cfgFile := filepath.Join(tmp, "credbroker.yaml")
	cfg := sidecarConfig(listen, admin, plainAddr, tlsAddr, certDir, keyFile, secretFile, caBundle)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	e := &env{adminURL: fmt.Sprintf("http://127.0.0.1:%d", admin)}
	e.runArgs = []string{"run", "--config", cfgFile, "--vcap-file", filepath.Join(mockDir, "vcap.json"), "--log-level", "warn"}
	var sidecar *exec.Cmd
	e.bin = bin
	e.stopSidecar = func() error {
		if sidecar == nil {
			return nil
		}
		_ = sidecar.Process.Signal(os.Interrupt)
		err := sidecar.Wait()
		sidecar = nil
		return err
	}
	startSidecar := func(ctx context.Context) (time.Duration, error) {
		_ = e.stopSidecar()
		sidecar = exec.CommandContext(ctx, bin, e.runArgs...)
		sidecar.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(2))
		sidecar.Stderr, sidecar.Stdout = logWriter("credbroker"), logWriter("credbroker")
		start := time.Now()
		if err := procs.start(sidecar); err != nil {
			return 0, fmt.Errorf("start credbroker run: %w", err)
		}
		if err := waitFor(ctx, "credbroker /readyz", 30*time.Second, func() bool { return httpOK(e.adminURL + "/readyz") }); err != nil {
			return 0, err
		}
		return time.Since(start), nil
	}
	if _, err := startSidecar(ctx); err != nil {
		return nil, err
	}
	e.restart = startSidecar
	e.sidecarPID = func() int { return sidecar.Process.Pid }

	// 5b. The same configuration with tracing on at 1 % sampling
	// (parentbased_traceidratio), exporting over OTLP/HTTP to a sink that
	// discards: the bearer route through it is the tracing row.
	traced, err := startTraced(ctx, tmp, bin, plainAddr, tlsAddr, certDir, keyFile, secretFile, caBundle, filepath.Join(mockDir, "vcap.json"), procs)
	if err != nil {
		return nil, err
	}
	e.traced = traced

	// 6. nginx: reverse proxy with a fixed Authorization header, keep-alive to the upstream.
	ngPort, err := freePort()
	if err != nil {
		return nil, err
	}
	ngDir := filepath.Join(tmp, "nginx")
	if err := os.MkdirAll(ngDir, 0o777); err != nil {
		return nil, err
	}
	_ = os.Chmod(tmp, 0o755)
	ngTLSPort, err := freePort()
	if err != nil {
		return nil, err
	}
	// The header nginx adds is a token of the bearer route's binding,
	// fetched from the mock like the route's own: the same job means the
	// same bytes on the wire (a JWT of several hundred bytes, not a short
	// placeholder).
	tok, err := exec.CommandContext(ctx, bin, "token", "--vcap-file", filepath.Join(mockDir, "vcap.json"),
		"--binding", "xsuaa-secret", "--ca-file", filepath.Join(mockDir, "ca.crt"), "--log-level", "error").Output()
	if err != nil {
		return nil, fmt.Errorf("credbroker token for nginx's header: %v", err)
	}
	e.baselineToken = strings.TrimSpace(string(tok))
	wrkHeaders["http://"+plainAddr+"/"] = "Authorization: Bearer " + e.baselineToken
	ngConf := nginxConfig(ngDir, ngPort, plainAddr, ngTLSPort, tlsAddr, certDir, caBundle, e.baselineToken)
	if err := os.WriteFile(filepath.Join(ngDir, "nginx.conf"), []byte(ngConf), 0o644); err != nil {
		return nil, err
	}
	ng := exec.CommandContext(ctx, "nginx", "-p", ngDir, "-c", filepath.Join(ngDir, "nginx.conf"))
	ng.Stderr, ng.Stdout = logWriter("nginx"), logWriter("nginx")
	if err := procs.start(ng); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	ngURL := fmt.Sprintf("http://127.0.0.1:%d/", ngPort)
	if err := waitFor(ctx, "nginx", 10*time.Second, func() bool { return httpOK(ngURL) }); err != nil {
		return nil, err
	}
	ngPID := ng.Process.Pid
	e.nginxPIDs = func() []int { return append(childPIDs(ngPID), ngPID) }

	cb := fmt.Sprintf("http://127.0.0.1:%d", listen)
	e.targets = []target{
		{"direct", "http://" + plainAddr + "/"},
		{"nginx", ngURL},
		{"nginx-mtls", fmt.Sprintf("http://127.0.0.1:%d/", ngTLSPort)},
		{"credbroker-none", cb + "/none/"},
		{"credbroker-bearer", cb + "/bearer/"},
		{"credbroker-mtls", cb + "/mtls/"},
		{"credbroker-oauth1", cb + "/oauth1/"},
		{tracedTarget, traced.url + "/bearer/"},
	}
	// 7. The fasthttp reference proxy, when given (cpuprofile.go).
	refURL, refPID, err := startFasthttpRef(ctx, o, plainAddr, e.baselineToken, procs)
	if err != nil {
		return nil, err
	}
	if refURL != "" {
		e.targets, e.fasthttpPID = append(e.targets, target{fasthttpTarget, refURL}), refPID
	}
	for _, t := range e.targets {
		if !httpOK(t.url) {
			return nil, fmt.Errorf("%s (%s) does not answer 200 before the run", t.name, t.url)
		}
	}
	return e, nil
}

// sidecarConfig is the credbroker run configuration under test: one route of
// each kind, all to the same upstream.
func sidecarConfig(listen, admin int, plainAddr, tlsAddr, certDir, keyFile, secretFile, caBundle string) string {
	return fmt.Sprintf(`listen: 127.0.0.1:%[1]d
admin_listen: 127.0.0.1:%[2]d
ca_file: %[8]q
routes:
  - name: none
    upstream: http://%[3]s
    auth: {type: none}
  - name: bearer
    upstream: http://%[3]s
    auth: {type: bearer, binding: xsuaa-secret}
  - name: mtls
    upstream: https://%[4]s
    auth: {type: mtls, certificate: connector}
  - name: oauth1
    upstream: http://%[3]s
    auth: {type: oauth1, key_file: %[5]q, secret_file: %[6]q}
certificates:
  - name: connector
    dir: %[7]q
`, listen, admin, plainAddr, tlsAddr, keyFile, secretFile, certDir, caBundle)
}

// nginxConfig is the baseline: on port, a reverse proxy to the plain
// upstream adding a fixed Authorization header (the job of the none, bearer
// and oauth1 routes); on tlsPort, the same to the TLS upstream presenting
// the paired client certificate (the job of the mtls route). Both keep
// upstream connections alive.
func nginxConfig(dir string, port int, upstream string, tlsPort int, tlsUpstream, certDir, caBundle, token string) string {
	return fmt.Sprintf(`worker_processes auto;
daemon off;
master_process on;
user root;
pid %[1]s/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  upstream up {
    server %[3]s;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:%[2]d;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer %[8]s";
    }
  }
  upstream uptls {
    server %[4]s;
    keepalive 128;
  }
  server {
    listen 127.0.0.1:%[5]d;
    location / {
      proxy_pass https://uptls;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_certificate %[6]s/tls.crt;
      proxy_ssl_certificate_key %[6]s/tls.key;
      proxy_ssl_trusted_certificate %[7]s;
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }
  }
}
`, dir, port, upstream, tlsUpstream, tlsPort, certDir, caBundle, token)
}

// logWriter prefixes a child's lines and sends them to stderr only when
// BENCH_VERBOSE is set; otherwise they are dropped.
func logWriter(name string) *os.File {
	if os.Getenv("BENCH_VERBOSE") != "" {
		return os.Stderr
	}
	f, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	return f
}
