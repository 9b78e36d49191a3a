package destination_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/credbroker/credbroker/e2e/harness"
	"github.com/credbroker/credbroker/mockauth"
)

// env is a mock with the Destination service, the files credbroker reads
// and the planted secrets of one spec.
type env struct {
	mock     *mockauth.Server
	dir      string
	vcapFile string
	caFile   string
	secrets  *harness.Secrets
	basicPW  string
	ksPW     string
}

func newEnv() *env {
	GinkgoHelper()
	m, err := mockauth.Start(mockauth.Options{Destinations: true})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(m.Close)
	e := &env{mock: m, dir: GinkgoT().TempDir(), secrets: &harness.Secrets{}}
	for _, id := range []string{mockauth.SecretClientID, mockauth.DestinationClientID, mockauth.ConnectivityClientID} {
		e.secrets.Add("client secret of "+id, m.ClientSecret(id))
	}
	e.basicPW = e.secrets.Plant("basic password")
	e.ksPW = e.secrets.Plant("keystore password")
	e.vcapFile = e.write("vcap.json", m.VCAPServices())
	e.caFile = e.write("ca.crt", m.CACertPEM())
	return e
}

func (e *env) write(name string, data []byte) string {
	GinkgoHelper()
	return harness.WriteFile(e.dir, name, data)
}

// seed adds one destination to each of the tenants.
func (e *env) seed(d mockauth.Destination, tenants ...string) {
	GinkgoHelper()
	for _, t := range tenants {
		d.Tenant = t
		Expect(e.mock.SeedDestination(d)).To(Succeed())
	}
}

// userToken fetches a user's JWT of a tenant with the password grant.
func (e *env) userToken(tenant, user string) string {
	GinkgoHelper()
	u := fmt.Sprintf("https://%s.%s:%d/oauth/token", tenant, mockauth.UAADomain, e.mock.Info().TokenPort)
	f := url.Values{"grant_type": {"password"}, "client_id": {mockauth.SecretClientID}, "client_secret": {e.mock.ClientSecret(mockauth.SecretClientID)},
		"username": {user}, "password": {user + "-password"}}
	resp, err := e.mock.Client().PostForm(u, f)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	Expect(json.NewDecoder(resp.Body).Decode(&tr)).To(Succeed())
	Expect(tr.AccessToken).NotTo(BeEmpty())
	e.secrets.Add("user token of "+user+"@"+tenant, tr.AccessToken)
	return tr.AccessToken
}

// start runs the sidecar with the routes; at the end of the spec every
// output and the admin endpoints are scanned for secrets.
func (e *env) start(routes string) *harness.Sidecar {
	GinkgoHelper()
	var adminOut [][]byte
	sc := harness.StartSidecar(bin, harness.SidecarOptions{Dir: e.dir, CAFile: e.caFile, VCAPFile: e.vcapFile, AfterExit: func(sc *harness.Sidecar) {
		for _, s := range e.mock.DestinationSecrets() {
			e.secrets.Add("token seen by the Destination service or Connectivity proxy", s)
		}
		outs := append([][]byte{sc.Session.Out.Contents(), sc.Session.Err.Contents()}, adminOut...)
		e.secrets.ExpectNotIn(outs...)
	}}, routes)
	Eventually(func() int { return status(sc.Admin + "/healthz") }).WithTimeout(30 * time.Second).Should(Equal(200))
	DeferCleanup(func() {
		// Before the process stops: what an operator can read.
		for _, p := range []string{"/metrics", "/status", "/readyz"} {
			resp, err := http.Get(sc.Admin + p)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				adminOut = append(adminOut, b)
			}
		}
	})
	return sc
}

// reloads reads credbroker_config_reloads_total{outcome="ok"}.
func reloads(sc *harness.Sidecar) int {
	resp, err := http.Get(sc.Admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, `credbroker_config_reloads_total{outcome="ok"} `); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// mustKeyPEM is the x509 binding's private key from the mock's VCAP JSON.
func mustKeyPEM(m *mockauth.Server) []byte {
	GinkgoHelper()
	var v map[string][]struct {
		Name        string         `json:"name"`
		Credentials map[string]any `json:"credentials"`
	}
	Expect(json.Unmarshal(m.VCAPServices(), &v)).To(Succeed())
	for _, b := range v["xsuaa"] {
		if k, ok := b.Credentials["key"].(string); ok && k != "" {
			return []byte(k)
		}
	}
	Fail("no x509 binding key")
	return nil
}

func status(u string) int {
	resp, err := http.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// call sends GET through the sidecar and returns status, reason, the
// stand-in's record and the body.
type answer struct {
	status int
	reason string
	seen   mockauth.Seen
	body   string
}

func call(sc *harness.Sidecar, path, tenant, user string) answer {
	GinkgoHelper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, sc.Proxy+path, nil)
	Expect(err).NotTo(HaveOccurred())
	if tenant != "" {
		req.Header.Set("X-Tenant", tenant)
	}
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+user)
	}
	resp, err := http.DefaultClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, reason: resp.Header.Get("X-Credbroker-Error"), body: string(b)}
	if a.status == 200 {
		Expect(json.Unmarshal(b, &a.seen)).To(Succeed(), string(b))
	}
	return a
}

const onpremURL = "http://erp.virtual:8000/sap/opu"

func routeYAML(names ...string) string {
	var b strings.Builder
	b.WriteString("routes:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  - name: %s\n    auth: {type: destination, destination: %s, binding: destination, connectivity: connectivity, tenant_header: X-Tenant}\n", n, n)
	}
	return b.String()
}

var _ = Describe("destination routes", func() {
	It("serves every authentication type, Internet and OnPremise, for two tenants and two users without cross-user reuse", func() {
		e := newEnv()
		back := e.mock.BackendURL()
		tenants := []string{"provider", "subscriber1"}
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "none", "URL": back + "/api", "Authentication": "NoAuthentication",
			"URL.headers.X-Dest-Custom": "v1", "URL.queries.lang": "EN", "sap-client": "100"}}, tenants...)
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "basic", "URL": back, "Authentication": "BasicAuthentication", "User": "erpuser", "Password": e.basicPW}}, tenants...)
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "cc", "URL": back, "Authentication": "OAuth2ClientCredentials"}}, tenants...)
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "pw", "URL": back, "Authentication": "OAuth2Password", "User": "pwuser"}}, tenants...)
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "ux", "URL": back, "Authentication": "OAuth2UserTokenExchange"}}, tenants...)
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "jb", "URL": back, "Authentication": "OAuth2JWTBearer"}}, tenants...)
		d := mockauth.Destination{Properties: map[string]string{"Name": "cert", "URL": back, "Authentication": "ClientCertificateAuthentication", "KeyStoreLocation": "client.p12", "KeyStorePassword": e.ksPW}}
		d.Keystore = &struct {
			Name     string `json:"name"`
			Password string `json:"password"`
		}{"client.p12", e.ksPW}
		e.seed(d, tenants...)
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "pp", "URL": onpremURL, "Authentication": "PrincipalPropagation", "ProxyType": "OnPremise", "CloudConnectorLocationId": "loc1"}}, tenants...)
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "opbasic", "URL": onpremURL, "Authentication": "BasicAuthentication", "ProxyType": "OnPremise", "User": "erpuser", "Password": e.basicPW, "sap-client": "200"}}, tenants...)
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "saml", "URL": back, "Authentication": "OAuth2SAMLBearerAssertion"}}, tenants...)
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "broken", "URL": back, "Authentication": "OAuth2ClientCredentials"}, TokenError: "Retrieval of OAuthToken failed due to: invalid_client"}, tenants...)
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "nourl", "Authentication": "NoAuthentication"}}, tenants...)
		sc := e.start(routeYAML("none", "basic", "cc", "pw", "ux", "jb", "cert", "pp", "opbasic", "saml", "broken", "nourl", "ghost"))

		for _, tenant := range tenants {
			By("tenant " + tenant)
			hdr := tenant
			if tenant == "provider" {
				hdr = "" // the provider is the default
			}
			alice, bob := e.userToken(tenant, "alice"), e.userToken(tenant, "bob")

			a := call(sc, "/none/orders?top=1", hdr, "")
			Expect(a.status).To(Equal(200), a.body)
			Expect(a.seen.Via).To(Equal("internet"))
			Expect(a.seen.Path).To(Equal("/api/orders"))
			Expect(a.seen.Query).To(Equal("lang=EN&sap-client=100&top=1"))
			Expect(a.seen.Headers).To(HaveKeyWithValue("X-Dest-Custom", "v1"))
			Expect(a.seen.Credential).To(Equal("none"))
			Expect(a.seen.ProxyHeader).To(BeFalse())

			Expect(call(sc, "/basic/x", hdr, "").seen.Credential).To(Equal("basic:erpuser"))
			Expect(call(sc, "/cc/x", hdr, "").seen.Credential).To(HavePrefix("oauth2:OAuth2ClientCredentials:" + tenant + ":-:"))
			Expect(call(sc, "/pw/x", hdr, "").seen.Credential).To(HavePrefix("oauth2:OAuth2Password:" + tenant + ":pwuser:"))
			Expect(call(sc, "/cert/x", hdr, "").seen.Credential).To(Equal("cert:dest-" + tenant + "-cert"))

			for _, name := range []string{"ux", "jb"} {
				typ := map[string]string{"ux": "OAuth2UserTokenExchange", "jb": "OAuth2JWTBearer"}[name]
				before := e.mock.DestinationStats().LookupsByTenantName[tenant+"/"+name]
				Expect(call(sc, "/"+name+"/x", hdr, alice).seen.Credential).To(HavePrefix("oauth2:" + typ + ":" + tenant + ":alice:"))
				Expect(call(sc, "/"+name+"/x", hdr, bob).seen.Credential).To(HavePrefix("oauth2:" + typ + ":" + tenant + ":bob:"))
				Expect(call(sc, "/"+name+"/x", hdr, alice).seen.Credential).To(HavePrefix("oauth2:" + typ + ":" + tenant + ":alice:"))
				Expect(call(sc, "/"+name+"/x", hdr, bob).seen.Credential).To(HavePrefix("oauth2:" + typ + ":" + tenant + ":bob:"))
				// One lookup per user; the repeats came from the cache.
				Expect(e.mock.DestinationStats().LookupsByTenantName[tenant+"/"+name]).To(Equal(before + 2))
				a = call(sc, "/"+name+"/x", hdr, "")
				Expect(a.status).To(Equal(http.StatusUnauthorized))
				Expect(a.reason).To(Equal("no-user-token"))
			}

			a = call(sc, "/pp/x", hdr, alice)
			Expect(a.status).To(Equal(200), a.body)
			Expect(a.seen.Via).To(Equal("onpremise"))
			Expect(a.seen.Tenant).To(Equal(tenant))
			Expect(a.seen.LocationID).To(Equal("loc1"))
			Expect(a.seen.Principal).To(Equal("alice"))
			Expect(a.seen.Host).To(Equal("erp.virtual:8000"))
			Expect(a.seen.Path).To(Equal("/sap/opu/x"))
			Expect(a.seen.ProxyHeader).To(BeFalse())
			Expect(call(sc, "/pp/x", hdr, bob).seen.Principal).To(Equal("bob"))
			Expect(call(sc, "/pp/x", hdr, alice).seen.Principal).To(Equal("alice"))

			a = call(sc, "/opbasic/y", hdr, "")
			Expect(a.status).To(Equal(200), a.body)
			Expect(a.seen.Credential).To(Equal("basic:erpuser"))
			Expect(a.seen.Query).To(Equal("sap-client=200"))
			Expect(a.seen.Principal).To(BeEmpty())

			a = call(sc, "/saml/x", hdr, alice)
			Expect(a.status).To(Equal(http.StatusBadGateway))
			Expect(a.reason).To(Equal("destination-unsupported-authentication"))
			Expect(a.body).To(ContainSubstring("OAuth2SAMLBearerAssertion"))

			a = call(sc, "/broken/x", hdr, "")
			Expect(a.status).To(Equal(http.StatusBadGateway))
			Expect(a.reason).To(Equal("destination-auth-token-error"))
			Expect(a.body).To(ContainSubstring("invalid_client"))

			a = call(sc, "/nourl/x", hdr, "")
			Expect(a.status).To(Equal(http.StatusBadGateway))
			Expect(a.reason).To(Equal("destination-no-url"))

			a = call(sc, "/ghost/x", hdr, "")
			Expect(a.status).To(Equal(http.StatusBadGateway))
			Expect(a.reason).To(Equal("destination-not-found"))
			Expect(a.body).To(ContainSubstring(`"ghost"`))
		}
		// A subscriber without its own destination gets the provider's
		// (subscriber-first) and the provider's Connectivity token.
		carol := e.userToken("subscriber2", "alice")
		a := call(sc, "/cc/x", "subscriber2", "")
		Expect(a.seen.Credential).To(HavePrefix("oauth2:OAuth2ClientCredentials:provider:-:"))
		a = call(sc, "/opbasic/x", "subscriber2", carol)
		Expect(a.status).To(Equal(200), a.body)
		Expect(a.seen.Tenant).To(Equal("provider"))
	})

	It("refreshes a short-lived Connectivity token on its own expiry", func() {
		e := newEnv()
		e.mock.SetConnectivityTokenTTL(3 * time.Second)
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "erp", "URL": onpremURL, "Authentication": "NoAuthentication", "ProxyType": "OnPremise"}}, "provider", "subscriber1")
		sc := e.start(routeYAML("erp"))
		first := e.mock.DestinationStats()
		failures := 0
		// Keep calling until the sidecar has fetched several Connectivity
		// tokens per tenant; every call must succeed (an expired token
		// would get 407 from the proxy).
		Eventually(func() int {
			for _, t := range []string{"", "subscriber1"} {
				if a := call(sc, "/erp/x", t, ""); a.status != 200 {
					failures++
				}
			}
			return e.mock.DestinationStats().ConnectivityTokens
		}).WithTimeout(60 * time.Second).WithPolling(100 * time.Millisecond).Should(BeNumerically(">=", first.ConnectivityTokens+6))
		Expect(failures).To(BeZero())
		Expect(e.mock.DestinationStats().ProxyRefused).To(BeZero())
		// The destination itself was looked up once per tenant.
		Expect(e.mock.DestinationStats().LookupsByTenantName).To(Equal(map[string]int{"provider/erp": 1, "subscriber1/erp": 1}))
	})

	It("serves cached destinations through an outage of the Destination service with zero failures", func() {
		e := newEnv()
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "cc", "URL": e.mock.BackendURL(), "Authentication": "OAuth2ClientCredentials"}, TokenLifetime: 0}, "provider", "subscriber1")
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "other", "URL": e.mock.BackendURL(), "Authentication": "NoAuthentication"}}, "provider")
		sc := e.start(routeYAML("cc", "other"))
		Expect(call(sc, "/cc/x", "", "").status).To(Equal(200))
		Expect(call(sc, "/cc/x", "subscriber1", "").status).To(Equal(200))
		e.mock.SetDestinationServiceDown(true)
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func(w int) {
				defer GinkgoRecover()
				defer wg.Done()
				for i := 0; i < 50; i++ {
					t := ""
					if (w+i)%2 == 1 {
						t = "subscriber1"
					}
					a := call(sc, "/cc/x", t, "")
					mu.Lock()
					codes[a.status]++
					mu.Unlock()
				}
			}(w)
		}
		wg.Wait()
		Expect(codes).To(Equal(map[int]int{200: 400}))
		// Nothing cached: the outage shows, with its reason.
		a := call(sc, "/other/x", "", "")
		Expect(a.status).To(Equal(http.StatusServiceUnavailable))
		Expect(a.reason).To(Equal("destination-service-unavailable"))
		Expect(e.mock.DestinationStats().Outage).To(BeNumerically(">=", 1))
		e.mock.SetDestinationServiceDown(false)
		Expect(call(sc, "/other/x", "", "").status).To(Equal(200))
		resp, err := http.Get(sc.Admin + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(string(m)).To(MatchRegexp(`credbroker_destination_cache_hits_total\{binding="destination"\} [1-9]\d\d`))
		Expect(string(m)).To(ContainSubstring(`credbroker_destination_lookups_total{binding="destination",outcome="destination-service-unavailable"}`))
		Expect(string(m)).To(ContainSubstring(`credbroker_proxy_credential_errors_total{reason="destination-service-unavailable",route="other"} 1`))
	})

	It("makes one lookup for a cold burst per (tenant, user, destination)", func() {
		n := harness.Scale(200, 1000)
		e := newEnv()
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "ux", "URL": e.mock.BackendURL(), "Authentication": "OAuth2UserTokenExchange"}}, "subscriber1")
		sc := e.start(routeYAML("ux"))
		users := map[string]string{"alice": e.userToken("subscriber1", "alice"), "bob": e.userToken("subscriber1", "bob")}
		var wg sync.WaitGroup
		var mu sync.Mutex
		got := map[string]int{}
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			name := "alice"
			if i%2 == 1 {
				name = "bob"
			}
			wg.Add(1)
			go func(name string) {
				defer GinkgoRecover()
				defer wg.Done()
				<-start
				a := call(sc, "/ux/x", "subscriber1", users[name])
				mu.Lock()
				defer mu.Unlock()
				if a.status == 200 && strings.HasPrefix(a.seen.Credential, "oauth2:OAuth2UserTokenExchange:subscriber1:"+name+":") {
					got[name]++
				} else {
					got["wrong"]++
				}
			}(name)
		}
		close(start)
		wg.Wait()
		Expect(got).To(Equal(map[string]int{"alice": n / 2, "bob": n / 2}))
		Expect(e.mock.DestinationStats().LookupsByTenantName).To(Equal(map[string]int{"subscriber1/ux": 2}), "one lookup per user")
	})

	It("exchanges the user's token for principal propagation when principal_exchange is set", func() {
		e := newEnv()
		e.secrets.Add("private key of the x509 binding", string(mustKeyPEM(e.mock)))
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "pp", "URL": onpremURL, "Authentication": "PrincipalPropagation", "ProxyType": "OnPremise"}}, "subscriber1")
		sc := e.start(routeYAML("pp") + `  - name: ppx
    auth: {type: destination, destination: pp, binding: destination, connectivity: connectivity, tenant_header: X-Tenant, principal_exchange: xsuaa-x509}
`)
		alice := e.userToken("subscriber1", "alice")
		a := call(sc, "/pp/x", "subscriber1", alice)
		Expect(a.status).To(Equal(200), a.body)
		Expect(a.seen.Principal).To(Equal("alice"))
		Expect(a.seen.PrincipalClient).To(Equal(mockauth.SecretClientID), "forwarded as the app got it")
		a = call(sc, "/ppx/x", "subscriber1", alice)
		Expect(a.status).To(Equal(200), a.body)
		Expect(a.seen.Principal).To(Equal("alice"))
		Expect(a.seen.PrincipalClient).To(Equal(mockauth.X509ClientID), "exchanged for a token of xsuaa-x509")
	})

	It("is ready only while the connectivity binding of an on-premise route gets a token, says why in /readyz and /status, and recovers", func() {
		e := newEnv()
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "erp", "URL": onpremURL, "Authentication": "NoAuthentication", "ProxyType": "OnPremise"}}, "provider")
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "web", "URL": e.mock.BackendURL(), "Authentication": "NoAuthentication"}}, "provider")
		good, err := os.ReadFile(e.vcapFile)
		Expect(err).NotTo(HaveOccurred())
		secret := e.mock.ClientSecret(mockauth.ConnectivityClientID)
		Expect(strings.Count(string(good), secret)).To(Equal(1))
		wrong := e.secrets.Plant("wrong connectivity client secret")
		e.write("vcap.json", []byte(strings.Replace(string(good), secret, wrong, 1)))

		readyz := func(sc *harness.Sidecar) string {
			resp, err := http.Get(sc.Admin + "/readyz")
			if err != nil {
				return err.Error()
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		bindingStatus := func(sc *harness.Sidecar, name string) map[string]any {
			resp, err := http.Get(sc.Admin + "/status")
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			var st struct {
				Bindings []map[string]any `json:"bindings"`
			}
			Expect(json.NewDecoder(resp.Body).Decode(&st)).To(Succeed())
			for _, b := range st.Bindings {
				if b["name"] == name {
					return b
				}
			}
			return nil
		}
		setRoutes := func(sc *harness.Sidecar, routes string) {
			cfg, err := os.ReadFile(sc.Config)
			Expect(err).NotTo(HaveOccurred())
			head, _, ok := strings.Cut(string(cfg), "routes:")
			Expect(ok).To(BeTrue())
			before := reloads(sc)
			tmp := sc.Config + ".new"
			Expect(os.WriteFile(tmp, []byte(head+routes), 0o600)).To(Succeed())
			Expect(os.Rename(tmp, sc.Config)).To(Succeed())
			sc.Session.Signal(syscall.SIGHUP)
			Eventually(func() int { return reloads(sc) }).WithTimeout(30 * time.Second).Should(BeNumerically(">", before))
		}

		// An on-premise route whose connectivity binding gets no token:
		// not ready, and the reason names the binding.
		sc := e.start(routeYAML("erp"))
		Eventually(func() string { return readyz(sc) }).WithTimeout(30 * time.Second).Should(And(
			HavePrefix("503 "), ContainSubstring(`binding "connectivity": no valid token`)))
		Expect(readyz(sc)).NotTo(ContainSubstring(`binding "destination"`), "the destination binding's token is had")
		conn := bindingStatus(sc, "connectivity")
		Expect(conn).To(HaveKeyWithValue("usable", true))
		Expect(conn).To(HaveKeyWithValue("last_error", ContainSubstring("401")))
		Expect(bindingStatus(sc, "destination")).To(HaveKey("token_expires_at"))
		a := call(sc, "/erp/x", "", "")
		Expect([]any{a.status, a.reason}).To(Equal([]any{503, "connectivity-token-unavailable"}))

		// The rule is per route: a destination route that names no
		// connectivity binding is not judged on it.
		setRoutes(sc, "routes:\n  - name: web\n    auth: {type: destination, destination: web, binding: destination}\n")
		Eventually(func() string { return readyz(sc) }).WithTimeout(30 * time.Second).Should(Equal("200 ready\n"))
		Expect(call(sc, "/web/x", "", "").status).To(Equal(200))

		// The on-premise route again, then the platform rotates the binding
		// to a good secret: ready, and the route works.
		setRoutes(sc, routeYAML("erp"))
		Eventually(func() string { return readyz(sc) }).WithTimeout(30 * time.Second).Should(HavePrefix("503 "))
		tmp := e.vcapFile + ".new"
		Expect(os.WriteFile(tmp, good, 0o600)).To(Succeed())
		Expect(os.Rename(tmp, e.vcapFile)).To(Succeed())
		Eventually(func() string { return readyz(sc) }).WithTimeout(30 * time.Second).Should(Equal("200 ready\n"))
		Expect(bindingStatus(sc, "connectivity")).To(HaveKey("token_expires_at"))
		a = call(sc, "/erp/x", "", "")
		Expect(a.status).To(Equal(200), a.body)
	})

	It("treats a hostile tenant header the same on a bearer route and a destination route: 400 tenant-invalid, nothing fetched or looked up", func() {
		e := newEnv()
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "web", "URL": e.mock.BackendURL(), "Authentication": "NoAuthentication"}}, "provider", "subscriber1")
		sc := e.start(routeYAML("web") + fmt.Sprintf("  - name: orders\n    upstream: %s\n    auth: {type: bearer, binding: xsuaa-secret, tenant_header: X-Tenant}\n", e.mock.BackendURL()))
		send := func(route string, tenants ...string) (int, string, string) {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, sc.Proxy+"/"+route+"/x", nil)
			Expect(err).NotTo(HaveOccurred())
			req.Header["X-Tenant"] = tenants
			resp, err := http.DefaultClient.Do(req)
			Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, resp.Header.Get("X-Credbroker-Error"), string(b)
		}
		// A subdomain, in any case, is that tenant on both routes.
		for _, route := range []string{"web", "orders"} {
			code, reason, body := send(route, "SUBSCRIBER1")
			Expect(code).To(Equal(200), "%s: %s %s", route, reason, body)
		}
		Expect(e.mock.DestinationStats().LookupsByTenantName).To(HaveKeyWithValue("subscriber1/web", 1))
		tokensBefore, lookupsBefore := e.mock.Stats().TokenRequests, e.mock.DestinationStats().Lookups

		hostile := [][]string{
			{"subscriber1.evil.example"}, {"evil.example/"}, {"subscriber1/../provider"}, {"a b"}, {"-subscriber1"}, {"subscriber1-"},
			{strings.Repeat("a", 64)}, {"subscriber%31"}, {"sub\u00fcscriber"}, {"subscriber1", "provider"},
		}
		for _, h := range hostile {
			var answers []string
			for _, route := range []string{"web", "orders"} {
				code, reason, body := send(route, h...)
				Expect(code).To(Equal(400), "%q on %s", h, route)
				Expect(reason).To(Equal("tenant-invalid"), "%q on %s", h, route)
				for _, v := range h {
					Expect(body).NotTo(ContainSubstring(v), "the value is not echoed")
				}
				answers = append(answers, strings.Replace(body, "route "+route+":", "route R:", 1))
			}
			Expect(answers[0]).To(Equal(answers[1]), "%q: one rule, one refusal", h)
		}
		Expect(e.mock.Stats().TokenRequests).To(Equal(tokensBefore), "no token was fetched for a hostile tenant")
		Expect(e.mock.DestinationStats().Lookups).To(Equal(lookupsBefore), "no destination was looked up for a hostile tenant")
		resp, err := http.Get(sc.Admin + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(string(m)).To(ContainSubstring(fmt.Sprintf(`credbroker_proxy_refused_total{reason="tenant-invalid"} %d`, 2*len(hostile))))
	})

	It("refuses an OnPremise destination on a route without connectivity with 502 destination-no-connectivity: counted, logged, nothing sent", func() {
		e := newEnv()
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "erp", "URL": onpremURL, "Authentication": "BasicAuthentication", "ProxyType": "OnPremise", "User": "erpuser", "Password": e.basicPW}}, "provider")
		logFile := filepath.Join(e.dir, "access.log")
		sc := e.start(fmt.Sprintf("access_log: {enabled: true, path: %s}\nroutes:\n  - name: erp\n    auth: {type: destination, destination: erp, binding: destination}\n", logFile))
		for range 2 {
			a := call(sc, "/erp/x?top=1", "", "")
			Expect(a.status).To(Equal(502), a.body)
			Expect(a.reason).To(Equal("destination-no-connectivity"))
			Expect(a.body).To(ContainSubstring("connectivity binding"))
			Expect(a.body).NotTo(ContainSubstring(e.basicPW))
		}
		st := e.mock.DestinationStats()
		Expect(st.LookupsByTenantName).To(HaveKeyWithValue("provider/erp", 1), "looked up once, then from the cache")
		Expect(st.ProxyRequests).To(BeZero(), "nothing went to the Connectivity proxy")
		Expect(st.OnPremise).To(BeZero())
		Expect(st.Backend).To(BeZero(), "nothing went anywhere else either")
		resp, err := http.Get(sc.Admin + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(string(m)).To(ContainSubstring(`credbroker_proxy_refused_total{reason="destination-no-connectivity"} 2`))
		Expect(string(m)).To(ContainSubstring(`credbroker_proxy_requests_total{code="502",route="erp"} 2`))
		Eventually(func() []string {
			data, _ := os.ReadFile(logFile)
			var got []string
			for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				var line map[string]any
				if json.Unmarshal([]byte(l), &line) == nil {
					got = append(got, fmt.Sprint(line["route"], " ", line["auth"], " ", line["path"], " ", line["status"], " ", line["reason"], " ", line["upstream_ms"]))
				}
			}
			return got
		}).WithTimeout(20 * time.Second).Should(Equal([]string{
			"erp destination /erp/x 502 destination-no-connectivity 0",
			"erp destination /erp/x 502 destination-no-connectivity 0",
		}))
	})

	It("keeps cached destinations across a configuration reload", func() {
		e := newEnv()
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "cc", "URL": e.mock.BackendURL(), "Authentication": "OAuth2ClientCredentials"}}, "provider")
		sc := e.start(routeYAML("cc"))
		Expect(call(sc, "/cc/x", "", "").status).To(Equal(200))
		before := reloads(sc)
		sc.Session.Signal(syscall.SIGHUP)
		Eventually(func() int { return reloads(sc) }).WithTimeout(30 * time.Second).Should(BeNumerically(">", before))
		e.mock.SetDestinationServiceDown(true)
		a := call(sc, "/cc/x", "", "")
		Expect(a.status).To(Equal(200), a.body)
		Expect(e.mock.DestinationStats().LookupsByTenantName).To(HaveKeyWithValue("provider/cc", 1))
	})

	It("shows a resolved destination with credbroker destination, secrets redacted", func() {
		e := newEnv()
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "basic", "URL": e.mock.BackendURL() + "/odata", "Authentication": "BasicAuthentication", "User": "erpuser", "Password": e.basicPW}}, "subscriber1")
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "ux", "URL": e.mock.BackendURL(), "Authentication": "OAuth2UserTokenExchange"}}, "subscriber1")
		e.seed(mockauth.Destination{Properties: map[string]string{"Name": "erp", "URL": onpremURL, "Authentication": "PrincipalPropagation", "ProxyType": "OnPremise", "CloudConnectorLocationId": "loc1"}}, "subscriber1")
		base := []string{"destination", "--vcap-file", e.vcapFile, "--ca-file", e.caFile, "--tenant", "subscriber1"}
		var outs [][]byte
		run := func(args ...string) *gexec.Session {
			s := harness.Start(bin, nil, append(append([]string{}, base...), args...)...)
			Eventually(s).WithTimeout(60 * time.Second).Should(gexec.Exit())
			outs = append(outs, s.Out.Contents(), s.Err.Contents())
			return s
		}
		s := run("basic")
		Expect(s.ExitCode()).To(Equal(0), string(s.Err.Contents()))
		out := string(s.Out.Contents())
		Expect(out).To(ContainSubstring(e.mock.BackendURL() + "/odata"))
		Expect(out).To(ContainSubstring("BasicAuthentication"))
		Expect(out).To(ContainSubstring("Authorization (values redacted)"))
		Expect(out).To(MatchRegexp(`cache expires\s+\d{4}-`))

		s = run("ux")
		Expect(s.ExitCode()).To(Equal(2))
		Expect(string(s.Err.Contents())).To(ContainSubstring("user"))

		tokFile := e.write("user.jwt", []byte(e.userToken("subscriber1", "alice")))
		s = run("ux", "--user-token-file", tokFile, "--json")
		Expect(s.ExitCode()).To(Equal(0), string(s.Err.Contents()))
		var o map[string]any
		Expect(json.Unmarshal(s.Out.Contents(), &o)).To(Succeed())
		Expect(o).To(HaveKeyWithValue("authentication", "OAuth2UserTokenExchange"))
		Expect(o).To(HaveKeyWithValue("user_dependent", true))
		Expect(o["auth_token_expires_at"]).NotTo(BeEmpty())

		s = run("erp", "--user-token-file", tokFile)
		Expect(s.ExitCode()).To(Equal(0), string(s.Err.Contents()))
		Expect(string(s.Out.Contents())).To(ContainSubstring("OnPremise"))
		Expect(string(s.Out.Contents())).To(MatchRegexp(`connectivity token\s+ok`))
		Expect(string(s.Out.Contents())).To(ContainSubstring("loc1"))

		s = run("ghost")
		Expect(s.ExitCode()).To(Equal(1))
		Expect(string(s.Err.Contents())).To(ContainSubstring("destination-not-found"))
		Expect(string(s.Err.Contents())).To(ContainSubstring(`"ghost"`))

		for _, v := range e.mock.DestinationSecrets() {
			e.secrets.Add("token seen by the mock", v)
		}
		e.secrets.ExpectNotIn(outs...)
	})
})
