package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/mockauth"
	"github.com/credbroker/credbroker/oauth1"
	"github.com/credbroker/credbroker/sidecar"
)

// DemoOptions are the flags of `credbroker demo`.
type DemoOptions struct {
	Listen      string `flag:"listen" env:"CREDBROKER_DEMO_LISTEN" usage:"proxy address; a free port is picked when it is taken" default:"127.0.0.1:8411"`
	AdminListen string `flag:"admin-listen" env:"CREDBROKER_DEMO_ADMIN_LISTEN" usage:"admin address; a free port is picked when it is taken" default:"127.0.0.1:9411"`
	Once        bool   `flag:"once" env:"CREDBROKER_DEMO_ONCE" usage:"make the sample calls, print the results and exit (instead of serving until Ctrl-C)"`
}

func init() {
	register(&command{
		name:       "demo",
		summary:    "the whole sidecar on the embedded mock: a sample upstream, one route of each kind, a few calls; then serves until Ctrl-C",
		usage:      "[--listen ADDR] [--admin-listen ADDR] [--once]",
		newOptions: func() any { return &DemoOptions{} },
		run: func(ctx context.Context, e *cmdEnv, opts any) error {
			return runDemo(ctx, e, opts.(*DemoOptions))
		},
	})
}

// Demo OAuth 1.0a consumer key (the secret is random per run).
const demoConsumerKey = "demo-connector"

func runDemo(ctx context.Context, e *cmdEnv, o *DemoOptions) error {
	if len(e.args) > 0 {
		return badInputf("unexpected argument %q", e.args[0])
	}
	listen, err := freeOr(o.Listen)
	if err != nil {
		return badInputf("--listen %s: %v", o.Listen, err)
	}
	adminListen, err := freeOr(o.AdminListen)
	if err != nil {
		return badInputf("--admin-listen %s: %v", o.AdminListen, err)
	}
	dir, err := os.MkdirTemp("", "credbroker-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintln(e.stdout, "credbroker demo: starting the mock auth server, a sample upstream and the sidecar…")
	mock, err := mockauth.Start(mockauth.Options{Destinations: true})
	if err != nil {
		return fmt.Errorf("starting the mock: %w", err)
	}
	defer mock.Close()
	if err := seedDemoDestinations(mock); err != nil {
		return err
	}
	pairingURL, _, err := mock.NewPairingToken("demo-app")
	if err != nil {
		return err
	}

	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	oauthSecret := hex.EncodeToString(secret)
	up, err := startDemoUpstream(mock.ConnectorCAPEM(), oauthSecret)
	if err != nil {
		return fmt.Errorf("starting the sample upstream: %w", err)
	}
	defer up.close()

	files := map[string][]byte{
		"vcap.json":       mock.VCAPServices(),
		"ca.crt":          append(append([]byte{}, mock.CACertPEM()...), up.caPEM...),
		"pairing-url":     []byte(pairingURL + "\n"),
		"oauth1-key":      []byte(demoConsumerKey + "\n"),
		"oauth1-secret":   []byte(oauthSecret + "\n"),
		"credbroker.yaml": []byte(demoConfig(dir, listen, adminListen, up.url)),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}

	ro := &RunOptions{
		BindingSourceOptions: BindingSourceOptions{VCAPFile: filepath.Join(dir, "vcap.json")},
		Config:               filepath.Join(dir, "credbroker.yaml"),
		PollInterval:         30 * time.Second,
	}
	metrics := sidecar.NewMetrics()
	comp, err := broker.New(ro.brokerOptions(), broker.WithLogger(e.log), broker.WithMetrics(metrics))
	if err != nil {
		return err
	}
	defer comp.Close()
	srv := sidecar.NewServer(comp.Load, sidecar.WithLogger(e.log), sidecar.WithMetrics(metrics))
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- srv.Run(sctx) }()
	select {
	case <-srv.Started():
	case err := <-done:
		if err == nil {
			err = errors.New("the sidecar stopped")
		}
		return fmt.Errorf("starting the sidecar: %w", err)
	}

	proxy, admin := "http://"+srv.Addr(), "http://"+srv.AdminAddr()
	fmt.Fprintf(e.stdout, "\n  proxy (routes, token API)  %s\n  admin (health, metrics)    %s\n  mock auth server           %s\n  sample upstream            %s\n\n", proxy, admin, mock.Info().URL, up.url)
	failed := demoCalls(ctx, e.stdout, proxy, admin, up.url)
	failed += demoDestinationCalls(ctx, e.stdout, proxy)

	fmt.Fprintf(e.stdout, "\nTry it:\n")
	for _, c := range []string{
		"curl -s " + proxy + "/orders/items | jq .                      # bearer: a token of binding xsuaa-secret",
		"curl -s -H 'X-Tenant: subscriber1' " + proxy + "/orders/items | jq .   # the same for a subscriber tenant",
		"curl -s " + proxy + "/events/topics | jq .                     # mtls: the certificate paired with the mock connector",
		"curl -s -X POST -H 'Content-Type: application/json' -d '{\"n\":1}' " + proxy + "/controller/jobs | jq .   # oauth1",
		"curl -s " + proxy + "/public/hello | jq .                      # none",
		"curl -s " + proxy + "/s4/A_BusinessPartner | jq .              # destination (Internet): URL and token from the Destination service",
		"curl -s " + proxy + "/erp/orders | jq .                        # destination (OnPremise): through the Connectivity proxy",
		"curl -s -x " + proxy + " " + strings.Replace(up.url, "https://", "http://", 1) + "/orders/items | jq .   # as HTTP_PROXY",
		"curl -s '" + proxy + sidecar.TokenAPIPath + "?binding=xsuaa-secret' | jq .   # the token API",
		"curl -s -i " + proxy + "/admin                                 # not a route: 403",
		"curl -s " + admin + "/readyz; curl -s " + admin + "/status | jq .; curl -s " + admin + "/metrics | grep credbroker_",
	} {
		fmt.Fprintln(e.stdout, "  "+c)
	}
	fmt.Fprintf(e.stdout, "\nThe config is %s (the directory is removed on exit).\n", filepath.Join(dir, "credbroker.yaml"))
	if o.Once {
		stop()
		if err := <-done; err != nil {
			return err
		}
		if failed > 0 {
			return fmt.Errorf("%d of the sample calls failed", failed)
		}
		return nil
	}
	fmt.Fprintln(e.stdout, "Serving until Ctrl-C.")
	err = <-done
	if failed > 0 && err == nil {
		return fmt.Errorf("%d of the sample calls failed", failed)
	}
	return err
}

// freeOr returns addr when it can be listened on, else the same host with a
// free port.
func freeOr(addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if l, err := net.Listen("tcp", addr); err == nil {
		l.Close()
		return addr, nil
	}
	return net.JoinHostPort(host, "0"), nil
}

func demoConfig(dir, listen, admin, upstream string) string {
	return fmt.Sprintf(`# written by credbroker demo
listen: %[2]s
admin_listen: %[3]s
ca_file: %[1]s/ca.crt            # the mock's and the sample upstream's CA
token_api:
  bindings: [xsuaa-secret]
certificates:
  - name: connector
    dir: %[1]s/connector
    pairing_url_file: %[1]s/pairing-url
    renew: true
routes:
  - name: orders
    upstream: %[4]s/orders
    auth: {type: bearer, binding: xsuaa-secret, tenant_header: X-Tenant}
  - name: events
    upstream: %[4]s/events
    auth: {type: mtls, certificate: connector}
  - name: controller
    upstream: %[4]s/controller
    auth: {type: oauth1, key_file: %[1]s/oauth1-key, secret_file: %[1]s/oauth1-secret}
  - name: public
    upstream: %[4]s/public
    auth: {type: none}
`+demoDestinationRoutes, dir, listen, admin, upstream)
}

// demoEcho is what the sample upstream answers: what it received, with the
// credential described rather than shown.
type demoEcho struct {
	Method        string `json:"method"`
	Path          string `json:"path"`
	Authorization string `json:"authorization"`
	ClientCert    string `json:"client_certificate,omitempty"`
	OAuth1        string `json:"oauth1,omitempty"`
	Body          string `json:"body,omitempty"`
}

type demoUpstream struct {
	url   string
	caPEM []byte
	srv   *http.Server
}

func (u *demoUpstream) close() { _ = u.srv.Close() }

// startDemoUpstream serves https://upstream.localhost:PORT with a
// certificate from a CA of its own; it verifies client certificates from the
// connector's CA when one is presented and OAuth 1.0a signatures of the demo
// consumer.
func startDemoUpstream(connectorCAPEM []byte, oauthSecret string) (*demoUpstream, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "credbroker demo upstream CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "upstream.localhost"},
		DNSNames: []string{"upstream.localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, err
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AppendCertsFromPEM(connectorCAPEM)
	verifier, err := oauth1.NewVerifier(oauth1.StaticSecret(demoConsumerKey, oauthSecret))
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	external := "https://upstream.localhost:" + port
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		echo := demoEcho{Method: r.Method, Path: r.URL.Path, Authorization: describeAuthorization(r.Header.Get("Authorization"))}
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			echo.ClientCert = r.TLS.PeerCertificates[0].Subject.String() + " (verified against the connector CA)"
		}
		if strings.HasPrefix(r.Header.Get("Authorization"), "OAuth ") {
			u, _ := url.Parse(external)
			res, err := verifier.VerifyRequest(r, oauth1.RequestURL(r, u.Scheme, u.Host))
			if err != nil {
				echo.OAuth1 = "signature refused: " + err.Error()
			} else {
				echo.OAuth1 = "signature valid for consumer key " + res.ConsumerKey
			}
		}
		if b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<10)); len(b) > 0 {
			echo.Body = string(b)
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(echo)
	})
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    clientCAs,
			MinVersion:   tls.VersionTLS12,
		},
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	caPEM := pemEncode("CERTIFICATE", caDER)
	return &demoUpstream{url: external, caPEM: caPEM, srv: srv}, nil
}

func pemEncode(typ string, der []byte) []byte {
	b64 := base64.StdEncoding.EncodeToString(der)
	var sb strings.Builder
	sb.WriteString("-----BEGIN " + typ + "-----\n")
	for len(b64) > 64 {
		sb.WriteString(b64[:64] + "\n")
		b64 = b64[64:]
	}
	sb.WriteString(b64 + "\n-----END " + typ + "-----\n")
	return []byte(sb.String())
}

// describeAuthorization says what an Authorization header carries without
// showing the credential: for a JWT its claims that identify the client.
func describeAuthorization(h string) string {
	scheme, cred, _ := strings.Cut(h, " ")
	switch {
	case h == "":
		return "(none)"
	case strings.EqualFold(scheme, "Bearer"):
		parts := strings.Split(cred, ".")
		if len(parts) != 3 {
			return "Bearer (opaque token)"
		}
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			return "Bearer (token)"
		}
		var c struct {
			ClientID string `json:"client_id"`
			ZID      string `json:"zid"`
			Scope    []string
			Exp      int64 `json:"exp"`
			Ext      struct {
				ZDN string `json:"zdn"`
			} `json:"ext_attr"`
		}
		_ = json.Unmarshal(payload, &c)
		return fmt.Sprintf("Bearer JWT (client_id %s, tenant %s, %d scopes, expires %s)", c.ClientID, c.Ext.ZDN, len(c.Scope), time.Unix(c.Exp, 0).UTC().Format(time.RFC3339))
	case strings.EqualFold(scheme, "OAuth"):
		return "OAuth 1.0a (HMAC-SHA1)"
	}
	return scheme + " (…)"
}

// demoCalls makes one call through each route and prints the outcome; it
// returns the number of calls that failed.
func demoCalls(ctx context.Context, w io.Writer, proxy, admin, upstream string) int {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}
	failed := 0
	authNote := map[string]string{
		"none     GET /public/hello": " — the app's own header, passed through unchanged (auth: none)",
	}
	call := func(label, method, u, body string, hdr map[string]string, proxied bool) {
		c := client
		if proxied {
			pu, _ := url.Parse(proxy)
			c = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
		}
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequestWithContext(ctx, method, u, rd)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			failed++
			fmt.Fprintf(w, "✗ %-34s %v\n", label, err)
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		var echo demoEcho
		if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &echo) != nil {
			failed++
			fmt.Fprintf(w, "✗ %-34s %d %s %s\n", label, resp.StatusCode, resp.Header.Get(sidecar.HeaderError), strings.TrimSpace(string(data)))
			return
		}
		fmt.Fprintf(w, "✓ %-34s upstream got %s %s\n", label, echo.Method, echo.Path)
		fmt.Fprintf(w, "    Authorization: %s%s\n", echo.Authorization, authNote[label])
		if echo.ClientCert != "" {
			fmt.Fprintf(w, "    client certificate: %s\n", echo.ClientCert)
		}
		if echo.OAuth1 != "" {
			fmt.Fprintf(w, "    OAuth 1.0a: %s\n", echo.OAuth1)
		}
	}
	call("bearer   GET /orders/items", "GET", proxy+"/orders/items", "", nil, false)
	call("bearer   (X-Tenant: subscriber1)", "GET", proxy+"/orders/items", "", map[string]string{"X-Tenant": "subscriber1"}, false)
	call("mtls     GET /events/topics", "GET", proxy+"/events/topics", "", nil, false)
	call("oauth1   POST /controller/jobs", "POST", proxy+"/controller/jobs", `{"job":"sync"}`, map[string]string{"Content-Type": "application/json"}, false)
	call("none     GET /public/hello", "GET", proxy+"/public/hello", "", map[string]string{"Authorization": "Bearer app-own"}, false)
	call("HTTP_PROXY http://…/orders/items", "GET", strings.Replace(upstream, "https://", "http://", 1)+"/orders/items", "", nil, true)

	// Not a route: refused.
	if resp, err := client.Get(proxy + "/admin"); err == nil {
		resp.Body.Close()
		mark := "✓"
		if resp.StatusCode != http.StatusForbidden {
			mark, failed = "✗", failed+1
		}
		fmt.Fprintf(w, "%s %-34s %d (%s)\n", mark, "not a route  GET /admin", resp.StatusCode, resp.Header.Get(sidecar.HeaderError))
	}
	// The token API.
	if resp, err := client.Get(proxy + sidecar.TokenAPIPath + "?binding=xsuaa-secret"); err == nil {
		var tr sidecar.TokenResponse
		_ = json.NewDecoder(resp.Body).Decode(&tr)
		resp.Body.Close()
		mark := "✓"
		if resp.StatusCode != http.StatusOK || tr.AccessToken == "" {
			mark, failed = "✗", failed+1
		}
		fmt.Fprintf(w, "%s %-34s %d, a %s token expiring %s\n", mark, "token API  ?binding=xsuaa-secret", resp.StatusCode, tr.TokenType, tr.ExpiresAt)
	}
	if resp, err := client.Get(admin + "/readyz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Fprintf(w, "  %-34s %d %s\n", "admin /readyz", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return failed
}
