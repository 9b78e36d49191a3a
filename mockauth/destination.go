package mockauth

import (
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"software.sslmate.com/src/go-pkcs12"
)

// Binding names and client ids of the Destination and Connectivity service
// bindings (present when [Options.Destinations] is set).
const (
	DestinationBindingName  = "destination"
	ConnectivityBindingName = "connectivity"
	DestinationClientID     = "sb-clone-destination!b1|destination-xsappname!b9"
	ConnectivityClientID    = "sb-clone-connectivity!b1|connectivity!b17"
	destinationHost         = "destination.localhost"
	backendHost             = "backend.localhost"
)

// Destination is one admin-seeded destination of the mock Destination
// service. Properties are the destinationConfiguration (Name, URL,
// Authentication, ProxyType, CloudConnectorLocationId, User, Password,
// URL.headers.*, …). The mock issues authTokens for the OAuth2 types with
// TokenLifetime (default 1h) and answers with TokenError in every token's
// error field when it is set. Keystore makes the mock issue a client
// certificate (trusted by [Server.BackendURL]) packed as PKCS#12 with that
// name and password.
type Destination struct {
	Tenant        string            `json:"tenant"`
	Properties    map[string]string `json:"properties"`
	TokenLifetime flexDuration      `json:"token_lifetime"`
	TokenError    string            `json:"token_error"`
	Keystore      *struct {
		Name     string `json:"name"`
		Password string `json:"password"`
	} `json:"keystore"`
}

// DestinationStats count the mock Destination service's and Connectivity
// proxy's work.
type DestinationStats struct {
	Lookups             int            `json:"lookups"`
	LookupsByTenantName map[string]int `json:"lookups_by_tenant_name"` // "tenant/name"
	NotFound            int            `json:"not_found"`
	Refused             int            `json:"refused"`
	Outage              int            `json:"outage"`
	ProxyRequests       int            `json:"proxy_requests"`
	ProxyRefused        int            `json:"proxy_refused"`
	ConnectivityTokens  int            `json:"connectivity_tokens"`
	OnPremise           int            `json:"onpremise_requests"`
	Backend             int            `json:"backend_requests"`
}

type destMock struct {
	mu        sync.Mutex
	dests     map[string]map[string]*seeded // tenant subdomain -> name
	issued    map[string]string             // auth token value -> descriptor (no secret)
	secrets   map[string]bool               // every token the mock saw or issued here
	seq       int
	down      bool
	connTTL   time.Duration
	locations map[string]bool
	stats     DestinationStats
	received  []Seen

	destURL, proxyHostPort, backendURL, onpremAddr string
}

type seeded struct {
	d     Destination
	certs []map[string]string
}

// Seen is what the on-premise stand-in or the Internet backend received,
// without secrets: credentials are shown by descriptor ("oauth2:<type>:
// <tenant>:<user>:<n>", "basic:<user>", "cert:<CN>", "none").
type Seen struct {
	Via        string `json:"via"` // "onpremise" or "internet"
	Tenant     string `json:"tenant,omitempty"`
	LocationID string `json:"location_id,omitempty"`
	Host       string `json:"host"`
	Method     string `json:"method"`
	Path       string `json:"path"`
	Query      string `json:"query"`
	Credential string `json:"credential"`
	Principal  string `json:"principal,omitempty"`
	// PrincipalClient is the client id of the propagated token.
	PrincipalClient string            `json:"principal_client,omitempty"`
	Headers         map[string]string `json:"headers,omitempty"` // X-Dest-* headers
	ProxyHeader     bool              `json:"proxy_header_leaked"`
}

func newDestMock() *destMock {
	return &destMock{dests: map[string]map[string]*seeded{}, issued: map[string]string{}, secrets: map[string]bool{}, locations: map[string]bool{"": true},
		stats: DestinationStats{LookupsByTenantName: map[string]int{}}}
}

// destinationClients are added to the token service's clients.
func (s *Server) destinationClients() {
	s.clients[DestinationClientID] = &client{id: DestinationClientID, secret: randomHex(16), xsappname: "destination-xsappname!b9"}
	s.clients[ConnectivityClientID] = &client{id: ConnectivityClientID, secret: randomHex(16), xsappname: "connectivity!b17"}
}

// ttlFor is the token lifetime for client c (the Connectivity client may
// have its own).
func (s *Server) ttlFor(c *client, count bool) time.Duration {
	s.mu.Lock()
	ttl := s.tokenTTL
	s.mu.Unlock()
	if s.dest != nil && c != nil && c.id == ConnectivityClientID {
		s.dest.mu.Lock()
		if s.dest.connTTL > 0 {
			ttl = s.dest.connTTL
		}
		if count {
			s.dest.stats.ConnectivityTokens++
		}
		s.dest.mu.Unlock()
	}
	return ttl
}

// SeedDestination adds (or replaces) a destination of a tenant (by
// subdomain; the provider is the first tenant).
func (s *Server) SeedDestination(d Destination) error {
	if s.dest == nil {
		return errors.New("mockauth: started without Destinations")
	}
	if _, ok := s.tenantBySubdomain(d.Tenant); !ok {
		return fmt.Errorf("mockauth: unknown tenant %q", d.Tenant)
	}
	name := d.Properties["Name"]
	if name == "" {
		return errors.New("mockauth: a destination needs properties.Name")
	}
	sd := &seeded{d: d}
	if ks := d.Keystore; ks != nil {
		now := s.now()
		cert, _, _, err := s.clientCA.clientCert(pkix.Name{CommonName: "dest-" + d.Tenant + "-" + name, Organization: []string{"credbroker mockauth"}}, now.Add(-time.Minute), now.Add(24*time.Hour))
		if err != nil {
			return err
		}
		p12, err := pkcs12.Modern.Encode(cert.PrivateKey, cert.Leaf, nil, ks.Password)
		if err != nil {
			return fmt.Errorf("mockauth: pkcs12: %w", err)
		}
		sd.certs = []map[string]string{{"Name": ks.Name, "Type": "CERTIFICATE", "Content": base64.StdEncoding.EncodeToString(p12)}}
	}
	s.dest.mu.Lock()
	defer s.dest.mu.Unlock()
	if s.dest.dests[d.Tenant] == nil {
		s.dest.dests[d.Tenant] = map[string]*seeded{}
	}
	s.dest.dests[d.Tenant][name] = sd
	if loc := d.Properties["CloudConnectorLocationId"]; loc != "" {
		s.dest.locations[loc] = true
	}
	return nil
}

// SetDestinationServiceDown makes the Destination service answer 503.
func (s *Server) SetDestinationServiceDown(down bool) {
	s.dest.mu.Lock()
	s.dest.down = down
	s.dest.mu.Unlock()
}

// SetConnectivityTokenTTL sets the lifetime of Connectivity tokens (0: the
// token TTL of every client).
func (s *Server) SetConnectivityTokenTTL(d time.Duration) {
	s.dest.mu.Lock()
	s.dest.connTTL = d
	s.dest.mu.Unlock()
}

// DestinationStats returns the counters.
func (s *Server) DestinationStats() DestinationStats {
	s.dest.mu.Lock()
	defer s.dest.mu.Unlock()
	st := s.dest.stats
	st.LookupsByTenantName = map[string]int{}
	for k, v := range s.dest.stats.LookupsByTenantName {
		st.LookupsByTenantName[k] = v
	}
	return st
}

// remember keeps a token for DestinationSecrets (bounded).
func (dm *destMock) remember(vals ...string) {
	dm.mu.Lock()
	defer dm.mu.Unlock()
	for _, v := range vals {
		if len(v) >= 8 && len(dm.secrets) < 100000 {
			dm.secrets[v] = true
		}
	}
}

// DestinationSecrets returns every token the Destination service and the
// Connectivity proxy received or issued, for tests that prove none of them
// is ever printed.
func (s *Server) DestinationSecrets() []string {
	s.dest.mu.Lock()
	defer s.dest.mu.Unlock()
	out := make([]string, 0, len(s.dest.secrets))
	for v := range s.dest.secrets {
		out = append(out, v)
	}
	return out
}

// Seen returns what the on-premise stand-in and the backend received.
func (s *Server) Seen() []Seen {
	s.dest.mu.Lock()
	defer s.dest.mu.Unlock()
	return append([]Seen(nil), s.dest.received...)
}

// DestinationServiceURL is the "uri" of the destination binding.
func (s *Server) DestinationServiceURL() string { return s.dest.destURL }

// BackendURL is the Internet backend stand-in (TLS; client certificates of
// keystores the mock issued are verified when presented).
func (s *Server) BackendURL() string { return s.dest.backendURL }

// ConnectivityProxy is the host:port of the Connectivity proxy (plain HTTP).
func (s *Server) ConnectivityProxy() string { return s.dest.proxyHostPort }

func (s *Server) destinationHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dm := s.dest
		const prefix = "/destination-configuration/v1/destinations/"
		if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, prefix) {
			writeJSON(w, http.StatusNotFound, map[string]string{"ErrorMessage": "no such endpoint"})
			return
		}
		name := strings.TrimPrefix(r.URL.Path, prefix)
		dm.mu.Lock()
		down := dm.down
		if down {
			dm.stats.Outage++
		}
		dm.mu.Unlock()
		if down {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"ErrorMessage": "service unavailable"})
			return
		}
		now := s.now()
		dm.remember(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), r.Header.Get("X-user-token"))
		claims, err := s.verify(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "), now)
		cid, _ := claims["client_id"].(string)
		zid, _ := claims["zid"].(string)
		t, ok := s.tenantByZone(zid)
		if err != nil || cid != DestinationClientID || !ok {
			dm.mu.Lock()
			dm.stats.Refused++
			dm.mu.Unlock()
			writeJSON(w, http.StatusUnauthorized, map[string]string{"ErrorMessage": "invalid token"})
			return
		}
		dm.mu.Lock()
		dm.stats.Lookups++
		dm.stats.LookupsByTenantName[t.Subdomain+"/"+name]++
		sd := dm.dests[t.Subdomain][name]
		if sd == nil {
			dm.stats.NotFound++
		}
		dm.mu.Unlock()
		if sd == nil {
			writeJSON(w, http.StatusNotFound, map[string]string{"ErrorMessage": "Configuration with the specified name was not found"})
			return
		}
		cfg := map[string]any{"Type": "HTTP"}
		for k, v := range sd.d.Properties {
			cfg[k] = v
		}
		resp := map[string]any{"owner": map[string]any{"SubaccountId": t.ZoneID, "InstanceId": nil}, "destinationConfiguration": cfg}
		if sd.certs != nil {
			resp["certificates"] = sd.certs
		}
		if toks := s.destinationAuthTokens(t, sd, r.Header.Get("X-user-token"), now); toks != nil {
			resp["authTokens"] = toks
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

// destinationAuthTokens makes the authTokens of one answer.
func (s *Server) destinationAuthTokens(t Tenant, sd *seeded, userToken string, now time.Time) []map[string]any {
	auth := sd.d.Properties["Authentication"]
	errTok := func(msg string) []map[string]any {
		return []map[string]any{{"type": "", "value": "", "error": msg, "expires_in": "0"}}
	}
	if sd.d.TokenError != "" {
		switch auth {
		case "BasicAuthentication", "OAuth2ClientCredentials", "OAuth2UserTokenExchange", "OAuth2JWTBearer", "OAuth2Password":
			return errTok(sd.d.TokenError)
		}
	}
	user := ""
	switch auth {
	case "BasicAuthentication":
		u, p := sd.d.Properties["User"], sd.d.Properties["Password"]
		v := base64.StdEncoding.EncodeToString([]byte(u + ":" + p))
		s.dest.remember(v)
		return []map[string]any{{"type": "Basic", "value": v, "http_header": map[string]string{"key": "Authorization", "value": "Basic " + v}}}
	case "OAuth2ClientCredentials":
		user = "-"
	case "OAuth2Password":
		user = sd.d.Properties["User"]
	case "OAuth2UserTokenExchange", "OAuth2JWTBearer":
		claims, err := s.verify(userToken, now)
		if userToken == "" || err != nil {
			return errTok("Retrieval of OAuthToken failed due to: user token is missing or invalid")
		}
		if zid, _ := claims["zid"].(string); zid != t.ZoneID {
			return errTok("Retrieval of OAuthToken failed due to: the user token belongs to another subaccount")
		}
		user, _ = claims["user_name"].(string)
	default:
		return nil
	}
	life := time.Duration(sd.d.TokenLifetime)
	if life <= 0 {
		life = time.Hour
	}
	s.dest.mu.Lock()
	s.dest.seq++
	desc := fmt.Sprintf("oauth2:%s:%s:%s:%d", auth, t.Subdomain, user, s.dest.seq)
	value := "dst-" + randomHex(16)
	s.dest.issued[value] = desc
	s.dest.mu.Unlock()
	s.dest.remember(value)
	return []map[string]any{{"type": "bearer", "value": value, "http_header": map[string]string{"key": "Authorization", "value": "Bearer " + value},
		"expires_in": fmt.Sprint(int64(life / time.Second))}}
}

// describeCredential names the credential of a request without its secret.
func (s *Server) describeCredential(r *http.Request) string {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		return "cert:" + r.TLS.PeerCertificates[0].Subject.CommonName
	}
	a := r.Header.Get("Authorization")
	switch {
	case a == "":
		return "none"
	case strings.HasPrefix(a, "Basic "):
		b, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(a, "Basic "))
		u, _, _ := strings.Cut(string(b), ":")
		return "basic:" + u
	case strings.HasPrefix(a, "Bearer "):
		s.dest.mu.Lock()
		d, ok := s.dest.issued[strings.TrimPrefix(a, "Bearer ")]
		s.dest.mu.Unlock()
		if ok {
			return d
		}
		return "bearer:unknown"
	}
	return "other"
}

// echo records and answers what a stand-in received.
func (s *Server) echo(w http.ResponseWriter, r *http.Request, seen Seen) {
	seen.Host, seen.Method, seen.Path, seen.Query = r.Host, r.Method, r.URL.Path, r.URL.RawQuery
	seen.Credential = s.describeCredential(r)
	for k, v := range r.Header {
		if strings.HasPrefix(k, "X-Dest-") {
			if seen.Headers == nil {
				seen.Headers = map[string]string{}
			}
			seen.Headers[k] = strings.Join(v, ",")
		}
	}
	seen.ProxyHeader = r.Header.Get("Proxy-Authorization") != "" || r.Header.Get("SAP-Connectivity-Authentication") != ""
	s.dest.mu.Lock()
	if len(s.dest.received) < 10000 {
		s.dest.received = append(s.dest.received, seen)
	}
	if seen.Via == "internet" {
		s.dest.stats.Backend++
	} else {
		s.dest.stats.OnPremise++
	}
	s.dest.mu.Unlock()
	writeJSON(w, http.StatusOK, seen)
}

func (s *Server) backendHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.echo(w, r, Seen{Via: "internet"})
	})
}

// destinationAdmin adds the control endpoints:
//
//	POST   /mock/destinations          a Destination (seed or replace)
//	POST   /mock/destinations/outage   {"down": true|false}
//	POST   /mock/connectivity/ttl      {"token": "2s"}
//	GET    /mock/destinations/stats    DestinationStats
//	GET    /mock/destinations/seen     []Seen
func (s *Server) destinationAdmin(mux *http.ServeMux) {
	if s.dest == nil {
		return
	}
	mux.HandleFunc("POST /mock/destinations", func(w http.ResponseWriter, r *http.Request) {
		var d Destination
		if err := decodeStrict(r, &d); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		if err := s.SeedDestination(d); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, http.StatusCreated, map[string]string{"status": "seeded"})
	})
	mux.HandleFunc("POST /mock/destinations/outage", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Down bool `json:"down"`
		}
		if err := decodeStrict(r, &req); err != nil {
			adminError(w, http.StatusBadRequest, err)
			return
		}
		s.SetDestinationServiceDown(req.Down)
		writeJSON(w, http.StatusOK, map[string]bool{"down": req.Down})
	})
	mux.HandleFunc("POST /mock/connectivity/ttl", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Token flexDuration `json:"token"`
		}
		if err := decodeStrict(r, &req); err != nil || req.Token < 0 {
			adminError(w, http.StatusBadRequest, errors.New("mockauth: want {\"token\": DURATION}"))
			return
		}
		s.SetConnectivityTokenTTL(time.Duration(req.Token))
		writeJSON(w, http.StatusOK, map[string]string{"token": time.Duration(req.Token).String()})
	})
	mux.HandleFunc("GET /mock/destinations/stats", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.DestinationStats())
	})
	mux.HandleFunc("GET /mock/destinations/seen", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, s.Seen())
	})
}

// destinationBindings are the VCAP entries of the two bindings.
func (s *Server) destinationBindings(common func(c *client) map[string]any, binding func(name, label, plan string, creds map[string]any) map[string]any, v map[string]any) {
	if s.dest == nil {
		return
	}
	d := common(s.clients[DestinationClientID])
	d["clientsecret"] = s.clients[DestinationClientID].secret
	d["uri"] = s.dest.destURL
	c := common(s.clients[ConnectivityClientID])
	c["clientsecret"] = s.clients[ConnectivityClientID].secret
	c["token_service_url"] = s.info.URL
	host, port, _ := strings.Cut(s.dest.proxyHostPort, ":")
	c["onpremise_proxy_host"] = host
	c["onpremise_proxy_http_port"] = port
	c["onpremise_proxy_port"] = port
	v["destination"] = []any{binding(DestinationBindingName, "destination", "lite", d)}
	v["connectivity"] = []any{binding(ConnectivityBindingName, "connectivity", "lite", c)}
}
