package tokenclient

import (
	"errors"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
)

func TestBuildEndpoint(t *testing.T) {
	const (
		sec  = "https://provider.authentication.eu10.example.com"
		cert = "https://provider.authentication.cert.eu10.example.com"
		dom  = "authentication.eu10.example.com"
	)
	for _, tc := range []struct {
		name, base, uaa string
		flavor          Flavor
		x509            bool
		tenant, zone    string
		want, wantZID   string
		bad             string
	}{
		{name: "secret, provider", base: sec, want: sec + "/oauth/token"},
		{name: "x509, provider", base: cert, x509: true, want: cert + "/oauth/token"},
		{name: "ias path", base: "https://tenant.accounts.example.com", flavor: IAS, want: "https://tenant.accounts.example.com/oauth2/token"},
		{name: "token path given already", base: sec + "/oauth/token", want: sec + "/oauth/token"},
		{name: "base path kept", base: "https://auth.localhost:8443/uaa/", want: "https://auth.localhost:8443/uaa/oauth/token"},
		{name: "secret, tenant subdomain", base: sec, tenant: "sub1", want: "https://sub1.authentication.eu10.example.com/oauth/token"},
		{name: "x509, tenant keeps cert label", base: cert, x509: true, tenant: "Sub1", want: "https://sub1.authentication.cert.eu10.example.com/oauth/token"},
		{name: "tenant keeps port", base: "https://provider.authentication.localhost:4443", tenant: "t2", want: "https://t2.authentication.localhost:4443/oauth/token"},
		{name: "secret, zone to uaadomain", base: sec, uaa: dom, zone: "zone-1", want: "https://" + dom + "/oauth/token", wantZID: "zone-1"},
		{name: "x509, zone to cert uaadomain", base: cert, uaa: dom, x509: true, zone: "z", want: "https://authentication.cert.eu10.example.com/oauth/token", wantZID: "z"},
		{name: "zone without uaadomain", base: cert, x509: true, zone: "z", want: "https://authentication.cert.eu10.example.com/oauth/token", wantZID: "z"},
		{name: "zone keeps port", base: "https://provider.authentication.localhost:4443", uaa: "authentication.localhost", zone: "z", want: "https://authentication.localhost:4443/oauth/token", wantZID: "z"},
		{name: "zone x509 on localhost", base: "https://provider.authentication.cert.localhost:4443", uaa: "authentication.localhost", x509: true, zone: "z", want: "https://authentication.cert.localhost:4443/oauth/token", wantZID: "z"},
		{name: "uaadomain with scheme and port", base: sec, uaa: "https://authentication.localhost:9000", zone: "z", want: "https://authentication.localhost:9000/oauth/token", wantZID: "z"},
		{name: "tenant and zone", base: sec, tenant: "a", zone: "b", bad: "mutually exclusive"},
		{name: "tenant not a label", base: sec, tenant: "a.b", bad: "not a subdomain"},
		{name: "tenant with slash", base: sec, tenant: "a/../b", bad: "not a subdomain"},
		{name: "zone with newline", base: sec, zone: "z\r\nX-Evil: 1", bad: "ZoneID"},
		{name: "tenant on single-label host", base: "https://localhost:1", tenant: "t", bad: "no label"},
		{name: "zone on single-label host", base: "https://localhost:1", zone: "t", bad: "tenant-agnostic"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			u, err := parseBase(tc.base, tc.flavor)
			g.Expect(err).NotTo(HaveOccurred())
			ep, err := buildEndpoint(u, tc.uaa, tc.flavor, tc.x509, tc.tenant, tc.zone)
			if tc.bad != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.bad)))
				g.Expect(errors.Is(err, ErrInvalidRequest)).To(BeTrue())
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(ep.url).To(Equal(tc.want))
			g.Expect(ep.zoneID).To(Equal(tc.wantZID))
		})
	}
}

func TestConfigValidate(t *testing.T) {
	hook := func(*tlsCertReq) (*tlsCert, error) { return nil, nil }
	for _, tc := range []struct {
		name    string
		cfg     Config
		bad     string
		wantURL string
	}{
		{name: "secret", cfg: Config{ClientID: "id", ClientSecret: "s", TokenURL: "https://p.authentication.x.com"}, wantURL: "https://p.authentication.x.com"},
		{name: "x509 derives certurl", cfg: Config{ClientID: "id", TokenURL: "https://p.authentication.x.com", GetClientCertificate: hook}, wantURL: "https://p.authentication.cert.x.com"},
		{name: "x509 certurl wins", cfg: Config{ClientID: "id", TokenURL: "https://p.authentication.x.com", CertURL: "https://c.example.com/", GetClientCertificate: hook}, wantURL: "https://c.example.com"},
		{name: "http on loopback", cfg: Config{ClientID: "id", ClientSecret: "s", TokenURL: "http://127.0.0.1:8080"}, wantURL: "http://127.0.0.1:8080"},
		{name: "no client id", cfg: Config{ClientSecret: "s", TokenURL: "https://a.b"}, bad: "ClientID"},
		{name: "no secret, no cert", cfg: Config{ClientID: "id", TokenURL: "https://a.b"}, bad: "ClientSecret"},
		{name: "no url", cfg: Config{ClientID: "id", ClientSecret: "s"}, bad: "TokenURL"},
		{name: "x509 without urls", cfg: Config{ClientID: "id", GetClientCertificate: hook}, bad: "CertURL"},
		{name: "http elsewhere", cfg: Config{ClientID: "id", ClientSecret: "s", TokenURL: "http://auth.example.com"}, bad: "loopback"},
		{name: "ftp", cfg: Config{ClientID: "id", ClientSecret: "s", TokenURL: "ftp://auth.example.com"}, bad: "https"},
		{name: "user info", cfg: Config{ClientID: "id", ClientSecret: "s", TokenURL: "https://u:pw@auth.example.com"}, bad: "user information"},
		{name: "query", cfg: Config{ClientID: "id", ClientSecret: "s", TokenURL: "https://auth.example.com?x=1"}, bad: "query"},
		{name: "flavor", cfg: Config{ClientID: "id", ClientSecret: "s", TokenURL: "https://a.b", Flavor: 7}, bad: "Flavor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			b, err := tc.cfg.validate()
			if tc.bad != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tc.bad)))
				g.Expect(errors.Is(err, ErrInvalidConfig)).To(BeTrue())
				g.Expect(err.Error()).NotTo(ContainSubstring("pw"))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(b.u.String()).To(Equal(tc.wantURL))
		})
	}
}

func TestSecretNeverPrints(t *testing.T) {
	g := NewWithT(t)
	s := Secret("hunter2-planted")
	cfg := Config{ClientID: "id", ClientSecret: s}
	for _, out := range []string{
		s.String(), s.GoString(), s.LogValue().String(),
		sprintf("%v %+v %#v %s %q", s, cfg, cfg, s, s),
	} {
		g.Expect(out).NotTo(ContainSubstring("hunter2"))
	}
	b, _ := s.MarshalText()
	g.Expect(string(b)).To(Equal("[redacted]"))
	g.Expect(string(s)).To(Equal("hunter2-planted"))
	tok := &Token{AccessToken: "planted-access-token", RefreshToken: "planted-refresh"}
	out := sprintf("%v %+v %#v %s", tok, tok, tok, tok.LogValue())
	g.Expect(out).NotTo(ContainSubstring("planted"))
	g.Expect(strings.Count(out, "tokenclient.Token")).To(BeNumerically(">=", 3))
}
