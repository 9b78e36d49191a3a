package mockauth

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Host names the mock serves. They all live under .localhost (RFC 6761), so
// subdomain tenants work on one machine; clients map them to 127.0.0.1 with
// [DialContext] (or their own dial override).
const (
	UAADomain     = "authentication.localhost"
	CertUAADomain = "authentication.cert.localhost"
	IASDomain     = "accounts.localhost"
	connectorHost = "connector.localhost"
	runtimeHost   = "runtime-connector.localhost"
	gatewayHost   = "gateway.localhost"
)

// Binding names in [Server.VCAPServices].
const (
	SecretBindingName = "xsuaa-secret"
	X509BindingName   = "xsuaa-x509"
	IASBindingName    = "ias"
)

// Client ids of the mock's bindings.
const (
	SecretClientID = "sb-xsuaa-secret!t1"
	X509ClientID   = "sb-xsuaa-x509!t1"
	IASClientID    = "ias-client-0001"
)

// Defaults for [Options].
const (
	DefaultTokenTTL        = 12 * time.Hour // XSUAA's default for client credentials
	DefaultCertTTL         = 24 * time.Hour
	DefaultPairingTokenTTL = 5 * time.Minute
	DefaultBindingCertTTL  = 7 * 24 * time.Hour // XSUAA's default x509 binding validity
)

// Tenant is one identity zone of the mock: subscribers are reached by their
// subdomain as the first host label or by X-zid with the zone id.
type Tenant struct {
	Subdomain string `json:"subdomain"`
	ZoneID    string `json:"zone_id"`
}

// DefaultTenants returns the tenants used when [Options.Tenants] is empty:
// the provider (the zone of every binding) and two subscribers.
func DefaultTenants() []Tenant {
	return []Tenant{
		{Subdomain: "provider", ZoneID: "4f1c2a8e-0000-4000-8000-000000000001"},
		{Subdomain: "subscriber1", ZoneID: "4f1c2a8e-0000-4000-8000-000000000002"},
		{Subdomain: "subscriber2", ZoneID: "4f1c2a8e-0000-4000-8000-000000000003"},
	}
}

// Options configure [Start]. Every field is optional.
type Options struct {
	// TokenTTL is the access-token lifetime (expires_in); default 12h.
	TokenTTL time.Duration
	// CertTTL is the lifetime of connector client certificates, down to
	// seconds; default 24h.
	CertTTL time.Duration
	// PairingTokenTTL is the lifetime of one-time pairing tokens; default 5m.
	PairingTokenTTL time.Duration
	// BindingCertTTL is the validity of the x509 binding's certificate;
	// default 7 days.
	BindingCertTTL time.Duration
	// Tenants are the identity zones; the first one is the provider (the
	// zone of the bindings). Default: [DefaultTenants].
	Tenants []Tenant
	// TwoPhase makes the central connector's management info carry
	// runtime.tokenUrl of a second (runtime) connector with its own CA.
	TwoPhase bool
	// ECDSAConnectorCA gives the connectors ECDSA CAs that sign with their
	// own algorithm, so ECDSA CSRs are accepted (a credbroker extension).
	// By default the CAs are RSA and, as the Kyma connector, sign with the
	// CSR's signature algorithm: an ECDSA CSR fails with 500.
	ECDSAConnectorCA bool
	// StrictRevocation refuses a revoked certificate on every mTLS endpoint
	// (management info, metadata, events) with 403 (a credbroker
	// extension). By default, as in Kyma, revocation blocks only renewal.
	StrictRevocation bool
	// UniqueSerials gives every connector certificate a random serial (a
	// credbroker extension). By default every certificate has serial 2, as
	// in Kyma: identify certificates by SHA-256 fingerprint.
	UniqueSerials bool
	// ClientCAs are extra CAs trusted on the cert host: a client certificate
	// they issued authenticates as any client id of the mock.
	ClientCAs *x509.CertPool
	// Destinations starts a Destination service, a Connectivity proxy, an
	// on-premise stand-in and an Internet backend stand-in, and adds the
	// "destination" and "connectivity" bindings (destination.go).
	Destinations bool
	// ConnectorCARotation enables RotateConnectorCA and the control
	// endpoint POST /mock/connector-ca: add a new central connector CA,
	// switch issuance to it, remove the old one (a credbroker extension
	// for rotation tests).
	ConnectorCARotation bool
	// Logger receives debug logs of requests (never secrets); silent when nil.
	Logger *slog.Logger
	// Now is the clock for token iat/exp, certificate validity, pairing
	// token expiry and fault windows, and the time at which client
	// certificates are verified; default time.Now.
	Now func() time.Time
	// Host is the IP address every listener binds; default 127.0.0.1. The
	// control API serves every credential without authentication: bind
	// anything but loopback only on a machine nobody else can reach.
	Host string
	// Port443 serves the HTTPS hosts on port 443 of per-role loopback
	// addresses (127.0.0.2-6), so that the URLs carry no port; default
	// Port443Off. Only with Host 127.0.0.1 (or empty): Port443On with
	// another Host is an error, Port443Auto falls back to ports.
	Port443 Port443Mode
}

// Info describes a running mock: every URL and name a client needs, without
// secrets. `credbroker mock --dir` writes it as mock.json.
type Info struct {
	UAADomain           string   `json:"uaadomain"`
	CertUAADomain       string   `json:"cert_uaadomain"`
	URL                 string   `json:"url"`
	CertURL             string   `json:"certurl"`
	TokenKeysURL        string   `json:"token_keys_url"`
	IASURL              string   `json:"ias_url"`
	ConnectorURL        string   `json:"connector_url"`
	RuntimeConnectorURL string   `json:"runtime_connector_url,omitempty"`
	GatewayURL          string   `json:"gateway_url"`
	AdminURL            string   `json:"admin_url"`
	TokenPort           int      `json:"token_port"`
	CertTokenPort       int      `json:"cert_token_port"`
	SecretBinding       string   `json:"secret_binding"`
	X509Binding         string   `json:"x509_binding"`
	IASBinding          string   `json:"ias_binding"`
	SecretClientID      string   `json:"secret_client_id"`
	X509ClientID        string   `json:"x509_client_id"`
	IASClientID         string   `json:"ias_client_id"`
	SecretXSAppName     string   `json:"secret_xsappname"`
	X509XSAppName       string   `json:"x509_xsappname"`
	Tenants             []Tenant `json:"tenants"`
	Users               []string `json:"users"`
	TwoPhase            bool     `json:"two_phase"`
	// Port443 is true when the HTTPS hosts listen on port 443 of their
	// role addresses and the URLs carry no port.
	Port443 bool `json:"port443"`
	// Resolve maps every host name to the address that serves it, as
	// NAME=ADDR (the form of credbroker's --resolve), the same as
	// `credbroker mock --hosts-file`.
	Resolve []string `json:"resolve"`
}

// Server is a running mock. Its methods are safe for concurrent use.
type Server struct {
	log *slog.Logger
	now func() time.Time

	serverCA *authority // signs the server certificates of every listener
	clientCA *authority // signs the x509 binding's certificate
	extraCAs *x509.CertPool
	central  *connectorCA
	// caRotation is Options.ConnectorCARotation; caMu orders the steps.
	caRotation   bool
	caMu         sync.Mutex
	caGeneration int
	runtime      *connectorCA // == central when not two-phase

	tenants []Tenant
	clients map[string]*client

	strictRevocation bool
	uniqueSerials    bool
	info             Info
	listenAddr       string // the address of the listeners when not in port-443 mode

	bindingCert    tls.Certificate
	bindingCertPEM []byte
	bindingKeyPEM  []byte

	mu         sync.Mutex
	tokenTTL   time.Duration
	certTTL    time.Duration
	pairingTTL time.Duration
	keys       []*signingKey // keys[0] signs
	keySeq     int
	refresh    map[string]*refreshGrant
	pairing    map[string]*pairingToken
	revoked    map[string]bool // SHA-256 fingerprint (hex) -> revoked
	issued     []*issuedCert
	faults     []*activeFault
	stats      Stats
	received   []Received

	dest *destMock // nil unless Options.Destinations

	servers []*http.Server
	wg      sync.WaitGroup
	closeMu sync.Mutex
	closed  bool
}

type client struct {
	id        string
	secret    string // "" for the x509 client
	xsappname string
	x509      bool // authenticates with the binding's certificate on the cert host
	ias       bool
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("mockauth: crypto/rand failed: " + err.Error())
	}
	return hex.EncodeToString(b)
}

func validateTenants(ts []Tenant) error {
	seenSub, seenZone := map[string]bool{}, map[string]bool{}
	for i, t := range ts {
		if t.Subdomain == "" || t.ZoneID == "" {
			return fmt.Errorf("mockauth: tenant %d: subdomain and zone id are required", i)
		}
		if !validLabel(t.Subdomain) {
			return fmt.Errorf("mockauth: tenant %d: subdomain %q is not a lower-case DNS label", i, t.Subdomain)
		}
		if seenSub[t.Subdomain] || seenZone[t.ZoneID] {
			return fmt.Errorf("mockauth: tenant %d (%q): duplicate subdomain or zone id", i, t.Subdomain)
		}
		seenSub[t.Subdomain], seenZone[t.ZoneID] = true, true
	}
	return nil
}

func validLabel(l string) bool {
	if len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	for _, r := range l {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

func (s *Server) serve(ln net.Listener, h http.Handler) {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.servers = append(s.servers, hs)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Debug("mockauth: serve", "error", err)
		}
	}()
}

// Close stops every listener and waits for them. It is idempotent.
func (s *Server) Close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for _, hs := range s.servers {
		hs.Close()
	}
	s.wg.Wait()
	return nil
}

// Info returns every URL and name of the mock (no secrets).
func (s *Server) Info() Info {
	i := s.info
	i.Tenants = append([]Tenant(nil), s.info.Tenants...)
	i.Users = append([]string(nil), s.info.Users...)
	i.Resolve = append([]string(nil), s.info.Resolve...)
	return i
}

// CACertPEM returns the PEM of the CA that signs the mock's server
// certificates: trust it to call any of the mock's HTTPS endpoints.
func (s *Server) CACertPEM() []byte { return append([]byte(nil), s.serverCA.pem...) }

// CAPool returns a pool holding the CA of [Server.CACertPEM].
func (s *Server) CAPool() *x509.CertPool { return s.serverCA.pool() }

// BindingCertificate returns the x509 binding's client certificate and key,
// trusted on the cert host (the same as in [Server.VCAPServices]).
func (s *Server) BindingCertificate() tls.Certificate { return s.bindingCert }

// ConnectorCAPEM returns the PEM of the central connector's CA (the caCrt of
// its certificate responses).
func (s *Server) ConnectorCAPEM() []byte { return append([]byte(nil), s.central.issuer().pem...) }

// RuntimeConnectorCAPEM returns the PEM of the runtime connector's CA; the
// same as ConnectorCAPEM when not two-phase.
func (s *Server) RuntimeConnectorCAPEM() []byte {
	return append([]byte(nil), s.runtime.issuer().pem...)
}

// ClientSecret returns the client secret of a client id of the mock, "" for
// the x509 client or an unknown id. It is a secret: never log it.
func (s *Server) ClientSecret(clientID string) string {
	if c := s.clients[clientID]; c != nil {
		return c.secret
	}
	return ""
}

// Hosts returns every host name the mock serves (each tenant's token,
// cert-token and IAS hosts, the tenant-agnostic ones, the connectors and
// the gateway), sorted. [Server.HostAddrs] says which address serves each;
// `credbroker mock --hosts-file` writes them in hosts-file form for
// resolvers that do not map *.localhost by themselves.
func (s *Server) Hosts() []string {
	names := []string{UAADomain, CertUAADomain, IASDomain, connectorHost, gatewayHost}
	if s.runtime != s.central {
		names = append(names, runtimeHost)
	}
	if s.dest != nil {
		names = append(names, destinationHost, backendHost)
	}
	for _, t := range s.tenants {
		names = append(names, t.Subdomain+"."+UAADomain, t.Subdomain+"."+CertUAADomain, t.Subdomain+"."+IASDomain)
	}
	slices.Sort(names)
	return names
}

// Client returns an HTTP client that trusts the mock's server CA, dials
// through [DialContext], never follows redirects and presents the given
// client certificates (if any).
func (s *Server) Client(certs ...tls.Certificate) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext: DialContext,
			TLSClientConfig: &tls.Config{
				RootCAs:      s.CAPool(),
				Certificates: certs,
				MinVersion:   tls.VersionTLS12,
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

// adminHost is the host of the control API's URL for a listen host: the
// loopback address for the unspecified address (0.0.0.0, ::).
func adminHost(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			return "127.0.0.1"
		}
		return "::1"
	}
	return host
}
