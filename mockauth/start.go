package mockauth

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// Start starts every listener of the mock on Options.Host (127.0.0.1 by
// default), or in port-443 mode (Options.Port443) the HTTPS ones on port 443
// of their role addresses, and returns when they accept connections. Call
// Close when done.
func Start(opts Options) (*Server, error) {
	s, err := newServer(opts)
	if err != nil {
		return nil, err
	}
	tc, err := s.tlsConfigs()
	if err != nil {
		return nil, err
	}
	host := opts.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port443 := opts.Port443
	if port443 != Port443Off && host != "127.0.0.1" {
		if port443 == Port443On {
			return nil, fmt.Errorf("mockauth: port 443 needs the role addresses 127.0.0.2-6: Host %s cannot be used with it", host)
		}
		port443 = Port443Off
	}
	var l listeners
	if port443 != Port443Off {
		l, err = listenAll(host, opts.TwoPhase, true)
		if err != nil && port443 == Port443On {
			return nil, err
		}
		if err != nil {
			s.log.Info("mockauth: cannot listen on port 443, serving on random ports: URLs carry ports", "reason", err)
		}
	}
	if l.secret.ln == nil {
		if l, err = listenAll(host, opts.TwoPhase, false); err != nil {
			return nil, err
		}
	}
	s.listenAddr = adminHost(host)
	s.describe(host, l, opts.TwoPhase)

	s.serve(tls.NewListener(l.secret.ln, tc.secret), s.wrap(listenerToken, s.tokenHandler(false)))
	s.serve(tls.NewListener(l.cert.ln, tc.cert), s.wrap(listenerCertToken, s.tokenHandler(true)))
	s.serve(tls.NewListener(l.central.ln, tc.connector), s.wrap(listenerConnector, s.connectorHandler(s.central)))
	if opts.TwoPhase {
		s.serve(tls.NewListener(l.runtime.ln, tc.connector), s.wrap(listenerConnector, s.connectorHandler(s.runtime)))
	}
	s.serve(tls.NewListener(l.gateway.ln, tc.gateway), s.wrap(listenerGateway, s.gatewayHandler()))
	s.serve(l.admin.ln, noRedirect(s.adminHandler()))
	if s.dest != nil {
		if err := s.startDestinations(tc.base, listenOn(host)); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	s.log.Debug("mockauth: started", "url", s.info.URL, "certurl", s.info.CertURL,
		"connector_url", s.info.ConnectorURL, "admin_url", s.info.AdminURL)
	return s, nil
}

// newServer applies the defaults of opts and makes the mock's authorities,
// OAuth clients and the x509 binding's certificate.
func newServer(opts Options) (*Server, error) {
	s := &Server{
		log:              opts.Logger,
		now:              opts.Now,
		tenants:          opts.Tenants,
		tokenTTL:         opts.TokenTTL,
		certTTL:          opts.CertTTL,
		pairingTTL:       opts.PairingTokenTTL,
		refresh:          map[string]*refreshGrant{},
		strictRevocation: opts.StrictRevocation,
		caRotation:       opts.ConnectorCARotation,
		uniqueSerials:    opts.UniqueSerials,
		pairing:          map[string]*pairingToken{},
		revoked:          map[string]bool{},
		stats:            newStats(),
		extraCAs:         opts.ClientCAs,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if len(s.tenants) == 0 {
		s.tenants = DefaultTenants()
	}
	if err := validateTenants(s.tenants); err != nil {
		return nil, err
	}
	if s.tokenTTL <= 0 {
		s.tokenTTL = DefaultTokenTTL
	}
	if s.certTTL <= 0 {
		s.certTTL = DefaultCertTTL
	}
	if s.pairingTTL <= 0 {
		s.pairingTTL = DefaultPairingTokenTTL
	}
	bindingTTL := opts.BindingCertTTL
	if bindingTTL <= 0 {
		bindingTTL = DefaultBindingCertTTL
	}
	now := s.now()
	var err error
	if s.serverCA, err = newAuthority("mockauth server CA", now); err != nil {
		return nil, err
	}
	if s.clientCA, err = newAuthority("mockauth xsuaa client CA", now); err != nil {
		return nil, err
	}
	if s.central, err = newConnectorCA("mockauth central connector CA", "Organization", now, opts.ECDSAConnectorCA); err != nil {
		return nil, err
	}
	s.runtime = s.central
	if opts.TwoPhase {
		if s.runtime, err = newConnectorCA("mockauth runtime connector CA", "Runtime", now, opts.ECDSAConnectorCA); err != nil {
			return nil, err
		}
		s.runtime.runtime = true
	}
	if err := s.addKey(); err != nil {
		return nil, err
	}
	s.clients = map[string]*client{
		SecretClientID: {id: SecretClientID, secret: randomHex(16), xsappname: "xsuaa-secret!t1"},
		X509ClientID:   {id: X509ClientID, xsappname: "xsuaa-x509!t1", x509: true},
		IASClientID:    {id: IASClientID, secret: randomHex(16), xsappname: IASClientID, ias: true},
	}
	if opts.Destinations {
		s.dest = newDestMock()
		s.destinationClients()
	}
	s.bindingCert, s.bindingCertPEM, s.bindingKeyPEM, err = s.clientCA.clientCert(pkix.Name{
		CommonName:         "4f1c2a8e-x509-binding",
		OrganizationalUnit: []string{"mockauth xsuaa", s.tenants[0].ZoneID},
		Organization:       []string{"credbroker mockauth"},
		Locality:           []string{"mock-uaa"},
		Country:            []string{"DE"},
	}, now.Add(-time.Minute), now.Add(bindingTTL))
	if err != nil {
		return nil, err
	}
	return s, nil
}

// tlsConfigs are the server sides of the mock's TLS listeners.
type tlsConfigs struct {
	base      func() *tls.Config // the server certificate, TLS 1.2+, the mock's clock
	secret    *tls.Config        // token service, client secret
	cert      *tls.Config        // token service, client certificate required
	connector *tls.Config        // connector hosts: one-time tokens, no certificate
	gateway   *tls.Config        // the connector's mTLS gateway
}

func (s *Server) tlsConfigs() (tlsConfigs, error) {
	serverCert, err := s.serverCA.serverCert(s.now(), []string{
		"*." + UAADomain, UAADomain, "*." + CertUAADomain, CertUAADomain, "*." + IASDomain, IASDomain,
		connectorHost, runtimeHost, gatewayHost, destinationHost, backendHost, "localhost",
	}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
	if err != nil {
		return tlsConfigs{}, err
	}
	base := func() *tls.Config {
		// Client certificates are verified with the injected clock, like
		// everything the mock issues.
		return &tls.Config{Certificates: []tls.Certificate{serverCert}, MinVersion: tls.VersionTLS12, Time: s.now}
	}
	certPool := s.clientCA.pool()
	if s.extraCAs != nil {
		certPool = s.extraCAs.Clone()
		certPool.AddCert(s.clientCA.cert)
	}

	tc := tlsConfigs{base: base, secret: base(), cert: base(), connector: base(), gateway: base()}
	tc.cert.ClientAuth = tls.RequireAndVerifyClientCert
	tc.cert.ClientCAs = certPool
	// The gateway requires a certificate in the handshake (a handshake
	// without one ends with the TLS alert "certificate required", as in
	// Kyma).
	tc.gateway.ClientAuth = tls.RequireAndVerifyClientCert
	tc.gateway.ClientCAs = s.connectorPool()
	// The CAs the gateway trusts change with a connector CA rotation
	// (carotation.go): every handshake takes the current pool.
	gw := tc.gateway
	tc.gateway = base()
	tc.gateway.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		c := gw.Clone()
		c.ClientCAs = s.connectorPool()
		return c, nil
	}
	return tc, nil
}

type listener struct {
	ln   net.Listener
	port int
}

// listeners are the mock's sockets; runtime is only open with TwoPhase.
type listeners struct {
	secret, cert, central, gateway, admin, runtime listener
}

// listenOn returns a function that opens a listener on host, on a free port.
func listenOn(host string) func() (net.Listener, int, error) {
	return func() (net.Listener, int, error) {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, 0, fmt.Errorf("mockauth: listen: %w", err)
		}
		return ln, ln.Addr().(*net.TCPAddr).Port, nil
	}
}

// listenAll opens every listener on a random port of host, or with port443
// the HTTPS ones on port 443 of their role addresses (the control API stays
// on a random port of host); it opens all or none.
func listenAll(host string, twoPhase, port443 bool) (listeners, error) {
	var l listeners
	all := []*listener{&l.secret, &l.cert, &l.central, &l.gateway, &l.admin}
	addrs := []string{host, host, host, host, host}
	ports := []string{"0", "0", "0", "0", "0"}
	if port443 {
		addrs = []string{addrToken.String(), addrCert.String(), addrConnector.String(), addrGateway.String(), host}
		ports = []string{"443", "443", "443", "443", "0"}
	}
	if twoPhase {
		all = append(all, &l.runtime)
		addrs, ports = append(addrs, host), append(ports, "0")
		if port443 {
			addrs[len(addrs)-1], ports[len(ports)-1] = addrRuntime.String(), "443"
		}
	}
	for i, dst := range all {
		ln, err := net.Listen("tcp", net.JoinHostPort(addrs[i], ports[i]))
		if err != nil {
			for _, opened := range all[:i] {
				opened.ln.Close()
			}
			return listeners{}, fmt.Errorf("mockauth: listen: %w", err)
		}
		*dst = listener{ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	}
	return l, nil
}

// describe fills s.info with the URLs of the listeners.
func (s *Server) describe(host string, l listeners, twoPhase bool) {
	provider := s.tenants[0].Subdomain
	s.info = Info{
		UAADomain:       UAADomain,
		CertUAADomain:   CertUAADomain,
		URL:             httpsURL(provider+"."+UAADomain, l.secret.port),
		CertURL:         httpsURL(provider+"."+CertUAADomain, l.cert.port),
		IASURL:          httpsURL(provider+"."+IASDomain, l.secret.port),
		ConnectorURL:    httpsURL(connectorHost, l.central.port),
		GatewayURL:      httpsURL(gatewayHost, l.gateway.port),
		AdminURL:        "http://" + net.JoinHostPort(adminHost(host), strconv.Itoa(l.admin.port)),
		TokenPort:       l.secret.port,
		CertTokenPort:   l.cert.port,
		SecretBinding:   SecretBindingName,
		X509Binding:     X509BindingName,
		IASBinding:      IASBindingName,
		SecretClientID:  SecretClientID,
		X509ClientID:    X509ClientID,
		IASClientID:     IASClientID,
		SecretXSAppName: s.clients[SecretClientID].xsappname,
		X509XSAppName:   s.clients[X509ClientID].xsappname,
		Tenants:         append([]Tenant(nil), s.tenants...),
		TwoPhase:        twoPhase,
		Port443:         l.secret.port == 443,
	}
	s.info.TokenKeysURL = s.info.URL + "/token_keys"
	for _, u := range testUsers {
		s.info.Users = append(s.info.Users, u.name)
	}
	s.central.baseURL = s.info.ConnectorURL
	if twoPhase {
		s.info.RuntimeConnectorURL = httpsURL(runtimeHost, l.runtime.port)
		s.runtime.baseURL = s.info.RuntimeConnectorURL
	}
	for _, h := range s.HostAddrs() {
		s.info.Resolve = append(s.info.Resolve, h.Name+"="+h.Addr)
	}
}
