package mockauth

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
)

// Connectivity proxy headers.
const (
	headerLocationID = "SAP-Connectivity-SCC-Location_ID"
	headerPrincipal  = "SAP-Connectivity-Authentication"
)

// startDestinations opens the Destination service (TLS), the Internet
// backend stand-in (TLS, client certificates verified when given), the
// Connectivity proxy (plain HTTP, as in the cluster) and the on-premise
// stand-in behind it (plain HTTP, reachable only through the proxy in
// spirit: its address is not published).
func (s *Server) startDestinations(base func() *tls.Config, listen func() (net.Listener, int, error)) error {
	destLn, destPort, err := listen()
	if err != nil {
		return err
	}
	backLn, backPort, err := listen()
	if err != nil {
		return err
	}
	proxyLn, proxyPort, err := listen()
	if err != nil {
		return err
	}
	onpremLn, onpremPort, err := listen()
	if err != nil {
		return err
	}
	s.dest.destURL = fmt.Sprintf("https://%s:%d", destinationHost, destPort)
	s.dest.backendURL = fmt.Sprintf("https://%s:%d", backendHost, backPort)
	s.dest.proxyHostPort = listenAddr(proxyLn, proxyPort)
	s.dest.onpremAddr = listenAddr(onpremLn, onpremPort)
	backTLS := base()
	backTLS.ClientAuth = tls.VerifyClientCertIfGiven
	backTLS.ClientCAs = s.clientCA.pool()
	s.serve(tls.NewListener(destLn, base()), noRedirect(s.destinationHandler()))
	s.serve(tls.NewListener(backLn, backTLS), s.backendHandler())
	s.serve(proxyLn, s.connectivityProxy())
	s.serve(onpremLn, s.onPremiseHandler())
	return nil
}

// listenAddr is host:port to reach a listener (loopback for a wildcard).
func listenAddr(ln net.Listener, port int) string {
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
		return net.JoinHostPort(a.IP.String(), fmt.Sprint(port))
	}
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// connectivityProxy is an HTTP forward proxy like SAP's Connectivity proxy:
// it takes absolute-form http:// requests with Proxy-Authorization: Bearer
// <token of the connectivity binding> (the token's zone is the tenant), the
// location id in SAP-Connectivity-SCC-Location_ID (one of the seeded
// destinations' locations, or none), and an optional user token in
// SAP-Connectivity-Authentication (principal propagation); it forwards to
// the on-premise stand-in, whatever the virtual host, without those headers.
func (s *Server) connectivityProxy() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dm := s.dest
		refuse := func(status int, msg string) {
			dm.mu.Lock()
			dm.stats.ProxyRefused++
			dm.mu.Unlock()
			http.Error(w, msg, status)
		}
		if r.Method == http.MethodConnect || !r.URL.IsAbs() || r.URL.Scheme != "http" {
			refuse(http.StatusMethodNotAllowed, "the mock Connectivity proxy takes absolute-form http:// requests only")
			return
		}
		now := s.now()
		pa := r.Header.Get("Proxy-Authorization")
		if !strings.HasPrefix(pa, "Bearer ") {
			w.Header().Set("Proxy-Authenticate", "Bearer")
			refuse(http.StatusProxyAuthRequired, "Proxy-Authorization: Bearer <connectivity token> is required")
			return
		}
		dm.remember(strings.TrimPrefix(pa, "Bearer "), strings.TrimPrefix(r.Header.Get(headerPrincipal), "Bearer "))
		claims, err := s.verify(strings.TrimPrefix(pa, "Bearer "), now)
		cid, _ := claims["client_id"].(string)
		zid, _ := claims["zid"].(string)
		t, ok := s.tenantByZone(zid)
		if err != nil || cid != ConnectivityClientID || !ok {
			w.Header().Set("Proxy-Authenticate", "Bearer")
			refuse(http.StatusProxyAuthRequired, "the connectivity token is invalid or expired")
			return
		}
		loc := r.Header.Get(headerLocationID)
		dm.mu.Lock()
		known := dm.locations[loc]
		dm.mu.Unlock()
		if !known {
			refuse(http.StatusServiceUnavailable, "no Cloud Connector is connected for this location id")
			return
		}
		principal, principalClient := "", ""
		if pp := r.Header.Get(headerPrincipal); pp != "" {
			pc, err := s.verify(strings.TrimPrefix(pp, "Bearer "), now)
			if err != nil {
				refuse(http.StatusUnauthorized, "the propagated user token is invalid")
				return
			}
			if z, _ := pc["zid"].(string); z != t.ZoneID {
				refuse(http.StatusUnauthorized, "the propagated user token belongs to another subaccount")
				return
			}
			principal, _ = pc["user_name"].(string)
			principalClient, _ = pc["client_id"].(string)
		}
		dm.mu.Lock()
		dm.stats.ProxyRequests++
		target := dm.onpremAddr
		dm.mu.Unlock()
		virtualHost := r.URL.Host
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.Out.URL.Scheme, pr.Out.URL.Host = "http", target
				pr.Out.Host = virtualHost
				pr.Out.Header.Del(headerLocationID)
				pr.Out.Header.Del(headerPrincipal)
				pr.Out.Header.Del("Proxy-Authorization")
				// What the Cloud Connector tells the backend (the stand-in
				// records it).
				pr.Out.Header.Set("X-Mock-Scc-Tenant", t.Subdomain)
				pr.Out.Header.Set("X-Mock-Scc-Location", loc)
				pr.Out.Header.Set("X-Mock-Scc-Principal", principal)
				pr.Out.Header.Set("X-Mock-Scc-Principal-Client", principalClient)
			},
		}
		rp.ServeHTTP(w, r)
	})
}

// onPremiseHandler is the on-premise system behind the Cloud Connector.
func (s *Server) onPremiseHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen := Seen{Via: "onpremise", Tenant: r.Header.Get("X-Mock-Scc-Tenant"), LocationID: r.Header.Get("X-Mock-Scc-Location"), Principal: r.Header.Get("X-Mock-Scc-Principal"),
			PrincipalClient: r.Header.Get("X-Mock-Scc-Principal-Client")}
		if seen.Tenant == "" {
			http.Error(w, "reachable only through the Connectivity proxy", http.StatusForbidden)
			return
		}
		s.echo(w, r, seen)
	})
}
