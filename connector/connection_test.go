package connector_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	"github.com/credbroker/credbroker/connector"
)

func TestConnectWritesAConnectionInfoWithoutSecrets(t *testing.T) {
	g := NewWithT(t)
	f := newFake()
	defer f.Close()
	u, tok := f.NewToken("app1")
	conn, err := f.client().Connect(ctx(t), u)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(conn.InfoErr).NotTo(HaveOccurred())
	ci := conn.ConnectionInfo
	g.Expect(ci.Version).To(Equal(1))
	g.Expect(ci.ConnectorURL).To(Equal(f.URL))
	g.Expect(ci.InfoURL).To(Equal(f.URL + "/v1/applications/management/info"))
	g.Expect(ci.RenewCertURL).To(Equal(f.URL + "/v1/applications/certificates/renewals"))
	g.Expect(ci.RevokeCertURL).To(Equal(f.URL + "/v1/applications/certificates/revocations"))
	g.Expect(ci.EventsURL).To(Equal(f.URL + "/app/v1/events"))
	g.Expect(ci.Identity.Application).To(Equal("app1"))
	g.Expect(ci.Subject).To(Equal("O=Org,OU=OrgUnit,L=Waldorf,ST=Waldorf,C=DE,CN=app1"))
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
	f := newFake()
	defer f.Close()
	f.Set(func(f *fakeConnector) {
		f.Fault = func(op string) (int, string) {
			if op == "info" {
				return 500, `{"code":500,"error":"later"}`
			}
			return 0, ""
		}
	})
	conn, err := f.client().Connect(ctx(t), first(f.NewToken("app")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(conn.Info).To(BeNil())
	g.Expect(conn.InfoErr).To(MatchError(ContainSubstring("later")))
	g.Expect(conn.Pairing.Key).NotTo(BeNil())
	g.Expect(conn.InfoURL).To(Equal(f.URL + "/v1/applications/management/info"))
	g.Expect(conn.RenewCertURL).To(BeEmpty())
}

func TestTwoPhases(t *testing.T) {
	g := NewWithT(t)
	central, runtime := newFake(), newFake()
	defer central.Close()
	defer runtime.Close()
	rt, _ := runtime.NewToken("app1-runtime")
	central.Set(func(f *fakeConnector) { f.RuntimeTokenURL = rt })

	phase1, err := central.client().Connect(ctx(t), first(central.NewToken("app1")))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(phase1.Info.RuntimeTokenURL()).To(Equal(rt))
	g.Expect(phase1.ConnectionInfo.Marshal()).NotTo(ContainSubstring("token="))

	phase2, err := runtime.client().Connect(ctx(t), phase1.Info.RuntimeTokenURL())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(phase2.Identity.Application).To(Equal("app1-runtime"))
	g.Expect(phase2.ConnectorURL).To(Equal(runtime.URL))
	g.Expect(phase2.Pairing.CA[0].Equal(runtime.CA.Cert)).To(BeTrue())
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
