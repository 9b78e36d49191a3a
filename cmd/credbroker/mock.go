package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/credbroker/credbroker/mockauth"
)

// MockOptions are the flags of `credbroker mock`.
type MockOptions struct {
	Dir          string        `flag:"dir" env:"CREDBROKER_MOCK_DIR" usage:"directory to write vcap.json, ca.crt, pairing-url and mock.json to (created if missing)"`
	TokenTTL     time.Duration `flag:"token-ttl" env:"CREDBROKER_MOCK_TOKEN_TTL" usage:"access-token lifetime (expires_in)" default:"12h"`
	CertTTL      time.Duration `flag:"cert-ttl" env:"CREDBROKER_MOCK_CERT_TTL" usage:"lifetime of the connector's client certificates, down to seconds" default:"24h"`
	PairingTTL   time.Duration `flag:"pairing-ttl" env:"CREDBROKER_MOCK_PAIRING_TTL" usage:"lifetime of one-time pairing tokens" default:"5m"`
	TwoPhase     bool          `flag:"two-phase" env:"CREDBROKER_MOCK_TWO_PHASE" usage:"serve a central and a runtime connector, each with its own CA"`
	CARotation   bool          `flag:"connector-ca-rotation" env:"CREDBROKER_MOCK_CONNECTOR_CA_ROTATION" usage:"enable POST /mock/connector-ca {\"step\": \"add\"|\"switch\"|\"remove-old\"} to rotate the central connector's CA (docs/testing.md)"`
	Application  string        `flag:"application" env:"CREDBROKER_MOCK_APPLICATION" usage:"application name of the pairing-url token" default:"app1"`
	Destinations bool          `flag:"destinations" env:"CREDBROKER_MOCK_DESTINATIONS" usage:"also serve a Destination service and a Connectivity proxy (bindings destination and connectivity; seed with POST /mock/destinations, see docs/destinations.md)"`
	// ResourceServer serves an upstream that validates the mock's tokens.
	ResourceServer bool          `flag:"resource-server" env:"CREDBROKER_MOCK_RESOURCE_SERVER" usage:"also serve a resource server on https://api.localhost:PORT that validates the mock's tokens (401 Bearer error=\"invalid_token\" once revoked with POST /mock/revoke-tokens; POST /mock/resource makes it answer 403 or 401 to everything)"`
	HostsFile      string        `flag:"hosts-file" env:"CREDBROKER_MOCK_HOSTS_FILE" usage:"write 'ADDRESS NAME' lines for every host name the mock serves to this file (for /etc/hosts, Java's -Djdk.net.hosts.file, or a client's own lookup)"`
	Port443        string        `flag:"port443" env:"CREDBROKER_MOCK_PORT443" usage:"serve the HTTPS hosts on port 443 of 127.0.0.2-6 so that URLs and uaadomain carry no port: auto (when the process may bind them, else random ports), on (or fail), off" default:"auto"`
	BindingTTL     time.Duration `flag:"binding-cert-ttl" env:"CREDBROKER_MOCK_BINDING_CERT_TTL" usage:"lifetime of the x509 binding's certificate, to test its expiry" default:"168h"`
	ListenHost     string        `flag:"listen-host" env:"CREDBROKER_MOCK_LISTEN_HOST" usage:"IP address every listener binds (loopback only unless --allow-non-loopback)" default:"127.0.0.1"`
	// AllowNonLoopback lets the mock listen beyond loopback: its control
	// API hands every credential to anyone who can reach it.
	AllowNonLoopback bool `flag:"allow-non-loopback" env:"CREDBROKER_MOCK_ALLOW_NON_LOOPBACK" usage:"allow a --listen-host beyond loopback (the control API serves every credential without authentication)"`
}

// mockBanner is the first line the mock prints: it is a test server.
const mockBanner = "credbroker mock: TEST SERVER — NEVER EXPOSE IT: its control API hands out every credential without authentication"

// Files `credbroker mock --dir` writes.
const (
	mockVCAPFile       = "vcap.json"
	mockCAFile         = "ca.crt"
	mockPairingURLFile = "pairing-url"
	mockInfoFile       = "mock.json"
)

func init() {
	register(&command{
		name:       "mock",
		summary:    "run the mock auth server (XSUAA-style token service and connector) until SIGTERM",
		usage:      "[--dir DIR] [--cert-ttl D] [--token-ttl D] [--binding-cert-ttl D] [--two-phase] [--connector-ca-rotation] [--destinations] [--resource-server] [--application NAME] [--pairing-ttl D] [--hosts-file F] [--port443 auto|on|off] [--listen-host IP [--allow-non-loopback]]",
		newOptions: func() any { return &MockOptions{} },
		run: func(ctx context.Context, e *cmdEnv, opts any) error {
			return runMock(ctx, e, opts.(*MockOptions))
		},
	})
}

func (o *MockOptions) validate() error {
	ttls := []struct {
		name string
		v    time.Duration
	}{{"--token-ttl", o.TokenTTL}, {"--cert-ttl", o.CertTTL}, {"--pairing-ttl", o.PairingTTL}}
	if o.BindingTTL != 0 { // 0 (not from the flag, whose default is 168h): mockauth's default
		ttls = append(ttls, struct {
			name string
			v    time.Duration
		}{"--binding-cert-ttl", o.BindingTTL})
	}
	for _, d := range ttls {
		if d.v <= 0 {
			return badInputf("%s %s: must be positive", d.name, d.v)
		}
		if d.v < time.Second {
			return badInputf("%s %s: must be at least 1s", d.name, d.v)
		}
	}
	if _, err := mockauth.ParsePort443Mode(o.Port443); err != nil {
		return badInputf("--port443: %v", err)
	}
	host := o.ListenHost
	if host == "" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return badInputf("--listen-host %q: want an IP address (127.0.0.1, ::1)", o.ListenHost)
	}
	if !ip.Unmap().IsLoopback() && !o.AllowNonLoopback {
		return badInputf("--listen-host %s is not loopback: the mock's control API serves every credential without authentication; add --allow-non-loopback only on a machine nobody else can reach", host)
	}
	return nil
}

func runMock(ctx context.Context, e *cmdEnv, o *MockOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	if len(e.args) > 0 {
		return badInputf("unexpected argument %q", e.args[0])
	}
	// Loud, first, on both streams: this server gives credentials away.
	fmt.Fprintln(e.stdout, mockBanner)
	e.log.Warn("test server — never expose: the mock's control API serves every credential without authentication", "listen_host", o.ListenHost)
	port443, _ := mockauth.ParsePort443Mode(o.Port443) // checked by validate
	clk, err := processClock()
	if err != nil {
		return err
	}
	srv, err := mockauth.Start(mockauth.Options{
		Now:                 clk.Now,
		Port443:             port443,
		Host:                o.ListenHost,
		TokenTTL:            o.TokenTTL,
		CertTTL:             o.CertTTL,
		PairingTokenTTL:     o.PairingTTL,
		TwoPhase:            o.TwoPhase,
		ConnectorCARotation: o.CARotation,
		BindingCertTTL:      o.BindingTTL,
		Destinations:        o.Destinations,
		ResourceServer:      o.ResourceServer,
		Logger:              e.log,
	})
	if err != nil {
		return err
	}
	defer srv.Close()
	pairingURL, _, err := srv.NewPairingToken(o.Application)
	if err != nil {
		return badInputf("--application: %v", err)
	}
	// The hosts file before the directory's files: mock.json, written last,
	// tells a reader that every file is complete (the hosts file included,
	// which may live in the directory).
	if o.Dir != "" {
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return badInputf("--dir %s: %v", o.Dir, err)
		}
	}
	if o.HostsFile != "" {
		if err := writeHostsFile(o.HostsFile, srv.HostAddrs()); err != nil {
			return badInputf("--hosts-file %s: %v", o.HostsFile, err)
		}
	}
	if o.Dir != "" {
		if err := writeMockDir(o.Dir, srv, pairingURL); err != nil {
			return err
		}
	}
	printMockSummary(e.stdout, srv.Info(), o.Dir)
	if o.Destinations {
		fmt.Fprintf(e.stdout, "  destination service  %s\n  connectivity proxy   http://%s\n  backend stand-in     %s\n",
			srv.DestinationServiceURL(), srv.ConnectivityProxy(), srv.BackendURL())
	}
	if u := srv.Info().ResourceURL; u != "" {
		fmt.Fprintf(e.stdout, "  resource server      %s\n", u)
	}
	e.log.Info("mock auth server running", "url", srv.Info().URL, "admin_url", srv.Info().AdminURL)
	<-ctx.Done()
	e.log.Info("mock auth server stopping")
	return srv.Close()
}

// writeMockDir writes the mock's files, each atomically, mock.json last: a
// reader that sees mock.json finds the others complete.
func writeMockDir(dir string, srv *mockauth.Server, pairingURL string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return badInputf("--dir %s: %v", dir, err)
	}
	info, err := json.MarshalIndent(srv.Info(), "", "  ")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{mockVCAPFile, srv.VCAPServices(), 0o600}, // client secrets and a private key
		{mockCAFile, srv.CACertPEM(), 0o644},
		{mockPairingURLFile, []byte(pairingURL + "\n"), 0o600}, // a one-time token
		{mockInfoFile, append(info, '\n'), 0o644},
	} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("--dir %s: %w", dir, err)
		}
	}
	return nil
}

// writeHostsFile writes one "ADDRESS NAME" line per host name, in the
// format of /etc/hosts (and of Java's jdk.net.hosts.file).
func writeHostsFile(path string, hosts []mockauth.HostAddr) error {
	var b strings.Builder
	b.WriteString("# credbroker mock: every host name it serves and the address that serves it\n")
	for _, h := range hosts {
		b.WriteString(h.Addr + " " + h.Name + "\n")
	}
	return writeFileAtomic(path, []byte(b.String()), 0o644)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// printMockSummary prints the URLs and file paths, never a secret or the
// one-time pairing URL.
func printMockSummary(w io.Writer, info mockauth.Info, dir string) {
	fmt.Fprintln(w, "credbroker mock: the mock auth server is running (Ctrl-C or SIGTERM stops it)")
	row := func(k, v string) { fmt.Fprintf(w, "  %-22s %s\n", k, v) }
	row("token url (secret):", info.URL+"/oauth/token")
	row("token url (mTLS):", info.CertURL+"/oauth/token")
	row("token keys:", info.TokenKeysURL)
	row("IAS url:", info.IASURL)
	row("connector:", info.ConnectorURL)
	if info.RuntimeConnectorURL != "" {
		row("runtime connector:", info.RuntimeConnectorURL)
	}
	row("gateway:", info.GatewayURL)
	row("control API:", info.AdminURL+"/mock/stats")
	var tenants []string
	for _, t := range info.Tenants {
		tenants = append(tenants, t.Subdomain)
	}
	row("tenants:", fmt.Sprint(tenants))
	if dir != "" {
		row("bindings:", filepath.Join(dir, mockVCAPFile)+" (holds secrets)")
		row("server CA:", filepath.Join(dir, mockCAFile))
		row("pairing url:", filepath.Join(dir, mockPairingURLFile)+" (one-time token)")
		row("all URLs:", filepath.Join(dir, mockInfoFile))
	} else {
		row("bindings:", info.AdminURL+"/mock/vcap (holds secrets)")
		row("pairing url:", "POST "+info.AdminURL+`/mock/tokens {"application":"app1"}`)
	}
	if info.Port443 {
		fmt.Fprintln(w, "Port 443: the HTTPS hosts listen on 127.0.0.2-6 and the URLs carry no port.")
	} else {
		fmt.Fprintln(w, "Random ports: the URLs carry ports (clients that build https://{uaadomain}/token_keys or")
		fmt.Fprintln(w, "compare a token's jku host with uaadomain fail; run as root or with CAP_NET_BIND_SERVICE).")
	}
	fmt.Fprintln(w, "credbroker dials the mock's .localhost names by itself; other clients need the name -> address")
	fmt.Fprintln(w, "map (--hosts-file, or \"resolve\" in mock.json) and the server CA (docs/testing.md).")
}
