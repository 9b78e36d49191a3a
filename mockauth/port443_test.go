package mockauth

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func TestParsePort443Mode(t *testing.T) {
	g := NewWithT(t)
	for in, want := range map[string]Port443Mode{"": Port443Off, "off": Port443Off, "AUTO": Port443Auto, " on ": Port443On} {
		m, err := ParsePort443Mode(in)
		g.Expect(err).NotTo(HaveOccurred(), in)
		g.Expect(m).To(Equal(want), in)
		g.Expect(ParsePort443Mode(m.String())).To(Equal(want))
	}
	_, err := ParsePort443Mode("443")
	g.Expect(err).To(MatchError(ContainSubstring("want auto, on or off")))
}

// canBind443 reports whether this process may bind port 443 of the role
// addresses (root or CAP_NET_BIND_SERVICE on Linux).
func canBind443(t *testing.T) bool {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.6:443")
	if err == nil {
		ln.Close()
		return true
	}
	// Held by another mock (parallel tests): the permission is there.
	return errors.Is(err, syscall.EADDRINUSE)
}

// startPort443 starts a mock with Port443On, retrying while another mock of
// a parallel test holds the addresses.
func startPort443(t *testing.T, opts Options) *Server {
	t.Helper()
	opts.Port443 = Port443On
	var srv *Server
	NewWithT(t).Eventually(func() error {
		var err error
		srv, err = Start(opts)
		return err
	}).WithTimeout(2 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func TestPort443URLsCarryNoPort(t *testing.T) {
	if !canBind443(t) {
		t.Skip("this process may not bind port 443 (not root, no CAP_NET_BIND_SERVICE)")
	}
	g := NewWithT(t)
	srv := startPort443(t, Options{TwoPhase: true})
	info := srv.Info()
	g.Expect(info.Port443).To(BeTrue())
	g.Expect(info.URL).To(Equal("https://provider.authentication.localhost"))
	g.Expect(info.CertURL).To(Equal("https://provider.authentication.cert.localhost"))
	g.Expect(info.IASURL).To(Equal("https://provider.accounts.localhost"))
	g.Expect(info.ConnectorURL).To(Equal("https://connector.localhost"))
	g.Expect(info.RuntimeConnectorURL).To(Equal("https://runtime-connector.localhost"))
	g.Expect(info.GatewayURL).To(Equal("https://gateway.localhost"))
	g.Expect(info.TokenKeysURL).To(Equal("https://provider.authentication.localhost/token_keys"))
	g.Expect(info.AdminURL).To(MatchRegexp(`^http://127\.0\.0\.1:\d+$`))
	g.Expect(info.Resolve).To(ContainElements(
		"authentication.localhost=127.0.0.2", "provider.authentication.localhost=127.0.0.2",
		"subscriber1.authentication.cert.localhost=127.0.0.3", "connector.localhost=127.0.0.4",
		"gateway.localhost=127.0.0.5", "runtime-connector.localhost=127.0.0.6"))
	g.Expect(info.Resolve).To(HaveLen(len(srv.Hosts())))

	c := srv.Client(srv.BindingCertificate())
	// A token with the secret and one with the binding's certificate: both
	// name the port-less issuer and jku, and verify with the keys served
	// on the bare uaadomain host (https://{uaadomain}/token_keys).
	for _, base := range []string{info.URL, info.CertURL} {
		form := ccForm(srv)
		if strings.Contains(base, ".cert.") {
			form = url.Values{"grant_type": {"client_credentials"}, "client_id": {X509ClientID}}
		}
		res := postForm(t, c, base+"/oauth/token", form, nil)
		g.Expect(res.status).To(Equal(http.StatusOK), string(res.raw))
		hdr, claims, err := verifyWithJWKS(t, c, "https://"+info.UAADomain+"/token_keys", res.body["access_token"].(string), time.Now())
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(hdr).To(HaveKeyWithValue("jku", info.TokenKeysURL))
		g.Expect(claims).To(HaveKeyWithValue("iss", info.URL+"/oauth/token"))
	}
	// The connector and the gateway answer on their port-less URLs.
	g.Expect(getJSON(t, c, info.ConnectorURL+"/v1/applications/signingRequests/info?token=nope").status).To(Equal(http.StatusForbidden))
	_, err := srv.Client().Get(info.GatewayURL + "/")
	g.Expect(err).To(HaveOccurred(), "the gateway requires a client certificate in the handshake")
}

func TestPort443AutoFallsBackToPorts(t *testing.T) {
	g := NewWithT(t)
	// Another Host than 127.0.0.1 cannot serve the role addresses: Auto
	// falls back to random ports, On refuses.
	srv := startMock(t, Options{Host: "::1", Port443: Port443Auto})
	g.Expect(srv.Info().Port443).To(BeFalse())
	g.Expect(srv.Info().URL).To(MatchRegexp(`^https://provider\.authentication\.localhost:\d+$`))
	g.Expect(srv.Info().Resolve).To(ContainElement("provider.authentication.localhost=::1"))
	_, err := Start(Options{Host: "::1", Port443: Port443On})
	g.Expect(err).To(MatchError(ContainSubstring("cannot be used with it")))

	// A role address held by someone else: Auto falls back, On fails.
	if !canBind443(t) {
		t.Skip("this process may not bind port 443: the held-address case needs it")
	}
	var held net.Listener
	g.Eventually(func() error {
		var err error
		held, err = net.Listen("tcp", "127.0.0.5:443")
		return err
	}).WithTimeout(2 * time.Minute).WithPolling(200 * time.Millisecond).Should(Succeed())
	defer held.Close()
	srv = startMock(t, Options{Port443: Port443Auto})
	g.Expect(srv.Info().Port443).To(BeFalse())
	g.Expect(srv.Info().GatewayURL).To(MatchRegexp(`^https://gateway\.localhost:\d+$`))
	_, err = Start(Options{Port443: Port443On})
	g.Expect(err).To(MatchError(ContainSubstring("127.0.0.5:443")))
}

func TestDialContextPort443Addresses(t *testing.T) {
	g := NewWithT(t)
	for name, want := range map[string]string{
		"authentication.localhost": "127.0.0.2", "P.Authentication.localhost.": "127.0.0.2",
		"x.accounts.localhost": "127.0.0.2", "authentication.cert.localhost": "127.0.0.3",
		"x.authentication.cert.localhost": "127.0.0.3", "connector.localhost": "127.0.0.4",
		"gateway.localhost": "127.0.0.5", "runtime-connector.localhost": "127.0.0.6",
	} {
		a, ok := Port443Addr(name)
		g.Expect(ok).To(BeTrue(), name)
		g.Expect(a.String()).To(Equal(want), name)
	}
	for _, name := range []string{"localhost", "x.connector.localhost", "authentication.localhost.example.com", "example.com"} {
		_, ok := Port443Addr(name)
		g.Expect(ok).To(BeFalse(), name)
	}
}
