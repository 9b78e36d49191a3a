package connector_test

import (
	"crypto/x509"
	"encoding/pem"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/connector"
	"github.com/credbroker/credbroker/mockauth"
)

func TestConnectWritesAConnectionInfoWithoutSecrets(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	gw := srv.Info().GatewayURL
	u, tok := mockToken(t, srv, "app1")
	conn, err := ecClient(t, srv).Connect(ctx(t), u)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(conn.InfoErr).NotTo(HaveOccurred())
	ci := conn.ConnectionInfo
	g.Expect(ci.Version).To(Equal(1))
	g.Expect(ci.ConnectorURL).To(Equal(srv.Info().ConnectorURL))
	g.Expect(ci.InfoURL).To(Equal(gw + pathMgmtInfo))
	g.Expect(ci.RenewCertURL).To(Equal(gw + pathRenewals))
	g.Expect(ci.RevokeCertURL).To(Equal(gw + pathRevocations))
	g.Expect(ci.EventsURL).To(Equal(gw + "/app1/v1/events"))
	g.Expect(ci.Identity.Application).To(Equal("app1"))
	g.Expect(ci.Subject).To(Equal("O=Organization,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=app1"))
	g.Expect(ci.Serial).To(Equal(conn.Pairing.Leaf().SerialNumber.String()))
	g.Expect(ci.NotAfter).To(Equal(conn.Pairing.Leaf().NotAfter.UTC()))

	data, err := ci.Marshal()
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(data)).NotTo(ContainSubstring(tok))
	g.Expect(string(data)).NotTo(ContainSubstring("token"))
	g.Expect(string(data)).To(HaveSuffix("}\n"))

	path := filepath.Join(t.TempDir(), connector.ConnectionFile)
	g.Expect(os.WriteFile(path, data, 0o644)).To(Succeed())
	back, err := connector.LoadConnectionInfo(path)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(back).To(Equal(ci))
}

func TestConnectKeepsThePairingWhenInfoFails(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{})
	addFault(t, srv, mockauth.Fault{Target: mockauth.TargetInfo, Status: 500, Body: `{"code":500,"error":"later"}`})
	conn, err := ecClient(t, srv).Connect(ctx(t), first(mockToken(t, srv, "app")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(conn.Info).To(BeNil())
	g.Expect(conn.InfoErr).To(MatchError(ContainSubstring("later")))
	g.Expect(conn.Pairing.Key).NotTo(BeNil())
	g.Expect(conn.InfoURL).To(Equal(srv.Info().GatewayURL + pathMgmtInfo))
	g.Expect(conn.RenewCertURL).To(BeEmpty())
}

func TestTwoPhases(t *testing.T) {
	g := NewWithT(t)
	srv := startConnector(t, mockauth.Options{TwoPhase: true})
	c := ecClient(t, srv)

	phase1, err := c.Connect(ctx(t), first(mockToken(t, srv, "app1")))
	g.Expect(err).NotTo(HaveOccurred())
	rt := phase1.Info.RuntimeTokenURL()
	g.Expect(rt).To(HavePrefix(srv.Info().RuntimeConnectorURL + pathSigningInfo + "?token="))
	u, err := url.Parse(rt)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(phase1.Info.Runtime.String()).NotTo(ContainSubstring(u.Query().Get("token")))
	g.Expect(phase1.ConnectionInfo.Marshal()).NotTo(ContainSubstring("token="))
	g.Expect(phase1.Identity).To(Equal(connector.ClientIdentity{Application: "app1", Group: "default", Tenant: srv.Info().Tenants[0].ZoneID}))

	phase2, err := c.Connect(ctx(t), rt)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(phase2.Identity.Application).To(Equal("app1"))
	g.Expect(phase2.ConnectorURL).To(Equal(srv.Info().RuntimeConnectorURL))
	b, _ := pem.Decode(srv.RuntimeConnectorCAPEM())
	runtimeCA, err := x509.ParseCertificate(b.Bytes)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(phase2.Pairing.CA[0].Equal(runtimeCA)).To(BeTrue())
	g.Expect(phase2.Pairing.CA[0].Equal(connectorCA(t, srv))).To(BeFalse(), "the runtime connector has its own CA")
}

func TestParseConnectionInfoErrors(t *testing.T) {
	cases := map[string]string{
		`{`:                                    "not valid connection JSON",
		`{"version":2,"info_url":"https://x"}`: "version 2 is newer",
		`{"version":1}`:                        "info_url is empty",
		`{"version":1,"info_url":"ftp://x"}`:   "info_url ftp://x: want an https URL",
		`{"version":1,"info_url":"https://x/i","renew_cert_url":"https://"}`: "renew_cert_url https: has no host",
	}
	for in, want := range cases {
		t.Run(in, func(t *testing.T) {
			g := NewWithT(t)
			_, err := connector.ParseConnectionInfo([]byte(in), "/dir/connection.json")
			g.Expect(err).To(MatchError(connector.ErrInvalidInput))
			g.Expect(err.Error()).To(ContainSubstring("/dir/connection.json"))
			g.Expect(err.Error()).To(ContainSubstring(want))
		})
	}
	_, err := connector.LoadConnectionInfo(filepath.Join(t.TempDir(), "missing.json"))
	NewWithT(t).Expect(err).To(MatchError(ContainSubstring("missing.json")))
}

func TestApplyInfoReportsChanges(t *testing.T) {
	g := NewWithT(t)
	ci := connector.ConnectionInfo{InfoURL: "https://c.localhost/info", EventsURL: "https://c.localhost/events"}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	info := connector.ManagementInfo{URLs: connector.ManagementURLs{EventsURL: "https://c.localhost/events"}}
	g.Expect(ci.ApplyInfo(info, t0)).To(BeFalse())
	g.Expect(ci.UpdatedAt.IsZero()).To(BeTrue())
	info.URLs.EventsURL = "https://g.localhost/events"
	g.Expect(ci.ApplyInfo(info, t0)).To(BeTrue())
	g.Expect(ci.EventsURL).To(Equal("https://g.localhost/events"))
	g.Expect(ci.UpdatedAt).To(Equal(t0))
	g.Expect(strings.Contains(ci.ManagementInfo().URLs.EventsURL, "g.localhost")).To(BeTrue())
}
